//! The command line, as clap derive types only: no logic lives here.
//!
//! The same tree generates the shell completions in `completions/` and the man pages in `man/`
//! (hidden `generate-docs` subcommand; a test fails when the committed copies drift).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Every command writes exactly one report to stdout: a table on a terminal, JSON otherwise.
Progress and logs go to stderr. Exit codes: 0 ok, 1 findings, 2 usage, 3 safety stop,
70 internal error, 75 temporary (retry later), 77 permission denied, 78 configuration error.";

/// Keep a cloud identity tenant in step with Active Directory.
///
/// ausi reads users, groups and Organizational Units from a domain controller (or an LDIF
/// export), checks that every user has a first name, last name, email address and logon name,
/// and provisions them into the tenant over SCIM 2.0.
#[derive(Debug, Parser)]
#[command(name = "ausi", version, propagate_version = true, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]
    #[arg(long, short = 'c', global = true, env = "AUSI_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Report format on stdout [default: table on a terminal, json otherwise]
    #[arg(long, short = 'o', global = true, env = "AUSI_OUTPUT", value_name = "FORMAT")]
    pub output: Option<OutputFormat>,

    /// More log detail on stderr (-v info, -vv debug, -vvv trace)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr, and no progress display
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Format of the log lines (on stderr and in the --log-file)
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run;
    /// the units and tasks of install-service pass it
    #[arg(long, global = true, env = "AUSI_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)
    Json,
    /// A human-readable table
    Table,
    /// One JSON object per line: each listed item, then the envelope
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register this agent with the identity tenant (home realm, agent name, access token)
    Register(RegisterArgs),

    /// Install the scheduled task (Windows) or systemd timer (Linux) that runs the sync unattended
    InstallService(InstallServiceArgs),

    /// List the Organizational Units and default containers, with user and group counts
    ///
    /// Shows the OU tree under the domain's naming context, each OU's objectGUID, depth, the
    /// number of users and groups directly inside it and in its whole subtree, and whether it
    /// is selected for sync.
    ListOus(ListOusArgs),

    /// Choose which OUs are synchronised (and which sub-trees inside them are left out)
    ///
    /// OUs are given by distinguished name or objectGUID and stored by both, so an OU that is
    /// renamed or moved later is found again by its GUID. Before saving, the report shows how
    /// many users and groups enter and leave the sync scope; with --dry-run nothing is saved.
    SelectOus(SelectOusArgs),

    /// Check every user in scope for the attributes the tenant needs
    ///
    /// Rules: givenName, sn, mail and userPrincipalName present and not blank; mail and
    /// userPrincipalName well-formed; mail, userPrincipalName and sAMAccountName unique
    /// (case-insensitive) within the scope. Being disabled is not a problem (disabled accounts
    /// are counted and still checked, since a sync provisions them as inactive).
    /// Exit code 1 when any user would be quarantined by a sync.
    Validate(ValidateArgs),

    /// Synchronise users, groups and OUs into the tenant (incremental unless --full)
    Sync(SyncArgs),

    /// Write passwords changed in the tenant (or given here) into Active Directory
    PasswordPush(PasswordPushArgs),

    /// Show the agent's health, registration, schedule and recent runs (exit code 1 when unhealthy)
    ///
    /// Reads the configuration and the state store; contacts nothing. Unhealthy (exit code 1,
    /// `healthy: false` with `health_reasons` in the JSON report) when the last sync failed, the
    /// last successful sync is older than three schedule intervals (or none succeeded while some
    /// failed), or the last heartbeat to the tenant failed.
    Status(StatusArgs),

    /// Write shell completions and man pages (for packagers)
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
}

/// Where the directory data comes from, shared by every command that reads it.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Directory")]
pub struct DirectoryArgs {
    /// Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch
    /// export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]
    #[arg(long, value_name = "SOURCE", env = "AUSI_SOURCE")]
    pub source: Option<String>,

    /// Bind as this account (DN, user@domain or DOMAIN\user) instead of the configured one
    #[arg(long, value_name = "DN")]
    pub bind_dn: Option<String>,

    /// Read the bind password from the first line of standard input
    #[arg(long)]
    pub bind_password_stdin: bool,

    /// Store the password given by prompt or --bind-password-stdin in the secret store that
    /// the configuration's `bind_password` reference names
    #[arg(long)]
    pub save_bind_password: bool,

    /// Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Upgrade an ldap:// connection with StartTLS
    #[arg(long)]
    pub starttls: bool,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The tenant's home realm URL (organisation or sub-organisation realm), e.g. https://acme.example.com
    #[arg(long, value_name = "URL")]
    pub home_realm: String,

    /// Name of this agent in the tenant [default: this machine's host name]
    #[arg(long, value_name = "NAME")]
    pub agent_name: Option<String>,

    /// Provisioning policy to apply
    #[arg(long, value_name = "NAME", default_value = "Default")]
    pub provisioning_policy: String,

    /// SCIM base URL, when it is not {home realm}/scim/v2
    #[arg(long, value_name = "URL")]
    pub scim_url: Option<String>,

    /// Read the tenant's access token from standard input (it is never accepted as an argument)
    #[arg(long)]
    pub token_stdin: bool,

    /// Where to keep the token [default: keyring:ausi/tenant-token on Windows, file:tenant.token beside the configuration elsewhere]
    #[arg(long, value_name = "REF")]
    pub token_ref: Option<String>,

    /// Write passwords changed in the tenant into AD on every sync (needs the tenant's agent API,
    /// an LDAPS or StartTLS connection and Reset Password rights on the selected OUs)
    #[arg(long)]
    pub password_sync: bool,
}

#[derive(Debug, Args)]
pub struct InstallServiceArgs {
    /// Minutes between incremental syncs (at least 1)
    #[arg(long, value_name = "MINUTES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub interval: u32,

    /// Local time of the daily full sync, HH:MM
    #[arg(long, value_name = "HH:MM", default_value = "02:00")]
    pub full_sync_at: String,

    /// Stop a run still going after this many minutes
    #[arg(long, value_name = "MINUTES", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub time_limit: u32,

    /// Account the runs use [default: SYSTEM on Windows, root on Linux]. On Windows a gMSA
    /// (DOMAIN\name$) needs no password; any other account's password is asked by schtasks at
    /// the terminal. No password is ever accepted as an argument
    #[arg(long, value_name = "ACCOUNT")]
    pub run_as: Option<String>,

    /// Write what would be installed to stdout and change nothing
    #[arg(long, conflicts_with = "uninstall")]
    pub print: bool,

    /// Install even when a check predicts the scheduled service cannot work (its state
    /// directory hidden from the hardened unit, a secret in the kernel keyring, timers that
    /// cannot be enabled here)
    #[arg(long, conflicts_with_all = ["uninstall", "print"])]
    pub force: bool,

    /// Remove the installed task or timer
    #[arg(long)]
    pub uninstall: bool,

    /// Create (or reuse) the AD account the sync binds as, store its random password, and show
    /// the rights it needs on the selected OUs. Binds as an administrator, over LDAPS or StartTLS only
    #[arg(long, help_heading = "Service account")]
    pub create_service_account: bool,

    /// Where a new service account is created [default: CN=Users under the naming context]
    #[arg(long, value_name = "DN", requires = "create_service_account", help_heading = "Service account")]
    pub ou: Option<String>,

    /// The service account's logon name (sAMAccountName) [default: svc-ausi]
    #[arg(long, value_name = "NAME", requires = "create_service_account", help_heading = "Service account")]
    pub name: Option<String>,

    /// Create a group managed service account (gMSA, Windows Server 2012+ domains) instead of a
    /// user: the domain sets and rotates its password, ausi stores none, and the agent binds with
    /// Kerberos (bind = "kerberos") when installed with --run-as DOMAIN\NAME$
    #[arg(long, requires = "create_service_account", help_heading = "Service account")]
    pub gmsa: bool,

    /// With --gmsa: an account (sAMAccountName, e.g. the computer `HOST$` that runs ausi, or a
    /// group of such computers) allowed to retrieve the gMSA's password; repeatable
    #[arg(long = "gmsa-allowed", value_name = "ACCOUNT", requires = "gmsa", help_heading = "Service account")]
    pub gmsa_allowed: Vec<String>,

    /// Grant the account exactly the rights it needs: one ACE per right on each selected OU, nothing domain-wide
    #[arg(long, requires = "create_service_account", help_heading = "Service account")]
    pub grant_rights: bool,

    /// Count Reset Password (on the users of the selected OUs) among the rights, as when the
    /// agent is registered with --password-sync (tenant.password_sync), before it is
    #[arg(long, requires = "create_service_account", help_heading = "Service account")]
    pub password_sync: bool,

    #[command(flatten)]
    pub directory: DirectoryArgs,

    /// Write the unit or task files under this directory instead of / (tests, packaging);
    /// systemctl and schtasks are then not run
    #[arg(long, value_name = "DIR", env = "AUSI_INSTALL_ROOT", hide = true)]
    pub root: Option<PathBuf>,

    /// Render for this scheduler instead of this machine's (only with --print or --root)
    #[arg(long, value_name = "KIND", hide = true)]
    pub scheduler: Option<SchedulerKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchedulerKind {
    Systemd,
    TaskScheduler,
}

#[derive(Debug, Args)]
pub struct ListOusArgs {
    /// List only this sub-tree (DN) instead of the whole naming context
    #[arg(long, value_name = "DN")]
    pub base: Option<String>,

    #[command(flatten)]
    pub directory: DirectoryArgs,
}

#[derive(Debug, Args)]
pub struct SelectOusArgs {
    /// Add OUs (DN or objectGUID) to the selection
    #[arg(long, value_name = "OU", num_args = 1.., action = clap::ArgAction::Append)]
    pub add: Vec<String>,

    /// Remove OUs (DN or objectGUID) from the selection
    #[arg(long, value_name = "OU", num_args = 1.., action = clap::ArgAction::Append)]
    pub remove: Vec<String>,

    /// Replace the whole selection with these OUs (exclusions outside them are dropped)
    #[arg(long, value_name = "OU", num_args = 1.., action = clap::ArgAction::Append, conflicts_with_all = ["add", "remove", "clear"])]
    pub set: Vec<String>,

    /// Remove every selected OU and every exclusion
    #[arg(long, conflicts_with_all = ["add", "remove"])]
    pub clear: bool,

    /// Leave this sub-tree (an OU or container inside a selected OU) out of the sync
    #[arg(long, value_name = "OU", num_args = 1.., action = clap::ArgAction::Append)]
    pub exclude: Vec<String>,

    /// Take an excluded sub-tree back into the sync
    #[arg(long, value_name = "OU", num_args = 1.., action = clap::ArgAction::Append)]
    pub unexclude: Vec<String>,

    /// Show the scope change without saving it
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub directory: DirectoryArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Validate every user under this DN instead of the selected OUs
    #[arg(long, value_name = "DN")]
    pub base: Option<String>,

    /// Explain one user rule by rule (userPrincipalName or sAMAccountName)
    #[arg(long, value_name = "UPN|SAM")]
    pub user: Option<String>,

    /// Judge by this provisioning policy (Default or one of [policies.NAME]) instead of the active one
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,

    #[command(flatten)]
    pub directory: DirectoryArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Read the whole selected scope instead of the changes since the last run
    #[arg(long)]
    pub full: bool,

    /// Plan and report every change without writing anything to the tenant
    #[arg(long)]
    pub dry_run: bool,

    /// All or nothing: when any user in scope is invalid, write nothing (exit 1)
    #[arg(long)]
    pub strict: bool,

    /// Allow this run to deactivate or delete up to N objects, above the configured threshold
    #[arg(long, value_name = "N")]
    pub allow_deletes: Option<u32>,

    /// Allow this run to change the userName of up to N users, above [sync] max_renames
    #[arg(long, value_name = "N")]
    pub allow_renames: Option<u32>,

    /// With --dry-run: explain one user end to end (scope, rules, the SCIM resource, the operation)
    #[arg(long, value_name = "UPN|SAM", requires = "dry_run")]
    pub user: Option<String>,

    /// With --dry-run: preview the run under this provisioning policy (Default or one of
    /// [policies.NAME]) instead of the active one: who enters and leaves the scope, how many
    /// objects change per attribute, and whether the rename guard would stop it
    #[arg(long, value_name = "NAME", requires = "dry_run")]
    pub policy: Option<String>,

    #[command(flatten)]
    pub directory: DirectoryArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["from_tenant", "user", "batch"])))]
// Passwords are written to a domain controller: an LDIF export is no --source here.
#[command(mut_arg("source", |a| a
    .help("Write to this domain controller instead of the configured one: ldaps://HOST[:PORT] or ldap://HOST[:PORT] with StartTLS (not an LDIF export)")
    .long_help(None::<&str>)))]
pub struct PasswordPushArgs {
    /// Apply the password changes queued in the tenant and report each result back
    #[arg(long)]
    pub from_tenant: bool,

    /// Set the password of this user (userPrincipalName, sAMAccountName or objectGUID); the
    /// password is prompted for on a terminal, or read with --password-stdin
    #[arg(long, value_name = "UPN|SAM|GUID")]
    pub user: Option<String>,

    /// Read the new password for --user from the first line of standard input
    #[arg(long, requires = "user")]
    pub password_stdin: bool,

    /// JSON Lines file of {"user": ..., "password": ...} (or - for standard input); every line
    /// is checked before any password is sent
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,

    /// Find each user and check each password against the domain's policy, without writing
    /// anything to AD or answering the tenant
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub directory: DirectoryArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {}

#[derive(Debug, Args)]
pub struct GenerateDocsArgs {
    /// Directory that receives completions/ and man/
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
}

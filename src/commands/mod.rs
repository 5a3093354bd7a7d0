//! One module per subcommand. Each resolves its settings, calls the domain modules and returns
//! an [`Outcome`] holding its [`Report`]; nothing here prints or exits.

pub mod docs;
pub mod install_service;
pub mod list_ous;
pub mod password_push;
pub mod register;
pub mod select_ous;
pub mod service_account;
pub mod status;
pub mod sync;
pub mod validate;

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::{Cli, Command, DirectoryArgs, GlobalArgs};
use crate::config::{self, AgentConfig, BindMethod, ConfigError, DirectoryConfig, TenantConfig};
use crate::directory::discovery;
use crate::directory::ldap::{Bind, DEFAULT_RANGE_STEP, LdapDirectory, LdapSettings};
use crate::directory::ldif_source::LdifDirectory;
use crate::directory::{AnyDirectory, Directory, Dn, SourceSpec};
use crate::error::{AppError, ErrorKind, Result};
use crate::output::{Outcome, Printer, Warning};
use crate::secrets::{Purpose, SecretError, SecretRef, SecretString};
use crate::sync::scope::{self, Resolution, Scope};

/// The data part of the report envelope, one variant per command.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Report {
    ListOus(list_ous::ListOusReport),
    SelectOus(select_ous::SelectOusReport),
    Validate(Box<validate::ValidateReport>),
    Status(Box<status::StatusReport>),
    Docs(docs::DocsReport),
    Register(register::RegisterReport),
    Sync(Box<sync::SyncReport>),
    PasswordPush(password_push::PasswordPushReport),
    ServiceAccount(service_account::ServiceAccountReport),
    InstallService(install_service::InstallServiceReport),
}

impl Report {
    /// The human rendering.
    pub fn table(&self) -> String {
        match self {
            Report::ListOus(r) => r.table(),
            Report::SelectOus(r) => r.table(),
            Report::Validate(r) => r.table(),
            Report::Status(r) => r.table(),
            Report::Docs(r) => r.table(),
            Report::Register(r) => r.table(),
            Report::Sync(r) => r.table(),
            Report::PasswordPush(r) => r.table(),
            Report::ServiceAccount(r) => r.table(),
            Report::InstallService(r) => r.table(),
        }
    }

    /// Where the long listings sit in the serialised report: `--output jsonl` writes their
    /// items one per line and leaves them out of the closing envelope.
    pub fn item_paths(&self) -> &'static [&'static [&'static str]] {
        match self {
            Report::ListOus(_) => &[&["ous"]],
            Report::SelectOus(_) => &[&["changes", "entering"], &["changes", "leaving"]],
            Report::Validate(_) => &[&["users"]],
            Report::Sync(_) => &[&["quarantined"], &["failures"], &["password_push", "changes"]],
            Report::PasswordPush(_) => &[&["changes"]],
            Report::InstallService(_) => &[&["files"]],
            Report::Status(_) | Report::Docs(_) | Report::Register(_) | Report::ServiceAccount(_) => &[],
        }
    }
}

/// The subcommand's name as it appears in the report envelope.
pub fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Register(_) => "register",
        Command::InstallService(_) => "install-service",
        Command::ListOus(_) => "list-ous",
        Command::SelectOus(_) => "select-ous",
        Command::Validate(_) => "validate",
        Command::Sync(_) => "sync",
        Command::PasswordPush(_) => "password-push",
        Command::Status(_) => "status",
        Command::GenerateDocs(_) => "generate-docs",
    }
}

/// Whether the command line asked for a dry run (the envelope's `dry_run`, also when it fails).
pub fn dry_run(command: &Command) -> bool {
    match command {
        Command::SelectOus(a) => a.dry_run,
        Command::Sync(a) => a.dry_run,
        Command::PasswordPush(a) => a.dry_run,
        _ => false,
    }
}

pub async fn dispatch(cli: &Cli, printer: &Printer) -> Result<Outcome> {
    let ctx = Context::new(&cli.global, printer);
    match &cli.command {
        Command::ListOus(args) => list_ous::run(&ctx, args).await,
        Command::SelectOus(args) => select_ous::run(&ctx, args).await,
        Command::Validate(args) => validate::run(&ctx, args).await,
        Command::Status(_) => status::run(&ctx),
        Command::GenerateDocs(args) => docs::run(args),
        Command::Register(args) => register::run(&ctx, args).await,
        Command::InstallService(args) if args.create_service_account => service_account::run(&ctx, args).await,
        Command::InstallService(args) => install_service::run(&ctx, args).await,
        Command::Sync(args) => sync::run(&ctx, args).await,
        Command::PasswordPush(args) => password_push::run(&ctx, args).await,
    }
}

/// What every command needs: global flags, the printer, where the configuration lives.
pub struct Context<'a> {
    pub global: &'a GlobalArgs,
    pub printer: &'a Printer,
    pub config_path: PathBuf,
}

impl<'a> Context<'a> {
    pub fn new(global: &'a GlobalArgs, printer: &'a Printer) -> Self {
        let config_path = global.config.clone().unwrap_or_else(default_config_path);
        Context { global, printer, config_path }
    }

    /// The configuration if there is one; a missing file is an error only when it was named.
    pub fn optional_config(&self, warnings: &mut Vec<Warning>) -> Result<Option<AgentConfig>> {
        self.load_config(warnings, self.global.config.is_none())
    }

    /// The configuration if there is one, wherever it was looked for (for commands that create it).
    pub fn config_or_none(&self, warnings: &mut Vec<Warning>) -> Result<Option<AgentConfig>> {
        self.load_config(warnings, true)
    }

    fn load_config(&self, warnings: &mut Vec<Warning>, missing_ok: bool) -> Result<Option<AgentConfig>> {
        match config::load(&self.config_path) {
            Ok(loaded) => {
                warnings.extend(loaded.warnings);
                Ok(Some(loaded.config))
            }
            Err(ConfigError::Missing { .. }) if missing_ok => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// `/etc/ausi/agent.toml`, or `%ProgramData%\ausi\agent.toml` on Windows.
pub fn default_config_path() -> PathBuf {
    if cfg!(windows) {
        let base =
            std::env::var_os("ProgramData").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
        base.join("ausi").join("agent.toml")
    } else {
        PathBuf::from("/etc/ausi/agent.toml")
    }
}

/// Whether the command reads an LDIF export (only `--source` can name one) rather than a DC.
pub fn reads_ldif(args: &DirectoryArgs) -> Result<bool> {
    let spec = args.source.as_deref().map(SourceSpec::parse).transpose()?;
    Ok(matches!(spec, Some(SourceSpec::Ldif(_))))
}

/// The DCs a command may use, in the order to try them: `--source`, else `directory.url` (one
/// or a list), then, with `discover = true`, those DNS announces for the domain.
pub async fn dc_urls(args: &DirectoryArgs, dir: &DirectoryConfig) -> Result<Vec<String>> {
    if let Some(source) = &args.source {
        return Ok(vec![source.clone()]);
    }
    let mut urls = dir.url.clone();
    if dir.discover {
        let domain = dir.discovery_domain().ok_or_else(|| {
            AppError::config("discover = true needs the domain's DNS name")
                .with_hint("set directory.domain = \"example.com\" (or directory.base_dn)")
        })?;
        let local_names = local_host_names();
        let request = discovery::DiscoveryRequest {
            domain: &domain,
            site: dir.site.as_deref(),
            starttls: args.starttls || dir.starttls,
            local_names: &local_names,
        };
        let found = discovery::discover(&request, &discovery::SystemResolver).await?;
        for url in found {
            if !urls.iter().any(|u| u.eq_ignore_ascii_case(&url)) {
                urls.push(url);
            }
        }
    }
    Ok(urls)
}

/// This machine's names, so that discovery puts it first when it is a DC: the host name (and,
/// on Windows, COMPUTERNAME and USERDNSDOMAIN's FQDN).
fn local_host_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(name.trim().to_owned());
    }
    if let Some(computer) = std::env::var_os("COMPUTERNAME").map(|c| c.to_string_lossy().into_owned()) {
        if let Some(domain) = std::env::var_os("USERDNSDOMAIN") {
            names.push(format!("{computer}.{}", domain.to_string_lossy()));
        }
        names.push(computer);
    }
    names.retain(|n| !n.is_empty());
    names
}

/// The DCs' URLs for a command that sends passwords (`what` names it): each LDAPS or
/// StartTLS, decided before anything is read, prompted for or sent. AD takes `unicodePwd`
/// only over an encrypted connection, and ausi sends no password in clear text, whatever
/// `allow_plaintext_bind` says.
pub async fn encrypted_dc_urls(args: &DirectoryArgs, dir: &DirectoryConfig, what: &str) -> Result<Vec<String>> {
    let urls = dc_urls(args, dir).await?;
    if urls.is_empty() {
        return Err(no_dc());
    }
    urls.iter().map(|text| encrypted(text, args, dir, what)).collect()
}

/// The one DC of a command that works on a single DC (the first configured) and sends passwords.
pub fn encrypted_dc_url(args: &DirectoryArgs, dir: &DirectoryConfig, what: &str) -> Result<String> {
    let text = args.source.as_deref().or(dir.first_url()).ok_or_else(no_dc)?;
    encrypted(text, args, dir, what)
}

fn no_dc() -> AppError {
    AppError::config("no domain controller: the configuration has no [directory] url")
        .with_hint("pass --source ldaps://DC, or set url (or discover = true) in [directory]")
}

fn encrypted(text: &str, args: &DirectoryArgs, dir: &DirectoryConfig, what: &str) -> Result<String> {
    match SourceSpec::parse(text)? {
        SourceSpec::Ldif(_) => {
            Err(AppError::usage(format!("cannot {what} in an LDIF export: that needs a domain controller (ldaps://)")))
        }
        SourceSpec::Ldap(url) if !crate::directory::ldap::is_encrypted(&url, args.starttls || dir.starttls) => {
            Err(AppError::config(format!(
                "refusing to {what} over {url} without encryption: passwords would cross the network readable, and AD takes them only over LDAPS or StartTLS"
            ))
            .with_hint("use ldaps://DC (port 636), or ldap:// with --starttls / starttls = true"))
        }
        SourceSpec::Ldap(url) => Ok(url),
    }
}

/// Opens the directory named by `--source` or the configuration: the first DC that answers
/// (the others are reported as warnings and in the directory's info), bound as configured —
/// Kerberos with the process's identity, or a simple bind with the configured secret (or
/// stdin, or a prompt). Warnings about weakened security go into `warnings`.
pub async fn open_directory(
    args: &DirectoryArgs,
    config: Option<&AgentConfig>,
    warnings: &mut Vec<Warning>,
) -> Result<AnyDirectory> {
    open(args, config, warnings, false).await
}

/// [`open_directory`] for writing passwords: a read-only DC (RODC) is passed over for the next.
pub async fn open_writable_directory(
    args: &DirectoryArgs,
    config: Option<&AgentConfig>,
    warnings: &mut Vec<Warning>,
) -> Result<AnyDirectory> {
    open(args, config, warnings, true).await
}

async fn open(
    args: &DirectoryArgs,
    config: Option<&AgentConfig>,
    warnings: &mut Vec<Warning>,
    writable: bool,
) -> Result<AnyDirectory> {
    let defaults = DirectoryConfig::default();
    let dir = config.map(|c| &c.directory).unwrap_or(&defaults);
    let texts = dc_urls(args, dir).await?;
    if texts.is_empty() {
        return Err(AppError::config("no directory to read: the configuration has no [directory] url").with_hint(
            "pass --source ldaps://DC or --source ldif:EXPORT.ldif, or set url (or discover = true) in [directory]",
        ));
    }
    // --source may name an export; the configuration's URLs are DCs (a bad one is a
    // configuration error, exit 78, found when it is connected to).
    let urls = match &args.source {
        Some(source) => match SourceSpec::parse(source)? {
            SourceSpec::Ldif(path) => return Ok(AnyDirectory::Ldif(Box::new(LdifDirectory::open(&path)?))),
            SourceSpec::Ldap(url) => vec![url],
        },
        None => texts,
    };
    let ca_file = args.ca_file.clone().or_else(|| dir.ca_file.clone());
    if !dir.tls_verify {
        warnings.push(Warning::new(
            "tls-verify-disabled",
            "TLS certificate verification is disabled (tls_verify = false): anyone between this machine and the DC can read the bind password and the directory",
        ));
    }
    let reference = dir.bind_password.as_deref().map(SecretRef::parse).transpose()?;
    // An account named on the command line (--bind-dn: an administrator creating the service
    // account, a one-off check) is a simple bind, whatever the configuration says.
    let method = if args.bind_dn.is_some() { BindMethod::Simple } else { dir.bind };
    let (bind, typed) = match method {
        BindMethod::Kerberos => {
            if args.bind_password_stdin || args.save_bind_password {
                return Err(AppError::usage(
                    "bind = \"kerberos\" uses no password: drop --bind-password-stdin / --save-bind-password",
                ));
            }
            if cfg!(windows) && dir.keytab.is_some() {
                return Err(AppError::config(
                    "directory.keytab is for Linux: on Windows, Kerberos uses the identity ausi runs as (SYSTEM, a gMSA or a domain account)",
                )
                .with_hint("remove keytab from [directory]; install the service with --run-as DOMAIN\\name$ for a gMSA"));
            }
            if let Some(path) = dir.keytab.as_deref().and_then(|k| k.strip_prefix("file:")) {
                crate::secrets::check_private_file(&crate::secrets::passed_file(Path::new(path))).map_err(|e| {
                    AppError::from(e).with_hint("a keytab holds the account's keys: export it again, or give it mode 0600 (chmod 600) and the owner ausi runs as")
                })?;
            }
            (Bind::Kerberos { spn_host: dir.spn_host.clone() }, None)
        }
        BindMethod::Simple => match args.bind_dn.clone().or_else(|| dir.bind_dn.clone()) {
            None => (Bind::Anonymous, None),
            Some(account) => {
                let (password, typed) = bind_password(args, reference.as_ref(), &account)?;
                (Bind::Simple { account, password }, typed)
            }
        },
    };
    let starttls = args.starttls || dir.starttls;
    let settings = |url: &str| LdapSettings {
        url: url.to_owned(),
        starttls,
        bind: bind.clone(),
        ca_file: ca_file.clone(),
        tls_verify: dir.tls_verify,
        allow_plaintext_bind: dir.allow_plaintext_bind,
        connect_timeout: Duration::from_secs(dir.connect_timeout_secs.max(1)),
        operation_timeout: Duration::from_secs(dir.operation_timeout_secs.max(1)),
        page_size: dir.page_size,
        base_dn: dir.base_dn.clone(),
        range_step: DEFAULT_RANGE_STEP,
    };
    let mut directory = LdapDirectory::connect_any(&urls, settings, writable).await?;
    let info = directory.info().await?;
    for skipped in &info.skipped {
        warnings.push(Warning::new(
            "dc-skipped",
            format!("{} was passed over ({}); this run uses {}", skipped.url, skipped.error, info.source),
        ));
    }
    if args.save_bind_password {
        match (typed, &reference) {
            (Some(password), Some(reference)) => {
                reference.store(&password)?;
                warnings
                    .push(Warning::new("bind-password-saved", format!("the bind password was stored in {reference}")));
            }
            (None, _) => {
                return Err(AppError::usage(
                    "--save-bind-password needs a password given by --bind-password-stdin or at the prompt",
                ));
            }
            (Some(_), None) => {
                return Err(AppError::config("--save-bind-password: the configuration has no directory.bind_password reference to store it in")
                    .with_hint("add e.g. bind_password = \"keyring:ausi/ldap-bind\" (Windows) or \"file:/etc/ausi/bind.pw\" (Linux) to [directory]"));
            }
        }
    }
    Ok(AnyDirectory::Ldap(Box::new(directory)))
}

/// The bind password, and a copy of it when it was typed or piped in (so it can be saved).
fn bind_password(
    args: &DirectoryArgs,
    reference: Option<&SecretRef>,
    account: &str,
) -> Result<(SecretString, Option<SecretString>)> {
    if args.bind_password_stdin {
        let password = read_stdin_secret("password")?;
        return Ok((password.clone(), Some(password)));
    }
    let missing = match reference.map(SecretRef::resolve) {
        Some(Ok(password)) => return Ok((password, None)),
        Some(Err(SecretError::Missing { reference })) => Some(reference),
        Some(Err(other)) => return Err(other.into()),
        None => None,
    };
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let typed = rpassword::prompt_password(format!("Bind password for {account}: "))
            .map_err(|e| AppError::config("cannot read the password from the terminal").caused_by(&e))?;
        let password = SecretString::from(typed);
        return Ok((password.clone(), Some(password)));
    }
    Err(match missing {
        Some(reference) => AppError::config(format!("the bind password for {account} is not stored in {reference}"))
            .with_hint(Purpose::BindPassword.store_hint()),
        None => AppError::config(format!(
            "no bind password for {account}: the configuration has no directory.bind_password"
        ))
        .with_hint("set directory.bind_password to a keyring:, file: or env: reference, or pipe the password in with --bind-password-stdin"),
    })
}

/// The registered tenant's token, as `tenant::token` reads it, but a missing one is named and
/// its hint says how to store it (`register --token-stdin`), not how to store a bind password.
/// Called before a tenant client is made (which reads it again).
pub fn tenant_token(tenant: &TenantConfig) -> Result<SecretString> {
    let reference = tenant.token.as_deref().ok_or_else(|| {
        AppError::config("the configuration has no tenant.token reference").with_hint("run `ausi register` again")
    })?;
    SecretRef::parse(reference)?.resolve().map_err(|e| e.about(Purpose::TenantToken))
}

/// The first line of standard input; `what` names it in the error for an empty line
/// ("password", "token").
pub(crate) fn read_stdin_secret(what: &str) -> Result<SecretString> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| AppError::usage(format!("cannot read the {what} from standard input")).caused_by(&e))?;
    let value = line.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(AppError::usage(format!("standard input held no {what} (an empty first line)")));
    }
    Ok(SecretString::from(value.to_owned()))
}

/// The selection in the configuration, resolved against the directory's current OUs.
pub async fn resolve_selection(directory: &mut AnyDirectory, config: Option<&AgentConfig>) -> Result<(Dn, Resolution)> {
    let nc = directory.info().await?.naming_context;
    let selection = config.map(|c| c.scope.clone()).unwrap_or_default();
    if selection.ous.is_empty() && selection.excluded.is_empty() {
        return Ok((nc, Resolution::default()));
    }
    let containers = directory.containers(&nc).await?;
    Ok((nc, scope::resolve(&selection, &containers)))
}

#[derive(Debug, Serialize)]
pub struct ScopeDescription {
    /// `selection` (the configured OUs), `base` (--base) or `export` (the whole LDIF file).
    pub from: &'static str,
    pub bases: Vec<String>,
    pub excluded: Vec<String>,
}

/// `--base`, else the configured selection, else (for an export only) the whole file.
pub async fn choose_scope(
    directory: &mut AnyDirectory,
    base: Option<&str>,
    config: Option<&AgentConfig>,
    warnings: &mut Vec<Warning>,
) -> Result<(Scope, ScopeDescription)> {
    choose_scope_checked(directory, base, config, warnings).await?.map_err(|vanished| vanished.error)
}

/// Selected OUs that no longer exist in the directory: the scope is not what the administrator
/// chose, so a sync stops (exit 3) and reports what the missing OUs would have cost.
#[derive(Debug)]
pub struct Vanished {
    /// The DNs of the selected OUs that are gone, as configured.
    pub missing: Vec<String>,
    /// The selection as configured.
    pub description: ScopeDescription,
    pub error: AppError,
}

/// [`choose_scope`], with a vanished selected OU as a value the caller can report on.
pub async fn choose_scope_checked(
    directory: &mut AnyDirectory,
    base: Option<&str>,
    config: Option<&AgentConfig>,
    warnings: &mut Vec<Warning>,
) -> Result<std::result::Result<(Scope, ScopeDescription), Vanished>> {
    if let Some(text) = base {
        let base = parse_dn_arg("--base", text)?;
        let description = ScopeDescription { from: "base", bases: vec![base.to_string()], excluded: vec![] };
        return Ok(Ok((Scope::new(vec![base], vec![]), description)));
    }
    let (_, resolution) = resolve_selection(directory, config).await?;
    warnings.extend(resolution.warnings());
    // A vanished exclusion took its users with it (warned above); a vanished selected OU
    // means the scope is not what the administrator chose: stop.
    let gone: Vec<String> = resolution.missing.iter().filter(|m| m.role == "selected").map(|m| m.dn.clone()).collect();
    if !gone.is_empty() {
        let error = AppError::new(
            ErrorKind::SafetyStop,
            format!("selected OUs no longer exist in the directory: {}", gone.join("; ")),
        )
        .with_hint("restore the OU, or take it out of the selection with `ausi select-ous --remove DN`");
        let selection = config.map(|c| c.scope.clone()).unwrap_or_default();
        let description = ScopeDescription {
            from: "selection",
            bases: selection.ous.iter().map(|o| o.dn.clone()).collect(),
            excluded: selection.excluded.iter().map(|o| o.dn.clone()).collect(),
        };
        return Ok(Err(Vanished { missing: gone, description, error }));
    }
    if resolution.selected.is_empty() {
        if matches!(directory, AnyDirectory::Ldif(_)) {
            let description = ScopeDescription { from: "export", bases: vec![], excluded: vec![] };
            return Ok(Ok((Scope::new(vec![Dn::default()], vec![]), description)));
        }
        return Err(no_selection());
    }
    let scope = resolution.scope();
    let description = ScopeDescription {
        from: "selection",
        bases: scope.bases().iter().map(Dn::to_string).collect(),
        excluded: resolution.excluded.iter().map(|o| o.dn.to_string()).collect(),
    };
    Ok(Ok((scope, description)))
}

pub fn no_selection() -> AppError {
    AppError::config("no OUs are selected for sync")
        .with_hint("choose them with `ausi select-ous --add OU=…`, or validate one sub-tree with --base DN")
}

/// Parses a DN given on the command line.
pub fn parse_dn_arg(flag: &str, text: &str) -> Result<Dn> {
    Dn::parse(text)
        .map_err(|e| AppError::usage(format!("{flag} {text:?} is not a valid distinguished name: {}", e.message)))
}

pub fn display_path(path: &Path) -> String {
    path.display().to_string()
}

//! The agent configuration file (`agent.toml`): versioned TOML, unknown keys rejected by name,
//! secrets only as references, written atomically without losing the administrator's comments.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{AppError, ErrorKind};
use crate::output::Warning;

/// The configuration format this release reads and writes.
pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Format version of this file; ausi refuses a version it does not know.
    pub version: u32,
    #[serde(default)]
    pub directory: DirectoryConfig,
    #[serde(default)]
    pub scope: ScopeConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantConfig>,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub validation: ValidationConfig,
    /// `[policies.NAME]`: the provisioning policies besides the built-in Default (checked when
    /// loaded; never written back by ausi, so only read).
    #[serde(default, skip_serializing)]
    pub policies: std::collections::BTreeMap<String, crate::policy::PolicyConfig>,
}

impl AgentConfig {
    /// The provisioning policy `[tenant] provisioning_policy` names (Default when none does).
    pub fn policy(&self) -> Result<crate::policy::Policy, crate::policy::PolicyError> {
        let name =
            self.tenant.as_ref().and_then(|t| t.provisioning_policy.as_deref()).unwrap_or(crate::policy::DEFAULT);
        crate::policy::Policy::resolve(name, &self.policies)
    }

    /// `state.db` beside the configuration unless `[sync] state_path` says otherwise.
    pub fn state_path(&self, config_path: &Path) -> PathBuf {
        self.sync.state_path.clone().unwrap_or_else(|| {
            config_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("state.db")
        })
    }
}

/// `[validation]`: the switchable validation rules, which `validate` and `sync` both apply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Quarantine a user (or hold a group) whose attributes sent to the tenant hold a control
    /// character or a bidirectional override or isolate (rule `text.control`).
    pub reject_control_characters: bool,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig { reject_control_characters: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// `ldaps://dc1.example.com` (preferred) or `ldap://dc1.example.com` with `starttls = true`;
    /// or a list of them, tried in order until one answers (failover).
    #[serde(deserialize_with = "one_or_many", serialize_with = "write_one_or_many")]
    pub url: Vec<String>,
    /// Find the domain's DCs in DNS (`_ldap._tcp.dc._msdcs.DOMAIN` SRV records), after the
    /// URLs listed in `url`.
    pub discover: bool,
    /// The AD domain's DNS name for discovery; by default from `base_dn` (`DC=example,DC=com`).
    pub domain: Option<String>,
    /// The AD site this machine is in: its DCs are tried first (`_ldap._tcp.SITE._sites.dc._msdcs`).
    pub site: Option<String>,
    /// `simple` (bind_dn + bind_password) or `kerberos` (SASL GSSAPI: the process's own
    /// identity on Windows, a keytab or credential cache on Linux; no stored password).
    pub bind: BindMethod,
    /// Kerberos on Linux: the client keytab, as `file:PATH` (else KRB5_CLIENT_KTNAME, else the
    /// credential cache). Never a secret in the file itself.
    pub keytab: Option<String>,
    /// Kerberos: the host name in the DC's service principal `ldap/HOST`, when it is not the
    /// URL's host (an IP address in the URL: the rootDSE's dnsHostName is used).
    pub spn_host: Option<String>,
    pub starttls: bool,
    /// The service account: a DN, `user@domain` or `DOMAIN\user`.
    pub bind_dn: Option<String>,
    /// A secret reference: `keyring:NAME`, `file:PATH` or `env:VAR` (never the password itself).
    pub bind_password: Option<String>,
    /// Naming context to work in; read from the rootDSE (`defaultNamingContext`) when absent.
    pub base_dn: Option<String>,
    /// PEM file with the CA certificate(s) that issued the DC's certificate.
    pub ca_file: Option<PathBuf>,
    /// Verify the DC's certificate (turning this off allows a man in the middle).
    pub tls_verify: bool,
    /// Allow a simple bind over an unencrypted `ldap://` connection (sends the password in clear).
    pub allow_plaintext_bind: bool,
    pub connect_timeout_secs: u64,
    pub operation_timeout_secs: u64,
    /// Entries per page in paged searches (RFC 2696); AD caps it at its MaxPageSize (1000).
    pub page_size: u32,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            url: Vec::new(),
            discover: false,
            domain: None,
            site: None,
            bind: BindMethod::Simple,
            keytab: None,
            spn_host: None,
            starttls: false,
            bind_dn: None,
            bind_password: None,
            base_dn: None,
            ca_file: None,
            tls_verify: true,
            allow_plaintext_bind: false,
            connect_timeout_secs: 10,
            operation_timeout_secs: 120,
            page_size: 500,
        }
    }
}

/// `directory.bind`: how ausi authenticates to the DC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BindMethod {
    /// LDAP simple bind as `bind_dn` with the password behind `bind_password`.
    #[default]
    Simple,
    /// SASL GSSAPI (Kerberos 5): SSPI on Windows, MIT Kerberos on Linux.
    Kerberos,
}

/// `url = "ldaps://dc1"` or `url = ["ldaps://dc1", "ldaps://dc2"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(
        match OneOrMany::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a URL (\"ldaps://dc1.example.com\") or a list of URLs"))?
        {
            OneOrMany::One(url) => vec![url],
            OneOrMany::Many(urls) => urls,
        },
    )
}

fn write_one_or_many<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    match urls {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

impl DirectoryConfig {
    /// The first configured DC URL (the one tools that need a single DC use).
    pub fn first_url(&self) -> Option<&str> {
        self.url.first().map(String::as_str)
    }

    /// The AD domain for DNS discovery: `domain`, else the `DC=` components of `base_dn`.
    pub fn discovery_domain(&self) -> Option<String> {
        if let Some(domain) = &self.domain {
            return Some(domain.trim_end_matches('.').to_owned());
        }
        let base = self.base_dn.as_deref()?;
        let labels: Vec<&str> = base
            .split(',')
            .filter_map(|rdn| {
                let (k, v) = rdn.split_once('=')?;
                k.trim().eq_ignore_ascii_case("dc").then(|| v.trim())
            })
            .collect();
        (!labels.is_empty()).then(|| labels.join("."))
    }
}

/// The selected OUs and the sub-trees left out of them, each stored by DN and objectGUID.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ScopeConfig {
    pub ous: Vec<OuRef>,
    pub excluded: Vec<OuRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OuRef {
    pub dn: String,
    /// objectGUID in canonical form; authoritative when the OU is renamed or moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
}

/// Written by `ausi register`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    pub home_realm: Option<String>,
    pub agent_name: Option<String>,
    pub provisioning_policy: Option<String>,
    pub scim_url: Option<String>,
    /// Secret reference for the tenant's bearer token.
    pub token: Option<String>,
    /// Whether the tenant answers the agent API (heartbeat, password changes); probed by register.
    pub agent_api: Option<bool>,
    /// What the tenant's /ServiceProviderConfig announced at registration (refreshed every run).
    pub capabilities: Option<TenantCapabilities>,
    /// Write the password changes queued in the tenant into AD on every `sync` (`register --password-sync`).
    pub password_sync: bool,
}

pub use crate::tenant::scim::Capabilities as TenantCapabilities;

/// When the installed task or timer runs: written by `ausi install-service`, read by `ausi status`
/// (which calls the agent unhealthy when the last good run is older than three intervals).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Minutes between incremental syncs (at least 1).
    pub interval_minutes: u32,
    /// Local time of the daily full sync, `HH:MM`.
    pub full_sync_at: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig { interval_minutes: 10, full_sync_at: "02:00".to_owned() }
    }
}

/// What to do with users and groups that left the scope or were deleted in AD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnRemove {
    /// Users: `active = false`. Groups (SCIM has no inactive group): left as they are.
    #[default]
    Deactivate,
    Delete,
    Ignore,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    pub on_remove: OnRemove,
    /// A run that would deactivate or delete more than this many objects stops (exit 3).
    pub max_deletions: u32,
    /// … or more than this percentage of the objects provisioned so far.
    pub max_deletion_percent: u32,
    /// A run that would change the userName of more than this many provisioned users stops
    /// (exit 3; a changed policy or a mass UPN change), until run with `--allow-renames N`.
    pub max_renames: u32,
    /// … or of more than this percentage of the users provisioned so far.
    pub max_rename_percent: u32,
    /// Tenant writes in flight at once, at most: `/Bulk` requests go out as many at once as make
    /// the tenant faster (see `sync::pace`).
    pub concurrency: u32,
    /// Use `/Bulk` when the tenant announces it.
    pub bulk: bool,
    pub request_timeout_secs: u64,
    /// The state store; default `state.db` beside this file.
    pub state_path: Option<PathBuf>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            on_remove: OnRemove::Deactivate,
            max_deletions: 500,
            max_deletion_percent: 10,
            max_renames: 500,
            max_rename_percent: 10,
            concurrency: 4,
            bulk: true,
            request_timeout_secs: 60,
            state_path: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("no configuration file at {}", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        let mut app = AppError::new(ErrorKind::Config, e.to_string());
        match &e {
            ConfigError::Missing { path } => {
                app = app.with_hint(format!(
                    "create it from examples/agent.toml, or point --config / AUSI_CONFIG at it (looked at {})",
                    path.display()
                ));
            }
            ConfigError::Read { source, .. } | ConfigError::Write { source, .. } => {
                app = app.caused_by(source);
            }
            ConfigError::Invalid { .. } => {}
        }
        app
    }
}

/// A loaded configuration and what was noticed while loading it.
#[derive(Debug)]
pub struct Loaded {
    pub config: AgentConfig,
    pub warnings: Vec<Warning>,
}

pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::Missing { path: path.to_owned() });
        }
        Err(source) => return Err(ConfigError::Read { path: path.to_owned(), source }),
    };
    let mut config = parse(&text).map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
    if let Some(dir) = path.parent() {
        anchor_paths(&mut config, dir);
    }
    let mut warnings = Vec::new();
    if let Some(w) = permission_warning(path) {
        warnings.push(w);
    }
    Ok(Loaded { config, warnings })
}

/// Relative paths in the file mean "next to this file", not "wherever the scheduler started us"
/// (a scheduled task starts in System32).
fn anchor_paths(config: &mut AgentConfig, dir: &Path) {
    for path in [config.directory.ca_file.as_mut(), config.sync.state_path.as_mut()].into_iter().flatten() {
        if path.is_relative() {
            *path = dir.join(&*path);
        }
    }
    if let Some(keytab) = config.directory.keytab.as_mut() {
        *keytab = anchor_reference(keytab, dir);
    }
    let secrets = [Some(&mut config.directory.bind_password), config.tenant.as_mut().map(|t| &mut t.token)];
    for reference in secrets.into_iter().flatten() {
        if let Some(text) = reference.as_mut() {
            *text = anchor_reference(text, dir);
        }
    }
}

/// The one rule for a secret reference in the configuration: `file:RELATIVE` is in the folder
/// `dir` of the configuration file; every other reference is taken as it is.
fn anchor_reference(reference: &str, dir: &Path) -> String {
    match reference.strip_prefix("file:") {
        Some(rel) if Path::new(rel).is_relative() => format!("file:{}", dir.join(rel).display()),
        _ => reference.to_owned(),
    }
}

/// Where a reference written into the configuration at `config_path` points, by the rule
/// [`load`] reads it with: what a writer (`register`, `install-service
/// --create-service-account`) stores the secret into, so that the next run finds it there.
/// `file:tenant.token` written into `sub/agent.toml` is `file:sub/tenant.token`.
pub fn resolve_reference(reference: &str, config_path: &Path) -> String {
    anchor_reference(reference, config_path.parent().unwrap_or(Path::new("")))
}

/// A value of the file as written (`table.key`), before relative paths are resolved: what
/// `register` keeps when it writes the `[tenant]` section again. `None` when absent.
pub fn written_value(path: &Path, table: &str, key: &str) -> Result<Option<String>, ConfigError> {
    let doc = read_document(path)?;
    Ok(doc.get(table).and_then(|t| t.get(key)).and_then(toml_edit::Item::as_str).map(str::to_owned))
}

/// Parses and checks a configuration text; the error names the offending key and line.
pub fn parse(text: &str) -> Result<AgentConfig, String> {
    let config: AgentConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
    if config.version != CONFIG_VERSION {
        return Err(format!(
            "configuration version {} is not supported by this ausi (it reads version {CONFIG_VERSION})",
            config.version
        ));
    }
    if config.directory.page_size == 0 || config.directory.page_size > 100_000 {
        return Err(format!(
            "directory.page_size = {} is out of range (1 to 100000; AD serves at most 1000 per page)",
            config.directory.page_size
        ));
    }
    check_directory(&config.directory)?;
    // Every policy is checked, not only the active one: a typo is found before it is switched on.
    for (name, policy) in &config.policies {
        crate::policy::Policy::compile(name, policy).map_err(|e| e.to_string())?;
    }
    config.policy().map_err(|e| format!("tenant.provisioning_policy: {}", e.message))?;
    for (key, value) in [
        ("directory.bind_password", &config.directory.bind_password),
        ("tenant.token", &config.tenant.as_ref().and_then(|t| t.token.clone())),
    ] {
        if let Some(value) = value {
            crate::secrets::SecretRef::parse(value).map_err(|e| format!("{key}: {e}"))?;
        }
    }
    Ok(config)
}

/// The `[directory]` keys that only make sense together.
fn check_directory(d: &DirectoryConfig) -> Result<(), String> {
    if d.url.iter().any(|u| u.trim().is_empty()) {
        return Err("directory.url: an empty URL in the list".to_owned());
    }
    if let Some(bad) = d.url.iter().find(|u| {
        let lower = u.to_ascii_lowercase();
        !lower.starts_with("ldaps://") && !lower.starts_with("ldap://")
    }) {
        return Err(format!(
            "directory.url {bad:?}: a domain controller is ldaps://HOST[:PORT] or ldap://HOST[:PORT] (an LDIF export is read with --source ldif:PATH)"
        ));
    }
    match d.bind {
        BindMethod::Kerberos => {
            if d.bind_password.is_some() {
                return Err("directory.bind_password is set, but bind = \"kerberos\" uses no password: remove bind_password (and its stored secret)".to_owned());
            }
            if let Some(keytab) = &d.keytab {
                let Some(path) = keytab.strip_prefix("file:") else {
                    return Err(format!(
                        "directory.keytab = {keytab:?}: give the keytab as file:PATH (a keytab holds keys, so it is a file only root (or the service account) can read)"
                    ));
                };
                if path.is_empty() {
                    return Err("directory.keytab: file: needs a path".to_owned());
                }
            }
        }
        BindMethod::Simple => {
            for (key, set) in [("keytab", d.keytab.is_some()), ("spn_host", d.spn_host.is_some())] {
                if set {
                    return Err(format!("directory.{key} is set, but it only applies to bind = \"kerberos\""));
                }
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn permission_warning(path: &Path) -> Option<Warning> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o022 != 0).then(|| {
        Warning::new(
            "config-writable-by-others",
            format!(
                "{} is writable by users other than its owner (mode {:o}): anyone who can edit it can point ausi at another directory or tenant; run `chmod go-w {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        )
    })
}

#[cfg(windows)]
fn permission_warning(_path: &Path) -> Option<Warning> {
    // %ProgramData%\ausi inherits an ACL that lets only Administrators and SYSTEM write.
    None
}

/// Replaces the `[scope]` section of the file at `path` (creating the file if needed) and keeps
/// every other line, comment and key as the administrator wrote it.
pub fn save_scope(path: &Path, scope: &ScopeConfig) -> Result<(), ConfigError> {
    let mut doc = read_document(path)?;
    let mut table = scope_table(scope);
    if let Some(old) = doc.get("scope").and_then(toml_edit::Item::as_table) {
        // Comments the administrator wrote above [scope] belong to that table: keep them.
        table.decor_mut().clone_from(old.decor());
    }
    place_table(&mut doc, "scope", table);
    write_document(path, &doc)
}

/// Replaces the `[tenant]` section (written by `register`), keeping everything else.
pub fn save_tenant(path: &Path, tenant: &TenantConfig) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { path: path.to_owned(), message };
    let mut doc = read_document(path)?;
    let text = toml::to_string(tenant).map_err(|e| invalid(e.to_string()))?;
    let fresh: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| invalid(e.to_string()))?;
    let mut table = fresh.as_table().clone();
    table.set_implicit(false);
    if let Some(old) = doc.get("tenant").and_then(toml_edit::Item::as_table) {
        table.decor_mut().clone_from(old.decor());
    }
    place_table(&mut doc, "tenant", table);
    write_document(path, &doc)
}

/// Sets keys of `[directory]` (the service account written by `install-service
/// --create-service-account`), keeping every other key, comment and section as it is; a key
/// that was there keeps its place and its comment.
pub fn save_directory_keys(path: &Path, keys: &[(&str, toml_edit::Value)]) -> Result<(), ConfigError> {
    let mut doc = read_document(path)?;
    let directory = &mut doc["directory"];
    if directory.is_none() {
        *directory = toml_edit::Item::Table(toml_edit::Table::new());
    }
    for (key, value) in keys {
        match directory.get_mut(key).and_then(toml_edit::Item::as_value_mut) {
            Some(old) => {
                let decor = old.decor().clone();
                *old = value.clone();
                *old.decor_mut() = decor;
            }
            None => directory[key] = toml_edit::Item::Value(value.clone()),
        }
    }
    write_document(path, &doc)
}

/// Replaces the `[schedule]` section (written by `install-service`), keeping everything else.
/// Returns whether the file changed.
pub fn save_schedule(path: &Path, schedule: &ScheduleConfig) -> Result<bool, ConfigError> {
    let mut doc = read_document(path)?;
    let mut table = toml_edit::Table::new();
    table.decor_mut().set_prefix("\n# When the installed task or timer runs, written by `ausi install-service`.\n");
    table["interval_minutes"] = toml_edit::value(i64::from(schedule.interval_minutes));
    table["full_sync_at"] = toml_edit::value(schedule.full_sync_at.as_str());
    if let Some(old) = doc.get("schedule").and_then(toml_edit::Item::as_table) {
        let same = old.get("interval_minutes").and_then(toml_edit::Item::as_integer)
            == Some(i64::from(schedule.interval_minutes))
            && old.get("full_sync_at").and_then(toml_edit::Item::as_str) == Some(schedule.full_sync_at.as_str())
            && old.len() == 2;
        if same {
            return Ok(false);
        }
        table.decor_mut().clone_from(old.decor());
    }
    place_table(&mut doc, "schedule", table);
    write_document(path, &doc)?;
    Ok(true)
}

/// Puts `table` (and the tables nested in it, such as `[tenant.capabilities]`) where a reader
/// expects it: where the old table of that name was, or else at the end of the file. Comments
/// at the very end of the file belong to the table above them (the example's `# state_path`
/// line under `[sync]`), so a new table goes below them, never between a table and its comments.
fn place_table(doc: &mut toml_edit::DocumentMut, name: &str, mut table: toml_edit::Table) {
    let position = match doc.get(name).and_then(toml_edit::Item::as_table) {
        Some(old) => old.position(),
        None => {
            let trailing = doc.trailing().as_str().unwrap_or_default().to_owned();
            if !trailing.trim().is_empty() {
                let prefix =
                    table.decor().prefix().and_then(toml_edit::RawString::as_str).unwrap_or_default().to_owned();
                let joined = format!("{}\n{}", trailing.trim_end_matches('\n'), prefix);
                table.decor_mut().set_prefix(joined);
                doc.set_trailing("");
            }
            let last = doc.iter().filter_map(|(_, item)| item.as_table()).filter_map(last_position).max();
            Some(last.map_or(0, |p| p + 1))
        }
    };
    set_position(&mut table, position);
    doc[name] = toml_edit::Item::Table(table);
}

/// Gives `table` and every table nested in it one position: they are written together, the
/// parent first, in the place of the parent.
fn set_position(table: &mut toml_edit::Table, position: Option<isize>) {
    table.set_position(position);
    for (_, item) in table.iter_mut() {
        match item {
            toml_edit::Item::Table(t) => set_position(t, position),
            toml_edit::Item::ArrayOfTables(array) => {
                for t in array.iter_mut() {
                    set_position(t, position);
                }
            }
            _ => {}
        }
    }
}

/// The highest document position of `table` and the tables nested in it.
fn last_position(table: &toml_edit::Table) -> Option<isize> {
    let nested = table.iter().filter_map(|(_, item)| item.as_table()).filter_map(last_position);
    let arrays = table
        .iter()
        .filter_map(|(_, item)| item.as_array_of_tables())
        .flat_map(|a| a.iter().filter_map(last_position).collect::<Vec<_>>());
    table.position().into_iter().chain(nested).chain(arrays).max()
}

fn read_document(path: &Path) -> Result<toml_edit::DocumentMut, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => text
            .parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Invalid { path: path.to_owned(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut doc = toml_edit::DocumentMut::new();
            doc["version"] = toml_edit::value(i64::from(CONFIG_VERSION));
            Ok(doc)
        }
        Err(source) => Err(ConfigError::Read { path: path.to_owned(), source }),
    }
}

fn write_document(path: &Path, doc: &toml_edit::DocumentMut) -> Result<(), ConfigError> {
    let text = doc.to_string();
    // Never write a file that the next run cannot read.
    parse(&text).map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
    write_atomic(path, text.as_bytes(), 0o640).map_err(|source| ConfigError::Write { path: path.to_owned(), source })
}

fn scope_table(scope: &ScopeConfig) -> toml_edit::Table {
    let mut table = toml_edit::Table::new();
    table.decor_mut().set_prefix("\n# OUs to synchronise, maintained by `ausi select-ous`.\n");
    for (key, list) in [("ous", &scope.ous), ("excluded", &scope.excluded)] {
        let mut array = toml_edit::ArrayOfTables::new();
        for ou in list {
            let mut t = toml_edit::Table::new();
            t["dn"] = toml_edit::value(ou.dn.as_str());
            if let Some(guid) = &ou.guid {
                t["guid"] = toml_edit::value(guid.as_str());
            }
            array.push(t);
        }
        if array.is_empty() {
            table[key] = toml_edit::value(toml_edit::Array::new());
        } else {
            table[key] = toml_edit::Item::ArrayOfTables(array);
        }
    }
    table
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`, so a
/// crash leaves either the old or the new file, never half of one.
///
/// A new file gets `mode`; a file that exists keeps its owner, group and mode, so a rewrite run
/// as root (or as another administrator) never takes the file away from the service user that
/// reads it. When the owner cannot be kept (a non-root user rewriting someone else's file), the
/// write is refused and the old file stays as it was.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let existing = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // The existing mode, or `mode`; narrowed by the umask here and set exactly below.
            options.mode(
                existing.as_ref().map_or(mode, |m| std::os::unix::fs::PermissionsExt::mode(&m.permissions())) & 0o777,
            );
        }
        // Windows: the new file takes the folder's inherited ACL (an explicit ACL on the old
        // file is not kept: that needs ReplaceFileW, and this crate has no unsafe code).
        #[cfg(not(unix))]
        let _ = (mode, &existing);
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        if let Some(old) = &existing {
            keep_owner_and_mode(&file, old, path)?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Gives the new file (still empty) the owner, group and mode of the file it replaces.
#[cfg(unix)]
fn keep_owner_and_mode(file: &fs::File, old: &fs::Metadata, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let new = file.metadata()?;
    if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
        std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot keep the owner {}:{} of {} ({e}); nothing was changed: run the command as root or as the file's owner",
                    old.uid(),
                    old.gid(),
                    path.display()
                ),
            )
        })?;
    }
    // After chown, which may clear set-id bits: the exact old mode, not narrowed by the umask.
    file.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_keys_are_set_in_place_keeping_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let text = "# top\nversion = 1\n\n# the DC\n[directory]\nurl = \"ldaps://dc1\" # primary\nbind_dn = \"CN=old,DC=x\" # who\n\n[sync]\nbulk = false\n";
        fs::write(&path, text).unwrap();
        save_directory_keys(&path, &[("bind_dn", "CN=new,DC=x".into()), ("bind_password", "file:bind.pw".into())])
            .unwrap();
        let written = fs::read_to_string(&path).unwrap();
        for kept in ["# top", "# the DC", "url = \"ldaps://dc1\" # primary", "# who", "bulk = false"] {
            assert!(written.contains(kept), "{kept:?} lost:\n{written}");
        }
        let config = parse(&written).unwrap();
        assert_eq!(config.directory.bind_dn.as_deref(), Some("CN=new,DC=x"));
        assert_eq!(config.directory.bind_password.as_deref(), Some("file:bind.pw"));
        assert!(!config.sync.bulk);

        // No file yet: one is created with the version and [directory].
        let fresh = dir.path().join("new.toml");
        save_directory_keys(&fresh, &[("bind_dn", "CN=svc,DC=x".into())]).unwrap();
        assert_eq!(load(&fresh).unwrap().config.directory.bind_dn.as_deref(), Some("CN=svc,DC=x"));
    }

    #[test]
    fn policies_are_checked_when_loaded_and_a_bad_one_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let good = "version = 1\n[tenant]\nprovisioning_policy = \"Rewrite\"\n\n[policies.Rewrite.user]\n\"userName\" = '[mail]'\n";
        fs::write(&path, good).unwrap();
        let config = load(&path).unwrap().config;
        assert_eq!(config.policy().unwrap().name, "Rewrite");
        // A policy that is not active is checked too.
        let bad = format!("{good}\n[policies.Other.user]\n\"shoeSize\" = '[x]'\n");
        fs::write(&path, bad).unwrap();
        let e = AppError::from(load(&path).unwrap_err());
        assert_eq!(e.exit_status(), crate::exit::ExitStatus::Config);
        assert!(e.to_string().contains("policies.Other: user.\"shoeSize\""), "{e}");
        // The active policy must exist.
        let e = parse("version = 1\n[tenant]\nprovisioning_policy = \"Nope\"\n").unwrap_err();
        assert!(e.starts_with("tenant.provisioning_policy: no provisioning policy \"Nope\""), "{e}");
        assert!(parse("version = 1\n").unwrap().policy().unwrap().is_default());
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c = parse("version = 1\n").unwrap();
        assert!(c.directory.tls_verify);
        assert!(!c.directory.allow_plaintext_bind);
        assert_eq!(c.directory.page_size, 500);
        assert!(c.scope.ous.is_empty());
    }

    #[test]
    fn url_is_one_or_many_and_old_configs_stay_valid() {
        let one = parse("version = 1\n[directory]\nurl = \"ldaps://dc1\"\n").unwrap();
        assert_eq!(one.directory.url, vec!["ldaps://dc1"]);
        assert_eq!(one.directory.bind, BindMethod::Simple);
        assert!(!one.directory.discover);
        let many = parse("version = 1\n[directory]\nurl = [\"ldaps://dc1\", \"ldaps://dc2:636\"]\n").unwrap();
        assert_eq!(many.directory.url, vec!["ldaps://dc1", "ldaps://dc2:636"]);
        assert!(parse("version = 1\n").unwrap().directory.url.is_empty());
        let e = parse("version = 1\n[directory]\nurl = 5\n").unwrap_err();
        assert!(e.contains("list of URLs"), "{e}");
        assert!(parse("version = 1\n[directory]\nurl = [\"\"]\n").unwrap_err().contains("empty URL"));
        let e = parse("version = 1\n[directory]\nurl = [\"ldaps://dc1\", \"https://dc2\"]\n").unwrap_err();
        assert!(e.contains("https://dc2") && e.contains("ldaps://HOST"), "{e}");
        // Written back as it was given: one string, or a list.
        let text = toml::to_string(&one.directory).unwrap();
        assert!(text.contains("url = \"ldaps://dc1\""), "{text}");
        let text = toml::to_string(&many.directory).unwrap();
        assert!(text.contains("url = [\"ldaps://dc1\", \"ldaps://dc2:636\"]"), "{text}");
    }

    #[test]
    fn kerberos_keys_are_checked() {
        let k =
            parse("version = 1\n[directory]\nbind = \"kerberos\"\nkeytab = \"file:/etc/ausi/ausi.keytab\"\n").unwrap();
        assert_eq!(k.directory.bind, BindMethod::Kerberos);
        let e = parse("version = 1\n[directory]\nbind = \"kerberos\"\nbind_password = \"file:x\"\n").unwrap_err();
        assert!(e.contains("uses no password"), "{e}");
        let e = parse("version = 1\n[directory]\nbind = \"kerberos\"\nkeytab = \"/etc/k\"\n").unwrap_err();
        assert!(e.contains("file:PATH"), "{e}");
        let e = parse("version = 1\n[directory]\nkeytab = \"file:/k\"\n").unwrap_err();
        assert!(e.contains("only applies to bind"), "{e}");
        let e = parse("version = 1\n[directory]\nbind = \"ntlm\"\n").unwrap_err();
        assert!(e.contains("ntlm"), "{e}");
        // Discovery's domain: given, or from base_dn.
        let d = parse("version = 1\n[directory]\ndiscover = true\nbase_dn = \"DC=corp,DC=example,DC=com\"\n").unwrap();
        assert_eq!(d.directory.discovery_domain().as_deref(), Some("corp.example.com"));
        let d = parse("version = 1\n[directory]\ndiscover = true\ndomain = \"ad.example.org.\"\n").unwrap();
        assert_eq!(d.directory.discovery_domain().as_deref(), Some("ad.example.org"));
    }

    #[test]
    fn relative_keytab_is_next_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        fs::write(&path, "version = 1\n[directory]\nbind = \"kerberos\"\nkeytab = \"file:ausi.keytab\"\n").unwrap();
        let c = load(&path).unwrap().config;
        assert_eq!(c.directory.keytab, Some(format!("file:{}", dir.path().join("ausi.keytab").display())));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("version = 1\n[directory]\nurll = \"ldaps://x\"\n").unwrap_err();
        assert!(e.contains("urll"), "{e}");
        let e = parse("version = 1\nbogus = 2\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn version_is_required_and_checked() {
        assert!(parse("").unwrap_err().contains("version"));
        assert!(parse("version = 2\n").unwrap_err().contains("version 2"));
    }

    #[test]
    fn plain_password_in_config_is_refused() {
        let e = parse("version = 1\n[directory]\nbind_password = \"Secret123!\"\n").unwrap_err();
        assert!(e.contains("directory.bind_password"), "{e}");
        assert!(!e.contains("Secret123!"), "the refused value must not be echoed: {e}");
    }

    #[test]
    fn save_scope_keeps_comments_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        fs::write(&path, "# my comment\nversion = 1\n\n[directory]\n# the DC\nurl = \"ldaps://dc1\"\n").unwrap();
        let scope = ScopeConfig {
            ous: vec![OuRef { dn: "OU=Sales,DC=example,DC=test".into(), guid: Some("0011".into()) }],
            excluded: vec![],
        };
        save_scope(&path, &scope).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("# my comment") && text.contains("# the DC"), "{text}");
        let loaded = load(&path).unwrap().config;
        assert_eq!(loaded.scope, scope);
        assert_eq!(loaded.directory.first_url(), Some("ldaps://dc1"));
        // and again, replacing the previous scope
        save_scope(&path, &ScopeConfig::default()).unwrap();
        assert_eq!(load(&path).unwrap().config.scope, ScopeConfig::default());
    }

    #[test]
    fn save_scope_keeps_comments_above_the_scope_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        fs::write(&path, "version = 1\n\n# [directory]\n# url = \"ldaps://dc1\"\n\n[scope]\nous = []\n").unwrap();
        save_scope(&path, &ScopeConfig::default()).unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains("# url = \"ldaps://dc1\""));
    }

    #[test]
    fn save_scope_creates_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/agent.toml");
        save_scope(&path, &ScopeConfig::default()).unwrap();
        assert_eq!(load(&path).unwrap().config.version, CONFIG_VERSION);
    }

    #[test]
    fn relative_paths_are_next_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        fs::write(&path, "version = 1\n[directory]\nca_file = \"ca.pem\"\nbind_password = \"file:bind.pw\"\n").unwrap();
        let c = load(&path).unwrap().config;
        assert_eq!(c.directory.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(c.directory.bind_password, Some(format!("file:{}", dir.path().join("bind.pw").display())));
    }

    /// A writer stores a secret where [`resolve_reference`] says and writes the reference as
    /// given; [`load`] then finds it there, whatever folder the process runs in.
    #[test]
    fn written_references_resolve_where_load_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sub/agent.toml");
        for (written, at) in [
            ("file:tenant.token", dir.path().join("sub/tenant.token")),
            ("file:../secrets/t", dir.path().join("sub/../secrets/t")),
            ("file:/etc/ausi/t", PathBuf::from("/etc/ausi/t")),
        ] {
            assert_eq!(resolve_reference(written, &config), format!("file:{}", at.display()));
            save_tenant(&config, &TenantConfig { token: Some(written.into()), ..Default::default() }).unwrap();
            assert_eq!(written_value(&config, "tenant", "token").unwrap().as_deref(), Some(written));
            let loaded = load(&config).unwrap().config.tenant.unwrap().token.unwrap();
            assert_eq!(loaded, resolve_reference(written, &config), "{written}");
        }
        // A configuration named relative to the working folder: relative to it, as the OS opens it.
        assert_eq!(resolve_reference("file:tenant.token", Path::new("sub/agent.toml")), "file:sub/tenant.token");
        assert_eq!(resolve_reference("file:tenant.token", Path::new("agent.toml")), "file:tenant.token");
        assert_eq!(resolve_reference("keyring:ausi/x", &config), "keyring:ausi/x");
        assert_eq!(resolve_reference("env:X", &config), "env:X");
        assert_eq!(written_value(&dir.path().join("none.toml"), "tenant", "token").unwrap(), None);
    }

    #[test]
    fn save_tenant_round_trips_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        fs::write(&path, "version = 1\n# my DC\n[directory]\nurl = \"ldaps://dc1\"\n").unwrap();
        let tenant = TenantConfig {
            home_realm: Some("https://acme.example.com".into()),
            agent_name: Some("dc1".into()),
            token: Some("file:tenant.token".into()),
            agent_api: Some(false),
            capabilities: Some(TenantCapabilities { patch: true, bulk_max_operations: 1000, ..Default::default() }),
            ..Default::default()
        };
        save_tenant(&path, &tenant).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("# my DC"), "{text}");
        let loaded = load(&path).unwrap().config;
        assert_eq!(loaded.directory.first_url(), Some("ldaps://dc1"));
        let t = loaded.tenant.unwrap();
        assert_eq!(t.capabilities, tenant.capabilities);
        assert_eq!(t.token, Some(format!("file:{}", dir.path().join("tenant.token").display())));
    }

    #[test]
    fn save_schedule_keeps_the_rest_and_reports_no_change_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        fs::write(&path, "version = 1\n# my DC\n[directory]\nurl = \"ldaps://dc1\"\n").unwrap();
        let schedule = ScheduleConfig { interval_minutes: 5, full_sync_at: "03:30".into() };
        assert!(save_schedule(&path, &schedule).unwrap());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("# my DC") && text.trim_end().ends_with("full_sync_at = \"03:30\""), "{text}");
        assert_eq!(load(&path).unwrap().config.schedule, schedule);
        assert!(!save_schedule(&path, &schedule).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }

    #[cfg(unix)]
    #[test]
    fn world_writable_config_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        fs::write(&path, "version = 1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.warnings[0].code, "config-writable-by-others");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load(&path).unwrap().warnings.is_empty());
    }
}

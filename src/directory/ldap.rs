//! Active Directory over LDAP (ldap3): LDAPS or StartTLS with certificate verification, a simple
//! or a Kerberos (SASL GSSAPI) bind, rootDSE discovery, paged subtree searches (RFC 2696) and range retrieval of `member`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};

use super::filter::Filter;
use super::{
    Change, ChangeTracking, Container, Decoded, DirObject, Directory, DirectoryError, DirectoryInfo, Dn,
    KerberosProblem, ObjectGuid, ObjectKind, ObjectQuery, RawEntry, ReadAttributes, ReadSummary, SAM_USER_ACCOUNT,
    SkippedDc, decode, decode_with,
};
use crate::error::ErrorKind;
use crate::password::SecretBytes;
use crate::secrets::{ExposeSecret, SecretString};

/// LDAP_SERVER_SHOW_DELETED_OID: return tombstones too (read rights suffice).
const SHOW_DELETED: &str = "1.2.840.113556.1.4.417";
/// The forest's tombstone lifetime when `tombstoneLifetime` is not set (Microsoft's documented default).
const DEFAULT_TOMBSTONE_LIFETIME_DAYS: u64 = 60;

/// How many `member` values to ask for per read. AD's MaxValRange is 1500.
pub const DEFAULT_RANGE_STEP: u32 = 1500;

/// How to authenticate to the DC.
#[derive(Clone)]
pub enum Bind {
    /// No bind: the rootDSE only, on AD.
    Anonymous,
    /// A simple bind with the account (DN, `user@domain` or `DOMAIN\user`) and its password.
    Simple { account: String, password: SecretString },
    /// SASL GSSAPI (Kerberos 5): the process's own credentials (on Windows its logon identity
    /// through SSPI: SYSTEM is the DC's or member's computer account, a gMSA itself; on Linux
    /// the client keytab or the credential cache). No password passes through ausi.
    Kerberos {
        /// The host part of the DC's service principal `ldap/HOST`; by default the URL's host,
        /// or, when that is an IP address, the `dnsHostName` the DC's rootDSE announces.
        spn_host: Option<String>,
    },
}

impl Bind {
    /// Who the bind is as, for messages (never a secret).
    pub fn describe(&self) -> String {
        match self {
            Bind::Anonymous => "anonymous".to_owned(),
            Bind::Simple { account, .. } => account.clone(),
            Bind::Kerberos { .. } => "this process's Kerberos identity".to_owned(),
        }
    }
}

pub struct LdapSettings {
    pub url: String,
    pub starttls: bool,
    pub bind: Bind,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub allow_plaintext_bind: bool,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub page_size: u32,
    /// The naming context to use instead of the rootDSE's defaultNamingContext.
    pub base_dn: Option<String>,
    pub range_step: u32,
}

pub struct LdapDirectory {
    ldap: Ldap,
    url: String,
    operation_timeout: Duration,
    page_size: u32,
    range_step: u32,
    base_dn: Option<String>,
    info: Option<DirectoryInfo>,
    encrypted: bool,
    /// DCs tried before this one that did not answer.
    skipped: Vec<SkippedDc>,
    /// Attributes read besides the fixed ones (what the provisioning policy reads).
    /// The attributes of users and groups a read asks for (the active policy's and ausi's own).
    pub(super) attributes: ReadAttributes,
}

/// Whether a failed connection to one DC is a reason to try the next: it did not answer, or
/// answered busy or unavailable, or its TLS failed (a DC with an expired certificate).
/// Rejected credentials and configuration errors are the same on every DC: no retry, so a
/// wrong password is not tried against every DC of the domain (lockouts).
pub fn is_failover_error(e: &DirectoryError) -> bool {
    match e {
        DirectoryError::Unreachable { .. } | DirectoryError::Timeout { .. } | DirectoryError::Tls { .. } => true,
        DirectoryError::Ldap { code, .. } => matches!(code, 51 | 52 | 81),
        DirectoryError::Kerberos { problem, .. } => *problem == KerberosProblem::KdcUnreachable,
        _ => false,
    }
}

/// Whether the connection is encrypted before the bind.
pub fn is_encrypted(url: &str, starttls: bool) -> bool {
    url.to_ascii_lowercase().starts_with("ldaps://") || starttls
}

fn check_url(url: &str) -> Result<(), DirectoryError> {
    let invalid = |reason: &str| DirectoryError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("ldaps://")
        .or_else(|| lower.strip_prefix("ldap://"))
        .ok_or_else(|| invalid("the scheme must be ldaps:// or ldap://"))?;
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() {
        return Err(invalid("no host name"));
    }
    if host_port.contains('/') || host_port.contains('?') {
        return Err(invalid("give only the host and port; set the base DN with directory.base_dn"));
    }
    Ok(())
}

impl LdapDirectory {
    /// Connects, secures and binds. Refuses a simple bind over an unencrypted connection
    /// before anything is sent, unless explicitly allowed.
    pub async fn connect(settings: LdapSettings) -> Result<LdapDirectory, DirectoryError> {
        let url = settings.url.clone();
        check_url(&url)?;
        // Kerberos sends no password: over plain ldap:// ldap3 negotiates the SASL privacy layer
        // (sign and seal), so only a simple bind is refused there.
        if let Bind::Simple { account, .. } = &settings.bind
            && !is_encrypted(&url, settings.starttls)
            && !settings.allow_plaintext_bind
        {
            return Err(DirectoryError::PlaintextBind { url, account: account.clone() });
        }
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(settings.connect_timeout)
            .set_starttls(settings.starttls && !url.to_ascii_lowercase().starts_with("ldaps://"))
            .set_no_tls_verify(!settings.tls_verify);
        if settings.tls_verify
            && let Some(ca_file) = &settings.ca_file
        {
            conn_settings = conn_settings.set_config(tls_config(ca_file, &url)?);
        }
        let connect = LdapConnAsync::with_settings(conn_settings, &url);
        let (conn, ldap) = match tokio::time::timeout(settings.connect_timeout, connect).await {
            Err(_) => {
                return Err(DirectoryError::Timeout {
                    url,
                    operation: "connect",
                    seconds: settings.connect_timeout.as_secs(),
                });
            }
            Ok(result) => result.map_err(|e| connect_error(&url, settings.connect_timeout, e))?,
        };
        ldap3::drive!(conn);
        let encrypted = is_encrypted(&url, settings.starttls);
        let mut directory = LdapDirectory {
            ldap,
            url,
            operation_timeout: settings.operation_timeout,
            page_size: settings.page_size,
            range_step: settings.range_step.max(1),
            base_dn: settings.base_dn,
            info: None,
            encrypted,
            skipped: Vec::new(),
            attributes: ReadAttributes::default(),
        };
        match &settings.bind {
            Bind::Anonymous => {}
            Bind::Simple { account, password } => {
                let ldap = &mut directory.ldap;
                ldap.with_timeout(settings.operation_timeout);
                let result = ldap
                    .simple_bind(account, password.expose_secret())
                    .await
                    .map_err(|e| op_error(&directory.url, "bind", settings.operation_timeout, e))?;
                if result.rc != 0 {
                    return Err(bind_error(account, result.rc, &result.text));
                }
            }
            Bind::Kerberos { spn_host } => directory.kerberos_bind(spn_host.as_deref()).await?,
        }
        tracing::info!(url = %directory.url, "connected to the directory");
        Ok(directory)
    }

    /// Connects to the first of `urls` that answers, with the settings `settings` makes for
    /// each; the DCs passed over are in [`DirectoryInfo::skipped`]. One URL: its own error.
    /// With `writable`, a read-only DC (RODC) is passed over too: writes go to a writable DC.
    pub async fn connect_any(
        urls: &[String],
        settings: impl Fn(&str) -> LdapSettings,
        writable: bool,
    ) -> Result<LdapDirectory, DirectoryError> {
        let mut skipped: Vec<SkippedDc> = Vec::new();
        let mut kinds = Vec::new();
        for url in urls {
            let connected = match LdapDirectory::connect(settings(url)).await {
                Ok(mut directory) if writable => match directory.is_read_only().await {
                    Ok(false) => Ok(directory),
                    Ok(true) => Err(DirectoryError::ReadOnlyDc { url: url.clone() }),
                    Err(e) => Err(e),
                },
                other => other,
            };
            match connected {
                Ok(mut directory) => {
                    for s in &skipped {
                        tracing::warn!(url = %s.url, error = %s.error, "domain controller skipped");
                    }
                    directory.skipped = skipped;
                    return Ok(directory);
                }
                Err(e) if urls.len() == 1 => return Err(e),
                Err(e) if is_failover_error(&e) || matches!(e, DirectoryError::ReadOnlyDc { .. }) => {
                    kinds.push(e.kind());
                    skipped.push(SkippedDc { url: url.clone(), error: e.to_string() });
                }
                Err(e) => return Err(e),
            }
        }
        if skipped.is_empty() {
            return Err(DirectoryError::InvalidUrl {
                url: String::new(),
                reason: "no domain controller to connect to".into(),
            });
        }
        // Temporary when any DC was merely down; when every one failed its TLS, a configuration error.
        let kind = if kinds.contains(&ErrorKind::Temporary) { ErrorKind::Temporary } else { kinds[0] };
        Err(DirectoryError::NoDcAnswered { tried: skipped, kind })
    }

    /// A SASL GSSAPI bind to `ldap/HOST`. Over TLS ldap3 sends the channel binding
    /// (tls-server-end-point) and asks for no SASL layer; over plain LDAP it asks for the
    /// privacy layer, so the session is signed and sealed by Kerberos.
    async fn kerberos_bind(&mut self, spn_host: Option<&str>) -> Result<(), DirectoryError> {
        let host = match spn_host {
            Some(host) => host.to_owned(),
            None => match url_host(&self.url) {
                Some(host) if host.parse::<std::net::IpAddr>().is_err() => host,
                // An IP address names no service principal: ask the DC (anonymously) for its name.
                _ => {
                    let root = self.read_base("", &["dnsHostName"]).await?.unwrap_or_default();
                    root.values("dnshostname").first().map(|v| String::from_utf8_lossy(v).into_owned()).ok_or_else(
                        || DirectoryError::Kerberos {
                            problem: KerberosProblem::WrongSpn,
                            spn: "ldap/?".to_owned(),
                            detail: format!(
                                "{} is an IP address and the DC's rootDSE names no dnsHostName: set directory.spn_host",
                                self.url
                            ),
                        },
                    )?
                }
            },
        };
        let spn = format!("ldap/{host}");
        self.gssapi_bind(host, spn).await
    }

    /// A build without Kerberos (Unix without the `kerberos` feature) says so plainly.
    #[cfg(not(any(windows, feature = "kerberos")))]
    async fn gssapi_bind(&mut self, _host: String, spn: String) -> Result<(), DirectoryError> {
        Err(DirectoryError::Kerberos {
            problem: KerberosProblem::NotBuiltIn,
            spn,
            detail: "this build of ausi has no Kerberos support: build it with `cargo build --release --features kerberos` (needs libkrb5-dev and libclang-dev)".into(),
        })
    }

    #[cfg(any(windows, feature = "kerberos"))]
    async fn gssapi_bind(&mut self, host: String, spn: String) -> Result<(), DirectoryError> {
        self.ldap.with_timeout(self.operation_timeout);
        let result = match self.ldap.sasl_gssapi_bind(&host).await {
            Ok(result) => result,
            Err(LdapError::GssapiOperationError(detail)) => {
                return Err(DirectoryError::Kerberos { problem: kerberos_problem(&detail), spn, detail });
            }
            Err(e) => return Err(op_error(&self.url, "bind", self.operation_timeout, e)),
        };
        match result.rc {
            0 => Ok(()),
            49 => Err(DirectoryError::BindRejected {
                account: format!("Kerberos ({spn})"),
                reason: ad_bind_reason(&result.text).to_owned(),
                diagnostic: result.text,
            }),
            rc => Err(bind_error(&spn, rc, &result.text)),
        }
    }

    /// Whether this DC is a read-only DC (RODC): its rootDSE lists the partial-secrets
    /// capability. An RODC refuses (refers) writes, so passwords are never written there.
    pub async fn is_read_only(&mut self) -> Result<bool, DirectoryError> {
        let root = self.read_base("", &["supportedCapabilities"]).await?.unwrap_or_default();
        let capabilities: Vec<String> =
            root.values("supportedcapabilities").iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        Ok(is_rodc(&capabilities))
    }

    /// Whether the connection is LDAPS or upgraded with StartTLS (AD takes passwords only then).
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every entry under `base` (subtree) matching `filter`, with `attrs`.
    pub async fn search(
        &mut self,
        base: &Dn,
        filter: &Filter,
        attrs: &[&str],
    ) -> Result<Vec<RawEntry>, DirectoryError> {
        let mut out = Vec::new();
        self.paged_search(base, Scope::Subtree, filter, attrs, false, &mut |raw| {
            out.push(raw);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// One object's `attrs`, or `None` when it does not exist.
    pub async fn read(&mut self, dn: &Dn, attrs: &[&str]) -> Result<Option<RawEntry>, DirectoryError> {
        match self.read_base(&dn.to_string(), attrs).await {
            Err(DirectoryError::NoSuchObject { .. }) => Ok(None),
            other => other,
        }
    }

    /// One object's `attrs` read with request `controls` (e.g. the SD flags control, to read
    /// only the DACL of `nTSecurityDescriptor`), or `None` when it does not exist.
    pub async fn read_with_controls(
        &mut self,
        dn: &Dn,
        attrs: &[&str],
        controls: Vec<RawControl>,
    ) -> Result<Option<RawEntry>, DirectoryError> {
        if !controls.is_empty() {
            self.ldap.with_controls(controls);
        }
        self.read(dn, attrs).await
    }

    /// An LDAP modify. Password values are [`SecretBytes`] so a password never passes through a
    /// `String`; binary values such as a security descriptor can be plain `Vec<u8>`.
    pub async fn modify<V: AsRef<[u8]> + Eq + std::hash::Hash>(
        &mut self,
        dn: &Dn,
        mods: Vec<Mod<V>>,
        controls: Vec<RawControl>,
    ) -> Result<(), DirectoryError> {
        let dn = dn.to_string();
        self.ldap.with_timeout(self.operation_timeout);
        if !controls.is_empty() {
            self.ldap.with_controls(controls);
        }
        let result =
            self.ldap.modify(&dn, mods).await.map_err(|e| op_error(&self.url, "modify", self.operation_timeout, e))?;
        check_rc("modify", &dn, result.rc, &result.text)
    }

    /// An LDAP add of one object.
    pub async fn add(
        &mut self,
        dn: &Dn,
        attrs: Vec<(SecretBytes, HashSet<SecretBytes>)>,
    ) -> Result<(), DirectoryError> {
        let dn = dn.to_string();
        self.ldap.with_timeout(self.operation_timeout);
        let result =
            self.ldap.add(&dn, attrs).await.map_err(|e| op_error(&self.url, "add", self.operation_timeout, e))?;
        check_rc("add", &dn, result.rc, &result.text)
    }

    /// Every value of `member` of one group, read in explicit ranges (`member;range=0-1499`,
    /// `member;range=1500-2999`, …) as AD requires for groups above its MaxValRange.
    /// Every member of `group` (normalised DNs), following AD's ranged retrieval.
    pub async fn group_members(&mut self, group: &Dn) -> Result<Vec<String>, DirectoryError> {
        let mut members = Vec::new();
        let mut start: u64 = 0;
        loop {
            let attr = format!("member;range={start}-{}", start + u64::from(self.range_step) - 1);
            let raw = self.read_base(&group.to_string(), &[attr.as_str()]).await?;
            let Some(raw) = raw else {
                return Err(DirectoryError::NoSuchObject { dn: group.to_string() });
            };
            let (values, end) = raw.ranged("member");
            for v in values {
                let text = String::from_utf8_lossy(v);
                let dn = Dn::parse(&text)
                    .map_err(|e| DirectoryError::BadDn { dn: text.clone().into_owned(), detail: e.message })?;
                members.push(dn.normalized());
            }
            match end {
                // `member;range=N-M`: more to come from M+1.
                Some(Some(end)) if end >= start => start = end + 1,
                // `member;range=N-*` (last chunk), or a plain `member` (server did not range it).
                _ => return Ok(members),
            }
        }
    }

    async fn read_base(&mut self, dn: &str, attrs: &[&str]) -> Result<Option<RawEntry>, DirectoryError> {
        self.ldap.with_timeout(self.operation_timeout);
        let result = self.ldap.search(dn, Scope::Base, "(objectClass=*)", attrs.to_vec()).await;
        let result = result.map_err(|e| op_error(&self.url, "search", self.operation_timeout, e))?;
        let (entries, res) = (result.0, result.1);
        if res.rc == 32 {
            return Err(DirectoryError::NoSuchObject { dn: dn.to_owned() });
        }
        check_rc("search", dn, res.rc, &res.text)?;
        Ok(entries.into_iter().find(|e| !e.is_ref()).map(|e| raw_entry(SearchEntry::construct(e))))
    }

    /// A paged subtree (or one-level) search; every entry goes to `each`. Any failure, on any
    /// page, fails the whole read: a partial listing is never passed off as complete.
    async fn paged_search(
        &mut self,
        base: &Dn,
        scope: Scope,
        filter: &Filter,
        attrs: &[&str],
        show_deleted: bool,
        each: &mut dyn FnMut(RawEntry) -> Result<(), DirectoryError>,
    ) -> Result<(), DirectoryError> {
        let base_text = base.to_string();
        let filter_text = filter.to_string();
        tracing::debug!(base = %base_text, filter = %filter_text, "paged search");
        let adapters: Vec<Box<dyn Adapter<'_, &str, Vec<&str>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(i32::try_from(self.page_size).unwrap_or(1000))),
        ];
        let timeout = self.operation_timeout;
        let url = self.url.clone();
        self.ldap.with_timeout(timeout);
        if show_deleted {
            self.ldap.with_controls(RawControl { ctype: SHOW_DELETED.into(), crit: true, val: None });
        }
        let mut stream = self
            .ldap
            .streaming_search_with(adapters, &base_text, scope, &filter_text, attrs.to_vec())
            .await
            .map_err(|e| op_error(&url, "search", timeout, e))?;
        // The reader runs ahead of `each` by up to READ_AHEAD pages: it reaches a page's end (and
        // the paging adapter puts the next page's request on the wire) while the entries before
        // it are still decoded and mirrored, so the DC works on page k+1 while page k is stored.
        let buffer = usize::try_from(self.page_size).unwrap_or(1000).clamp(1, 10_000) * READ_AHEAD;
        let (tx, rx) = tokio::sync::mpsc::channel(buffer);
        let read = async {
            let tx = tx; // dropped when the read ends: the consumer then sees the end
            loop {
                match stream.next().await {
                    Ok(Some(entry)) => {
                        if tx.send(entry).await.is_err() {
                            return Ok(()); // the consumer stopped: its error is returned below
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(op_error(&url, "search", timeout, e)),
                }
            }
        };
        let consume = async {
            let mut rx = rx; // dropped when `each` fails: the reader then stops
            let mut n = 0usize;
            while let Some(entry) = rx.recv().await {
                each(raw_entry(SearchEntry::construct(entry)))?;
                n += 1;
                // Let the connection's driver (a task of this thread) send the next page's
                // request and take in its answer while a long page is consumed.
                if n.is_multiple_of(YIELD_EVERY) {
                    tokio::task::yield_now().await;
                }
            }
            Ok::<(), DirectoryError>(())
        };
        let (read, consumed) = tokio::join!(read, consume);
        // Any failure, on any page, fails the whole read (the consumer's first).
        consumed?;
        read?;
        let res = stream.finish().await;
        if res.rc == 32 {
            return Err(DirectoryError::NoSuchObject { dn: base_text });
        }
        check_rc("search", &base_text, res.rc, &res.text)
    }
}

/// Pages a paged search reads ahead of the entries being consumed (see `paged_search`).
const READ_AHEAD: usize = 2;

/// Entries consumed between two yields to the connection's driver.
const YIELD_EVERY: usize = 100;

impl Directory for LdapDirectory {
    async fn info(&mut self) -> Result<DirectoryInfo, DirectoryError> {
        if let Some(info) = &self.info {
            return Ok(info.clone());
        }
        let root = self
            .read_base("", &["defaultNamingContext", "dnsHostName", "highestCommittedUSN"])
            .await?
            .unwrap_or_default();
        let text = |name: &str| root.values(name).first().map(|v| String::from_utf8_lossy(v).into_owned());
        let nc_text = match &self.base_dn {
            Some(base) => base.clone(),
            None => text("defaultnamingcontext").ok_or_else(|| DirectoryError::Ldap {
                operation: "rootDSE read",
                code: 0,
                name: "success",
                diagnostic: "the rootDSE has no defaultNamingContext: set directory.base_dn".into(),
            })?,
        };
        let naming_context =
            Dn::parse(&nc_text).map_err(|e| DirectoryError::BadDn { dn: nc_text.clone(), detail: e.message })?;
        let info = DirectoryInfo {
            source: self.url.clone(),
            naming_context,
            dns_host_name: text("dnshostname"),
            highest_committed_usn: text("highestcommittedusn").and_then(|t| t.parse().ok()),
            skipped: self.skipped.clone(),
        };
        self.info = Some(info.clone());
        Ok(info)
    }

    async fn containers(&mut self, base: &Dn) -> Result<Vec<Container>, DirectoryError> {
        let nc = self.info().await?.naming_context;
        let attrs = ["objectClass", "objectGUID", "ou", "cn"];
        let mut out = Vec::new();
        let mut collect = |raw: RawEntry| {
            if let Decoded::Container(c) = decode(&raw, &nc)? {
                out.push(c);
            }
            Ok(())
        };
        let ous = Filter::eq("objectClass", "organizationalUnit");
        self.paged_search(base, Scope::Subtree, &ous, &attrs, false, &mut collect).await?;
        let containers =
            Filter::Or(vec![Filter::eq("objectClass", "container"), Filter::eq("objectClass", "builtinDomain")]);
        self.paged_search(base, Scope::OneLevel, &containers, &attrs, false, &mut collect).await?;
        Ok(out)
    }

    async fn objects(
        &mut self,
        base: &Dn,
        query: ObjectQuery,
        sink: &mut dyn FnMut(DirObject),
        progress: &dyn Fn(u64),
    ) -> Result<ReadSummary, DirectoryError> {
        let mut kinds = Vec::new();
        if query.users {
            kinds.push(Filter::eq("sAMAccountType", SAM_USER_ACCOUNT.to_string()));
        }
        if query.groups {
            kinds.push(Filter::eq("objectClass", "group"));
        }
        let filter = match kinds.len() {
            1 => kinds.remove(0),
            _ => Filter::Or(kinds),
        };
        let mut sink = |c: Change| {
            if let Change::Object(o) = c {
                sink(*o)
            }
        };
        self.read_objects(base, filter, query, &mut sink, progress).await
    }

    async fn change_tracking(&mut self) -> Result<Option<ChangeTracking>, DirectoryError> {
        let root = self
            .read_base("", &["dsServiceName", "highestCommittedUSN", "configurationNamingContext"])
            .await?
            .unwrap_or_default();
        let text = |name: &str| root.values(name).first().map(|v| String::from_utf8_lossy(v).into_owned());
        let (Some(dc), Some(usn)) = (text("dsservicename"), text("highestcommittedusn").and_then(|t| t.parse().ok()))
        else {
            return Ok(None); // not an AD DC (or one that hides them): no deltas
        };
        let Some(invocation_id) = self
            .read_base(&dc, &["invocationId"])
            .await?
            .and_then(|e| e.values("invocationid").first().and_then(|v| ObjectGuid::from_bytes(v)))
        else {
            return Ok(None);
        };
        let mut lifetime = DEFAULT_TOMBSTONE_LIFETIME_DAYS;
        if let Some(config) = text("configurationnamingcontext") {
            let ds = format!("CN=Directory Service,CN=Windows NT,CN=Services,{config}");
            // Unreadable or absent: the documented default (the shorter, so the safer, choice).
            if let Ok(Some(entry)) = self.read_base(&ds, &["tombstoneLifetime"]).await
                && let Some(days) = entry
                    .values("tombstonelifetime")
                    .first()
                    .and_then(|v| String::from_utf8_lossy(v).trim().parse::<u64>().ok())
            {
                lifetime = days;
            }
        }
        // Tombstones live in CN=Deleted Objects, which AD lets only administrators list unless
        // the account was granted List Contents there.
        let nc = self.info().await?.naming_context;
        let deleted_objects = format!("CN=Deleted Objects,{nc}");
        self.ldap.with_controls(RawControl { ctype: SHOW_DELETED.into(), crit: true, val: None });
        let tombstones_visible = matches!(self.read_base(&deleted_objects, &["objectClass"]).await, Ok(Some(_)));
        Ok(Some(ChangeTracking {
            dc,
            invocation_id: invocation_id.to_string(),
            highest_usn: usn,
            tombstone_lifetime_days: lifetime,
            tombstones_visible,
        }))
    }

    async fn changes(
        &mut self,
        usn: u64,
        sink: &mut dyn FnMut(Change),
        progress: &dyn Fn(u64),
    ) -> Result<ReadSummary, DirectoryError> {
        let nc = self.info().await?.naming_context;
        let above = Filter::Raw(format!("(uSNChanged>={})", usn.saturating_add(1)));
        let kinds = Filter::Or(vec![
            Filter::eq("sAMAccountType", SAM_USER_ACCOUNT.to_string()),
            Filter::eq("objectClass", "group"),
            Filter::eq("objectClass", "organizationalUnit"),
        ]);
        let query = ObjectQuery { users: true, groups: true, members: true, backlinks: true };
        let mut summary =
            self.read_objects(&nc, Filter::And(vec![above.clone(), kinds]), query, sink, progress).await?;
        // Tombstones: the deletions since the watermark (their DNs are mangled; the GUID stays).
        let deleted = Filter::And(vec![Filter::eq("isDeleted", "TRUE"), above]);
        self.paged_search(&nc, Scope::Subtree, &deleted, &["objectGUID"], true, &mut |raw| {
            summary.entries += 1;
            if let Some(guid) = raw.values("objectguid").first().and_then(|v| ObjectGuid::from_bytes(v)) {
                sink(Change::Deleted(guid));
            }
            Ok(())
        })
        .await?;
        Ok(summary)
    }
}

impl LdapDirectory {
    /// Users, groups (member lists completed by range retrieval) and OUs matching `filter`.
    async fn read_objects(
        &mut self,
        base: &Dn,
        filter: Filter,
        query: ObjectQuery,
        sink: &mut dyn FnMut(Change),
        progress: &dyn Fn(u64),
    ) -> Result<ReadSummary, DirectoryError> {
        let nc = self.info().await?.naming_context;
        let requested = object_request(&self.attributes, query, self.range_step);
        let attrs: Vec<&str> = requested.iter().map(String::as_str).collect();
        let extra = self.attributes.extra().to_vec();
        let mut summary = ReadSummary::default();
        // Groups whose member list continues past the first range are finished after the scan.
        let mut unfinished: Vec<DirObject> = Vec::new();
        self.paged_search(base, Scope::Subtree, &filter, &attrs, false, &mut |raw| {
            summary.entries += 1;
            progress(summary.entries);
            let ranged_more = query.members && matches!(raw.ranged("member").1, Some(Some(_)));
            match decode_with(&raw, &nc, &extra)? {
                Decoded::Object(object) if object.kind == ObjectKind::Group && ranged_more => unfinished.push(*object),
                Decoded::Object(object) => sink(Change::Object(object)),
                Decoded::Container(c) => sink(Change::Container(c)),
                Decoded::Other => {}
            }
            Ok(())
        })
        .await?;
        for mut group in unfinished {
            group.members = self.group_members(&group.dn).await?;
            sink(Change::Object(Box::new(group)));
        }
        Ok(summary)
    }
}

/// The attributes a search for users and groups requests: `attributes` (the structural ones, the
/// table's the policy reads, its further ones), the first range of `member` when the query reads
/// members, and the back-links when it reads them.
pub fn object_request(attributes: &ReadAttributes, query: ObjectQuery, range_step: u32) -> Vec<String> {
    let mut request: Vec<String> = attributes.names().into_iter().map(str::to_owned).collect();
    if query.members {
        request.push(format!("member;range=0-{}", range_step.saturating_sub(1)));
    }
    if query.backlinks {
        request.extend(["memberOf", "directReports", "ou"].map(str::to_owned));
    }
    request
}

/// LDAP_CAP_ACTIVE_DIRECTORY_PARTIAL_SECRETS_OID: announced by read-only DCs only ([MS-ADTS] 3.1.1.3.4.3).
const RODC_CAPABILITY: &str = "1.2.840.113556.1.4.1920";

/// Whether a rootDSE's `supportedCapabilities` are a read-only DC's.
pub fn is_rodc(capabilities: &[String]) -> bool {
    capabilities.iter().any(|c| c.trim() == RODC_CAPABILITY)
}

/// The host of an `ldap(s)://HOST[:PORT]` URL (brackets of an IPv6 literal removed).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1.trim_end_matches('/');
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        rest.rsplit_once(':').map_or(rest, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { rest })
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// What went wrong in a Kerberos exchange, from the GSSAPI (MIT) or SSPI (Windows) message.
pub fn kerberos_problem(detail: &str) -> KerberosProblem {
    let d = detail.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| d.contains(n));
    if has(&["clock skew", "time_skew", "time skew", "0x80090324"]) {
        KerberosProblem::ClockSkew
    } else if has(&[
        "cannot contact any kdc",
        "cannot find kdc",
        "no authority could be contacted",
        "0x80090311",
        "cannot resolve network address for kdc",
    ]) {
        KerberosProblem::KdcUnreachable
    } else if has(&["server not found in kerberos database", "target is unknown", "0x80090303", "s_principal_unknown"])
    {
        KerberosProblem::WrongSpn
    } else if has(&[
        "preauthentication failed",
        "password incorrect",
        "decrypt integrity check failed",
        "key version",
        "logon_denied",
        "logon attempt failed",
        "0x8009030c",
        "client not found in kerberos database",
        "revoked",
        "expired",
    ]) {
        KerberosProblem::Rejected
    } else if has(&[
        "no kerberos credentials",
        "no credentials",
        "credentials cache",
        "ccache",
        "keytab",
        "key table",
        "0x8009030e",
        "no_credentials",
    ]) {
        KerberosProblem::NoCredentials
    } else {
        KerberosProblem::Other
    }
}

/// A rustls configuration that trusts exactly the CA certificates in `ca_file`.
fn tls_config(ca_file: &PathBuf, url: &str) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let tls = |detail: String| DirectoryError::Tls { url: url.to_owned(), detail };
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| tls(format!("cannot read CA file {}: {e}", ca_file.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(format!("CA file {} is not valid PEM: {e}", ca_file.display())))?;
    if certs.is_empty() {
        return Err(tls(format!("CA file {} holds no certificate", ca_file.display())));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| tls(format!("CA file {}: {e}", ca_file.display())))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn raw_entry(entry: SearchEntry) -> RawEntry {
    let mut raw = RawEntry { dn: entry.dn, attrs: Vec::new() };
    for (name, values) in entry.attrs {
        for v in values {
            raw.push(&name, v.into_bytes());
        }
    }
    for (name, values) in entry.bin_attrs {
        for v in values {
            raw.push(&name, v);
        }
    }
    raw
}

/// Finds a TLS failure inside an I/O error (tokio-rustls wraps rustls errors that way).
fn tls_cause(e: &std::io::Error) -> Option<String> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).map(|r| r.to_string())
}

fn connect_error(url: &str, timeout: Duration, e: LdapError) -> DirectoryError {
    match e {
        LdapError::Io { source } => match tls_cause(&source) {
            Some(detail) => DirectoryError::Tls { url: url.to_owned(), detail },
            None if source.kind() == std::io::ErrorKind::TimedOut => {
                DirectoryError::Timeout { url: url.to_owned(), operation: "connect", seconds: timeout.as_secs() }
            }
            None => DirectoryError::Unreachable { url: url.to_owned(), detail: source.to_string() },
        },
        LdapError::Rustls { source } => DirectoryError::Tls { url: url.to_owned(), detail: source.to_string() },
        LdapError::DNSName { source } => DirectoryError::Tls { url: url.to_owned(), detail: source.to_string() },
        LdapError::Timeout { .. } => {
            DirectoryError::Timeout { url: url.to_owned(), operation: "connect", seconds: timeout.as_secs() }
        }
        LdapError::UrlParsing { source } => {
            DirectoryError::InvalidUrl { url: url.to_owned(), reason: source.to_string() }
        }
        LdapError::UnknownScheme(s) => {
            DirectoryError::InvalidUrl { url: url.to_owned(), reason: format!("unknown scheme {s}") }
        }
        LdapError::LdapResult { result } => {
            // StartTLS refused by the server.
            DirectoryError::Tls {
                url: url.to_owned(),
                detail: format!("StartTLS failed: {} {}", result.rc, result.text),
            }
        }
        other => DirectoryError::Unreachable { url: url.to_owned(), detail: other.to_string() },
    }
}

fn op_error(url: &str, operation: &'static str, timeout: Duration, e: LdapError) -> DirectoryError {
    match e {
        LdapError::Timeout { .. } => {
            DirectoryError::Timeout { url: url.to_owned(), operation, seconds: timeout.as_secs() }
        }
        LdapError::LdapResult { result } => match check_rc(operation, "", result.rc, &result.text) {
            Err(e) => e,
            Ok(()) => DirectoryError::Unreachable { url: url.to_owned(), detail: "unexpected success".into() },
        },
        // The connection dropped mid-operation.
        other => DirectoryError::Unreachable { url: url.to_owned(), detail: other.to_string() },
    }
}

fn check_rc(operation: &'static str, dn: &str, rc: u32, text: &str) -> Result<(), DirectoryError> {
    match rc {
        0 => Ok(()),
        50 => Err(DirectoryError::AccessDenied { dn: dn.to_owned(), diagnostic: text.to_owned() }),
        _ => Err(DirectoryError::Ldap { operation, code: rc, name: result_name(rc), diagnostic: text.to_owned() }),
    }
}

fn bind_error(account: &str, rc: u32, text: &str) -> DirectoryError {
    if rc == 49 {
        return DirectoryError::BindRejected {
            account: account.to_owned(),
            reason: ad_bind_reason(text).to_owned(),
            diagnostic: text.to_owned(),
        };
    }
    check_rc("bind", account, rc, text).err().unwrap_or_else(|| DirectoryError::Ldap {
        operation: "bind",
        code: rc,
        name: result_name(rc),
        diagnostic: text.to_owned(),
    })
}

/// AD explains a failed bind with a `data NNN` code inside the diagnostic text.
pub fn ad_bind_reason(diagnostic: &str) -> &'static str {
    let code = diagnostic
        .split("data ")
        .nth(1)
        .map(|rest| rest.split(|c: char| !c.is_ascii_hexdigit()).next().unwrap_or(""))
        .unwrap_or("");
    match code.to_ascii_lowercase().as_str() {
        "525" => "no such user",
        "52e" => "wrong password (or unknown user)",
        "530" => "logon not permitted at this time",
        "531" => "logon not permitted from this workstation",
        "532" => "password expired",
        "533" => "account disabled",
        "701" => "account expired",
        "773" => "the password must be changed before the account can bind",
        "775" => "account locked out",
        _ => "invalid credentials",
    }
}

fn result_name(rc: u32) -> &'static str {
    match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        81 => "serverDown",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_bind_diagnostics_are_translated() {
        let text = "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1";
        assert_eq!(ad_bind_reason(text), "wrong password (or unknown user)");
        assert_eq!(ad_bind_reason("... data 775, v4563"), "account locked out");
        assert_eq!(ad_bind_reason("something else"), "invalid credentials");
    }

    #[test]
    fn a_read_only_dc_is_known_by_its_capability() {
        let writable = ["1.2.840.113556.1.4.800", "1.2.840.113556.1.4.1670", "1.2.840.113556.1.4.1791"];
        let caps = |list: &[&str]| list.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        assert!(!is_rodc(&caps(&writable)));
        let mut rodc = caps(&writable);
        rodc.push("1.2.840.113556.1.4.1920".into());
        assert!(is_rodc(&rodc));
        assert!(is_failover_error(&DirectoryError::Ldap {
            operation: "bind",
            code: 52,
            name: "unavailable",
            diagnostic: String::new()
        }));
        assert!(!is_failover_error(&DirectoryError::BindRejected {
            account: "a".into(),
            reason: "r".into(),
            diagnostic: String::new()
        }));
    }

    #[test]
    fn the_spn_host_comes_from_the_url_unless_it_is_an_address() {
        assert_eq!(url_host("ldaps://dc1.example.com").as_deref(), Some("dc1.example.com"));
        assert_eq!(url_host("ldap://dc1.example.com:389/").as_deref(), Some("dc1.example.com"));
        assert_eq!(url_host("ldaps://127.0.0.1:636").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("ldaps://[::1]:636").as_deref(), Some("::1"));
    }

    #[test]
    fn kerberos_messages_are_classified() {
        use KerberosProblem::*;
        for (text, want) in [
            (
                "No credentials were supplied, or the credentials were unavailable or inaccessible (Preauthentication failed)",
                Rejected,
            ),
            ("No credentials were supplied ... (Cannot contact any KDC for realm 'EXAMPLE.TEST')", KdcUnreachable),
            (
                "No credentials were supplied ... (No Kerberos credentials available (default cache: FILE:/x))",
                NoCredentials,
            ),
            (
                "Unspecified GSS failure.  Minor code may provide more information (Server not found in Kerberos database)",
                WrongSpn,
            ),
            ("Unspecified GSS failure.  Minor code may provide more information (Clock skew too great)", ClockSkew),
            (
                "InitializeSecurityContextW failed: 0x80090311 No authority could be contacted for authentication.",
                KdcUnreachable,
            ),
            ("InitializeSecurityContextW failed: 0x80090303 The specified target is unknown or unreachable", WrongSpn),
            (
                "InitializeSecurityContextW failed: 0x80090324 The clocks on the client and server machines are skewed.",
                ClockSkew,
            ),
            ("something new", Other),
        ] {
            assert_eq!(kerberos_problem(text), want, "{text}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("ldaps://dc1.example.test").is_ok());
        assert!(check_url("ldap://127.0.0.1:389/").is_ok());
        assert!(check_url("https://dc1").is_err());
        assert!(check_url("ldaps://").is_err());
        assert!(check_url("ldaps://dc1/DC=example,DC=test").is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn plaintext_bind_is_refused_before_connecting() {
        // Port 9 on loopback: nothing is sent, because the refusal comes first.
        let settings = LdapSettings {
            url: "ldap://127.0.0.1:9".into(),
            starttls: false,
            bind: Bind::Simple {
                account: "CN=svc,DC=example,DC=test".into(),
                password: SecretString::from("pw".to_owned()),
            },
            ca_file: None,
            tls_verify: true,
            allow_plaintext_bind: false,
            connect_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(1),
            page_size: 100,
            base_dn: None,
            range_step: DEFAULT_RANGE_STEP,
        };
        let err = LdapDirectory::connect(settings).await.err().unwrap();
        assert!(matches!(err, DirectoryError::PlaintextBind { .. }), "{err}");
    }
}

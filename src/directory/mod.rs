//! The source side: Active Directory over LDAP, or an LDIF export of it, behind one trait and
//! one data model, so every rule works the same on a live DC and in a CI pipeline.

pub mod discovery;
pub mod dn;
pub mod extra;
pub mod filter;
pub mod guid;
pub mod ldap;
pub mod ldif;
pub mod ldif_source;
pub mod security;

use std::borrow::Cow;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use dn::Dn;
pub use extra::{Extra, Values};
pub use guid::ObjectGuid;

use crate::error::{AppError, ErrorKind};

/// `sAMAccountType` of a normal user account (SAM_NORMAL_USER_ACCOUNT). Computers (0x30000001),
/// trust accounts and contacts (which have none) are never users, even though a computer's
/// objectClass includes `user`.
pub const SAM_USER_ACCOUNT: u32 = 0x3000_0000;
/// `userAccountControl` bit ACCOUNTDISABLE.
pub const UAC_ACCOUNT_DISABLE: u32 = 0x2;
/// Default containers directly under the naming context that never hold synchronised objects.
const HIDDEN_CONTAINERS: [&str; 4] = ["system", "lostandfound", "infrastructure", "ntds quotas"];

/// The one table of synced attributes: each has a field of [`DirObject`] (see
/// [`DirObject::values`]). A read asks for the [`STRUCTURAL_ATTRIBUTES`] and those of the others
/// the active policy reads ([`ReadAttributes`]); a policy's further attributes are read besides
/// them into [`DirObject::extra`] (see [`extra_attributes`]). Default reads the whole table.
pub const OBJECT_ATTRIBUTES: [&str; 16] = [
    "objectClass",
    "objectGUID",
    "sAMAccountType",
    "sAMAccountName",
    "userPrincipalName",
    "givenName",
    "sn",
    "mail",
    "displayName",
    "userAccountControl",
    "cn",
    "title",
    "telephoneNumber",
    "department",
    "employeeNumber",
    "manager",
];

/// The attributes of the table every read asks for, whatever the policy maps, because ausi itself
/// needs them:
/// - `objectClass`, `sAMAccountType`: what an entry is (user, group, OU; a computer is no user);
/// - `objectGUID`: the anchor (externalId, the mirror's key);
/// - `sAMAccountName`: the `sAMAccountName.duplicate` rule of every policy, `--user NAME`, the
///   identity in reports, a group's name when it has no cn;
/// - `userPrincipalName`: the `userPrincipalName.syntax` rule of every policy, `--user NAME`,
///   the identity in reports;
/// - `userAccountControl`: enabled or disabled (the `active` of Default, the disabled count of
///   `validate`, the `userAccountControl.syntax` rule);
/// - `cn`: a group's displayName when the group mapping gives none;
/// - `manager`: `enterprise.manager` is built in (not mappable) under every policy.
///
/// Group members (`member`, by range) and, in a delta, the back-links (`memberOf`,
/// `directReports`, `ou`) are asked for by the query ([`ObjectQuery`]); `uSNChanged` and
/// `isDeleted` are only in the delta's filters, never read.
pub const STRUCTURAL_ATTRIBUTES: [&str; 8] = [
    "objectClass",
    "objectGUID",
    "sAMAccountType",
    "sAMAccountName",
    "userPrincipalName",
    "userAccountControl",
    "cn",
    "manager",
];

/// What a read of users and groups asks the directory for (and what an export's entries are cut
/// down to, so both sources keep the same in the mirror): the [`STRUCTURAL_ATTRIBUTES`], the other
/// attributes of the table ([`OBJECT_ATTRIBUTES`]) the policy reads, and its further attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAttributes {
    /// Table attributes as the schema spells them, in the table's order.
    table: Vec<&'static str>,
    /// Further attributes, lower-case, sorted.
    extra: Vec<String>,
    /// Every name an entry keeps ([`ReadAttributes::keeps`]), lower-case, sorted: looked up for
    /// each attribute of each entry of an export.
    kept: Vec<String>,
}

impl Default for ReadAttributes {
    /// The whole table and nothing more: what Default reads, and what a read not told otherwise asks for.
    fn default() -> Self {
        ReadAttributes::new(OBJECT_ATTRIBUTES.to_vec(), Vec::new())
    }
}

impl ReadAttributes {
    /// What a read must ask for to give a policy reading `wanted` (its
    /// [`Policy::attributes`](crate::policy::Policy::attributes)) what it reads.
    pub fn for_policy<'a>(wanted: impl IntoIterator<Item = &'a String>) -> ReadAttributes {
        let wanted: Vec<String> = wanted.into_iter().map(|a| a.to_ascii_lowercase()).collect();
        let table = OBJECT_ATTRIBUTES
            .iter()
            .copied()
            .filter(|a| STRUCTURAL_ATTRIBUTES.contains(a) || wanted.iter().any(|w| w.eq_ignore_ascii_case(a)))
            .collect();
        ReadAttributes::new(table, extra_attributes(&wanted))
    }

    fn new(table: Vec<&'static str>, extra: Vec<String>) -> ReadAttributes {
        let links = ["member", "memberof", "directreports", "ou"].map(str::to_owned);
        let mut kept: Vec<String> =
            table.iter().map(|a| a.to_ascii_lowercase()).chain(extra.iter().cloned()).chain(links).collect();
        kept.sort();
        kept.dedup();
        ReadAttributes { table, extra, kept }
    }

    /// The attributes to request, in a stable order: the table's, then the further ones.
    pub fn names(&self) -> Vec<&str> {
        self.table.iter().copied().chain(self.extra.iter().map(String::as_str)).collect()
    }

    /// The further attributes (lower-case), read into [`DirObject::extra`].
    pub fn extra(&self) -> &[String] {
        &self.extra
    }

    /// Whether the whole table is read (Default, and any policy mapping all of it).
    pub fn whole_table(&self) -> bool {
        self.table.len() == OBJECT_ATTRIBUTES.len()
    }

    /// Whether an entry's attribute `name` (lower-case, as in [`RawEntry`]) is kept: one asked
    /// for, or the members and back-links a query asks for besides.
    fn keeps(&self, name: &str) -> bool {
        let base = name.split(';').next().unwrap_or(name);
        self.kept.binary_search_by(|a| a.as_str().cmp(base)).is_ok()
    }

    /// Drops what a DC asked for these attributes would not have sent (an export has
    /// everything its writer put in it).
    pub fn cut(&self, raw: &mut RawEntry) {
        if self.whole_table() {
            // Decoding reads nothing beyond the table and the further attributes it is given.
            return;
        }
        raw.attrs.retain(|(name, _)| self.keeps(name));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    #[default]
    User,
    Group,
}

/// A user or group as both sources deliver it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirObject {
    pub kind: ObjectKind,
    pub dn: Dn,
    pub guid: Option<ObjectGuid>,
    pub sam_account_name: Option<String>,
    pub user_principal_name: Option<String>,
    pub given_name: Option<String>,
    pub sn: Option<String>,
    pub mail: Option<String>,
    pub display_name: Option<String>,
    pub user_account_control: Option<u32>,
    pub cn: Option<String>,
    pub title: Option<String>,
    pub telephone_number: Option<String>,
    pub department: Option<String>,
    pub employee_number: Option<String>,
    /// The manager's DN (resolved to a SCIM id when mapped).
    pub manager: Option<Dn>,
    /// Group members, complete (range retrieval followed), when the query asked for them, as
    /// normalised DNs ([`Dn::normalized`]: a 5,000-member group must not cost 5,000 parsed DNs).
    pub members: Vec<String>,
    /// Back-links, when the query asked for them (a delta reads links from both ends):
    /// the groups this object is a member of (`memberOf`) and the users it manages; normalised.
    pub member_of: Vec<String>,
    pub direct_reports: Vec<String>,
    /// Further attributes the active provisioning policy reads (lower-case name → text values),
    /// beyond the fixed fields above.
    pub extra: Extra,
    /// Values the decoder could not take as they are. Such a value is never repaired or
    /// guessed at (no U+FFFD, no "enabled" for an unreadable userAccountControl): the field
    /// stays empty and the validation rules quarantine the object, naming the defect.
    pub defects: Vec<Defect>,
}

/// A value that is present but unusable, found while decoding (see [`DirObject::defects`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "defect", rename_all = "kebab-case")]
pub enum Defect {
    /// A text attribute whose value is not valid UTF-8 (`offset`: of the first invalid byte).
    NotUtf8 { attribute: String, offset: usize },
    /// An `objectGUID` that is not the 16 bytes of a GUID.
    GuidLength { length: usize },
    /// A `userAccountControl` that is not a 32-bit integer (shown escaped, at most 40 characters).
    UacSyntax { value: String },
    /// The `objectGUID` is also held by other objects of the same read (a corrupt or badly
    /// merged export): `others` are (at most ten of) their DNs, `total` how many there are.
    GuidDuplicate { others: Vec<String>, total: usize },
}

impl DirObject {
    pub fn is_disabled(&self) -> bool {
        self.user_account_control.is_some_and(|uac| uac & UAC_ACCOUNT_DISABLE != 0)
    }

    /// The values of a directory attribute (lower-case name): a field of the one table
    /// ([`OBJECT_ATTRIBUTES`]) or an extra one; empty when absent.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.text_values(name).into_vec()
    }

    /// [`DirObject::values`], borrowed where the object holds them as text (no copy: a policy's
    /// mappings read them for every user, several times a run).
    pub fn text_values(&self, name: &str) -> Values<'_> {
        if let Some(field) = text_field(name) {
            return Values::Strings(Cow::Borrowed(field(self).as_slice()));
        }
        let made = |v: Vec<String>| Values::Strings(Cow::Owned(v));
        match name {
            "useraccountcontrol" => made(self.user_account_control.iter().map(u32::to_string).collect()),
            "manager" => made(self.manager.iter().map(Dn::to_string).collect()),
            "objectguid" => made(self.guid.iter().map(ObjectGuid::to_string).collect()),
            "distinguishedname" | "dn" => made(vec![self.dn.to_string()]),
            // The RDN's value: a group's name when it has no cn.
            "name" => made(self.dn.rdn_value().map(str::to_owned).into_iter().collect()),
            _ => self.extra.get(name).unwrap_or(Values::NONE),
        }
    }
}

/// The field that holds attribute `name` (lower-case) as one text, when one does: a policy
/// looks it up once, not by name for every user.
pub fn text_field(name: &str) -> Option<fn(&DirObject) -> &Option<String>> {
    Some(match name {
        "samaccountname" => |o| &o.sam_account_name,
        "userprincipalname" => |o| &o.user_principal_name,
        "givenname" => |o| &o.given_name,
        "sn" => |o| &o.sn,
        "mail" => |o| &o.mail,
        "displayname" => |o| &o.display_name,
        "cn" => |o| &o.cn,
        "title" => |o| &o.title,
        "telephonenumber" => |o| &o.telephone_number,
        "department" => |o| &o.department,
        "employeenumber" => |o| &o.employee_number,
        _ => return None,
    })
}

/// Attributes every read has whatever is asked: the table's, and the names [`DirObject::values`]
/// derives (`dn`, `name`).
pub fn is_fixed_attribute(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    OBJECT_ATTRIBUTES.iter().any(|a| a.eq_ignore_ascii_case(&name))
        || ["distinguishedname", "dn", "name", "objectclass", "samaccounttype"].contains(&name.as_str())
}

/// The attributes a read must ask for besides [`OBJECT_ATTRIBUTES`] to give a policy reading
/// `wanted` what it reads: lower-case, sorted, without the fixed ones.
pub fn extra_attributes<'a>(wanted: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut extra: Vec<String> =
        wanted.into_iter().map(|a| a.to_ascii_lowercase()).filter(|a| !is_fixed_attribute(a)).collect();
    extra.sort();
    extra.dedup();
    extra
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerKind {
    /// An Organizational Unit.
    Ou,
    /// A default container such as `CN=Users` or `CN=Computers`.
    Container,
}

/// An OU or default container that can be selected for sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub kind: ContainerKind,
    pub dn: Dn,
    pub guid: Option<ObjectGuid>,
    pub name: String,
}

/// What the directory says about itself (the rootDSE, or what an LDIF export implies).
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryInfo {
    /// Where the data comes from, printable (no secrets): `ldaps://dc1:636`, `ldif:export.ldif`.
    pub source: String,
    #[serde(serialize_with = "serialize_display")]
    pub naming_context: Dn,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_host_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highest_committed_usn: Option<u64>,
    /// DCs tried before this one that did not answer (failover), in the order tried.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedDc>,
}

/// A DC that was passed over because it did not answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SkippedDc {
    pub url: String,
    pub error: String,
}

/// Blank: nothing left after removing white space and invisible format characters.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{ad}')
    })
}

pub fn serialize_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Which objects a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectQuery {
    pub users: bool,
    pub groups: bool,
    /// Read every group's complete `member` list (range retrieval).
    pub members: bool,
    /// Also read `memberOf` and `directReports`.
    pub backlinks: bool,
}

impl ObjectQuery {
    pub const USERS: ObjectQuery = ObjectQuery { users: true, groups: false, members: false, backlinks: false };
    pub const USERS_AND_GROUPS: ObjectQuery =
        ObjectQuery { users: true, groups: true, members: false, backlinks: false };
    /// What a sync reads: users and groups with complete member lists.
    pub const SYNC: ObjectQuery = ObjectQuery { users: true, groups: true, members: true, backlinks: false };
}

/// A domain controller's change tracking (read-only rights suffice): the watermark of a delta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeTracking {
    /// The DC's NTDS Settings object (`dsServiceName`): which DC the USNs belong to.
    pub dc: String,
    /// The DC's database identity; it changes when the database is restored.
    pub invocation_id: String,
    /// `highestCommittedUSN` when read.
    pub highest_usn: u64,
    /// The forest's `tombstoneLifetime`: deletions older than this are gone for good.
    pub tombstone_lifetime_days: u64,
    /// Whether the bind account can read `CN=Deleted Objects` (else a delta cannot see deletions).
    pub tombstones_visible: bool,
}

/// One thing that changed since a watermark.
#[derive(Debug)]
pub enum Change {
    /// A user or group (anywhere in the naming context), with back-links.
    Object(Box<DirObject>),
    /// An OU (renamed, moved, created).
    Container(Container),
    /// A tombstone: deleted in AD.
    Deleted(ObjectGuid),
}

/// An entry that could not be read (only LDIF sources have these: a live DC sends valid BER).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unreadable {
    /// Where: `line 12` of the export, or the DN when known.
    pub location: String,
    pub message: String,
}

/// What one read delivered besides the objects themselves.
#[derive(Debug, Clone, Default)]
pub struct ReadSummary {
    pub entries: u64,
    pub unreadable: Vec<Unreadable>,
}

/// A directory: the live DC or an export. Reads stream: objects go to `sink` one by one.
#[allow(async_fn_in_trait)] // used with static dispatch only (see `AnyDirectory`)
pub trait Directory {
    async fn info(&mut self) -> Result<DirectoryInfo, DirectoryError>;

    /// The OUs in the subtree of `base` and the default containers directly under it.
    async fn containers(&mut self, base: &Dn) -> Result<Vec<Container>, DirectoryError>;

    /// Every user and/or group in the subtree of `base`; `progress` gets the running count.
    async fn objects(
        &mut self,
        base: &Dn,
        query: ObjectQuery,
        sink: &mut dyn FnMut(DirObject),
        progress: &dyn Fn(u64),
    ) -> Result<ReadSummary, DirectoryError>;

    /// The DC's watermark; `None` for a source without change tracking (an LDIF export).
    async fn change_tracking(&mut self) -> Result<Option<ChangeTracking>, DirectoryError>;

    /// Everything in the naming context with `uSNChanged` above `usn`: users, groups and OUs
    /// (with back-links and complete member lists), then tombstones (Show Deleted control).
    async fn changes(
        &mut self,
        usn: u64,
        sink: &mut dyn FnMut(Change),
        progress: &dyn Fn(u64),
    ) -> Result<ReadSummary, DirectoryError>;
}

/// The two sources, dispatched statically.
pub enum AnyDirectory {
    Ldap(Box<ldap::LdapDirectory>),
    Ldif(Box<ldif_source::LdifDirectory>),
}

impl AnyDirectory {
    /// Read exactly these attributes of users and groups: what the active provisioning policy
    /// and ausi itself need ([`ReadAttributes::for_policy`]).
    pub fn read_attributes(&mut self, attributes: ReadAttributes) {
        match self {
            AnyDirectory::Ldap(d) => d.attributes = attributes,
            AnyDirectory::Ldif(d) => d.attributes = attributes,
        }
    }
}

impl Directory for AnyDirectory {
    async fn info(&mut self) -> Result<DirectoryInfo, DirectoryError> {
        match self {
            AnyDirectory::Ldap(d) => d.info().await,
            AnyDirectory::Ldif(d) => d.info().await,
        }
    }

    async fn containers(&mut self, base: &Dn) -> Result<Vec<Container>, DirectoryError> {
        match self {
            AnyDirectory::Ldap(d) => d.containers(base).await,
            AnyDirectory::Ldif(d) => d.containers(base).await,
        }
    }

    async fn objects(
        &mut self,
        base: &Dn,
        query: ObjectQuery,
        sink: &mut dyn FnMut(DirObject),
        progress: &dyn Fn(u64),
    ) -> Result<ReadSummary, DirectoryError> {
        match self {
            AnyDirectory::Ldap(d) => d.objects(base, query, sink, progress).await,
            AnyDirectory::Ldif(d) => d.objects(base, query, sink, progress).await,
        }
    }

    async fn change_tracking(&mut self) -> Result<Option<ChangeTracking>, DirectoryError> {
        match self {
            AnyDirectory::Ldap(d) => d.change_tracking().await,
            AnyDirectory::Ldif(d) => d.change_tracking().await,
        }
    }

    async fn changes(
        &mut self,
        usn: u64,
        sink: &mut dyn FnMut(Change),
        progress: &dyn Fn(u64),
    ) -> Result<ReadSummary, DirectoryError> {
        match self {
            AnyDirectory::Ldap(d) => d.changes(usn, sink, progress).await,
            AnyDirectory::Ldif(d) => d.changes(usn, sink, progress).await,
        }
    }
}

/// Where to read from, as given by `--source` or the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Ldif(PathBuf),
    Ldap(String),
}

impl SourceSpec {
    pub fn parse(text: &str) -> Result<SourceSpec, AppError> {
        if let Some(path) = text.strip_prefix("ldif:") {
            if path.is_empty() {
                return Err(AppError::usage("--source ldif: needs a file path, e.g. ldif:export.ldif"));
            }
            return Ok(SourceSpec::Ldif(PathBuf::from(path)));
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("ldap://") || lower.starts_with("ldaps://") {
            return Ok(SourceSpec::Ldap(text.to_owned()));
        }
        Err(AppError::usage(format!(
            "unknown source {text:?}: use ldif:PATH, ldaps://HOST[:PORT] or ldap://HOST[:PORT]"
        )))
    }
}

#[derive(Debug, Error)]
pub enum DirectoryError {
    #[error("cannot reach the directory at {url}")]
    Unreachable { url: String, detail: String },
    #[error("the directory at {url} did not answer within {seconds} s ({operation})")]
    Timeout { url: String, operation: &'static str, seconds: u64 },
    #[error("the directory rejected the bind as {account}: {reason}")]
    BindRejected { account: String, reason: String, diagnostic: String },
    #[error("the directory refused access to {dn}: {diagnostic}")]
    AccessDenied { dn: String, diagnostic: String },
    #[error("TLS with {url} failed: {detail}")]
    Tls { url: String, detail: String },
    #[error(
        "refusing to send the bind password for {account} in clear text over {url}: use ldaps://, or ldap:// with starttls = true"
    )]
    PlaintextBind { url: String, account: String },
    #[error(
        "refusing to send a password to the directory over an unencrypted connection: use ldaps://, or ldap:// with starttls = true"
    )]
    PlaintextPassword,
    #[error("invalid directory URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{dn} does not exist in the directory")]
    NoSuchObject { dn: String },
    #[error("the directory answered {operation} with LDAP result {code} ({name}): {diagnostic}")]
    Ldap { operation: &'static str, code: u32, name: &'static str, diagnostic: String },
    #[error("cannot read {}", path.display())]
    File { path: PathBuf, source: std::io::Error },
    #[error("{dn} in the directory is not a valid DN: {detail}")]
    BadDn { dn: String, detail: String },
    #[error("Kerberos bind to {spn} failed: {}", problem.describe())]
    Kerberos { problem: KerberosProblem, spn: String, detail: String },
    #[error("no domain controller answered: {}", tried.iter().map(|s| format!("{} ({})", s.url, s.error)).collect::<Vec<_>>().join("; "))]
    NoDcAnswered { tried: Vec<SkippedDc>, kind: ErrorKind },
    #[error("{url} is a read-only domain controller (RODC): passwords are written only to a writable DC")]
    ReadOnlyDc { url: String },
    #[error("DNS discovery of the domain controllers failed ({name}): {detail}")]
    Discovery { name: String, detail: String, kind: ErrorKind },
}

/// Why a Kerberos (GSSAPI/SSPI) bind failed, read from the library's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KerberosProblem {
    /// No ticket and nothing to get one with (no keytab, an empty credential cache).
    NoCredentials,
    /// The KDC refused the credentials (a wrong or outdated keytab, a disabled account).
    Rejected,
    /// This machine's clock and the KDC's differ by more than the allowed skew (5 min).
    ClockSkew,
    /// The DC's service principal `ldap/HOST` is unknown to the KDC.
    WrongSpn,
    /// No KDC of the realm answered.
    KdcUnreachable,
    /// This build has no Kerberos (Unix without the `kerberos` feature).
    NotBuiltIn,
    Other,
}

impl KerberosProblem {
    pub fn describe(self) -> &'static str {
        match self {
            KerberosProblem::NoCredentials => "no Kerberos credentials (no ticket, and no keytab to get one with)",
            KerberosProblem::Rejected => {
                "the KDC rejected the credentials (wrong or outdated keytab, or the account is disabled)"
            }
            KerberosProblem::ClockSkew => "this machine's clock differs from the KDC's by more than the allowed skew",
            KerberosProblem::WrongSpn => {
                "the KDC does not know the DC's service principal (wrong host name for the SPN)"
            }
            KerberosProblem::KdcUnreachable => "no KDC of the realm could be reached",
            KerberosProblem::NotBuiltIn => "this build of ausi has no Kerberos support",
            KerberosProblem::Other => "the Kerberos exchange failed",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            KerberosProblem::NoCredentials => {
                "on Linux set directory.keytab = \"file:/etc/ausi/ausi.keytab\" (or KRB5_CLIENT_KTNAME), or kinit first; on Windows run ausi as SYSTEM, a gMSA or a domain account"
            }
            KerberosProblem::Rejected => {
                "export the keytab again (the account's keys change with its password), and check that the account is enabled"
            }
            KerberosProblem::ClockSkew => {
                "synchronise this machine's clock with the domain (w32time on Windows, chrony or systemd-timesyncd on Linux)"
            }
            KerberosProblem::WrongSpn => {
                "connect by the DC's DNS name, or set directory.spn_host to the name in the DC's ldap/ service principal"
            }
            KerberosProblem::KdcUnreachable => {
                "check that this machine reaches a KDC of the realm on port 88 (krb5.conf on Linux: [realms] kdc, or DNS SRV _kerberos._tcp)"
            }
            KerberosProblem::NotBuiltIn => {
                "build ausi with `--features kerberos` (needs libkrb5-dev and libclang-dev), or use bind = \"simple\""
            }
            KerberosProblem::Other => "run with -v for the Kerberos library's message",
        }
    }
}

impl DirectoryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DirectoryError::Unreachable { .. } | DirectoryError::Timeout { .. } => ErrorKind::Temporary,
            DirectoryError::BindRejected { .. } | DirectoryError::AccessDenied { .. } => ErrorKind::Permission,
            DirectoryError::Tls { .. }
            | DirectoryError::PlaintextBind { .. }
            | DirectoryError::PlaintextPassword
            | DirectoryError::InvalidUrl { .. }
            | DirectoryError::NoSuchObject { .. }
            | DirectoryError::File { .. } => ErrorKind::Config,
            DirectoryError::Ldap { code, .. } => match code {
                // busy, unavailable, unwillingToPerform under load, timeLimitExceeded, adminLimitExceeded
                51 | 52 | 3 | 11 | 81 => ErrorKind::Temporary,
                8 | 13 => ErrorKind::Config, // strongAuthRequired, confidentialityRequired
                49 | 50 => ErrorKind::Permission,
                _ => ErrorKind::Internal,
            },
            DirectoryError::BadDn { .. } => ErrorKind::Internal,
            DirectoryError::Kerberos { problem, .. } => match problem {
                KerberosProblem::Rejected => ErrorKind::Permission,
                KerberosProblem::KdcUnreachable => ErrorKind::Temporary,
                KerberosProblem::NoCredentials
                | KerberosProblem::ClockSkew
                | KerberosProblem::WrongSpn
                | KerberosProblem::NotBuiltIn
                | KerberosProblem::Other => ErrorKind::Config,
            },
            DirectoryError::NoDcAnswered { kind, .. } | DirectoryError::Discovery { kind, .. } => *kind,
            DirectoryError::ReadOnlyDc { .. } => ErrorKind::Config,
        }
    }
}

impl From<DirectoryError> for AppError {
    fn from(e: DirectoryError) -> Self {
        let mut app = AppError::new(e.kind(), e.to_string());
        match &e {
            DirectoryError::Unreachable { detail, .. } => {
                app.causes.push(detail.clone());
                app = app.with_hint("check that the DC is up and that this machine can reach its LDAP port (636 for ldaps, 389 for ldap)");
            }
            DirectoryError::BindRejected { diagnostic, .. } => {
                app.causes.push(diagnostic.clone());
                app = app.with_hint("check directory.bind_dn and the stored bind password (store a new one with --bind-password-stdin --save-bind-password)");
            }
            DirectoryError::Tls { .. } => {
                app = app.with_hint("trust the CA that issued the DC's certificate with --ca-file or directory.ca_file, and connect by the name (or IP) the certificate lists");
            }
            DirectoryError::PlaintextBind { .. } => {
                app = app.with_hint("set allow_plaintext_bind = true in [directory] only for a lab: the password would cross the network readable");
            }
            DirectoryError::Ldap { code: 8 | 13, .. } => {
                app = app.with_hint("the DC requires an encrypted connection: use ldaps:// or starttls = true");
            }
            DirectoryError::File { source, .. } => app = app.caused_by(source),
            DirectoryError::Kerberos { problem, detail, .. } => {
                app.causes.push(detail.clone());
                app = app.with_hint(problem.hint());
            }
            DirectoryError::ReadOnlyDc { .. } => {
                app = app.with_hint("list a writable DC in directory.url (or use discover = true)");
            }
            DirectoryError::Discovery { .. } => {
                app = app.with_hint(
                    "set directory.domain (and site) to the AD domain's DNS name, or list the DCs in directory.url",
                );
            }
            DirectoryError::NoDcAnswered { .. } => {
                app = app.with_hint("check that the DCs are up and that this machine reaches their LDAP ports (636 for ldaps, 389 for ldap)");
            }
            _ => {}
        }
        app
    }
}

/// Lower-cased attribute name → values, as read from either source.
#[derive(Debug, Default)]
pub struct RawEntry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    pub fn push(&mut self, name: &str, value: Vec<u8>) {
        self.insert(Cow::Borrowed(name), value);
    }

    /// [`RawEntry::push`] of an owned name (lower-cased in place, not copied).
    pub fn push_named(&mut self, name: String, value: Vec<u8>) {
        self.insert(Cow::Owned(name), value);
    }

    /// Adds a value of `name`, kept lower-case: the name is copied only when it is new here.
    fn insert(&mut self, name: Cow<'_, str>, value: Vec<u8>) {
        match self.attrs.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some((_, values)) => values.push(value),
            None => {
                let mut name = name.into_owned();
                name.make_ascii_lowercase();
                self.attrs.push((name, vec![value]));
            }
        }
    }

    /// Values of `name` (exact, lower-case, options included).
    pub fn values(&self, name: &str) -> &[Vec<u8>] {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice()).unwrap_or(&[])
    }

    fn text(&self, name: &str) -> Option<String> {
        self.values(name).first().map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn has_class(&self, class: &str) -> bool {
        self.values("objectclass").iter().any(|v| v.eq_ignore_ascii_case(class.as_bytes()))
    }

    /// Values of a ranged attribute (`member;range=0-1499`), with the end of the range
    /// (`None` for `*`, the last chunk), merged over every range present.
    pub fn ranged(&self, name: &str) -> (Vec<&[u8]>, Option<Option<u64>>) {
        let mut values = Vec::new();
        let mut last_end = None;
        let prefix = format!("{name};range=");
        for (n, vs) in &self.attrs {
            if n == name {
                values.extend(vs.iter().map(Vec::as_slice));
            } else if let Some(range) = n.strip_prefix(&prefix) {
                values.extend(vs.iter().map(Vec::as_slice));
                let end = range.split_once('-').map(|(_, end)| end.parse::<u64>().ok());
                last_end = Some(end.flatten());
            }
        }
        (values, last_end)
    }
}

/// What an entry is, decided by the same rules for both sources.
#[derive(Debug)]
pub enum Decoded {
    Object(Box<DirObject>),
    Container(Container),
    /// Computers, contacts, anything else.
    Other,
}

/// Classifies and decodes one entry. `naming_context` decides which `container` objects are
/// default containers worth listing (those directly under it).
pub fn decode(raw: &RawEntry, naming_context: &Dn) -> Result<Decoded, DirectoryError> {
    decode_with(raw, naming_context, &[])
}

/// [`decode`], also taking the `extra` attributes (lower-case) into [`DirObject::extra`]. A value
/// that is not UTF-8 (a binary attribute) is a [`Defect::NotUtf8`], never a lossy copy.
pub fn decode_with(raw: &RawEntry, naming_context: &Dn, extra: &[String]) -> Result<Decoded, DirectoryError> {
    let dn = Dn::parse(&raw.dn).map_err(|e| DirectoryError::BadDn { dn: raw.dn.clone(), detail: e.message })?;
    let mut defects = Vec::new();
    let guid = match raw.values("objectguid").first() {
        None => None,
        Some(v) => {
            let guid = ObjectGuid::from_bytes(v);
            if guid.is_none() {
                defects.push(Defect::GuidLength { length: v.len() });
            }
            guid
        }
    };
    let sam_type = raw.text("samaccounttype").and_then(|t| t.trim().parse::<u32>().ok());

    if raw.has_class("organizationalUnit") {
        let name = raw.text("ou").or_else(|| dn.rdn_value().map(str::to_owned)).unwrap_or_default();
        return Ok(Decoded::Container(Container { kind: ContainerKind::Ou, dn, guid, name }));
    }
    if (raw.has_class("container") || raw.has_class("builtinDomain"))
        && dn.parent().is_some_and(|p| p == *naming_context)
    {
        let name = dn.rdn_value().unwrap_or_default().to_owned();
        if HIDDEN_CONTAINERS.contains(&name.to_lowercase().as_str()) {
            return Ok(Decoded::Other);
        }
        return Ok(Decoded::Container(Container { kind: ContainerKind::Container, dn, guid, name }));
    }
    let kind = if raw.has_class("group") {
        ObjectKind::Group
    } else if is_user(raw, sam_type) {
        ObjectKind::User
    } else {
        return Ok(Decoded::Other);
    };
    let members = if kind == ObjectKind::Group {
        let (values, _) = raw.ranged("member");
        values.into_iter().filter_map(dn_key).collect()
    } else {
        Vec::new()
    };
    let mut text = |name: &str| strict_text(raw, name, &mut defects);
    let mut object = DirObject {
        kind,
        guid,
        sam_account_name: text("sAMAccountName"),
        user_principal_name: text("userPrincipalName"),
        given_name: text("givenName"),
        sn: text("sn"),
        mail: text("mail"),
        display_name: text("displayName"),
        cn: text("cn"),
        title: text("title"),
        telephone_number: text("telephoneNumber"),
        department: text("department"),
        employee_number: text("employeeNumber"),
        manager: text("manager").and_then(|m| Dn::parse(&m).ok()),
        user_account_control: None,
        dn,
        members,
        member_of: dns(raw.values("memberof")),
        direct_reports: dns(raw.values("directreports")),
        extra: Default::default(),
        defects: Vec::new(),
    };
    if let Some(uac) = text("userAccountControl") {
        match parse_uac(&uac) {
            Some(v) => object.user_account_control = Some(v),
            None => {
                let shown: String = format!("{uac:?}").chars().take(40).collect();
                defects.push(Defect::UacSyntax { value: shown });
            }
        }
    }
    let mut values = Vec::new();
    for name in extra {
        values.clear();
        for value in raw.values(name) {
            match std::str::from_utf8(value) {
                Ok(text) => values.push(text),
                Err(e) => defects.push(Defect::NotUtf8 { attribute: name.clone(), offset: e.valid_up_to() }),
            }
        }
        if !values.is_empty() {
            object.extra.insert(name, &values);
        }
    }
    object.defects = defects;
    Ok(Decoded::Object(Box::new(object)))
}

/// The first value of a text attribute (`name` as the schema spells it), or `None` with a
/// [`Defect::NotUtf8`] when it is not UTF-8: never a lossy copy.
fn strict_text(raw: &RawEntry, name: &str, defects: &mut Vec<Defect>) -> Option<String> {
    let value = raw.values(&name.to_ascii_lowercase()).first()?;
    match std::str::from_utf8(value) {
        Ok(text) => Some(text.to_owned()),
        Err(e) => {
            defects.push(Defect::NotUtf8 { attribute: name.to_owned(), offset: e.valid_up_to() });
            None
        }
    }
}

fn dns(values: &[Vec<u8>]) -> Vec<String> {
    values.iter().filter_map(|v| dn_key(v)).collect()
}

/// A DN value as the key links are matched by (`None` when it does not parse).
pub fn dn_key(value: &[u8]) -> Option<String> {
    Dn::parse(&String::from_utf8_lossy(value)).ok().map(|d| d.normalized())
}

/// The AD definition of a user: `sAMAccountType = 805306368`. An export without that attribute
/// falls back to the object classes: `user` (or `inetOrgPerson`) and not `computer`.
fn is_user(raw: &RawEntry, sam_type: Option<u32>) -> bool {
    match sam_type {
        Some(t) => t == SAM_USER_ACCOUNT,
        None => {
            (raw.has_class("user") || raw.has_class("inetOrgPerson"))
                && !raw.has_class("computer")
                && !raw.has_class("contact")
        }
    }
}

/// `userAccountControl` is a signed 32-bit integer in AD's schema; exports may show either sign.
fn parse_uac(text: &str) -> Option<u32> {
    let t = text.trim();
    t.parse::<u32>().ok().or_else(|| t.parse::<i32>().ok().map(|v| v as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &str)]) -> RawEntry {
        let mut raw = RawEntry { dn: dn.into(), ..Default::default() };
        for (n, v) in attrs {
            raw.push(n, v.as_bytes().to_vec());
        }
        raw
    }

    fn nc() -> Dn {
        Dn::parse("DC=example,DC=test").unwrap()
    }

    fn kind(raw: &RawEntry) -> Option<ObjectKind> {
        match decode(raw, &nc()).unwrap() {
            Decoded::Object(o) => Some(o.kind),
            _ => None,
        }
    }

    #[test]
    fn computers_and_contacts_are_never_users() {
        let computer = entry(
            "CN=WS01,CN=Computers,DC=example,DC=test",
            &[
                ("objectClass", "top"),
                ("objectClass", "person"),
                ("objectClass", "user"),
                ("objectClass", "computer"),
                ("sAMAccountType", "805306369"),
            ],
        );
        assert_eq!(kind(&computer), None);
        let computer_no_type =
            entry("CN=WS02,DC=example,DC=test", &[("objectClass", "user"), ("objectClass", "computer")]);
        assert_eq!(kind(&computer_no_type), None);
        let contact = entry(
            "CN=Ext,OU=Corp,DC=example,DC=test",
            &[
                ("objectClass", "person"),
                ("objectClass", "organizationalPerson"),
                ("objectClass", "contact"),
                ("mail", "x@y.z"),
            ],
        );
        assert_eq!(kind(&contact), None);
        let user =
            entry("CN=U,OU=Corp,DC=example,DC=test", &[("objectClass", "user"), ("sAMAccountType", "805306368")]);
        assert_eq!(kind(&user), Some(ObjectKind::User));
        let user_no_type = entry("CN=U,OU=Corp,DC=example,DC=test", &[("OBJECTCLASS", "User")]);
        assert_eq!(kind(&user_no_type), Some(ObjectKind::User));
        let group =
            entry("CN=G,OU=Corp,DC=example,DC=test", &[("objectClass", "group"), ("sAMAccountType", "268435456")]);
        assert_eq!(kind(&group), Some(ObjectKind::Group));
    }

    #[test]
    fn containers_only_directly_under_the_naming_context_and_not_system() {
        let users = entry("CN=Users,DC=example,DC=test", &[("objectClass", "container")]);
        assert!(
            matches!(decode(&users, &nc()).unwrap(), Decoded::Container(c) if c.kind == ContainerKind::Container && c.name == "Users")
        );
        let system = entry("CN=System,DC=example,DC=test", &[("objectClass", "container")]);
        assert!(matches!(decode(&system, &nc()).unwrap(), Decoded::Other));
        let deep = entry("CN=Policies,CN=System,DC=example,DC=test", &[("objectClass", "container")]);
        assert!(matches!(decode(&deep, &nc()).unwrap(), Decoded::Other));
        let ou =
            entry("OU=Research\\, Development,OU=Corp,DC=example,DC=test", &[("objectClass", "organizationalUnit")]);
        assert!(
            matches!(decode(&ou, &nc()).unwrap(), Decoded::Container(c) if c.kind == ContainerKind::Ou && c.name == "Research, Development")
        );
    }

    #[test]
    fn disabled_bit_and_signed_uac() {
        let raw = entry("CN=U,DC=example,DC=test", &[("objectClass", "user"), ("userAccountControl", "546")]);
        let Decoded::Object(o) = decode(&raw, &nc()).unwrap() else { panic!() };
        assert!(o.is_disabled());
        assert_eq!(parse_uac("-2147483646"), Some(0x8000_0002));
    }

    #[test]
    fn ranged_members_are_merged() {
        let mut raw = entry("CN=G,DC=example,DC=test", &[("objectClass", "group")]);
        raw.push("member;range=0-1", b"CN=a,DC=example,DC=test".to_vec());
        raw.push("member;range=0-1", b"CN=b,DC=example,DC=test".to_vec());
        let (values, end) = raw.ranged("member");
        assert_eq!(values.len(), 2);
        assert_eq!(end, Some(Some(1)));
        let Decoded::Object(o) = decode(&raw, &nc()).unwrap() else { panic!() };
        assert_eq!(o.members.len(), 2);
    }

    #[test]
    fn extra_attributes_are_read_into_extra_and_binary_ones_are_defects() {
        let mut raw = entry(
            "CN=U,DC=example,DC=test",
            &[("objectClass", "user"), ("proxyAddresses", "SMTP:a@x.y"), ("proxyAddresses", "smtp:b@x.y")],
        );
        raw.push("extensionAttribute1", vec![0xff, 0x00]);
        let wanted = extra_attributes(&[
            "proxyAddresses".to_owned(),
            "mail".to_owned(),
            "extensionattribute1".to_owned(),
            "dn".to_owned(),
        ]);
        assert_eq!(wanted, ["extensionattribute1", "proxyaddresses"]);
        let Decoded::Object(o) = decode_with(&raw, &nc(), &wanted).unwrap() else { panic!() };
        assert_eq!(o.values("proxyaddresses"), ["SMTP:a@x.y", "smtp:b@x.y"]);
        assert!(o.extra.get("extensionattribute1").is_none());
        assert_eq!(o.defects, [Defect::NotUtf8 { attribute: "extensionattribute1".into(), offset: 0 }]);
        // Not asked for: not kept (an export holds everything).
        let Decoded::Object(plain) = decode(&raw, &nc()).unwrap() else { panic!() };
        assert!(plain.extra.is_empty() && plain.defects.is_empty());
        assert_eq!(plain.values("name"), ["U"]);
        assert!(plain.values("mail").is_empty());
    }

    fn owned(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// Default asks for today's list, byte for byte; a policy reading only department asks for the
    /// structural attributes and department; a policy's further attributes come last, once.
    #[test]
    fn the_request_is_the_structural_attributes_and_what_the_policy_reads() {
        let default = ldap::object_request(&ReadAttributes::default(), ObjectQuery::SYNC, 1500);
        let mut today = owned(&OBJECT_ATTRIBUTES);
        today.push("member;range=0-1499".into());
        assert_eq!(default, today);
        let department = ReadAttributes::for_policy(&owned(&["department", "userprincipalname", "dn", "name"]));
        assert!(!department.whole_table());
        let delta = ObjectQuery { users: true, groups: true, members: true, backlinks: true };
        assert_eq!(
            ldap::object_request(&department, delta, 700),
            [
                "objectClass",
                "objectGUID",
                "sAMAccountType",
                "sAMAccountName",
                "userPrincipalName",
                "userAccountControl",
                "cn",
                "department",
                "manager",
                "member;range=0-699",
                "memberOf",
                "directReports",
                "ou",
            ]
        );
        let users = ldap::object_request(&ReadAttributes::for_policy(&[]), ObjectQuery::USERS, 1500);
        assert_eq!(users, owned(&STRUCTURAL_ATTRIBUTES));
        let mixed = ReadAttributes::for_policy(&owned(&["ProxyAddresses", "mail", "company", "proxyaddresses"]));
        assert_eq!(
            mixed.names(),
            [
                "objectClass",
                "objectGUID",
                "sAMAccountType",
                "sAMAccountName",
                "userPrincipalName",
                "mail",
                "userAccountControl",
                "cn",
                "manager",
                "company",
                "proxyaddresses",
            ],
            "the table's in its order, then the others sorted, once"
        );
        assert_eq!(mixed.extra(), ["company", "proxyaddresses"]);
    }

    /// An export's entry is cut to what a DC would have sent: an attribute the policy does not
    /// read is neither kept nor judged (an undecodable one is no defect), structural ones stay.
    #[test]
    fn an_export_keeps_only_what_the_policy_reads() {
        let mut raw = entry(
            "CN=G,OU=Corp,DC=example,DC=test",
            &[
                ("objectClass", "user"),
                ("sAMAccountType", "805306368"),
                ("sAMAccountName", "g"),
                ("userPrincipalName", "g@example.test"),
                ("userAccountControl", "512"),
                ("givenName", "G"),
                ("mail", "g@example.test"),
                ("department", "Sales"),
                ("company", "Acme"),
                ("memberOf", "CN=X,DC=example,DC=test"),
            ],
        );
        raw.push("title", vec![0xff]);
        let full = match decode(&raw, &nc()).unwrap() {
            Decoded::Object(o) => o,
            _ => panic!(),
        };
        assert_eq!(full.defects.len(), 1, "Default reads title: {:?}", full.defects);
        let only = ReadAttributes::for_policy(&owned(&["department"]));
        let mut cut = RawEntry { dn: raw.dn.clone(), attrs: raw.attrs.clone() };
        only.cut(&mut cut);
        let Decoded::Object(o) = decode_with(&cut, &nc(), only.extra()).unwrap() else { panic!() };
        assert_eq!(o.department.as_deref(), Some("Sales"));
        assert_eq!((o.given_name.as_deref(), o.mail.as_deref()), (None, None));
        assert!(o.defects.is_empty() && o.extra.is_empty());
        assert_eq!(o.user_principal_name.as_deref(), Some("g@example.test"));
        assert_eq!(o.sam_account_name.as_deref(), Some("g"));
        assert!(!o.is_disabled() && o.user_account_control.is_some());
        assert_eq!(o.member_of.len(), 1, "back-links stay: a delta asks for them");
        let with_company = ReadAttributes::for_policy(&owned(&["company"]));
        let mut cut = RawEntry { dn: raw.dn.clone(), attrs: raw.attrs.clone() };
        with_company.cut(&mut cut);
        let Decoded::Object(o) = decode_with(&cut, &nc(), with_company.extra()).unwrap() else { panic!() };
        assert_eq!((o.values("company"), o.department), (vec!["Acme".to_owned()], None));
        // Default: nothing is cut.
        let mut same = RawEntry { dn: raw.dn.clone(), attrs: raw.attrs.clone() };
        ReadAttributes::default().cut(&mut same);
        assert_eq!(same.attrs, raw.attrs);
    }

    #[test]
    fn source_spec() {
        assert_eq!(SourceSpec::parse("ldif:x.ldif").unwrap(), SourceSpec::Ldif("x.ldif".into()));
        assert_eq!(SourceSpec::parse("LDAPS://dc1").unwrap(), SourceSpec::Ldap("LDAPS://dc1".into()));
        assert!(SourceSpec::parse("http://x").is_err());
        assert!(SourceSpec::parse("ldif:").is_err());
    }
}

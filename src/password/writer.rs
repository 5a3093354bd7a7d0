//! Writes passwords into AD: finds the account, refuses what must not be written (outside the
//! scope, protected, disabled, locked), checks the effective policy, then replaces `unicodePwd`.

use std::collections::HashMap;

use ldap3::Mod;
use ldap3::controls::RawControl;

use super::policy::{self, Holder};
use super::{PasswordPolicy, Rejection, SecretBytes, unicode_pwd};
use crate::directory::filter::{Filter, escape_bytes, escape_value};
use crate::directory::ldap::LdapDirectory;
use crate::directory::security::Sid;
use crate::directory::{DirectoryError, Dn, ObjectGuid, RawEntry};
use crate::output::Warning;
use crate::secrets::SecretString;
use crate::sync::scope::Scope;

/// LDAP_SERVER_POLICY_HINTS_OID (Windows Server 2012 and later): apply the password history to
/// an administrative reset as to a user's own change. Value: `SEQUENCE { flags INTEGER 1 }`.
const POLICY_HINTS: &str = "1.2.840.113556.1.4.2239";
const POLICY_HINTS_VALUE: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x01];
/// LDAP_MATCHING_RULE_IN_CHAIN: membership through nested groups.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

const ACCOUNTDISABLE: u32 = 0x2;
/// `msDS-User-Account-Control-Computed`: locked out now (lockoutTime within the lockout duration).
const UF_LOCKOUT: u32 = 0x10;

/// The groups whose members AD protects (AdminSDHolder): RIDs in the domain…
const PROTECTED_DOMAIN_RIDS: [(u32, &str); 5] = [
    (512, "Domain Admins"),
    (516, "Domain Controllers"),
    (518, "Schema Admins"),
    (519, "Enterprise Admins"),
    (521, "Read-only Domain Controllers"),
];
/// … and the BUILTIN ones (S-1-5-32-RID).
const PROTECTED_BUILTIN_RIDS: [(u32, &str); 6] = [
    (544, "Administrators"),
    (548, "Account Operators"),
    (549, "Server Operators"),
    (550, "Print Operators"),
    (551, "Backup Operators"),
    (552, "Replicator"),
];

const ACCOUNT_ATTRS: [&str; 11] = [
    "objectGUID",
    "sAMAccountName",
    "userPrincipalName",
    "displayName",
    "userAccountControl",
    "msDS-User-Account-Control-Computed",
    "lockoutTime",
    "adminCount",
    "primaryGroupID",
    "msDS-ResultantPSO",
    "objectClass",
];

/// Which user a password is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// The tenant's externalId: the user's objectGUID.
    Guid(ObjectGuid),
    /// userPrincipalName, sAMAccountName or DOMAIN\sAMAccountName.
    Name(String),
}

/// What the checks need to know about an account.
#[derive(Debug, Clone)]
pub struct Account {
    pub dn: Dn,
    pub sam_account_name: String,
    pub user_principal_name: Option<String>,
    display_name: Option<String>,
    user_account_control: u32,
    locked: bool,
    admin_count: bool,
    primary_group: Option<u32>,
    pso: Option<String>,
}

impl Account {
    /// How the account is named in a report: its UPN, else its sAMAccountName.
    pub fn label(&self) -> &str {
        self.user_principal_name.as_deref().unwrap_or(&self.sam_account_name)
    }
}

/// A change was applied, refused for a reason the user or admin must act on, or could not be
/// tried because the DC failed (retry later).
#[derive(Debug)]
pub enum Applied {
    Applied(Account),
    Rejected(Option<Account>, Rejection),
}

pub struct PasswordWriter<'a> {
    directory: &'a mut LdapDirectory,
    /// Check everything, write nothing.
    dry_run: bool,
    naming_context: Dn,
    scope: Scope,
    domain_policy: PasswordPolicy,
    protected_groups: Vec<(Dn, &'static str)>,
    fine_grained: HashMap<String, Option<PasswordPolicy>>,
    pub warnings: Vec<Warning>,
}

impl<'a> PasswordWriter<'a> {
    /// Reads the domain's password policy and finds the protected groups. Refuses an
    /// unencrypted connection: AD takes passwords only over TLS, and they must never cross the
    /// network in clear text.
    pub async fn open(
        directory: &'a mut LdapDirectory,
        scope: Scope,
        dry_run: bool,
    ) -> Result<PasswordWriter<'a>, DirectoryError> {
        use crate::directory::Directory;
        if !directory.is_encrypted() {
            return Err(DirectoryError::PlaintextPassword);
        }
        let naming_context = directory.info().await?.naming_context;
        let domain = read_domain(directory, &naming_context, &["objectSid"]).await?;
        let domain_policy = PasswordPolicy::domain(|name| text(&domain, name));
        let domain_sid = domain.values("objectsid").first().cloned().unwrap_or_default();
        let protected_groups = protected_groups(directory, &naming_context, &domain_sid).await?;
        Ok(PasswordWriter {
            directory,
            dry_run,
            naming_context,
            scope,
            domain_policy,
            protected_groups,
            fine_grained: HashMap::new(),
            warnings: Vec::new(),
        })
    }

    pub fn domain_policy(&self) -> &PasswordPolicy {
        &self.domain_policy
    }

    /// Finds the account, checks it and the password, and writes it (in a dry run: `Applied`
    /// means every check passed and nothing was written).
    pub async fn apply(&mut self, target: &Target, password: &SecretString) -> Result<Applied, DirectoryError> {
        let account = match self.find(target).await? {
            Ok(account) => account,
            Err(rejection) => return Ok(Applied::Rejected(None, rejection)),
        };
        if let Some(rejection) = self.refusal(&account).await? {
            return Ok(Applied::Rejected(Some(account), rejection));
        }
        let (policy, name) = self.policy_for(&account).await?;
        let holder =
            Holder { sam_account_name: &account.sam_account_name, display_name: account.display_name.as_deref() };
        if let Some(policy) = &policy
            && let Err(rejection) = policy::check(policy, password, &holder)
        {
            return Ok(Applied::Rejected(Some(account), rejection));
        }
        if self.dry_run {
            return Ok(Applied::Applied(account));
        }
        let value = unicode_pwd(password);
        let attribute = SecretBytes::plain("unicodePwd");
        let mods = vec![Mod::Replace(attribute, [value].into_iter().collect())];
        let hints = RawControl { ctype: POLICY_HINTS.into(), crit: false, val: Some(POLICY_HINTS_VALUE.to_vec()) };
        match self.directory.modify(&account.dn, mods, vec![hints]).await {
            Ok(()) => {
                tracing::info!(user = %account.label(), "password written");
                Ok(Applied::Applied(account))
            }
            Err(e) => match Rejection::from_directory(&e, policy.as_ref(), &name) {
                Some(rejection) => Ok(Applied::Rejected(Some(account), rejection)),
                None => Err(e),
            },
        }
    }

    /// The account `target` names, searched in the whole domain so that "outside the scope"
    /// and "no such user" are told apart.
    async fn find(&mut self, target: &Target) -> Result<Result<Account, Rejection>, DirectoryError> {
        let user = Filter::And(vec![Filter::eq("objectCategory", "person"), Filter::eq("objectClass", "user")]);
        let by = match target {
            Target::Guid(guid) => Filter::GuidEq("objectGUID".into(), *guid.as_bytes()),
            Target::Name(name) => {
                let name = name.rsplit_once('\\').map_or(name.as_str(), |(_, sam)| sam).trim();
                if name.is_empty() {
                    return Ok(Err(Rejection::NotFound));
                }
                Filter::Or(vec![Filter::eq("userPrincipalName", name), Filter::eq("sAMAccountName", name)])
            }
        };
        let filter = Filter::And(vec![user, by]);
        let found = self.directory.search(&self.naming_context, &filter, &ACCOUNT_ATTRS).await?;
        match found.as_slice() {
            [] => Ok(Err(Rejection::NotFound)),
            [one] => {
                let dn =
                    Dn::parse(&one.dn).map_err(|e| DirectoryError::BadDn { dn: one.dn.clone(), detail: e.message })?;
                // msDS-ResultantPSO and msDS-User-Account-Control-Computed are constructed: AD
                // returns them on a base read only.
                let constructed = self
                    .directory
                    .read(&dn, &["msDS-ResultantPSO", "msDS-User-Account-Control-Computed"])
                    .await?
                    .unwrap_or_default();
                Ok(Ok(account(dn, one, &constructed)))
            }
            many => Ok(Err(Rejection::Ambiguous { count: many.len() })),
        }
    }

    /// Why this account's password must not be written by ausi, if it must not.
    async fn refusal(&mut self, account: &Account) -> Result<Option<Rejection>, DirectoryError> {
        if !self.scope.contains(&account.dn) {
            return Ok(Some(Rejection::OutOfScope { dn: account.dn.to_string() }));
        }
        if account.admin_count {
            return Ok(Some(Rejection::Protected { why: "adminCount = 1".into() }));
        }
        if let Some(rid) = account.primary_group
            && let Some((_, name)) = PROTECTED_DOMAIN_RIDS.iter().find(|(r, _)| *r == rid)
        {
            return Ok(Some(Rejection::Protected { why: format!("primary group {name}") }));
        }
        for (group, name) in &self.protected_groups {
            let member = Filter::Raw(format!("(memberOf:{IN_CHAIN}:={})", escape_value(&group.to_string())));
            if !self.directory.search(&account.dn, &member, &["1.1"]).await?.is_empty() {
                return Ok(Some(Rejection::Protected { why: format!("member of {name}") }));
            }
        }
        if account.user_account_control & ACCOUNTDISABLE != 0 {
            return Ok(Some(Rejection::AccountDisabled));
        }
        if account.locked {
            return Ok(Some(Rejection::AccountLocked));
        }
        Ok(None)
    }

    /// The policy that applies to the account (its fine-grained policy, else the domain's) and
    /// its name. A fine-grained policy the bind account cannot read is `None`: nothing is
    /// checked here, AD judges alone, and a warning says so.
    async fn policy_for(&mut self, account: &Account) -> Result<(Option<PasswordPolicy>, String), DirectoryError> {
        let Some(pso) = &account.pso else {
            return Ok((Some(self.domain_policy.clone()), self.domain_policy.name()));
        };
        let dn = Dn::parse(pso).map_err(|e| DirectoryError::BadDn { dn: pso.clone(), detail: e.message })?;
        let name = format!("the fine-grained password policy {}", dn.rdn_value().unwrap_or(pso));
        if let Some(policy) = self.fine_grained.get(pso) {
            return Ok((policy.clone(), name));
        }
        let attrs = [
            "cn",
            "msDS-MinimumPasswordLength",
            "msDS-PasswordComplexityEnabled",
            "msDS-PasswordHistoryLength",
            "msDS-MinimumPasswordAge",
            "msDS-MaximumPasswordAge",
        ];
        let read = match self.directory.read(&dn, &attrs).await {
            Ok(entry) => entry.filter(|e| !e.values("msds-minimumpasswordlength").is_empty()),
            Err(DirectoryError::AccessDenied { .. }) => None,
            Err(e) => return Err(e),
        };
        let policy = read.map(|entry| {
            let cn = text(&entry, "cn").unwrap_or_else(|| pso.clone());
            PasswordPolicy::fine_grained(&cn, |attr| text(&entry, attr))
        });
        if policy.is_none() {
            self.warnings.push(Warning::new(
                "fine-grained-policy-unreadable",
                format!("the bind account cannot read the fine-grained password policy {pso}: passwords under it are judged by AD alone (grant Read on the Password Settings Container to check them here first)"),
            ));
        }
        self.fine_grained.insert(pso.clone(), policy.clone());
        Ok((policy, name))
    }
}

/// The password policy on the domain object (what the Default Domain Policy GPO sets).
pub async fn domain_policy(directory: &mut LdapDirectory) -> Result<PasswordPolicy, DirectoryError> {
    use crate::directory::Directory;
    let naming_context = directory.info().await?.naming_context;
    let domain = read_domain(directory, &naming_context, &[]).await?;
    Ok(PasswordPolicy::domain(|name| text(&domain, name)))
}

/// The domain object's password-policy attributes, and `extra` ones, in one read.
async fn read_domain(
    directory: &mut LdapDirectory,
    naming_context: &Dn,
    extra: &[&str],
) -> Result<RawEntry, DirectoryError> {
    let mut attrs = vec!["minPwdLength", "pwdProperties", "pwdHistoryLength", "minPwdAge", "maxPwdAge"];
    attrs.extend_from_slice(extra);
    directory
        .read(naming_context, &attrs)
        .await?
        .ok_or_else(|| DirectoryError::NoSuchObject { dn: naming_context.to_string() })
}

fn text(entry: &RawEntry, name: &str) -> Option<String> {
    entry.values(name).first().map(|v| String::from_utf8_lossy(v).into_owned())
}

fn account(dn: Dn, entry: &RawEntry, constructed: &RawEntry) -> Account {
    let number = |e: &RawEntry, name: &str| text(e, name).and_then(|v| v.trim().parse::<i64>().ok());
    let computed = number(constructed, "msds-user-account-control-computed")
        .or(number(entry, "msds-user-account-control-computed"));
    let locked = match computed {
        Some(flags) => flags as u32 & UF_LOCKOUT != 0,
        None => number(entry, "lockouttime").is_some_and(|t| t > 0),
    };
    Account {
        sam_account_name: text(entry, "samaccountname").unwrap_or_default(),
        user_principal_name: text(entry, "userprincipalname"),
        display_name: text(entry, "displayname"),
        user_account_control: number(entry, "useraccountcontrol").unwrap_or(0) as u32,
        locked,
        admin_count: number(entry, "admincount").unwrap_or(0) == 1,
        primary_group: number(entry, "primarygroupid").map(|r| r as u32),
        pso: text(constructed, "msds-resultantpso").or_else(|| text(entry, "msds-resultantpso")),
        dn,
    }
}

/// The protected groups of this domain, found by SID (their names differ by language).
async fn protected_groups(
    directory: &mut LdapDirectory,
    naming_context: &Dn,
    domain_sid: &[u8],
) -> Result<Vec<(Dn, &'static str)>, DirectoryError> {
    let mut wanted: Vec<(Vec<u8>, &'static str)> = Vec::new();
    if let Ok(domain) = Sid::from_bytes(domain_sid) {
        wanted.extend(PROTECTED_DOMAIN_RIDS.iter().map(|(rid, name)| (with_rid(&domain, *rid), *name)));
    }
    let builtin = Sid { revision: 1, authority: [0, 0, 0, 0, 0, 5], sub_authorities: vec![32] };
    wanted.extend(PROTECTED_BUILTIN_RIDS.iter().map(|(rid, name)| (with_rid(&builtin, *rid), *name)));
    let filter =
        Filter::Or(wanted.iter().map(|(sid, _)| Filter::Raw(format!("(objectSid={})", escape_bytes(sid)))).collect());
    let found = directory.search(naming_context, &filter, &["objectSid"]).await?;
    // In the order of the lists, so a member of Domain Admins (itself in Administrators) is
    // told so, whatever order the DC answered in.
    let mut groups = Vec::new();
    for (sid, name) in &wanted {
        let entry = found.iter().find(|e| e.values("objectsid").first() == Some(sid));
        if let Some(dn) = entry.and_then(|e| Dn::parse(&e.dn).ok()) {
            groups.push((dn, *name));
        }
    }
    Ok(groups)
}

/// The SID of the account or group `rid` of the domain (or builtin domain) `base`.
fn with_rid(base: &Sid, rid: u32) -> Vec<u8> {
    let mut sid = base.clone();
    sid.sub_authorities.push(rid);
    sid.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attrs: &[(&str, &str)]) -> RawEntry {
        let mut raw = RawEntry { dn: "CN=u,DC=x".into(), attrs: vec![] };
        for (name, value) in attrs {
            raw.push(name, value.as_bytes().to_vec());
        }
        raw
    }

    #[test]
    fn lockout_comes_from_the_computed_flags_else_lockout_time() {
        let dn = Dn::parse("CN=u,DC=x").unwrap();
        let base = [("sAMAccountName", "u"), ("userAccountControl", "512"), ("lockoutTime", "133000000000000000")];
        // The computed flags know the lockout duration has passed; lockoutTime alone does not.
        let computed = entry(&[("msDS-User-Account-Control-Computed", "0")]);
        assert!(!account(dn.clone(), &entry(&base), &computed).locked);
        let computed = entry(&[("msDS-User-Account-Control-Computed", "16")]);
        assert!(account(dn.clone(), &entry(&base), &computed).locked);
        assert!(account(dn.clone(), &entry(&base), &entry(&[])).locked);
        let a = account(dn, &entry(&[("adminCount", "1"), ("primaryGroupID", "512")]), &entry(&[]));
        assert!(a.admin_count && a.primary_group == Some(512) && !a.locked);
    }

    #[test]
    fn protected_groups_are_the_domains_and_builtin_rids() {
        // S-1-5-32-544 (Administrators), as AD stores it.
        let builtin = Sid { revision: 1, authority: [0, 0, 0, 0, 0, 5], sub_authorities: vec![32] };
        assert_eq!(with_rid(&builtin, 544), [1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 2, 0, 0]);
        let domain = Sid { sub_authorities: vec![21, 1, 2, 3], ..builtin };
        assert_eq!(Sid::from_bytes(&with_rid(&domain, 512)).unwrap().to_string(), "S-1-5-21-1-2-3-512");
    }
}

//! `ausi install-service --create-service-account`: the dedicated AD account the scheduled sync
//! binds as. Binds as an administrator (LDAPS or StartTLS only), creates the account with a
//! random password, or reuses the one that exists; stores the password where
//! `directory.bind_password` points and the account in `directory.bind_dn`; reports the rights
//! the account needs on the selected OUs and, with `--grant-rights`, grants exactly those.
//!
//! Reuse and the password: an existing account (found by sAMAccountName) keeps its password
//! when the stored secret still binds, so running the command again never breaks an agent that
//! works (or another agent sharing the account). When the secret is missing or no longer binds,
//! the password is reset to a new random one, since nobody else knows it anyway. Deleting the
//! stored secret and running the command again is therefore how the password is rotated.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use ldap3::Mod;
use ldap3::controls::RawControl;
use serde::Serialize;

use super::{Context, Report, display_path, encrypted_dc_url, open_directory, parse_dn_arg, resolve_selection};
use crate::cli::{DirectoryArgs, InstallServiceArgs};
use crate::config::{self, AgentConfig, DirectoryConfig};
use crate::directory::filter::Filter;
use crate::directory::ldap::{Bind, DEFAULT_RANGE_STEP, LdapDirectory, LdapSettings};
use crate::directory::security::{self, Ace, SecurityDescriptor, Sid};
use crate::directory::{AnyDirectory, Directory, DirectoryError, Dn, ObjectGuid, SAM_USER_ACCOUNT};
use crate::error::{AppError, ErrorKind, Result};
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::password::{SecretBytes, unicode_pwd};
use crate::secrets::{SecretError, SecretRef, SecretString};

/// The account's sAMAccountName unless `--name` says otherwise.
pub const DEFAULT_NAME: &str = "svc-ausi";
/// A gMSA's name unless `--name` says otherwise (its sAMAccountName is this with a `$`).
pub const DEFAULT_GMSA_NAME: &str = "gmsa-ausi";
/// msDS-SupportedEncryptionTypes for a new gMSA: AES128 and AES256 only (no RC4).
const GMSA_ENCRYPTION_TYPES: u32 = 0x08 | 0x10;
/// The full-control mask Windows writes into msDS-GroupMSAMembership for each principal allowed
/// to retrieve the password (Set-ADServiceAccount -PrincipalsAllowedToRetrieveManagedPassword).
const GMSA_RETRIEVE_MASK: u32 = 0x000f_01ff;
/// Days between the domain's rotations of the gMSA's password.
const GMSA_PASSWORD_INTERVAL_DAYS: u32 = 30;

/// Length of the generated password (AD allows up to 256; 32 random characters are ~200 bits).
pub const PASSWORD_LENGTH: usize = 32;
/// NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD: enabled, and a password that does not expire. The
/// account runs unattended; an expired password would stop every sync with nobody watching, and
/// the password is random, long and known to no person, so expiry protects nothing here.
const UAC_SERVICE_ACCOUNT: u32 = 0x0200 | 0x1_0000;
const DISPLAY_NAME: &str = "ausi directory sync";
const DESCRIPTION: &str = "Service account of the ausi directory sync agent (created by ausi install-service)";

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";
/// Symbols without quotes, backslash, space or anything a shell or a TOML file would mangle.
const SYMBOLS: &[u8] = b"!#$%&()*+,-./:;<=>?@[]^_{|}~";

#[derive(Debug, Serialize)]
pub struct ServiceAccountReport {
    pub config_path: String,
    pub account: AccountReport,
    /// Whether the Reset Password right is part of what the account needs.
    pub password_sync: bool,
    /// Why: `tenant.password_sync` (the agent was registered with `--password-sync`),
    /// `--password-sync` (given here), or `off`.
    pub password_sync_from: &'static str,
    /// The rights the account needs, per selected OU, and whether each is in place.
    pub rights: Vec<OuRights>,
    /// Whether `--grant-rights` was given.
    pub grant_rights: bool,
}

#[derive(Debug, Serialize)]
pub struct AccountReport {
    /// `user` (a password ausi stores) or `gmsa` (a password the domain manages; none stored).
    pub kind: &'static str,
    /// A gMSA: the accounts allowed to retrieve its password (msDS-GroupMSAMembership).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_to_retrieve: Vec<String>,
    pub dn: String,
    pub sam_account_name: String,
    pub user_principal_name: Option<String>,
    pub object_sid: String,
    /// `created` or `reused`.
    pub action: &'static str,
    /// `set` (new account), `reset` (the stored secret was missing or did not bind) or `kept`.
    pub password: &'static str,
    /// The secret reference the password is stored in (never the password).
    pub password_stored_in: String,
    /// Whether a bind as the account with the stored password succeeded.
    pub bind_checked: bool,
}

#[derive(Debug, Serialize)]
pub struct OuRights {
    pub ou: String,
    pub rights: Vec<RightState>,
}

#[derive(Debug, Serialize)]
pub struct RightState {
    /// `read` or `reset-password`.
    pub right: &'static str,
    pub description: &'static str,
    /// `present` (an identical explicit ACE was there), `added`, `missing` or `unknown`
    /// (the DACL could not be read).
    pub state: &'static str,
    /// The Windows command an administrator can run instead.
    pub dsacls: String,
}

pub async fn run(ctx: &Context<'_>, args: &InstallServiceArgs) -> Result<Outcome> {
    let mut warnings = Vec::new();
    let config = ctx.config_or_none(&mut warnings)?;
    let name = args.name.as_deref().unwrap_or(if args.gmsa { DEFAULT_GMSA_NAME } else { DEFAULT_NAME });
    check_name(name)?;
    if args.directory.save_bind_password {
        return Err(AppError::usage(
            "--save-bind-password would store the administrator's password: the service account's own password is stored by --create-service-account",
        ));
    }
    if args.gmsa {
        return run_gmsa(ctx, args, config, warnings).await;
    }
    let defaults = DirectoryConfig::default();
    let dir = config.as_ref().map(|c| &c.directory).unwrap_or(&defaults);
    let target = SecretTarget::choose(dir, &ctx.config_path)?;
    let url = encrypted_dc_url(&args.directory, dir, "create the service account")?;
    let password_sync_from = match config.as_ref().and_then(|c| c.tenant.as_ref()) {
        Some(tenant) if tenant.password_sync => "tenant.password_sync",
        _ if args.password_sync => "--password-sync",
        _ => "off",
    };
    let password_sync = password_sync_from != "off";
    if args.directory.bind_dn.is_none() && dir.bind_dn.is_none() {
        return Err(AppError::usage("creating the service account needs an administrator's bind")
            .with_hint("pass --bind-dn ADMIN --bind-password-stdin (an account that may create users in the OU and change its permissions)"));
    }

    let mut any = open_directory(&args.directory, config.as_ref(), &mut warnings).await?;
    let nc = any.info().await?.naming_context;
    let (_, selection) = resolve_selection(&mut any, config.as_ref()).await?;
    warnings.extend(selection.warnings());
    let selected: Vec<Dn> = selection.selected.iter().map(|o| o.dn.clone()).collect();
    if args.grant_rights && selected.is_empty() {
        return Err(AppError::config("--grant-rights: no OUs are selected for sync, so there is nothing to grant")
            .with_hint("choose them first with `ausi select-ous --add OU=…`, then run this again"));
    }
    let AnyDirectory::Ldap(ldap) = &mut any else {
        return Err(AppError::internal("the service account needs a domain controller, not an export"));
    };
    if !ldap.is_encrypted() {
        return Err(crate::directory::DirectoryError::PlaintextPassword.into());
    }
    let ou = match &args.ou {
        Some(text) => parse_dn_arg("--ou", text)?,
        None => nc.child("CN", "Users"),
    };
    let domain = dns_domain(&nc);
    let upn = domain.as_ref().map(|d| format!("{name}@{d}"));

    // The account: reuse the one with this sAMAccountName, else create it.
    let existing = find_account(ldap, &nc, name).await?;
    let (dn, action, password, new_password) = match existing {
        Some(found) => {
            if found.disabled {
                return Err(AppError::config(format!(
                    "{} exists but is disabled; ausi does not enable an account someone disabled",
                    found.dn
                ))
                .with_hint("enable it in Active Directory, or choose another account with --name"));
            }
            if args.ou.is_some() && !found.dn.is_descendant_of(&ou) {
                warnings.push(Warning::new(
                    "service-account-elsewhere",
                    format!("{name} already exists as {}; it is reused where it is, not moved to {ou}", found.dn),
                ));
            }
            match stored_password_binds(&args.directory, dir, &url, &found.dn, &target).await? {
                true => (found.dn, "reused", "kept", None),
                false => {
                    let password = generate_password(name);
                    let mods =
                        vec![Mod::Replace(SecretBytes::plain("unicodePwd"), HashSet::from([unicode_pwd(&password)]))];
                    ldap.modify(&found.dn, mods, vec![]).await.map_err(|e| password_error(e, &found.dn))?;
                    (found.dn, "reused", "reset", Some(password))
                }
            }
        }
        None => {
            if ldap.read(&ou, &["objectClass"]).await?.is_none() {
                return Err(AppError::usage(format!("--ou {ou}: no such OU or container in the directory"))
                    .with_hint("`ausi list-ous` shows the OUs and default containers"));
            }
            let dn = ou.child("CN", name);
            let password = generate_password(name);
            create_account(ldap, &dn, name, upn.as_deref(), &password).await.map_err(|e| password_error(e, &dn))?;
            (dn, "created", "set", Some(password))
        }
    };
    let sid = read_sid(ldap, &dn).await?;

    // The password goes to the secret store first, then the account into the configuration.
    let mut bind_checked = new_password.is_none();
    if let Some(password) = &new_password {
        target.store.store(password).map_err(|e| {
            AppError::from(e).with_hint(format!(
                "the password of {dn} was {password_state} but could not be stored: run this command again to reset it and store it",
                password_state = if action == "created" { "set" } else { "reset" }
            ))
        })?;
        bind_checked = binds_soon(&args.directory, dir, &url, &dn, password).await?;
    }
    save_config(ctx, config.as_ref(), &args.directory, &url, &dn, &target)?;

    // The rights, per selected OU.
    let mut rights = Vec::new();
    for ou in &selected {
        let who = upn.as_deref().unwrap_or(name);
        rights.push(ou_rights(ldap, ou, &sid, who, args.grant_rights, password_sync, &mut warnings).await?);
    }
    if selected.is_empty() {
        warnings.push(Warning::new(
            "no-ous-selected",
            "no OUs are selected yet: select them with `ausi select-ous`, then run this again to see (or --grant-rights to grant) the rights the account needs on them",
        ));
    }
    if !password_sync {
        warnings.push(Warning::new(
            "password-sync-off",
            "password sync is off (tenant.password_sync), so Reset Password is not among the rights: pass --password-sync if you are about to enable it",
        ));
    }

    let report = ServiceAccountReport {
        config_path: display_path(&ctx.config_path),
        account: AccountReport {
            kind: "user",
            allowed_to_retrieve: Vec::new(),
            dn: dn.to_string(),
            sam_account_name: name.to_owned(),
            user_principal_name: upn,
            object_sid: sid.to_string(),
            action,
            password,
            password_stored_in: target.reference_text(),
            bind_checked,
        },
        password_sync,
        password_sync_from,
        rights,
        grant_rights: args.grant_rights,
    };
    let missing = report.rights.iter().flat_map(|o| &o.rights).any(|r| r.state == "missing");
    let mut outcome = Outcome::new(Report::ServiceAccount(report), ExitStatus::Ok);
    if !bind_checked {
        outcome.exit = ExitStatus::Permission;
        outcome.error = Some(
            AppError::new(ErrorKind::Permission, format!("{dn} does not accept the stored password yet"))
                .with_hint("another domain controller may not have the account yet: wait for replication and run this again (the password is then reset and checked once more)"),
        );
    } else if missing {
        outcome.exit = ExitStatus::Findings;
    }
    outcome.warnings = warnings;
    Ok(outcome)
}

/// `--create-service-account --gmsa`: a group managed service account. No password is made,
/// stored or sent: the domain derives it from its KDS root key and rotates it, and only the
/// accounts named by `--gmsa-allowed` may retrieve it. The configuration is switched to
/// `bind = "kerberos"`; the task then runs as `DOMAIN\NAME$` (`install-service --run-as`).
async fn run_gmsa(
    ctx: &Context<'_>,
    args: &InstallServiceArgs,
    config: Option<AgentConfig>,
    mut warnings: Vec<Warning>,
) -> Result<Outcome> {
    let name = args.name.as_deref().unwrap_or(DEFAULT_GMSA_NAME);
    if name.ends_with('$') || name.chars().count() > 15 {
        return Err(AppError::usage(format!(
            "--name {name:?}: a gMSA's name has at most 15 characters, without the final $ (ausi adds it)"
        )));
    }
    if args.gmsa_allowed.is_empty() {
        return Err(AppError::usage("--gmsa needs the computers that may use it: --gmsa-allowed HOST$ (repeatable)")
            .with_hint("name the computer account of each machine that runs ausi (or a group of them)"));
    }
    if args.directory.bind_dn.is_none() && config.as_ref().and_then(|c| c.directory.bind_dn.as_ref()).is_none() {
        return Err(AppError::usage("creating the gMSA needs an administrator's bind")
            .with_hint("pass --bind-dn ADMIN --bind-password-stdin (an account that may create objects in the container and change OU permissions)"));
    }
    let defaults = DirectoryConfig::default();
    let dir = config.as_ref().map(|c| &c.directory).unwrap_or(&defaults);
    encrypted_dc_url(&args.directory, dir, "create the gMSA")?;
    let password_sync =
        config.as_ref().and_then(|c| c.tenant.as_ref()).is_some_and(|t| t.password_sync) || args.password_sync;
    let password_sync_from = match config.as_ref().and_then(|c| c.tenant.as_ref()) {
        Some(tenant) if tenant.password_sync => "tenant.password_sync",
        _ if args.password_sync => "--password-sync",
        _ => "off",
    };
    // The administrator binds with a password here, once: the agent itself will not.
    let admin_dir = DirectoryConfig { bind: config::BindMethod::Simple, keytab: None, spn_host: None, ..dir.clone() };
    let admin_config = config.clone().map(|c| AgentConfig { directory: admin_dir.clone(), ..c });
    let mut any = open_directory(&args.directory, admin_config.as_ref(), &mut warnings).await?;
    let nc = any.info().await?.naming_context;
    let (_, selection) = resolve_selection(&mut any, config.as_ref()).await?;
    warnings.extend(selection.warnings());
    let selected: Vec<Dn> = selection.selected.iter().map(|o| o.dn.clone()).collect();
    let AnyDirectory::Ldap(ldap) = &mut any else {
        return Err(AppError::internal("the gMSA needs a domain controller, not an export"));
    };
    let sam = format!("{name}$");
    let domain = dns_domain(&nc);

    // Who may retrieve the password, by SID.
    let mut allowed = Vec::new();
    for account in &args.gmsa_allowed {
        let entries = ldap.search(&nc, &Filter::eq("sAMAccountName", account.as_str()), &["objectSid"]).await?;
        let entry = entries.into_iter().next().ok_or_else(|| {
            AppError::usage(format!("--gmsa-allowed {account}: no account with that logon name"))
                .with_hint("a computer's logon name ends in $ (HOST$)")
        })?;
        let bytes = entry.values("objectsid").first().cloned().unwrap_or_default();
        let sid = Sid::from_bytes(&bytes)
            .map_err(|e| AppError::internal(format!("{account} has no readable objectSid")).caused_by(&e))?;
        allowed.push((account.clone(), sid));
    }
    let aces = allowed.iter().map(|(_, sid)| Ace::allowed(GMSA_RETRIEVE_MASK, 0, sid)).collect();
    let membership = SecurityDescriptor::with_dacl(Sid::builtin_administrators(), security::Acl::new(aces)).to_bytes();

    // The gMSA: reuse the one with this name (its allowed list is replaced), else create it.
    let attrs = ["objectClass", "sAMAccountName"];
    let existing = ldap.search(&nc, &Filter::eq("sAMAccountName", sam.as_str()), &attrs).await?.into_iter().next();
    let (dn, action) = match existing {
        Some(entry) => {
            let dn =
                Dn::parse(&entry.dn).map_err(|e| DirectoryError::BadDn { dn: entry.dn.clone(), detail: e.message })?;
            let is_gmsa =
                entry.values("objectclass").iter().any(|c| c.eq_ignore_ascii_case(b"msDS-GroupManagedServiceAccount"));
            if !is_gmsa {
                return Err(AppError::config(format!("the logon name {sam} is taken by {dn}, which is not a gMSA"))
                    .with_hint("choose another name with --name"));
            }
            let mods = vec![Mod::Replace(b"msDS-GroupMSAMembership".to_vec(), HashSet::from([membership.clone()]))];
            ldap.modify(&dn, mods, vec![]).await.map_err(admin_error)?;
            (dn, "reused")
        }
        None => {
            let container = match &args.ou {
                Some(text) => parse_dn_arg("--ou", text)?,
                None => nc.child("CN", "Managed Service Accounts"),
            };
            let dn = container.child("CN", name);
            let plain = |v: &str| HashSet::from([SecretBytes::plain(v)]);
            let mut attrs = vec![
                (SecretBytes::plain("objectClass"), plain("msDS-GroupManagedServiceAccount")),
                (SecretBytes::plain("sAMAccountName"), plain(&sam)),
                (SecretBytes::plain("description"), plain(DESCRIPTION)),
                (SecretBytes::plain("msDS-ManagedPasswordInterval"), plain(&GMSA_PASSWORD_INTERVAL_DAYS.to_string())),
                (SecretBytes::plain("msDS-SupportedEncryptionTypes"), plain(&GMSA_ENCRYPTION_TYPES.to_string())),
                (SecretBytes::plain("msDS-GroupMSAMembership"), HashSet::from([SecretBytes::binary(membership)])),
            ];
            if let Some(domain) = &domain {
                attrs.push((SecretBytes::plain("dNSHostName"), plain(&format!("{name}.{domain}"))));
            }
            ldap.add(&dn, attrs).await.map_err(admin_error)?;
            (dn, "created")
        }
    };
    let sid = read_sid(ldap, &dn).await?;

    // A gMSA's password exists only once the forest has a KDS root key (Add-KdsRootKey).
    if !has_kds_root_key(ldap, &nc).await {
        warnings.push(Warning::new(
            "kds-root-key-missing",
            "no KDS root key is visible in the forest (CN=Master Root Keys,CN=Group Key Distribution Service,CN=Services in the configuration partition): until a domain admin runs `Add-KdsRootKey` (effective after 10 hours) the domain cannot give the gMSA a password; Samba before 4.20 cannot at all",
        ));
    }

    // The configuration: Kerberos from now on, with no password reference.
    if dir.bind_password.is_some() {
        warnings.push(Warning::new(
            "configuration-not-switched",
            "the configuration still has directory.bind_password: remove it (and bind_dn), then set bind = \"kerberos\" to bind as the gMSA",
        ));
    } else {
        let mut keys: Vec<(&str, toml_edit::Value)> = vec![("bind", "kerberos".into())];
        if dir.url.is_empty()
            && let Some(url) = &args.directory.source
        {
            keys.push(("url", url.as_str().into()));
        }
        config::save_directory_keys(&ctx.config_path, &keys)?;
    }

    let who = domain.as_deref().map(|d| format!("{sam} ({d})")).unwrap_or_else(|| sam.clone());
    let mut rights = Vec::new();
    for ou in &selected {
        rights.push(ou_rights(ldap, ou, &sid, &who, args.grant_rights, password_sync, &mut warnings).await?);
    }
    if selected.is_empty() {
        warnings.push(Warning::new(
            "no-ous-selected",
            "no OUs are selected yet: select them with `ausi select-ous`, then run this again to see (or --grant-rights to grant) the rights the gMSA needs on them",
        ));
    }
    let report = ServiceAccountReport {
        config_path: display_path(&ctx.config_path),
        account: AccountReport {
            kind: "gmsa",
            allowed_to_retrieve: allowed.iter().map(|(name, _)| name.clone()).collect(),
            dn: dn.to_string(),
            sam_account_name: sam,
            user_principal_name: None,
            object_sid: sid.to_string(),
            action,
            password: "managed-by-the-domain",
            password_stored_in: "nowhere".to_owned(),
            bind_checked: false,
        },
        password_sync,
        password_sync_from,
        rights,
        grant_rights: args.grant_rights,
    };
    let missing = report.rights.iter().flat_map(|o| &o.rights).any(|r| r.state == "missing");
    let mut outcome =
        Outcome::new(Report::ServiceAccount(report), if missing { ExitStatus::Findings } else { ExitStatus::Ok });
    outcome.warnings = warnings;
    Ok(outcome)
}

/// Whether the forest's configuration partition shows a KDS root key (msKds-ProvRootKey).
async fn has_kds_root_key(ldap: &mut LdapDirectory, nc: &Dn) -> bool {
    let config_nc = format!("CN=Master Root Keys,CN=Group Key Distribution Service,CN=Services,CN=Configuration,{nc}");
    let Ok(base) = Dn::parse(&config_nc) else { return false };
    matches!(ldap.search(&base, &Filter::eq("objectClass", "msKds-ProvRootKey"), &["cn"]).await, Ok(found) if !found.is_empty())
}

/// Where the password goes: the configured reference, or the platform default.
struct SecretTarget {
    store: SecretRef,
    /// What `directory.bind_password` says (or will say); `None` when it is already set.
    write: Option<String>,
}

impl SecretTarget {
    fn choose(dir: &DirectoryConfig, config_path: &Path) -> Result<SecretTarget> {
        if let Some(text) = &dir.bind_password {
            let store = SecretRef::parse(text)?;
            if let SecretRef::Env(var) = &store {
                return Err(AppError::config(format!(
                    "directory.bind_password is env:{var}, which ausi cannot write the new password into"
                ))
                .with_hint(
                    "point it at a keyring: or file: reference (or remove it to use the default), then run this again",
                ));
            }
            return Ok(SecretTarget { store, write: None });
        }
        if cfg!(windows) {
            let text = "keyring:ausi/ldap-bind";
            return Ok(SecretTarget { store: SecretRef::parse(text)?, write: Some(text.to_owned()) });
        }
        // Relative in the file, so it stays beside the configuration wherever that moves; stored
        // where the next run resolves it.
        let text = "file:bind.pw";
        let store = SecretRef::parse(&config::resolve_reference(text, config_path))?;
        Ok(SecretTarget { store, write: Some(text.to_owned()) })
    }

    fn reference_text(&self) -> String {
        self.store.to_string()
    }
}

/// A sAMAccountName AD accepts: 1 to 20 characters, none of `"/\[]:;|=,+*?<>@`.
fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| AppError::usage(format!("--name {name:?}: {why}"));
    if name.is_empty() || name.chars().count() > 20 {
        return Err(bad("a logon name (sAMAccountName) has 1 to 20 characters"));
    }
    if let Some(c) = name.chars().find(|c| "\"/\\[]:;|=,+*?<>@".contains(*c) || c.is_control()) {
        return Err(bad(&format!("{c:?} is not allowed in a logon name")));
    }
    if name.ends_with('.') || name.trim().is_empty() {
        return Err(bad("a logon name may not end with a dot or be blank"));
    }
    Ok(())
}

/// `example.test` for `DC=example,DC=test`.
fn dns_domain(nc: &Dn) -> Option<String> {
    let text = nc.to_string();
    let labels: Vec<&str> = text
        .split(',')
        .filter_map(|rdn| {
            let (ty, value) = rdn.trim().split_once('=')?;
            ty.eq_ignore_ascii_case("DC").then_some(value)
        })
        .collect();
    (!labels.is_empty()).then(|| labels.join("."))
}

/// A random password from the OS's randomness: 32 characters with an upper-case letter, a
/// lower-case letter, a digit and a symbol (AD's complexity rule asks for three of the four),
/// and never containing the account name or a word of its display name (which AD also refuses).
pub fn generate_password(name: &str) -> SecretString {
    use rand::rngs::OsRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, TryRngCore};
    let mut rng = OsRng.unwrap_err();
    let all: Vec<u8> = [UPPER, LOWER, DIGITS, SYMBOLS].concat();
    let forbidden: Vec<String> = std::iter::once(name)
        .chain(DISPLAY_NAME.split(' '))
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect();
    loop {
        let mut chars = zeroize::Zeroizing::new(Vec::with_capacity(PASSWORD_LENGTH));
        for class in [UPPER, LOWER, DIGITS, SYMBOLS] {
            chars.push(class[rng.random_range(0..class.len())]);
        }
        while chars.len() < PASSWORD_LENGTH {
            chars.push(all[rng.random_range(0..all.len())]);
        }
        chars.shuffle(&mut rng);
        let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&chars).into_owned());
        let lower = zeroize::Zeroizing::new(text.to_lowercase());
        if !forbidden.iter().any(|w| lower.contains(w.as_str())) {
            return SecretString::from(text.as_str().to_owned());
        }
    }
}

struct Found {
    dn: Dn,
    disabled: bool,
}

async fn find_account(ldap: &mut LdapDirectory, nc: &Dn, name: &str) -> Result<Option<Found>> {
    let attrs = ["sAMAccountName", "sAMAccountType", "userAccountControl"];
    let entries = ldap.search(nc, &Filter::eq("sAMAccountName", name), &attrs).await?;
    let Some(entry) = entries.into_iter().next() else {
        return Ok(None);
    };
    let number =
        |attr: &str| entry.values(attr).first().and_then(|v| String::from_utf8_lossy(v).trim().parse::<i64>().ok());
    let dn = Dn::parse(&entry.dn).map_err(|e| DirectoryError::BadDn { dn: entry.dn.clone(), detail: e.message })?;
    if number("samaccounttype") != Some(i64::from(SAM_USER_ACCOUNT)) {
        return Err(AppError::config(format!(
            "the logon name {name} is taken by {dn}, which is not a user account (a computer or group)"
        ))
        .with_hint("choose another name with --name"));
    }
    let uac = number("useraccountcontrol").unwrap_or(0);
    Ok(Some(Found { dn, disabled: uac & i64::from(crate::directory::UAC_ACCOUNT_DISABLE) != 0 }))
}

async fn create_account(
    ldap: &mut LdapDirectory,
    dn: &Dn,
    name: &str,
    upn: Option<&str>,
    password: &SecretString,
) -> std::result::Result<(), DirectoryError> {
    let plain = |v: &str| HashSet::from([SecretBytes::plain(v)]);
    let uac = UAC_SERVICE_ACCOUNT.to_string();
    let mut attrs = vec![
        (SecretBytes::plain("objectClass"), plain("user")),
        (SecretBytes::plain("sAMAccountName"), plain(name)),
        (SecretBytes::plain("displayName"), plain(DISPLAY_NAME)),
        (SecretBytes::plain("description"), plain(DESCRIPTION)),
        (SecretBytes::plain("unicodePwd"), HashSet::from([unicode_pwd(password)])),
        (SecretBytes::plain("userAccountControl"), plain(&uac)),
    ];
    if let Some(upn) = upn {
        attrs.push((SecretBytes::plain("userPrincipalName"), plain(upn)));
    }
    ldap.add(dn, attrs).await
}

/// A refusal of the administrator's bind, with what to do about it.
fn admin_error(e: DirectoryError) -> AppError {
    let denied = matches!(&e, DirectoryError::AccessDenied { .. });
    let app = AppError::from(e);
    if denied {
        return app.with_hint(
            "bind as an account that may create users in the OU and change its permissions (e.g. a domain administrator): --bind-dn ADMIN --bind-password-stdin",
        );
    }
    app
}

/// AD's refusals of a password, explained (the password itself is never in them).
fn password_error(e: DirectoryError, dn: &Dn) -> AppError {
    let constraint = matches!(&e, DirectoryError::Ldap { code: 19, .. });
    let mut app = admin_error(e);
    if constraint {
        app = app.with_hint(format!(
            "the domain's password policy refused a random {PASSWORD_LENGTH}-character password for {dn} (a minimum length above {PASSWORD_LENGTH}, or a policy filter): tell ausi's maintainers"
        ));
    }
    app
}

async fn read_sid(ldap: &mut LdapDirectory, dn: &Dn) -> Result<Sid> {
    let entry =
        ldap.read(dn, &["objectSid"]).await?.ok_or_else(|| DirectoryError::NoSuchObject { dn: dn.to_string() })?;
    let bytes = entry.values("objectsid").first().cloned().unwrap_or_default();
    Sid::from_bytes(&bytes).map_err(|e| AppError::internal(format!("{dn} has no readable objectSid")).caused_by(&e))
}

/// Settings for binding as the service account, on the same DC and TLS terms as the admin.
fn account_settings(
    args: &DirectoryArgs,
    dir: &DirectoryConfig,
    url: &str,
    dn: &Dn,
    password: &SecretString,
) -> LdapSettings {
    LdapSettings {
        url: url.to_owned(),
        starttls: args.starttls || dir.starttls,
        bind: Bind::Simple { account: dn.to_string(), password: password.clone() },
        ca_file: args.ca_file.clone().or_else(|| dir.ca_file.clone()),
        tls_verify: dir.tls_verify,
        allow_plaintext_bind: false,
        connect_timeout: Duration::from_secs(dir.connect_timeout_secs.max(1)),
        operation_timeout: Duration::from_secs(dir.operation_timeout_secs.max(1)),
        page_size: dir.page_size,
        base_dn: dir.base_dn.clone(),
        range_step: DEFAULT_RANGE_STEP,
    }
}

/// Whether the password stored for the account still binds (`false` when it is missing or
/// rejected: then it is reset).
async fn stored_password_binds(
    args: &DirectoryArgs,
    dir: &DirectoryConfig,
    url: &str,
    dn: &Dn,
    target: &SecretTarget,
) -> Result<bool> {
    let password = match target.store.resolve() {
        Ok(password) => password,
        Err(SecretError::Missing { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    match LdapDirectory::connect(account_settings(args, dir, url, dn, &password)).await {
        Ok(_) => Ok(true),
        Err(DirectoryError::BindRejected { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Binds as the account with its new password, retrying briefly (a DC behind a load-balanced
/// name may not have the change yet).
async fn binds_soon(
    args: &DirectoryArgs,
    dir: &DirectoryConfig,
    url: &str,
    dn: &Dn,
    password: &SecretString,
) -> Result<bool> {
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        match LdapDirectory::connect(account_settings(args, dir, url, dn, password)).await {
            Ok(_) => return Ok(true),
            Err(DirectoryError::BindRejected { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Writes `directory.bind_dn` (and, when they were not set, the password reference and the DC
/// the account was made on) into the configuration, keeping everything else.
fn save_config(
    ctx: &Context<'_>,
    config: Option<&AgentConfig>,
    args: &DirectoryArgs,
    url: &str,
    dn: &Dn,
    target: &SecretTarget,
) -> Result<()> {
    let dir = config.map(|c| &c.directory);
    let mut keys: Vec<(&str, toml_edit::Value)> = vec![("bind_dn", dn.to_string().into())];
    if let Some(reference) = &target.write {
        keys.push(("bind_password", reference.as_str().into()));
    }
    if dir.is_none_or(|d| d.url.is_empty()) {
        keys.push(("url", url.into()));
        if args.starttls {
            keys.push(("starttls", true.into()));
        }
    }
    if dir.and_then(|d| d.ca_file.as_ref()).is_none()
        && let Some(ca) = &args.ca_file
    {
        let absolute = std::path::absolute(ca).unwrap_or_else(|_| ca.clone());
        keys.push(("ca_file", absolute.display().to_string().into()));
    }
    config::save_directory_keys(&ctx.config_path, &keys)?;
    Ok(())
}

/// The ACEs the account needs on one OU: read for sync; Reset Password on users below it for
/// password sync. Each is "This object and all descendants" (read) or "Descendant User objects"
/// (reset), granted to the account itself, never to a group or the domain.
fn needed_aces(sid: &Sid, password_sync: bool) -> Vec<(&'static str, &'static str, Ace, &'static str)> {
    let read = Ace::allowed(
        security::RIGHT_DS_LIST_CONTENTS | security::RIGHT_DS_READ_PROPERTY | security::RIGHT_DS_LIST_OBJECT,
        security::CONTAINER_INHERIT,
        sid,
    );
    let mut out = vec![(
        "read",
        "List Contents, Read All Properties, List Object; this object and all descendants",
        read,
        "/I:T /G \"{who}:LCRPLO\"",
    )];
    if password_sync {
        let reset = Ace::allowed_object(
            security::RIGHT_DS_CONTROL_ACCESS,
            security::CONTAINER_INHERIT | security::INHERIT_ONLY,
            ObjectGuid::parse(security::RESET_PASSWORD_RIGHT),
            ObjectGuid::parse(security::USER_CLASS),
            sid,
        );
        out.push((
            "reset-password",
            "Reset Password (extended right); descendant user objects",
            reset,
            "/I:S /G \"{who}:CA;Reset Password;user\"",
        ));
    }
    out
}

async fn ou_rights(
    ldap: &mut LdapDirectory,
    ou: &Dn,
    sid: &Sid,
    who: &str,
    grant_rights: bool,
    password_sync: bool,
    warnings: &mut Vec<Warning>,
) -> Result<OuRights> {
    let needed = needed_aces(sid, password_sync);
    let sd_control = || RawControl {
        ctype: security::SD_FLAGS_OID.into(),
        crit: true,
        val: Some(security::sd_flags_value(security::DACL_SECURITY_INFORMATION)),
    };
    let read = ldap.read_with_controls(ou, &["nTSecurityDescriptor"], vec![sd_control()]).await;
    let descriptor = match read {
        Ok(Some(entry)) => entry.values("ntsecuritydescriptor").first().cloned(),
        Ok(None) => return Err(DirectoryError::NoSuchObject { dn: ou.to_string() }.into()),
        Err(e) if !grant_rights => {
            warnings.push(Warning::new("dacl-unreadable", format!("cannot read the permissions of {ou}: {e}")));
            None
        }
        Err(e) => return Err(admin_error(e)),
    };
    let mut sd = match descriptor {
        Some(bytes) => Some(SecurityDescriptor::parse(&bytes).map_err(|e| {
            AppError::internal(format!("cannot understand the security descriptor of {ou}")).caused_by(&e)
        })?),
        None if grant_rights => {
            return Err(AppError::new(ErrorKind::Permission, format!("the DC returned no DACL for {ou}"))
                .with_hint("bind as an account that may change permissions on the OU (a domain administrator)"));
        }
        None => None,
    };
    let mut rights = Vec::new();
    let mut changed = false;
    for (right, description, ace, dsacls) in needed {
        let state = match sd.as_mut().and_then(|sd| sd.dacl.as_mut()) {
            None => "unknown",
            Some(dacl) if dacl.has_explicit(&ace) => "present",
            Some(dacl) if grant_rights => {
                dacl.add_explicit(ace);
                changed = true;
                "added"
            }
            Some(_) => "missing",
        };
        let dsacls = format!("dsacls \"{ou}\" {}", dsacls.replace("{who}", who));
        rights.push(RightState { right, description, state, dsacls });
    }
    if changed && let Some(sd) = &sd {
        let value = HashSet::from([sd.to_bytes()]);
        ldap.modify(ou, vec![Mod::Replace(b"nTSecurityDescriptor".to_vec(), value)], vec![sd_control()])
            .await
            .map_err(admin_error)?;
    }
    Ok(OuRights { ou: ou.to_string(), rights })
}

impl ServiceAccountReport {
    pub fn table(&self) -> String {
        let a = &self.account;
        let password = match a.password {
            "kept" => "its stored password still binds and was kept".to_owned(),
            state => format!("a new random password was {state} and stored in {}", a.password_stored_in),
        };
        let mut out = format!(
            "Service account {} ({}), {}: {}{}.\n",
            output::cell(&a.dn),
            output::cell(&a.sam_account_name),
            a.action,
            password,
            if a.bind_checked { "; a bind with it succeeded" } else { "; a bind with it FAILED" }
        );
        out.push_str(&format!("Configuration: directory.bind_dn in {}.\n", output::cell(&self.config_path)));
        if self.rights.is_empty() {
            out.push_str("No OUs are selected, so no rights are listed: run `ausi select-ous`, then this again.\n");
            return out;
        }
        let mut t = output::table(&["OU", "Right", "State"]);
        for ou in &self.rights {
            for r in &ou.rights {
                t.add_row(vec![output::cell(&ou.ou), format!("{}: {}", r.right, r.description), r.state.to_owned()]);
            }
        }
        out.push_str(&format!("{t}\n"));
        if self.rights.iter().flat_map(|o| &o.rights).any(|r| r.state != "present" && r.state != "added") {
            out.push_str("Grant them with --grant-rights, or on Windows as a domain administrator:\n");
        } else {
            out.push_str("The same grants with Windows tools, for the record:\n");
        }
        for r in self.rights.iter().flat_map(|o| &o.rights) {
            out.push_str(&format!("  {}\n", output::cell(&r.dsacls)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::ExposeSecret;

    #[test]
    fn passwords_are_long_complex_and_random() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let p = generate_password("svc-ausi");
            let text = p.expose_secret();
            assert_eq!(text.chars().count(), PASSWORD_LENGTH);
            for class in [UPPER, LOWER, DIGITS, SYMBOLS] {
                assert!(text.bytes().any(|b| class.contains(&b)), "a character of every class");
            }
            assert!(text.bytes().all(|b| [UPPER, LOWER, DIGITS, SYMBOLS].iter().any(|c| c.contains(&b))));
            assert!(!text.to_lowercase().contains("svc-ausi") && !text.to_lowercase().contains("ausi"));
            seen.insert(text.to_owned());
        }
        assert_eq!(seen.len(), 200, "no password repeats");
    }

    #[test]
    fn names_are_checked_like_ad_does() {
        for good in ["svc-ausi", "a", "svc.ausi_01", "twenty-characters-ok"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "twenty-one-characters", "svc@ausi", "svc,ausi", "svc.", "a\"b", "   "] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_dns_domain_comes_from_the_naming_context() {
        assert_eq!(dns_domain(&Dn::parse("DC=example,DC=test").unwrap()).as_deref(), Some("example.test"));
        assert_eq!(dns_domain(&Dn::parse("O=x").unwrap()), None);
    }

    #[test]
    fn plain_ldap_is_refused_unless_starttls() {
        let dir = DirectoryConfig::default();
        let args = |source: &str, starttls: bool| DirectoryArgs {
            source: Some(source.to_owned()),
            starttls,
            ..DirectoryArgs::default()
        };
        assert!(encrypted_dc_url(&args("ldaps://dc1", false), &dir, "create the service account").is_ok());
        assert!(encrypted_dc_url(&args("ldap://dc1", true), &dir, "create the service account").is_ok());
        let e = encrypted_dc_url(&args("ldap://dc1", false), &dir, "create the service account").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(encrypted_dc_url(&args("ldif:x.ldif", false), &dir, "create the service account").is_err());
        // allow_plaintext_bind does not lower the bar here.
        let lax = DirectoryConfig { allow_plaintext_bind: true, ..DirectoryConfig::default() };
        assert!(encrypted_dc_url(&args("ldap://dc1", false), &lax, "create the service account").is_err());
    }

    #[test]
    fn rights_are_one_read_ace_and_optionally_one_reset_ace() {
        let sid = Sid::from_bytes(&[1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]).unwrap();
        assert_eq!(needed_aces(&sid, false).len(), 1);
        let both = needed_aces(&sid, true);
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].2.ace_type, security::ACCESS_ALLOWED_OBJECT);
        assert_eq!(both[1].2.sid(), Some(sid));
        assert!(both.iter().all(|(_, _, ace, _)| !ace.is_inherited()));
    }
}

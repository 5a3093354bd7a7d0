//! Provisioning policies: how an AD user or group becomes a SCIM resource, which attributes must
//! be there, and (in [`scoping`]) who is in scope. `Default` is built in; others are TOML tables
//! `[policies.NAME]` in `agent.toml`, loaded and checked with the configuration. Pure: no I/O.
//!
//! A policy's user mapping starts from Default's (written as expressions, [`DEFAULT_USER_MAPPING`])
//! and replaces, adds or (with an empty source) removes targets, so a policy that only rewrites
//! the UPN suffix is one line.

pub mod expr;
pub mod map;
pub mod scoping;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde::Deserialize;

use expr::Expr;

/// The built-in policy: today's fixed mapping, byte for byte.
pub const DEFAULT: &str = "Default";

/// The SCIM schemas a policy writes into.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Default's user mapping as expressions: what a policy starts from. Default itself maps with
/// fixed code (byte-identical to earlier releases); these give the same values for every user
/// Default provisions (the required four present, no surrounding white space in the names).
pub const DEFAULT_USER_MAPPING: [(&str, &str); 10] = [
    ("userName", "[userPrincipalName]"),
    ("name.givenName", "[givenName]"),
    ("name.familyName", "[sn]"),
    ("displayName", DEFAULT_DISPLAY_NAME),
    ("emails[work,primary]", "[mail]"),
    ("active", DEFAULT_ACTIVE),
    ("title", "[title]"),
    ("phoneNumbers[work]", "[telephoneNumber]"),
    ("enterprise.employeeNumber", "[employeeNumber]"),
    ("enterprise.department", "[department]"),
];

/// Default's displayName: the display name, else the first and last names.
pub const DEFAULT_DISPLAY_NAME: &str = "Coalesce(Trim([displayName]), Join(\" \", Trim([givenName]), Trim([sn])))";
/// Default's active: the account is not disabled.
pub const DEFAULT_ACTIVE: &str = "Not(BitAnd([userAccountControl], 2))";

/// Default's group mapping as an expression (the name: cn, else the RDN's value).
pub const DEFAULT_GROUP_MAPPING: [(&str, &str); 1] = [("displayName", "Coalesce([cn], [name])")];

/// `[policies.NAME]` as written in `agent.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// SCIM target → expression; replaces or adds to Default's mapping, `""` removes a target.
    #[serde(default)]
    pub user: BTreeMap<String, String>,
    /// Group targets (only `displayName`).
    #[serde(default)]
    pub group: BTreeMap<String, String>,
    /// The mapped targets a user must have (else quarantined); by default `userName` and those of
    /// Default's required four (`name.givenName`, `name.familyName`, `emails[work,primary]`) still mapped.
    #[serde(default)]
    pub required: Option<Vec<String>>,
    #[serde(default)]
    pub scope: scoping::Scoping,
    #[serde(default)]
    pub groups: scoping::GroupOptions,
}

/// Where a mapped value goes in the SCIM resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A core attribute, or a sub-attribute of a complex one (`name.givenName`).
    Core { attr: String, sub: Option<String> },
    /// One typed entry of a multi-valued attribute: `emails[work,primary]`, `addresses[home].locality`.
    Multi { attr: String, kind: String, primary: bool, sub: String },
    /// An attribute of a schema extension: the enterprise one (`enterprise.department`) or any
    /// URN (`urn:...:department`).
    Extension { schema: String, attr: String },
}

/// Core User attributes that a policy may map (RFC 7643 4.1): simple ones.
const CORE_SIMPLE: [&str; 10] = [
    "userName",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
];
const NAME_SUBS: [&str; 6] =
    ["formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix"];
/// Multi-valued core attributes and the sub-attributes an entry may have besides `type`/`primary`.
const MULTI: [(&str, &[&str]); 8] = [
    ("emails", &["value", "display"]),
    ("phoneNumbers", &["value", "display"]),
    ("ims", &["value", "display"]),
    ("photos", &["value", "display"]),
    ("addresses", &["formatted", "streetAddress", "locality", "region", "postalCode", "country"]),
    ("entitlements", &["value", "display"]),
    ("roles", &["value", "display"]),
    ("x509Certificates", &["value", "display"]),
];
/// Enterprise extension attributes a policy may map, in the order a resource lists them;
/// `manager` is built in (from AD's `manager`, resolved to the manager's SCIM id when the manager
/// is provisioned).
const ENTERPRISE: [&str; 5] = ["employeeNumber", "costCenter", "organization", "division", "department"];

impl Target {
    /// Whether this is the simple core attribute `name` (`userName`, `active`, …).
    pub fn is_core(&self, name: &str) -> bool {
        matches!(self, Target::Core { attr, sub: None } if attr == name)
    }

    /// Parses a target as written in a policy; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Target, String> {
        let exact =
            |list: &[&str], name: &str| list.iter().find(|a| a.eq_ignore_ascii_case(name)).map(|a| (*a).to_owned());
        if let Some(rest) = text.strip_prefix("enterprise.") {
            return match exact(&ENTERPRISE, rest) {
                Some(attr) => Ok(Target::Extension { schema: ENTERPRISE_SCHEMA.to_owned(), attr }),
                None if rest.eq_ignore_ascii_case("manager") => Err(
                    "enterprise.manager is built in (AD's manager, sent as the manager's SCIM id) and cannot be mapped"
                        .to_owned(),
                ),
                None => Err(format!(
                    "the enterprise extension has no attribute {rest:?} (it has {})",
                    ENTERPRISE.join(", ")
                )),
            };
        }
        if text.to_ascii_lowercase().starts_with("urn:") {
            let (schema, attr) = text.rsplit_once(':').unwrap_or((text, ""));
            if attr.is_empty() || !attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(format!("{text:?}: an extension target is SCHEMA-URN:attribute"));
            }
            if schema.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
                return Target::parse(&format!("enterprise.{attr}"));
            }
            if schema.eq_ignore_ascii_case(USER_SCHEMA) {
                return Target::parse(attr);
            }
            return Ok(Target::Extension { schema: schema.to_owned(), attr: attr.to_owned() });
        }
        if let Some((head, tail)) = text.split_once('[') {
            let (inside, after) = tail.split_once(']').ok_or_else(|| format!("{text:?}: missing ]"))?;
            let (attr, subs) = MULTI.iter().find(|(a, _)| a.eq_ignore_ascii_case(head)).ok_or_else(|| {
                format!("{head:?} is not a multi-valued SCIM attribute (emails, phoneNumbers, addresses, …)")
            })?;
            let (kind, flag) = match inside.split_once(',') {
                Some((kind, flag)) => (kind.trim(), Some(flag.trim())),
                None => (inside.trim(), None),
            };
            let primary = match flag {
                None => false,
                Some(f) if f.eq_ignore_ascii_case("primary") => true,
                Some(f) => return Err(format!("{text:?}: expected [TYPE] or [TYPE,primary], found {f:?}")),
            };
            if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(format!("{text:?}: the type in [TYPE] is a word such as work, home, mobile"));
            }
            let sub = match after.strip_prefix('.') {
                Some(sub) => exact(subs, sub).ok_or_else(|| {
                    format!("{attr} entries have no sub-attribute {sub:?} (they have {})", subs.join(", "))
                })?,
                None if after.is_empty() && subs.contains(&"value") => "value".to_owned(),
                None => return Err(format!("{text:?}: name the sub-attribute, e.g. {attr}[{kind}].{}", subs[0])),
            };
            return Ok(Target::Multi { attr: (*attr).to_owned(), kind: kind.to_owned(), primary, sub });
        }
        if let Some((head, sub)) = text.split_once('.') {
            if head.eq_ignore_ascii_case("name") {
                let sub = exact(&NAME_SUBS, sub)
                    .ok_or_else(|| format!("name has no sub-attribute {sub:?} (it has {})", NAME_SUBS.join(", ")))?;
                return Ok(Target::Core { attr: "name".to_owned(), sub: Some(sub) });
            }
            return Err(format!("{text:?} is not a SCIM User attribute"));
        }
        if let Some(attr) = exact(&CORE_SIMPLE, text) {
            return Ok(Target::Core { attr, sub: None });
        }
        let hint = match text.to_ascii_lowercase().as_str() {
            "id" | "externalid" | "meta" => " (set by ausi: externalId is the objectGUID)",
            "groups" => " (group memberships are sent from the groups)",
            "password" => " (ausi never sends passwords in a mapping)",
            "name" | "emails" | "phonenumbers" | "addresses" => {
                " (map a sub-attribute: name.givenName, emails[work], …)"
            }
            _ => "",
        };
        Err(format!("{text:?} is not a SCIM User attribute a policy can map{hint}"))
    }

    /// The canonical spelling (what reports and rule names show).
    pub fn name(&self) -> String {
        match self {
            Target::Core { attr, sub: None } => attr.clone(),
            Target::Core { attr, sub: Some(sub) } => format!("{attr}.{sub}"),
            Target::Multi { attr, kind, primary, sub } => {
                let flag = if *primary { ",primary" } else { "" };
                let sub = if sub == "value" { String::new() } else { format!(".{sub}") };
                format!("{attr}[{kind}{flag}]{sub}")
            }
            Target::Extension { schema, attr } if schema == ENTERPRISE_SCHEMA => format!("enterprise.{attr}"),
            Target::Extension { schema, attr } => format!("{schema}:{attr}"),
        }
    }

    /// The same place in the resource, whatever the spelling (`emails[work]` and
    /// `emails[work,primary]` are one entry).
    fn slot(&self) -> (String, String, String) {
        match self {
            Target::Core { attr, sub } => (String::new(), attr.clone(), sub.clone().unwrap_or_default()),
            Target::Multi { attr, kind, sub, .. } => (format!("{attr}[{kind}]"), attr.clone(), sub.clone()),
            Target::Extension { schema, attr } => (schema.clone(), attr.clone(), String::new()),
        }
    }
}

/// One mapping: a target and the expression that produces its value.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub target: Target,
    pub expr: Expr,
    /// The target's canonical spelling ([`Target::name`]), made once: the rules name it per user.
    pub name: String,
    /// Default's displayName or active, computed without the interpreter ([`map::Shortcut`]).
    shortcut: Option<map::Shortcut>,
    /// What the per-user code asks of the target, answered once when the policy loads.
    pub role: Role,
    /// The field an expression that is one attribute reads, when a field holds it.
    field: Option<fn(&crate::directory::DirObject) -> &Option<String>>,
}

/// The questions the rules and the mapping engine ask of a mapping's target for every user,
/// answered when the policy loads (comparing target names per user cost more than mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// `userName`: a duplicate key, and `userName.required` names it.
    pub user_name: bool,
    /// `active`, which takes a boolean.
    pub active: bool,
    /// An entry of `emails` (`Some(primary)`): an address, and the email duplicate key.
    pub email: Option<bool>,
    /// The policy requires a value (`required`, in any spelling of the target).
    pub required: bool,
    /// Where the value goes in the resource: a core attribute's place in the canonical order
    /// (`usize::MAX`: none, it is left out), an extension attribute's among the enterprise
    /// attributes (`usize::MAX`: after them, by name).
    pub(crate) place: usize,
}

impl Role {
    fn of(target: &Target) -> Role {
        let place = match target {
            Target::Core { attr, .. } | Target::Multi { attr, .. } => map::core_place(attr),
            Target::Extension { attr, .. } => ENTERPRISE.iter().position(|e| e == attr),
        };
        Role {
            user_name: target.is_core("userName"),
            active: target.is_core("active"),
            email: match target {
                Target::Multi { attr, primary, .. } if attr == "emails" => Some(*primary),
                _ => None,
            },
            required: false,
            place: place.unwrap_or(usize::MAX),
        }
    }

    /// A duplicate rule compares the value.
    pub fn is_key(&self) -> bool {
        self.user_name || self.email.is_some()
    }
}

impl PartialEq for Mapping {
    fn eq(&self, other: &Mapping) -> bool {
        self.target == other.target && self.expr.source() == other.expr.source()
    }
}

impl Mapping {
    /// Parses a mapping; `place` names it in the error (`user."userName"`).
    fn parse(target: Target, source: &str, place: &str) -> Result<Mapping, String> {
        let expr = Expr::parse(source).map_err(|e| format!("{place}: {e}"))?;
        Ok(Mapping {
            name: target.name(),
            shortcut: map::Shortcut::of(&expr),
            role: Role::of(&target),
            field: expr.single_attribute().and_then(crate::directory::text_field),
            target,
            expr,
        })
    }

    /// One of Default's built-in mappings (checked by a test).
    fn builtin(target: &str, source: &str) -> Mapping {
        let target = Target::parse(target).expect("Default's targets parse");
        Mapping::parse(target, source, "Default").expect("Default's expressions parse")
    }

    /// Default's group mapping (only `displayName`, which is no User target).
    fn builtin_group(target: &str, source: &str) -> Mapping {
        let target = Target::Core { attr: target.to_owned(), sub: None };
        Mapping::parse(target, source, "Default").expect("Default's expressions parse")
    }
}

/// How users are mapped.
#[derive(Debug, Clone, PartialEq)]
pub enum UserMapping {
    /// The built-in Default mapping (fixed code, byte-identical to earlier releases).
    Default,
    /// Default's expressions with the policy's changes, in Default's order, added targets after.
    Mapped(Vec<Mapping>),
}

/// A loaded, checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub user: UserMapping,
    /// The group's displayName; `None`: Default's (cn, else the RDN's value, else sAMAccountName).
    pub group_name: Option<Mapping>,
    /// The targets a user must have (by canonical name); empty for Default, whose required rules
    /// are the historic ones on the directory attributes.
    pub required: Vec<Target>,
    pub scope: scoping::Scoping,
    pub groups: scoping::GroupOptions,
}

/// A policy that does not load: names the policy and the place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("policies.{policy}: {message}")]
pub struct PolicyError {
    pub policy: String,
    pub message: String,
}

impl Policy {
    /// The built-in Default policy.
    pub fn default_policy() -> Policy {
        Policy {
            name: DEFAULT.to_owned(),
            user: UserMapping::Default,
            group_name: None,
            required: Vec::new(),
            scope: scoping::Scoping::default(),
            groups: scoping::GroupOptions::default(),
        }
    }

    pub fn is_default(&self) -> bool {
        self.user == UserMapping::Default && self.group_name.is_none()
    }

    /// Builds and checks policy `name` from its table.
    pub fn compile(name: &str, config: &PolicyConfig) -> Result<Policy, PolicyError> {
        let err = |message: String| PolicyError { policy: name.to_owned(), message };
        if name.eq_ignore_ascii_case(DEFAULT) {
            return Err(err("Default is built in and cannot be redefined; give your policy another name".to_owned()));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return Err(err("a policy name is letters, digits, '-', '_' and '.'".to_owned()));
        }
        let mut mappings: Vec<Mapping> = DEFAULT_USER_MAPPING.iter().map(|(t, s)| Mapping::builtin(t, s)).collect();
        for (text, source) in &config.user {
            let place = format!("user.\"{text}\"");
            let target = Target::parse(text).map_err(|m| err(format!("{place}: {m}")))?;
            let position = mappings.iter().position(|m| m.target.slot() == target.slot());
            if source.trim().is_empty() {
                if let Some(i) = position {
                    mappings.remove(i);
                }
                continue;
            }
            let mapping = Mapping::parse(target, source, &place).map_err(err)?;
            match position {
                Some(i) => mappings[i] = mapping,
                None => mappings.push(mapping),
            }
        }
        let user_name = Target::Core { attr: "userName".to_owned(), sub: None };
        if !mappings.iter().any(|m| m.target == user_name) {
            return Err(err("user.\"userName\": userName cannot be removed (every SCIM user has one)".to_owned()));
        }
        // Two targets for the same entry with different primary flags would send it twice.
        for (i, m) in mappings.iter().enumerate() {
            if let Some(other) = mappings[..i].iter().find(|o| o.target.slot() == m.target.slot()) {
                return Err(err(format!(
                    "user: \"{}\" and \"{}\" are the same target",
                    other.target.name(),
                    m.target.name()
                )));
            }
        }
        let mut group_name = None;
        for (text, source) in &config.group {
            if text != "displayName" {
                return Err(err(format!("group.\"{text}\": a group mapping has only displayName")));
            }
            if !source.trim().is_empty() {
                let target = Target::Core { attr: "displayName".to_owned(), sub: None };
                group_name = Some(Mapping::parse(target, source, "group.\"displayName\"").map_err(err)?);
            }
        }
        let required = match &config.required {
            Some(list) => {
                let mut required = Vec::new();
                for text in list {
                    let target = Target::parse(text).map_err(|m| err(format!("required: {m}")))?;
                    if !mappings.iter().any(|m| m.target.slot() == target.slot()) {
                        return Err(err(format!("required: \"{text}\" is not mapped by this policy")));
                    }
                    required.push(target);
                }
                if !required.contains(&user_name) {
                    required.insert(0, user_name);
                }
                required
            }
            None => ["userName", "name.givenName", "name.familyName", "emails[work,primary]"]
                .iter()
                .map(|t| Target::parse(t).expect("Default's targets parse"))
                .filter(|t| mappings.iter().any(|m| m.target.slot() == t.slot()))
                .collect(),
        };
        for m in &mut mappings {
            m.role.required = required.iter().any(|t| t.slot() == m.target.slot());
        }
        config.scope.check().map_err(|m| err(format!("scope: {m}")))?;
        config.groups.check().map_err(|m| err(format!("groups: {m}")))?;
        Ok(Policy {
            name: name.to_owned(),
            user: UserMapping::Mapped(mappings),
            group_name,
            required,
            scope: config.scope.clone(),
            groups: config.groups.clone(),
        })
    }

    /// Policy `name`: Default, or one of `configured` (`[policies.NAME]`).
    pub fn resolve(name: &str, configured: &BTreeMap<String, PolicyConfig>) -> Result<Policy, PolicyError> {
        if name == DEFAULT {
            return Ok(Policy::default_policy());
        }
        match configured.get(name) {
            Some(config) => Policy::compile(name, config),
            None => Err(PolicyError { policy: name.to_owned(), message: unknown(name, configured) }),
        }
    }

    /// The user mapping, Default's written as expressions (parsed once). Borrowed, never copied:
    /// the sync evaluates it several times per user, and a copy per call (parse trees, compiled
    /// regexes with fresh caches) cost more than the evaluation itself.
    pub fn user_mappings(&self) -> &[Mapping] {
        static DEFAULT_MAPPINGS: LazyLock<Vec<Mapping>> =
            LazyLock::new(|| DEFAULT_USER_MAPPING.iter().map(|(t, s)| Mapping::builtin(t, s)).collect());
        match &self.user {
            UserMapping::Default => &DEFAULT_MAPPINGS,
            UserMapping::Mapped(m) => m,
        }
    }

    /// Every directory attribute the policy reads (lower-case): its user mappings' (Default's
    /// written as expressions, which read what its fixed code reads), and so what its required
    /// and duplicate rules judge (the mapped values); its group name's (Default's: cn, the RDN);
    /// its scoping rules' and its group options'. What the directory is asked for adds the
    /// attributes ausi itself needs ([`crate::directory::STRUCTURAL_ATTRIBUTES`]).
    pub fn attributes(&self) -> BTreeSet<String> {
        let mut attributes: BTreeSet<String> = self.user_mappings().iter().flat_map(|m| m.expr.attributes()).collect();
        match &self.group_name {
            Some(m) => attributes.extend(m.expr.attributes()),
            None => attributes
                .extend(DEFAULT_GROUP_MAPPING.iter().flat_map(|(t, s)| Mapping::builtin_group(t, s).expr.attributes())),
        }
        attributes.extend(self.scope.attributes());
        attributes.extend(self.groups.attributes());
        attributes
    }

    /// What the watermark keeps of the policy, so that a changed policy makes the next run a
    /// full re-read and re-evaluation: empty for Default (an upgrade keeps its watermark), else a
    /// digest of everything that shapes what is read and sent.
    pub fn fingerprint(&self) -> String {
        if *self == Policy::default_policy() {
            return String::new();
        }
        let mappings: Vec<String> =
            self.user_mappings().iter().map(|m| format!("{}={}", m.target.name(), m.expr.source())).collect();
        let group = self.group_name.as_ref().map(|m| m.expr.source().to_owned()).unwrap_or_default();
        let required: Vec<String> = self.required.iter().map(Target::name).collect();
        let text = format!("{mappings:?}|{group}|{required:?}|{:?}|{:?}", self.scope, self.groups);
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in text.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

/// "no policy X": lists the names there are.
pub fn unknown(name: &str, configured: &BTreeMap<String, PolicyConfig>) -> String {
    let mut names = vec![DEFAULT.to_owned()];
    names.extend(configured.keys().cloned());
    format!(
        "no provisioning policy {name:?}: the policies are {} (add [policies.{name}] to agent.toml)",
        names.join(", ")
    )
}

/// Every policy name there is: Default and the configured ones.
pub fn names(configured: &BTreeMap<String, PolicyConfig>) -> Vec<String> {
    std::iter::once(DEFAULT.to_owned()).chain(configured.keys().cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> PolicyConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn targets_parse_and_print_canonically() {
        for (text, name) in [
            ("userName", "userName"),
            ("USERNAME", "userName"),
            ("name.givenname", "name.givenName"),
            ("emails[work,primary]", "emails[work,primary]"),
            ("emails[work].value", "emails[work]"),
            ("phoneNumbers[mobile]", "phoneNumbers[mobile]"),
            ("addresses[work].locality", "addresses[work].locality"),
            ("enterprise.costCenter", "enterprise.costCenter"),
            ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "enterprise.department"),
            (
                "urn:example:params:scim:schemas:extension:acme:2.0:User:badge",
                "urn:example:params:scim:schemas:extension:acme:2.0:User:badge",
            ),
        ] {
            assert_eq!(Target::parse(text).unwrap().name(), name, "{text}");
        }
        for (text, says) in [
            ("externalId", "objectGUID"),
            ("enterprise.manager", "built in"),
            ("enterprise.shoeSize", "has no attribute"),
            ("emails", "sub-attribute"),
            ("addresses[work]", "name the sub-attribute"),
            ("emails[work,main]", "[TYPE,primary]"),
            ("name.nick", "no sub-attribute"),
            ("shoeSize", "not a SCIM User attribute"),
        ] {
            let e = Target::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_policy_changes_defaults_mapping_in_place() {
        let p = Policy::compile(
            "Rewrite",
            &config(
                r#"
                user."userName" = 'Replace([userPrincipalName], "@corp.local", "@example.com")'
                user."title" = ""
                user."enterprise.costCenter" = '[extensionAttribute1]'
                "#,
            ),
        )
        .unwrap();
        let names: Vec<String> = p.user_mappings().iter().map(|m| m.target.name()).collect();
        assert_eq!(names[0], "userName");
        assert!(p.user_mappings()[0].expr.source().starts_with("Replace("));
        assert!(!names.contains(&"title".to_owned()));
        assert_eq!(names.last().unwrap(), "enterprise.costCenter");
        let required: Vec<String> = p.required.iter().map(Target::name).collect();
        assert_eq!(required, ["userName", "name.givenName", "name.familyName", "emails[work,primary]"]);
    }

    #[test]
    fn load_errors_name_the_policy_and_the_mapping() {
        let e = Policy::compile("P", &config("user.\"shoeSize\" = '[x]'")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "policies.P: user.\"shoeSize\": \"shoeSize\" is not a SCIM User attribute a policy can map"
        );
        let e = Policy::compile("P", &config("user.\"userName\" = ''")).unwrap_err();
        assert!(e.to_string().contains("userName cannot be removed"), "{e}");
        let e = Policy::compile("P", &config("required = [\"title\"]\nuser.title = ''")).unwrap_err();
        assert!(e.to_string().contains("required: \"title\" is not mapped"), "{e}");
        let e = Policy::compile("Default", &PolicyConfig::default()).unwrap_err();
        assert!(e.to_string().contains("built in"), "{e}");
        let e = Policy::compile("P", &config("group.\"members\" = '[x]'")).unwrap_err();
        assert!(e.to_string().contains("only displayName"), "{e}");
        assert!(toml::from_str::<PolicyConfig>("mapping = 1").is_err(), "unknown keys are refused");
    }

    #[test]
    fn resolve_knows_default_and_refuses_unknown_names() {
        let configured = BTreeMap::from([("Rewrite".to_owned(), PolicyConfig::default())]);
        assert!(Policy::resolve("Default", &configured).unwrap().is_default());
        assert_eq!(Policy::resolve("Rewrite", &configured).unwrap().name, "Rewrite");
        let e = Policy::resolve("Nope", &configured).unwrap_err();
        assert!(e.message.contains("the policies are Default, Rewrite"), "{e}");
        assert_eq!(names(&configured), ["Default", "Rewrite"]);
    }

    #[test]
    fn explicit_required_always_includes_user_name() {
        let p = Policy::compile("P", &config("required = [\"enterprise.department\"]")).unwrap();
        let required: Vec<String> = p.required.iter().map(Target::name).collect();
        assert_eq!(required, ["userName", "enterprise.department"]);
    }

    /// Default reads the whole table and nothing more (its request is today's); a policy reads
    /// what its mappings, scoping and group options read, and only that.
    #[test]
    fn a_policy_reads_what_it_maps_and_scopes_on() {
        use crate::directory::{OBJECT_ATTRIBUTES, ReadAttributes};
        let default = Policy::default_policy();
        assert_eq!(ReadAttributes::for_policy(&default.attributes()), ReadAttributes::default());
        assert_eq!(ReadAttributes::default().names(), OBJECT_ATTRIBUTES);
        let p = Policy::compile(
            "Dept",
            &config(
                r#"
                user."name.givenName" = ""
                user."name.familyName" = ""
                user."displayName" = ""
                user."emails[work,primary]" = ""
                user."title" = ""
                user."phoneNumbers[work]" = ""
                user."enterprise.employeeNumber" = ""
                user."active" = ""
                group."displayName" = '[sAMAccountName]'
                scope.conditions = [{ attribute = "company", equals = "Acme" }]
                "#,
            ),
        )
        .unwrap();
        let read: Vec<String> = p.attributes().into_iter().collect();
        assert_eq!(read, ["company", "department", "samaccountname", "userprincipalname"]);
    }

    /// The README's policy section shows Default's mapping and a worked example: both are what
    /// this code has (the table is Default's expressions, the example loads).
    #[test]
    fn the_readme_shows_defaults_mapping_and_a_policy_that_loads() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for (target, source) in DEFAULT_USER_MAPPING {
            let row = format!("| `{target}` | `{source}` |");
            assert!(readme.contains(&row), "README lacks {row}");
        }
        let section = readme.split("## Provisioning policies").nth(1).unwrap();
        let example = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
        let config = crate::config::parse(&format!("version = 1\n{example}")).unwrap();
        assert_eq!(config.policy().unwrap().name, "Rewrite");
        let mailboxes = config.policies.keys().map(String::as_str).collect::<Vec<_>>();
        assert_eq!(mailboxes, ["Mailboxes", "Rewrite"]);
        let p = Policy::resolve("Mailboxes", &config.policies).unwrap();
        assert!(p.attributes().contains("proxyaddresses"));
        assert!(!p.user_mappings().iter().any(|m| m.target.name() == "title"));
    }
}

//! The user rules: what a user needs before it can be provisioned into the tenant. Pure:
//! objects in, findings out; streaming, so 100,000 users need only their identities in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::map;
use crate::directory::{Defect, DirObject, ObjectGuid, Unreadable};
use crate::error::AppError;
use crate::policy::Policy;
use crate::policy::map::{Mapped, MappedValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    GuidRequired,
    GuidSyntax,
    GuidDuplicate,
    GivenNameRequired,
    SnRequired,
    MailRequired,
    UpnRequired,
    MailSyntax,
    UpnSyntax,
    UacSyntax,
    TextUtf8,
    TextControl,
    MailDuplicate,
    UpnDuplicate,
    SamDuplicate,
    UserNameRequired,
    MappedRequired,
    UserNameDuplicate,
    MappingError,
}

impl Rule {
    /// The rules of the Default policy (the historic fifteen, in their order).
    pub const ALL: [Rule; 15] = [
        Rule::GuidRequired,
        Rule::GuidSyntax,
        Rule::GuidDuplicate,
        Rule::GivenNameRequired,
        Rule::SnRequired,
        Rule::MailRequired,
        Rule::UpnRequired,
        Rule::MailSyntax,
        Rule::UpnSyntax,
        Rule::UacSyntax,
        Rule::TextUtf8,
        Rule::TextControl,
        Rule::MailDuplicate,
        Rule::UpnDuplicate,
        Rule::SamDuplicate,
    ];

    /// The rules of a configured policy: the required and duplicate rules judge mapped values
    /// (userName, the targets in `required`, the primary email) instead of AD attributes.
    pub const MAPPED: [Rule; 15] = [
        Rule::GuidRequired,
        Rule::GuidSyntax,
        Rule::GuidDuplicate,
        Rule::MappingError,
        Rule::UserNameRequired,
        Rule::MappedRequired,
        Rule::MailSyntax,
        Rule::UpnSyntax,
        Rule::UacSyntax,
        Rule::TextUtf8,
        Rule::TextControl,
        Rule::UserNameDuplicate,
        Rule::MailDuplicate,
        Rule::SamDuplicate,
        Rule::UpnDuplicate,
    ];

    /// The rules a policy applies.
    pub fn of(policy: &Policy) -> &'static [Rule] {
        if policy.is_default() { &Rule::ALL } else { &Rule::MAPPED }
    }

    /// Stable identifier used in reports and scripts.
    pub fn id(self) -> &'static str {
        match self {
            Rule::GuidRequired => "objectGUID.required",
            Rule::GuidSyntax => "objectGUID.syntax",
            Rule::GuidDuplicate => "objectGUID.duplicate",
            Rule::GivenNameRequired => "givenName.required",
            Rule::SnRequired => "sn.required",
            Rule::MailRequired => "mail.required",
            Rule::UpnRequired => "userPrincipalName.required",
            Rule::MailSyntax => "mail.syntax",
            Rule::UpnSyntax => "userPrincipalName.syntax",
            Rule::UacSyntax => "userAccountControl.syntax",
            Rule::TextUtf8 => "text.utf8",
            Rule::TextControl => "text.control",
            Rule::MailDuplicate => "mail.duplicate",
            Rule::UpnDuplicate => "userPrincipalName.duplicate",
            Rule::SamDuplicate => "sAMAccountName.duplicate",
            Rule::UserNameRequired => "userName.required",
            Rule::MappedRequired => "mapped.required",
            Rule::UserNameDuplicate => "userName.duplicate",
            Rule::MappingError => "mapping.error",
        }
    }

    /// The attribute the rule is about; the text rules name theirs in each [`Problem`].
    pub fn attribute(self) -> &'static str {
        match self {
            Rule::GuidRequired | Rule::GuidSyntax | Rule::GuidDuplicate => "objectGUID",
            Rule::GivenNameRequired => "givenName",
            Rule::SnRequired => "sn",
            Rule::MailRequired | Rule::MailSyntax | Rule::MailDuplicate => "mail",
            Rule::UpnRequired | Rule::UpnSyntax | Rule::UpnDuplicate => "userPrincipalName",
            Rule::UacSyntax => "userAccountControl",
            Rule::TextUtf8 | Rule::TextControl => "*",
            Rule::SamDuplicate => "sAMAccountName",
            Rule::UserNameRequired | Rule::UserNameDuplicate => "userName",
            Rule::MappedRequired | Rule::MappingError => "*",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Rule::GuidRequired => "the entry has an objectGUID (the anchor a sync needs)",
            Rule::GuidSyntax => "objectGUID is a GUID: exactly 16 bytes",
            Rule::GuidDuplicate => "no other object in scope has the same objectGUID",
            Rule::GivenNameRequired => "first name (givenName) is present and not blank",
            Rule::SnRequired => "last name (sn) is present and not blank",
            Rule::MailRequired => "email address (mail) is present and not blank",
            Rule::UpnRequired => "logon name (userPrincipalName) is present and not blank",
            Rule::MailSyntax => "mail is a well-formed address (name@domain.tld)",
            Rule::UpnSyntax => "userPrincipalName is well-formed (name@domain.suffix)",
            Rule::UacSyntax => "userAccountControl is a 32-bit integer (so enabled or disabled is known)",
            Rule::TextUtf8 => "every text attribute is valid UTF-8",
            Rule::TextControl => "what the tenant gets holds no control character or bidirectional override",
            Rule::MailDuplicate => "no other user in scope has the same mail (case-insensitive)",
            Rule::UpnDuplicate => "no other user in scope has the same userPrincipalName (case-insensitive)",
            Rule::SamDuplicate => "no other user in scope has the same sAMAccountName (case-insensitive)",
            Rule::UserNameRequired => "the mapped userName is present and not blank",
            Rule::MappedRequired => "every target the policy requires has a value",
            Rule::UserNameDuplicate => "no other user in scope maps to the same userName (case-insensitive)",
            Rule::MappingError => "every mapping of the policy evaluates for this user",
        }
    }
}

/// The switchable parts of the rules (`[validation]` in the configuration). `validate` and
/// `sync` take them from the same configuration, so they judge every user alike.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOptions {
    /// [`Rule::TextControl`]: on unless the configuration turns it off.
    pub reject_control_characters: bool,
    /// The provisioning policy whose mapped values the rules judge.
    pub policy: std::sync::Arc<Policy>,
}

impl Default for RuleOptions {
    fn default() -> Self {
        RuleOptions { reject_control_characters: true, policy: std::sync::Arc::new(Policy::default_policy()) }
    }
}

impl RuleOptions {
    /// From the configuration's `[validation]` and its active policy; the defaults without a
    /// configuration.
    pub fn of(config: Option<&crate::config::AgentConfig>) -> Result<RuleOptions, AppError> {
        let Some(c) = config else { return Ok(RuleOptions::default()) };
        let policy = c.policy().map_err(|e| AppError::config(e.to_string()))?;
        Ok(RuleOptions { reject_control_characters: c.validation.reject_control_characters, policy: policy.into() })
    }

    /// The same rules under another policy.
    pub fn with_policy(&self, policy: Policy) -> RuleOptions {
        RuleOptions { policy: policy.into(), ..self.clone() }
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub rule: Rule,
    pub attribute: String,
    /// The offending value, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub message: String,
    /// For duplicates: the DNs of (at most ten of) the other users with the same value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts_with: Vec<String>,
    /// For duplicates: how many other users have the same value.
    #[serde(skip_serializing_if = "is_zero")]
    pub conflicts_total: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Problem {
    fn new(rule: Rule, value: Option<&str>, message: String) -> Problem {
        Problem {
            rule,
            attribute: rule.attribute().to_owned(),
            value: value.map(str::to_owned),
            message,
            conflicts_with: Vec::new(),
            conflicts_total: 0,
        }
    }
}

/// Who a finding is about: enough to find the user in ADUC or PowerShell.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Identity {
    pub dn: String,
    pub sam_account_name: Option<String>,
    pub object_guid: Option<String>,
    pub user_principal_name: Option<String>,
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UserFindings {
    #[serde(flatten)]
    pub identity: Identity,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub users_checked: u64,
    pub valid: u64,
    pub with_problems: u64,
    pub disabled: u64,
    /// Users with at least one problem of each rule (every rule listed, zero included).
    pub by_rule: BTreeMap<&'static str, u64>,
    pub unreadable_entries: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuleCheck {
    pub rule: Rule,
    pub description: &'static str,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// `validate --user`: one user, every rule.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Explanation {
    #[serde(flatten)]
    pub identity: Identity,
    pub checks: Vec<RuleCheck>,
    /// Every mapped attribute: its value for this user and the mapping that produced it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mapped: Vec<MappedAttribute>,
}

/// One target of the policy's mapping for one user (the explain view).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MappedAttribute {
    /// The SCIM target (`userName`, `emails[work,primary]`, `enterprise.department`).
    pub target: String,
    /// The expression that produces it (Default's written as expressions).
    pub mapping: String,
    /// The value sent; absent when the mapping gives nothing (the target is left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Why the mapping failed for this user (rule `mapping.error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The explain view as table rows: target, value (or the error), mapping.
pub fn mapped_rows(mapped: &[MappedAttribute]) -> Vec<[String; 3]> {
    mapped
        .iter()
        .map(|m| {
            let value = match (&m.value, &m.error) {
                (_, Some(e)) => format!("ERROR: {e}"),
                (Some(serde_json::Value::String(s)), None) => s.clone(),
                (Some(v), None) => v.to_string(),
                (None, None) => "(none: left out)".to_owned(),
            };
            [m.target.clone(), value, m.mapping.clone()]
        })
        .collect()
}

/// The explain view of a user's mapping under `policy`.
pub fn mapped_view(policy: &Policy, user: &DirObject) -> Vec<MappedAttribute> {
    crate::policy::map::user_values(policy, user)
        .into_iter()
        .map(|v| {
            let (target, mapping) = (v.name().to_owned(), v.source().to_owned());
            let (value, error) = match v.value {
                Ok(value) => (value.map(Mapped::into_json), None),
                Err(e) => (None, Some(e)),
            };
            MappedAttribute { target, mapping, value, error }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Validation {
    pub summary: Summary,
    /// Users with problems, ordered by DN.
    pub users: Vec<UserFindings>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
}

/// Per-user rules that need no other user: the anchor, what the decoder found unusable,
/// presence, syntax and control characters.
pub fn check_attributes(user: &DirObject, options: &RuleOptions) -> Vec<Problem> {
    check_user(user, options).0
}

/// [`check_attributes`], and the keys a configured policy's duplicate rules compare
/// ([`mapped_keys`]; `None` under Default), from one evaluation of the policy's mappings.
pub fn check_user(user: &DirObject, options: &RuleOptions) -> (Vec<Problem>, Option<[Option<String>; 3]>) {
    if options.policy.is_default() {
        (check_default(user, options), None)
    } else {
        let values = crate::policy::map::user_values(&options.policy, user);
        (check_mapped(user, &values, options), Some(keys_of(values, user)))
    }
}

/// Default's per-user rules, on the attributes as read.
fn check_default(user: &DirObject, options: &RuleOptions) -> Vec<Problem> {
    let mut problems = object_problems(user);
    let unreadable = |attribute: &str| {
        user.defects.iter().any(|d| matches!(d, Defect::NotUtf8 { attribute: a, .. } if a == attribute))
    };
    let required = [
        (Rule::GivenNameRequired, &user.given_name, "first name"),
        (Rule::SnRequired, &user.sn, "last name"),
        (Rule::MailRequired, &user.mail, "email address"),
        (Rule::UpnRequired, &user.user_principal_name, "logon name"),
    ];
    for (rule, value, label) in required {
        match value.as_deref() {
            None if unreadable(rule.attribute()) => {} // present, but not text: text.utf8 says so
            None => problems.push(Problem::new(rule, None, format!("{} ({label}) is missing", rule.attribute()))),
            Some(v) if is_blank(v) => problems.push(Problem::new(
                rule,
                Some(v),
                format!("{} ({label}) is blank: it holds only spaces or invisible characters", rule.attribute()),
            )),
            Some(_) => {}
        }
    }
    if let Some(mail) = user.mail.as_deref().filter(|m| !is_blank(m))
        && let Err(reason) = check_address(mail, AddressKind::Mail)
    {
        problems.push(Problem::new(
            Rule::MailSyntax,
            Some(mail),
            format!("mail {mail:?} is not a valid address: {reason}"),
        ));
    }
    problems.extend(upn_syntax(user));
    if options.reject_control_characters {
        problems.extend(control_problems(&map::user_text(user)));
    }
    problems
}

/// The per-user rules of a configured policy, on what it maps: every mapping evaluates
/// (`mapping.error`), the required targets have values (`userName.required`, `mapped.required`),
/// every mapped email is an address (`mail.syntax`), no mapped text holds a control character
/// (`text.control`); and, as under Default, a present userPrincipalName is well-formed.
fn check_mapped(user: &DirObject, values: &[MappedValue], options: &RuleOptions) -> Vec<Problem> {
    let mut problems = object_problems(user);
    let mut texts: Vec<(&str, &str)> = Vec::new();
    for v in values {
        match &v.value {
            Err(message) => {
                let mut p = Problem::new(
                    Rule::MappingError,
                    None,
                    format!("the mapping {} = {} failed: {message}", v.name(), v.source()),
                );
                p.attribute = v.name().to_owned();
                problems.push(p);
            }
            Ok(Some(Mapped::Text(text))) => texts.push((v.name(), text)),
            Ok(_) => {}
        }
    }
    for v in values.iter().filter(|v| v.mapping.role.required) {
        // A value, or an error (`mapping.error` says so already).
        if !matches!(v.value, Ok(None)) {
            continue;
        }
        let rule = if v.mapping.role.user_name { Rule::UserNameRequired } else { Rule::MappedRequired };
        let mut p =
            Problem::new(rule, None, format!("{} (mapped from {}) has no value for this user", v.name(), v.source()));
        p.attribute = v.name().to_owned();
        problems.push(p);
    }
    for v in values.iter().filter(|v| v.mapping.role.email.is_some()) {
        if let Ok(Some(Mapped::Text(mail))) = &v.value
            && let Err(reason) = check_address(mail, AddressKind::Mail)
        {
            let mut p = Problem::new(
                Rule::MailSyntax,
                Some(mail),
                format!("{} {mail:?} is not a valid address: {reason}", v.name()),
            );
            p.attribute = v.name().to_owned();
            problems.push(p);
        }
    }
    // A malformed logon name stays quarantined whatever the policy sends as userName: switching
    // policies never provisions a user Default held back for its AD data.
    problems.extend(upn_syntax(user));
    if options.reject_control_characters {
        let named: Vec<(&str, Option<&str>)> = texts.iter().map(|(n, t)| (*n, Some(*t))).collect();
        problems.extend(control_problems(&named));
    }
    problems
}

/// The keys a configured policy's duplicate rules compare, in [`DUPLICATE_RULES`] order: the
/// primary (else first) mapped email, the mapped userName, the sAMAccountName. `None` for Default,
/// whose rules compare mail, userPrincipalName and sAMAccountName as read.
pub fn mapped_keys(policy: &Policy, user: &DirObject) -> Option<[Option<String>; 3]> {
    if policy.is_default() {
        return None;
    }
    // Only the mappings the keys read (the rules evaluate every mapping already).
    Some(keys_of(crate::policy::map::values_where(policy, user, |m| m.role.is_key()), user))
}

/// The duplicate keys from a user's mapped values: the primary (else first) email, the userName,
/// and the sAMAccountName as read.
fn keys_of<'a, 'o>(values: impl IntoIterator<Item = MappedValue<'a, 'o>>, user: &DirObject) -> [Option<String>; 3] {
    let (mut primary, mut email, mut user_name) = (None, None, None);
    for v in values {
        let Ok(Some(Mapped::Text(text))) = v.value else { continue };
        let role = v.mapping.role;
        if role.user_name {
            user_name.get_or_insert(text);
        } else if role.email == Some(true) && primary.is_none() {
            primary = Some(text);
        } else if role.email.is_some() {
            email.get_or_insert(text);
        }
    }
    let key = crate::store::duplicate_key;
    [key(primary.or(email).as_deref()), key(user_name.as_deref()), key(user.sam_account_name.as_deref())]
}

/// The keys `policy`'s duplicate rules compare, in [`DUPLICATE_RULES`] order: [`mapped_keys`]
/// under a configured policy, mail, userPrincipalName and sAMAccountName as read under Default.
/// What the mirror's key columns hold.
pub fn duplicate_keys(policy: &Policy, user: &DirObject) -> [Option<String>; 3] {
    mapped_keys(policy, user).unwrap_or_else(|| crate::store::directory_keys(user))
}

/// The rule a duplicate key slot stands for under `policy`.
pub fn duplicate_rule(policy: &Policy, slot: usize) -> Rule {
    if !policy.is_default() && slot == 1 { Rule::UserNameDuplicate } else { DUPLICATE_RULES[slot] }
}

/// `userPrincipalName.syntax`, under every policy: a malformed logon name is AD data no mapping
/// repairs.
fn upn_syntax(user: &DirObject) -> Option<Problem> {
    let upn = user.user_principal_name.as_deref().filter(|u| !is_blank(u))?;
    let reason = check_address(upn, AddressKind::Upn).err()?;
    Some(Problem::new(
        Rule::UpnSyntax,
        Some(upn),
        format!("userPrincipalName {upn:?} is not a valid logon name: {reason}"),
    ))
}

/// The rules for a group (groups have no required attributes): the anchor, what the decoder
/// found unusable, and control characters in what the tenant shows of it.
pub fn check_group(group: &DirObject, options: &RuleOptions) -> Vec<Problem> {
    let mut problems = object_problems(group);
    if options.reject_control_characters {
        problems.extend(control_problems(&map::group_text(group)));
    }
    problems
}

/// The anchor and the decoder's defects, for users and groups alike.
fn object_problems(o: &DirObject) -> Vec<Problem> {
    let mut problems: Vec<Problem> = o.defects.iter().map(defect_problem).collect();
    if o.guid.is_none() && !o.defects.iter().any(|d| matches!(d, Defect::GuidLength { .. })) {
        problems.push(Problem::new(
            Rule::GuidRequired,
            None,
            "the entry has no objectGUID, the anchor a sync needs (export it with objectGUID)".into(),
        ));
    }
    problems
}

fn defect_problem(defect: &Defect) -> Problem {
    match defect {
        Defect::GuidLength { length } => Problem::new(
            Rule::GuidSyntax,
            None,
            format!(
                "objectGUID is {length} byte{} long, not the 16 bytes of a GUID (a cut value, or a text form: export it as binary, as ldifde and ldapsearch do)",
                if *length == 1 { "" } else { "s" }
            ),
        ),
        Defect::NotUtf8 { attribute, offset } => {
            let mut p = Problem::new(
                Rule::TextUtf8,
                None,
                format!(
                    "{attribute} is not valid UTF-8 (the first invalid byte is at offset {offset}); it is never sent with replacement characters: correct the value in the directory"
                ),
            );
            p.attribute = attribute.clone();
            p
        }
        Defect::UacSyntax { value } => Problem::new(
            Rule::UacSyntax,
            Some(value),
            format!(
                "userAccountControl {value} is not a 32-bit integer, so whether the account is disabled is unknown; it is not provisioned as enabled on a guess"
            ),
        ),
        Defect::GuidDuplicate { others, total } => duplicate_guid_problem(others.clone(), *total),
    }
}

/// The finding for one holder of an objectGUID that `total` other objects of the read also
/// hold (`others`: at most [`MAX_LISTED_CONFLICTS`] of their DNs).
pub fn duplicate_guid_problem(others: Vec<String>, total: usize) -> Problem {
    let message = format!(
        "the objectGUID is also held by {total} other object{} in scope: {}{}; an objectGUID must be unique (a corrupt or badly merged export?), so no holder is synchronised",
        if total == 1 { "" } else { "s" },
        others.join("; "),
        if total > others.len() { format!("; and {} more", total - others.len()) } else { String::new() }
    );
    let mut problem = Problem::new(Rule::GuidDuplicate, None, message);
    problem.conflicts_with = others;
    problem.conflicts_total = total;
    problem
}

/// What [`Rule::TextControl`] refuses: C0 and C1 controls (DEL included), and the Unicode
/// bidirectional embeddings, overrides and isolates, which can make a name display as another.
pub fn forbidden_character(c: char) -> Option<&'static str> {
    match c {
        '\u{202a}' | '\u{202b}' => Some("a bidirectional embedding"),
        '\u{202c}' => Some("a bidirectional formatting character"),
        '\u{202d}' | '\u{202e}' => Some("a bidirectional override"),
        '\u{2066}'..='\u{2069}' => Some("a bidirectional isolate"),
        c if c.is_control() => Some("a control character"),
        _ => None,
    }
}

fn control_problems(values: &[(&str, Option<&str>)]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (attribute, value) in values {
        let Some(value) = value else { continue };
        let Some((at, c, what)) =
            value.chars().enumerate().find_map(|(i, c)| forbidden_character(c).map(|what| (i, c, what)))
        else {
            continue;
        };
        let mut p = Problem::new(
            Rule::TextControl,
            Some(value),
            format!(
                "{attribute} holds {what}, U+{:04X}, at character {at}: it could spoof or garble the name where the tenant shows it",
                c as u32
            ),
        );
        p.attribute = (*attribute).to_owned();
        problems.push(p);
    }
    problems
}

/// Sorted by rule, one problem per rule and attribute.
pub fn tidy(problems: &mut Vec<Problem>) {
    problems.sort_by(|a, b| (a.rule, &a.attribute).cmp(&(b.rule, &b.attribute)));
    problems.dedup_by(|a, b| a.rule == b.rule && a.attribute == b.attribute);
}

pub use crate::directory::is_blank;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Mail,
    Upn,
}

/// `local@domain` checks shared by mail (RFC 5322 dot-atom, RFC 6531 UTF-8 allowed) and
/// userPrincipalName (AD's `prefix@suffix`, where the suffix is a DNS name).
pub fn check_address(value: &str, kind: AddressKind) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "it contains {} (U+{:04X})",
            if c.is_whitespace() { "a space" } else { "a control character" },
            c as u32
        ));
    }
    let Some((local, domain)) = value.split_once('@') else {
        return Err("it has no @".into());
    };
    if domain.contains('@') {
        return Err("it has more than one @".into());
    }
    let part = if kind == AddressKind::Mail { "the part before the @" } else { "the name before the @" };
    if local.is_empty() {
        return Err(format!("{part} is empty"));
    }
    if local.chars().count() > 64 {
        return Err(format!("{part} is longer than 64 characters"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(format!("{part} starts or ends with a dot, or has two dots in a row"));
    }
    let bad_local = |c: char| match kind {
        AddressKind::Mail => !(c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)),
        AddressKind::Upn => "\"(),:;<>[\\]".contains(c),
    };
    if let Some(c) = local.chars().find(|&c| bad_local(c)) {
        return Err(format!("{part} contains {c:?}, which is not allowed there"));
    }
    if value.chars().count() > 254 {
        return Err("it is longer than 254 characters".into());
    }
    check_domain(domain)
}

fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("nothing follows the @".into());
    }
    if domain.ends_with('.') {
        return Err(format!("the domain {domain:?} ends with a dot"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("the domain {domain:?} has no dot (expected e.g. example.com)"));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(format!("the domain {domain:?} has an empty label (two dots in a row, or a leading dot)"));
        }
        if label.chars().count() > 63 {
            return Err(format!("the domain label {label:?} is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the domain label {label:?} starts or ends with a hyphen"));
        }
        if let Some(c) = label.chars().find(|&c| !(c.is_alphanumeric() || c == '-')) {
            return Err(format!("the domain {domain:?} contains {c:?}"));
        }
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!("the domain {domain:?} ends in a number, not a top-level domain"));
    }
    Ok(())
}

/// Identity of one user, compact: kept for every user so duplicates can name both sides.
/// Groups are kept too (as holders an objectGUID may collide with), but never judged here.
/// Its texts live in the validator's [`Texts`]: one allocation for all users, not four each.
struct Seen {
    /// Where its texts start in [`Texts::arena`]: the DN up to its first comma, then
    /// sAMAccountName, userPrincipalName and mail as read.
    at: usize,
    /// Their lengths in bytes ([`NONE`]: the attribute is absent); then, under a configured
    /// policy, the mapped primary email and userName as compared.
    lens: [u32; 6],
    /// The rest of the DN (from its first comma), one of [`Texts::parents`].
    parent: u32,
    guid: Option<ObjectGuid>,
    disabled: bool,
    group: bool,
    /// In what a sync mirrors: a user with an objectGUID no earlier object holds (see
    /// [`Validator`]); decided by [`Validator::finish`].
    mirrored: bool,
}

const NONE: u32 = u32::MAX;
const RDN: usize = 0;
/// The duplicate rules' attributes (in [`DUPLICATE_RULES`]' order: mail, UPN, sAMAccountName)
/// in [`Seen::lens`].
const KEY_SLOTS: [usize; 3] = [3, 2, 1];
/// Under a configured policy: the mapped primary email and userName (as compared) and
/// sAMAccountName, in [`duplicate_rule`]'s order.
const MAPPED_KEY_SLOTS: [usize; 3] = [4, 5, 1];

/// Every user's texts end to end, and the DNs' parents once each (a directory has far fewer
/// OUs than users).
#[derive(Default)]
struct Texts {
    arena: String,
    parents: Vec<Box<str>>,
    parent_ids: HashMap<Box<str>, u32>,
}

impl Texts {
    fn add(
        &mut self,
        dn: &str,
        values: [Option<&str>; 5],
        guid: Option<ObjectGuid>,
        disabled: bool,
        group: bool,
    ) -> Seen {
        let (rdn, parent) = dn.find(',').map_or((dn, ""), |k| dn.split_at(k));
        let next = u32::try_from(self.parents.len()).unwrap_or(u32::MAX);
        let parent = match self.parent_ids.get(parent) {
            Some(id) => *id,
            None => {
                self.parents.push(parent.into());
                self.parent_ids.insert(parent.into(), next);
                next
            }
        };
        let at = self.arena.len();
        let mut lens = [NONE; 6];
        for (slot, text) in std::iter::once(Some(rdn)).chain(values).enumerate() {
            if let Some(t) = text {
                self.arena.push_str(t);
                lens[slot] = u32::try_from(t.len()).unwrap_or(NONE - 1);
            }
        }
        Seen { at, lens, parent, guid, disabled, group, mirrored: false }
    }

    fn text(&self, seen: &Seen, slot: usize) -> Option<&str> {
        if seen.lens[slot] == NONE {
            return None;
        }
        let from = seen.at + seen.lens[..slot].iter().filter(|l| **l != NONE).map(|l| *l as usize).sum::<usize>();
        Some(&self.arena[from..from + seen.lens[slot] as usize])
    }

    fn dn(&self, seen: &Seen) -> String {
        let rdn = self.text(seen, RDN).unwrap_or_default();
        format!("{rdn}{}", self.parents[seen.parent as usize])
    }

    fn identity(&self, seen: &Seen) -> Identity {
        Identity {
            dn: self.dn(seen),
            sam_account_name: self.text(seen, 1).map(str::to_owned),
            object_guid: seen.guid.map(|g| g.to_string()),
            user_principal_name: self.text(seen, 2).map(str::to_owned),
            disabled: seen.disabled,
        }
    }
}

/// The hash duplicate detection sorts by (FNV-1a): equal hashes are only candidates, their
/// values are compared before anything is reported.
fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A duplicate rule's key: the value as compared (trimmed, lower case), `None` when blank.
fn duplicate_key(value: Option<&str>) -> Option<String> {
    value.filter(|v| !is_blank(v)).map(|v| v.trim().to_lowercase())
}

/// How many of the other holders of a duplicate value a finding names.
pub const MAX_LISTED_CONFLICTS: usize = 10;

/// The finding for one holder of a value that `total` other users in scope also hold
/// (`others`: at most [`MAX_LISTED_CONFLICTS`] of their DNs).
pub fn duplicate_problem(rule: Rule, key: &str, others: Vec<String>, total: usize) -> Problem {
    let message = format!(
        "{} {key:?} (compared case-insensitively) is also used by {total} other user{} in scope: {}{}",
        rule.attribute(),
        if total == 1 { "" } else { "s" },
        others.join("; "),
        if total > others.len() { format!("; and {} more", total - others.len()) } else { String::new() }
    );
    let mut problem = Problem::new(rule, Some(key), message);
    problem.conflicts_with = others;
    problem.conflicts_total = total;
    problem
}

/// Every rule for one user (`rules`: the policy's, [`Rule::of`]), passed or failed.
pub fn explain(identity: Identity, found: &[Problem], rules: &[Rule]) -> Explanation {
    Explanation {
        identity,
        mapped: Vec::new(),
        checks: rules
            .iter()
            .map(|&rule| {
                let problem = found.iter().find(|p| p.rule == rule).cloned();
                RuleCheck { rule, description: rule.description(), passed: problem.is_none(), problem }
            })
            .collect(),
    }
}

impl Identity {
    pub fn of(user: &DirObject) -> Identity {
        Identity {
            dn: user.dn.to_string(),
            sam_account_name: user.sam_account_name.clone(),
            object_guid: user.guid.map(|g| g.to_string()),
            user_principal_name: user.user_principal_name.clone(),
            disabled: user.is_disabled(),
        }
    }
}

pub const DUPLICATE_RULES: [Rule; 3] = [Rule::MailDuplicate, Rule::UpnDuplicate, Rule::SamDuplicate];

/// Feeds users (and groups, for their objectGUIDs) one by one; [`Validator::finish`] adds the
/// cross-object rules.
///
/// The cross-object rules see exactly what a sync's mirror holds: a user without a usable
/// objectGUID, or whose objectGUID an earlier object of the read already holds, never enters
/// the mirror, so its values do not count as duplicates of anyone's.
///
/// Memory: each object's texts once ([`Texts`]), about 130 bytes a user; duplicates are found
/// at the end by sorting (hash, user) pairs, one rule at a time, and comparing the values of
/// equal hashes, instead of a map of every value (which took ~430 bytes a user).
#[derive(Default)]
pub struct Validator {
    options: RuleOptions,
    seen: Vec<Seen>,
    texts: Texts,
    users: u64,
    problems: HashMap<u32, Vec<Problem>>,
    disabled: u64,
    target: Option<String>,
    target_index: Option<u32>,
    target_mapped: Vec<MappedAttribute>,
    /// The duplicate keys' hash (`None`: [`key_hash`]; tests force collisions).
    hash: Option<fn(&str) -> u64>,
}

impl Validator {
    pub fn new(options: RuleOptions) -> Validator {
        Validator { options, ..Validator::default() }
    }

    /// Also remember the user whose userPrincipalName or sAMAccountName is `user`.
    pub fn explaining(options: RuleOptions, user: &str) -> Validator {
        Validator { options, target: Some(user.to_lowercase()), ..Validator::default() }
    }

    fn index(&self) -> u32 {
        u32::try_from(self.seen.len()).unwrap_or(u32::MAX)
    }

    /// A group: only its objectGUID matters here (a user may collide with it).
    pub fn add_group(&mut self, group: &DirObject) {
        if group.guid.is_none() {
            return;
        }
        let seen = self.texts.add(&group.dn.to_string(), [None; 5], group.guid, false, true);
        self.seen.push(seen);
    }

    pub fn add(&mut self, user: &DirObject) {
        let index = self.index();
        self.users += 1;
        if user.is_disabled() {
            self.disabled += 1;
        }
        let (problems, mapped) = check_user(user, &self.options);
        if !problems.is_empty() {
            self.problems.insert(index, problems);
        }
        if let Some(target) = &self.target
            && self.target_index.is_none()
            && [&user.user_principal_name, &user.sam_account_name]
                .iter()
                .any(|v| v.as_deref().is_some_and(|v| v.trim().to_lowercase() == *target))
        {
            self.target_index = Some(index);
            self.target_mapped = mapped_view(&self.options.policy, user);
        }
        let (mail, user_name) = mapped.as_ref().map_or((None, None), |[m, u, _]| (m.as_deref(), u.as_deref()));
        let values = [
            user.sam_account_name.as_deref(),
            user.user_principal_name.as_deref(),
            user.mail.as_deref(),
            mail,
            user_name,
        ];
        let seen = self.texts.add(&user.dn.to_string(), values, user.guid, user.is_disabled(), false);
        self.seen.push(seen);
    }

    /// Holders of one objectGUID, in read order, for every objectGUID held more than once; and
    /// every user that enters the mirror (the first holder of its objectGUID) marked so.
    fn guid_duplicates(&mut self) -> Vec<Vec<u32>> {
        let mut order: Vec<u32> = (0..self.index()).filter(|&i| self.seen[i as usize].guid.is_some()).collect();
        order.sort_unstable_by_key(|&i| (self.seen[i as usize].guid, i));
        let seen = &self.seen;
        let runs: Vec<&[u32]> = order.chunk_by(|a, b| seen[*a as usize].guid == seen[*b as usize].guid).collect();
        let firsts: Vec<u32> = runs.iter().map(|run| run[0]).collect();
        let out = runs.into_iter().filter(|run| run.len() > 1).map(<[u32]>::to_vec).collect();
        for i in firsts {
            let first = &mut self.seen[i as usize];
            first.mirrored = !first.group;
        }
        out
    }

    /// For one duplicate rule: (value, holders in read order) for every value that mirrored
    /// users hold more than once.
    fn duplicates(&self, slot: usize) -> Vec<(String, Vec<u32>)> {
        let hash = self.hash.unwrap_or(key_hash);
        let key = |i: u32| duplicate_key(self.texts.text(&self.seen[i as usize], slot));
        let mut keyed: Vec<(u64, u32)> = (0..self.index())
            .filter(|&i| self.seen[i as usize].mirrored)
            .filter_map(|i| key(i).map(|k| (hash(&k), i)))
            .collect();
        keyed.sort_unstable();
        let mut out = Vec::new();
        for run in keyed.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
            // Equal hashes are candidates: their values decide (a collision splits the run).
            let mut values: Vec<(String, u32)> = run.iter().filter_map(|&(_, i)| key(i).map(|k| (k, i))).collect();
            values.sort_unstable();
            for same in values.chunk_by(|a, b| a.0 == b.0).filter(|same| same.len() > 1) {
                out.push((same[0].0.clone(), same.iter().map(|(_, i)| *i).collect()));
            }
        }
        out
    }

    pub fn finish(mut self, unreadable: Vec<Unreadable>) -> (Validation, Option<Explanation>) {
        self.texts.parent_ids = HashMap::new(); // no longer needed: free it before building the report
        for holders in self.guid_duplicates() {
            for &i in holders.iter().filter(|&&i| !self.seen[i as usize].group) {
                let problem = duplicate_guid_problem(self.others(&holders, i), holders.len() - 1);
                self.problems.entry(i).or_default().push(problem);
            }
        }
        let slots = if self.options.policy.is_default() { KEY_SLOTS } else { MAPPED_KEY_SLOTS };
        for (index, slot) in slots.into_iter().enumerate() {
            let rule = duplicate_rule(&self.options.policy, index);
            for (key, holders) in self.duplicates(slot) {
                // A value shared by thousands (a team mailbox in every user's mail) must not
                // make the report quadratic: each holder names a few of the others.
                let total = holders.len() - 1;
                for &i in &holders {
                    let others = self.others(&holders, i);
                    let problem = duplicate_problem(rule, &key, others, total);
                    self.problems.entry(i).or_default().push(problem);
                }
            }
        }
        let mut target_mapped = std::mem::take(&mut self.target_mapped);
        let explanation = self.target_index.map(|i| {
            let mut problems = self.problems.get(&i).cloned().unwrap_or_default();
            tidy(&mut problems);
            let mut explanation =
                explain(self.texts.identity(&self.seen[i as usize]), &problems, Rule::of(&self.options.policy));
            explanation.mapped = std::mem::take(&mut target_mapped);
            explanation
        });
        let mut by_rule: BTreeMap<&'static str, u64> =
            Rule::of(&self.options.policy).iter().map(|r| (r.id(), 0)).collect();
        let mut users: Vec<UserFindings> = Vec::with_capacity(self.problems.len());
        for (i, mut problems) in std::mem::take(&mut self.problems) {
            tidy(&mut problems);
            let rules: BTreeSet<Rule> = problems.iter().map(|p| p.rule).collect();
            for rule in rules {
                *by_rule.entry(rule.id()).or_default() += 1;
            }
            users.push(UserFindings { identity: self.texts.identity(&self.seen[i as usize]), problems });
        }
        users.sort_by_cached_key(|u| u.identity.dn.to_lowercase());
        let checked = self.users;
        let summary = Summary {
            users_checked: checked,
            valid: checked - users.len() as u64,
            with_problems: users.len() as u64,
            disabled: self.disabled,
            by_rule,
            unreadable_entries: unreadable.len() as u64,
        };
        (Validation { summary, users, unreadable }, explanation)
    }

    /// The DNs of (at most [`MAX_LISTED_CONFLICTS`] of) the holders other than `i`.
    fn others(&self, holders: &[u32], i: u32) -> Vec<String> {
        holders
            .iter()
            .filter(|&&j| j != i)
            .take(MAX_LISTED_CONFLICTS)
            .map(|&j| self.texts.dn(&self.seen[j as usize]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Dn, ObjectKind, RawEntry, decode};

    fn user(cn: &str, given: Option<&str>, sn: Option<&str>, mail: Option<&str>, upn: Option<&str>) -> DirObject {
        DirObject {
            kind: ObjectKind::User,
            dn: Dn::parse(&format!("CN={cn},OU=Corp,DC=example,DC=test")).unwrap(),
            guid: Some(guid_of(cn)),
            sam_account_name: Some(cn.to_lowercase()),
            user_principal_name: upn.map(str::to_owned),
            given_name: given.map(str::to_owned),
            sn: sn.map(str::to_owned),
            mail: mail.map(str::to_owned),
            user_account_control: Some(512),
            ..Default::default()
        }
    }

    /// A distinct objectGUID per name (names of up to 16 bytes).
    fn guid_of(name: &str) -> ObjectGuid {
        let mut bytes = [0u8; 16];
        for (i, b) in name.bytes().enumerate() {
            bytes[i % 16] ^= b;
        }
        ObjectGuid(bytes)
    }

    fn rules(u: &DirObject) -> Vec<&'static str> {
        check_attributes(u, &RuleOptions::default()).iter().map(|p| p.rule.id()).collect()
    }

    fn ok(cn: &str) -> DirObject {
        let l = cn.to_lowercase();
        user(cn, Some("A"), Some("B"), Some(&format!("{l}@example.test")), Some(&format!("{l}@example.test")))
    }

    #[test]
    fn required_attributes_missing_or_blank() {
        assert!(rules(&ok("Good")).is_empty());
        let u = user("X", None, Some("  "), Some("\u{200b}"), None);
        assert_eq!(rules(&u), ["givenName.required", "sn.required", "mail.required", "userPrincipalName.required"]);
        let u = user("Y", Some(" Zoë "), Some("王"), Some("y@example.test"), Some("y@example.test"));
        assert!(rules(&u).is_empty());
    }

    #[test]
    fn mail_syntax() {
        for good in ["a@b.co", "first.last+tag@sub.example.com", "jürgen@exämple.de", "o'brien@example.ie"] {
            assert!(check_address(good, AddressKind::Mail).is_ok(), "{good}");
        }
        for bad in [
            "no-at-sign.example.test",
            "two@@example.test",
            "a@b@example.test",
            "@example.test",
            "user@",
            "user@localhost",
            "trailing.dot@example.test.",
            ".lead@example.test",
            "double..dot@example.test",
            "sp ace@example.test",
            "tab\t@example.test",
            "user@exa_mple.com",
            "user@-bad.com",
            "user@example.123",
            "quo\"te@example.com",
            "user@example..com",
        ] {
            assert!(check_address(bad, AddressKind::Mail).is_err(), "{bad}");
        }
    }

    #[test]
    fn upn_syntax() {
        assert!(check_address("j.doe@example.test", AddressKind::Upn).is_ok());
        assert!(check_address("zoë@example.test", AddressKind::Upn).is_ok());
        for bad in ["jdoe", "jdoe@", "j doe@example.test", "j,doe@example.test", "jdoe@example", "j@d@example.test"] {
            assert!(check_address(bad, AddressKind::Upn).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicates_flag_every_holder_case_insensitively() {
        let mut v = Validator::new(RuleOptions::default());
        let a = user("A", Some("A"), Some("A"), Some("Same@Example.test"), Some("a@example.test"));
        let b = user("B", Some("B"), Some("B"), Some("same@example.TEST"), Some("b@example.test"));
        v.add(&a);
        v.add(&b);
        v.add(&ok("C"));
        let (result, _) = v.finish(vec![]);
        assert_eq!(result.summary.users_checked, 3);
        assert_eq!(result.summary.with_problems, 2);
        assert_eq!(result.summary.by_rule["mail.duplicate"], 2);
        assert_eq!(result.users[0].problems[0].conflicts_with, [b.dn.to_string()]);
        assert_eq!(result.users[1].problems[0].conflicts_with, [a.dn.to_string()]);
    }

    #[test]
    fn a_value_shared_by_many_names_only_a_few() {
        let mut v = Validator::new(RuleOptions::default());
        for n in 0..50 {
            v.add(&user(
                &format!("U{n}"),
                Some("A"),
                Some("B"),
                Some("team@example.test"),
                Some(&format!("u{n}@example.test")),
            ));
        }
        let (result, _) = v.finish(vec![]);
        assert_eq!(result.summary.with_problems, 50);
        let p = &result.users[0].problems[0];
        assert_eq!((p.conflicts_with.len(), p.conflicts_total), (MAX_LISTED_CONFLICTS, 49));
        assert!(p.message.ends_with("and 39 more"), "{}", p.message);
    }

    #[test]
    fn disabled_users_are_counted_not_flagged() {
        let mut v = Validator::new(RuleOptions::default());
        let mut d = ok("Off");
        d.user_account_control = Some(514);
        v.add(&d);
        let (result, _) = v.finish(vec![]);
        assert_eq!(result.summary.disabled, 1);
        assert_eq!(result.summary.valid, 1);
        assert!(result.users.is_empty());
    }

    #[test]
    fn explanation_lists_every_rule() {
        let mut v = Validator::explaining(RuleOptions::default(), "NOMAIL");
        v.add(&ok("Other"));
        v.add(&user("NoMail", Some("N"), Some("M"), None, Some("nomail@example.test")));
        let (_, explanation) = v.finish(vec![]);
        let e = explanation.unwrap();
        assert_eq!(e.checks.len(), Rule::ALL.len());
        let failed: Vec<_> = e.checks.iter().filter(|c| !c.passed).map(|c| c.rule.id()).collect();
        assert_eq!(failed, ["mail.required"]);
    }

    fn decoded(attrs: &[(&str, &[u8])]) -> DirObject {
        let mut raw = RawEntry { dn: "CN=Raw,OU=Corp,DC=example,DC=test".into(), ..Default::default() };
        raw.push("objectClass", b"user".to_vec());
        for (name, value) in attrs {
            raw.push(name, value.to_vec());
        }
        match decode(&raw, &Dn::parse("DC=example,DC=test").unwrap()).unwrap() {
            crate::directory::Decoded::Object(o) => *o,
            other => panic!("not an object: {other:?}"),
        }
    }

    const GOOD: [(&str, &[u8]); 5] = [
        ("objectGUID", &[7; 16]),
        ("givenName", b"Raw"),
        ("sn", b"Entry"),
        ("mail", b"raw@example.test"),
        ("userPrincipalName", b"raw@example.test"),
    ];

    fn with(extra: &[(&str, &[u8])]) -> DirObject {
        let mut attrs: Vec<(&str, &[u8])> =
            GOOD.iter().copied().filter(|(n, _)| !extra.iter().any(|(e, _)| e == n)).collect();
        attrs.extend_from_slice(extra);
        decoded(&attrs)
    }

    fn problems(o: &DirObject) -> Vec<(String, String)> {
        let mut p = check_attributes(o, &RuleOptions::default());
        tidy(&mut p);
        p.into_iter().map(|p| (p.rule.id().to_owned(), p.attribute)).collect()
    }

    fn pair(rule: &str, attribute: &str) -> (String, String) {
        (rule.to_owned(), attribute.to_owned())
    }

    #[test]
    fn the_object_guid_must_be_there_and_sixteen_bytes() {
        assert!(problems(&with(&[])).is_empty());
        let none = decoded(&GOOD[1..]);
        assert_eq!(problems(&none), [pair("objectGUID.required", "objectGUID")]);
        for length in [8usize, 20, 36] {
            let bytes = vec![1u8; length];
            let o = with(&[("objectGUID", &bytes)]);
            assert_eq!(o.guid, None);
            let p = check_attributes(&o, &RuleOptions::default());
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!(p[0].rule, Rule::GuidSyntax);
            assert!(p[0].message.contains(&format!("{length} bytes long, not the 16")), "{}", p[0].message);
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_never_replaced_and_names_the_offset() {
        // givenName:: //5HcsMoIHRh from the issue: 0xFF 0xFE at offset 0.
        let o = with(&[("givenName", b"\xff\xfeGr\xc3(ta")]);
        assert_eq!(o.given_name, None, "no lossy copy is kept");
        let p = check_attributes(&o, &RuleOptions::default());
        assert_eq!(p.len(), 1, "present but unreadable is not also 'missing': {p:?}");
        assert_eq!((p[0].rule, p[0].attribute.as_str()), (Rule::TextUtf8, "givenName"));
        assert!(p[0].message.contains("offset 0"), "{}", p[0].message);
        let later = with(&[("sn", b"Ok\xc3(")]);
        assert!(check_attributes(&later, &RuleOptions::default())[0].message.contains("offset 2"));
        let title = with(&[("title", b"\x80")]);
        assert_eq!(problems(&title), [pair("text.utf8", "title")]);
    }

    #[test]
    fn a_user_account_control_that_is_not_a_number_fails_closed() {
        for bad in ["514abc", "abc", "", "0x200", "12345678901234567890", "5 14"] {
            let o = with(&[("userAccountControl", bad.as_bytes())]);
            assert_eq!(o.user_account_control, None, "{bad:?}");
            assert!(!o.is_disabled() || o.user_account_control.is_some());
            assert_eq!(problems(&o), [pair("userAccountControl.syntax", "userAccountControl")], "{bad:?}");
        }
        for good in ["512", "514", " 66048 ", "-2147483646", "4294967295"] {
            let o = with(&[("userAccountControl", good.as_bytes())]);
            assert!(o.user_account_control.is_some(), "{good:?}");
            assert!(problems(&o).is_empty(), "{good:?}");
        }
    }

    #[test]
    fn control_and_bidi_characters_in_what_the_tenant_gets_are_named_by_code_point() {
        let cases: [(&str, &str, u32); 6] = [
            ("givenName", "Evil\u{1b}]0;pwned\u{7}", 0x1b),
            ("sn", "Ctl\r\nInjected", 0x0d),
            ("displayName", "Admin\u{202e}gpj.exe", 0x202e),
            ("title", "a\u{2067}b", 0x2067),
            ("department", "c1\u{85}x", 0x85),
            ("employeeNumber", "del\u{7f}", 0x7f),
        ];
        for (attribute, value, code) in cases {
            let o = with(&[(attribute, value.as_bytes())]);
            let p = check_attributes(&o, &RuleOptions::default());
            assert_eq!(p.len(), 1, "{attribute}: {p:?}");
            assert_eq!((p[0].rule, p[0].attribute.as_str()), (Rule::TextControl, attribute));
            assert!(p[0].message.contains(&format!("U+{code:04X}")), "{}", p[0].message);
            let off = RuleOptions { reject_control_characters: false, ..RuleOptions::default() };
            assert!(check_attributes(&o, &off).is_empty(), "the rule can be turned off");
        }
        // Not sent to the tenant: not this rule's business. Ordinary Unicode passes.
        assert!(check_attributes(&with(&[("cn", b"x\x1by")]), &RuleOptions::default()).is_empty());
        assert!(
            check_attributes(&with(&[("givenName", "Zoë \u{200f}אבי".as_bytes())]), &RuleOptions::default()).is_empty()
        );
    }

    #[test]
    fn every_holder_of_a_shared_object_guid_is_flagged_and_only_the_first_keeps_its_keys() {
        let mut v = Validator::new(RuleOptions::default());
        let mut a = ok("A");
        let mut b = ok("B");
        let mut c = ok("C");
        b.guid = a.guid;
        c.guid = a.guid;
        c.mail = a.mail.clone(); // a later holder never enters the mirror: not a mail duplicate
        a.dn = Dn::parse("CN=A,OU=Corp,DC=example,DC=test").unwrap();
        let group = DirObject {
            kind: ObjectKind::Group,
            guid: Some(guid_of("G")),
            dn: Dn::parse("CN=G,DC=x").unwrap(),
            ..Default::default()
        };
        let mut d = ok("D");
        d.guid = group.guid;
        v.add(&a);
        v.add(&b);
        v.add(&c);
        v.add_group(&group);
        v.add(&d);
        let (result, _) = v.finish(vec![]);
        assert_eq!(result.summary.users_checked, 4);
        let rules: Vec<(String, Vec<&str>)> = result
            .users
            .iter()
            .map(|u| (u.identity.dn.clone(), u.problems.iter().map(|p| p.rule.id()).collect()))
            .collect();
        assert_eq!(
            rules,
            [
                ("CN=A,OU=Corp,DC=example,DC=test".to_owned(), vec!["objectGUID.duplicate"]),
                ("CN=B,OU=Corp,DC=example,DC=test".to_owned(), vec!["objectGUID.duplicate"]),
                ("CN=C,OU=Corp,DC=example,DC=test".to_owned(), vec!["objectGUID.duplicate"]),
                ("CN=D,OU=Corp,DC=example,DC=test".to_owned(), vec!["objectGUID.duplicate"]),
            ]
        );
        let first = &result.users[0].problems[0];
        assert_eq!(first.conflicts_total, 2);
        assert_eq!(first.conflicts_with, ["CN=B,OU=Corp,DC=example,DC=test", "CN=C,OU=Corp,DC=example,DC=test"]);
        assert_eq!(result.users[3].problems[0].conflicts_with, ["CN=G,DC=x"]);
    }

    fn rewrite(extra: &str) -> RuleOptions {
        let text =
            format!("user.\"userName\" = 'Replace([userPrincipalName], \"@corp.local\", \"@example.test\")'\n{extra}");
        let policy = Policy::compile("Rewrite", &toml::from_str(&text).unwrap()).unwrap();
        RuleOptions::default().with_policy(policy)
    }

    fn ids(problems: &[Problem]) -> Vec<(String, String)> {
        let mut p = problems.to_vec();
        tidy(&mut p);
        p.into_iter().map(|p| (p.rule.id().to_owned(), p.attribute)).collect()
    }

    #[test]
    fn a_configured_policy_judges_mapped_values_by_target() {
        let rules = rewrite("required = [\"enterprise.department\"]\nuser.\"enterprise.department\" = '[department]'");
        let mut u = user("A", Some("Ann"), None, Some("a@x.example"), None);
        // No sn: Default's sn.required does not apply (not required by this policy); no UPN:
        // userName.required; no department: mapped.required naming the target.
        assert_eq!(
            ids(&check_attributes(&u, &rules)),
            [
                ("userName.required".to_owned(), "userName".to_owned()),
                ("mapped.required".into(), "enterprise.department".into())
            ]
        );
        u.user_principal_name = Some("a@corp.local".into());
        u.department = Some("Sales".into());
        assert!(check_attributes(&u, &rules).is_empty());
        // A control character in a mapped value is named by its target.
        u.department = Some("Sa\u{202e}les".into());
        assert_eq!(
            ids(&check_attributes(&u, &rules)),
            [("text.control".to_owned(), "enterprise.department".to_owned())]
        );
    }

    /// `required` names a target in any spelling the loader accepts for it: `emails[work]` is
    /// the entry Default maps as `emails[work,primary]`.
    #[test]
    fn a_required_target_is_found_whatever_its_spelling() {
        let rules = rewrite("required = [\"emails[work]\"]");
        let mut u = user("A", Some("Ann"), Some("B"), Some("a@x.example"), Some("a@corp.local"));
        assert!(check_attributes(&u, &rules).is_empty());
        u.mail = None;
        assert_eq!(
            ids(&check_attributes(&u, &rules)),
            [("mapped.required".to_owned(), "emails[work,primary]".to_owned())]
        );
    }

    /// The email a duplicate rule compares is the primary entry's, else the first that has one.
    #[test]
    fn the_email_key_is_the_primary_one_else_the_first() {
        let text = "user.\"emails[work,primary]\" = ''\nuser.\"emails[home]\" = '[mail]'\n\
                    user.\"emails[other,primary]\" = '[otherMailbox]'";
        let policy = Policy::compile("Keys", &toml::from_str(text).unwrap()).unwrap();
        let mut u = user("A", Some("Ann"), Some("B"), Some("Home@x.example"), Some("a@x.example"));
        u.extra.insert("othermailbox", &["Other@x.example"]);
        let email = |u: &DirObject| mapped_keys(&policy, u).unwrap()[0].clone();
        assert_eq!(email(&u).as_deref(), Some("other@x.example"), "the primary entry, though mapped later");
        u.extra.insert("othermailbox", &["  "]);
        assert_eq!(email(&u).as_deref(), Some("home@x.example"), "no primary value: the first");
        u.mail = None;
        assert_eq!(email(&u), None);
    }

    #[test]
    fn an_evaluation_error_quarantines_with_mapping_error() {
        let rules = rewrite("user.\"title\" = '[otherMobile]'");
        let mut u = user("A", Some("Ann"), Some("B"), Some("a@x.example"), Some("a@corp.local"));
        u.extra.insert("othermobile", &["1", "2"]);
        let problems = check_attributes(&u, &rules);
        assert_eq!(ids(&problems), [("mapping.error".to_owned(), "title".to_owned())]);
        assert!(
            problems[0].message.contains("title = [otherMobile] failed: the expression gives 2 values"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn user_names_that_collide_after_mapping_are_duplicates() {
        let rules = rewrite("");
        let mut v = Validator::new(rules);
        v.add(&user("A", Some("A"), Some("A"), Some("a1@x.example"), Some("ann@corp.local")));
        v.add(&user("B", Some("B"), Some("B"), Some("a2@x.example"), Some("ann@example.test")));
        v.add(&user("C", Some("C"), Some("C"), Some("c@x.example"), Some("c@corp.local")));
        let (validation, _) = v.finish(vec![]);
        let found: Vec<(String, Vec<(String, String)>)> =
            validation.users.iter().map(|u| (u.identity.dn.clone(), ids(&u.problems))).collect();
        let dup = vec![("userName.duplicate".to_owned(), "userName".to_owned())];
        assert_eq!(
            found,
            [
                ("CN=A,OU=Corp,DC=example,DC=test".to_owned(), dup.clone()),
                ("CN=B,OU=Corp,DC=example,DC=test".to_owned(), dup)
            ]
        );
        assert_eq!(validation.summary.by_rule["userName.duplicate"], 2);
        assert!(!validation.summary.by_rule.contains_key("givenName.required"), "Default's rules are not listed");
    }

    #[test]
    fn explain_shows_each_mapped_value_and_its_mapping() {
        let rules = rewrite("");
        let mut v = Validator::explaining(rules, "ann@corp.local");
        v.add(&user("A", Some("Ann"), Some("B"), Some("a@x.example"), Some("ann@corp.local")));
        let (_, explanation) = v.finish(vec![]);
        let e = explanation.unwrap();
        let user_name = e.mapped.iter().find(|m| m.target == "userName").unwrap();
        assert_eq!(user_name.value, Some(serde_json::json!("ann@example.test")));
        assert!(user_name.mapping.starts_with("Replace([userPrincipalName]"));
        let title = e.mapped.iter().find(|m| m.target == "title").unwrap();
        assert_eq!((title.value.clone(), title.error.clone()), (None, None), "absent: left out");
        assert_eq!(e.checks.len(), Rule::MAPPED.len());
    }

    /// The same users, with the real key hash and with one under which every key collides.
    fn both_hashes(users: &[DirObject]) -> [Validation; 2] {
        [None, Some((|_| 42) as fn(&str) -> u64)].map(|hash| {
            let mut v = Validator { hash, ..Validator::new(RuleOptions::default()) };
            users.iter().for_each(|u| v.add(u));
            v.finish(vec![]).0
        })
    }

    #[test]
    fn colliding_key_hashes_change_no_verdict() {
        let mut users: Vec<DirObject> = (0..40).map(|n| ok(&format!("U{n}"))).collect();
        users[3].mail = Some("Team@example.test".into());
        users[7].mail = Some(" team@EXAMPLE.test ".into());
        users[9].user_principal_name = users[1].user_principal_name.clone();
        users[12].sam_account_name = Some("U0".into());
        users[20].mail = Some("  ".into()); // blank: no key
        users[21].mail = Some("  ".into());
        let [exact, collided] = both_hashes(&users);
        let verdicts = |v: &Validation| serde_json::to_value(v).unwrap();
        assert_eq!(verdicts(&exact), verdicts(&collided));
        let flagged: Vec<(&str, Vec<&str>)> = exact
            .users
            .iter()
            .map(|u| (u.identity.dn.as_str(), u.problems.iter().map(|p| p.rule.id()).collect()))
            .collect();
        let dn = |n: u32| format!("CN=U{n},OU=Corp,DC=example,DC=test");
        let expected = [(0, "sAMAccountName.duplicate"), (1, "userPrincipalName.duplicate")];
        for (n, rule) in expected {
            assert!(flagged.iter().any(|(d, r)| *d == dn(n) && r.contains(&rule)), "{flagged:?}");
        }
        assert_eq!(exact.summary.by_rule["mail.duplicate"], 2);
        assert_eq!(exact.summary.with_problems, 8, "blank mails are required, not duplicates: {flagged:?}");
    }

    #[test]
    fn an_identity_is_given_back_as_read() {
        let mut u = ok("Smith");
        u.dn = Dn::parse(r"CN=Smith\, John,OU=Sales\, EMEA,DC=example,DC=test").unwrap();
        u.mail = Some("not an address".into());
        let mut bare = ok("Bare");
        bare.sam_account_name = None;
        bare.user_principal_name = None;
        let mut v = Validator::new(RuleOptions::default());
        v.add(&u);
        v.add(&bare);
        let (result, _) = v.finish(vec![]);
        let ids: Vec<&Identity> = result.users.iter().map(|f| &f.identity).collect();
        assert!(ids.contains(&&Identity::of(&u)), "{ids:?}");
        assert!(ids.contains(&&Identity::of(&bare)), "{ids:?}");
    }
}

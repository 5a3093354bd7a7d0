//! The user rules: what a user needs before it can be provisioned into the tenant. Pure:
//! objects in, findings out; streaming, so 100,000 users need only their identities in memory.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::directory::{DirObject, ObjectGuid, Unreadable};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    GivenNameRequired,
    SnRequired,
    MailRequired,
    UpnRequired,
    MailSyntax,
    UpnSyntax,
    MailDuplicate,
    UpnDuplicate,
    SamDuplicate,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::GivenNameRequired,
        Rule::SnRequired,
        Rule::MailRequired,
        Rule::UpnRequired,
        Rule::MailSyntax,
        Rule::UpnSyntax,
        Rule::MailDuplicate,
        Rule::UpnDuplicate,
        Rule::SamDuplicate,
    ];

    /// Stable identifier used in reports and scripts.
    pub fn id(self) -> &'static str {
        match self {
            Rule::GivenNameRequired => "givenName.required",
            Rule::SnRequired => "sn.required",
            Rule::MailRequired => "mail.required",
            Rule::UpnRequired => "userPrincipalName.required",
            Rule::MailSyntax => "mail.syntax",
            Rule::UpnSyntax => "userPrincipalName.syntax",
            Rule::MailDuplicate => "mail.duplicate",
            Rule::UpnDuplicate => "userPrincipalName.duplicate",
            Rule::SamDuplicate => "sAMAccountName.duplicate",
        }
    }

    pub fn attribute(self) -> &'static str {
        match self {
            Rule::GivenNameRequired => "givenName",
            Rule::SnRequired => "sn",
            Rule::MailRequired | Rule::MailSyntax | Rule::MailDuplicate => "mail",
            Rule::UpnRequired | Rule::UpnSyntax | Rule::UpnDuplicate => "userPrincipalName",
            Rule::SamDuplicate => "sAMAccountName",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Rule::GivenNameRequired => "first name (givenName) is present and not blank",
            Rule::SnRequired => "last name (sn) is present and not blank",
            Rule::MailRequired => "email address (mail) is present and not blank",
            Rule::UpnRequired => "logon name (userPrincipalName) is present and not blank",
            Rule::MailSyntax => "mail is a well-formed address (name@domain.tld)",
            Rule::UpnSyntax => "userPrincipalName is well-formed (name@domain.suffix)",
            Rule::MailDuplicate => "no other user in scope has the same mail (case-insensitive)",
            Rule::UpnDuplicate => "no other user in scope has the same userPrincipalName (case-insensitive)",
            Rule::SamDuplicate => "no other user in scope has the same sAMAccountName (case-insensitive)",
        }
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
    pub attribute: &'static str,
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
            attribute: rule.attribute(),
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
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Validation {
    pub summary: Summary,
    /// Users with problems, ordered by DN.
    pub users: Vec<UserFindings>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
}

/// Per-user rules that need no other user: presence and syntax.
pub fn check_attributes(user: &DirObject) -> Vec<Problem> {
    let mut problems = Vec::new();
    let required = [
        (Rule::GivenNameRequired, &user.given_name, "first name"),
        (Rule::SnRequired, &user.sn, "last name"),
        (Rule::MailRequired, &user.mail, "email address"),
        (Rule::UpnRequired, &user.user_principal_name, "logon name"),
    ];
    for (rule, value, label) in required {
        match value.as_deref() {
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
    if let Some(upn) = user.user_principal_name.as_deref().filter(|u| !is_blank(u))
        && let Err(reason) = check_address(upn, AddressKind::Upn)
    {
        problems.push(Problem::new(
            Rule::UpnSyntax,
            Some(upn),
            format!("userPrincipalName {upn:?} is not a valid logon name: {reason}"),
        ));
    }
    problems
}

/// Blank: nothing left after removing white space and invisible format characters.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{ad}')
    })
}

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
struct Seen {
    dn: Box<str>,
    sam: Option<Box<str>>,
    guid: Option<ObjectGuid>,
    upn: Option<Box<str>>,
    disabled: bool,
}

impl Seen {
    fn identity(&self) -> Identity {
        Identity {
            dn: self.dn.to_string(),
            sam_account_name: self.sam.as_deref().map(str::to_owned),
            object_guid: self.guid.map(|g| g.to_string()),
            user_principal_name: self.upn.as_deref().map(str::to_owned),
            disabled: self.disabled,
        }
    }
}

/// A value held by more than one user: the value, and every holder after the first.
type DuplicateGroup = (Box<str>, Vec<u32>);

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

/// Every rule for one user, passed or failed.
pub fn explain(identity: Identity, found: &[Problem]) -> Explanation {
    Explanation {
        identity,
        checks: Rule::ALL
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

/// Feeds users one by one; [`Validator::finish`] adds the cross-user rules.
#[derive(Default)]
pub struct Validator {
    seen: Vec<Seen>,
    problems: HashMap<u32, Vec<Problem>>,
    /// Per duplicate rule: normalised value → the first user holding it.
    keys: [HashMap<Box<str>, u32>; 3],
    /// Per duplicate rule, only for values held more than once: first holder → (value, later holders).
    duplicates: [HashMap<u32, DuplicateGroup>; 3],
    disabled: u64,
    target: Option<String>,
    target_index: Option<u32>,
}

impl Validator {
    pub fn new() -> Validator {
        Validator::default()
    }

    /// Also remember the user whose userPrincipalName or sAMAccountName is `user`.
    pub fn explaining(user: &str) -> Validator {
        Validator { target: Some(user.to_lowercase()), ..Validator::default() }
    }

    pub fn add(&mut self, user: &DirObject) {
        let index = u32::try_from(self.seen.len()).unwrap_or(u32::MAX);
        if user.is_disabled() {
            self.disabled += 1;
        }
        let problems = check_attributes(user);
        if !problems.is_empty() {
            self.problems.insert(index, problems);
        }
        let values = [&user.mail, &user.user_principal_name, &user.sam_account_name];
        for (slot, value) in values.into_iter().enumerate() {
            if let Some(v) = value.as_deref().filter(|v| !is_blank(v)) {
                match self.keys[slot].entry(v.trim().to_lowercase().into_boxed_str()) {
                    Entry::Vacant(e) => {
                        e.insert(index);
                    }
                    Entry::Occupied(e) => {
                        let (_, later) =
                            self.duplicates[slot].entry(*e.get()).or_insert_with(|| (e.key().clone(), Vec::new()));
                        later.push(index);
                    }
                }
            }
        }
        if let Some(target) = &self.target
            && self.target_index.is_none()
            && [&user.user_principal_name, &user.sam_account_name]
                .iter()
                .any(|v| v.as_deref().is_some_and(|v| v.trim().to_lowercase() == *target))
        {
            self.target_index = Some(index);
        }
        self.seen.push(Seen {
            dn: user.dn.to_string().into_boxed_str(),
            sam: user.sam_account_name.as_deref().map(Into::into),
            guid: user.guid,
            upn: user.user_principal_name.as_deref().map(Into::into),
            disabled: user.is_disabled(),
        });
    }

    pub fn finish(mut self, unreadable: Vec<Unreadable>) -> (Validation, Option<Explanation>) {
        self.keys = Default::default(); // no longer needed: free it before building the report
        let duplicates = std::mem::take(&mut self.duplicates);
        for (slot, groups) in duplicates.into_iter().enumerate() {
            let rule = DUPLICATE_RULES[slot];
            for (first, (key, later)) in groups {
                let holders: Vec<u32> = std::iter::once(first).chain(later).collect();
                // A value shared by thousands (a team mailbox in every user's mail) must not
                // make the report quadratic: each holder names a few of the others.
                let total = holders.len() - 1;
                for &i in &holders {
                    let others: Vec<String> = holders
                        .iter()
                        .filter(|&&j| j != i)
                        .take(MAX_LISTED_CONFLICTS)
                        .map(|&j| self.seen[j as usize].dn.to_string())
                        .collect();
                    let problem = duplicate_problem(rule, &key, others, total);
                    self.problems.entry(i).or_default().push(problem);
                }
            }
        }
        let explanation = self.target_index.map(|i| {
            explain(self.seen[i as usize].identity(), self.problems.get(&i).map(Vec::as_slice).unwrap_or_default())
        });
        let mut by_rule: BTreeMap<&'static str, u64> = Rule::ALL.iter().map(|r| (r.id(), 0)).collect();
        let mut users: Vec<UserFindings> = Vec::with_capacity(self.problems.len());
        for (i, mut problems) in self.problems {
            problems.sort_by_key(|p| p.rule);
            problems.dedup_by_key(|p| p.rule);
            for p in &problems {
                *by_rule.entry(p.rule.id()).or_default() += 1;
            }
            users.push(UserFindings { identity: self.seen[i as usize].identity(), problems });
        }
        users.sort_by_cached_key(|u| u.identity.dn.to_lowercase());
        let checked = self.seen.len() as u64;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Dn, ObjectKind};

    fn user(cn: &str, given: Option<&str>, sn: Option<&str>, mail: Option<&str>, upn: Option<&str>) -> DirObject {
        DirObject {
            kind: ObjectKind::User,
            dn: Dn::parse(&format!("CN={cn},OU=Corp,DC=example,DC=test")).unwrap(),
            guid: None,
            sam_account_name: Some(cn.to_lowercase()),
            user_principal_name: upn.map(str::to_owned),
            given_name: given.map(str::to_owned),
            sn: sn.map(str::to_owned),
            mail: mail.map(str::to_owned),
            user_account_control: Some(512),
            ..Default::default()
        }
    }

    fn rules(u: &DirObject) -> Vec<&'static str> {
        check_attributes(u).iter().map(|p| p.rule.id()).collect()
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
        let mut v = Validator::new();
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
        let mut v = Validator::new();
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
        let mut v = Validator::new();
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
        let mut v = Validator::explaining("NOMAIL");
        v.add(&ok("Other"));
        v.add(&user("NoMail", Some("N"), Some("M"), None, Some("nomail@example.test")));
        let (_, explanation) = v.finish(vec![]);
        let e = explanation.unwrap();
        assert_eq!(e.checks.len(), Rule::ALL.len());
        let failed: Vec<_> = e.checks.iter().filter(|c| !c.passed).map(|c| c.rule.id()).collect();
        assert_eq!(failed, ["mail.required"]);
    }
}

//! Who and what a policy provisions beyond the selected OUs: a user scope (an LDAP filter,
//! membership of groups, attribute conditions) and the group options (which groups sync, and
//! whether their members are nested groups or flattened users). Pure: the caller supplies the
//! attributes and the group memberships (the mirror's link table), so a delta decides exactly
//! like a full sync.
//!
//! Comparison rules, the same on a live DC and on an LDIF export (which filters locally):
//! equality, `in`, `not_equals` and the filter's `=`, `~=` and substrings compare text
//! case-insensitively (AD's directory-string matching); `>=`/`<=` compare as integers when both
//! sides are integers, else as lower-case text; `matches` is a regular expression (the `regex`
//! crate's syntax, case-sensitive unless it starts with `(?i)`) that must match somewhere in a
//! value. A multi-valued attribute matches when any value does; an absent attribute matches no
//! assertion (so `(!(department=Sales))` and `not_equals` take users without a department).

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

use crate::directory::ObjectGuid;
use crate::directory::filter::{Filter, Substrings};

pub use super::expr::Attributes;

/// Attributes a scope filter may not name: the built-in selection decides the object class, and
/// memberships are what `groups` (from the mirror's links) are for.
const NOT_IN_FILTER: [&str; 4] = ["objectclass", "objectcategory", "samaccounttype", "memberof"];

/// AD's bit tests, the only extensible matches a local source can answer alike.
const BIT_AND: &str = "1.2.840.113556.1.4.803";
const BIT_OR: &str = "1.2.840.113556.1.4.804";
/// LDAP_MATCHING_RULE_IN_CHAIN: transitive membership, which `groups` + `transitive` express.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// The longest compiled form of a `matches` pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// An LDAP filter from the configuration: parsed and checked when loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeFilter {
    filter: Filter,
}

impl ScopeFilter {
    pub fn parse(text: &str) -> Result<ScopeFilter, String> {
        let filter = Filter::parse(text).map_err(|e| format!("filter {text:?}: {e}"))?;
        check_rules(&filter).map_err(|m| format!("filter {text:?}: {m}"))?;
        if let Some(a) = filter.attributes().into_iter().find(|a| NOT_IN_FILTER.contains(&a.as_str())) {
            let why = if a == "memberof" {
                "scope by `groups` (with `transitive` for nested groups) instead"
            } else {
                "the built-in selection already takes users (sAMAccountType) and groups (objectClass)"
            };
            return Err(format!("filter {text:?}: {a} cannot be filtered on here; {why}"));
        }
        Ok(ScopeFilter { filter })
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    pub fn matches(&self, attrs: &dyn Attributes) -> bool {
        matches(&self.filter, attrs)
    }
}

impl fmt::Display for ScopeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.filter.fmt(f)
    }
}

impl<'de> Deserialize<'de> for ScopeFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ScopeFilter::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn check_rules(f: &Filter) -> Result<(), String> {
    match f {
        Filter::And(items) | Filter::Or(items) => items.iter().try_for_each(check_rules),
        Filter::Not(inner) => check_rules(inner),
        Filter::Extensible { rule, .. } if rule == IN_CHAIN => {
            Err("the in-chain matching rule is not supported here; scope by `groups` with `transitive = true` instead"
                .into())
        }
        Filter::Extensible { rule, value, .. } => {
            if rule != BIT_AND && rule != BIT_OR {
                return Err(format!("matching rule {rule} is not supported (only {BIT_AND} and {BIT_OR})"));
            }
            value.trim().parse::<u32>().map(|_| ()).map_err(|_| format!("bit mask {value:?} is not a number"))
        }
        _ => Ok(()),
    }
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn integer(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

fn equal(value: &str, want: &str) -> bool {
    match (integer(value), integer(want)) {
        (Some(a), Some(b)) => a == b,
        _ => lower(value) == lower(want),
    }
}

fn substrings(value: &str, parts: &Substrings) -> bool {
    let value = lower(value);
    let mut rest = value.as_str();
    if let Some(initial) = &parts.initial {
        let initial = lower(initial);
        let Some(r) = rest.strip_prefix(initial.as_str()) else { return false };
        rest = r;
    }
    for any in &parts.any {
        let any = lower(any);
        let Some(at) = rest.find(any.as_str()) else { return false };
        rest = &rest[at + any.len()..];
    }
    parts.last.as_ref().is_none_or(|last| rest.ends_with(lower(last).as_str()))
}

fn order(value: &str, want: &str) -> std::cmp::Ordering {
    match (integer(value), integer(want)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => lower(value).cmp(&lower(want)),
    }
}

fn attr_name(attr: &str) -> String {
    attr.split(';').next().unwrap_or(attr).to_ascii_lowercase()
}

/// Evaluates a parsed filter against one object's attributes, as the DC would (see the module
/// documentation for the comparison rules).
pub fn matches(f: &Filter, attrs: &dyn Attributes) -> bool {
    let any = |attr: &str, test: &dyn Fn(&str) -> bool| attrs.values(&attr_name(attr)).iter().any(test);
    match f {
        Filter::And(items) => items.iter().all(|i| matches(i, attrs)),
        Filter::Or(items) => items.iter().any(|i| matches(i, attrs)),
        Filter::Not(inner) => !matches(inner, attrs),
        Filter::Eq(a, want) | Filter::Approx(a, want) => any(a, &|v| equal(v, want)),
        Filter::Present(a) => any(a, &|_| true),
        Filter::Substrings(a, parts) => any(a, &|v| substrings(v, parts)),
        Filter::Ge(a, want) => any(a, &|v| order(v, want) != std::cmp::Ordering::Less),
        Filter::Le(a, want) => any(a, &|v| order(v, want) != std::cmp::Ordering::Greater),
        Filter::Extensible { attr, rule, value } => {
            let Ok(mask) = value.trim().parse::<u32>() else { return false };
            any(attr, &|v| {
                // AD's integer attributes are signed 32-bit; the bits are what counts.
                let Some(bits) = integer(v).map(|i| i as u32) else { return false };
                if rule == BIT_AND { bits & mask == mask } else { rule == BIT_OR && bits & mask != 0 }
            })
        }
        // Never produced by the parser: built-in filters, answered by the server only.
        Filter::Raw(_) | Filter::GuidEq(..) => false,
    }
}

/// A group named by its objectGUID in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupRef(pub ObjectGuid);

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for GroupRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ObjectGuid::parse(text.trim())
            .map(GroupRef)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an objectGUID")))
    }
}

/// What the mirror (or a validation's read of the selected OUs) holds under a scoping group's
/// objectGUID, when it is not a group there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupLookup {
    /// Nothing: no such group (a placeholder, a deleted group) or one outside the selected OUs.
    NotMirrored,
    /// Another kind of object (its DN).
    NotAGroup(String),
}

/// Why a policy's scoping group cannot be evaluated. Membership comes from the groups ausi reads
/// in the selected OUs, so a group it does not hold would take every user out of the scope.
pub fn missing_group_message(policy: &str, group: GroupRef, found: &GroupLookup) -> String {
    match found {
        GroupLookup::NotMirrored => format!(
            "the provisioning policy {policy:?} scopes by the group {group}, which is not among the groups of the selected OUs (no such objectGUID, a deleted group, or a group outside the selected OUs): its members cannot be known, and every user would leave the scope"
        ),
        GroupLookup::NotAGroup(dn) => format!(
            "the provisioning policy {policy:?} scopes by the group {group}, but that objectGUID is {dn}, which is not a group"
        ),
    }
}

/// The users reached from `roots` through the groups' `members` (the group's DN → its member
/// DNs, normalised; a member that is itself a key is a group): direct members only, or with
/// `transitive` through any chain of groups (each group once, so a cycle ends). What the mirror's
/// link table answers for a sync, for a read that has no mirror (`validate --user`).
pub fn reached(
    roots: &[&str],
    members: &std::collections::HashMap<String, Vec<String>>,
    transitive: bool,
) -> BTreeSet<String> {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut queue: Vec<&str> = roots.to_vec();
    let mut users = BTreeSet::new();
    while let Some(group) = queue.pop() {
        if !seen.insert(group) {
            continue;
        }
        for m in members.get(group).into_iter().flatten() {
            match members.contains_key(m) {
                true if transitive => queue.push(m),
                true => {}
                false => {
                    users.insert(m.clone());
                }
            }
        }
    }
    users
}

/// A regular expression compared by its text.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// What a condition asks of an attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(String),
    NotEquals(String),
    Present,
    Absent,
    Matches(Pattern),
    In(Vec<String>),
}

/// One attribute condition: `{ attribute = "employeeType", not_equals = "Contractor" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "ConditionToml")]
pub struct Condition {
    /// Lower-case.
    pub attribute: String,
    pub test: Test,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionToml {
    attribute: String,
    equals: Option<String>,
    not_equals: Option<String>,
    present: Option<bool>,
    absent: Option<bool>,
    matches: Option<String>,
    #[serde(rename = "in")]
    one_of: Option<Vec<String>>,
}

impl TryFrom<ConditionToml> for Condition {
    type Error = String;

    fn try_from(c: ConditionToml) -> Result<Self, String> {
        let attribute = c.attribute.trim().to_ascii_lowercase();
        let name_ok = attribute.starts_with(|ch: char| ch.is_ascii_alphabetic())
            && attribute.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-');
        if !name_ok {
            return Err(format!("condition: {:?} is not an attribute name", c.attribute));
        }
        let mut tests = Vec::new();
        if let Some(v) = c.equals {
            tests.push(Test::Equals(v));
        }
        if let Some(v) = c.not_equals {
            tests.push(Test::NotEquals(v));
        }
        match c.present {
            Some(true) => tests.push(Test::Present),
            Some(false) => tests.push(Test::Absent),
            None => {}
        }
        match c.absent {
            Some(true) => tests.push(Test::Absent),
            Some(false) => tests.push(Test::Present),
            None => {}
        }
        if let Some(p) = c.matches {
            let re = regex::RegexBuilder::new(&p).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
                format!("condition on {attribute}: `matches` {p:?} is not a valid regular expression: {e}")
            })?;
            tests.push(Test::Matches(Pattern(re)));
        }
        if let Some(list) = c.one_of {
            if list.is_empty() {
                return Err(format!("condition on {attribute}: `in` needs at least one value"));
            }
            tests.push(Test::In(list));
        }
        match tests.len() {
            1 => Ok(Condition { attribute, test: tests.remove(0) }),
            0 => Err(format!(
                "condition on {attribute}: say what to test (equals, not_equals, present, absent, matches or in)"
            )),
            _ => Err(format!("condition on {attribute}: one test per condition (write several conditions)")),
        }
    }
}

impl Condition {
    pub fn holds(&self, attrs: &dyn Attributes) -> bool {
        let values = attrs.values(&self.attribute);
        let eq = |want: &str| values.iter().any(|v| lower(v) == lower(want));
        match &self.test {
            Test::Equals(want) => eq(want),
            Test::NotEquals(want) => !eq(want),
            Test::Present => !values.is_empty(),
            Test::Absent => values.is_empty(),
            Test::Matches(p) => values.iter().any(|v| p.0.is_match(v)),
            Test::In(list) => list.iter().any(|w| eq(w)),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.attribute;
        match &self.test {
            Test::Equals(v) => write!(f, "{a} equals {v:?}"),
            Test::NotEquals(v) => write!(f, "{a} not_equals {v:?}"),
            Test::Present => write!(f, "{a} present"),
            Test::Absent => write!(f, "{a} absent"),
            Test::Matches(p) => write!(f, "{a} matches {:?}", p.0.as_str()),
            Test::In(list) => write!(f, "{a} in {list:?}"),
        }
    }
}

/// `[policies.NAME.scope]`: which users of the selected OUs the policy provisions. Every rule
/// set must hold; the default (no rule) is everyone in the OUs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scoping {
    /// An RFC 4515 filter the user must match (combined with the built-in user selection).
    #[serde(default)]
    pub filter: Option<ScopeFilter>,
    /// The user must be a member of at least one of these groups (objectGUIDs)...
    #[serde(default)]
    pub groups: Vec<GroupRef>,
    /// ...directly (`false`, the default) or through nested groups (`true`).
    #[serde(default)]
    pub transitive: bool,
    /// Attribute conditions, all of which must hold.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Which rule took a user out of the scope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum Exclusion {
    /// Not under the selected OUs (or excluded from them).
    Ou,
    Filter {
        filter: String,
    },
    Group {
        groups: Vec<String>,
        transitive: bool,
    },
    Condition {
        index: usize,
        condition: String,
    },
    /// A group not among `[groups] only`.
    NotListed {
        only: Vec<String>,
    },
}

impl Exclusion {
    /// The rule's name, as reports show it: `ou`, `filter`, `group`, `condition`.
    pub fn rule(&self) -> &'static str {
        match self {
            Exclusion::Ou => "ou",
            Exclusion::Filter { .. } => "filter",
            Exclusion::Group { .. } => "group",
            Exclusion::Condition { .. } => "condition",
            Exclusion::NotListed { .. } => "only",
        }
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::Ou => f.write_str("not in the selected OUs"),
            Exclusion::Filter { filter } => write!(f, "does not match the scope filter {filter}"),
            Exclusion::Group { groups, transitive } => write!(
                f,
                "not a {} member of any scoping group ({})",
                if *transitive { "direct or nested" } else { "direct" },
                groups.join(", ")
            ),
            Exclusion::Condition { index, condition } => write!(f, "fails scope condition {index}: {condition}"),
            Exclusion::NotListed { only } => write!(f, "not among the groups to sync ({})", only.join(", ")),
        }
    }
}

impl Scoping {
    /// Whether any rule beyond the OUs is set.
    pub fn is_set(&self) -> bool {
        self.filter.is_some() || !self.groups.is_empty() || !self.conditions.is_empty()
    }

    /// The directory attributes the filter and conditions read, lower-case.
    pub fn attributes(&self) -> BTreeSet<String> {
        let mut out = self.filter.as_ref().map(|f| f.filter.attributes()).unwrap_or_default();
        out.extend(self.conditions.iter().map(|c| c.attribute.clone()));
        out
    }

    /// Checks made when a policy is loaded (parsing already refused malformed values).
    pub fn check(&self) -> Result<(), String> {
        if self.transitive && self.groups.is_empty() {
            return Err("scope: `transitive` is set but no `groups` are listed".into());
        }
        let mut seen = BTreeSet::new();
        for g in &self.groups {
            if !seen.insert(g) {
                return Err(format!("scope: group {g} is listed twice"));
            }
        }
        Ok(())
    }

    /// The user's verdict: `None` in scope, else the first rule that excludes it, checked in the
    /// order filter, conditions, groups. `in_groups` answers whether the user is a member (per
    /// `transitive`) of one of `groups`; it is asked only when groups are set.
    pub fn exclusion(&self, attrs: &dyn Attributes, in_groups: &dyn Fn() -> bool) -> Option<Exclusion> {
        if let Some(filter) = &self.filter
            && !filter.matches(attrs)
        {
            return Some(Exclusion::Filter { filter: filter.to_string() });
        }
        for (i, c) in self.conditions.iter().enumerate() {
            if !c.holds(attrs) {
                return Some(Exclusion::Condition { index: i + 1, condition: c.to_string() });
            }
        }
        if !self.groups.is_empty() && !in_groups() {
            return Some(Exclusion::Group {
                groups: self.groups.iter().map(ToString::to_string).collect(),
                transitive: self.transitive,
            });
        }
        None
    }
}

/// How a synced group lists its members in the tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberMode {
    /// Users and synced groups, as in the directory (nested SCIM groups).
    #[default]
    Nested,
    /// The group's users, direct or through any chain of groups (synced or not); no groups.
    Flattened,
}

/// `[policies.NAME.groups]`: which groups of the selected OUs sync, and how their members are
/// listed. The default: all of them, nested.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOptions {
    /// Only these groups (objectGUIDs)...
    #[serde(default)]
    pub only: Vec<GroupRef>,
    /// ...or only the groups matching this filter. Neither: every group in the OUs.
    #[serde(default)]
    pub filter: Option<ScopeFilter>,
    #[serde(default)]
    pub members: MemberMode,
}

impl GroupOptions {
    pub fn attributes(&self) -> BTreeSet<String> {
        self.filter.as_ref().map(|f| f.filter.attributes()).unwrap_or_default()
    }

    pub fn check(&self) -> Result<(), String> {
        if !self.only.is_empty() && self.filter.is_some() {
            return Err("groups: set `only` or `filter`, not both".into());
        }
        Ok(())
    }

    /// Whether the group `guid` (in the OUs) syncs: `None` it does, else why not.
    pub fn exclusion(&self, guid: Option<ObjectGuid>, attrs: &dyn Attributes) -> Option<Exclusion> {
        if !self.only.is_empty() && !guid.is_some_and(|g| self.only.contains(&GroupRef(g))) {
            return Some(Exclusion::NotListed { only: self.only.iter().map(ToString::to_string).collect() });
        }
        if let Some(filter) = &self.filter
            && !filter.matches(attrs)
        {
            return Some(Exclusion::Filter { filter: filter.to_string() });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Attrs(BTreeMap<String, Vec<String>>);

    impl Attributes for Attrs {
        fn values(&self, name: &str) -> crate::directory::Values<'_> {
            Attributes::values(&self.0, name)
        }
    }

    fn attrs(pairs: &[(&str, &[&str])]) -> Attrs {
        Attrs(pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect())
    }

    fn alice() -> Attrs {
        attrs(&[
            ("department", &["Sales"]),
            ("mail", &["alice@example.com"]),
            ("title", &["Senior Engineer"]),
            ("employeenumber", &["0042"]),
            ("useraccountcontrol", &["514"]),
            ("proxyaddresses", &["SMTP:alice@example.com", "smtp:a@corp.local"]),
        ])
    }

    fn filter(text: &str) -> bool {
        ScopeFilter::parse(text).unwrap().matches(&alice())
    }

    #[test]
    fn filter_evaluates_like_the_dc() {
        assert!(filter("(department=sales)"));
        assert!(!filter("(department=Sale)"));
        assert!(filter("(mail=*)"));
        assert!(!filter("(company=*)"));
        assert!(filter("(!(company=Acme))"), "an absent attribute matches no assertion, so its negation holds");
        assert!(filter("(mail=*@EXAMPLE.com)"));
        assert!(filter("(title=sen*eng*)"));
        assert!(!filter("(title=*eng*sen*)"), "substrings match in order");
        assert!(filter("(proxyAddresses=smtp:a@corp.local)"), "any value of a multi-valued attribute");
        assert!(filter("(employeeNumber>=42)"), "integers compare as integers (0042 = 42)");
        assert!(filter("(employeeNumber<=42)"));
        assert!(!filter("(employeeNumber>=43)"));
        assert!(filter("(department>=Ra)"), "text compares as lower-case text");
        assert!(filter("(department~=SALES)"));
        assert!(filter("(userAccountControl:1.2.840.113556.1.4.803:=2)"), "514 has ACCOUNTDISABLE");
        assert!(!filter("(userAccountControl:1.2.840.113556.1.4.803:=3)"), "AND needs every bit");
        assert!(filter("(userAccountControl:1.2.840.113556.1.4.804:=3)"), "OR needs one bit");
        assert!(filter("(&(department=Sales)(|(title=x)(mail=alice*)))"));
        assert!(!filter("(&(department=Sales)(!(mail=alice*)))"));
    }

    #[test]
    fn filter_errors_name_the_position_and_refuse_what_a_local_source_cannot_answer() {
        let err = |t: &str| ScopeFilter::parse(t).unwrap_err();
        assert_eq!(
            err("(department=Sales"),
            r#"filter "(department=Sales": column 18: expected `)`, found the end of the filter"#
        );
        assert!(err("(memberOf:1.2.840.113556.1.4.1941:=CN=G,DC=x)").contains("`transitive = true`"));
        assert!(err("(cn:2.5.13.2:=x)").contains("not supported"));
        assert!(err("(userAccountControl:1.2.840.113556.1.4.803:=two)").contains("not a number"));
        let toml_err = toml::from_str::<Scoping>("filter = \"(cn=x\"").unwrap_err().to_string();
        assert!(toml_err.contains("column 6: expected `)`"), "{toml_err}");
    }

    fn condition(text: &str) -> Condition {
        toml::from_str::<Scoping>(&format!("conditions = [{text}]")).unwrap().conditions.remove(0)
    }

    #[test]
    fn every_condition_operator() {
        let a = alice();
        let holds = |text: &str| condition(text).holds(&a);
        assert!(holds(r#"{ attribute = "department", equals = "SALES" }"#), "equals ignores case");
        assert!(!holds(r#"{ attribute = "department", equals = "Sales " }"#));
        assert!(!holds(r#"{ attribute = "company", equals = "" }"#));
        assert!(holds(r#"{ attribute = "department", not_equals = "Contractors" }"#));
        assert!(!holds(r#"{ attribute = "Department", not_equals = "sales" }"#), "names ignore case too");
        assert!(holds(r#"{ attribute = "company", not_equals = "Acme" }"#), "absent is not equal");
        assert!(holds(r#"{ attribute = "mail", present = true }"#));
        assert!(!holds(r#"{ attribute = "company", present = true }"#));
        assert!(holds(r#"{ attribute = "company", absent = true }"#));
        assert!(!holds(r#"{ attribute = "mail", absent = true }"#));
        assert!(
            holds(r#"{ attribute = "mail", present = false }"#) == holds(r#"{ attribute = "mail", absent = true }"#)
        );
        assert!(holds(r#"{ attribute = "mail", matches = '@example\.com$' }"#));
        assert!(!holds(r#"{ attribute = "mail", matches = '@EXAMPLE\.com$' }"#), "regexes are case-sensitive");
        assert!(holds(r#"{ attribute = "mail", matches = '(?i)@EXAMPLE\.com$' }"#));
        assert!(holds(r#"{ attribute = "proxyaddresses", matches = '^smtp:.*@corp\.local$' }"#), "any value");
        assert!(!holds(r#"{ attribute = "company", matches = ".*" }"#), "an absent attribute matches nothing");
        assert!(holds(r#"{ attribute = "department", in = ["Engineering", "sales"] }"#));
        assert!(!holds(r#"{ attribute = "department", in = ["Engineering"] }"#));
    }

    #[test]
    fn malformed_conditions_are_refused_when_loaded() {
        let err = |text: &str| toml::from_str::<Scoping>(&format!("conditions = [{text}]")).unwrap_err().to_string();
        assert!(err(r#"{ attribute = "mail" }"#).contains("say what to test"));
        assert!(err(r#"{ attribute = "mail", equals = "a", present = true }"#).contains("one test per condition"));
        assert!(err(r#"{ attribute = "mail", matches = "(" }"#).contains("not a valid regular expression"));
        assert!(err(r#"{ attribute = "mail", in = [] }"#).contains("at least one value"));
        assert!(err(r#"{ attribute = "ma il", equals = "a" }"#).contains("not an attribute name"));
        assert!(err(r#"{ attribute = "mail", equal = "a" }"#).contains("unknown field"));
        assert!(toml::from_str::<Scoping>("group = []").unwrap_err().to_string().contains("unknown field"));
        let e = toml::from_str::<Scoping>(r#"groups = ["nope"]"#).unwrap_err().to_string();
        assert!(e.contains("\"nope\" is not an objectGUID"), "{e}");
    }

    const G1: &str = "01234567-89ab-cdef-0123-456789abcdef";
    const G2: &str = "11234567-89ab-cdef-0123-456789abcdef";

    #[test]
    fn scoping_checks_and_attributes() {
        assert_eq!(Scoping::default(), toml::from_str("").unwrap());
        assert!(!Scoping::default().is_set());
        let s: Scoping = toml::from_str(&format!(
            r#"filter = "(&(Department=*)(!(employeeType=Contractor)))"
               groups = ["{G1}"]
               transitive = true
               conditions = [{{ attribute = "Company", equals = "Acme" }}, {{ attribute = "department", absent = true }}]"#
        ))
        .unwrap();
        assert!(s.is_set());
        assert_eq!(s.check(), Ok(()));
        assert_eq!(s.attributes().into_iter().collect::<Vec<_>>(), ["company", "department", "employeetype"]);
        let t: Scoping = toml::from_str("transitive = true").unwrap();
        assert!(t.check().unwrap_err().contains("no `groups`"));
        let twice: Scoping = toml::from_str(&format!(r#"groups = ["{G1}", "{}"]"#, G1.to_uppercase())).unwrap();
        assert!(twice.check().unwrap_err().contains("listed twice"));
    }

    #[test]
    fn the_first_failing_rule_excludes() {
        let s: Scoping = toml::from_str(&format!(
            r#"filter = "(department=Sales)"
               groups = ["{G1}", "{G2}"]
               conditions = [{{ attribute = "title", matches = "Engineer" }}, {{ attribute = "mail", not_equals = "alice@example.com" }}]"#
        ))
        .unwrap();
        let a = alice();
        let asked = std::cell::Cell::new(false);
        let member = || {
            asked.set(true);
            true
        };
        let got = s.exclusion(&a, &member).unwrap();
        assert_eq!(got.rule(), "condition");
        assert_eq!(got.to_string(), r#"fails scope condition 2: mail not_equals "alice@example.com""#);
        assert!(!asked.get(), "membership is looked up only when the other rules pass");
        let other = attrs(&[("department", &["Engineering"])]);
        assert_eq!(
            s.exclusion(&other, &|| true).unwrap().to_string(),
            "does not match the scope filter (department=Sales)"
        );
        let fine = attrs(&[("department", &["sales"]), ("title", &["Engineer"]), ("mail", &["b@x"])]);
        assert_eq!(s.exclusion(&fine, &|| true), None);
        let out = s.exclusion(&fine, &|| false).unwrap();
        assert_eq!(out.rule(), "group");
        assert_eq!(out.to_string(), format!("not a direct member of any scoping group ({G1}, {G2})"));
        assert_eq!(Scoping::default().exclusion(&fine, &|| false), None);
    }

    #[test]
    fn group_options() {
        assert_eq!(GroupOptions::default(), toml::from_str("").unwrap());
        assert_eq!(GroupOptions::default().members, MemberMode::Nested);
        let g: GroupOptions = toml::from_str(&format!(
            r#"only = ["{G1}"]
            members = "flattened""#
        ))
        .unwrap();
        assert_eq!(g.members, MemberMode::Flattened);
        let a = attrs(&[("cn", &["Staff"])]);
        assert_eq!(g.exclusion(ObjectGuid::parse(G1), &a), None);
        assert_eq!(g.exclusion(ObjectGuid::parse(G2), &a).unwrap().rule(), "only");
        let f: GroupOptions = toml::from_str(r#"filter = "(cn=Sta*)""#).unwrap();
        assert_eq!(f.attributes().into_iter().collect::<Vec<_>>(), ["cn"]);
        assert_eq!(f.exclusion(None, &a), None);
        assert_eq!(f.exclusion(None, &attrs(&[("cn", &["Other"])])).unwrap().rule(), "filter");
        let both: GroupOptions = toml::from_str(&format!(
            r#"only = ["{G1}"]
            filter = "(cn=x)""#
        ))
        .unwrap();
        assert!(both.check().unwrap_err().contains("not both"));
        assert!(toml::from_str::<GroupOptions>(r#"members = "flat""#).is_err());
    }

    #[test]
    fn reached_follows_groups_once_and_only_when_transitive() {
        // g1 = {u1, g2}, g2 = {u2, g3}, g3 = {u3, g1} (a cycle), g4 = {u4}.
        let members: std::collections::HashMap<String, Vec<String>> =
            [("g1", vec!["u1", "g2"]), ("g2", vec!["u2", "g3"]), ("g3", vec!["u3", "g1"]), ("g4", vec!["u4"])]
                .into_iter()
                .map(|(g, m)| (g.to_owned(), m.into_iter().map(str::to_owned).collect()))
                .collect();
        let got = |roots: &[&str], transitive| reached(roots, &members, transitive).into_iter().collect::<Vec<_>>();
        assert_eq!(got(&["g1"], false), ["u1"]);
        assert_eq!(got(&["g1"], true), ["u1", "u2", "u3"]);
        assert_eq!(got(&["g2", "g4"], false), ["u2", "u4"]);
        assert_eq!(got(&["unknown"], true), Vec::<String>::new());
    }

    #[test]
    fn a_missing_scoping_group_is_named_with_its_policy() {
        let g = GroupRef(ObjectGuid::parse(G1).unwrap());
        let absent = missing_group_message("Staff", g, &GroupLookup::NotMirrored);
        assert!(
            absent.starts_with(&format!("the provisioning policy \"Staff\" scopes by the group {G1}, which is not"))
        );
        assert!(absent.contains("outside the selected OUs"));
        let user = missing_group_message("Staff", g, &GroupLookup::NotAGroup("CN=Ann,DC=x".into()));
        assert!(user.ends_with("that objectGUID is CN=Ann,DC=x, which is not a group"), "{user}");
    }

    /// The README's example under "Scoping and groups" loads as it is written.
    #[test]
    fn the_readme_example_loads() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("### Scoping and groups").expect("the README section")..];
        let start = section.find("```toml\n").unwrap() + 8;
        let block = &section[start..start + section[start..].find("```").unwrap()];
        let table: toml::Table = toml::from_str(block).unwrap();
        let staff = &table["policies"]["Staff"];
        let scope: Scoping = staff["scope"].clone().try_into().unwrap();
        let groups: GroupOptions = staff["groups"].clone().try_into().unwrap();
        assert_eq!((scope.check(), groups.check()), (Ok(()), Ok(())));
        assert_eq!((scope.conditions.len(), scope.transitive, groups.members), (3, true, MemberMode::Flattened));
        let user = attrs(&[
            ("department", &["Sales"]),
            ("title", &["Buyer"]),
            ("company", &["northwind"]),
            ("mail", &["ann@northwind.example"]),
        ]);
        assert_eq!(scope.exclusion(&user, &|| true), None);
        let contractor = attrs(&[
            ("department", &["Sales"]),
            ("employeetype", &["contractor"]),
            ("company", &["Northwind"]),
            ("mail", &["bob@northwind.example"]),
        ]);
        assert_eq!(scope.exclusion(&contractor, &|| true).unwrap().rule(), "condition");
    }

    #[test]
    fn filters_on_the_object_class_or_memberships_are_refused() {
        let err = |t: &str| ScopeFilter::parse(t).unwrap_err();
        assert!(err("(&(objectClass=user)(mail=*))").contains("objectclass cannot be filtered on here"));
        assert!(err("(objectCategory=person)").contains("built-in selection"));
        assert!(err("(memberOf=CN=Staff,DC=x)").contains("scope by `groups`"));
    }
}

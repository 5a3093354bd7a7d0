//! The mapping engine: a directory object and a policy in, the SCIM resource out. Pure.
//!
//! Default maps with fixed code, byte-identical to every earlier release (an upgrade rewrites
//! nobody). A configured policy evaluates its expressions and places each value at its target;
//! the resource is assembled in one canonical order (Default's order, then the other targets),
//! so the order of the lines in `agent.toml` never changes a content hash.

use std::borrow::Cow;

use serde_json::{Map, Value as Json, json};

use super::expr::{Attributes, MAX_TEXT_BYTES, Value, Values, within_limits};
use super::{
    DEFAULT_ACTIVE, DEFAULT_DISPLAY_NAME, ENTERPRISE_SCHEMA, GROUP_SCHEMA, Mapping, Policy, Target, USER_SCHEMA,
    UserMapping,
};
use crate::directory::DirObject;

impl Attributes for DirObject {
    fn values(&self, name: &str) -> Values<'_> {
        self.text_values(name)
    }
}

/// A mapping that failed for one object (the object is quarantined with rule `mapping.error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// The target, canonically spelled.
    pub target: String,
    /// The expression's source.
    pub source: String,
    pub message: String,
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mapping {} = {}: {}", self.target, self.source, self.message)
    }
}

/// One mapped value, for the explain view and the rules: `None` when the mapping gives nothing
/// (the target is left out).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedValue<'a, 'o> {
    pub mapping: &'a Mapping,
    pub value: Result<Option<Mapped<'o>>, String>,
}

/// What a mapping gives a target, before it is JSON: text (borrowed from the object when the
/// mapping reads one attribute as it is, so checking a user copies none of its values), or
/// `active`'s boolean.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped<'o> {
    Text(Cow<'o, str>),
    Bool(bool),
}

impl Mapped<'_> {
    pub fn into_json(self) -> Json {
        match self {
            Mapped::Text(t) => Json::String(t.into_owned()),
            Mapped::Bool(b) => Json::Bool(b),
        }
    }
}

impl MappedValue<'_, '_> {
    /// The target's canonical spelling.
    pub fn name(&self) -> &str {
        &self.mapping.name
    }

    /// The expression's source.
    pub fn source(&self) -> &str {
        self.mapping.expr.source()
    }
}

/// Every mapping of the policy evaluated for `user` (Default's written as expressions, which give
/// Default's values), in the policy's order.
pub fn user_values<'a, 'o>(policy: &'a Policy, user: &'o DirObject) -> Vec<MappedValue<'a, 'o>> {
    values_where(policy, user, |_| true).collect()
}

/// The mappings of the policy that `wanted` takes, evaluated for `user` as they are iterated.
pub fn values_where<'a, 'o>(
    policy: &'a Policy,
    user: &'o DirObject,
    wanted: impl Fn(&Mapping) -> bool,
) -> impl Iterator<Item = MappedValue<'a, 'o>> {
    let mappings = policy.user_mappings().iter().filter(move |m| wanted(m));
    mappings.map(|mapping| MappedValue { mapping, value: evaluate(mapping, user) })
}

/// Default's expressions that are not one attribute, computed by fixed code (the same value): a
/// policy evaluates every mapping of every user several times a run. (An expression that is one
/// attribute, [`Expr::single_attribute`](super::expr::Expr::single_attribute), is read directly.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shortcut {
    /// [`DEFAULT_DISPLAY_NAME`].
    DisplayName,
    /// [`DEFAULT_ACTIVE`].
    Active,
}

impl Shortcut {
    pub(super) fn of(expr: &super::expr::Expr) -> Option<Shortcut> {
        match expr.source() {
            DEFAULT_DISPLAY_NAME => Some(Shortcut::DisplayName),
            DEFAULT_ACTIVE => Some(Shortcut::Active),
            _ => None,
        }
    }
}

fn evaluate<'o>(m: &Mapping, o: &'o DirObject) -> Result<Option<Mapped<'o>>, String> {
    // Most mappings read one attribute as it is: its values, without the interpreter; most of
    // those read a field (one value at most).
    if let Some(field) = m.field
        && !m.role.active
    {
        match field(o).as_deref() {
            None => return Ok(None),
            Some(v) if v.len() <= MAX_TEXT_BYTES => {
                let v = v.trim();
                return Ok((!v.is_empty()).then_some(Mapped::Text(Cow::Borrowed(v))));
            }
            Some(_) => {} // past a size limit: the interpreter names the error
        }
    } else if let Some(name) = m.expr.single_attribute()
        && !m.role.active
    {
        let values = o.text_values(name);
        if within_limits(&values) {
            return Ok(one_text(m, values.iter_held())?.map(Mapped::Text));
        }
    }
    match m.shortcut {
        Some(Shortcut::Active) => return to_mapped(m, Value::Bool(!o.is_disabled())),
        Some(Shortcut::DisplayName) => {
            if let Some(value) = display_name(o) {
                return to_mapped(m, value);
            }
        }
        None => {}
    }
    // Anything else, and values at a size limit (the interpreter names the error).
    m.expr.eval(o).map_err(|e| e.message).and_then(|v| to_mapped(m, v))
}

/// [`DEFAULT_DISPLAY_NAME`]'s value, or `None` when a name is long enough to near a size limit.
fn display_name(o: &DirObject) -> Option<Value> {
    let names = [&o.display_name, &o.given_name, &o.sn];
    if names.iter().any(|n| n.as_ref().is_some_and(|n| n.len() > MAX_TEXT_BYTES / 4)) {
        return None;
    }
    if let Some(shown) = o.display_name.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        return Some(Value::Text(shown.to_owned()));
    }
    let parts: Vec<&str> = [&o.given_name, &o.sn].into_iter().flatten().map(|n| n.trim()).collect();
    Some(if parts.is_empty() { Value::Null } else { Value::Text(parts.join(" ")) })
}

/// An expression's value as a target takes it: text trimmed, and nothing for an empty one;
/// `active` takes a boolean; a list is one value at most.
fn to_mapped(m: &Mapping, value: Value) -> Result<Option<Mapped<'static>>, String> {
    let is_active = m.role.active;
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) if is_active => Ok(Some(Mapped::Bool(b))),
        Value::Text(t) if is_active => match t.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Some(Mapped::Bool(true))),
            "false" => Ok(Some(Mapped::Bool(false))),
            "" => Ok(None),
            _ => Err(format!("active takes true or false, not {t:?}")),
        },
        _ if is_active => Err(format!("active takes true or false, not {value}")),
        Value::Text(t) => Ok(one_text(m, std::iter::once(Cow::Owned(t)))?.map(Mapped::Text)),
        Value::Bool(b) => Ok(Some(Mapped::Text(Cow::Owned(b.to_string())))),
        Value::Int(n) => Ok(Some(Mapped::Text(Cow::Owned(n.to_string())))),
        Value::List(items) => Ok(one_text(m, items.into_iter().map(Cow::Owned))?.map(Mapped::Text)),
    }
}

/// Texts as the one value a target takes: each trimmed, empty ones left out; none is nothing,
/// more than one an error.
fn one_text<'v>(m: &Mapping, texts: impl Iterator<Item = Cow<'v, str>>) -> Result<Option<Cow<'v, str>>, String> {
    let mut present = texts.map(trimmed).filter(|t| !t.is_empty());
    let Some(first) = present.next() else { return Ok(None) };
    match present.count() {
        0 => Ok(Some(first)),
        more => Err(format!(
            "the expression gives {} values and {} takes one (pick one with Item(…, 1), PrimarySmtp or Join)",
            more + 1,
            m.name
        )),
    }
}

/// A text without the white space around it (a copy only when there is some to take off).
fn trimmed(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(t) => Cow::Borrowed(t.trim()),
        Cow::Owned(t) if t.trim().len() == t.len() => Cow::Owned(t),
        Cow::Owned(t) => Cow::Owned(t.trim().to_owned()),
    }
}

/// The SCIM User for a valid AD user. `manager_id` is the manager's SCIM id when the manager is
/// provisioned. Fails only for a configured policy whose expression fails for this user.
pub fn user(policy: &Policy, user: &DirObject, manager_id: Option<&str>) -> Result<Json, MapError> {
    match &policy.user {
        UserMapping::Default => Ok(default_user(user, manager_id)),
        UserMapping::Mapped(mappings) => {
            let mut values = Vec::with_capacity(mappings.len());
            for m in mappings {
                match evaluate(m, user) {
                    Ok(Some(value)) => values.push((m, value.into_json())),
                    Ok(None) => {}
                    Err(message) => {
                        return Err(MapError { target: m.name.clone(), source: m.expr.source().to_owned(), message });
                    }
                }
            }
            Ok(assemble(user, values, manager_id))
        }
    }
}

/// The userName [`user`] gives `user` (`None` when it gives none), evaluating only the
/// mappings to userName: the rename guard compares it with the userName last sent. Fails as
/// [`user`] does when one of those mappings fails.
pub fn user_name(policy: &Policy, user: &DirObject) -> Result<Option<Json>, MapError> {
    let UserMapping::Mapped(mappings) = &policy.user else {
        return Ok(default_user_name(user).map(Json::from));
    };
    let mut name = None;
    for m in mappings.iter().filter(|m| m.target.is_core("userName")) {
        match evaluate(m, user) {
            // The last mapping that gives a value, as `assemble` places it.
            Ok(value) => name = value.map(Mapped::into_json).or(name),
            Err(message) => {
                return Err(MapError { target: m.name.clone(), source: m.expr.source().to_owned(), message });
            }
        }
    }
    Ok(name)
}

/// A core attribute's place in [`CORE_ORDER`].
pub(super) fn core_place(attr: &str) -> Option<usize> {
    CORE_ORDER.iter().position(|a| *a == attr)
}

/// Core attributes in the order a resource lists them (Default's order first).
const CORE_ORDER: [&str; 19] = [
    "userName",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "emails",
    "active",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
];
const NAME_ORDER: [&str; 6] =
    ["formatted", "givenName", "familyName", "middleName", "honorificPrefix", "honorificSuffix"];

/// The resource from the mappings' values (those that gave one), in the canonical order.
fn assemble(user: &DirObject, values: Vec<(&Mapping, Json)>, manager_id: Option<&str>) -> Json {
    let mut body = Map::with_capacity(values.len() + 2);
    body.insert("externalId".into(), json!(user.guid.map(|g| g.to_string())));
    // Core values grouped by their attribute's place in CORE_ORDER (stable: the policy's order
    // within one attribute), extension values apart.
    let mut core: Vec<(usize, &Target, Json)> = Vec::with_capacity(values.len());
    let mut extension: Vec<(usize, &str, &str, Json)> = Vec::new();
    for (m, value) in values {
        match &m.target {
            target @ (Target::Core { .. } | Target::Multi { .. }) => {
                if m.role.place < CORE_ORDER.len() {
                    core.push((m.role.place, target, value));
                }
            }
            Target::Extension { schema, attr } => extension.push((m.role.place, schema, attr, value)),
        }
    }
    core.sort_by_key(|(place, ..)| *place);
    for same in core.chunk_by_mut(|a, b| a.0 == b.0) {
        let attr = CORE_ORDER[same[0].0];
        if let Some(value) = attribute_value(same) {
            body.insert(attr.into(), value);
        }
    }
    let mut schemas = vec![json!(USER_SCHEMA)];
    let mut extensions: Vec<&str> = extension.iter().map(|(_, schema, ..)| *schema).collect();
    if manager_id.is_some() {
        extensions.push(ENTERPRISE_SCHEMA);
    }
    extensions.sort_by_key(|s| (*s != ENTERPRISE_SCHEMA, *s));
    extensions.dedup();
    extension.sort_by_key(|(place, _, attr, _)| (*place, *attr));
    for schema in extensions {
        let mut ext = Map::with_capacity(extension.len() + 1);
        for (_, _, attr, value) in extension.iter_mut().filter(|(_, s, ..)| *s == schema) {
            ext.insert((*attr).to_owned(), std::mem::take(value));
        }
        if schema == ENTERPRISE_SCHEMA
            && let Some(id) = manager_id
        {
            ext.insert("manager".into(), json!({"value": id}));
        }
        schemas.push(json!(schema));
        body.insert(schema.to_owned(), Json::Object(ext));
    }
    body.insert("schemas".into(), Json::Array(schemas));
    Json::Object(body)
}

/// One core attribute from the values mapped to it: a simple value (the last one mapped), else
/// the complex value's sub-attributes in [`NAME_ORDER`] (the last one mapped to each), else the
/// typed entries in the order their types first appear, each with its sub-attributes in mapping
/// order, then `type`, then `primary` when one of its mappings says so.
fn attribute_value(same: &mut [(usize, &Target, Json)]) -> Option<Json> {
    let mut name: [Option<Json>; NAME_ORDER.len()] = Default::default();
    let mut entries: Vec<(&str, Map<String, Json>, bool)> = Vec::new();
    let mut simple = None;
    for (_, target, value) in same.iter_mut() {
        let value = std::mem::take(value);
        match target {
            Target::Core { sub: None, .. } => simple = Some(value),
            Target::Core { sub: Some(sub), .. } => {
                // The loader admits only NAME_ORDER's sub-attributes.
                if let Some(i) = NAME_ORDER.iter().position(|k| k == sub) {
                    name[i] = Some(value);
                }
            }
            Target::Multi { kind, primary, sub, .. } => {
                let i = match entries.iter().position(|(k, ..)| k == kind) {
                    Some(i) => i,
                    None => {
                        entries.push((kind, Map::with_capacity(3), false));
                        entries.len() - 1
                    }
                };
                let entry = &mut entries[i];
                entry.1.insert(sub.clone(), value);
                entry.2 |= *primary;
            }
            Target::Extension { .. } => {}
        }
    }
    if simple.is_some() {
        return simple;
    }
    if name.iter().any(Option::is_some) {
        let subs = NAME_ORDER.iter().zip(name).filter_map(|(k, v)| Some(((*k).to_owned(), v?)));
        return Some(Json::Object(subs.collect()));
    }
    if entries.is_empty() {
        return None;
    }
    let list = entries
        .into_iter()
        .map(|(kind, mut fields, primary)| {
            fields.insert("type".into(), json!(kind));
            if primary {
                fields.insert("primary".into(), json!(true));
            }
            Json::Object(fields)
        })
        .collect();
    Some(Json::Array(list))
}

/// The SCIM Group for an AD group, without members (they are sent as PATCH differences).
pub fn group(policy: &Policy, group: &DirObject) -> Result<Json, MapError> {
    let Some(m) = &policy.group_name else { return Ok(default_group(group)) };
    let name = evaluate(m, group).map_err(|message| MapError {
        target: "group.displayName".into(),
        source: m.expr.source().to_owned(),
        message,
    })?;
    Ok(json!({
        "schemas": [GROUP_SCHEMA],
        "externalId": group.guid.map(|g| g.to_string()),
        "displayName": name.map_or_else(|| json!(default_group_name(group)), Mapped::into_json),
    }))
}

/// Default's user resource: the fixed code of every earlier release (pinned by tests, since a
/// change here would rewrite every user of every tenant).
pub fn default_user(user: &DirObject, manager_id: Option<&str>) -> Json {
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let given = text(&user.given_name).unwrap_or_default();
    let family = text(&user.sn).unwrap_or_default();
    // Room for every attribute it may hold: the map never grows.
    let mut body = Map::with_capacity(10);
    let mut schemas = vec![json!(USER_SCHEMA)];
    body.insert("externalId".into(), json!(user.guid.map(|g| g.to_string())));
    body.insert("userName".into(), json!(default_user_name(user)));
    body.insert("name".into(), json!({"givenName": given, "familyName": family}));
    let display = text(&user.display_name).unwrap_or_else(|| format!("{given} {family}"));
    body.insert("displayName".into(), json!(display));
    body.insert("emails".into(), json!([{"value": text(&user.mail), "type": "work", "primary": true}]));
    body.insert("active".into(), json!(!user.is_disabled()));
    if let Some(title) = text(&user.title) {
        body.insert("title".into(), json!(title));
    }
    if let Some(phone) = text(&user.telephone_number) {
        body.insert("phoneNumbers".into(), json!([{"value": phone, "type": "work"}]));
    }
    let mut enterprise = Map::with_capacity(3);
    if let Some(n) = text(&user.employee_number) {
        enterprise.insert("employeeNumber".into(), json!(n));
    }
    if let Some(d) = text(&user.department) {
        enterprise.insert("department".into(), json!(d));
    }
    if let Some(id) = manager_id {
        enterprise.insert("manager".into(), json!({"value": id}));
    }
    if !enterprise.is_empty() {
        schemas.push(json!(ENTERPRISE_SCHEMA));
        body.insert(ENTERPRISE_SCHEMA.into(), Json::Object(enterprise));
    }
    body.insert("schemas".into(), Json::Array(schemas));
    Json::Object(body)
}

fn default_group_name(group: &DirObject) -> String {
    group
        .cn
        .clone()
        .or_else(|| group.dn.rdn_value().map(str::to_owned))
        .unwrap_or_else(|| group.sam_account_name.clone().unwrap_or_default())
}

/// Default's userName: the userPrincipalName, trimmed.
fn default_user_name(user: &DirObject) -> Option<&str> {
    user.user_principal_name.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Default's group resource (fixed code, like [`default_user`]).
pub fn default_group(group: &DirObject) -> Json {
    json!({
        "schemas": [GROUP_SCHEMA],
        "externalId": group.guid.map(|g| g.to_string()),
        "displayName": default_group_name(group),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::directory::Dn;
    use crate::policy::expr::MAX_LIST_ITEMS;

    /// Values around every edge the fast path must agree on: blank, padded, several, and sizes
    /// at and past the interpreter's limits.
    fn values() -> impl Strategy<Value = Vec<String>> {
        prop_oneof![
            8 => prop::collection::vec(value(), 0..4),
            1 => Just(vec!["x".to_owned(); MAX_LIST_ITEMS + 1]),
            1 => Just(vec!["y".repeat(MAX_TEXT_BYTES / 2); 40]),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ a-zA-Zé@.\t]{0,10}",
            Just(String::new()),
            Just("  ".to_owned()),
            Just("a".repeat(MAX_TEXT_BYTES)),
            Just(format!(" {} ", "a".repeat(MAX_TEXT_BYTES))),
            Just("b".repeat(MAX_TEXT_BYTES + 1)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A mapping that reads one attribute gives, through the direct read, exactly what the
        /// interpreter gives: the value, nothing, or the same error (sizes included).
        #[test]
        fn a_single_attribute_maps_as_the_interpreter_does(
            extra in values(),
            title in prop::option::of(value()),
            target in prop::sample::select(vec!["title", "name.givenName", "emails[work,primary]", "enterprise.costCenter", "active"]),
        ) {
            let mut user = DirObject { dn: Dn::parse("CN=u,DC=x").unwrap(), title, ..Default::default() };
            user.extra.insert("extensionattribute1", &extra);
            for attribute in ["extensionAttribute1", "title", "dn", "userAccountControl", "missing"] {
                let target = Target::parse(target).unwrap();
                let mapping = Mapping::parse(target, &format!("[{attribute}]"), "test").unwrap();
                let interpreted = mapping.expr.eval(&user).map_err(|e| e.message).and_then(|v| to_mapped(&mapping, v));
                prop_assert_eq!(evaluate(&mapping, &user), interpreted, "[{}]", attribute);
            }
        }

        /// Default's mappings (those with a shortcut, and the rest) give, through the shortcut,
        /// exactly what the interpreter gives, whatever the names hold (blank, padded, absent,
        /// long enough for Join to pass its size limit), the account control and the target.
        #[test]
        fn defaults_mappings_map_as_the_interpreter_does(
            names in prop::collection::vec(prop::option::of(name()), 3),
            uac in prop::option::of(prop_oneof![Just(512u32), Just(514), Just(2), any::<u32>()]),
            target in prop::sample::select(vec!["title", "active", "displayName", "name.givenName"]),
        ) {
            let user = DirObject {
                dn: Dn::parse("CN=u,DC=x").unwrap(),
                display_name: names[0].clone(),
                given_name: names[1].clone(),
                sn: names[2].clone(),
                user_account_control: uac,
                ..Default::default()
            };
            for (_, source) in crate::policy::DEFAULT_USER_MAPPING {
                let mapping = Mapping::parse(Target::parse(target).unwrap(), source, "test").unwrap();
                let interpreted = mapping.expr.eval(&user).map_err(|e| e.message).and_then(|v| to_mapped(&mapping, v));
                prop_assert_eq!(evaluate(&mapping, &user), interpreted, "{}", source);
            }
        }
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[ a-zA-Zé\t]{0,8}",
            1 => Just(String::new()),
            1 => Just("n".repeat(MAX_TEXT_BYTES / 4)),
            1 => Just(format!(" {} ", "n".repeat(MAX_TEXT_BYTES / 2))),
            1 => Just("n".repeat(MAX_TEXT_BYTES)),
        ]
    }
}

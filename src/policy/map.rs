//! The mapping engine: a directory object and a policy in, the SCIM resource out. Pure.
//!
//! Default maps with fixed code, byte-identical to every earlier release (an upgrade rewrites
//! nobody). A configured policy evaluates its expressions and places each value at its target;
//! the resource is assembled in one canonical order (Default's order, then the other targets),
//! so the order of the lines in `agent.toml` never changes a content hash.

use serde_json::{Map, Value as Json, json};

use super::expr::{Attributes, Value};
use super::{ENTERPRISE, ENTERPRISE_SCHEMA, GROUP_SCHEMA, Mapping, Policy, Target, USER_SCHEMA, UserMapping};
use crate::directory::DirObject;

impl Attributes for DirObject {
    fn values(&self, name: &str) -> Vec<String> {
        DirObject::values(self, name)
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
pub struct MappedValue<'a> {
    pub mapping: &'a Mapping,
    pub value: Result<Option<Json>, String>,
}

impl MappedValue<'_> {
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
pub fn user_values<'a>(policy: &'a Policy, user: &DirObject) -> Vec<MappedValue<'a>> {
    values_where(policy, user, |_| true)
}

/// The mappings of the policy whose target `wanted` takes, evaluated for `user`.
pub fn values_where<'a>(
    policy: &'a Policy,
    user: &DirObject,
    wanted: impl Fn(&Target) -> bool,
) -> Vec<MappedValue<'a>> {
    let mappings = policy.user_mappings().iter().filter(|m| wanted(&m.target));
    mappings.map(|mapping| MappedValue { mapping, value: evaluate(mapping, user) }).collect()
}

fn evaluate(m: &Mapping, o: &DirObject) -> Result<Option<Json>, String> {
    m.expr.eval(o).map_err(|e| e.message).and_then(|v| to_json(&m.target, v))
}

/// An expression's value as the JSON a target takes: text trimmed, and nothing for an empty one;
/// `active` takes a boolean; a list is one value at most.
fn to_json(target: &Target, value: Value) -> Result<Option<Json>, String> {
    let is_active = matches!(target, Target::Core { attr, sub: None } if attr == "active");
    let text = match value {
        Value::Null => return Ok(None),
        Value::Bool(b) if is_active => return Ok(Some(json!(b))),
        Value::Text(t) if is_active => {
            return match t.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(json!(true))),
                "false" => Ok(Some(json!(false))),
                "" => Ok(None),
                _ => Err(format!("active takes true or false, not {t:?}")),
            };
        }
        _ if is_active => return Err(format!("active takes true or false, not {value}")),
        Value::Text(t) => t,
        Value::Bool(b) => b.to_string(),
        Value::Int(n) => n.to_string(),
        Value::List(items) => {
            let mut items: Vec<String> =
                items.into_iter().map(|i| i.trim().to_owned()).filter(|i| !i.is_empty()).collect();
            match items.len() {
                0 => return Ok(None),
                1 => items.remove(0),
                n => {
                    return Err(format!(
                        "the expression gives {n} values and {} takes one (pick one with Item(…, 1), PrimarySmtp or Join)",
                        target.name()
                    ));
                }
            }
        }
    };
    let text = text.trim();
    Ok((!text.is_empty()).then(|| json!(text)))
}

/// The SCIM User for a valid AD user. `manager_id` is the manager's SCIM id when the manager is
/// provisioned. Fails only for a configured policy whose expression fails for this user.
pub fn user(policy: &Policy, user: &DirObject, manager_id: Option<&str>) -> Result<Json, MapError> {
    match &policy.user {
        UserMapping::Default => Ok(default_user(user, manager_id)),
        UserMapping::Mapped(mappings) => {
            let values = mappings
                .iter()
                .map(|m| match evaluate(m, user) {
                    Ok(value) => Ok((&m.target, value)),
                    Err(message) => {
                        Err(MapError { target: m.name.clone(), source: m.expr.source().to_owned(), message })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(assemble(user, &values, manager_id))
        }
    }
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

/// The resource from evaluated mappings, in the canonical order.
fn assemble(user: &DirObject, values: &[(&Target, Option<Json>)], manager_id: Option<&str>) -> Json {
    let mut body = Map::new();
    body.insert("externalId".into(), json!(user.guid.map(|g| g.to_string())));
    for attr in CORE_ORDER {
        let mut name = Map::new();
        let mut entries: Vec<(String, Map<String, Json>)> = Vec::new();
        let mut simple = None;
        for (target, value) in values {
            let Some(value) = value else { continue };
            match target {
                Target::Core { attr: a, sub: None } if a == attr => simple = Some(value.clone()),
                Target::Core { attr: a, sub: Some(sub) } if a == attr => {
                    name.insert(sub.clone(), value.clone());
                }
                Target::Multi { attr: a, kind, primary, sub } if a == attr => {
                    let i = match entries.iter().position(|(k, _)| k == kind) {
                        Some(i) => i,
                        None => {
                            entries.push((kind.clone(), Map::new()));
                            entries.len() - 1
                        }
                    };
                    let entry = &mut entries[i].1;
                    entry.insert(sub.clone(), value.clone());
                    if *primary {
                        entry.insert("primary".into(), json!(true));
                    }
                }
                _ => {}
            }
        }
        if let Some(value) = simple {
            body.insert(attr.into(), value);
        } else if !name.is_empty() {
            let ordered: Map<String, Json> =
                NAME_ORDER.iter().filter_map(|k| name.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect();
            body.insert(attr.into(), Json::Object(ordered));
        } else if !entries.is_empty() {
            let list: Vec<Json> = entries
                .into_iter()
                .map(|(kind, mut fields)| {
                    let primary = fields.shift_remove("primary");
                    fields.insert("type".into(), json!(kind));
                    if let Some(p) = primary {
                        fields.insert("primary".into(), p);
                    }
                    Json::Object(fields)
                })
                .collect();
            body.insert(attr.into(), Json::Array(list));
        }
    }
    let mut schemas = vec![json!(USER_SCHEMA)];
    let mut extensions: Vec<&str> = values
        .iter()
        .filter_map(|(t, v)| match (t, v) {
            (Target::Extension { schema, .. }, Some(_)) => Some(schema.as_str()),
            _ => None,
        })
        .collect();
    if manager_id.is_some() {
        extensions.push(ENTERPRISE_SCHEMA);
    }
    extensions.sort_by_key(|s| (*s != ENTERPRISE_SCHEMA, *s));
    extensions.dedup();
    for schema in extensions {
        let mut ext = Map::new();
        let mut attrs: Vec<(&str, &Json)> = values
            .iter()
            .filter_map(|(t, v)| match (t, v) {
                (Target::Extension { schema: s, attr }, Some(v)) if s == schema => Some((attr.as_str(), v)),
                _ => None,
            })
            .collect();
        attrs.sort_by_key(|(a, _)| (ENTERPRISE.iter().position(|e| e == a).unwrap_or(usize::MAX), *a));
        for (attr, value) in attrs {
            ext.insert(attr.to_owned(), value.clone());
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
        "displayName": name.unwrap_or_else(|| json!(default_group_name(group))),
    }))
}

/// Default's user resource: the fixed code of every earlier release (pinned by tests, since a
/// change here would rewrite every user of every tenant).
pub fn default_user(user: &DirObject, manager_id: Option<&str>) -> Json {
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let given = text(&user.given_name).unwrap_or_default();
    let family = text(&user.sn).unwrap_or_default();
    let mut body = Map::new();
    let mut schemas = vec![json!(USER_SCHEMA)];
    body.insert("externalId".into(), json!(user.guid.map(|g| g.to_string())));
    body.insert("userName".into(), json!(text(&user.user_principal_name)));
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
    let mut enterprise = Map::new();
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

/// Default's group resource (fixed code, like [`default_user`]).
pub fn default_group(group: &DirObject) -> Json {
    json!({
        "schemas": [GROUP_SCHEMA],
        "externalId": group.guid.map(|g| g.to_string()),
        "displayName": default_group_name(group),
    })
}

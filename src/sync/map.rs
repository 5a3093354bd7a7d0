//! The provisioning policy: how an AD user or group becomes a SCIM resource
//! (`../shared/design/tenant-api.md`, "Default provisioning policy"). Pure.

use serde_json::{Map, Value, json};

use crate::directory::DirObject;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The provisioning policies this release knows.
pub const POLICIES: [&str; 1] = ["Default"];

/// The SCIM User for a valid AD user. `manager_id` is the manager's SCIM id when the manager is
/// provisioned. Empty optional attributes are left out, so clearing one in AD clears it in the
/// tenant on the next replace.
pub fn user(user: &DirObject, manager_id: Option<&str>) -> Value {
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
        body.insert(ENTERPRISE_SCHEMA.into(), Value::Object(enterprise));
    }
    body.insert("schemas".into(), Value::Array(schemas));
    Value::Object(body)
}

/// The SCIM Group for an AD group, without members (they are sent as PATCH differences).
pub fn group(group: &DirObject) -> Value {
    let name = group
        .cn
        .clone()
        .or_else(|| group.dn.rdn_value().map(str::to_owned))
        .unwrap_or_else(|| group.sam_account_name.clone().unwrap_or_default());
    json!({
        "schemas": [GROUP_SCHEMA],
        "externalId": group.guid.map(|g| g.to_string()),
        "displayName": name,
    })
}

/// The directory text a user's SCIM resource is made of, by attribute (what the
/// control-character rule looks at).
pub fn user_text(user: &DirObject) -> [(&'static str, Option<&str>); 9] {
    [
        ("userPrincipalName", user.user_principal_name.as_deref()),
        ("givenName", user.given_name.as_deref()),
        ("sn", user.sn.as_deref()),
        ("displayName", user.display_name.as_deref()),
        ("mail", user.mail.as_deref()),
        ("title", user.title.as_deref()),
        ("telephoneNumber", user.telephone_number.as_deref()),
        ("employeeNumber", user.employee_number.as_deref()),
        ("department", user.department.as_deref()),
    ]
}

/// The directory text a group's SCIM resource is made of: its name, as [`group`] takes it.
pub fn group_text(group: &DirObject) -> [(&'static str, Option<&str>); 1] {
    match group.cn.as_deref() {
        Some(cn) => [("cn", Some(cn))],
        None => [("name", group.dn.rdn_value().or(group.sam_account_name.as_deref()))],
    }
}

/// A stable fingerprint of what was sent (FNV-1a over the JSON text): an unchanged object
/// costs no write. Stable across releases and platforms, unlike std's hasher.
pub fn content_hash(body: &Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The attributes whose values differ between two bodies (for the dry-run plan).
pub fn changed_attributes(old: &Value, new: &Value) -> Vec<String> {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return vec![];
    };
    let mut changed: Vec<String> = new.iter().filter(|(k, v)| old.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    changed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    changed.sort();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Dn, ObjectGuid};

    fn alice() -> DirObject {
        DirObject {
            dn: Dn::parse("CN=Alice Smith,OU=People,DC=example,DC=test").unwrap(),
            guid: ObjectGuid::parse("33221100-5544-7766-8899-aabbccddeeff"),
            user_principal_name: Some("asmith@example.test".into()),
            given_name: Some("Alice".into()),
            sn: Some("Smith".into()),
            mail: Some("alice.smith@example.test".into()),
            user_account_control: Some(512),
            ..Default::default()
        }
    }

    #[test]
    fn default_policy_maps_the_required_attributes() {
        let body = user(&alice(), None);
        assert_eq!(body["externalId"], "33221100-5544-7766-8899-aabbccddeeff");
        assert_eq!(body["userName"], "asmith@example.test");
        assert_eq!(body["name"], json!({"givenName": "Alice", "familyName": "Smith"}));
        assert_eq!(body["displayName"], "Alice Smith");
        assert_eq!(body["emails"][0], json!({"value": "alice.smith@example.test", "type": "work", "primary": true}));
        assert_eq!(body["active"], true);
        assert_eq!(body["schemas"], json!([USER_SCHEMA]));
    }

    #[test]
    fn enterprise_extension_and_disabled() {
        let mut a = alice();
        a.user_account_control = Some(514);
        a.department = Some("Sales".into());
        a.employee_number = Some(" 42 ".into());
        a.title = Some("Rep".into());
        a.telephone_number = Some("+1 555".into());
        let body = user(&a, Some("mgr-id"));
        assert_eq!(body["active"], false);
        assert_eq!(
            body[ENTERPRISE_SCHEMA],
            json!({"employeeNumber": "42", "department": "Sales", "manager": {"value": "mgr-id"}})
        );
        assert_eq!(body["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        assert_eq!(body["phoneNumbers"], json!([{"value": "+1 555", "type": "work"}]));
        assert_eq!(changed_attributes(&user(&alice(), None), &body).len(), 5);
    }

    #[test]
    fn hash_changes_with_content_only() {
        let a = user(&alice(), None);
        assert_eq!(content_hash(&a), content_hash(&user(&alice(), None)));
        let mut b = alice();
        b.sn = Some("Jones".into());
        assert_ne!(content_hash(&a), content_hash(&user(&b, None)));
        // Pinned, so a release that changes hashing (and would rewrite every user) is noticed.
        assert_eq!(content_hash(&json!({"a": 1})), "9c3e82dd6fcae8b1");
    }

    #[test]
    fn group_name_from_cn() {
        let g = DirObject {
            kind: crate::directory::ObjectKind::Group,
            dn: Dn::parse("CN=R&D Staff\\, All,OU=Groups,DC=x").unwrap(),
            ..Default::default()
        };
        assert_eq!(group(&g)["displayName"], "R&D Staff, All");
    }
}

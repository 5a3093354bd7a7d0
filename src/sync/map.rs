//! What the sync keeps of a SCIM resource: its content hash and which attributes changed. The
//! mapping itself is the provisioning policy's ([`crate::policy::map`]). Pure.

use serde_json::Value;

use crate::directory::DirObject;

pub use crate::policy::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

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
    /// FNV-1a fed by the serialiser as it writes: the text is never built.
    struct Fnv(u64);
    impl std::io::Write for Fnv {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            for byte in buf {
                self.0 ^= u64::from(*byte);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    // The same compact text as `body.to_string()`; writing to `Fnv` cannot fail.
    let _ = serde_json::to_writer(&mut hash, body);
    format!("{:016x}", hash.0)
}

/// The length of `body` as compact JSON (as [`Value::to_string`] would write it), counted as
/// it is written: the text is never built.
pub fn json_len(body: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to `Count` cannot fail.
    let _ = serde_json::to_writer(&mut count, body);
    count.0
}

/// Whether `body` serialises to exactly `text` (as [`Value::to_string`] would), compared as it
/// is written: the text is never built, and the first byte that differs ends it.
pub fn serializes_to(body: &Value, text: &str) -> bool {
    struct Same<'t>(&'t [u8]);
    impl std::io::Write for Same<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self.0.strip_prefix(buf) {
                Some(rest) => {
                    self.0 = rest;
                    Ok(buf.len())
                }
                None => Err(std::io::ErrorKind::InvalidData.into()),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut same = Same(text.as_bytes());
    serde_json::to_writer(&mut same, body).is_ok() && same.0.is_empty()
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
    use serde_json::json;

    use super::*;
    use crate::directory::{Dn, ObjectGuid, ObjectKind};
    use crate::policy::{Policy, PolicyConfig, map};

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

    /// Seeded-like users: plain, disabled with enterprise fields and a manager, a display name,
    /// white space and empty optional attributes.
    fn seeded() -> Vec<(DirObject, Option<&'static str>)> {
        let mut rich = alice();
        rich.user_account_control = Some(514);
        rich.department = Some("Sales".into());
        rich.employee_number = Some(" 42 ".into());
        rich.title = Some("Rep".into());
        rich.telephone_number = Some("+1 555".into());
        let mut shown = alice();
        shown.display_name = Some("Alice S. (Sales)".into());
        shown.title = Some("  ".into());
        shown.department = Some(String::new());
        shown.guid = Some(ObjectGuid([7; 16]));
        let mut managed = alice();
        managed.user_account_control = None;
        managed.given_name = Some(" Zoë ".into());
        (vec![(alice(), None), (rich, Some("mgr-id")), (shown, None), (managed, Some("boss"))]).into_iter().collect()
    }

    fn default_user(o: &DirObject, manager: Option<&str>) -> Value {
        map::user(&Policy::default_policy(), o, manager).unwrap()
    }

    #[test]
    fn default_policy_maps_the_required_attributes() {
        let body = default_user(&alice(), None);
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
        let (rich, manager) = seeded().remove(1);
        let body = default_user(&rich, manager);
        assert_eq!(body["active"], false);
        assert_eq!(
            body[ENTERPRISE_SCHEMA],
            json!({"employeeNumber": "42", "department": "Sales", "manager": {"value": "mgr-id"}})
        );
        assert_eq!(body["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        assert_eq!(body["phoneNumbers"], json!([{"value": "+1 555", "type": "work"}]));
        assert_eq!(changed_attributes(&default_user(&alice(), None), &body).len(), 5);
    }

    /// `serializes_to` answers what comparing with `to_string` would, without building the text.
    #[test]
    fn serializes_to_compares_with_the_compact_text() {
        let body = default_user(&alice(), Some("m1"));
        let text = body.to_string();
        assert!(serializes_to(&body, &text));
        assert!(!serializes_to(&body, &text[..text.len() - 1]), "a prefix of it");
        assert!(!serializes_to(&body, &format!("{text} ")), "more than it");
        assert!(!serializes_to(&body, &text.replace("Alice", "Alicia")), "another value");
        assert!(!serializes_to(&body, ""));
        assert!(serializes_to(&json!({"a": "\u{7}\"é"}), r#"{"a":"\u0007\"é"}"#), "escapes as written");
    }

    /// The Default policy's bodies and hashes, pinned byte for byte: they are what every tenant
    /// holds, so a change here would rewrite every user on the first run after an upgrade.
    #[test]
    fn default_bodies_and_hashes_are_pinned() {
        let pinned = [
            (
                r#"{"externalId":"33221100-5544-7766-8899-aabbccddeeff","userName":"asmith@example.test","name":{"givenName":"Alice","familyName":"Smith"},"displayName":"Alice Smith","emails":[{"value":"alice.smith@example.test","type":"work","primary":true}],"active":true,"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}"#,
                "33af06de9f7f4dff",
            ),
            (
                r#"{"externalId":"33221100-5544-7766-8899-aabbccddeeff","userName":"asmith@example.test","name":{"givenName":"Alice","familyName":"Smith"},"displayName":"Alice Smith","emails":[{"value":"alice.smith@example.test","type":"work","primary":true}],"active":false,"title":"Rep","phoneNumbers":[{"value":"+1 555","type":"work"}],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"42","department":"Sales","manager":{"value":"mgr-id"}},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]}"#,
                "b419cbb4069c27ff",
            ),
            (
                r#"{"externalId":"07070707-0707-0707-0707-070707070707","userName":"asmith@example.test","name":{"givenName":"Alice","familyName":"Smith"},"displayName":"Alice S. (Sales)","emails":[{"value":"alice.smith@example.test","type":"work","primary":true}],"active":true,"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}"#,
                "101c4b50c2bdfcea",
            ),
            (
                r#"{"externalId":"33221100-5544-7766-8899-aabbccddeeff","userName":"asmith@example.test","name":{"givenName":"Zoë","familyName":"Smith"},"displayName":"Zoë Smith","emails":[{"value":"alice.smith@example.test","type":"work","primary":true}],"active":true,"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"boss"}},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]}"#,
                "dc54969d9eec1b34",
            ),
        ];
        for ((o, manager), (text, hash)) in seeded().iter().zip(pinned) {
            let body = default_user(o, *manager);
            assert_eq!(body.to_string(), text);
            assert_eq!(content_hash(&body), hash, "{text}");
        }
        let g = DirObject {
            kind: ObjectKind::Group,
            guid: Some(ObjectGuid([9; 16])),
            dn: Dn::parse("CN=R&D Staff\\, All,OU=Groups,DC=x").unwrap(),
            ..Default::default()
        };
        let body = map::group(&Policy::default_policy(), &g).unwrap();
        assert_eq!(
            body.to_string(),
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"externalId":"09090909-0909-0909-0909-090909090909","displayName":"R&D Staff, All"}"#
        );
        assert_eq!(content_hash(&body), "f62ca18f4248cece");
    }

    /// A policy that changes nothing but starts from Default's expressions sends what Default
    /// sends to every user Default provisions: switching to it writes nothing.
    #[test]
    fn defaults_expressions_give_defaults_bodies() {
        let copy = Policy::compile("Copy", &PolicyConfig::default()).unwrap();
        for (o, manager) in seeded() {
            assert_eq!(map::user(&copy, &o, manager).unwrap(), default_user(&o, manager), "{}", o.dn);
        }
    }

    /// The UPN-suffix rewrite changes userName only.
    #[test]
    fn a_rewrite_policy_changes_only_user_name() {
        let config: PolicyConfig =
            toml::from_str(r#"user."userName" = 'Replace([userPrincipalName], "@example.test", "@example.com")'"#)
                .unwrap();
        let rewrite = Policy::compile("Rewrite", &config).unwrap();
        for (o, manager) in seeded() {
            let old = default_user(&o, manager);
            let new = map::user(&rewrite, &o, manager).unwrap();
            assert_eq!(new["userName"], "asmith@example.com");
            assert_eq!(changed_attributes(&old, &new), ["userName"]);
        }
    }

    /// `user_name` (the rename guard's) is the userName of the whole body, under Default and a
    /// policy that maps it otherwise, for users who have one and one who has none.
    #[test]
    fn user_name_is_the_bodys() {
        let rewrite: PolicyConfig =
            toml::from_str(r#"user."userName" = 'Replace([userPrincipalName], "@example.test", "@example.com")'"#)
                .unwrap();
        let mut none = alice();
        none.user_principal_name = Some("  ".into());
        let policies = [Policy::default_policy(), Policy::compile("Rewrite", &rewrite).unwrap()];
        for policy in &policies {
            for (o, manager) in seeded().into_iter().chain([(none.clone(), None)]) {
                let body = map::user(policy, &o, manager).unwrap();
                let sent = body.get("userName").filter(|v| !v.is_null());
                assert_eq!(map::user_name(policy, &o).unwrap().as_ref(), sent, "{} {}", policy.name, o.dn);
            }
        }
    }

    /// A body's layout, pinned as text (its hash is what the tenant was sent): name's
    /// sub-attributes in the schema's order whatever the mappings' order, typed entries in the
    /// order their types first appear (Default's `emails[work,primary]`, which the policy
    /// inherits, first), each with its values, then `type`, then `primary`.
    #[test]
    fn a_policys_body_has_a_fixed_layout() {
        let config: PolicyConfig = toml::from_str(
            r#"[user]
"name.familyName" = '"F"'
"name.givenName" = '"G"'
"emails[home]" = '"home@example.test"'
"emails[work,primary]" = '[mail]'
"emails[home].display" = '"Home"'
"phoneNumbers[mobile]" = '"+1 555"'
"phoneNumbers[mobile].display" = '"cell"'
"#,
        )
        .unwrap();
        let policy = Policy::compile("Layout", &config).unwrap();
        let body = map::user(&policy, &alice(), None).unwrap().to_string();
        let pinned = concat!(
            r#"{"externalId":"33221100-5544-7766-8899-aabbccddeeff","userName":"asmith@example.test","#,
            r#""name":{"givenName":"G","familyName":"F"},"displayName":"Alice Smith","#,
            r#""emails":[{"value":"alice.smith@example.test","type":"work","primary":true},"#,
            r#"{"value":"home@example.test","display":"Home","type":"home"}],"active":true,"#,
            r#""phoneNumbers":[{"value":"+1 555","display":"cell","type":"mobile"}],"#,
            r#""schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}"#
        );
        assert_eq!(body, pinned);
    }

    #[test]
    fn hash_changes_with_content_only() {
        let a = default_user(&alice(), None);
        assert_eq!(content_hash(&a), content_hash(&default_user(&alice(), None)));
        let mut b = alice();
        b.sn = Some("Jones".into());
        assert_ne!(content_hash(&a), content_hash(&default_user(&b, None)));
        // Pinned, so a release that changes hashing (and would rewrite every user) is noticed.
        assert_eq!(content_hash(&json!({"a": 1})), "9c3e82dd6fcae8b1");
    }

    #[test]
    fn json_len_is_the_length_of_the_text() {
        let body = json!({"name": "Zoë \"Z\" Ångström", "tab": "\t", "n": [1, 2.5, null, true], "e": {}});
        assert_eq!(json_len(&body), body.to_string().len());
        assert_eq!(json_len(&json!(null)), 4);
    }
}

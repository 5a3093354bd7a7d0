//! The tenant's `/Schemas` (RFC 7644 §4, RFC 7643 §7): which schemas and attributes it serves, so
//! that a policy mapping into a custom schema extension (`urn:…:attribute`) is checked against
//! the tenant before anything is read or written, instead of every user being refused one by one.
//! Pure: the client fetches ([`super::ScimClient::schemas`]), this reads and judges.

use serde_json::Value;

use crate::policy::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, Policy, Target, USER_SCHEMA};

/// The schemas a tenant lists: URN → its top-level attribute names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantSchemas {
    schemas: Vec<(String, Vec<String>)>,
}

impl TenantSchemas {
    /// Reads a `/Schemas` answer: a ListResponse (`Resources`), or the bare array some servers
    /// send. A schema without an `id` is skipped; one without `attributes` has none.
    pub fn parse(answer: &Value) -> Result<TenantSchemas, String> {
        let list = match answer {
            Value::Array(list) => list,
            Value::Object(map) => match map.get("Resources") {
                Some(Value::Array(list)) => list,
                None => &Vec::new(),
                Some(_) => return Err("/Schemas: Resources is not a list".into()),
            },
            _ => return Err("/Schemas is neither a ListResponse nor a list".into()),
        };
        let schemas = list
            .iter()
            .filter_map(|schema| {
                let id = schema.get("id")?.as_str()?.to_owned();
                let attributes = schema
                    .get("attributes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|a| a.get("name")?.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                Some((id, attributes))
            })
            .collect();
        Ok(TenantSchemas { schemas })
    }

    /// The attributes of schema `urn` (URNs and attribute names are case-insensitive, RFC 7643
    /// §2.1), or `None` when the tenant does not list it.
    pub fn attributes(&self, urn: &str) -> Option<&[String]> {
        self.schemas.iter().find(|(id, _)| id.eq_ignore_ascii_case(urn)).map(|(_, a)| a.as_slice())
    }

    pub fn ids(&self) -> Vec<&str> {
        self.schemas.iter().map(|(id, _)| id.as_str()).collect()
    }
}

/// A policy's mapping into a custom schema: its canonical target name, the schema URN, the
/// attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomTarget {
    pub mapping: String,
    pub schema: String,
    pub attribute: String,
}

/// The policy's targets in schemas other than core User/Group and the enterprise extension
/// (which every SCIM 2.0 tenant knows): what `/Schemas` must list.
pub fn custom_targets(policy: &Policy) -> Vec<CustomTarget> {
    policy
        .user_mappings()
        .iter()
        .filter_map(|m| match &m.target {
            Target::Extension { schema, attr }
                if ![USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_SCHEMA].iter().any(|s| s.eq_ignore_ascii_case(schema)) =>
            {
                Some(CustomTarget { mapping: m.target.name(), schema: schema.clone(), attribute: attr.clone() })
            }
            _ => None,
        })
        .collect()
}

/// Whether the tenant lists every custom schema and attribute `policy` maps to; the error names
/// the policy, the mapping and what is missing, with what the tenant does list.
pub fn check(policy: &Policy, schemas: &TenantSchemas) -> Result<(), String> {
    for target in custom_targets(policy) {
        let place = format!("policies.{}: user.\"{}\"", policy.name, target.mapping);
        match schemas.attributes(&target.schema) {
            None => {
                let listed = schemas.ids();
                let listed = if listed.is_empty() { "none".to_owned() } else { listed.join(", ") };
                return Err(format!(
                    "{place}: the tenant does not list the schema {} in /Schemas (it lists {listed})",
                    target.schema
                ));
            }
            Some(attributes) if !attributes.iter().any(|a| a.eq_ignore_ascii_case(&target.attribute)) => {
                return Err(format!(
                    "{place}: the tenant's schema {} has no attribute {:?} (it has {})",
                    target.schema,
                    target.attribute,
                    if attributes.is_empty() { "none".to_owned() } else { attributes.join(", ") }
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACME: &str = "urn:example:params:scim:schemas:extension:acme:2.0:User";

    fn policy(user: &[(&str, &str)]) -> Policy {
        let config = crate::policy::PolicyConfig {
            user: user.iter().map(|(t, s)| ((*t).to_owned(), (*s).to_owned())).collect(),
            ..Default::default()
        };
        Policy::compile("Acme", &config).unwrap()
    }

    fn listed() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 3,
            "Resources": [
                {"id": USER_SCHEMA, "attributes": [{"name": "userName"}, {"name": "title"}]},
                {"id": ENTERPRISE_SCHEMA, "attributes": [{"name": "department"}]},
                {"id": ACME.to_uppercase(), "attributes": [{"name": "Badge"}, {"name": "floor"}]},
                {"name": "no id: skipped"},
            ]
        })
    }

    #[test]
    fn only_custom_schemas_are_checked() {
        assert!(custom_targets(&Policy::default_policy()).is_empty());
        let p = policy(&[
            ("enterprise.costCenter", "[department]"),
            (&format!("{ENTERPRISE_SCHEMA}:division"), "[company]"),
            (&format!("{ACME}:badge"), "[employeeID]"),
        ]);
        let custom = custom_targets(&p);
        assert_eq!(
            custom,
            [CustomTarget { mapping: format!("{ACME}:badge"), schema: ACME.into(), attribute: "badge".into() }]
        );
        // The enterprise extension is never looked up, even where the tenant leaves it out.
        assert_eq!(
            check(&p, &TenantSchemas::parse(&json!([{"id": ACME, "attributes": [{"name": "badge"}]}])).unwrap()),
            Ok(())
        );
    }

    #[test]
    fn a_listed_schema_and_attribute_pass_case_insensitively() {
        let schemas = TenantSchemas::parse(&listed()).unwrap();
        assert_eq!(schemas.ids().len(), 3);
        assert_eq!(check(&policy(&[(&format!("{ACME}:badge"), "[employeeID]")]), &schemas), Ok(()));
        assert_eq!(check(&Policy::default_policy(), &TenantSchemas::default()), Ok(()));
    }

    #[test]
    fn a_missing_schema_or_attribute_names_the_policy_the_mapping_and_the_urn() {
        let schemas = TenantSchemas::parse(&listed()).unwrap();
        let e = check(&policy(&[(&format!("{ACME}:shoeSize"), "[x]")]), &schemas).unwrap_err();
        assert_eq!(
            e,
            format!(
                "policies.Acme: user.\"{ACME}:shoeSize\": the tenant's schema {ACME} has no attribute \"shoeSize\" (it has Badge, floor)"
            )
        );
        let other = "urn:example:params:scim:schemas:extension:other:2.0:User";
        let e = check(&policy(&[(&format!("{other}:x"), "[x]")]), &schemas).unwrap_err();
        assert!(
            e.starts_with(&format!("policies.Acme: user.\"{other}:x\": the tenant does not list the schema {other}")),
            "{e}"
        );
        assert!(e.ends_with(&format!("(it lists {USER_SCHEMA}, {ENTERPRISE_SCHEMA}, {})", ACME.to_uppercase())), "{e}");
        let empty = TenantSchemas::parse(&json!({"Resources": []})).unwrap();
        let e = check(&policy(&[(&format!("{other}:x"), "[x]")]), &empty).unwrap_err();
        assert!(e.ends_with("(it lists none)"), "{e}");
    }

    /// The README's example of the error is what [`check`] says.
    #[test]
    fn the_readme_shows_the_error_check_gives() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let section = readme.split("**Custom schemas are checked against the tenant.**").nth(1).unwrap();
        let shown = section.split("```text\n").nth(1).unwrap().split("\n```").next().unwrap();
        let urn = "urn:example:scim:schemas:extension:acme:2.0:User";
        let config = crate::policy::PolicyConfig {
            user: [(format!("{urn}:shoeSize"), "[company]".to_owned())].into(),
            ..Default::default()
        };
        let p = Policy::compile("Acme", &config).unwrap();
        let tenant = TenantSchemas::parse(&json!([{"id": urn, "attributes": [{"name": "badge"}]}])).unwrap();
        assert_eq!(check(&p, &tenant).unwrap_err(), shown);
    }

    #[test]
    fn answers_that_are_no_schema_list_are_refused() {
        assert!(TenantSchemas::parse(&json!("x")).is_err());
        assert!(TenantSchemas::parse(&json!({"Resources": {}})).is_err());
        assert_eq!(TenantSchemas::parse(&json!({})).unwrap(), TenantSchemas::default());
    }
}

//! The three worked policies in `examples/policies/` (issue 14 item 9): each loads into an
//! agent configuration exactly as an admin pastes it, compiles, and maps users built here to the
//! SCIM bodies (or scope verdicts) written out literally below. No DC, no SCIM server: the
//! mapping and scoping code is pure.

use std::collections::BTreeMap;

use ausi::directory::{DirObject, ObjectGuid};
use ausi::policy::{Policy, Target, map};
use ausi::sync::scope::PolicyScope;
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The placeholder objectGUID the contractors example names (and tells the admin to replace).
const PLACEHOLDER_GROUP: &str = "00000000-0000-0000-0000-000000000000";

fn example(file: &str) -> String {
    let path = format!("{}/examples/policies/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Pastes the example into an otherwise minimal agent.toml that makes it the active policy, and
/// loads that the way `ausi` loads its configuration (every policy compiled, the active one
/// resolved). The example must define exactly the one policy `name`.
fn load(file: &str, name: &str) -> Policy {
    let text = format!("version = 1\n[tenant]\nprovisioning_policy = \"{name}\"\n\n{}", example(file));
    let config = ausi::config::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(config.policies.keys().collect::<Vec<_>>(), [name], "{file} defines one policy");
    let policy = config.policy().unwrap();
    assert_eq!(policy.name, name);
    assert!(!policy.is_default());
    policy
}

/// A user as the directory delivers it: the fixed fields, and `extra` for the further
/// attributes a policy reads (lower-case names, as the readers store them).
fn user(guid: &str, upn: &str, given: &str, sn: &str, mail: Option<&str>, extra: &[(&str, &[&str])]) -> DirObject {
    DirObject {
        guid: Some(ObjectGuid::parse(guid).unwrap()),
        sam_account_name: Some(given.to_lowercase()),
        user_principal_name: Some(upn.to_owned()),
        given_name: Some(given.to_owned()),
        sn: Some(sn.to_owned()),
        mail: mail.map(str::to_owned),
        user_account_control: Some(512),
        extra: extra.iter().map(|(k, v)| (k, v.iter())).collect(),
        ..DirObject::default()
    }
}

/// Compares as text, so that the order of the members (the content hash's input) counts too.
#[track_caller]
fn assert_body(got: &Value, want: Value) {
    assert_eq!(serde_json::to_string_pretty(got).unwrap(), serde_json::to_string_pretty(&want).unwrap());
}

fn required(policy: &Policy) -> Vec<String> {
    policy.required.iter().map(Target::name).collect()
}

#[test]
fn upn_suffix_rewrite() {
    let p = load("upn-suffix-rewrite.toml", "UpnSuffixRewrite");
    assert_eq!(required(&p), ["userName", "name.givenName", "name.familyName", "emails[work,primary]"]);
    assert_eq!(ausi::directory::extra_attributes(&p.attributes()), Vec::<String>::new(), "reads nothing new");

    let mut ann = user(
        "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d01",
        "ann.lee@corp.local",
        "Ann",
        "Lee",
        Some("ann.lee@example.com"),
        &[],
    );
    ann.title = Some("Buyer".into());
    ann.telephone_number = Some("+1 555 0100".into());
    ann.department = Some("Sales".into());
    assert_body(
        &map::user(&p, &ann, Some("scim-id-of-the-manager")).unwrap(),
        json!({
            "externalId": "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d01",
            "userName": "ann.lee@example.com",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "displayName": "Ann Lee",
            "emails": [{"value": "ann.lee@example.com", "type": "work", "primary": true}],
            "active": true,
            "title": "Buyer",
            "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
            ENTERPRISE: {"department": "Sales", "manager": {"value": "scim-id-of-the-manager"}},
            "schemas": [USER, ENTERPRISE],
        }),
    );

    // The suffix in another case is the same suffix; a UPN of another suffix, or one where
    // `corp.local` is not the suffix, is sent as it is.
    for (upn, user_name) in [
        ("BOB@CORP.LOCAL", "BOB@example.com"),
        ("cy@Corp.Local", "cy@example.com"),
        ("dee@example.com", "dee@example.com"),
        ("eve@corp.local.example.net", "eve@corp.local.example.net"),
    ] {
        let mut u = user("6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d02", upn, "Bob", "Ray", Some("b@example.com"), &[]);
        u.user_account_control = Some(514);
        assert_body(
            &map::user(&p, &u, None).unwrap(),
            json!({
                "externalId": "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d02",
                "userName": user_name,
                "name": {"givenName": "Bob", "familyName": "Ray"},
                "displayName": "Bob Ray",
                "emails": [{"value": "b@example.com", "type": "work", "primary": true}],
                "active": false,
                "schemas": [USER],
            }),
        );
    }
}

#[test]
fn mail_from_proxy_addresses() {
    let p = load("mail-from-proxyaddresses.toml", "MailFromProxyAddresses");
    assert_eq!(required(&p), ["userName", "name.givenName", "name.familyName", "emails[work,primary]"]);
    assert_eq!(
        ausi::directory::extra_attributes(&p.attributes()),
        ["extensionattribute1", "proxyaddresses"],
        "the directory reads the two attributes Default does not"
    );

    // The primary SMTP address wins over `mail`; secondary and X500 addresses are ignored.
    let mut anna = user(
        "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d11",
        "anna@corp.example",
        "Anna",
        "Berg",
        Some("anna.old@example.com"),
        &[
            ("proxyaddresses", &["smtp:anna@old.example", "SMTP:anna.berg@example.com", "X500:/o=Org/cn=anna"]),
            ("extensionattribute1", &["CC-4711"]),
        ],
    );
    anna.department = Some("Sales".into());
    anna.employee_number = Some("0042".into());
    assert_body(
        &map::user(&p, &anna, None).unwrap(),
        json!({
            "externalId": "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d11",
            "userName": "anna@corp.example",
            "name": {"givenName": "Anna", "familyName": "Berg"},
            "displayName": "Anna Berg",
            "emails": [{"value": "anna.berg@example.com", "type": "work", "primary": true}],
            "active": true,
            ENTERPRISE: {"employeeNumber": "0042", "costCenter": "CC-4711", "department": "Sales"},
            "schemas": [USER, ENTERPRISE],
        }),
    );

    // No primary SMTP address (only a secondary one): `mail`. No cost centre: none sent.
    let mut ben = user(
        "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d12",
        "ben@corp.example",
        "Ben",
        "Cole",
        Some("ben@example.com"),
        &[("proxyaddresses", &["smtp:ben@old.example"])],
    );
    ben.department = Some("Finance".into());
    assert_body(
        &map::user(&p, &ben, None).unwrap(),
        json!({
            "externalId": "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d12",
            "userName": "ben@corp.example",
            "name": {"givenName": "Ben", "familyName": "Cole"},
            "displayName": "Ben Cole",
            "emails": [{"value": "ben@example.com", "type": "work", "primary": true}],
            "active": true,
            ENTERPRISE: {"department": "Finance"},
            "schemas": [USER, ENTERPRISE],
        }),
    );

    // Neither: no email is sent (and `emails[work,primary]` stays required, so the rules
    // quarantine the user as mapped.required); a cost centre without a department is sent alone.
    let cara = user(
        "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d13",
        "cara@corp.example",
        "Cara",
        "Dunn",
        None,
        &[("extensionattribute1", &["CC-0815"])],
    );
    assert_body(
        &map::user(&p, &cara, None).unwrap(),
        json!({
            "externalId": "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d13",
            "userName": "cara@corp.example",
            "name": {"givenName": "Cara", "familyName": "Dunn"},
            "displayName": "Cara Dunn",
            "active": true,
            ENTERPRISE: {"costCenter": "CC-0815"},
            "schemas": [USER, ENTERPRISE],
        }),
    );

    // Two primary addresses are bad data: the user fails to map (quarantined), not guessed.
    let dan = user(
        "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d14",
        "dan@corp.example",
        "Dan",
        "Eck",
        Some("dan@example.com"),
        &[("proxyaddresses", &["SMTP:dan@example.com", "SMTP:dan@other.example"])],
    );
    let e = map::user(&p, &dan, None).unwrap_err();
    assert_eq!(e.target, "emails[work,primary]", "{e}");
}

/// The attributes a scope condition reads, as a map (the same trait the engine passes).
fn attrs(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect())).collect()
}

#[test]
fn contractors_out_one_group_flattened() {
    let p = load("contractors-out-one-group-flattened.toml", "StaffOnlyFlattened");
    assert_eq!(p.scope.groups.iter().map(ToString::to_string).collect::<Vec<_>>(), [PLACEHOLDER_GROUP]);
    assert!(p.scope.transitive, "members through nested groups count");
    assert_eq!(p.groups.members, ausi::policy::scoping::MemberMode::Flattened);
    assert!(PolicyScope::of(&p).flattened(), "the engine sends groups flattened");
    assert!(p.groups.only.is_empty() && p.groups.filter.is_none(), "every group in the OUs syncs");
    assert_eq!(ausi::directory::extra_attributes(&p.attributes()), ["employeetype"]);

    // Who is a member of the scoping group (directly or through a nested group) is the
    // engine's to compute from the mirror; here it is given, per user.
    let verdict = |a: &BTreeMap<String, Vec<String>>, member: bool| {
        p.scope.exclusion(a, &|| member).map(|e| (e.rule(), e.to_string()))
    };
    let employee = attrs(&[("employeetype", &["Employee"])]);
    let contractor = attrs(&[("employeetype", &["contractor"])]);
    let unset = attrs(&[]);
    assert_eq!(verdict(&employee, true), None, "an employee in the group is in scope");
    assert_eq!(verdict(&unset, true), None, "no employeeType is not a contractor");
    let condition = Some(("condition", r#"fails scope condition 1: employeetype not_equals "Contractor""#.to_owned()));
    assert_eq!(verdict(&contractor, true), condition, "a contractor is out, in the group or not (any case)");
    assert_eq!(verdict(&contractor, false), condition, "the condition is named first");
    let group = Some(("group", format!("not a direct or nested member of any scoping group ({PLACEHOLDER_GROUP})")));
    assert_eq!(verdict(&employee, false), group, "a non-member is out by the group rule");
    assert_eq!(verdict(&unset, false), group);

    // The policy maps users as Default does: the same body, byte for byte, for a full user.
    let mut u = user(
        "6f1c2a4e-6b1d-4c55-9d0e-6f6a1b2c3d21",
        "fay@corp.example",
        "Fay",
        "Gold",
        Some("fay@example.com"),
        &[("employeetype", &["Employee"])],
    );
    u.display_name = Some("Fay Gold (Sales)".into());
    u.title = Some("Buyer".into());
    u.telephone_number = Some("+1 555 0101".into());
    u.employee_number = Some("7".into());
    u.department = Some("Sales".into());
    assert_body(&map::user(&p, &u, Some("m-1")).unwrap(), map::default_user(&u, Some("m-1")));
}

/// The README's "Provisioning policies" section links each example, and each link resolves.
#[test]
fn the_readme_links_the_examples() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("## Provisioning policies").nth(1).unwrap().split("\n## ").next().unwrap();
    for file in ["upn-suffix-rewrite.toml", "mail-from-proxyaddresses.toml", "contractors-out-one-group-flattened.toml"]
    {
        assert!(section.contains(&format!("](examples/policies/{file})")), "README lacks a link to {file}");
        assert!(!example(file).is_empty());
    }
}

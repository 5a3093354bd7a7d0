//! The directory reads exactly the attributes the active policy needs (and the structural ones
//! ausi itself needs), on the testbed's Samba AD DC: what a search under a policy mapping from
//! `department` only brings back, and a policy needing a new attribute getting it on the next
//! run (the watermark's policy fingerprint forces the full re-read). Runs under `scripts/test`.

mod common;

use std::collections::BTreeMap;

use ausi::directory::{AnyDirectory, DirObject, Directory, ObjectKind, ObjectQuery, ReadAttributes};
use ausi::tenant::ResourceKind;
use common::report::mode;
use common::testbed::{Sandbox, Testbed, dn, testbed};
use serde_json::Value;

/// A policy that keeps only userName from Default and maps department.
const DEPT: &str = r#"
[policies.Dept.user]
"name.givenName" = ""
"name.familyName" = ""
"displayName" = ""
"emails[work,primary]" = ""
"title" = ""
"phoneNumbers[work]" = ""
"enterprise.employeeNumber" = ""
"active" = ""

[policies.DeptMore.user]
"name.givenName" = ""
"name.familyName" = ""
"displayName" = ""
"emails[work,primary]" = ""
"phoneNumbers[work]" = ""
"enterprise.employeeNumber" = ""
"active" = ""
"enterprise.organization" = '[company]'
"#;

/// `OU=Attr<tag>` with three users holding every attribute Default maps, and `company`.
/// Returns the OU and, per sAMAccountName, (department, title, company).
fn seed(tb: &Testbed, tag: &str) -> (String, BTreeMap<String, (String, String, String)>) {
    let ou = format!("OU=Attr{tag},DC=example,DC=test");
    let mut ldif = format!("dn: {ou}\nchangetype: add\nobjectClass: organizationalUnit\nou: Attr{tag}\n\n");
    let mut users = BTreeMap::new();
    for i in 0..3 {
        let sam = format!("at{i}x{tag}");
        let (department, title, company) = (format!("Dept {i}"), format!("Title {i}"), format!("Company {i}"));
        ldif.push_str(&format!(
            "dn: CN=At{i} {tag},{ou}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {sam}@example.test\ngivenName: At{i}\nsn: Attr\ndisplayName: At{i} Attr\nmail: {sam}@example.test\ntitle: {title}\ntelephoneNumber: +1 555 010{i}\nemployeeNumber: E{i}\ndepartment: {department}\ncompany: {company}\nuserAccountControl: 544\n\n"
        ));
        users.insert(sam, (department, title, company));
    }
    tb.ldap_modify(&ldif);
    (ou, users)
}

fn tag() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}{:03}", std::process::id() % 10_000, (nanos / 1000) % 1000)
}

/// The users under `base`, read from the DC asking for `attributes`.
fn read_users(tb: &Testbed, base: &str, attributes: ReadAttributes) -> Vec<DirObject> {
    use ausi::directory::ldap::{Bind, LdapDirectory, LdapSettings};
    use ausi::secrets::SecretString;
    let settings = LdapSettings {
        url: tb.ldaps.clone(),
        starttls: false,
        bind: Bind::Simple { account: tb.bind_dn.clone(), password: SecretString::from(tb.password()) },
        ca_file: Some(tb.ca.clone().into()),
        tls_verify: true,
        allow_plaintext_bind: false,
        connect_timeout: std::time::Duration::from_secs(10),
        operation_timeout: std::time::Duration::from_secs(60),
        page_size: 300,
        base_dn: None,
        range_step: 1500,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut d = AnyDirectory::Ldap(Box::new(LdapDirectory::connect(settings).await.unwrap()));
        d.read_attributes(attributes);
        let mut users = Vec::new();
        d.objects(&dn(base), ObjectQuery::SYNC, &mut |o| users.push(o), &|_| {}).await.unwrap();
        users
    })
}

fn policy(name: &str) -> ausi::policy::Policy {
    let text = format!("version = 1\n[tenant]\nprovisioning_policy = \"{name}\"\n{DEPT}");
    ausi::config::parse(&text).unwrap().policy().unwrap()
}

/// The DC sends what was asked and nothing else (the LDAP decoder keeps whatever comes): under
/// the department-only policy, no name, mail, title, phone or employee number reaches ausi;
/// the structural attributes do. Under Default, everything does.
#[test]
fn a_policy_reading_only_department_gets_only_that_from_the_dc() {
    let Some(tb) = testbed() else { return };
    let (ou, seeded) = seed(&tb, &tag());
    let _sandbox = Sandbox { tb: &tb, root: ou.clone() };
    let dept = policy("Dept");
    let attributes = ReadAttributes::for_policy(&dept.attributes());
    assert!(!attributes.whole_table());
    let users = read_users(&tb, &ou, attributes);
    assert_eq!(users.len(), seeded.len());
    for u in &users {
        assert_eq!(u.kind, ObjectKind::User);
        let sam = u.sam_account_name.clone().expect("structural: sAMAccountName");
        assert_eq!(u.department.as_deref(), Some(seeded[&sam].0.as_str()), "{sam}");
        assert_eq!(u.user_principal_name.as_deref(), Some(format!("{sam}@example.test").as_str()));
        assert!(u.guid.is_some() && u.user_account_control == Some(544), "{u:?}");
        assert_eq!(u.cn.as_deref().map(|c| c.starts_with("At")), Some(true), "structural: cn");
        let unasked =
            [&u.given_name, &u.sn, &u.display_name, &u.mail, &u.title, &u.telephone_number, &u.employee_number];
        assert!(unasked.iter().all(|v| v.is_none()), "the DC sent what was not asked for: {u:?}");
        assert!(u.extra.is_empty(), "{u:?}");
    }
    let all = read_users(&tb, &ou, ReadAttributes::for_policy(&policy("DeptMore").attributes()));
    for u in &all {
        let sam = u.sam_account_name.clone().unwrap();
        assert_eq!(u.title.as_deref(), Some(seeded[&sam].1.as_str()));
        assert_eq!(u.values("company"), [seeded[&sam].2.clone()]);
        assert!(u.given_name.is_none(), "{u:?}");
    }
    let default = read_users(&tb, &ou, ReadAttributes::default());
    assert!(default.iter().all(|u| u.given_name.is_some() && u.mail.is_some() && u.employee_number.is_some()));
}

fn by_user_name(users: Vec<Value>) -> BTreeMap<String, Value> {
    users.into_iter().map(|u| (u["userName"].as_str().unwrap().split('@').next().unwrap().to_lowercase(), u)).collect()
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Synced under the department-only policy, the mirror holds no title or company; switched to a
/// policy mapping both, the next run (which would be a delta with nothing changed in AD) re-reads
/// everything and sends them; the run after writes nothing.
#[test]
fn a_policy_needing_a_new_attribute_gets_it_on_the_next_run() {
    let Some(tb) = testbed() else { return };
    let (ou, seeded) = seed(&tb, &tag());
    let _sandbox = Sandbox { tb: &tb, root: ou.clone() };
    let agent = tb.agent(&[&ou], DEPT);
    let text = std::fs::read_to_string(&agent.config).unwrap();
    let switch = |to: &str| {
        let text = std::fs::read_to_string(&agent.config).unwrap();
        let from = text.split("provisioning_policy = \"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        std::fs::write(
            &agent.config,
            text.replace(&format!("provisioning_policy = \"{from}\""), &format!("provisioning_policy = \"{to}\"")),
        )
        .unwrap();
    };
    assert!(text.contains("provisioning_policy = \"Default\""), "{text}");
    switch("Dept");
    let (code, report) = agent.sync(&["--full"]);
    assert_eq!(code, 0, "{report}");
    let users = by_user_name(agent.tenant(ResourceKind::User));
    assert_eq!(users.keys().cloned().collect::<Vec<_>>(), seeded.keys().cloned().collect::<Vec<_>>());
    for (sam, u) in &users {
        assert_eq!(u[ENTERPRISE]["department"], seeded[sam].0.as_str(), "{u}");
        assert!(u.get("title").is_none() && u.get("name").is_none() && u.get("emails").is_none(), "{u}");
    }
    let (code, report) = agent.sync(&[]);
    assert_eq!((code, mode(&report)), (0, "delta"), "{report}");
    assert_eq!(report["data"]["write_requests"], 0, "{report}");

    switch("DeptMore");
    let (code, report) = agent.sync(&[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["data"]["fallback"]["code"], "policy-changed", "{report}");
    let users = by_user_name(agent.tenant(ResourceKind::User));
    assert_eq!(users.len(), seeded.len());
    for (sam, u) in &users {
        let (department, title, company) = &seeded[sam];
        assert_eq!(u["title"], title.as_str(), "{u}");
        assert_eq!(u[ENTERPRISE]["organization"], company.as_str(), "{u}");
        assert_eq!(u[ENTERPRISE]["department"], department.as_str(), "{u}");
    }
    let (code, report) = agent.sync(&[]);
    assert_eq!((code, mode(&report)), (0, "delta"), "{report}");
    assert_eq!(report["data"]["write_requests"], 0, "{report}");
}

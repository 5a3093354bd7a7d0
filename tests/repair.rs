//! A full sync repairs the tenant: what was deleted, edited or unlinked there in what ausi owns
//! comes back; what ausi does not own is left alone; and every run, a no-op one too, makes an
//! authenticated request, so a revoked token is exit 77. Against the testbed's Samba AD DC and
//! scim2-server (`scripts/testbed up`, then source its env.sh); skipped without them.

#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use ausi::tenant::{ResourceKind, ScimClient, scim};
use common::report::{count, excerpt, writes};
use common::testbed::{Sandbox, testbed};
use serde_json::{Value, json};

/// The agent's tenant, spoken to directly (as an administrator editing it in a console would).
struct Tenant {
    client: ScimClient,
    runtime: tokio::runtime::Runtime,
}

impl Tenant {
    fn new(scim: &str, token_file: &str) -> Tenant {
        let token = std::fs::read_to_string(token_file).unwrap().trim().to_owned();
        let client = ScimClient::new(scim, ausi::secrets::SecretString::from(token), Default::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Tenant { client, runtime }
    }

    fn all(&self, kind: ResourceKind) -> Vec<Value> {
        self.runtime.block_on(self.client.list_all(kind, 500)).unwrap()
    }

    fn by_external_id(&self, kind: ResourceKind, guid: &str) -> Option<Value> {
        self.all(kind).into_iter().find(|r| r["externalId"] == guid)
    }

    fn by(&self, kind: ResourceKind, field: &str, value: &str) -> Value {
        self.all(kind)
            .into_iter()
            .find(|r| r[field].as_str().is_some_and(|v| v.eq_ignore_ascii_case(value)))
            .unwrap_or_else(|| panic!("no {kind:?} with {field} {value} in the tenant"))
    }

    fn delete(&self, kind: ResourceKind, id: &str) {
        self.runtime.block_on(self.client.delete(kind, id)).unwrap();
    }

    fn patch(&self, kind: ResourceKind, id: &str, ops: &[Value]) {
        self.runtime.block_on(self.client.patch(kind, id, ops)).unwrap();
    }

    fn create(&self, kind: ResourceKind, body: &Value) -> Value {
        self.runtime.block_on(self.client.create(kind, body)).unwrap()
    }
}

fn member_ids(group: &Value) -> BTreeSet<String> {
    group["members"]
        .as_array()
        .map(|ms| ms.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The repairs a plan lists, as (dn's first RDN, drift, attributes or members).
fn repairs(report: &Value) -> BTreeSet<(String, String, Vec<String>)> {
    report["data"]["plan"]["repairs"]
        .as_array()
        .unwrap_or_else(|| panic!("no plan.repairs in {}", excerpt(report)))
        .iter()
        .map(|r| {
            let rdn = r["dn"].as_str().unwrap().split(',').next().unwrap().to_owned();
            let what: Vec<String> = r["attributes"]
                .as_array()
                .or(r["members"].as_array())
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            (rdn, r["drift"].as_str().unwrap().to_owned(), what)
        })
        .collect()
}

fn repaired(report: &Value) -> [u64; 3] {
    [count(report, "repaired_users"), count(report, "repaired_groups"), count(report, "repaired_memberships")]
}

#[test]
fn a_full_sync_repairs_what_was_deleted_edited_or_unlinked_in_the_tenant() {
    let Some(tb) = testbed() else { return };
    let pid = std::process::id();
    let name = format!("Repair{pid}");
    let ou = format!("OU={name},{}", tb.base);
    let _sandbox = Sandbox { tb: &tb, root: ou.clone() };
    let user = |i: u32| format!("CN=Repair User{i},{ou}");
    let upn = |i: u32| format!("repair{i}x{}@example.test", pid % 100_000);
    let mut ldif = format!("dn: {ou}\nchangetype: add\nobjectClass: organizationalUnit\nou: {name}\n\n");
    for i in 0..4 {
        ldif.push_str(&format!(
            "dn: {}\nchangetype: add\nobjectClass: user\nsAMAccountName: rep{i}x{}\nuserPrincipalName: {}\ngivenName: Repair{i}\nsn: User\nmail: {}\ntitle: Tester\nuserAccountControl: 544\n\n",
            user(i),
            pid % 100_000,
            upn(i),
            upn(i)
        ));
    }
    for (g, members) in [(0, vec![0, 1]), (1, vec![2])] {
        ldif.push_str(&format!(
            "dn: CN=Repair Group{g},{ou}\nchangetype: add\nobjectClass: group\nsAMAccountName: repgrp{g}x{pid}\n"
        ));
        for m in members {
            ldif.push_str(&format!("member: {}\n", user(m)));
        }
        ldif.push('\n');
    }
    tb.ldap_modify(&ldif);

    let agent = tb.agent(&[&ou], "");
    let (code, first) = agent.sync(&["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&first));
    assert_eq!((count(&first, "created"), count(&first, "repaired_users")), (6, 0), "{}", excerpt(&first));
    let tenant = Tenant::new(&agent.scim, &tb.scim_token_file);

    // An administrator edits the tenant: deletes a user and a group, renames a user, removes a
    // member; and adds what ausi does not own: a user without externalId, a member of a group.
    let u0 = tenant.by(ResourceKind::User, "userName", &upn(0));
    let u1 = tenant.by(ResourceKind::User, "userName", &upn(1));
    let u2 = tenant.by(ResourceKind::User, "userName", &upn(2));
    let u3 = tenant.by(ResourceKind::User, "userName", &upn(3));
    let g0 = tenant.by(ResourceKind::Group, "displayName", "Repair Group0");
    let g1 = tenant.by(ResourceKind::Group, "displayName", "Repair Group1");
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    tenant.delete(ResourceKind::User, &id(&u3));
    tenant.delete(ResourceKind::Group, &id(&g1));
    tenant.patch(ResourceKind::User, &id(&u0), &[scim::patch_replace("name.familyName", json!("Edited"))]);
    tenant.patch(ResourceKind::Group, &id(&g0), &[scim::patch_remove_member(&id(&u1))]);
    let stranger = tenant.create(
        ResourceKind::User,
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("stranger{pid}@example.test"),
                "name": {"givenName": "Not", "familyName": "Ours"}}),
    );
    tenant.patch(ResourceKind::Group, &id(&g0), &[scim::patch_add_members(&[id(&stranger)])]);
    assert_eq!(
        member_ids(&tenant.by(ResourceKind::Group, "displayName", "Repair Group0")),
        [id(&u0), id(&stranger)].into()
    );

    let want = BTreeSet::from([
        ("CN=Repair User3".to_owned(), "missing".to_owned(), vec![]),
        ("CN=Repair Group1".to_owned(), "missing".to_owned(), vec![]),
        ("CN=Repair User0".to_owned(), "attributes".to_owned(), vec!["name.familyName".to_owned()]),
        ("CN=Repair Group0".to_owned(), "members".to_owned(), vec![u1["externalId"].as_str().unwrap().to_owned()]),
    ]);

    // The dry run shows the four repairs and writes nothing.
    let before = (tenant.all(ResourceKind::User), tenant.all(ResourceKind::Group));
    let (code, dry) = agent.sync(&["--full", "--dry-run"]);
    assert_eq!(code, 0, "{}", excerpt(&dry));
    assert_eq!(writes(&dry), 0);
    assert_eq!(repairs(&dry), want, "{}", excerpt(&dry));
    assert_eq!(repaired(&dry), [2, 1, 1], "{}", excerpt(&dry));
    assert_eq!((tenant.all(ResourceKind::User), tenant.all(ResourceKind::Group)), before, "a dry run writes nothing");

    // The real run repairs all four, and reports them and the stranger.
    let (code, fixed) = agent.sync(&["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&fixed));
    assert_eq!(repairs(&fixed), want, "{}", excerpt(&fixed));
    assert_eq!(repaired(&fixed), [2, 1, 1], "{}", excerpt(&fixed));
    assert_eq!((count(&fixed, "created"), count(&fixed, "updated"), count(&fixed, "failed")), (0, 0, 0));
    // POST user + PUT user (one /Bulk, or two requests), POST group (members inline), PATCH group.
    assert!((3..=4).contains(&writes(&fixed)), "{}", excerpt(&fixed));
    let seen = &fixed["data"]["tenant"];
    assert_eq!(seen["unknown"]["users"], 1, "{}", excerpt(&fixed));
    assert_eq!(seen["unknown"]["listed"][0]["id"], id(&stranger).as_str());
    assert_eq!(seen["complete"], true);

    let u3_again = tenant.by_external_id(ResourceKind::User, u3["externalId"].as_str().unwrap()).expect("u3 recreated");
    assert_eq!(u3_again["userName"].as_str().map(str::to_lowercase), Some(upn(3)));
    assert_eq!(tenant.by(ResourceKind::User, "userName", &upn(0))["name"]["familyName"], "User", "name reverted");
    let g1_again =
        tenant.by_external_id(ResourceKind::Group, g1["externalId"].as_str().unwrap()).expect("g1 recreated");
    assert_eq!(member_ids(&g1_again), [id(&u2)].into(), "the recreated group has its member");
    let g0_now = tenant.by(ResourceKind::Group, "displayName", "Repair Group0");
    assert_eq!(member_ids(&g0_now), [id(&u0), id(&u1), id(&stranger)].into(), "restored, the stranger left alone");
    let stranger_now = tenant.by(ResourceKind::User, "id", &id(&stranger));
    assert!(stranger_now.get("externalId").is_none_or(Value::is_null), "the stranger is untouched: {stranger_now}");

    // The state follows the tenant: the next full sync has nothing to write.
    let (code, quiet) = agent.sync(&["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&quiet));
    assert_eq!(writes(&quiet), 0, "{}", excerpt(&quiet));
    assert_eq!(repaired(&quiet), [0, 0, 0]);
    assert_eq!(count(&quiet, "unchanged"), 6);

    // A revoked token: a no-op run, delta or full, dry or not, is exit 77 at once.
    let wrong = agent.dir.path().join("revoked.token");
    std::fs::write(&wrong, "not-the-token-anymore\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&agent.config).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc["tenant"]["token"] = toml_edit::value(format!("file:{}", wrong.display()));
    std::fs::write(&agent.config, doc.to_string()).unwrap();
    for args in [&[][..], &["--full"][..], &["--dry-run"][..]] {
        let mut full = vec!["--config", agent.cfg(), "sync"];
        full.extend(args);
        let r = common::run(common::ausi().args(&full).args(["--output", "json"]));
        let v = r.json();
        assert_eq!(r.code, 77, "sync {args:?} with a revoked token: {}", excerpt(&v));
        assert!(v["error"]["message"].as_str().unwrap().contains("refused the token"), "{}", excerpt(&v));
        assert!(!r.stdout.contains("not-the-token") && !r.stderr.contains("not-the-token"), "the token leaked");
    }
}

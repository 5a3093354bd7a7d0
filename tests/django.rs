//! ausi against the second SCIM server of the testbed, django-scim2 (tests/common/django.rs).
//! Runs under `scripts/test`.

mod common;

use common::django::Django;
use common::testbed::testbed;

#[test]
fn register_records_what_django_scim2_announces() {
    let Some(tb) = testbed() else { return };
    let Some(django) = Django::start() else { return };
    let agent = tb.agent_on(&django.base, &django.scim_url(), &django.token(), &[], "");
    let config = std::fs::read_to_string(&agent.config).unwrap();
    assert!(config.contains("bulk = false"), "{config}");
    assert!(config.contains("filter = false"), "{config}");
    assert!(!config.contains(&django.token()), "the token is stored by reference");
    assert!(!config.contains("filter_probed"), "not announced, not tried: {config}");
}

/// django-scim2 answers an `externalId` filter it cannot evaluate with 200 and no resource:
/// the probe tells that from a working filter (and cleans up after itself).
#[test]
fn the_filter_probe_catches_filters_that_django_scim2_silently_ignores() {
    let Some(django) = Django::start() else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = ausi::tenant::ScimClient::new(
        &django.scim_url(),
        ausi::secrets::SecretString::from(django.token()),
        Default::default(),
    )
    .unwrap();
    let probe = runtime.block_on(client.probe_filters()).unwrap();
    assert!(!probe.works && probe.wrote, "{probe:?}");
    assert!(probe.how.contains("externalId") && probe.how.contains("0 resources"), "{probe:?}");
    let users = runtime.block_on(client.list_all(ResourceKind::User, 50)).unwrap();
    assert!(users.is_empty(), "the probe user is gone: {users:?}");
}

use std::collections::{BTreeMap, BTreeSet};

use ausi::tenant::ResourceKind;
use common::testbed::{Agent, Sandbox, Testbed};
use serde_json::Value;

/// A sandbox OU with `users` users (`dj{i}x{tag}`, displayName "User, Dj{i}", which
/// django-scim2 rebuilds as "Dj{i} User") and groups of them, on the DC.
fn seed(tb: &Testbed, tag: &str, users: usize, groups: &[(&str, &[usize])]) -> (String, Vec<String>) {
    let ou = format!("OU=Dj{tag},DC=example,DC=test");
    let mut ldif = format!("dn: {ou}\nchangetype: add\nobjectClass: organizationalUnit\nou: Dj{tag}\n\n");
    let dns: Vec<String> = (0..users).map(|i| format!("CN=Dj User{i},{ou}")).collect();
    for (i, dn) in dns.iter().enumerate() {
        ldif.push_str(&format!(
            "dn: {dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: dj{i}x{tag}\nuserPrincipalName: dj{i}x{tag}@example.test\ngivenName: Dj{i}\nsn: User\ndisplayName: User, Dj{i}\nmail: dj{i}x{tag}@example.test\nuserAccountControl: 544\n\n"
        ));
    }
    for (name, members) in groups {
        ldif.push_str(&format!(
            "dn: CN={name},{ou}\nchangetype: add\nobjectClass: group\nsAMAccountName: {name}x{tag}\n"
        ));
        for m in *members {
            ldif.push_str(&format!("member: {}\n", dns[*m]));
        }
        ldif.push('\n');
    }
    tb.ldap_modify(&ldif);
    (ou, dns)
}

/// Deletes entries a test moved out of its sandbox, when the test ends.
struct Moved<'a>(&'a Testbed, Vec<String>);

impl Drop for Moved<'_> {
    fn drop(&mut self) {
        let tb = self.0;
        let _ = std::process::Command::new("ldapdelete")
            .env("LDAPTLS_CACERT", &tb.ca)
            .args(["-x", "-H", &tb.ldaps, "-D", &tb.admin_dn, "-y", &tb.admin_pw_file])
            .args(&self.1)
            .output();
    }
}

/// userName (lower case) → user, and group displayName → member userNames, as the tenant holds them.
fn tenant_state(agent: &Agent) -> (BTreeMap<String, Value>, BTreeMap<String, BTreeSet<String>>) {
    let users: BTreeMap<String, Value> = agent
        .tenant(ResourceKind::User)
        .into_iter()
        .map(|u| (u["userName"].as_str().unwrap().to_lowercase(), u))
        .collect();
    let name_of: BTreeMap<String, String> = users
        .values()
        .map(|u| (u["id"].as_str().unwrap().to_owned(), u["userName"].as_str().unwrap().to_lowercase()))
        .collect();
    let mut groups = BTreeMap::new();
    for g in agent.tenant(ResourceKind::Group) {
        let members = g["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let id = m["value"].as_str().unwrap();
                        name_of.get(id).cloned().unwrap_or_else(|| format!("unknown:{id}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let name = g["displayName"].as_str().unwrap().to_owned();
        assert!(groups.insert(name.clone(), members).is_none(), "group {name} twice in the tenant");
    }
    (users, groups)
}

fn upn(i: usize, tag: &str) -> String {
    format!("dj{i}x{tag}@example.test")
}

/// The sync scenarios against django-scim2, which refuses `members[value eq]` (501), drops
/// members in POST/PUT /Groups and cannot filter: every run exits 0 or 1 (never 75), the user
/// that left the scope is deactivated, every group holds exactly its members, and the last run
/// writes nothing; after the state is lost, a full sync adopts everything without a duplicate.
#[test]
fn django_scim2_full_sync_changes_removals_quiet_runs_and_adoption() {
    let Some(tb) = testbed() else { return };
    let Some(django) = Django::start() else { return };
    let tag = format!("{}", std::process::id() % 100000);
    scenarios(&tb, &tag, true, &|ous, extra| {
        tb.agent_on(&django.base, &django.scim_url(), &django.token(), ous, extra)
    });
}

/// The same scenarios against the testbed's scim2-server (RFC-conformant: filters, `/Bulk`,
/// the bracket form of member removal).
#[test]
fn scim2_server_full_sync_changes_removals_quiet_runs_and_adoption() {
    let Some(tb) = testbed() else { return };
    let tag = format!("s{}", std::process::id() % 100000);
    scenarios(&tb, &tag, false, &|ous, extra| tb.agent(ous, extra));
}

/// First full sync, a change set with a member removal and addition and a user moved out of
/// scope, two more full syncs (the last writes nothing), then the state lost and adopted.
fn scenarios(tb: &Testbed, tag: &str, drops_members: bool, register: &dyn Fn(&[&str], &str) -> Agent) {
    let tag = tag.to_owned();
    let (ou, dns) = seed(tb, &tag, 5, &[("Dj Alpha", &[0, 1, 2]), ("Dj Beta", &[3])]);
    let _sandbox = Sandbox { tb, root: ou.clone() };
    let agent = register(&[&ou], "[sync]\nmax_deletion_percent = 100");
    let ok = |code: i32, report: &Value| {
        assert!(code == 0 || code == 1, "exit {code} (never 75): {}", report["error"]);
    };

    let (code, first) = agent.sync(&["--full"]);
    ok(code, &first);
    assert!(first["data"]["failures"].as_array().unwrap().is_empty(), "{}", first["data"]["failures"]);
    let dropped_members = first["warnings"].as_array().unwrap().iter().any(|w| w["code"] == "tenant-dropped-members");
    assert_eq!(dropped_members, drops_members, "{}", first["warnings"]);
    let (users, groups) = tenant_state(&agent);
    assert_eq!(users.len(), 5, "{users:?}");
    let set = |ids: &[usize]| ids.iter().map(|i| upn(*i, &tag)).collect::<BTreeSet<_>>();
    assert_eq!(groups["Dj Alpha"], set(&[0, 1, 2]), "django-scim2 drops members in POST: ausi adds them by PATCH");
    assert_eq!(groups["Dj Beta"], set(&[3]));

    // A member removal and an addition, and a user moved out of scope.
    let moved = format!("CN=Dj User2x{tag},CN=Users,DC=example,DC=test");
    let _moved = Moved(tb, vec![moved.clone()]);
    tb.ldap_modify(&format!(
        "dn: CN=Dj Alpha,{ou}\nchangetype: modify\ndelete: member\nmember: {}\n-\nadd: member\nmember: {}\n-\n\n\
         dn: {}\nchangetype: modrdn\nnewrdn: CN=Dj User2x{tag}\ndeleteoldrdn: 1\nnewsuperior: CN=Users,DC=example,DC=test\n\n",
        dns[1], dns[4], dns[2]
    ));
    let (code, change) = agent.sync(&[]);
    ok(code, &change);
    let (users, groups) = tenant_state(&agent);
    assert_eq!(users[&upn(2, &tag)]["active"], false, "moved out of scope: deactivated");
    assert_eq!(users[&upn(1, &tag)]["active"], true);
    let failures = change["data"]["failures"].as_array().unwrap();
    if failures.is_empty() {
        assert_eq!(groups["Dj Alpha"], set(&[0, 4]), "{}", change["data"]);
    } else {
        // Whatever the tenant refused is named: the group, the operation, the members.
        for f in failures {
            assert!(f["dn"].as_str().unwrap().contains("Dj Alpha") && f["scim"]["status"].is_u64(), "{f}");
        }
    }
    assert!(change["data"]["counts"]["deactivated"].as_u64() == Some(1), "{}", change["data"]["counts"]);

    // Two more full syncs: the second writes nothing.
    let (code, again) = agent.sync(&["--full"]);
    ok(code, &again);
    let (code, quiet) = agent.sync(&["--full"]);
    ok(code, &quiet);
    assert_eq!(quiet["data"]["write_requests"], 0, "{}", quiet["data"]["counts"]);
    let (_, groups) = tenant_state(&agent);
    assert_eq!(groups["Dj Alpha"], set(&[0, 4]));
    assert_eq!(groups["Dj Beta"], set(&[3]));

    // The state is lost: one full sync adopts every user and group, no duplicate.
    let (before_users, before_groups) = tenant_state(&agent);
    std::fs::remove_file(agent.dir.path().join("state.db")).unwrap();
    let (code, adopted) = agent.sync(&["--full"]);
    ok(code, &adopted);
    let (after_users, after_groups) = tenant_state(&agent);
    assert_eq!(after_users.keys().collect::<Vec<_>>(), before_users.keys().collect::<Vec<_>>());
    assert_eq!(after_groups, before_groups, "no duplicate group, same members");
    assert_eq!(adopted["data"]["counts"]["created"], 0, "{}", adopted["data"]["counts"]);
    let (_, quiet) = agent.sync(&["--full"]);
    assert_eq!(quiet["data"]["write_requests"], 0, "{}", quiet["data"]["counts"]);
}

//! `ausi sync` end to end: the seeded Samba AD DC → a real scim2-server tenant, compared object
//! by object with what AD holds. Runs under `scripts/test` (AUSI_REQUIRE_DC=1).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use ausi::tenant::ResourceKind;
use common::testbed::{Agent, Testbed, dn, testbed, under};
use serde_json::Value;

const CORP: &str = "OU=Corp,DC=example,DC=test";
const GROUPS: &str = "OU=Groups,DC=example,DC=test";
const SALES: &str = "OU=Sales,OU=Corp,DC=example,DC=test";

/// Seeded users under `bases` and their problems *within that scope*: the seed records a
/// duplicate mail for both holders, which is only a duplicate when both are in scope.
fn in_scope(tb: &Testbed, bases: &[&str]) -> Vec<(Value, BTreeSet<String>)> {
    let users: Vec<&Value> = tb.users().iter().filter(|u| under(u["dn"].as_str().unwrap(), bases, &[])).collect();
    let mut mails: BTreeMap<String, usize> = BTreeMap::new();
    for u in &users {
        if let Some(m) = u["mail"].as_str().filter(|m| !m.trim().is_empty()) {
            *mails.entry(m.trim().to_lowercase()).or_default() += 1;
        }
    }
    users
        .into_iter()
        .map(|u| {
            let mut problems: BTreeSet<String> =
                u["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
            let shared =
                u["mail"].as_str().is_some_and(|m| mails.get(&m.trim().to_lowercase()).copied().unwrap_or(0) > 1);
            if !shared {
                problems.remove("mail.duplicate");
            }
            (u.clone(), problems)
        })
        .collect()
}

/// Valid users in scope, by userPrincipalName (lower case).
fn valid_users(tb: &Testbed, bases: &[&str]) -> BTreeMap<String, Value> {
    in_scope(tb, bases)
        .into_iter()
        .filter(|(_, p)| p.is_empty())
        .map(|(u, _)| (u["upn"].as_str().unwrap().to_lowercase(), u))
        .collect()
}

fn same_keys<V, W>(got: &BTreeMap<String, V>, want: &BTreeMap<String, W>, what: &str) {
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(extra.is_empty() && missing.is_empty(), "{what}: unexpected {extra:?}, missing {missing:?}");
}

fn by_user_name(resources: &[Value]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for r in resources {
        let name = r["userName"].as_str().unwrap().to_lowercase();
        assert!(out.insert(name.clone(), r.clone()).is_none(), "duplicate userName {name} in the tenant");
    }
    out
}

#[test]
fn full_sync_is_exact_and_a_second_run_writes_nothing() {
    let Some(tb) = testbed() else { return };
    let agent = tb.agent(&[CORP, GROUPS], "");
    let (code, report) = agent.sync(&["--full"]);
    assert_eq!(code, 1, "quarantined users make it exit 1: {}", report["error"]);
    let expected = valid_users(&tb, &[CORP]);

    // Users: exactly the valid users in scope, with the mapped attributes.
    let users = by_user_name(&agent.tenant(ResourceKind::User));
    same_keys(&users, &expected, "tenant users");
    for (name, seeded) in &expected {
        let u = &users[name];
        assert_eq!(u["name"]["givenName"].as_str(), seeded["given_name"].as_str().map(str::trim), "{name}");
        assert_eq!(u["name"]["familyName"].as_str(), seeded["sn"].as_str().map(str::trim), "{name}");
        assert_eq!(u["emails"][0]["value"].as_str(), seeded["mail"].as_str(), "{name}");
        assert_eq!(u["active"].as_bool(), Some(seeded["disabled"] == false), "{name}");
        assert_eq!(u["externalId"].as_str().map(str::len), Some(36), "{name}");
    }
    let externals: BTreeSet<&str> = users.values().map(|u| u["externalId"].as_str().unwrap()).collect();
    assert_eq!(externals.len(), users.len(), "one externalId per user");

    // Quarantined: every seeded problem user in scope, with its reasons; none in the tenant.
    let quarantined = common::rules_by_dn(&report["data"]["quarantined"], "reasons");
    let seeded_problems: BTreeMap<String, BTreeSet<String>> = in_scope(&tb, &[CORP])
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(u, p)| (dn(u["dn"].as_str().unwrap()).normalized(), p))
        .collect();
    same_keys(&quarantined, &seeded_problems, "quarantined users");
    assert_eq!(quarantined, seeded_problems);

    // Groups: every group in scope, with exactly its provisioned members.
    let groups = agent.tenant(ResourceKind::Group);
    let id_to_name: BTreeMap<String, String> = users
        .values()
        .map(|u| (u["id"].as_str().unwrap().to_owned(), u["userName"].as_str().unwrap().to_lowercase()))
        .collect();
    let group_ids: BTreeMap<String, String> = groups
        .iter()
        .map(|g| (g["id"].as_str().unwrap().to_owned(), g["displayName"].as_str().unwrap().to_owned()))
        .collect();
    let upn_of_dn: BTreeMap<String, String> = tb
        .users()
        .iter()
        .filter_map(|u| Some((dn(u["dn"].as_str()?).normalized(), u["upn"].as_str()?.to_lowercase())))
        .collect();
    let seeded_groups: Vec<&Value> = tb.expected["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| under(g["dn"].as_str().unwrap(), &[CORP, GROUPS], &[]))
        .collect();
    assert_eq!(groups.len(), seeded_groups.len());
    let cn_of = |d: &str| dn(d).rdn_value().unwrap().to_owned();
    let in_scope_groups: BTreeSet<String> =
        seeded_groups.iter().map(|g| dn(g["dn"].as_str().unwrap()).normalized()).collect();
    for g in &seeded_groups {
        let name = cn_of(g["dn"].as_str().unwrap());
        let tenant_group = groups
            .iter()
            .find(|t| t["displayName"] == name.as_str())
            .unwrap_or_else(|| panic!("group {name} provisioned"));
        let got: BTreeSet<String> = tenant_group["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let id = m["value"].as_str().unwrap();
                        id_to_name
                            .get(id)
                            .cloned()
                            .or_else(|| group_ids.get(id).map(|n| format!("group:{n}")))
                            .unwrap_or_else(|| format!("unknown:{id}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want: BTreeSet<String> = g["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| {
                let key = dn(m.as_str().unwrap()).normalized();
                if in_scope_groups.contains(&key) {
                    return Some(format!("group:{}", cn_of(m.as_str().unwrap())));
                }
                upn_of_dn.get(&key).filter(|upn| expected.contains_key(*upn)).cloned()
            })
            .collect();
        assert_eq!(got, want, "members of {name}");
    }

    // status tells: Active, with the run and its counts.
    let (code, status) = common::json_with(&mut common::ausi(), &["--config", agent.cfg(), "status"]);
    assert_eq!(code, 0);
    assert_eq!(status["data"]["tenant"]["status"], "Active");
    assert_eq!(status["data"]["state"]["last_runs"][0]["outcome"], "findings");
    assert_eq!(status["data"]["state"]["quarantined"].as_u64(), Some(seeded_problems.len() as u64));

    // One user, end to end.
    let (name, seeded) = expected.iter().next().unwrap();
    let (_, story) = agent.sync(&["--full", "--dry-run", "--user", name]);
    let story = &story["data"]["user"];
    assert_eq!((story["in_scope"].as_bool(), story["operation"].as_str()), (Some(true), Some("unchanged")));
    assert_eq!(story["scim"]["userName"].as_str(), seeded["upn"].as_str());
    let problem = quarantined.keys().next().unwrap();
    let sam = tb.users().iter().find(|u| dn(u["dn"].as_str().unwrap()).normalized() == *problem).unwrap()["sam"]
        .as_str()
        .unwrap();
    let (_, story) = agent.sync(&["--full", "--dry-run", "--user", sam]);
    assert_eq!(story["data"]["user"]["operation"], "quarantine");
    assert!(story["data"]["user"]["rules"]["checks"].as_array().unwrap().iter().any(|c| c["passed"] == false));

    // Nothing changed: nothing is written.
    let (code, again) = agent.sync(&["--full"]);
    assert_eq!(code, 1);
    assert_eq!(again["data"]["write_requests"], 0, "{}", again["data"]["counts"]);
    assert_eq!(again["data"]["counts"]["unchanged"].as_u64(), Some((users.len() + groups.len()) as u64));
}

#[test]
fn dry_run_writes_nothing_and_shows_the_plan() {
    let Some(tb) = testbed() else { return };
    let agent = tb.agent(&[SALES], "");
    let (code, report) = agent.sync(&["--full", "--dry-run"]);
    assert_eq!(code, 1);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["data"]["write_requests"], 0);
    let expected = valid_users(&tb, &[SALES]);
    assert_eq!(report["data"]["plan"]["creates"].as_array().unwrap().len(), expected.len());
    assert!(agent.tenant(ResourceKind::User).is_empty(), "a dry run creates nothing");

    // After a real sync and a change in the selection, a dry run leaves the tenant byte-identical.
    agent.sync(&["--full"]);
    let before = (agent.tenant(ResourceKind::User), agent.tenant(ResourceKind::Group));
    let r = common::run(common::ausi().args(["--config", agent.cfg(), "select-ous", "--clear", "-o", "json"]));
    assert_eq!(r.code, 0);
    let r = common::run(common::ausi().args(["--config", agent.cfg(), "select-ous", "--add", CORP, "-o", "json"]));
    assert_eq!(r.code, 0);
    let (_, report) = agent.sync(&["--full", "--dry-run"]);
    assert_eq!(report["data"]["write_requests"], 0);
    assert!(!report["data"]["plan"]["creates"].as_array().unwrap().is_empty());
    assert_eq!((agent.tenant(ResourceKind::User), agent.tenant(ResourceKind::Group)), before);
}

#[test]
fn deprovisioning_stops_at_the_threshold_and_on_an_empty_read() {
    let Some(tb) = testbed() else { return };
    let agent = tb.agent(&[CORP], "[sync]\nmax_deletions = 100\n");
    agent.sync(&["--full"]);
    let before = agent.tenant(ResourceKind::User);
    // Narrowing the scope to Sales would deactivate ~1,200 users: stop, write nothing.
    common::run(common::ausi().args(["--config", agent.cfg(), "select-ous", "--set", SALES, "-o", "json"]));
    let (code, report) = agent.sync(&["--full"]);
    assert_eq!(code, 3, "{}", report["error"]);
    assert_eq!(report["data"]["write_requests"], 0);
    assert!(report["error"]["message"].as_str().unwrap().contains("threshold"));
    let removals: BTreeSet<String> = report["data"]["plan"]["removals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["guid"].as_str().unwrap().to_owned())
        .collect();
    assert!(removals.len() > 100);
    let stop = &report["data"]["stop"];
    assert_eq!(stop["reason"], "deletion-threshold", "{report}");
    let removing = stop["removing"].as_u64().unwrap();
    assert!(removing > 100 && removing <= removals.len() as u64, "{stop}");
    assert!(report["error"]["message"].as_str().unwrap().contains(&format!(" {removing} objects")), "{report}");
    assert_eq!((stop["limit"].as_u64(), stop["limit_percent"].as_u64()), (Some(100), Some(10)), "{stop}");
    assert_eq!(agent.tenant(ResourceKind::User), before, "nothing was written");
    // The administrator confirms: the run goes through and deactivates exactly those users.
    let (code, report) = agent.sync(&["--full", "--allow-deletes", &removals.len().to_string()]);
    assert!(code == 0 || code == 1, "{}", report["error"]);
    let users = agent.tenant(ResourceKind::User);
    let deactivated: BTreeSet<String> = users
        .iter()
        .filter(|u| u["active"] == false)
        .filter(|u| before.iter().any(|b| b["id"] == u["id"] && b["active"] == true))
        .map(|u| u["externalId"].as_str().unwrap().to_owned())
        .collect();
    let was_active: BTreeSet<String> = removals
        .iter()
        .filter(|g| before.iter().any(|b| b["externalId"] == g.as_str() && b["active"] == true))
        .cloned()
        .collect();
    assert_eq!(deactivated, was_active, "exactly the planned users were deactivated");
    assert_eq!(users.len(), before.len(), "deactivated, not deleted");

    // An export whose scope reads empty is never a reason to deprovision.
    let empty = agent.dir.path().join("empty.ldif");
    let ou = std::process::Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", &tb.ca)
        .args(["-LLL", "-x", "-H", &tb.ldaps, "-D", &tb.bind_dn, "-y", &tb.bind_pw_file, "-s", "base", "-b", SALES])
        .output()
        .unwrap();
    assert!(ou.status.success());
    std::fs::write(&empty, &ou.stdout).unwrap();
    let provisioned = agent.tenant(ResourceKind::User).iter().filter(|u| u["active"] == true).count();
    assert!(provisioned > 0);
    for dry_run in [false, true] {
        let source = format!("ldif:{}", empty.display());
        let mut args = vec!["--full", "--source", &source];
        if dry_run {
            args.push("--dry-run");
        }
        let (code, report) = agent.sync(&args);
        assert_eq!(code, 3, "{report}");
        assert!(report["error"]["message"].as_str().unwrap().contains("no users"), "{report}");
        // The stopped run still says what it saw.
        assert_eq!(report["dry_run"], dry_run, "{report}");
        let data = &report["data"];
        assert_eq!(
            (data["mode"].as_str(), data["scope"]["from"].as_str()),
            (Some("full"), Some("selection")),
            "{data}"
        );
        assert!(data["source"].as_str().unwrap().contains("empty.ldif"), "{data}");
        assert_eq!(data["read"]["users"], 0, "{data}");
        assert_eq!(data["stop"]["reason"], "empty-read", "{data}");
        // Users ausi provisions (a user disabled in AD is provisioned inactive, so at least the active ones).
        assert!(data["stop"]["provisioned"].as_u64().unwrap() >= provisioned as u64, "{data}");
        assert_eq!(data["write_requests"], 0);
        assert!(data["plan"].is_null(), "stopped before planning: {data}");
    }
}

/// The objects a test adds to the DC, removed again when the test ends (even on failure).
struct Sandbox<'a> {
    tb: &'a Testbed,
    ou: String,
    moved: Vec<String>,
}

impl Drop for Sandbox<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ldapdelete")
            .env("LDAPTLS_CACERT", &self.tb.ca)
            .args(["-x", "-r", "-H", &self.tb.ldaps, "-D", &self.tb.admin_dn, "-y", &self.tb.admin_pw_file, &self.ou])
            .args(&self.moved)
            .output();
    }
}

#[test]
fn a_full_sync_sends_exactly_the_changes() {
    let Some(tb) = testbed() else { return };
    let name = format!("SyncTest{}", std::process::id());
    let ou = format!("OU={name},DC=example,DC=test");
    let mut sandbox = Sandbox { tb: &tb, ou: ou.clone(), moved: vec![] };
    let mut ldif = format!("dn: {ou}\nchangetype: add\nobjectClass: organizationalUnit\nou: {name}\n\n");
    for i in 0..6 {
        ldif.push_str(&format!(
            "dn: CN=Sync User{i},{ou}\nchangetype: add\nobjectClass: user\nsAMAccountName: sync{i}x{pid}\nuserPrincipalName: sync{i}x{pid}@example.test\ngivenName: Sync{i}\nsn: User\nmail: sync{i}x{pid}@example.test\nuserAccountControl: 544\n\n",
            pid = std::process::id() % 100000
        ));
    }
    // A group of more than 1,500 members (seeded Corp users), added in two steps.
    let corp_users: Vec<String> =
        valid_users(&tb, &[CORP]).values().map(|u| u["dn"].as_str().unwrap().to_owned()).collect();
    assert!(corp_users.len() > 1502);
    let group = format!("CN=Big Sync Group,{ou}");
    ldif.push_str(&format!(
        "dn: {group}\nchangetype: add\nobjectClass: group\nsAMAccountName: bigsync{}\n",
        std::process::id()
    ));
    for m in &corp_users[..1000] {
        ldif.push_str(&format!("member: {m}\n"));
    }
    ldif.push_str(&format!("\ndn: {group}\nchangetype: modify\nadd: member\n"));
    for m in &corp_users[1000..1501] {
        ldif.push_str(&format!("member: {m}\n"));
    }
    ldif.push_str("-\n\n");
    tb.ldap_modify(&ldif);

    // Single requests, so that "exactly those writes" can be counted request by request.
    let agent: Agent = tb.agent(&[CORP, &ou], "[sync]\nbulk = false\n");
    let (code, first) = agent.sync(&["--full"]);
    assert!(code == 0 || code == 1, "{}", first["error"]);
    let (_, quiet) = agent.sync(&["--full"]);
    assert_eq!(quiet["data"]["write_requests"], 0);

    // Three users change, one is disabled, one moves out of scope, one member joins the big group.
    let user = |i: u32| format!("CN=Sync User{i},{ou}");
    let mut change = String::new();
    change.push_str(&format!("dn: {}\nchangetype: modify\nreplace: sn\nsn: Renamed\n-\n\n", user(0)));
    change.push_str(&format!("dn: {}\nchangetype: modify\nreplace: title\ntitle: Engineer\n-\n\n", user(1)));
    change.push_str(&format!("dn: {}\nchangetype: modify\nreplace: givenName\ngivenName: Changed\n-\n\n", user(2)));
    change.push_str(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 546\n-\n\n",
        user(3)
    ));
    change.push_str(&format!("dn: {}\nchangetype: modrdn\nnewrdn: CN=Sync User4\ndeleteoldrdn: 1\nnewsuperior: CN=Users,DC=example,DC=test\n\n", user(4)));
    change.push_str(&format!("dn: {group}\nchangetype: modify\nadd: member\nmember: {}\n-\n\n", corp_users[1501]));
    sandbox.moved.push("CN=Sync User4,CN=Users,DC=example,DC=test".into());
    tb.ldap_modify(&change);

    let (code, report) = agent.sync(&["--full"]);
    assert!(code == 0 || code == 1, "{}", report["error"]);
    let counts = &report["data"]["counts"];
    assert_eq!(counts["updated"], 4, "{counts}");
    assert_eq!(counts["deactivated"], 1, "{counts}");
    assert_eq!(counts["membership_changes"], 1, "{counts}");
    assert_eq!(counts["created"], 0, "{counts}");
    assert_eq!(report["data"]["write_requests"], 6, "exactly those writes: {counts}");
    let users = by_user_name(&agent.tenant(ResourceKind::User));
    let pid = std::process::id() % 100000;
    assert_eq!(users[&format!("sync0x{pid}@example.test")]["name"]["familyName"], "Renamed");
    assert_eq!(users[&format!("sync1x{pid}@example.test")]["title"], "Engineer");
    assert_eq!(users[&format!("sync3x{pid}@example.test")]["active"], false);
    assert_eq!(users[&format!("sync4x{pid}@example.test")]["active"], false, "moved out of scope: deactivated");
    let (_, quiet) = agent.sync(&["--full"]);
    assert_eq!(quiet["data"]["write_requests"], 0);
    drop(sandbox);
}

#[test]
fn a_partial_read_or_a_wrong_token_writes_nothing() {
    let Some(tb) = testbed() else { return };
    let agent = tb.agent(&[], "");
    // An export with one unreadable entry: the run stops before writing (a partial read must not
    // deprovision anyone, so it must not provision half either).
    let export = agent.dir.path().join("partial.ldif");
    std::fs::write(
        &export,
        "dn: CN=A B,OU=X,DC=example,DC=test\nobjectClass: user\nobjectGUID:: AAECAwQFBgcICQoLDA0ODw==\ngivenName: A\nsn: B\nmail: ab@example.test\nuserPrincipalName: ab@example.test\n\n\
         dn: CN=Broken,OU=X,DC=example,DC=test\nthis line is not LDIF\n\n",
    )
    .unwrap();
    let source = format!("ldif:{}", export.display());
    for args in [&["--full", "--source", &source][..], &["--full", "--dry-run", "--source", &source]] {
        let (code, report) = agent.sync(args);
        assert_eq!(code, 3, "{report}");
        assert!(agent.tenant(ResourceKind::User).is_empty());
        // The stopped run still says what it saw: the counts read and the unreadable entry.
        assert_eq!(report["dry_run"], args.contains(&"--dry-run"), "{report}");
        let data = &report["data"];
        assert_eq!((data["mode"].as_str(), data["scope"]["from"].as_str()), (Some("full"), Some("export")), "{data}");
        assert!(data["source"].as_str().unwrap().contains("partial.ldif"), "{data}");
        assert_eq!((data["read"]["users"].as_u64(), data["read"]["groups"].as_u64()), (Some(1), Some(0)), "{data}");
        let stop = &data["stop"];
        assert_eq!((stop["reason"].as_str(), stop["unreadable"].as_u64()), (Some("partial-read"), Some(1)), "{stop}");
        let first = &stop["first"][0];
        assert!(!first["location"].as_str().unwrap().is_empty() && !first["message"].as_str().unwrap().is_empty());
        assert_eq!(stop["first"].as_array().unwrap().len(), 1, "{stop}");
    }

    // Register with a token the tenant refuses: permission error, nothing stored.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let tenant = format!("{}/refused{}", tb.scim_url, std::process::id());
    let r = common::run(
        common::ausi()
            .args([
                "--config",
                config.to_str().unwrap(),
                "register",
                "--home-realm",
                &tenant,
                "--scim-url",
                &format!("{tenant}/v2"),
                "--agent-name",
                "dc1",
                "--token-stdin",
                "-o",
                "json",
            ])
            .write_stdin("not-the-token\n"),
    );
    assert_eq!(r.code, 77, "{}", r.stdout);
    assert!(!config.exists(), "a refused registration writes no configuration");
    assert!(!r.stdout.contains("not-the-token") && !r.stderr.contains("not-the-token"));
}

/// A sandbox OU with users `R User{i}` (`rc{i}x{tag}`), removed when the value is dropped.
fn recreate_sandbox<'a>(
    tb: &'a Testbed,
    tag: &str,
    users: usize,
) -> (common::testbed::Sandbox<'a>, String, Vec<String>) {
    let ou = format!("OU=Rc{tag},DC=example,DC=test");
    tb.ldap_modify(&format!("dn: {ou}\nchangetype: add\nobjectClass: organizationalUnit\nou: Rc{tag}\n\n"));
    let entries: Vec<String> = (0..users).map(|i| recreate_entry(&ou, tag, i)).collect();
    tb.ldap_modify(&entries.concat());
    (common::testbed::Sandbox { tb, root: ou.clone() }, ou, entries)
}

fn recreate_entry(ou: &str, tag: &str, i: usize) -> String {
    format!(
        "dn: CN=R User{i},{ou}\nchangetype: add\nobjectClass: user\nsAMAccountName: rc{i}x{tag}\nuserPrincipalName: rc{i}x{tag}@example.test\ngivenName: R{i}\nsn: User\nmail: rc{i}x{tag}@example.test\nuserAccountControl: 544\n\n"
    )
}

fn user_named<'u>(users: &'u [Value], name: &str) -> Vec<&'u Value> {
    users.iter().filter(|u| u["userName"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name))).collect()
}

/// A user deleted in AD and re-created with the same UPN and sAMAccountName (a new objectGUID):
/// one sync moves the old tenant user out of the way (renamed `userName.<old objectGUID>` and
/// deactivated, or deleted with `on_remove = "delete"`) and creates the new one; the next
/// writes nothing. A holder of that userName that ausi did not provision is never touched.
#[test]
fn a_re_created_account_replaces_its_old_tenant_user_in_one_run() {
    let Some(tb) = testbed() else { return };
    for on_remove in ["deactivate", "delete"] {
        let tag = format!("{}{}", &on_remove[..2], common::unique_tag());
        let (_sandbox, ou, entries) = recreate_sandbox(&tb, &tag, 2);
        let agent = tb.agent(&[&ou], &format!("[sync]\non_remove = \"{on_remove}\"\nmax_deletion_percent = 100\n"));
        let (code, first) = agent.sync(&["--full"]);
        assert_eq!(code, 0, "{}", first["data"]);
        let name = format!("rc0x{tag}@example.test");
        let users = agent.tenant(ResourceKind::User);
        let old = user_named(&users, &name)[0].clone();
        let old_guid = old["externalId"].as_str().unwrap().to_owned();

        tb.ldap_modify(&format!("dn: CN=R User0,{ou}\nchangetype: delete\n\n{}", entries[0]));
        let (code, report) = agent.sync(&[]);
        assert_eq!(code, 0, "{on_remove}: {}", report["data"]);
        let users = agent.tenant(ResourceKind::User);
        let new = user_named(&users, &name);
        assert_eq!(new.len(), 1, "{on_remove}: one user holds {name}: {users:?}");
        let new_guid = new[0]["externalId"].as_str().unwrap();
        assert_ne!(new_guid, old_guid, "{on_remove}: the new account carries its new objectGUID");
        assert_eq!(new_guid.len(), 36);
        assert_eq!(new[0]["active"], true);
        let old_now: Vec<&Value> = users.iter().filter(|u| u["id"] == old["id"]).collect();
        match on_remove {
            "delete" => assert!(old_now.is_empty(), "deleted before the create: {old_now:?}"),
            _ => {
                assert_eq!(old_now.len(), 1);
                assert_eq!(old_now[0]["active"], false, "the old user stays deactivated");
                assert_eq!(
                    old_now[0]["userName"].as_str().map(str::to_lowercase),
                    Some(format!("{name}.{old_guid}")),
                    "renamed out of the way"
                );
            }
        }
        for args in [&[][..], &["--full"][..]] {
            let (code, quiet) = agent.sync(args);
            assert_eq!(code, 0, "{on_remove} {args:?}: {}", quiet["data"]);
            assert_eq!(quiet["data"]["write_requests"], 0, "{on_remove} {args:?}: {}", quiet["data"]["counts"]);
        }
    }

    // A tenant user that ausi did not provision holds the userName: that create fails, named,
    // with what to do; everything else is provisioned and the holder is untouched.
    let tag = format!("St{}", common::unique_tag());
    let (_sandbox, ou, _) = recreate_sandbox(&tb, &tag, 2);
    let agent = tb.agent(&[&ou], "");
    let name = format!("rc1x{tag}@example.test");
    let client = ausi::tenant::ScimClient::new(
        &agent.scim,
        ausi::secrets::SecretString::from(std::fs::read_to_string(&tb.scim_token_file).unwrap().trim().to_owned()),
        Default::default(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stranger = runtime
        .block_on(client.create(
            ResourceKind::User,
            &serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                "externalId": "hr-system-4711", "name": {"givenName": "Some", "familyName": "One"}, "active": true}),
        ))
        .unwrap();
    let (code, report) = agent.sync(&["--full"]);
    assert_eq!(code, 1, "{}", report["data"]);
    let failures = report["data"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let f = &failures[0];
    assert!(f["dn"].as_str().unwrap().starts_with("CN=R User1,"), "{f}");
    assert_eq!((f["operation"].as_str(), f["scim"]["status"].as_u64()), (Some("create"), Some(409)), "{f}");
    let detail = f["scim"]["detail"].as_str().unwrap();
    assert!(detail.contains("did not") && detail.contains("externalId"), "tells what to do: {detail}");
    let users = agent.tenant(ResourceKind::User);
    assert_eq!(users.len(), 2, "R User0 and the stranger: {users:?}");
    let holder = users.iter().find(|u| u["id"] == stranger["id"]).unwrap();
    assert_eq!(
        (holder["userName"].as_str(), holder["externalId"].as_str(), holder["active"].as_bool()),
        (Some(name.as_str()), Some("hr-system-4711"), Some(true)),
        "untouched"
    );
}

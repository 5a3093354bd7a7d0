//! A policy's scope beyond the OUs and its group options, end to end against the testbed's Samba
//! AD DC and scim2-server (skipped without them, like tests/delta.rs). Each test builds its own
//! subtree `OU=Scope<tag>,DC=example,DC=test` with users and groups it creates, and removes it at
//! the end. What the tenant must hold is computed here from what the test created (group
//! closures included), never from ausi's report.
//!
//! - scope by a scoping group (transitive) and an attribute condition: a user removed from the
//!   group, the members of a nested group taken out of it and a user given the excluded value are
//!   deprovisioned by a **delta**, and putting them back restores them (a full sync then writes
//!   nothing);
//! - flattened groups: each synced group lists exactly its transitive users (a cycle of groups,
//!   and a group not synced in between); the switch from nested is one planned set of changes;
//! - a scope filter gives the users the DC itself returns for it (ausi evaluates it locally);
//! - previews: `sync --dry-run --policy NAME` lists who a policy switch takes out (and writes
//!   nothing), `validate --policy NAME --user X` names the rule, `select-ous --dry-run` lists who
//!   enters and leaves with their names, and a scoping group ausi does not hold (a placeholder, a
//!   group outside the selected OUs) stops `sync` and `validate` with a configuration error.

#![allow(clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command as Process;
use std::sync::atomic::{AtomicU32, Ordering};

use ausi::tenant::ResourceKind;
use common::report::{excerpt, mode};
use common::testbed::{Agent, Sandbox, Testbed, testbed};
use serde_json::Value;

fn unique_tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}{:03}{}", std::process::id() % 10_000, (nanos / 1000) % 1000, N.fetch_add(1, Ordering::SeqCst))
}

/// The subtree a test creates: `OU=In` (selected) with users and groups.
struct Tree {
    tag: String,
    root: String,
    /// sam → (objectGUID, department)
    users: BTreeMap<String, (String, String)>,
    /// name → (sAMAccountName, objectGUID, member names: users' sams or groups' names)
    groups: BTreeMap<String, (String, String, BTreeSet<String>)>,
}

impl Tree {
    fn new(label: &str) -> Tree {
        let tag = unique_tag();
        Tree {
            root: format!("OU=Scope{label}{tag},DC=example,DC=test"),
            tag,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    fn ou_in(&self) -> String {
        format!("OU=In,{}", self.root)
    }

    fn sam(&self, name: &str) -> String {
        format!("s{}{name}", self.tag)
    }

    fn dn(&self, member: &str) -> String {
        if self.groups.contains_key(member) {
            format!("CN=G {member} {},{}", self.tag, self.ou_in())
        } else {
            format!("CN=U {member} {},{}", self.tag, self.ou_in())
        }
    }

    fn user(&mut self, name: &str, department: &str) -> String {
        self.users.insert(name.to_owned(), (String::new(), department.to_owned()));
        name.to_owned()
    }

    fn group(&mut self, name: &str, members: &[&str]) -> String {
        let sam = format!("g{}{name}", self.tag);
        self.groups.insert(name.to_owned(), (sam, String::new(), members.iter().map(|m| m.to_string()).collect()));
        name.to_owned()
    }

    fn create(&mut self, tb: &Testbed) {
        let mut ldif = String::new();
        for (dn, ou) in
            [(self.root.clone(), self.root[3..].split(',').next().unwrap().to_owned()), (self.ou_in(), "In".into())]
        {
            ldif += &format!("dn: {dn}\nchangetype: add\nobjectClass: organizationalUnit\nou: {ou}\n\n");
        }
        for (name, (_, department)) in &self.users {
            let sam = self.sam(name);
            ldif += &format!(
                "dn: {}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {sam}@example.test\ngivenName: {name}\nsn: Scope\nmail: {sam}@example.test\ndepartment: {department}\nuserAccountControl: 544\n\n",
                self.dn(name)
            );
        }
        // Groups first without members (a member may be a group created later), then the members.
        for (name, (sam, _, _)) in &self.groups {
            ldif += &format!("dn: {}\nchangetype: add\nobjectClass: group\nsAMAccountName: {sam}\n\n", self.dn(name));
        }
        for (name, (_, _, members)) in &self.groups {
            if members.is_empty() {
                continue;
            }
            ldif += &format!("dn: {}\nchangetype: modify\nadd: member\n", self.dn(name));
            for m in members {
                ldif += &format!("member: {}\n", self.dn(m));
            }
            ldif += "-\n\n";
        }
        tb.ldap_modify(&ldif);
        let guids = tb.object_guids(&self.root);
        for (name, (guid, _)) in self.users.iter_mut() {
            *guid = guids[&format!("s{}{name}", self.tag).to_lowercase()].clone();
        }
        for (sam, guid, _) in self.groups.values_mut() {
            *guid = guids[&sam.to_lowercase()].clone();
        }
    }

    fn guid(&self, name: &str) -> String {
        self.users.get(name).map(|u| u.0.clone()).unwrap_or_else(|| self.groups[name].1.clone())
    }

    fn member(&mut self, group: &str, member: &str, add: bool) -> String {
        let members = &mut self.groups.get_mut(group).unwrap().2;
        if add {
            members.insert(member.to_owned());
        } else {
            members.remove(member);
        }
        let op = if add { "add" } else { "delete" };
        format!("dn: {}\nchangetype: modify\n{op}: member\nmember: {}\n-\n\n", self.dn(group), self.dn(member))
    }

    fn department(&mut self, user: &str, value: &str) -> String {
        self.users.get_mut(user).unwrap().1 = value.to_owned();
        format!("dn: {}\nchangetype: modify\nreplace: department\ndepartment: {value}\n-\n\n", self.dn(user))
    }

    /// The users reached from `group` through any chain of groups (computed here, independently).
    fn closure(&self, group: &str) -> BTreeSet<String> {
        let mut users = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![group.to_owned()];
        while let Some(g) = todo.pop() {
            if !seen.insert(g.clone()) {
                continue;
            }
            for m in &self.groups[&g].2 {
                if self.groups.contains_key(m) {
                    todo.push(m.clone());
                } else {
                    users.insert(m.clone());
                }
            }
        }
        users
    }
}

/// An agent for `OU=In` whose active policy is `Scoped`, with `policy` as its tables.
fn agent(tb: &Testbed, tree: &Tree, policy: &str) -> Agent {
    let agent = tb.agent(&[&tree.ou_in()], "[sync]\nbulk = false\nmax_deletion_percent = 100\n");
    let text = std::fs::read_to_string(&agent.config).unwrap();
    assert!(text.contains("provisioning_policy = \"Default\""), "{text}");
    let text = text.replacen("provisioning_policy = \"Default\"", "provisioning_policy = \"Scoped\"", 1);
    std::fs::write(&agent.config, format!("{text}\n[policies.Scoped]\n{policy}\n")).unwrap();
    agent
}

fn sync(agent: &Agent, args: &[&str], want_mode: &str, context: &str) -> Value {
    let (code, report) = agent.sync(args);
    assert_eq!(code, 0, "{context}: exit; report:\n{}", excerpt(&report));
    assert_eq!(mode(&report), want_mode, "{context}:\n{}", excerpt(&report));
    report
}

/// The tenant's users: externalId → active.
fn tenant_users(agent: &Agent) -> BTreeMap<String, bool> {
    agent
        .tenant(ResourceKind::User)
        .iter()
        .map(|u| (u["externalId"].as_str().unwrap().to_owned(), u["active"].as_bool().unwrap_or(true)))
        .collect()
}

/// The tenant's groups: externalId → members' externalIds.
fn tenant_groups(agent: &Agent) -> BTreeMap<String, BTreeSet<String>> {
    let ids: BTreeMap<String, String> = agent
        .tenant(ResourceKind::User)
        .iter()
        .chain(agent.tenant(ResourceKind::Group).iter())
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["externalId"].as_str().unwrap().to_owned()))
        .collect();
    agent
        .tenant(ResourceKind::Group)
        .iter()
        .map(|g| {
            let members = g["members"]
                .as_array()
                .map(|ms| ms.iter().map(|m| ids[m["value"].as_str().unwrap()].clone()).collect())
                .unwrap_or_default();
            (g["externalId"].as_str().unwrap().to_owned(), members)
        })
        .collect()
}

#[test]
fn a_scoping_change_deprovisions_exactly_those_users_in_a_delta_and_back_restores_them() {
    let Some(tb) = testbed() else { return };
    let mut t = Tree::new("Delta");
    let _sandbox = Sandbox { tb: &tb, root: t.root.clone() };
    let [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map(|n| t.user(n, "Ops"));
    let nested = t.group("Nested", &[&c]);
    let scoping = t.group("Scoping", &[&a, &b, &e, &nested]);
    t.create(&tb);
    let policy = format!(
        "[policies.Scoped.scope]\ngroups = [\"{}\"]\ntransitive = true\nconditions = [{{ attribute = \"department\", not_equals = \"Contractors\" }}]\n",
        t.guid(&scoping)
    );
    let agent = agent(&tb, &t, &policy);
    // The expected tenant, from the tree: users in the scoping group's closure, not contractors.
    let want = |t: &Tree, provisioned: &BTreeSet<String>| -> BTreeMap<String, bool> {
        let inside = t.closure(&scoping);
        t.users
            .iter()
            .filter(|(name, _)| inside.contains(*name) || provisioned.contains(*name))
            .map(|(name, (guid, dept))| (guid.clone(), inside.contains(name) && dept != "Contractors"))
            .collect()
    };
    let first = sync(&agent, &["--full"], "full", "first sync");
    let provisioned: BTreeSet<String> = [&a, &b, &c, &e].iter().map(|s| s.to_string()).collect();
    assert_eq!(tenant_users(&agent), want(&t, &provisioned), "after the full sync:\n{}", excerpt(&first));
    assert!(!tenant_users(&agent).contains_key(&t.guid(&d)), "d is in no scoping group");

    // Out: b leaves the group, the nested group (with c) leaves it, e becomes a contractor.
    let mut change = t.member(&scoping, &b, false);
    change += &t.member(&scoping, &nested, false);
    change += &t.department(&e, "Contractors");
    tb.ldap_modify(&change);
    let report = sync(&agent, &[], "delta", "the delta taking them out");
    let now = tenant_users(&agent);
    assert_eq!(now, want(&t, &provisioned), "after the delta:\n{}", excerpt(&report));
    let inactive: BTreeSet<String> = now.iter().filter(|(_, on)| !**on).map(|(g, _)| g.clone()).collect();
    assert_eq!(inactive, [&b, &c, &e].iter().map(|n| t.guid(n)).collect(), "exactly those are deprovisioned");
    assert_eq!(report["data"]["counts"]["deactivated"], 3, "{}", excerpt(&report));
    // Explain: which rule took each one out.
    for (user, rule) in [(&b, "group"), (&c, "group"), (&e, "condition")] {
        let (code, story) = agent.sync(&["--dry-run", "--user", &t.sam(user)]);
        assert_eq!(code, 1, "a user out of scope is a finding:\n{}", excerpt(&story));
        assert_eq!(story["data"]["user"]["in_scope"], false, "{}", excerpt(&story));
        assert_eq!(story["data"]["user"]["excluded"]["rule"], rule, "{user}: {}", story["data"]["user"]);
    }
    let (_, story) = agent.sync(&["--dry-run", "--user", &t.sam(&a)]);
    assert_eq!(story["data"]["user"]["in_scope"], true, "{}", story["data"]["user"]);
    let text = common::run(common::ausi().args([
        "--config",
        agent.cfg(),
        "sync",
        "--dry-run",
        "--user",
        &t.sam(&e),
        "-o",
        "table",
    ]));
    assert!(
        text.stdout.contains(
            "out of the policy's scope (condition: fails scope condition 1: department not_equals \"Contractors\")"
        ),
        "{}",
        text.stdout
    );

    // Back: the memberships and the department are restored.
    let mut change = t.member(&scoping, &b, true);
    change += &t.member(&scoping, &nested, true);
    change += &t.department(&e, "Ops");
    tb.ldap_modify(&change);
    let report = sync(&agent, &[], "delta", "the delta bringing them back");
    let now = tenant_users(&agent);
    assert_eq!(now, want(&t, &provisioned), "after the second delta:\n{}", excerpt(&report));
    assert!(now.values().all(|active| *active), "every user is back:\n{}", excerpt(&report));
    let full = sync(&agent, &["--full"], "full", "a full sync after the deltas");
    assert_eq!(common::report::writes(&full), 0, "the deltas ended where a full sync ends:\n{}", excerpt(&full));
}

#[test]
fn flattened_groups_list_their_transitive_users() {
    let Some(tb) = testbed() else { return };
    let mut t = Tree::new("Flat");
    let _sandbox = Sandbox { tb: &tb, root: t.root.clone() };
    let [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map(|n| t.user(n, "Ops"));
    // P → Q → R → P (a cycle), X is not synced but sits between Y and its user d.
    let p = t.group("P", &[&a]);
    let q = t.group("Q", &[&b]);
    let r = t.group("R", &[&c]);
    let x = t.group("X", &[&d]);
    let y = t.group("Y", &[&e]);
    for (group, member) in [(&p, &q), (&q, &r), (&r, &p), (&y, &x)] {
        t.groups.get_mut(group).unwrap().2.insert(member.to_string());
    }
    t.create(&tb);
    let synced = [&p, &q, &r, &y];
    let only: Vec<String> = synced.iter().map(|g| format!("\"{}\"", t.guid(g))).collect();
    let policy = format!("[policies.Scoped.groups]\nonly = [{}]\nmembers = \"nested\"\n", only.join(", "));
    let agent = agent(&tb, &t, &policy);
    let report = sync(&agent, &["--full"], "full", "full sync, nested");
    // Nested: each synced group lists its users and its synced groups (X is not synced: no member).
    let nested: BTreeMap<String, BTreeSet<String>> = synced
        .iter()
        .map(|g| {
            let direct = &t.groups[g.as_str()].2;
            (t.guid(g), direct.iter().filter(|m| *m != &x).map(|m| t.guid(m)).collect())
        })
        .collect();
    assert_eq!(tenant_groups(&agent), nested, "{}", excerpt(&report));

    // Switch to flattened: a dry run plans, per group, its nested groups out and their users in.
    let text = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(&agent.config, text.replace("members = \"nested\"", "members = \"flattened\"")).unwrap();
    let dry = sync(&agent, &["--full", "--dry-run"], "full", "dry run of the switch");
    let planned: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = dry["data"]["plan"]["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let set = |k: &str| m[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            (m["group_guid"].as_str().unwrap().to_owned(), (set("add"), set("remove")))
        })
        .collect();
    let expected: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = synced
        .iter()
        .map(|g| {
            let users: BTreeSet<String> = t.closure(g).iter().map(|u| t.guid(u)).collect();
            let now = &nested[&t.guid(g)];
            (t.guid(g), (users.difference(now).cloned().collect(), now.difference(&users).cloned().collect()))
        })
        .collect();
    assert_eq!(planned, expected, "the switch's membership changes:\n{}", excerpt(&dry));
    assert_eq!(common::report::writes(&dry), 0, "a dry run writes nothing");
    assert_eq!(tenant_groups(&agent), nested, "the dry run left the tenant as it was");
    let report = sync(&agent, &["--full"], "full", "full sync, flattened");
    let want: BTreeMap<String, BTreeSet<String>> =
        synced.iter().map(|g| (t.guid(g), t.closure(g).iter().map(|u| t.guid(u)).collect())).collect();
    assert_eq!(want[&t.guid(&p)].len(), 3, "the cycle gives each of P, Q, R all three users (fix the test)");
    assert_eq!(tenant_groups(&agent), want, "{}", excerpt(&report));
    assert!(!tenant_groups(&agent).contains_key(&t.guid(&x)), "X is not synced");
    // Taking d out of X changes Y (above X) in a delta.
    tb.ldap_modify(&t.member(&x, &d, false));
    let report = sync(&agent, &[], "delta", "delta");
    let want_y: BTreeSet<String> = t.closure(&y).iter().map(|u| t.guid(u)).collect();
    assert_eq!(tenant_groups(&agent)[&t.guid(&y)], want_y, "{}", excerpt(&report));
}

/// The sAMAccountNames (lower-case) of the users under `base` the DC returns for `filter`.
fn dc_users(tb: &Testbed, base: &str, filter: &str) -> BTreeSet<String> {
    let out = Process::new("ldapsearch")
        .env("LDAPTLS_CACERT", &tb.ca)
        .args(["-LLL", "-o", "ldif-wrap=no", "-x", "-H", &tb.ldaps, "-D", &tb.admin_dn, "-y", &tb.admin_pw_file])
        .args(["-b", base, &format!("(&(sAMAccountType=805306368){filter})"), "sAMAccountName"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ldapsearch: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("sAMAccountName: ").map(|v| v.trim().to_lowercase()))
        .collect()
}

#[test]
fn a_scope_filter_takes_the_users_the_dc_returns_for_it() {
    let Some(tb) = testbed() else { return };
    let mut t = Tree::new("Filter");
    let _sandbox = Sandbox { tb: &tb, root: t.root.clone() };
    for (name, department) in
        [("a", "Sales"), ("b", "sales"), ("c", "Sales Ops"), ("d", "Contractors"), ("e", "Research"), ("f", "R&D")]
    {
        t.user(name, department);
    }
    t.create(&tb);
    // f disabled: the bit test must see it.
    tb.ldap_modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 546\n-\n\n",
        t.dn("f")
    ));
    let filters = [
        "(department=sales)",
        "(|(department=Sales*)(department=*arch))",
        "(!(department=Contractors))",
        "(&(department>=R)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
        "(department=*s*o*)",
    ];
    for filter in filters {
        let want = dc_users(&tb, &t.ou_in(), filter);
        assert!(!want.is_empty() && want.len() < t.users.len(), "{filter}: a filter that selects some (fix the test)");
        let policy = format!("[policies.Scoped.scope]\nfilter = \"{filter}\"\n");
        let agent = agent(&tb, &t, &policy);
        let report = sync(&agent, &["--full"], "full", filter);
        let got: BTreeSet<String> = agent
            .tenant(ResourceKind::User)
            .iter()
            .map(|u| u["userName"].as_str().unwrap().trim_end_matches("@example.test").to_lowercase())
            .collect();
        assert_eq!(got, want, "{filter}: ausi's local evaluation against the DC's:\n{}", excerpt(&report));
    }
}

/// `args` after `--config` as JSON: the exit code and the report.
fn command(agent: &Agent, args: &[&str]) -> (i32, Value) {
    let mut full = vec!["--config", agent.cfg()];
    full.extend(args);
    common::json_with(&mut common::ausi(), &full)
}

/// The DNs (lower-case) of a preview list (`entering` or `leaving`) of users and groups.
fn listed(list: &Value) -> BTreeSet<String> {
    list.as_array().unwrap().iter().map(|o| o["dn"].as_str().unwrap().to_lowercase()).collect()
}

#[test]
fn previews_name_who_enters_and_leaves_and_a_missing_scoping_group_stops() {
    let Some(tb) = testbed() else { return };
    let mut t = Tree::new("Preview");
    let _sandbox = Sandbox { tb: &tb, root: t.root.clone() };
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| t.user(n, "Ops"));
    let e = t.user("e", "Contractors");
    let nested = t.group("Nested", &[&b]);
    let staff = t.group("Staff", &[&a, &e, &nested]);
    t.create(&tb);
    // A group outside the selected OU=In (beside it, under the test's root).
    let outside_dn = format!("CN=Outside {},{}", t.tag, t.root);
    let outside_sam = format!("o{}", t.tag);
    tb.ldap_modify(&format!(
        "dn: {outside_dn}\nchangetype: add\nobjectClass: group\nsAMAccountName: {outside_sam}\n\n"
    ));
    let outside = tb.object_guids(&t.root)[&outside_sam.to_lowercase()].clone();
    let placeholder = "00000000-0000-0000-0000-000000000000";
    // Active: `Scoped`, everyone in the OU. Previewed: `Narrow`, the Staff group's closure minus
    // contractors; `Ghost` and `Beside` scope by groups ausi does not hold.
    let policies = format!(
        "[policies.Narrow.scope]\ngroups = [\"{}\"]\ntransitive = true\nconditions = [{{ attribute = \"department\", not_equals = \"Contractors\" }}]\n\
         [policies.Ghost.scope]\ngroups = [\"{placeholder}\"]\n\
         [policies.Beside.scope]\ngroups = [\"{outside}\"]\n",
        t.guid(&staff)
    );
    let agent = agent(&tb, &t, &format!("\n{policies}"));
    sync(&agent, &["--full"], "full", "first sync, everyone");
    let before = tenant_users(&agent);
    assert_eq!(before.len(), 5);

    // The preview of Narrow: who leaves (computed here: not in Staff's closure, or a contractor).
    let inside = t.closure(&staff);
    let leaving: BTreeSet<String> = t
        .users
        .iter()
        .filter(|(name, (_, dept))| !inside.contains(*name) || dept == "Contractors")
        .map(|(name, _)| t.dn(name).to_lowercase())
        .collect();
    assert_eq!(leaving.len(), 3, "c, d and e leave (fix the test)");
    let (code, preview) = agent.sync(&["--dry-run", "--policy", "Narrow"]);
    assert_eq!(code, 0, "{}", excerpt(&preview));
    let data = &preview["data"];
    assert_eq!((data["policy"]["name"].as_str(), data["policy"]["source"].as_str()), (Some("Narrow"), Some("preview")));
    assert_eq!(data["preview"]["active"], "Scoped", "{}", excerpt(&preview));
    let scope = &data["preview"]["scope"];
    assert_eq!(listed(&scope["leaving"]), leaving, "{}", excerpt(&preview));
    assert_eq!(listed(&scope["entering"]), BTreeSet::new());
    assert_eq!((scope["users_leaving"].as_u64(), scope["after"]["users"].as_u64()), (Some(3), Some(2)));
    for o in scope["leaving"].as_array().unwrap() {
        let sam = o["sam_account_name"].as_str().unwrap();
        assert_eq!(o["user_principal_name"].as_str(), Some(format!("{sam}@example.test").as_str()), "{o}");
    }
    assert_eq!(data["counts"]["deactivated"], 3, "the plan deprovisions exactly them:\n{}", excerpt(&preview));
    assert_eq!(common::report::writes(&preview), 0);
    assert_eq!(tenant_users(&agent), before, "a preview writes nothing");
    let text = common::run(common::ausi().args([
        "--config",
        agent.cfg(),
        "sync",
        "--dry-run",
        "--policy",
        "Narrow",
        "-o",
        "table",
    ]));
    assert!(
        text.stdout.contains("provisioning policy: Narrow (previewed with --policy; the active one is Scoped)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(&format!("  leaving: user {}@example.test, {}", t.sam(&c), t.dn(&c))),
        "{}",
        text.stdout
    );
    // The active policy previewed against itself: nobody enters or leaves.
    let (_, same) = agent.sync(&["--dry-run", "--policy", "Scoped"]);
    assert_eq!(same["data"]["preview"]["scope"]["leaving"], serde_json::json!([]), "{}", excerpt(&same));

    // validate --policy Narrow --user: the same verdicts, with the rule.
    for (user, rule) in [(&b, None), (&c, Some("group")), (&e, Some("condition"))] {
        let (code, v) = command(&agent, &["validate", "--policy", "Narrow", "--user", &t.sam(user)]);
        assert_eq!(v["data"]["in_policy_scope"], rule.is_none(), "{user}: {}", v["data"]);
        assert_eq!(v["data"]["excluded"]["rule"].as_str(), rule, "{user}: {}", v["data"]);
        assert_eq!(code, if rule.is_some() { 1 } else { 0 }, "{user}: {}", v["data"]);
    }
    let text = common::run(common::ausi().args([
        "--config",
        agent.cfg(),
        "validate",
        "--policy",
        "Narrow",
        "--user",
        &t.sam(&d),
        "-o",
        "table",
    ]));
    assert!(
        text.stdout
            .contains("Scope: in the selected OUs, out of the policy's scope (group: not a direct or nested member"),
        "{}",
        text.stdout
    );

    // A scoping group ausi does not hold: a configuration error naming the policy and the GUID.
    for (policy, guid) in [("Ghost", placeholder), ("Beside", outside.as_str())] {
        let (code, r) = agent.sync(&["--dry-run", "--policy", policy]);
        let message = r["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert_eq!(code, 78, "{policy}: {}", excerpt(&r));
        assert!(message.contains(&format!("{policy:?}")) && message.contains(guid), "{message}");
        let (code, v) = command(&agent, &["validate", "--policy", policy]);
        assert_eq!(code, 78, "{policy}: validate {}", v["error"]);
        assert!(v["error"]["message"].as_str().unwrap().contains(guid), "{}", v["error"]);
    }
    // Active, it stops the real run before anything is planned or written.
    let text = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(
        &agent.config,
        text.replacen("provisioning_policy = \"Scoped\"", "provisioning_policy = \"Ghost\"", 1),
    )
    .unwrap();
    let (code, r) = agent.sync(&[]);
    assert_eq!(code, 78, "{}", excerpt(&r));
    assert_eq!(tenant_users(&agent), before, "nothing was written");

    // select-ous: the whole test root instead of OU=In brings the outside group in, with its name.
    let (code, s) = command(&agent, &["select-ous", "--set", &t.root, "--dry-run"]);
    assert_eq!(code, 0, "{}", s);
    let changes = &s["data"]["changes"];
    assert_eq!(listed(&changes["entering"]), [outside_dn.to_lowercase()].into(), "{changes}");
    assert_eq!(changes["entering"][0]["display_name"], format!("Outside {}", t.tag));
    assert_eq!(changes["entering"][0]["kind"], "group");
    // Removing OU=In: every user and group leaves, users with their logon names.
    let (_, s) = command(&agent, &["select-ous", "--remove", &t.ou_in(), "--dry-run"]);
    let changes = &s["data"]["changes"];
    let everyone: BTreeSet<String> = t.users.keys().chain(t.groups.keys()).map(|n| t.dn(n).to_lowercase()).collect();
    assert_eq!(listed(&changes["leaving"]), everyone, "{changes}");
    assert_eq!((changes["users_leaving"].as_u64(), changes["groups_leaving"].as_u64()), (Some(5), Some(2)));
    let text = common::run(common::ausi().args([
        "--config",
        agent.cfg(),
        "select-ous",
        "--remove",
        &t.ou_in(),
        "--dry-run",
        "-o",
        "table",
    ]));
    assert!(
        text.stdout.contains(&format!("  leaving: user {}@example.test, {}", t.sam(&a), t.dn(&a))),
        "{}",
        text.stdout
    );
}

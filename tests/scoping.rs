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
//! - a scope filter gives the users the DC itself returns for it (ausi evaluates it locally).

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

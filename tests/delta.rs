//! `ausi sync` without `--full`: the incremental (delta) sync from AD's uSNChanged, end to end
//! against the testbed's Samba AD DC and scim2-server (`scripts/testbed up`, then source its
//! env.sh); skipped without them, like tests/sync.rs.
//!
//! Every test builds its own subtree `OU=Delta<tag>,DC=example,DC=test` (`OU=In` selected,
//! `OU=Sub,OU=In` inside it, `OU=Out` not selected), with users and groups it creates itself, and
//! removes it at the end: the seeded objects other tests compare with are never touched. The
//! expected tenant comes from a small model of what the test created and changed ([`Model`]), never
//! from ausi's own report; the report is only printed when the tenant is wrong.
//!
//! - one delta after attribute changes, a disable, a real delete (tombstone), moves out of and
//!   into the scope, an OU rename, membership changes and a fixed quarantined user: the exact
//!   tenant, with exactly the writes those changes need; a second delta writes nothing;
//! - a watermark from another DC (changed invocationId), an expired watermark, a changed scope and
//!   an LDIF source fall back to a full sync that says why, and ends exact;
//! - SIGKILL at several points of a delta, with AD changing in between: the reruns miss nothing
//!   (the watermark never runs ahead of what was applied);
//! - under `on_remove = "delete"`, a tombstone and a move out delete the users;
//! - a no-op delta reads a handful of entries and writes nothing.
//!
//! After the deltas, a `sync --full` must find nothing to write: the delta ends where the full
//! sync would. A delta reads the changes of the whole domain, tombstones included, so the test
//! that counts what a no-op delta reads runs alone among the tests of this file ([`exclusive`]).

#![allow(clippy::print_stderr)] // a skipped test says why, and the runs say what happened

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use ausi::tenant::ResourceKind;
use common::report::{count, excerpt, mode, writes};
use common::testbed::{Agent, Sandbox, Testbed, testbed};
use common::wait_until;
use serde_json::Value;

// ------------------------------------------------------------------------------- parallel safety

/// Every test deletes objects in AD (its own, at least when it cleans up), and a delta reads the
/// domain's new tombstones: the test that counts what a no-op delta reads takes this exclusively,
/// the others share it.
static DC_CHANGES: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    DC_CHANGES.read().unwrap_or_else(PoisonError::into_inner)
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    DC_CHANGES.write().unwrap_or_else(PoisonError::into_inner)
}

/// A tag no other test (in this run or an earlier one) uses: pid, a clock, a counter.
fn unique_tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}{:03}{}", std::process::id() % 10_000, (nanos / 1000) % 1000, N.fetch_add(1, Ordering::SeqCst))
}

// ---------------------------------------------------------------------------------------- the model

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// `OU=In` (selected).
    In,
    /// `OU=Sub,OU=In` (or whatever the sub-OU is renamed to): selected through `OU=In`.
    Sub,
    /// `OU=Out` (not selected unless the test adds it).
    Out,
    /// Deleted in AD: a tombstone.
    Deleted,
}

#[derive(Clone, Debug)]
struct User {
    sam: String,
    cn: String,
    place: Place,
    given: String,
    sn: String,
    mail: Option<String>,
    title: Option<String>,
    department: Option<String>,
    disabled: bool,
    guid: String,
}

impl User {
    fn upn(&self) -> String {
        format!("{}@example.test", self.sam)
    }
}

#[derive(Clone, Debug)]
struct Group {
    cn: String,
    sam: String,
    /// sAMAccountNames of the member users (as AD holds them, in scope or not).
    members: BTreeSet<String>,
    guid: String,
}

/// What the test created in AD and changed since, and which users ausi has provisioned.
#[derive(Clone, Debug)]
struct Model {
    tag: String,
    /// `OU=Delta<tag>,DC=example,DC=test`
    root: String,
    /// The name of `OU=Sub,OU=In` (the test may rename it).
    sub: String,
    /// Whether `OU=Out` is selected too.
    out_selected: bool,
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, Group>,
    /// Users a sync has provisioned (they stay in the tenant, deactivated, once they leave).
    provisioned: BTreeSet<String>,
    /// `[sync] on_remove = "delete"`: users that leave are deleted from the tenant, not deactivated.
    delete_on_remove: bool,
}

/// A user in the tenant as the model expects it.
#[derive(Clone, Debug, PartialEq)]
enum Want {
    /// In scope and valid: provisioned with these attributes.
    Live {
        user_name: String,
        given: String,
        sn: String,
        mail: String,
        title: Option<String>,
        department: Option<String>,
        active: bool,
    },
    /// Provisioned once, now out of scope or deleted in AD: deactivated (`active: false`).
    Gone,
}

/// The tenant as the model expects it: users and groups by externalId.
#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    users: BTreeMap<String, (String, Want)>,
    /// externalId → (displayName, member externalIds)
    groups: BTreeMap<String, (String, BTreeSet<String>)>,
}

impl Model {
    fn new(label: &str) -> Model {
        let tag = unique_tag();
        Model {
            root: format!("OU=Delta{label}{tag},DC=example,DC=test"),
            tag,
            sub: "Sub".into(),
            out_selected: false,
            delete_on_remove: false,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            provisioned: BTreeSet::new(),
        }
    }

    fn ou_in(&self) -> String {
        format!("OU=In,{}", self.root)
    }

    fn ou_out(&self) -> String {
        format!("OU=Out,{}", self.root)
    }

    fn ou_sub(&self) -> String {
        format!("OU={},{}", self.sub, self.ou_in())
    }

    fn container(&self, place: Place) -> String {
        match place {
            Place::In => self.ou_in(),
            Place::Sub => self.ou_sub(),
            Place::Out => self.ou_out(),
            Place::Deleted => panic!("a deleted object has no container"),
        }
    }

    /// A user named `name` (unique within the test) at `place`; `None` mail: quarantined.
    fn user(&mut self, name: &str, place: Place, mail: bool) -> String {
        let sam = format!("d{}{name}", self.tag);
        assert!(sam.len() <= 20, "sAMAccountName {sam} too long");
        let user = User {
            cn: format!("Delta {name} {}", self.tag),
            place,
            given: format!("Given{name}"),
            sn: "Delta".into(),
            mail: mail.then(|| format!("{sam}@example.test")),
            title: Some("Staff".into()),
            department: Some("Ops".into()),
            disabled: false,
            guid: String::new(),
            sam: sam.clone(),
        };
        self.users.insert(sam.clone(), user);
        sam
    }

    fn group(&mut self, name: &str, members: &[&String]) -> String {
        let cn = format!("Delta {name} {}", self.tag);
        let group = Group {
            cn: cn.clone(),
            sam: format!("g{}{name}", self.tag),
            members: members.iter().map(|s| (*s).clone()).collect(),
            guid: String::new(),
        };
        self.groups.insert(cn.clone(), group);
        cn
    }

    fn u(&self, sam: &str) -> &User {
        &self.users[sam]
    }

    fn dn(&self, sam: &str) -> String {
        let u = &self.users[sam];
        format!("CN={},{}", u.cn, self.container(u.place))
    }

    fn group_dn(&self, cn: &str) -> String {
        format!("CN={cn},{}", self.ou_in())
    }

    fn in_scope(&self, u: &User) -> bool {
        match u.place {
            Place::In | Place::Sub => true,
            Place::Out => self.out_selected,
            Place::Deleted => false,
        }
    }

    /// In scope and passing the rules (the only rule these users can break: a missing mail).
    fn live(&self, u: &User) -> bool {
        self.in_scope(u) && u.mail.is_some()
    }

    /// The LDIF that creates the whole subtree as the model holds it now.
    fn creation_ldif(&self) -> String {
        let mut ldif = String::new();
        let root_name = self.root.trim_start_matches("OU=").split(',').next().unwrap();
        for (dn, name) in [
            (self.root.clone(), root_name.to_owned()),
            (self.ou_in(), "In".to_owned()),
            (self.ou_out(), "Out".to_owned()),
            (self.ou_sub(), self.sub.clone()),
        ] {
            ldif.push_str(&format!("dn: {dn}\nchangetype: add\nobjectClass: organizationalUnit\nou: {name}\n\n"));
        }
        for u in self.users.values() {
            ldif.push_str(&format!(
                "dn: {}\nchangetype: add\nobjectClass: user\nsAMAccountName: {}\nuserPrincipalName: {}\ngivenName: {}\nsn: {}\nuserAccountControl: {}\n",
                self.dn(&u.sam),
                u.sam,
                u.upn(),
                u.given,
                u.sn,
                if u.disabled { 546 } else { 544 }
            ));
            for (attr, value) in [("mail", &u.mail), ("title", &u.title), ("department", &u.department)] {
                if let Some(v) = value {
                    ldif.push_str(&format!("{attr}: {v}\n"));
                }
            }
            ldif.push('\n');
        }
        for g in self.groups.values() {
            ldif.push_str(&format!(
                "dn: {}\nchangetype: add\nobjectClass: group\nsAMAccountName: {}\n",
                self.group_dn(&g.cn),
                g.sam
            ));
            for m in &g.members {
                ldif.push_str(&format!("member: {}\n", self.dn(m)));
            }
            ldif.push('\n');
        }
        ldif
    }

    /// Creates the subtree in AD and learns the objectGUIDs AD gave each object.
    fn create(&mut self, tb: &Testbed) {
        tb.ldap_modify(&self.creation_ldif());
        let guids = tb.object_guids(&self.root);
        for u in self.users.values_mut() {
            u.guid = guids.get(&u.sam.to_lowercase()).unwrap_or_else(|| panic!("no objectGUID for {}", u.sam)).clone();
        }
        for g in self.groups.values_mut() {
            g.guid = guids.get(&g.sam.to_lowercase()).unwrap_or_else(|| panic!("no objectGUID for {}", g.sam)).clone();
        }
    }

    /// The tenant as it must be after a sync of the model as it is now (does not record the sync).
    fn snapshot(&self) -> Snapshot {
        let mut users = BTreeMap::new();
        for u in self.users.values() {
            let want = if self.live(u) {
                Want::Live {
                    user_name: u.upn(),
                    given: u.given.clone(),
                    sn: u.sn.clone(),
                    mail: u.mail.clone().unwrap(),
                    title: u.title.clone(),
                    department: u.department.clone(),
                    active: !u.disabled,
                }
            } else if self.provisioned.contains(&u.sam) && !self.delete_on_remove {
                Want::Gone
            } else {
                continue;
            };
            users.insert(u.guid.clone(), (u.sam.clone(), want));
        }
        let groups = self
            .groups
            .values()
            .map(|g| {
                let members =
                    g.members.iter().map(|m| self.u(m)).filter(|u| self.live(u)).map(|u| u.guid.clone()).collect();
                (g.guid.clone(), (g.cn.clone(), members))
            })
            .collect();
        Snapshot { users, groups }
    }

    /// The tenant after a sync of the model as it is now; records the users it provisioned.
    fn synced(&mut self) -> Snapshot {
        let snapshot = self.snapshot();
        let live: Vec<String> = self.users.values().filter(|u| self.live(u)).map(|u| u.sam.clone()).collect();
        self.provisioned.extend(live);
        snapshot
    }

    /// The quarantined users (in scope, invalid) by normalised DN.
    fn quarantined(&self) -> BTreeSet<String> {
        self.users
            .values()
            .filter(|u| self.in_scope(u) && !self.live(u))
            .map(|u| common::testbed::dn(&self.dn(&u.sam)).normalized())
            .collect()
    }

    // The changes: each returns its LDIF and records the change in the model.

    fn set(&mut self, sam: &str, attr: &str, value: &str) -> String {
        let dn = self.dn(sam);
        let u = self.users.get_mut(sam).unwrap();
        match attr {
            "title" => u.title = Some(value.into()),
            "department" => u.department = Some(value.into()),
            "givenName" => u.given = value.into(),
            "sn" => u.sn = value.into(),
            "mail" => u.mail = Some(value.into()),
            _ => panic!("the model does not know {attr}"),
        }
        format!("dn: {dn}\nchangetype: modify\nreplace: {attr}\n{attr}: {value}\n-\n\n")
    }

    fn disable(&mut self, sam: &str) -> String {
        let dn = self.dn(sam);
        self.users.get_mut(sam).unwrap().disabled = true;
        format!("dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 546\n-\n\n")
    }

    fn delete(&mut self, sam: &str) -> String {
        let dn = self.dn(sam);
        self.users.get_mut(sam).unwrap().place = Place::Deleted;
        for g in self.groups.values_mut() {
            g.members.remove(sam); // AD drops the link with the object
        }
        format!("dn: {dn}\nchangetype: delete\n\n")
    }

    fn move_to(&mut self, sam: &str, place: Place) -> String {
        let dn = self.dn(sam);
        let cn = self.users[sam].cn.clone();
        self.users.get_mut(sam).unwrap().place = place;
        format!(
            "dn: {dn}\nchangetype: modrdn\nnewrdn: CN={cn}\ndeleteoldrdn: 1\nnewsuperior: {}\n\n",
            self.container(place)
        )
    }

    fn rename_sub(&mut self, name: &str) -> String {
        let dn = self.ou_sub();
        self.sub = name.into();
        format!("dn: {dn}\nchangetype: modrdn\nnewrdn: OU={name}\ndeleteoldrdn: 1\n\n")
    }

    fn add_member(&mut self, group: &str, sam: &str) -> String {
        self.groups.get_mut(group).unwrap().members.insert(sam.into());
        format!("dn: {}\nchangetype: modify\nadd: member\nmember: {}\n-\n\n", self.group_dn(group), self.dn(sam))
    }

    fn remove_member(&mut self, group: &str, sam: &str) -> String {
        self.groups.get_mut(group).unwrap().members.remove(sam);
        format!("dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n-\n\n", self.group_dn(group), self.dn(sam))
    }
}

/// The number of write requests that turn the tenant from `before` into `after` with single
/// requests (`bulk = false`): one per created, changed, deactivated or deleted user, one PATCH per
/// group whose members changed, one create per new group.
fn writes_between(before: &Snapshot, after: &Snapshot) -> u64 {
    let mut n = 0;
    for (guid, (_, want)) in &after.users {
        n += match (before.users.get(guid).map(|(_, w)| w), want) {
            (None, _) => 1,
            (Some(Want::Gone), Want::Gone) => 0,
            (Some(old), new) => u64::from(old != new),
        };
    }
    n += before.users.keys().filter(|guid| !after.users.contains_key(*guid)).count() as u64;
    for (guid, (_, members)) in &after.groups {
        n += match before.groups.get(guid) {
            None => 1 + u64::from(!members.is_empty()),
            // Additions and removals are separate PATCHes (one refused form cannot take the other down).
            Some((_, old)) => {
                u64::from(members.difference(old).next().is_some())
                    + u64::from(old.difference(members).next().is_some())
            }
        };
    }
    n
}

// ------------------------------------------------------------------------------------ AD helpers

// --------------------------------------------------------------------------------- tenant checks

/// Where the tenant differs from `want` (empty: exact). Also: no duplicate externalId or userName.
fn differences(agent: &Agent, want: &Snapshot) -> Vec<String> {
    let mut diffs = Vec::new();
    let users = agent.tenant(ResourceKind::User);
    let mut by_guid: BTreeMap<String, &Value> = BTreeMap::new();
    let mut names = BTreeSet::new();
    let mut id_to_guid = BTreeMap::new();
    for u in &users {
        let guid = u["externalId"].as_str().unwrap_or_default().to_owned();
        id_to_guid.insert(u["id"].as_str().unwrap_or_default().to_owned(), guid.clone());
        if by_guid.insert(guid.clone(), u).is_some() {
            diffs.push(format!("duplicate externalId {guid}"));
        }
        let name = u["userName"].as_str().unwrap_or_default().to_lowercase();
        if !names.insert(name.clone()) {
            diffs.push(format!("duplicate userName {name}"));
        }
    }
    for guid in by_guid.keys().filter(|g| !want.users.contains_key(*g)) {
        diffs.push(format!("unexpected user {guid} ({})", by_guid[guid]["userName"]));
    }
    for (guid, (sam, w)) in &want.users {
        let Some(u) = by_guid.get(guid) else {
            diffs.push(format!("missing user {sam} ({guid}): want {w:?}"));
            continue;
        };
        let mut check = |what: &str, got: &Value, expected: Value| {
            if *got != expected {
                diffs.push(format!("{sam}: {what} is {got}, want {expected}"));
            }
        };
        match w {
            Want::Gone => check("active (left the scope)", &u["active"], Value::Bool(false)),
            Want::Live { user_name, given, sn, mail, title, department, active } => {
                check("userName", &u["userName"], Value::from(user_name.as_str()));
                check("givenName", &u["name"]["givenName"], Value::from(given.as_str()));
                check("familyName", &u["name"]["familyName"], Value::from(sn.as_str()));
                check("mail", &u["emails"][0]["value"], Value::from(mail.as_str()));
                check("title", &u["title"], title.as_deref().map_or(Value::Null, Value::from));
                let enterprise = &u[ausi::sync::map::ENTERPRISE_SCHEMA];
                check("department", &enterprise["department"], department.as_deref().map_or(Value::Null, Value::from));
                check("active", &u["active"], Value::Bool(*active));
            }
        }
    }
    let groups = agent.tenant(ResourceKind::Group);
    let mut seen = BTreeSet::new();
    for g in &groups {
        let guid = g["externalId"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(guid.clone()) {
            diffs.push(format!("duplicate group externalId {guid}"));
        }
        let Some((name, members)) = want.groups.get(&guid) else {
            diffs.push(format!("unexpected group {guid} ({})", g["displayName"]));
            continue;
        };
        if g["displayName"] != name.as_str() {
            diffs.push(format!("group {name}: displayName {}", g["displayName"]));
        }
        let got: BTreeSet<String> = g["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let id = m["value"].as_str().unwrap_or_default();
                        id_to_guid.get(id).cloned().unwrap_or_else(|| format!("unknown id {id}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if got != *members {
            let sam_of = |guid: &String| want.users.get(guid).map_or_else(|| guid.clone(), |(sam, _)| sam.clone());
            let extra: Vec<String> = got.difference(members).map(sam_of).collect();
            let missing: Vec<String> = members.difference(&got).map(sam_of).collect();
            diffs.push(format!("group {name}: members not expected {extra:?}, members missing {missing:?}"));
        }
    }
    for (guid, (name, _)) in &want.groups {
        if !seen.contains(guid) {
            diffs.push(format!("missing group {name} ({guid})"));
        }
    }
    diffs
}

fn assert_tenant(agent: &Agent, want: &Snapshot, context: &str, report: &Value) {
    let diffs = differences(agent, want);
    assert!(
        diffs.is_empty(),
        "{context}: the tenant is not as expected:\n  {}\nthe run's report:\n{}",
        diffs.join("\n  "),
        excerpt(report)
    );
}

/// `ausi --config … sync ARGS -o json` (like [`Agent::sync`]); when the run did not end with 0 or
/// 1, the last lines of its stderr go into the report as `stderr`, for the failure message.
fn sync(agent: &Agent, args: &[&str]) -> (i32, Value) {
    let mut cmd = common::ausi();
    let r = common::run(cmd.args(["--config", agent.cfg(), "sync"]).args(args).args(["--output", "json"]));
    let mut report = r.json();
    assert_eq!(report["exit_code"].as_i64(), Some(i64::from(r.code)), "exit_code field vs process exit code");
    if r.code != 0 && r.code != 1 {
        let tail: Vec<&str> = r.stderr.lines().rev().take(40).collect();
        report["stderr"] = Value::from(tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    (r.code, report)
}

/// A delta run (no `--full`): a delta, no fallback, exit 0 or 1 as given.
fn delta(agent: &Agent, exit: i32, context: &str) -> Value {
    let (code, report) = sync(agent, &[]);
    assert_eq!(code, exit, "{context}: exit code; report:\n{}", excerpt(&report));
    assert_eq!(mode(&report), "delta", "{context}: mode; report:\n{}", excerpt(&report));
    assert!(
        report["data"].get("fallback").is_none_or(Value::is_null),
        "{context}: a delta with a fallback:\n{}",
        excerpt(&report)
    );
    report
}

/// A run that must change nothing: a delta, 0 writes, nothing created, updated or removed.
fn quiet_delta(agent: &Agent, exit: i32, context: &str) -> Value {
    let report = delta(agent, exit, context);
    assert_eq!(writes(&report), 0, "{context}: a delta with nothing to do wrote:\n{}", excerpt(&report));
    for name in ["created", "adopted", "updated", "deactivated", "deleted", "membership_changes", "failed"] {
        assert_eq!(count(&report, name), 0, "{context}: counts.{name}:\n{}", excerpt(&report));
    }
    report
}

/// A full sync must find nothing to fix after the deltas (the delta ends where the full ends).
fn quiet_full(agent: &Agent, exit: i32, context: &str) {
    let (code, report) = sync(agent, &["--full"]);
    assert_eq!(code, exit, "{context}: exit code; report:\n{}", excerpt(&report));
    assert_eq!(mode(&report), "full", "{context}");
    assert_eq!(writes(&report), 0, "{context}: a full sync after the deltas still had to write:\n{}", excerpt(&report));
}

/// A run that should have been a delta but fell back to a full sync with `code`.
fn fallback(agent: &Agent, code: &str, context: &str) -> (i32, Value) {
    let (exit, report) = sync(agent, &[]);
    assert!(exit == 0 || exit == 1, "{context}: exit {exit}:\n{}", excerpt(&report));
    assert_eq!(mode(&report), "full", "{context}: mode:\n{}", excerpt(&report));
    assert_eq!(report["data"]["fallback"]["code"], code, "{context}: fallback:\n{}", excerpt(&report));
    let message = report["data"]["fallback"]["message"].as_str().unwrap_or_default();
    assert!(!message.trim().is_empty(), "{context}: a fallback says why in words:\n{}", excerpt(&report));
    (exit, report)
}

// ---------------------------------------------------------------------------------- state store

fn state_db(agent: &Agent) -> std::path::PathBuf {
    agent.config.with_file_name("state.db")
}

/// The stored watermarks: (dc, invocation_id, usn, taken_at, scope).
fn watermarks(agent: &Agent) -> Vec<(String, String, i64, String, String)> {
    let conn = rusqlite::Connection::open(state_db(agent)).unwrap();
    let mut stmt = conn.prepare("SELECT dc, invocation_id, usn, taken_at, scope FROM watermarks ORDER BY dc").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Runs one statement on the agent's state store (the agent is not running).
fn edit_state(agent: &Agent, sql: &str) -> usize {
    let conn = rusqlite::Connection::open(state_db(agent)).unwrap();
    conn.execute(sql, []).unwrap()
}

// ------------------------------------------------------------------------------------- scenarios

/// Single requests, so that "exactly those writes" can be counted request by request; the small
/// scopes of these tests lose more than 10 % of their users in one run, on purpose.
const SINGLE_REQUESTS: &str = "[sync]\nbulk = false\nmax_deletion_percent = 100\n";

#[test]
fn one_delta_applies_exactly_the_changes() {
    let Some(tb) = testbed() else { return };
    let _shared = shared();
    let mut m = Model::new("One");
    let _sandbox = Sandbox { tb: &tb, root: m.root.clone() };
    let u: Vec<String> = (0..8).map(|i| m.user(&format!("u{i}"), Place::In, i != 7)).collect();
    let s: Vec<String> = (0..2).map(|i| m.user(&format!("s{i}"), Place::Sub, true)).collect();
    let o0 = m.user("o0", Place::Out, true);
    let g1 = m.group("G1", &[&u[0], &u[1], &u[4], &u[5], &s[0]]);
    let g2 = m.group("G2", &[&u[2], &u[3], &o0, &u[7]]);
    m.create(&tb);

    let agent = tb.agent(&[&m.ou_in()], SINGLE_REQUESTS);
    let (code, first) = sync(&agent, &["--full"]);
    assert_eq!(code, 1, "one user is quarantined (no mail):\n{}", excerpt(&first));
    assert_eq!(mode(&first), "full");
    let before = m.synced();
    assert_tenant(&agent, &before, "after the full sync", &first);
    assert_eq!(
        common::rules_by_dn(&first["data"]["quarantined"], "reasons").keys().cloned().collect::<BTreeSet<_>>(),
        m.quarantined()
    );
    assert_eq!(watermarks(&agent).len(), 1, "a successful run leaves one watermark (one DC)");

    // Everything the issue lists, in one go.
    let mut change = String::new();
    change += &m.set(&u[0], "title", "Chief Delta Officer");
    change += &m.set(&u[1], "department", "Research");
    change += &m.set(&u[2], "givenName", "Renamed");
    change += &m.disable(&u[3]);
    change += &m.add_member(&g1, &u[6]);
    change += &m.remove_member(&g2, &u[2]);
    change += &m.delete(&u[4]);
    change += &m.move_to(&u[5], Place::Out);
    change += &m.move_to(&o0, Place::In);
    let sub_users: Vec<String> = s.iter().map(|sam| m.u(sam).guid.clone()).collect();
    change += &m.rename_sub("Sub2");
    change += &m.set(&u[7], "mail", &format!("{}@example.test", u[7]));
    tb.ldap_modify(&change);

    let report = delta(&agent, 0, "the delta (the quarantined user is fixed: exit 0)");
    let after = m.synced();
    assert_tenant(&agent, &after, "after one delta", &report);
    // 3 updates + 1 disable + 2 deactivations (deleted, moved out) + 2 creates (moved in, fixed)
    // + per group whose members changed, 1 PATCH adding and 1 removing; the OU rename costs nothing.
    let expected = writes_between(&before, &after);
    assert_eq!(expected, 12, "the model's own count (fix the test)");
    assert_eq!(writes(&report), expected, "exactly the writes the changes need:\n{}", excerpt(&report));
    let c = |n| count(&report, n);
    assert_eq!(
        (
            c("created"),
            c("updated"),
            c("deactivated"),
            c("deleted"),
            c("membership_changes"),
            c("quarantined"),
            c("failed")
        ),
        (2, 4, 2, 0, 2, 0, 0),
        "counts (created, updated, deactivated, deleted, membership_changes, quarantined, failed):\n{}",
        excerpt(&report)
    );
    let updated: BTreeSet<&str> = report["data"]["plan"]["updates"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["guid"].as_str()).collect())
        .unwrap_or_default();
    for guid in &sub_users {
        assert!(!updated.contains(guid.as_str()), "the OU rename alone updated {guid}:\n{}", excerpt(&report));
    }
    // Each update names what changed against the body last sent.
    for update in report["data"]["plan"]["updates"].as_array().into_iter().flatten() {
        let changed = update["changed"].as_array().map_or(0, Vec::len);
        assert!(changed > 0, "an update without its changed attributes: {update}\n{}", excerpt(&report));
    }
    let released: Vec<&str> = report["data"]["plan"]["released"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(released, vec![m.u(&u[7]).guid.as_str()], "the fixed user leaves the quarantine:\n{}", excerpt(&report));
    assert!(report["data"]["quarantined"].as_array().is_some_and(Vec::is_empty), "{}", excerpt(&report));
    for key in ["peak_rss_bytes", "cpu_user_ms", "cpu_sys_ms"] {
        assert!(report["data"]["resources"][key].is_u64(), "data.resources.{key}:\n{}", excerpt(&report));
    }

    // Nothing changed since: nothing is written, and a full sync agrees there is nothing to do.
    let again = quiet_delta(&agent, 0, "the second delta");
    assert_tenant(&agent, &after, "after the second delta", &again);
    quiet_full(&agent, 0, "a full sync after the deltas");
}

#[test]
fn a_watermark_from_another_dc_forces_an_exact_full_sync() {
    let Some(tb) = testbed() else { return };
    let _shared = shared();
    let mut m = Model::new("Dc");
    let _sandbox = Sandbox { tb: &tb, root: m.root.clone() };
    let u: Vec<String> = (0..6).map(|i| m.user(&format!("u{i}"), Place::In, true)).collect();
    m.group("G1", &[&u[0], &u[1], &u[2]]);
    m.create(&tb);
    let agent = tb.agent(&[&m.ou_in()], SINGLE_REQUESTS);
    let (code, first) = sync(&agent, &["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&first));
    m.synced();

    tb.ldap_modify(&m.set(&u[0], "title", "Restored"));
    let rows = edit_state(&agent, "UPDATE watermarks SET invocation_id = 'something-else'");
    assert_eq!(rows, 1, "one watermark to change");
    let (exit, report) = fallback(&agent, "dc-changed", "after a restore / another DC");
    assert_eq!(exit, 0);
    let want = m.synced();
    assert_tenant(&agent, &want, "after the dc-changed full sync", &report);
    assert_eq!(writes(&report), 1, "only the changed user is written:\n{}", excerpt(&report));
    assert_eq!(
        (count(&report, "created"), count(&report, "adopted"), count(&report, "updated")),
        (0, 0, 1),
        "{}",
        excerpt(&report)
    );
    let marks = watermarks(&agent);
    assert!(
        marks.len() == 1 && marks[0].1 != "something-else",
        "the full sync stored the DC's real invocationId: {marks:?}"
    );

    let again = quiet_delta(&agent, 0, "the delta after the dc-changed full sync");
    assert_tenant(&agent, &want, "after the delta", &again);
}

#[test]
fn an_expired_watermark_forces_a_full_sync() {
    let Some(tb) = testbed() else { return };
    let _shared = shared();
    let mut m = Model::new("Old");
    let _sandbox = Sandbox { tb: &tb, root: m.root.clone() };
    let u: Vec<String> = (0..3).map(|i| m.user(&format!("u{i}"), Place::In, true)).collect();
    m.create(&tb);
    let agent = tb.agent(&[&m.ou_in()], SINGLE_REQUESTS);
    let (code, first) = sync(&agent, &["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&first));
    m.synced();

    // Older than any tombstone lifetime: deletions since then may be gone for good.
    tb.ldap_modify(&m.set(&u[1], "department", "Archive"));
    assert_eq!(edit_state(&agent, "UPDATE watermarks SET taken_at = '2001-01-01T00:00:00Z'"), 1);
    let (exit, report) = fallback(&agent, "watermark-expired", "a watermark from 2001");
    assert_eq!(exit, 0);
    let want = m.synced();
    assert_tenant(&agent, &want, "after the watermark-expired full sync", &report);
    assert_eq!(writes(&report), 1, "only the changed user is written:\n{}", excerpt(&report));
    quiet_delta(&agent, 0, "the delta after it");
}

#[test]
fn scope_change_forces_a_full_sync() {
    let Some(tb) = testbed() else { return };
    let _shared = shared();
    let mut m = Model::new("Scope");
    let _sandbox = Sandbox { tb: &tb, root: m.root.clone() };
    let u: Vec<String> = (0..3).map(|i| m.user(&format!("u{i}"), Place::In, true)).collect();
    let o: Vec<String> = (0..2).map(|i| m.user(&format!("o{i}"), Place::Out, true)).collect();
    m.group("G1", &[&u[0], &o[0], &o[1]]);
    m.create(&tb);
    let agent = tb.agent(&[&m.ou_in()], SINGLE_REQUESTS);
    let (code, first) = sync(&agent, &["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&first));
    let before = m.synced();
    quiet_delta(&agent, 0, "a delta before the scope changes");

    let r =
        common::run(common::ausi().args(["--config", agent.cfg(), "select-ous", "--add", &m.ou_out(), "-o", "json"]));
    assert_eq!(r.code, 0, "select-ous --add: {}{}", r.stdout, r.stderr);
    m.out_selected = true;
    let (exit, report) = fallback(&agent, "scope-changed", "after select-ous --add");
    assert_eq!(exit, 0);
    let after = m.synced();
    assert_tenant(&agent, &after, "after the scope-changed full sync", &report);
    // Two users created, one group PATCH (they are members).
    assert_eq!(writes(&report), writes_between(&before, &after), "{}", excerpt(&report));
    assert_eq!(count(&report, "created"), 2, "{}", excerpt(&report));
    quiet_delta(&agent, 0, "the delta after the scope-changed full sync");

    // An LDIF export carries no change tracking: a full sync, which says so.
    let export = agent.dir.path().join("export.ldif");
    let out = Process::new("ldapsearch")
        .env("LDAPTLS_CACERT", &tb.ca)
        .args(["-LLL", "-x", "-H", &tb.ldaps, "-D", &tb.bind_dn, "-y", &tb.bind_pw_file, "-b", &m.root])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&export, &out.stdout).unwrap();
    let (code, report) = sync(&agent, &["--source", &format!("ldif:{}", export.display())]);
    assert_eq!(code, 0, "{}", excerpt(&report));
    assert_eq!(mode(&report), "full", "{}", excerpt(&report));
    assert_eq!(report["data"]["fallback"]["code"], "no-change-tracking", "{}", excerpt(&report));
    assert_eq!(writes(&report), 0, "the export holds what the tenant has:\n{}", excerpt(&report));
}

#[test]
fn under_on_remove_delete_a_tombstone_deletes_the_user() {
    let Some(tb) = testbed() else { return };
    let _shared = shared();
    let mut m = Model::new("Del");
    let _sandbox = Sandbox { tb: &tb, root: m.root.clone() };
    let u: Vec<String> = (0..4).map(|i| m.user(&format!("u{i}"), Place::In, true)).collect();
    let g1 = m.group("G1", &[&u[0], &u[1], &u[2]]);
    m.create(&tb);
    m.delete_on_remove = true;
    let agent = tb.agent(&[&m.ou_in()], &format!("{SINGLE_REQUESTS}on_remove = \"delete\"\n"));
    let (code, first) = sync(&agent, &["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&first));
    let before = m.synced();

    let mut change = m.delete(&u[0]);
    change += &m.move_to(&u[1], Place::Out);
    change += &m.remove_member(&g1, &u[2]);
    tb.ldap_modify(&change);
    let report = delta(&agent, 0, "the delta after a delete and a move out");
    let after = m.synced();
    assert_tenant(&agent, &after, "after the delta", &report);
    let actions: BTreeMap<&str, &str> = report["data"]["plan"]["removals"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| Some((r["guid"].as_str()?, r["action"].as_str()?))).collect())
        .unwrap_or_default();
    let want: BTreeMap<&str, &str> =
        [(m.u(&u[0]).guid.as_str(), "delete"), (m.u(&u[1]).guid.as_str(), "delete")].into();
    assert_eq!(actions, want, "removals:\n{}", excerpt(&report));
    assert_eq!(count(&report, "deleted"), 2, "{}", excerpt(&report));
    assert_eq!(writes(&report), writes_between(&before, &after), "{}", excerpt(&report));
    quiet_delta(&agent, 0, "the delta after it");
    quiet_full(&agent, 0, "a full sync after the deltas");
}

// ----------------------------------------------------------------------------------------- SIGKILL

/// `ausi --config … sync -o json` (a delta) as a child process, its report to `stdout`.
fn spawn_delta(agent: &Agent, stdout: &Path) -> Child {
    Process::new(assert_cmd::cargo::cargo_bin("ausi"))
        .args(["--config", agent.cfg(), "sync", "-o", "json"])
        .env_remove("AUSI_CONFIG")
        .env_remove("AUSI_SOURCE")
        .env_remove("AUSI_OUTPUT")
        .env_remove("AUSI_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(stdout).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ausi")
}

#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// After this long.
    After(Duration),
    /// As soon as the tenant shows the first change of the round.
    FirstWrite,
}

#[test]
fn sigkill_during_a_delta_misses_nothing() {
    let Some(tb) = testbed() else { return };
    let _shared = shared();
    let started = Instant::now();
    let mut m = Model::new("Kill");
    let _sandbox = Sandbox { tb: &tb, root: m.root.clone() };
    let u: Vec<String> = (0..60).map(|i| m.user(&format!("u{i}"), Place::In, true)).collect();
    let g1 = m.group("G1", &u[..20].iter().collect::<Vec<_>>());
    m.create(&tb);
    let agent = tb.agent(&[&m.ou_in()], SINGLE_REQUESTS);
    let (code, first) = sync(&agent, &["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&first));
    let state = m.synced();
    assert_tenant(&agent, &state, "after the full sync", &first);

    // Every live user's title, one member removed by deleting it, one member added.
    let round = |m: &mut Model, r: usize| {
        let mut ldif = String::new();
        let live: Vec<String> = m.users.values().filter(|x| m.live(x)).map(|x| x.sam.clone()).collect();
        for sam in &live {
            ldif += &m.set(sam, "title", &format!("Round {r}"));
        }
        ldif += &m.delete(&u[19 - r]);
        ldif += &m.add_member(&g1, &u[30 + r]);
        ldif
    };

    // An uninterrupted delta, timed, spreads the kill points over a real run.
    tb.ldap_modify(&round(&mut m, 0));
    let clock = Instant::now();
    let report = delta(&agent, 0, "the timed delta");
    let took = clock.elapsed();
    let next = m.synced();
    assert_tenant(&agent, &next, "after the timed delta", &report);
    assert_eq!(writes(&report), writes_between(&state, &next), "{}", excerpt(&report));
    eprintln!("SIGKILL: an uninterrupted delta of {} writes takes {} ms", writes(&report), took.as_millis());

    let points = [
        KillAt::After(Duration::ZERO),
        KillAt::After(Duration::from_millis(50)),
        KillAt::After(took.mul_f64(0.3)),
        KillAt::After(took.mul_f64(0.6)),
        KillAt::After(took.mul_f64(0.9)),
        // Last, so that the reruns start from a run killed half-way through its writes.
        KillAt::FirstWrite,
    ];
    let mut half_applied = 0;
    for (i, point) in points.into_iter().enumerate() {
        let r = i + 1;
        let label = format!("round {r}, SIGKILL {point:?}");
        tb.ldap_modify(&round(&mut m, r));
        let at_start = m.clone();
        let marks_before = watermarks(&agent);
        let out = agent.dir.path().join(format!("kill{r}.json"));
        let mut child = spawn_delta(&agent, &out);
        // A change while the run runs: above the watermark the run read, or in what it read.
        let racing = m.set(&u[40], "department", &format!("Racing {r}"));
        let (finished, status) = std::thread::scope(|scope| {
            let racer = scope.spawn(|| tb.ldap_modify(&racing));
            match point {
                KillAt::After(d) => std::thread::sleep(d),
                KillAt::FirstWrite => {
                    let title = format!("Round {r}");
                    let seen = wait_until(Duration::from_secs(30), || {
                        child.try_wait().unwrap().is_some()
                            || agent.tenant(ResourceKind::User).iter().any(|x| x["title"] == title.as_str())
                    });
                    assert!(seen, "{label}: no write within 30 s");
                }
            }
            let finished = child.try_wait().unwrap();
            child.kill().ok();
            let status = child.wait().unwrap();
            racer.join().unwrap();
            (finished, status)
        });
        let marks_after = watermarks(&agent);
        let tenant_titles =
            agent.tenant(ResourceKind::User).iter().filter(|x| x["title"] == format!("Round {r}").as_str()).count();
        eprintln!(
            "SIGKILL {label}: {}, {tenant_titles} users with this round's title, watermark {}",
            if finished.is_some() { format!("the run had finished ({status})") } else { "killed".to_owned() },
            if marks_after == marks_before { "kept" } else { "advanced" }
        );
        let live = at_start.users.values().filter(|x| at_start.live(x)).count();
        if finished.is_none() && marks_after == marks_before && tenant_titles > 0 && tenant_titles < live {
            half_applied += 1;
        }
        if marks_after != marks_before {
            // The run stored a new watermark: everything changed before it started is applied.
            let with_race = m.snapshot();
            let without = at_start.snapshot();
            let diffs = differences(&agent, &without);
            if !diffs.is_empty() && !differences(&agent, &with_race).is_empty() {
                let report = std::fs::read_to_string(&out).unwrap_or_default();
                panic!(
                    "{label}: the watermark advanced past changes the tenant does not have:\n  {}\nreport: {report}",
                    diffs.join("\n  ")
                );
            }
        }
        // And one more change after the kill.
        tb.ldap_modify(&m.set(&u[41], "givenName", &format!("After{r}")));
    }

    assert!(half_applied > 0, "no run was killed between its first and its last write: the test proved nothing");

    // The reruns: deltas from a watermark that did not run ahead of the tenant.
    let mut last = Value::Null;
    for attempt in 0..3 {
        let (code, report) = sync(&agent, &[]);
        eprintln!(
            "SIGKILL rerun {attempt}: exit {code}, mode {}, {} writes",
            mode(&report),
            report["data"]["write_requests"]
        );
        let done = code == 0 || code == 1;
        last = report;
        if done {
            break;
        }
    }
    assert_eq!(last["exit_code"], 0, "the rerun:\n{}", excerpt(&last));
    assert_eq!(
        mode(&last),
        "delta",
        "a killed delta needs no full sync (and a full one would hide a lost change):\n{}",
        excerpt(&last)
    );
    let want = m.synced();
    assert_tenant(&agent, &want, "after the kills and a rerun", &last);
    quiet_delta(&agent, 0, "the delta after the rerun");
    quiet_full(&agent, 0, "a full sync after the rerun");
    eprintln!("SIGKILL: {:.1} s in all", started.elapsed().as_secs_f64());
}

// --------------------------------------------------------------------------------------- no-op

#[test]
fn a_no_op_delta_reads_a_handful_of_entries_and_writes_nothing() {
    let Some(tb) = testbed() else { return };
    let mut m = Model::new("Noop");
    let sandbox = Sandbox { tb: &tb, root: m.root.clone() };
    let u: Vec<String> = (0..30).map(|i| m.user(&format!("u{i}"), Place::In, true)).collect();
    m.group("G1", &u[..10].iter().collect::<Vec<_>>());
    m.create(&tb);
    let agent = tb.agent(&[&m.ou_in()], SINGLE_REQUESTS);
    {
        // No other test of this file deletes anything meanwhile (a delta reads new tombstones).
        let _exclusive = exclusive();
        let (code, first) = sync(&agent, &["--full"]);
        assert_eq!(code, 0, "{}", excerpt(&first));
        let full_read = first["data"]["read"]["entries"].as_u64().unwrap_or_else(|| panic!("{}", excerpt(&first)));
        assert!(full_read >= 31, "the full sync read the scope: {}", excerpt(&first));
        let want = m.synced();
        let report = quiet_delta(&agent, 0, "a no-op delta");
        let read = report["data"]["read"]["entries"].as_u64().unwrap_or_else(|| panic!("{}", excerpt(&report)));
        assert!(
            read <= 10,
            "a no-op delta read {read} entries (the full sync read {full_read}):\n{}",
            excerpt(&report)
        );
        assert!(
            count(&report, "unchanged") <= read,
            "a no-op delta counts only what it read as unchanged:\n{}",
            excerpt(&report)
        );
        assert_tenant(&agent, &want, "after a no-op delta", &report);
    }
    drop(sandbox);
}

/// A group renamed in AD is written again (PUT): the write must carry its members, because a
/// PUT replaces the whole resource (scim2-server, like the RFC, drops a member list left out).
#[test]
fn a_renamed_group_keeps_its_members() {
    let Some(tb) = testbed() else { return };
    let _shared = shared();
    let mut m = Model::new("Ren");
    let _sandbox = Sandbox { tb: &tb, root: m.root.clone() };
    let a = m.user("a", Place::In, true);
    let b = m.user("b", Place::In, true);
    let cn = m.group("G", &[&a, &b]);
    m.create(&tb);
    let agent = tb.agent(&[&m.ou_in()], SINGLE_REQUESTS);
    let (code, first) = sync(&agent, &["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&first));

    let renamed = format!("{cn} renamed");
    tb.ldap_modify(&format!("dn: {}\nchangetype: modrdn\nnewrdn: CN={renamed}\ndeleteoldrdn: 1\n\n", m.group_dn(&cn)));
    let report = delta(&agent, 0, "after the rename");
    assert_eq!(writes(&report), 1, "one PUT for the renamed group:\n{}", excerpt(&report));
    assert_eq!(count(&report, "updated"), 1, "{}", excerpt(&report));
    let groups = agent.tenant(ausi::tenant::ResourceKind::Group);
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["displayName"], renamed.as_str());
    let members = groups[0]["members"].as_array().map_or(0, Vec::len);
    assert_eq!(members, 2, "the PUT kept both members: {}", groups[0]);
    quiet_delta(&agent, 0, "after the rename");
    quiet_full(&agent, 0, "after the rename");
}

/// `sync --dry-run --user` explains one user from the mirror: its rules, the SCIM resource (with
/// the manager's tenant id) and what the run would do, before and after it is provisioned.
#[test]
fn sync_user_explains_one_user_with_its_manager() {
    let Some(tb) = testbed() else { return };
    let _shared = shared();
    let mut m = Model::new("Usr");
    let _sandbox = Sandbox { tb: &tb, root: m.root.clone() };
    let boss = m.user("boss", Place::In, true);
    let worker = m.user("w", Place::In, true);
    m.create(&tb);
    tb.ldap_modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: manager\nmanager: {}\n-\n\n",
        m.dn(&worker),
        m.dn(&boss)
    ));
    let agent = tb.agent(&[&m.ou_in()], SINGLE_REQUESTS);
    let upn = m.u(&worker).upn();

    let (code, before) = sync(&agent, &["--dry-run", "--user", &upn]);
    assert_eq!(code, 0, "{}", excerpt(&before));
    let story = &before["data"]["user"];
    assert_eq!(story["in_scope"], true, "{story}");
    assert_eq!(story["operation"], "create", "{story}");
    assert!(story["rules"]["checks"].as_array().is_some_and(|c| c.iter().all(|c| c["passed"] == true)), "{story}");
    assert_eq!(story["scim"]["userName"], upn.as_str(), "{story}");

    let (code, full) = sync(&agent, &["--full"]);
    assert_eq!(code, 0, "{}", excerpt(&full));
    let users = agent.tenant(ausi::tenant::ResourceKind::User);
    let boss_id = users.iter().find(|u| u["userName"] == m.u(&boss).upn().as_str()).unwrap()["id"].clone();
    let (code, after) = sync(&agent, &["--dry-run", "--user", &upn]);
    assert_eq!(code, 0, "{}", excerpt(&after));
    let story = &after["data"]["user"];
    assert_eq!(story["operation"], "unchanged", "a delta that did not touch the user: {story}");
    let manager = &story["scim"]["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"];
    assert_eq!(*manager, boss_id, "{story}");
    let (_, nobody) = sync(&agent, &["--dry-run", "--user", "nobody@example.test"]);
    assert_eq!(nobody["data"]["user"]["in_scope"], false, "{}", excerpt(&nobody));
}

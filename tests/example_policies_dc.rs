//! The three worked policies of `examples/policies/` end to end on the testbed's Samba AD DC and a
//! fresh scim2-server tenant each (skipped without them, like tests/scoping.rs). Each test seeds
//! its own subtree `OU=Ex<label><tag>,DC=example,DC=test` with users and groups built for the
//! example, pastes the example file into agent.toml as an admin would (changing only what the
//! example tells the admin to change), runs `sync --full`, reads the tenant back and compares
//! every user's and group's attributes with what this file computes from the seeded data — by
//! plain string work here, never by ausi's mapping code. Then a delta and a full sync write
//! nothing.

#![allow(clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use ausi::tenant::ResourceKind;
use common::report::{excerpt, mode, writes};
use common::testbed::{Agent, Sandbox, Testbed, testbed};
use serde_json::{Map, Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The placeholder objectGUID the contractors example tells the admin to replace.
const PLACEHOLDER_GROUP: &str = "00000000-0000-0000-0000-000000000000";

fn example(file: &str) -> String {
    let path = format!("{}/examples/policies/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A user as the test writes it to the DC; `None` leaves the attribute unset.
#[derive(Clone, Default)]
struct U {
    upn: String,
    given: String,
    sn: String,
    display: Option<String>,
    mail: Option<String>,
    title: Option<String>,
    phone: Option<String>,
    employee_number: Option<String>,
    department: Option<String>,
    /// Another user of the tree (by name).
    manager: Option<String>,
    disabled: bool,
    /// Further attributes (proxyAddresses, departmentNumber, employeeType), in the DC's spelling.
    extra: Vec<(&'static str, Vec<String>)>,
}

impl U {
    fn get(&self, attribute: &str) -> Vec<String> {
        self.extra.iter().filter(|(a, _)| a.eq_ignore_ascii_case(attribute)).flat_map(|(_, v)| v.clone()).collect()
    }
}

/// The subtree a test creates: `OU=In` (selected) holding every user and group.
struct Tree {
    tag: String,
    root: String,
    users: BTreeMap<String, U>,
    /// name → member names (users or groups of this tree)
    groups: BTreeMap<String, Vec<String>>,
    /// name (user or group) → objectGUID, once created
    guids: BTreeMap<String, String>,
}

impl Tree {
    fn new(label: &str) -> Tree {
        let tag = common::unique_tag();
        Tree {
            root: format!("OU=Ex{label}{tag},DC=example,DC=test"),
            tag,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            guids: BTreeMap::new(),
        }
    }

    fn ou_in(&self) -> String {
        format!("OU=In,{}", self.root)
    }

    /// sAMAccountName (at most 20 characters: names are one or two letters).
    fn sam(&self, name: &str) -> String {
        format!("s{}{name}", self.tag)
    }

    fn cn(&self, name: &str) -> String {
        if self.groups.contains_key(name) { format!("G {name} {}", self.tag) } else { format!("U {name} {}", self.tag) }
    }

    fn dn(&self, name: &str) -> String {
        format!("CN={},{}", self.cn(name), self.ou_in())
    }

    fn create(&mut self, tb: &Testbed) {
        let mut ldif = String::new();
        let label = self.root[3..].split(',').next().unwrap().to_owned();
        for (dn, ou) in [(self.root.clone(), label), (self.ou_in(), "In".to_owned())] {
            ldif += &format!("dn: {dn}\nchangetype: add\nobjectClass: organizationalUnit\nou: {ou}\n\n");
        }
        for (name, u) in &self.users {
            ldif += &format!(
                "dn: {}\nchangetype: add\nobjectClass: user\nsAMAccountName: {}\nuserPrincipalName: {}\ngivenName: {}\nsn: {}\n",
                self.dn(name),
                self.sam(name),
                u.upn,
                u.given,
                u.sn
            );
            for (attribute, value) in [
                ("displayName", &u.display),
                ("mail", &u.mail),
                ("title", &u.title),
                ("telephoneNumber", &u.phone),
                ("employeeNumber", &u.employee_number),
                ("department", &u.department),
            ] {
                if let Some(v) = value {
                    ldif += &format!("{attribute}: {v}\n");
                }
            }
            for (attribute, values) in &u.extra {
                for v in values {
                    ldif += &format!("{attribute}: {v}\n");
                }
            }
            ldif += &format!("userAccountControl: {}\n\n", if u.disabled { 546 } else { 544 });
        }
        for (name, u) in &self.users {
            if let Some(m) = &u.manager {
                ldif += &format!(
                    "dn: {}\nchangetype: modify\nreplace: manager\nmanager: {}\n-\n\n",
                    self.dn(name),
                    self.dn(m)
                );
            }
        }
        // Groups first without members (a member may be a group created later), then the members.
        for name in self.groups.keys() {
            ldif += &format!(
                "dn: {}\nchangetype: add\nobjectClass: group\nsAMAccountName: g{}{name}\n\n",
                self.dn(name),
                self.tag
            );
        }
        for (name, members) in &self.groups {
            if !members.is_empty() {
                ldif += &format!("dn: {}\nchangetype: modify\nadd: member\n", self.dn(name));
                for m in members {
                    ldif += &format!("member: {}\n", self.dn(m));
                }
                ldif += "-\n\n";
            }
        }
        tb.ldap_modify(&ldif);
        let by_sam = tb.object_guids(&self.root);
        for name in self.users.keys() {
            self.guids.insert(name.clone(), by_sam[&self.sam(name).to_lowercase()].clone());
        }
        for name in self.groups.keys() {
            self.guids.insert(name.clone(), by_sam[&format!("g{}{name}", self.tag).to_lowercase()].clone());
        }
    }

    /// The users reached from `group` through any chain of groups (cycles end).
    fn closure(&self, group: &str) -> BTreeSet<String> {
        let (mut users, mut seen, mut todo) = (BTreeSet::new(), BTreeSet::new(), vec![group.to_owned()]);
        while let Some(g) = todo.pop() {
            if !seen.insert(g.clone()) {
                continue;
            }
            for m in &self.groups[&g] {
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

/// What one user maps to under a policy: the values that differ between the examples.
struct Mapped {
    user_name: String,
    email: Option<String>,
    cost_center: Option<String>,
}

/// The User resource a user of `t` must be in the tenant (without `id`, `meta` and server-side
/// `groups`): Default's mapping with the policy's `m`, written out from the seeded values.
/// `ids` is externalId → the tenant's id (for the manager reference).
fn expected_user(t: &Tree, name: &str, m: &Mapped, ids: &BTreeMap<String, String>) -> Value {
    let u = &t.users[name];
    let mut v = Map::new();
    v.insert("externalId".into(), json!(t.guids[name]));
    v.insert("userName".into(), json!(m.user_name));
    v.insert("name".into(), json!({"givenName": u.given, "familyName": u.sn}));
    v.insert("displayName".into(), json!(u.display.clone().unwrap_or_else(|| format!("{} {}", u.given, u.sn))));
    if let Some(e) = &m.email {
        v.insert("emails".into(), json!([{"value": e, "type": "work", "primary": true}]));
    }
    v.insert("active".into(), json!(!u.disabled));
    if let Some(title) = &u.title {
        v.insert("title".into(), json!(title));
    }
    if let Some(phone) = &u.phone {
        v.insert("phoneNumbers".into(), json!([{"value": phone, "type": "work"}]));
    }
    let mut enterprise = Map::new();
    for (key, value) in
        [("employeeNumber", &u.employee_number), ("costCenter", &m.cost_center), ("department", &u.department)]
    {
        if let Some(x) = value {
            enterprise.insert(key.into(), json!(x));
        }
    }
    if let Some(manager) = &u.manager {
        enterprise.insert("manager".into(), json!({"value": ids[&t.guids[manager]]}));
    }
    let mut schemas = vec![USER];
    if !enterprise.is_empty() {
        v.insert(ENTERPRISE.into(), Value::Object(enterprise));
        schemas.push(ENTERPRISE);
    }
    v.insert("schemas".into(), json!(schemas));
    Value::Object(v)
}

/// A resource as compared: without what the server adds (`id`, `meta`, a User's `groups`), the
/// schemas sorted, and the manager reference reduced to its `value` (servers add `$ref`).
fn comparable(resource: &Value) -> Value {
    let mut r = resource.clone();
    let o = r.as_object_mut().unwrap();
    for key in ["id", "meta", "groups"] {
        o.remove(key);
    }
    if let Some(Value::Array(s)) = o.get_mut("schemas") {
        s.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    if let Some(manager) = o.get_mut(ENTERPRISE).and_then(|e| e.get_mut("manager")).and_then(Value::as_object_mut) {
        manager.retain(|k, _| k == "value");
    }
    r
}

/// An agent for `OU=In` of `t` whose active policy is `policy`, with `pasted` (the example's
/// text) at the end of agent.toml.
fn agent(tb: &Testbed, t: &Tree, policy: &str, pasted: &str) -> Agent {
    let agent = tb.agent(&[&t.ou_in()], "[sync]\nbulk = false\n");
    let text = std::fs::read_to_string(&agent.config).unwrap();
    assert!(text.contains("provisioning_policy = \"Default\""), "{text}");
    let text = text.replacen("provisioning_policy = \"Default\"", &format!("provisioning_policy = \"{policy}\""), 1);
    std::fs::write(&agent.config, format!("{text}\n{pasted}\n")).unwrap();
    agent
}

/// Runs `sync --full`, checks the tenant holds exactly `users` (name → mapped values) and
/// `groups` (name → member names), that the quarantine is exactly `quarantined` (name → rules),
/// then that a delta and a full sync write nothing.
fn sync_and_compare(
    agent: &Agent,
    t: &Tree,
    users: &BTreeMap<String, Mapped>,
    groups: &BTreeMap<String, BTreeSet<String>>,
    quarantined: &BTreeMap<String, BTreeSet<&str>>,
) {
    let (code, report) = agent.sync(&["--full"]);
    let want_code = if quarantined.is_empty() { 0 } else { 1 };
    assert_eq!(code, want_code, "exit code of the full sync:\n{}", excerpt(&report));
    assert_eq!(mode(&report), "full");
    let got_q = common::rules_by_dn(&report["data"]["quarantined"], "reasons");
    let want_q: BTreeMap<String, BTreeSet<String>> = quarantined
        .iter()
        .map(|(name, rules)| {
            let dn = ausi::directory::Dn::parse(&t.dn(name)).unwrap().normalized();
            (dn, rules.iter().map(|r| r.to_string()).collect())
        })
        .collect();
    assert_eq!(got_q, want_q, "the quarantine:\n{}", excerpt(&report));

    let tenant_users = agent.tenant(ResourceKind::User);
    let tenant_groups = agent.tenant(ResourceKind::Group);
    let ids: BTreeMap<String, String> = tenant_users
        .iter()
        .chain(&tenant_groups)
        .map(|r| (r["externalId"].as_str().unwrap().to_owned(), r["id"].as_str().unwrap().to_owned()))
        .collect();
    let external: BTreeMap<&str, &str> = ids.iter().map(|(e, i)| (i.as_str(), e.as_str())).collect();

    let got: BTreeMap<String, Value> =
        tenant_users.iter().map(|u| (u["externalId"].as_str().unwrap().to_owned(), comparable(u))).collect();
    let want: BTreeMap<String, Value> =
        users.iter().map(|(name, m)| (t.guids[name].clone(), expected_user(t, name, m, &ids))).collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the tenant's users");
    for (guid, w) in &want {
        assert_eq!(
            &got[guid],
            w,
            "user {guid}:\n{}\nwant\n{}",
            serde_json::to_string_pretty(&got[guid]).unwrap(),
            serde_json::to_string_pretty(w).unwrap()
        );
    }

    let got: BTreeMap<String, Value> = tenant_groups
        .iter()
        .map(|g| {
            let mut g = comparable(g);
            let members: BTreeSet<&str> = g
                .get("members")
                .and_then(Value::as_array)
                .map(|ms| ms.iter().map(|m| external[m["value"].as_str().unwrap()]).collect())
                .unwrap_or_default();
            let members = json!(members);
            let o = g.as_object_mut().unwrap();
            o.remove("members");
            o.insert("members".into(), members);
            (o["externalId"].as_str().unwrap().to_owned(), g)
        })
        .collect();
    let want: BTreeMap<String, Value> = groups
        .iter()
        .map(|(name, members)| {
            let members: BTreeSet<&str> = members.iter().map(|m| t.guids[m].as_str()).collect();
            let g =
                json!({"externalId": t.guids[name], "displayName": t.cn(name), "members": members, "schemas": [GROUP]});
            (t.guids[name].clone(), g)
        })
        .collect();
    assert_eq!(got, want, "the tenant's groups (members by externalId)");

    for args in [&[][..], &["--full"][..]] {
        let (code, report) = agent.sync(args);
        assert_eq!(code, want_code, "sync {args:?}:\n{}", excerpt(&report));
        assert_eq!(writes(&report), 0, "sync {args:?} after the full sync writes nothing:\n{}", excerpt(&report));
    }
}

fn user(upn: &str, given: &str, sn: &str, mail: Option<&str>) -> U {
    U { upn: upn.into(), given: given.into(), sn: sn.into(), mail: mail.map(Into::into), ..U::default() }
}

#[test]
fn upn_suffix_rewrite_on_the_dc() {
    let Some(tb) = testbed() else { return };
    let mut t = Tree::new("Upn");
    let _sandbox = Sandbox { tb: &tb, root: t.root.clone() };
    let tag = t.tag.clone();
    let at = |local: &str, suffix: &str| format!("{local}{tag}@{suffix}");
    let mail = |local: &str| Some(format!("{local}{tag}@mail.example"));
    let mut full = user(&at("ann", "corp.local"), "Ann", "Lee", mail("ann").as_deref());
    full.display = Some("Ann Lee (Buying)".into());
    full.title = Some("Buyer".into());
    full.phone = Some("+1 555 0100".into());
    full.employee_number = Some("0042".into());
    full.department = Some("Sales".into());
    full.manager = Some("d".into());
    t.users.insert("a".into(), full);
    // The suffix in capitals (and the local part too), and in mixed case on a disabled account.
    t.users.insert("b".into(), user(&at("BOB", "CORP.LOCAL"), "Bob", "Ray", mail("bob").as_deref()));
    let mut cy = user(&at("cy", "Corp.Local"), "Cy", "Moe", mail("cy").as_deref());
    cy.disabled = true;
    t.users.insert("c".into(), cy);
    // Another suffix, and `corp.local` that is not the suffix: sent as they are.
    t.users.insert("d".into(), user(&at("dee", "example.test"), "Dee", "Fox", mail("dee").as_deref()));
    t.users.insert("e".into(), user(&at("eve", "corp.local.example.net"), "Eve", "Ng", mail("eve").as_deref()));
    // Two accounts that differ only by the suffix become one userName: both are held back.
    t.users.insert("f".into(), user(&at("fay", "corp.local"), "Fay", "Old", mail("fay").as_deref()));
    t.users.insert("g".into(), user(&at("fay", "example.com"), "Fay", "New", mail("fay2").as_deref()));
    t.groups.insert("Inner".into(), vec!["c".into(), "f".into()]);
    t.groups.insert("Outer".into(), vec!["a".into(), "b".into(), "Inner".into()]);
    t.create(&tb);

    let agent = agent(&tb, &t, "UpnSuffixRewrite", &example("upn-suffix-rewrite.toml"));
    // Computed here: a UPN ending in `@corp.local` in any case gets `@example.com` instead.
    let rewrite = |upn: &str| match upn.len().checked_sub("@corp.local".len()) {
        Some(cut) if upn[cut..].eq_ignore_ascii_case("@corp.local") => format!("{}@example.com", &upn[..cut]),
        _ => upn.to_owned(),
    };
    let names: BTreeMap<String, String> = t.users.iter().map(|(n, u)| (n.clone(), rewrite(&u.upn))).collect();
    assert_eq!(names["b"], format!("BOB{tag}@example.com"), "fix the test");
    assert_eq!(names["f"], names["g"], "fix the test");
    // userName.duplicate: compared without regard to case, every holder held back.
    let clash = |n: &str| names.iter().filter(|(o, v)| *o != n && v.eq_ignore_ascii_case(&names[n])).count() > 0;
    let quarantined: BTreeMap<String, BTreeSet<&str>> =
        t.users.keys().filter(|n| clash(n)).map(|n| (n.clone(), BTreeSet::from(["userName.duplicate"]))).collect();
    assert_eq!(quarantined.len(), 2, "fix the test");
    let users: BTreeMap<String, Mapped> = t
        .users
        .iter()
        .filter(|(n, _)| !quarantined.contains_key(*n))
        .map(|(n, u)| (n.clone(), Mapped { user_name: names[n].clone(), email: u.mail.clone(), cost_center: None }))
        .collect();
    // Default's groups: nested, each lists its provisioned users and its groups.
    let groups: BTreeMap<String, BTreeSet<String>> = t
        .groups
        .iter()
        .map(|(g, ms)| {
            (g.clone(), ms.iter().filter(|m| users.contains_key(*m) || t.groups.contains_key(*m)).cloned().collect())
        })
        .collect();
    sync_and_compare(&agent, &t, &users, &groups, &quarantined);
}

#[test]
fn mail_from_proxy_addresses_on_the_dc() {
    let Some(tb) = testbed() else { return };
    let mut t = Tree::new("Mail");
    let _sandbox = Sandbox { tb: &tb, root: t.root.clone() };
    let tag = t.tag.clone();
    let addr = |local: &str, domain: &str| format!("{local}{tag}@{domain}");
    let proxies = |values: &[String]| ("proxyAddresses", values.to_vec());
    let cost = |c: &str| ("departmentNumber", vec![c.to_owned()]);
    let base = |n: &str, given: &str, mail: Option<String>| {
        let mut u = user(&addr(n, "example.test"), given, "Proxy", mail.as_deref());
        u.department = Some("Sales".into());
        u
    };
    // The primary SMTP address (in mixed case, sent as written) wins over mail; secondary and
    // X500 addresses are ignored.
    let mut a = base("ann", "Ann", Some(addr("ann.old", "mail.example")));
    a.employee_number = Some("0007".into());
    a.extra = vec![
        proxies(&[
            format!("smtp:{}", addr("ann", "old.example")),
            format!("SMTP:{}", addr("Ann.Proxy", "Mail.Example")),
            "X500:/o=Org/ou=Exchange/cn=Recipients/cn=ann".into(),
        ]),
        cost("CC-4711"),
    ];
    t.users.insert("a".into(), a);
    // Only secondary addresses: mail. No cost centre: none sent.
    let mut b = base("ben", "Ben", Some(addr("ben", "mail.example")));
    b.extra = vec![proxies(&[format!("smtp:{}", addr("ben", "old.example"))])];
    t.users.insert("b".into(), b);
    // No proxyAddresses at all, no department: mail, and the cost centre alone.
    let mut c = base("cy", "Cy", Some(addr("cy", "mail.example")));
    c.department = None;
    c.extra = vec![cost("CC-0815")];
    t.users.insert("c".into(), c);
    // Neither a primary SMTP address nor mail: no email, which is required (mapped.required).
    let mut d = base("dee", "Dee", None);
    d.extra = vec![proxies(&[format!("smtp:{}", addr("dee", "old.example"))])];
    t.users.insert("d".into(), d);
    // Two primary addresses: bad data, never guessed (mapping.error).
    let mut e = base("eve", "Eve", Some(addr("eve", "mail.example")));
    e.extra = vec![proxies(&[
        format!("SMTP:{}", addr("eve", "one.example")),
        format!("SMTP:{}", addr("eve", "two.example")),
    ])];
    t.users.insert("e".into(), e);
    t.groups.insert("All".into(), t.users.keys().cloned().collect());
    t.create(&tb);

    // Samba's schema has no Exchange extensionAttribute1; the example tells an admin to use the
    // attribute the directory fills, for example departmentNumber: that is the only change.
    let shipped = example("mail-from-proxyaddresses.toml");
    assert_eq!(shipped.matches("'[extensionAttribute1]'").count(), 1, "the example changed: fix the test");
    let pasted = shipped.replace("'[extensionAttribute1]'", "'[departmentNumber]'");
    let agent = agent(&tb, &t, "MailFromProxyAddresses", &pasted);

    // Computed here: the value written `SMTP:` (upper case) without the prefix, else mail.
    let primaries = |u: &U| -> Vec<String> {
        u.get("proxyAddresses").iter().filter_map(|p| p.strip_prefix("SMTP:").map(str::to_owned)).collect()
    };
    let mut users = BTreeMap::new();
    let mut quarantined = BTreeMap::new();
    for (n, u) in &t.users {
        let p = primaries(u);
        let email = match p.as_slice() {
            [] => u.mail.clone(),
            [one] => Some(one.clone()),
            _ => {
                quarantined.insert(n.clone(), BTreeSet::from(["mapping.error"]));
                continue;
            }
        };
        if email.is_none() {
            quarantined.insert(n.clone(), BTreeSet::from(["mapped.required"]));
            continue;
        }
        let cost_center = u.get("departmentNumber").first().cloned();
        users.insert(n.clone(), Mapped { user_name: u.upn.clone(), email, cost_center });
    }
    assert_eq!((users.len(), quarantined.len()), (3, 2), "fix the test");
    assert_eq!(users["a"].email.as_deref(), Some(addr("Ann.Proxy", "Mail.Example").as_str()), "fix the test");
    let groups = BTreeMap::from([("All".to_owned(), users.keys().cloned().collect())]);
    sync_and_compare(&agent, &t, &users, &groups, &quarantined);
}

#[test]
fn contractors_out_one_group_flattened_on_the_dc() {
    let Some(tb) = testbed() else { return };
    let mut t = Tree::new("Flat");
    let _sandbox = Sandbox { tb: &tb, root: t.root.clone() };
    let tag = t.tag.clone();
    for (n, given, employee_type) in [
        ("a", "Ann", Some("Employee")),
        ("b", "Ben", None),
        ("c", "Cy", Some("contractor")),
        ("d", "Dee", Some("Employee")),
        ("e", "Eve", Some("Employee")),
        ("f", "Fay", Some("CONTRACTOR")),
        ("g", "Gus", Some("Contractor Lead")),
    ] {
        let mut u = user(&format!("{n}{tag}@example.test"), given, "Flat", Some(&format!("{n}{tag}@mail.example")));
        if let Some(v) = employee_type {
            u.extra = vec![("employeeType", vec![v.to_owned()])];
        }
        t.users.insert(n.into(), u);
    }
    // Staff → Team → SubTeam: d and f are members two levels down; e is only in Other; g is
    // in Team, with an employeeType that merely starts with "Contractor".
    t.groups.insert("Staff".into(), vec!["a".into(), "c".into(), "Team".into()]);
    t.groups.insert("Team".into(), vec!["b".into(), "g".into(), "SubTeam".into()]);
    t.groups.insert("SubTeam".into(), vec!["d".into(), "f".into()]);
    t.groups.insert("Other".into(), vec!["a".into(), "e".into(), "Team".into()]);
    t.create(&tb);

    // The admin's one change: the placeholder becomes the scoping group's objectGUID.
    let shipped = example("contractors-out-one-group-flattened.toml");
    assert_eq!(shipped.matches(PLACEHOLDER_GROUP).count(), 1, "the example changed: fix the test");
    let agent = agent(&tb, &t, "StaffOnlyFlattened", &shipped.replace(PLACEHOLDER_GROUP, &t.guids["Staff"]));

    // Computed here: in Staff's closure, and employeeType is not "Contractor" in any case.
    let staff = t.closure("Staff");
    let in_scope = |n: &str| {
        staff.contains(n) && !t.users[n].get("employeeType").iter().any(|v| v.eq_ignore_ascii_case("contractor"))
    };
    let users: BTreeMap<String, Mapped> = t
        .users
        .iter()
        .filter(|(n, _)| in_scope(n))
        .map(|(n, u)| (n.clone(), Mapped { user_name: u.upn.clone(), email: u.mail.clone(), cost_center: None }))
        .collect();
    assert_eq!(users.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "b", "d", "g"], "fix the test");
    // Flattened: every group of the OU lists the provisioned users it reaches, and no group.
    let groups: BTreeMap<String, BTreeSet<String>> = t
        .groups
        .keys()
        .map(|g| (g.clone(), t.closure(g).into_iter().filter(|u| users.contains_key(u)).collect()))
        .collect();
    assert_eq!(groups["Other"], BTreeSet::from(["a".to_owned(), "b".into(), "d".into(), "g".into()]), "fix the test");
    sync_and_compare(&agent, &t, &users, &groups, &BTreeMap::new());
}

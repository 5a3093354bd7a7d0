//! A hostile export, generated here (deterministic, 1,200 users, about a third of them bad in
//! every way issue 11 and the earlier sessions found), through `validate` and through `sync`
//! into a real scim2-server tenant. The test's own model says what each user deserves:
//! every valid user synced, every bad one quarantined with the expected rules, the verdicts of
//! `validate` and `sync` identical user by user, and nothing in the tenant holding U+FFFD or a
//! control character. Runs under `scripts/test` (it needs the testbed's SCIM server).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ausi::tenant::ResourceKind;
use base64::Engine as _;
use common::testbed::testbed;
use serde_json::Value;

const USERS: usize = 1200;
/// Users `i` with `i % BLOCK` below 25 are of a hostile category (25 of 75; 23 and 24 are
/// disabled but valid; 12's partners at 30 and 31 are hostile too).
const BLOCK: usize = 75;
const GROUPS: usize = 30;
const BASE: &str = "OU=Hostile,DC=example,DC=test";

fn guid(n: u32) -> Vec<u8> {
    let mut g = vec![0xa5u8; 16];
    g[..4].copy_from_slice(&n.to_le_bytes());
    g
}

fn guid_text(bytes: &[u8]) -> String {
    ausi::directory::ObjectGuid::from_bytes(bytes).unwrap().to_string()
}

/// One entry: attribute → raw value (bytes, so that invalid UTF-8 can be written).
#[derive(Default, Clone)]
struct Entry {
    dn: String,
    attrs: Vec<(&'static str, Vec<u8>)>,
}

impl Entry {
    fn set(&mut self, name: &'static str, value: impl AsRef<[u8]>) {
        self.attrs.retain(|(n, _)| *n != name);
        self.attrs.push((name, value.as_ref().to_vec()));
    }

    fn remove(&mut self, name: &str) {
        self.attrs.retain(|(n, _)| *n != name);
    }

    fn get(&self, name: &str) -> Option<&[u8]> {
        self.attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_slice())
    }

    fn ldif(&self, out: &mut String) {
        writeln!(out, "dn: {}", self.dn).unwrap();
        for (name, value) in &self.attrs {
            let safe = value.iter().all(|b| (0x20..0x7f).contains(b))
                && !value.first().is_some_and(|b| matches!(b, b' ' | b':' | b'<'))
                && value.last() != Some(&b' ');
            if safe {
                writeln!(out, "{name}: {}", std::str::from_utf8(value).unwrap()).unwrap();
            } else {
                writeln!(out, "{name}:: {}", base64::engine::general_purpose::STANDARD.encode(value)).unwrap();
            }
        }
        out.push('\n');
    }
}

/// The export and what each user deserves: DN (normalised) → expected rules (empty: valid).
struct Model {
    users: Vec<Entry>,
    groups: Vec<(Entry, Vec<usize>)>,
    expected: BTreeMap<String, BTreeSet<String>>,
    /// Groups the tenant must not get (their name or objectGUID is bad).
    bad_groups: BTreeSet<String>,
}

fn norm(dn: &str) -> String {
    ausi::directory::Dn::parse(dn).unwrap().normalized()
}

fn rules(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn generate() -> Model {
    let uac_garbage = ["514abc", "abc", "", "0x200", "12345678901234567890"];
    let mut users = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..USERS {
        let block = i / BLOCK;
        let paired = (block ^ 1) < USERS.div_ceil(BLOCK);
        let mut e = Entry { dn: format!("CN=U{i},OU=Team{},{BASE}", i % 3), ..Entry::default() };
        e.set("objectClass", "user");
        e.set("objectGUID", guid(i as u32));
        e.set("sAMAccountName", format!("u{i}"));
        e.set("userPrincipalName", format!("u{i}@example.test"));
        e.set("givenName", format!("G{i}"));
        e.set("sn", format!("S{i}"));
        e.set("mail", format!("u{i}@example.test"));
        e.set("displayName", format!("G{i} S{i}"));
        e.set("title", "Engineer");
        e.set("userAccountControl", "512");
        let category = i % BLOCK;
        let want: &[&str] = match category {
            0 => {
                e.remove("givenName");
                &["givenName.required"]
            }
            1 => {
                e.set("sn", "\u{200b} ");
                &["sn.required"]
            }
            2 => {
                e.remove("mail");
                &["mail.required"]
            }
            3 => {
                e.remove("userPrincipalName");
                &["userPrincipalName.required"]
            }
            4 => {
                e.set("mail", format!("u{i}@localhost"));
                &["mail.syntax"]
            }
            5 => {
                e.set("userPrincipalName", format!("u {i}@example.test"));
                &["userPrincipalName.syntax"]
            }
            // 6, 7, 8: values shared by pairs of blocks (a last block without a partner is valid).
            6 => {
                e.set("mail", format!("Shared{}@example.test", block / 2));
                if paired { &["mail.duplicate"] } else { &[] }
            }
            7 => {
                let upn = format!("shared{}@example.test", block / 2);
                e.set("userPrincipalName", if block.is_multiple_of(2) { upn.to_uppercase() } else { upn });
                if paired { &["userPrincipalName.duplicate"] } else { &[] }
            }
            8 => {
                e.set("sAMAccountName", format!("twin{}", block / 2));
                if paired { &["sAMAccountName.duplicate"] } else { &[] }
            }
            9 => {
                e.remove("objectGUID");
                &["objectGUID.required"]
            }
            10 => {
                e.set("objectGUID", [1u8; 8]);
                &["objectGUID.syntax"]
            }
            11 => {
                e.set("objectGUID", [2u8; 20]);
                &["objectGUID.syntax"]
            }
            // Shares its objectGUID with user i + 18 (category 30, later in the export), and in
            // the first block with user i + 19 too: every holder is flagged.
            12 => &["objectGUID.duplicate"],
            13 => {
                e.set("givenName", b"\xff\xfeGr\xc3(ta"); // givenName:: //5HcsMoIHRh
                &["text.utf8"]
            }
            14 => {
                e.set("displayName", b"Caf\xe9 Owner"); // Latin-1, not UTF-8
                &["text.utf8"]
            }
            15 => {
                e.set("mail", b"u\x80@example.test");
                &["text.utf8"]
            }
            16 => {
                e.set("userAccountControl", uac_garbage[block % uac_garbage.len()]);
                &["userAccountControl.syntax"]
            }
            17 => {
                e.set("givenName", "Evil\u{1b}]0;pwned\u{7}");
                &["text.control"]
            }
            18 => {
                e.set("sn", "Ctl\r\nInjected");
                &["text.control"]
            }
            19 => {
                e.set("displayName", "Admin\u{202e}gpj.exe");
                &["text.control"]
            }
            20 => {
                e.set("title", "Boss\u{85}");
                &["text.control"]
            }
            21 => {
                e.set("department", "R\u{2066}D");
                &["text.control"]
            }
            // Shares its objectGUID with a group (written after the users).
            22 => &["objectGUID.duplicate"],
            // Valid, but disabled: provisioned inactive, never guessed enabled.
            23 => {
                e.set("userAccountControl", "514");
                &[]
            }
            24 => {
                e.set("userAccountControl", "-2147483134"); // 0x80000202, signed: disabled
                &[]
            }
            _ => &[],
        };
        expected.insert(norm(&e.dn), rules(want));
        users.push(e);
    }
    for i in 0..USERS {
        if i % BLOCK == 12 {
            let g = users[i].get("objectGUID").unwrap().to_vec();
            users[i + 18].set("objectGUID", &g);
            expected.insert(norm(&users[i + 18].dn), rules(&["objectGUID.duplicate"]));
            if i / BLOCK == 0 {
                users[i + 19].set("objectGUID", &g);
                expected.insert(norm(&users[i + 19].dn), rules(&["objectGUID.duplicate"]));
            }
        }
    }
    let mut groups = Vec::new();
    let mut bad_groups = BTreeSet::new();
    for j in 0..GROUPS {
        let mut g = Entry { dn: format!("CN=Group{j},OU=Groups,{BASE}"), ..Entry::default() };
        g.set("objectClass", "group");
        g.set("objectGUID", guid(100_000 + j as u32));
        g.set("cn", format!("Group{j}"));
        if j == 5 {
            g.set("cn", "Group\u{1b}[2J5");
            bad_groups.insert(norm(&g.dn));
        }
        let members: Vec<usize> = (0..40).map(|k| (j * 37 + k * 29) % USERS).collect();
        groups.push((g, members));
    }
    for i in (0..USERS).filter(|i| i % BLOCK == 22) {
        let mut g = Entry { dn: format!("CN=Twin{i},OU=Groups,{BASE}"), ..Entry::default() };
        g.set("objectClass", "group");
        g.set("objectGUID", users[i].get("objectGUID").unwrap());
        g.set("cn", format!("Twin{i}"));
        bad_groups.insert(norm(&g.dn));
        groups.push((g, vec![]));
    }
    Model { users, groups, expected, bad_groups }
}

fn write(model: &Model, path: &std::path::Path) {
    let mut out = String::from("version: 1\n\n");
    for u in &model.users {
        u.ldif(&mut out);
    }
    for (g, members) in &model.groups {
        let mut g = g.clone();
        for &m in members {
            g.attrs.push(("member", model.users[m].dn.clone().into_bytes()));
        }
        g.ldif(&mut out);
    }
    std::fs::write(path, out).unwrap();
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn a_hostile_export_quarantines_every_bad_user_by_the_same_rules_in_validate_and_sync() {
    let Some(tb) = testbed() else { return };
    let model = generate();
    let hostile = model.expected.values().filter(|r| !r.is_empty()).count();
    assert!(hostile * 100 / USERS >= 30, "{hostile} hostile users");
    // A configured policy too, for the parity under mapped rules at the end.
    let agent = tb.agent(&[], MAPPED_POLICY);
    let export = agent.dir.path().join("hostile.ldif");
    write(&model, &export);
    let source = format!("ldif:{}", export.display());

    let (code, validated) = common::json(&["validate", "--source", &source]);
    assert_eq!(code, 1, "{}", validated["data"]["summary"]);
    let (code, synced) = agent.sync(&["--full", "--source", &source]);
    assert_eq!(code, 1, "{}", synced["error"]);

    let want: BTreeMap<String, BTreeSet<String>> =
        model.expected.iter().filter(|(_, r)| !r.is_empty()).map(|(d, r)| (d.clone(), r.clone())).collect();
    let by_validate = common::rules_by_dn(&validated["data"]["users"], "problems");
    let mut by_sync = common::rules_by_dn(&synced["data"]["quarantined"], "reasons");
    let held_groups: BTreeSet<String> =
        by_sync.keys().filter(|d| d.contains("ou=groups")).cloned().collect::<BTreeSet<_>>();
    by_sync.retain(|d, _| !held_groups.contains(d));
    // User by user: the model, validate and sync agree.
    for (dn, rules) in &want {
        assert_eq!(by_validate.get(dn), Some(rules), "validate on {dn}");
        assert_eq!(by_sync.get(dn), Some(rules), "sync on {dn}");
    }
    assert_eq!(by_validate, want, "validate flags exactly the bad users");
    assert_eq!(by_sync, want, "sync quarantines exactly the bad users");
    assert_eq!(held_groups, model.bad_groups, "groups with a bad name or objectGUID are held back");
    assert_eq!(validated["data"]["summary"]["users_checked"], USERS as u64);

    // The tenant: exactly the valid users, by objectGUID, and nothing garbled.
    let tenant_users = agent.tenant(ResourceKind::User);
    let tenant_groups = agent.tenant(ResourceKind::Group);
    let valid: BTreeMap<String, &Entry> = model
        .users
        .iter()
        .filter(|u| model.expected[&norm(&u.dn)].is_empty())
        .map(|u| (guid_text(u.get("objectGUID").unwrap()), u))
        .collect();
    let got: BTreeMap<String, &Value> =
        tenant_users.iter().map(|u| (u["externalId"].as_str().unwrap().to_owned(), u)).collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), valid.keys().collect::<Vec<_>>(), "exactly the valid users");
    for (guid, entry) in &valid {
        let disabled = matches!(entry.get("userAccountControl"), Some(b"514") | Some(b"-2147483134"));
        assert_eq!(got[guid]["active"], !disabled, "{}", entry.dn);
    }
    let mut texts = Vec::new();
    for r in tenant_users.iter().chain(&tenant_groups) {
        strings(r, &mut texts);
    }
    for t in &texts {
        assert!(!t.contains('\u{fffd}'), "a replacement character reached the tenant: {t:?}");
        assert!(
            !t.chars().any(|c| ausi::sync::validate::forbidden_character(c).is_some()),
            "a control character reached the tenant: {t:?}"
        );
    }
    // Groups: the good ones, each with exactly its valid members.
    let ids: BTreeMap<&str, &str> =
        tenant_users.iter().map(|u| (u["id"].as_str().unwrap(), u["externalId"].as_str().unwrap())).collect();
    let names: BTreeSet<&str> = tenant_groups.iter().map(|g| g["displayName"].as_str().unwrap()).collect();
    assert_eq!(names.len(), GROUPS - 1, "{names:?}");
    for (g, members) in &model.groups {
        let Some(tenant_group) =
            tenant_groups.iter().find(|t| t["externalId"] == guid_text(g.get("objectGUID").unwrap()))
        else {
            assert!(model.bad_groups.contains(&norm(&g.dn)), "{} missing", g.dn);
            continue;
        };
        assert!(!model.bad_groups.contains(&norm(&g.dn)), "{} must be held", g.dn);
        let want: BTreeSet<String> = members
            .iter()
            .map(|&m| &model.users[m])
            .filter(|u| model.expected[&norm(&u.dn)].is_empty())
            .map(|u| guid_text(u.get("objectGUID").unwrap()))
            .collect();
        let got: BTreeSet<String> = tenant_group["members"]
            .as_array()
            .map(|a| a.iter().map(|m| ids[m["value"].as_str().unwrap()].to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(got, want, "members of {}", g.dn);
    }

    // Nothing changed: the next run writes nothing and says the same.
    let (code, again) = agent.sync(&["--full", "--source", &source]);
    assert_eq!(code, 1);
    assert_eq!(again["data"]["write_requests"], 0, "{}", again["data"]["counts"]);
    assert_eq!(common::rules_by_dn(&again["data"]["quarantined"], "reasons").len(), want.len() + held_groups.len());

    // Under a configured policy (mapped userName and required targets), validate --policy and a
    // sync with that policy still judge every user alike.
    let (code, validated) =
        common::json(&["--config", agent.cfg(), "validate", "--policy", "Hostile", "--source", &source]);
    assert_eq!(code, 1, "{}", validated["data"]["summary"]);
    let text = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(
        &agent.config,
        text.replace("provisioning_policy = \"Default\"", "provisioning_policy = \"Hostile\""),
    )
    .unwrap();
    let (code, synced) = agent.sync(&["--full", "--allow-renames", "100000", "--source", &source]);
    assert_eq!(code, 1, "{}", synced["error"]);
    assert_eq!(synced["data"]["policy"]["name"], "Hostile");
    let by_validate = common::rules_by_dn(&validated["data"]["users"], "problems");
    let mut by_sync = common::rules_by_dn(&synced["data"]["quarantined"], "reasons");
    by_sync.retain(|d, _| !d.contains("ou=groups"));
    assert_eq!(by_sync, by_validate, "validate --policy and sync agree user by user");
    let mapped: BTreeSet<&String> = by_validate.values().flatten().filter(|r| r.starts_with("userName.")).collect();
    assert!(!mapped.is_empty(), "the mapped rules fired: {by_validate:?}");
}

/// userName from sAMAccountName (so missing or shared ones collide), a work email required.
const MAPPED_POLICY: &str = r#"
[policies.Hostile]
required = ["userName", "emails[work,primary]"]
[policies.Hostile.user]
"userName" = 'Join("@", Trim([sAMAccountName]), "hostile.example")'
"#;

//! Integration tests against a real Samba AD domain controller on 127.0.0.1, started and seeded
//! by `scripts/testbed up` (whose env.sh these tests read). `scripts/test` runs them with
//! AUSI_REQUIRE_DC=1, so in CI a missing DC fails instead of skipping.

#![allow(clippy::print_stderr)] // a skipped test says why

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use common::testbed::{Testbed, cfg, dn, testbed, under};
use common::{ausi, json_with, run};
use serde_json::Value;

fn problem_map(report: &Value) -> BTreeMap<String, BTreeSet<String>> {
    common::rules_by_dn(&report["data"]["users"], "problems")
}

fn expected_problems(tb: &Testbed, bases: &[&str], excluded: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    tb.users()
        .iter()
        .filter(|u| under(u["dn"].as_str().unwrap(), bases, excluded))
        .filter(|u| !u["problems"].as_array().unwrap().is_empty())
        .map(|u| {
            let rules = u["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
            (dn(u["dn"].as_str().unwrap()).normalized(), rules)
        })
        .collect()
}

#[test]
fn list_ous_matches_the_seeded_tree() {
    let Some(tb) = testbed() else { return };
    let (_dir, config) = tb.config("");
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "list-ous"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["data"]["naming_context"], tb.base);
    // rootDSE discovery.
    assert_eq!(
        v["data"]["directory"]["dns_host_name"].as_str().map(str::to_lowercase).as_deref(),
        Some("dc1.example.test")
    );
    assert!(v["data"]["directory"]["highest_committed_usn"].as_u64().unwrap() > 1000);
    let rows = v["data"]["ous"].as_array().unwrap();
    for ou in tb.expected["ous"].as_array().unwrap() {
        let row = rows
            .iter()
            .find(|r| dn(r["dn"].as_str().unwrap()) == dn(ou["dn"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{} listed", ou["dn"]));
        for key in ["name", "depth", "users_direct", "groups_direct", "users_subtree", "groups_subtree"] {
            assert_eq!(row[key], ou[key], "{key} of {}", ou["dn"]);
        }
        assert_eq!(row["kind"], "ou");
        assert!(row["object_guid"].as_str().is_some_and(|g| g.len() == 36));
    }
    let users = rows.iter().find(|r| r["dn"] == format!("CN=Users,{}", tb.base)).expect("CN=Users listed");
    assert_eq!(users["kind"], "container");
    assert!(!rows.iter().any(|r| r["dn"].as_str().unwrap().starts_with("CN=System,")));
}

#[test]
fn object_guid_is_canonical() {
    let Some(tb) = testbed() else { return };
    let smb_conf = std::env::var("AUSI_TEST_SMB_CONF").unwrap();
    // samba-tool prints the objectGUID in its canonical string form: an independent oracle.
    let out = Process::new("samba-tool")
        .args(["group", "show", "Domain Users", "-s", &smb_conf, "--attributes=objectGUID"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let oracle =
        text.lines().find_map(|l| l.strip_prefix("objectGUID: ")).expect("samba-tool objectGUID").trim().to_owned();
    let (_dir, config) = tb.config("");
    let (_, v) = json_with(&mut ausi(), &["--config", cfg(&config), "list-ous"]);
    let (_, v2) = json_with(
        &mut ausi(),
        &["--config", cfg(&config), "select-ous", "--add", &format!("CN=Users,{}", tb.base), "--dry-run"],
    );
    let entering = v2["data"]["changes"]["entering"].as_array().unwrap();
    let domain_users = entering.iter().find(|o| o["sam_account_name"] == "Domain Users").expect("Domain Users");
    assert_eq!(domain_users["object_guid"], oracle.to_lowercase());
    assert!(v["data"]["ous"].as_array().unwrap().iter().all(|o| o["object_guid"].as_str().unwrap().len() == 36));
}

#[test]
fn select_ous_preview_is_exact() {
    let Some(tb) = testbed() else { return };
    let (_dir, config) = tb.config("");
    let corp = format!("OU=Corp,{}", tb.base);
    let backend = format!("OU=Backend,OU=Engineering,OU=Corp,{}", tb.base);
    let in_scope = |bases: &[&str], excluded: &[&str]| -> BTreeSet<String> {
        tb.users()
            .iter()
            .map(|u| u["dn"].as_str().unwrap())
            .filter(|d| under(d, bases, excluded))
            .map(|d| dn(d).normalized())
            .collect()
    };
    let entering = |v: &Value, kind: &str, change: &str| -> BTreeSet<String> {
        v["data"]["changes"][change]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| dn(o["dn"].as_str().unwrap()).normalized())
            .collect()
    };

    let (code, v) =
        json_with(&mut ausi(), &["--config", cfg(&config), "select-ous", "--add", &corp, "--exclude", &backend]);
    assert_eq!(code, 0, "{v}");
    let expected = in_scope(&[&corp], &[&backend]);
    assert_eq!(entering(&v, "user", "entering"), expected);
    assert_eq!(v["data"]["changes"]["users_entering"].as_u64(), Some(expected.len() as u64));
    // Groups: the one inside Corp (Eng Leads).
    let groups: BTreeSet<String> = tb.expected["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["dn"].as_str().unwrap())
        .filter(|d| under(d, &[&corp], &[&backend]))
        .map(|d| dn(d).normalized())
        .collect();
    assert_eq!(entering(&v, "group", "entering"), groups);
    assert!(std::fs::read_to_string(&config).unwrap().contains("OU=Backend"));

    // Un-excluding Backend brings exactly its users in.
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "select-ous", "--unexclude", &backend]);
    assert_eq!(code, 0);
    assert_eq!(entering(&v, "user", "entering"), in_scope(&[&backend], &[]));

    // Removing Corp sends everyone out.
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "select-ous", "--remove", &corp]);
    assert_eq!(code, 0);
    assert_eq!(entering(&v, "user", "leaving"), in_scope(&[&corp], &[]));
    assert_eq!(v["data"]["changes"]["after"]["users"], 0);
}

#[test]
fn validate_finds_exactly_the_seeded_problems() {
    let Some(tb) = testbed() else { return };
    let (_dir, config) = tb.config("");
    let corp = format!("OU=Corp,{}", tb.base);
    let partners = format!("OU=Partners,{}", tb.base);
    let (code, _) = json_with(&mut ausi(), &["--config", cfg(&config), "select-ous", "--add", &corp, &partners]);
    assert_eq!(code, 0);
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "validate"]);
    assert_eq!(code, 1);
    assert_eq!(problem_map(&v), expected_problems(&tb, &[&corp, &partners], &[]));
    let in_scope: Vec<&Value> =
        tb.users().iter().filter(|u| under(u["dn"].as_str().unwrap(), &[&corp, &partners], &[])).collect();
    let summary = &v["data"]["summary"];
    assert_eq!(summary["users_checked"].as_u64(), Some(in_scope.len() as u64));
    assert_eq!(summary["disabled"].as_u64(), Some(in_scope.iter().filter(|u| u["disabled"] == true).count() as u64));

    // The same scope from an ldapsearch export gives the same findings: one model, one set of rules.
    let export = _dir.path().join("export.ldif");
    let mut ldif = Vec::new();
    for base in [&corp, &partners] {
        let out = Process::new("ldapsearch")
            .env("LDAPTLS_CACERT", &tb.ca)
            .args([
                "-LLL",
                "-x",
                "-o",
                "ldif-wrap=76",
                "-E",
                "pr=500/noprompt",
                "-H",
                &tb.ldaps,
                "-D",
                &tb.bind_dn,
                "-y",
                &tb.bind_pw_file,
                "-b",
                base,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "ldapsearch: {}", String::from_utf8_lossy(&out.stderr));
        ldif.extend_from_slice(&out.stdout);
    }
    std::fs::write(&export, ldif).unwrap();
    let (code, v2) = json_with(&mut ausi(), &["validate", "--source", &format!("ldif:{}", export.display())]);
    assert_eq!(code, 1);
    assert_eq!(problem_map(&v2), problem_map(&v));
    assert_eq!(v2["data"]["summary"], v["data"]["summary"]);
}

#[test]
fn validate_with_an_exclusion_and_one_user() {
    let Some(tb) = testbed() else { return };
    let (_dir, config) = tb.config("");
    let corp = format!("OU=Corp,{}", tb.base);
    let backend = format!("OU=Backend,OU=Engineering,OU=Corp,{}", tb.base);
    json_with(&mut ausi(), &["--config", cfg(&config), "select-ous", "--add", &corp, "--exclude", &backend]);
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "validate"]);
    assert_eq!(code, 1);
    assert_eq!(problem_map(&v), expected_problems(&tb, &[&corp], &[&backend]));

    let problem_user = tb
        .users()
        .iter()
        .find(|u| {
            under(u["dn"].as_str().unwrap(), &[&corp], &[&backend]) && u["problems"].as_array().unwrap().len() == 1
        })
        .unwrap();
    let sam = problem_user["sam"].as_str().unwrap();
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "validate", "--user", sam]);
    assert_eq!(code, 1);
    let failed: Vec<&str> = v["data"]["user"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["rule"].as_str().unwrap())
        .collect();
    assert_eq!(failed, [problem_user["problems"][0].as_str().unwrap()]);
}

#[test]
fn computers_and_contacts_are_not_users() {
    let Some(tb) = testbed() else { return };
    let (_dir, config) = tb.config("");
    let (_, v) = json_with(&mut ausi(), &["--config", cfg(&config), "validate", "--base", &tb.base]);
    // A computer or contact taken for a user would be flagged (no userPrincipalName, no sn…).
    let flagged: BTreeSet<String> = problem_map(&v).into_keys().collect();
    for non_user in tb.expected["non_users"].as_array().unwrap() {
        assert!(!flagged.contains(&dn(non_user.as_str().unwrap()).normalized()), "{non_user} taken for a user");
    }
    // Every seeded user is checked; built-in accounts of CN=Users come on top.
    let seeded = tb.users().len() as u64;
    assert!(v["data"]["summary"]["users_checked"].as_u64().unwrap() >= seeded);
}

#[test]
fn wrong_bind_password_exits_77() {
    let Some(tb) = testbed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.pw");
    std::fs::write(&wrong, "Not-The-Password-1").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = tb.config_in(dir.path(), &wrong, "");
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "list-ous"]);
    assert_eq!(code, 77, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("rejected the bind") && message.contains("wrong password"), "{message}");
    assert!(!v.to_string().contains("Not-The-Password-1"));
}

#[test]
fn tls_is_verified_and_plaintext_binds_refused() {
    let Some(tb) = testbed() else { return };
    // Without the private CA the DC's certificate is not trusted: a configuration error.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[directory]\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"file:{}\"\n",
            tb.ldaps, tb.bind_dn, tb.bind_pw_file
        ),
    )
    .unwrap();
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "list-ous"]);
    assert_eq!(code, 78, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("TLS"), "{v}");
    // --ca-file fixes it.
    let (code, _) = json_with(&mut ausi(), &["--config", cfg(&config), "list-ous", "--ca-file", &tb.ca]);
    assert_eq!(code, 0);

    // Plain ldap:// with a simple bind is refused (the DC itself would accept it here).
    let (_d, config) = tb.config("");
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "list-ous", "--source", &tb.ldap]);
    assert_eq!(code, 78, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("clear text"));
    // StartTLS on the same port is fine.
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "list-ous", "--source", &tb.ldap, "--starttls"]);
    assert_eq!(code, 0, "{v}");
    // And the explicit opt-in allows it, loudly.
    let (_d2, config) = tb.config("allow_plaintext_bind = true\n");
    let (code, _) = json_with(&mut ausi(), &["--config", cfg(&config), "list-ous", "--source", &tb.ldap]);
    assert_eq!(code, 0);
}

#[test]
fn unreachable_dc_is_temporary() {
    let Some(tb) = testbed() else { return };
    let (_dir, config) = tb.config("connect_timeout_secs = 3\n");
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "list-ous", "--source", "ldaps://127.0.0.1:1"]);
    assert_eq!(code, 75, "{v}");
}

#[test]
fn big_group_members_are_read_in_ranges() {
    use ausi::directory::Directory;
    use ausi::directory::ldap::LdapDirectory;
    let Some(tb) = testbed() else { return };
    let big = tb.expected["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["members"].as_array().unwrap().len() > 1500)
        .expect("a group over 1500");
    let expected: BTreeSet<String> =
        big["members"].as_array().unwrap().iter().map(|m| dn(m.as_str().unwrap()).normalized()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for step in [1500, 700] {
        let settings = tb.ldap_settings(step);
        let (members, from_scan) = runtime.block_on(async {
            let mut d = LdapDirectory::connect(settings).await.unwrap();
            let group = dn(big["dn"].as_str().unwrap());
            let members = d.group_members(&group).await.unwrap();
            let info = d.info().await.unwrap();
            let query = ausi::directory::ObjectQuery { users: false, groups: true, members: true, backlinks: false };
            let mut from_scan = Vec::new();
            d.objects(
                &info.naming_context,
                query,
                &mut |o| {
                    if o.dn == group {
                        from_scan = o.members.clone()
                    }
                },
                &|_| {},
            )
            .await
            .unwrap();
            (members, from_scan)
        });
        let got: BTreeSet<String> = members.iter().cloned().collect();
        assert_eq!(got, expected, "range step {step}");
        assert_eq!(members.len(), expected.len(), "no member read twice");
        assert_eq!(from_scan.iter().cloned().collect::<BTreeSet<_>>(), expected, "paged scan, step {step}");
    }
}

#[test]
fn no_secret_reaches_any_output_or_file() {
    let Some(tb) = testbed() else { return };
    let password = tb.password();
    let dir = tempfile::tempdir().unwrap();
    let stored = dir.path().join("secrets/bind.pw");
    let config = tb.config_in(dir.path(), &stored, "");
    let c = cfg(&config);
    let mut outputs = Vec::new();
    // Give it on stdin and store it, with the most verbose logging.
    let r = run(ausi()
        .args(["--config", c, "-vvv", "list-ous", "--bind-password-stdin", "--save-bind-password", "-o", "json"])
        .write_stdin(format!("{password}\n")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    outputs.push(r);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Then use the stored secret, in every format, and fail on purpose.
    for args in [
        vec!["-vvv", "list-ous", "-o", "table"],
        vec!["-vvv", "validate", "--base", &tb.base, "-o", "jsonl"],
        vec!["-vvv", "--log-format", "json", "select-ous", "--add", "CN=Users,DC=example,DC=test", "-o", "json"],
        vec!["-vvv", "status", "-o", "json"],
        vec!["-vvv", "status", "-o", "table"],
        vec!["-vvv", "list-ous", "--bind-dn", "CN=nobody,CN=Users,DC=example,DC=test", "-o", "json"],
    ] {
        let mut full = vec!["--config", c];
        full.extend(args);
        outputs.push(run(ausi().args(&full)));
    }
    for r in &outputs {
        assert!(!r.stdout.contains(&password), "password on stdout:\n{}", r.stdout);
        assert!(!r.stderr.contains(&password), "password on stderr:\n{}", r.stderr);
    }
    assert!(outputs.last().unwrap().code == 77, "the failing bind is reported");
    // No file ausi wrote holds it, except the secret store itself.
    for entry in walk(dir.path()) {
        if entry == stored {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&password), "password in {}", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

//! End-to-end tests of the binary on LDIF exports: no domain controller needed.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{ausi, example, json, json_with, run, write_config};
use serde_json::Value;

fn problems(report: &Value) -> BTreeMap<String, BTreeSet<String>> {
    common::rules_by_dn(&report["data"]["users"], "problems")
}

fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    pairs
        .iter()
        .map(|(dn, rules)| {
            (ausi::directory::Dn::parse(dn).unwrap().normalized(), rules.iter().map(|r| r.to_string()).collect())
        })
        .collect()
}

#[test]
fn validate_flags_exactly_the_trap_users() {
    let (code, v) = json(&["validate", "--source", &example("tests/data/traps.ldif")]);
    assert_eq!(code, 1);
    let nc = "OU=Staff,DC=corp,DC=example";
    let s = |cn: &str| format!("CN={cn},{nc}");
    let expected = expect(&[
        (&s("Bad Upn"), &["userPrincipalName.syntax"]),
        (&s("Doe\\, John"), &["mail.syntax"]),
        (&s("Empty Mail"), &["mail.required"]),
        // Its givenName holds an ANSI escape (U+001B); its DN a U+202E, which is not sent.
        (&s("Evil \u{202e}Name"), &["text.control"]),
        (&s("Nbsp Surname"), &["sn.required"]),
        (
            &s("No Type Missing All"),
            &["givenName.required", "sn.required", "mail.required", "userPrincipalName.required"],
        ),
        (&s("Sam Dup A"), &["sAMAccountName.duplicate"]),
        (&format!("CN=Sam Dup B,OU=Research\\, Dev,{nc}"), &["sAMAccountName.duplicate"]),
        (&s("Trailing Space Mail"), &["mail.syntax"]),
        (&s("Two At"), &["mail.syntax"]),
        (&s("Upn Lower"), &["userPrincipalName.duplicate"]),
        (&s("Upn Upper"), &["userPrincipalName.duplicate"]),
        (&s("Zero Width"), &["givenName.required"]),
    ]);
    assert_eq!(problems(&v), expected);
    let summary = &v["data"]["summary"];
    // 18 user accounts; the computers, the gMSA, the trust account and the contact are not users.
    assert_eq!(summary["users_checked"], 18);
    assert_eq!(summary["valid"], 5);
    assert_eq!(summary["disabled"], 2);
    assert_eq!(summary["by_rule"]["mail.syntax"], 3);
    assert_eq!(summary["by_rule"]["mail.duplicate"], 0);
    let dup =
        &v["data"]["users"].as_array().unwrap().iter().find(|u| u["dn"] == s("Sam Dup A")).unwrap()["problems"][0];
    assert_eq!(dup["conflicts_with"][0], format!("CN=Sam Dup B,OU=Research\\, Dev,{nc}"));
}

#[test]
fn validate_example_export() {
    let (code, v) = json(&["validate", "--source", &example("examples/northwind.ldif")]);
    assert_eq!(code, 1);
    let summary = &v["data"]["summary"];
    assert_eq!(summary["users_checked"], 16);
    assert_eq!(summary["with_problems"], 10);
    assert_eq!(summary["disabled"], 2);
    assert_eq!(v["data"]["scope"]["from"], "export");
    let user = &v["data"]["users"][1];
    for key in ["dn", "sam_account_name", "object_guid", "user_principal_name", "disabled", "problems"] {
        assert!(user.get(key).is_some(), "problem users carry {key}");
    }
    for key in [
        "schema_version",
        "command",
        "status",
        "exit_code",
        "dry_run",
        "started_at",
        "duration_ms",
        "data",
        "warnings",
        "error",
    ] {
        assert!(v.get(key).is_some(), "envelope has {key}");
    }
    assert_eq!(v["command"], "validate");
}

#[test]
fn validate_base_limits_the_scope() {
    let (code, v) = json(&[
        "validate",
        "--source",
        &example("examples/northwind.ldif"),
        "--base",
        "OU=Engineering,OU=Staff,OU=Northwind,DC=northwind,DC=example",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["data"]["summary"]["users_checked"], 5);
    assert_eq!(v["data"]["summary"]["with_problems"], 2);
    let (code, v) = json(&[
        "validate",
        "--source",
        &example("examples/northwind.ldif"),
        "--base",
        "ou=sales,ou=staff,ou=northwind,dc=northwind,dc=example",
    ]);
    assert_eq!((code, v["data"]["summary"]["users_checked"].as_u64()), (1, Some(6)));
}

#[test]
fn validate_user_explains_rule_by_rule() {
    let src = example("examples/northwind.ldif");
    let (code, v) = json(&["validate", "--source", &src, "--user", "JLEVERLING"]);
    assert_eq!(code, 1);
    let checks = v["data"]["user"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 15, "every rule, passed or failed");
    let failed: Vec<&str> =
        checks.iter().filter(|c| c["passed"] == false).map(|c| c["rule"].as_str().unwrap()).collect();
    assert_eq!(failed, ["givenName.required"]);

    let (code, v) = json(&["validate", "--source", &src, "--user", "ndavolio@northwind.example"]);
    assert_eq!(code, 0);
    assert!(v["data"]["user"]["checks"].as_array().unwrap().iter().all(|c| c["passed"] == true));

    let (code, v) = json(&["validate", "--source", &src, "--user", "nobody"]);
    assert_eq!(code, 1);
    assert_eq!(v["status"], "findings");
    assert!(v["data"]["user"].is_null());
    assert_eq!(v["warnings"][0]["code"], "user-not-found");
}

#[test]
fn unreadable_ldif_records_are_findings_and_lose_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.ldif");
    std::fs::write(
        &path,
        "dn: CN=A,DC=x,DC=y\nobjectClass: user\nobjectGUID:: AAECAwQFBgcICQoLDA0ODw==\ngivenName: A\nsn: A\nmail: a@x.y\nuserPrincipalName: a@x.y\n\n\
         dn: CN=B,DC=x,DC=y\nthis line has no colon\n\n\
         dn: CN=C,DC=x,DC=y\nobjectClass: user\nobjectGUID:: DwAAAAAAAAAAAAAAAAAAAA==\ngivenName: C\nsn: C\nmail: c@x.y\nuserPrincipalName: c@x.y\n",
    )
    .unwrap();
    let (code, v) = json(&["validate", "--source", &format!("ldif:{}", path.display())]);
    assert_eq!(code, 1);
    assert_eq!(v["data"]["summary"]["users_checked"], 2);
    assert_eq!(v["data"]["summary"]["with_problems"], 0);
    assert_eq!(v["data"]["unreadable"][0]["location"], "line 10");
}

#[test]
fn missing_ldif_file_is_a_configuration_error() {
    let (code, v) = json(&["validate", "--source", "ldif:/nonexistent/export.ldif"]);
    assert_eq!(code, 78);
    assert!(v["error"]["message"].as_str().unwrap().contains("/nonexistent/export.ldif"));
}

#[test]
fn list_ous_tree_and_counts() {
    let (code, v) = json(&["list-ous", "--source", &example("examples/northwind.ldif")]);
    assert_eq!(code, 0);
    let ous = v["data"]["ous"].as_array().unwrap();
    let row = |dn: &str| ous.iter().find(|o| o["dn"] == dn).unwrap_or_else(|| panic!("{dn} listed"));
    let nw = row("OU=Northwind,DC=northwind,DC=example");
    assert_eq!(
        (nw["depth"].as_u64(), nw["users_direct"].as_u64(), nw["users_subtree"].as_u64()),
        (Some(1), Some(0), Some(15))
    );
    assert_eq!((nw["groups_subtree"].as_u64(), nw["kind"].as_str()), (Some(2), Some("ou")));
    let sales = row("OU=Sales,OU=Staff,OU=Northwind,DC=northwind,DC=example");
    assert_eq!((sales["depth"].as_u64(), sales["users_direct"].as_u64()), (Some(3), Some(6)));
    let finance = row("OU=Finance\\, Legal,OU=Staff,OU=Northwind,DC=northwind,DC=example");
    assert_eq!(finance["name"], "Finance, Legal");
    assert_eq!(finance["users_direct"], 3);
    // The contact in Contractors is not a user; the computer in CN=Computers is not either.
    assert_eq!(row("OU=Contractors,OU=Northwind,DC=northwind,DC=example")["users_direct"], 1);
    let computers = row("CN=Computers,DC=northwind,DC=example");
    assert_eq!((computers["kind"].as_str(), computers["users_subtree"].as_u64()), (Some("container"), Some(0)));
    assert_eq!(row("CN=Users,DC=northwind,DC=example")["users_direct"], 1);
    assert_eq!(v["data"]["totals"]["users"], 16);
    assert_eq!(v["data"]["totals"]["groups"], 2);
    // Tree order: every OU comes after its parent.
    let position = |dn: &str| ous.iter().position(|o| o["dn"] == dn).unwrap();
    assert!(
        position("OU=Northwind,DC=northwind,DC=example") < position("OU=Staff,OU=Northwind,DC=northwind,DC=example")
    );
}

#[test]
fn select_ous_previews_saves_and_follows_renames() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "# keep me\nversion = 1\n");
    let cfg = config.to_str().unwrap();
    let src = example("examples/northwind.ldif");
    let staff = "OU=Staff,OU=Northwind,DC=northwind,DC=example";
    let finance = "OU=Finance\\, Legal,OU=Staff,OU=Northwind,DC=northwind,DC=example";

    // Dry run: the preview, nothing saved.
    let (code, v) =
        json(&["--config", cfg, "select-ous", "--source", &src, "--add", staff, "--exclude", finance, "--dry-run"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["data"]["saved"], false);
    let changes = &v["data"]["changes"];
    assert_eq!((changes["users_entering"].as_u64(), changes["users_leaving"].as_u64()), (Some(11), Some(0)));
    assert_eq!(changes["after"]["users"], 11);
    assert_eq!(changes["entering"].as_array().unwrap().len(), 11);
    assert!(!std::fs::read_to_string(&config).unwrap().contains("scope"));

    // For real.
    let (code, v) = json(&["--config", cfg, "select-ous", "--source", &src, "--add", staff, "--exclude", finance]);
    assert_eq!(code, 0);
    assert_eq!(v["data"]["saved"], true);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("# keep me") && text.contains("guid"), "{text}");

    // Validate now uses the selection: Sales + Engineering users, Finance excluded.
    let (code, v) = json(&["--config", cfg, "validate", "--source", &src]);
    assert_eq!(code, 1);
    assert_eq!(v["data"]["scope"]["from"], "selection");
    assert_eq!(v["data"]["summary"]["users_checked"], 11);

    // Taking the exclusion back: the Finance users enter.
    let (code, v) = json(&["--config", cfg, "select-ous", "--source", &src, "--unexclude", finance]);
    assert_eq!(code, 0);
    assert_eq!(v["data"]["changes"]["users_entering"], 3);
    assert_eq!(v["data"]["changes"]["before"]["users"], 11);

    // The OU is renamed in the directory: the stored GUID finds it under its new DN.
    let renamed = std::fs::read_to_string(common::root().join("examples/northwind.ldif"))
        .unwrap()
        .replace("OU=Staff,OU=Northwind", "OU=Employees,OU=Northwind")
        .replace("ou: Staff", "ou: Employees");
    let renamed_path = dir.path().join("renamed.ldif");
    std::fs::write(&renamed_path, renamed).unwrap();
    let (code, v) = json(&["--config", cfg, "list-ous", "--source", &format!("ldif:{}", renamed_path.display())]);
    assert_eq!(code, 0);
    assert_eq!(v["warnings"][0]["code"], "ou-renamed");
    let employees = v["data"]["ous"].as_array().unwrap().iter().find(|o| o["name"] == "Employees").unwrap().clone();
    assert_eq!(employees["selected"], true);

    // Clearing empties the selection.
    let (code, v) = json(&["--config", cfg, "select-ous", "--source", &src, "--clear"]);
    assert_eq!(code, 0);
    assert_eq!(v["data"]["changes"]["users_leaving"], 14);
}

#[test]
fn select_ous_rejects_unknown_and_misplaced_ous() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "version = 1\n");
    let cfg = config.to_str().unwrap();
    let src = example("examples/northwind.ldif");
    let (code, v) =
        json(&["--config", cfg, "select-ous", "--source", &src, "--add", "OU=Nope,DC=northwind,DC=example"]);
    assert_eq!(code, 2);
    assert!(v["error"]["message"].as_str().unwrap().contains("OU=Nope"));
    let (code, _) = json(&[
        "--config",
        cfg,
        "select-ous",
        "--source",
        &src,
        "--exclude",
        "OU=Sales,OU=Staff,OU=Northwind,DC=northwind,DC=example",
    ]);
    assert_eq!(code, 2, "an exclusion outside any selected OU is refused");
    let (code, _) = json(&["--config", cfg, "select-ous", "--source", &src, "--add", "not a dn"]);
    assert_eq!(code, 2);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "version = 1\n", "nothing saved after a refusal");
}

#[test]
fn select_ous_by_guid() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "version = 1\n");
    let cfg = config.to_str().unwrap();
    let src = example("examples/northwind.ldif");
    let (_, list) = json(&["list-ous", "--source", &src]);
    let eng = list["data"]["ous"].as_array().unwrap().iter().find(|o| o["name"] == "Engineering").unwrap();
    let guid = eng["object_guid"].as_str().unwrap().to_uppercase();
    let (code, v) = json(&["--config", cfg, "select-ous", "--source", &src, "--add", &guid]);
    assert_eq!(code, 0);
    assert_eq!(v["data"]["selected"][0]["dn"], eng["dn"]);
    assert_eq!(v["data"]["changes"]["users_entering"], 5);
}

#[test]
fn status_shows_settings_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("bind.pw");
    std::fs::write(&pw, "Sup3r-Secret-Bind!").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = write_config(
        dir.path(),
        &format!(
            "version = 1\n[directory]\nurl = \"ldaps://dc1.example.test\"\nbind_dn = \"CN=svc,DC=example,DC=test\"\nbind_password = \"file:{}\"\n",
            pw.display()
        ),
    );
    let r = run(ausi().args(["--config", config.to_str().unwrap(), "status", "-o", "json"]));
    assert_eq!(r.code, 1, "not set up yet: {}", r.stderr);
    assert!(!r.stdout.contains("Sup3r-Secret-Bind!") && !r.stderr.contains("Sup3r-Secret-Bind!"));
    let v = r.json();
    assert_eq!(v["data"]["directory"]["bind_password"]["state"], "stored");
    assert_eq!(v["data"]["tenant"]["registered"], false);
    let r = run(ausi().args(["--config", config.to_str().unwrap(), "status", "-o", "table"]));
    assert!(r.stdout.contains("ldaps://dc1.example.test") && !r.stdout.contains("Sup3r"));
}

#[test]
fn configuration_errors_exit_78_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let (code, v) = json(&["--config", missing.to_str().unwrap(), "status"]);
    assert_eq!(code, 78);
    assert!(v["error"]["hints"][0].as_str().unwrap().contains("examples/agent.toml"));

    let config = write_config(dir.path(), "version = 1\n[directory]\nulr = \"ldaps://dc1\"\n");
    let (code, v) = json(&["--config", config.to_str().unwrap(), "status"]);
    assert_eq!(code, 78);
    assert!(v["error"]["message"].as_str().unwrap().contains("ulr"));

    let config = write_config(dir.path(), "version = 1\n[directory]\nurl = \"ldaps://127.0.0.1:1\"\n");
    let (code, v) = json(&["--config", config.to_str().unwrap(), "validate"]);
    assert_eq!(code, 78, "no OUs selected: {v}");
}

#[test]
fn password_push_needs_one_source_and_a_domain_controller() {
    let (code, _) = json(&["password-push"]);
    assert_eq!(code, 2, "--from-tenant, --user or --batch is required");
    let (code, _) = json(&["password-push", "--user", "a", "--batch", "-"]);
    assert_eq!(code, 2, "one source at a time");
    let (code, v) =
        json(&["password-push", "--user", "a", "--password-stdin", "--source", &example("examples/northwind.ldif")]);
    assert_eq!(code, 2, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("in an LDIF export"), "{v}");
    // Without a terminal, a password comes only from standard input, never an argument.
    let (code, v) = json(&["password-push", "--user", "a", "--source", "ldaps://127.0.0.1:1"]);
    assert_eq!(code, 2, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("--password-stdin"), "{v}");
}

#[test]
fn sync_needs_a_registered_agent() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "version = 1\n");
    let (code, v) = json(&["--config", config.to_str().unwrap(), "sync", "--full"]);
    assert_eq!(code, 78);
    assert!(v["error"]["message"].as_str().unwrap().contains("not registered"), "{v}");
    let (code, _) = json(&["register"]);
    assert_eq!(code, 2, "--home-realm is required");
    let (code, v) = json(&[
        "--config",
        config.to_str().unwrap(),
        "register",
        "--home-realm",
        "http://tenant.example.com",
        "--token-stdin",
    ]);
    assert_eq!(code, 78, "a token never travels over plain http to another host: {v}");
}

#[test]
fn usage_errors_exit_2_with_an_envelope() {
    let r = run(ausi().args(["validate", "--no-such-flag"]));
    assert_eq!(r.code, 2);
    let v = r.json();
    assert_eq!((v["status"].as_str(), v["exit_code"].as_i64()), (Some("error"), Some(2)));
    assert_eq!(v["command"], "validate");
    assert!(r.stderr.contains("--no-such-flag"));
    let r = run(ausi().args(["list-ous", "--bogus", "-o", "jsonl"]));
    assert_eq!((r.code, r.stdout.lines().count()), (2, 1), "jsonl: one compact line");
    let r = run(ausi().args(["validate", "--source", "ftp://x"]));
    assert_eq!(r.code, 2);
    let r = run(ausi().arg("--help"));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("list-ous"));
}

#[test]
fn jsonl_writes_items_then_the_envelope() {
    let r = run(ausi().args(["validate", "--source", &example("examples/northwind.ldif"), "--output", "jsonl"]));
    assert_eq!(r.code, 1);
    let lines: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 11);
    assert!(lines[0]["problems"].is_array());
    assert_eq!(lines[10]["command"], "validate");
    assert!(lines[10]["data"].get("users").is_none(), "the items are not repeated in the envelope");
    assert_eq!(lines[10]["data"]["summary"]["with_problems"], 10);
}

#[test]
fn table_output_is_terminal_safe() {
    let r = run(ausi().args(["validate", "--source", &example("tests/data/traps.ldif"), "--output", "table"]));
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("Bad Upn"));
    for bad in ['\u{1b}', '\u{202e}', '\u{200b}'] {
        assert!(!r.stdout.contains(bad), "{bad:?} reached the terminal");
    }
    let r = run(ausi().args(["list-ous", "--source", &example("tests/data/traps.ldif"), "--output", "json"]));
    assert!(!r.stdout.contains('\u{202e}'));
    let (_, v) = json_with(&mut ausi(), &["validate", "--source", &example("tests/data/traps.ldif"), "--user", "evil"]);
    assert_eq!(
        v["data"]["user"]["dn"], "CN=Evil \u{202e}Name,OU=Staff,DC=corp,DC=example",
        "JSON keeps the data exact"
    );
}

#[test]
fn closed_port_is_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        write_config(dir.path(), "version = 1\n[directory]\nurl = \"ldaps://127.0.0.1:1\"\nconnect_timeout_secs = 5\n");
    let (code, v) = json(&["--config", config.to_str().unwrap(), "list-ous"]);
    assert_eq!(code, 75, "{v}");
    assert_eq!(v["error"]["kind"], "temporary");
    assert!(v["error"]["message"].as_str().unwrap().contains("ldaps://127.0.0.1:1"));
}

#[test]
fn plaintext_bind_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "version = 1\n[directory]\nurl = \"ldap://127.0.0.1:1\"\nbind_dn = \"CN=svc,DC=x\"\nbind_password = \"env:AUSI_TEST_PLAINTEXT_PW\"\n",
    );
    let (code, v) = json_with(
        ausi().env("AUSI_TEST_PLAINTEXT_PW", "Pl4intext-Secret!"),
        &["--config", config.to_str().unwrap(), "list-ous"],
    );
    assert_eq!(code, 78, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("clear text"));
    assert!(!v.to_string().contains("Pl4intext-Secret!"));
}

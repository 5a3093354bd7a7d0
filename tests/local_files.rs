//! The agent's own files: the state store is private to its owner, and the secret references
//! `register` writes resolve to where it stored the secret, whatever folder it ran in.
//! The tests that register need the testbed's SCIM server (`scripts/test`, AUSI_REQUIRE_DC=1).

mod common;

use common::testbed::testbed;
use common::{ausi, json_with, run, write_config};

/// One valid user, with an objectGUID: a sync of it needs the tenant, not a DC.
const EXPORT: &str = "dn: CN=Perm Test,OU=X,DC=example,DC=test\nobjectClass: user\nobjectGUID:: AAECAwQFBgcICQoLDA0ODw==\nsAMAccountName: permtest\ngivenName: Perm\nsn: Test\nmail: permtest@example.test\nuserPrincipalName: permtest@example.test\nuserAccountControl: 512\n\n";

#[cfg(unix)]
fn warning<'a>(report: &'a serde_json::Value, code: &str) -> Option<&'a str> {
    report["warnings"].as_array()?.iter().find(|w| w["code"] == code).and_then(|w| w["message"].as_str())
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn the_state_store_is_private_and_a_readable_one_is_fixed_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let Some(tb) = testbed() else { return };
    let agent = tb.agent(&[], "");
    let export = agent.dir.path().join("one.ldif");
    std::fs::write(&export, EXPORT).unwrap();
    let source = format!("ldif:{}", export.display());
    let state = agent.dir.path().join("state.db");
    let lock = agent.dir.path().join("state.db.lock");

    let (code, report) = agent.sync(&["--full", "--source", &source]);
    assert!(code == 0 || code == 1, "{report}");
    assert!(warning(&report, "state-permissions-fixed").is_none(), "{report}");
    assert_eq!((mode(&state), mode(&lock)), (0o600, 0o600), "created private");

    // A store left readable by others (an older ausi, a copy): fixed on open, and said so.
    for file in [&state, &lock] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (code, report) = agent.sync(&["--full", "--source", &source]);
    assert!(code == 0 || code == 1, "{report}");
    assert_eq!((mode(&state), mode(&lock)), (0o600, 0o600));
    let message = warning(&report, "state-permissions-fixed").unwrap_or_else(|| panic!("no warning: {report}"));
    for file in [&state, &lock] {
        assert!(message.contains(&format!("{} (mode 0644)", file.display())), "{message}");
    }
    let (_, report) = agent.sync(&["--full", "--source", &source]);
    assert!(warning(&report, "state-permissions-fixed").is_none(), "fixed once: {report}");
}

#[test]
fn a_relative_configuration_path_keeps_the_token_where_the_next_run_reads_it() {
    let Some(tb) = testbed() else { return };
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("sub")).unwrap();
    let export = work.path().join("one.ldif");
    std::fs::write(&export, EXPORT).unwrap();
    let tenant = format!("{}/rel{}", tb.scim_url, std::process::id());
    let token = std::fs::read_to_string(&tb.scim_token_file).unwrap().trim().to_owned();
    let r = run(ausi()
        .current_dir(work.path())
        .env("AUSI_CONFIG", "sub/agent.toml")
        .args(["register", "--home-realm", &tenant, "--scim-url", &format!("{tenant}/v2"), "--agent-name", "dc1"])
        .args(["--token-stdin", "-o", "json"])
        .write_stdin(format!("{token}\n")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let config = std::fs::read_to_string(work.path().join("sub/agent.toml")).unwrap();
    assert!(config.contains("token = \"file:tenant.token\""), "relative to the configuration's folder:\n{config}");
    assert!(work.path().join("sub/tenant.token").is_file());
    assert!(!work.path().join("sub/sub").exists());

    // Read back from the same folder, and from another one through an absolute path.
    let source = format!("ldif:{}", export.display());
    let mut same = ausi();
    same.current_dir(work.path()).env("AUSI_CONFIG", "sub/agent.toml");
    let (code, report) = json_with(&mut same, &["sync", "--full", "--dry-run", "--source", &source]);
    assert!(code == 0 || code == 1, "{report}");
    let config = work.path().join("sub/agent.toml");
    let mut elsewhere = ausi();
    elsewhere.current_dir(std::env::temp_dir());
    let (code, report) =
        json_with(&mut elsewhere, &["--config", config.to_str().unwrap(), "sync", "--full", "--source", &source]);
    assert!(code == 0 || code == 1, "{report}");

    // Registering again keeps the reference as written.
    let r = run(ausi()
        .current_dir(work.path())
        .env("AUSI_CONFIG", "sub/agent.toml")
        .args(["register", "--home-realm", &tenant, "--scim-url", &format!("{tenant}/v2"), "--agent-name", "dc1"])
        .args(["--token-stdin", "-o", "json"])
        .write_stdin(format!("{token}\n")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("token = \"file:tenant.token\""), "{text}");
    assert!(!r.stdout.contains(&token) && !r.stderr.contains(&token));
}

#[test]
fn a_missing_secret_names_the_option_that_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "version = 1\n[tenant]\nhome_realm = \"http://127.0.0.1:1/t\"\nscim_url = \"http://127.0.0.1:1/t/v2\"\ntoken = \"file:tenant.token\"\n",
    );
    let c = config.to_str().unwrap();
    let (code, v) = json_with(&mut ausi(), &["--config", c, "sync", "--full", "--source", "ldif:/nonexistent.ldif"]);
    assert_eq!(code, 78, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("tenant token") && message.contains("tenant.token"), "{v}");
    let hints = v["error"]["hints"].to_string();
    assert!(hints.contains("register") && hints.contains("--token-stdin"), "{v}");
    assert!(!hints.contains("bind-password"), "{v}");

    let config = write_config(
        dir.path(),
        "version = 1\n[directory]\nurl = \"ldaps://127.0.0.1:1\"\nbind_dn = \"CN=svc,DC=example,DC=test\"\nbind_password = \"file:bind.pw\"\n",
    );
    let (code, v) = json_with(&mut ausi(), &["--config", config.to_str().unwrap(), "list-ous"]);
    assert_eq!(code, 78, "{v}");
    let hints = v["error"]["hints"].to_string();
    assert!(hints.contains("--bind-password-stdin") && !hints.contains("--token-stdin"), "{v}");
}

//! Issue 15, "the administrator's first hour": each rough edge a new user hit, as a test that
//! failed on the old behaviour.
#![allow(clippy::print_stderr)]

mod common;

use std::path::Path;

use common::{example, json, run};

const STAFF: &str = "OU=Staff,OU=Northwind,DC=northwind,DC=example";

fn example_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::copy(common::root().join("examples/agent.toml"), &path).unwrap();
    path
}

// ---------------------------------------------------------------- 1. rewriting the configuration

#[cfg(unix)]
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just created is its effective uid.
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

#[cfg(unix)]
#[test]
fn select_ous_keeps_a_0600_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = owner_and_mode(&config);
    let cfg = config.to_str().unwrap();
    let (code, v) = json(&["--config", cfg, "select-ous", "--source", &example("examples/northwind.ldif"), "--clear"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["data"]["saved"], true, "{v}");
    assert_eq!(owner_and_mode(&config), before);
}

/// As root on a file owned by another user (uid 4242, which needs no account): `select-ous`
/// and `register` keep owner, group and mode.
#[cfg(unix)]
#[test]
fn select_ous_and_register_as_root_keep_the_service_users_ownership() {
    if !is_root() {
        assert!(std::env::var("AUSI_REQUIRE_DC").ok().as_deref() != Some("1"), "scripts/test runs as root");
        eprintln!("skipped: needs root to own a file as another user");
        return;
    }
    let Some(tb) = common::testbed::testbed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    std::os::unix::fs::chown(&config, Some(4242), Some(4243)).unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = config.to_str().unwrap();

    let (code, v) = json(&["--config", cfg, "select-ous", "--source", &example("examples/northwind.ldif"), "--clear"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(owner_and_mode(&config), (4242, 4243, 0o600), "after select-ous");

    let tenant = format!("{}/fh{}", tb.scim_url, std::process::id());
    let token = std::fs::read_to_string(&tb.scim_token_file).unwrap().trim().to_owned();
    let r = run(common::ausi()
        .args(["--config", cfg, "register", "--home-realm", &tenant, "--scim-url", &format!("{tenant}/v2")])
        .args(["--agent-name", "dc1", "--token-stdin", "-o", "json"])
        .write_stdin(format!("{token}\n")));
    assert_eq!(r.code, 0, "register: {}{}", r.stdout, r.stderr);
    assert_eq!(owner_and_mode(&config), (4242, 4243, 0o600), "after register");
}

/// A non-root user cannot give the rewritten file someone else's owner: the rewrite is refused
/// (exit 78, the file untouched) instead of silently taking the file away from its owner.
#[cfg(unix)]
#[test]
fn a_rewrite_that_cannot_keep_the_owner_is_refused() {
    // Simulated without a second account: root drops to uid 4242 with setpriv when available.
    if !is_root() || std::process::Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let before = std::fs::read_to_string(&config).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("ausi");
    let ldif = common::root().join("examples/northwind.ldif");
    let copy = dir.path().join("northwind.ldif");
    std::fs::copy(&ldif, &copy).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=4242", "--regid=4242", "--clear-groups", "--"])
        .arg(&bin)
        .args(["--config", config.to_str().unwrap(), "select-ous", "-o", "json", "--clear"])
        .arg("--source")
        .arg(format!("ldif:{}", copy.display()))
        .env_remove("AUSI_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(126) || stdout.is_empty() {
        // The binary under target/ is not reachable for uid 4242 (a private home directory).
        eprintln!("skipped: uid 4242 cannot run {}: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
        return;
    }
    assert_eq!(out.status.code(), Some(78), "{stdout}");
    assert!(stdout.contains("cannot keep the owner 0:0"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    assert_eq!(owner_and_mode(&config), (0, 0, 0o666));
}

/// `register` puts `[tenant.capabilities]` right under `[tenant]`, and new sections go below the
/// comments that end the file, so uncommenting the example's `# state_path` keeps it in `[sync]`.
#[test]
fn new_sections_go_where_a_reader_expects_them() {
    use ausi::config::{ScheduleConfig, TenantConfig};
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    // The example without its [scope], as an administrator's own directory would have it.
    let start = text.find("# OUs to synchronise").unwrap();
    let end = text.find("# The identity tenant.").unwrap();
    std::fs::write(&config, format!("{}{}", &text[..start], &text[end..])).unwrap();

    let scope = ausi::config::ScopeConfig {
        ous: vec![ausi::config::OuRef { dn: STAFF.to_owned(), guid: None }],
        excluded: vec![],
    };
    ausi::config::save_scope(&config, &scope).unwrap();
    let tenant: TenantConfig = toml::from_str(
        "home_realm = \"https://t.example\"\ntoken = \"file:tenant.token\"\nagent_api = false\n\
         [capabilities]\npatch = true\nbulk = false\nfilter = true\netag = false\n",
    )
    .unwrap();
    ausi::config::save_tenant(&config, &tenant).unwrap();
    ausi::config::save_schedule(&config, &ScheduleConfig::default()).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();

    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    let tenant_at = headers.iter().position(|h| *h == "[tenant]").unwrap();
    assert_eq!(headers[tenant_at + 1], "[tenant.capabilities]", "{text}");
    let state_path = text.find("# state_path").unwrap();
    for table in ["[scope]", "[tenant]", "[schedule]"] {
        let at = text.find(&format!("\n{table}\n")).unwrap();
        assert!(at > state_path, "{table} went above [sync]'s last comments:\n{text}");
    }
    // The administrator uncomments the documented key: it still belongs to [sync].
    let edited = text.replace("# state_path = \"C:\\\\ProgramData\\\\ausi\\\\state.db\"", "state_path = \"state.db\"");
    assert_ne!(edited, text);
    ausi::config::parse(&edited).unwrap_or_else(|e| panic!("{e}\n{edited}"));
}

// ------------------------------------------------------------- 2. status of an unconfigured agent

/// Not registered, no bind password stored, nothing selected, never synced: not healthy (exit
/// 1), and the reasons are the steps still to do, in the order to do them.
#[test]
fn status_of_an_unconfigured_agent_says_what_is_missing_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "version = 1\n[directory]\nurl = \"ldaps://dc1.example.test\"\nbind_dn = \"CN=svc,DC=example,DC=test\"\n\
         bind_password = \"file:bind.pw\"\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (code, v) = json(&["--config", cfg, "status"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["data"]["healthy"], false);
    let codes: Vec<&str> =
        v["data"]["health_reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["bind-password-missing", "no-ous-selected", "not-registered", "no-sync-yet"], "{v}");

    let r = run(common::ausi().args(["--config", cfg, "status", "-o", "table"]));
    assert_eq!(r.code, 1);
    assert!(!r.stdout.contains("Healthy"), "{}", r.stdout);
    let steps: Vec<&str> = r.stdout.lines().take_while(|l| !l.starts_with('┌')).collect();
    assert!(steps[0].starts_with("NOT READY"), "{}", r.stdout);
    assert!(steps[1].contains("1.") && steps[1].contains("--save-bind-password"), "{}", r.stdout);
    assert!(steps[3].contains("3.") && steps[3].contains("ausi register"), "{}", r.stdout);
    assert!(
        r.stdout.contains("- (not registered)"),
        "no 'the tenant has no agent API' without a tenant:\n{}",
        r.stdout
    );
    assert!(!r.stdout.contains("no agent API"), "{}", r.stdout);
}

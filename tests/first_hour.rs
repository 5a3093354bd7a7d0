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

// ------------------------------------------------------------------------------ 3-5. sync and its reports

/// The `[scope]` of examples/agent.toml: Staff, without its "Finance, Legal" sub-tree.
fn example_scope() -> String {
    let text = std::fs::read_to_string(common::root().join("examples/agent.toml")).unwrap();
    let start = text.find("[scope]").unwrap();
    let end = text.find("# The identity tenant.").unwrap();
    text[start..end].to_owned()
}

fn northwind() -> String {
    example("examples/northwind.ldif")
}

/// An export of `n` valid users (and two that share a mail address) in OU=Gen.
fn generated(dir: &Path, n: usize) -> String {
    let mut text = String::new();
    for i in 0..n + 2 {
        let mail = if i < n { format!("user{i}@gen.example") } else { "shared@gen.example".to_owned() };
        use base64::Engine;
        let guid = base64::engine::general_purpose::STANDARD
            .encode([0x15, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i as u8]);
        text.push_str(&format!(
            "dn: CN=User {i},OU=Gen,DC=gen,DC=example\nobjectClass: user\nobjectGUID:: {}\ngivenName: User\nsn: N{i}\n\
             mail: {mail}\nuserPrincipalName: user{i}@gen.example\nsAMAccountName: user{i}\n\n",
            guid
        ));
    }
    let path = dir.join(format!("gen{n}.ldif"));
    std::fs::write(&path, text).unwrap();
    format!("ldif:{}", path.display())
}

/// The dry-run table says it is one, shows the mode and why, says "would …", lists every
/// planned create or says how many more, and agrees with the JSON.
#[test]
fn a_dry_run_table_says_what_would_happen() {
    let Some(tb) = common::testbed::testbed() else { return };
    let agent = tb.agent(&[], "");
    let source = generated(agent.dir.path(), 25);
    let args = ["--config", agent.cfg(), "sync", "--dry-run", "--source", &source];
    let table = run(common::ausi().args(args).args(["-o", "table"]));
    let (code, v) = json(&args);
    assert_eq!((table.code, code), (1, 1), "two users share a mail address: {}{}", table.stdout, table.stderr);
    let out = &table.stdout;
    assert!(out.starts_with("DRY RUN: nothing was written"), "{out}");
    assert_eq!(v["data"]["mode"], "full");
    let fallback = v["data"]["fallback"]["message"].as_str().unwrap();
    assert!(out.contains(&format!("mode: full sync, because {fallback}")), "{out}");
    let created = v["data"]["counts"]["created"].as_u64().unwrap();
    assert_eq!(created, 25, "{v}");
    let row = out.lines().find(|l| l.contains("would create ")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(&format!(" {created} ")), "the table's count is the JSON's: {row}");
    assert!(!out.contains("│ created") && !out.contains("plan:"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("would create CN=")).count(), 20, "{out}");
    assert!(out.contains("… and 5 more"), "{out}");
    let quarantined = v["data"]["counts"]["quarantined"].as_u64().unwrap();
    assert_eq!(out.lines().filter(|l| l.starts_with("quarantined: ")).count() as u64, quarantined, "{out}");
    assert!(out.contains("25 users and 0 groups read") || out.contains("27 users and 0 groups read"), "{out}");
}

/// A stopped dry run (deletion threshold) counts the quarantined users it lists, and its
/// removals are "would deactivate", never the Rust name of the action.
#[test]
fn a_stopped_dry_run_counts_what_it_lists() {
    let Some(tb) = common::testbed::testbed() else { return };
    let agent = tb.agent(&[], "");
    let (code, v) = agent.sync(&["--source", &generated(agent.dir.path(), 25)]);
    assert_eq!(code, 1, "{v}");
    let args = ["--config", agent.cfg(), "sync", "--dry-run", "--source", &generated(agent.dir.path(), 3)];
    let (code, v) = json(&args);
    assert_eq!(code, 3, "20 of 25 leave: above 10 %: {v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["data"]["stop"]["reason"], "deletion-threshold");
    assert_eq!(v["data"]["counts"]["quarantined"], 2, "{v}");
    let table = run(common::ausi().args(args).args(["-o", "table"]));
    let out = &table.stdout;
    let row = out.lines().find(|l| l.contains("quarantined ")).unwrap();
    assert!(row.contains(" 2 "), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("quarantined: ")).count(), 2, "{out}");
    assert!(out.contains("would deactivate CN=User 10,"), "{out}");
    let row = out.lines().find(|l| l.contains("would deactivate ")).unwrap();
    assert_eq!(v["data"]["counts"]["deactivated"], 20, "a dry run counts what it would do: {v}");
    assert!(row.contains(" 20 "), "{out}");
    assert!(out.contains("stopped before writing: deletion-threshold"), "{out}");
    assert!(!out.contains("Deactivate"), "{out}");
}

/// A selected OU that vanished stops the run (exit 3); the report is the plan it stopped, and a
/// dry run says `dry_run: true` in it.
#[test]
fn a_vanished_scope_stop_carries_its_plan() {
    let Some(tb) = common::testbed::testbed() else { return };
    let agent = tb.agent(&[], &example_scope());
    let (code, v) = agent.sync(&["--source", &northwind()]);
    assert_eq!(code, 1, "{v}");
    let created = v["data"]["counts"]["created"].as_u64().unwrap();
    assert!(created > 0, "{v}");
    // The export without OU=Staff and everything under it.
    let text = std::fs::read_to_string(common::root().join("examples/northwind.ldif")).unwrap();
    let kept: Vec<&str> = text.split("\n\n").filter(|e| !e.contains("OU=Staff,OU=Northwind")).collect();
    let path = agent.dir.path().join("no-staff.ldif");
    std::fs::write(&path, kept.join("\n\n")).unwrap();
    let source = format!("ldif:{}", path.display());
    for dry_run in [true, false] {
        let mut args = vec!["--source", source.as_str()];
        if dry_run {
            args.push("--dry-run");
        }
        let (code, v) = agent.sync(&args);
        assert_eq!(code, 3, "{v}");
        assert_eq!(v["dry_run"], dry_run, "{v}");
        let data = &v["data"];
        assert_eq!(data["stop"]["reason"], "scope-vanished", "{v}");
        assert_eq!(data["stop"]["missing"][0], STAFF, "{v}");
        let removals = data["plan"]["removals"].as_array().unwrap_or_else(|| panic!("the plan: {v}"));
        assert_eq!(removals.len() as u64, created, "everyone provisioned under Staff: {v}");
        assert_eq!(data["write_requests"], 0);
    }
}

/// `sync --dry-run --user X` exits by X's own result: a valid user is exit 0 although other
/// users in scope are quarantined; a quarantined one is 1.
#[test]
fn sync_dry_run_for_one_user_exits_by_that_user() {
    let Some(tb) = common::testbed::testbed() else { return };
    let agent = tb.agent(&[], &example_scope());
    let (code, v) = agent.sync(&["--dry-run", "--source", &northwind(), "--user", "ndavolio"]);
    assert_eq!(code, 0, "{v}");
    assert!(v["data"]["counts"]["quarantined"].as_u64().unwrap() > 0, "others are quarantined: {v}");
    assert_eq!(v["data"]["user"]["operation"], "create");
    let (code, v) = agent.sync(&["--dry-run", "--source", &northwind(), "--user", "rking"]);
    assert_eq!((code, v["data"]["user"]["operation"].as_str()), (1, Some("quarantine")), "{v}");
    let table = run(common::ausi()
        .args(["--config", agent.cfg(), "sync", "--dry-run", "--source", &northwind(), "--user", "ndavolio"])
        .args(["-o", "table"]));
    assert!(table.stdout.starts_with("DRY RUN"), "{}", table.stdout);
    assert!(table.stdout.contains("this run would: create"), "{}", table.stdout);
}

/// `validate --user X` for a user the scope leaves out says where X is and what leaves X out.
#[test]
fn validate_explains_a_user_outside_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let cfg = config.to_str().unwrap();
    let (code, v) = json(&["--config", cfg, "validate", "--source", &northwind(), "--user", "msuyama"]);
    assert_eq!(code, 1, "{v}");
    let o = &v["data"]["outside_scope"];
    assert_eq!(o["reason"], "excluded", "{v}");
    assert_eq!(o["by"][0], "OU=Finance\\, Legal,OU=Staff,OU=Northwind,DC=northwind,DC=example", "{v}");
    assert!(o["dn"].as_str().unwrap().starts_with("CN=Michael Suyama,"), "{v}");
    assert_eq!(v["warnings"][0]["code"], "user-out-of-scope", "{v}");

    let (code, v) = json(&["--config", cfg, "validate", "--source", &northwind(), "--user", "pcontractor"]);
    assert_eq!((code, v["data"]["outside_scope"]["reason"].as_str()), (1, Some("not-selected")), "{v}");
    let table = run(common::ausi()
        .args(["--config", cfg, "validate", "--source", &northwind(), "--user", "msuyama"])
        .args(["-o", "table"]));
    assert!(table.stdout.contains("excluded sub-tree OU=Finance\\, Legal"), "{}", table.stdout);
    assert!(!table.stdout.contains("not in the scope."), "{}", table.stdout);

    let (code, v) = json(&["--config", cfg, "validate", "--source", &northwind(), "--user", "nobody"]);
    assert_eq!(code, 1);
    assert!(v["data"]["outside_scope"].is_null() && v["warnings"][0]["code"] == "user-not-found", "{v}");
}

// ----------------------------------------------------------------------------------- 4. the envelope

/// A dry run that fails before it has a report still says `dry_run: true`.
#[test]
fn a_failed_dry_run_says_it_was_a_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "version = 1\n[tenant]\nhome_realm = \"https://t.example\"\ntoken = \"file:missing.token\"\n",
    )
    .unwrap();
    let (code, v) = json(&["--config", config.to_str().unwrap(), "sync", "--dry-run", "--source", &northwind()]);
    assert_eq!(code, 78, "{v}");
    assert_eq!(v["dry_run"], true, "{v}");
    let (_, v) = json(&["--config", config.to_str().unwrap(), "sync", "--source", &northwind()]);
    assert_eq!(v["dry_run"], false, "{v}");
}

/// Usage errors name the missing argument; an unknown subcommand hints `ausi --help`.
#[test]
fn usage_errors_name_what_is_missing() {
    let (code, v) = json(&["sync", "--user", "x"]);
    assert_eq!(code, 2);
    assert!(v["error"]["message"].as_str().unwrap().contains("--dry-run"), "{v}");
    let (code, v) = json(&["frobnicate"]);
    assert_eq!(code, 2);
    assert_eq!(v["error"]["hints"][0], "run `ausi --help`", "{v}");
}

/// `password-push --help` does not offer an LDIF export as --source (that is a usage error).
#[test]
fn password_push_help_offers_no_ldif_source() {
    let r = run(common::ausi().args(["password-push", "--help"]));
    assert_eq!(r.code, 0);
    let source = r.stdout.split("--source").nth(1).unwrap();
    let source = &source[..source.find("--bind-dn").unwrap_or(source.len())];
    assert!(!source.contains("ldif:"), "{source}");
    let r = run(common::ausi().args(["password-push", "--from-tenant", "--source", &northwind(), "-o", "json"]));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
}

// -------------------------------------------------------------------- 6. terminals without a size

/// Under a pseudo-terminal that reports 0×0 (`script` without a terminal of its own), tables
/// wrap at `COLUMNS`, else 80, instead of one character per column.
#[cfg(unix)]
#[test]
fn a_zero_by_zero_terminal_renders_tables_at_80_columns() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var("AUSI_REQUIRE_DC").ok().as_deref() != Some("1"), "CI has util-linux's script");
        eprintln!("skipped: no `script`");
        return;
    }
    let bin = assert_cmd::cargo::cargo_bin("ausi");
    let config = common::root().join("examples/agent.toml");
    let line = format!("{} --config {} validate --source {} -o table", bin.display(), config.display(), northwind());
    for (columns, width) in [(None, 80), (Some("100"), 100)] {
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qc", &line, "/dev/null"]).stdin(std::process::Stdio::null()).env_remove("AUSI_CONFIG");
        match columns {
            Some(c) => cmd.env("COLUMNS", c),
            None => cmd.env_remove("COLUMNS"),
        };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let top =
            text.lines().find_map(|l| l.find('┌').map(|i| &l[i..])).unwrap_or_else(|| panic!("no table:\n{text}"));
        assert_eq!(top.chars().count(), width, "{text}");
        let header = text.lines().find(|l| l.contains("Rule")).unwrap();
        assert!(header.contains("sAMAccountName"), "{text}");
        let rows = text.lines().filter(|l| l.starts_with('│')).count();
        assert!(rows < 60, "{rows} lines: the table collapsed\n{text}");
    }
}

// ------------------------------------------------------------------- 7. install-service and status

/// A state directory the hardened unit cannot see refuses the install (exit 78, nothing
/// written) unless --force; `status` then tells unit files from an enabled schedule.
#[cfg(unix)]
#[test]
fn install_service_refuses_a_service_that_cannot_work_and_status_tells_files_from_enabled() {
    let Some(tb) = common::testbed::testbed() else { return };
    let agent = tb.agent(&[], &example_scope());
    let root = agent.dir.path().join("sysroot");
    let install = |extra: &[&str]| {
        let mut args = vec!["--config", agent.cfg(), "install-service", "--scheduler", "systemd", "--root"];
        args.push(root.to_str().unwrap());
        args.extend(extra);
        json(&args)
    };
    let before = std::fs::read_to_string(&agent.config).unwrap();
    let (code, v) = install(&[]);
    assert_eq!(code, 78, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("hidden from the hardened service"), "{v}");
    assert!(v["error"]["hints"][0].as_str().unwrap().contains("--force"), "{v}");
    assert!(!root.exists(), "nothing written");
    assert_eq!(std::fs::read_to_string(&agent.config).unwrap(), before);

    let (code, v) = install(&["--force"]);
    assert_eq!(code, 0, "{v}");
    assert!(v["warnings"].as_array().unwrap().iter().any(|w| w["code"] == "state-dir-hidden-from-service"), "{v}");

    // Unit files, no timer enabled: status says so and is not healthy.
    let status = || {
        let mut cmd = common::ausi();
        cmd.env("AUSI_INSTALL_ROOT", &root);
        common::json_with(&mut cmd, &["--config", agent.cfg(), "status"])
    };
    let (code, v) = status();
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["data"]["schedule"]["enabled"], false, "{v}");
    assert!(v["data"]["health_reasons"].as_array().unwrap().iter().any(|r| r["code"] == "schedule-not-enabled"), "{v}");
    let table =
        run(common::ausi().env("AUSI_INSTALL_ROOT", &root).args(["--config", agent.cfg(), "status", "-o", "table"]));
    assert!(table.stdout.contains("NOT enabled"), "{}", table.stdout);

    // `systemctl enable` links the timer into timers.target.wants: scheduled and enabled.
    let wants = root.join("etc/systemd/system/timers.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink("../ausi-sync.timer", wants.join("ausi-sync.timer")).unwrap();
    let (_, v) = status();
    assert_eq!(v["data"]["schedule"]["enabled"], true, "{v}");
    assert!(!v["data"]["health_reasons"].as_array().unwrap().iter().any(|r| r["code"] == "schedule-not-enabled"));
}

// ------------------------------------------------------------------------------------ 8. messages

#[test]
fn messages_say_what_they_mean() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let cfg = config.to_str().unwrap();
    let register = |stdin: &str| {
        let r = run(common::ausi()
            .args(["--config", cfg, "register", "--home-realm", "http://127.0.0.1:1/t", "--token-stdin", "-o", "json"])
            .write_stdin(stdin.to_owned()));
        (r.code, r.json())
    };
    // An empty token is a token, not a password.
    let (code, v) = register("\n");
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["error"]["message"], "standard input held no token (an empty first line)", "{v}");
    // An unreachable tenant at an interactive register: no scheduled run will retry it.
    let (code, v) = register("a-token\n");
    assert_eq!(code, 75, "{v}");
    let hints = v["error"]["hints"].to_string();
    assert!(!hints.contains("scheduled run"), "{v}");
    assert!(hints.contains("ausi register") && hints.contains("http://127.0.0.1:1/t/scim/v2"), "{v}");
    assert!(!v.to_string().contains("a-token"));

    // "the tenant: the tenant refused …"
    let e = ausi::error::AppError::from(ausi::tenant::TenantError::Unauthorized { status: 401, detail: None });
    assert_eq!(e.message, "the tenant refused the token (HTTP 401)");

    // password-push and an export.
    let (code, v) = json(&["password-push", "--from-tenant", "--source", &northwind()]);
    assert_eq!(code, 2, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert_eq!(message, "cannot write passwords in an LDIF export: that needs a domain controller (ldaps://)");

    // Counts agree with their nouns.
    let example = common::root().join("examples/agent.toml");
    let r = run(common::ausi().args([
        "--config",
        example.to_str().unwrap(),
        "list-ous",
        "--source",
        &northwind(),
        "-o",
        "table",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = r.stdout.lines().last().unwrap();
    assert!(
        summary.contains(" groups") && !summary.contains(" 1 groups") && !summary.contains(" 1 users"),
        "{summary}"
    );
    let one = dir.path().join("one.ldif");
    let text = std::fs::read_to_string(common::root().join("examples/northwind.ldif")).unwrap();
    let kept: Vec<&str> = text.split("\n\n").filter(|e| !e.contains("CN=All Staff,")).collect();
    std::fs::write(&one, kept.join("\n\n")).unwrap();
    let r = run(common::ausi().args(["list-ous", "--source", &format!("ldif:{}", one.display()), "-o", "table"]));
    assert!(r.stdout.contains("and 1 group,"), "{}", r.stdout);
}

/// Tables show timestamps to the second; JSON keeps them as recorded.
#[test]
fn table_timestamps_are_to_the_second() {
    let Some(tb) = common::testbed::testbed() else { return };
    let agent = tb.agent(&[], &example_scope());
    let (code, _) = agent.sync(&["--dry-run", "--source", &northwind()]);
    assert_eq!(code, 1);
    let (_, v) = json(&["--config", agent.cfg(), "status"]);
    let started = v["data"]["state"]["last_runs"][0]["started_at"].as_str().unwrap().to_owned();
    assert!(started.contains('.'), "JSON keeps the precision: {started}");
    let r = run(common::ausi().args(["--config", agent.cfg(), "status", "-o", "table"]));
    // "10:11:39." anywhere: HH:MM:SS followed by a fraction.
    let fraction = r.stdout.as_bytes().windows(9).any(|w| {
        let d = |i: usize| w[i].is_ascii_digit();
        d(0) && d(1) && w[2] == b':' && d(3) && d(4) && w[5] == b':' && d(6) && d(7) && w[8] == b'.'
    });
    assert!(!fraction, "a fractional second in the table:\n{}", r.stdout);
    // Rounded, not cut: 10:11:39.6 shows as 10:11:40 (even across a minute or a day).
    let seconds = started.parse::<jiff::Timestamp>().unwrap().round(jiff::Unit::Second).unwrap().to_string();
    assert!(r.stdout.contains(&seconds), "{seconds} in:\n{}", r.stdout);
}

// ------------------------------------------------------------------------------ 11. scripts/bench

/// scripts/bench restores only what it stopped: a shared testbed that was down stays down, one
/// that was up comes back. Run against a testbed double that records its calls (the bench's own
/// instance "fails to start", so the benchmark stops at once and goes to its cleanup).
#[cfg(unix)]
#[test]
fn bench_restores_only_what_it_stopped() {
    if !is_root() || std::process::Command::new("python3").arg("--version").output().is_err() {
        assert!(std::env::var("AUSI_REQUIRE_DC").ok().as_deref() != Some("1"), "scripts/test runs as root");
        eprintln!("skipped: scripts/bench needs root and python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    let calls = dir.path().join("calls");
    let fake = dir.path().join("testbed");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$AUSI_TESTBED_DIR $1\" >> {calls}\ncase \"$AUSI_TESTBED_DIR $1\" in\n\
             *ausi-bench\\ up) exit 1 ;;\n\"{shared} status\") test -e {shared}.up ;;\n*) exit 0 ;;\nesac\n",
            calls = calls.display(),
            shared = shared.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for was_up in [false, true] {
        let _ = std::fs::remove_file(&calls);
        if was_up {
            std::fs::write(shared.with_extension("up"), "").unwrap();
        }
        let out = std::process::Command::new(common::root().join("scripts/bench"))
            .args(["--binary", "/bin/true", "--users", "20", "--groups", "2", "--small-users", "0"])
            .env("AUSI_BENCH_TESTBED", &fake)
            .env("AUSI_TESTBED_DIR", &shared)
            .output()
            .unwrap();
        let log = std::fs::read_to_string(&calls).unwrap_or_default();
        let on_shared: Vec<&str> =
            log.lines().filter_map(|l| l.strip_prefix(shared.to_str().unwrap())).map(str::trim).collect();
        let expected: &[&str] = if was_up { &["status", "down", "up", "status"] } else { &["status"] };
        assert_eq!(on_shared, expected, "was up: {was_up}\ncalls:\n{log}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "the bench instance did not start: an error");
    }
}

// ------------------------------------------------------------------- 10. the quick start, walked

/// `scripts/quickstart walk` runs the README's quick start against the testbed (list-ous,
/// select-ous, validate, register, sync, status, password-push --dry-run) from the
/// configuration `scripts/quickstart agent-toml` prints, and leaves a healthy agent.
#[test]
fn the_quick_start_walks_end_to_end_on_the_testbed() {
    let Some(tb) = common::testbed::testbed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::root().join("scripts/quickstart"))
        .arg("walk")
        .arg(dir.path())
        .env("AUSI", assert_cmd::cargo::cargo_bin("ausi"))
        .env_remove("AUSI_CONFIG")
        .env_remove("AUSI_SOURCE")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for step in ["list-ous", "select-ous", "validate", "register", "sync --dry-run", "sync", "status", "password-push"]
    {
        assert!(stderr.contains(&format!("$ ausi {step}")), "step {step}:\n{stderr}");
    }
    assert!(stdout.contains("DRY RUN") && stdout.contains("1 checked"), "{stdout}");
    for secret in [&tb.scim_token_file, &tb.bind_pw_file] {
        let secret = std::fs::read_to_string(secret).unwrap().trim().to_owned();
        assert!(!stdout.contains(&secret) && !stderr.contains(&secret), "a testbed secret in the walk's output");
    }
    let config = dir.path().join("agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(!text.contains(&tb.password()), "only a reference to the bind password");
    let (code, v) = json(&["--config", config.to_str().unwrap(), "status"]);
    assert_eq!((code, v["data"]["healthy"].as_bool()), (0, Some(true)), "{v}");
    let runs = v["data"]["state"]["last_runs"].as_array().unwrap();
    let sync = runs.iter().find(|r| r["command"] == "sync" && r["dry_run"] == false).expect("the real sync");
    assert!(sync["counts"]["created"].as_u64().unwrap() > 100, "{v}");
}

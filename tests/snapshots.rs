//! What users see, as reviewed snapshots: every command's table and JSON output on the bundled
//! example (examples/agent.toml, examples/northwind.ldif), with timestamps, durations, paths and
//! the version made stable. A change in any output fails here until the new snapshot is accepted:
//!
//!     INSTA_UPDATE=always cargo test --test snapshots      # or: cargo insta review / accept
//!
//! then review the diff of tests/snapshots/ like any other change. `register` and `sync` need the
//! testbed's SCIM server (scripts/test starts it). No snapshot may hold a secret.

mod common;

use common::example::Example;

const SOURCE: &str = "ldif:examples/northwind.ldif";
const STAFF: &str = "OU=Staff,OU=Northwind,DC=northwind,DC=example";
const FINANCE: &str = "OU=Finance\\, Legal,OU=Staff,OU=Northwind,DC=northwind,DC=example";

/// One command line's exit code, stdout and stderr, stable and secret-free.
fn shot(example: &Example, args: &[&str], stdin: Option<&str>, secrets: &[&str]) -> String {
    let r = example.run_with(args, stdin);
    let text = format!("$ ausi {}\nexit: {}\n--- stdout\n{}--- stderr\n{}", args.join(" "), r.code, r.stdout, r.stderr);
    let text = example.stable(&text).replace(env!("CARGO_PKG_VERSION"), "[version]");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!text.contains(secret), "a secret in the output of {args:?}");
    }
    text
}

/// Snapshots named as given (tests/snapshots/NAME.snap).
fn plain() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// `args` as a table and as JSON.
fn both(name: &str, example: &Example, args: &[&str]) {
    both_with(name, example, args, None, &[], &[]);
}

fn both_with(
    name: &str,
    example: &Example,
    args: &[&str],
    stdin: Option<&str>,
    secrets: &[&str],
    filters: &[(&str, &str)],
) {
    let mut settings = plain();
    for (pattern, replacement) in filters {
        settings.add_filter(pattern, *replacement);
    }
    settings.bind(|| {
        for format in ["table", "json"] {
            let mut full = args.to_vec();
            full.extend(["-o", format]);
            insta::assert_snapshot!(format!("{name}.{format}"), shot(example, &full, stdin, secrets));
        }
    });
}

#[test]
fn list_ous() {
    both("list-ous", &Example::unselected(), &["list-ous", "--source", SOURCE]);
}

#[test]
fn select_ous() {
    let example = Example::unselected();
    both(
        "select-ous-dry-run",
        &example,
        &["select-ous", "--source", SOURCE, "--add", STAFF, "--exclude", FINANCE, "--dry-run"],
    );
    let saved = shot(
        &example,
        &["select-ous", "--source", SOURCE, "--add", STAFF, "--exclude", FINANCE, "-o", "table"],
        None,
        &[],
    );
    plain().bind(|| insta::assert_snapshot!("select-ous-save.table", saved));
}

#[test]
fn validate() {
    let example = Example::new();
    both("validate", &example, &["validate", "--source", SOURCE]);
    let jsonl = shot(&example, &["validate", "--source", SOURCE, "-o", "jsonl"], None, &[]);
    plain().bind(|| insta::assert_snapshot!("validate.jsonl", jsonl));
    both("validate-user", &example, &["validate", "--source", SOURCE, "--user", "jleverling"]);
    both("validate-user-excluded", &example, &["validate", "--source", SOURCE, "--user", "msuyama"]);
}

#[test]
fn status_of_the_example_before_setup() {
    both("status-unconfigured", &Example::new(), &["status"]);
}

#[test]
fn install_service_print() {
    both("install-service-print", &Example::new(), &["install-service", "--print", "--scheduler", "systemd"]);
}

#[test]
fn errors() {
    let example = Example::new();
    both("password-push-ldif", &example, &["password-push", "--from-tenant", "--source", SOURCE]);
    both("usage-missing-argument", &example, &["sync", "--user", "jleverling"]);
    both("sync-unregistered", &example, &["sync", "--source", SOURCE]);
}

#[test]
fn generate_docs() {
    both("generate-docs", &Example::new(), &["generate-docs", "--out-dir", "out"]);
}

/// register, sync (dry run and real), status: against the testbed's SCIM server.
#[test]
fn register_sync_and_status() {
    let Some(tb) = common::testbed::testbed() else { return };
    let token = std::fs::read_to_string(&tb.scim_token_file).unwrap().trim().to_owned();
    let secrets = [token.as_str()];
    let scim = tb.scim_url.trim_end_matches('/').to_owned();
    let filters = [
        (regex::escape(&scim), "https://tenant.example".to_owned()),
        (r"snap\d+x\d+".to_owned(), "northwind".to_owned()),
        (r"[0-9a-f]{32}".to_owned(), "[scim-id]".to_owned()),
    ];
    let filters: Vec<(&str, &str)> = filters.iter().map(|(p, r)| (p.as_str(), r.as_str())).collect();
    // Two agents with their own tenants: the table and the JSON of a first sync each.
    let agents: Vec<Example> = (0..2).map(|_| Example::new()).collect();
    // `register` with agent n's own tenant (the token on stdin).
    let register_args = |n: usize| -> Vec<String> {
        let tenant = format!("{scim}/snap{:07}x{n}", std::process::id());
        let scim_url = format!("{tenant}/v2");
        ["register", "--home-realm", &tenant, "--scim-url", &scim_url, "--agent-name", "dc1", "--token-stdin"]
            .map(str::to_owned)
            .to_vec()
    };
    for (n, example) in agents.iter().enumerate() {
        let args = register_args(n);
        let args: Vec<&str> = args.iter().map(String::as_str).chain(["-o", "json"]).collect();
        let r = example.run_with(&args, Some(&format!("{token}\n")));
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    let (a, b) = (&agents[0], &agents[1]);
    // register again (the same tenant): its table and JSON.
    let register = register_args(0);
    let register: Vec<&str> = register.iter().map(String::as_str).collect();
    both_with("register", a, &register, Some(&format!("{token}\n")), &secrets, &filters);
    both_with("sync-dry-run", a, &["sync", "--dry-run", "--source", SOURCE], None, &secrets, &filters);
    both_with(
        "sync-dry-run-user",
        a,
        &["sync", "--dry-run", "--source", SOURCE, "--user", "ndavolio"],
        None,
        &secrets,
        &filters,
    );
    let mut settings = plain();
    for (pattern, replacement) in &filters {
        settings.add_filter(pattern, *replacement);
    }
    settings.bind(|| {
        insta::assert_snapshot!("sync.json", shot(a, &["sync", "--source", SOURCE, "-o", "json"], None, &secrets));
        insta::assert_snapshot!("sync.table", shot(b, &["sync", "--source", SOURCE, "-o", "table"], None, &secrets));
        insta::assert_snapshot!(
            "sync-again.table",
            shot(b, &["sync", "--source", SOURCE, "-o", "table"], None, &secrets)
        );
    });
    both_with("status-after-sync", a, &["status"], None, &secrets, &filters);
    // A policy preview on b's provisioned tenant: only users with a title, and no title sent.
    let config = std::fs::read_to_string(b.config()).unwrap();
    let policy = "[policies.Titled.scope]\nfilter = \"(title=*)\"\n[policies.Titled.user]\n\"title\" = \"\"\n";
    std::fs::write(b.config(), format!("{config}\n{policy}")).unwrap();
    both_with(
        "sync-dry-run-policy",
        b,
        &["sync", "--dry-run", "--source", SOURCE, "--policy", "Titled"],
        None,
        &secrets,
        &filters,
    );
}

/// The README's excerpt of a policy preview is the reviewed snapshot's output: every line but
/// the `…` elisions appears there, in the same order.
#[test]
fn the_readme_policy_preview_is_the_snapshots() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let start = readme.find("$ ausi sync --dry-run --policy Titled -o table\n").expect("the README's preview");
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let snapshot =
        std::fs::read_to_string(common::root().join("tests/snapshots/sync-dry-run-policy.table.snap")).unwrap();
    let mut rest = snapshot.as_str();
    for line in block.lines().skip(1).filter(|l| l.trim() != "…") {
        let at = rest
            .find(&format!("{line}\n"))
            .unwrap_or_else(|| panic!("README line not in the snapshot (in order): {line}"));
        rest = &rest[at + line.len()..];
    }
}

/// No snapshot holds a secret of the testbed (token, bind or administrator password).
#[test]
fn no_snapshot_holds_a_secret() {
    let Some(tb) = common::testbed::testbed() else { return };
    let secrets: Vec<String> = [&tb.scim_token_file, &tb.bind_pw_file, &tb.admin_pw_file]
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().trim().to_owned())
        .filter(|s| s.len() >= 6)
        .collect();
    assert_eq!(secrets.len(), 3);
    let dir = common::root().join("tests/snapshots");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(secrets.iter().all(|s| !text.contains(s.as_str())), "a testbed secret in a snapshot");
        checked += 1;
    }
    assert!(checked >= 30, "{checked} snapshots");
}

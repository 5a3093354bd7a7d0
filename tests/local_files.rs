//! The agent's own files: the state store is private to its owner.
//! The tests that register need the testbed's SCIM server (`scripts/test`, AUSI_REQUIRE_DC=1).

mod common;

use common::testbed::testbed;

/// One valid user, with an objectGUID: a sync of it needs the tenant, not a DC.
const EXPORT: &str = "dn: CN=Perm Test,OU=X,DC=example,DC=test\nobjectClass: user\nobjectGUID:: AAECAwQFBgcICQoLDA0ODw==\nsAMAccountName: permtest\ngivenName: Perm\nsn: Test\nmail: permtest@example.test\nuserPrincipalName: permtest@example.test\nuserAccountControl: 512\n\n";

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

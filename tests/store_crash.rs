//! Crash safety of the state store: a child process writes in a loop and is killed at a random
//! moment; what it committed must be consistent. A test binary of its own: a child process
//! briefly holds a copy of every open file of the process that spawns it (between fork and exec),
//! the store's lock file too, so store tests beside it saw a store they had just dropped as still
//! locked.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ausi::store::{AnchorKind, AnchorState, Batch, QuarantineEntry, Reason, StateStore};

const T0: &str = "2026-05-01T10:00:00Z";
const T1: &str = "2026-05-01T11:00:00Z";
const T2: &str = "2026-05-01T12:00:00Z";

fn entry(guid: &str, since: &str, rules: &[&str]) -> QuarantineEntry {
    QuarantineEntry {
        guid: guid.into(),
        dn: format!("CN={guid},OU=Staff,DC=corp,DC=example"),
        reasons: rules.iter().map(|r| Reason { rule: r.to_string(), message: format!("{r} failed") }).collect(),
        since: since.into(),
    }
}

const CHILD_ENV: &str = "AUSI_STATE_TEST_CRASH_CHILD";
const GROUP: &str = "group-all";

/// Not a test on its own: the body of the child process spawned by `killed_writer_leaves_a_consistent_store`.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else { return };
    let path = std::path::PathBuf::from(path);
    let mut store = StateStore::open(&path, T0).unwrap();
    let run = store.begin_run("sync", false, T0).unwrap();
    // Finish what the killed run left: the tenant "has" every pending create (adopt it).
    let anchors = store.anchors().unwrap();
    let mut next = anchors.len();
    let mut batch = Batch::default();
    batch.anchor(GROUP, AnchorKind::Group, &format!("scim-{GROUP}"), "CN=All,DC=corp", "hg", run);
    for a in anchors.values().filter(|a| a.state == AnchorState::Pending) {
        batch.anchor(&a.guid, a.kind, &format!("scim-{}", a.guid), &a.dn, "h", run);
        batch.add_member(GROUP, &a.guid);
        batch.clear_failure(&a.guid);
    }
    store.commit(&batch, T1).unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let guids: Vec<String> = (next..next + 25).map(|i| format!("user-{i:07}")).collect();
        next += guids.len();
        let mut journal = Batch::default();
        for g in &guids {
            journal.pending(g, AnchorKind::User, &format!("CN={g},DC=corp"));
            journal.fail(g, &format!("CN={g},DC=corp"), "create", "in flight");
        }
        store.commit(&journal, T1).unwrap();
        // ... the creates are sent here ...
        let mut done = Batch::default();
        for g in &guids {
            done.anchor(g, AnchorKind::User, &format!("scim-{g}"), &format!("CN={g},DC=corp"), "h", run);
            done.add_member(GROUP, g);
            done.clear_failure(g);
            done.quarantine(entry("q-rotating", T1, &["rule"]), run);
        }
        store.commit(&done, T2).unwrap();
    }
    // The parent should have killed us long before.
    unreachable!("crash_child was not killed");
}

/// Checks a store left by a killed writer. Returns how many anchors it holds.
fn assert_consistent(store: &StateStore, path: &Path) -> usize {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let anchors = store.anchors().unwrap();
    for a in anchors.values() {
        match a.state {
            AnchorState::Pending => assert_eq!(a.scim_id, None, "{a:?}"),
            AnchorState::Active => assert_eq!(a.scim_id, Some(format!("scim-{}", a.guid)), "{a:?}"),
            other => panic!("unexpected state {other:?} in {a:?}"),
        }
    }
    // The pending journal and its completion are each atomic: members are exactly the active
    // users, and failures ("in flight") exactly the pending ones.
    let active: BTreeSet<String> = anchors
        .values()
        .filter(|a| a.kind == AnchorKind::User && a.state == AnchorState::Active)
        .map(|a| a.guid.clone())
        .collect();
    let pending: BTreeSet<String> =
        anchors.values().filter(|a| a.state == AnchorState::Pending).map(|a| a.guid.clone()).collect();
    let members = store.members_for(&[GROUP]).unwrap().remove(GROUP).unwrap_or_default();
    assert_eq!(members, active);
    let failing: BTreeSet<String> = store.failures().unwrap().into_iter().map(|f| f.guid).collect();
    assert_eq!(failing, pending);
    assert!(pending.len() <= 25, "at most one journalled batch in flight");
    anchors.len()
}

/// A small xorshift seeded from the clock: different kill moments on every run of the test.
fn random_below(state: &mut u64, bound: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % bound
}

#[test]
fn killed_writer_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let exe = std::env::current_exe().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let mut seed = u64::from(nanos) | 1;
    let mut count = 0;
    for round in 0..5 {
        let mut child = std::process::Command::new(&exe)
            .args(["crash_child", "--exact", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the child is writing, then kill it a random moment later.
        let progress = count + 50 + random_below(&mut seed, 200) as usize;
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(std::time::Instant::now() < give_up, "round {round}: the child made no progress");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("round {round}: the child exited by itself: {status}");
            }
            let seen =
                StateStore::open_read_only(&path).ok().flatten().and_then(|s| s.anchors().ok()).map_or(0, |a| a.len());
            if seen >= progress {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_micros(random_below(&mut seed, 30_000)));
        child.kill().unwrap();
        child.wait().unwrap();

        // The OS released the lock; what was committed is consistent.
        let store = StateStore::open(&path, T2).unwrap();
        count = assert_consistent(&store, &path);
        assert!(count >= progress, "round {round}: {count} < {progress}");
        assert!(store.previous_run_crashed().unwrap(), "round {round}");
        drop(store);
    }
}

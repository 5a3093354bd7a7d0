//! The store's tests (one fixture for every job).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::db::sibling;
use super::lock::lock_path;
use super::schema::{SCHEMA, SCHEMA_VERSION, check_version};
use super::*;

const T0: &str = "2026-05-01T10:00:00Z";
const T1: &str = "2026-05-01T11:00:00Z";
const T2: &str = "2026-05-01T12:00:00Z";
const T3: &str = "2026-05-01T13:00:00Z";

fn store() -> (tempfile::TempDir, std::path::PathBuf, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = StateStore::open(&path, T0).unwrap();
    (dir, path, store)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn commit(store: &mut StateStore, now: &str, f: impl FnOnce(&mut Batch)) {
    let mut batch = Batch::default();
    f(&mut batch);
    store.commit(&batch, now).unwrap();
}

/// A journaled create found in the tenant and then deprovisioned (the applier's order):
/// anchoring it first satisfies the "pending has no SCIM id" rule.
#[test]
fn a_pending_anchor_is_anchored_before_it_is_deactivated() {
    let (_dir, _, mut store) = store();
    commit(&mut store, T0, |b| b.pending("u1", AnchorKind::User, "CN=U1"));
    let mut wrong = Batch::default();
    wrong.set_state("u1", AnchorState::Deactivated);
    assert!(store.commit(&wrong, T1).is_err(), "a pending anchor cannot be deactivated as it is");
    commit(&mut store, T1, |b| {
        b.anchor("u1", AnchorKind::User, "scim-1", "CN=U1", "", 2);
        b.set_state("u1", AnchorState::Deactivated);
    });
    let a = &store.anchors().unwrap()["u1"];
    assert_eq!((a.state, a.scim_id.as_deref()), (AnchorState::Deactivated, Some("scim-1")));
}

fn entry(guid: &str, since: &str, rules: &[&str]) -> QuarantineEntry {
    QuarantineEntry {
        guid: guid.into(),
        dn: format!("CN={guid},OU=Staff,DC=corp,DC=example"),
        reasons: rules.iter().map(|r| Reason { rule: r.to_string(), message: format!("{r} failed") }).collect(),
        since: since.into(),
    }
}

fn pragma(store: &StateStore, name: &str) -> String {
    store.conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0)).map_or_else(
        |e| e.to_string(),
        |v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        },
    )
}

#[test]
fn creates_schema_with_pragmas() {
    let (_dir, path, store) = store();
    assert_eq!(pragma(&store, "journal_mode"), "wal");
    assert_eq!(pragma(&store, "synchronous"), "1"); // NORMAL
    assert_eq!(pragma(&store, "foreign_keys"), "1");
    assert_eq!(check_version(&store.conn, "x").unwrap(), Some(SCHEMA_VERSION));
    assert!(store.anchors().unwrap().is_empty());
    assert!(store.members().unwrap().is_empty());
    assert!(store.quarantine().unwrap().is_empty());
    assert!(store.failures().unwrap().is_empty());
    assert!(store.last_runs(10).unwrap().is_empty());
    assert!(!store.previous_run_crashed().unwrap());
    drop(store);
    // Reopening an existing store changes nothing.
    let store = StateStore::open(&path, T1).unwrap();
    assert_eq!(check_version(&store.conn, "x").unwrap(), Some(SCHEMA_VERSION));
}

#[test]
fn pending_then_anchor_then_seen_round_trip() {
    let (_dir, _path, mut store) = store();
    commit(&mut store, T0, |b| b.pending("u1", AnchorKind::User, "CN=A,DC=corp"));
    let a = &store.anchors().unwrap()["u1"];
    assert_eq!(
        a,
        &Anchor {
            guid: "u1".into(),
            kind: AnchorKind::User,
            scim_id: None,
            dn: "CN=A,DC=corp".into(),
            hash: None,
            state: AnchorState::Pending,
            last_seen_run: None,
        }
    );

    commit(&mut store, T1, |b| b.anchor("u1", AnchorKind::User, "scim-1", "CN=A,DC=corp", "h1", 7));
    let a = &store.anchors().unwrap()["u1"];
    assert_eq!(a.scim_id.as_deref(), Some("scim-1"));
    assert_eq!(a.hash.as_deref(), Some("h1"));
    assert_eq!(a.state, AnchorState::Active);
    assert_eq!(a.last_seen_run, Some(7));

    commit(&mut store, T2, |b| b.seen("u1", "CN=A,OU=Moved,DC=corp", 8));
    let a = &store.anchors().unwrap()["u1"];
    assert_eq!(a.dn, "CN=A,OU=Moved,DC=corp");
    assert_eq!(a.last_seen_run, Some(8));
    assert_eq!(a.hash.as_deref(), Some("h1"));
    assert_eq!(a.scim_id.as_deref(), Some("scim-1"));
    let updated = |store: &StateStore| -> String {
        store.conn.query_row("SELECT updated_at FROM anchors WHERE guid = 'u1'", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(updated(&store), T2);
    // Seen where it was: nothing is written (a full sync sees every object).
    commit(&mut store, T3, |b| b.seen("u1", "CN=A,OU=Moved,DC=corp", 9));
    assert_eq!((store.anchors().unwrap()["u1"].last_seen_run, updated(&store)), (Some(8), T2.to_owned()));

    // seen / set_state on an unknown guid are no-ops.
    commit(&mut store, T2, |b| {
        b.seen("nobody", "CN=X", 8);
        b.set_state("nobody", AnchorState::Deleted);
    });
    assert_eq!(store.anchors().unwrap().len(), 1);
}

#[test]
fn anchor_adopts_directly_and_updates() {
    let (_dir, _path, mut store) = store();
    commit(&mut store, T0, |b| b.anchor("g1", AnchorKind::Group, "scim-g", "CN=G,DC=corp", "h1", 1));
    commit(&mut store, T1, |b| b.anchor("g1", AnchorKind::Group, "scim-g", "CN=G2,DC=corp", "h2", 2));
    let a = &store.anchors().unwrap()["g1"];
    assert_eq!(
        (a.kind, a.dn.as_str(), a.hash.as_deref(), a.last_seen_run),
        (AnchorKind::Group, "CN=G2,DC=corp", Some("h2"), Some(2))
    );
}

#[test]
fn set_state_round_trip_and_recreate_after_delete() {
    let (_dir, _path, mut store) = store();
    commit(&mut store, T0, |b| b.anchor("u1", AnchorKind::User, "scim-1", "CN=A", "h", 1));
    for state in [AnchorState::Deactivated, AnchorState::Active, AnchorState::Deleted] {
        commit(&mut store, T1, |b| b.set_state("u1", state));
        let a = &store.anchors().unwrap()["u1"];
        assert_eq!(a.state, state);
        assert_eq!(a.scim_id.as_deref(), Some("scim-1"));
    }
    // Restored from the recycle bin: journalled as a new create, the old SCIM id dropped.
    commit(&mut store, T2, |b| b.pending("u1", AnchorKind::User, "CN=A"));
    let a = &store.anchors().unwrap()["u1"];
    assert_eq!((a.state, a.scim_id.as_deref(), a.hash.as_deref()), (AnchorState::Pending, None, None));
    assert_eq!(a.last_seen_run, Some(1));
}

#[test]
fn membership_round_trip() {
    let (_dir, _path, mut store) = store();
    commit(&mut store, T0, |b| {
        b.set_members("g1", &set(&["u1", "u2", "u3"]));
        b.set_members("g2", &set(&["u1"]));
    });
    assert_eq!(store.members().unwrap()["g1"], set(&["u1", "u2", "u3"]));
    commit(&mut store, T1, |b| {
        b.set_members("g1", &set(&["u2", "u4"]));
        b.add_member("g2", "u5");
        b.add_member("g2", "u5"); // idempotent
        b.remove_member("g2", "u1");
        b.remove_member("g2", "absent");
    });
    let members = store.members().unwrap();
    assert_eq!(members["g1"], set(&["u2", "u4"]));
    assert_eq!(members["g2"], set(&["u5"]));
    // An emptied group disappears from the map.
    commit(&mut store, T2, |b| b.set_members("g2", &BTreeSet::new()));
    assert!(!store.members().unwrap().contains_key("g2"));
}

#[test]
fn forget_drops_anchor_and_member_rows_both_ways() {
    let (_dir, _path, mut store) = store();
    commit(&mut store, T0, |b| {
        b.anchor("g1", AnchorKind::Group, "scim-g1", "CN=G1", "h", 1);
        b.anchor("g2", AnchorKind::Group, "scim-g2", "CN=G2", "h", 1);
        b.pending("u1", AnchorKind::User, "CN=U1");
        b.anchor("u2", AnchorKind::User, "scim-u2", "CN=U2", "h", 1);
        b.set_members("g1", &set(&["u1", "u2", "g2"]));
        b.set_members("g2", &set(&["u1", "u2"]));
    });
    commit(&mut store, T1, |b| {
        b.forget("u1"); // a pending create the tenant never got
        b.forget("g2");
    });
    let anchors = store.anchors().unwrap();
    assert_eq!(anchors.keys().map(String::as_str).collect::<BTreeSet<_>>(), BTreeSet::from(["g1", "u2"]));
    let members = store.members().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members["g1"], set(&["u2"]));
}

#[test]
fn quarantine_keeps_since_and_release_removes() {
    let (_dir, _path, mut store) = store();
    commit(&mut store, T0, |b| {
        b.quarantine(entry("u1", T0, &["upn-missing"]), 1);
        b.quarantine(entry("u2", T0, &["mail-duplicate"]), 1);
    });
    assert_eq!(
        store.quarantine().unwrap(),
        vec![entry("u1", T0, &["upn-missing"]), entry("u2", T0, &["mail-duplicate"])]
    );

    let mut again = entry("u1", T2, &["upn-missing", "name-too-long"]);
    again.dn = "CN=u1,OU=Moved,DC=corp,DC=example".into();
    commit(&mut store, T2, |b| b.quarantine(again.clone(), 2));
    let q = store.quarantine().unwrap();
    let u1 = q.iter().find(|e| e.guid == "u1").unwrap();
    assert_eq!(u1.since, T0, "re-quarantine keeps the original since");
    assert_eq!(u1.reasons, again.reasons);
    assert_eq!(u1.dn, again.dn);
    let run: i64 =
        store.conn.query_row("SELECT last_seen_run FROM quarantine WHERE guid = 'u1'", [], |r| r.get(0)).unwrap();
    assert_eq!(run, 2);

    commit(&mut store, T2, |b| b.release("u1"));
    assert_eq!(store.quarantine().unwrap(), vec![entry("u2", T0, &["mail-duplicate"])]);
}

#[test]
fn fail_increments_attempts_and_clear_removes() {
    let (_dir, _path, mut store) = store();
    commit(&mut store, T0, |b| b.fail("u1", "CN=U1", "create", "409 uniqueness"));
    commit(&mut store, T1, |b| b.fail("u1", "CN=U1b", "update", "500 server error"));
    commit(&mut store, T2, |b| {
        b.fail("u1", "CN=U1b", "update", "503 unavailable");
        b.fail("u2", "CN=U2", "delete", "404");
    });
    let f = store.failures().unwrap();
    assert_eq!(
        f[0],
        Failure {
            guid: "u1".into(),
            dn: "CN=U1b".into(),
            operation: "update".into(),
            error: "503 unavailable".into(),
            since: T0.into(),
            attempts: 3,
        }
    );
    assert_eq!((f[1].guid.as_str(), f[1].attempts, f[1].since.as_str()), ("u2", 1, T2));
    commit(&mut store, T2, |b| b.clear_failure("u1"));
    assert_eq!(store.failures().unwrap().len(), 1);
}

#[test]
fn empty_batch_is_empty_and_writes_nothing() {
    let (_dir, _path, mut store) = store();
    let mut batch = Batch::default();
    assert!(batch.is_empty());
    store.commit(&batch, T0).unwrap();
    batch.release("x");
    assert!(!batch.is_empty());
}

#[test]
fn batch_is_all_or_nothing() {
    let (_dir, path, mut store) = store();
    commit(&mut store, T0, |b| {
        b.pending("p1", AnchorKind::User, "CN=P1");
        b.anchor("u0", AnchorKind::User, "scim-0", "CN=U0", "h0", 1);
        b.set_members("g0", &set(&["u0"]));
    });
    let before = (store.anchors().unwrap(), store.members().unwrap());

    let mut batch = Batch::default();
    batch.anchor("u1", AnchorKind::User, "scim-1", "CN=U1", "h1", 2);
    batch.seen("u0", "CN=U0,OU=Moved", 2);
    batch.set_members("g0", &set(&["u0", "u1"]));
    batch.quarantine(entry("q1", T1, &["rule"]), 2);
    batch.fail("f1", "CN=F1", "create", "boom");
    batch.forget("u0");
    // Last: a pending anchor cannot become active without a SCIM id (the CHECK constraint fails).
    batch.set_state("p1", AnchorState::Active);
    let err = store.commit(&batch, T1).unwrap_err();
    assert!(matches!(err, StateError::Sqlite { .. }), "{err:?}");
    assert!(err.to_string().contains("CHECK"), "{err}");

    assert_eq!((store.anchors().unwrap(), store.members().unwrap()), before);
    assert!(store.quarantine().unwrap().is_empty());
    assert!(store.failures().unwrap().is_empty());
    // The store stays usable, and a reopen sees the same.
    commit(&mut store, T1, |b| b.release("nothing"));
    drop(store);
    let store = StateStore::open(&path, T2).unwrap();
    assert_eq!((store.anchors().unwrap(), store.members().unwrap()), before);
}

#[test]
fn anchored_object_cannot_be_set_pending() {
    let (_dir, _path, mut store) = store();
    commit(&mut store, T0, |b| b.anchor("u1", AnchorKind::User, "scim-1", "CN=U1", "h1", 1));
    let mut batch = Batch::default();
    batch.set_state("u1", AnchorState::Pending);
    assert!(store.commit(&batch, T1).is_err());
    assert_eq!(store.anchors().unwrap()["u1"].state, AnchorState::Active);
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The mirror holds every user's name and mail: SQLite's `-wal` and `-shm` take the mode of
/// the database, which ausi creates 0600.
#[cfg(unix)]
#[test]
fn a_new_store_is_private_to_its_owner() {
    let (_dir, path, mut store) = store();
    commit(&mut store, T0, |b| b.anchor("u1", AnchorKind::User, "scim-1", "CN=U1", "h", 1));
    assert!(store.loose_files().is_empty());
    for file in [path.clone(), sibling(&path, "-wal"), sibling(&path, "-shm"), lock_path(&path)] {
        assert_eq!(mode_of(&file), 0o600, "{}", file.display());
    }
}

#[cfg(unix)]
#[test]
fn files_readable_by_others_are_narrowed_on_open_and_listed() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path, mut store) = store();
    commit(&mut store, T0, |b| b.anchor("u1", AnchorKind::User, "scim-1", "CN=U1", "h", 1));
    drop(store);
    let wal = sibling(&path, "-wal");
    std::fs::write(&wal, b"").unwrap(); // a checkpointed WAL left behind
    let loosened = [(path.clone(), 0o644), (wal.clone(), 0o664), (lock_path(&path), 0o604)];
    for (file, mode) in &loosened {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let store = StateStore::open(&path, T1).unwrap();
    let mut found: Vec<(PathBuf, u32, bool)> =
        store.loose_files().iter().map(|f| (f.path.clone(), f.mode, f.fixed)).collect();
    found.sort();
    let mut want: Vec<(PathBuf, u32, bool)> = loosened.iter().map(|(p, m)| (p.clone(), *m, true)).collect();
    want.sort();
    assert_eq!(found, want);
    for file in [path.clone(), wal, sibling(&path, "-shm"), lock_path(&path)] {
        assert_eq!(mode_of(&file), 0o600, "{}", file.display());
    }
    assert_eq!(store.anchors().unwrap().len(), 1, "the store is intact");
    drop(store);
    // Once fixed, nothing to report.
    assert!(StateStore::open(&path, T2).unwrap().loose_files().is_empty());
}

#[test]
fn second_open_is_locked_until_the_first_is_dropped() {
    let (_dir, path, first) = store();
    let err = StateStore::open(&path, T1).unwrap_err();
    match &err {
        StateError::Locked { path: p, since } => {
            assert_eq!(p, &path.display().to_string());
            if cfg!(unix) {
                assert_eq!(since, &format!("{T0} by pid {}", std::process::id()));
            }
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(err.to_string().starts_with("another ausi run is using "), "{err}");
    // A read-only store needs no lock.
    assert!(StateStore::open_read_only(&path).unwrap().is_some());
    drop(first);
    let second = StateStore::open(&path, T1).unwrap();
    let text = std::fs::read_to_string(lock_path(&path)).unwrap();
    assert_eq!(text, format!("{} {T1}\n", std::process::id()));
    drop(second);
}

fn end<'a>(kind: &'a str, outcome: &'a str, exit_code: i64, counts: &'a serde_json::Value, at: &'a str) -> RunEnd<'a> {
    RunEnd { kind, outcome, exit_code, counts, error: None, finished_at: at, duration_ms: 1500 }
}

#[test]
fn runs_round_trip_newest_first() {
    let (_dir, _path, mut store) = store();
    let r1 = store.begin_run("sync", false, T0).unwrap();
    let counts = serde_json::json!({"created": 2, "updated": 1});
    store.finish_run(r1, &end("full", "ok", 0, &counts, T1)).unwrap();
    let r2 = store.begin_run("password-push", true, T1).unwrap();
    assert!(r2 > r1);
    let runs = store.last_runs(10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[0],
        RunRecord {
            id: r2,
            command: "password-push".into(),
            kind: "password-push".into(),
            dry_run: true,
            started_at: T1.into(),
            finished_at: None,
            duration_ms: None,
            outcome: None,
            exit_code: None,
            counts: serde_json::Value::Null,
            error: None,
        }
    );
    assert_eq!(
        runs[1],
        RunRecord {
            id: r1,
            command: "sync".into(),
            kind: "full".into(),
            dry_run: false,
            started_at: T0.into(),
            finished_at: Some(T1.into()),
            duration_ms: Some(1500),
            outcome: Some("ok".into()),
            exit_code: Some(0),
            counts: serde_json::json!({"created": 2, "updated": 1}),
            error: None,
        }
    );
    assert_eq!(store.last_runs(1).unwrap()[0].id, r2);
    assert!(store.last_runs(0).unwrap().is_empty());
    assert!(store.finish_run(9999, &end("full", "ok", 0, &serde_json::Value::Null, T2)).is_err());

    // One call for a command that records its run at the end; a failure keeps its reason.
    let failed = RunEnd { error: Some("the tenant is unavailable"), ..end("sync", "error", 75, &counts, T2) };
    let r3 = store.record_run("sync", false, T1, &failed).unwrap();
    let run = &store.last_runs(1).unwrap()[0];
    assert_eq!((run.id, run.started_at.as_str(), run.finished_at.as_deref()), (r3, T1, Some(T2)));
    assert_eq!((run.outcome.as_deref(), run.exit_code, run.error.as_deref()), (Some("error"), Some(75), failed.error));
}

#[test]
fn the_history_keeps_the_newest_runs_and_an_unresolved_crash() {
    let (_dir, path, mut store) = store();
    let counts = serde_json::json!({});
    let crashed = store.begin_run("sync", false, T0).unwrap(); // never finished
    drop(store);
    let mut store = StateStore::open(&path, T1).unwrap();
    let mut last = 0;
    for _ in 0..RUNS_KEPT + 20 {
        // Dry runs resolve nothing: the crash stays the previous run's problem.
        last = store.record_run("sync", true, T1, &end("delta", "ok", 0, &counts, T1)).unwrap();
    }
    let ids: Vec<i64> = store.last_runs(1000).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids.len() as i64, RUNS_KEPT + 1, "the newest {RUNS_KEPT} and the crash");
    assert_eq!((ids[0], *ids.last().unwrap()), (last, crashed));
    assert!(store.previous_run_crashed().unwrap());

    // A finished real run resolves it: the crash may go now.
    store.record_run("sync", false, T2, &end("full", "ok", 0, &counts, T2)).unwrap();
    let runs = store.last_runs(1000).unwrap();
    assert_eq!(runs.len() as i64, RUNS_KEPT);
    assert!(runs.iter().all(|r| r.id != crashed));
    // Ids are never reused after pruning (AUTOINCREMENT).
    assert!(store.begin_run("sync", false, T2).unwrap() > runs[0].id);
}

#[test]
fn heartbeats_keep_the_last_success_through_failures() {
    let (_dir, path, mut store) = store();
    assert_eq!(store.heartbeat().unwrap(), None);
    store.record_heartbeat(T0, Err("connection refused")).unwrap();
    let first = HeartbeatRecord {
        tenant_status: None,
        last_success_at: None,
        last_attempt_at: T0.into(),
        last_error: Some("connection refused".into()),
    };
    assert_eq!(store.heartbeat().unwrap(), Some(first));
    store.record_heartbeat(T1, Ok("Active")).unwrap();
    store.record_heartbeat(T2, Err("HTTP 503")).unwrap();
    let expected = HeartbeatRecord {
        tenant_status: Some("Active".into()),
        last_success_at: Some(T1.into()),
        last_attempt_at: T2.into(),
        last_error: Some("HTTP 503".into()),
    };
    assert_eq!(store.heartbeat().unwrap(), Some(expected.clone()));
    drop(store);
    assert_eq!(StateStore::open_read_only(&path).unwrap().unwrap().heartbeat().unwrap(), Some(expected));
    let mut store = StateStore::open(&path, T2).unwrap();
    store.record_heartbeat(T2, Ok("Suspended")).unwrap();
    let h = store.heartbeat().unwrap().unwrap();
    assert_eq!((h.tenant_status.as_deref(), h.last_error), (Some("Suspended"), None));
}

/// The `runs` table and `meta` as schema 2 wrote them.
const SCHEMA_2_RUNS: &str = "
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '2');
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, dry_run INTEGER NOT NULL,
            started_at TEXT NOT NULL, finished_at TEXT, outcome TEXT, exit_code INTEGER, counts TEXT);
        INSERT INTO runs (kind, dry_run, started_at, finished_at, outcome, exit_code, counts)
            VALUES ('full', 0, '2026-05-01T10:00:00Z', '2026-05-01T10:00:02.5Z', 'ok', 0, '{\"created\":3}');
        INSERT INTO runs (kind, dry_run, started_at) VALUES ('sync', 0, '2026-05-01T11:00:00Z');";

#[test]
fn schema_2_stores_gain_the_run_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    Connection::open(&path).unwrap().execute_batch(SCHEMA_2_RUNS).unwrap();

    // status reads an old store as it is, without changing it.
    let old = StateStore::open_read_only(&path).unwrap().unwrap();
    let runs = old.last_runs(10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[1].command.as_str(), runs[1].duration_ms, runs[1].error.as_deref()), ("sync", None, None));
    assert_eq!(old.heartbeat().unwrap(), None);
    drop(old);

    let mut store = StateStore::open(&path, T2).unwrap();
    assert_eq!(check_version(&store.conn, "x").unwrap(), Some(SCHEMA_VERSION));
    let runs = store.last_runs(10).unwrap();
    assert_eq!(runs[1].kind, "full");
    assert_eq!(runs[1].command, "sync");
    assert_eq!(runs[1].duration_ms, Some(2500), "backfilled from the timestamps");
    assert_eq!(runs[1].counts, serde_json::json!({"created": 3}));
    assert_eq!((runs[0].outcome.as_deref(), runs[0].duration_ms), (None, None));
    assert!(store.previous_run_crashed().unwrap(), "the unfinished schema-2 run is still a crash");
    let run = store.begin_run("sync", false, T2).unwrap();
    let failed = RunEnd { error: Some("boom"), ..end("delta", "error", 75, &serde_json::Value::Null, T2) };
    store.finish_run(run, &failed).unwrap();
    store.record_heartbeat(T2, Ok("Active")).unwrap();
    drop(store);
    // Opening again migrates nothing twice.
    let store = StateStore::open(&path, T2).unwrap();
    assert_eq!(store.last_runs(10).unwrap()[0].error.as_deref(), Some("boom"));
    assert_eq!(store.heartbeat().unwrap().unwrap().tenant_status.as_deref(), Some("Active"));
}

#[test]
fn schema_3_anchors_are_rebuilt_with_their_rows_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(&SCHEMA.replace(
        "CHECK (state = 'pending' OR state = 'active' OR state = 'deactivated' OR state = 'deleted')",
        "CHECK (state IN ('pending', 'active', 'deactivated', 'deleted'))",
    ))
    .unwrap();
    conn.execute_batch(
        "INSERT INTO meta VALUES ('schema_version', '3');
         INSERT INTO anchors VALUES ('g1', 'user', 'id-1', 'CN=A', 'h1', '{\"userName\":\"a\"}', 'active', 7, 'T');
         INSERT INTO anchors VALUES ('g2', 'group', NULL, 'CN=B', NULL, NULL, 'pending', NULL, 'T');",
    )
    .unwrap();
    let sql = |c: &Connection| -> String {
        c.query_row("SELECT sql FROM sqlite_master WHERE name = 'anchors'", [], |r| r.get(0)).unwrap()
    };
    assert!(sql(&conn).contains("state IN ("));
    drop(conn);

    let store = StateStore::open(&path, T1).unwrap();
    assert_eq!(check_version(&store.conn, "x").unwrap(), Some(4));
    assert!(!sql(&store.conn).contains("state IN ("), "{}", sql(&store.conn));
    let rows: Vec<(String, Option<String>, String, Option<i64>)> = store
        .conn
        .prepare("SELECT guid, scim_id, state, last_seen_run FROM anchors ORDER BY guid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let expected = [
        ("g1".to_owned(), Some("id-1".to_owned()), "active".to_owned(), Some(7)),
        ("g2".to_owned(), None, "pending".to_owned(), None),
    ];
    assert_eq!(rows, expected);
    let bad = |state: &str, id: Option<&str>| {
        store.conn.execute(
            "INSERT INTO anchors (guid, kind, scim_id, dn, state, updated_at) VALUES ('g3', 'user', ?2, 'CN=C', ?1, 'T')",
            rusqlite::params![state, id],
        )
    };
    assert!(bad("gone", Some("x")).is_err(), "an unknown state is still refused");
    assert!(bad("pending", Some("x")).is_err(), "and the journal rule still holds");
    assert!(bad("deleted", Some("x")).is_ok());
    drop(store);
    // Opening again rebuilds nothing.
    let store = StateStore::open(&path, T1).unwrap();
    assert_eq!(store.conn.query_row("SELECT count(*) FROM anchors", [], |r| r.get::<_, i64>(0)).unwrap(), 3);
}

#[test]
fn previous_run_crashed_tracks_unfinished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let reopen = || StateStore::open(&path, T0).unwrap();

    let mut s = reopen();
    assert!(!s.previous_run_crashed().unwrap(), "no runs yet");
    let run = s.begin_run("sync", false, T0).unwrap();
    assert!(!s.previous_run_crashed().unwrap(), "our own running run is not a previous run");
    drop(s); // crashed: never finished

    let mut s = reopen();
    assert!(s.previous_run_crashed().unwrap());
    let again = s.begin_run("sync", false, T1).unwrap();
    assert!(s.previous_run_crashed().unwrap(), "still true once this run has begun");
    s.finish_run(again, &end("full", "ok", 0, &serde_json::json!({}), T1)).unwrap();
    assert_eq!(s.last_runs(10).unwrap().iter().find(|r| r.id == run).unwrap().outcome, None);
    drop(s);

    let mut s = reopen();
    assert!(!s.previous_run_crashed().unwrap(), "finished after the crash");
    let real = s.begin_run("sync", false, T1).unwrap();
    drop(s); // crashed real run ...

    let mut s = reopen();
    let dry = s.begin_run("sync", true, T2).unwrap();
    s.finish_run(dry, &end("full", "ok", 0, &serde_json::json!({}), T2)).unwrap();
    drop(s); // ... followed by a finished dry run, which resolved nothing

    let mut s = reopen();
    assert!(s.previous_run_crashed().unwrap(), "run {real} crashed and no real run finished since");
    let fixed = s.begin_run("sync", false, T2).unwrap();
    s.finish_run(fixed, &end("full", "findings", 1, &serde_json::json!({}), T2)).unwrap();
    drop(s);
    assert!(!reopen().previous_run_crashed().unwrap());
}

#[test]
fn newer_schema_is_refused() {
    let (_dir, path, store) = store();
    drop(store);
    let conn = Connection::open(&path).unwrap();
    conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'", []).unwrap();
    drop(conn);

    let err = StateStore::open(&path, T1).unwrap_err();
    assert!(matches!(err, StateError::TooNew { found: 5, supported: 4, .. }), "{err:?}");
    assert!(err.to_string().contains("written by a newer ausi (schema 5, this one reads 4)"), "{err}");
    let err = StateStore::open_read_only(&path).unwrap_err();
    assert!(matches!(err, StateError::TooNew { found: 5, .. }), "{err:?}");
    // Refusing changed nothing.
    let conn = Connection::open(&path).unwrap();
    let v: String = conn.query_row("SELECT value FROM meta", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "5");
}

#[test]
fn read_only_open_never_creates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    assert!(StateStore::open_read_only(&path).unwrap().is_none());
    assert!(!path.exists());
    std::fs::write(&path, b"").unwrap(); // a file holding no store yet
    assert!(StateStore::open_read_only(&path).unwrap().is_none());
    std::fs::remove_file(&path).unwrap();

    let mut store = StateStore::open(&path, T0).unwrap();
    commit(&mut store, T0, |b| b.anchor("u1", AnchorKind::User, "scim-1", "CN=U1", "h", 1));
    drop(store);
    let mut ro = StateStore::open_read_only(&path).unwrap().unwrap();
    assert_eq!(ro.anchors().unwrap()["u1"].scim_id.as_deref(), Some("scim-1"));
    assert!(ro.begin_run("sync", false, T1).is_err(), "a read-only store cannot write");
    // ... and does not hold the lock.
    let _writer = StateStore::open(&path, T1).unwrap();
}

/// A dry run has a page cache of its own size and leaves the store's as it was; what it wrote
/// in the mirror is gone after it, also what a mirror call wrote outside a savepoint of its own.
#[test]
fn a_dry_run_has_a_bigger_cache_and_leaves_nothing_behind() {
    let (_dir, _path, mut store) = store();
    let cache = |store: &StateStore| -> i64 { store.conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap() };
    let dirty =
        |store: &StateStore| -> i64 { store.conn.query_row("SELECT COUNT(*) FROM dirty", [], |r| r.get(0)).unwrap() };
    let default = cache(&store);
    store.begin_dry_run().unwrap();
    assert!(-cache(&store) > -default * 4, "{} against {default}", cache(&store));
    store.mirror_sql(|tx| tx.execute_batch("INSERT INTO dirty (guid) VALUES ('u1')")).unwrap();
    store.end_dry_run().unwrap();
    assert_eq!(cache(&store), default);
    assert_eq!(dirty(&store), 0);
    // Outside a dry run, a failing call leaves nothing of itself.
    let failed = store.mirror_sql(|tx| {
        tx.execute_batch("INSERT INTO dirty (guid) VALUES ('u2')")?;
        tx.execute_batch("INSERT INTO no_such_table VALUES (1)")
    });
    assert!(failed.is_err());
    assert_eq!(dirty(&store), 0);
}

/// Stores written before the mirror's covering indexes gain them when opened (the queries that
/// name `dir_objects_state` would fail without it), and lose the index they replace.
#[test]
fn older_stores_gain_the_covering_indexes() {
    let (_dir, path, store) = store();
    store
        .conn
        .execute_batch(
            "DROP INDEX dir_objects_state; DROP INDEX dir_objects_dn_key;
             CREATE INDEX dir_objects_dn ON dir_objects (dn_key);",
        )
        .unwrap();
    drop(store);
    let store = StateStore::open(&path, T1).unwrap();
    let indexes: BTreeSet<String> = store
        .conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'dir_objects' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(indexes.contains("dir_objects_state") && indexes.contains("dir_objects_dn_key"), "{indexes:?}");
    assert!(!indexes.contains("dir_objects_dn"), "{indexes:?}");
    assert_eq!(store.groups_members(&["g"]).unwrap()["g"], vec![]);
    assert!(!store.is_valid_user("u").unwrap());
}

#[test]
fn a_transaction_is_all_or_nothing_and_nests() {
    let (_dir, path, mut store) = store();
    let failed: Result<(), StateError> = store.in_transaction(|s| {
        s.set_meta("a", Some("1"))?;
        // A savepoint of its own inside it (as `mirror_sql` takes) is released, not committed.
        s.mirror_sql(|c| c.execute("INSERT INTO meta (key, value) VALUES ('b', '2')", []))?;
        Err(StateError::TooNew { path: "on purpose".into(), found: 0, supported: 0 })
    });
    assert!(failed.is_err());
    assert_eq!((store.meta("a").unwrap(), store.meta("b").unwrap()), (None, None));

    store.in_transaction(|s| s.set_meta("a", Some("1"))).unwrap();
    // Committed: another connection sees it.
    let other = StateStore::open_read_only(&path).unwrap().unwrap();
    assert_eq!(other.meta("a").unwrap().as_deref(), Some("1"));

    // Inside a dry run it is the dry run's: rolled back with it.
    store.begin_dry_run().unwrap();
    store.in_transaction(|s| s.set_meta("c", Some("3"))).unwrap();
    assert_eq!(store.meta("c").unwrap().as_deref(), Some("3"));
    store.end_dry_run().unwrap();
    assert_eq!(store.meta("c").unwrap(), None);
}

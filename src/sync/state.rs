//! The state store (`state.db`): a SQLite cache of facts the tenant and the directory also hold.
//!
//! What it records: anchors (objectGUID → SCIM id, kind, DN, content hash, last seen run), the
//! group membership last applied to the tenant, quarantined and failing objects, and the runs.
//! Everything a [`Batch`] gathers is committed in one transaction, so a kill at any instant leaves
//! either the whole batch or none of it. A create is journalled as a `pending` anchor (committed
//! *before* the request is sent); the next run looks a pending object up by externalId before it
//! creates it again, so no kill can make a duplicate in the tenant.
//!
//! One writer at a time: [`StateStore::open`] takes an OS file lock on `<path>.lock`, which the OS
//! drops when the process dies. The mirror holds every user's name and mail, so the store's files
//! (the database, its `-wal` and `-shm`, the lock) are private to their owner: created 0600 on
//! Unix, and narrowed to that when an older ausi (or a copy) left them readable by others. The store never reads the clock (callers pass `now`, RFC 3339 UTC)
//! and never stores secrets: only identifiers, DNs, hashes, reasons and (already redacted) errors.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};

/// The schema this build reads and writes. 3: the run history (`runs.command`, `duration_ms`,
/// `error`) and the last heartbeat (`heartbeat`); see [`migrate`].
const SCHEMA_VERSION: i64 = 3;

/// How many runs the history keeps (the newest; see [`StateStore::finish_run`]).
pub const RUNS_KEPT: i64 = 100;

/// How long a statement waits for another connection (a `status` reader, a checkpoint) to let go.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS anchors (
    guid          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    scim_id       TEXT,
    dn            TEXT NOT NULL,
    hash          TEXT,
    -- the resource as last sent (JSON, no secrets): the dry-run plan lists changed attributes
    body          TEXT,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'active', 'deactivated', 'deleted')),
    last_seen_run INTEGER,
    updated_at    TEXT NOT NULL,
    -- the journal rule: no SCIM id exactly while a create is pending
    CHECK ((state = 'pending') = (scim_id IS NULL))
);
CREATE TABLE IF NOT EXISTS members (
    group_guid  TEXT NOT NULL,
    member_guid TEXT NOT NULL,
    PRIMARY KEY (group_guid, member_guid)
);
CREATE INDEX IF NOT EXISTS members_by_member ON members (member_guid);
CREATE TABLE IF NOT EXISTS quarantine (
    guid          TEXT PRIMARY KEY,
    dn            TEXT NOT NULL,
    reasons       TEXT NOT NULL,
    since         TEXT NOT NULL,
    last_seen_run INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    guid      TEXT PRIMARY KEY,
    dn        TEXT NOT NULL,
    operation TEXT NOT NULL,
    error     TEXT NOT NULL,
    since     TEXT NOT NULL,
    attempts  INTEGER NOT NULL
);
-- The directory mirror (schema 2, see mirror.rs): the selected scope as of the watermark.
CREATE TABLE IF NOT EXISTS dir_objects (
    guid     TEXT PRIMARY KEY,
    kind     TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    dn       TEXT NOT NULL,
    dn_key   TEXT NOT NULL,
    -- the attributes read (JSON; no secrets: AD never returns any)
    data     TEXT NOT NULL,
    -- the values the duplicate rules compare (trimmed, lower case)
    mail_key TEXT,
    upn_key  TEXT,
    sam_key  TEXT,
    -- the manager's guid, when in scope
    manager  TEXT,
    -- users: 'valid' or 'invalid' after validation
    status   TEXT,
    seen_run INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dir_objects_dn ON dir_objects (dn_key);
CREATE INDEX IF NOT EXISTS dir_objects_mail ON dir_objects (mail_key);
CREATE INDEX IF NOT EXISTS dir_objects_upn ON dir_objects (upn_key);
CREATE INDEX IF NOT EXISTS dir_objects_sam ON dir_objects (sam_key);
CREATE INDEX IF NOT EXISTS dir_objects_manager ON dir_objects (manager);
CREATE TABLE IF NOT EXISTS dir_members (
    group_guid  TEXT NOT NULL,
    member_guid TEXT NOT NULL,
    PRIMARY KEY (group_guid, member_guid)
);
CREATE INDEX IF NOT EXISTS dir_members_by_member ON dir_members (member_guid);
CREATE TABLE IF NOT EXISTS dir_ous (
    guid TEXT PRIMARY KEY,
    dn   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dirty (
    guid TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS watermarks (
    dc            TEXT PRIMARY KEY,
    invocation_id TEXT NOT NULL,
    usn           INTEGER NOT NULL,
    taken_at      TEXT NOT NULL,
    -- fingerprint of the selected OUs the mirror holds
    scope         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    dry_run     INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT,
    exit_code   INTEGER,
    counts      TEXT,
    -- schema 3 (added to older stores by `migrate`): the command that ran (`sync`, later
    -- `password-push`), how long it took, and why it failed (an error message, no secrets)
    command     TEXT NOT NULL DEFAULT 'sync',
    duration_ms INTEGER,
    error       TEXT
);
-- Schema 3: the last heartbeat sent to the tenant's agent API (one row).
CREATE TABLE IF NOT EXISTS heartbeat (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    -- what the tenant answered at the last successful heartbeat (e.g. 'Active')
    tenant_status   TEXT,
    last_success_at TEXT,
    last_attempt_at TEXT NOT NULL,
    -- why the last attempt failed (NULL when it succeeded)
    last_error      TEXT
);
";

/// The columns schema 3 added to `runs`, as `ALTER TABLE` clauses.
const RUNS_COLUMNS_3: [(&str, &str); 3] = [
    ("command", "command TEXT NOT NULL DEFAULT 'sync'"),
    ("duration_ms", "duration_ms INTEGER"),
    ("error", "error TEXT"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorKind {
    User,
    Group,
}

impl AnchorKind {
    fn as_str(self) -> &'static str {
        match self {
            AnchorKind::User => "user",
            AnchorKind::Group => "group",
        }
    }

    fn parse(s: &str) -> Option<AnchorKind> {
        match s {
            "user" => Some(AnchorKind::User),
            "group" => Some(AnchorKind::Group),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorState {
    /// A create was about to be sent: look the object up by externalId before creating it again.
    Pending,
    Active,
    Deactivated,
    Deleted,
}

impl AnchorState {
    fn as_str(self) -> &'static str {
        match self {
            AnchorState::Pending => "pending",
            AnchorState::Active => "active",
            AnchorState::Deactivated => "deactivated",
            AnchorState::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Option<AnchorState> {
        match s {
            "pending" => Some(AnchorState::Pending),
            "active" => Some(AnchorState::Active),
            "deactivated" => Some(AnchorState::Deactivated),
            "deleted" => Some(AnchorState::Deleted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    pub guid: String,
    pub kind: AnchorKind,
    /// `None` exactly while the anchor is [`AnchorState::Pending`].
    pub scim_id: Option<String>,
    pub dn: String,
    pub hash: Option<String>,
    pub state: AnchorState,
    pub last_seen_run: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuarantineEntry {
    pub guid: String,
    pub dn: String,
    pub reasons: Vec<Reason>,
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    pub rule: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Failure {
    pub guid: String,
    pub dn: String,
    pub operation: String,
    pub error: String,
    pub since: String,
    pub attempts: i64,
}

/// One run in the history, as `status` shows it (JSON field names are part of the report).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    pub id: i64,
    /// The command: `sync` or `password-push`.
    pub command: String,
    /// What the run was: for `sync`, `full` or `delta`; `sync` when it stopped before choosing.
    pub kind: String,
    pub dry_run: bool,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `None` while running or when it crashed; runs written before schema 3 have none.
    pub duration_ms: Option<i64>,
    /// `ok`, `findings` or `error`; `None` while running, and for ever when the run crashed.
    pub outcome: Option<String>,
    pub exit_code: Option<i64>,
    /// The command's counts (for `sync`: created, adopted, updated, unchanged, deactivated,
    /// deleted, membership_changes, quarantined, failed).
    pub counts: serde_json::Value,
    /// Why the run failed: the error's message (reports carry no secrets, nor does this).
    pub error: Option<String>,
}

/// How a run ended, for [`StateStore::finish_run`] and [`StateStore::record_run`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd<'a> {
    /// What the run turned out to be (`full`, `delta`, …), decided after it began.
    pub kind: &'a str,
    /// `ok`, `findings` or `error` (see `crate::sync::health::outcome_name`).
    pub outcome: &'a str,
    pub exit_code: i64,
    pub counts: &'a serde_json::Value,
    /// The error's message when the run failed; must be free of secrets.
    pub error: Option<&'a str>,
    pub finished_at: &'a str,
    pub duration_ms: u64,
}

/// The last heartbeat sent to the tenant's agent API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeartbeatRecord {
    /// What the tenant answered at the last successful heartbeat (e.g. `Active`).
    pub tenant_status: Option<String>,
    pub last_success_at: Option<String>,
    pub last_attempt_at: String,
    /// Why the last attempt failed; `None` when it succeeded.
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another ausi run holds the lock (the caller exits 75).
    #[error("another ausi run is using {path} (started {since})")]
    Locked { path: String, since: String },
    #[error("state store {path} was written by a newer ausi (schema {found}, this one reads {supported})")]
    TooNew { path: String, found: i64, supported: i64 },
    #[error("state store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A file of the store that other users could read when [`StateStore::open`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseFile {
    pub path: PathBuf,
    /// Its permission bits as found, e.g. `0o644`.
    pub mode: u32,
    /// Whether it is 0600 now (false: the change was refused, e.g. another user owns it).
    pub fixed: bool,
}

/// The open state database. Dropping it closes the connection first, then releases the lock.
pub struct StateStore {
    pub(super) conn: Connection,
    /// Held for the store's lifetime by [`StateStore::open`]; `None` for a read-only store.
    _lock: Option<File>,
    /// Files [`StateStore::open`] found readable by others (and narrowed).
    loose: Vec<LooseFile>,
    path: String,
    /// The first run this store began: runs from here on are ours, not "previous" ones.
    first_own_run: Option<i64>,
    /// The schema of the file (a read-only store may be older than [`SCHEMA_VERSION`]).
    schema: i64,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").field("path", &self.path).field("locked", &self._lock.is_some()).finish()
    }
}

impl StateStore {
    /// Opens (creating) the database and takes an exclusive lock on `<path>.lock` with std's `File::try_lock()` —
    /// a second process gets `Locked` at once (the holder's pid and `now` are written into the lock file for the
    /// message). The lock is released when the store is dropped (also when the process is killed: the OS drops it).
    ///
    /// The files are private to their owner (see the module's documentation): a new database is
    /// created 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` the database's
    /// mode), and files found readable by others are narrowed and listed in [`StateStore::loose_files`].
    pub fn open(path: &Path, now: &str) -> Result<StateStore, StateError> {
        let display = path.display().to_string();
        let mut loose = Vec::new();
        let lock = take_lock(path, &display, now, &mut loose)?;
        let io = |source| StateError::Io { path: display.clone(), source };
        private::create(path).map_err(io)?;
        for file in [path.to_owned(), sibling(path, "-wal"), sibling(path, "-shm")] {
            loose.extend(private::narrow_path(&file).map_err(io)?);
        }
        let sql = |source| StateError::Sqlite { path: display.clone(), source };

        // No SQLITE_OPEN_URI: a path is a path, even one starting with `file:`.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // Refuse a newer schema before changing anything in the file.
        let found = check_version(&conn, &display)?;
        // WAL + NORMAL: a commit survives the process being killed (only power loss may roll the last
        // commits back, and the tenant look-up by externalId covers that too).
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(sql(rusqlite::Error::InvalidParameterName(format!("journal_mode is {mode}, not wal"))));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;

        // Creation is one transaction: a kill leaves either no tables or all of them.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        tx.execute_batch(SCHEMA).map_err(sql)?;
        // Schema 1 stores gain the mirror tables; having no watermark, their next run is full.
        migrate(&tx, found).map_err(sql)?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION.to_string()],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        conn.execute_batch(super::mirror::TEMP_TABLES).map_err(sql)?;

        Ok(StateStore { conn, _lock: Some(lock), loose, path: display, first_own_run: None, schema: SCHEMA_VERSION })
    }

    /// The files [`StateStore::open`] found readable by other users, and whether it fixed them.
    pub fn loose_files(&self) -> &[LooseFile] {
        &self.loose
    }

    /// Read-only open for `status`: no lock, never creates (returns Ok(None) when the file does not exist,
    /// or holds no store yet). Works while a run holds the lock (WAL readers do not block the writer).
    pub fn open_read_only(path: &Path) -> Result<Option<StateStore>, StateError> {
        if let Ok(false) = path.try_exists() {
            return Ok(None);
        }
        let display = path.display().to_string();
        let sql = |source| StateError::Sqlite { path: display.clone(), source };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        let Some(schema) = check_version(&conn, &display)? else {
            return Ok(None);
        };
        Ok(Some(StateStore { conn, _lock: None, loose: Vec::new(), path: display, first_own_run: None, schema }))
    }

    pub(super) fn sql(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite { path: self.path.clone(), source }
    }

    /// Records that a run of `command` (`sync`, `password-push`, …) starts; until
    /// [`StateStore::finish_run`] it shows as running (or, after a kill, as crashed).
    pub fn begin_run(&mut self, command: &str, dry_run: bool, now: &str) -> Result<i64, StateError> {
        self.conn
            .execute(
                "INSERT INTO runs (command, kind, dry_run, started_at) VALUES (?1, ?1, ?2, ?3)",
                params![command, dry_run, now],
            )
            .map_err(|e| self.sql(e))?;
        let id = self.conn.last_insert_rowid();
        self.first_own_run.get_or_insert(id);
        Ok(id)
    }

    /// Records how the run ended, then keeps only the newest [`RUNS_KEPT`] runs (never a crashed
    /// `sync` run that no later real run has finished after: [`StateStore::previous_run_crashed`]
    /// needs it). Not inside a dry run's savepoint: the history survives its rollback.
    pub fn finish_run(&mut self, run: i64, end: &RunEnd<'_>) -> Result<(), StateError> {
        let result = (|| -> rusqlite::Result<usize> {
            // A savepoint, not BEGIN: it also works inside an open transaction.
            let tx = self.conn.savepoint()?;
            let changed = tx.execute(
                "UPDATE runs SET finished_at = ?2, outcome = ?3, exit_code = ?4, counts = ?5, kind = ?6,
                     duration_ms = ?7, error = ?8 WHERE id = ?1",
                params![
                    run,
                    end.finished_at,
                    end.outcome,
                    end.exit_code,
                    end.counts.to_string(),
                    end.kind,
                    i64::try_from(end.duration_ms).unwrap_or(i64::MAX),
                    end.error
                ],
            )?;
            prune_runs(&tx)?;
            tx.commit()?;
            Ok(changed)
        })();
        match result.map_err(|e| self.sql(e))? {
            0 => Err(self.sql(rusqlite::Error::QueryReturnedNoRows)),
            _ => Ok(()),
        }
    }

    /// A run recorded at its end, in one call (for a command that writes nothing a crash could
    /// leave half done): [`StateStore::begin_run`] at `started_at`, then [`StateStore::finish_run`].
    pub fn record_run(
        &mut self,
        command: &str,
        dry_run: bool,
        started_at: &str,
        end: &RunEnd<'_>,
    ) -> Result<i64, StateError> {
        let run = self.begin_run(command, dry_run, started_at)?;
        self.finish_run(run, end)?;
        Ok(run)
    }

    /// Newest first. A store written before schema 3 (read by `status`) has no command,
    /// duration or error.
    pub fn last_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let columns = if self.schema >= 3 { "command, duration_ms, error" } else { "'sync', NULL, NULL" };
        let read = || -> rusqlite::Result<Vec<RunRecord>> {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT id, kind, dry_run, started_at, finished_at, outcome, exit_code, counts, {columns}
                 FROM runs ORDER BY id DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit], |r| {
                let counts: Option<String> = r.get(7)?;
                let counts = match counts {
                    None => serde_json::Value::Null,
                    Some(text) => serde_json::from_str(&text).map_err(|e| conversion(7, e))?,
                };
                Ok(RunRecord {
                    id: r.get(0)?,
                    command: r.get(8)?,
                    kind: r.get(1)?,
                    dry_run: r.get(2)?,
                    started_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    duration_ms: r.get(9)?,
                    outcome: r.get(5)?,
                    exit_code: r.get(6)?,
                    counts,
                    error: r.get(10)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| self.sql(e))
    }

    /// Records one heartbeat: `Ok(tenant status)` when the tenant accepted it, `Err(reason)`
    /// (free of secrets) when not. A failure keeps the last success and the status it brought.
    pub fn record_heartbeat(&mut self, now: &str, result: Result<&str, &str>) -> Result<(), StateError> {
        let changed = match result {
            Ok(status) => self.conn.execute(
                "INSERT INTO heartbeat (id, tenant_status, last_success_at, last_attempt_at, last_error)
                 VALUES (1, ?1, ?2, ?2, NULL)
                 ON CONFLICT (id) DO UPDATE SET tenant_status = excluded.tenant_status,
                     last_success_at = excluded.last_success_at, last_attempt_at = excluded.last_attempt_at,
                     last_error = NULL",
                params![status, now],
            ),
            Err(reason) => self.conn.execute(
                "INSERT INTO heartbeat (id, tenant_status, last_success_at, last_attempt_at, last_error)
                 VALUES (1, NULL, NULL, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,
                     last_error = excluded.last_error",
                params![now, reason],
            ),
        };
        changed.map(|_| ()).map_err(|e| self.sql(e))
    }

    /// The last heartbeat; `None` before the first one (and in a store older than schema 3).
    pub fn heartbeat(&self) -> Result<Option<HeartbeatRecord>, StateError> {
        if self.schema < 3 {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT tenant_status, last_success_at, last_attempt_at, last_error FROM heartbeat WHERE id = 1",
                [],
                |r| {
                    Ok(HeartbeatRecord {
                        tenant_status: r.get(0)?,
                        last_success_at: r.get(1)?,
                        last_attempt_at: r.get(2)?,
                        last_error: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// True when the previous run never finished (crashed): the caller then verifies pending anchors.
    ///
    /// "Previous" means every run before this store's own, back to the last real (not dry) run that
    /// finished: a crashed real run followed by a finished dry run (which resolves nothing) still counts.
    pub fn previous_run_crashed(&self) -> Result<bool, StateError> {
        let before = self.first_own_run.unwrap_or(i64::MAX);
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE id < ?1 AND command = 'sync' AND finished_at IS NULL
                     AND id > COALESCE((SELECT MAX(id) FROM runs WHERE id < ?1 AND command = 'sync'
                         AND finished_at IS NOT NULL AND dry_run = 0), 0))",
                [before],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// All anchors, keyed by guid.
    pub fn anchors(&self) -> Result<HashMap<String, Anchor>, StateError> {
        self.anchors_where("")
    }

    /// The anchors a delta can touch: the dirty objects (among them those that left the mirror),
    /// their members and managers (for SCIM ids) and the tenant members of dirty groups (for
    /// removals). A delta then costs what changed, not the number of anchors.
    pub fn anchors_for_dirty(&self) -> Result<HashMap<String, Anchor>, StateError> {
        self.anchors_where(
            "WHERE guid IN (SELECT guid FROM dirty)
                OR guid IN (SELECT member_guid FROM dir_members WHERE group_guid IN (SELECT guid FROM dirty))
                OR guid IN (SELECT manager FROM dir_objects WHERE guid IN (SELECT guid FROM dirty))
                OR guid IN (SELECT member_guid FROM members WHERE group_guid IN (SELECT guid FROM dirty))
                OR (guid IN (SELECT guid FROM dirty) AND guid NOT IN (SELECT guid FROM dir_objects))",
        )
    }

    /// objectGUIDs of the users ausi provisioned and then deactivated or deleted (gone from AD
    /// or from the scope): a re-created account may find its userName held by one of them.
    pub fn retired_users(&self) -> Result<HashSet<String>, StateError> {
        Ok(self
            .anchors_where("WHERE kind = 'user' AND state IN ('deactivated', 'deleted')")?
            .into_keys()
            .map(|g| g.to_lowercase())
            .collect())
    }

    /// The SCIM id of an active anchor.
    pub fn scim_id(&self, guid: &str) -> Result<Option<String>, StateError> {
        self.conn
            .query_row("SELECT scim_id FROM anchors WHERE guid = ?1 AND state = 'active'", [guid], |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.sql(e))
    }

    /// How many objects the tenant has from this agent (active anchors).
    pub fn active_anchors(&self) -> Result<usize, StateError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM anchors WHERE state = 'active'", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as usize)
            .map_err(|e| self.sql(e))
    }

    fn anchors_where(&self, condition: &str) -> Result<HashMap<String, Anchor>, StateError> {
        let read = || -> rusqlite::Result<HashMap<String, Anchor>> {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT guid, kind, scim_id, dn, hash, state, last_seen_run FROM anchors {condition}"
            ))?;
            let rows = stmt.query_map([], |r| {
                let kind: String = r.get(1)?;
                let state: String = r.get(5)?;
                Ok(Anchor {
                    guid: r.get(0)?,
                    kind: AnchorKind::parse(&kind).ok_or_else(|| conversion(1, unknown("kind", &kind)))?,
                    scim_id: r.get(2)?,
                    dn: r.get(3)?,
                    hash: r.get(4)?,
                    state: AnchorState::parse(&state).ok_or_else(|| conversion(5, unknown("state", &state)))?,
                    last_seen_run: r.get(6)?,
                })
            })?;
            rows.map(|a| a.map(|a| (a.guid.clone(), a))).collect()
        };
        read().map_err(|e| self.sql(e))
    }

    /// Group guid → member guids, as last applied to the tenant. A group with no members is absent.
    #[cfg(test)]
    pub fn members(&self) -> Result<HashMap<String, BTreeSet<String>>, StateError> {
        let read = || -> rusqlite::Result<HashMap<String, BTreeSet<String>>> {
            let mut stmt = self.conn.prepare("SELECT group_guid, member_guid FROM members")?;
            let mut map: HashMap<String, BTreeSet<String>> = HashMap::new();
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (group, member) = row?;
                map.entry(group).or_default().insert(member);
            }
            Ok(map)
        };
        read().map_err(|e| self.sql(e))
    }

    /// Ordered by DN, then guid.
    pub fn quarantine(&self) -> Result<Vec<QuarantineEntry>, StateError> {
        let read = || -> rusqlite::Result<Vec<QuarantineEntry>> {
            let mut stmt = self.conn.prepare("SELECT guid, dn, reasons, since FROM quarantine ORDER BY dn, guid")?;
            let rows = stmt.query_map([], |r| {
                let reasons: String = r.get(2)?;
                Ok(QuarantineEntry {
                    guid: r.get(0)?,
                    dn: r.get(1)?,
                    reasons: serde_json::from_str(&reasons).map_err(|e| conversion(2, e))?,
                    since: r.get(3)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| self.sql(e))
    }

    /// Ordered by DN, then guid.
    pub fn failures(&self) -> Result<Vec<Failure>, StateError> {
        let read = || -> rusqlite::Result<Vec<Failure>> {
            let mut stmt = self
                .conn
                .prepare("SELECT guid, dn, operation, error, since, attempts FROM failures ORDER BY dn, guid")?;
            let rows = stmt.query_map([], |r| {
                Ok(Failure {
                    guid: r.get(0)?,
                    dn: r.get(1)?,
                    operation: r.get(2)?,
                    error: r.get(3)?,
                    since: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| self.sql(e))
    }

    /// One transaction: the batch is applied all or nothing, in the order it was gathered.
    /// An empty batch writes nothing.
    pub fn commit(&mut self, batch: &Batch, now: &str) -> Result<(), StateError> {
        if batch.is_empty() {
            return Ok(());
        }
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for op in &batch.ops {
                apply(&tx, op, now)?;
            }
            tx.commit()
        })();
        result.map_err(|e| self.sql(e))
    }
}

/// Changes gathered while applying one batch of tenant writes, committed in one SQLite transaction.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Pending { guid: String, kind: AnchorKind, dn: String },
    Anchor { guid: String, kind: AnchorKind, scim_id: String, dn: String, hash: String, run: i64 },
    Seen { guid: String, dn: String, run: i64 },
    Body { guid: String, body: String },
    SetState { guid: String, state: AnchorState },
    Forget { guid: String },
    SetMembers { group: String, members: BTreeSet<String> },
    AddMember { group: String, member: String },
    RemoveMember { group: String, member: String },
    Quarantine { entry: QuarantineEntry, run: i64 },
    Release { guid: String },
    Fail { guid: String, dn: String, operation: String, error: String },
    ClearFailure { guid: String },
    Meta { key: String, value: String },
}

impl Batch {
    /// Journal a create before it is sent: the anchor becomes pending with no SCIM id (and no hash).
    pub fn pending(&mut self, guid: &str, kind: AnchorKind, dn: &str) {
        self.ops.push(Op::Pending { guid: guid.into(), kind, dn: dn.into() });
    }

    /// Created / adopted / updated: state Active.
    /// Records the resource as sent (after [`Batch::anchor`] for the same guid).
    pub fn body(&mut self, guid: &str, body: &serde_json::Value) {
        self.ops.push(Op::Body { guid: guid.into(), body: body.to_string() });
    }

    pub fn anchor(&mut self, guid: &str, kind: AnchorKind, scim_id: &str, dn: &str, hash: &str, run: i64) {
        self.ops.push(Op::Anchor {
            guid: guid.into(),
            kind,
            scim_id: scim_id.into(),
            dn: dn.into(),
            hash: hash.into(),
            run,
        });
    }

    /// Unchanged object seen this run (dn may have changed). No effect on an unknown guid.
    pub fn seen(&mut self, guid: &str, dn: &str, run: i64) {
        self.ops.push(Op::Seen { guid: guid.into(), dn: dn.into(), run });
    }

    /// Deactivated / deleted / reactivated. No effect on an unknown guid. A pending anchor (no SCIM id)
    /// cannot leave `Pending` this way, nor an anchored one enter it: such a batch fails as a whole.
    pub fn set_state(&mut self, guid: &str, state: AnchorState) {
        self.ops.push(Op::SetState { guid: guid.into(), state });
    }

    /// Remove the anchor and its member rows, as a group and as a member (e.g. a pending create that
    /// the tenant never got).
    pub fn forget(&mut self, guid: &str) {
        self.ops.push(Op::Forget { guid: guid.into() });
    }

    /// Replace the group's whole membership.
    pub fn set_members(&mut self, group_guid: &str, members: &BTreeSet<String>) {
        self.ops.push(Op::SetMembers { group: group_guid.into(), members: members.clone() });
    }

    pub fn add_member(&mut self, group_guid: &str, member_guid: &str) {
        self.ops.push(Op::AddMember { group: group_guid.into(), member: member_guid.into() });
    }

    pub fn remove_member(&mut self, group_guid: &str, member_guid: &str) {
        self.ops.push(Op::RemoveMember { group: group_guid.into(), member: member_guid.into() });
    }

    /// Upsert; keeps the original `since` (the entry's `since` is used only for a new entry).
    pub fn quarantine(&mut self, entry: QuarantineEntry, run: i64) {
        self.ops.push(Op::Quarantine { entry, run });
    }

    /// Out of quarantine.
    pub fn release(&mut self, guid: &str) {
        self.ops.push(Op::Release { guid: guid.into() });
    }

    /// Upsert; attempts += 1, keeps the first `since` (the commit's `now`), the latest dn/operation/error.
    /// `error` must already be free of secrets.
    pub fn fail(&mut self, guid: &str, dn: &str, operation: &str, error: &str) {
        self.ops.push(Op::Fail { guid: guid.into(), dn: dn.into(), operation: operation.into(), error: error.into() });
    }

    /// A fact learned about the tenant (e.g. which PATCH form removes a member), kept across runs.
    pub fn meta(&mut self, key: &str, value: &str) {
        self.ops.push(Op::Meta { key: key.into(), value: value.into() });
    }

    pub fn clear_failure(&mut self, guid: &str) {
        self.ops.push(Op::ClearFailure { guid: guid.into() });
    }

    /// Operations gathered so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

fn apply(tx: &Transaction<'_>, op: &Op, now: &str) -> rusqlite::Result<()> {
    match op {
        Op::Pending { guid, kind, dn } => {
            tx.prepare_cached(
                "INSERT INTO anchors (guid, kind, scim_id, dn, hash, state, last_seen_run, updated_at)
                 VALUES (?1, ?2, NULL, ?3, NULL, 'pending', NULL, ?4)
                 ON CONFLICT (guid) DO UPDATE SET kind = excluded.kind, scim_id = NULL, dn = excluded.dn,
                     hash = NULL, body = NULL, state = 'pending', updated_at = excluded.updated_at",
            )?
            .execute(params![guid, kind.as_str(), dn, now])?;
        }
        Op::Anchor { guid, kind, scim_id, dn, hash, run } => {
            tx.prepare_cached(
                "INSERT INTO anchors (guid, kind, scim_id, dn, hash, state, last_seen_run, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7)
                 ON CONFLICT (guid) DO UPDATE SET kind = excluded.kind, scim_id = excluded.scim_id,
                     dn = excluded.dn, hash = excluded.hash, state = 'active',
                     last_seen_run = excluded.last_seen_run, updated_at = excluded.updated_at",
            )?
            .execute(params![guid, kind.as_str(), scim_id, dn, hash, run, now])?;
        }
        Op::Body { guid, body } => {
            tx.prepare_cached("UPDATE anchors SET body = ?2 WHERE guid = ?1")?.execute(params![guid, body])?;
        }
        Op::Seen { guid, dn, run } => {
            tx.prepare_cached("UPDATE anchors SET dn = ?2, last_seen_run = ?3, updated_at = ?4 WHERE guid = ?1")?
                .execute(params![guid, dn, run, now])?;
        }
        Op::SetState { guid, state } => {
            tx.prepare_cached("UPDATE anchors SET state = ?2, updated_at = ?3 WHERE guid = ?1")?.execute(params![
                guid,
                state.as_str(),
                now
            ])?;
        }
        Op::Forget { guid } => {
            tx.prepare_cached("DELETE FROM members WHERE group_guid = ?1 OR member_guid = ?1")?.execute([guid])?;
            tx.prepare_cached("DELETE FROM anchors WHERE guid = ?1")?.execute([guid])?;
        }
        Op::SetMembers { group, members } => {
            tx.prepare_cached("DELETE FROM members WHERE group_guid = ?1")?.execute([group])?;
            let mut insert = tx.prepare_cached("INSERT INTO members (group_guid, member_guid) VALUES (?1, ?2)")?;
            for member in members {
                insert.execute([group, member])?;
            }
        }
        Op::AddMember { group, member } => {
            tx.prepare_cached("INSERT OR IGNORE INTO members (group_guid, member_guid) VALUES (?1, ?2)")?
                .execute([group, member])?;
        }
        Op::RemoveMember { group, member } => {
            tx.prepare_cached("DELETE FROM members WHERE group_guid = ?1 AND member_guid = ?2")?
                .execute([group, member])?;
        }
        Op::Quarantine { entry, run } => {
            let reasons = serde_json::to_string(&entry.reasons)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            tx.prepare_cached(
                "INSERT INTO quarantine (guid, dn, reasons, since, last_seen_run) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (guid) DO UPDATE SET dn = excluded.dn, reasons = excluded.reasons,
                     last_seen_run = excluded.last_seen_run",
            )?
            .execute(params![entry.guid, entry.dn, reasons, entry.since, run])?;
        }
        Op::Release { guid } => {
            tx.prepare_cached("DELETE FROM quarantine WHERE guid = ?1")?.execute([guid])?;
        }
        Op::Fail { guid, dn, operation, error } => {
            tx.prepare_cached(
                "INSERT INTO failures (guid, dn, operation, error, since, attempts) VALUES (?1, ?2, ?3, ?4, ?5, 1)
                 ON CONFLICT (guid) DO UPDATE SET dn = excluded.dn, operation = excluded.operation,
                     error = excluded.error, attempts = failures.attempts + 1",
            )?
            .execute(params![guid, dn, operation, error, now])?;
        }
        Op::ClearFailure { guid } => {
            tx.prepare_cached("DELETE FROM failures WHERE guid = ?1")?.execute([guid])?;
        }
        Op::Meta { key, value } => {
            tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?.execute([key, value])?;
        }
    }
    Ok(())
}

/// Brings a store of schema `found` (`None`: a new file) up to [`SCHEMA_VERSION`], inside the
/// transaction that created any missing table. Schema 1 → 2 only added tables (done by
/// [`SCHEMA`]); 2 → 3 adds the run history's columns to `runs` (older runs get command `sync`,
/// and their duration from their timestamps) and the `heartbeat` table ([`SCHEMA`] again).
fn migrate(tx: &Connection, found: Option<i64>) -> rusqlite::Result<()> {
    if found.is_some_and(|v| v < 3) {
        let existing: BTreeSet<String> = {
            let mut stmt = tx.prepare("SELECT name FROM pragma_table_info('runs')")?;
            stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
        };
        for (name, definition) in RUNS_COLUMNS_3 {
            if !existing.contains(name) {
                tx.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {definition}"))?;
            }
        }
        tx.execute(
            "UPDATE runs SET duration_ms = CAST(ROUND((julianday(finished_at) - julianday(started_at)) * 86400000) AS INTEGER)
             WHERE duration_ms IS NULL AND finished_at IS NOT NULL AND julianday(finished_at) IS NOT NULL
                 AND julianday(started_at) IS NOT NULL",
            [],
        )?;
    }
    Ok(())
}

/// Keeps the newest [`RUNS_KEPT`] runs, and every unfinished `sync` run newer than the last
/// finished real one (a crash the next run must still see).
fn prune_runs(tx: &Connection) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?1)
             AND NOT (command = 'sync' AND finished_at IS NULL AND id > COALESCE(
                 (SELECT MAX(id) FROM runs WHERE command = 'sync' AND finished_at IS NOT NULL AND dry_run = 0), 0))",
        [RUNS_KEPT],
    )
}

/// The schema version in the file: `None` for a file that holds no store yet; `TooNew` past ours.
fn check_version(conn: &Connection, path: &str) -> Result<Option<i64>, StateError> {
    let read = || -> rusqlite::Result<Option<i64>> {
        let has_meta: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
            [],
            |r| r.get(0),
        )?;
        if !has_meta {
            return Ok(None);
        }
        conn.query_row("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
            .optional()
    };
    let found = read().map_err(|source| StateError::Sqlite { path: path.to_owned(), source })?;
    match found {
        Some(found) if found > SCHEMA_VERSION => {
            Err(StateError::TooNew { path: path.to_owned(), found, supported: SCHEMA_VERSION })
        }
        // Older versions are migrated by `open` (see `migrate`).
        found => Ok(found),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    sibling(path, ".lock")
}

/// `path` with `suffix` appended to its file name (`state.db` → `state.db-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Takes the exclusive lock, then records who holds it. Never truncates before the lock is ours.
/// A lock file found readable by others is narrowed once the lock is ours (and added to `loose`).
fn take_lock(path: &Path, display: &str, now: &str, loose: &mut Vec<LooseFile>) -> Result<File, StateError> {
    let lock_path = lock_path(path);
    let io = |source| StateError::Io { path: lock_path.display().to_string(), source };
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    private::mode(&mut options);
    let mut file = options.open(&lock_path).map_err(io)?;
    // `File::try_lock` is stable since Rust 1.89 (flock on Unix, LockFileEx on Windows); the lock belongs
    // to this open file, so a second open in the same process is refused too.
    #[allow(clippy::incompatible_msrv)]
    let locked = file.try_lock();
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(StateError::Locked { path: display.to_owned(), since: holder(&mut file) });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let record = (|| -> std::io::Result<()> {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{} {}", std::process::id(), now)?;
        file.flush()
    })();
    record.map_err(io)?;
    loose.extend(private::narrow_file(&file, &lock_path).map_err(io)?);
    Ok(file)
}

/// Files only their owner may read. On Unix: created 0600, and narrowed to the owner's bits when
/// group or others have any. Elsewhere (Windows) a new file inherits the folder's ACL, which the
/// installation restricts (`%ProgramData%\ausi`); nothing is widened or changed here.
mod private {
    use std::fs::{File, OpenOptions};
    use std::path::Path;

    use super::LooseFile;

    /// Makes `options` create a file 0600.
    #[cfg(unix)]
    pub(super) fn mode(options: &mut OpenOptions) {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }

    #[cfg(not(unix))]
    pub(super) fn mode(_options: &mut OpenOptions) {}

    /// Creates `path` (empty, 0600) when it does not exist yet, so that SQLite finds it private:
    /// it gives the `-wal` and `-shm` files it creates the database's mode. An existing file is
    /// not opened here (closing a second descriptor of a database drops the process's locks on it).
    pub(super) fn create(path: &Path) -> std::io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        mode(&mut options);
        match options.open(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Narrows `path` (if it exists) to its owner's permissions when others have any.
    #[cfg(unix)]
    pub(super) fn narrow_path(path: &Path) -> std::io::Result<Option<LooseFile>> {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return Ok(None);
        }
        let fixed = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)).is_ok();
        Ok(Some(LooseFile { path: path.to_owned(), mode, fixed }))
    }

    #[cfg(not(unix))]
    pub(super) fn narrow_path(_path: &Path) -> std::io::Result<Option<LooseFile>> {
        Ok(None)
    }

    /// [`narrow_path`] for a file this process holds open (by its descriptor).
    #[cfg(unix)]
    pub(super) fn narrow_file(file: &File, path: &Path) -> std::io::Result<Option<LooseFile>> {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return Ok(None);
        }
        let fixed = file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700)).is_ok();
        Ok(Some(LooseFile { path: path.to_owned(), mode, fixed }))
    }

    #[cfg(not(unix))]
    pub(super) fn narrow_file(_file: &File, _path: &Path) -> std::io::Result<Option<LooseFile>> {
        Ok(None)
    }
}

/// "<when> by pid <pid>", from the holder's lock file (unreadable on Windows while locked).
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() {
        return "at an unknown time".to_owned();
    }
    match text.trim().split_once(' ') {
        Some((pid, when)) if !when.is_empty() => format!("{when} by pid {pid}"),
        _ => "at an unknown time".to_owned(),
    }
}

fn conversion(column: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

fn unknown(what: &str, value: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unknown anchor {what} {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-05-01T10:00:00Z";
    const T1: &str = "2026-05-01T11:00:00Z";
    const T2: &str = "2026-05-01T12:00:00Z";

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
        assert_eq!(check_version(&store.conn, "x").unwrap(), Some(3));
        assert!(store.anchors().unwrap().is_empty());
        assert!(store.members().unwrap().is_empty());
        assert!(store.quarantine().unwrap().is_empty());
        assert!(store.failures().unwrap().is_empty());
        assert!(store.last_runs(10).unwrap().is_empty());
        assert!(!store.previous_run_crashed().unwrap());
        drop(store);
        // Reopening an existing store changes nothing.
        let store = StateStore::open(&path, T1).unwrap();
        assert_eq!(check_version(&store.conn, "x").unwrap(), Some(3));
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
        let updated: String =
            store.conn.query_row("SELECT updated_at FROM anchors WHERE guid = 'u1'", [], |r| r.get(0)).unwrap();
        assert_eq!(updated, T2);

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

    fn end<'a>(
        kind: &'a str,
        outcome: &'a str,
        exit_code: i64,
        counts: &'a serde_json::Value,
        at: &'a str,
    ) -> RunEnd<'a> {
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
        assert_eq!(
            (run.outcome.as_deref(), run.exit_code, run.error.as_deref()),
            (Some("error"), Some(75), failed.error)
        );
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
        assert_eq!(check_version(&store.conn, "x").unwrap(), Some(3));
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
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'", []).unwrap();
        drop(conn);

        let err = StateStore::open(&path, T1).unwrap_err();
        assert!(matches!(err, StateError::TooNew { found: 4, supported: 3, .. }), "{err:?}");
        assert!(err.to_string().contains("written by a newer ausi (schema 4, this one reads 3)"), "{err}");
        let err = StateStore::open_read_only(&path).unwrap_err();
        assert!(matches!(err, StateError::TooNew { found: 4, .. }), "{err:?}");
        // Refusing changed nothing.
        let conn = Connection::open(&path).unwrap();
        let v: String = conn.query_row("SELECT value FROM meta", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "4");
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

    // ---- crash safety: a child process writes in a loop and is killed at a random moment ----

    const CHILD_ENV: &str = "AUSI_STATE_TEST_CRASH_CHILD";
    const GROUP: &str = "group-all";

    /// The libtest name of `crash_child`, wherever this module lives (`tests::crash_child` here,
    /// `sync::state::tests::crash_child` in ausi).
    fn child_test_name() -> String {
        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        format!("{module}::crash_child")
    }

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
    fn assert_consistent(store: &StateStore) -> usize {
        assert_eq!(pragma(store, "integrity_check"), "ok");
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
        let members = store.members().unwrap().remove(GROUP).unwrap_or_default();
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
                .args([child_test_name().as_str(), "--exact", "--test-threads=1"])
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
                let seen = StateStore::open_read_only(&path)
                    .ok()
                    .flatten()
                    .and_then(|s| s.anchors().ok())
                    .map_or(0, |a| a.len());
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
            count = assert_consistent(&store);
            assert!(count >= progress, "round {round}: {count} < {progress}");
            assert!(store.previous_run_crashed().unwrap(), "round {round}");
            drop(store);
        }
    }
}

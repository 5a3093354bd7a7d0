//! The schema: the tables a store holds, and the migrations that bring an older file up to them.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension};

use super::StateError;

/// The schema this build reads and writes. 3: the run history (`runs.command`, `duration_ms`,
/// `error`) and the last heartbeat (`heartbeat`); 4: an anchor's `state` checked by
/// comparisons; see [`migrate`].
pub(super) const SCHEMA_VERSION: i64 = 4;

pub(super) const SCHEMA: &str = "
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
    state         TEXT NOT NULL CHECK (state = 'pending' OR state = 'active' OR state = 'deactivated' OR state = 'deleted'),
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
    -- the attributes read (packed, see attrs.rs; JSON in rows older ausi wrote; no secrets:
    -- AD never returns any)
    data     TEXT NOT NULL,
    -- users: the values the duplicate rules compare (trimmed, lower case); groups have none
    mail_key TEXT,
    upn_key  TEXT,
    sam_key  TEXT,
    -- the manager's guid, when in scope
    manager  TEXT,
    -- users: 'valid' or 'invalid' after validation
    status   TEXT,
    seen_run INTEGER NOT NULL
);
-- Covering what the links of a read join on (a DN's object, its kind), so that resolving them
-- reads the index and not the rows (issue 13: at 100,000 users the rows no longer fit the cache).
DROP INDEX IF EXISTS dir_objects_dn;
CREATE INDEX IF NOT EXISTS dir_objects_dn_key ON dir_objects (dn_key, guid, kind);
CREATE INDEX IF NOT EXISTS dir_objects_mail ON dir_objects (mail_key);
CREATE INDEX IF NOT EXISTS dir_objects_upn ON dir_objects (upn_key);
CREATE INDEX IF NOT EXISTS dir_objects_sam ON dir_objects (sam_key);
CREATE INDEX IF NOT EXISTS dir_objects_manager ON dir_objects (manager);
-- Covering what a group's members and a manager are looked up for (kind, verdict), by objectGUID:
-- queries name it (INDEXED BY), as SQLite prefers the primary key's index, which is not.
CREATE INDEX IF NOT EXISTS dir_objects_state ON dir_objects (guid, kind, status);
CREATE TABLE IF NOT EXISTS dir_members (
    group_guid  TEXT NOT NULL,
    member_guid TEXT NOT NULL,
    PRIMARY KEY (group_guid, member_guid)
);
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

/// The index of `dir_members` by member, created with [`SCHEMA`] and again after a full read
/// (which drops it to insert every membership without it, see `StateStore::mirror_resolve_links`).
pub(super) const MEMBERS_BY_MEMBER: &str =
    "CREATE INDEX IF NOT EXISTS dir_members_by_member ON dir_members (member_guid);";

/// Per-connection scratch tables of [`StateStore::mirror_put`] and
/// [`StateStore::mirror_resolve_links`] (created once, outside any dry-run savepoint).
pub(super) const TEMP_TABLES: &str = "
    CREATE TEMP TABLE IF NOT EXISTS links (from_guid TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL);
    CREATE TEMP TABLE IF NOT EXISTS old_members (group_guid TEXT, member_guid TEXT);";

/// Brings a store of schema `found` (`None`: a new file) up to [`SCHEMA_VERSION`], inside the
/// transaction that created any missing table. Schema 1 → 2 only added tables (done by
/// [`SCHEMA`]); 2 → 3 adds the run history's columns to `runs` (older runs get command `sync`,
/// and their duration from their timestamps) and the `heartbeat` table ([`SCHEMA`] again);
/// 3 → 4 rebuilds `anchors` with the check of its `state` written as comparisons: as
/// `state IN (four values)`, SQLite built a temporary table of the four for every row written
/// (callgrind: 10 % of a 10,000-user full sync's instructions, and an allocation of pages each).
pub(super) fn migrate(tx: &Connection, found: Option<i64>) -> rusqlite::Result<()> {
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
    if found.is_some_and(|v| v < 4) {
        tx.execute_batch("ALTER TABLE anchors RENAME TO anchors_3;")?;
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(
            "INSERT INTO anchors (guid, kind, scim_id, dn, hash, body, state, last_seen_run, updated_at)
                 SELECT guid, kind, scim_id, dn, hash, body, state, last_seen_run, updated_at FROM anchors_3;
             DROP TABLE anchors_3;",
        )?;
    }
    Ok(())
}

/// The schema version in the file: `None` for a file that holds no store yet; `TooNew` past ours.
pub(super) fn check_version(conn: &Connection, path: &str) -> Result<Option<i64>, StateError> {
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

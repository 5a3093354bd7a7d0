//! Run history and heartbeat: what each run of `sync` or `password-push` did, and the last
//! heartbeat sent to the tenant's agent API.

use rusqlite::{Connection, OptionalExtension, params};

use super::db::conversion;
use super::{StateError, StateStore};

/// How many runs the history keeps (the newest; see [`StateStore::finish_run`]).
pub const RUNS_KEPT: i64 = 100;

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

impl StateStore {
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

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
//!
//! One file per job: [`db`] opens the file (permissions, pragmas, savepoints, the query
//! helper), [`schema`] holds the tables and migrations, [`lock`] the one-writer lock, [`history`]
//! the runs and the heartbeat, [`anchors`] the anchors, the write journal, quarantine and
//! failures, and [`mirror`] the directory mirror, its links, the dirty set and the watermarks
//! ([`attrs`] packs a mirror row's attributes).

mod anchors;
mod attrs;
mod db;
mod history;
mod lock;
mod mirror;
mod schema;
#[cfg(test)]
mod tests;

pub use anchors::{Anchor, AnchorKind, AnchorState, Batch, Failure, QuarantineEntry, Reason};
pub use db::{LooseFile, StateError, StateStore};
pub use history::{HeartbeatRecord, RUNS_KEPT, RunEnd, RunRecord};
pub use mirror::{KEY_COLUMNS, Member, Mirrored, PageEnd, Watermark, directory_keys, duplicate_key};

//! Anchors (objectGUID → SCIM id), the write journal that commits a batch of them in one
//! transaction, quarantine and failures.

use std::collections::{BTreeSet, HashMap, HashSet};

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::db::conversion;
use super::{StateError, StateStore};

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
    /// The last run that anchored it, or found it moved or renamed.
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
/// The anchors a delta can touch: the dirty objects (among them those that left the mirror),
/// their members and managers (for SCIM ids) and the tenant members of dirty groups (for
/// removals). A delta then costs what changed, not the number of anchors.
const DIRTY_ANCHORS: &str = "WHERE guid IN (SELECT guid FROM dirty)
    OR guid IN (SELECT member_guid FROM dir_members WHERE group_guid IN (SELECT guid FROM dirty))
    OR guid IN (SELECT manager FROM dir_objects WHERE guid IN (SELECT guid FROM dirty))
    OR guid IN (SELECT member_guid FROM members WHERE group_guid IN (SELECT guid FROM dirty))
    OR (guid IN (SELECT guid FROM dirty) AND guid NOT IN (SELECT guid FROM dir_objects))";

impl StateStore {
    /// All anchors, keyed by guid.
    pub fn anchors(&self) -> Result<HashMap<String, Anchor>, StateError> {
        self.anchors_where("")
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

    /// Every anchor ([`StateStore::anchors`]) or those a delta can touch ([`DIRTY_ANCHORS`]),
    /// one at a time: a run keeps them in its own compact form instead of a map of rows.
    pub fn each_anchor(&self, dirty_only: bool, f: &mut dyn FnMut(Anchor)) -> Result<(), StateError> {
        let condition = if dirty_only { DIRTY_ANCHORS } else { "" };
        self.anchors_each(condition, f)
    }

    fn anchors_where(&self, condition: &str) -> Result<HashMap<String, Anchor>, StateError> {
        let mut all = HashMap::new();
        self.anchors_each(condition, &mut |a| {
            all.insert(a.guid.clone(), a);
        })?;
        Ok(all)
    }

    fn anchors_each(&self, condition: &str, f: &mut dyn FnMut(Anchor)) -> Result<(), StateError> {
        let mut read = || -> rusqlite::Result<()> {
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
            for a in rows {
                f(a?);
            }
            Ok(())
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

    /// Unchanged object seen this run: its DN is recorded when it changed (with the run and the
    /// time), else nothing is written. No effect on an unknown guid.
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
            // Only a moved or renamed object's row: a full sync sees every object, and rewriting
            // every anchor (with its body) cost a no-op run ~5 % of its CPU.
            tx.prepare_cached(
                "UPDATE anchors SET dn = ?2, last_seen_run = ?3, updated_at = ?4 WHERE guid = ?1 AND dn IS NOT ?2",
            )?
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

fn unknown(what: &str, value: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unknown anchor {what} {value:?}"))
}

//! Applying a [`Plan`] to the tenant: the I/O edge of the engine. Writes go out with bounded
//! concurrency; every result is recorded in the state store, committed in batches, and a create
//! is journaled before it is sent, so a run killed at any instant is finished by the next one
//! without duplicates.

use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};

use super::plan::{Kind, MembershipChange, Plan, Removal, RemoveAction, Write};
use super::repair::{GROUP_ATTRIBUTES, Match, TenantView, USER_ATTRIBUTES};
use super::state::{Anchor, AnchorKind, AnchorState, Batch, QuarantineEntry, StateError, StateStore};
use crate::error::{AppError, ErrorKind};
use crate::tenant::scim::{self, BulkMethod, BulkOperation, ResourceKind, ScimClient, TenantError};

/// How writes go out: in flight at once, PATCH if the tenant announces it, `/Bulk` limits.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub concurrency: usize,
    pub patch: bool,
    pub bulk: Option<BulkLimits>,
}

/// What the tenant's `/Bulk` accepts per request (from its ServiceProviderConfig).
#[derive(Debug, Clone, Copy)]
pub struct BulkLimits {
    pub max_operations: usize,
    pub max_payload: usize,
}

impl BulkLimits {
    /// `None` when the tenant does not announce bulk (or announces useless limits).
    pub fn announced(supported: bool, max_operations: u32, max_payload: u64) -> Option<BulkLimits> {
        let max_operations = usize::try_from(max_operations).unwrap_or(usize::MAX).min(500);
        // Leave room for the envelope and for our size estimate being short.
        let max_payload = usize::try_from(max_payload).unwrap_or(usize::MAX) / 10 * 9;
        (supported && max_operations > 1 && max_payload > 4096).then_some(BulkLimits { max_operations, max_payload })
    }
}

/// One group's membership difference, resolved to SCIM ids.
struct MemberPatch<'c> {
    change: &'c MembershipChange,
    group_id: String,
    add: Vec<(String, String)>,
    remove: Vec<(String, String)>,
    /// The PATCH operations (the message is built when sent).
    ops: Vec<Value>,
}

/// Creating at least this many groups, list the tenant's groups once instead of looking each up.
const LIST_GROUPS_FROM: usize = 10;

/// At least this many journaled creates to check, or creates the tenant answered 409: list the
/// tenant once and adopt from the listing instead of one lookup (and a PUT) each.
const LIST_FROM: usize = 10;

/// `count` of a listing page (less when the tenant announces a smaller `filter.maxResults`).
pub const LIST_PAGE: u32 = 1000;

/// Results are committed to the state store at least this often.
const COMMIT_EVERY: usize = 100;

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub created: u64,
    pub adopted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deactivated: u64,
    pub deleted: u64,
    pub membership_changes: u64,
    /// Repairs of drift in the tenant (a full sync): users and groups created again or
    /// replaced, and group members ausi set that the tenant lost, added again.
    pub repaired_users: u64,
    pub repaired_groups: u64,
    pub repaired_memberships: u64,
    pub quarantined: u64,
    pub failed: u64,
}

/// One object the tenant did not accept; retried on the next run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    pub guid: String,
    pub dn: String,
    pub operation: &'static str,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scim: Option<scim::ScimErrorInfo>,
}

pub struct Applier<'a> {
    client: &'a ScimClient,
    run: i64,
    concurrency: usize,
    patch: bool,
    bulk: Option<BulkLimits>,
    /// Told the number of objects written so far (a progress display).
    progress: &'a dyn Fn(u64),
    done: u64,
    /// guid → SCIM id, as known now (anchors, plus what this run created or adopted).
    pub ids: HashMap<String, String>,
    batch: Batch,
    pub counts: Counts,
    pub failures: Vec<Failure>,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn resource(kind: Kind) -> ResourceKind {
    match kind {
        Kind::User => ResourceKind::User,
        Kind::Group => ResourceKind::Group,
    }
}

/// Errors that stop the whole run (the next run retries); anything else is the object's own.
fn is_fatal(e: &TenantError) -> bool {
    matches!(e, TenantError::Unauthorized { .. } | TenantError::Unavailable { .. } | TenantError::InvalidUrl(_))
}

impl<'a> Applier<'a> {
    pub fn new(
        client: &'a ScimClient,
        run: i64,
        options: WriteOptions,
        progress: &'a dyn Fn(u64),
        anchors: &HashMap<String, Anchor>,
    ) -> Self {
        let ids = anchors
            .values()
            .filter(|a| matches!(a.state, AnchorState::Active | AnchorState::Deactivated))
            .filter_map(|a| a.scim_id.clone().map(|id| (a.guid.clone(), id)))
            .collect();
        Applier {
            client,
            run,
            concurrency: options.concurrency.max(1),
            patch: options.patch,
            bulk: options.bulk,
            progress,
            done: 0,
            ids,
            batch: Batch::default(),
            counts: Counts::default(),
            failures: Vec::new(),
        }
    }

    /// Creates and updates of one kind. Creates are journaled (committed) before any is sent.
    /// Many journaled creates to check, or many creates answered 409, cost one listing of the
    /// tenant (adopted from it by the soft-match rules), not a lookup and a PUT each.
    pub async fn writes(
        &mut self,
        store: &mut StateStore,
        creates: &[Write],
        updates: &[Write],
    ) -> Result<(), AppError> {
        if !creates.is_empty() {
            let mut journal = Batch::default();
            for w in creates {
                journal.pending(&w.guid, w.kind.into(), &w.dn);
            }
            store.commit(&journal, &now())?;
        }
        let checked = self.check_journaled(creates).await?;
        let replaced: HashSet<&str> = checked.iter().map(|w| w.guid.as_str()).collect();
        let mut jobs: Vec<(&Write, bool)> = creates
            .iter()
            .filter(|w| !replaced.contains(w.guid.as_str()))
            .chain(checked.iter())
            .map(|w| (w, true))
            .chain(updates.iter().map(|w| (w, false)))
            .collect();
        let mut conflicts = Vec::new();
        if let Some(limits) = self.bulk {
            // Groups have no attribute a tenant must keep unique, so a group is looked up before it
            // is created: many at once, by listing the tenant's groups once.
            let unchecked = |w: &Write| w.kind == Kind::Group && !w.verify_first && !w.absent && w.scim_id.is_none();
            let new_groups = jobs.iter().filter(|(w, create)| *create && unchecked(w)).count();
            let listed: Option<HashSet<String>> = if new_groups >= LIST_GROUPS_FROM {
                match self.client.list(ResourceKind::Group, 500, Some("externalId")).await {
                    Ok(groups) => {
                        Some(groups.iter().filter_map(|g| g["externalId"].as_str().map(str::to_owned)).collect())
                    }
                    Err(e) if is_fatal(&e) => return Err(e.into()),
                    Err(_) => None,
                }
            } else {
                None
            };
            // Journaled creates and groups the tenant may hold are looked up first, one by one;
            // the rest can go in bulk (an adoption from a listing as a PUT).
            let (bulk, single): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(w, create)| {
                !*create
                    || w.scim_id.is_some()
                    || (!w.verify_first
                        && (w.kind == Kind::User || w.absent || listed.as_ref().is_some_and(|l| !l.contains(&w.guid))))
            });
            jobs = single;
            if bulk.len() > 1 {
                let (redo, conflicted) = self.bulk_writes(store, &bulk, limits).await?;
                jobs.extend(redo);
                conflicts = conflicted;
            } else {
                jobs.extend(bulk);
            }
        }
        let creates_left = jobs.iter().filter(|(w, create)| *create && w.scim_id.is_none()).count();
        conflicts.extend(self.singles(store, jobs, creates_left >= LIST_FROM).await?);
        let (adopt, mut rest) = self.resolve_conflicts(conflicts).await?;
        let adopt_jobs: Vec<(&Write, bool)> = adopt.iter().map(|w| (w, true)).collect();
        match self.bulk {
            Some(limits) if adopt_jobs.len() > 1 => {
                let (redo, conflicted) = self.bulk_writes(store, &adopt_jobs, limits).await?;
                rest.extend(redo);
                rest.extend(conflicted.into_iter().map(|(w, _)| (w, true)));
            }
            _ => rest.extend(adopt_jobs),
        }
        self.singles(store, rest, false).await?;
        self.flush(store)
    }

    /// One by one, `concurrency` at a time. With `defer_conflicts`, a create answered 409 is
    /// returned (to be adopted from one listing) instead of looked up.
    async fn singles<'w>(
        &mut self,
        store: &mut StateStore,
        jobs: Vec<(&'w Write, bool)>,
        defer_conflicts: bool,
    ) -> Result<Vec<(&'w Write, TenantError)>, AppError> {
        let client = self.client;
        let jobs: Vec<_> = jobs.into_iter().map(|(w, create)| (w, create, with_members(w, &self.ids))).collect();
        let lookup = !defer_conflicts;
        let mut results = stream::iter(jobs)
            .map(|(w, create, body)| async move {
                let body = body.as_ref().unwrap_or(&w.body);
                let result =
                    if create { create_or_adopt(client, w, body, lookup).await } else { update(client, w, body).await };
                (w, create, result)
            })
            .buffer_unordered(self.concurrency);
        let mut fatal = None;
        let mut deferred = Vec::new();
        while let Some((w, create, result)) = results.next().await {
            match result {
                Err(e) if is_fatal(&e) => {
                    fatal.get_or_insert(e);
                    break;
                }
                Err(e) if defer_conflicts && create && w.scim_id.is_none() && e.is_conflict() => deferred.push((w, e)),
                result => self.written(w, create, result),
            }
            self.maybe_commit(store)?;
        }
        drop(results);
        self.flush(store)?;
        fatal.map_or(Ok(deferred), |e| Err(e.into()))
    }

    /// The tenant's users and/or groups, or `None` when the listing failed in a way that only
    /// makes the run fall back to lookups one by one.
    async fn listing(&self, users: bool, groups: bool) -> Result<Option<TenantView>, AppError> {
        match read_tenant(self.client, users, groups, LIST_PAGE).await {
            Ok(view) => Ok(Some(view)),
            Err(e) if is_fatal(&e) => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// Many journaled creates (a run killed during a large `/Bulk`): checked against one
    /// listing. Returns them settled: to adopt (with the tenant's id) or known absent.
    async fn check_journaled(&mut self, creates: &[Write]) -> Result<Vec<Write>, AppError> {
        let journaled: Vec<&Write> = creates.iter().filter(|w| w.verify_first && w.scim_id.is_none()).collect();
        if journaled.len() < LIST_FROM {
            return Ok(vec![]);
        }
        let users = journaled.iter().any(|w| w.kind == Kind::User);
        let groups = journaled.iter().any(|w| w.kind == Kind::Group);
        let Some(view) = self.listing(users, groups).await? else { return Ok(vec![]) };
        Ok(journaled
            .into_iter()
            .filter_map(|w| match view.soft_match(w.kind, &w.guid, None) {
                Match::Adopt(id) => Some(Write { scim_id: Some(id), verify_first: false, ..w.clone() }),
                Match::Absent => Some(Write { verify_first: false, absent: true, ..w.clone() }),
                Match::Conflict(_) => None,
            })
            .collect())
    }

    /// Creates the tenant answered 409. Many: one listing, each adopted when the soft-match
    /// rules allow (returned as writes to send), else failed with the tenant's answer. A few:
    /// returned to be redone one by one (a lookup each).
    async fn resolve_conflicts<'w>(
        &mut self,
        conflicts: Vec<(&'w Write, TenantError)>,
    ) -> Result<(Vec<Write>, Vec<(&'w Write, bool)>), AppError> {
        if conflicts.len() < LIST_FROM {
            return Ok((vec![], conflicts.into_iter().map(|(w, _)| (w, true)).collect()));
        }
        let users = conflicts.iter().any(|(w, _)| w.kind == Kind::User);
        let groups = conflicts.iter().any(|(w, _)| w.kind == Kind::Group);
        let Some(view) = self.listing(users, groups).await? else {
            return Ok((vec![], conflicts.into_iter().map(|(w, _)| (w, true)).collect()));
        };
        let mut adopt = Vec::new();
        for (w, e) in conflicts {
            match view.soft_match(w.kind, &w.guid, w.body["userName"].as_str()) {
                Match::Adopt(id) => adopt.push(Write { scim_id: Some(id), verify_first: false, ..w.clone() }),
                Match::Absent | Match::Conflict(_) => self.written(w, true, Err(e)),
            }
        }
        Ok((adopt, vec![]))
    }

    /// Sends `jobs` through `/Bulk` in requests within the tenant's limits. Returns the jobs to
    /// redo one by one (unanswered, and chunks the tenant refused whole) and the creates it
    /// answered 409 (resolved by soft match).
    #[allow(clippy::type_complexity)]
    async fn bulk_writes<'w>(
        &mut self,
        store: &mut StateStore,
        jobs: &[(&'w Write, bool)],
        limits: BulkLimits,
    ) -> Result<(Vec<(&'w Write, bool)>, Vec<(&'w Write, TenantError)>), AppError> {
        let mut chunks: Vec<Vec<(&'w Write, bool)>> = vec![Vec::new()];
        let mut size = 0usize;
        for job in jobs {
            let members = job.0.members.as_ref().map_or(0, |m| m.guids.len());
            let bytes = job.0.body.to_string().len() + 200 + members * 64;
            let last = chunks.last_mut().expect("one chunk");
            if !last.is_empty() && (last.len() >= limits.max_operations || size + bytes > limits.max_payload) {
                chunks.push(Vec::new());
                size = 0;
            }
            size += bytes;
            chunks.last_mut().expect("one chunk").push(*job);
        }
        let client = self.client;
        let chunks: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let ops: Vec<BulkOperation> = chunk
                    .iter()
                    .enumerate()
                    .map(|(n, (w, create))| BulkOperation {
                        method: if *create && w.scim_id.is_none() { BulkMethod::Post } else { BulkMethod::Put },
                        kind: resource(w.kind),
                        id: w.scim_id.clone(),
                        bulk_id: format!("op{n}"),
                        data: Some(with_members(w, &self.ids).unwrap_or_else(|| w.body.clone())),
                    })
                    .collect();
                (chunk, ops)
            })
            .collect();
        let mut results = stream::iter(chunks)
            .map(|(chunk, mut ops)| async move {
                let answer = client.bulk(&mut ops).await;
                (chunk, answer)
            })
            .buffer_unordered(self.concurrency.min(2));
        let mut redo = Vec::new();
        let mut conflicts = Vec::new();
        while let Some((chunk, answer)) = results.next().await {
            match answer {
                Ok(outcomes) => {
                    for ((w, create), outcome) in chunk.into_iter().zip(outcomes) {
                        let adopting = create && w.scim_id.is_some();
                        match (outcome.status, outcome.id, outcome.error) {
                            (200..=299, Some(id), _) => self.written(w, create, Ok((id, adopting))),
                            // Already there: adopted by soft match.
                            (409, _, info) if create && !adopting => conflicts.push((
                                w,
                                TenantError::Rejected(info.unwrap_or(scim::ScimErrorInfo {
                                    status: 409,
                                    scim_type: None,
                                    detail: None,
                                })),
                            )),
                            // Not answered, or an adoption whose resource went since: one by one.
                            (409 | 0, _, _) | (404, _, _) if adopting || outcome.status != 404 => {
                                redo.push((w, create))
                            }
                            (_, _, Some(info)) if info.status >= 500 || info.status == 429 => redo.push((w, create)),
                            (_, _, Some(info)) => self.written(w, create, Err(TenantError::Rejected(info))),
                            (status, _, None) => self.written(
                                w,
                                create,
                                Err(TenantError::Protocol(format!("bulk operation answered {status} without an id"))),
                            ),
                        }
                        self.maybe_commit(store)?;
                    }
                }
                Err(e) if is_fatal(&e) => {
                    self.flush(store)?;
                    return Err(e.into());
                }
                // The tenant refused the request as a whole (too large, not supported after all).
                Err(_) => redo.extend(chunk),
            }
        }
        self.flush(store)?;
        Ok((redo, conflicts))
    }

    /// Records the result of one create or update.
    fn written(&mut self, w: &Write, create: bool, result: Result<(String, bool), TenantError>) {
        match result {
            Ok((id, adopted)) => {
                self.batch.anchor(&w.guid, w.kind.into(), &id, &w.dn, &w.hash, self.run);
                self.batch.body(&w.guid, &w.body);
                self.batch.clear_failure(&w.guid);
                if let Some(members) = &w.members {
                    self.batch.set_members(&w.guid, &members.guids);
                    if members.changed {
                        self.counts.membership_changes += 1;
                    }
                    self.counts.repaired_memberships += members.restored;
                }
                self.ids.insert(w.guid.clone(), id);
                match (w.repair, w.kind, create, adopted) {
                    (true, Kind::User, ..) => self.counts.repaired_users += 1,
                    (true, Kind::Group, ..) => self.counts.repaired_groups += 1,
                    (false, _, true, false) => self.counts.created += 1,
                    (false, _, true, true) => self.counts.adopted += 1,
                    (false, _, false, _) => self.counts.updated += 1,
                }
            }
            Err(e) => self.failed(&w.guid, &w.dn, if create { "create" } else { "update" }, e),
        }
    }

    /// Membership differences: one PATCH per group (adds in one operation, each remove as
    /// `members[value eq "…"]`), never a rewrite of the whole member list; through `/Bulk`
    /// when the tenant has it, one by one for what a bulk request did not settle.
    pub async fn memberships(&mut self, store: &mut StateStore, changes: &[MembershipChange]) -> Result<(), AppError> {
        let mut patches = Vec::new();
        for change in changes {
            let Some(group_id) = self.ids.get(&change.group_guid).cloned() else {
                continue; // the group's own create failed: recorded already, retried next run
            };
            let resolve = |guids: &[String]| -> Vec<(String, String)> {
                guids.iter().filter_map(|g| self.ids.get(g).map(|id| (g.clone(), id.clone()))).collect()
            };
            let (add, remove) = (resolve(&change.add), resolve(&change.remove));
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            let mut ops = Vec::new();
            if !add.is_empty() {
                ops.push(scim::patch_add_members(&add.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>()));
            }
            ops.extend(remove.iter().map(|(_, id)| scim::patch_remove_member(id)));
            patches.push(MemberPatch { change, group_id, add, remove, ops });
        }
        if let Some(limits) = self.bulk.filter(|_| patches.len() > 1) {
            patches = self.bulk_memberships(store, patches, limits).await?;
        }
        for p in patches {
            match self.client.patch(ResourceKind::Group, &p.group_id, &p.ops).await {
                Ok(()) => self.patched(&p),
                Err(e) => self.settle_error(store, e, &p.change.group_guid, &p.change.group_dn, "membership")?,
            }
            self.maybe_commit(store)?;
        }
        self.flush(store)
    }

    /// Sends membership PATCHes through `/Bulk`; returns those to send one by one.
    async fn bulk_memberships<'p>(
        &mut self,
        store: &mut StateStore,
        patches: Vec<MemberPatch<'p>>,
        limits: BulkLimits,
    ) -> Result<Vec<MemberPatch<'p>>, AppError> {
        let mut redo = Vec::new();
        let mut rest = patches.into_iter().peekable();
        while rest.peek().is_some() {
            let mut chunk = Vec::new();
            let mut size = 0;
            while let Some(p) = rest.peek() {
                // Each value is an id of ~40 bytes; the rest of an operation is small.
                let bytes = p.ops.iter().map(|o| o["value"].as_array().map_or(1, Vec::len)).sum::<usize>() * 64 + 200;
                if !chunk.is_empty() && (chunk.len() >= limits.max_operations || size + bytes > limits.max_payload) {
                    break;
                }
                size += bytes;
                chunk.extend(rest.next());
            }
            let mut ops: Vec<BulkOperation> = chunk
                .iter()
                .enumerate()
                .map(|(n, p)| BulkOperation {
                    method: BulkMethod::Patch,
                    kind: ResourceKind::Group,
                    id: Some(p.group_id.clone()),
                    bulk_id: format!("op{n}"),
                    data: Some(scim::patch_message(&p.ops)),
                })
                .collect();
            match self.client.bulk(&mut ops).await {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    for p in chunk {
                        match outcomes.next().map(|o| (o.status, o.error)) {
                            Some((200..=299, _)) => self.patched(&p),
                            Some((_, Some(info))) if info.status < 500 && info.status != 429 => self.settle_error(
                                store,
                                TenantError::Rejected(info),
                                &p.change.group_guid,
                                &p.change.group_dn,
                                "membership",
                            )?,
                            _ => redo.push(p),
                        }
                        self.maybe_commit(store)?;
                    }
                }
                Err(e) if is_fatal(&e) => {
                    self.flush(store)?;
                    return Err(e.into());
                }
                Err(_) => redo.extend(chunk),
            }
        }
        Ok(redo)
    }

    fn patched(&mut self, p: &MemberPatch<'_>) {
        for (guid, _) in &p.add {
            self.batch.add_member(&p.change.group_guid, guid);
        }
        for (guid, _) in &p.remove {
            self.batch.remove_member(&p.change.group_guid, guid);
        }
        let restored = p.add.iter().filter(|(g, _)| p.change.restore.contains(g)).count();
        self.counts.repaired_memberships += restored as u64;
        if p.change.changes_membership() {
            self.counts.membership_changes += 1;
        }
    }

    pub async fn removals(&mut self, store: &mut StateStore, removals: &[Removal]) -> Result<(), AppError> {
        for r in removals {
            let id = match (&r.scim_id, r.action) {
                (_, RemoveAction::Retire) => {
                    self.batch.set_state(&r.guid, AnchorState::Deactivated);
                    continue;
                }
                (Some(id), _) => id.clone(),
                // A create that was journaled but may never have reached the tenant.
                (None, _) => match self.client.find(resource(r.kind), "externalId", &r.guid).await {
                    Ok(found) => match found.first().and_then(|v| v["id"].as_str()) {
                        Some(id) => {
                            // It did: anchor it first (a pending anchor has no SCIM id by rule).
                            self.batch.anchor(&r.guid, r.kind.into(), id, &r.dn, "", self.run);
                            id.to_owned()
                        }
                        None => {
                            self.batch.forget(&r.guid);
                            continue;
                        }
                    },
                    Err(e) => {
                        self.settle_error(store, e, &r.guid, &r.dn, "deprovision")?;
                        continue;
                    }
                },
            };
            let result = match r.action {
                RemoveAction::Delete => self.client.delete(resource(r.kind), &id).await,
                RemoveAction::Deactivate if self.patch => {
                    self.client.patch(resource(r.kind), &id, &[scim::patch_replace("active", json!(false))]).await
                }
                RemoveAction::Deactivate => match self.client.get(resource(r.kind), &id).await {
                    Ok(Some(mut current)) => {
                        current["active"] = json!(false);
                        self.client.replace(resource(r.kind), &id, &current).await
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
                RemoveAction::Retire => Ok(()),
            };
            match result {
                Ok(()) => {
                    let (state, counter) = match r.action {
                        RemoveAction::Delete => (AnchorState::Deleted, &mut self.counts.deleted),
                        _ => (AnchorState::Deactivated, &mut self.counts.deactivated),
                    };
                    *counter += 1;
                    self.batch.set_state(&r.guid, state);
                    self.batch.clear_failure(&r.guid);
                }
                Err(e) => self.settle_error(store, e, &r.guid, &r.dn, "deprovision")?,
            }
            self.maybe_commit(store)?;
        }
        self.flush(store)
    }

    /// Bookkeeping that needs no tenant write: unchanged objects seen, quarantine in and out.
    pub fn record(&mut self, store: &mut StateStore, plan: &Plan) -> Result<(), AppError> {
        let stamp = now();
        for (guid, dn) in &plan.unchanged {
            self.batch.seen(guid, dn, self.run);
            self.counts.unchanged += 1;
        }
        for q in &plan.quarantine {
            let entry = QuarantineEntry {
                guid: q.guid.clone(),
                dn: q.dn.clone(),
                reasons: q.reasons.clone(),
                since: stamp.clone(),
            };
            self.batch.quarantine(entry, self.run);
            self.counts.quarantined += 1;
        }
        for guid in &plan.released {
            self.batch.release(guid);
        }
        self.flush(store)
    }

    /// A fatal error (token refused, tenant gone) stops the run once what was done is
    /// committed; any other is the object's own failure, recorded and retried next run.
    fn settle_error(
        &mut self,
        store: &mut StateStore,
        e: TenantError,
        guid: &str,
        dn: &str,
        operation: &'static str,
    ) -> Result<(), AppError> {
        if is_fatal(&e) {
            self.flush(store)?;
            return Err(e.into());
        }
        self.failed(guid, dn, operation, e);
        Ok(())
    }

    fn failed(&mut self, guid: &str, dn: &str, operation: &'static str, e: TenantError) {
        let scim = match &e {
            TenantError::Rejected(info) => Some(info.clone()),
            _ => None,
        };
        let error = e.to_string();
        self.batch.fail(guid, dn, operation, &error);
        self.counts.failed += 1;
        self.failures.push(Failure { guid: guid.to_owned(), dn: dn.to_owned(), operation, error, scim });
    }

    fn maybe_commit(&mut self, store: &mut StateStore) -> Result<(), AppError> {
        self.done += 1;
        (self.progress)(self.done);
        if self.batch.len() >= COMMIT_EVERY { self.flush(store) } else { Ok(()) }
    }

    /// Commits what was applied so far (one SQLite transaction).
    pub fn flush(&mut self, store: &mut StateStore) -> Result<(), AppError> {
        if !self.batch.is_empty() {
            store.commit(&self.batch, &now())?;
            self.batch = Batch::default();
        }
        Ok(())
    }
}

/// POST, or adopt what the tenant already has: a journaled create is looked up first; a
/// `409 uniqueness` is resolved by externalId, then by userName (soft match) when unambiguous.
/// A group's resource with the members its write sets (`None`: send the body as it is).
/// The members ausi sets, plus those the tenant lists that ausi did not set (`keep_members`).
fn with_members(w: &Write, ids: &HashMap<String, String>) -> Option<Value> {
    let members = w.members.as_ref()?;
    let mut body = w.body.clone();
    let mut seen = HashSet::new();
    let list: Vec<Value> = members
        .guids
        .iter()
        .filter_map(|g| ids.get(g))
        .chain(w.keep_members.iter())
        .filter(|id| seen.insert(id.as_str()))
        .map(|id| json!({ "value": id }))
        .collect();
    body["members"] = Value::Array(list);
    Some(body)
}

/// A create: a PUT to what the listing found (`scim_id`), or a POST; with `lookup`, a 409 is
/// resolved here by soft match (else returned, for one listing to resolve many).
async fn create_or_adopt(
    client: &ScimClient,
    w: &Write,
    body: &Value,
    lookup: bool,
) -> Result<(String, bool), TenantError> {
    let kind = resource(w.kind);
    if let Some(id) = &w.scim_id {
        match client.replace(kind, id, body).await {
            Ok(()) => return Ok((id.clone(), true)),
            Err(TenantError::NotFound) => {} // deleted since it was listed: create it
            Err(e) => return Err(e),
        }
    }
    // Groups have no unique attribute a tenant must enforce: look before creating (unless the
    // run's listing shows it is not there).
    if (w.verify_first || (w.kind == Kind::Group && !w.absent))
        && let Some(id) = find_one(client, kind, "externalId", &w.guid).await?
    {
        client.replace(kind, &id, body).await?;
        return Ok((id, true));
    }
    match client.create(kind, body).await {
        Ok(created) => id_of(&created).map(|id| (id, false)),
        Err(e) if e.is_conflict() && lookup => {
            if let Some(id) = find_one(client, kind, "externalId", &w.guid).await? {
                client.replace(kind, &id, body).await?;
                return Ok((id, true));
            }
            let user_name = w.body["userName"].as_str().unwrap_or_default();
            let found = if w.kind == Kind::User { client.find(kind, "userName", user_name).await? } else { vec![] };
            match found.as_slice() {
                [one] if one["externalId"].as_str().is_none_or(|x| x.is_empty() || x == w.guid) => {
                    let id = id_of(one)?;
                    client.replace(kind, &id, body).await?;
                    Ok((id, true))
                }
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

async fn update(client: &ScimClient, w: &Write, body: &Value) -> Result<(String, bool), TenantError> {
    let kind = resource(w.kind);
    let id = w.scim_id.clone().ok_or_else(|| TenantError::Protocol("update without a SCIM id".into()))?;
    match client.replace(kind, &id, body).await {
        Ok(()) => Ok((id, false)),
        // Deleted in the tenant by someone else: provision it again.
        Err(TenantError::NotFound) => client.create(kind, body).await.and_then(|v| id_of(&v)).map(|id| (id, false)),
        Err(e) => Err(e),
    }
}

async fn find_one(
    client: &ScimClient,
    kind: ResourceKind,
    attribute: &str,
    value: &str,
) -> Result<Option<String>, TenantError> {
    let found = client.find(kind, attribute, value).await?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => id_of(one).map(Some),
        _ => Err(TenantError::Rejected(scim::ScimErrorInfo {
            status: 409,
            scim_type: Some("uniqueness".into()),
            detail: Some(format!("{} resources in the tenant have {attribute} {value}", found.len())),
        })),
    }
}

/// The tenant's users and/or groups, paged (`page_size` a page), as one view.
pub async fn read_tenant(
    client: &ScimClient,
    users: bool,
    groups: bool,
    page_size: u32,
) -> Result<TenantView, TenantError> {
    let mut complete = true;
    let mut pages = 0;
    let mut read = |listing: scim::Listing| {
        complete &= listing.complete;
        pages += listing.pages;
        listing.resources
    };
    let u =
        if users { read(client.listing(ResourceKind::User, page_size, Some(USER_ATTRIBUTES)).await?) } else { vec![] };
    let g = if groups {
        read(client.listing(ResourceKind::Group, page_size, Some(GROUP_ATTRIBUTES)).await?)
    } else {
        vec![]
    };
    Ok(TenantView::new(&u, &g, complete, pages))
}

fn id_of(resource: &Value) -> Result<String, TenantError> {
    resource["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TenantError::Protocol("the tenant answered without an id".into()))
}

impl From<StateError> for AppError {
    fn from(e: StateError) -> Self {
        let kind = match e {
            StateError::Locked { .. } => ErrorKind::Temporary,
            StateError::TooNew { .. } => ErrorKind::Config,
            _ => ErrorKind::Internal,
        };
        AppError::new(kind, e.to_string())
    }
}

impl From<AnchorKind> for Kind {
    fn from(k: AnchorKind) -> Kind {
        match k {
            AnchorKind::User => Kind::User,
            AnchorKind::Group => Kind::Group,
        }
    }
}

//! Applying a [`Plan`] to the tenant: the I/O edge of the engine. Writes go out with bounded
//! concurrency (`/Bulk` requests as many at once as the [`Pace`] finds faster); every result is
//! recorded in the state store, committed in batches, and a create is journaled before it is
//! sent, so a run killed at any instant is finished by the next one without duplicates. The
//! engine hands the applier its own connection to the store ([`StateStore::writer`]): a
//! window's journal, results and bookkeeping are committed through it while the planner reads
//! the mirror through the run's, planning the next window.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};

use super::map;
use super::pace::Pace;
use super::plan::{self, Kind, MembershipChange, Plan, Removal, RemoveAction, Write};
use super::repair::{self, GROUP_ATTRIBUTES, Match, TenantView, USER_ATTRIBUTES, ViewBuilder};
use crate::error::{AppError, ErrorKind};
use crate::store::{AnchorKind, AnchorState, Batch, QuarantineEntry, Reason, StateError, StateStore};
use crate::tenant::Tenant;
use crate::tenant::retry::{Disposition, disposition};
use crate::tenant::scim::{self, BulkMethod, BulkOperation, RemoveForm, ResourceKind, TenantError};

/// How writes go out: in flight at once, PATCH if the tenant announces it, `/Bulk` limits.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub concurrency: usize,
    pub patch: bool,
    pub bulk: Option<BulkLimits>,
    /// The tenant's filters work (announced and probed): lookups by `externalId eq` and
    /// `userName eq`. Without, one paged listing, indexed by externalId and userName.
    pub filters: bool,
    /// The PATCH form that removes members from the tenant's groups (the one that worked last).
    pub remove_form: RemoveForm,
    /// What to do with a tenant user that holds the userName of a new account and that ausi
    /// provisioned for an objectGUID gone from AD (a re-created account).
    pub recreate: Recreate,
}

/// The re-creation rule (README, "Re-created accounts").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recreate {
    /// The holder keeps its id, deactivated, with `userName` suffixed `.<old objectGUID>`.
    Rename,
    /// The holder is deleted (`on_remove = "delete"`) before the new account is created.
    Delete,
}

/// The state-store key holding what the last probe of the tenant's filters found (`true`,
/// `false`): a tenant that starts refusing filters (`400 invalidFilter`) is probed again.
pub const FILTER_PROBED_KEY: &str = "tenant.filter_probed";

/// The state-store key listing the owned attributes this tenant rewrites or drops (comma
/// separated; learnt from write answers, see [`repair::altered`]).
pub const ALTERED_KEY: &str = "tenant.altered_attributes";

/// The state-store key remembering the member-removal form that works.
pub const REMOVE_FORM_KEY: &str = "tenant.member_remove_form";

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

/// One group's member additions, or its member removals (never both: one refused operation
/// must not take the other down), resolved to SCIM ids.
struct MemberPatch<'c> {
    change: &'c MembershipChange,
    group_id: String,
    add: Vec<(String, String)>,
    remove: Vec<(String, String)>,
    /// The PATCH operations (the message is built when sent).
    ops: Vec<Value>,
}

/// A write's result: the resource's id, whether it was adopted, the tenant's answer (when it
/// sent the resource back) and the old holder of the userName moved out of the way.
struct Done {
    id: String,
    adopted: bool,
    answer: Option<Value>,
    moved: Option<(String, AnchorState)>,
}

impl Done {
    fn new(id: String, adopted: bool) -> Done {
        Done { id, adopted, answer: None, moved: None }
    }
}

/// guid → SCIM id, shared by the applier and the planner (see [`Applier::known_ids`]).
pub type Ids = Rc<RefCell<KnownIds>>;

/// guid → SCIM id as a run knows it: the anchors' ids, read in place from the planner's
/// [`plan::Anchors`] (a copy of them took 18 MB at 100,000 users), under what the run learnt
/// (ids created or adopted) and forgot (objects found deleted in the tenant).
#[derive(Debug)]
pub struct KnownIds {
    anchors: Rc<plan::Anchors>,
    /// Deactivated anchors' ids count too (a real run updates those objects by id).
    deactivated: bool,
    /// What the run learnt (`Some`) or forgot (`None`).
    changed: HashMap<String, Option<String>>,
}

impl KnownIds {
    pub fn new(anchors: Rc<plan::Anchors>, deactivated: bool) -> KnownIds {
        KnownIds { anchors, deactivated, changed: HashMap::new() }
    }

    pub fn get(&self, guid: &str) -> Option<String> {
        match self.changed.get(guid) {
            Some(id) => id.clone(),
            None => self.anchors.active_id(guid, self.deactivated).map(str::to_owned),
        }
    }

    fn learn(&mut self, learned: impl IntoIterator<Item = (String, String)>) {
        self.changed.extend(learned.into_iter().map(|(guid, id)| (guid, Some(id))));
    }

    /// Forgets the ids of `gone` (objects deleted in the tenant: they are created again).
    pub fn forget<'g>(&mut self, gone: impl IntoIterator<Item = &'g String>) {
        self.changed.extend(gone.into_iter().map(|guid| (guid.clone(), None)));
    }
}

/// A group to complete: (guid, dn, tenant id, members missing as (guid, id)).
type FollowUp = (String, String, String, Vec<(String, String)>);

/// What a create's lookups use: filters, or the run's listing.
struct Lookups<'v> {
    filters: bool,
    view: Option<&'v TenantView>,
    /// objectGUIDs (lower case) of users ausi provisioned that are gone from AD.
    gone: &'v HashSet<String>,
    recreate: Recreate,
}

/// Creating at least this many groups, list the tenant's groups once instead of looking each up.
const LIST_GROUPS_FROM: usize = 10;

/// At least this many journaled creates to check, or creates the tenant answered 409: list the
/// tenant once and adopt from the listing instead of one lookup (and a PUT) each.
const LIST_FROM: usize = 10;

/// `count` of a listing page (less when the tenant announces a smaller `filter.maxResults`).
pub const LIST_PAGE: u32 = 1000;

/// Results are committed to the state store once this many changes are gathered, or
/// [`COMMIT_AFTER`] after the last commit, whichever comes first. A result lost to a crash costs
/// the next run a check (journaled creates) or a write sent again, never a wrong state. Each
/// commit rewrites every page it touches in the WAL: committed every 100 changes, the commits
/// cost 1.48 x as much per 10k users at 100,000 users as at 10,000 (1.39 x batched; the rest is
/// the objectGUID index outgrowing the page cache).
const COMMIT_EVERY: usize = 5000;
/// See [`COMMIT_EVERY`]: writes answered slowly one by one are still recorded every second.
const COMMIT_AFTER: Duration = Duration::from_secs(1);

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

/// One object the tenant did not accept, and the operation it refused; retried once in the
/// next run (never in a loop within a run).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    /// objectGUID.
    pub guid: String,
    pub dn: String,
    /// The object's id in the tenant, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// `create`, `update`, `add-members`, `remove-members`, `deprovision`.
    pub operation: &'static str,
    pub error: String,
    /// The tenant's answer: HTTP status, `scimType`, `detail` (RFC 7644 §3.12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scim: Option<scim::ScimErrorInfo>,
    /// Membership operations: the objectGUIDs of the members concerned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// Something the tenant did that ausi did not ask for: a write answered with a verified
/// attribute dropped or changed (`tenant-dropped-attribute`). The object is not recorded as in
/// step, so the next run sends it again: one finding per object and run, never a loop.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub rule: &'static str,
    pub guid: String,
    pub dn: String,
    pub tenant_id: String,
    /// The attribute (`name.familyName`, `members`, …).
    pub attribute: String,
    pub message: String,
}

pub struct Applier<'a> {
    client: &'a dyn Tenant,
    run: i64,
    concurrency: usize,
    /// `/Bulk` requests in flight: as many as make the tenant faster (see [`Pace`]).
    pace: Pace,
    patch: bool,
    bulk: Option<BulkLimits>,
    filters: bool,
    remove_form: RemoveForm,
    recreate: Recreate,
    /// Users ausi provisioned whose objectGUID is gone from AD (lower case).
    pub gone: HashSet<String>,
    /// The anchors: the kind of a member (its `type`).
    anchors: Rc<plan::Anchors>,
    /// The kinds of objects created in this run (the anchors know the others').
    kinds: HashMap<String, Kind>,
    /// The tenant's users and groups, listed once when lookups need it and filters do not work.
    view: Option<TenantView>,
    /// Groups whose write's answer lacked members it sent: (group guid, dn, group id, missing
    /// members as (guid, id)), added again by one PATCH each.
    follow_ups: Vec<FollowUp>,
    pub findings: Vec<Finding>,
    /// The tenant answered a filter with `400 invalidFilter` in this run: lookups went on from
    /// one listing, and the caller probes the filters again.
    pub filters_refused: bool,
    /// Group writes the tenant answered without members they carried, completed by a PATCH.
    pub followed_up: u64,
    /// Unverified owned attributes the tenant's answers showed rewritten or dropped, known
    /// before this run and learnt in it (kept in the state store, see [`ALTERED_KEY`]).
    pub altered: std::collections::BTreeSet<String>,
    altered_known: usize,
    /// Groups whose membership change was counted (a change is sent as up to two PATCHes).
    counted: HashSet<String>,
    /// Told the number of objects written so far (a progress display).
    progress: &'a dyn Fn(u64),
    done: u64,
    /// guid → SCIM id: the anchors', plus what this run's completed windows created or adopted
    /// ([`Applier::publish`]). Shared with the planner, which reads it while a window is sent;
    /// borrowed only between awaits (one thread), mutably only by `publish`.
    ids: Ids,
    /// Ids learnt by the writes not yet published: the applier's own lookups see them at once,
    /// the planner only once the window that learnt them is written.
    learned: HashMap<String, String>,
    batch: Batch,
    /// When `batch` was last committed (see [`COMMIT_AFTER`]).
    committed: Instant,
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
        client: &'a dyn Tenant,
        run: i64,
        options: WriteOptions,
        progress: &'a dyn Fn(u64),
        anchors: &Rc<plan::Anchors>,
    ) -> Self {
        let ids = Rc::new(RefCell::new(KnownIds::new(Rc::clone(anchors), true)));
        Applier {
            client,
            run,
            concurrency: options.concurrency.max(1),
            pace: Pace::new(options.concurrency),
            patch: options.patch,
            bulk: options.bulk,
            filters: options.filters,
            remove_form: options.remove_form,
            recreate: options.recreate,
            gone: HashSet::new(),
            anchors: Rc::clone(anchors),
            kinds: HashMap::new(),
            view: None,
            follow_ups: Vec::new(),
            findings: Vec::new(),
            filters_refused: false,
            followed_up: 0,
            altered: Default::default(),
            altered_known: 0,
            counted: HashSet::new(),
            progress,
            done: 0,
            ids,
            learned: HashMap::new(),
            batch: Batch::default(),
            committed: Instant::now(),
            counts: Counts::default(),
            failures: Vec::new(),
        }
    }

    /// The SCIM id of `guid` as the applier knows it now (published or just learnt).
    pub fn id(&self, guid: &str) -> Option<String> {
        self.learned.get(guid).cloned().or_else(|| self.ids.borrow().get(guid))
    }

    /// The kind of `guid`: created in this run, or anchored.
    fn kind(&self, guid: &str) -> Option<Kind> {
        self.kinds.get(guid).copied().or_else(|| self.anchors.kind(guid))
    }

    /// The ids the planner reads: the anchors' and those of the windows written so far.
    pub fn known_ids(&self) -> Ids {
        Rc::clone(&self.ids)
    }

    /// Makes the ids learnt since the last call known to the planner: called once a window's
    /// writes are done, never while the planner holds a borrow (between two awaits).
    pub fn publish(&mut self) {
        if !self.learned.is_empty() {
            self.ids.borrow_mut().learn(self.learned.drain());
        }
    }

    /// Forgets the ids of objects deleted in the tenant (they are created again).
    pub fn forget_ids(&mut self, gone: &HashSet<String>) {
        self.ids.borrow_mut().forget(gone);
        self.learned.retain(|guid, _| !gone.contains(guid));
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
                match self.client.listing(ResourceKind::Group, 500, Some("externalId")).await.map(|l| l.resources) {
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
        self.stop_filtering().await?;
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
        let jobs: Vec<_> = jobs
            .into_iter()
            .map(|(w, create)| (w, create, with_members(w, &|g| self.id(g), &|g| self.kind(g))))
            .collect();
        let lookup = !defer_conflicts;
        // Lent to the writes in flight; given back below.
        let (view, gone) = (self.view.take(), std::mem::take(&mut self.gone));
        let ctx = Lookups { filters: self.filters, view: view.as_ref(), gone: &gone, recreate: self.recreate };
        let ctx = &ctx;
        let mut results = stream::iter(jobs)
            .map(|(w, create, body)| async move {
                let body = body.as_ref().unwrap_or(&w.body);
                let result = if create {
                    create_or_adopt(client, w, body, lookup, ctx).await
                } else {
                    update(client, w, body).await
                };
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
                // Filters the tenant announced, and now refuses: redone from a listing.
                Err(e) if e.is_invalid_filter() && self.filters => {
                    self.filters_refused = true;
                    deferred.push((w, e));
                }
                Err(e) if defer_conflicts && create && w.scim_id.is_none() && e.is_conflict() => deferred.push((w, e)),
                result => self.written(w, create, result),
            }
            self.maybe_commit(store)?;
        }
        drop(results);
        (self.view, self.gone) = (view, gone);
        self.flush(store)?;
        if let Some(e) = fatal {
            return Err(e.into());
        }
        self.follow_up(store).await?;
        Ok(deferred)
    }

    /// The tenant's users and/or groups, or `None` when the listing failed in a way that only
    /// makes the run fall back to lookups one by one.
    async fn listing(&self, users: bool, groups: bool) -> Result<Option<TenantView>, AppError> {
        match read_tenant(self.client, users, groups, LIST_PAGE, self.concurrency).await {
            Ok(view) => Ok(Some(view)),
            Err(e) if is_fatal(&e) => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// After a `400 invalidFilter`: no more filters in this run (lookups from one listing), and
    /// the next runs do without them unless a probe finds them working again.
    async fn stop_filtering(&mut self) -> Result<(), AppError> {
        if self.filters_refused && self.filters {
            self.filters = false;
            self.batch.meta(FILTER_PROBED_KEY, "false");
            self.ensure_view().await?;
        }
        Ok(())
    }

    /// The run's listing of the tenant (users and groups), read once: what lookups use when
    /// the tenant's filters do not work.
    async fn ensure_view(&mut self) -> Result<(), AppError> {
        if self.view.is_none() {
            self.view = self.listing(true, true).await?;
        }
        Ok(())
    }

    /// Many journaled creates (a run killed during a large `/Bulk`), or any create when the
    /// tenant cannot filter: checked against one listing. Returns them settled: to adopt (with
    /// the tenant's id) or known absent.
    async fn check_journaled(&mut self, creates: &[Write]) -> Result<Vec<Write>, AppError> {
        let filters = self.filters;
        let journaled: Vec<&Write> =
            creates.iter().filter(|w| (w.verify_first || !filters) && w.scim_id.is_none()).collect();
        if journaled.is_empty() || (filters && journaled.len() < LIST_FROM) {
            return Ok(vec![]);
        }
        let users = journaled.iter().any(|w| w.kind == Kind::User);
        let groups = journaled.iter().any(|w| w.kind == Kind::Group);
        let view = if filters {
            self.listing(users, groups).await?
        } else {
            self.ensure_view().await?;
            self.view.clone()
        };
        let Some(view) = view else { return Ok(vec![]) };
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
        if conflicts.len() < LIST_FROM || !self.filters {
            // Resolved one by one (without filters, from the run's listing).
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

    /// Sends `jobs` through `/Bulk` in requests within the tenant's limits, as many at once as
    /// the pace says, the next batch built and the last one recorded while one is in flight.
    /// Returns the jobs to redo one by one (unanswered, and chunks the tenant refused whole) and
    /// the creates it answered 409 (resolved by soft match).
    #[allow(clippy::type_complexity)]
    async fn bulk_writes<'w>(
        &mut self,
        store: &mut StateStore,
        jobs: &[(&'w Write, bool)],
        limits: BulkLimits,
    ) -> Result<(Vec<(&'w Write, bool)>, Vec<(&'w Write, TenantError)>), AppError> {
        // Each chunk with the bytes it is estimated to carry (the pace's measure of work).
        let mut chunks: Vec<(Vec<(&'w Write, bool)>, usize)> = vec![(Vec::new(), 0)];
        for job in jobs {
            let members = job.0.members.as_ref().map_or(0, |m| m.guids.len());
            let bytes = map::json_len(&job.0.body) + 200 + members * 64;
            let (last, size) = chunks.last().expect("one chunk");
            if !last.is_empty() && (last.len() >= limits.max_operations || size + bytes > limits.max_payload) {
                chunks.push((Vec::new(), 0));
            }
            let (last, size) = chunks.last_mut().expect("one chunk");
            last.push(*job);
            *size += bytes;
        }
        let client = self.client;
        let (mut redo, mut conflicts) = (Vec::new(), Vec::new());
        // A batch (as many requests as the pace sends at once) is built while the one before is
        // in flight, and that one's answers are recorded while the next is: the tenant does not
        // wait for ausi between requests. Bodies (a group's carries its members) are built no
        // further ahead: a window of large groups is never all in memory as JSON.
        let mut chunks = chunks.into_iter();
        let mut ready = VecDeque::new();
        let mut answered = Vec::new();
        loop {
            self.prepare(&mut chunks, &mut ready);
            if ready.is_empty() {
                break;
            }
            let batch: Vec<BulkRequest<'w>> = ready.drain(..self.pace.requests().min(ready.len())).collect();
            let (sent, bytes) = (batch.len(), batch.iter().map(|r| r.bytes).sum());
            let requests = async move {
                let started = Instant::now();
                let answers: Vec<_> = stream::iter(batch)
                    .map(|r| async move {
                        let answer = client.bulk(&r.ops).await;
                        (r.chunk, answer)
                    })
                    .buffer_unordered(sent)
                    .collect()
                    .await;
                (answers, started.elapsed())
            };
            let previous = std::mem::take(&mut answered);
            let ((answers, elapsed), settled) = tokio::join!(requests, async {
                // The requests are handed to the connection first.
                tokio::task::yield_now().await;
                self.settle(store, previous, &mut redo, &mut conflicts).await?;
                self.prepare(&mut chunks, &mut ready);
                if ready.is_empty() {
                    // The last batch is in flight: what is recorded is committed meanwhile, so
                    // that only its own answers are left to commit when it is answered.
                    self.flush(store)?;
                }
                Ok::<_, AppError>(())
            });
            // A request refused whole was answered without the work: its batch measures nothing.
            if answers.iter().all(|(_, answer)| answer.is_ok()) {
                self.pace.record(sent, bytes, elapsed);
            }
            if let Err(e) = settled {
                // What the tenant answered meanwhile is recorded all the same.
                let _ = self.settle(store, answers, &mut redo, &mut conflicts).await;
                return Err(e);
            }
            answered = answers;
        }
        self.settle(store, answered, &mut redo, &mut conflicts).await?;
        self.flush(store)?;
        Ok((redo, conflicts))
    }

    /// Builds requests from `chunks` until `ready` holds as many as the pace sends at once.
    fn prepare<'w>(
        &self,
        chunks: &mut impl Iterator<Item = (Vec<(&'w Write, bool)>, usize)>,
        ready: &mut VecDeque<BulkRequest<'w>>,
    ) {
        while ready.len() < self.pace.requests() {
            let Some((chunk, bytes)) = chunks.next() else { return };
            let ops = chunk
                .iter()
                .enumerate()
                .map(|(n, (w, create))| BulkOperation {
                    method: if *create && w.scim_id.is_none() { BulkMethod::Post } else { BulkMethod::Put },
                    kind: resource(w.kind),
                    id: w.scim_id.clone(),
                    bulk_id: format!("op{n}"),
                    data: Some(
                        with_members(w, &|g| self.id(g), &|g| self.kind(g)).map_or(Cow::Borrowed(&w.body), Cow::Owned),
                    ),
                })
                .collect();
            ready.push_back(BulkRequest { chunk, ops, bytes });
        }
    }

    /// Records the tenant's answers to a batch of `/Bulk` requests: each operation written or
    /// failed, or kept in `redo` (to be sent one by one) or `conflicts` (a create answered 409).
    #[allow(clippy::type_complexity)]
    async fn settle<'w>(
        &mut self,
        store: &mut StateStore,
        answers: Vec<(Vec<(&'w Write, bool)>, Result<Vec<scim::BulkOutcome>, TenantError>)>,
        redo: &mut Vec<(&'w Write, bool)>,
        conflicts: &mut Vec<(&'w Write, TenantError)>,
    ) -> Result<(), AppError> {
        for (chunk, answer) in answers {
            match answer {
                Ok(outcomes) => {
                    for ((w, create), outcome) in chunk.into_iter().zip(outcomes) {
                        let adopting = create && w.scim_id.is_some();
                        match (outcome.status, outcome.id, outcome.error) {
                            (200..=299, Some(id), _) => self.written(w, create, Ok(Done::new(id, adopting))),
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
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Records the result of one create or update, checking the tenant's answer (when it sent
    /// the resource back) for what ausi verifies.
    fn written(&mut self, w: &Write, create: bool, result: Result<Done, TenantError>) {
        match result {
            Ok(done) => {
                let id = done.id;
                let dropped = done.answer.as_ref().map(|a| repair::dropped(w.kind, &w.body, a)).unwrap_or_default();
                if let Some(answer) = &done.answer {
                    self.altered.extend(repair::altered(w.kind, &w.body, answer));
                }
                // Not in step: the next run sends it again (one finding per run, never a loop).
                let hash = if dropped.is_empty() { w.hash.as_str() } else { "" };
                self.batch.anchor(&w.guid, w.kind.into(), &id, &w.dn, hash, self.run);
                self.batch.body(&w.guid, &w.body);
                self.batch.clear_failure(&w.guid);
                for attribute in dropped {
                    self.dropped(&w.guid, &w.dn, &id, &attribute, "the tenant answered the write without it");
                }
                if let Some((old, state)) = done.moved {
                    self.batch.set_state(&old, state);
                }
                if let Some(members) = &w.members {
                    let sent: Vec<(String, String)> =
                        members.guids.iter().filter_map(|g| self.id(g).map(|i| (g.clone(), i))).collect();
                    let missing: Vec<(String, String)> = match &done.answer {
                        Some(answer) => {
                            let lost: HashSet<String> =
                                repair::dropped_members(sent.iter().map(|(_, i)| i), answer).into_iter().collect();
                            sent.iter().filter(|(_, i)| lost.contains(i)).cloned().collect()
                        }
                        None => vec![],
                    };
                    let kept: std::collections::BTreeSet<String> =
                        members.guids.iter().filter(|g| !missing.iter().any(|(m, _)| m == *g)).cloned().collect();
                    self.batch.set_members(&w.guid, &kept);
                    if !missing.is_empty() {
                        self.follow_ups.push((w.guid.clone(), w.dn.clone(), id.clone(), missing));
                    }
                    if members.changed {
                        self.counts.membership_changes += 1;
                    }
                    self.counts.repaired_memberships += members.restored;
                }
                self.learned.insert(w.guid.clone(), id);
                self.kinds.insert(w.guid.clone(), w.kind);
                match (w.repair, w.kind, create, done.adopted) {
                    (true, Kind::User, ..) => self.counts.repaired_users += 1,
                    (true, Kind::Group, ..) => self.counts.repaired_groups += 1,
                    (false, _, true, false) => self.counts.created += 1,
                    (false, _, true, true) => self.counts.adopted += 1,
                    (false, _, false, _) => self.counts.updated += 1,
                }
            }
            Err(e) => self.failed(&w.guid, &w.dn, if create { "create" } else { "update" }, e, vec![]),
        }
    }

    fn dropped(&mut self, guid: &str, dn: &str, id: &str, attribute: &str, why: &str) {
        self.findings.push(Finding {
            rule: "tenant-dropped-attribute",
            guid: guid.to_owned(),
            dn: dn.to_owned(),
            tenant_id: id.to_owned(),
            attribute: attribute.to_owned(),
            message: format!("{why}: {attribute} is not as ausi sent it; the next run sends it again"),
        });
    }

    /// Groups whose create or replace came back without members it carried (a tenant that
    /// drops `members` in POST/PUT): one PATCH adding them each. What that answer still lacks is
    /// a finding, recorded as not set, so the next run sends it again (one PATCH a run).
    async fn follow_up(&mut self, store: &mut StateStore) -> Result<(), AppError> {
        for (guid, dn, id, missing) in std::mem::take(&mut self.follow_ups) {
            let typed: Vec<(String, Option<ResourceKind>)> =
                missing.iter().map(|(g, i)| (i.clone(), self.kind(g).map(resource))).collect();
            let op = scim::patch_add_typed_members(&typed);
            self.followed_up += 1;
            match self.client.patch(ResourceKind::Group, &id, &[op]).await {
                Ok(answer) => {
                    let still: HashSet<String> = answer
                        .map(|a| repair::dropped_members(missing.iter().map(|(_, i)| i), &a).into_iter().collect())
                        .unwrap_or_default();
                    for (member, member_id) in &missing {
                        if still.contains(member_id) {
                            continue;
                        }
                        self.batch.add_member(&guid, member);
                    }
                    if !still.is_empty() {
                        self.dropped(
                            &guid,
                            &dn,
                            &id,
                            "members",
                            "the tenant dropped members from a group write and a PATCH adding them",
                        );
                    }
                }
                Err(e) => {
                    let members = missing.iter().map(|(g, _)| g.clone()).collect();
                    self.settle_error(store, e, &guid, &dn, "add-members", members)?;
                }
            }
            self.maybe_commit(store)?;
        }
        Ok(())
    }

    /// Membership differences: per group, one PATCH adding members and one removing them
    /// (separate, so that a refused form of one cannot take the other down), never a rewrite of
    /// the whole member list unless the tenant refuses both remove forms. Members carry their
    /// `type`. Through `/Bulk` when the tenant has it, one by one for what a bulk request did
    /// not settle.
    pub async fn memberships(&mut self, store: &mut StateStore, changes: &[MembershipChange]) -> Result<(), AppError> {
        let mut adds = Vec::new();
        let mut removes = Vec::new();
        for change in changes {
            let Some(group_id) = self.id(&change.group_guid) else {
                continue; // the group's own create failed: recorded already, retried next run
            };
            let resolve = |guids: &[String]| -> Vec<(String, String)> {
                guids.iter().filter_map(|g| self.id(g).map(|id| (g.clone(), id))).collect()
            };
            let (add, remove) = (resolve(&change.add), resolve(&change.remove));
            if !add.is_empty() {
                let ops = vec![scim::patch_add_typed_members(&self.typed(&add))];
                adds.push(MemberPatch { change, group_id: group_id.clone(), add, remove: vec![], ops });
            }
            if !remove.is_empty() {
                let ops = match self.remove_form {
                    RemoveForm::Replace => vec![], // built when sent, from the group's members then
                    form => scim::patch_remove_members(form, &self.typed(&remove), &[]),
                };
                removes.push(MemberPatch { change, group_id, add: vec![], remove, ops });
            }
        }
        let mut patches = adds;
        patches.extend(removes);
        if let Some(limits) = self.bulk.filter(|_| patches.len() > 1) {
            let (bulk, single): (Vec<_>, Vec<_>) = patches.into_iter().partition(|p| !p.ops.is_empty());
            patches = self.bulk_memberships(store, bulk, limits).await?;
            patches.extend(single);
        }
        for p in patches {
            if p.remove.is_empty() {
                match self.client.patch(ResourceKind::Group, &p.group_id, &p.ops).await {
                    Ok(answer) => self.patched(&p, answer.as_ref()),
                    Err(e) => {
                        let members = p.add.iter().map(|(g, _)| g.clone()).collect();
                        self.settle_error(store, e, &p.change.group_guid, &p.change.group_dn, "add-members", members)?
                    }
                }
            } else {
                self.remove_members(store, &p).await?;
            }
            self.maybe_commit(store)?;
        }
        self.flush(store)
    }

    /// (id, type) of members given as (guid, id).
    fn typed(&self, members: &[(String, String)]) -> Vec<(String, Option<ResourceKind>)> {
        members.iter().map(|(g, id)| (id.clone(), self.kind(g).map(resource))).collect()
    }

    /// Removes members in the form that worked last; a form the tenant refuses (400, 501: a
    /// permanent answer) is followed by the next one, and the form that works is remembered.
    /// A member removal the tenant refused in every form (or could not be asked): its failure.
    fn remove_failed(&mut self, store: &mut StateStore, p: &MemberPatch<'_>, e: TenantError) -> Result<(), AppError> {
        let members = p.remove.iter().map(|(g, _)| g.clone()).collect();
        self.settle_error(store, e, &p.change.group_guid, &p.change.group_dn, "remove-members", members)
    }

    async fn remove_members(&mut self, store: &mut StateStore, p: &MemberPatch<'_>) -> Result<(), AppError> {
        let typed = self.typed(&p.remove);
        let mut form = self.remove_form;
        loop {
            let ops = match form {
                RemoveForm::Replace => {
                    let current = match self.client.get(ResourceKind::Group, &p.group_id).await {
                        Ok(Some(group)) => group,
                        Ok(None) => Value::Null,
                        Err(e) => return self.remove_failed(store, p, e),
                    };
                    let gone: HashSet<&str> = p.remove.iter().map(|(_, id)| id.as_str()).collect();
                    let remaining: Vec<(String, Option<ResourceKind>)> = current["members"]
                        .as_array()
                        .map(|ms| {
                            ms.iter()
                                .filter_map(|m| {
                                    let id = m["value"].as_str()?;
                                    let kind = match m["type"].as_str() {
                                        Some(t) if t.eq_ignore_ascii_case("group") => Some(ResourceKind::Group),
                                        Some(t) if t.eq_ignore_ascii_case("user") => Some(ResourceKind::User),
                                        _ => None,
                                    };
                                    (!gone.contains(id)).then(|| (id.to_owned(), kind))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    scim::patch_remove_members(RemoveForm::Replace, &typed, &remaining)
                }
                form if form == self.remove_form && !p.ops.is_empty() => p.ops.clone(),
                form => scim::patch_remove_members(form, &typed, &[]),
            };
            match self.client.patch(ResourceKind::Group, &p.group_id, &ops).await {
                Ok(answer) => {
                    if form != self.remove_form {
                        self.remove_form = form;
                        self.batch.meta(REMOVE_FORM_KEY, form.as_str());
                    }
                    self.patched(p, answer.as_ref());
                    return Ok(());
                }
                // Refused in this form (400, 501, …): the next form; only the last refusal is reported.
                Err(TenantError::Rejected(_)) if form.next().is_some() => form = form.next().unwrap_or(form),
                Err(e) => return self.remove_failed(store, p, e),
            }
        }
    }

    /// Sends membership PATCHes through `/Bulk`; returns those to send one by one (a removal
    /// the tenant refused in this form included: the next form is tried then).
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
            let ops: Vec<BulkOperation> = chunk
                .iter()
                .enumerate()
                .map(|(n, p)| BulkOperation {
                    method: BulkMethod::Patch,
                    kind: ResourceKind::Group,
                    id: Some(p.group_id.clone()),
                    bulk_id: format!("op{n}"),
                    data: Some(Cow::Owned(scim::patch_message(&p.ops))),
                })
                .collect();
            match self.client.bulk(&ops).await {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    for p in chunk {
                        match outcomes.next().map(|o| (o.status, o.error)) {
                            Some((200..=299, _)) => self.patched(&p, None),
                            Some((status, Some(info)))
                                if p.remove.is_empty() && disposition(status, true, true) == Disposition::Permanent =>
                            {
                                let members = p.add.iter().map(|(g, _)| g.clone()).collect();
                                self.settle_error(
                                    store,
                                    TenantError::Rejected(info),
                                    &p.change.group_guid,
                                    &p.change.group_dn,
                                    "add-members",
                                    members,
                                )?
                            }
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

    /// Records a membership PATCH the tenant accepted; when it answered with the group, members
    /// it should now list and does not (or still lists) are a finding, not recorded as set.
    fn patched(&mut self, p: &MemberPatch<'_>, answer: Option<&Value>) {
        let group = &p.change.group_guid;
        let listed: Option<HashSet<&str>> = answer.and_then(|a| {
            a.get("members")
                .and_then(Value::as_array)
                .map(|ms| ms.iter().filter_map(|m| m.get("value").and_then(Value::as_str)).collect())
        });
        let mut refused = false;
        for (guid, id) in &p.add {
            if listed.as_ref().is_some_and(|l| !l.contains(id.as_str())) {
                refused = true;
                continue;
            }
            self.batch.add_member(group, guid);
        }
        for (guid, id) in &p.remove {
            if listed.as_ref().is_some_and(|l| l.contains(id.as_str())) {
                refused = true;
                continue;
            }
            self.batch.remove_member(group, guid);
        }
        if refused {
            let why = "the tenant accepted a membership PATCH but its answer does not show it";
            self.dropped(group, &p.change.group_dn, &p.group_id, "members", why);
        }
        let restored = p.add.iter().filter(|(g, _)| p.change.restore.contains(g)).count();
        self.counts.repaired_memberships += restored as u64;
        if p.change.changes_membership() && self.counted.insert(group.clone()) {
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
                (None, _) => match self.find_external(r.kind, &r.guid).await {
                    Ok(found) => match found.as_deref() {
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
                        self.settle_error(store, e, &r.guid, &r.dn, "deprovision", vec![])?;
                        continue;
                    }
                },
            };
            let result = match r.action {
                RemoveAction::Delete => self.client.delete(resource(r.kind), &id).await,
                RemoveAction::Deactivate if self.patch => {
                    let ops = [scim::patch_replace("active", json!(false))];
                    self.client.patch(resource(r.kind), &id, &ops).await.map(|_| ())
                }
                RemoveAction::Deactivate => match self.client.get(resource(r.kind), &id).await {
                    Ok(Some(mut current)) => {
                        current["active"] = json!(false);
                        self.client.replace(resource(r.kind), &id, &current).await.map(|_| ())
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
                Err(e) => self.settle_error(store, e, &r.guid, &r.dn, "deprovision", vec![])?,
            }
            self.maybe_commit(store)?;
        }
        self.flush(store)
    }

    /// The id of the tenant's resource with externalId `guid`: by filter, or from the run's
    /// listing when the tenant cannot filter.
    async fn find_external(&mut self, kind: Kind, guid: &str) -> Result<Option<String>, TenantError> {
        if self.filters {
            match find_one(self.client, resource(kind), "externalId", guid).await {
                Err(e) if e.is_invalid_filter() => {
                    self.filters_refused = true;
                    self.stop_filtering()
                        .await
                        .map_err(|e| TenantError::Unavailable { attempts: 1, last: e.to_string() })?;
                }
                other => return other,
            }
        }
        {
            self.ensure_view().await.map_err(|e| TenantError::Unavailable { attempts: 1, last: e.to_string() })?;
            let ctx = Lookups { filters: false, view: self.view.as_ref(), gone: &self.gone, recreate: self.recreate };
            lookup_external(self.client, kind, guid, &ctx).await
        }
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
                reasons: q
                    .reasons
                    .iter()
                    .map(|r| Reason { rule: r.rule.clone(), message: r.message.clone() })
                    .collect(),
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
        members: Vec<String>,
    ) -> Result<(), AppError> {
        if is_fatal(&e) {
            self.flush(store)?;
            return Err(e.into());
        }
        self.failed(guid, dn, operation, e, members);
        Ok(())
    }

    /// A permanent error: that object and that operation fail, the run goes on.
    fn failed(&mut self, guid: &str, dn: &str, operation: &'static str, e: TenantError, members: Vec<String>) {
        let scim = match &e {
            TenantError::Rejected(info) => Some(info.clone()),
            TenantError::NotFound => Some(scim::ScimErrorInfo { status: 404, scim_type: None, detail: None }),
            _ => None,
        };
        let error = e.to_string();
        // One failing run per object in the store (its `attempts` count runs), the first
        // operation's answer kept; the report lists every failure.
        if !self.failures.iter().any(|f| f.guid == guid) {
            self.batch.fail(guid, dn, operation, &error);
        }
        self.counts.failed += 1;
        self.failures.push(Failure {
            guid: guid.to_owned(),
            dn: dn.to_owned(),
            tenant_id: self.id(guid),
            operation,
            error,
            scim,
            members,
        });
    }

    fn maybe_commit(&mut self, store: &mut StateStore) -> Result<(), AppError> {
        self.done += 1;
        (self.progress)(self.done);
        if self.batch.len() >= COMMIT_EVERY || self.committed.elapsed() >= COMMIT_AFTER {
            self.flush(store)
        } else {
            Ok(())
        }
    }

    /// Starts from the attributes this tenant is known to rewrite (from the state store).
    pub fn knows_altered(&mut self, known: std::collections::BTreeSet<String>) {
        self.altered_known = known.len();
        self.altered = known;
    }

    /// Commits what was applied so far (one SQLite transaction).
    pub fn flush(&mut self, store: &mut StateStore) -> Result<(), AppError> {
        if self.altered.len() > self.altered_known {
            self.altered_known = self.altered.len();
            let list: Vec<&str> = self.altered.iter().map(String::as_str).collect();
            self.batch.meta(ALTERED_KEY, &list.join(","));
        }
        if !self.batch.is_empty() {
            store.commit(&self.batch, &now())?;
            self.batch = Batch::default();
            self.committed = Instant::now();
        }
        Ok(())
    }
}

/// One `/Bulk` request built and not yet answered: its writes, their operations and the bytes
/// it is estimated to carry (the pace's measure of work).
struct BulkRequest<'w> {
    chunk: Vec<(&'w Write, bool)>,
    ops: Vec<BulkOperation<'w>>,
    bytes: usize,
}

/// A group's resource with the members its write sets (`None`: send the body as it is).
/// The members ausi sets, with their `type`, plus those the tenant lists that ausi did not set
/// (`keep_members`).
fn with_members(
    w: &Write,
    ids: &dyn Fn(&str) -> Option<String>,
    kinds: &dyn Fn(&str) -> Option<Kind>,
) -> Option<Value> {
    let members = w.members.as_ref()?;
    let mut body = w.body.clone();
    let mut seen = HashSet::new();
    let list: Vec<Value> = members
        .guids
        .iter()
        .filter_map(|g| ids(g).map(|id| (id, kinds(g).map(resource))))
        .chain(w.keep_members.iter().map(|id| (id.clone(), None)))
        .filter(|(id, _)| seen.insert(id.clone()))
        .map(|(id, kind)| scim::member(&id, kind))
        .collect();
    body["members"] = Value::Array(list);
    Some(body)
}

/// A create: a PUT to what the listing found (`scim_id`), or a POST; with `lookup`, a 409 is
/// resolved here: adopted by soft match (externalId, then userName) when unambiguous, or, for
/// a userName held by a user ausi provisioned for an objectGUID gone from AD (a re-created
/// account), by moving that holder out of the way first (see [`Recreate`]); else returned, for
/// one listing to resolve many. Lookups use filters, or the run's listing without them.
async fn create_or_adopt(
    client: &dyn Tenant,
    w: &Write,
    body: &Value,
    lookup: bool,
    ctx: &Lookups<'_>,
) -> Result<Done, TenantError> {
    let kind = resource(w.kind);
    if let Some(id) = &w.scim_id {
        match client.replace(kind, id, body).await {
            Ok(answer) => return Ok(Done { answer, ..Done::new(id.clone(), true) }),
            Err(TenantError::NotFound) => {} // deleted since it was listed: create it
            Err(e) => return Err(e),
        }
    }
    // Groups have no unique attribute a tenant must enforce: look before creating (unless the
    // run's listing shows it is not there).
    if (w.verify_first || (w.kind == Kind::Group && !w.absent))
        && let Some(id) = lookup_external(client, w.kind, &w.guid, ctx).await?
    {
        let answer = client.replace(kind, &id, body).await?;
        return Ok(Done { answer, ..Done::new(id, true) });
    }
    match client.create(kind, body).await {
        Ok(created) => id_of(&created).map(|id| Done { answer: Some(created), ..Done::new(id, false) }),
        Err(e) if e.is_conflict() && lookup => {
            if let Some(id) = lookup_external(client, w.kind, &w.guid, ctx).await? {
                let answer = client.replace(kind, &id, body).await?;
                return Ok(Done { answer, ..Done::new(id, true) });
            }
            if w.kind != Kind::User {
                return Err(e);
            }
            let user_name = w.body["userName"].as_str().unwrap_or_default();
            let holders = holders(client, user_name, ctx).await?;
            let [(id, external)] = holders.as_slice() else { return Err(e) };
            match external.as_deref() {
                // Soft match: the holder has no externalId, or ours.
                None => {
                    let answer = client.replace(kind, id, body).await?;
                    Ok(Done { answer, ..Done::new(id.clone(), true) })
                }
                Some(x) if x.eq_ignore_ascii_case(&w.guid) => {
                    let answer = client.replace(kind, id, body).await?;
                    Ok(Done { answer, ..Done::new(id.clone(), true) })
                }
                // A re-created account: the holder is ausi's, for an objectGUID gone from AD.
                Some(old) if ctx.gone.contains(&old.to_lowercase()) => {
                    let old = old.to_lowercase();
                    let state = match ctx.recreate {
                        Recreate::Delete => {
                            client.delete(kind, id).await?;
                            AnchorState::Deleted
                        }
                        Recreate::Rename => {
                            let mut current = client.get(kind, id).await?.unwrap_or_else(|| json!({}));
                            current["userName"] = json!(retired_user_name(user_name, &old));
                            current["active"] = json!(false);
                            current.as_object_mut().map(|o| o.remove("meta"));
                            client.replace(kind, id, &current).await?;
                            AnchorState::Deactivated
                        }
                    };
                    let created = client.create(kind, body).await?;
                    let new_id = id_of(&created)?;
                    Ok(Done { id: new_id, adopted: false, answer: Some(created), moved: Some((old, state)) })
                }
                Some(other) => Err(TenantError::Rejected(scim::ScimErrorInfo {
                    status: 409,
                    scim_type: Some("uniqueness".into()),
                    detail: Some(format!(
                        "userName {user_name} is held by tenant user {id} with externalId {other}, which ausi did not \
                         provision (or still syncs): rename or delete that user in the tenant, or set its externalId \
                         to {} so that ausi adopts it",
                        w.guid
                    )),
                })),
            }
        }
        Err(e) => Err(e),
    }
}

/// The userName a re-created account's old holder gets: `<userName>.<old objectGUID>`.
pub fn retired_user_name(user_name: &str, old_guid: &str) -> String {
    format!("{user_name}.{old_guid}")
}

/// The tenant's resource with externalId `guid`, by filter or from the run's listing.
async fn lookup_external(
    client: &dyn Tenant,
    kind: Kind,
    guid: &str,
    ctx: &Lookups<'_>,
) -> Result<Option<String>, TenantError> {
    if ctx.filters {
        return find_one(client, resource(kind), "externalId", guid).await;
    }
    let view = ctx.view.ok_or_else(|| {
        TenantError::Protocol("the tenant cannot filter and could not be listed: the object cannot be looked up".into())
    })?;
    match view.soft_match(kind, guid, None) {
        Match::Adopt(id) => Ok(Some(id)),
        Match::Absent => Ok(None),
        Match::Conflict(detail) => Err(TenantError::Rejected(scim::ScimErrorInfo {
            status: 409,
            scim_type: Some("uniqueness".into()),
            detail: Some(detail),
        })),
    }
}

/// The users holding `user_name` as (id, externalId), by filter or from the run's listing.
async fn holders(
    client: &dyn Tenant,
    user_name: &str,
    ctx: &Lookups<'_>,
) -> Result<Vec<(String, Option<String>)>, TenantError> {
    if ctx.filters {
        let found = client.find(ResourceKind::User, "userName", user_name).await?;
        return found
            .iter()
            .map(|r| {
                let x = r["externalId"].as_str().map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned);
                id_of(r).map(|id| (id, x))
            })
            .collect();
    }
    Ok(ctx
        .view
        .map(|v| {
            v.holders(user_name).into_iter().map(|o| (o.id().to_owned(), o.external_id().map(str::to_owned))).collect()
        })
        .unwrap_or_default())
}

async fn update(client: &dyn Tenant, w: &Write, body: &Value) -> Result<Done, TenantError> {
    let kind = resource(w.kind);
    let id = w.scim_id.clone().ok_or_else(|| TenantError::Protocol("update without a SCIM id".into()))?;
    match client.replace(kind, &id, body).await {
        Ok(answer) => Ok(Done { answer, ..Done::new(id, false) }),
        // Deleted in the tenant by someone else: provision it again.
        Err(TenantError::NotFound) => {
            let created = client.create(kind, body).await?;
            id_of(&created).map(|id| Done { answer: Some(created), ..Done::new(id, false) })
        }
        Err(e) => Err(e),
    }
}

async fn find_one(
    client: &dyn Tenant,
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

/// The tenant's users and/or groups, paged (`page_size` a page, `concurrency` pages in
/// flight), as one view: each resource is reduced to what ausi compares as its page is read,
/// so memory holds the pages in flight, not the listing.
pub async fn read_tenant(
    client: &dyn Tenant,
    users: bool,
    groups: bool,
    page_size: u32,
    concurrency: usize,
) -> Result<TenantView, TenantError> {
    let (mut complete, mut pages) = (true, 0);
    let mut view = ViewBuilder::default();
    for (wanted, kind, attributes) in [(users, Kind::User, USER_ATTRIBUTES), (groups, Kind::Group, GROUP_ATTRIBUTES)] {
        if !wanted {
            continue;
        }
        let resource_kind = match kind {
            Kind::User => ResourceKind::User,
            Kind::Group => ResourceKind::Group,
        };
        let listing = client
            .listing_each(resource_kind, page_size, Some(attributes), concurrency, &mut |r| view.push(kind, &r))
            .await?;
        complete &= listing.complete;
        pages += listing.pages;
    }
    Ok(view.finish(complete, pages))
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

impl From<Kind> for AnchorKind {
    fn from(k: Kind) -> AnchorKind {
        match k {
            Kind::User => AnchorKind::User,
            Kind::Group => AnchorKind::Group,
        }
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

#[cfg(test)]
mod tests {
    //! The applier against an in-memory tenant (through [`Tenant`]) that can refuse a kind of
    //! request, drop members or attributes, and cannot filter.

    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::sync::fake_tenant::Fake;

    const NOW: &str = "2026-12-03T10:00:00Z";

    fn user(n: u32) -> Write {
        Write {
            kind: Kind::User,
            guid: format!("00000000-0000-0000-0000-00000000000{n}"),
            dn: format!("CN=U{n},OU=T,DC=x"),
            scim_id: None,
            body: json!({
                "schemas": [ResourceKind::User.schema()],
                "externalId": format!("00000000-0000-0000-0000-00000000000{n}"),
                "userName": format!("u{n}@x.test"),
                "name": {"givenName": format!("U{n}"), "familyName": "Test"},
                "emails": [{"value": format!("u{n}@x.test"), "type": "work", "primary": true}],
                "active": true,
            }),
            hash: format!("h{n}"),
            verify_first: false,
            absent: false,
            repair: false,
            changed: vec![],
            members: None,
            keep_members: vec![],
        }
    }

    fn group(members: &[&Write]) -> Write {
        let guid = "99999999-0000-0000-0000-000000000000".to_owned();
        Write {
            kind: Kind::Group,
            guid: guid.clone(),
            dn: "CN=G,OU=T,DC=x".into(),
            body: json!({"schemas": [ResourceKind::Group.schema()], "externalId": guid, "displayName": "G"}),
            members: Some(super::super::plan::InlineMembers {
                guids: members.iter().map(|w| w.guid.clone()).collect(),
                changed: true,
                restored: 0,
            }),
            ..user(0)
        }
    }

    fn options(filters: bool) -> WriteOptions {
        WriteOptions {
            concurrency: 2,
            patch: true,
            bulk: None,
            filters,
            remove_form: RemoveForm::Filter,
            recreate: Recreate::Rename,
        }
    }

    /// Creates `users` and a group of `members` (indexes into `users`) through `fake`.
    fn setup(
        fake: &Fake,
        filters: bool,
        users: &[Write],
        members: &[usize],
        test: impl AsyncFnOnce(&mut Applier<'_>, &mut StateStore),
    ) -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("state.db"), NOW).unwrap();
        let run = store.begin_run("sync", false, NOW).unwrap();
        let g = group(&members.iter().map(|i| &users[*i]).collect::<Vec<_>>());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let progress = |_: u64| {};
            let mut applier = Applier::new(fake, run, options(filters), &progress, &Rc::default());
            applier.writes(&mut store, users, &[]).await.unwrap();
            applier.writes(&mut store, std::slice::from_ref(&g), &[]).await.unwrap();
            test(&mut applier, &mut store).await;
        });
        (dir, store)
    }

    #[test]
    fn the_next_bulk_request_goes_out_before_the_answers_to_the_last_are_recorded() {
        // One request at a time, two operations a request: the tenant does not wait while ausi
        // records the answers to one request and builds the next.
        let fake = Fake { bulk: true, filters: true, ..Fake::default() };
        let users: Vec<Write> = (1..=6).map(user).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("state.db"), NOW).unwrap();
        let run = store.begin_run("sync", false, NOW).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let progress = |n: u64| fake.state.lock().unwrap().log.push(format!("recorded {n}"));
            let bulk = Some(BulkLimits { max_operations: 2, max_payload: 1 << 20 });
            let options = WriteOptions { concurrency: 1, bulk, ..options(true) };
            let mut applier = Applier::new(&fake, run, options, &progress, &Rc::default());
            applier.writes(&mut store, &users, &[]).await.unwrap();
        });
        let log: Vec<String> =
            fake.log().into_iter().filter(|l| l.starts_with("BULK") || l.starts_with("recorded")).collect();
        let expected = ["BULK 2", "BULK 2", "recorded 1", "recorded 2", "BULK 2", "recorded 3", "recorded 4"];
        assert_eq!(log[..7], expected, "{log:?}");
        assert_eq!(log[7..], ["recorded 5", "recorded 6"]);
        assert_eq!(fake.all(ResourceKind::User).len(), 6);
        assert_eq!(store.anchors().unwrap().len(), 6, "every answer recorded");
    }

    #[test]
    fn what_is_recorded_is_committed_while_the_last_bulk_request_is_in_flight() {
        // One request at a time, two operations a request, no commit due before the end: the
        // answers to the first two requests are committed while the third is in flight.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let mut store = StateStore::open(&db, NOW).unwrap();
        let committed = move || {
            let sql = "SELECT count(*) FROM anchors WHERE state = 'active'";
            let n: i64 = rusqlite::Connection::open(&db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap();
            format!("{n} committed")
        };
        let fake = Fake { bulk: true, filters: true, on_bulk_answer: Some(Box::new(committed)), ..Fake::default() };
        let users: Vec<Write> = (1..=6).map(user).collect();
        let run = store.begin_run("sync", false, NOW).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let bulk = Some(BulkLimits { max_operations: 2, max_payload: 1 << 20 });
            let options = WriteOptions { concurrency: 1, bulk, ..options(true) };
            let mut applier = Applier::new(&fake, run, options, &|_| {}, &Rc::default());
            applier.writes(&mut store, &users, &[]).await.unwrap();
        });
        let log: Vec<String> = fake.log().into_iter().filter(|l| !l.starts_with("GET")).collect();
        assert_eq!(log, ["BULK 2", "0 committed", "BULK 2", "0 committed", "BULK 2", "4 committed"]);
        assert_eq!(store.anchors().unwrap().len(), 6, "and the last answers once they came");
    }

    fn change(add: &[&Write], remove: &[&Write]) -> MembershipChange {
        MembershipChange {
            group_guid: group(&[]).guid,
            group_dn: group(&[]).dn,
            add: add.iter().map(|w| w.guid.clone()).collect(),
            remove: remove.iter().map(|w| w.guid.clone()).collect(),
            restore: vec![],
            inline: false,
        }
    }

    /// The ids a run knows: active anchors' (and deactivated ones' for a real run), under what
    /// it learnt and forgot; kinds from the anchors. Nothing is copied out of the anchors.
    #[test]
    fn known_ids_are_the_anchors_under_what_the_run_learnt_and_forgot() {
        let mut builder = plan::AnchorsBuilder::default();
        for (guid, kind, id, state) in [
            ("a", Kind::User, Some("1"), plan::AnchorState::Active),
            ("d", Kind::User, Some("2"), plan::AnchorState::Deactivated),
            ("g", Kind::Group, Some("3"), plan::AnchorState::Active),
            ("p", Kind::User, None, plan::AnchorState::Pending),
            ("x", Kind::User, Some("4"), plan::AnchorState::Deleted),
        ] {
            let (guid, scim_id) = (guid.to_owned(), id.map(str::to_owned));
            builder.push(plan::Anchor { guid, kind, scim_id, dn: String::new(), hash: None, state });
        }
        let anchors = Rc::new(builder.finish());
        let ids = |k: &KnownIds| ["a", "d", "g", "p", "x", "new"].map(|g| k.get(g));
        let dry = KnownIds::new(Rc::clone(&anchors), false);
        assert_eq!(ids(&dry), [Some("1".into()), None, Some("3".into()), None, None, None]);
        let mut real = KnownIds::new(Rc::clone(&anchors), true);
        assert_eq!(ids(&real), [Some("1".into()), Some("2".into()), Some("3".into()), None, None, None]);
        real.learn([("new".to_owned(), "9".to_owned()), ("p".to_owned(), "8".to_owned())]);
        real.forget(&["a".to_owned(), "g".to_owned()]);
        real.learn([("g".to_owned(), "7".to_owned())]);
        assert_eq!(
            ids(&real),
            [None, Some("2".into()), Some("7".into()), Some("8".into()), None, Some("9".into())],
            "learnt and forgotten, the last word counting"
        );
        assert_eq!(
            (anchors.kind("g"), anchors.kind("a"), anchors.kind("new")),
            (Some(Kind::Group), Some(Kind::User), None)
        );
    }

    #[test]
    fn a_refused_remove_form_falls_back_is_remembered_and_never_takes_the_add_down() {
        let fake = Fake { refuse_filter_remove: true, filters: true, ..Fake::default() };
        let users: Vec<Write> = (1..=3).map(user).collect();
        let (_dir, store) = setup(&fake, true, &users, &[0, 1], async |applier, store| {
            let before = applier.counts.membership_changes;
            applier.memberships(store, &[change(&[&users[2]], &[&users[0]])]).await.unwrap();
            assert!(applier.failures.is_empty(), "{:?}", applier.failures);
            assert_eq!(applier.counts.membership_changes, before + 1, "one change, sent as two PATCHes");
        });
        let group_id = fake.all(ResourceKind::Group)[0]["id"].as_str().unwrap().to_owned();
        let id = |n: &str| fake.by_name(n)["id"].as_str().unwrap().to_owned();
        assert_eq!(fake.members(&group_id), BTreeSet::from([id("u2@x.test"), id("u3@x.test")]));
        let patches: Vec<String> = fake.log().into_iter().filter(|l| l.starts_with("PATCH")).collect();
        assert_eq!(patches.len(), 3, "add; remove by filter (501); remove by value array: {patches:#?}");
        assert!(patches[0].contains(r#""op":"add""#) && patches[0].contains(r#""type":"User""#), "{}", patches[0]);
        assert!(patches[1].contains("members[value eq"), "{}", patches[1]);
        assert!(patches[2].contains(r#""path":"members","value""#), "{}", patches[2]);
        assert_eq!(store.meta(REMOVE_FORM_KEY).unwrap().as_deref(), Some("value-array"));
        let g = group(&[]).guid;
        assert_eq!(store.members().unwrap()[&g], BTreeSet::from([users[1].guid.clone(), users[2].guid.clone()]));
    }

    #[test]
    fn a_refused_group_patch_fails_that_group_and_operation_only_and_deactivations_go_on() {
        let fake = Fake { refuse_group_patch: true, filters: true, ..Fake::default() };
        let users: Vec<Write> = (1..=2).map(user).collect();
        setup(&fake, true, &users, &[0], async |applier, store| {
            applier.memberships(store, &[change(&[&users[1]], &[])]).await.unwrap();
            let removal = Removal {
                kind: Kind::User,
                guid: users[0].guid.clone(),
                dn: users[0].dn.clone(),
                scim_id: applier.id(&users[0].guid),
                action: RemoveAction::Deactivate,
                reason: "deleted",
            };
            applier.removals(store, &[removal]).await.unwrap();
            assert_eq!(applier.failures.len(), 1, "{:?}", applier.failures);
            let f = &applier.failures[0];
            assert_eq!((f.operation, f.dn.as_str()), ("add-members", "CN=G,OU=T,DC=x"));
            assert_eq!(f.scim.as_ref().map(|s| s.status), Some(501));
            assert_eq!(f.members, [users[1].guid.clone()]);
            assert!(f.tenant_id.is_some());
            assert_eq!(applier.counts.deactivated, 1);
            // Recorded as failing, to be tried once in the next run.
            applier.flush(store).unwrap();
            assert_eq!(store.failures().unwrap()[0].operation, "add-members");
        });
        assert_eq!(fake.by_name("u1@x.test")["active"], false);
        assert_eq!(fake.log().iter().filter(|l| l.starts_with("PATCH Groups")).count(), 1, "never retried");
    }

    #[test]
    fn members_a_group_write_dropped_get_one_follow_up_patch() {
        let fake = Fake { drop_members_on_write: true, filters: true, ..Fake::default() };
        let users: Vec<Write> = (1..=2).map(user).collect();
        let (_dir, store) = setup(&fake, true, &users, &[0, 1], async |applier, _| {
            assert!(applier.findings.is_empty(), "{:?}", applier.findings);
        });
        let group_id = fake.all(ResourceKind::Group)[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(fake.members(&group_id).len(), 2);
        assert_eq!(fake.log().iter().filter(|l| l.starts_with("PATCH")).count(), 1);
        assert_eq!(store.members().unwrap()[&group(&[]).guid].len(), 2);

        // A tenant that drops them from the PATCH too: one finding, not recorded, no storm.
        let fake = Fake { drop_members_on_write: true, drop_members_on_patch: true, filters: true, ..Fake::default() };
        let (_dir, store) = setup(&fake, true, &users, &[0, 1], async |applier, _| {
            assert_eq!(applier.findings.len(), 1, "{:?}", applier.findings);
            assert_eq!(
                (applier.findings[0].rule, applier.findings[0].attribute.as_str()),
                ("tenant-dropped-attribute", "members")
            );
        });
        assert_eq!(fake.log().iter().filter(|l| l.starts_with("PATCH")).count(), 1);
        assert!(store.members().unwrap().get(&group(&[]).guid).is_none_or(BTreeSet::is_empty));
    }

    #[test]
    fn a_dropped_verified_attribute_is_a_finding_and_the_object_is_not_in_step() {
        let fake = Fake { drop_family_name: true, filters: true, ..Fake::default() };
        let users = vec![user(1)];
        let (_dir, store) = setup(&fake, true, &users, &[], async |applier, _| {
            let f: Vec<(&str, &str)> = applier.findings.iter().map(|f| (f.rule, f.attribute.as_str())).collect();
            assert_eq!(f, [("tenant-dropped-attribute", "name.familyName")]);
        });
        let anchor = &store.anchors().unwrap()[&users[0].guid];
        assert_eq!(anchor.hash.as_deref().unwrap_or_default(), "", "sent again by the next run");
    }

    #[test]
    fn without_filters_a_gone_users_name_is_moved_aside_and_a_strangers_is_a_failure() {
        let fake = Fake { filters: false, ..Fake::default() };
        let old =
            json!({"userName": "u1@x.test", "externalId": "aaaaaaaa-0000-0000-0000-000000000000", "active": true});
        let stranger = json!({"userName": "u2@x.test", "externalId": "hr-4711", "active": true});
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(fake.create(ResourceKind::User, &old)).unwrap();
        runtime.block_on(fake.create(ResourceKind::User, &stranger)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("state.db"), NOW).unwrap();
        let run = store.begin_run("sync", false, NOW).unwrap();
        let users = vec![user(1), user(2)];
        let progress = |_: u64| {};
        let mut applier = Applier::new(&fake, run, options(false), &progress, &Rc::default());
        applier.gone = HashSet::from(["aaaaaaaa-0000-0000-0000-000000000000".to_owned()]);
        runtime.block_on(applier.writes(&mut store, &users, &[])).unwrap();
        assert!(!fake.log().iter().any(|l| l.starts_with("FILTER")), "no filter is sent: {:?}", fake.log());
        let moved = fake.by_name("u1@x.test.aaaaaaaa-0000-0000-0000-000000000000");
        assert_eq!((moved["id"].as_str(), moved["active"].as_bool()), (Some("1"), Some(false)));
        assert_eq!(fake.by_name("u1@x.test")["externalId"], users[0].guid.as_str());
        assert_eq!(applier.failures.len(), 1, "{:?}", applier.failures);
        let f = &applier.failures[0];
        assert_eq!((f.dn.as_str(), f.operation), ("CN=U2,OU=T,DC=x", "create"));
        assert!(f.error.contains("did not") && f.error.contains("hr-4711"), "{}", f.error);
        assert_eq!(fake.by_name("u2@x.test")["externalId"], "hr-4711", "untouched");
        assert_eq!(applier.counts.created, 1);
    }

    #[test]
    fn a_tenant_that_starts_refusing_filters_is_served_from_one_listing() {
        // Announced and probed filters, then `400 invalidFilter`: the group's lookup is redone
        // from a listing, created once, and the refusal is kept for the next runs.
        let fake = Fake { filters: false, ..Fake::default() };
        let users: Vec<Write> = (1..=2).map(user).collect();
        let (_dir, store) = setup(&fake, true, &users, &[0, 1], async |applier, _| {
            assert!(applier.filters_refused);
            assert!(applier.failures.is_empty(), "{:?}", applier.failures);
        });
        assert_eq!(fake.all(ResourceKind::Group).len(), 1);
        let log = fake.log();
        assert_eq!(log.iter().filter(|l| l.starts_with("FILTER")).count(), 1, "one refusal, then none: {log:?}");
        assert_eq!(log.iter().filter(|l| l.starts_with("LIST")).count(), 2, "users and groups once: {log:?}");
        assert_eq!(store.meta(FILTER_PROBED_KEY).unwrap().as_deref(), Some("false"));
    }
}

//! The sync engine, one for full and delta runs: refresh the directory mirror (a complete read,
//! or the changes since the watermark), validate the dirty users, then plan and apply page by
//! page — users, managers, groups, memberships, removals; the next window planned while the
//! last is written — and advance the watermark only once everything is committed. Memory grows
//! with the page size and the state, not with the scope.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use serde::Serialize;

use super::desired::{self, Candidate};
use super::plan::{self, Kind, Known, Plan, Quarantined, Reason};
use super::progress::Progress;
use super::scope::{PolicyScope, Scope};
use super::spill::{PlanLog, Spill};
use super::validate::{self, Explanation, Identity, MAX_LISTED_CONFLICTS, RuleOptions};
use crate::config::{OnRemove, ScopeConfig};
use crate::directory::{
    AnyDirectory, Change, ChangeTracking, Defect, DirObject, Directory, Dn, ObjectKind, ObjectQuery, Unreadable,
};
use crate::error::{AppError, ErrorKind, Result};
use crate::store::{self, StateStore};
use crate::store::{Member, Mirrored, PageEnd, Watermark};
use crate::sync::apply::{Applier, Ids, KnownIds};

/// Objects read from the store, validated and planned together.
pub const PAGE: usize = 500;

/// Creates and updates handed to the applier together: several pages, so that it can keep
/// more than one `/Bulk` request (or `concurrency` single writes) in flight instead of one
/// page's worth at a time. The next window is planned while one is written, and waits for it
/// before it is handed over (the back-pressure), so memory holds at most two windows of bodies.
pub const WINDOW: usize = 4 * PAGE;

/// A window also ends once its groups carry this many members (the page that crosses it is the
/// last): a group's write holds its member list, so a window of big groups is bounded by what
/// it carries, not only by how many writes it holds.
pub const WINDOW_MEMBERS: usize = 20 * PAGE;

/// A window also ends once it holds this many unchanged objects: they cost no write, but each is
/// recorded as seen when the window is written, so a full sync in which nothing changed would
/// otherwise be one window holding every object of the scope.
pub const WINDOW_UNCHANGED: usize = 10 * WINDOW;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full,
    Delta { since: u64 },
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Delta { .. } => "delta",
        }
    }
}

/// Why a run asked to be a delta is a full sync.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Fallback {
    pub code: &'static str,
    pub message: String,
}

fn fallback(code: &'static str, message: impl Into<String>) -> Option<Fallback> {
    Some(Fallback { code, message: message.into() })
}

/// What decides between a delta and a full sync.
pub struct ModeInputs<'a> {
    pub full_asked: bool,
    pub tracking: Option<&'a ChangeTracking>,
    pub watermark: Option<&'a Watermark>,
    pub scope: &'a str,
    pub full_pending: bool,
    pub tenant_requested: bool,
    pub now: jiff::Timestamp,
}

/// The watermark a run on the DC `tracking` describes starts from: that DC's own when a run
/// was on it before, else the newest of another DC (which [`choose_mode`] then turns into a
/// full sync, `dc-changed`). `watermarks` is newest first, as the store lists them.
pub fn pick_watermark<'a>(tracking: Option<&ChangeTracking>, watermarks: &'a [Watermark]) -> Option<&'a Watermark> {
    tracking.and_then(|t| watermarks.iter().find(|w| w.dc == t.dc)).or_else(|| watermarks.first())
}

/// A delta when the watermark can be trusted; otherwise a full sync and why. Pure.
pub fn choose_mode(i: &ModeInputs<'_>) -> (Mode, Option<Fallback>) {
    if i.full_asked {
        return (Mode::Full, None);
    }
    let why = match (i.tracking, i.watermark) {
        (None, _) => fallback("no-change-tracking", "the source has no change tracking (an LDIF export is a snapshot)"),
        _ if i.tenant_requested => fallback("tenant-requested", "the tenant asked for a full sync"),
        (_, None) => fallback("no-watermark", "no earlier successful sync to continue from"),
        (Some(t), Some(w)) if t.dc != w.dc => fallback(
            "dc-changed",
            format!("no earlier sync on this domain controller ({}) to continue from; the last was on {}", t.dc, w.dc),
        ),
        (Some(t), Some(w)) if t.invocation_id != w.invocation_id => fallback(
            "dc-changed",
            format!(
                "the domain controller's database was restored since the last sync (invocationId {}, now {})",
                w.invocation_id, t.invocation_id
            ),
        ),
        (_, Some(w)) if w.scope.split('+').next() == i.scope.split('+').next() && w.scope != i.scope => fallback(
            "policy-changed",
            "the provisioning policy changed since the last sync: everything is read and mapped again",
        ),
        (_, Some(w)) if w.scope != i.scope => fallback("scope-changed", "the selected OUs changed since the last sync"),
        _ if i.full_pending => fallback("previous-full-unfinished", "the previous full sync did not finish"),
        (Some(t), Some(w)) if t.highest_usn < w.usn => fallback(
            "dc-changed",
            format!("the DC's highestCommittedUSN ({}) is below the watermark ({})", t.highest_usn, w.usn),
        ),
        (Some(t), Some(w)) => {
            let age_days = w
                .taken_at
                .parse::<jiff::Timestamp>()
                .map(|taken| i.now.duration_since(taken).as_secs() / 86_400)
                .unwrap_or(i64::MAX);
            if age_days < 0 || age_days as u64 >= t.tombstone_lifetime_days {
                fallback(
                    "watermark-expired",
                    format!(
                        "the last sync is {age_days} days old, beyond the tombstone lifetime ({} days): deletions may be lost",
                        t.tombstone_lifetime_days
                    ),
                )
            } else {
                return (Mode::Delta { since: w.usn }, None);
            }
        }
    };
    (Mode::Full, why)
}

/// A fingerprint of the selection (by objectGUID where known, so renaming a selected OU is
/// not a change of scope).
pub fn scope_fingerprint(scope: &ScopeConfig) -> String {
    let key = |o: &crate::config::OuRef| o.guid.clone().unwrap_or_else(|| o.dn.to_lowercase());
    let mut ous: Vec<String> = scope.ous.iter().map(key).collect();
    let mut excluded: Vec<String> = scope.excluded.iter().map(key).collect();
    ous.sort();
    excluded.sort();
    super::map::content_hash(&serde_json::json!([ous, excluded]))
}

/// What the watermark keeps of the configuration: the scope's fingerprint and, after a `+`, the
/// provisioning policy's (none for Default, so an upgrade keeps its watermark).
pub fn watermark_fingerprint(scope: &ScopeConfig, policy: &str) -> String {
    let scope = scope_fingerprint(scope);
    if policy.is_empty() { scope } else { format!("{scope}+{policy}") }
}

#[derive(Debug, Default, Serialize)]
pub struct ReadCounts {
    pub users: u64,
    pub groups: u64,
    pub entries: u64,
    /// Delta: objects that left the scope or were deleted in AD.
    pub removed: u64,
}

/// What a refresh found besides the mirror's new content.
#[derive(Debug, Default)]
pub struct Refresh {
    pub read: ReadCounts,
    /// Objects that cannot be anchored: no usable objectGUID (an export without it, a cut
    /// value), or one that an earlier object of the read holds. Never provisioned.
    pub unanchored: Vec<Quarantined>,
}

/// A safety stop (exit 3, nothing written): what the run read before it stopped, and why.
#[derive(Debug)]
pub struct Stopped {
    pub read: ReadCounts,
    pub details: StopDetails,
    pub error: AppError,
}

/// Why a run stopped before writing, for its report (`data.stop`, tagged by `reason`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum StopDetails {
    /// Entries of the scope could not be read: a partial read must not deprovision anyone.
    PartialRead {
        /// How many.
        unreadable: usize,
        /// The first [`UNREADABLE_LISTED`] of them, each with its location and what was wrong.
        first: Vec<Unreadable>,
    },
    /// The scope read no users while this many are provisioned.
    EmptyRead { provisioned: usize },
    /// The run would deactivate or delete `removing` objects (`percent` of those provisioned),
    /// more than `limit` (`max_deletions`, or `--allow-deletes`) or `limit_percent`
    /// (`max_deletion_percent`) allow.
    DeletionThreshold { removing: usize, percent: usize, limit: u32, limit_percent: u32 },
    /// The run would change the userName of `renaming` provisioned users (`percent` of those
    /// provisioned), more than `limit` (`max_renames`, or `--allow-renames`) or `limit_percent`
    /// (`max_rename_percent`) allow: a changed policy, or a mass UPN change in AD.
    RenameThreshold { renaming: usize, percent: usize, limit: u32, limit_percent: u32 },
    /// Selected OUs no longer exist (deleted, or moved where the bind account cannot see them);
    /// the plan lists the provisioned objects under them that the run would have removed.
    ScopeVanished { missing: Vec<String> },
}

/// How many unreadable entries a partial-read stop lists.
pub const UNREADABLE_LISTED: usize = 10;

/// A complete refresh, or the safety stop that ended it.
pub type Refreshed = std::result::Result<Refresh, Stopped>;

fn stop(read: ReadCounts, details: StopDetails, message: String) -> Stopped {
    Stopped { read, details, error: AppError::new(ErrorKind::SafetyStop, message) }
}

/// Holders of one objectGUID after the first (the first is in the mirror): DN and findings.
type LaterHolders = BTreeMap<String, Vec<(String, Vec<validate::Problem>)>>;

/// Rebuilds the mirror from a complete read of the scope. Nothing is removed from the mirror
/// unless the read was complete: an incomplete or empty read is a [`Stopped`], which carries
/// what was read.
pub async fn refresh_full(
    directory: &mut AnyDirectory,
    scope: &Scope,
    store: &mut StateStore,
    run: i64,
    rules: &RuleOptions,
    progress: &dyn Progress,
) -> Result<Refreshed> {
    store.begin_full()?;
    let mut refresh = Refresh::default();
    let mut page: Vec<DirObject> = Vec::with_capacity(PAGE);
    let mut later_holders = LaterHolders::new();
    let mut failed = None;
    let flush = |store: &mut StateStore, page: &mut Vec<DirObject>, later: &mut LaterHolders| {
        let again = store.mirror_put(page, run, false, &|o| validate::duplicate_keys(&rules.policy, o))?;
        for i in again {
            let o = &page[i];
            let guid = o.guid.map(|g| g.to_string()).unwrap_or_default();
            later.entry(guid).or_default().push((o.dn.to_string(), object_problems(o, rules)));
        }
        page.clear();
        Ok::<_, crate::store::StateError>(())
    };
    let summary = super::scope::read_scope(directory, scope, ObjectQuery::SYNC, progress, &mut |o| {
        match o.kind {
            ObjectKind::User => refresh.read.users += 1,
            ObjectKind::Group => refresh.read.groups += 1,
        }
        if o.guid.is_none() {
            refresh.unanchored.push(quarantined(o.dn.to_string(), object_problems(&o, rules)));
            return;
        }
        page.push(o);
        if page.len() >= PAGE && failed.is_none() {
            failed = flush(store, &mut page, &mut later_holders).err();
        }
    })
    .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    flush(store, &mut page, &mut later_holders)?;
    drop(page);
    refresh.unanchored.extend(duplicate_holders(store, later_holders)?);
    refresh.read.entries = summary.entries;
    if let Some(first) = summary.unreadable.first() {
        let message = format!(
            "{} entries could not be read (first: {}: {}); nothing was written, because a partial read must not deprovision anyone",
            summary.unreadable.len(),
            first.location,
            first.message
        );
        let listed = summary.unreadable.iter().take(UNREADABLE_LISTED).cloned().collect();
        let details = StopDetails::PartialRead { unreadable: summary.unreadable.len(), first: listed };
        return Ok(Err(stop(refresh.read, details, message)));
    }
    let provisioned = store.active_users()?;
    if refresh.read.users == 0 && provisioned > 0 {
        let message =
            format!("the directory returned no users in scope, but {provisioned} are provisioned; nothing was written");
        let mut stopped = stop(refresh.read, StopDetails::EmptyRead { provisioned }, message);
        stopped.error = stopped.error.with_hint("check the selected OUs and the bind account's read rights; an emptied OU is never taken as a reason to deprovision");
        return Ok(Err(stopped));
    }
    let mut ous = Vec::new();
    for base in scope.bases() {
        for c in directory.containers(base).await? {
            if let Some(guid) = c.guid.filter(|_| scope.contains(&c.dn)) {
                ous.push((guid.to_string(), c.dn.to_string()));
            }
        }
    }
    store.mirror_set_ous(&ous, &[], true)?;
    let unseen = store.mirror_unseen(run)?;
    refresh.read.removed = store.mirror_remove(&unseen)? as u64;
    store.mirror_resolve_links(false)?;
    Ok(Ok(refresh))
}

/// The rules that need no other object, for a user or a group.
fn object_problems(o: &DirObject, rules: &RuleOptions) -> Vec<validate::Problem> {
    let mut problems = match o.kind {
        ObjectKind::User => validate::check_attributes(o, rules),
        ObjectKind::Group => validate::check_group(o, rules),
    };
    validate::tidy(&mut problems);
    problems
}

/// An object held back before it reaches the mirror (keyed by DN: it has no usable anchor).
fn quarantined(dn: String, problems: Vec<validate::Problem>) -> Quarantined {
    Quarantined { guid: format!("dn:{dn}"), reasons: reasons(&problems), dn }
}

fn reasons(problems: &[validate::Problem]) -> Vec<Reason> {
    problems.iter().map(|p| Reason { rule: p.rule.id().to_owned(), message: p.message.clone() }).collect()
}

/// Every holder of an objectGUID held more than once is quarantined, each naming the others:
/// the first holder through a defect on its mirror row (so it is held like any invalid object,
/// and an object the tenant has is not deprovisioned), the later ones here.
fn duplicate_holders(store: &mut StateStore, later: LaterHolders) -> Result<Vec<Quarantined>> {
    let mut out = Vec::new();
    for (guid, extra) in later {
        let Some(first) = store.mirrored(&guid)? else { continue };
        let holders: Vec<String> =
            std::iter::once(first.object.dn.to_string()).chain(extra.iter().map(|(dn, _)| dn.clone())).collect();
        let total = holders.len() - 1;
        let others = |i: usize| -> Vec<String> {
            holders
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, d)| d.clone())
                .take(MAX_LISTED_CONFLICTS)
                .collect()
        };
        store.mirror_add_defect(&guid, Defect::GuidDuplicate { others: others(0), total })?;
        for (i, (dn, mut problems)) in extra.into_iter().enumerate() {
            problems.push(validate::duplicate_guid_problem(others(i + 1), total));
            validate::tidy(&mut problems);
            out.push(quarantined(dn, problems));
        }
    }
    Ok(out)
}

/// Patches the mirror with what changed since `since`: changed objects in scope are written,
/// objects that left the scope or were deleted are removed, and a renamed or moved OU has its
/// sub-tree read again (AD does not touch the children's uSNChanged when their OU moves).
pub async fn refresh_delta<D: Directory>(
    directory: &mut D,
    scope: &Scope,
    store: &mut StateStore,
    run: i64,
    since: u64,
    rules: &RuleOptions,
    progress: &dyn Progress,
) -> Result<Refresh> {
    let mut refresh = Refresh::default();
    let mut puts: BTreeMap<String, DirObject> = BTreeMap::new();
    let mut outs: BTreeSet<String> = BTreeSet::new();
    let mut ous_changed = Vec::new();
    let mut deleted = Vec::new();
    let progress = progress.begin("Reading changes");
    let summary = directory
        .changes(
            since,
            &mut |change| match change {
                Change::Object(o) => {
                    let Some(guid) = o.guid.map(|g| g.to_string()) else { return };
                    if scope.contains(&o.dn) {
                        puts.insert(guid, *o);
                    } else {
                        outs.insert(guid);
                    }
                }
                Change::Container(c) => ous_changed.push(c),
                Change::Deleted(g) => deleted.push(g.to_string()),
            },
            &|n| progress.set(n),
        )
        .await?;
    progress.finish();
    refresh.read.entries = summary.entries;

    let known_ous = store.mirror_ous()?;
    let mut ous_now: Vec<(String, String)> = Vec::new();
    let mut ous_gone: Vec<String> = Vec::new();
    let backlinks = ObjectQuery { backlinks: true, ..ObjectQuery::SYNC };
    for ou in ous_changed {
        let Some(guid) = ou.guid.map(|g| g.to_string()) else { continue };
        let old = known_ous.get(&guid).and_then(|d| Dn::parse(d).ok());
        let inside = scope.contains(&ou.dn);
        if old.as_ref().is_some_and(|o| *o == ou.dn) || (old.is_none() && !inside) {
            continue; // an attribute change, or not ours
        }
        if let Some(old) = &old {
            // Moved away from here: what the mirror held under the old DN is re-read below
            // (still in scope) or leaves with the OU.
            for (g, _) in store.mirror_under(old)? {
                outs.insert(g);
            }
            ous_gone.extend(
                known_ous
                    .iter()
                    .filter(|(_, d)| Dn::parse(d).is_ok_and(|d| d.is_descendant_of(old)))
                    .map(|(g, _)| g.clone()),
            );
        }
        if inside {
            let mut sink = |o: DirObject| {
                if let Some(g) = o.guid.map(|g| g.to_string()).filter(|_| scope.contains(&o.dn)) {
                    puts.insert(g, o);
                }
            };
            let read = directory.objects(&ou.dn, backlinks, &mut sink, &|_| {}).await?;
            refresh.read.entries += read.entries;
            for c in directory.containers(&ou.dn).await? {
                if let Some(g) = c.guid.filter(|_| scope.contains(&c.dn)) {
                    ous_now.push((g.to_string(), c.dn.to_string()));
                }
            }
        }
    }
    for guid in deleted {
        if known_ous.contains_key(&guid) {
            ous_gone.push(guid.clone());
        }
        outs.insert(guid);
    }
    let mut removed = Vec::new();
    for guid in outs {
        if !puts.contains_key(&guid) && store.mirror_contains(&guid)? {
            removed.push(guid);
        }
    }
    for o in puts.values() {
        match o.kind {
            ObjectKind::User => refresh.read.users += 1,
            ObjectKind::Group => refresh.read.groups += 1,
        }
    }
    let puts: Vec<DirObject> = puts.into_values().collect();
    store.mirror_put(&puts, run, true, &|o| validate::duplicate_keys(&rules.policy, o))?;
    refresh.read.removed = store.mirror_remove(&removed)? as u64;
    store.mirror_resolve_links(true)?;
    ous_gone.retain(|g| !ous_now.iter().any(|(n, _)| n == g));
    store.mirror_set_ous(&ous_now, &ous_gone, false)?;
    store.mark_unsettled_dirty()?;
    Ok(refresh)
}

/// The verdict on the users a run looks at.
#[derive(Debug, Default)]
pub struct Verdicts {
    /// Invalid users among them, by guid.
    pub quarantined: BTreeMap<String, Quarantined>,
    /// Valid users among them whose userName is not the one the tenant was last sent: the rename
    /// guard's count (what [`planned_attribute_changes`] counts under `userName`), taken where
    /// the rules evaluate each user's mapped values.
    pub renames: usize,
}

/// Which values are held more than once, per duplicate rule (`None`: look each value up).
type Shared = Option<[BTreeSet<String>; 3]>;

fn problems_of(
    store: &StateStore,
    m: &Mirrored,
    shared: &Shared,
    rules: &RuleOptions,
) -> Result<Vec<validate::Problem>> {
    if m.object.kind == ObjectKind::Group {
        return Ok(object_problems(&m.object, rules));
    }
    let (mut problems, mapped) = validate::check_user(&m.object, rules);
    let keys = mapped.unwrap_or_else(|| crate::store::directory_keys(&m.object));
    for (slot, key) in keys.into_iter().enumerate() {
        let Some(key) = key else { continue };
        if shared.as_ref().is_some_and(|s| !s[slot].contains(&key)) {
            continue;
        }
        let (holders, total) = store.holders(slot, &key, &m.guid, MAX_LISTED_CONFLICTS)?;
        if total > 0 {
            problems.push(validate::duplicate_problem(
                validate::duplicate_rule(&rules.policy, slot),
                &key,
                holders,
                total,
            ));
        }
    }
    validate::tidy(&mut problems);
    Ok(problems)
}

/// Everyone in scope who is held back, ordered by DN: the objects read without an objectGUID,
/// this run's verdicts, and earlier quarantine entries still standing (users this run did not
/// validate, still invalid in the mirror).
pub fn held_back(store: &StateStore, unanchored: Vec<Quarantined>, verdicts: &Verdicts) -> Result<Vec<Quarantined>> {
    let mut quarantined: Vec<Quarantined> = unanchored;
    quarantined.extend(verdicts.quarantined.values().cloned());
    for q in store.quarantine()? {
        let standing = !verdicts.quarantined.contains_key(&q.guid)
            && store.mirrored(&q.guid)?.is_some_and(|m| m.valid == Some(false));
        if standing {
            let reasons = q.reasons.into_iter().map(|r| Reason { rule: r.rule, message: r.message }).collect();
            quarantined.push(Quarantined { guid: q.guid, dn: q.dn, reasons });
        }
    }
    quarantined.sort_by(|a, b| a.dn.cmp(&b.dn));
    Ok(quarantined)
}

/// The deletion threshold: `removing` deprovisions out of `provisioned` active anchors, against
/// `max_deletions` (or `--allow-deletes`, which also lifts the percentage) and
/// `max_deletion_percent`. Returns the stop, with the error the run ends with, when it is crossed.
pub fn deletion_threshold(
    removing: usize,
    provisioned: usize,
    allow_deletes: Option<u32>,
    max_deletions: u32,
    max_deletion_percent: u32,
) -> Option<(StopDetails, AppError)> {
    let (percent, limit) = crossed(removing, provisioned, allow_deletes, max_deletions, max_deletion_percent)?;
    let error = AppError::new(
        ErrorKind::SafetyStop,
        format!(
            "this run would deactivate or delete {removing} objects ({percent} % of those provisioned), above the threshold ({} objects, {} %); nothing was written",
            limit, max_deletion_percent
        ),
    )
    .with_hint(format!("check the plan in the report; if it is right, run again with --allow-deletes {removing}"));
    Some((StopDetails::DeletionThreshold { removing, percent, limit, limit_percent: max_deletion_percent }, error))
}

/// Whether `count` of `provisioned` crosses a threshold of `max` objects or `max_percent` %
/// (`allow`, given on the command line, replaces `max` and lifts the percentage): the
/// percentage and the limit applied when it does.
fn crossed(count: usize, provisioned: usize, allow: Option<u32>, max: u32, max_percent: u32) -> Option<(usize, u32)> {
    let percent = count * 100 / provisioned.max(1);
    let limit = allow.unwrap_or(max);
    let over_count = count > limit as usize;
    let over_percent = allow.is_none() && count > 0 && percent > max_percent as usize;
    (over_count || over_percent).then_some((percent, limit))
}

/// The rename guard, like [`deletion_threshold`]: `renaming` userName changes of provisioned
/// users out of `provisioned` active anchors, against `max_renames` (or `--allow-renames`, which
/// also lifts the percentage) and `max_rename_percent`. Returns the stop when it is crossed.
pub fn rename_threshold(
    renaming: usize,
    provisioned: usize,
    allow_renames: Option<u32>,
    max_renames: u32,
    max_rename_percent: u32,
) -> Option<(StopDetails, AppError)> {
    let (percent, limit) = crossed(renaming, provisioned, allow_renames, max_renames, max_rename_percent)?;
    let error = AppError::new(
        ErrorKind::SafetyStop,
        format!(
            "this run would change the userName of {renaming} provisioned users ({percent} % of those provisioned), above the threshold ({limit} users, {max_rename_percent} %); nothing was written"
        ),
    )
    .with_hint(format!(
        "check the plan (changes_by_attribute) with --dry-run; if it is right, run again with --allow-renames {renaming}"
    ));
    Some((StopDetails::RenameThreshold { renaming, percent, limit, limit_percent: max_rename_percent }, error))
}

/// What the run's writes would change in the tenant, per SCIM attribute: how many provisioned
/// users and groups (by the body the tenant was last sent) get another value. Pure mapping over
/// the objects to look at, for a dry run's report (and a stopped real run's); its `userName`
/// count is [`Verdicts::renames`], which the rename guard reads.
pub fn planned_attribute_changes(
    store: &StateStore,
    all: bool,
    policy: &crate::policy::Policy,
) -> Result<BTreeMap<String, u64>> {
    let mut changes: BTreeMap<String, u64> = BTreeMap::new();
    for kind in [ObjectKind::User, ObjectKind::Group] {
        let mut after = PageEnd::default();
        loop {
            let page = store.bodied_page(kind, all, &after, PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = last.page_end();
            for (m, old) in page.iter().filter(|(m, _)| m.valid != Some(false)) {
                let new = match kind {
                    ObjectKind::Group => crate::policy::map::group(policy, &m.object),
                    ObjectKind::User if m.valid.is_none() => continue,
                    ObjectKind::User => {
                        let manager_id = match &m.manager {
                            Some(g) if store.is_valid_user(g)? => store.scim_id(g)?,
                            _ => None,
                        };
                        crate::policy::map::user(policy, &m.object, manager_id.as_deref())
                    }
                };
                let Ok(new) = new else { continue };
                // Most bodies are the one sent, text for text: no need to parse it. (One that
                // does not parse counts no change, as one never sent.)
                if super::map::serializes_to(&new, old) {
                    continue;
                }
                let old = serde_json::from_str(old).unwrap_or_default();
                for attribute in super::map::changed_attributes(&old, &new) {
                    *changes.entry(attribute).or_default() += 1;
                }
            }
        }
    }
    Ok(changes)
}

/// Validates the objects to look at (all of them in a full sync) against the whole mirror:
/// users by every rule, groups by the rules that apply to them.
/// Objects the policy's scope leaves out are not validated: they are recorded `out` (see
/// [`PolicyScope`]) and leave the tenant like objects moved out of the OUs. One transaction:
/// every verdict or none.
pub fn validate(store: &mut StateStore, all: bool, rules: &RuleOptions, scope: &PolicyScope) -> Result<Verdicts> {
    store.in_transaction(|store| validate_all(store, all, rules, scope))
}

fn validate_all(store: &mut StateStore, all: bool, rules: &RuleOptions, scope: &PolicyScope) -> Result<Verdicts> {
    let run = scope.begin(store, all)?;
    let mut verdicts = Verdicts::default();
    // All users: one pass finds the shared values; a few users: one indexed look-up each.
    let shared = if all { Some(store.shared_keys()?) } else { None };
    for kind in [ObjectKind::User, ObjectKind::Group] {
        let mut after = PageEnd::default();
        loop {
            let page = store.work_page(kind, all, &after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.page_end();
            let mut found = Vec::with_capacity(page.len());
            let mut out = Vec::new();
            for m in &page {
                if run.exclusion(&m.guid, &m.object).is_some() {
                    out.push(m.guid.clone());
                    continue;
                }
                let problems = problems_of(store, m, &shared, rules)?;
                if kind == ObjectKind::User && problems.is_empty() {
                    verdicts.renames += usize::from(renamed(store, m, &rules.policy)?);
                }
                if !problems.is_empty() {
                    verdicts.quarantined.insert(
                        m.guid.clone(),
                        Quarantined { guid: m.guid.clone(), dn: m.object.dn.to_string(), reasons: reasons(&problems) },
                    );
                }
                found.push((m.guid.clone(), problems.is_empty()));
            }
            store.set_verdicts(&found, !all)?;
            store.set_out_of_scope(&out, !all)?;
        }
    }
    scope.finish(store, all)?;
    Ok(verdicts)
}

/// Whether a valid user's userName under `policy` is not the one the tenant was last sent (a
/// user never sent, or whose body is not a JSON object, is not renamed).
fn renamed(store: &StateStore, m: &Mirrored, policy: &crate::policy::Policy) -> Result<bool> {
    let Ok(new) = crate::policy::map::user_name(policy, &m.object) else { return Ok(false) };
    Ok(store.sent_user_name(&m.guid)?.is_some_and(|sent| sent != new))
}

/// `sync --user`: the rules for one user of the mirror.
pub fn explain(store: &StateStore, name: &str, rules: &RuleOptions) -> Result<Option<Explanation>> {
    let Some(m) = store.mirrored_user(name)? else { return Ok(None) };
    let problems = problems_of(store, &m, &None, rules)?;
    let mut explanation = validate::explain(Identity::of(&m.object), &problems, validate::Rule::of(&rules.policy));
    explanation.mapped = validate::mapped_view(&rules.policy, &m.object);
    Ok(Some(explanation))
}

/// What the passes of one run share.
struct Work<'a> {
    all: bool,
    verdicts: &'a Verdicts,
    anchors: &'a plan::Anchors,
    /// The objectGUIDs quarantined before this run.
    quarantine: &'a [String],
    /// The objects a later pass of users looks at: those the pass before deferred (`None`: every
    /// one). Only the deferred are held, not every object planned: a pass over a million users
    /// holds no set of a million objectGUIDs.
    only: Option<HashSet<String>>,
    /// Deferred in this pass (their manager has no SCIM id yet): the next pass's `only`.
    deferred: HashSet<String>,
    /// Plan users whose manager has no SCIM id yet too (without it).
    take_all: bool,
    pending_managers: Vec<String>,
    /// The membership changes planned, for the report: spilled as they are planned (a million
    /// users' memberships are a file, not a list in memory), with how many change a membership.
    memberships: Spill<plan::MembershipChange>,
    membership_changes: u64,
    /// The changes sent by PATCH after the groups (a real run; a dry run sends none): those not
    /// carried inline by their group's write.
    patches: Option<Vec<plan::MembershipChange>>,
    /// Members of groups written in this run that had no SCIM id then: added by PATCH after (a
    /// real run).
    patches_after: Vec<plan::MembershipChange>,
}

/// Where plans go: applied (a real run) or only gathered (a dry run).
pub struct Engine<'a, 'c> {
    store: &'a mut StateStore,
    applier: Option<Applier<'c>>,
    /// The applier's own connection to the store (a real run, opened by [`Engine::run`]): it
    /// commits a window's journal and results while the planner reads the mirror through `store`.
    writer: Option<StateStore>,
    /// guid → SCIM id as the planner knows it: the applier's published ids (a real run: the ids
    /// of the anchors and of the windows written so far), or the anchors' for a dry run.
    ids: Ids,
    /// The run's plan for the report, spilled as it is made.
    plan: PlanLog,
    /// The tenant's users and groups, when this run listed them (a full sync): the planner
    /// repairs drift from it.
    tenant: Option<super::repair::TenantView>,
    /// Groups list their transitive users instead of nested groups (the policy's `members`).
    flattened: bool,
    /// The provisioning policy that maps users and groups.
    policy: std::sync::Arc<crate::policy::Policy>,
}

impl<'a, 'c> Engine<'a, 'c> {
    /// An engine that applies what it plans through `applier`, or (`None`, a dry run) only
    /// gathers it, knowing the tenant's ids from `ids`.
    pub fn new(
        store: &'a mut StateStore,
        applier: Option<Applier<'c>>,
        ids: KnownIds,
        tenant: Option<super::repair::TenantView>,
        flattened: bool,
        policy: std::sync::Arc<crate::policy::Policy>,
    ) -> Self {
        let ids = match &applier {
            Some(applier) => applier.known_ids(),
            None => Rc::new(RefCell::new(ids)),
        };
        let plan = PlanLog::new(store.folder().as_deref());
        Engine { store, applier, writer: None, ids, plan, tenant, flattened, policy }
    }

    /// The run's plan (without bodies), the applier (what it did) and the tenant's listing.
    pub fn finish(self) -> (PlanLog, Option<Applier<'c>>, Option<super::repair::TenantView>) {
        (self.plan, self.applier, self.tenant)
    }
}

/// Where a pass over the objects of one kind is: the end of the last page planned, whether the
/// pages are done, and how many objects were deferred and done.
#[derive(Default)]
struct Cursor {
    after: PageEnd,
    end: bool,
    deferred: usize,
    progressed: usize,
}

/// What planning reads: the store (the mirror, recorded bodies and members), the policy, the
/// tenant's listing and the ids known so far. Never the applier, so a window is planned while
/// the previous one is written.
struct Planner<'p> {
    store: &'p StateStore,
    policy: &'p crate::policy::Policy,
    tenant: Option<&'p super::repair::TenantView>,
    flattened: bool,
    ids: &'p RefCell<KnownIds>,
}

impl Planner<'_> {
    /// Borrowed only for this lookup: the applier publishes between windows.
    fn id(&self, guid: &str) -> Option<String> {
        self.ids.borrow().get(guid)
    }

    /// Plans pages from `cursor` on until the window holds [`WINDOW`] writes (or its groups
    /// [`WINDOW_MEMBERS`] members, or [`WINDOW_UNCHANGED`] unchanged objects), the pages are
    /// done, or `stop` is set (the window being written failed). Yields after each page, so
    /// that the requests of the window being written are polled (one thread runs both).
    async fn window(
        &self,
        kind: ObjectKind,
        work: &mut Work<'_>,
        cursor: &mut Cursor,
        stop: &Cell<bool>,
    ) -> Result<Plan> {
        let mut window = Plan::default();
        let members = |w: &Plan| -> usize {
            w.creates.iter().chain(&w.updates).filter_map(|w| w.members.as_ref()).map(|m| m.guids.len()).sum()
        };
        while !cursor.end
            && !stop.get()
            && window.creates.len() + window.updates.len() < WINDOW
            && members(&window) < WINDOW_MEMBERS
            && window.unchanged.len() < WINDOW_UNCHANGED
        {
            self.page(kind, work, cursor, &mut window)?;
            tokio::task::yield_now().await;
        }
        Ok(window)
    }

    /// Plans the next page of objects of `kind` into `window`.
    fn page(&self, kind: ObjectKind, work: &mut Work<'_>, cursor: &mut Cursor, window: &mut Plan) -> Result<()> {
        let page = self.store.work_page(kind, work.all, &cursor.after, PAGE)?;
        let Some(last) = page.last() else {
            cursor.end = true;
            return Ok(());
        };
        cursor.after = last.page_end();
        // A page of groups' members, looked up at once (in objectGUID order, see
        // `StateStore::groups_members`); a policy that flattens groups reads them group by group.
        let mut members_of = match kind {
            ObjectKind::Group if !self.flattened => Some(self.store.groups_members(&page_groups(&page))?),
            _ => None,
        };
        let mut wanted = Vec::with_capacity(page.len());
        let mut held = Vec::new();
        for m in &page {
            if work.only.as_ref().is_some_and(|only| !only.contains(&m.guid)) {
                continue;
            }
            if let Some(q) = work.verdicts.quarantined.get(&m.guid) {
                held.push(q.clone());
            } else {
                // An invalid user not validated in this run is already quarantined.
                let id = |g: &str| self.id(g);
                match want(self.store, self.policy, m, work.anchors, &id, members_of.as_mut())? {
                    Some((_, true)) if !work.take_all => {
                        cursor.deferred += 1;
                        work.deferred.insert(m.guid.clone());
                        continue;
                    }
                    Some((d, manager_pending)) => {
                        if manager_pending {
                            work.pending_managers.push(m.guid.clone());
                        }
                        wanted.push(d);
                    }
                    None => {}
                }
            }
            cursor.progressed += 1;
        }
        let guids: Vec<&str> = wanted.iter().map(|d| d.guid.as_str()).collect();
        // The bodies last sent serve the changed-attribute lists: only an anchored object whose
        // hash changed needs its body (parsing every one cost a no-op full sync 5 %).
        let changed = wanted.iter().filter(|d| work.anchors.hash(&d.guid).is_some_and(|h| !d.sent_as(h)));
        let bodies = self.store.bodies_for(&changed.map(|d| d.guid.as_str()).collect::<Vec<_>>())?;
        let members = if kind == ObjectKind::Group { self.store.members_for(&guids)? } else { HashMap::new() };
        let known = Known {
            anchors: work.anchors,
            bodies: &bodies,
            members: &members,
            quarantine: work.quarantine,
            tenant: self.tenant,
        };
        let mut page_plan = plan::plan_objects(&wanted, held, &known);
        if kind == ObjectKind::Group {
            let mut later = self.inline_members(&wanted, &mut page_plan);
            if work.patches.is_some() {
                work.patches_after.append(&mut later);
            }
        }
        for change in std::mem::take(&mut page_plan.memberships) {
            if let Some(patches) = work.patches.as_mut().filter(|_| !change.inline) {
                patches.push(change.clone());
            }
            work.membership_changes += u64::from(change.changes_membership());
            work.memberships.push(change);
        }
        window.append(page_plan);
        Ok(())
    }

    /// A group written in this run carries its members: a PUT replaces the tenant's member list
    /// (one left out would be dropped), and a new group needs no PATCH after its POST. Members
    /// without a SCIM id yet (groups created later in the run, or in the window being written)
    /// are added by a PATCH after. Returns those PATCHes (the page's plan lists each change
    /// once, as the write's).
    fn inline_members(&self, wanted: &[plan::Desired], page: &mut Plan) -> Vec<plan::MembershipChange> {
        let desired: HashMap<&str, &BTreeSet<String>> = wanted.iter().map(|d| (d.guid.as_str(), &d.members)).collect();
        let mut later = Vec::new();
        for w in page.creates.iter_mut().chain(page.updates.iter_mut()) {
            let Some(members) = desired.get(w.guid.as_str()) else { continue };
            let (now, missing): (BTreeSet<String>, BTreeSet<String>) =
                members.iter().cloned().partition(|g| self.id(g).is_some());
            let change = page.memberships.iter_mut().find(|c| c.group_guid == w.guid);
            let changed = change.as_ref().is_some_and(|c| c.changes_membership());
            let restored = change.as_ref().map_or(0, |c| c.restore.len() as u64);
            if let Some(change) = change {
                change.inline = true;
            }
            if !missing.is_empty() {
                later.push(plan::MembershipChange {
                    group_guid: w.guid.clone(),
                    group_dn: w.dn.clone(),
                    add: missing.into_iter().collect(),
                    remove: vec![],
                    restore: vec![],
                    inline: false,
                });
            }
            w.members = Some(plan::InlineMembers { guids: now, changed, restored });
        }
        later
    }
}

/// Applies and records one window through the applier's own connection (a real run).
async fn write(applier: &mut Applier<'_>, writer: &mut StateStore, window: &Plan) -> Result<()> {
    if !window.creates.is_empty() || !window.updates.is_empty() {
        applier.writes(writer, &window.creates, &window.updates).await?;
    }
    applier.record(writer, window)
}

impl Engine<'_, '_> {
    /// Users, the manager pass, groups, memberships, removals: in that order, page by page.
    pub async fn run(
        &mut self,
        all: bool,
        verdicts: &Verdicts,
        anchors: &plan::Anchors,
        removals: Vec<plan::Removal>,
    ) -> Result<()> {
        if self.applier.is_some() && self.writer.is_none() {
            self.writer = Some(self.store.writer()?);
        }
        let quarantine: Vec<String> = self.store.quarantine()?.into_iter().map(|q| q.guid).collect();
        let mut work = Work {
            all,
            verdicts,
            anchors,
            quarantine: &quarantine,
            only: None,
            deferred: HashSet::new(),
            take_all: false,
            pending_managers: Vec::new(),
            memberships: Spill::new(self.store.folder().as_deref()),
            membership_changes: 0,
            patches: self.applier.is_some().then(Vec::new),
            patches_after: Vec::new(),
        };
        // A user whose manager is created in this run waits for a later pass, so that it is
        // written once, manager included. When a pass makes no progress (a cycle of managers,
        // or a dry run, which creates nothing), the rest go without and are completed after.
        loop {
            let (deferred, progressed) = self.pass(ObjectKind::User, &mut work).await?;
            if deferred == 0 {
                break;
            }
            work.take_all = progressed == 0;
            work.only = Some(std::mem::take(&mut work.deferred));
        }
        let pending = std::mem::take(&mut work.pending_managers);
        self.manager_pass(&pending).await?;
        work.only = None;
        work.take_all = true;
        self.pass(ObjectKind::Group, &mut work).await?;
        if let (Some(applier), Some(writer), Some(mut patches)) =
            (&mut self.applier, &mut self.writer, work.patches.take())
        {
            patches.append(&mut work.patches_after);
            applier.memberships(writer, &patches).await?;
        }
        self.plan.set_memberships(work.memberships, work.membership_changes);
        if let (Some(applier), Some(writer)) = (&mut self.applier, &mut self.writer) {
            applier.removals(writer, &removals).await?;
        }
        let mut gone = Plan { released: self.store.quarantine_gone()?, ..Plan::default() };
        if let (Some(applier), Some(writer)) = (&mut self.applier, &mut self.writer) {
            applier.record(writer, &gone)?;
        }
        gone.removals = removals;
        self.plan.absorb(gone);
        Ok(())
    }

    /// One pass over the objects of `kind` to look at, a [`WINDOW`] of planned writes at a time:
    /// window N+1 is planned while window N is written and recorded (one window in flight
    /// beyond the one being planned: the back-pressure, so memory holds at most two windows of
    /// bodies). The planner learns window N's ids once it is written: a user whose manager is
    /// in it is deferred like one whose manager comes in a later page. Returns how many were
    /// deferred (their manager has no SCIM id yet) and how many done; every window is written
    /// when it returns.
    async fn pass(&mut self, kind: ObjectKind, work: &mut Work<'_>) -> Result<(usize, usize)> {
        let mut cursor = Cursor::default();
        let mut writing: Option<Plan> = None;
        while writing.is_some() || !cursor.end {
            let stop = Cell::new(false);
            let (written, planned) = {
                let planner = Planner {
                    store: &*self.store,
                    policy: &self.policy,
                    tenant: self.tenant.as_ref(),
                    flattened: self.flattened,
                    ids: &self.ids,
                };
                let (applier, writer) = (&mut self.applier, &mut self.writer);
                let cursor = &mut cursor;
                let work = &mut *work;
                let stop = &stop;
                let next = async move {
                    match cursor.end {
                        true => Ok(None),
                        false => planner.window(kind, work, cursor, stop).await.map(Some),
                    }
                };
                let window = writing.take();
                let send = async move {
                    let result = match (window.as_ref(), applier, writer) {
                        (Some(window), Some(applier), Some(writer)) => write(applier, writer, window).await,
                        _ => Ok(()),
                    };
                    stop.set(result.is_err());
                    result.map(|()| window)
                };
                tokio::join!(send, next)
            };
            if let Some(applier) = &mut self.applier {
                applier.publish();
            }
            if let Some(window) = written? {
                self.plan.absorb(window);
            }
            writing = planned?;
        }
        Ok((cursor.deferred, cursor.progressed))
    }

    /// Users whose manager was created in this run get the manager's SCIM id.
    async fn manager_pass(&mut self, pending: &[String]) -> Result<()> {
        let (Some(applier), Some(writer)) = (&mut self.applier, &mut self.writer) else { return Ok(()) };
        let mut updates = Vec::new();
        for guid in pending {
            let Some(m) = self.store.mirrored(guid)? else { continue };
            let (Some(user_id), Some(manager_id)) =
                (applier.id(guid), m.manager.as_deref().and_then(|g| applier.id(g)))
            else {
                continue;
            };
            let Ok(d) = desired::user(&self.policy, &m.object, guid, Some(&manager_id)) else { continue };
            updates.push(plan::Write {
                kind: Kind::User,
                scim_id: Some(user_id),
                guid: d.guid,
                dn: d.dn,
                body: d.body,
                hash: d.hash,
                verify_first: false,
                absent: false,
                repair: false,
                changed: vec![super::map::ENTERPRISE_SCHEMA.into()],
                members: None,
                keep_members: vec![],
            });
        }
        let before = applier.counts.updated;
        applier.writes(writer, &[], &updates).await?;
        applier.counts.updated = before; // the same users, completed: not counted twice
        applier.publish();
        Ok(())
    }
}

/// What the tenant should hold for one object of the mirror (`None`: an invalid user), and
/// whether its manager is valid but has no SCIM id yet (it is created in this run). A group's
/// members are taken from `members_of` (its page's, see [`page_groups`]), or, without it (a
/// policy that flattens groups), read here.
fn want(
    store: &StateStore,
    policy: &crate::policy::Policy,
    m: &Mirrored,
    anchors: &plan::Anchors,
    id: &dyn Fn(&str) -> Option<String>,
    members_of: Option<&mut HashMap<String, Vec<Member>>>,
) -> Result<Option<(plan::Desired, bool)>> {
    if m.valid == Some(false) {
        return Ok(None); // quarantined (a group too: its name, its objectGUID)
    }
    if m.object.kind == ObjectKind::Group {
        let listed = match members_of {
            Some(of) => of.remove(&m.guid).unwrap_or_default(),
            None => store.flattened_members(&m.guid)?,
        };
        let candidates = listed.into_iter().map(|(guid, is_group, valid)| {
            let held = !valid && anchors.get(&guid).is_some_and(|a| a.state == plan::AnchorState::Active);
            Candidate { guid, is_group, valid, held }
        });
        let members = desired::members(&m.guid, candidates);
        return Ok(desired::group(policy, &m.object, &m.guid, members).ok().map(|d| (d, false)));
    }
    if m.valid.is_none() {
        return Ok(None); // a user no run has validated yet is never provisioned
    }
    let manager = match &m.manager {
        Some(g) if store.is_valid_user(g)? => Some(g.as_str()),
        _ => None,
    };
    let manager_id = manager.and_then(id);
    let pending = manager.is_some() && manager_id.is_none();
    // A mapping that fails is a quarantined user (rule mapping.error): never planned.
    Ok(desired::user(policy, &m.object, &m.guid, manager_id.as_deref()).ok().map(|d| (d, pending)))
}

/// The groups of a page whose members [`want`] weighs: those not quarantined.
fn page_groups(page: &[Mirrored]) -> Vec<&str> {
    page.iter()
        .filter(|m| m.object.kind == ObjectKind::Group && m.valid != Some(false))
        .map(|m| m.guid.as_str())
        .collect()
}

/// The anchors the tenant holds for objects the mirror no longer has (deleted in AD, moved
/// out of scope, or absent from a complete read), per policy.
pub fn planned_removals(
    store: &StateStore,
    all: bool,
    anchors: &plan::Anchors,
    on_remove: OnRemove,
) -> Result<Vec<plan::Removal>> {
    let gone: Vec<plan::Anchor> = store.anchors_gone(all)?.iter().filter_map(|g| anchors.get(g)).collect();
    Ok(plan::removals(&gone, on_remove))
}

/// The anchors a run looks at, in the planner's compact form: every one (a full sync), or those
/// a delta can touch.
pub fn planner_anchors(store: &StateStore, all: bool) -> Result<plan::Anchors> {
    let mut anchors = plan::AnchorsBuilder::default();
    // Converted a row at a time: the store's rows are never all held as such.
    store.each_anchor(!all, &mut |a| anchors.push(planner_anchor(a)))?;
    Ok(anchors.finish())
}

/// The planner's view of a store anchor (the edge between the store's rows and the pure planner).
pub fn planner_anchor(a: store::Anchor) -> plan::Anchor {
    plan::Anchor {
        guid: a.guid,
        kind: a.kind.into(),
        scim_id: a.scim_id,
        dn: a.dn,
        hash: a.hash,
        state: match a.state {
            store::AnchorState::Pending => plan::AnchorState::Pending,
            store::AnchorState::Active => plan::AnchorState::Active,
            store::AnchorState::Deactivated => plan::AnchorState::Deactivated,
            store::AnchorState::Deleted => plan::AnchorState::Deleted,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracking(invocation: &str, usn: u64) -> ChangeTracking {
        ChangeTracking {
            dc: "CN=NTDS Settings,CN=DC1".into(),
            invocation_id: invocation.into(),
            highest_usn: usn,
            tombstone_lifetime_days: 180,
            tombstones_visible: true,
        }
    }

    fn mark(invocation: &str, usn: u64, taken_at: &str) -> Watermark {
        Watermark {
            dc: "CN=NTDS Settings,CN=DC1".into(),
            invocation_id: invocation.into(),
            usn,
            taken_at: taken_at.into(),
            scope: "s".into(),
        }
    }

    fn choose(
        t: Option<&ChangeTracking>,
        w: Option<&Watermark>,
        scope: &str,
        pending: bool,
        asked: bool,
    ) -> (Mode, Option<&'static str>) {
        let now: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let inputs = ModeInputs {
            full_asked: false,
            tracking: t,
            watermark: w,
            scope,
            full_pending: pending,
            tenant_requested: asked,
            now,
        };
        let (mode, why) = choose_mode(&inputs);
        (mode, why.map(|f| f.code))
    }

    #[test]
    fn a_trusted_watermark_gives_a_delta_and_anything_else_a_full_sync_with_a_reason() {
        let t = tracking("inv-1", 5000);
        let w = mark("inv-1", 4000, "2026-11-28T11:50:00Z");
        assert_eq!(choose(Some(&t), Some(&w), "s", false, false), (Mode::Delta { since: 4000 }, None));
        assert_eq!(choose(None, Some(&w), "s", false, false).1, Some("no-change-tracking"));
        assert_eq!(choose(Some(&t), None, "s", false, false).1, Some("no-watermark"));
        assert_eq!(choose(Some(&tracking("inv-2", 5000)), Some(&w), "s", false, false).1, Some("dc-changed"));
        assert_eq!(choose(Some(&tracking("inv-1", 10)), Some(&w), "s", false, false).1, Some("dc-changed"));
        assert_eq!(choose(Some(&t), Some(&w), "other", false, false).1, Some("scope-changed"));
        assert_eq!(choose(Some(&t), Some(&w), "s", true, false).1, Some("previous-full-unfinished"));
        assert_eq!(choose(Some(&t), Some(&w), "s", false, true).1, Some("tenant-requested"));
        let old = mark("inv-1", 4000, "2026-04-01T00:00:00Z");
        assert_eq!(choose(Some(&t), Some(&old), "s", false, false).1, Some("watermark-expired"));
        let garbled = mark("inv-1", 4000, "yesterday");
        assert_eq!(choose(Some(&t), Some(&garbled), "s", false, false).1, Some("watermark-expired"));
    }

    /// A delta on DC A, then on DC B (first a full sync there: B has no watermark yet, then a
    /// delta from B's own), then back on A: a delta from A's watermark, not a full sync.
    #[test]
    fn each_dc_continues_from_its_own_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("state.db"), "2026-11-28T10:00:00Z").unwrap();
        let on = |dc: &str, invocation: &str, usn: u64| ChangeTracking {
            dc: format!("CN=NTDS Settings,CN={dc}"),
            invocation_id: invocation.into(),
            highest_usn: usn,
            tombstone_lifetime_days: 180,
            tombstones_visible: true,
        };
        let settle = |store: &mut StateStore, t: &ChangeTracking, at: &str| {
            let w = Watermark {
                dc: t.dc.clone(),
                invocation_id: t.invocation_id.clone(),
                usn: t.highest_usn,
                taken_at: at.into(),
                scope: "s".into(),
            };
            store.settle(Some(&w)).unwrap();
        };
        let mode = |store: &StateStore, t: &ChangeTracking| {
            let marks = store.watermarks().unwrap();
            let w = pick_watermark(Some(t), &marks).cloned();
            let (mode, why) = choose_mode(&ModeInputs {
                full_asked: false,
                tracking: Some(t),
                watermark: w.as_ref(),
                scope: "s",
                full_pending: false,
                tenant_requested: false,
                now: "2026-11-28T12:00:00Z".parse().unwrap(),
            });
            (mode, why.map(|f| f.code))
        };
        // A: first run full, then a delta from A's USN.
        let a1 = on("DC-A", "inv-a", 1000);
        assert_eq!(mode(&store, &a1).1, Some("no-watermark"));
        settle(&mut store, &a1, "2026-11-28T10:00:00Z");
        let a2 = on("DC-A", "inv-a", 1200);
        assert_eq!(mode(&store, &a2), (Mode::Delta { since: 1000 }, None));
        settle(&mut store, &a2, "2026-11-28T10:10:00Z");
        // B (A is down): no watermark from B yet, so a full sync, which keeps A's.
        let b1 = on("DC-B", "inv-b", 90_000);
        assert_eq!(mode(&store, &b1).1, Some("dc-changed"));
        settle(&mut store, &b1, "2026-11-28T10:20:00Z");
        let b2 = on("DC-B", "inv-b", 90_050);
        assert_eq!(mode(&store, &b2), (Mode::Delta { since: 90_000 }, None));
        settle(&mut store, &b2, "2026-11-28T10:30:00Z");
        // Back on A: a delta from A's own watermark (USN 1200), no full sync.
        let a3 = on("DC-A", "inv-a", 1300);
        assert_eq!(mode(&store, &a3), (Mode::Delta { since: 1200 }, None));
        settle(&mut store, &a3, "2026-11-28T10:40:00Z");
        let marks = store.watermarks().unwrap();
        assert_eq!(
            marks.iter().map(|w| (w.dc.as_str(), w.usn)).collect::<Vec<_>>(),
            [("CN=NTDS Settings,CN=DC-A", 1300), ("CN=NTDS Settings,CN=DC-B", 90_050)]
        );
        assert_eq!(store.watermark().unwrap().unwrap().usn, 1300, "the newest is the last run's");
        // A restored A (new invocationId) is a full sync; B's watermark is untouched by that.
        let restored = on("DC-A", "inv-a2", 1400);
        assert_eq!(mode(&store, &restored).1, Some("dc-changed"));
        assert_eq!(mode(&store, &on("DC-B", "inv-b", 90_060)), (Mode::Delta { since: 90_050 }, None));
    }

    #[test]
    fn renaming_a_selected_ou_is_not_a_change_of_scope() {
        use crate::config::OuRef;
        let a = ScopeConfig { ous: vec![OuRef { dn: "OU=A,DC=x".into(), guid: Some("g-a".into()) }], excluded: vec![] };
        let renamed = ScopeConfig {
            ous: vec![OuRef { dn: "OU=Renamed,DC=x".into(), guid: Some("g-a".into()) }],
            excluded: vec![],
        };
        let other =
            ScopeConfig { ous: vec![OuRef { dn: "OU=A,DC=x".into(), guid: Some("g-b".into()) }], excluded: vec![] };
        assert_eq!(scope_fingerprint(&a), scope_fingerprint(&renamed));
        assert_ne!(scope_fingerprint(&a), scope_fingerprint(&other));
    }

    #[test]
    fn the_rename_guard_stops_above_the_count_or_the_percentage_until_allowed() {
        assert!(rename_threshold(0, 0, None, 500, 10).is_none());
        assert!(rename_threshold(5, 100, None, 500, 10).is_none());
        let (details, error) = rename_threshold(11, 100, None, 500, 10).unwrap();
        assert_eq!(details, StopDetails::RenameThreshold { renaming: 11, percent: 11, limit: 500, limit_percent: 10 });
        assert_eq!(error.exit_status(), crate::exit::ExitStatus::SafetyStop);
        assert!(error.hints.iter().any(|h| h.contains("--allow-renames 11")), "{error:?}");
        assert!(rename_threshold(501, 10_000, None, 500, 10).is_some(), "the count alone stops");
        // The flag lifts the percentage and sets the count.
        assert!(rename_threshold(11, 100, Some(11), 500, 10).is_none());
        assert!(rename_threshold(12, 100, Some(11), 500, 10).is_some());
    }

    // ------------------------------------------------------------------ delta ≡ full, by model

    /// A small directory: users (mail may be missing or shared), groups (members: users and
    /// groups), managers. Every object is in scope.
    #[derive(Clone, Default)]
    struct Model {
        users: BTreeMap<u8, (Option<String>, String, Option<u8>)>, // mail, title, manager
        groups: BTreeMap<u8, BTreeSet<u8>>,                        // members (user ids < 100, groups ≥ 100)
    }

    fn guid(id: u8) -> crate::directory::ObjectGuid {
        crate::directory::ObjectGuid([id; 16])
    }

    fn dn(id: u8) -> Dn {
        Dn::parse(&format!("CN=o{id},OU=P,DC=x,DC=y")).unwrap()
    }

    impl Model {
        fn object(&self, id: u8) -> Option<DirObject> {
            let member_of: Vec<String> =
                self.groups.iter().filter(|(_, m)| m.contains(&id)).map(|(g, _)| dn(*g).normalized()).collect();
            if let Some((mail, title, manager)) = self.users.get(&id) {
                return Some(DirObject {
                    kind: ObjectKind::User,
                    dn: dn(id),
                    guid: Some(guid(id)),
                    sam_account_name: Some(format!("o{id}")),
                    user_principal_name: Some(format!("o{id}@x.y")),
                    given_name: Some("G".into()),
                    sn: Some("S".into()),
                    mail: mail.clone(),
                    title: Some(title.clone()),
                    manager: manager.map(dn),
                    member_of,
                    direct_reports: self
                        .users
                        .iter()
                        .filter(|(_, u)| u.2 == Some(id))
                        .map(|(r, _)| dn(*r).normalized())
                        .collect(),
                    ..DirObject::default()
                });
            }
            self.groups.get(&id).map(|members| DirObject {
                kind: ObjectKind::Group,
                dn: dn(id),
                guid: Some(guid(id)),
                cn: Some(format!("o{id}")),
                members: members.iter().map(|m| dn(*m).normalized()).collect(),
                member_of,
                ..DirObject::default()
            })
        }

        fn ids(&self) -> BTreeSet<u8> {
            self.users.keys().chain(self.groups.keys()).copied().collect()
        }
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Every object's tenant form (a valid user's body, a group's body and members; "invalid").
    fn observe(store: &StateStore) -> BTreeMap<String, String> {
        let anchors = plan::Anchors::default();
        let mut out = BTreeMap::new();
        for kind in [ObjectKind::User, ObjectKind::Group] {
            let page = store.work_page(kind, true, &PageEnd::default(), 10_000).unwrap();
            let mut members_of = store.groups_members(&page_groups(&page)).unwrap();
            for m in &page {
                let id = |g: &str| Some(g.to_owned());
                let policy = crate::policy::Policy::default_policy();
                let form = match want(store, &policy, m, &anchors, &id, Some(&mut members_of)).unwrap() {
                    Some((d, _)) => format!("{} {:?}", d.hash, d.members),
                    None => "invalid".into(),
                };
                out.insert(m.guid.clone(), form);
            }
        }
        out
    }

    fn full(store: &mut StateStore, model: &Model, run: i64) {
        let objects: Vec<DirObject> = model.ids().into_iter().filter_map(|id| model.object(id)).collect();
        store.mirror_put(&objects, run, false, &crate::store::directory_keys).unwrap();
        let unseen = store.mirror_unseen(run).unwrap();
        store.mirror_remove(&unseen).unwrap();
        store.mirror_resolve_links(false).unwrap();
        validate(store, true, &RuleOptions::default(), &PolicyScope::default()).unwrap();
    }

    fn mirror_rows(store: &StateStore) -> Vec<String> {
        let mut stmt = store
            .conn
            .prepare(
                "SELECT guid || ' ' || dn || ' ' || hex(data) || ' ' || COALESCE(manager, '-') || ' ' || COALESCE(status, '-')
                 FROM dir_objects UNION ALL SELECT group_guid || ' has ' || member_guid FROM dir_members ORDER BY 1",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn a_delta_marks_every_object_whose_tenant_form_changed_and_patches_the_mirror_exactly() {
        for seed in 1..=60u64 {
            let dir = tempfile::tempdir().unwrap();
            let mut store = StateStore::open(&dir.path().join("state.db"), "2026-11-28T00:00:00Z").unwrap();
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut model = Model::default();
            for id in 0..12u8 {
                let mail = (rng.next(5) != 0).then(|| format!("m{}@x.y", rng.next(14)));
                model.users.insert(id, (mail, "t".into(), None));
            }
            for g in 100..104u8 {
                let members =
                    (0..4).map(|_| if rng.next(5) == 0 { 100 + rng.next(4) as u8 } else { rng.next(12) as u8 });
                model.groups.insert(g, members.filter(|m| *m != g).collect());
            }
            for id in 0..12u8 {
                if rng.next(2) == 0 {
                    model.users.get_mut(&id).unwrap().2 = Some(rng.next(12) as u8).filter(|m| *m != id);
                }
            }
            full(&mut store, &model, 1);
            store.mirror_sql(|tx| tx.execute("DELETE FROM dirty", []).map(|_| ())).unwrap();
            for step in 0..6i64 {
                let before = observe(&store);
                let old = model.clone();
                let mut changed = BTreeSet::new();
                let mut removed = BTreeSet::new();
                for _ in 0..1 + rng.next(3) {
                    let id = rng.next(12) as u8;
                    match rng.next(7) {
                        0 => {
                            if let Some(u) = model.users.get_mut(&id) {
                                u.0 = (rng.next(3) != 0).then(|| format!("m{}@x.y", rng.next(14)));
                                changed.insert(id);
                            }
                        }
                        1 => {
                            if let Some(u) = model.users.get_mut(&id) {
                                u.1 = format!("t{}", rng.next(100));
                                changed.insert(id);
                            }
                        }
                        2 => {
                            // Deleted, or moved out of scope: AD drops its links.
                            if model.users.remove(&id).is_some() {
                                removed.insert(id);
                                for members in model.groups.values_mut() {
                                    members.remove(&id);
                                }
                                for u in model.users.values_mut() {
                                    if u.2 == Some(id) {
                                        u.2 = None;
                                    }
                                }
                            }
                        }
                        3 => {
                            // Created, or moved into the scope: a group may list it already
                            // without having changed itself (only the user's memberOf says so).
                            model.users.insert(id, (Some(format!("n{id}@x.y")), "new".into(), None));
                            removed.remove(&id);
                            changed.insert(id);
                            if rng.next(2) == 0 {
                                model.groups.get_mut(&(100 + rng.next(4) as u8)).unwrap().insert(id);
                            }
                        }
                        4 | 5 => {
                            let g = 100 + rng.next(4) as u8;
                            let members = model.groups.get_mut(&g).unwrap();
                            if !members.remove(&id) && model.users.contains_key(&id) {
                                members.insert(id);
                            }
                            changed.insert(g);
                        }
                        _ => {
                            if let Some(u) = model.users.get_mut(&id) {
                                u.2 = Some(rng.next(12) as u8).filter(|m| *m != id && model_has(&old, *m));
                                changed.insert(id);
                            }
                        }
                    }
                }
                let run = step + 2;
                let puts: Vec<DirObject> = changed.iter().filter_map(|id| model.object(*id)).collect();
                store.mirror_put(&puts, run, true, &crate::store::directory_keys).unwrap();
                let gone: Vec<String> = removed.iter().map(|id| guid(*id).to_string()).collect();
                store.mirror_remove(&gone).unwrap();
                store.mirror_resolve_links(true).unwrap();
                store.mark_unsettled_dirty().unwrap();
                validate(&mut store, false, &RuleOptions::default(), &PolicyScope::default()).unwrap();
                let after = observe(&store);
                let dirty: BTreeSet<String> = store
                    .mirror_sql(|tx| {
                        let mut stmt = tx.prepare("SELECT guid FROM dirty")?;
                        let rows = stmt.query_map([], |r| r.get(0))?;
                        rows.collect()
                    })
                    .unwrap();
                for (guid, form) in &after {
                    if before.get(guid) != Some(form) {
                        assert!(
                            dirty.contains(guid),
                            "seed {seed} step {step}: {guid} changed ({:?} → {form}) but is not dirty",
                            before.get(guid)
                        );
                    }
                }
                // The patched mirror is the one a full read would build.
                let patched = mirror_rows(&store);
                let dir2 = tempfile::tempdir().unwrap();
                let mut fresh = StateStore::open(&dir2.path().join("state.db"), "2026-11-28T00:00:00Z").unwrap();
                full(&mut fresh, &model, run);
                let strip = |rows: Vec<String>| rows;
                assert_eq!(strip(patched), strip(mirror_rows(&fresh)), "seed {seed} step {step}");
                store.mirror_sql(|tx| tx.execute("DELETE FROM dirty", []).map(|_| ())).unwrap();
            }
        }
    }

    /// A policy that sends the title as userName.
    fn user_name_from_title() -> crate::policy::Policy {
        let config: crate::policy::PolicyConfig = toml::from_str("[user]\nuserName = '[title]'").unwrap();
        crate::policy::Policy::compile("UserNameFromTitle", &config).unwrap()
    }

    /// A store mirroring three users (mail m0–m2@x.y, title t0–t2) with `policy`'s duplicate keys.
    fn three_users(policy: &crate::policy::Policy) -> (tempfile::TempDir, StateStore, Model, Vec<DirObject>) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("state.db"), "2026-11-28T00:00:00Z").unwrap();
        let mut model = Model::default();
        for id in 0..3u8 {
            model.users.insert(id, (Some(format!("m{id}@x.y")), format!("t{id}"), None));
        }
        let objects: Vec<DirObject> = model.ids().into_iter().filter_map(|id| model.object(id)).collect();
        store.mirror_put(&objects, 1, false, &|o| validate::duplicate_keys(policy, o)).unwrap();
        store.mirror_resolve_links(false).unwrap();
        (dir, store, model, objects)
    }

    /// Under a configured policy the duplicate rules compare mapped values, and a delta finds
    /// them like Default's: the user whose mapped userName becomes another's is judged with every
    /// holder of it, including the one that did not change (a key column, not a full pass), and
    /// both are held back; the change undone, both are valid again.
    #[test]
    fn a_delta_judges_every_holder_of_a_mapped_duplicate() {
        let rules = RuleOptions { policy: user_name_from_title().into(), ..RuleOptions::default() };
        let keys = |o: &DirObject| validate::duplicate_keys(&rules.policy, o);
        let (_dir, mut store, mut model, _) = three_users(&rules.policy);
        let verdicts = validate(&mut store, true, &rules, &PolicyScope::default()).unwrap();
        assert!(verdicts.quarantined.is_empty(), "{verdicts:?}");
        store.mirror_sql(|tx| tx.execute("DELETE FROM dirty", []).map(|_| ())).unwrap();

        // Only the title changes: no key Default compares (mail, UPN, sAMAccountName) does.
        let delta = |store: &mut StateStore, model: &mut Model, title: &str, run: i64| {
            model.users.get_mut(&0).unwrap().1 = title.to_owned();
            store.mirror_put(&[model.object(0).unwrap()], run, true, &keys).unwrap();
            store.mirror_resolve_links(true).unwrap();
            let verdicts = validate(store, false, &rules, &PolicyScope::default()).unwrap();
            store.mirror_sql(|tx| tx.execute("DELETE FROM dirty", []).map(|_| ())).unwrap();
            verdicts
        };
        let verdicts = delta(&mut store, &mut model, "T1", 2);
        let held: Vec<&String> = verdicts.quarantined.keys().collect();
        assert_eq!(held, [&guid(0).to_string(), &guid(1).to_string()], "{verdicts:?}");
        for q in verdicts.quarantined.values() {
            assert!(q.reasons.iter().any(|r| r.rule == "userName.duplicate"), "{q:?}");
        }
        let verdicts = delta(&mut store, &mut model, "t0", 3);
        assert!(verdicts.quarantined.is_empty(), "{verdicts:?}");
        assert!(store.mirrored(&guid(1).to_string()).unwrap().unwrap().valid == Some(true));
    }

    /// The rename guard's count reads the objects the tenant holds a body of, and only those: a
    /// full sync every one of them, a delta the changed ones; objects never sent count nothing.
    #[test]
    fn attribute_changes_count_the_bodies_sent_in_a_full_sync_and_a_delta() {
        let rewrite = user_name_from_title();
        let default = crate::policy::Policy::default_policy();
        let (_dir, mut store, _, objects) = three_users(&default);
        let rules = RuleOptions::default();
        validate(&mut store, true, &rules, &PolicyScope::default()).unwrap();
        // Users 0 and 1 were sent with Default's body; user 2 never was.
        for o in &objects[..2] {
            let guid = o.guid.unwrap().to_string();
            let body = crate::policy::map::default_user(o, None).to_string();
            store
                .mirror_sql(|tx| {
                    tx.execute(
                        "INSERT INTO anchors (guid, kind, scim_id, dn, hash, state, last_seen_run, updated_at, body)
                         VALUES (?1, 'user', ?1, ?2, 'h', 'active', 1, 't', ?3)",
                        rusqlite::params![guid, o.dn.to_string(), body],
                    )
                    .map(|_| ())
                })
                .unwrap();
        }
        // The guard's count, taken while validating, is the dry run's count of userName changes.
        let count = |store: &mut StateStore, all: bool, policy: &crate::policy::Policy| {
            let rules = RuleOptions { policy: policy.clone().into(), ..RuleOptions::default() };
            let renames = validate(store, all, &rules, &PolicyScope::default()).unwrap().renames;
            let n = planned_attribute_changes(store, all, policy).unwrap().get("userName").copied().unwrap_or(0);
            assert_eq!(renames as u64, n);
            n
        };
        assert_eq!(count(&mut store, true, &default), 0, "nothing changed");
        // The same body in another key order (an earlier release's text), and one that does not
        // parse: no change either, and the other policy still renames the first.
        let set_body = |store: &mut StateStore, o: &DirObject, body: String| {
            let guid = o.guid.unwrap().to_string();
            let update = "UPDATE anchors SET body = ?2 WHERE guid = ?1";
            store.mirror_sql(|tx| tx.execute(update, rusqlite::params![guid, body]).map(|_| ())).unwrap();
        };
        let reordered: serde_json::Map<String, serde_json::Value> = crate::policy::map::default_user(&objects[0], None)
            .as_object()
            .unwrap()
            .clone()
            .into_iter()
            .rev()
            .collect();
        set_body(&mut store, &objects[0], serde_json::Value::Object(reordered).to_string());
        set_body(&mut store, &objects[1], "{".into());
        assert_eq!(planned_attribute_changes(&store, true, &default).unwrap(), BTreeMap::new());
        assert_eq!(count(&mut store, true, &default), 0);
        assert_eq!(count(&mut store, true, &rewrite), 1, "the reordered body's user");
        for o in &objects[..2] {
            set_body(&mut store, o, crate::policy::map::default_user(o, None).to_string());
        }
        assert_eq!(count(&mut store, true, &rewrite), 2, "the two users sent, not the third");
        store.mirror_sql(|tx| tx.execute("DELETE FROM dirty", []).map(|_| ())).unwrap();
        assert_eq!(count(&mut store, false, &rewrite), 0, "a delta with nothing changed looks at no one");
        let one = objects[1].guid.unwrap().to_string();
        let two = objects[2].guid.unwrap().to_string();
        store
            .mirror_sql(|tx| {
                tx.execute("INSERT INTO dirty (guid) VALUES (?1), (?2)", rusqlite::params![one, two]).map(|_| ())
            })
            .unwrap();
        assert_eq!(count(&mut store, false, &rewrite), 1, "the changed user that was sent");
    }

    fn model_has(model: &Model, id: u8) -> bool {
        model.users.contains_key(&id)
    }

    // ------------------------------------------------------------------ OUs that move

    /// A directory that answers a delta with fixed changes, and sub-tree reads from a list.
    struct Fake {
        changed_ous: Vec<crate::directory::Container>,
        objects: Vec<DirObject>,
        ous: Vec<crate::directory::Container>,
    }

    impl Directory for Fake {
        async fn info(
            &mut self,
        ) -> std::result::Result<crate::directory::DirectoryInfo, crate::directory::DirectoryError> {
            unreachable!("a delta does not ask")
        }

        async fn containers(
            &mut self,
            base: &Dn,
        ) -> std::result::Result<Vec<crate::directory::Container>, crate::directory::DirectoryError> {
            Ok(self.ous.iter().filter(|c| c.dn.is_descendant_of(base)).cloned().collect())
        }

        async fn objects(
            &mut self,
            base: &Dn,
            _query: ObjectQuery,
            sink: &mut dyn FnMut(DirObject),
            _progress: &dyn Fn(u64),
        ) -> std::result::Result<crate::directory::ReadSummary, crate::directory::DirectoryError> {
            for o in self.objects.iter().filter(|o| o.dn.is_descendant_of(base)) {
                sink(o.clone());
            }
            Ok(Default::default())
        }

        async fn change_tracking(
            &mut self,
        ) -> std::result::Result<Option<ChangeTracking>, crate::directory::DirectoryError> {
            Ok(None)
        }

        /// Only the OUs changed: AD does not touch the uSNChanged of an OU's children when the
        /// OU is renamed or moved.
        async fn changes(
            &mut self,
            _usn: u64,
            sink: &mut dyn FnMut(Change),
            _progress: &dyn Fn(u64),
        ) -> std::result::Result<crate::directory::ReadSummary, crate::directory::DirectoryError> {
            for c in &self.changed_ous {
                sink(Change::Container(c.clone()));
            }
            Ok(Default::default())
        }
    }

    fn ou(id: u8, text: &str) -> crate::directory::Container {
        crate::directory::Container {
            kind: crate::directory::ContainerKind::Ou,
            dn: Dn::parse(text).unwrap(),
            guid: Some(guid(id)),
            name: String::new(),
        }
    }

    fn user_at(id: u8, text: &str) -> DirObject {
        DirObject {
            kind: ObjectKind::User,
            dn: Dn::parse(text).unwrap(),
            guid: Some(guid(id)),
            sam_account_name: Some(format!("u{id}")),
            ..DirObject::default()
        }
    }

    /// The mirror after a full read of OU=In: u1 in OU=Sub,OU=In, u2 in OU=In; then a delta in
    /// which only OUs changed.
    fn after_ou_change(
        changed: Vec<crate::directory::Container>,
        now: Vec<DirObject>,
    ) -> (StateStore, tempfile::TempDir) {
        after_sub_ou_change("OU=Sub", changed, now)
    }

    /// The same with the sub-OU's RDN given (`sub`, e.g. `OU=Sub`).
    fn after_sub_ou_change(
        sub: &str,
        changed: Vec<crate::directory::Container>,
        now: Vec<DirObject>,
    ) -> (StateStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("state.db"), "2026-11-28T00:00:00Z").unwrap();
        let before = [user_at(1, &format!("CN=u1,{sub},OU=In,DC=x")), user_at(2, "CN=u2,OU=In,DC=x")];
        store.mirror_put(&before, 1, false, &crate::store::directory_keys).unwrap();
        store.mirror_resolve_links(false).unwrap();
        let ous =
            [(guid(10).to_string(), "OU=In,DC=x".to_owned()), (guid(11).to_string(), format!("{sub},OU=In,DC=x"))];
        store.mirror_set_ous(&ous, &[], true).unwrap();
        let scope = Scope::new(vec![Dn::parse("OU=In,DC=x").unwrap()], vec![]);
        let all_ous = changed.clone();
        let mut fake = Fake { changed_ous: changed, objects: now, ous: all_ous };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime
            .block_on(refresh_delta(
                &mut fake,
                &scope,
                &mut store,
                2,
                100,
                &RuleOptions::default(),
                &crate::sync::progress::Silent,
            ))
            .unwrap();
        (store, dir)
    }

    fn dn_of(store: &StateStore, id: u8) -> Option<String> {
        store.mirrored(&guid(id).to_string()).unwrap().map(|m| m.object.dn.to_string())
    }

    #[test]
    fn an_ou_renamed_inside_the_scope_is_read_again_with_its_children() {
        let (store, _dir) =
            after_ou_change(vec![ou(11, "OU=Sub2,OU=In,DC=x")], vec![user_at(1, "CN=u1,OU=Sub2,OU=In,DC=x")]);
        assert_eq!(dn_of(&store, 1).as_deref(), Some("CN=u1,OU=Sub2,OU=In,DC=x"));
        assert_eq!(dn_of(&store, 2).as_deref(), Some("CN=u2,OU=In,DC=x"));
        assert!(store.anchors_gone(true).unwrap().is_empty());
        assert_eq!(store.mirror_ous().unwrap()[&guid(11).to_string()], "OU=Sub2,OU=In,DC=x");
    }

    #[test]
    fn an_ou_moved_out_of_the_scope_takes_its_children_with_it() {
        let (store, _dir) = after_ou_change(vec![ou(11, "OU=Sub,OU=Out,DC=x")], vec![]);
        assert_eq!(dn_of(&store, 1), None, "u1 left with its OU");
        assert_eq!(dn_of(&store, 2).as_deref(), Some("CN=u2,OU=In,DC=x"));
        assert!(!store.mirror_ous().unwrap().contains_key(&guid(11).to_string()));
    }

    #[test]
    fn an_ou_moved_into_the_scope_brings_its_children() {
        let (store, _dir) = after_ou_change(
            vec![ou(12, "OU=New,OU=In,DC=x")],
            vec![user_at(3, "CN=u3,OU=New,OU=In,DC=x"), user_at(4, "CN=u4,OU=Elsewhere,DC=x")],
        );
        assert_eq!(dn_of(&store, 3).as_deref(), Some("CN=u3,OU=New,OU=In,DC=x"));
        assert_eq!(dn_of(&store, 4), None, "only the moved OU is read");
        assert_eq!(dn_of(&store, 1).as_deref(), Some("CN=u1,OU=Sub,OU=In,DC=x"));
    }

    /// `LIKE` patterns: an OU whose name holds `_`, `%` or an escaped comma must still find its
    /// children when it is moved or renamed (the escapes need `ESCAPE '\\'`).
    #[test]
    fn an_ou_named_with_like_wildcards_and_an_escaped_comma_takes_its_children_along() {
        for sub in ["OU=Fin\\, Le_g%al", "OU=a_b", "OU=100%", "OU=back\\\\slash"] {
            let (store, _dir) = after_sub_ou_change(sub, vec![ou(11, &format!("{sub},OU=Out,DC=x"))], vec![]);
            assert_eq!(dn_of(&store, 1), None, "{sub}: u1 left with its OU");
            assert_eq!(dn_of(&store, 2).as_deref(), Some("CN=u2,OU=In,DC=x"));
            let (store, _dir) = after_sub_ou_change(
                sub,
                vec![ou(11, "OU=Renamed,OU=In,DC=x")],
                vec![user_at(1, "CN=u1,OU=Renamed,OU=In,DC=x")],
            );
            assert_eq!(dn_of(&store, 1).as_deref(), Some("CN=u1,OU=Renamed,OU=In,DC=x"), "{sub}");
            assert_eq!(store.mirror_ous().unwrap()[&guid(11).to_string()], "OU=Renamed,OU=In,DC=x");
        }
    }

    #[test]
    fn the_deletion_threshold_stops_over_the_count_or_the_percentage() {
        // Within both limits: no stop.
        assert!(deletion_threshold(5, 100, None, 10, 10).is_none());
        assert!(deletion_threshold(0, 0, None, 0, 0).is_none());
        // Over the count (6 > 5), under the percentage.
        let (stop, error) = deletion_threshold(6, 1000, None, 5, 50).unwrap();
        assert_eq!(stop, StopDetails::DeletionThreshold { removing: 6, percent: 0, limit: 5, limit_percent: 50 });
        assert_eq!(error.kind, ErrorKind::SafetyStop);
        assert_eq!(
            error.message,
            "this run would deactivate or delete 6 objects (0 % of those provisioned), above the threshold (5 objects, 50 %); nothing was written"
        );
        assert_eq!(error.hints, ["check the plan in the report; if it is right, run again with --allow-deletes 6"]);
        // Over the percentage (3 of 10 = 30 % > 20 %), under the count.
        let (stop, _) = deletion_threshold(3, 10, None, 500, 20).unwrap();
        assert_eq!(stop, StopDetails::DeletionThreshold { removing: 3, percent: 30, limit: 500, limit_percent: 20 });
        // Nothing provisioned counts as one (no division by zero): 1 removal is 100 %.
        let (stop, _) = deletion_threshold(1, 0, None, 500, 50).unwrap();
        assert_eq!(stop, StopDetails::DeletionThreshold { removing: 1, percent: 100, limit: 500, limit_percent: 50 });
    }

    #[test]
    fn allow_deletes_replaces_the_count_and_lifts_the_percentage() {
        assert!(deletion_threshold(30, 30, Some(30), 5, 10).is_none());
        let (stop, error) = deletion_threshold(31, 31, Some(30), 5, 10).unwrap();
        assert_eq!(stop, StopDetails::DeletionThreshold { removing: 31, percent: 100, limit: 30, limit_percent: 10 });
        assert!(error.message.contains("above the threshold (30 objects, 10 %)"), "{}", error.message);
    }

    fn held(guid: &str, dn: &str, rule: &str) -> Quarantined {
        Quarantined {
            guid: guid.into(),
            dn: dn.into(),
            reasons: vec![Reason { rule: rule.into(), message: format!("{rule} broken") }],
        }
    }

    /// The merge of who is held back: unanchored objects, this run's verdicts, and earlier
    /// entries still standing (invalid in the mirror, not judged again this run); a user found
    /// valid again or judged again this run is not listed from the old entry. Sorted by DN.
    #[test]
    fn held_back_merges_this_runs_verdicts_with_standing_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("state.db"), "2026-11-28T00:00:00Z").unwrap();
        let objects = [user_at(1, "CN=b,OU=In,DC=x"), user_at(2, "CN=c,OU=In,DC=x"), user_at(3, "CN=d,OU=In,DC=x")];
        store.mirror_put(&objects, 1, false, &crate::store::directory_keys).unwrap();
        let (g1, g2, g3) = (guid(1).to_string(), guid(2).to_string(), guid(3).to_string());
        // u1 still invalid, u2 valid again, u3 invalid and judged again this run.
        store.set_verdicts(&[(g1.clone(), false), (g2.clone(), true), (g3.clone(), false)], false).unwrap();
        let mut batch = crate::store::Batch::default();
        for (g, dn) in [(&g1, "CN=b,OU=In,DC=x"), (&g2, "CN=c,OU=In,DC=x"), (&g3, "CN=d,OU=In,DC=x")] {
            let old = held(g, dn, "old-rule");
            batch.quarantine(
                crate::store::QuarantineEntry {
                    guid: old.guid,
                    dn: old.dn,
                    reasons: old
                        .reasons
                        .into_iter()
                        .map(|r| store::Reason { rule: r.rule, message: r.message })
                        .collect(),
                    since: "t0".into(),
                },
                1,
            );
        }
        store.commit(&batch, "2026-11-28T00:00:00Z").unwrap();

        let mut verdicts = Verdicts::default();
        verdicts.quarantined.insert(g3.clone(), held(&g3, "CN=d,OU=In,DC=x", "new-rule"));
        let unanchored = vec![held("", "CN=a,OU=In,DC=x", "objectguid-missing")];
        let merged = held_back(&store, unanchored, &verdicts).unwrap();
        assert_eq!(
            merged,
            vec![
                held("", "CN=a,OU=In,DC=x", "objectguid-missing"),
                held(&g1, "CN=b,OU=In,DC=x", "old-rule"),
                held(&g3, "CN=d,OU=In,DC=x", "new-rule"),
            ]
        );
        // Nothing held back: an empty list.
        let dir = tempfile::tempdir().unwrap();
        let empty = StateStore::open(&dir.path().join("state.db"), "2026-11-28T00:00:00Z").unwrap();
        assert!(held_back(&empty, Vec::new(), &Verdicts::default()).unwrap().is_empty());
    }
}

//! One sync run, start to end, for full and delta alike: choose the mode, stop for a vanished
//! selected OU, then (inside a rolled-back savepoint for a dry run) refresh the mirror while a
//! full sync lists the tenant, validate, merge the quarantine, check the deletion threshold and
//! `--strict`, plan and apply through the [`Engine`], and settle the watermark. The command
//! turns its arguments into a [`SyncRequest`] and the [`SyncOutcome`] into its report; progress
//! reaches the terminal only through the [`Progress`] it passes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use serde::Serialize;

use super::apply::{
    ALTERED_KEY, Applier, BulkLimits, Counts, FILTER_PROBED_KEY, Failure, Finding, KnownIds, LIST_PAGE,
    REMOVE_FORM_KEY, Recreate, WriteOptions, read_tenant,
};
use super::engine::{self, Engine, Fallback, Mode, ModeInputs, ReadCounts, StopDetails};
use super::plan::{self, Plan, Quarantined};
use super::progress::Progress;
use super::repair::{self, TenantView, Unknown};
use super::scope::Scope;
use super::spill::PlanLog;
use super::validate::{Explanation, RuleOptions};
use crate::config::{AgentConfig, OnRemove};
use crate::directory::{AnyDirectory, Directory, Dn};
use crate::error::{AppError, ErrorKind, Result};
use crate::exit::ExitStatus;
use crate::output::{self, Warning};
use crate::store::{StateStore, Watermark};
use crate::tenant::scim::{Capabilities, FilterProbe, RemoveForm};
use crate::tenant::{ResourceKind, ScimClient, Tenant, TenantError};

/// The tenant as a run uses it: SCIM reads and writes, and the filter probe a run repeats when
/// the tenant starts refusing filters.
pub trait RunTenant: Tenant {
    fn probe_filters(&self) -> BoxFuture<'_, std::result::Result<FilterProbe, TenantError>>;
}

impl RunTenant for ScimClient {
    fn probe_filters(&self) -> BoxFuture<'_, std::result::Result<FilterProbe, TenantError>> {
        Box::pin(ScimClient::probe_filters(self))
    }
}

/// What the command asks of a run.
pub struct SyncRequest<'a> {
    pub config: &'a AgentConfig,
    /// The rules and the provisioning policy of this run (the tenant's choice, if it made one).
    pub rules: RuleOptions,
    pub tenant: &'a dyn RunTenant,
    /// What the tenant announced (its /ServiceProviderConfig, read before the directory).
    pub capabilities: &'a Capabilities,
    pub store: &'a mut StateStore,
    /// This run's id in the history.
    pub run: i64,
    pub directory: &'a mut AnyDirectory,
    pub scope: Selected<'a>,
    pub options: SyncOptions<'a>,
}

/// The scope the run reads, or why it cannot.
pub enum Selected<'a> {
    Scope(&'a Scope),
    /// Selected OUs that no longer exist (their DNs as configured): a safety stop before
    /// reading, with the error the run ends with.
    Vanished {
        missing: Vec<String>,
        error: AppError,
    },
}

/// The run's switches (from the command line).
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions<'a> {
    /// A full sync even when the watermark could be trusted.
    pub full: bool,
    /// Plan only: nothing is written to the tenant, and the store is left as it was.
    pub dry_run: bool,
    /// Write nothing when any user in scope is invalid.
    pub strict: bool,
    /// Replaces `max_deletions` (and lifts `max_deletion_percent`) for this run.
    pub allow_deletes: Option<u32>,
    /// Replaces `max_renames` (and lifts `max_rename_percent`) for this run.
    pub allow_renames: Option<u32>,
    /// `--user X`: that user, end to end.
    pub user: Option<&'a str>,
    /// A policy preview (`sync --dry-run --policy NAME`): the active policy's scope, to say who
    /// the previewed policy takes in and leaves out compared with it.
    pub compare_scope: Option<&'a super::scope::PolicyScope>,
}

/// What a run did (or, a dry run, would do), for the report.
#[derive(Debug)]
pub struct SyncOutcome {
    pub mode: Mode,
    pub fallback: Option<Fallback>,
    pub read: ReadCounts,
    /// Why the run stopped before writing anything (a safety stop).
    pub stop: Option<StopDetails>,
    pub counts: Counts,
    pub tenant: Option<TenantSeen>,
    /// Absent only when the run stopped before planning.
    pub plan: Option<PlanLog>,
    pub quarantined: Vec<Quarantined>,
    pub failures: Vec<Failure>,
    pub findings: Vec<Finding>,
    pub timings: Timings,
    pub user: Option<UserStory>,
    /// Per SCIM attribute, how many provisioned objects this run gives another value.
    pub changes_by_attribute: BTreeMap<String, u64>,
    /// A policy preview: who enters and leaves the scope compared with the active policy.
    pub scope_changes: Option<super::scope::ScopeChanges>,
    /// What the report should warn about, in the order found.
    pub warnings: Vec<Warning>,
    pub exit: ExitStatus,
    /// What ended the run early (a safety stop, or a fatal tenant error while applying: the
    /// outcome still says what was done before it).
    pub error: Option<AppError>,
}

impl SyncOutcome {
    fn new(mode: Mode, fallback: Option<Fallback>) -> SyncOutcome {
        SyncOutcome {
            mode,
            fallback,
            read: ReadCounts::default(),
            stop: None,
            counts: Counts::default(),
            tenant: None,
            plan: None,
            quarantined: Vec::new(),
            failures: Vec::new(),
            findings: Vec::new(),
            timings: Timings::default(),
            user: None,
            changes_by_attribute: BTreeMap::new(),
            scope_changes: None,
            warnings: Vec::new(),
            exit: ExitStatus::Ok,
            error: None,
        }
    }

    /// A run that ends here with `exit` and `error`.
    fn ends(&mut self, exit: ExitStatus, error: AppError) {
        self.exit = exit;
        self.error = Some(error);
    }
}

/// A run that failed without an outcome (the store, the directory, the tenant's token…), and
/// the mode it had chosen by then, for the history.
#[derive(Debug)]
pub struct Interrupted {
    pub mode: Option<Mode>,
    pub error: AppError,
}

/// What a full sync read of the tenant.
#[derive(Debug, Default, Serialize)]
pub struct TenantSeen {
    pub users: u64,
    pub groups: u64,
    /// Listing requests (pages) it took.
    pub pages: u64,
    /// Every resource the tenant counted was listed; when not, nothing is taken as deleted there.
    pub complete: bool,
    /// Users and groups whose externalId ausi does not know: a count and the first few.
    pub unknown: Unknown,
}

/// Milliseconds spent reading (the directory, and a full sync's tenant listing beside it),
/// validating and planning what was not interleaved with writing, and applying.
#[derive(Debug, Default, Serialize)]
pub struct Timings {
    pub read: u64,
    pub plan: u64,
    pub apply: u64,
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `sync --user X --dry-run`: where the user stands and what this run would do to it.
#[derive(Debug, Serialize)]
pub struct UserStory {
    pub query: String,
    /// Found among the users of the selected scope.
    pub in_scope: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Explanation>,
    /// The SCIM resource the provisioning policy makes of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scim: Option<serde_json::Value>,
    /// In the selected OUs but left out by the policy's scope: the rule that excludes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<crate::policy::scoping::Exclusion>,
    /// `create`, `update`, `unchanged`, `quarantine`, `deactivate`, `delete` or `none`.
    pub operation: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// Runs one sync. Every safety check runs before the first write; the watermark advances only
/// after a real run applied everything without an error.
pub async fn run(request: SyncRequest<'_>, progress: &dyn Progress) -> std::result::Result<SyncOutcome, Interrupted> {
    let mut mode = None;
    let result = sync(request, progress, &mut mode).await;
    result.map_err(|error| Interrupted { mode, error })
}

async fn sync(request: SyncRequest<'_>, progress: &dyn Progress, chosen: &mut Option<Mode>) -> Result<SyncOutcome> {
    let SyncRequest { config, rules, tenant, capabilities, store, run, directory, scope, options } = request;
    // Read before anything else, so changes made during the run are read again next time.
    let started_at = jiff::Timestamp::now();
    let tracking = directory.change_tracking().await?;
    let fingerprint = engine::watermark_fingerprint(&config.scope, &rules.policy.fingerprint());
    let watermarks = store.watermarks()?;
    let (mode, fallback) = engine::choose_mode(&ModeInputs {
        full_asked: options.full,
        tracking: tracking.as_ref(),
        watermark: engine::pick_watermark(tracking.as_ref(), &watermarks),
        scope: &fingerprint,
        full_pending: store.meta("full_pending")?.is_some(),
        tenant_requested: store.meta("full_sync_requested")?.is_some(),
        now: started_at,
    });
    *chosen = Some(mode);
    let mut out = SyncOutcome::new(mode, fallback);
    if let (Mode::Delta { .. }, Some(t)) = (mode, &tracking)
        && !t.tombstones_visible
    {
        out.warnings.push(Warning::new(
            "deletions-not-visible",
            "the bind account cannot read CN=Deleted Objects, so this delta cannot see objects deleted in AD since the last run; the next full sync deprovisions them (grant the account List Contents and Read Property on that container, see the README)",
        ));
    }
    // A selected OU is gone: stop before reading, with what its absence would have removed.
    let scope = match scope {
        Selected::Scope(scope) => scope,
        Selected::Vanished { missing, error } => {
            let gone: Vec<Dn> = missing.iter().filter_map(|d| Dn::parse(d).ok()).collect();
            // One anchor at a time: only those under the vanished OUs are held.
            let mut under: Vec<plan::Anchor> = Vec::new();
            store.each_anchor(false, &mut |a| {
                if Dn::parse(&a.dn).is_ok_and(|dn| gone.iter().any(|g| dn.is_descendant_of(g))) {
                    under.push(engine::planner_anchor(a));
                }
            })?;
            let removals = Plan { removals: plan::removals(&under, config.sync.on_remove), ..Plan::default() };
            out.plan = Some(logged(store, removals));
            out.stop = Some(StopDetails::ScopeVanished { missing });
            out.ends(ExitStatus::SafetyStop, error);
            return Ok(out);
        }
    };
    // A dry run goes through the same engine inside a savepoint that is rolled back.
    if options.dry_run {
        store.begin_dry_run()?;
    }
    let mut one =
        Run { config, rules, tenant, capabilities, store: &mut *store, run, directory, scope, mode, options, progress };
    let result = one.sync(&mut out).await;
    if options.dry_run {
        store.end_dry_run()?;
    }
    result?;
    if out.error.is_none() && !options.dry_run {
        let mark = tracking.map(|t| Watermark {
            dc: t.dc,
            invocation_id: t.invocation_id,
            usn: t.highest_usn,
            taken_at: started_at.to_string(),
            scope: fingerprint,
        });
        store.settle(mark.as_ref())?;
    }
    Ok(out)
}

/// What one run works with.
struct Run<'a, 'r> {
    config: &'a AgentConfig,
    rules: RuleOptions,
    tenant: &'a dyn RunTenant,
    capabilities: &'a Capabilities,
    store: &'r mut StateStore,
    run: i64,
    directory: &'r mut AnyDirectory,
    scope: &'a Scope,
    mode: Mode,
    options: SyncOptions<'a>,
    progress: &'r dyn Progress,
}

/// Asks the tenant by id for each anchored object a complete listing did not hold
/// ([`repair::unconfirmed`]), `concurrency` at a time: one that is there after all joins the
/// view, so only what the tenant really lost is created again. A token or availability problem
/// ends the run; any other failure leaves the listing proving no absence this run.
async fn confirm_missing(
    tenant: &dyn RunTenant,
    view: &mut TenantView,
    anchors: impl IntoIterator<Item = plan::Anchor>,
    concurrency: usize,
) -> Result<()> {
    use futures_util::stream::{self, StreamExt};
    let asked = repair::unconfirmed(view, anchors);
    if asked.is_empty() {
        return Ok(());
    }
    let answers: Vec<_> = stream::iter(asked)
        .map(|(kind, id)| async move {
            let resource_kind = match kind {
                plan::Kind::User => ResourceKind::User,
                plan::Kind::Group => ResourceKind::Group,
            };
            (kind, tenant.get(resource_kind, &id).await)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut found = Vec::new();
    for (kind, answer) in answers {
        match answer {
            Ok(Some(resource)) => found.push((kind, resource)),
            Ok(None) => {}
            Err(e @ (TenantError::Unauthorized { .. } | TenantError::Unavailable { .. })) => return Err(e.into()),
            Err(_) => {
                view.complete = false;
                return Ok(());
            }
        }
    }
    view.confirm(found);
    Ok(())
}

/// A full sync's listing of the tenant: the view, or why there is none (a listing the tenant
/// cannot give, which leaves the run without repairs: never taken as deletions).
type Listed = std::result::Result<TenantView, TenantError>;

impl Run<'_, '_> {
    /// Refresh, validate, check, plan and (unless a dry run) apply, into `out`. An error while
    /// applying is the outcome's, beside what was done before it.
    async fn sync(&mut self, out: &mut SyncOutcome) -> Result<()> {
        let started = Instant::now();
        let rules = &self.rules;
        let all = self.mode == Mode::Full;
        // A full sync lists the tenant while the directory is read: one task, two futures, so
        // the listing's requests are in flight whenever the read waits for the directory.
        let (tenant, page, pages_at_once) = (self.tenant, self.list_page(), self.config.sync.concurrency as usize);
        let listing = async move {
            match all {
                true => Some(read_tenant(tenant, true, true, page, pages_at_once).await),
                false => None,
            }
        };
        let (directory, scope, store, run, progress, mode) =
            (&mut *self.directory, self.scope, &mut *self.store, self.run, self.progress, self.mode);
        let reading = async move {
            match mode {
                Mode::Full => engine::refresh_full(directory, scope, store, run, rules, progress).await,
                Mode::Delta { since } => {
                    engine::refresh_delta(directory, scope, store, run, since, rules, progress).await.map(Ok)
                }
            }
        };
        let (refreshed, listed) = tokio::join!(reading, listing);
        let refresh = match refreshed? {
            Ok(refresh) => refresh,
            // An incomplete or empty read: the outcome says what was read and why it stopped.
            Err(stopped) => {
                out.read = stopped.read;
                out.timings.read = ms(started);
                out.stop = Some(stopped.details);
                out.ends(ExitStatus::SafetyStop, stopped.error);
                return Ok(());
            }
        };
        out.read = refresh.read;
        out.timings.read = ms(started);
        let planned = Instant::now();
        let policy_scope = super::scope::PolicyScope::of(&rules.policy);
        if let Some(active) = self.options.compare_scope {
            out.scope_changes = Some(super::scope::policy_changes(self.store, active, &policy_scope)?);
        }
        let verdicts = engine::validate(self.store, all, rules, &policy_scope)?;
        out.quarantined = engine::held_back(self.store, refresh.unanchored, &verdicts)?;
        let findings = if out.quarantined.is_empty() { ExitStatus::Ok } else { ExitStatus::Findings };
        if let Some(query) = self.options.user {
            out.user = Some(story(self.store, query, rules, &policy_scope)?);
        }

        // Deletion threshold: count and percentage, before anything is written.
        // A full sync looks at every anchor; a delta only at those its changes can touch.
        let anchors = Rc::new(engine::planner_anchors(self.store, all)?);
        let on_remove = self.config.sync.on_remove;
        let removals =
            Plan { removals: engine::planned_removals(self.store, all, &anchors, on_remove)?, ..Plan::default() };
        let threshold = engine::deletion_threshold(
            removals.deprovisions(),
            self.store.active_anchors()?,
            self.options.allow_deletes,
            self.config.sync.max_deletions,
            self.config.sync.max_deletion_percent,
        );
        // The rename guard: userName changes of provisioned users (a changed policy, a mass UPN
        // change), counted by the validation. A dry run reports every attribute's count, a real
        // run its plan's (below).
        if self.options.dry_run {
            out.changes_by_attribute = engine::planned_attribute_changes(self.store, all, &rules.policy)?;
        }
        let renaming = verdicts.renames;
        let provisioned_users = self.store.active_users()?;
        let threshold = threshold.or_else(|| {
            engine::rename_threshold(
                renaming,
                provisioned_users,
                self.options.allow_renames,
                self.config.sync.max_renames,
                self.config.sync.max_rename_percent,
            )
        });
        if let Some((stop, error)) = threshold {
            let removals = logged(self.store, removals);
            if self.options.dry_run {
                // A dry run counts what it would do; a real run what it did (nothing).
                out.counts = removals.tally.clone();
            } else {
                // What the run would have changed: the plan it stopped before making.
                out.changes_by_attribute = engine::planned_attribute_changes(self.store, all, &rules.policy)?;
            }
            out.plan = Some(removals);
            out.counts.quarantined = out.quarantined.len() as u64;
            out.stop = Some(stop);
            out.ends(ExitStatus::SafetyStop, error);
            return Ok(());
        }
        if self.options.strict && !out.quarantined.is_empty() {
            let error = AppError::new(
                ErrorKind::SafetyStop,
                format!(
                    "--strict: {} in scope invalid, so nothing was written",
                    output::plural(out.quarantined.len() as u64, "user")
                ),
            );
            out.counts.quarantined = out.quarantined.len() as u64;
            out.ends(ExitStatus::Findings, error);
            return Ok(());
        }

        // What the tenant holds, to repair drift in what ausi owns there (a full sync).
        let mut tenant = match listed {
            Some(listed) => self.listed(listed, &mut out.warnings)?,
            None => None,
        };
        // Owned attributes this tenant is known to rewrite or drop (learnt from its answers) are
        // not drift: a full sync would otherwise rewrite them every time.
        let altered: BTreeSet<String> = self
            .store
            .meta(ALTERED_KEY)?
            .map(|v| v.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(view) = tenant.as_mut() {
            view.altered = altered.clone();
        }
        // A complete listing can still miss an object that moved while its pages were read:
        // each one it misses is asked for by its id before it counts as deleted in the tenant.
        if let Some(view) = tenant.as_mut() {
            confirm_missing(self.tenant, view, anchors.values(), self.config.sync.concurrency as usize).await?;
        }
        // Objects deleted in the tenant are created again: their old ids are no one's now.
        let missing = tenant.as_ref().map(|v| repair::missing(v, anchors.values())).unwrap_or_default();

        // Users ausi provisioned that are gone from AD: a re-created account may meet one (README).
        let gone: HashSet<String> = if on_remove == OnRemove::Ignore {
            HashSet::new()
        } else {
            let mut gone = self.store.retired_users()?;
            gone.extend(removals.removals.iter().filter(|r| r.kind == plan::Kind::User).map(|r| r.guid.to_lowercase()));
            gone
        };
        let step = self.progress.begin(if self.options.dry_run {
            "Planning (dry run: nothing is written)"
        } else {
            "Writing to the tenant"
        });
        let show = |n: u64| step.set(n);
        let applier = match self.options.dry_run {
            true => None,
            false => {
                let mut applier = Applier::new(self.tenant, self.run, self.write_options()?, &show, &anchors);
                applier.gone = gone;
                applier.knows_altered(altered);
                applier.forget_ids(&missing);
                Some(applier)
            }
        };
        // A dry run knows the ids the active anchors hold (a real run asks the applier, which
        // learns).
        let mut ids = KnownIds::new(Rc::clone(&anchors), false);
        ids.forget(&missing);
        let mut engine =
            Engine::new(&mut *self.store, applier, ids, tenant, policy_scope.flattened(), rules.policy.clone());
        let applying = Instant::now();
        let applied = engine.run(all, &verdicts, &anchors, removals.removals).await;
        out.timings.plan = u64::try_from(applying.duration_since(planned).as_millis()).unwrap_or(u64::MAX);
        out.timings.apply = ms(applying);
        let (the_plan, applier, view) = engine.finish();
        step.finish();
        if let Some(view) = &view {
            // Ours: the anchors' ids and what this run adopted or re-pointed.
            let anchored: Vec<String> = anchors.values().filter_map(|a| a.scim_id).collect();
            let ours: HashSet<&str> = anchored.iter().chain(&the_plan.write_ids).map(String::as_str).collect();
            let store = &*self.store;
            let known = |guid: &str| anchors.contains_key(guid) || store.mirror_contains(guid).unwrap_or(true);
            out.tenant = Some(TenantSeen {
                users: view.count(plan::Kind::User),
                groups: view.count(plan::Kind::Group),
                pages: view.pages,
                complete: view.complete,
                unknown: view.unknown(&ours, &known),
            });
        }
        match applier {
            Some(applier) => {
                out.counts = applier.counts.clone();
                out.failures = applier.failures;
                out.findings = applier.findings;
                if applier.followed_up > 0 {
                    out.warnings.push(Warning::new(
                        "tenant-dropped-members",
                        format!(
                            "the tenant answered {} group write(s) without members they carried; ausi added them with one PATCH each",
                            applier.followed_up
                        ),
                    ));
                }
                if applier.filters_refused {
                    self.probe_filters_again(&mut out.warnings).await?;
                }
            }
            None => out.counts = the_plan.tally.clone(),
        }
        out.counts.quarantined = out.quarantined.len() as u64;
        if let Some(user) = &mut out.user {
            user.locate(&the_plan, &out.quarantined);
        }
        if !self.options.dry_run {
            out.changes_by_attribute = the_plan.changed_attributes.clone();
        }
        out.plan = Some(the_plan);
        // A run that had to stop (tenant gone, token revoked) still reports what it did.
        out.exit = match (&applied, &out.user) {
            (Err(e), _) => e.exit_status(),
            // `--user X`: X's own result, whatever happens to the others in scope.
            (Ok(()), Some(story)) => story.exit(&out.failures),
            (Ok(()), None) if out.failures.is_empty() && out.findings.is_empty() => findings,
            (Ok(()), None) => ExitStatus::Findings,
        };
        out.error = applied.err();
        Ok(())
    }

    /// The listing's page size: the tenant's filter page limit, at most [`LIST_PAGE`].
    fn list_page(&self) -> u32 {
        match self.capabilities.filter_max_results {
            0 => LIST_PAGE,
            n => n.min(LIST_PAGE),
        }
    }

    /// The tenant's listing as the run uses it: a token or availability problem ends the run;
    /// any other leaves it without repairs, with a warning.
    fn listed(&self, listed: Listed, warnings: &mut Vec<Warning>) -> Result<Option<TenantView>> {
        match listed {
            Ok(view) => {
                if !view.complete {
                    warnings.push(Warning::new(
                        "tenant-listing-incomplete",
                        "the tenant's count changed while it was listed, or it listed fewer resources than it counted: objects it did not list are not created again this run",
                    ));
                }
                Ok(Some(view))
            }
            Err(e @ (TenantError::Unauthorized { .. } | TenantError::Unavailable { .. })) => Err(e.into()),
            Err(e) => {
                warnings.push(Warning::new(
                    "tenant-not-listed",
                    format!(
                        "the tenant's users and groups could not be listed, so drift there is not repaired this run: {e}"
                    ),
                ));
                Ok(None)
            }
        }
    }

    /// How the applier writes: the configuration, what the tenant announced, and what earlier
    /// runs learnt of it.
    fn write_options(&self) -> Result<WriteOptions> {
        let sync = &self.config.sync;
        // Filters only when announced and, if register probed them, found working.
        let stored = self.config.tenant.as_ref().and_then(|t| t.capabilities.as_ref());
        let probed_again = self.store.meta(FILTER_PROBED_KEY)?;
        let filters = self.capabilities.filter
            && stored.is_none_or(|c| c.filter_probed != Some(false))
            && probed_again.as_deref() != Some("false");
        let c = self.capabilities;
        Ok(WriteOptions {
            concurrency: sync.concurrency as usize,
            patch: c.patch,
            bulk: if sync.bulk {
                BulkLimits::announced(c.bulk, c.bulk_max_operations, c.bulk_max_payload)
            } else {
                None
            },
            filters,
            remove_form: self
                .store
                .meta(REMOVE_FORM_KEY)
                .ok()
                .flatten()
                .and_then(|f| RemoveForm::parse(&f))
                .unwrap_or(RemoveForm::Filter),
            recreate: match sync.on_remove {
                OnRemove::Delete => Recreate::Delete,
                _ => Recreate::Rename,
            },
        })
    }

    /// The tenant started refusing filters: probe them again; until a probe finds them
    /// working, runs use listings.
    async fn probe_filters_again(&mut self, warnings: &mut Vec<Warning>) -> Result<()> {
        let again = self.tenant.probe_filters().await;
        let works = again.as_ref().is_ok_and(|p| p.works);
        self.store.set_meta(FILTER_PROBED_KEY, Some(if works { "true" } else { "false" }))?;
        warnings.push(Warning::new(
            "tenant-filter-refused",
            match &again {
                Ok(p) => format!(
                    "the tenant answered a filter with 400 invalidFilter; probed again: {} ({})",
                    if p.works { "filters work, later runs use them" } else { "later runs list the tenant instead" },
                    p.how
                ),
                Err(e) => format!("the tenant answered a filter with 400 invalidFilter; the probe failed: {e}"),
            },
        ));
        Ok(())
    }
}

/// Where one user stands (before the plan says what this run does to it).
fn story(
    store: &StateStore,
    query: &str,
    options: &RuleOptions,
    scope: &super::scope::PolicyScope,
) -> Result<UserStory> {
    let rules = engine::explain(store, query, options)?;
    let mut story = UserStory {
        query: query.to_owned(),
        in_scope: rules.is_some(),
        rules,
        scim: None,
        excluded: None,
        operation: "none",
        changed: vec![],
    };
    let user = store.mirrored_user(query)?;
    if let Some(m) = &user {
        story.excluded = scope.read(store)?.exclusion(&m.guid, &m.object);
        story.in_scope = story.excluded.is_none();
    }
    let user = user.filter(|_| story.in_scope);
    if user.as_ref().is_some_and(|m| m.valid == Some(false)) {
        story.operation = "quarantine";
    }
    if let Some(m) = user.filter(|m| m.valid == Some(true)) {
        // The manager as the tenant knows it (one created in this same run has no id yet).
        let manager_id = match &m.manager {
            Some(g) if store.is_valid_user(g)? => store.scim_id(g)?,
            _ => None,
        };
        let desired = super::desired::user(&options.policy, &m.object, &m.guid, manager_id.as_deref());
        story.scim = desired.ok().map(|d| d.body);
        // What a run does to a user it does not plan for (a delta that did not touch it).
        if store.scim_id(&m.guid)?.is_some() {
            story.operation = "unchanged";
        }
    }
    Ok(story)
}

impl UserStory {
    /// Findings when this user is not in scope, is quarantined or failed; else ok.
    fn exit(&self, failures: &[Failure]) -> ExitStatus {
        let guid = self.rules.as_ref().and_then(|r| r.identity.object_guid.as_deref());
        let failed = guid.is_some_and(|g| failures.iter().any(|f| f.guid == g));
        if !self.in_scope || self.operation == "quarantine" || failed { ExitStatus::Findings } else { ExitStatus::Ok }
    }

    /// What the plan does to this user: one scan of the spilled lists (`--user` runs are rare).
    fn locate(&mut self, plan: &PlanLog, quarantined: &[Quarantined]) {
        let Some(guid) = self.rules.as_ref().and_then(|r| r.identity.object_guid.clone()) else { return };
        let of_user = |v: &serde_json::Value| v["guid"].as_str() == Some(guid.as_str());
        if let Some(w) = plan.creates.find(of_user) {
            let verify_first = w["verify_first"].as_bool().unwrap_or(false);
            self.operation = if verify_first { "create (after a lookup by externalId)" } else { "create" };
        } else if let Some(w) = plan.updates.find(of_user) {
            self.operation = "update";
            let changed = w["changed"].as_array().map(|a| a.iter().filter_map(|c| c.as_str()).map(str::to_owned));
            self.changed = changed.map(Iterator::collect).unwrap_or_default();
        } else if quarantined.iter().any(|q| q.guid == guid) {
            self.operation = "quarantine";
        } else if let Some(r) = plan.removals.find(of_user) {
            self.operation = match r["action"].as_str() {
                Some("delete") => "delete",
                _ => "deactivate",
            };
        }
    }
}

/// A plan that stopped before the engine ran (only removals), as the report's plan.
fn logged(store: &StateStore, plan: Plan) -> PlanLog {
    let mut log = PlanLog::new(store.folder().as_deref());
    log.absorb(plan);
    log
}

#[cfg(test)]
mod tests {
    //! The run end to end without a DC: an LDIF export as the directory, the in-memory tenant.

    use std::path::Path;

    use base64::Engine as _;

    use super::*;
    use crate::directory::ldif_source::LdifDirectory;
    use crate::store::AnchorState;
    use crate::sync::fake_tenant::Fake;
    use crate::sync::progress::Silent;

    const NOW: &str = "2026-12-03T10:00:00Z";
    const OU: &str = "OU=P,DC=x,DC=y";

    fn guid(n: u32) -> String {
        let mut bytes = [0xa5u8; 16];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// An export of users 1..=n in OU=P (user k's manager is user k-1) and one group holding
    /// them all.
    fn export(path: &Path, users: u32) {
        export_with(path, users, |k| (k > 1).then(|| k - 1));
    }

    /// The same with each user's manager given (always an earlier user).
    fn export_with(path: &Path, users: u32, manager: impl Fn(u32) -> Option<u32>) {
        let mut text = String::from("dn: DC=x,DC=y\nobjectClass: domainDNS\n\n");
        text.push_str(&format!(
            "dn: {OU}\nobjectClass: organizationalUnit\nou: P\nobjectGUID:: {}\n\n",
            guid(1_000_000)
        ));
        for k in 1..=users {
            text.push_str(&format!(
                "dn: CN=u{k},{OU}\nobjectClass: user\nobjectGUID:: {}\nsAMAccountType: 805306368\nsAMAccountName: u{k}\ngivenName: U\nsn: {k}\nmail: u{k}@x.test\nuserPrincipalName: u{k}@x.test\nuserAccountControl: 512\n",
                guid(k)
            ));
            if let Some(m) = manager(k) {
                text.push_str(&format!("manager: CN=u{m},{OU}\n"));
            }
            text.push('\n');
        }
        text.push_str(&format!("dn: CN=g,{OU}\nobjectClass: group\nobjectGUID:: {}\ncn: g\n", guid(2_000_000)));
        for k in 1..=users {
            text.push_str(&format!("member: CN=u{k},{OU}\n"));
        }
        std::fs::write(path, text).unwrap();
    }

    struct World {
        dir: tempfile::TempDir,
        store: StateStore,
        config: AgentConfig,
        tenant: Fake,
        capabilities: Capabilities,
    }

    impl World {
        fn new() -> World {
            let dir = tempfile::tempdir().unwrap();
            let store = StateStore::open(&dir.path().join("state.db"), NOW).unwrap();
            let capabilities = Capabilities { patch: true, ..Capabilities::default() };
            World { dir, store, config: AgentConfig::default(), tenant: Fake::default(), capabilities }
        }

        fn ldif(&self) -> std::path::PathBuf {
            self.dir.path().join("export.ldif")
        }

        /// One run over the export as it is now.
        fn sync(&mut self, options: SyncOptions<'_>, scope: Option<Selected<'_>>) -> SyncOutcome {
            self.sync_or_kill(options, scope, None).expect("not killed")
        }

        /// One run, killed (`None`) when `kill_at_create` is given: its future is dropped once
        /// that create has reached the tenant and is left unanswered, as SIGKILL drops the
        /// process: what was committed stays, nothing else does.
        fn sync_or_kill(
            &mut self,
            options: SyncOptions<'_>,
            scope: Option<Selected<'_>>,
            kill_at_create: Option<u64>,
        ) -> Option<SyncOutcome> {
            self.tenant.freeze_at_create = kill_at_create;
            let mut directory = AnyDirectory::Ldif(Box::new(LdifDirectory::open(&self.ldif()).unwrap()));
            let selected = Scope::new(vec![Dn::parse(OU).unwrap()], vec![]);
            let run = self.store.begin_run("sync", options.dry_run, NOW).unwrap();
            let request = SyncRequest {
                config: &self.config,
                rules: RuleOptions::of(Some(&self.config)).unwrap(),
                tenant: &self.tenant,
                capabilities: &self.capabilities,
                store: &mut self.store,
                run,
                directory: &mut directory,
                scope: scope.unwrap_or(Selected::Scope(&selected)),
                options,
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let tenant = &self.tenant;
            let outcome = runtime.block_on(async {
                let frozen = async {
                    while !tenant.state.lock().unwrap().frozen {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                };
                tokio::select! {
                    outcome = super::run(request, &Silent) => Some(outcome.unwrap()),
                    () = frozen, if kill_at_create.is_some() => None,
                }
            });
            assert_eq!(outcome.is_none(), kill_at_create.is_some(), "killed if and only if asked");
            self.tenant.freeze_at_create = None;
            self.tenant.state.lock().unwrap().frozen = false;
            outcome
        }

        /// The requests that changed the tenant.
        fn writes(&self) -> Vec<String> {
            self.tenant.log().into_iter().filter(|l| !l.starts_with("LIST") && !l.starts_with("GET")).collect()
        }
    }

    fn counts(o: &SyncOutcome) -> serde_json::Value {
        serde_json::to_value(&o.counts).unwrap()
    }

    #[test]
    fn a_dry_run_writes_nothing_and_predicts_the_real_runs_counts() {
        let mut w = World::new();
        export(&w.ldif(), 5);
        let dry = w.sync(SyncOptions { dry_run: true, ..SyncOptions::default() }, None);
        assert_eq!((dry.mode, dry.exit, dry.error.is_none()), (Mode::Full, ExitStatus::Ok, true));
        assert!(w.writes().is_empty(), "{:?}", w.writes());
        assert!(w.store.anchors().unwrap().is_empty(), "a dry run leaves the store as it was");
        assert_eq!(dry.plan.as_ref().unwrap().creates.len(), 6);
        assert_eq!(dry.tenant.as_ref().map(|t| (t.users, t.groups, t.complete)), Some((0, 0, true)));

        let real = w.sync(SyncOptions::default(), None);
        assert_eq!((real.exit, real.error.is_none()), (ExitStatus::Ok, true));
        assert_eq!(counts(&real), counts(&dry), "the dry run predicts the real run");
        assert_eq!(real.counts.created, 6);
        assert_eq!(w.tenant.all(crate::tenant::ResourceKind::User).len(), 5);
        // Every manager was written before the user who points at it: each user has its
        // manager's id, and the group its five members.
        let g = &w.tenant.all(crate::tenant::ResourceKind::Group)[0];
        assert_eq!(w.tenant.members(g["id"].as_str().unwrap()).len(), 5);
        let u2 = w.tenant.by_name("u2@x.test");
        let u1 = w.tenant.by_name("u1@x.test");
        assert_eq!(u2[crate::sync::map::ENTERPRISE_SCHEMA]["manager"]["value"], u1["id"]);

        // Nothing changed: a no-op, and its dry run says so too.
        let before = w.writes().len();
        let again = w.sync(SyncOptions { dry_run: true, ..SyncOptions::default() }, None);
        assert_eq!((again.counts.created, again.counts.updated, again.counts.unchanged), (0, 0, 6));
        let noop = w.sync(SyncOptions::default(), None);
        assert_eq!(counts(&noop), counts(&again));
        assert_eq!(w.writes().len(), before, "a no-op writes nothing");
        assert!(noop.changes_by_attribute.is_empty() && again.changes_by_attribute.is_empty());

        // One user's first name and another's mail change: the dry run's count of the changed
        // attributes (compared before planning) is the real run's (tallied from its plan).
        let text = std::fs::read_to_string(w.ldif()).unwrap();
        let text = text.replace("givenName: U\nsn: 3\n", "givenName: V\nsn: 3\n").replace("mail: u4@", "mail: four@");
        std::fs::write(w.ldif(), text).unwrap();
        let dry = w.sync(SyncOptions { dry_run: true, ..SyncOptions::default() }, None);
        let real = w.sync(SyncOptions::default(), None);
        let expected = [("displayName", 1), ("emails", 1), ("name", 1)].map(|(a, n)| (a.to_owned(), n));
        assert_eq!(dry.changes_by_attribute, BTreeMap::from(expected));
        assert_eq!(real.changes_by_attribute, dry.changes_by_attribute);
    }

    /// More users than one window of writes, each managed by an earlier one: every manager is
    /// written before the users who point at it, so each user is written once, manager
    /// included (no completing PUT after), and the dry run still predicts the counts.
    #[test]
    fn across_windows_every_manager_is_written_before_its_reports() {
        let mut w = World::new();
        let users = engine::WINDOW as u32 + 100;
        export_with(&w.ldif(), users, |k| (k > 1).then(|| (k - 1) / 40 + 1));
        let dry = w.sync(SyncOptions { dry_run: true, ..SyncOptions::default() }, None);
        let real = w.sync(SyncOptions::default(), None);
        assert_eq!((real.exit, real.error.is_none()), (ExitStatus::Ok, true));
        assert_eq!(counts(&real), counts(&dry));
        assert_eq!(real.counts.created, u64::from(users) + 1);
        let writes = w.writes();
        assert!(writes.iter().all(|l| l == "POST Users" || l == "POST Groups"), "{:?}", &writes[..5]);
        assert_eq!(writes.len(), users as usize + 1, "one write per object");
        for k in [2, 41, 42, 1700, users] {
            let report = w.tenant.by_name(&format!("u{k}@x.test"));
            let boss = w.tenant.by_name(&format!("u{}@x.test", (k - 1) / 40 + 1));
            assert_eq!(report[crate::sync::map::ENTERPRISE_SCHEMA]["manager"]["value"], boss["id"], "u{k}");
        }
    }

    /// More groups than a page, carrying more members than a window takes
    /// ([`engine::WINDOW_MEMBERS`]): the groups are planned over several windows, each written
    /// once with its members (no PATCH after), the dry run predicts the counts, and both reports
    /// list every group's membership change (spilled as planned, not held).
    #[test]
    fn groups_carrying_more_members_than_a_window_are_each_written_once_with_them() {
        let mut w = World::new();
        let (users, groups, each) = (1000u32, engine::PAGE as u32 + 100, 40u32);
        assert!((groups * each) as usize > 2 * engine::WINDOW_MEMBERS, "several windows of members");
        export_with(&w.ldif(), users, |_| None);
        let mut text = std::fs::read_to_string(w.ldif()).unwrap();
        for g in 0..groups {
            text.push_str(&format!(
                "\ndn: CN=t{g},{OU}\nobjectClass: group\nobjectGUID:: {}\ncn: t{g}\n",
                guid(3_000_000 + g)
            ));
            for k in 0..each {
                text.push_str(&format!("member: CN=u{},{OU}\n", (g * 7 + k * 13) % users + 1));
            }
        }
        std::fs::write(w.ldif(), text).unwrap();
        let dry = w.sync(SyncOptions { dry_run: true, ..SyncOptions::default() }, None);
        let real = w.sync(SyncOptions::default(), None);
        assert_eq!((real.exit, real.error.is_none()), (ExitStatus::Ok, true), "{:?}", real.error);
        assert_eq!(counts(&real), counts(&dry), "the dry run predicts the real run");
        assert_eq!(real.counts.created, u64::from(users + groups + 1));
        let all_groups = u64::from(groups + 1);
        assert_eq!(real.counts.membership_changes, all_groups);
        for outcome in [&dry, &real] {
            let plan = outcome.plan.as_ref().unwrap();
            assert_eq!(plan.memberships.len() as u64, all_groups);
            assert_eq!(plan.tally.membership_changes, all_groups);
            let listed = serde_json::to_value(plan).unwrap()["memberships"].as_array().unwrap().len();
            assert_eq!(listed as u64, all_groups, "the report streams every change back");
        }
        let writes = w.writes();
        assert_eq!(writes.iter().filter(|l| *l == "POST Groups").count() as u64, all_groups);
        assert!(!writes.iter().any(|l| l.starts_with("PATCH")), "members go inline: {:?}", &writes[..3]);
        for g in [0, engine::PAGE as u32, groups - 1] {
            let group = w
                .tenant
                .all(crate::tenant::ResourceKind::Group)
                .into_iter()
                .find(|x| x["displayName"] == format!("t{g}"))
                .unwrap();
            assert_eq!(w.tenant.members(group["id"].as_str().unwrap()).len(), each as usize, "t{g}");
        }
    }

    /// A run killed while one window is written and the next one planned (the k-th create
    /// reached the tenant, its answer never came back), in the first window and in the second:
    /// the windows not yet handed over were neither journaled nor sent, and the next run
    /// finishes the sync: every object once, the lost answer adopted, managers and members set.
    #[test]
    fn a_run_killed_while_a_window_is_written_and_the_next_planned_is_finished_by_the_next() {
        let users = 2 * engine::WINDOW as u32 + 100;
        for (k, windows) in [(engine::WINDOW as u64 / 2, 1), (engine::WINDOW as u64 * 3 / 2, 2)] {
            let mut w = World::new();
            export_with(&w.ldif(), users, |k| (k > 1).then(|| (k - 1) / 40 + 1));
            assert!(w.sync_or_kill(SyncOptions::default(), None, Some(k)).is_none());
            let in_tenant = w.tenant.all(crate::tenant::ResourceKind::User).len();
            let anchors = w.store.anchors().unwrap();
            assert!(in_tenant as u64 >= k, "k {k}: {in_tenant} users in the tenant");
            assert!(anchors.len() >= in_tenant, "k {k}: every create was journaled before it was sent");
            assert!(
                anchors.len() < windows * (engine::WINDOW + engine::PAGE),
                "k {k}: {} journaled, more than the windows handed over",
                anchors.len()
            );
            assert!(anchors.values().any(|a| a.state == AnchorState::Pending), "k {k}: the lost answer is pending");

            let rerun = w.sync(SyncOptions::default(), None);
            assert!(rerun.error.is_none(), "k {k}: {:?}", rerun.error);
            assert_eq!(w.tenant.all(crate::tenant::ResourceKind::User).len(), users as usize, "k {k}: each user once");
            let groups = w.tenant.all(crate::tenant::ResourceKind::Group);
            assert_eq!(groups.len(), 1, "k {k}");
            assert_eq!(w.tenant.members(groups[0]["id"].as_str().unwrap()).len(), users as usize, "k {k}");
            let c = &rerun.counts;
            assert_eq!(c.created, u64::from(users) + 1 - in_tenant as u64, "k {k}: {c:?}");
            assert_eq!(c.adopted + c.unchanged, in_tenant as u64, "k {k}: {c:?}");
            assert!(c.adopted >= 1, "k {k}: the create whose answer was lost is adopted: {c:?}");
            for j in [2, 41, 42, 1700, users] {
                let report = w.tenant.by_name(&format!("u{j}@x.test"));
                let boss = w.tenant.by_name(&format!("u{}@x.test", (j - 1) / 40 + 1));
                assert_eq!(report[crate::sync::map::ENTERPRISE_SCHEMA]["manager"]["value"], boss["id"], "k {k}: u{j}");
            }
            let before = w.writes().len();
            w.sync(SyncOptions::default(), None);
            assert_eq!(w.writes().len(), before, "k {k}: then a no-op");
        }
    }

    #[test]
    fn a_deletion_threshold_stop_returns_the_plan_and_writes_nothing() {
        let mut w = World::new();
        export(&w.ldif(), 5);
        w.sync(SyncOptions::default(), None);
        let before = w.writes().len();
        w.config.sync.max_deletions = 1;
        export(&w.ldif(), 2); // u3..u5 gone
        for dry_run in [true, false] {
            let stopped = w.sync(SyncOptions { dry_run, ..SyncOptions::default() }, None);
            assert_eq!(stopped.exit, ExitStatus::SafetyStop);
            assert_eq!(stopped.error.as_ref().map(|e| e.kind), Some(ErrorKind::SafetyStop));
            assert!(matches!(stopped.stop, Some(StopDetails::DeletionThreshold { removing: 3, limit: 1, .. })));
            let removed: Vec<&str> =
                stopped.plan.as_ref().unwrap().removals.head().iter().map(|r| r.dn.as_str()).collect();
            assert_eq!(removed, [format!("CN=u3,{OU}"), format!("CN=u4,{OU}"), format!("CN=u5,{OU}")]);
            // A dry run counts what it would do; a real run what it did: nothing.
            assert_eq!(stopped.counts.deactivated, if dry_run { 3 } else { 0 });
            assert_eq!(w.writes().len(), before, "nothing written");
            let active = w.store.anchors().unwrap().values().filter(|a| a.state == AnchorState::Active).count();
            assert_eq!(active, 6, "no anchor changed");
        }
        // --allow-deletes 3 lets the same run through.
        let through = w.sync(SyncOptions { allow_deletes: Some(3), ..SyncOptions::default() }, None);
        assert_eq!((through.exit, through.counts.deactivated), (ExitStatus::Ok, 3));
    }

    #[test]
    fn a_vanished_selected_ou_stops_before_reading_with_what_it_would_remove() {
        let mut w = World::new();
        export(&w.ldif(), 3);
        w.sync(SyncOptions::default(), None);
        let before = w.writes().len();
        let error = AppError::new(ErrorKind::SafetyStop, "OU=P is gone");
        let vanished = Selected::Vanished { missing: vec![OU.to_owned()], error };
        let stopped = w.sync(SyncOptions::default(), Some(vanished));
        assert_eq!(stopped.exit, ExitStatus::SafetyStop);
        assert_eq!(stopped.stop, Some(StopDetails::ScopeVanished { missing: vec![OU.to_owned()] }));
        assert_eq!(stopped.plan.as_ref().unwrap().removals.len(), 4, "three users and the group");
        assert_eq!(stopped.read.users, 0, "nothing read");
        assert_eq!(w.writes().len(), before);
    }

    #[test]
    fn strict_writes_nothing_when_a_user_is_invalid() {
        let mut w = World::new();
        export(&w.ldif(), 3);
        let text = std::fs::read_to_string(w.ldif()).unwrap().replace("mail: u3@x.test", "mail: u2@x.test");
        std::fs::write(w.ldif(), text).unwrap();
        let stopped = w.sync(SyncOptions { strict: true, ..SyncOptions::default() }, None);
        assert_eq!(stopped.exit, ExitStatus::Findings);
        assert_eq!(stopped.error.as_ref().map(|e| e.kind), Some(ErrorKind::SafetyStop));
        assert_eq!(stopped.counts.quarantined, 2, "both holders of the shared mail");
        assert!(w.writes().is_empty());
        let held = w.sync(SyncOptions::default(), None);
        assert_eq!((held.exit, held.counts.created, held.counts.quarantined), (ExitStatus::Findings, 2, 2));
    }
}

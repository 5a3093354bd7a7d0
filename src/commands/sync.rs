//! `ausi sync`: one pipeline — read the selected scope, validate, map, plan against the state
//! store, apply to the tenant, commit, report, heartbeat. Every safety check runs before the
//! first write.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::{Context, Report, ScopeDescription, choose_scope, open_directory, read_scope};
use crate::cli::SyncArgs;
use crate::config::AgentConfig;
use crate::directory::{DirObject, Directory, ObjectKind, ObjectQuery};
use crate::error::{AppError, ErrorKind, Result};
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::sync::apply::{Applier, BulkLimits, Counts, Failure, WriteOptions};
use crate::sync::desired;
use crate::sync::plan::{self, Kind, Known, Plan, Quarantined};
use crate::sync::state::{AnchorKind, AnchorState, StateStore};
use crate::sync::validate::Validator;
use crate::tenant::{self, agent::AgentApi};

#[derive(Debug, Serialize)]
pub struct SyncReport {
    /// `full` (incremental sync arrives in a later release; every run reads the whole scope).
    pub mode: &'static str,
    pub source: String,
    pub scope: ScopeDescription,
    pub state_path: String,
    pub read: ReadCounts,
    pub counts: Counts,
    /// The plan: every create, update (with changed attributes), membership change and
    /// deprovisioning, each with the object's DN (its OU path); what was not done is in
    /// `failures`. Absent only when the run stopped before planning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    pub quarantined: Vec<Quarantined>,
    pub failures: Vec<Failure>,
    /// Requests that changed the tenant (retries included); zero for a dry run.
    pub write_requests: u64,
    pub timings_ms: Timings,
    /// With `--user`: that user, end to end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserStory>,
}

/// `sync --user X --dry-run`: where the user stands and what this run would do to it.
#[derive(Debug, Serialize)]
pub struct UserStory {
    pub query: String,
    /// Found among the users read from the selected scope.
    pub in_scope: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<crate::sync::validate::Explanation>,
    /// The SCIM resource the provisioning policy makes of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scim: Option<serde_json::Value>,
    /// `create`, `update`, `unchanged`, `quarantine`, `deactivate`, `delete` or `none`.
    pub operation: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct ReadCounts {
    pub users: u64,
    pub groups: u64,
    pub entries: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Timings {
    pub read: u64,
    pub plan: u64,
    pub apply: u64,
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `state.db` beside the configuration unless `[sync] state_path` says otherwise.
pub fn state_path(config: &AgentConfig, config_path: &Path) -> PathBuf {
    config.sync.state_path.clone().unwrap_or_else(|| {
        config_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("state.db")
    })
}

pub async fn run(ctx: &Context<'_>, args: &SyncArgs) -> Result<Outcome> {
    let mut warnings = Vec::new();
    let config = ctx.optional_config(&mut warnings)?.ok_or_else(|| {
        AppError::config(format!("no configuration at {}", ctx.config_path.display()))
            .with_hint("run `ausi register` and `ausi select-ous` first")
    })?;
    let tenant_config = config.tenant.clone().ok_or_else(|| {
        AppError::config("the agent is not registered with a tenant").with_hint("run `ausi register --home-realm URL`")
    })?;
    if !args.full {
        warnings.push(Warning::new(
            "full-sync",
            "incremental sync arrives in a later release: this run reads the whole scope (a full sync)",
        ));
    }
    let timeout = Duration::from_secs(config.sync.request_timeout_secs.max(1));
    let client = tenant::client(&tenant_config, timeout)?;
    let state_path = state_path(&config, &ctx.config_path);
    let stamp = jiff::Timestamp::now().to_string();
    let mut store = StateStore::open(&state_path, &stamp)?;
    let run = store.begin_run("full", args.dry_run, &stamp)?;
    let result = pipeline(ctx, args, &config, &client, &mut store, run, &mut warnings).await;
    let (exit, counts) = match &result {
        Ok((report, exit, _)) => (*exit, serde_json::to_value(&report.counts).unwrap_or_default()),
        Err(e) => (e.exit_status(), json!({})),
    };
    let outcome_name = match exit {
        ExitStatus::Ok => "ok",
        ExitStatus::Findings => "findings",
        _ => "error",
    };
    store.finish_run(run, outcome_name, i64::from(exit.code()), &counts, &jiff::Timestamp::now().to_string())?;
    let (mut report, exit, error) = result?;
    report.write_requests = client.write_requests();
    report.state_path = state_path.display().to_string();

    // Heartbeat: best effort, after the state is committed.
    if !args.dry_run
        && tenant_config.agent_api == Some(true)
        && let (Some(realm), Ok(token)) = (&tenant_config.home_realm, tenant::token(&tenant_config))
    {
        let agent = tenant_config.agent_name.clone().unwrap_or_default();
        let body = json!({
            "name": agent, "hostname": super::register::host_name().unwrap_or_default(),
            "version": env!("CARGO_PKG_VERSION"), "os": std::env::consts::OS,
            "status": outcome_name,
            "last_sync": {"kind": "full", "finished_at": jiff::Timestamp::now().to_string(),
                "created": report.counts.created, "updated": report.counts.updated,
                "deactivated": report.counts.deactivated, "failed": report.counts.failed,
                "quarantined": report.counts.quarantined}
        });
        let sent = match AgentApi::new(realm, &agent, token, timeout) {
            Ok(api) => api.heartbeat(&body).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            warnings.push(Warning::new("heartbeat-failed", format!("the heartbeat was not accepted: {e}")));
        }
    }
    let mut outcome = Outcome::new(Report::Sync(Box::new(report)), exit);
    outcome.warnings = warnings;
    outcome.dry_run = args.dry_run;
    outcome.error = error;
    Ok(outcome)
}

type PipelineResult = Result<(SyncReport, ExitStatus, Option<AppError>)>;

async fn pipeline(
    ctx: &Context<'_>,
    args: &SyncArgs,
    config: &AgentConfig,
    client: &tenant::ScimClient,
    store: &mut StateStore,
    run: i64,
    warnings: &mut Vec<Warning>,
) -> PipelineResult {
    let started = Instant::now();
    // The tenant first: a revoked token or an unreachable tenant stops the run before AD is read.
    let capabilities = client.service_provider_config().await?;
    let mut directory = open_directory(&args.directory, Some(config), warnings).await?;
    let info = directory.info().await?;
    let (scope, description) = choose_scope(&mut directory, None, Some(config), warnings).await?;
    let mut objects: Vec<DirObject> = Vec::new();
    let query = ObjectQuery { users: true, groups: true, members: true };
    let summary = read_scope(&mut directory, &scope, query, ctx.printer, &mut |o| objects.push(o)).await?;
    let mut validator = match &args.user {
        Some(user) => Validator::explaining(user),
        None => Validator::new(),
    };
    for user in objects.iter().filter(|o| o.kind == ObjectKind::User) {
        validator.add(user);
    }
    let read = ReadCounts {
        users: objects.iter().filter(|o| o.kind == ObjectKind::User).count() as u64,
        groups: objects.iter().filter(|o| o.kind == ObjectKind::Group).count() as u64,
        entries: summary.entries,
    };
    let read_ms = ms(started);
    if !summary.unreadable.is_empty() {
        let first = &summary.unreadable[0];
        return Err(AppError::new(
            ErrorKind::SafetyStop,
            format!(
                "{} entries could not be read (first: {}: {}); nothing was written, because a partial read must not deprovision anyone",
                summary.unreadable.len(),
                first.location,
                first.message
            ),
        ));
    }
    let (validation, explanation) = validator.finish(Vec::new());

    let planned = Instant::now();
    let anchors = store.anchors()?;
    let provisioned_users =
        anchors.values().filter(|a| a.kind == AnchorKind::User && a.state == AnchorState::Active).count();
    if read.users == 0 && provisioned_users > 0 {
        return Err(AppError::new(
            ErrorKind::SafetyStop,
            format!("the directory returned no users in scope, but {provisioned_users} are provisioned; nothing was written"),
        )
        .with_hint("check the selected OUs and the bind account's read rights; an emptied OU is never taken as a reason to deprovision"));
    }
    let ids: HashMap<String, String> = anchors
        .values()
        .filter(|a| a.state == AnchorState::Active)
        .filter_map(|a| a.scim_id.clone().map(|id| (a.guid.clone(), id)))
        .collect();
    let wanted = desired::build(&objects, &validation, &ids, &anchors);
    let (bodies, members, quarantine) = (store.bodies()?, store.members()?, store.quarantine()?);
    let known = Known { anchors: &anchors, bodies: &bodies, members: &members, quarantine: &quarantine };
    let the_plan = plan::plan(&wanted.objects, wanted.quarantined.clone(), &known, config.sync.on_remove);
    let plan_ms = ms(planned);

    let mut report = SyncReport {
        mode: "full",
        source: info.source,
        scope: description,
        state_path: String::new(),
        read,
        counts: Counts::default(),
        plan: None,
        quarantined: wanted.quarantined.clone(),
        failures: Vec::new(),
        write_requests: 0,
        timings_ms: Timings { read: read_ms, plan: plan_ms, apply: 0 },
        user: args.user.as_ref().map(|query| story(query, explanation, &wanted.objects, &the_plan)),
    };
    let findings = if the_plan.quarantine.is_empty() { ExitStatus::Ok } else { ExitStatus::Findings };

    // Deletion threshold: count and percentage, before anything is written.
    let removing = the_plan.deprovisions();
    let provisioned = anchors.values().filter(|a| a.state == AnchorState::Active).count().max(1);
    let limit = args.allow_deletes.unwrap_or(config.sync.max_deletions);
    let percent = removing * 100 / provisioned;
    let over_count = removing > limit as usize;
    let over_percent =
        args.allow_deletes.is_none() && removing > 0 && percent > config.sync.max_deletion_percent as usize;
    if over_count || over_percent {
        let error = AppError::new(
            ErrorKind::SafetyStop,
            format!(
                "this run would deactivate or delete {removing} objects ({percent} % of those provisioned), above the threshold ({} objects, {} %); nothing was written",
                limit, config.sync.max_deletion_percent
            ),
        )
        .with_hint(format!("check the plan in the report; if it is right, run again with --allow-deletes {removing}"));
        report.plan = Some(the_plan);
        return Ok((report, ExitStatus::SafetyStop, Some(error)));
    }
    if args.strict && !the_plan.quarantine.is_empty() {
        let error = AppError::new(
            ErrorKind::SafetyStop,
            format!("--strict: {} users in scope are invalid, so nothing was written", the_plan.quarantine.len()),
        );
        report.counts.quarantined = the_plan.quarantine.len() as u64;
        report.plan = Some(the_plan);
        return Ok((report, ExitStatus::Findings, Some(error)));
    }
    if args.dry_run {
        report.counts = planned_counts(&the_plan);
        report.plan = Some(the_plan);
        return Ok((report, findings, None));
    }

    let applying = Instant::now();
    let options = WriteOptions {
        concurrency: config.sync.concurrency as usize,
        patch: capabilities.patch,
        bulk: if config.sync.bulk {
            BulkLimits::announced(capabilities.bulk, capabilities.bulk_max_operations, capabilities.bulk_max_payload)
        } else {
            None
        },
    };
    let progress = ctx.printer.progress("Writing to the tenant");
    let show = |n: u64| progress.set(n);
    let mut applier = Applier::new(client, store, run, options, &show, &anchors);
    let applied = apply_all(&mut applier, &the_plan, &wanted, &objects, &validation, &anchors).await;
    report.counts = applier.counts.clone();
    report.plan = Some(the_plan);
    report.failures = applier.failures.clone();
    report.timings_ms.apply = ms(applying);
    // A run that had to stop (tenant gone, token revoked) still reports what it did.
    let exit = match &applied {
        Err(e) => e.exit_status(),
        Ok(()) if report.failures.is_empty() => findings,
        Ok(()) => ExitStatus::Findings,
    };
    Ok((report, exit, applied.err()))
}

/// Users, the manager pass, groups, memberships, removals, bookkeeping: in that order.
async fn apply_all(
    applier: &mut Applier<'_>,
    the_plan: &Plan,
    wanted: &desired::DesiredState,
    objects: &[DirObject],
    validation: &crate::sync::validate::Validation,
    anchors: &HashMap<String, crate::sync::state::Anchor>,
) -> Result<()> {
    let (users, groups): (Vec<_>, Vec<_>) = the_plan.creates.iter().cloned().partition(|w| w.kind == Kind::User);
    let (user_updates, group_updates): (Vec<_>, Vec<_>) =
        the_plan.updates.iter().cloned().partition(|w| w.kind == Kind::User);
    applier.writes(&users, &user_updates).await?;
    // Second pass: users whose manager was created in this run get the manager's SCIM id.
    if !wanted.manager_pending.is_empty() {
        // Only the ids changed since the first build (the anchors decide nothing a create alters).
        let again = desired::build(objects, validation, &applier.ids, anchors);
        let pending: std::collections::BTreeSet<&String> = wanted.manager_pending.iter().collect();
        let updates: Vec<_> = again
            .objects
            .into_iter()
            .filter(|d| pending.contains(&d.guid))
            .filter_map(|d| {
                applier.ids.get(&d.guid).map(|id| plan::Write {
                    kind: d.kind,
                    scim_id: Some(id.clone()),
                    guid: d.guid,
                    dn: d.dn,
                    body: d.body,
                    hash: d.hash,
                    verify_first: false,
                    changed: vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into()],
                })
            })
            .collect();
        let before = applier.counts.updated;
        applier.writes(&[], &updates).await?;
        applier.counts.updated = before; // the same users, completed: not counted twice
    }
    applier.writes(&groups, &group_updates).await?;
    applier.memberships(&the_plan.memberships).await?;
    applier.removals(&the_plan.removals).await?;
    applier.record(the_plan)?;
    Ok(())
}

/// Where one user stands in this run's plan.
fn story(
    query: &str,
    rules: Option<crate::sync::validate::Explanation>,
    desired: &[plan::Desired],
    plan: &Plan,
) -> UserStory {
    let guid = rules.as_ref().and_then(|r| r.identity.object_guid.clone());
    let mut story = UserStory {
        query: query.to_owned(),
        in_scope: rules.is_some(),
        rules,
        scim: None,
        operation: "none",
        changed: vec![],
    };
    let Some(guid) = guid else { return story };
    story.scim = desired.iter().find(|d| d.guid == guid).map(|d| d.body.clone());
    if let Some(w) = plan.creates.iter().find(|w| w.guid == guid) {
        story.operation = if w.verify_first { "create (after a lookup by externalId)" } else { "create" };
    } else if let Some(w) = plan.updates.iter().find(|w| w.guid == guid) {
        story.operation = "update";
        story.changed = w.changed.clone();
    } else if plan.unchanged.iter().any(|(g, _)| *g == guid) {
        story.operation = "unchanged";
    } else if plan.quarantine.iter().any(|q| q.guid == guid) {
        story.operation = "quarantine";
    } else if let Some(r) = plan.removals.iter().find(|r| r.guid == guid) {
        story.operation = match r.action {
            plan::RemoveAction::Delete => "delete",
            _ => "deactivate",
        };
    }
    story
}

fn planned_counts(plan: &Plan) -> Counts {
    Counts {
        created: plan.creates.len() as u64,
        updated: plan.updates.len() as u64,
        unchanged: plan.unchanged.len() as u64,
        deactivated: plan.removals.iter().filter(|r| r.action != plan::RemoveAction::Delete).count() as u64,
        deleted: plan.removals.iter().filter(|r| r.action == plan::RemoveAction::Delete).count() as u64,
        membership_changes: plan.memberships.len() as u64,
        quarantined: plan.quarantine.len() as u64,
        ..Counts::default()
    }
}

impl SyncReport {
    pub fn table(&self) -> String {
        let c = &self.counts;
        let mut t = output::table(&["", "Users and groups"]);
        for (k, v) in [
            ("created", c.created),
            ("adopted (already in the tenant)", c.adopted),
            ("updated", c.updated),
            ("unchanged", c.unchanged),
            ("deactivated", c.deactivated),
            ("deleted", c.deleted),
            ("membership changes", c.membership_changes),
            ("quarantined", c.quarantined),
            ("failed", c.failed),
        ] {
            t.add_row(vec![k.to_owned(), v.to_string()]);
        }
        if let Some(story) = &self.user {
            let mut out = format!(
                "{}: {}; this run would: {}\n",
                output::cell(&story.query),
                if story.in_scope { "in the selected scope" } else { "not found in the selected scope" },
                story.operation
            );
            if let Some(rules) = &story.rules {
                for c in &rules.checks {
                    let verdict = if c.passed { "pass" } else { "FAIL" };
                    out.push_str(&format!("  {verdict} {}: {}\n", c.rule.id(), c.description));
                }
            }
            if let Some(scim) = &story.scim {
                out.push_str(&format!("SCIM resource:\n{}", output::json_line(scim, true)));
            }
            return out;
        }
        let mut out = format!(
            "{}: {} users and {} groups read\n{t}\n",
            output::cell(&self.source),
            self.read.users,
            self.read.groups
        );
        for q in self.quarantined.iter().take(20) {
            let rules: Vec<&str> = q.reasons.iter().map(|r| r.rule.as_str()).collect();
            out.push_str(&format!("quarantined: {} ({})\n", output::cell(&q.dn), rules.join(", ")));
        }
        for f in self.failures.iter().take(20) {
            out.push_str(&format!("failed {}: {}: {}\n", f.operation, output::cell(&f.dn), output::cell(&f.error)));
        }
        if let Some(plan) = &self.plan {
            for w in plan.creates.iter().take(20) {
                out.push_str(&format!("plan: create {}\n", output::cell(&w.dn)));
            }
            for w in plan.updates.iter().take(20) {
                out.push_str(&format!("plan: update {} ({})\n", output::cell(&w.dn), w.changed.join(", ")));
            }
            for r in plan.removals.iter().take(20) {
                out.push_str(&format!("plan: {:?} {}\n", r.action, output::cell(&r.dn)));
            }
        }
        out
    }
}

//! `ausi sync`: the tenant first, then the directory and the selected scope; the run itself
//! (mode, refresh, validate, safety checks, plan, apply, watermark) is the engine's
//! ([`crate::sync::run`]); then the password writeback, the run in the history, the heartbeat
//! (after every real run, a failed one too), and the report made of the run's outcome.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::password_push::{self, PasswordPushReport};
use super::{Context, Report, ScopeDescription, Vanished, choose_scope_checked, open_directory};
use crate::cli::SyncArgs;
use crate::config::AgentConfig;
use crate::directory::Directory;
use crate::error::{AppError, Result};
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::store::{RUNS_KEPT, RunEnd, StateStore};
use crate::sync::apply::{Counts, Failure, Finding};
use crate::sync::engine::{Fallback, ReadCounts, StopDetails};
use crate::sync::health;
use crate::sync::history::{self, Ending};
use crate::sync::plan::{self, Quarantined};
use crate::sync::run::{Interrupted, Selected, SyncOptions, SyncRequest};
pub use crate::sync::run::{TenantSeen, Timings, UserStory};
use crate::sync::scope::{PolicyScope, ScopeChanges};
use crate::sync::spill::{KEPT, PlanLog, Spill};
use crate::sync::validate::RuleOptions;
use crate::tenant::agent::{Heartbeat, LastSync};
use crate::tenant::{self};

#[derive(Debug, Serialize)]
pub struct SyncReport {
    /// A dry run (the envelope's `dry_run`): the table says "would create", not "created".
    #[serde(skip)]
    pub dry_run: bool,
    /// `full` or `delta` (only what changed since the watermark was read).
    pub mode: &'static str,
    /// Why a run asked to be a delta was a full sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    pub source: String,
    /// The DC that served the run (its rootDSE dnsHostName; `null` for an export).
    pub dc: Option<String>,
    /// DCs tried before it that did not answer (failover), with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_dcs: Vec<crate::directory::SkippedDc>,
    pub scope: ScopeDescription,
    pub state_path: String,
    pub read: ReadCounts,
    /// Why the run stopped before writing anything (a safety stop, exit 3): `reason`
    /// (`partial-read`, `empty-read`, `deletion-threshold`) and its details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopDetails>,
    pub counts: Counts,
    /// A full sync: what it read of the tenant (to repair drift in what ausi owns), and the
    /// tenant objects ausi does not know (reported, never touched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantSeen>,
    /// The plan: every create, update (with changed attributes), membership change and
    /// deprovisioning, each with the object's DN (its OU path); what was not done is in
    /// `failures`. Absent only when the run stopped before planning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanLog>,
    /// Every user in scope that is not provisioned because of its data.
    pub quarantined: Vec<Quarantined>,
    /// Objects and operations the tenant refused for good (RFC 7644 §3.12: 400, 403, 404, 409,
    /// 413, 501…): the run went on with everything else and exits 1; each is tried once more in
    /// the next run.
    pub failures: Vec<Failure>,
    /// What the tenant did that ausi did not ask for (`tenant-dropped-attribute`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// Requests that changed the tenant (retries included); zero for a dry run.
    pub write_requests: u64,
    pub timings_ms: Timings,
    pub resources: Resources,
    /// For an agent registered with `--password-sync`: the tenant's password changes this run
    /// wrote into AD (or refused), as `password-push --from-tenant` reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_push: Option<PasswordPushReport>,
    /// With `--user`: that user, end to end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserStory>,
    /// Per SCIM attribute, how many provisioned users and groups this run gives another value
    /// (what a changed policy would rewrite; `userName` is what the rename guard counts).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub changes_by_attribute: std::collections::BTreeMap<String, u64>,
    /// The provisioning policy this run mapped with, when it is not Default from the
    /// configuration (a configured policy, or the tenant's choice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyNote>,
    /// `sync --dry-run --policy NAME`: the policy the previewed one is compared with, and who
    /// enters and leaves the scope (judged on the same mirror, after this run's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<PolicyPreview>,
}

/// What switching to the previewed policy does to the scope.
#[derive(Debug, Serialize)]
pub struct PolicyPreview {
    /// The active policy (the tenant's choice or the configuration's).
    pub active: String,
    pub scope: ScopeChanges,
}

/// What this run cost the machine (measured at the end of the run).
#[derive(Debug, Default, Serialize)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_user_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_sys_ms: Option<u64>,
}

impl Resources {
    /// From /proc (Linux): `VmHWM` and the utime/stime ticks (USER_HZ is 100 in the /proc ABI).
    pub fn measure() -> Resources {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let peak = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024);
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may hold spaces, so split after its ')').
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<u64>().ok()).map(|t| t * 10);
        Resources { peak_rss_bytes: peak, cpu_user_ms: ticks(11), cpu_sys_ms: ticks(12) }
    }
}

/// What [`StateStore::open`] found about the store's permissions, for the run's report: files
/// other users could read (each with the mode found), narrowed to 0600, or that could not be.
pub(crate) fn state_permission_warnings(store: &StateStore) -> Vec<Warning> {
    let list = |fixed: bool| {
        let files: Vec<String> = store
            .loose_files()
            .iter()
            .filter(|f| f.fixed == fixed)
            .map(|f| format!("{} (mode {:04o})", f.path.display(), f.mode))
            .collect();
        files.join(", ")
    };
    let mut warnings = Vec::new();
    let (fixed, open) = (list(true), list(false));
    if !fixed.is_empty() {
        warnings.push(Warning::new(
            "state-permissions-fixed",
            format!(
                "the state store's files could be read by other users, and the mirror in them holds every user's name and mail: {fixed}; ausi set them to 0600"
            ),
        ));
    }
    if !open.is_empty() {
        warnings.push(Warning::new(
            "state-permissions-open",
            format!(
                "the state store's files can be read by other users, and ausi could not change that (another user owns them?): {open}; run `chmod 600` on them as their owner"
            ),
        ));
    }
    warnings
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
    let timeout = Duration::from_secs(config.sync.request_timeout_secs.max(1));
    let state_path = config.state_path(&ctx.config_path);
    let clock = Instant::now();
    let started_at = jiff::Timestamp::now().to_string();
    // A run that cannot open the store (locked by another run, unwritable) is neither recorded
    // nor announced: the run holding the lock does both.
    let mut store = StateStore::open(&state_path, &started_at)?;
    warnings.extend(state_permission_warnings(&store));
    let run = store.begin_run("sync", args.dry_run, &started_at)?;
    // From here on every way out is recorded in the history and (unless a dry run) heartbeated.
    let mut kind = if args.full { "full" } else { "sync" };
    let client = super::tenant_token(&tenant_config).and_then(|_| tenant::client(&tenant_config, timeout));
    let result = match &client {
        Ok(client) => sync(ctx, args, &config, client, &mut store, run, &mut warnings).await.map_err(|stopped| {
            if let Some(mode) = stopped.mode {
                kind = mode.name();
            }
            stopped.error
        }),
        Err(e) => Err(e.clone()),
    };
    if let Ok((report, ..)) = &result {
        kind = report.mode;
    }
    let (exit, counts, failure) = match &result {
        Ok((report, exit, error)) => (*exit, report.counts.clone(), error.as_ref().map(|e| e.message.clone())),
        Err(e) => (e.exit_status(), Counts::default(), Some(e.message.clone())),
    };
    let counts_json = serde_json::to_value(&counts).unwrap_or_default();
    let ending = Ending::now(kind, exit, counts_json, failure, clock);
    let end = ending.run_end();
    // Notes for the report: warnings for a run that has one, hints on the error of one that failed.
    let mut notes = Vec::new();
    notes.extend(history::record(&mut store, history::Run::Begun(run), &ending));
    if !args.dry_run && tenant_config.agent_api == Some(true) {
        notes.extend(heartbeat(&tenant_config, timeout, &mut store, &end, &started_at, &counts).await);
    }
    let (mut report, exit, error) = match result {
        Ok(done) => done,
        Err(mut e) => {
            e.hints.extend(notes.into_iter().map(|w| w.message));
            return Err(e);
        }
    };
    warnings.extend(notes);
    if let Ok(client) = &client {
        report.write_requests = client.write_requests();
    }
    report.state_path = state_path.display().to_string();
    report.resources = Resources::measure();
    let mut outcome = Outcome::new(Report::Sync(Box::new(report)), exit);
    outcome.warnings = warnings;
    outcome.dry_run = args.dry_run;
    outcome.error = error;
    Ok(outcome)
}

/// The heartbeat after a real run, success or failure, with that run's summary: best effort
/// (it never changes the run's exit code). The tenant's answer is recorded for `status` (its
/// status, e.g. `Active`, and the time), as is a failure and its reason; the tenant may ask for
/// a full sync, which the next run does. Returns what the report should say about it.
async fn heartbeat(
    tenant_config: &crate::config::TenantConfig,
    timeout: Duration,
    store: &mut StateStore,
    end: &RunEnd<'_>,
    started_at: &str,
    counts: &Counts,
) -> Vec<Warning> {
    let mut notes = Vec::new();
    let agent = tenant_config.agent_name.clone().unwrap_or_default();
    // The agent's health as `status` sees it from the history (this heartbeat aside).
    let runs = store.last_runs(RUNS_KEPT as usize).unwrap_or_default();
    let now = jiff::Timestamp::now();
    let healthy = health::assess(&runs, None, None, now).healthy;
    let body = Heartbeat {
        name: agent.clone(),
        hostname: super::register::host_name().unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
        status: if healthy { "healthy" } else { "unhealthy" },
        last_sync: LastSync {
            kind: end.kind.to_owned(),
            finished_at: end.finished_at.to_owned(),
            created: counts.created,
            updated: counts.updated,
            deactivated: counts.deactivated,
            failed: counts.failed,
            quarantined: counts.quarantined,
            started_at: started_at.to_owned(),
            duration_ms: end.duration_ms,
            deleted: counts.deleted,
            outcome: end.outcome.to_owned(),
            exit_code: u8::try_from(end.exit_code).unwrap_or(u8::MAX),
            error: end.error.map(str::to_owned),
        },
    };
    let sent = match tenant::agent_api(tenant_config, timeout) {
        Ok(api) => match api.heartbeat(&body).await {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(
                "the tenant answered 404: it no longer knows this agent or has no agent API (run `ausi register` again)"
                    .to_owned(),
            ),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.message),
    };
    let at = jiff::Timestamp::now().to_string();
    let recorded = match &sent {
        Ok(answer) => store.record_heartbeat(&at, Ok(&answer.status)),
        Err(reason) => store.record_heartbeat(&at, Err(reason)),
    };
    if let Err(e) = recorded {
        notes
            .push(Warning::new("heartbeat-not-recorded", format!("the heartbeat's result could not be recorded: {e}")));
    }
    if let Ok(answer) = &sent {
        // The tenant's choice of policy (or its withdrawal) applies from the next run on.
        let policy = answer.provisioning_policy.as_deref().filter(|p| !p.trim().is_empty());
        if let Err(e) = store.set_meta(TENANT_POLICY_KEY, policy) {
            notes.push(Warning::new(
                "heartbeat-not-recorded",
                format!("the provisioning policy the tenant assigned could not be recorded: {e}"),
            ));
        }
    }
    match sent {
        Ok(answer) if answer.full_sync_requested => match store.set_meta("full_sync_requested", Some("1")) {
            Ok(()) => notes
                .push(Warning::new("full-sync-requested", "the tenant asked for a full sync: the next run does one")),
            Err(e) => notes.push(Warning::new(
                "full-sync-requested",
                format!("the tenant asked for a full sync, but the request could not be recorded: {e}"),
            )),
        },
        Ok(_) => {}
        Err(reason) => notes.push(Warning::new(
            "heartbeat-failed",
            format!("the heartbeat was not accepted, so the tenant does not know how this run ended: {reason}"),
        )),
    }
    notes
}

type Synced = std::result::Result<(SyncReport, ExitStatus, Option<AppError>), Interrupted>;

/// Where the store keeps the provisioning policy the tenant assigned (its last heartbeat answer).
const TENANT_POLICY_KEY: &str = "tenant_provisioning_policy";

/// Which provisioning policy a run maps with, and why (in the report unless it is Default from
/// the configuration).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicyNote {
    pub name: String,
    /// `tenant` (the tenant's agent API assigned it; it wins over the configuration), `config`,
    /// or `preview` (`sync --dry-run --policy NAME`).
    pub source: &'static str,
    /// The configuration's `[tenant] provisioning_policy`, when the tenant's choice overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configured: Option<String>,
}

/// The rules of this run: the configuration's, with the policy the tenant assigned (its last
/// heartbeat answer) when it assigned one, else the configured one. A policy the tenant names
/// but the configuration does not define is a configuration error: nothing is mapped on a guess.
fn run_rules(
    config: &AgentConfig,
    store: &StateStore,
    warnings: &mut Vec<Warning>,
) -> Result<(RuleOptions, Option<PolicyNote>)> {
    let rules = RuleOptions::of(Some(config))?;
    let configured = rules.policy.name.clone();
    let Some(assigned) = store.meta(TENANT_POLICY_KEY)? else {
        let note =
            (!rules.policy.is_default()).then_some(PolicyNote { name: configured, source: "config", configured: None });
        return Ok((rules, note));
    };
    let policy = crate::policy::Policy::resolve(&assigned, &config.policies).map_err(|e| {
        AppError::config(format!("the tenant assigned the provisioning policy {assigned:?}, but {}", e.message))
            .with_hint(format!("define [policies.{assigned}] in agent.toml, or assign another policy in the tenant"))
    })?;
    if assigned != configured {
        warnings.push(Warning::new(
            "tenant-policy",
            format!(
                "the tenant assigned the provisioning policy {assigned:?}, which wins over [tenant] provisioning_policy = {configured:?}"
            ),
        ));
    }
    let note = PolicyNote {
        name: assigned.clone(),
        source: "tenant",
        configured: (assigned != configured).then_some(configured),
    };
    Ok((rules.with_policy(policy), Some(note)))
}

/// A policy mapping into custom schemas: the tenant's `/Schemas` must list each schema and
/// attribute (fetched once per run, and only then), else a configuration error before anything
/// is read or written; a tenant that does not serve `/Schemas` gets a warning and the run goes on.
async fn check_custom_schemas(
    client: &tenant::ScimClient,
    policy: &crate::policy::Policy,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    let custom = tenant::schemas::custom_targets(policy);
    if custom.is_empty() {
        return Ok(());
    }
    match client.schemas().await? {
        Some(schemas) => tenant::schemas::check(policy, &schemas).map_err(|message| {
            AppError::config(message)
                .with_hint("add the schema extension to the tenant, or change the mapping in agent.toml")
        }),
        None => {
            let urns: std::collections::BTreeSet<&str> = custom.iter().map(|t| t.schema.as_str()).collect();
            warnings.push(Warning::new(
                "schemas-unavailable",
                format!(
                    "the tenant does not serve /Schemas: the policy {:?} maps into {} unchecked",
                    policy.name,
                    urns.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
            Ok(())
        }
    }
}

/// The tenant first (a revoked token or an unreachable tenant stops the run before AD is read),
/// then the directory and the scope; the run itself is [`crate::sync::run::run`]'s; then the
/// password writeback. The report, its exit status and the error the run ended with.
async fn sync(
    ctx: &Context<'_>,
    args: &SyncArgs,
    config: &AgentConfig,
    client: &tenant::ScimClient,
    store: &mut StateStore,
    run: i64,
    warnings: &mut Vec<Warning>,
) -> Synced {
    let early = |error: AppError| Interrupted { mode: None, error };
    // Some servers answer /ServiceProviderConfig without a token: one authenticated request
    // more, so that a no-op run with a revoked token fails too.
    let capabilities = client.service_provider_config().await.map_err(|e| early(e.into()))?;
    client.check_token().await.map_err(|e| early(e.into()))?;
    let (rules, policy_note) = run_rules(config, store, warnings).map_err(early)?;
    // `--policy NAME`: the same dry run under NAME, compared with the active policy.
    let active_scope = PolicyScope::of(&rules.policy);
    let (rules, policy_note, preview) = match &args.policy {
        None => (rules, policy_note, None),
        Some(name) => {
            let policy = crate::policy::Policy::resolve(name, &config.policies).map_err(|e| {
                early(AppError::usage(e.message).with_hint("define it as [policies.NAME] in the configuration"))
            })?;
            let note = PolicyNote { name: policy.name.clone(), source: "preview", configured: None };
            (rules.with_policy(policy), Some(note), Some(active_scope.policy.clone()))
        }
    };
    check_custom_schemas(client, &rules.policy, warnings).await.map_err(early)?;
    let mut directory = open_directory(&args.directory, Some(config), warnings).await.map_err(early)?;
    directory.read_attributes(crate::directory::ReadAttributes::for_policy(&rules.policy.attributes()));
    let info = directory.info().await.map_err(|e| early(e.into()))?;
    let chosen = choose_scope_checked(&mut directory, None, Some(config), warnings).await.map_err(early)?;
    let (scope, description) = match chosen {
        Ok((scope, description)) => (Ok(scope), description),
        Err(Vanished { missing, description, error }) => (Err((missing, error)), description),
    };
    let selected = match &scope {
        Ok(scope) => Selected::Scope(scope),
        Err((missing, error)) => Selected::Vanished { missing: missing.clone(), error: error.clone() },
    };
    let request = SyncRequest {
        config,
        rules,
        tenant: client,
        capabilities: &capabilities,
        store,
        run,
        directory: &mut directory,
        scope: selected,
        options: SyncOptions {
            full: args.full,
            dry_run: args.dry_run,
            strict: args.strict,
            allow_deletes: args.allow_deletes,
            allow_renames: args.allow_renames,
            user: args.user.as_deref(),
            compare_scope: preview.as_ref().map(|_| &active_scope),
        },
    };
    let outcome = crate::sync::run::run(request, ctx.printer).await?;
    warnings.extend(outcome.warnings);
    let mut report = SyncReport {
        dry_run: args.dry_run,
        mode: outcome.mode.name(),
        fallback: outcome.fallback,
        source: info.source,
        dc: info.dns_host_name,
        skipped_dcs: info.skipped,
        scope: description,
        state_path: String::new(),
        read: outcome.read,
        stop: outcome.stop,
        counts: outcome.counts,
        tenant: outcome.tenant,
        plan: outcome.plan,
        quarantined: outcome.quarantined,
        failures: outcome.failures,
        findings: outcome.findings,
        write_requests: 0,
        timings_ms: outcome.timings,
        resources: Resources::default(),
        password_push: None,
        user: outcome.user,
        changes_by_attribute: outcome.changes_by_attribute,
        policy: policy_note,
        preview: match (preview, outcome.scope_changes) {
            (Some(active), Some(scope)) => Some(PolicyPreview { active, scope }),
            _ => None,
        },
    };
    let (mut exit, error) = (outcome.exit, outcome.error);
    let password_sync = config.tenant.as_ref().is_some_and(|t| t.password_sync);
    if let (true, None, false, Ok(scope)) = (password_sync, &error, args.dry_run, scope) {
        let needs_a_look = push_passwords(&mut directory, &args.directory, scope, config, &mut report, warnings).await;
        if needs_a_look && exit == ExitStatus::Ok {
            exit = ExitStatus::Findings;
        }
    }
    Ok((report, exit, error))
}

/// The scheduled password writeback after a successful sync. Its trouble never undoes the sync:
/// it is reported (and the tenant keeps what was not tried). True when anything needs a look.
async fn push_passwords(
    directory: &mut crate::directory::AnyDirectory,
    args: &crate::cli::DirectoryArgs,
    scope: crate::sync::scope::Scope,
    config: &AgentConfig,
    report: &mut SyncReport,
    warnings: &mut Vec<Warning>,
) -> bool {
    let crate::directory::AnyDirectory::Ldap(ldap) = directory else {
        return false;
    };
    // The sync may have read from a read-only DC; passwords go to a writable one.
    let mut writable = None;
    if ldap.is_read_only().await.unwrap_or(false) {
        match super::open_writable_directory(args, Some(config), warnings).await {
            Ok(crate::directory::AnyDirectory::Ldap(other)) => writable = Some(other),
            Ok(_) => return false,
            Err(e) => {
                warnings.push(Warning::new(
                    "password-push-failed",
                    format!("password writeback did not run: the sync's DC is read-only and {}", e.message),
                ));
                return true;
            }
        }
    }
    let target = match writable.as_mut() {
        Some(other) => other,
        None => ldap,
    };
    match password_push::from_tenant(target, scope, config, warnings).await {
        Ok((push, stopped)) => {
            if let Some(e) = &stopped {
                warnings.push(Warning::new("password-push-stopped", e.message.clone()));
            }
            let attention = stopped.is_some() || push.exit() != ExitStatus::Ok;
            report.password_push = Some(push);
            attention
        }
        Err(e) => {
            warnings
                .push(Warning::new("password-push-failed", format!("password writeback did not run: {}", e.message)));
            true
        }
    }
}

impl SyncReport {
    pub fn table(&self) -> String {
        let c = &self.counts;
        // A dry run says what a run would do; a real run what it did.
        let said = |done: &str, would: &str| if self.dry_run { would.to_owned() } else { done.to_owned() };
        let mut t = output::table(&["", "Users and groups"]);
        for (k, v) in [
            (said("created", "would create"), c.created),
            (said("adopted (already in the tenant)", "would adopt (already in the tenant)"), c.adopted),
            (said("updated", "would update"), c.updated),
            ("unchanged".to_owned(), c.unchanged),
            (said("deactivated", "would deactivate"), c.deactivated),
            (said("deleted", "would delete"), c.deleted),
            (said("membership changes", "would change memberships"), c.membership_changes),
            (
                said("repaired users (drift in the tenant)", "would repair users (drift in the tenant)"),
                c.repaired_users,
            ),
            (said("repaired groups", "would repair groups"), c.repaired_groups),
            (said("repaired memberships", "would repair memberships"), c.repaired_memberships),
            ("quarantined".to_owned(), c.quarantined),
            ("failed".to_owned(), c.failed),
        ] {
            t.add_row(vec![k, v.to_string()]);
        }
        let mut out = String::new();
        if self.dry_run {
            out.push_str("DRY RUN: nothing was written to the tenant; this is what a run would do.\n");
        }
        if let Some(stop) = &self.stop {
            let reason = serde_json::to_value(stop).ok();
            let reason = reason.as_ref().and_then(|v| v["reason"].as_str()).unwrap_or("safety stop");
            out.push_str(&format!("stopped before writing: {reason} (exit 3; the error says why)\n"));
        }
        let mode = match self.mode {
            "delta" => "delta (what changed since the last run)".to_owned(),
            other => format!("{other} sync"),
        };
        match &self.fallback {
            Some(f) => out.push_str(&format!("mode: {mode}, because {}\n", output::cell(&f.message))),
            None => out.push_str(&format!("mode: {mode}\n")),
        }
        if let Some(story) = &self.user {
            out.push_str(&format!(
                "{}: {}; this run {}: {}\n",
                output::cell(&story.query),
                match (&story.excluded, story.in_scope) {
                    (None, false) => "not found in the selected scope".to_owned(),
                    (excluded, _) => crate::sync::scope::verdict(excluded.as_ref()),
                },
                if self.dry_run { "would" } else { "did" },
                story.operation
            ));
            if let Some(rules) = &story.rules {
                for c in &rules.checks {
                    let verdict = if c.passed { "pass" } else { "FAIL" };
                    out.push_str(&format!("  {verdict} {}: {}\n", c.rule.id(), c.description));
                }
                if !rules.mapped.is_empty() {
                    out.push_str("mapped attributes (target = value <- mapping):\n");
                    for [target, value, mapping] in crate::sync::validate::mapped_rows(&rules.mapped) {
                        out.push_str(&format!(
                            "  {} = {} <- {}\n",
                            output::cell(&target),
                            output::cell(&value),
                            output::cell(&mapping)
                        ));
                    }
                }
            }
            if let Some(scim) = &story.scim {
                out.push_str(&format!("SCIM resource:\n{}", output::json_line(scim, true)));
            }
            return out;
        }
        out.push_str(&format!(
            "{}: {} read\n{t}\n",
            output::cell(&self.source),
            counted(self.read.users, "user", self.read.groups, "group"),
        ));
        if let Some(p) = &self.policy {
            let source = match (p.source, &self.preview) {
                ("tenant", _) => "assigned by the tenant".to_owned(),
                ("preview", Some(preview)) => {
                    format!("previewed with --policy; the active one is {}", output::cell(&preview.active))
                }
                ("preview", None) => "previewed with --policy".to_owned(),
                _ => "from the configuration".to_owned(),
            };
            out.push_str(&format!("provisioning policy: {} ({source})\n", output::cell(&p.name)));
        }
        if let Some(preview) = &self.preview {
            out.push_str(&format!(
                "compared with {}, under {}:\n{}",
                output::cell(&preview.active),
                self.policy.as_ref().map(|p| output::cell(&p.name)).unwrap_or_default(),
                preview.scope.lines()
            ));
        }
        if !self.changes_by_attribute.is_empty() {
            let counts: Vec<String> =
                self.changes_by_attribute.iter().map(|(a, n)| format!("{} {n}", output::cell(a))).collect();
            out.push_str(&format!("objects changing, by attribute: {}\n", counts.join(", ")));
        }
        list(&mut out, &self.skipped_dcs, |skipped| {
            format!("skipped DC {}: {}", output::cell(&skipped.url), output::cell(&skipped.error))
        });
        list(&mut out, &self.quarantined, |q| {
            let rules: Vec<&str> = q.reasons.iter().map(|r| r.rule.as_str()).collect();
            format!("quarantined: {} ({})", output::cell(&q.dn), rules.join(", "))
        });
        list(&mut out, &self.failures, |f| {
            format!("failed {}: {}: {}", f.operation, output::cell(&f.dn), output::cell(&f.error))
        });
        if let Some(plan) = &self.plan {
            let verb = |action: &str| if self.dry_run { format!("would {action}") } else { format!("plan: {action}") };
            spilled(&mut out, &plan.creates, |w| format!("{} {}", verb("create"), output::cell(&w.dn)));
            spilled(&mut out, &plan.updates, |w| {
                format!("{} {} ({})", verb("update"), output::cell(&w.dn), w.changed.join(", "))
            });
            spilled(&mut out, &plan.removals, |r| {
                let action = match r.action {
                    plan::RemoveAction::Deactivate => "deactivate",
                    plan::RemoveAction::Delete => "delete",
                    plan::RemoveAction::Retire => "retire (no tenant write)",
                };
                format!("{} {}", verb(action), output::cell(&r.dn))
            });
            spilled(&mut out, &plan.repairs, |r| {
                let what = r.attributes.iter().chain(&r.members).cloned().collect::<Vec<_>>().join(", ");
                format!("{} {} ({} {})", verb("repair"), output::cell(&r.dn), r.drift, output::cell(&what))
            });
        }
        if let Some(t) = self.tenant.as_ref().filter(|t| t.unknown.users + t.unknown.groups > 0) {
            out.push_str(&format!(
                "the tenant holds {} ausi does not know (left alone)\n",
                counted(t.unknown.users, "user", t.unknown.groups, "group")
            ));
        }
        if let Some(push) = &self.password_push {
            out.push_str(&format!("Password writeback:\n{}", push.table()));
        }
        out
    }
}

/// How many lines of each listing a table shows; the JSON has them all.
pub const TABLE_LINES: usize = 20;

/// The first [`TABLE_LINES`] items, one per line, and how many more there are.
fn list<T>(out: &mut String, items: &[T], line: impl Fn(&T) -> String) {
    first_of(out, items, items.len(), line);
}

/// [`list`] for a plan's list, which keeps only its first items in memory.
fn spilled<T: serde::Serialize>(out: &mut String, items: &Spill<T>, line: impl Fn(&T) -> String) {
    const { assert!(TABLE_LINES <= KEPT, "the table shows only what the plan keeps in memory") };
    first_of(out, items.head(), items.len(), line);
}

/// The first [`TABLE_LINES`] of `total` items (`head` holds at least them), and how many more.
fn first_of<T>(out: &mut String, head: &[T], total: usize, line: impl Fn(&T) -> String) {
    for item in head.iter().take(TABLE_LINES) {
        out.push_str(&line(item));
        out.push('\n');
    }
    if total > TABLE_LINES {
        out.push_str(&format!("  … and {} more (the JSON report lists them all)\n", total - TABLE_LINES));
    }
}

/// "3 users and 1 group".
fn counted(a: u64, a_name: &str, b: u64, b_name: &str) -> String {
    format!("{} and {}", output::plural(a, a_name), output::plural(b, b_name))
}

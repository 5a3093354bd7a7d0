//! `ausi status`: what this agent is configured to do and how it has been doing, from the
//! configuration and the state store, without contacting anything. Exit code 1 when unhealthy
//! ([`crate::sync::health`]), so a monitoring script can act on it.

use std::path::PathBuf;

use serde::Serialize;

use super::{Context, Report, display_path};
use crate::config::{self, OuRef};
use crate::error::Result;
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::secrets::SecretRef;
use crate::service;
use crate::store::Watermark;
use crate::store::{HeartbeatRecord, RUNS_KEPT, RunRecord, StateStore};
use crate::sync::health::{self, HealthReason};

/// The health reasons that are a setup step not done yet (see `setup_reasons`).
pub const SETUP_CODES: [&str; 7] = [
    "schedule-not-enabled",
    "directory-not-configured",
    "bind-password-missing",
    "no-ous-selected",
    "not-registered",
    "tenant-token-missing",
    "no-sync-yet",
];

/// How many runs `status` lists.
pub const RUNS_SHOWN: usize = 10;

/// The report's `data`. Field names are stable (README "ausi status"); fields may be added.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub version: &'static str,
    pub config_path: String,
    /// False when a rule in `health_reasons` is broken; the exit code is then 1.
    pub healthy: bool,
    /// Why the agent is unhealthy, first the setup steps still to do in the order to do them
    /// (`directory-not-configured`, `bind-password-missing`, `no-ous-selected`, `not-registered`,
    /// `tenant-token-missing`, `no-sync-yet`, `schedule-not-enabled`), then `last-run-failed`, `last-success-stale`,
    /// `never-succeeded`, `heartbeat-failed`; empty when healthy.
    pub health_reasons: Vec<HealthReason>,
    /// When the last successful real sync finished.
    pub last_success_at: Option<String>,
    pub directory: DirectoryStatus,
    pub scope: ScopeStatus,
    pub tenant: TenantStatus,
    pub schedule: ScheduleStatus,
    /// The state store: where it is, the last 10 runs (newest first), quarantine and failures.
    pub state: StateStatus,
}

/// When runs are meant to happen: `[schedule]` in the configuration.
#[derive(Debug, Serialize)]
pub struct ScheduleStatus {
    pub interval_minutes: u32,
    pub full_sync_at: String,
    /// Where the installed systemd timer (Linux) or task definition (Windows) is; `null` when
    /// nothing is installed (the agent is run by hand).
    pub installed: Option<String>,
    /// Whether the installed schedule runs: `true` when the systemd timer is enabled and systemd
    /// runs, `false` when only the unit files are there; `null` when nothing is installed or
    /// it cannot be told from files (Task Scheduler).
    pub enabled: Option<bool>,
    /// When the next incremental run is due: the last sync's start plus the interval (`null`
    /// when nothing is installed or before the first run).
    pub next_run: Option<String>,
    /// With a schedule installed: the last successful sync older than this many minutes makes
    /// the agent unhealthy (three intervals).
    pub stale_after_minutes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct StateStatus {
    pub path: String,
    pub exists: bool,
    pub last_runs: Vec<RunRecord>,
    pub quarantined: usize,
    pub failed: usize,
    /// Objects the tenant has refused in more than one run (each is tried once per run): the
    /// operation, the tenant's last answer, since when and how many runs.
    pub failing: Vec<crate::store::Failure>,
    /// Where the next delta starts: the last successful run's DC, USN and time.
    pub watermark: Option<Watermark>,
    pub watermark_age_secs: Option<i64>,
    /// Every DC a successful sync ran on, with its own watermark (the newest, the last run's
    /// DC, first): a run on any of them continues from there with a delta.
    pub dcs: Vec<DcStatus>,
}

/// One DC's watermark.
#[derive(Debug, Serialize)]
pub struct DcStatus {
    /// The DC's server name and site, read from its `dsServiceName`
    /// (`CN=NTDS Settings,CN=SERVER,CN=Servers,CN=SITE,CN=Sites,…`).
    pub server: Option<String>,
    pub site: Option<String>,
    #[serde(flatten)]
    pub watermark: Watermark,
    pub age_secs: Option<i64>,
}

impl DcStatus {
    fn new(watermark: Watermark, now: jiff::Timestamp) -> DcStatus {
        let rdns: Vec<&str> = watermark.dc.split(',').collect();
        let value = |i: usize| {
            rdns.get(i)
                .and_then(|rdn| rdn.split_once('='))
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("cn"))
                .map(|(_, v)| v.trim().to_owned())
        };
        let (server, site) = (value(1), value(3));
        let age_secs =
            watermark.taken_at.parse::<jiff::Timestamp>().ok().map(|taken| now.duration_since(taken).as_secs());
        DcStatus { server, site, watermark, age_secs }
    }
}

#[derive(Debug, Serialize)]
pub struct DirectoryStatus {
    /// The first DC tried (`urls` lists them all, in order).
    pub url: Option<String>,
    pub urls: Vec<String>,
    /// Whether DCs are also found through DNS SRV records.
    pub discover: bool,
    /// `simple` or `kerberos`.
    pub bind: crate::config::BindMethod,
    /// Kerberos on Linux: the client keytab's reference (a path, never its keys).
    pub keytab: Option<String>,
    pub starttls: bool,
    pub bind_dn: Option<String>,
    pub bind_password: SecretStatus,
    pub base_dn: Option<String>,
    pub ca_file: Option<String>,
    pub tls_verify: bool,
    pub allow_plaintext_bind: bool,
    pub connect_timeout_secs: u64,
    pub operation_timeout_secs: u64,
    pub page_size: u32,
}

/// A secret's reference (not secret) and whether it can be read now; never its value.
#[derive(Debug, Serialize)]
pub struct SecretStatus {
    pub reference: Option<String>,
    /// `stored`, `missing`, `unreadable: …` or `not configured`.
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct ScopeStatus {
    pub selected: Vec<OuRef>,
    pub excluded: Vec<OuRef>,
}

#[derive(Debug, Serialize)]
pub struct TenantStatus {
    pub registered: bool,
    /// The registration status. With the agent API: `Created` until the tenant accepts a
    /// heartbeat, then what it answered (e.g. `Active`). A plain SCIM tenant has no answer to
    /// give: `Created` until a real sync succeeds, then `Active`.
    pub status: Option<String>,
    /// Where `status` comes from: `tenant` (its heartbeat answer) or `runs` (a plain SCIM tenant).
    pub status_source: Option<&'static str>,
    pub home_realm: Option<String>,
    pub agent_name: Option<String>,
    pub provisioning_policy: Option<String>,
    pub scim_url: Option<String>,
    pub token: SecretStatus,
    /// Whether the tenant has the agent API (heartbeats), as `register` found.
    pub agent_api: bool,
    /// Whether every sync writes the tenant's password changes into AD (`register --password-sync`).
    pub password_sync: bool,
    /// The last heartbeat; `null` before the first (and for a plain SCIM tenant).
    pub heartbeat: Option<HeartbeatStatus>,
}

#[derive(Debug, Serialize)]
pub struct HeartbeatStatus {
    pub last_attempt_at: String,
    /// The last heartbeat the tenant accepted.
    pub last_success_at: Option<String>,
    /// Whether the last attempt failed, and why (no secrets).
    pub failed: bool,
    pub error: Option<String>,
}

impl From<&HeartbeatRecord> for HeartbeatStatus {
    fn from(h: &HeartbeatRecord) -> Self {
        HeartbeatStatus {
            last_attempt_at: h.last_attempt_at.clone(),
            last_success_at: h.last_success_at.clone(),
            failed: h.last_error.is_some(),
            error: h.last_error.clone(),
        }
    }
}

fn secret_status(reference: Option<&str>) -> SecretStatus {
    let state = match reference.map(SecretRef::parse) {
        None => "not configured".to_owned(),
        Some(Err(e)) => format!("invalid: {e}"),
        Some(Ok(r)) => match r.resolve() {
            Ok(_) => "stored".to_owned(),
            Err(crate::secrets::SecretError::Missing { .. }) => "missing".to_owned(),
            Err(e) => format!("unreadable: {e}"),
        },
    };
    SecretStatus { reference: reference.map(str::to_owned), state }
}

pub fn run(ctx: &Context<'_>) -> Result<Outcome> {
    let loaded = config::load(&ctx.config_path)?;
    let c = loaded.config;
    let d = &c.directory;
    let tenant = c.tenant.clone().unwrap_or_default();
    let agent_api = tenant.agent_api == Some(true);
    let path = c.state_path(&ctx.config_path);
    let store = StateStore::open_read_only(&path)?;
    // Every run kept (at most RUNS_KEPT) for the health rules, the newest few for the report.
    let history = match &store {
        Some(store) => store.last_runs(RUNS_KEPT as usize)?,
        None => vec![],
    };
    let heartbeat = match &store {
        Some(store) if agent_api => store.heartbeat()?,
        _ => None,
    };
    let now = jiff::Timestamp::now();
    let mut state = StateStatus {
        path: display_path(&path),
        exists: store.is_some(),
        last_runs: history.iter().take(RUNS_SHOWN).cloned().collect(),
        quarantined: 0,
        failed: 0,
        failing: Vec::new(),
        watermark: None,
        watermark_age_secs: None,
        dcs: Vec::new(),
    };
    if let Some(store) = &store {
        state.quarantined = store.quarantine()?.len();
        let failures = store.failures()?;
        state.failed = failures.len();
        state.failing = failures.into_iter().filter(|f| f.attempts > 1).collect();
        // A store written by an older ausi (schema 1) has no watermark table until a sync.
        let watermarks = store.watermarks().unwrap_or_default();
        state.watermark = watermarks.first().cloned();
        state.dcs = watermarks.into_iter().map(|w| DcStatus::new(w, now)).collect();
    }
    state.watermark_age_secs = state
        .watermark
        .as_ref()
        .and_then(|w| w.taken_at.parse::<jiff::Timestamp>().ok())
        .map(|taken| now.duration_since(taken).as_secs());

    // What the installed task or timer says wins over [schedule]; an agent that nothing
    // schedules (run by hand) is never "stale".
    let root = std::env::var_os("AUSI_INSTALL_ROOT").map(PathBuf::from);
    let installed = service::installed(&ctx.config_path, root.as_deref());
    let minutes = installed.as_ref().and_then(|i| i.interval_minutes).unwrap_or(c.schedule.interval_minutes).max(1);
    let interval = jiff::SignedDuration::from_mins(i64::from(minutes));
    let mut health = health::assess(&history, heartbeat.as_ref(), installed.is_some().then_some(interval), now);
    let bind_password = secret_status(d.bind_password.as_deref());
    let token = secret_status(tenant.token.as_deref());
    let synced = history.iter().any(|r| r.command == "sync" && !r.dry_run);
    let setup = Setup {
        url: !d.url.is_empty() || d.discover,
        // Kerberos binds as the process's identity (or a keytab): no account name to set.
        bind_dn: d.bind_dn.is_some() || d.bind == crate::config::BindMethod::Kerberos,
        bind_password: &bind_password,
        simple_bind: d.bind == crate::config::BindMethod::Simple,
        ous: !c.scope.ous.is_empty(),
        home_realm: tenant.home_realm.is_some(),
        token: &token,
        synced,
    };
    let mut reasons = setup_reasons(&setup, &display_path(&ctx.config_path));
    if let Some(i) = installed.as_ref().filter(|i| i.enabled == Some(false)) {
        reasons.push(HealthReason {
            code: "schedule-not-enabled",
            message: format!(
                "the schedule's unit files are present ({}) but the timers are not enabled, or systemd is not running: nothing runs the sync",
                display_path(&i.location)
            ),
        });
    }
    if !reasons.is_empty() {
        reasons.append(&mut health.reasons);
        health.reasons = reasons;
        health.healthy = false;
    }
    let last_sync_start = history
        .iter()
        .find(|r| r.command == "sync" && !r.dry_run)
        .and_then(|r| r.started_at.parse::<jiff::Timestamp>().ok());
    let schedule = ScheduleStatus {
        interval_minutes: minutes,
        full_sync_at: installed
            .as_ref()
            .and_then(|i| i.full_sync_at.clone())
            .unwrap_or(c.schedule.full_sync_at.clone()),
        installed: installed.as_ref().map(|i| display_path(&i.location)),
        enabled: installed.as_ref().and_then(|i| i.enabled),
        next_run: installed
            .as_ref()
            .filter(|i| i.enabled != Some(false))
            .and(last_sync_start)
            .and_then(|t| t.checked_add(interval).ok())
            .map(|t| t.to_string()),
        stale_after_minutes: installed.as_ref().map(|_| u64::from(minutes) * health::STALE_INTERVALS as u64),
    };

    let (status, status_source) = registration(tenant.home_realm.is_some(), agent_api, heartbeat.as_ref(), &history);
    let mut warnings = loaded.warnings;
    if !d.tls_verify {
        warnings
            .push(Warning::new("tls-verify-disabled", "TLS certificate verification is disabled (tls_verify = false)"));
    }
    if let Some(r) = history.iter().find(|r| r.command == "sync" && !r.dry_run).filter(|r| r.outcome.is_none()) {
        warnings.push(Warning::new(
            "run-unfinished",
            format!(
                "run {} (started {}) has not finished: it is running now, or it was stopped and the next run completes its work",
                r.id, r.started_at
            ),
        ));
    }
    if agent_api && heartbeat.as_ref().is_some_and(|h| h.last_success_at.is_none()) {
        warnings.push(Warning::new(
            "heartbeat-never-accepted",
            "the tenant has not accepted a heartbeat yet, so the agent stays Created there",
        ));
    }
    if state.quarantined > 0 {
        warnings.push(Warning::new(
            "users-quarantined",
            format!(
                "{} in scope {} quarantined: `ausi validate` lists them with their reasons",
                output::plural(state.quarantined as u64, "user"),
                if state.quarantined == 1 { "is" } else { "are" }
            ),
        ));
    }

    let report = StatusReport {
        version: env!("CARGO_PKG_VERSION"),
        config_path: display_path(&ctx.config_path),
        healthy: health.healthy,
        health_reasons: health.reasons,
        last_success_at: health.last_success_at,
        directory: DirectoryStatus {
            url: d.first_url().map(str::to_owned),
            urls: d.url.clone(),
            discover: d.discover,
            bind: d.bind,
            keytab: d.keytab.clone(),
            starttls: d.starttls,
            bind_dn: d.bind_dn.clone(),
            bind_password,
            base_dn: d.base_dn.clone(),
            ca_file: d.ca_file.as_deref().map(display_path),
            tls_verify: d.tls_verify,
            allow_plaintext_bind: d.allow_plaintext_bind,
            connect_timeout_secs: d.connect_timeout_secs,
            operation_timeout_secs: d.operation_timeout_secs,
            page_size: d.page_size,
        },
        scope: ScopeStatus { selected: c.scope.ous.clone(), excluded: c.scope.excluded.clone() },
        tenant: TenantStatus {
            registered: tenant.home_realm.is_some() && token.state == "stored",
            status,
            status_source,
            home_realm: tenant.home_realm.clone(),
            agent_name: tenant.agent_name.clone(),
            provisioning_policy: tenant.provisioning_policy.clone(),
            scim_url: tenant.scim_url.clone(),
            token,
            agent_api,
            password_sync: tenant.password_sync,
            heartbeat: heartbeat.as_ref().map(HeartbeatStatus::from),
        },
        schedule,
        state,
    };
    let exit = if report.healthy { ExitStatus::Ok } else { ExitStatus::Findings };
    let mut outcome = Outcome::new(Report::Status(Box::new(report)), exit);
    outcome.warnings = warnings;
    Ok(outcome)
}

impl StatusReport {
    pub fn table(&self) -> String {
        let d = &self.directory;
        let opt = |v: &Option<String>| v.as_deref().map(output::cell).unwrap_or_else(|| "-".to_owned());
        let mut t = output::table(&["Setting", "Value"]);
        let rows: Vec<(&str, String)> = vec![
            ("ausi version", self.version.to_owned()),
            ("configuration", output::cell(&self.config_path)),
            ("directory", opt(&d.url)),
            ("StartTLS", d.starttls.to_string()),
            ("bind account", opt(&d.bind_dn)),
            ("bind password", format!("{} ({})", opt(&d.bind_password.reference), d.bind_password.state)),
            ("base DN", d.base_dn.clone().map(|b| output::cell(&b)).unwrap_or_else(|| "from rootDSE".to_owned())),
            ("CA file", opt(&d.ca_file)),
            ("verify TLS", d.tls_verify.to_string()),
            ("plaintext bind allowed", d.allow_plaintext_bind.to_string()),
            ("tenant", if self.tenant.registered { opt(&self.tenant.home_realm) } else { "not registered".to_owned() }),
            ("selected OUs", self.scope.selected.len().to_string()),
            ("excluded sub-trees", self.scope.excluded.len().to_string()),
            ("agent name", opt(&self.tenant.agent_name)),
            (
                "agent status",
                match (&self.tenant.status, self.tenant.status_source) {
                    (Some(st), Some("tenant"))
                        if self.tenant.heartbeat.as_ref().is_some_and(|h| h.last_success_at.is_some()) =>
                    {
                        format!("{} (the tenant's answer to the last accepted heartbeat)", output::cell(st))
                    }
                    (Some(st), Some("tenant")) => format!("{} (no heartbeat accepted yet)", output::cell(st)),
                    (Some(st), _) => format!("{} (a plain SCIM tenant: from the runs)", output::cell(st)),
                    _ => "-".to_owned(),
                },
            ),
            ("last heartbeat", self.heartbeat_text()),
            ("password writeback", if self.tenant.password_sync { "on every sync" } else { "off" }.to_owned()),
            (
                "schedule",
                format!(
                    "every {} min, full sync daily at {}; {}",
                    self.schedule.interval_minutes,
                    output::cell(&self.schedule.full_sync_at),
                    match (&self.schedule.installed, self.schedule.enabled, &self.schedule.next_run) {
                        (Some(at), Some(false), _) => format!(
                            "unit files present ({}) but NOT enabled: nothing runs them (`systemctl enable --now ausi-sync.timer ausi-sync-full.timer` where systemd runs)",
                            output::cell(at)
                        ),
                        (Some(at), Some(true), Some(next)) =>
                            format!("scheduled and enabled ({}), next run due {}", output::cell(at), output::time(next)),
                        (Some(at), Some(true), None) => format!("scheduled and enabled ({})", output::cell(at)),
                        (Some(at), None, Some(next)) => {
                            format!("installed ({}), next run due {}", output::cell(at), output::time(next))
                        }
                        (Some(at), None, None) => format!("installed ({})", output::cell(at)),
                        (None, _, _) => "not installed (`ausi install-service`)".to_owned(),
                    }
                ),
            ),
            (
                "last successful sync",
                self.last_success_at.as_deref().map(output::time).unwrap_or_else(|| "-".to_owned()),
            ),
            (
                "state store",
                format!("{}{}", output::cell(&self.state.path), if self.state.exists { "" } else { " (no sync yet)" }),
            ),
            ("quarantined users", self.state.quarantined.to_string()),
            (
                "watermark",
                match (&self.state.watermark, self.state.watermark_age_secs) {
                    (Some(w), Some(age)) => {
                        format!("USN {} at {} ({} ago)", w.usn, output::time(&w.taken_at), human_age(age))
                    }
                    (Some(w), None) => format!("USN {} at {}", w.usn, output::time(&w.taken_at)),
                    _ => "none (the next sync is a full sync)".to_owned(),
                },
            ),
            ("objects failing", self.state.failed.to_string()),
        ];
        let mut rows = rows;
        for dc in &self.state.dcs {
            rows.push((
                "DC watermark",
                format!(
                    "{} ({}): USN {}{}",
                    dc.server.as_deref().map(output::cell).unwrap_or_else(|| output::cell(&dc.watermark.dc)),
                    dc.site.as_deref().map(output::cell).unwrap_or_else(|| "-".to_owned()),
                    dc.watermark.usn,
                    dc.age_secs.map(|a| format!(", {} ago", human_age(a))).unwrap_or_default()
                ),
            ));
        }
        for (k, v) in rows {
            t.add_row(vec![k.to_owned(), v]);
        }
        let mut out = if self.healthy {
            "Healthy.\n".to_owned()
        } else if self.health_reasons.iter().all(|r| SETUP_CODES.contains(&r.code)) {
            let mut text = "NOT READY: the agent is not set up yet. Next steps:\n".to_owned();
            for (n, r) in self.health_reasons.iter().enumerate() {
                text.push_str(&format!("  {}. {}\n", n + 1, output::cell(&r.message)));
            }
            text
        } else {
            let mut text = "UNHEALTHY:\n".to_owned();
            for r in &self.health_reasons {
                text.push_str(&format!("  {}: {}\n", r.code, output::cell(&r.message)));
            }
            text
        };
        out.push_str(&format!("{t}\n"));
        if !self.state.failing.is_empty() {
            let mut failing =
                output::table(&["Failing for more than one run", "Operation", "Runs", "Since", "Last answer"]);
            for f in &self.state.failing {
                failing.add_row(vec![
                    output::cell(&f.dn),
                    f.operation.clone(),
                    f.attempts.to_string(),
                    f.since.clone(),
                    output::cell(&f.error),
                ]);
            }
            out.push_str(&format!("{failing}\n"));
        }
        if !self.state.last_runs.is_empty() {
            let mut runs = output::table(&["Run", "Kind", "Started", "Duration", "Outcome", "Exit", "Counts"]);
            for r in &self.state.last_runs {
                let counts: Vec<String> = r
                    .counts
                    .as_object()
                    .map(|o| {
                        o.iter().filter(|(_, v)| v.as_u64().unwrap_or(0) > 0).map(|(k, v)| format!("{k} {v}")).collect()
                    })
                    .unwrap_or_default();
                let command = if r.command == "sync" { String::new() } else { format!("{} ", r.command) };
                // The newest failure's message is in the health reasons; JSON has every run's.
                let outcome = r.outcome.clone().unwrap_or_else(|| "did not finish".into());
                runs.add_row(vec![
                    r.id.to_string(),
                    format!("{command}{}{}", r.kind, if r.dry_run { " (dry run)" } else { "" }),
                    output::time(&r.started_at),
                    r.duration_ms.map(|d| human_duration(d.max(0).unsigned_abs())).unwrap_or_default(),
                    outcome,
                    r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                    counts.join(", "),
                ]);
            }
            out.push_str(&format!("{runs}\n"));
        }
        for o in &self.scope.selected {
            out.push_str(&format!("  selected: {}\n", output::cell(&o.dn)));
        }
        for o in &self.scope.excluded {
            out.push_str(&format!("  excluded: {}\n", output::cell(&o.dn)));
        }
        out
    }
}

/// What `setup_reasons` looks at: which steps of the quick start are done.
struct Setup<'a> {
    url: bool,
    bind_dn: bool,
    bind_password: &'a SecretStatus,
    /// A simple bind needs a stored password; Kerberos needs none.
    simple_bind: bool,
    ous: bool,
    home_realm: bool,
    token: &'a SecretStatus,
    synced: bool,
}

/// What an agent still lacks before it can work, in the order an administrator does it (the
/// quick start's order): the DC, its bind password, the OUs, the tenant, the first sync. Each is
/// a reason the agent is not healthy, with the command that fixes it.
fn setup_reasons(s: &Setup<'_>, config: &str) -> Vec<HealthReason> {
    let mut reasons = Vec::new();
    let mut add = |code: &'static str, message: String| reasons.push(HealthReason { code, message });
    if !s.url || !s.bind_dn {
        let missing = match (s.url, s.bind_dn) {
            (false, false) => "url and bind_dn",
            (false, true) => "url",
            _ => "bind_dn",
        };
        add(
            "directory-not-configured",
            format!("no domain controller to read: set {missing} in [directory] of {config} (see examples/agent.toml)"),
        );
    }
    if s.bind_dn && s.simple_bind && s.bind_password.state != "stored" {
        let reference = s.bind_password.reference.as_deref().unwrap_or("a reference");
        add(
            "bind-password-missing",
            format!(
                "the bind password is {} ({reference}): store it with `ausi list-ous --bind-password-stdin --save-bind-password`",
                s.bind_password.state
            ),
        );
    }
    if !s.ous {
        add(
            "no-ous-selected",
            "no OU is selected: choose them with `ausi select-ous --add DN` (`ausi list-ous` lists them)".to_owned(),
        );
    }
    if !s.home_realm {
        add(
            "not-registered",
            "the agent is not registered with a tenant: run `ausi register --home-realm URL --token-stdin`".to_owned(),
        );
    } else if s.token.state != "stored" {
        let reference = s.token.reference.as_deref().unwrap_or("no reference");
        add(
            "tenant-token-missing",
            format!(
                "the tenant token is {} ({reference}): run `ausi register` again with --token-stdin",
                s.token.state
            ),
        );
    }
    if !s.synced {
        add(
            "no-sync-yet",
            "no sync has run yet: run `ausi sync` (or `ausi install-service` to schedule it)".to_owned(),
        );
    }
    reasons
}

/// The registration status and where it comes from (`tenant` or `runs`), `None` when not
/// registered. With the agent API the tenant decides: `Created` until it accepts a heartbeat,
/// then its answer (kept through failed heartbeats). A plain SCIM tenant has no answer to give:
/// `Active` once a real sync has succeeded.
fn registration(
    registered: bool,
    agent_api: bool,
    heartbeat: Option<&HeartbeatRecord>,
    runs: &[RunRecord],
) -> (Option<String>, Option<&'static str>) {
    if !registered {
        return (None, None);
    }
    if agent_api {
        let answered = heartbeat.and_then(|h| h.tenant_status.clone());
        return (Some(answered.unwrap_or_else(|| "Created".to_owned())), Some("tenant"));
    }
    let synced = runs
        .iter()
        .any(|r| r.command == "sync" && !r.dry_run && matches!(r.outcome.as_deref(), Some("ok" | "findings")));
    (Some(if synced { "Active" } else { "Created" }.to_owned()), Some("runs"))
}

impl StatusReport {
    fn heartbeat_text(&self) -> String {
        match (&self.tenant.heartbeat, self.tenant.agent_api) {
            _ if self.tenant.home_realm.is_none() => "- (not registered)".to_owned(),
            (_, false) => "- (the tenant has no agent API)".to_owned(),
            (None, true) => "none yet".to_owned(),
            (Some(h), true) if h.failed => format!(
                "FAILED at {}: {} (last accepted: {})",
                output::time(&h.last_attempt_at),
                output::cell(h.error.as_deref().unwrap_or("")),
                output::time(h.last_success_at.as_deref().unwrap_or("never"))
            ),
            (Some(h), true) => format!("accepted at {}", output::time(&h.last_attempt_at)),
        }
    }
}

fn human_duration(ms: u64) -> String {
    match ms {
        m if m < 10_000 => format!("{:.1} s", m as f64 / 1000.0),
        m if m < 120_000 => format!("{} s", m / 1000),
        m => format!("{} min {} s", m / 60_000, (m % 60_000) / 1000),
    }
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: Option<&str>, dry_run: bool) -> RunRecord {
        RunRecord {
            id: 1,
            command: "sync".into(),
            kind: "full".into(),
            dry_run,
            started_at: "2026-05-01T10:00:00Z".into(),
            finished_at: outcome.map(|_| "2026-05-01T10:00:01Z".into()),
            duration_ms: outcome.map(|_| 1000),
            outcome: outcome.map(str::to_owned),
            exit_code: None,
            counts: serde_json::Value::Null,
            error: None,
        }
    }

    fn beat(status: Option<&str>, error: Option<&str>) -> HeartbeatRecord {
        HeartbeatRecord {
            tenant_status: status.map(str::to_owned),
            last_success_at: status.map(|_| "2026-05-01T10:00:02Z".into()),
            last_attempt_at: "2026-05-01T10:00:02Z".into(),
            last_error: error.map(str::to_owned),
        }
    }

    #[test]
    fn the_tenant_decides_the_registration_status_when_it_has_the_agent_api() {
        let ok = [run(Some("ok"), false)];
        assert_eq!(registration(false, true, None, &ok), (None, None));
        // A successful run is not enough: the tenant has not answered yet.
        assert_eq!(registration(true, true, None, &ok), (Some("Created".into()), Some("tenant")));
        let failed = beat(None, Some("connection refused"));
        assert_eq!(registration(true, true, Some(&failed), &ok), (Some("Created".into()), Some("tenant")));
        let active = beat(Some("Active"), None);
        assert_eq!(registration(true, true, Some(&active), &[]), (Some("Active".into()), Some("tenant")));
        // An outage keeps the last answer (health says the heartbeat failed).
        let outage = beat(Some("Active"), Some("HTTP 503"));
        assert_eq!(registration(true, true, Some(&outage), &[]), (Some("Active".into()), Some("tenant")));
        let suspended = beat(Some("Suspended"), None);
        assert_eq!(registration(true, true, Some(&suspended), &ok), (Some("Suspended".into()), Some("tenant")));
    }

    #[test]
    fn a_plain_scim_tenant_is_active_after_a_real_successful_run() {
        let created = (Some("Created".to_owned()), Some("runs"));
        assert_eq!(registration(true, false, None, &[]), created);
        assert_eq!(registration(true, false, None, &[run(Some("ok"), true)]), created, "a dry run");
        assert_eq!(registration(true, false, None, &[run(Some("error"), false), run(None, false)]), created);
        let active = (Some("Active".to_owned()), Some("runs"));
        assert_eq!(registration(true, false, None, &[run(Some("error"), false), run(Some("findings"), false)]), active);
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(1234), "1.2 s");
        assert_eq!(human_duration(45_000), "45 s");
        assert_eq!(human_duration(185_000), "3 min 5 s");
    }
}

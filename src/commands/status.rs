//! `ausi status`: what this agent is configured to do, without contacting anything.

use serde::Serialize;

use super::{Context, Report, display_path};
use crate::config::{self, OuRef};
use crate::error::Result;
use crate::exit::ExitStatus;
use crate::output::{self, Outcome};
use crate::secrets::SecretRef;
use crate::sync::mirror::Watermark;
use crate::sync::state::{RunRecord, StateStore};

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub version: &'static str,
    pub config_path: String,
    pub directory: DirectoryStatus,
    pub scope: ScopeStatus,
    pub tenant: TenantStatus,
    /// The state store: where it is, the last 10 runs (newest first), quarantine and failures.
    pub state: StateStatus,
}

#[derive(Debug, Serialize)]
pub struct StateStatus {
    pub path: String,
    pub exists: bool,
    pub last_runs: Vec<RunRecord>,
    pub quarantined: usize,
    pub failed: usize,
    /// Where the next delta starts: the last successful run's DC, USN and time.
    pub watermark: Option<Watermark>,
    pub watermark_age_secs: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct DirectoryStatus {
    pub url: Option<String>,
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
    /// `Created` until a sync has succeeded (or the tenant acknowledged a heartbeat), then `Active`.
    pub status: Option<&'static str>,
    pub home_realm: Option<String>,
    pub agent_name: Option<String>,
    pub provisioning_policy: Option<String>,
    pub scim_url: Option<String>,
    pub token: SecretStatus,
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
    let path = super::sync::state_path(&c, &ctx.config_path);
    let state = match StateStore::open_read_only(&path)? {
        Some(store) => StateStatus {
            path: display_path(&path),
            exists: true,
            last_runs: store.last_runs(10)?,
            quarantined: store.quarantine()?.len(),
            failed: store.failures()?.len(),
            // A store written by an older ausi (schema 1) has no watermark table until a sync.
            watermark: store.watermark().unwrap_or(None),
            watermark_age_secs: None,
        },
        None => StateStatus {
            path: display_path(&path),
            exists: false,
            last_runs: vec![],
            quarantined: 0,
            failed: 0,
            watermark: None,
            watermark_age_secs: None,
        },
    };
    let mut state = state;
    state.watermark_age_secs = state
        .watermark
        .as_ref()
        .and_then(|w| w.taken_at.parse::<jiff::Timestamp>().ok())
        .map(|taken| jiff::Timestamp::now().duration_since(taken).as_secs());
    let synced = state.last_runs.iter().any(|r| !r.dry_run && matches!(r.outcome.as_deref(), Some("ok" | "findings")));
    let token = secret_status(tenant.token.as_deref());
    let report = StatusReport {
        version: env!("CARGO_PKG_VERSION"),
        config_path: display_path(&ctx.config_path),
        directory: DirectoryStatus {
            url: d.url.clone(),
            starttls: d.starttls,
            bind_dn: d.bind_dn.clone(),
            bind_password: secret_status(d.bind_password.as_deref()),
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
            status: tenant.home_realm.as_ref().map(|_| if synced { "Active" } else { "Created" }),
            home_realm: tenant.home_realm.clone(),
            agent_name: tenant.agent_name.clone(),
            provisioning_policy: tenant.provisioning_policy.clone(),
            scim_url: tenant.scim_url.clone(),
            token,
        },
        state,
    };
    let mut outcome = Outcome::new(Report::Status(Box::new(report)), ExitStatus::Ok);
    outcome.warnings = loaded.warnings;
    if !d.tls_verify {
        outcome.warnings.push(output::Warning::new(
            "tls-verify-disabled",
            "TLS certificate verification is disabled (tls_verify = false)",
        ));
    }
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
            ("agent status", self.tenant.status.unwrap_or("-").to_owned()),
            (
                "state store",
                format!("{}{}", output::cell(&self.state.path), if self.state.exists { "" } else { " (no sync yet)" }),
            ),
            ("quarantined users", self.state.quarantined.to_string()),
            (
                "watermark",
                match (&self.state.watermark, self.state.watermark_age_secs) {
                    (Some(w), Some(age)) => format!("USN {} at {} ({} ago)", w.usn, w.taken_at, human_age(age)),
                    (Some(w), None) => format!("USN {} at {}", w.usn, output::cell(&w.taken_at)),
                    _ => "none (the next sync is a full sync)".to_owned(),
                },
            ),
            ("objects failing", self.state.failed.to_string()),
        ];
        for (k, v) in rows {
            t.add_row(vec![k.to_owned(), v]);
        }
        let mut out = format!("{t}\n");
        if !self.state.last_runs.is_empty() {
            let mut runs = output::table(&["Run", "Kind", "Started", "Outcome", "Exit", "Counts"]);
            for r in &self.state.last_runs {
                let counts: Vec<String> = r
                    .counts
                    .as_object()
                    .map(|o| {
                        o.iter().filter(|(_, v)| v.as_u64().unwrap_or(0) > 0).map(|(k, v)| format!("{k} {v}")).collect()
                    })
                    .unwrap_or_default();
                runs.add_row(vec![
                    r.id.to_string(),
                    format!("{}{}", r.kind, if r.dry_run { " (dry run)" } else { "" }),
                    r.started_at.clone(),
                    r.outcome.clone().unwrap_or_else(|| "did not finish".into()),
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

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

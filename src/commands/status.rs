//! `ausi status`: what this agent is configured to do, without contacting anything.

use serde::Serialize;

use super::{Context, Report, display_path};
use crate::config::{self, OuRef};
use crate::error::Result;
use crate::exit::ExitStatus;
use crate::output::{self, Outcome};
use crate::secrets::SecretRef;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub version: &'static str,
    pub config_path: String,
    pub directory: DirectoryStatus,
    pub scope: ScopeStatus,
    pub tenant: TenantStatus,
    /// Sync runs recorded in the state store (none until this agent has synchronised).
    pub last_runs: Vec<serde_json::Value>,
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
            home_realm: tenant.home_realm.clone(),
            agent_name: tenant.agent_name.clone(),
            provisioning_policy: tenant.provisioning_policy.clone(),
            scim_url: tenant.scim_url.clone(),
            token,
        },
        last_runs: Vec::new(),
    };
    let mut outcome = Outcome::new(Report::Status(report), ExitStatus::Ok);
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
            (
                "last runs",
                if self.last_runs.is_empty() { "none yet".to_owned() } else { self.last_runs.len().to_string() },
            ),
        ];
        for (k, v) in rows {
            t.add_row(vec![k.to_owned(), v]);
        }
        let mut out = format!("{t}\n");
        for o in &self.scope.selected {
            out.push_str(&format!("  selected: {}\n", output::cell(&o.dn)));
        }
        for o in &self.scope.excluded {
            out.push_str(&format!("  excluded: {}\n", output::cell(&o.dn)));
        }
        out
    }
}

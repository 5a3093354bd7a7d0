//! `ausi register`: connect this agent to a tenant. Verifies the token, records what the tenant
//! announces, probes the agent API, stores the token in the secret store and the rest in the
//! configuration.

use std::time::Duration;

use serde::Serialize;

use super::{Context, Report, display_path, read_stdin_secret};
use crate::cli::RegisterArgs;
use crate::config::{self, TenantCapabilities, TenantConfig};
use crate::error::{AppError, Result};
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::secrets::{SecretRef, SecretString};
use crate::tenant::agent::AgentApi;
use crate::tenant::{self, ClientOptions, ScimClient};

#[derive(Debug, Serialize)]
pub struct RegisterReport {
    pub config_path: String,
    pub home_realm: String,
    pub scim_url: String,
    pub agent_name: String,
    pub provisioning_policy: String,
    pub token: String,
    pub agent_api: bool,
    pub password_sync: bool,
    /// What the tenant can do, as stored in `[tenant.capabilities]`: the announcement with what
    /// the probes found (`filter_probed`).
    pub capabilities: TenantCapabilities,
    /// What `/ServiceProviderConfig` announced, beside what was found.
    pub announced: TenantCapabilities,
    /// How the filters were tried (absent when the tenant does not announce them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_probe: Option<tenant::scim::FilterProbe>,
    /// `Created` until the first successful heartbeat or sync, then `Active`.
    pub status: &'static str,
}

pub async fn run(ctx: &Context<'_>, args: &RegisterArgs) -> Result<Outcome> {
    let mut warnings = Vec::new();
    // An existing configuration must be valid before anything is sent or stored.
    let existing = ctx.config_or_none(&mut warnings)?;
    // Default, or a policy defined in the configuration ([policies.NAME]).
    let policies = existing.map(|c| c.policies).unwrap_or_default();
    if let Err(e) = crate::policy::Policy::resolve(&args.provisioning_policy, &policies) {
        return Err(AppError::usage(e.message).with_hint(format!(
            "define [policies.{}] in the configuration first, or pass one of {}",
            args.provisioning_policy,
            crate::policy::names(&policies).join(", ")
        )));
    }
    let home_realm = args.home_realm.trim_end_matches('/').to_owned();
    tenant::check_transport(&home_realm)?;
    let draft = TenantConfig {
        home_realm: Some(home_realm.clone()),
        scim_url: args.scim_url.clone(),
        ..TenantConfig::default()
    };
    let scim_url = tenant::scim_url(&draft).unwrap_or_default();
    tenant::check_transport(&scim_url)?;
    let agent_name = match &args.agent_name {
        Some(name) => name.clone(),
        None => host_name()?,
    };
    let token = read_token(args)?;

    let timeout = Duration::from_secs(30);
    let client = ScimClient::new(&scim_url, token.clone(), ClientOptions { timeout, ..ClientOptions::default() })?;
    // Registering is interactive: no scheduled run will retry it for the administrator.
    let unreachable = |e: tenant::TenantError| {
        let mut e = AppError::from(e);
        if e.kind == crate::error::ErrorKind::Temporary {
            e.hints = vec![format!(
                "check that {scim_url} is the tenant's SCIM URL and reachable from here, then run `ausi register` again"
            )];
        }
        e
    };
    let announced = client.service_provider_config().await.map_err(unreachable)?;
    client.check_token().await.map_err(unreachable)?;
    // Filters are tried, not trusted (README, "What ausi asks of the tenant").
    let probe = if announced.filter { Some(client.probe_filters().await.map_err(unreachable)?) } else { None };
    let mut capabilities = announced.clone();
    capabilities.filter_probed = probe.as_ref().map(|p| p.works);
    if let Some(p) = probe.as_ref().filter(|p| !p.works) {
        warnings.push(Warning::new(
            "tenant-filter-broken",
            format!("the tenant announces filters but they do not work ({}): ausi lists the tenant instead", p.how),
        ));
    }
    if !capabilities.patch {
        warnings.push(Warning::new(
            "tenant-no-patch",
            "the tenant does not announce PATCH: updates are sent as full replacements",
        ));
    }
    let agent_api = AgentApi::new(&home_realm, &agent_name, token.clone(), timeout)?.probe().await?;
    if args.password_sync && !agent_api {
        return Err(AppError::config(
            "--password-sync: the tenant has no agent API (404), so it cannot hand out password changes",
        )
        .with_hint("register without --password-sync; `ausi password-push --user` and `--batch` work without it"));
    }
    if !agent_api {
        warnings.push(Warning::new(
            "tenant-plain-scim",
            "the tenant has no agent API (404): provisioning works; heartbeats and password writeback are not available",
        ));
    }

    // The reference as the configuration holds it (a relative `file:` path is in the
    // configuration's folder, `--token-ref` included); the token goes where the next run reads it.
    let kept = config::written_value(&ctx.config_path, "tenant", "token")?;
    let reference = args.token_ref.clone().or(kept).unwrap_or_else(default_token_ref);
    SecretRef::parse(&reference)?;
    let secret = SecretRef::parse(&config::resolve_reference(&reference, &ctx.config_path))?;
    secret.store(&token)?;
    let tenant = TenantConfig {
        home_realm: Some(home_realm.clone()),
        agent_name: Some(agent_name.clone()),
        provisioning_policy: Some(args.provisioning_policy.clone()),
        scim_url: args.scim_url.clone(),
        token: Some(reference.clone()),
        agent_api: Some(agent_api),
        capabilities: Some(capabilities.clone()),
        password_sync: args.password_sync,
    };
    config::save_tenant(&ctx.config_path, &tenant)?;
    let report = RegisterReport {
        config_path: display_path(&ctx.config_path),
        home_realm,
        scim_url,
        agent_name,
        provisioning_policy: args.provisioning_policy.clone(),
        token: secret.to_string(),
        agent_api,
        password_sync: args.password_sync,
        capabilities,
        announced,
        filter_probe: probe,
        status: "Created",
    };
    let mut outcome = Outcome::new(Report::Register(report), ExitStatus::Ok);
    outcome.warnings = warnings;
    Ok(outcome)
}

fn read_token(args: &RegisterArgs) -> Result<SecretString> {
    use std::io::IsTerminal;
    if args.token_stdin {
        return read_stdin_secret("token");
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let typed = rpassword::prompt_password("Tenant access token: ")
            .map_err(|e| AppError::config("cannot read the token from the terminal").caused_by(&e))?;
        return Ok(SecretString::from(typed));
    }
    Err(AppError::usage("no token: pipe it in with --token-stdin (it is never accepted as an argument)"))
}

/// Windows keeps the token in Credential Manager; elsewhere a 0600 file beside the configuration
/// (relative in the file, so it stays beside the configuration wherever that moves).
fn default_token_ref() -> String {
    if cfg!(windows) { "keyring:ausi/tenant-token" } else { "file:tenant.token" }.to_owned()
}

pub(crate) fn host_name() -> Result<String> {
    let from_os = if cfg!(windows) {
        std::env::var("COMPUTERNAME").ok()
    } else {
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok().or_else(|| std::env::var("HOSTNAME").ok())
    };
    from_os
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| AppError::usage("cannot tell this machine's host name: pass --agent-name"))
}

impl RegisterReport {
    pub fn table(&self) -> String {
        let mut t = output::table(&["Setting", "Value"]);
        for (k, v) in [
            ("tenant", self.home_realm.as_str()),
            ("SCIM", self.scim_url.as_str()),
            ("agent", self.agent_name.as_str()),
            ("policy", self.provisioning_policy.as_str()),
            ("token stored in", self.token.as_str()),
            ("agent API", if self.agent_api { "yes" } else { "no (plain SCIM tenant)" }),
            ("status", self.status),
        ] {
            t.add_row(vec![k.to_owned(), output::cell(v)]);
        }
        let mut c = output::table(&["Capability", "Announced", "Used"]);
        let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let (a, u) = (&self.announced, &self.capabilities);
        let filter_used = match (&self.filter_probe, u.filters_work()) {
            (Some(p), true) => format!("yes (tried: {})", p.how),
            (Some(p), false) => format!("no: {} (ausi lists the tenant instead)", p.how),
            (None, _) => "no (ausi lists the tenant instead)".to_owned(),
        };
        let bulk = |c: &TenantCapabilities| {
            if c.bulk {
                format!("yes ({} operations, {} bytes)", c.bulk_max_operations, c.bulk_max_payload)
            } else {
                yes(false)
            }
        };
        for (k, announced, used) in [
            ("patch", yes(a.patch), yes(u.patch)),
            ("bulk", bulk(a), bulk(u)),
            ("filter", yes(a.filter), filter_used),
            ("etag", yes(a.etag), "not used".to_owned()),
        ] {
            c.add_row(vec![k.to_owned(), announced, output::cell(&used)]);
        }
        format!("{t}\n{c}\nRegistered; the configuration is in {}.\n", output::cell(&self.config_path))
    }
}

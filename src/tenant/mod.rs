//! The target side: the tenant's SCIM 2.0 service and its optional agent API.

pub mod agent;
pub mod scim;

use std::time::Duration;

use crate::config::TenantConfig;
use crate::error::{AppError, ErrorKind};
use crate::secrets::{SecretRef, SecretString};
pub use scim::{Capabilities, ClientOptions, ResourceKind, ScimClient, TenantError};

impl From<TenantError> for AppError {
    fn from(e: TenantError) -> Self {
        let kind = match &e {
            TenantError::Unauthorized { .. } => ErrorKind::Permission,
            TenantError::Unavailable { .. } => ErrorKind::Temporary,
            TenantError::InvalidUrl(_) => ErrorKind::Config,
            TenantError::Rejected(_) | TenantError::NotFound | TenantError::Protocol(_) => ErrorKind::Internal,
        };
        // Every message but one already starts with "the tenant".
        let message = e.to_string();
        let message = if message.contains("tenant") { message } else { format!("the tenant: {message}") };
        let app = AppError::new(kind, message);
        match kind {
            ErrorKind::Permission => app.with_hint(
                "the tenant refused the token: create a new one (Directory Manager > Directory Sync) and run `ausi register` again",
            ),
            ErrorKind::Temporary => {
                app.with_hint("the tenant is unreachable or busy: try again later (a scheduled run retries by itself)")
            }
            _ => app,
        }
    }
}

/// `{home_realm}/scim/v2` unless the configuration names the SCIM URL.
pub fn scim_url(tenant: &TenantConfig) -> Option<String> {
    tenant
        .scim_url
        .clone()
        .or_else(|| tenant.home_realm.as_ref().map(|r| format!("{}/scim/v2", r.trim_end_matches('/'))))
}

/// A token travels only over HTTPS, except to this machine (tests, a local proxy).
pub fn check_transport(url: &str) -> Result<(), AppError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err(AppError::usage(format!("{url} is not an http(s) URL")));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(AppError::config(format!("refusing to send the tenant token over plain http to {url}: use https://")))
    }
}

/// The registered tenant's SCIM client, with the token from the secret store.
pub fn client(tenant: &TenantConfig, timeout: Duration) -> Result<ScimClient, AppError> {
    let url = scim_url(tenant).ok_or_else(|| {
        AppError::config("the agent is not registered with a tenant").with_hint("run `ausi register --home-realm URL`")
    })?;
    check_transport(&url)?;
    let token = token(tenant)?;
    Ok(ScimClient::new(&url, token, ClientOptions { timeout, ..ClientOptions::default() })?)
}

/// The registered tenant's agent API (heartbeat, password changes, password policy).
pub fn agent_api(tenant: &TenantConfig, timeout: Duration) -> Result<agent::AgentApi, AppError> {
    let realm = tenant.home_realm.as_deref().ok_or_else(|| {
        AppError::config("the configuration has no tenant.home_realm").with_hint("run `ausi register` again")
    })?;
    check_transport(realm)?;
    let name = tenant.agent_name.clone().unwrap_or_default();
    Ok(agent::AgentApi::new(realm, &name, token(tenant)?, timeout)?)
}

pub fn token(tenant: &TenantConfig) -> Result<SecretString, AppError> {
    let reference = tenant.token.as_deref().ok_or_else(|| {
        AppError::config("the configuration has no tenant.token reference").with_hint("run `ausi register` again")
    })?;
    Ok(SecretRef::parse(reference)?.resolve()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_only_over_https_or_loopback() {
        assert!(check_transport("https://acme.example.com/scim/v2").is_ok());
        assert!(check_transport("http://127.0.0.1:18080/t/v2").is_ok());
        assert!(check_transport("http://localhost/scim").is_ok());
        assert!(check_transport("http://[::1]:8080/scim").is_ok());
        assert!(check_transport("http://acme.example.com/scim/v2").is_err());
        assert!(check_transport("http://127.0.0.1.evil.example/scim").is_err());
        assert!(check_transport("ftp://x").is_err());
    }

    #[test]
    fn scim_url_defaults_to_the_realm() {
        let t = TenantConfig { home_realm: Some("https://acme.example.com/".into()), ..Default::default() };
        assert_eq!(scim_url(&t).as_deref(), Some("https://acme.example.com/scim/v2"));
    }
}

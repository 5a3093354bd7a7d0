//! The target side: the tenant's SCIM 2.0 service and its optional agent API.

pub mod agent;
pub mod paging;
pub mod protocol;
pub mod retry;
pub mod schemas;
pub mod scim;

use std::time::Duration;

use crate::config::TenantConfig;
use crate::error::{AppError, ErrorKind};
use crate::secrets::{SecretRef, SecretString};
pub use scim::{Capabilities, ClientOptions, ResourceKind, ScimClient, TenantError};

use futures_util::future::BoxFuture;
use serde_json::Value;

use scim::{BulkOperation, BulkOutcome, Listing};

/// The tenant as the applier sees it: SCIM resources written and read, with typed errors
/// ([`TenantError`]: `Rejected` is the object's own permanent failure, `Unavailable` a
/// temporary one after the retry policy gave up, `Unauthorized` the token's). [`ScimClient`]
/// is the implementation; tests use an in-memory tenant.
pub trait Tenant: Sync {
    /// `POST`: the created resource, with its `id`.
    fn create<'a>(&'a self, kind: ResourceKind, body: &'a Value) -> BoxFuture<'a, Result<Value, TenantError>>;
    /// `PUT`: the resource the tenant answered with (`None`: no body).
    fn replace<'a>(
        &'a self,
        kind: ResourceKind,
        id: &'a str,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Value>, TenantError>>;
    /// `PATCH` with these operations: the resource answered with (`None`: `204`).
    fn patch<'a>(
        &'a self,
        kind: ResourceKind,
        id: &'a str,
        operations: &'a [Value],
    ) -> BoxFuture<'a, Result<Option<Value>, TenantError>>;
    /// `DELETE`; a resource already gone is a success.
    fn delete<'a>(&'a self, kind: ResourceKind, id: &'a str) -> BoxFuture<'a, Result<(), TenantError>>;
    /// `GET` one resource; `None` when it is gone.
    fn get<'a>(&'a self, kind: ResourceKind, id: &'a str) -> BoxFuture<'a, Result<Option<Value>, TenantError>>;
    /// Resources whose `attribute` equals `value` (a filter; at most two).
    fn find<'a>(
        &'a self,
        kind: ResourceKind,
        attribute: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Value>, TenantError>>;
    /// Every resource of a kind, paged.
    fn listing<'a>(
        &'a self,
        kind: ResourceKind,
        page_size: u32,
        attributes: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Listing, TenantError>>;
    /// Every resource of a kind, paged, handed to `each` as it is read (the answer's
    /// `resources` stay empty): a long listing never sits in memory whole. Up to
    /// `concurrency` pages are asked for at once ([`paging`]).
    fn listing_each<'a>(
        &'a self,
        kind: ResourceKind,
        page_size: u32,
        attributes: Option<&'a str>,
        _concurrency: usize,
        each: &'a mut (dyn FnMut(Value) + Send),
    ) -> BoxFuture<'a, Result<Listing, TenantError>> {
        Box::pin(async move {
            let mut listing = self.listing(kind, page_size, attributes).await?;
            std::mem::take(&mut listing.resources).into_iter().for_each(each);
            Ok(listing)
        })
    }
    /// One `/Bulk` request: an outcome per operation.
    fn bulk<'a>(&'a self, operations: &'a [BulkOperation<'a>]) -> BoxFuture<'a, Result<Vec<BulkOutcome>, TenantError>>;
}

impl Tenant for ScimClient {
    fn create<'a>(&'a self, kind: ResourceKind, body: &'a Value) -> BoxFuture<'a, Result<Value, TenantError>> {
        Box::pin(ScimClient::create(self, kind, body))
    }
    fn replace<'a>(
        &'a self,
        kind: ResourceKind,
        id: &'a str,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Value>, TenantError>> {
        Box::pin(self.replace_answer(kind, id, body))
    }
    fn patch<'a>(
        &'a self,
        kind: ResourceKind,
        id: &'a str,
        operations: &'a [Value],
    ) -> BoxFuture<'a, Result<Option<Value>, TenantError>> {
        Box::pin(self.patch_answer(kind, id, operations))
    }
    fn delete<'a>(&'a self, kind: ResourceKind, id: &'a str) -> BoxFuture<'a, Result<(), TenantError>> {
        Box::pin(ScimClient::delete(self, kind, id))
    }
    fn get<'a>(&'a self, kind: ResourceKind, id: &'a str) -> BoxFuture<'a, Result<Option<Value>, TenantError>> {
        Box::pin(ScimClient::get(self, kind, id))
    }
    fn find<'a>(
        &'a self,
        kind: ResourceKind,
        attribute: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Value>, TenantError>> {
        Box::pin(ScimClient::find(self, kind, attribute, value))
    }
    fn listing<'a>(
        &'a self,
        kind: ResourceKind,
        page_size: u32,
        attributes: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Listing, TenantError>> {
        Box::pin(ScimClient::listing(self, kind, page_size, attributes))
    }
    fn listing_each<'a>(
        &'a self,
        kind: ResourceKind,
        page_size: u32,
        attributes: Option<&'a str>,
        concurrency: usize,
        each: &'a mut (dyn FnMut(Value) + Send),
    ) -> BoxFuture<'a, Result<Listing, TenantError>> {
        Box::pin(ScimClient::listing_each(self, kind, page_size, attributes, concurrency, each))
    }
    fn bulk<'a>(&'a self, operations: &'a [BulkOperation<'a>]) -> BoxFuture<'a, Result<Vec<BulkOutcome>, TenantError>> {
        Box::pin(ScimClient::bulk(self, operations))
    }
}

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

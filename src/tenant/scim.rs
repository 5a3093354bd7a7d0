//! SCIM 2.0 client (RFC 7643 schema, RFC 7644 protocol) for provisioning a tenant.
//!
//! One [`ScimClient`] speaks to one SCIM base URL (e.g. `https://acme.example.com/scim/v2`)
//! with a bearer token. Every call retries what is worth retrying (429/503 with `Retry-After`,
//! other 5xx, 408 and transport errors, with exponential backoff and full jitter) and maps the
//! rest into [`TenantError`]. The token goes into the `Authorization` header only: it is never
//! in a `Debug` output or an error message (a server that echoes it back gets it redacted).
//!
//! Self-contained: no `crate::` paths, no logging.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::paging::Page;
pub use super::protocol::*;
pub use super::retry::RetryPolicy;
use super::retry::{Disposition, Next, parse_retry_after};

const SCIM_JSON: &str = "application/scim+json";
const ACCEPT_VALUE: &str = "application/scim+json, application/json";
const REDACTED: &str = "[REDACTED]";
/// Longest piece of a non-SCIM error body kept as `detail`.
const MAX_RAW_DETAIL: usize = 300;

/// The two SCIM resource types ausi provisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    /// The endpoint below the base URL: `Users` or `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }

    /// A member's `type`: `User` or `Group` (RFC 7643 §4.2).
    pub fn type_name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    /// The core schema URN of the resource type (RFC 7643 §4).
    pub fn schema(self) -> &'static str {
        match self {
            ResourceKind::User => "urn:ietf:params:scim:schemas:core:2.0:User",
            ResourceKind::Group => "urn:ietf:params:scim:schemas:core:2.0:Group",
        }
    }
}

/// What the tenant announces in `/ServiceProviderConfig`; anything missing is `false`/0.
/// `register` records it in the configuration as `[tenant.capabilities]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capabilities {
    pub patch: bool,
    pub bulk: bool,
    pub bulk_max_operations: u32,
    pub bulk_max_payload: u64,
    pub filter: bool,
    pub filter_max_results: u32,
    pub etag: bool,
    /// What `register` found when it tried the filters (`None`: not probed, e.g. a configuration
    /// written by an older release; then the announcement is trusted). A tenant that announces
    /// filters but answers `400 invalidFilter`, or ignores them, gets `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_probed: Option<bool>,
}

impl Capabilities {
    /// Filters are used only when announced and, where probed, found working.
    pub fn filters_work(&self) -> bool {
        self.filter && self.filter_probed != Some(false)
    }
}

/// Timeouts and retry policy (the one the agent API uses too).
pub type ClientOptions = RetryPolicy;

/// The SCIM error body (RFC 7644 §3.12) or what we know about a failed call.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct ScimErrorInfo {
    /// The HTTP status of the answer.
    pub status: u16,
    pub scim_type: Option<String>,
    pub detail: Option<String>,
}

impl fmt::Display for ScimErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(t) = &self.scim_type {
            write!(f, " ({t})")?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

fn detail_suffix(detail: &Option<String>) -> String {
    match detail {
        Some(d) => format!(": {d}"),
        None => String::new(),
    }
}

/// What trying the tenant's filters showed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FilterProbe {
    pub works: bool,
    /// What was tried and what came back.
    pub how: String,
    /// A probe user was created and deleted again (the tenant held no user to try with).
    pub wrote: bool,
}

/// Why a call to the tenant failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// 401/403: token rejected or not allowed.
    #[error("the tenant refused the token (HTTP {status}){}", detail_suffix(.detail))]
    Unauthorized { status: u16, detail: Option<String> },
    /// Retries exhausted on 429/503/5xx/408/transport errors, or a Retry-After beyond max_retry_after.
    #[error("the tenant is unavailable after {attempts} attempt(s): {last}")]
    Unavailable { attempts: u32, last: String },
    /// Any other 4xx (409 uniqueness included): the object's own failure; not retried.
    #[error("the tenant rejected the request: {0}")]
    Rejected(ScimErrorInfo),
    /// 404 on an id.
    #[error("no such resource on the tenant (HTTP 404)")]
    NotFound,
    /// The answer was not what SCIM promises (bad JSON, missing id).
    #[error("the tenant's answer breaks the SCIM protocol: {0}")]
    Protocol(String),
    #[error("invalid SCIM request: {0}")]
    InvalidUrl(String),
}

impl TenantError {
    /// `400 invalidFilter`: the tenant cannot filter (RFC 7644 §3.4.2.2) although it may say so.
    pub fn is_invalid_filter(&self) -> bool {
        matches!(self, TenantError::Rejected(info)
            if info.status == 400 && info.scim_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("invalidFilter")))
    }

    /// A 409 (e.g. `uniqueness` on create: the object already exists there).
    pub fn is_conflict(&self) -> bool {
        matches!(self, TenantError::Rejected(info) if info.status == 409)
    }
}

/// Whether a 404 means "this id is gone" or "this endpoint is wrong".
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Id,
    Collection,
}

/// A failed attempt that may be retried.
struct Retryable {
    reason: String,
    retry_after: Option<std::time::Duration>,
}

/// A SCIM 2.0 client for one tenant.
pub struct ScimClient {
    http: reqwest::Client,
    base_url: String,
    token: SecretString,
    options: ClientOptions,
    requests: AtomicU64,
    write_requests: AtomicU64,
}

impl fmt::Debug for ScimClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScimClient")
            .field("base_url", &self.base_url)
            .field("token", &REDACTED)
            .field("options", &self.options)
            .field("requests", &self.requests())
            .field("write_requests", &self.write_requests())
            .finish()
    }
}

impl ScimClient {
    /// A client for `base_url` (`http://` or `https://`, no credentials, query or fragment).
    /// Surrounding whitespace of the token (a trailing newline from a file) is ignored.
    pub fn new(base_url: &str, token: SecretString, options: ClientOptions) -> Result<ScimClient, TenantError> {
        let url = reqwest::Url::parse(base_url.trim())
            .map_err(|e| TenantError::InvalidUrl(format!("cannot parse the SCIM base URL: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(TenantError::InvalidUrl(format!(
                "the SCIM base URL must be http:// or https://, not {}://",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(TenantError::InvalidUrl("the SCIM base URL has no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Not echoed: the user-info part may hold a password.
            return Err(TenantError::InvalidUrl(
                "the SCIM base URL must not carry credentials (the token goes in the header)".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(TenantError::InvalidUrl("the SCIM base URL must not have a query or fragment".into()));
        }
        let trimmed = token.expose_secret().trim();
        if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TenantError::Unauthorized {
                status: 0,
                detail: Some("the token is empty or has characters an HTTP header cannot carry".into()),
            });
        }
        let token = SecretString::from(trimmed);
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.timeout)
            .user_agent(concat!("ausi/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TenantError::InvalidUrl(format!("cannot set up the HTTP client: {e}")))?;
        Ok(ScimClient {
            http,
            base_url: url.as_str().trim_end_matches('/').to_string(),
            token,
            options,
            requests: AtomicU64::new(0),
            write_requests: AtomicU64::new(0),
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /ServiceProviderConfig`: what the tenant announces.
    pub async fn service_provider_config(&self) -> Result<Capabilities, TenantError> {
        let url = format!("{}/ServiceProviderConfig", self.base_url);
        let body = self.send(Method::GET, &url, None, Target::Collection).await?;
        let v = parse_json(&body)?;
        if !v.is_object() {
            return Err(TenantError::Protocol("ServiceProviderConfig is not a JSON object".into()));
        }
        Ok(parse_capabilities(&v))
    }

    /// `GET /Schemas` (RFC 7644 §4): the schemas the tenant serves, or `None` when it does not
    /// serve the endpoint (404 or 501: mandatory in the RFC, but real providers omit it).
    pub async fn schemas(&self) -> Result<Option<super::schemas::TenantSchemas>, TenantError> {
        let url = format!("{}/Schemas", self.base_url);
        match self.send(Method::GET, &url, None, Target::Collection).await {
            Ok(body) => {
                super::schemas::TenantSchemas::parse(&parse_json(&body)?).map(Some).map_err(TenantError::Protocol)
            }
            Err(TenantError::Rejected(info)) if matches!(info.status, 404 | 501) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An authenticated cheap call (`GET /Users?count=1`): some servers answer
    /// `/ServiceProviderConfig` without a token.
    pub async fn check_token(&self) -> Result<(), TenantError> {
        let url = format!("{}/Users?count=1", self.base_url);
        self.send(Method::GET, &url, None, Target::Collection).await.map(|_| ())
    }

    /// `GET /{Users|Groups}?filter=<attribute> eq "<value>"&count=2`: at most two matches,
    /// enough to tell "none", "one" and "ambiguous" apart.
    pub async fn find(&self, kind: ResourceKind, attribute: &str, value: &str) -> Result<Vec<Value>, TenantError> {
        if attribute.is_empty() || !attribute.bytes().all(|b| b.is_ascii_alphanumeric() || b".:_-$".contains(&b)) {
            return Err(TenantError::InvalidUrl(format!("not a SCIM attribute path: {attribute:?}")));
        }
        Ok(self.filter_total(kind, attribute, value).await?.0)
    }

    /// Whether the `eq` filters ausi uses work (`externalId` on users and groups, `userName`
    /// on users), tried rather than trusted: a filter for a value no one has must answer 200
    /// with no resource (not `400 invalidFilter`, not everyone), and a filter for a resource
    /// the tenant holds must find exactly that resource. A kind of which the tenant holds no
    /// resource with an externalId gets a probe resource (a user is inactive, named
    /// `ausi-probe-…`), found by filter and deleted again; `FilterProbe::wrote` says so.
    pub async fn probe_filters(&self) -> Result<FilterProbe, TenantError> {
        let nobody = format!("ausi-probe-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
        let refused = |e: TenantError, wrote: bool| match e {
            TenantError::Rejected(info) => {
                Ok(FilterProbe { works: false, how: format!("a filter is answered {info}"), wrote })
            }
            e => Err(e),
        };
        let checks =
            [(ResourceKind::User, "externalId"), (ResourceKind::User, "userName"), (ResourceKind::Group, "externalId")];
        for (kind, attribute) in checks {
            match self.filter_total(kind, attribute, &nobody).await {
                Ok((found, n)) if !found.is_empty() || n > 0 => {
                    let how = format!(
                        "{} {attribute} eq \"<a value no one has>\" answered {n} resources: the filter is ignored",
                        kind.endpoint()
                    );
                    return Ok(FilterProbe { works: false, how, wrote: false });
                }
                Ok(_) => {}
                Err(e) => return refused(e, false),
            }
        }
        // Resources the tenant holds must be found, and only they.
        let mut wrote = false;
        let mut tried = Vec::new();
        for kind in [ResourceKind::User, ResourceKind::Group] {
            let url = format!("{}/{}?startIndex=1&count=50", self.base_url, kind.endpoint());
            let body = self.send(Method::GET, &url, None, Target::Collection).await?;
            let (listed, _) = parse_list_response(&body)?;
            let text = |r: &Value, k: &str| r[k].as_str().filter(|v| !v.trim().is_empty()).map(str::to_owned);
            let held = listed.iter().find_map(|r| Some((text(r, "id")?, text(r, "externalId")?, text(r, "userName"))));
            let (id, external, user_name, probe) = match held {
                Some((id, x, u)) => (id, x, u, false),
                None => {
                    let name = format!("{nobody}@probe.invalid");
                    let body = match kind {
                        ResourceKind::User => serde_json::json!({
                            "schemas": [kind.schema()], "userName": name, "externalId": nobody,
                            "name": {"givenName": "ausi", "familyName": "probe"},
                            "emails": [{"value": name, "primary": true}], "active": false,
                        }),
                        ResourceKind::Group => {
                            serde_json::json!({"schemas": [kind.schema()], "displayName": nobody, "externalId": nobody})
                        }
                    };
                    let created = self.create(kind, &body).await?;
                    wrote = true;
                    let user_name = (kind == ResourceKind::User).then_some(name);
                    (created["id"].as_str().unwrap_or_default().to_owned(), nobody.clone(), user_name, true)
                }
            };
            let mut lookups = vec![("externalId", external)];
            lookups.extend(user_name.map(|u| ("userName", u)));
            let mut result = Ok(None);
            for (attribute, value) in lookups {
                match self.filter_total(kind, attribute, &value).await {
                    Ok((found, n)) => {
                        let ids: Vec<&str> = found.iter().filter_map(|r| r["id"].as_str()).collect();
                        tried.push(format!("{} {attribute} eq", kind.endpoint()));
                        if ids != [id.as_str()] || n > 1 {
                            result = Ok(Some(format!(
                                "{} {attribute} eq for a resource the tenant holds answered {n} resources",
                                kind.endpoint()
                            )));
                            break;
                        }
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if probe {
                self.delete(kind, &id).await?;
            }
            match result {
                Ok(None) => {}
                Ok(Some(how)) => return Ok(FilterProbe { works: false, how, wrote }),
                Err(e) => return refused(e, wrote),
            }
        }
        let how = format!("{} found exactly the resource that has the value", tried.join(", "));
        Ok(FilterProbe { works: true, how, wrote })
    }

    /// `GET /{kind}?filter=<attribute> eq "<value>"&count=2`: the resources and `totalResults`.
    async fn filter_total(
        &self,
        kind: ResourceKind,
        attribute: &str,
        value: &str,
    ) -> Result<(Vec<Value>, u64), TenantError> {
        let filter = format!("{attribute} eq \"{}\"", escape_filter_value(value));
        let url = format!("{}/{}?filter={}&count=2", self.base_url, kind.endpoint(), percent_encode(&filter));
        let body = self.send(Method::GET, &url, None, Target::Collection).await?;
        let (resources, total) = parse_list_response(&body)?;
        Ok((resources, total.unwrap_or(0)))
    }

    /// `POST /{Users|Groups}`: the created resource, with its `id`.
    pub async fn create(&self, kind: ResourceKind, body: &Value) -> Result<Value, TenantError> {
        let url = format!("{}/{}", self.base_url, kind.endpoint());
        let answer = self.send(Method::POST, &url, Some(body), Target::Collection).await?;
        let created = parse_json(&answer)?;
        match created.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok(created),
            _ => Err(TenantError::Protocol(format!("the created {} has no \"id\"", kind.endpoint()))),
        }
    }

    /// `PUT /{Users|Groups}/{id}`.
    pub async fn replace(&self, kind: ResourceKind, id: &str, body: &Value) -> Result<(), TenantError> {
        self.replace_answer(kind, id, body).await.map(|_| ())
    }

    /// `PUT /{Users|Groups}/{id}`: the resource the tenant answered with (`None`: no body).
    pub async fn replace_answer(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
    ) -> Result<Option<Value>, TenantError> {
        let url = self.resource_url(kind, id)?;
        self.send(Method::PUT, &url, Some(body), Target::Id).await.map(|b| resource_answer(&b))
    }

    /// `PATCH /{Users|Groups}/{id}` with a PatchOp message; `200` + body and `204` both succeed.
    pub async fn patch(&self, kind: ResourceKind, id: &str, operations: &[Value]) -> Result<(), TenantError> {
        self.patch_answer(kind, id, operations).await.map(|_| ())
    }

    /// Like [`ScimClient::patch`]: the resource the tenant answered with (`None`: `204`).
    pub async fn patch_answer(
        &self,
        kind: ResourceKind,
        id: &str,
        operations: &[Value],
    ) -> Result<Option<Value>, TenantError> {
        let url = self.resource_url(kind, id)?;
        self.send(Method::PATCH, &url, Some(&patch_message(operations)), Target::Id).await.map(|b| resource_answer(&b))
    }

    /// `POST /Bulk` (RFC 7644 §3.7) without `failOnErrors` (some servers stop at the first
    /// error when it is given): one outcome per operation, in the order of the request.
    /// Retrying a whole request after a lost answer may repeat creates; those come back as 409
    /// and the caller resolves them like any other conflict.
    pub async fn bulk(&self, operations: &[BulkOperation<'_>]) -> Result<Vec<BulkOutcome>, TenantError> {
        let body = bulk_request(operations).map_err(unserializable)?;
        let url = format!("{}/Bulk", self.base_url);
        let answer = self.send_bytes(Method::POST, &url, Some(body), Target::Collection).await?;
        let mut outcomes = bulk_outcomes(&answer, operations)?;
        for o in &mut outcomes {
            if let Some(e) = &mut o.error {
                e.scim_type = e.scim_type.take().map(|t| self.redact(t));
                e.detail = e.detail.take().map(|d| self.redact(d));
            }
        }
        Ok(outcomes)
    }

    /// `DELETE /{Users|Groups}/{id}`; a 404 counts as success (already gone).
    pub async fn delete(&self, kind: ResourceKind, id: &str) -> Result<(), TenantError> {
        let url = self.resource_url(kind, id)?;
        match self.send(Method::DELETE, &url, None, Target::Id).await {
            Ok(_) | Err(TenantError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /{Users|Groups}/{id}`; `None` on 404.
    pub async fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<Value>, TenantError> {
        let url = self.resource_url(kind, id)?;
        match self.send(Method::GET, &url, None, Target::Id).await {
            Ok(body) => {
                let v = parse_json(&body)?;
                if v.is_object() {
                    Ok(Some(v))
                } else {
                    Err(TenantError::Protocol(format!(
                        "GET {} answered with something else than an object",
                        kind.endpoint()
                    )))
                }
            }
            Err(TenantError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every resource of a kind, paged with `startIndex`/`count` until `totalResults` is reached.
    /// A page that comes back empty before then is a protocol error (never a silent partial list).
    pub async fn list_all(&self, kind: ResourceKind, page_size: u32) -> Result<Vec<Value>, TenantError> {
        self.list(kind, page_size, None).await
    }

    /// Like [`ScimClient::list_all`], asking only for `attributes` (comma-separated; `id` always comes).
    pub async fn list(
        &self,
        kind: ResourceKind,
        page_size: u32,
        attributes: Option<&str>,
    ) -> Result<Vec<Value>, TenantError> {
        self.listing(kind, page_size, attributes).await.map(|l| l.resources)
    }

    /// Every resource of a kind, paged with `startIndex`/`count` (RFC 7644 §3.4.2.4), one page
    /// after the other, with the number of pages it took and whether it is complete (see
    /// [`super::paging`]: a server may cap `count` or ignore it; one that ignores `startIndex` is
    /// a protocol error).
    pub async fn listing(
        &self,
        kind: ResourceKind,
        page_size: u32,
        attributes: Option<&str>,
    ) -> Result<Listing, TenantError> {
        let mut all = Vec::new();
        let listing = self.listing_each(kind, page_size, attributes, 1, &mut |r| all.push(r)).await?;
        Ok(Listing { resources: all, ..listing })
    }

    /// [`ScimClient::listing`] with up to `concurrency` pages in flight, each resource handed to
    /// `each` as its page is read (the answer's `resources` stay empty).
    pub async fn listing_each(
        &self,
        kind: ResourceKind,
        page_size: u32,
        attributes: Option<&str>,
        concurrency: usize,
        each: &mut (dyn FnMut(Value) + Send),
    ) -> Result<Listing, TenantError> {
        let only = attributes.map(|a| format!("&attributes={}", percent_encode(a))).unwrap_or_default();
        let only = only.as_str();
        let mut fetch = |start: u64, count: u32| -> BoxFuture<'_, Result<Page, TenantError>> {
            let url = format!("{}/{}?startIndex={start}&count={count}{only}", self.base_url, kind.endpoint());
            Box::pin(async move { Ok(Page::new(self.send(Method::GET, &url, None, Target::Collection).await?)) })
        };
        super::paging::read_pages(kind.endpoint(), page_size, concurrency, &mut fetch, each).await
    }

    /// Write requests (POST/PUT/PATCH/DELETE) actually sent, retries included.
    pub fn write_requests(&self) -> u64 {
        self.write_requests.load(Ordering::Relaxed)
    }

    /// All requests actually sent, retries included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn resource_url(&self, kind: ResourceKind, id: &str) -> Result<String, TenantError> {
        if id.is_empty() {
            return Err(TenantError::InvalidUrl("empty resource id".into()));
        }
        Ok(format!("{}/{}/{}", self.base_url, kind.endpoint(), percent_encode(id)))
    }

    fn auth_header(&self) -> Result<HeaderValue, TenantError> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret())).map_err(|_| {
            TenantError::Unauthorized { status: 0, detail: Some("the token cannot be sent in an HTTP header".into()) }
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// Replaces the token wherever a server echoed it back.
    fn redact(&self, s: String) -> String {
        let token = self.token.expose_secret();
        if !token.is_empty() && s.contains(token) { s.replace(token, REDACTED) } else { s }
    }

    /// One call with retries; the answer's body on 2xx.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        target: Target,
    ) -> Result<Vec<u8>, TenantError> {
        let payload = body.map(serde_json::to_vec).transpose().map_err(unserializable)?;
        self.send_bytes(method, url, payload, target).await
    }

    /// [`ScimClient::send`] of a body serialized already, re-sent as is on every attempt.
    async fn send_bytes(
        &self,
        method: Method,
        url: &str,
        payload: Option<Vec<u8>>,
        target: Target,
    ) -> Result<Vec<u8>, TenantError> {
        let is_write = method != Method::GET && method != Method::HEAD;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(&method, url, payload.as_deref(), target, is_write).await {
                Ok(Ok(bytes)) => return Ok(bytes),
                Ok(Err(final_error)) => return Err(final_error),
                Err(retryable) => retryable,
            };
            match self.options.next(attempt, &failure.reason, failure.retry_after) {
                Next::Wait(delay) => tokio::time::sleep(delay).await,
                Next::GiveUp(last) => return Err(TenantError::Unavailable { attempts: attempt, last }),
            }
        }
    }

    /// One attempt: `Ok(Ok(body))` on 2xx, `Ok(Err(_))` for a final failure, `Err(_)` to retry.
    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        payload: Option<&[u8]>,
        target: Target,
        is_write: bool,
    ) -> Result<Result<Vec<u8>, TenantError>, Retryable> {
        let auth = match self.auth_header() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(self.options.timeout)
            .header(ACCEPT, ACCEPT_VALUE)
            .header(AUTHORIZATION, auth);
        if let Some(bytes) = payload {
            request = request.header(CONTENT_TYPE, SCIM_JSON).body(bytes.to_vec());
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        if is_write {
            self.write_requests.fetch_add(1, Ordering::Relaxed);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Ok(Err(TenantError::InvalidUrl(self.redact(error_chain(&e)))));
            }
            Err(e) => {
                return Err(Retryable {
                    reason: self.redact(format!("transport error: {}", error_chain(&e))),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let bytes = match response.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                return Err(Retryable {
                    reason: self.redact(format!(
                        "transport error reading the HTTP {} answer: {}",
                        status.as_u16(),
                        error_chain(&e)
                    )),
                    retry_after: None,
                });
            }
        };
        if status.is_success() {
            return Ok(Ok(bytes));
        }
        let info = self.error_info(status, &bytes);
        let code = status.as_u16();
        match super::retry::disposition(code, is_write, target == Target::Id) {
            Disposition::Unauthorized => Ok(Err(TenantError::Unauthorized { status: code, detail: info.detail })),
            Disposition::NotFound => Ok(Err(TenantError::NotFound)),
            Disposition::Temporary => {
                let retry_after = if matches!(code, 429 | 503) { retry_after } else { None };
                Err(Retryable { reason: info.to_string(), retry_after })
            }
            Disposition::Permanent => Ok(Err(TenantError::Rejected(info))),
            Disposition::Success | Disposition::Unexpected => {
                Ok(Err(TenantError::Protocol(format!("unexpected answer {info} (redirects are not followed)"))))
            }
        }
    }

    /// The SCIM error body (status as number or string, scimType, detail), or a snippet of a
    /// non-SCIM body; the HTTP status is the one that counts.
    fn error_info(&self, status: StatusCode, body: &[u8]) -> ScimErrorInfo {
        let mut info = ScimErrorInfo { status: status.as_u16(), scim_type: None, detail: None };
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                info.scim_type = map
                    .get("scimType")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(|s| self.redact(s.to_string()));
                info.detail = map
                    .get("detail")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(|s| self.redact(s.to_string()));
            }
            Ok(_) => {}
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if !text.is_empty() {
                    let snippet: String = text.chars().take(MAX_RAW_DETAIL).collect();
                    info.detail = Some(self.redact(snippet));
                }
            }
        }
        info
    }
}

/// A write's answer when it is a resource (a JSON object); `None` for `204` or anything else.
/// A request body that could not be serialized (a JSON map with non-string keys; never ours).
fn unserializable(e: serde_json::Error) -> TenantError {
    TenantError::Protocol(format!("cannot serialize the request body: {e}"))
}

fn resource_answer(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(body).ok().filter(Value::is_object)
}

/// The message of an error and of its sources (e.g. "connection refused").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base_urls() {
        let token = || SecretString::from("t0ken-value");
        let ok = ScimClient::new("https://acme.example.com/scim/v2/", token(), ClientOptions::default()).unwrap();
        assert_eq!(ok.base_url(), "https://acme.example.com/scim/v2");
        let bare = ScimClient::new("http://127.0.0.1:9", token(), ClientOptions::default()).unwrap();
        assert_eq!(bare.base_url(), "http://127.0.0.1:9");
        for bad in [
            "ftp://example.com/scim/v2",
            "file:///etc/passwd",
            "not a url",
            "http://user:pw@example.com/scim/v2",
            "https://example.com/scim/v2?x=1",
            "https://example.com/scim/v2#frag",
        ] {
            match ScimClient::new(bad, token(), ClientOptions::default()) {
                Err(TenantError::InvalidUrl(msg)) => assert!(!msg.contains("pw@"), "{msg}"),
                other => panic!("{bad}: expected InvalidUrl, got {other:?}"),
            }
        }
        for bad_token in ["", "  \n", "has space", "line\nbreak"] {
            let e = ScimClient::new("http://127.0.0.1:9", SecretString::from(bad_token), ClientOptions::default())
                .unwrap_err();
            assert!(matches!(e, TenantError::Unauthorized { status: 0, .. }));
        }
        // A trailing newline from a token file is not part of the token.
        ScimClient::new("http://127.0.0.1:9", SecretString::from("abc\n"), ClientOptions::default()).unwrap();
    }

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn client_and_futures_are_send_and_sync() {
        fn assert_sync<T: Sync + Send>() {}
        assert_sync::<ScimClient>();
        assert_sync::<TenantError>();
        let c = ScimClient::new("http://127.0.0.1:9", SecretString::from("t"), ClientOptions::default()).unwrap();
        let body = json!({});
        assert_send(&c.create(ResourceKind::User, &body));
        assert_send(&c.patch(ResourceKind::Group, "g", &[]));
        assert_send(&c.list_all(ResourceKind::User, 10));
        assert_send(&c.find(ResourceKind::User, "userName", "x"));
    }

    #[test]
    fn error_display() {
        let e = TenantError::Rejected(ScimErrorInfo {
            status: 409,
            scim_type: Some("uniqueness".into()),
            detail: Some("taken".into()),
        });
        assert!(e.is_conflict());
        assert_eq!(e.to_string(), "the tenant rejected the request: HTTP 409 (uniqueness): taken");
        assert!(!TenantError::NotFound.is_conflict());
        let u = TenantError::Unauthorized { status: 401, detail: None };
        assert_eq!(u.to_string(), "the tenant refused the token (HTTP 401)");
    }
}

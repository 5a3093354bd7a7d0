//! SCIM 2.0 client (RFC 7643 schema, RFC 7644 protocol) for provisioning a tenant.
//!
//! One [`ScimClient`] speaks to one SCIM base URL (e.g. `https://acme.example.com/scim/v2`)
//! with a bearer token. Every call retries what is worth retrying (429/503 with `Retry-After`,
//! other 5xx, 408 and transport errors, with exponential backoff and full jitter) and maps the
//! rest into [`TenantError`]. The token goes into the `Authorization` header only: it is never
//! in a `Debug` output or an error message (a server that echoes it back gets it redacted).
//!
//! Self-contained: no `crate::` paths, no logging.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const SCIM_JSON: &str = "application/scim+json";
const ACCEPT_VALUE: &str = "application/scim+json, application/json";
const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
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
}

/// Timeouts and retry policy.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per request (connect, send and reading the whole answer).
    pub timeout: Duration,
    /// Attempts per call, the first included (0 counts as 1).
    pub max_attempts: u32,
    /// Backoff of the first retry; doubles per retry.
    pub base_delay: Duration,
    /// Backoff ceiling.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this fails the call as [`TenantError::Unavailable`] at once.
    pub max_retry_after: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

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
    retry_after: Option<Duration>,
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
        let filter = format!("{attribute} eq \"{}\"", escape_filter_value(value));
        let url = format!("{}/{}?filter={}&count=2", self.base_url, kind.endpoint(), percent_encode(&filter));
        let body = self.send(Method::GET, &url, None, Target::Collection).await?;
        let (resources, _) = parse_list_response(&parse_json(&body)?)?;
        Ok(resources)
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
        let url = self.resource_url(kind, id)?;
        self.send(Method::PUT, &url, Some(body), Target::Id).await.map(|_| ())
    }

    /// `PATCH /{Users|Groups}/{id}` with a PatchOp message; `200` + body and `204` both succeed.
    pub async fn patch(&self, kind: ResourceKind, id: &str, operations: &[Value]) -> Result<(), TenantError> {
        let url = self.resource_url(kind, id)?;
        self.send(Method::PATCH, &url, Some(&patch_message(operations)), Target::Id).await.map(|_| ())
    }

    /// `POST /Bulk` (RFC 7644 §3.7) without `failOnErrors` (some servers stop at the first
    /// error when it is given): one outcome per operation, in the order of the request.
    /// Retrying a whole request after a lost answer may repeat creates; those come back as 409
    /// and the caller resolves them like any other conflict.
    /// The operations' `data` is moved into the request (large memberships are not copied).
    pub async fn bulk(&self, operations: &mut [BulkOperation]) -> Result<Vec<BulkOutcome>, TenantError> {
        let ops: Vec<Value> = operations
            .iter_mut()
            .map(|op| {
                let path = match &op.id {
                    Some(id) => format!("/{}/{}", op.kind.endpoint(), percent_encode(id)),
                    None => format!("/{}", op.kind.endpoint()),
                };
                let mut v = json!({"method": op.method.as_str(), "path": path, "bulkId": op.bulk_id});
                if let Some(data) = op.data.take() {
                    v["data"] = data;
                }
                v
            })
            .collect();
        let body = json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": ops});
        let url = format!("{}/Bulk", self.base_url);
        let answer = parse_json(&self.send(Method::POST, &url, Some(&body), Target::Collection).await?)?;
        let results = answer
            .get("Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| TenantError::Protocol("the bulk answer has no \"Operations\"".into()))?;
        let mut by_id: std::collections::HashMap<&str, &Value> =
            results.iter().filter_map(|r| r.get("bulkId").and_then(Value::as_str).map(|b| (b, r))).collect();
        operations
            .iter()
            .map(|op| {
                let Some(result) = by_id.remove(op.bulk_id.as_str()) else {
                    return Ok(BulkOutcome { bulk_id: op.bulk_id.clone(), status: 0, id: None, error: None });
                };
                let status = status_code(result.get("status")).unwrap_or(0);
                let id = result
                    .get("location")
                    .and_then(Value::as_str)
                    .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
                    .map(percent_decode)
                    .or_else(|| result.pointer("/response/id").and_then(Value::as_str).map(str::to_owned))
                    .or_else(|| op.id.clone());
                let error = (!(200..300).contains(&status)).then(|| {
                    let response = result.get("response");
                    ScimErrorInfo {
                        status,
                        scim_type: response
                            .and_then(|r| r.get("scimType"))
                            .and_then(Value::as_str)
                            .map(|s| self.redact(s.to_owned())),
                        detail: response
                            .and_then(|r| r.get("detail"))
                            .and_then(Value::as_str)
                            .map(|s| self.redact(s.to_owned())),
                    }
                });
                Ok(BulkOutcome { bulk_id: op.bulk_id.clone(), status, id, error })
            })
            .collect()
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

    /// Every resource of a kind, paged with `startIndex`/`count` (RFC 7644 §3.4.2.4), with the
    /// number of pages it took and whether it is complete. A server may cap `count` (the next
    /// page starts after what came back) or ignore it (one page holds everything). A page that
    /// comes back empty, or with nothing new, before `totalResults` is reached is a protocol
    /// error (a server that ignores `startIndex` would otherwise look like a short list).
    pub async fn listing(
        &self,
        kind: ResourceKind,
        page_size: u32,
        attributes: Option<&str>,
    ) -> Result<Listing, TenantError> {
        let count = page_size.max(1);
        let only = attributes.map(|a| format!("&attributes={}", percent_encode(a))).unwrap_or_default();
        let mut all: Vec<Value> = Vec::new();
        let mut seen_ids: HashSet<String> = HashSet::new();
        let mut start_index: u64 = 1;
        let mut pages = 0u64;
        loop {
            let url = format!("{}/{}?startIndex={start_index}&count={count}{only}", self.base_url, kind.endpoint());
            let body = self.send(Method::GET, &url, None, Target::Collection).await?;
            pages += 1;
            let (resources, total) = parse_list_response(&parse_json(&body)?)?;
            let total = total.ok_or_else(|| TenantError::Protocol("a ListResponse without \"totalResults\"".into()))?;
            let returned = resources.len() as u64;
            let mut new = 0u64;
            for r in resources {
                // A resource that moved between pages (concurrent change) is listed once.
                match r.get("id").and_then(Value::as_str) {
                    Some(id) => {
                        if seen_ids.insert(id.to_string()) {
                            all.push(r);
                            new += 1;
                        }
                    }
                    None => {
                        all.push(r);
                        new += 1;
                    }
                }
            }
            if start_index + returned > total {
                let complete = all.len() as u64 >= total;
                return Ok(Listing { resources: all, pages, total, complete });
            }
            if returned == 0 || new == 0 {
                return Err(TenantError::Protocol(format!(
                    "{} page at startIndex {start_index} brought nothing new but totalResults is {total}",
                    kind.endpoint()
                )));
            }
            start_index += returned;
        }
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
        // Serialized once, re-sent as is on every attempt.
        let payload: Option<Vec<u8>> = match body {
            Some(v) => Some(
                serde_json::to_vec(v)
                    .map_err(|e| TenantError::Protocol(format!("cannot serialize the request body: {e}")))?,
            ),
            None => None,
        };
        let is_write = method != Method::GET && method != Method::HEAD;
        let max_attempts = self.options.max_attempts.max(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(&method, url, payload.as_deref(), target, is_write).await {
                Ok(Ok(bytes)) => return Ok(bytes),
                Ok(Err(final_error)) => return Err(final_error),
                Err(retryable) => retryable,
            };
            if attempt >= max_attempts {
                return Err(TenantError::Unavailable { attempts: attempt, last: failure.reason });
            }
            let delay = match failure.retry_after {
                Some(d) if d > self.options.max_retry_after => {
                    return Err(TenantError::Unavailable {
                        attempts: attempt,
                        last: format!(
                            "{}; Retry-After of {} s is beyond the {} s limit",
                            failure.reason,
                            d.as_secs(),
                            self.options.max_retry_after.as_secs()
                        ),
                    });
                }
                Some(d) => d,
                None => backoff(&self.options, attempt),
            };
            tokio::time::sleep(delay).await;
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
        match code {
            401 | 403 => Ok(Err(TenantError::Unauthorized { status: code, detail: info.detail })),
            404 if target == Target::Id => Ok(Err(TenantError::NotFound)),
            429 | 503 => Err(Retryable { reason: info.to_string(), retry_after }),
            408 | 500..=599 => Err(Retryable { reason: info.to_string(), retry_after: None }),
            400..=499 => Ok(Err(TenantError::Rejected(info))),
            _ => Ok(Err(TenantError::Protocol(format!("unexpected answer {info} (redirects are not followed)")))),
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

const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMethod {
    Post,
    Put,
    Patch,
}

impl BulkMethod {
    fn as_str(self) -> &'static str {
        match self {
            BulkMethod::Post => "POST",
            BulkMethod::Put => "PUT",
            BulkMethod::Patch => "PATCH",
        }
    }
}

/// A whole listing of one resource type.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub resources: Vec<Value>,
    /// Requests it took.
    pub pages: u64,
    /// `totalResults` of the last page.
    pub total: u64,
    /// As many distinct resources as the tenant counted (none vanished between pages).
    pub complete: bool,
}

/// One operation of a `/Bulk` request.
#[derive(Debug, Clone)]
pub struct BulkOperation {
    pub method: BulkMethod,
    pub kind: ResourceKind,
    /// The resource for PUT; `None` for POST.
    pub id: Option<String>,
    pub bulk_id: String,
    pub data: Option<Value>,
}

/// What the tenant did with one bulk operation. `status` 0: the answer did not mention it.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkOutcome {
    pub bulk_id: String,
    pub status: u16,
    /// The resource's id (from `location`, or the PUT target).
    pub id: Option<String>,
    pub error: Option<ScimErrorInfo>,
}

/// A status given as number or string (`"201"`), as servers differ.
fn status_code(v: Option<&Value>) -> Option<u16> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().get(..3).and_then(|c| c.parse().ok()),
        _ => None,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A PATCH operation replacing one attribute: `{"op":"replace","path":PATH,"value":VALUE}`.
pub fn patch_replace(path: &str, value: Value) -> Value {
    json!({ "op": "replace", "path": path, "value": value })
}

/// The PatchOp message around `operations` (alone, or as a bulk operation's data).
pub fn patch_message(operations: &[Value]) -> Value {
    json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": operations })
}

/// A PATCH operation adding group members: `{"op":"add","path":"members","value":[{"value":ID},...]}`.
pub fn patch_add_members(ids: &[String]) -> Value {
    let members: Vec<Value> = ids.iter().map(|id| json!({ "value": id })).collect();
    json!({ "op": "add", "path": "members", "value": members })
}

/// A PATCH operation removing one group member, in the bracket form
/// `{"op":"remove","path":"members[value eq \"ID\"]"}` (some servers reject the value-array form).
pub fn patch_remove_member(id: &str) -> Value {
    json!({
        "op": "remove",
        "path": format!("members[value eq \"{}\"]", escape_filter_value(id)),
    })
}

/// Escapes a filter comparison value for use inside double quotes (RFC 7644 §3.4.2.2).
fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters (spaces as `%20`, never `+`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_json(body: &[u8]) -> Result<Value, TenantError> {
    serde_json::from_slice(body).map_err(|e| TenantError::Protocol(format!("the answer is not valid JSON: {e}")))
}

/// `Resources` (missing = none) and `totalResults` of a ListResponse.
fn parse_list_response(v: &Value) -> Result<(Vec<Value>, Option<u64>), TenantError> {
    if !v.is_object() {
        return Err(TenantError::Protocol("a ListResponse is not a JSON object".into()));
    }
    let resources = match v.get("Resources") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(TenantError::Protocol("\"Resources\" of a ListResponse is not an array".into()));
        }
    };
    Ok((resources, v.get("totalResults").and_then(as_u64_lenient)))
}

fn as_u64_lenient(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn parse_capabilities(v: &Value) -> Capabilities {
    let flag = |p: &str| {
        v.pointer(p)
            .map(|x| match x {
                Value::Bool(b) => *b,
                Value::String(s) => s.eq_ignore_ascii_case("true"),
                _ => false,
            })
            .unwrap_or(false)
    };
    let number = |p: &str| v.pointer(p).and_then(as_u64_lenient).unwrap_or(0);
    Capabilities {
        patch: flag("/patch/supported"),
        bulk: flag("/bulk/supported"),
        bulk_max_operations: u32::try_from(number("/bulk/maxOperations")).unwrap_or(u32::MAX),
        bulk_max_payload: number("/bulk/maxPayloadSize"),
        filter: flag("/filter/supported"),
        filter_max_results: u32::try_from(number("/filter/maxResults")).unwrap_or(u32::MAX),
        etag: flag("/etag/supported"),
    }
}

/// Exponential backoff with full jitter for retry number `retry` (1 = first retry):
/// uniform in `[base_delay, min(max_delay, base_delay * 2^(retry-1))]`.
fn backoff(options: &ClientOptions, retry: u32) -> Duration {
    let factor = 1u32 << retry.saturating_sub(1).min(30);
    let cap = options.base_delay.saturating_mul(factor).min(options.max_delay);
    let low = options.base_delay.min(cap);
    let (lo, hi) = (low.as_micros() as u64, cap.as_micros() as u64);
    if hi <= lo {
        return cap;
    }
    Duration::from_micros(rand::rng().random_range(lo..=hi))
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

/// `Retry-After`: delay-seconds or an HTTP-date (a date in the past means now).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64: "forever", which is beyond any limit.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, and the obsolete RFC 850 and asctime forms.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let tokens: Vec<&str> = s.split([' ', ',', '-', ':']).filter(|t| !t.is_empty()).collect();
    let (day, month, year, hour, minute, second) = match tokens.as_slice() {
        // Sun, 06 Nov 1994 08:49:37 GMT  /  Sunday, 06-Nov-94 08:49:37 GMT
        [_, d, mon, y, h, mi, sec, "GMT"] => (*d, *mon, *y, *h, *mi, *sec),
        // Sun Nov  6 08:49:37 1994
        [_, mon, d, h, mi, sec, y] => (*d, *mon, *y, *h, *mi, *sec),
        _ => return None,
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let num = |t: &str| -> Option<u32> {
        if t.is_empty() || t.len() > 4 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (day, mut year_n) = (num(day)?, num(year)?);
    let (hour, minute, second) = (num(hour)?, num(minute)?, num(second)?);
    if year.len() == 2 {
        year_n += if year_n >= 70 { 1900 } else { 2000 };
    }
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year_n < 1970 {
        return None;
    }
    let days = days_from_civil(i64::from(year_n), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_in_all_three_forms() {
        let expected = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(expected));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(expected));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(expected));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1_835_438_400))
        );
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
        assert_eq!(parse_http_date("soon"), None);
        assert_eq!(parse_http_date(""), None);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 3600 ", now), Some(Duration::from_secs(3600)));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        // A date in the past: retry now.
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_inside_bounds() {
        let options = ClientOptions {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..ClientOptions::default()
        };
        assert_eq!(backoff(&options, 1), Duration::from_millis(100));
        for _ in 0..200 {
            let d2 = backoff(&options, 2);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d4 = backoff(&options, 4);
            assert!(d4 >= Duration::from_millis(100) && d4 <= Duration::from_millis(800));
            let d40 = backoff(&options, 40);
            assert!(d40 >= Duration::from_millis(100) && d40 <= Duration::from_millis(1000));
        }
        let inverted = ClientOptions {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(1),
            ..ClientOptions::default()
        };
        assert_eq!(backoff(&inverted, 3), Duration::from_secs(1));
    }

    #[test]
    fn filter_values_and_urls_are_escaped() {
        assert_eq!(escape_filter_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_filter_value("plain@x.test"), "plain@x.test");
        assert_eq!(percent_encode(r#"userName eq "a+b&c=d/é""#), "userName%20eq%20%22a%2Bb%26c%3Dd%2F%C3%A9%22");
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
    }

    #[test]
    fn patch_helpers() {
        assert_eq!(patch_replace("active", json!(false)), json!({"op": "replace", "path": "active", "value": false}));
        assert_eq!(
            patch_add_members(&["a".to_string(), "b".to_string()]),
            json!({"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]})
        );
        assert_eq!(patch_remove_member(r#"x"y"#), json!({"op": "remove", "path": r#"members[value eq "x\"y"]"#}));
    }

    #[test]
    fn capabilities_missing_means_no() {
        let caps = parse_capabilities(&json!({
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
            "filter": {"supported": false, "maxResults": "200"},
        }));
        assert!(caps.patch && caps.bulk && !caps.filter && !caps.etag);
        assert_eq!(caps.bulk_max_operations, 1000);
        assert_eq!(caps.bulk_max_payload, 1_048_576);
        assert_eq!(caps.filter_max_results, 200);
        let none = parse_capabilities(&json!({}));
        assert!(!none.patch && !none.bulk && none.bulk_max_operations == 0);
    }

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

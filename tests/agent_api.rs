//! The tenant's agent API (docs: `tenant-api.md` §2) end to end: `register` probes it and records
//! `agent_api = true`; every non-dry `sync` then posts a heartbeat, and when the tenant answers
//! `full_sync_requested: true` the next `sync` is a full one (`fallback.code = "tenant-requested"`)
//! and the one after it a delta again. Against the testbed's Samba AD DC and scim2-server on
//! 127.0.0.1 (`scripts/testbed up`, then source its env.sh), like tests/delta.rs; skipped without
//! them.
//!
//! scim2-server has no agent API (it answers 404), so the tenant here is a small HTTP/1.1 server
//! in this file ([`Tenant`]) that answers the agent API itself (`GET …/password-policy`, the
//! probe, and `POST …/heartbeat`, whose `full_sync_requested` the test sets) and forwards the SCIM
//! calls unchanged to scim2-server, one request per connection (scim2-server speaks HTTP/1.0 and
//! closes each connection), like the proxy of tests/sync_faults.rs. It listens on and connects to
//! 127.0.0.1 only.
//!
//! The test builds its own subtree `OU=AgentApi<tag>,<base>` with a few users and removes it at
//! the end: the seeded objects other tests compare with are never touched.

#![allow(clippy::print_stderr)] // a skipped test says why

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ausi::tenant::ResourceKind;
use common::http::{RawRequest, answer_json};
use common::report::{count, excerpt, mode, writes};
use common::testbed::{Sandbox, Testbed, cfg, testbed};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AGENT: &str = "dc1-agent-api";

// ------------------------------------------------------------------------------------ the tenant

/// One call of the agent API, as the tenant received it.
#[derive(Clone, Debug)]
struct AgentCall {
    method: String,
    /// The path after the agent's base (`{realm}/api/agent/v1/agents/{agent}/`), e.g. `heartbeat`;
    /// the whole path when the call was not under it.
    path: String,
    /// `Authorization: Bearer <the tenant token>`.
    bearer_ok: bool,
    body: String,
    /// The `full_sync_requested` this tenant answered (heartbeats only).
    answered_full: Option<bool>,
}

struct Shared {
    upstream: SocketAddr,
    /// `/realm<tag>`: the home realm's path; `{realm}/api/agent/v1/…` is the agent API.
    realm: String,
    /// `{realm}/api/agent/v1/agents/{AGENT}/`
    agent_base: String,
    /// The SCIM base's path (`/…/t…/v2`): forwarded to scim2-server.
    scim_path: String,
    token: String,
    /// What the next heartbeat answers as `full_sync_requested`.
    full_sync_requested: AtomicBool,
    /// The provisioning policy the heartbeat assigns (`provisioning_policy`), when set.
    policy: Mutex<Option<String>>,
    /// An outage: every request (agent API and SCIM) is answered 503; agent API calls are
    /// still recorded (`answered_full` stays `None`).
    down: AtomicBool,
    calls: Mutex<Vec<AgentCall>>,
    forwarded: AtomicU64,
    /// Anything this tenant did not expect (must stay empty).
    errors: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn error(&self, what: String) {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner).push(what);
    }
}

/// The test's tenant: the agent API here, SCIM forwarded to scim2-server.
struct Tenant {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Tenant {
    /// Listens on 127.0.0.1:0 on a runtime of its own thread; SCIM requests under the path of
    /// `upstream_scim` go to that server.
    fn start(upstream_scim: &str, realm: &str, token: &str) -> Tenant {
        let rest = upstream_scim.strip_prefix("http://").expect("an http:// SCIM URL");
        let slash = rest.find('/').expect("a tenant path");
        let upstream: SocketAddr = rest[..slash].parse().expect("the SCIM server as IP:PORT");
        assert!(upstream.ip().is_loopback(), "the testbed's SCIM server must be on loopback: {upstream}");
        let shared = Arc::new(Shared {
            upstream,
            realm: realm.to_owned(),
            agent_base: format!("{realm}/api/agent/v1/agents/{AGENT}/"),
            scim_path: rest[slash..].trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            full_sync_requested: AtomicBool::new(false),
            policy: Mutex::new(None),
            down: AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
            forwarded: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let (stop, server) = (shared.clone(), shared.clone());
        let addr =
            common::http::serve(move || stop.stop.load(Ordering::SeqCst), move |stream| handle(stream, server.clone()));
        Tenant { addr, shared }
    }

    fn home_realm(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.realm)
    }

    fn scim_url(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.scim_path)
    }

    fn request_full_sync(&self, on: bool) {
        self.shared.full_sync_requested.store(on, Ordering::SeqCst);
    }

    fn assign_policy(&self, policy: Option<&str>) {
        *self.shared.policy.lock().unwrap_or_else(PoisonError::into_inner) = policy.map(str::to_owned);
    }

    fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    fn calls(&self) -> Vec<AgentCall> {
        self.shared.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn heartbeats(&self) -> Vec<AgentCall> {
        self.calls().into_iter().filter(|c| c.method == "POST" && c.path == "heartbeat").collect()
    }

    fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        std::net::TcpStream::connect(self.addr).ok();
    }
}

async fn handle(mut client: TcpStream, shared: Arc<Shared>) {
    let Some(request) = common::http::read_request(&mut client).await else {
        shared.error("a connection closed before a whole request".into());
        return;
    };
    if shared.down.load(Ordering::SeqCst) {
        if request.path.starts_with(&format!("{}/", shared.realm)) {
            let path = request.path.strip_prefix(&shared.agent_base).unwrap_or(&request.path).to_owned();
            let call = AgentCall {
                method: request.method.clone(),
                path,
                bearer_ok: request.header("authorization") == Some(format!("Bearer {}", shared.token).as_str()),
                body: String::from_utf8_lossy(request.body()).into_owned(),
                answered_full: None,
            };
            shared.calls.lock().unwrap_or_else(PoisonError::into_inner).push(call);
        }
        let body = r#"{"status":"503","detail":"down for the test"}"#;
        let text = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(text.as_bytes()).await.ok();
        client.shutdown().await.ok();
    } else if request.path.starts_with(&format!("{}/", shared.realm)) {
        agent_api(&mut client, &shared, &request).await;
    } else if request.path == shared.scim_path || request.path.starts_with(&format!("{}/", shared.scim_path)) {
        forward(&mut client, &shared, &request).await;
    } else {
        shared.error(format!("{} {}: neither the agent API nor the SCIM base", request.method, request.path));
        answer_json(&mut client, "404 Not Found", "{}").await;
    }
}

/// The agent API: the probe (`GET password-policy`) and `POST heartbeat`; 404 for anything else.
async fn agent_api(client: &mut TcpStream, shared: &Shared, request: &RawRequest) {
    let bearer_ok = request.header("authorization") == Some(format!("Bearer {}", shared.token).as_str());
    let path = request.path.strip_prefix(&shared.agent_base).unwrap_or(&request.path).to_owned();
    let body = String::from_utf8_lossy(request.body()).into_owned();
    let mut call = AgentCall { method: request.method.clone(), path, bearer_ok, body, answered_full: None };
    let (status, answer) = match (bearer_ok, call.method.as_str(), call.path.as_str()) {
        (false, _, _) => ("401 Unauthorized", json!({"detail": "wrong or missing bearer token"})),
        (true, "GET", "password-policy") => {
            ("200 OK", json!({"minLength": 12, "maxAgeDays": 90, "complexity": true, "historyCount": 24}))
        }
        (true, "POST", "heartbeat") => {
            let full = shared.full_sync_requested.load(Ordering::SeqCst);
            call.answered_full = Some(full);
            let mut answer = json!({"status": "Active", "full_sync_requested": full});
            if let Some(policy) = shared.policy.lock().unwrap_or_else(PoisonError::into_inner).clone() {
                answer["provisioning_policy"] = json!(policy);
            }
            ("200 OK", answer)
        }
        _ => ("404 Not Found", json!({"detail": "not part of this test's agent API"})),
    };
    shared.calls.lock().unwrap_or_else(PoisonError::into_inner).push(call);
    answer_json(client, status, &answer.to_string()).await;
}

/// Sends the request unchanged to scim2-server on a new connection and relays its whole answer
/// (HTTP/1.0: up to the close).
async fn forward(client: &mut TcpStream, shared: &Shared, request: &RawRequest) {
    let exchange = async {
        let mut server = TcpStream::connect(shared.upstream).await.ok()?;
        server.write_all(&request.bytes).await.ok()?;
        let mut answer = Vec::new();
        server.read_to_end(&mut answer).await.ok()?;
        (!answer.is_empty()).then_some(answer)
    };
    match tokio::time::timeout(Duration::from_secs(60), exchange).await.ok().flatten() {
        Some(answer) => {
            shared.forwarded.fetch_add(1, Ordering::SeqCst);
            client.write_all(&answer).await.ok();
            client.shutdown().await.ok();
        }
        None => {
            shared.error(format!("{} {}: scim2-server did not answer", request.method, request.path));
        }
    }
}

// ------------------------------------------------------------------------------------ AD helpers

// ------------------------------------------------------------------------------------ ausi runs

/// The parts of a report worth reading when a test fails.
fn warning_codes(report: &Value) -> Vec<String> {
    report["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|w| w["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `ausi --config … sync ARGS -o json`, which must end with exit 0.
fn sync(config: &str, args: &[&str], context: &str) -> Value {
    let mut full = vec!["--config", config, "sync"];
    full.extend(args);
    let (code, report) = common::json_with(&mut common::ausi(), &full);
    assert_eq!(code, 0, "{context}: exit code; report:\n{}", excerpt(&report));
    assert!(
        !warning_codes(&report).iter().any(|c| c == "heartbeat-failed"),
        "{context}: the heartbeat failed:\n{}",
        excerpt(&report)
    );
    report
}

/// A delta: no fallback, nothing written (nothing in scope changed).
fn assert_quiet_delta(report: &Value, context: &str) {
    assert_eq!(mode(report), "delta", "{context}: mode:\n{}", excerpt(report));
    assert!(
        report["data"].get("fallback").is_none_or(Value::is_null),
        "{context}: a delta with a fallback:\n{}",
        excerpt(report)
    );
    assert_eq!(writes(report), 0, "{context}: nothing changed, yet it wrote:\n{}", excerpt(report));
}

/// The heartbeat a run sent: the `n`-th (0-based) the tenant received, there must be exactly
/// `n + 1`. It tells the tenant about the run and carries no secret.
fn assert_heartbeat(tenant: &Tenant, n: usize, report: &Value, secrets: &[&str], context: &str) -> Value {
    let beats = tenant.heartbeats();
    assert_eq!(beats.len(), n + 1, "{context}: heartbeats so far: {beats:#?}\nthe run's report:\n{}", excerpt(report));
    let beat = &beats[n];
    assert!(beat.bearer_ok, "{context}: the heartbeat carries the tenant token as bearer");
    for secret in secrets {
        assert!(!beat.body.contains(secret), "{context}: the heartbeat body carries a secret: {}", beat.body);
    }
    let body: Value = serde_json::from_str(&beat.body)
        .unwrap_or_else(|e| panic!("{context}: the heartbeat is not JSON ({e}): {}", beat.body));
    assert_eq!(body["name"], AGENT, "{context}: heartbeat name: {body}");
    for key in ["hostname", "version", "os", "status"] {
        assert!(body[key].is_string(), "{context}: heartbeat {key}: {body}");
    }
    let last = &body["last_sync"];
    assert_eq!(last["kind"], report["data"]["mode"], "{context}: heartbeat last_sync.kind: {body}");
    assert!(last["finished_at"].is_string(), "{context}: heartbeat last_sync.finished_at: {body}");
    for name in ["created", "updated", "deactivated", "deleted", "failed", "quarantined"] {
        assert_eq!(last[name], report["data"]["counts"][name], "{context}: heartbeat last_sync.{name}: {body}");
    }
    // The agent's health and the run's outcome, not one for the other.
    assert_eq!(body["status"], "healthy", "{context}: heartbeat status: {body}");
    assert_eq!(last["outcome"], "ok", "{context}: heartbeat last_sync.outcome: {body}");
    assert_eq!(last["exit_code"], 0, "{context}: heartbeat last_sync.exit_code: {body}");
    assert!(last["started_at"].is_string() && last["duration_ms"].is_u64(), "{context}: {body}");
    body
}

/// `OU={name}{tag}` with `users` valid users (`{prefix}{tag}u{i}`), removed when the test ends.
fn seed<'a>(tb: &'a Testbed, name: &str, prefix: &str, given: &str, tag: &str, users: usize) -> (Sandbox<'a>, String) {
    let root = format!("OU={name}{tag},{}", tb.base);
    let sandbox = Sandbox { tb, root: root.clone() };
    let mut ldif = format!("dn: {root}\nchangetype: add\nobjectClass: organizationalUnit\nou: {name}{tag}\n\n");
    for i in 0..users {
        let sam = format!("{prefix}{tag}u{i}");
        assert!(sam.len() <= 20, "sAMAccountName {sam} too long");
        ldif.push_str(&format!(
            "dn: CN={name} {i} {tag},{root}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {sam}@example.test\ngivenName: {given}{i}\nsn: Api\nmail: {sam}@example.test\nuserAccountControl: 544\n\n"
        ));
    }
    tb.ldap_modify(&ldif);
    (sandbox, root)
}

/// A fresh scim2-server tenant (`/{upstream}x{pid}/v2`, returned) behind the agent-API double
/// at `realm`, and the token both take.
fn start_tenant(tb: &Testbed, upstream: &str, realm: &str) -> (Tenant, String, String) {
    let upstream_scim = format!("{}/{upstream}x{}/v2", tb.scim_url.trim_end_matches('/'), std::process::id());
    let token = std::fs::read_to_string(&tb.scim_token_file).unwrap().trim().to_owned();
    (Tenant::start(&upstream_scim, realm, &token), token, upstream_scim)
}

/// `ausi register` with the double as home realm; its report.
fn register(config: &str, tenant: &Tenant, token: &str) -> Value {
    let r = common::run(
        common::ausi()
            .args([
                "--config",
                config,
                "register",
                "--home-realm",
                &tenant.home_realm(),
                "--scim-url",
                &tenant.scim_url(),
            ])
            .args(["--agent-name", AGENT, "--token-stdin", "-o", "json"])
            .write_stdin(format!("{token}\n")),
    );
    assert_eq!(r.code, 0, "register: {}{}\ntenant errors: {:?}", r.stdout, r.stderr, tenant.errors());
    r.json()
}

// ------------------------------------------------------------------------------------- the test

#[test]
fn a_tenant_requested_full_sync_runs_once_then_deltas_resume() {
    let Some(tb) = testbed() else { return };
    let tag = common::unique_tag();
    let (_sandbox, root) = seed(&tb, "AgentApi", "aa", "Agent", &tag, 3);
    let users = 3;

    // A fresh scim2-server tenant, reached through the test's tenant.
    let (tenant, token, upstream_scim) = start_tenant(&tb, &format!("a{tag}"), &format!("/realm{tag}"));
    let bind_password = tb.password();
    let secrets = [bind_password.as_str(), token.as_str()];

    // register: the probe succeeds, so the config says `agent_api = true`.
    let (_dir, config) = tb.config("");
    let c = cfg(&config).to_owned();
    let registered = register(&c, &tenant, &token);
    assert_eq!(registered["data"]["agent_api"], true, "register's report: {registered}");
    assert!(
        !warning_codes(&registered).iter().any(|c| c == "tenant-plain-scim"),
        "register took the tenant for a plain SCIM tenant: {registered}"
    );
    let probes: Vec<AgentCall> = tenant.calls();
    assert_eq!(probes.len(), 1, "register calls the agent API once (the probe): {probes:#?}");
    assert_eq!((probes[0].method.as_str(), probes[0].path.as_str()), ("GET", "password-policy"), "{probes:#?}");
    assert!(probes[0].bearer_ok, "the probe carries the tenant token as bearer");
    assert!(tenant.forwarded() > 0, "register reached scim2-server through the test's tenant");
    let text = std::fs::read_to_string(&config).unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    assert_eq!(doc["tenant"]["agent_api"].as_bool(), Some(true), "the registered config:\n{text}");
    assert!(!text.contains(&token) && !text.contains(&bind_password), "a secret in the config:\n{text}");

    let r = common::run(common::ausi().args(["--config", &c, "select-ous", "-o", "json", "--add", &root]));
    assert_eq!(r.code, 0, "select-ous: {}{}", r.stdout, r.stderr);
    assert!(tenant.heartbeats().is_empty(), "only sync sends heartbeats");

    // 1. The first run: full, there is no watermark yet.
    let first = sync(&c, &[], "the first sync");
    assert_eq!(mode(&first), "full", "the first sync:\n{}", excerpt(&first));
    assert_eq!(first["data"]["fallback"]["code"], "no-watermark", "the first sync:\n{}", excerpt(&first));
    assert_eq!(count(&first, "created"), users, "the first sync:\n{}", excerpt(&first));
    assert!(!warning_codes(&first).iter().any(|c| c == "full-sync-requested"), "{}", excerpt(&first));
    let beat = assert_heartbeat(&tenant, 0, &first, &secrets, "the first sync");
    assert_eq!(beat["last_sync"]["kind"], "full");
    assert_eq!(beat["last_sync"]["created"], users);
    let in_tenant = {
        let client = ausi::tenant::ScimClient::new(
            &upstream_scim,
            ausi::secrets::SecretString::from(token.clone()),
            Default::default(),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(client.list_all(ResourceKind::User, 500)).unwrap()
    };
    assert_eq!(in_tenant.len() as u64, users, "the users reached scim2-server: {in_tenant:#?}");

    // The heartbeat was acknowledged: the agent is Active.
    let (code, status) = common::json_with(&mut common::ausi(), &["--config", &c, "status"]);
    assert_eq!(code, 0, "status: {status}");
    assert_eq!(status["data"]["tenant"]["status"], "Active", "status after the heartbeat: {status}");
    assert_eq!(status["data"]["tenant"]["status_source"], "tenant", "status after the heartbeat: {status}");

    // 2. A delta.
    let second = sync(&c, &[], "the second sync");
    assert_quiet_delta(&second, "the second sync");
    let beat = assert_heartbeat(&tenant, 1, &second, &secrets, "the second sync");
    assert_eq!(beat["last_sync"]["kind"], "delta");
    assert_eq!(tenant.heartbeats()[1].answered_full, Some(false));

    // 3. A delta whose heartbeat is answered with a full sync request.
    tenant.request_full_sync(true);
    let third = sync(&c, &[], "the sync whose heartbeat asks for a full sync");
    tenant.request_full_sync(false);
    assert_quiet_delta(&third, "the sync whose heartbeat asks for a full sync");
    assert_heartbeat(&tenant, 2, &third, &secrets, "the sync whose heartbeat asks for a full sync");
    assert_eq!(tenant.heartbeats()[2].answered_full, Some(true));
    assert!(
        warning_codes(&third).iter().any(|c| c == "full-sync-requested"),
        "the run says the tenant asked for a full sync:\n{}",
        excerpt(&third)
    );

    // 4. The full sync the tenant asked for: nothing changed, so nothing to write.
    let fourth = sync(&c, &[], "the sync after the tenant's request");
    assert_eq!(mode(&fourth), "full", "the sync after the tenant's request:\n{}", excerpt(&fourth));
    assert_eq!(
        fourth["data"]["fallback"]["code"],
        "tenant-requested",
        "the sync after the tenant's request:\n{}",
        excerpt(&fourth)
    );
    assert!(
        fourth["data"]["fallback"]["message"].as_str().is_some_and(|m| !m.trim().is_empty()),
        "a fallback says why in words:\n{}",
        excerpt(&fourth)
    );
    assert_eq!(writes(&fourth), 0, "the tenant-requested full sync wrote:\n{}", excerpt(&fourth));
    assert_eq!(count(&fourth, "unchanged"), users, "the tenant-requested full sync:\n{}", excerpt(&fourth));
    assert!(!warning_codes(&fourth).iter().any(|c| c == "full-sync-requested"), "{}", excerpt(&fourth));
    let beat = assert_heartbeat(&tenant, 3, &fourth, &secrets, "the sync after the tenant's request");
    assert_eq!(beat["last_sync"]["kind"], "full");
    assert_eq!(tenant.heartbeats()[3].answered_full, Some(false));

    // 5. Deltas again.
    let fifth = sync(&c, &[], "the sync after the tenant-requested full sync");
    assert_quiet_delta(&fifth, "the sync after the tenant-requested full sync");
    let beat = assert_heartbeat(&tenant, 4, &fifth, &secrets, "the sync after the tenant-requested full sync");
    assert_eq!(beat["last_sync"]["kind"], "delta");

    // A dry run sends no heartbeat.
    let dry = sync(&c, &["--dry-run"], "a dry run");
    assert_eq!(mode(&dry), "delta", "a dry run:\n{}", excerpt(&dry));
    assert_eq!(tenant.heartbeats().len(), 5, "a dry run sent a heartbeat");

    let unexpected: Vec<AgentCall> =
        tenant.calls().into_iter().filter(|c| !(c.path == "heartbeat" || c.path == "password-policy")).collect();
    assert!(unexpected.is_empty(), "agent API calls this test does not know: {unexpected:#?}");
    assert!(tenant.errors().is_empty(), "the test's tenant saw: {:?}", tenant.errors());
}

// ------------------------------------------------------------------- heartbeat, history, status

/// `ausi --config … status -o json`: exit code and report.
/// The system root `install-service --root` installs into in these tests: beside the config.
fn sysroot(config: &str) -> std::path::PathBuf {
    std::path::Path::new(config).parent().unwrap().join("sysroot")
}

fn status(config: &str) -> (i32, Value) {
    common::json_with(common::ausi().env("AUSI_INSTALL_ROOT", sysroot(config)), &["--config", config, "status"])
}

fn reason_codes(status: &Value) -> Vec<String> {
    status["data"]["health_reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("health_reasons: {status}"))
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

/// The last heartbeat's body as JSON.
fn last_beat(tenant: &Tenant) -> Value {
    let beats = tenant.heartbeats();
    serde_json::from_str(&beats.last().expect("a heartbeat").body).unwrap()
}

/// A sync that fails because the tenant is out: exit 75, the failure in the report, a hint that
/// the heartbeat did not get through either.
fn failed_sync(config: &str, secrets: &[&str], context: &str) -> Value {
    let r = common::run(common::ausi().args(["--config", config, "sync", "-o", "json"]));
    for secret in secrets {
        assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret), "{context}: a secret in the output");
    }
    let report = r.json();
    assert_eq!(r.code, 75, "{context}: exit code; report:\n{}", excerpt(&report));
    let hints = report["error"]["hints"].to_string();
    assert!(hints.contains("heartbeat"), "{context}: the report says the heartbeat failed too: {report}");
    report
}

#[test]
fn status_follows_runs_and_heartbeats_through_a_tenant_outage() {
    let Some(tb) = testbed() else { return };
    let tag = common::unique_tag();
    let (_sandbox, root) = seed(&tb, "AgentOutage", "ao", "Outage", &tag, 2);
    let users = 2;
    let (tenant, token, _) = start_tenant(&tb, &format!("o{tag}"), &format!("/outage{tag}"));
    let bind_password = tb.password();
    let secrets = [bind_password.as_str(), token.as_str()];
    let (dir, config) = tb.config("[schedule]\ninterval_minutes = 15\n");
    let c = cfg(&config).to_owned();
    register(&c, &tenant, &token);
    let r = common::run(common::ausi().args(["--config", &c, "select-ous", "-o", "json", "--add", &root]));
    assert_eq!(r.code, 0, "select-ous: {}{}", r.stdout, r.stderr);

    // The timer, installed into a scratch root (the checks before installing reach the DC and
    // the tenant).
    let root_dir = sysroot(&c);
    let r = common::run(
        common::ausi()
            .args(["--config", &c, "install-service", "--interval", "15", "--force", "-o", "json"])
            .arg("--root")
            .arg(&root_dir),
    );
    assert_eq!(r.code, 0, "install-service: {}{}", r.stdout, r.stderr);
    // What `systemctl enable` does where systemd runs: the timer is wanted by timers.target.
    let wants = root_dir.join("etc/systemd/system/timers.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("../ausi-sync.timer", wants.join("ausi-sync.timer")).unwrap();

    // Registered, never run: Created, and not healthy until the first sync has run.
    let (code, st) = status(&c);
    assert_eq!(code, 1, "status before any run: {st}");
    let d = &st["data"];
    assert_eq!((d["healthy"].as_bool(), d["tenant"]["status"].as_str()), (Some(false), Some("Created")), "{st}");
    assert_eq!(reason_codes(&st), ["no-sync-yet"], "{st}");
    assert!(d["tenant"]["heartbeat"].is_null() && d["state"]["last_runs"] == json!([]), "{st}");
    assert_eq!(d["schedule"]["interval_minutes"], 15, "{st}");
    assert_eq!(d["schedule"]["stale_after_minutes"], 45, "{st}");
    assert!(d["schedule"]["installed"].as_str().is_some_and(|p| p.starts_with(root_dir.to_str().unwrap())), "{st}");
    assert!(d["schedule"]["next_run"].is_null(), "no run yet: {st}");

    // 1. A successful run: Active (the tenant said so), healthy, the run in the history.
    let first = sync(&c, &[], "the first sync");
    assert_eq!(count(&first, "created"), users, "{}", excerpt(&first));
    assert_heartbeat(&tenant, 0, &first, &secrets, "the first sync");
    let (code, st) = status(&c);
    assert_eq!(code, 0, "status after a successful run: {st}");
    let d = &st["data"];
    assert_eq!(d["healthy"], true, "{st}");
    assert_eq!(d["health_reasons"], json!([]), "{st}");
    assert_eq!(
        (d["tenant"]["status"].as_str(), d["tenant"]["status_source"].as_str()),
        (Some("Active"), Some("tenant"))
    );
    assert_eq!(d["tenant"]["agent_api"], true);
    assert_eq!(d["tenant"]["agent_name"], AGENT);
    let beat = &d["tenant"]["heartbeat"];
    assert_eq!((beat["failed"].as_bool(), beat["error"].is_null()), (Some(false), true), "{st}");
    assert_eq!(beat["last_success_at"], beat["last_attempt_at"], "{st}");
    let run = &d["state"]["last_runs"][0];
    assert_eq!(d["state"]["last_runs"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(
        (run["command"].as_str(), run["kind"].as_str(), run["dry_run"].as_bool()),
        (Some("sync"), Some("full"), Some(false))
    );
    assert_eq!((run["outcome"].as_str(), run["exit_code"].as_i64()), (Some("ok"), Some(0)), "{st}");
    assert_eq!(run["counts"]["created"], users, "{st}");
    assert!(run["duration_ms"].is_i64() && run["started_at"].is_string() && run["error"].is_null(), "{st}");
    assert_eq!(d["last_success_at"], run["finished_at"], "{st}");
    assert!(d["state"]["watermark_age_secs"].is_i64(), "{st}");
    let due: jiff::Timestamp = d["schedule"]["next_run"].as_str().unwrap().parse().unwrap();
    let started: jiff::Timestamp = run["started_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(due.duration_since(started).as_mins(), 15, "the next run is due an interval after the last: {st}");
    let table = common::run(common::ausi().args(["--config", &c, "status", "-o", "table"]));
    assert_eq!(table.code, 0, "{}{}", table.stdout, table.stderr);
    assert!(table.stdout.starts_with("Healthy."), "{}", table.stdout);
    assert!(table.stdout.contains("Active") && table.stdout.contains("full"), "{}", table.stdout);

    // 2. A run that cannot open the state store (another run holds it) records nothing and
    //    sends nothing, and breaks nothing.
    {
        let _held = ausi::store::StateStore::open(&dir.path().join("state.db"), "2026-01-01T00:00:00Z").unwrap();
        let r = common::run(common::ausi().args(["--config", &c, "sync", "-o", "json"]));
        assert_eq!(r.code, 75, "a locked store: {}{}", r.stdout, r.stderr);
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("another ausi run"), "{}", r.stdout);
        let (code, st) = status(&c);
        assert_eq!(code, 0, "status while another run holds the store: {st}");
        assert_eq!(st["data"]["state"]["last_runs"].as_array().unwrap().len(), 1, "{st}");
    }
    assert_eq!(tenant.heartbeats().len(), 1, "a run that could not start sends no heartbeat");

    // 3. The tenant is out (503 everywhere): the run fails, is recorded, and its heartbeat is
    //    tried and fails; status is unhealthy (exit 1) with both reasons, still Active.
    tenant.set_down(true);
    let failed = failed_sync(&c, &secrets, "the sync during the outage");
    let beats = tenant.heartbeats();
    // Retried like any SCIM call (one retry policy): 503 is temporary.
    let attempts = ausi::tenant::retry::RetryPolicy::default().max_attempts as usize;
    assert_eq!(beats.len(), 1 + attempts, "the failed run tried its heartbeat, with retries: {beats:#?}");
    let body = last_beat(&tenant);
    assert_eq!(body["status"], "unhealthy", "{body}");
    let last = &body["last_sync"];
    assert_eq!((last["outcome"].as_str(), last["exit_code"].as_i64()), (Some("error"), Some(75)), "{body}");
    assert_eq!(last["kind"], "sync", "it failed before choosing full or delta: {body}");
    assert!(last["error"].as_str().is_some_and(|e| e.contains("unavailable")), "{body}");
    for secret in &secrets {
        assert!(!beats[1].body.contains(secret), "a secret in the heartbeat: {}", beats[1].body);
    }
    let (code, st) = status(&c);
    assert_eq!(code, 1, "status after the outage: {st}");
    assert_eq!(st["status"], "findings", "{st}");
    let d = &st["data"];
    assert_eq!(d["healthy"], false, "{st}");
    assert_eq!(reason_codes(&st), ["last-run-failed", "heartbeat-failed"], "{st}");
    assert_eq!(d["tenant"]["status"], "Active", "the last status the tenant gave: {st}");
    let beat = &d["tenant"]["heartbeat"];
    assert_eq!(beat["failed"], true, "{st}");
    assert!(beat["error"].as_str().is_some_and(|e| e.contains("503")), "{st}");
    assert_ne!(beat["last_success_at"], beat["last_attempt_at"], "{st}");
    let runs = d["state"]["last_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{st}");
    assert_eq!((runs[0]["outcome"].as_str(), runs[0]["exit_code"].as_i64()), (Some("error"), Some(75)), "{st}");
    assert_eq!(runs[0]["error"], failed["error"]["message"], "{st}");
    assert_eq!(runs[1]["outcome"], "ok", "{st}");
    assert_eq!(d["last_success_at"], runs[1]["finished_at"], "the last success is still the first run: {st}");
    let table = common::run(common::ausi().args(["--config", &c, "status", "-o", "table"]));
    assert_eq!(table.code, 1, "{}{}", table.stdout, table.stderr);
    assert!(table.stdout.starts_with("UNHEALTHY:"), "{}", table.stdout);
    assert!(table.stdout.contains("heartbeat-failed") && table.stdout.contains("FAILED"), "{}", table.stdout);

    // 4. The tenant is back: the next run succeeds, its heartbeat too, and status is healthy.
    tenant.set_down(false);
    let back = sync(&c, &[], "the sync after the outage");
    assert_eq!(mode(&back), "delta", "{}", excerpt(&back));
    assert_heartbeat(&tenant, 1 + attempts, &back, &secrets, "the sync after the outage");
    let (code, st) = status(&c);
    assert_eq!(code, 0, "status after the tenant came back: {st}");
    assert_eq!(st["data"]["tenant"]["heartbeat"]["failed"], false, "{st}");

    // 5. The tenant moves to a closed loopback port: connection refused for SCIM and heartbeat.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = text.replace(&tenant.addr.to_string(), &closed.to_string());
    assert_ne!(moved, text, "the tenant's address is in the config");
    std::fs::write(&config, moved).unwrap();
    failed_sync(&c, &secrets, "the sync against a closed port");
    assert_eq!(tenant.heartbeats().len(), 2 + attempts, "nothing reached the old address");
    let (code, st) = status(&c);
    assert_eq!(code, 1, "status after a closed port: {st}");
    assert_eq!(reason_codes(&st), ["last-run-failed", "heartbeat-failed"], "{st}");
    let runs = st["data"]["state"]["last_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "{st}");
    assert_eq!(runs[0]["exit_code"], 75, "{st}");
    assert!(tenant.errors().is_empty(), "the test's tenant saw: {:?}", tenant.errors());
}

/// The tenant assigns a provisioning policy in its heartbeat answer: the next run maps with it
/// (the tenant's choice wins over the configuration, and the report says so); withdrawn, the
/// configured one is back.
#[test]
fn the_policy_the_tenant_assigns_wins_from_the_next_run() {
    let Some(tb) = testbed() else { return };
    let tag = common::unique_tag();
    let (_sandbox, root) = seed(&tb, "AgentPol", "ap", "Agent", &tag, 2);
    let (tenant, token, _) = start_tenant(&tb, &format!("p{tag}"), &format!("/realm{tag}"));
    let (_dir, config) = tb.config(
        "[policies.Rewrite.user]\n\"userName\" = 'Replace([userPrincipalName], \"@example.test\", \"@assigned.example\")'\n",
    );
    let c = cfg(&config).to_owned();
    register(&c, &tenant, &token);
    let r = common::run(common::ausi().args(["--config", &c, "select-ous", "-o", "json", "--add", &root]));
    assert_eq!(r.code, 0, "select-ous: {}{}", r.stdout, r.stderr);

    let first = sync(&c, &[], "first run");
    assert!(first["data"].get("policy").is_none(), "Default from the configuration: {}", excerpt(&first));
    tenant.assign_policy(Some("Rewrite"));
    sync(&c, &["--dry-run"], "a dry run sends no heartbeat"); // the answer comes with the next real run
    let beat = sync(&c, &[], "the run whose heartbeat assigns the policy");
    assert!(beat["data"].get("policy").is_none(), "the assignment applies from the next run on");
    let (code, assigned) = common::json_with(&mut common::ausi(), &["--config", &c, "sync", "--allow-renames", "2"]);
    assert_eq!(code, 0, "{}", excerpt(&assigned));
    assert_eq!(assigned["data"]["policy"], json!({"name": "Rewrite", "source": "tenant", "configured": "Default"}));
    assert!(warning_codes(&assigned).iter().any(|w| w == "tenant-policy"), "{}", excerpt(&assigned));
    assert_eq!(assigned["data"]["changes_by_attribute"]["userName"], 2, "{}", excerpt(&assigned));
    // Withdrawn: the configured policy again, and a policy it does not define stops the run.
    tenant.assign_policy(Some("Unknown"));
    sync(&c, &[], "the run whose heartbeat assigns an unknown policy");
    let (code, refused) = common::json_with(&mut common::ausi(), &["--config", &c, "sync"]);
    assert_eq!(code, 78, "{}", excerpt(&refused));
    assert!(refused["error"]["message"].as_str().unwrap().contains("\"Unknown\""), "{}", excerpt(&refused));
    assert!(tenant.errors().is_empty(), "{:?}", tenant.errors());
}

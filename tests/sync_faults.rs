//! `ausi sync --full` ends exact when the tenant misbehaves and when the process dies: against
//! the testbed's Samba AD DC and scim2-server on 127.0.0.1 (`scripts/testbed up`, then source its
//! env.sh), like tests/dc.rs; skipped without them.
//!
//! "Exact" means: one tenant user per valid in-scope seeded user (by externalId = objectGUID),
//! none missing, no duplicate externalId or userName, no quarantined user, the attributes the
//! seed knows, no group (the scope holds none), and a further `sync --full` writes nothing.
//!
//! The faults come from a small HTTP/1.x proxy in this file (one request per connection, as
//! scim2-server speaks HTTP/1.0 and closes each connection) that sits between ausi and
//! scim2-server. It only ever listens on and connects to 127.0.0.1.
//!
//! The tests share one single-threaded SCIM server and the kill points are chosen from a timed
//! run, so they run one at a time ([`serial`]).

#![allow(clippy::print_stderr)] // a skipped test says why, and the runs say what happened

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ausi::tenant::ResourceKind;
use common::testbed::{Agent, Testbed, cfg, dn, testbed, under};
use common::{ausi, json_with};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------------------------------ the oracle

/// The tests run one at a time: one single-threaded SCIM server, and timed kill points.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// ~380 users, 7 of them invalid, no group: quick to sync.
fn sales(tb: &Testbed) -> String {
    format!("OU=Sales,OU=Corp,{}", tb.base)
}

/// The seeded users of one OU, by objectGUID: those a sync provisions and those it quarantines.
struct Expected {
    valid: BTreeMap<String, Value>,
    quarantined: BTreeMap<String, Value>,
}

fn expected_scope(tb: &Testbed, ou: &str) -> Expected {
    // expected.json has no objectGUIDs; the select-ous preview lists every user entering with
    // its GUID (tests/dc.rs checks those against samba-tool).
    let (_dir, config) = tb.config("");
    let (code, v) = json_with(&mut ausi(), &["--config", cfg(&config), "select-ous", "--add", ou, "--dry-run"]);
    assert_eq!(code, 0, "select-ous preview: {v}");
    let mut guid_of: BTreeMap<String, String> = v["data"]["changes"]["entering"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "user")
        .map(|o| (dn(o["dn"].as_str().unwrap()).normalized(), o["object_guid"].as_str().unwrap().to_owned()))
        .collect();
    let mut expected = Expected { valid: BTreeMap::new(), quarantined: BTreeMap::new() };
    for user in tb.users().iter().filter(|u| under(u["dn"].as_str().unwrap(), &[ou], &[])) {
        let guid = guid_of
            .remove(&dn(user["dn"].as_str().unwrap()).normalized())
            .unwrap_or_else(|| panic!("seeded user {} not in the preview", user["dn"]));
        let bucket = if user["problems"].as_array().unwrap().is_empty() {
            &mut expected.valid
        } else {
            &mut expected.quarantined
        };
        bucket.insert(guid, user.clone());
    }
    assert!(guid_of.is_empty(), "users in scope that the seed does not know: {guid_of:?}");
    assert!(expected.valid.len() > 300 && !expected.quarantined.is_empty(), "the seed changed: fix the test");
    expected
}

/// The tenant holds exactly the valid users of `expected`, once each, as seeded.
fn assert_exact(agent: &Agent, expected: &Expected, context: &str) {
    let users = agent.tenant(ResourceKind::User);
    let mut by_guid: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &users {
        let guid = u["externalId"].as_str().unwrap_or_else(|| panic!("{context}: a tenant user without externalId: {u}"));
        by_guid.entry(guid).or_default().push(u);
        *by_name.entry(u["userName"].as_str().unwrap_or_default()).or_default() += 1;
    }
    let twice: Vec<(&&str, usize)> = by_guid.iter().map(|(g, v)| (g, v.len())).filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "{context}: duplicate externalIds in the tenant: {twice:?}");
    let twice: Vec<_> = by_name.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{context}: duplicate userNames in the tenant: {twice:?}");
    let quarantined: Vec<&str> = expected
        .quarantined
        .iter()
        .filter(|(guid, u)| by_guid.contains_key(guid.as_str()) || by_name.contains_key(u["upn"].as_str().unwrap()))
        .map(|(_, u)| u["dn"].as_str().unwrap())
        .collect();
    assert!(quarantined.is_empty(), "{context}: quarantined users were provisioned: {quarantined:?}");
    let missing: Vec<&str> = expected
        .valid
        .iter()
        .filter(|(guid, _)| !by_guid.contains_key(guid.as_str()))
        .map(|(_, u)| u["dn"].as_str().unwrap())
        .collect();
    let extra: Vec<&&str> = by_guid.keys().filter(|g| !expected.valid.contains_key(**g)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{context}: {} users missing (first: {:?}), {} not in scope (first: {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    assert_eq!(users.len(), expected.valid.len(), "{context}: tenant users");
    for (guid, seed) in &expected.valid {
        let u = by_guid[guid.as_str()][0];
        let who = seed["dn"].as_str().unwrap();
        assert_eq!(u["userName"], seed["upn"], "{context}: userName of {who}");
        assert_eq!(u["active"], Value::Bool(seed["disabled"] != true), "{context}: active of {who}");
        assert_eq!(u["emails"][0]["value"], seed["mail"], "{context}: mail of {who}");
        assert_eq!(u["name"]["givenName"], seed["given_name"], "{context}: givenName of {who}");
        assert_eq!(u["name"]["familyName"], seed["sn"], "{context}: familyName of {who}");
    }
    let groups = agent.tenant(ResourceKind::Group);
    assert!(groups.is_empty(), "{context}: the scope has no group, the tenant has {}", groups.len());
}

fn counts(report: &Value) -> BTreeMap<String, u64> {
    report["data"]["counts"]
        .as_object()
        .unwrap_or_else(|| panic!("a report without counts: {report}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

/// A finished run's report: every user in scope accounted for, nothing failed.
fn assert_complete(report: &Value, expected: &Expected, context: &str) {
    let c = counts(report);
    assert_eq!(report["data"]["failures"].as_array().map(Vec::len), Some(0), "{context}: failures in {report}");
    assert_eq!(c["failed"], 0, "{context}");
    assert_eq!(c["quarantined"], expected.quarantined.len() as u64, "{context}: quarantined");
    assert_eq!(
        c["created"] + c["adopted"] + c["updated"] + c["unchanged"],
        expected.valid.len() as u64,
        "{context}: every valid user accounted for once: {c:?}"
    );
    assert_eq!(c["deactivated"] + c["deleted"], 0, "{context}: nobody left the scope");
}

/// One more `sync --full`: nothing left to write.
fn assert_settled(agent: &Agent, expected: &Expected, context: &str) {
    let (code, v) = agent.sync(&["--full"]);
    assert_eq!(code, 1, "{context}: the settling run (1 = quarantined users exist): {v}");
    assert_complete(&v, expected, context);
    assert_eq!(v["data"]["write_requests"], 0, "{context}: the settling run wrote: {}", v["data"]["counts"]);
    assert_eq!(counts(&v)["unchanged"], expected.valid.len() as u64, "{context}: settling run");
}

// ------------------------------------------------------------------------------- the agent's config

/// Points the agent's `[tenant] scim_url` at `url`.
fn set_scim_url(agent: &Agent, url: &str) {
    let text = std::fs::read_to_string(&agent.config).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    assert!(doc["tenant"]["scim_url"].is_str(), "the registered config names its scim_url:\n{text}");
    doc["tenant"]["scim_url"] = toml_edit::value(url);
    std::fs::write(&agent.config, doc.to_string()).unwrap();
}

/// The real SCIM server's address (loopback only: these tests never send traffic elsewhere).
fn upstream(tb: &Testbed) -> SocketAddr {
    let authority = tb.scim_url.strip_prefix("http://").expect("an http:// SCIM URL").split('/').next().unwrap();
    let addr: SocketAddr = authority.parse().expect("the SCIM server as IP:PORT");
    assert!(addr.ip().is_loopback(), "the testbed's SCIM server must be on loopback: {addr}");
    addr
}

// ------------------------------------------------------------------------------ the ausi process

/// `ausi --config … sync --full -o json` as a child process; stdout to `stdout` (or nowhere).
fn spawn_sync(agent: &Agent, stdout: Option<&Path>) -> Child {
    let out = match stdout {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    Process::new(assert_cmd::cargo::cargo_bin("ausi"))
        .args(["--config", agent.cfg(), "sync", "--full", "-o", "json"])
        .env_remove("AUSI_CONFIG")
        .env_remove("AUSI_SOURCE")
        .env_remove("AUSI_OUTPUT")
        .env_remove("AUSI_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ausi")
}

/// Waits for the child, killing it (and failing) after `limit`.
fn wait_for(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `done` every 5 ms for up to `limit`; whether it became true.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

// ----------------------------------------------------------------------------------- the proxy

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Pass,
    /// `429` with `Retry-After: 1`; the request is not forwarded.
    TooMany,
    /// `500`; the request is not forwarded.
    ServerError,
    /// The connection is closed without an answer; the request is not forwarded.
    DropRequest,
    /// The request is forwarded (so a POST did create the user), the answer is thrown away and
    /// the connection closed: the nastiest case.
    DropResponse,
}

/// The fault of request number `n` (1-based, in the order the requests arrive).
///
/// ~22 % of requests fail. ausi makes 5 attempts per call; at the ~37 % of a 7/11/13/17
/// schedule, a call out of ~600 exhausts them about every run (0.37^5 ≈ 0.7 %), and three
/// runs would seldom be enough. At 22 % that is ~0.05 % per call, so a run usually completes
/// and a run that exits 75 is followed by one with fewer writes left. 429s are rarest: each
/// costs a second.
fn schedule(n: u64) -> Fault {
    if n % 13 == 0 {
        Fault::DropResponse
    } else if n % 17 == 0 {
        Fault::ServerError
    } else if n % 19 == 0 {
        Fault::DropRequest
    } else if n % 29 == 0 {
        Fault::TooMany
    } else {
        Fault::Pass
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Faults per [`schedule`].
    Faults,
    /// The first request waits until [`Proxy::release`]; everything else passes.
    HoldFirst,
    /// Passes everything until the k-th POST, which is forwarded but never answered; after it
    /// nothing is forwarded or answered (the run freezes, ready to be killed at that instant).
    FreezeAfterPost(u64),
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    /// Requests other than GET: what ausi counts as `write_requests`.
    writes: AtomicU64,
    posts: AtomicU64,
    passed: AtomicU64,
    too_many: AtomicU64,
    server_errors: AtomicU64,
    dropped_requests: AtomicU64,
    dropped_responses: AtomicU64,
    dropped_post_responses: AtomicU64,
    /// Requests the proxy could not parse or forward: must stay zero (no unplanned fault).
    proxy_errors: AtomicU64,
    /// Requests being forwarded to the SCIM server right now.
    upstream_in_flight: AtomicU64,
    frozen: AtomicBool,
    released: AtomicBool,
    stop: AtomicBool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Snapshot {
    requests: u64,
    writes: u64,
    passed: u64,
    too_many: u64,
    server_errors: u64,
    dropped_requests: u64,
    dropped_responses: u64,
    dropped_post_responses: u64,
    proxy_errors: u64,
}

impl Snapshot {
    fn since(self, before: Snapshot) -> Snapshot {
        Snapshot {
            requests: self.requests - before.requests,
            writes: self.writes - before.writes,
            passed: self.passed - before.passed,
            too_many: self.too_many - before.too_many,
            server_errors: self.server_errors - before.server_errors,
            dropped_requests: self.dropped_requests - before.dropped_requests,
            dropped_responses: self.dropped_responses - before.dropped_responses,
            dropped_post_responses: self.dropped_post_responses - before.dropped_post_responses,
            proxy_errors: self.proxy_errors - before.proxy_errors,
        }
    }
}

struct Proxy {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`, on a runtime of its own thread.
    fn start(upstream: SocketAddr, mode: Mode) -> Proxy {
        assert!(upstream.ip().is_loopback());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let shared = stats.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    tokio::spawn(handle(stream, upstream, mode, shared.clone()));
                }
            });
        });
        Proxy { addr, stats }
    }

    /// The agent's SCIM URL with the proxy in place of the server: same tenant path.
    fn url_for(&self, scim: &str) -> String {
        let rest = scim.strip_prefix("http://").expect("http SCIM URL");
        let path = &rest[rest.find('/').expect("a tenant path")..];
        format!("http://{}{path}", self.addr)
    }

    fn release(&self) {
        self.stats.released.store(true, Ordering::SeqCst);
    }

    fn snapshot(&self) -> Snapshot {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Snapshot {
            requests: get(&s.requests),
            writes: get(&s.writes),
            passed: get(&s.passed),
            too_many: get(&s.too_many),
            server_errors: get(&s.server_errors),
            dropped_requests: get(&s.dropped_requests),
            dropped_responses: get(&s.dropped_responses),
            dropped_post_responses: get(&s.dropped_post_responses),
            proxy_errors: get(&s.proxy_errors),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stats.stop.store(true, Ordering::SeqCst);
        self.stats.released.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        std::net::TcpStream::connect(self.addr).ok();
    }
}

struct Request {
    method: String,
    /// Head and body, as received.
    bytes: Vec<u8>,
}

/// One HTTP/1.x request: the head, then a Content-Length body. `None` at EOF or on junk.
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let k = stream.read(&mut chunk).await.ok()?;
        if k == 0 || bytes.len() > 1 << 20 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..k]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let method = head.split(' ').next()?.to_owned();
    let mut length = 0usize;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("expect") {
            return None; // not what ausi sends; counted as a proxy error
        }
    }
    while bytes.len() < head_end + length {
        let k = stream.read(&mut chunk).await.ok()?;
        if k == 0 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..k]);
    }
    Some(Request { method, bytes })
}

/// Sends the request to the SCIM server on a new connection; its whole answer (HTTP/1.0: up to
/// the close).
async fn forward(upstream: SocketAddr, request: &Request, stats: &Stats) -> Option<Vec<u8>> {
    stats.upstream_in_flight.fetch_add(1, Ordering::SeqCst);
    let exchange = async {
        let mut server = TcpStream::connect(upstream).await.ok()?;
        server.write_all(&request.bytes).await.ok()?;
        let mut answer = Vec::new();
        server.read_to_end(&mut answer).await.ok()?;
        (!answer.is_empty()).then_some(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), exchange).await.ok().flatten();
    stats.upstream_in_flight.fetch_sub(1, Ordering::SeqCst);
    if answer.is_none() {
        stats.proxy_errors.fetch_add(1, Ordering::SeqCst);
    }
    answer
}

async fn relay(client: &mut TcpStream, upstream: SocketAddr, request: &Request, stats: &Stats) {
    if let Some(answer) = forward(upstream, request, stats).await {
        stats.passed.fetch_add(1, Ordering::SeqCst);
        client.write_all(&answer).await.ok();
        client.shutdown().await.ok();
    }
}

async fn answer(client: &mut TcpStream, status: &str, extra_header: &str) {
    let code = status.split(' ').next().unwrap();
    let body = format!(
        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"{code}","detail":"injected by the test proxy"}}"#
    );
    let text = format!(
        "HTTP/1.1 {status}\r\n{extra_header}Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(text.as_bytes()).await.ok();
    client.shutdown().await.ok();
}

/// Keeps the connection open, unanswered, until the client goes away.
async fn hold(client: &mut TcpStream) {
    let mut byte = [0u8; 1];
    while matches!(client.read(&mut byte).await, Ok(k) if k > 0) {}
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, mode: Mode, stats: Arc<Stats>) {
    let Some(request) = read_request(&mut client).await else {
        // A connection closed before a whole request (none expected from ausi).
        stats.proxy_errors.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let n = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let post = request.method == "POST";
    if request.method != "GET" {
        stats.writes.fetch_add(1, Ordering::SeqCst);
    }
    let post_number = if post { stats.posts.fetch_add(1, Ordering::SeqCst) + 1 } else { 0 };
    match mode {
        Mode::Faults => match schedule(n) {
            Fault::Pass => relay(&mut client, upstream, &request, &stats).await,
            Fault::TooMany => {
                stats.too_many.fetch_add(1, Ordering::SeqCst);
                answer(&mut client, "429 Too Many Requests", "Retry-After: 1\r\n").await;
            }
            Fault::ServerError => {
                stats.server_errors.fetch_add(1, Ordering::SeqCst);
                answer(&mut client, "500 Internal Server Error", "").await;
            }
            Fault::DropRequest => {
                stats.dropped_requests.fetch_add(1, Ordering::SeqCst);
                drop(client);
            }
            Fault::DropResponse => {
                if forward(upstream, &request, &stats).await.is_some() {
                    stats.dropped_responses.fetch_add(1, Ordering::SeqCst);
                    if post {
                        stats.dropped_post_responses.fetch_add(1, Ordering::SeqCst);
                    }
                }
                drop(client);
            }
        },
        Mode::HoldFirst => {
            if n == 1 {
                while !stats.released.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            relay(&mut client, upstream, &request, &stats).await;
        }
        Mode::FreezeAfterPost(k) => {
            if post_number > k || (!post && stats.frozen.load(Ordering::SeqCst)) {
                hold(&mut client).await;
            } else if post_number == k {
                if forward(upstream, &request, &stats).await.is_some() {
                    stats.dropped_post_responses.fetch_add(1, Ordering::SeqCst);
                }
                stats.frozen.store(true, Ordering::SeqCst);
                hold(&mut client).await;
            } else {
                relay(&mut client, upstream, &request, &stats).await;
            }
        }
    }
}

// ----------------------------------------------------------------------------------- the tests

#[test]
fn a_faulty_tenant_still_ends_exact() {
    let Some(tb) = testbed() else { return };
    let _serial = serial();
    let started = Instant::now();
    let ou = sales(&tb);
    let expected = expected_scope(&tb, &ou);
    let agent = tb.agent(&[&ou], "");
    let proxy = Proxy::start(upstream(&tb), Mode::Faults);
    set_scim_url(&agent, &proxy.url_for(&agent.scim));

    // Every injected fault is retryable, but a call whose five attempts all fail ends the run
    // with exit 75 (the tenant is unavailable: the next scheduled run retries). That is allowed;
    // the next run must pick up where it stopped, so up to three runs.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let before = proxy.snapshot();
        let (code, report) = agent.sync(&["--full"]);
        let seen = proxy.snapshot().since(before);
        eprintln!("faulty tenant: run {} exited {code} after {seen:?}", runs.len() + 1);
        runs.push((code, report, seen));
        if code != 75 {
            break;
        }
    }
    let (code, report, seen) = runs.last().unwrap();
    assert_ne!(*code, 75, "three runs in a row gave up on the faulty tenant; the last: {report}");
    assert_eq!(*code, 1, "1 = quarantined users exist: {report}");
    assert_complete(report, &expected, "the last run through the faulty proxy");
    // write_requests counts every attempt of a write, retries included: with one request per
    // connection the proxy sees each of them (a run cut short by exit 75 may drop some unsent).
    assert_eq!(report["data"]["write_requests"], seen.writes, "write_requests vs writes the proxy saw");
    let c = counts(report);
    if runs.len() == 1 {
        // An empty tenant: a user can only be there already when a POST of it reached the
        // server and its answer was lost, and then it is adopted, not created twice.
        assert!(seen.dropped_post_responses > 0, "no POST lost its answer: {seen:?}");
        assert!(
            c["adopted"] >= 1 && c["adopted"] <= seen.dropped_post_responses,
            "adopted {} users, {} POST answers were lost",
            c["adopted"],
            seen.dropped_post_responses
        );
        assert_eq!(c["unchanged"] + c["updated"], 0, "{c:?}");
    }
    let total = proxy.snapshot();
    assert!(total.too_many > 0, "no 429 injected: {total:?}");
    assert!(total.server_errors > 0, "no 500 injected: {total:?}");
    assert!(total.dropped_requests > 0, "no request dropped: {total:?}");
    assert!(total.dropped_post_responses > 0, "no POST lost its answer: {total:?}");
    assert_eq!(total.proxy_errors, 0, "the proxy itself failed (an unplanned fault): {total:?}");
    assert_exact(&agent, &expected, "after the faulty tenant");

    // Straight to the real server: nothing left to do.
    set_scim_url(&agent, &agent.scim);
    assert_settled(&agent, &expected, "after the faulty tenant");
    eprintln!("faulty tenant: {} run(s), {total:?}, {:.1} s in all", runs.len(), started.elapsed().as_secs_f64());
}

/// Kills a fresh agent's first `sync --full` and checks the rerun; `kill` returns when to kill.
fn kill_and_rerun(
    tb: &Testbed,
    ou: &str,
    expected: &Expected,
    label: &str,
    kill_when: &dyn Fn(&mut Child, &Agent),
) {
    let agent = tb.agent(&[ou], "");
    let mut child = spawn_sync(&agent, None);
    kill_when(&mut child, &agent);
    let finished = child.try_wait().unwrap();
    child.kill().ok();
    let status = child.wait().unwrap();
    let at_kill = agent.tenant(ResourceKind::User).len();
    eprintln!(
        "SIGKILL {label}: {}, {at_kill} of {} users in the tenant",
        if finished.is_some() { format!("the run had finished ({status})") } else { format!("killed ({status})") },
        expected.valid.len()
    );
    let (code, report) = agent.sync(&["--full"]);
    assert!(code == 0 || code == 1, "{label}: the rerun exited {code}: {report}");
    assert_complete(&report, expected, &format!("rerun after SIGKILL {label}"));
    assert_exact(&agent, expected, &format!("after SIGKILL {label} and a rerun"));
    assert_settled(&agent, expected, &format!("after SIGKILL {label} and a rerun"));
}

#[test]
fn sigkill_at_any_point_then_a_rerun_ends_exact() {
    let Some(tb) = testbed() else { return };
    let _serial = serial();
    let started = Instant::now();
    let ou = sales(&tb);
    let expected = expected_scope(&tb, &ou);

    // One uninterrupted run, timed the same way, spreads the kill points over a real run.
    let baseline = tb.agent(&[&ou], "");
    let clock = Instant::now();
    let mut child = spawn_sync(&baseline, None);
    let status = wait_for(&mut child, Duration::from_secs(120), "the timed run");
    let full = clock.elapsed();
    assert_eq!(status.code(), Some(1), "the timed run (1 = quarantined users exist)");
    assert_exact(&baseline, &expected, "after an uninterrupted run");
    eprintln!("SIGKILL: an uninterrupted run takes {} ms", full.as_millis());

    // Very early (before the tenant is written, possibly before the state store exists), then
    // through the writes, and late.
    let delays = [Duration::from_millis(20), full.mul_f64(0.3), full.mul_f64(0.5), full.mul_f64(0.7), full.mul_f64(0.9)];
    for delay in delays {
        kill_and_rerun(&tb, &ou, &expected, &format!("after {} ms", delay.as_millis()), &|_, _| {
            std::thread::sleep(delay)
        });
    }

    // And at the worst instant, whatever the machine's speed: the k-th create has reached the
    // tenant, its answer has not reached ausi, nothing else is in flight.
    let k = 150u64;
    assert!((k as usize) < expected.valid.len());
    let proxy = Proxy::start(upstream(&tb), Mode::FreezeAfterPost(k));
    let agent = tb.agent(&[&ou], "");
    set_scim_url(&agent, &proxy.url_for(&agent.scim));
    let mut child = spawn_sync(&agent, None);
    let frozen = wait_until(Duration::from_secs(120), || {
        proxy.stats.frozen.load(Ordering::SeqCst) || child.try_wait().unwrap().is_some()
    });
    let finished = child.try_wait().unwrap();
    child.kill().ok();
    child.wait().unwrap();
    assert!(frozen && finished.is_none(), "the run reached create #{k}: frozen {frozen}, exit {finished:?}");
    assert!(wait_until(Duration::from_secs(30), || proxy.stats.upstream_in_flight.load(Ordering::SeqCst) == 0));
    let at_kill = agent.tenant(ResourceKind::User).len();
    assert_eq!(at_kill as u64, k, "the tenant holds the {k} users whose POST was forwarded");
    drop(proxy);
    set_scim_url(&agent, &agent.scim);
    let (code, report) = agent.sync(&["--full"]);
    assert!(code == 0 || code == 1, "rerun after SIGKILL at create #{k}: exited {code}: {report}");
    assert_complete(&report, &expected, &format!("rerun after SIGKILL at create #{k}"));
    let c = counts(&report);
    // Those in the tenant are recognised (committed: unchanged; journaled only: adopted by
    // externalId), the others created once.
    assert_eq!(c["created"], expected.valid.len() as u64 - k, "rerun after SIGKILL at create #{k}: {c:?}");
    assert_eq!(c["adopted"] + c["unchanged"], k, "{c:?}");
    assert!(c["adopted"] >= 1, "the user whose answer was lost is adopted: {c:?}");
    assert_exact(&agent, &expected, &format!("after SIGKILL at create #{k} and a rerun"));
    assert_settled(&agent, &expected, &format!("after SIGKILL at create #{k} and a rerun"));
    eprintln!("SIGKILL at create #{k}: rerun {c:?}; {:.1} s in all", started.elapsed().as_secs_f64());
}

#[test]
fn a_second_run_is_locked_out_and_the_first_completes() {
    let Some(tb) = testbed() else { return };
    let _serial = serial();
    let started = Instant::now();
    let ou = sales(&tb);
    let expected = expected_scope(&tb, &ou);
    let agent = tb.agent(&[&ou], "");
    let proxy = Proxy::start(upstream(&tb), Mode::HoldFirst);
    set_scim_url(&agent, &proxy.url_for(&agent.scim));

    let out = agent.dir.path().join("first.json");
    let mut first = spawn_sync(&agent, Some(&out));
    // The first SCIM request comes after the state store is locked, and the proxy holds it: the
    // first run holds the lock for as long as the test wants.
    let waiting = wait_until(Duration::from_secs(60), || {
        proxy.stats.requests.load(Ordering::SeqCst) >= 1 || first.try_wait().unwrap().is_some()
    });
    assert!(waiting && first.try_wait().unwrap().is_none(), "the first run did not reach the tenant");

    let state = agent.config.with_file_name("state.db");
    let mut second = ausi();
    second.timeout(Duration::from_secs(60));
    let (code, v) = json_with(&mut second, &["--config", agent.cfg(), "sync", "--full"]);
    assert_eq!(code, 75, "the second run: {v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&state.display().to_string()), "the error names the state store {}: {v}", state.display());
    assert!(message.contains(&format!("pid {}", first.id())), "the error names the holder: {v}");
    assert_eq!(proxy.stats.requests.load(Ordering::SeqCst), 1, "the locked-out run reached the tenant");
    assert!(agent.tenant(ResourceKind::User).is_empty(), "the locked-out run wrote to the tenant");

    proxy.release();
    let status = wait_for(&mut first, Duration::from_secs(120), "the first run");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).expect("the first run's report");
    assert_eq!(status.code(), Some(1), "the first run (1 = quarantined users exist): {report}");
    assert_complete(&report, &expected, "the first run");
    assert_eq!(counts(&report)["created"], expected.valid.len() as u64, "the first run created everyone");
    assert_exact(&agent, &expected, "after the locked-out run and the first");
    assert_eq!(proxy.snapshot().proxy_errors, 0);
    set_scim_url(&agent, &agent.scim);
    assert_settled(&agent, &expected, "after the locked-out run and the first");
    eprintln!("lock: {:.1} s", started.elapsed().as_secs_f64());
}

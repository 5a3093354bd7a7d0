//! `ausi sync --full` ends exact when the tenant misbehaves and when the process dies: against
//! the testbed's Samba AD DC and scim2-server on 127.0.0.1 (`scripts/testbed up`, then source its
//! env.sh), like tests/dc.rs; skipped without them.
//!
//! "Exact" means: one tenant user per valid in-scope seeded user (by externalId = objectGUID),
//! none missing, no duplicate externalId or userName, no quarantined user, the attributes the
//! seed knows, no group (the scope holds none), a further `sync --full` writes nothing, and the
//! state store maps each user to its tenant id with nothing pending.
//!
//! - a tenant that throttles, fails, drops requests and loses answers (with and without /Bulk);
//! - a tenant whose answers stop arriving mid-run (exit 75, then the next run finishes);
//! - SIGKILL at timed points of a real run and at the worst instant (a create done, its answer
//!   not yet read), each followed by a rerun;
//! - a second run on the same config while one runs (exit 75, naming the state store).
//!
//! The faults come from a small HTTP/1.x proxy in this file (one request per connection, as
//! scim2-server speaks HTTP/1.0 and closes each connection) that sits between ausi and
//! scim2-server. It only ever listens on and connects to 127.0.0.1.
//!
//! The tests share one single-threaded SCIM server and the kill points are chosen from a timed
//! run, so they run one at a time ([`serial`]).

#![allow(clippy::print_stderr)] // a skipped test says why, and the runs say what happened

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ausi::tenant::ResourceKind;
use common::testbed::{Agent, Testbed, cfg, dn, testbed, under};
use common::{ausi, json_with, wait_until};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Inside Sales: ~120 users, 2 of them invalid.
fn emea(tb: &Testbed) -> String {
    format!("OU=EMEA,OU=Sales,OU=Corp,{}", tb.base)
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
    assert!(expected.valid.len() > 50 && !expected.quarantined.is_empty(), "the seed changed: fix the test");
    expected
}

/// The tenant holds exactly the valid users of `expected`, once each, as seeded.
fn assert_exact(agent: &Agent, expected: &Expected, context: &str) {
    let users = agent.tenant(ResourceKind::User);
    let mut by_guid: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &users {
        let guid =
            u["externalId"].as_str().unwrap_or_else(|| panic!("{context}: a tenant user without externalId: {u}"));
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
    assert_state_matches(agent, expected, context);
}

/// The state store knows each provisioned user by the id the tenant gave it, nothing pending,
/// and exactly the invalid users as quarantined.
fn assert_state_matches(agent: &Agent, expected: &Expected, context: &str) {
    use ausi::store::{AnchorState, StateStore};
    let path = agent.config.with_file_name("state.db");
    let store = StateStore::open_read_only(&path).unwrap().unwrap_or_else(|| panic!("{context}: no state store"));
    let anchors = store.anchors().unwrap();
    let ids: BTreeMap<String, String> = agent
        .tenant(ResourceKind::User)
        .iter()
        .map(|u| (u["externalId"].as_str().unwrap().to_owned(), u["id"].as_str().unwrap().to_owned()))
        .collect();
    for (guid, seed) in &expected.valid {
        let anchor = anchors.get(guid).unwrap_or_else(|| panic!("{context}: no anchor for {}", seed["dn"]));
        assert_eq!(anchor.state, AnchorState::Active, "{context}: anchor of {}", seed["dn"]);
        assert_eq!(anchor.scim_id.as_ref(), ids.get(guid), "{context}: the SCIM id the state has for {}", seed["dn"]);
    }
    let others: Vec<_> = anchors.values().filter(|a| !expected.valid.contains_key(&a.guid)).collect();
    assert!(others.is_empty(), "{context}: anchors for objects not provisioned: {others:?}");
    let quarantine: Vec<String> = store.quarantine().unwrap().into_iter().map(|q| q.guid).collect();
    let distinct: BTreeSet<&String> = quarantine.iter().collect();
    assert_eq!(distinct, expected.quarantined.keys().collect(), "{context}: quarantine in the state store");
    assert_eq!(quarantine.len(), distinct.len(), "{context}: a user quarantined twice");
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

/// The tenant's capabilities as `register` recorded them: without `/Bulk` (in case ausi reads
/// them from the config rather than from the tenant at each run).
fn forget_bulk(agent: &Agent) {
    let text = std::fs::read_to_string(&agent.config).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    if let Some(capabilities) = doc["tenant"].get_mut("capabilities").and_then(|c| c.as_table_like_mut()) {
        capabilities.insert("bulk", toml_edit::value(false));
    }
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

/// The fault of the n-th request (1-based, in the order they arrive) that is not a `/Bulk` one.
///
/// ~22 % of requests fail. ausi makes 5 attempts per call; at the ~37 % of a 7/11/13/17
/// schedule, a call out of ~600 exhausts them about every run (0.37^5 ≈ 0.7 %), and three
/// runs would seldom be enough. At 22 % that is ~0.05 % per call, so a run usually completes
/// and a run that exits 75 is followed by one with fewer writes left. 429s are rarest: each
/// costs a second.
fn schedule(n: u64) -> Fault {
    if n.is_multiple_of(13) {
        Fault::DropResponse
    } else if n.is_multiple_of(17) {
        Fault::ServerError
    } else if n.is_multiple_of(19) {
        Fault::DropRequest
    } else if n.is_multiple_of(29) {
        Fault::TooMany
    } else {
        Fault::Pass
    }
}

/// The fault of the n-th `/Bulk` request: one request may carry every create of the run, so the
/// first four attempts get one fault each (the first creates them all and loses the answer),
/// and the fifth, ausi's last, passes.
fn bulk_schedule(n: u64) -> Fault {
    match n {
        1 => Fault::DropResponse,
        2 => Fault::ServerError,
        3 => Fault::TooMany,
        4 => Fault::DropRequest,
        _ => Fault::Pass,
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Faults per [`schedule`] and [`bulk_schedule`].
    Faults,
    /// Everything passes (the proxy only counts).
    Pass,
    /// The first request waits until [`Proxy::release`]; everything else passes.
    HoldFirst,
    /// Passes everything until the request that carries the k-th create (a POST of one
    /// resource, or a `/Bulk` POST of many): that one is forwarded but never answered, and after
    /// it nothing is forwarded or answered: the run freezes, ready to be killed at that instant.
    FreezeAtCreate(u64),
    /// Passes everything until the request that carries the k-th create; from that one on
    /// every request is forwarded and its answer thrown away (the tenant works, its answers
    /// no longer arrive).
    BlackoutAtCreate(u64),
    /// Every request with a `filter=` is answered `400 invalidFilter` (RFC 7644 §3.4.2.2);
    /// the rest passes.
    InvalidFilter,
    /// Every `PATCH /Groups/…` is answered `501 Not Implemented`; the rest passes.
    RefuseGroupPatch,
}

/// What the proxy counts.
#[derive(Clone, Copy, Debug)]
enum C {
    Requests,
    /// Requests other than GET: what ausi counts as `write_requests`.
    Writes,
    Plain,
    Bulk,
    Passed,
    TooMany,
    ServerErrors,
    DroppedRequests,
    DroppedResponses,
    /// Creates (single POSTs, or POST operations of a `/Bulk`) that reached the server and
    /// whose answer ausi never got.
    DroppedCreates,
    ForwardedCreates,
    CreatesSeen,
    /// ServiceProviderConfig answers rewritten to announce no bulk.
    NoBulkAnnounced,
    /// Requests the proxy could not parse or forward: must stay zero (no unplanned fault).
    ProxyErrors,
    /// Requests being forwarded to the SCIM server right now.
    InFlight,
}

const ALL: [C; 15] = [
    C::Requests,
    C::Writes,
    C::Plain,
    C::Bulk,
    C::Passed,
    C::TooMany,
    C::ServerErrors,
    C::DroppedRequests,
    C::DroppedResponses,
    C::DroppedCreates,
    C::ForwardedCreates,
    C::CreatesSeen,
    C::NoBulkAnnounced,
    C::ProxyErrors,
    C::InFlight,
];

#[derive(Default)]
struct Stats {
    counts: [AtomicU64; ALL.len()],
    frozen: AtomicBool,
    released: AtomicBool,
    stop: AtomicBool,
}

impl Stats {
    /// Adds `n`; the value before.
    fn add(&self, c: C, n: u64) -> u64 {
        self.counts[c as usize].fetch_add(n, Ordering::SeqCst)
    }

    fn get(&self, c: C) -> u64 {
        self.counts[c as usize].load(Ordering::SeqCst)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Snapshot([u64; ALL.len()]);

impl Snapshot {
    fn get(&self, c: C) -> u64 {
        self.0[c as usize]
    }

    fn since(self, before: Snapshot) -> Snapshot {
        Snapshot(std::array::from_fn(|i| self.0[i] - before.0[i]))
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for c in ALL.iter().filter(|c| self.get(**c) > 0) {
            map.entry(c, &self.get(*c));
        }
        map.finish()
    }
}

struct Proxy {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`, on a runtime of its own thread. With
    /// `announce_bulk` false the tenant it shows says it has no `/Bulk` (scim2-server has one).
    fn start(upstream: SocketAddr, mode: Mode, announce_bulk: bool) -> Proxy {
        assert!(upstream.ip().is_loopback());
        let stats = Arc::new(Stats::default());
        let (stop, shared) = (stats.clone(), stats.clone());
        let addr = common::http::serve(
            move || stop.stop.load(Ordering::SeqCst),
            move |stream| handle(stream, Upstream { addr: upstream, announce_bulk, stats: shared.clone() }, mode),
        );
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
        Snapshot(std::array::from_fn(|i| self.stats.get(ALL[i])))
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
    path: String,
    /// Head and body, as received.
    bytes: Vec<u8>,
    bulk: bool,
    /// Resources it asks to create: 1 for a POST, the POST operations of a `/Bulk`.
    creates: u64,
}

/// One request, with what the proxy counts. `None` at EOF or on junk (a proxy error).
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let common::http::RawRequest { method, path, bytes, body_start: head_end, .. } =
        common::http::read_request(stream).await?;
    let bulk = path.ends_with("/Bulk");
    let creates = match (method.as_str(), bulk) {
        ("POST", true) => {
            let body: Value = serde_json::from_slice(&bytes[head_end..]).ok()?;
            let ops = body["Operations"].as_array()?;
            ops.iter().filter(|op| op["method"].as_str().is_some_and(|m| m.eq_ignore_ascii_case("POST"))).count() as u64
        }
        ("POST", false) => 1,
        _ => 0,
    };
    Some(Request { method, path, bytes, bulk, creates })
}

/// The real SCIM server, as this proxy shows it.
struct Upstream {
    addr: SocketAddr,
    announce_bulk: bool,
    stats: Arc<Stats>,
}

impl Upstream {
    /// Sends the request to the SCIM server on a new connection; its whole answer (HTTP/1.0:
    /// up to the close).
    async fn forward(&self, request: &Request) -> Option<Vec<u8>> {
        self.stats.add(C::InFlight, 1);
        let exchange = async {
            let mut server = TcpStream::connect(self.addr).await.ok()?;
            server.write_all(&request.bytes).await.ok()?;
            let mut answer = Vec::new();
            server.read_to_end(&mut answer).await.ok()?;
            (!answer.is_empty()).then_some(answer)
        };
        let answer = tokio::time::timeout(Duration::from_secs(60), exchange).await.ok().flatten();
        self.stats.counts[C::InFlight as usize].fetch_sub(1, Ordering::SeqCst);
        match answer {
            Some(answer) => {
                self.stats.add(C::ForwardedCreates, request.creates);
                Some(answer)
            }
            None => {
                self.stats.add(C::ProxyErrors, 1);
                None
            }
        }
    }

    /// Forwards and answers with the server's answer (a ServiceProviderConfig without bulk
    /// when the tenant is not to announce it).
    async fn relay(&self, client: &mut TcpStream, request: &Request) {
        let Some(mut answer) = self.forward(request).await else { return };
        if !self.announce_bulk && request.path.ends_with("/ServiceProviderConfig") {
            match without_bulk(&answer) {
                Some(rewritten) => {
                    answer = rewritten;
                    self.stats.add(C::NoBulkAnnounced, 1);
                }
                None => {
                    self.stats.add(C::ProxyErrors, 1);
                }
            }
        }
        self.stats.add(C::Passed, 1);
        client.write_all(&answer).await.ok();
        client.shutdown().await.ok();
    }
}

/// The HTTP answer with `"bulk": {"supported": false}` in its JSON body.
fn without_bulk(answer: &[u8]) -> Option<Vec<u8>> {
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&answer[..head_end]).ok()?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let mut body: Value = serde_json::from_slice(&answer[head_end..]).ok()?;
    body.get_mut("bulk")?["supported"] = Value::Bool(false);
    let body = serde_json::to_vec(&body).ok()?;
    let mut out = String::new();
    for line in head.trim_end().split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    Some(bytes)
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

async fn handle(mut client: TcpStream, upstream: Upstream, mode: Mode) {
    let stats = upstream.stats.clone();
    let Some(request) = read_request(&mut client).await else {
        // A connection closed before a whole request (none expected from ausi).
        stats.add(C::ProxyErrors, 1);
        return;
    };
    let n = stats.add(C::Requests, 1) + 1;
    if request.method != "GET" {
        stats.add(C::Writes, 1);
    }
    let fault =
        if request.bulk { bulk_schedule(stats.add(C::Bulk, 1) + 1) } else { schedule(stats.add(C::Plain, 1) + 1) };
    match mode {
        Mode::Faults => match fault {
            Fault::Pass => upstream.relay(&mut client, &request).await,
            Fault::TooMany => {
                stats.add(C::TooMany, 1);
                answer(&mut client, "429 Too Many Requests", "Retry-After: 1\r\n").await;
            }
            Fault::ServerError => {
                stats.add(C::ServerErrors, 1);
                answer(&mut client, "500 Internal Server Error", "").await;
            }
            Fault::DropRequest => {
                stats.add(C::DroppedRequests, 1);
                drop(client);
            }
            Fault::DropResponse => {
                if upstream.forward(&request).await.is_some() {
                    stats.add(C::DroppedResponses, 1);
                    stats.add(C::DroppedCreates, request.creates);
                }
                drop(client);
            }
        },
        Mode::Pass => upstream.relay(&mut client, &request).await,
        Mode::InvalidFilter => {
            let line = request.bytes.split(|b| *b == b'\r').next().unwrap_or_default();
            if String::from_utf8_lossy(line).contains("filter=") {
                stats.add(C::TooMany, 1);
                let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidFilter","detail":"filters are not supported here"}"#;
                common::http::answer_json(&mut client, "400 Bad Request", body).await;
            } else {
                upstream.relay(&mut client, &request).await;
            }
        }
        Mode::RefuseGroupPatch => {
            if request.method == "PATCH" && request.path.contains("/Groups/") {
                stats.add(C::ServerErrors, 1);
                answer(&mut client, "501 Not Implemented", "").await;
            } else {
                upstream.relay(&mut client, &request).await;
            }
        }
        Mode::HoldFirst => {
            if n == 1 {
                while !stats.released.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            upstream.relay(&mut client, &request).await;
        }
        Mode::FreezeAtCreate(k) => {
            let before = if request.creates > 0 { stats.add(C::CreatesSeen, request.creates) } else { 0 };
            if request.creates == 0 && stats.frozen.load(Ordering::SeqCst) || request.creates > 0 && before >= k {
                hold(&mut client).await;
            } else if request.creates > 0 && before + request.creates >= k {
                if upstream.forward(&request).await.is_some() {
                    stats.add(C::DroppedCreates, request.creates);
                }
                stats.frozen.store(true, Ordering::SeqCst);
                hold(&mut client).await;
            } else {
                upstream.relay(&mut client, &request).await;
            }
        }
        Mode::BlackoutAtCreate(k) => {
            let before = if request.creates > 0 { stats.add(C::CreatesSeen, request.creates) } else { 0 };
            if request.creates > 0 && before + request.creates >= k {
                stats.frozen.store(true, Ordering::SeqCst);
            }
            if stats.frozen.load(Ordering::SeqCst) {
                if upstream.forward(&request).await.is_some() {
                    stats.add(C::DroppedResponses, 1);
                    stats.add(C::DroppedCreates, request.creates);
                }
                drop(client);
            } else {
                upstream.relay(&mut client, &request).await;
            }
        }
    }
}

// ----------------------------------------------------------------------------------- the tests

/// Syncs `ou` through the fault-injecting proxy until a run completes (at most three), then
/// checks the tenant and that a run straight to the server has nothing left to write.
fn through_a_faulty_tenant(tb: &Testbed, ou: &str, announce_bulk: bool) {
    let label = if announce_bulk { "faulty tenant with /Bulk" } else { "faulty tenant without /Bulk" };
    let started = Instant::now();
    let expected = expected_scope(tb, ou);
    let agent = tb.agent(&[ou], "");
    let proxy = Proxy::start(upstream(tb), Mode::Faults, announce_bulk);
    set_scim_url(&agent, &proxy.url_for(&agent.scim));
    if !announce_bulk {
        forget_bulk(&agent);
    }

    // Every injected fault is retryable, but a call whose five attempts all fail ends the run
    // with exit 75 (the tenant is unavailable: the next scheduled run retries). That is allowed;
    // the next run must pick up where it stopped, so up to three runs.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let before = proxy.snapshot();
        let (code, report) = agent.sync(&["--full"]);
        let seen = proxy.snapshot().since(before);
        eprintln!("{label}: run {} exited {code}: {seen:?}", runs.len() + 1);
        runs.push((code, report, seen));
        if code != 75 {
            break;
        }
    }
    let (code, report, seen) = runs.last().unwrap();
    assert_ne!(*code, 75, "{label}: three runs in a row gave up; the last: {report}");
    assert_eq!(*code, 1, "{label}: 1 = quarantined users exist: {report}");
    assert_complete(report, &expected, label);
    // write_requests counts every attempt of a write, retries included: with one request per
    // connection the proxy sees each of them (a run cut short by exit 75 may drop some unsent).
    assert_eq!(report["data"]["write_requests"], seen.get(C::Writes), "{label}: write_requests vs what the proxy saw");
    let c = counts(report);
    if runs.len() == 1 {
        // An empty tenant: a user can only be there already when a create of it reached the
        // server and its answer was lost; then it is adopted, not created twice.
        let lost = seen.get(C::DroppedCreates);
        assert!(lost > 0, "{label}: no create lost its answer: {seen:?}");
        assert!(c["adopted"] >= 1 && c["adopted"] <= lost, "{label}: {} adopted, {lost} creates lost", c["adopted"]);
        assert_eq!(c["unchanged"] + c["updated"], 0, "{label}: {c:?}");
    }
    let total = proxy.snapshot();
    for fault in [C::TooMany, C::ServerErrors, C::DroppedRequests, C::DroppedCreates] {
        assert!(total.get(fault) > 0, "{label}: no {fault:?} injected: {total:?}");
    }
    assert_eq!(total.get(C::ProxyErrors), 0, "{label}: the proxy itself failed (an unplanned fault): {total:?}");
    if !announce_bulk {
        assert!(total.get(C::NoBulkAnnounced) > 0, "{label}: {total:?}");
        assert_eq!(total.get(C::Bulk), 0, "{label}: /Bulk used although the tenant does not announce it");
    }
    assert_exact(&agent, &expected, label);

    // Straight to the real server: nothing left to do.
    drop(proxy);
    set_scim_url(&agent, &agent.scim);
    assert_settled(&agent, &expected, label);
    eprintln!("{label}: {} run(s), {total:?}, {:.1} s in all", runs.len(), started.elapsed().as_secs_f64());
}

#[test]
fn a_faulty_tenant_still_ends_exact() {
    let Some(tb) = testbed() else { return };
    let _serial = serial();
    // Without /Bulk every create is its own request: ~370 POSTs under the periodic schedule.
    through_a_faulty_tenant(&tb, &sales(&tb), false);
}

#[test]
fn a_faulty_bulk_tenant_still_ends_exact() {
    let Some(tb) = testbed() else { return };
    let _serial = serial();
    // As scim2-server is: /Bulk announced. If ausi uses it, the one request carrying every create
    // gets each fault in turn (the first creates them all and loses the answer). A smaller OU:
    // what comes back as conflicts is redone one by one.
    through_a_faulty_tenant(&tb, &emea(&tb), true);
}

/// Kills a fresh agent's first `sync --full` after `delay`, then checks a rerun.
fn kill_after(tb: &Testbed, ou: &str, expected: &Expected, delay: Duration) {
    let label = format!("after {} ms", delay.as_millis());
    let agent = tb.agent(&[ou], "");
    let mut child = spawn_sync(&agent, None);
    std::thread::sleep(delay);
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

/// Kills a fresh agent's first `sync --full` at the worst instant, whatever the machine's
/// speed: the request carrying the k-th create has reached the tenant, its answer has not
/// reached ausi, nothing else is in flight. Then checks a rerun.
fn kill_at_create(tb: &Testbed, ou: &str, expected: &Expected, k: u64, announce_bulk: bool) {
    let label = format!("at create #{k} ({})", if announce_bulk { "/Bulk announced" } else { "no /Bulk" });
    let proxy = Proxy::start(upstream(tb), Mode::FreezeAtCreate(k), announce_bulk);
    let agent = tb.agent(&[ou], "");
    set_scim_url(&agent, &proxy.url_for(&agent.scim));
    if !announce_bulk {
        forget_bulk(&agent);
    }
    let mut child = spawn_sync(&agent, None);
    let frozen = wait_until(Duration::from_secs(120), || {
        proxy.stats.frozen.load(Ordering::SeqCst) || child.try_wait().unwrap().is_some()
    });
    let finished = child.try_wait().unwrap();
    child.kill().ok();
    child.wait().unwrap();
    assert!(frozen && finished.is_none(), "{label}: the run did not get there: frozen {frozen}, exit {finished:?}");
    assert!(wait_until(Duration::from_secs(30), || proxy.stats.get(C::InFlight) == 0), "{label}: proxy in flight");
    let forwarded = proxy.stats.get(C::ForwardedCreates);
    let at_kill = agent.tenant(ResourceKind::User).len() as u64;
    assert!(forwarded >= k, "{label}: {forwarded} creates forwarded");
    assert_eq!(at_kill, forwarded, "{label}: the tenant holds what was forwarded");
    let snapshot = proxy.snapshot();
    drop(proxy);
    set_scim_url(&agent, &agent.scim);
    let c = rerun_after_lost_answers(&agent, expected, at_kill, &format!("SIGKILL {label}"));
    eprintln!("SIGKILL {label}: {at_kill} users in the tenant ({snapshot:?}); rerun {c:?}");
}

/// The rerun (straight to the server) after a run that left `in_tenant` users in the tenant,
/// some of them without ausi having seen the answer: those in the tenant are recognised
/// (committed: unchanged; journaled only: adopted by externalId), the others created, once.
fn rerun_after_lost_answers(agent: &Agent, expected: &Expected, in_tenant: u64, after: &str) -> BTreeMap<String, u64> {
    let (code, report) = agent.sync(&["--full"]);
    assert!(code == 0 || code == 1, "rerun after {after}: exited {code}: {report}");
    assert_complete(&report, expected, &format!("rerun after {after}"));
    let c = counts(&report);
    assert_eq!(c["created"], expected.valid.len() as u64 - in_tenant, "rerun after {after}: {c:?}");
    assert_eq!(c["adopted"] + c["unchanged"], in_tenant, "rerun after {after}: {c:?}");
    assert!(c["adopted"] >= 1, "rerun after {after}: the user(s) whose answer was lost are adopted: {c:?}");
    assert_exact(agent, expected, &format!("after {after} and a rerun"));
    assert_settled(agent, expected, &format!("after {after} and a rerun"));
    c
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
    for delay in [Duration::from_millis(20), full.mul_f64(0.3), full.mul_f64(0.5), full.mul_f64(0.7), full.mul_f64(0.9)]
    {
        kill_after(&tb, &ou, &expected, delay);
    }
    // Mid-way, deterministically: with the tenant as it is (ausi may send every create in one
    // /Bulk request, which then is the one frozen), and with a tenant without /Bulk.
    let k = expected.valid.len() as u64 / 2;
    kill_at_create(&tb, &ou, &expected, k, true);
    kill_at_create(&tb, &ou, &expected, k, false);
    eprintln!("SIGKILL: {:.1} s in all", started.elapsed().as_secs_f64());
}

#[test]
fn answers_that_stop_arriving_end_the_run_with_75_and_the_next_run_finishes() {
    let Some(tb) = testbed() else { return };
    let _serial = serial();
    let started = Instant::now();
    let ou = sales(&tb);
    let expected = expected_scope(&tb, &ou);
    // From a third of the creates on, the tenant does everything asked and no answer comes
    // back: every call runs out of attempts, and the run must stop as "temporary".
    let k = expected.valid.len() as u64 / 3;
    let proxy = Proxy::start(upstream(&tb), Mode::BlackoutAtCreate(k), false);
    let agent = tb.agent(&[&ou], "");
    set_scim_url(&agent, &proxy.url_for(&agent.scim));
    forget_bulk(&agent);
    let (code, report) = agent.sync(&["--full"]);
    assert_eq!(code, 75, "a tenant that stopped answering is a temporary failure: {report}");
    assert!(wait_until(Duration::from_secs(30), || proxy.stats.get(C::InFlight) == 0), "proxy in flight");
    let snapshot = proxy.snapshot();
    assert!(snapshot.get(C::DroppedCreates) > 0, "{snapshot:?}");
    let in_tenant = agent.tenant(ResourceKind::User).len() as u64;
    assert!(in_tenant >= k && in_tenant < expected.valid.len() as u64, "{in_tenant} users in the tenant");
    // A run cut short still reports what it did: the creates that were answered.
    let created = report["data"]["counts"]["created"].as_u64().expect("counts of a stopped run");
    assert!(created >= k - 1 && created <= in_tenant, "reported {created} created, {in_tenant} in the tenant");
    drop(proxy);
    set_scim_url(&agent, &agent.scim);
    let label = format!("answers lost from create #{k} on");
    let c = rerun_after_lost_answers(&agent, &expected, in_tenant, &label);
    eprintln!(
        "{label}: exit 75, {in_tenant} users in the tenant ({snapshot:?}); rerun {c:?}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_second_run_is_locked_out_and_the_first_completes() {
    let Some(tb) = testbed() else { return };
    let _serial = serial();
    let started = Instant::now();
    let ou = sales(&tb);
    let expected = expected_scope(&tb, &ou);
    let agent = tb.agent(&[&ou], "");
    let proxy = Proxy::start(upstream(&tb), Mode::HoldFirst, true);
    set_scim_url(&agent, &proxy.url_for(&agent.scim));

    let out = agent.dir.path().join("first.json");
    let mut first = spawn_sync(&agent, Some(&out));
    // The first SCIM request comes after the state store is locked, and the proxy holds it: the
    // first run holds the lock for as long as the test wants.
    let waiting = wait_until(Duration::from_secs(60), || {
        proxy.stats.get(C::Requests) >= 1 || first.try_wait().unwrap().is_some()
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
    assert_eq!(proxy.stats.get(C::Requests), 1, "the locked-out run reached the tenant");
    assert!(agent.tenant(ResourceKind::User).is_empty(), "the locked-out run wrote to the tenant");

    proxy.release();
    let status = wait_for(&mut first, Duration::from_secs(120), "the first run");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).expect("the first run's report");
    assert_eq!(status.code(), Some(1), "the first run (1 = quarantined users exist): {report}");
    assert_complete(&report, &expected, "the first run");
    assert_eq!(counts(&report)["created"], expected.valid.len() as u64, "the first run created everyone");
    assert_exact(&agent, &expected, "after the locked-out run and the first");
    assert_eq!(proxy.stats.get(C::ProxyErrors), 0);
    drop(proxy);
    set_scim_url(&agent, &agent.scim);
    assert_settled(&agent, &expected, "after the locked-out run and the first");
    eprintln!("lock: {:.1} s", started.elapsed().as_secs_f64());
}

/// Kills a first full sync whose one `/Bulk` of every create reached the tenant and whose answer
/// never came back: the tenant holds ~370 users the state store knows only as journaled
/// creates. The rerun must recognise them from one listing, not look each up (POST -> 409 ->
/// GET -> PUT was ~1,500 requests); and so must a run whose state store is lost altogether.
#[test]
fn orphans_of_a_killed_bulk_cost_one_listing_not_requests_each() {
    let Some(tb) = testbed() else { return };
    let _serial = serial();
    let ou = sales(&tb);
    let expected = expected_scope(&tb, &ou);
    let k = expected.valid.len() as u64 / 2;
    let freeze = Proxy::start(upstream(&tb), Mode::FreezeAtCreate(k), true);
    let agent = tb.agent(&[&ou], "");
    set_scim_url(&agent, &freeze.url_for(&agent.scim));
    let mut child = spawn_sync(&agent, None);
    let frozen = wait_until(Duration::from_secs(120), || {
        freeze.stats.frozen.load(Ordering::SeqCst) || child.try_wait().unwrap().is_some()
    });
    let finished = child.try_wait().unwrap();
    child.kill().ok();
    child.wait().unwrap();
    assert!(frozen && finished.is_none(), "the run did not get there: frozen {frozen}, exit {finished:?}");
    assert!(wait_until(Duration::from_secs(30), || freeze.stats.get(C::InFlight) == 0), "proxy in flight");
    assert_eq!(freeze.stats.get(C::Bulk), 1, "every create went in one /Bulk");
    drop(freeze);
    let orphans = agent.tenant(ResourceKind::User).len() as u64;
    assert_eq!(orphans, expected.valid.len() as u64, "the /Bulk created everyone before the kill");

    // The rerun, counted: a constant (discovery, token check, one /Bulk of adoptions) plus the
    // listing's pages, whatever the number of orphans.
    let bounded = |label: &str| {
        let counter = Proxy::start(upstream(&tb), Mode::Pass, true);
        set_scim_url(&agent, &counter.url_for(&agent.scim));
        let (code, report) = agent.sync(&["--full"]);
        let seen = counter.snapshot();
        drop(counter);
        set_scim_url(&agent, &agent.scim);
        assert_eq!(code, 1, "{label}: 1 = quarantined users exist: {}", common::report::excerpt(&report));
        assert_complete(&report, &expected, label);
        let c = counts(&report);
        assert_eq!((c["adopted"], c["created"]), (orphans, 0), "{label}: {c:?}");
        let pages = report["data"]["tenant"]["pages"].as_u64().expect("a full sync lists the tenant");
        let requests = seen.get(C::Requests);
        eprintln!("{label}: {orphans} orphans adopted in {requests} requests ({pages} listing pages): {seen:?}");
        assert!(requests <= 20 + pages, "{label}: {requests} requests for {orphans} orphans ({pages} pages): {seen:?}");
        assert_eq!(seen.get(C::ProxyErrors), 0);
        assert_exact(&agent, &expected, label);
        assert_settled(&agent, &expected, label);
    };
    bounded("rerun after SIGKILL during a /Bulk");

    // A state store lost altogether: the tenant's users carry ausi's externalIds; one listing.
    let state = agent.config.with_file_name("state.db");
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", state.display());
        std::fs::remove_file(&path).or_else(|e| if suffix.is_empty() { Err(e) } else { Ok(()) }).unwrap();
    }
    bounded("a run after the state store was lost");
}

/// An agent registered through `proxy` with a fresh tenant of the testbed's scim2-server.
fn agent_through(tb: &Testbed, proxy: &Proxy, ous: &[&str], extra: &str) -> Agent {
    static N: AtomicU64 = AtomicU64::new(0);
    let home = format!("http://{}/i12x{}x{}", proxy.addr, std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let token = std::fs::read_to_string(&tb.scim_token_file).unwrap().trim().to_owned();
    tb.agent_on(&home, &format!("{home}/v2"), &token, ous, extra)
}

/// A sandbox OU of `users` users and two groups of them.
fn sandbox_with_groups<'a>(
    tb: &'a Testbed,
    tag: &str,
    users: usize,
) -> (common::testbed::Sandbox<'a>, String, Vec<String>) {
    let ou = format!("OU=F{tag},DC=example,DC=test");
    let mut ldif = format!("dn: {ou}\nchangetype: add\nobjectClass: organizationalUnit\nou: F{tag}\n\n");
    let dns: Vec<String> = (0..users).map(|i| format!("CN=F User{i},{ou}")).collect();
    for (i, d) in dns.iter().enumerate() {
        ldif.push_str(&format!(
            "dn: {d}\nchangetype: add\nobjectClass: user\nsAMAccountName: f{i}x{tag}\nuserPrincipalName: f{i}x{tag}@example.test\ngivenName: F{i}\nsn: User\nmail: f{i}x{tag}@example.test\nuserAccountControl: 544\n\n"
        ));
    }
    for (g, members) in [("F Alpha", &dns[..users / 2]), ("F Beta", &dns[users / 2..])] {
        ldif.push_str(&format!("dn: CN={g},{ou}\nchangetype: add\nobjectClass: group\nsAMAccountName: {g}x{tag}\n"));
        for m in members {
            ldif.push_str(&format!("member: {m}\n"));
        }
        ldif.push('\n');
    }
    tb.ldap_modify(&ldif);
    (common::testbed::Sandbox { tb, root: ou.clone() }, ou, dns)
}

fn external_ids(agent: &Agent, kind: ResourceKind) -> Vec<String> {
    let mut ids: Vec<String> =
        agent.tenant(kind).iter().map(|r| r["externalId"].as_str().unwrap_or("none").to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn a_tenant_that_refuses_every_filter_gets_everything_once_and_is_adopted_after_state_loss() {
    let Some(tb) = testbed() else { return };
    let tag = format!("If{}", common::unique_tag());
    let (_sandbox, ou, _) = sandbox_with_groups(&tb, &tag, 12);
    let proxy = Proxy::start(upstream(&tb), Mode::InvalidFilter, true);
    let agent = agent_through(&tb, &proxy, &[&ou], "");
    let config = std::fs::read_to_string(&agent.config).unwrap();
    assert!(config.contains("filter = true") && config.contains("filter_probed = false"), "{config}");

    let (code, first) = agent.sync(&["--full"]);
    assert_eq!(code, 0, "{}", first["data"]);
    let users = external_ids(&agent, ResourceKind::User);
    let groups = external_ids(&agent, ResourceKind::Group);
    assert_eq!((users.len(), groups.len()), (12, 2), "every user and group once");
    let refused_before = proxy.snapshot().get(C::TooMany);

    std::fs::remove_file(agent.dir.path().join("state.db")).unwrap();
    let (code, adopted) = agent.sync(&["--full"]);
    assert_eq!(code, 0, "{}", adopted["data"]);
    assert_eq!(adopted["data"]["counts"]["created"], 0, "{}", adopted["data"]["counts"]);
    assert_eq!(external_ids(&agent, ResourceKind::User), users, "no duplicate user");
    assert_eq!(external_ids(&agent, ResourceKind::Group), groups, "no duplicate group");
    assert_eq!(proxy.snapshot().get(C::TooMany), refused_before, "no filter was sent after register's probe");
    let (_, quiet) = agent.sync(&["--full"]);
    assert_eq!(quiet["data"]["write_requests"], 0, "{}", quiet["data"]["counts"]);
}

#[test]
fn a_tenant_answering_501_to_group_patches_fails_those_only_and_the_run_goes_on() {
    let Some(tb) = testbed() else { return };
    let tag = format!("Nf{}", common::unique_tag());
    let (_sandbox, ou, dns) = sandbox_with_groups(&tb, &tag, 4);
    let proxy = Proxy::start(upstream(&tb), Mode::RefuseGroupPatch, true);
    let agent = agent_through(&tb, &proxy, &[&ou], "[sync]\nbulk = false\nmax_deletion_percent = 100\n");
    let (code, first) = agent.sync(&["--full"]);
    assert_eq!(code, 0, "groups are created with their members, no PATCH: {}", first["data"]);

    // A member leaves F Alpha, another joins it, and a user is disabled: the group PATCHes are
    // refused (501), the deactivation is not.
    tb.ldap_modify(&format!(
        "dn: CN=F Alpha,{ou}\nchangetype: modify\ndelete: member\nmember: {}\n-\nadd: member\nmember: {}\n-\n\n\
         dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 546\n-\n\n",
        dns[0], dns[2], dns[3]
    ));
    let started = Instant::now();
    let (code, report) = agent.sync(&[]);
    assert_eq!(code, 1, "{}", report["data"]);
    assert!(started.elapsed() < Duration::from_secs(30), "no retry loop");
    let failures = report["data"]["failures"].as_array().unwrap();
    let ops: BTreeSet<&str> = failures.iter().map(|f| f["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, BTreeSet::from(["add-members", "remove-members"]), "{failures:?}");
    for f in failures {
        assert!(f["dn"].as_str().unwrap().starts_with("CN=F Alpha"), "{f}");
        assert_eq!(f["scim"]["status"], 501, "{f}");
        assert!(f["tenant_id"].is_string() && f["guid"].is_string(), "{f}");
        assert_eq!(f["members"].as_array().unwrap().len(), 1, "{f}");
    }
    let disabled = agent
        .tenant(ResourceKind::User)
        .into_iter()
        .find(|u| u["userName"].as_str().unwrap().eq_ignore_ascii_case(&format!("f3x{tag}@example.test")))
        .unwrap();
    assert_eq!(disabled["active"], false, "the rest of the run went on");
    // The next run tries the group once more (never in a loop), and status lists it as failing.
    let (code, again) = agent.sync(&[]);
    assert_eq!(code, 1, "{}", again["data"]);
    assert_eq!(again["data"]["failures"].as_array().unwrap().len(), 2, "tried once more: {}", again["data"]);
    let (_, status) = json_with(&mut ausi(), &["--config", agent.cfg(), "status"]);
    let failing = status["data"]["state"]["failing"].as_array().cloned().unwrap_or_default();
    assert!(failing.iter().any(|f| f["dn"].as_str().unwrap().starts_with("CN=F Alpha")), "{}", status["data"]["state"]);
    assert!(failing.iter().all(|f| f["attempts"] == 2), "{}", status["data"]["state"]);
    let table = common::run(ausi().args(["--config", agent.cfg(), "status", "-o", "table"]));
    assert!(
        table.stdout.contains("Failing for more than one run") && table.stdout.contains("add-members"),
        "{}",
        table.stdout
    );
}

//! The client against a scripted, fault-injecting HTTP/1.1 server on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ausi::tenant::scim::{ClientOptions, ResourceKind, ScimClient, TenantError};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "s3cr3t-T0KEN-never-shown";

/// What the server does with one connection.
#[derive(Clone)]
enum Step {
    /// Answer with these raw bytes, then close.
    Reply(String),
    /// Read the request, then close without answering.
    Drop,
    /// Read the request, then say nothing for a minute.
    Hang,
}

#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct FaultServer {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FaultServer {
    /// Plays `script` one connection at a time; the last step repeats forever.
    async fn start(script: Vec<Step>) -> FaultServer {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/t/v2", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let step = script[n.min(script.len() - 1)].clone();
                n += 1;
                let log = log.clone();
                tokio::spawn(async move { serve(stream, step, log).await });
            }
        });
        FaultServer { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, step: Step, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(k) => body.extend_from_slice(&chunk[..k]),
        }
    }
    log.lock().unwrap().push(Seen { request_line, headers, body });
    match step {
        Step::Reply(raw) => {
            let _ = stream.write_all(raw.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Step::Drop => drop(stream),
        Step::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
    }
}

fn reply(status: &str, headers: &[(&str, &str)], body: &str) -> Step {
    let mut raw = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        raw.push_str("Content-Type: application/scim+json\r\n");
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    Step::Reply(raw)
}

fn fast_options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        max_attempts: 5,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(10),
    }
}

fn client(url: &str, options: ClientOptions) -> ScimClient {
    ScimClient::new(url, SecretString::from(TOKEN), options).unwrap()
}

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada@example.test",
        "externalId": "0b6f2a40-1111-4222-8333-444455556666",
    })
}

fn scim_error(status: &str, scim_type: &str, detail: &str) -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status, "scimType": scim_type, "detail": detail,
    })
    .to_string()
}

/// No error message and no Debug output holds the token.
fn assert_no_token(e: &TenantError) {
    assert!(!e.to_string().contains(TOKEN), "{e}");
    assert!(!format!("{e:?}").contains(TOKEN), "{e:?}");
}

#[tokio::test]
async fn create_survives_429_500_and_a_dropped_connection() {
    let created = json!({"id": "u-1", "userName": "ada@example.test"}).to_string();
    let server = FaultServer::start(vec![
        reply("429 Too Many Requests", &[("Retry-After", "1")], ""),
        reply("500 Internal Server Error", &[], "oops"),
        Step::Drop,
        reply("201 Created", &[], &created),
    ])
    .await;
    let c = client(&server.url, fast_options());
    let started = Instant::now();
    let answer = c.create(ResourceKind::User, &user()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was not honoured");
    assert_eq!(answer["id"], "u-1");
    assert_eq!(c.write_requests(), 4);
    assert_eq!(c.requests(), 4);
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    for s in &seen {
        assert_eq!(s.request_line, "POST /t/v2/Users HTTP/1.1");
        assert_eq!(s.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
        assert_eq!(s.header("content-type"), Some("application/scim+json"));
        assert_eq!(s.header("accept"), Some("application/scim+json, application/json"));
        // The body is re-sent whole on every retry.
        assert_eq!(serde_json::from_slice::<Value>(&s.body).unwrap(), user());
    }
}

#[tokio::test]
async fn bad_request_is_rejected_after_one_attempt() {
    let server = FaultServer::start(vec![reply(
        "400 Bad Request",
        &[],
        &scim_error("400", "invalidValue", "Field 'userName' is required"),
    )])
    .await;
    let c = client(&server.url, fast_options());
    let e = c.create(ResourceKind::User, &user()).await.unwrap_err();
    match &e {
        TenantError::Rejected(info) => {
            assert_eq!(info.status, 400);
            assert_eq!(info.scim_type.as_deref(), Some("invalidValue"));
            assert_eq!(info.detail.as_deref(), Some("Field 'userName' is required"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!e.is_conflict());
    assert_eq!(c.write_requests(), 1);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn conflict_with_a_numeric_status_in_the_body() {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": 409, "scimType": "uniqueness", "detail": "userName taken",
    })
    .to_string();
    let server = FaultServer::start(vec![reply("409 Conflict", &[], &body)]).await;
    let c = client(&server.url, fast_options());
    let e = c.create(ResourceKind::User, &user()).await.unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    match e {
        TenantError::Rejected(info) => {
            assert_eq!(info.scim_type.as_deref(), Some("uniqueness"));
            assert_eq!(info.detail.as_deref(), Some("userName taken"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn unauthorized_and_forbidden_are_not_retried() {
    for (status, code) in [("401 Unauthorized", 401u16), ("403 Forbidden", 403)] {
        let server = FaultServer::start(vec![reply(
            status,
            &[("WWW-Authenticate", "Bearer realm=\"SCIM\"")],
            &scim_error(&code.to_string(), "", "Authorization failure"),
        )])
        .await;
        let c = client(&server.url, fast_options());
        let e = c.check_token().await.unwrap_err();
        match &e {
            TenantError::Unauthorized { status, detail } => {
                assert_eq!(*status, code);
                assert_eq!(detail.as_deref(), Some("Authorization failure"));
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        assert_no_token(&e);
        assert_eq!(c.requests(), 1);
        assert_eq!(c.write_requests(), 0);
        assert_eq!(server.seen().len(), 1);
        assert_eq!(server.seen()[0].request_line, "GET /t/v2/Users?count=1 HTTP/1.1");
    }
}

#[tokio::test]
async fn a_long_retry_after_fails_at_once() {
    let server = FaultServer::start(vec![reply("429 Too Many Requests", &[("Retry-After", "3600")], "")]).await;
    let c = client(&server.url, fast_options());
    let started = Instant::now();
    let e = c.create(ResourceKind::User, &user()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &e {
        TenantError::Unavailable { attempts, last } => {
            assert_eq!(*attempts, 1);
            assert!(last.contains("3600"), "{last}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn retry_after_as_an_http_date() {
    // A date in the past means "now".
    let server = FaultServer::start(vec![
        reply("503 Service Unavailable", &[("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")], ""),
        reply("200 OK", &[], r#"{"id":"u-9"}"#),
    ])
    .await;
    let c = client(&server.url, fast_options());
    let got = c.get(ResourceKind::User, "u-9").await.unwrap().unwrap();
    assert_eq!(got["id"], "u-9");
    assert_eq!(c.requests(), 2);
    assert_eq!(c.write_requests(), 0);
}

#[tokio::test]
async fn unavailable_forever_stops_after_max_attempts() {
    let server =
        FaultServer::start(vec![reply("503 Service Unavailable", &[], &scim_error("503", "", "maintenance"))]).await;
    let options = ClientOptions { max_attempts: 3, ..fast_options() };
    let c = client(&server.url, options);
    let started = Instant::now();
    let e = c
        .patch(ResourceKind::User, "u-1", &[ausi::tenant::scim::patch_replace("active", json!(false))])
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &e {
        TenantError::Unavailable { attempts, last } => {
            assert_eq!(*attempts, 3);
            assert!(last.contains("503") && last.contains("maintenance"), "{last}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(server.seen().len(), 3);
    assert_eq!(c.write_requests(), 3);
}

#[tokio::test]
async fn connection_refused_is_retried_then_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let options = ClientOptions { max_attempts: 2, ..fast_options() };
    let c = client(&format!("http://{addr}/t/v2"), options);
    let e = c.delete(ResourceKind::Group, "g-1").await.unwrap_err();
    match &e {
        TenantError::Unavailable { attempts, last } => {
            assert_eq!(*attempts, 2);
            assert!(last.contains("transport"), "{last}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_no_token(&e);
    assert_eq!(c.write_requests(), 2);
}

#[tokio::test]
async fn a_silent_server_times_out_per_request() {
    let server = FaultServer::start(vec![Step::Hang]).await;
    let options = ClientOptions { timeout: Duration::from_millis(300), max_attempts: 2, ..fast_options() };
    let c = client(&server.url, options);
    let started = Instant::now();
    let e = c.get(ResourceKind::User, "u-1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(e, TenantError::Unavailable { attempts: 2, .. }), "{e:?}");
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn patch_accepts_204_and_200_with_a_body() {
    let server = FaultServer::start(vec![
        reply("204 No Content", &[], ""),
        reply("200 OK", &[], r#"{"id":"g-1","displayName":"Staff"}"#),
    ])
    .await;
    let c = client(&server.url, fast_options());
    let ops = [
        ausi::tenant::scim::patch_add_members(&["u-1".to_string(), "u-2".to_string()]),
        ausi::tenant::scim::patch_remove_member("u-3"),
    ];
    c.patch(ResourceKind::Group, "g-1", &ops).await.unwrap();
    c.patch(ResourceKind::Group, "g-1", &ops).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].request_line, "PATCH /t/v2/Groups/g-1 HTTP/1.1");
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": "u-1"}, {"value": "u-2"}]},
                {"op": "remove", "path": "members[value eq \"u-3\"]"},
            ],
        })
    );
    assert_eq!(c.write_requests(), 2);
}

#[tokio::test]
async fn not_found_on_an_id() {
    let server = FaultServer::start(vec![reply("404 Not Found", &[], &scim_error("404", "", "gone"))]).await;
    let c = client(&server.url, fast_options());
    assert_eq!(c.get(ResourceKind::User, "u-1").await.unwrap(), None);
    c.delete(ResourceKind::User, "u-1").await.unwrap();
    let e = c.replace(ResourceKind::User, "u-1", &user()).await.unwrap_err();
    assert!(matches!(e, TenantError::NotFound), "{e:?}");
    // A 404 on a collection is a wrong endpoint, not a missing object.
    let e = c.find(ResourceKind::User, "externalId", "x").await.unwrap_err();
    assert!(matches!(e, TenantError::Rejected(ref i) if i.status == 404), "{e:?}");
    assert_eq!(server.seen().len(), 4);
    assert_eq!(c.write_requests(), 2);
    assert_eq!(c.requests(), 4);
}

#[tokio::test]
async fn find_escapes_and_encodes_the_filter() {
    let server = FaultServer::start(vec![reply(
        "200 OK",
        &[],
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"Resources":[]}"#,
    )])
    .await;
    let c = client(&server.url, fast_options());
    let found = c.find(ResourceKind::User, "userName", r#"a"b\c d+e&f"#).await.unwrap();
    assert!(found.is_empty());
    c.find(ResourceKind::Group, "externalId", "g").await.unwrap();
    let seen = server.seen();
    assert_eq!(
        seen[0].request_line,
        "GET /t/v2/Users?filter=userName%20eq%20%22a%5C%22b%5C%5Cc%20d%2Be%26f%22&count=2 HTTP/1.1"
    );
    assert_eq!(seen[1].request_line, "GET /t/v2/Groups?filter=externalId%20eq%20%22g%22&count=2 HTTP/1.1");
    let e = c.find(ResourceKind::User, "userName pr or x", "v").await.unwrap_err();
    assert!(matches!(e, TenantError::InvalidUrl(_)));
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn ids_are_percent_encoded_in_paths() {
    let server = FaultServer::start(vec![reply("200 OK", &[], r#"{"id":"a/b c"}"#)]).await;
    let c = client(&server.url, fast_options());
    c.get(ResourceKind::User, "a/b c?").await.unwrap().unwrap();
    assert_eq!(server.seen()[0].request_line, "GET /t/v2/Users/a%2Fb%20c%3F HTTP/1.1");
}

#[tokio::test]
async fn list_all_follows_short_pages() {
    let page = |ids: &[&str]| {
        let resources: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
        reply(
            "200 OK",
            &[],
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": 5, "Resources": resources,
            })
            .to_string(),
        )
    };
    // The server hands out at most 2 per page although 3 were asked for.
    let server = FaultServer::start(vec![page(&["a", "b"]), page(&["c", "d"]), page(&["e"])]).await;
    let c = client(&server.url, fast_options());
    let all = c.list_all(ResourceKind::User, 3).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    let lines: Vec<String> = server.seen().into_iter().map(|s| s.request_line).collect();
    assert_eq!(
        lines,
        [
            "GET /t/v2/Users?startIndex=1&count=3 HTTP/1.1",
            "GET /t/v2/Users?startIndex=3&count=3 HTTP/1.1",
            "GET /t/v2/Users?startIndex=5&count=3 HTTP/1.1",
        ]
    );
}

#[tokio::test]
async fn list_all_refuses_a_short_listing() {
    let page = |ids: &[&str]| {
        let resources: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
        reply("200 OK", &[], &json!({"totalResults": 4, "Resources": resources}).to_string())
    };
    let server = FaultServer::start(vec![page(&["a", "b"]), page(&[])]).await;
    let c = client(&server.url, fast_options());
    let e = c.list_all(ResourceKind::Group, 2).await.unwrap_err();
    assert!(matches!(e, TenantError::Protocol(_)), "{e:?}");
}

#[tokio::test]
async fn protocol_errors() {
    let server = FaultServer::start(vec![
        reply("201 Created", &[], r#"{"userName":"no-id"}"#),
        reply("201 Created", &[], "<html>not json</html>"),
        reply("200 OK", &[], r#"{"patch":"#),
        reply("302 Found", &[("Location", "http://127.0.0.1:1/elsewhere")], ""),
    ])
    .await;
    let c = client(&server.url, fast_options());
    for _ in 0..2 {
        let e = c.create(ResourceKind::User, &user()).await.unwrap_err();
        assert!(matches!(e, TenantError::Protocol(_)), "{e:?}");
    }
    let e = c.service_provider_config().await.unwrap_err();
    assert!(matches!(e, TenantError::Protocol(_)), "{e:?}");
    // Redirects are never followed.
    let e = c.check_token().await.unwrap_err();
    assert!(matches!(e, TenantError::Protocol(_)), "{e:?}");
    assert_eq!(server.seen().len(), 4);
}

#[tokio::test]
async fn the_token_never_shows() {
    // A server that echoes the token back in its error details.
    let echo = format!("bad token Bearer {TOKEN}");
    let server = FaultServer::start(vec![
        reply("400 Bad Request", &[], &scim_error("400", "invalidValue", &echo)),
        reply("401 Unauthorized", &[], &scim_error("401", "", &echo)),
        reply("500 Internal Server Error", &[], &echo),
        reply("418 I'm a teapot", &[], &echo),
    ])
    .await;
    let options = ClientOptions { max_attempts: 1, ..fast_options() };
    let c = client(&server.url, options);
    let debug = format!("{c:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("REDACTED"));
    let errors = [
        c.create(ResourceKind::User, &user()).await.unwrap_err(),
        c.check_token().await.unwrap_err(),
        c.get(ResourceKind::User, "x").await.unwrap_err(),
        c.delete(ResourceKind::User, "x").await.unwrap_err(),
    ];
    for e in &errors {
        assert_no_token(e);
        assert!(e.to_string().contains("[REDACTED]"), "{e}");
    }
    assert!(matches!(errors[0], TenantError::Rejected(_)));
    assert!(matches!(errors[1], TenantError::Unauthorized { .. }));
    assert!(matches!(errors[2], TenantError::Unavailable { .. }));
    assert!(matches!(errors[3], TenantError::Rejected(_)));
    // Nor a client that could not start.
    let e = ScimClient::new("ftp://x", SecretString::from(TOKEN), fast_options()).unwrap_err();
    assert_no_token(&e);
}

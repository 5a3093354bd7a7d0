//! A policy mapping into a custom schema extension is checked against the tenant's `/Schemas`
//! at the start of a sync: a scim2-server of its own started with an extra schema takes the
//! mapping (and the resource names the schema in `schemas`); the testbed's scim2-server and
//! django-scim2, which list no such schema, stop the run with a configuration error (exit 78);
//! a tenant that does not serve `/Schemas` (404, 501) gets a warning and the run goes on.
//! Runs under `scripts/test`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ausi::tenant::ResourceKind;
use common::django::Django;
use common::testbed::{Agent, Sandbox, Testbed, testbed};
use serde_json::{Value, json};

const ACME: &str = "urn:example:params:scim:schemas:extension:acme:2.0:User";

fn policy(attribute: &str) -> String {
    format!("[policies.Acme.user]\n\"{ACME}:{attribute}\" = '[company]'\n")
}

/// The testbed's cache directory holds scim2-server's venv beside django-scim2's.
fn scim2_venv() -> Option<PathBuf> {
    let django = std::env::var("AUSI_TEST_DJANGO_PYTHON").ok()?;
    let cache = Path::new(&django).parent()?.parent()?.parent()?.to_owned();
    let venv = std::fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("venv-scim2-server-")));
    if venv.is_none() {
        assert!(
            std::env::var("AUSI_REQUIRE_DC").ok().as_deref() != Some("1"),
            "AUSI_REQUIRE_DC=1 but no scim2-server venv"
        );
    }
    venv
}

/// A scim2-server of this test's own, serving RFC 7643's schemas and the Acme extension of User.
struct Scim2 {
    _dir: tempfile::TempDir,
    child: Child,
    base: String,
}

impl Scim2 {
    fn start(venv: &Path) -> Scim2 {
        let resources = std::fs::read_dir(venv.join("lib"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/scim2_server/resources"))
            .find(|p| p.is_dir())
            .expect("scim2_server's resources");
        let read = |name: &str| -> Vec<Value> {
            serde_json::from_str(&std::fs::read_to_string(resources.join(name)).unwrap()).unwrap()
        };
        let mut schemas = read("default-schemas.json");
        schemas.push(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": ACME,
            "name": "AcmeUser",
            "description": "Acme's extension",
            "attributes": [{
                "name": "badge", "type": "string", "multiValued": false, "required": false,
                "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none"
            }],
        }));
        let mut types = read("default-resource-types.json");
        let user = types.iter_mut().find(|t| t["id"] == "User").unwrap();
        user["schemaExtensions"].as_array_mut().unwrap().push(json!({"schema": ACME, "required": false}));
        let dir = tempfile::tempdir().unwrap();
        let (schema_file, type_file) = (dir.path().join("schemas.json"), dir.path().join("types.json"));
        std::fs::write(&schema_file, serde_json::to_string(&schemas).unwrap()).unwrap();
        std::fs::write(&type_file, serde_json::to_string(&types).unwrap()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import sys; from scim2_server.testserver.cli import main; sys.argv = ['scim2-server'] + sys.argv[1:]; main()",
            ])
            .arg("--schema")
            .arg(&schema_file)
            .arg("--resource-type")
            .arg(&type_file)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start scim2-server");
        let server = Scim2 { _dir: dir, child, base: format!("http://127.0.0.1:{port}") };
        let start = Instant::now();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        while start.elapsed() < Duration::from_secs(30) {
            let url = format!("{}/ServiceProviderConfig", server.base);
            if runtime.block_on(reqwest::get(&url)).is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("scim2-server did not answer within 30 s");
    }
}

impl Drop for Scim2 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `OU=Sch<tag>` with two users whose `company` the policy maps; sAMAccountName → company.
fn seed(tb: &Testbed) -> (String, BTreeMap<String, String>) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let tag = format!("{}{:03}", std::process::id() % 10_000, (nanos / 1000) % 1000);
    let ou = format!("OU=Sch{tag},DC=example,DC=test");
    let mut ldif = format!("dn: {ou}\nchangetype: add\nobjectClass: organizationalUnit\nou: Sch{tag}\n\n");
    let mut users = BTreeMap::new();
    for i in 0..2 {
        let sam = format!("sc{i}x{tag}");
        ldif.push_str(&format!(
            "dn: CN=Sc{i} {tag},{ou}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {sam}@example.test\ngivenName: Sc{i}\nsn: Schema\nmail: {sam}@example.test\ncompany: Badge {i}\nuserAccountControl: 544\n\n"
        ));
        users.insert(sam, format!("Badge {i}"));
    }
    tb.ldap_modify(&ldif);
    (ou, users)
}

fn switch_to_acme(agent: &Agent) {
    let text = std::fs::read_to_string(&agent.config).unwrap();
    assert!(text.contains("provisioning_policy = \"Default\""), "{text}");
    std::fs::write(&agent.config, text.replace("provisioning_policy = \"Default\"", "provisioning_policy = \"Acme\""))
        .unwrap();
}

/// The configuration error names the policy, the mapping and what the tenant lacks; nothing is
/// written.
fn assert_refused(agent: &Agent, says: &str) {
    let (code, report) = agent.sync(&["--full"]);
    assert_eq!(code, 78, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("policies.Acme: user.\"{ACME}:")), "{message}");
    assert!(message.contains(says), "{message}");
    assert!(agent.tenant(ResourceKind::User).is_empty(), "nothing written");
}

#[test]
fn a_custom_schema_the_tenant_lists_is_mapped_and_named_in_schemas() {
    let Some(tb) = testbed() else { return };
    let Some(venv) = scim2_venv() else { return };
    let server = Scim2::start(&venv);
    let (ou, seeded) = seed(&tb);
    let _sandbox = Sandbox { tb: &tb, root: ou.clone() };
    let agent = tb.agent_on(&server.base, &server.base, "any-token", &[&ou], &policy("badge"));
    switch_to_acme(&agent);
    let (code, report) = agent.sync(&["--full"]);
    assert_eq!(code, 0, "{report}");
    assert!(report["warnings"].to_string().find("schemas-unavailable").is_none(), "{report}");
    let users = agent.tenant(ResourceKind::User);
    assert_eq!(users.len(), seeded.len(), "{users:?}");
    for u in &users {
        let sam = u["userName"].as_str().unwrap().split('@').next().unwrap();
        assert_eq!(u[ACME]["badge"], seeded[sam].as_str(), "{u}");
        assert!(u["schemas"].as_array().unwrap().contains(&json!(ACME)), "{u}");
    }
    // An attribute the schema does not have.
    let text = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(&agent.config, text.replace(&format!("{ACME}:badge"), &format!("{ACME}:shoeSize"))).unwrap();
    let (code, report) = agent.sync(&["--full"]);
    assert_eq!(code, 78, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "policies.Acme: user.\"{ACME}:shoeSize\": the tenant's schema {ACME} has no attribute \"shoeSize\" (it has badge)"
        )
    );
}

#[test]
fn the_testbed_scim2_server_lists_no_custom_schema() {
    let Some(tb) = testbed() else { return };
    let agent = tb.agent(&[], &policy("badge"));
    switch_to_acme(&agent);
    assert_refused(&agent, &format!("the tenant does not list the schema {ACME} in /Schemas"));
}

#[test]
fn django_scim2_lists_no_custom_schema() {
    let Some(tb) = testbed() else { return };
    let Some(django) = Django::start() else { return };
    let agent = tb.agent_on(&django.base, &django.scim_url(), &django.token(), &[], &policy("badge"));
    switch_to_acme(&agent);
    assert_refused(&agent, &format!("the tenant does not list the schema {ACME} in /Schemas"));
}

/// Forwards every request to `upstream` but answers `/Schemas` with `status`.
fn without_schemas(upstream: SocketAddr, status: u16) -> SocketAddr {
    common::http::serve(
        || false,
        move |mut client| async move {
            let Some(request) = common::http::read_request(&mut client).await else { return };
            let head = String::from_utf8_lossy(&request.bytes[..request.body_start]).into_owned();
            let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
            if request.path.ends_with("/Schemas") {
                let body =
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": status.to_string()});
                common::http::answer_json(&mut client, &format!("{status} No"), &body.to_string()).await;
                return;
            }
            let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
            let mut forward = reqwest::Client::new().request(method, format!("http://{upstream}{target}"));
            for (name, value) in &request.headers {
                if !["host", "connection", "content-length", "accept-encoding"]
                    .contains(&name.to_ascii_lowercase().as_str())
                {
                    forward = forward.header(name, value);
                }
            }
            let Ok(answer) = forward.body(request.body().to_vec()).send().await else { return };
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            common::http::answer_json(&mut client, &format!("{status} X"), &body).await;
        },
    )
}

#[test]
fn a_tenant_without_schemas_gets_a_warning_and_the_run_goes_on() {
    let Some(tb) = testbed() else { return };
    let (ou, seeded) = seed(&tb);
    let _sandbox = Sandbox { tb: &tb, root: ou.clone() };
    let agent = tb.agent(&[&ou], &policy("badge"));
    switch_to_acme(&agent);
    let upstream: SocketAddr = agent.scim.strip_prefix("http://").unwrap().split('/').next().unwrap().parse().unwrap();
    let path = &agent.scim[agent.scim.find("/t").unwrap()..];
    for status in [404, 501] {
        let proxy = without_schemas(upstream, status);
        let text = std::fs::read_to_string(&agent.config).unwrap();
        let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
        doc["tenant"]["scim_url"] = toml_edit::value(format!("http://{proxy}{path}"));
        std::fs::write(&agent.config, doc.to_string()).unwrap();
        let (code, report) = agent.sync(&["--full", "--dry-run"]);
        assert_eq!(code, 0, "{status}: {report}");
        let warning = report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["code"] == "schemas-unavailable")
            .unwrap_or_else(|| panic!("{status}: {report}"));
        assert_eq!(
            warning["message"],
            format!("the tenant does not serve /Schemas: the policy \"Acme\" maps into {ACME} unchecked"),
        );
        assert_eq!(common::report::mode(&report), "full", "the run went on: {report}");
        assert_eq!(
            common::report::count(&report, "created"),
            seeded.len() as u64,
            "{}",
            common::report::excerpt(&report)
        );
    }
}

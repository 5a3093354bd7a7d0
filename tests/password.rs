//! `ausi password-push` and `validate`'s policy alignment against the Samba AD DC over LDAPS,
//! as the testbed's service account with Reset Password on a sandbox OU; the tenant's side is
//! a small agent-API double on loopback.
//!
//! Every password used here goes into one list, and every output and every file an ausi run
//! leaves behind is searched for all of them (UTF-8 and UTF-16LE).
#![allow(clippy::print_stderr)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use common::http::{RawRequest, answer_json, read_request, serve};
use common::testbed::{Sandbox, Testbed, testbed};
use serde_json::{Value, json};

static SEQ: AtomicU32 = AtomicU32::new(0);
/// Every password any test here has used.
static USED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A fresh password (complex, 12 characters) recorded for the leak checks.
fn password(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let p = format!("{tag}#{}{n:02}Qz", std::process::id() % 10_000);
    remember(&p);
    p
}

fn remember(p: &str) {
    USED.lock().unwrap_or_else(PoisonError::into_inner).push(p.to_owned());
}

fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// No password of this suite in `bytes` (named `what` in the failure).
fn assert_no_password(bytes: &[u8], what: &str) {
    for p in USED.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        assert!(
            !contains(bytes, p.as_bytes()) && !contains(bytes, &utf16(p)),
            "a password of the suite appears in {what}"
        );
    }
}

/// …nor in any file under `dir` (the state store, its WAL, logs, the configuration).
fn assert_no_password_in_files(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                assert_no_password(&bytes, &path.display().to_string());
            }
        }
    }
}

/// The sandbox: `OU=In` (selected) and `OU=Out` under a fresh OU, the service account allowed
/// to reset passwords below it, and an agent whose configuration binds as that account.
struct Fixture<'a> {
    tb: &'a Testbed,
    _sandbox: Sandbox<'a>,
    root: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    n: u32,
}

const RESET_PASSWORD: &str = "00299570-246d-11d0-a768-00aa006e0529";
const USER_CLASS: &str = "bf967aba-0de6-11d0-a285-00aa003049e2";

impl<'a> Fixture<'a> {
    fn new(tb: &'a Testbed, tag: &str) -> Fixture<'a> {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let root = format!("OU=Pw{tag}{}x{n},{}", std::process::id(), tb.base);
        let sandbox = Sandbox { tb, root: root.clone() };
        tb.ldap_modify(&format!(
            "dn: {root}\nchangetype: add\nobjectClass: organizationalUnit\n\n\
             dn: OU=In,{root}\nchangetype: add\nobjectClass: organizationalUnit\n\n\
             dn: OU=Out,{root}\nchangetype: add\nobjectClass: organizationalUnit\n"
        ));
        let sid = sid_of(tb, "svc-ausi");
        samba_tool(
            tb,
            &[
                "dsacl",
                "set",
                "--objectdn",
                &root,
                "--sddl",
                &format!("(OA;CI;CR;{RESET_PASSWORD};{USER_CLASS};{sid})"),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let config = tb.config_in(dir.path(), Path::new(&tb.bind_pw_file), "");
        let selected = format!("OU=In,{root}");
        let c = config.to_str().unwrap();
        let r = common::run(common::ausi().args(["--config", c, "select-ous", "-o", "json", "--add", &selected]));
        assert_eq!(r.code, 0, "select-ous: {}{}", r.stdout, r.stderr);
        Fixture { tb, _sandbox: sandbox, root, dir, config, n }
    }

    /// A user in `ou` (`In` or `Out`) with a first password; returns its sAMAccountName.
    fn user(&self, name: &str, ou: &str, first: &str, enabled: bool) -> String {
        let sam = format!("{name}{}x{}", std::process::id() % 10_000, self.n);
        let uac = if enabled { 512 } else { 514 };
        self.tb.ldap_modify(&format!(
            "dn: CN={sam},OU={ou},{}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\n\
             userPrincipalName: {sam}@example.test\ngivenName: {name}\nsn: Tester\ndisplayName: {name} Tester\n\
             mail: {sam}@example.test\nunicodePwd:: {}\nuserAccountControl: {uac}\n",
            self.root,
            b64(&utf16(&format!("\"{first}\"")))
        ));
        sam
    }

    fn dn(&self, sam: &str, ou: &str) -> String {
        format!("CN={sam},OU={ou},{}", self.root)
    }

    fn cfg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// `ausi password-push ARGS -o json` with `stdin`; checks that no password leaked.
    fn push(&self, args: &[&str], stdin: &str) -> (i32, Value) {
        let mut cmd = common::ausi();
        cmd.args(["--config", self.cfg(), "password-push"]).args(args).args(["-o", "json", "-vv"]).write_stdin(stdin);
        let r = common::run(&mut cmd);
        assert_no_password(r.stdout.as_bytes(), "the report");
        assert_no_password(r.stderr.as_bytes(), "the log on stderr");
        assert_no_password_in_files(self.dir.path());
        let v = r.json();
        assert_eq!(v["exit_code"].as_i64(), Some(i64::from(r.code)), "{}", r.stdout);
        (r.code, v)
    }

    /// Whether a simple bind as `sam` with `password` succeeds (the password goes through a
    /// 0600 file, never a command line).
    fn binds(&self, sam: &str, password: &str) -> bool {
        let file = self.dir.path().join(format!("bind-{}.pw", SEQ.fetch_add(1, Ordering::SeqCst)));
        std::fs::write(&file, password).unwrap();
        let out = Command::new("ldapsearch")
            .env("LDAPTLS_CACERT", &self.tb.ca)
            .args(["-x", "-H", &self.tb.ldaps, "-D", &format!("{sam}@example.test"), "-y"])
            .arg(&file)
            .args(["-s", "base", "-b", &self.tb.base, "1.1"])
            .output()
            .unwrap();
        std::fs::remove_file(&file).unwrap();
        out.status.success()
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn samba_tool(tb: &Testbed, args: &[&str]) -> String {
    let conf = std::env::var("AUSI_TEST_SMB_CONF").expect("AUSI_TEST_SMB_CONF");
    let out = Command::new("samba-tool").args(args).args(["-s", &conf]).output().unwrap();
    assert!(out.status.success(), "samba-tool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let _ = tb;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sid_of(tb: &Testbed, sam: &str) -> String {
    let shown = samba_tool(tb, &["user", "show", sam, "--attributes=objectSid"]);
    shown.lines().find_map(|l| l.strip_prefix("objectSid: ")).expect("objectSid").trim().to_owned()
}

fn results(report: &Value) -> Vec<(String, String, String)> {
    report["data"]["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {report}"))
        .iter()
        .map(|c| {
            (
                c["user"].as_str().unwrap_or("").to_owned(),
                c["result"].as_str().unwrap_or("").to_owned(),
                c["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn reason(report: &Value, i: usize) -> String {
    report["data"]["changes"][i]["reason"].as_str().unwrap_or("").to_owned()
}

#[test]
fn a_pushed_password_opens_the_account_and_the_old_one_no_longer_does() {
    let Some(tb) = testbed() else { return };
    let f = Fixture::new(&tb, "Ok");
    let old = password("Old");
    let alice = f.user("alice", "In", &old, true);
    assert!(f.binds(&alice, &old), "the first password works before the push");

    let new = password("New");
    let upn = format!("{alice}@example.test");
    let (code, report) = f.push(&["--user", &upn, "--password-stdin"], &format!("{new}\n"));
    assert_eq!(code, 0, "{report}");
    assert_eq!(results(&report), [(upn.clone(), "applied".into(), String::new())]);
    assert_eq!(report["data"]["changes"][0]["dn"], f.dn(&alice, "In"));
    assert_eq!(report["data"]["changes"][0]["source"], "command-line");
    assert!(report["data"]["changes"][0]["at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(f.binds(&alice, &new), "the new password binds");
    assert!(!f.binds(&alice, &old), "the old password no longer binds");

    // The same user by sAMAccountName, in a dry run: checked, nothing written.
    let newer = password("Dry");
    let (code, report) = f.push(&["--user", &alice, "--password-stdin", "--dry-run"], &format!("{newer}\n"));
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(results(&report)[0].1, "checked");
    assert!(f.binds(&alice, &new) && !f.binds(&alice, &newer), "a dry run writes nothing");

    // `status` lists both runs, newest first.
    let r = common::run(common::ausi().args(["--config", f.cfg(), "status", "-o", "json"]));
    let runs = &r.json()["data"]["state"]["last_runs"];
    let seen: Vec<(&str, &str, bool, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["command"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["dry_run"] == true,
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("password-push", "user", true, "ok"), ("password-push", "user", false, "ok")], "{runs}");
    assert_eq!(runs[1]["counts"]["applied"], 1);
}

#[test]
fn too_short_and_simple_passwords_are_refused_with_the_domains_numbers_before_sending() {
    let Some(tb) = testbed() else { return };
    let f = Fixture::new(&tb, "Rules");
    let first = password("First");
    let bob = f.user("bob", "In", &first, true);
    let short = "Ab1#x";
    let simple = "onlylowercaseletters";
    let named = format!("{bob}!X9");
    for p in [short, simple, named.as_str()] {
        remember(p);
    }
    let batch = format!(
        "{}\n{}\n\n{}\n",
        json!({"user": bob, "password": short}),
        json!({"user": bob, "password": simple}),
        json!({"user": bob, "password": named}),
    );
    let (code, report) = f.push(&["--batch", "-"], &batch);
    assert_eq!(code, 1, "rejections are findings: {report}");
    let codes: Vec<String> = results(&report).into_iter().map(|(_, result, code)| format!("{result}/{code}")).collect();
    assert_eq!(codes, ["rejected/too-short", "rejected/not-complex", "rejected/contains-account-name"]);
    assert_eq!(
        reason(&report, 0),
        "the password is too short: the domain's password policy requires at least 7 characters"
    );
    assert!(reason(&report, 1).contains("at least three of uppercase letters, lowercase letters, digits and symbols"));
    let lines: Vec<i64> =
        report["data"]["changes"].as_array().unwrap().iter().map(|c| c["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [1, 2, 4], "each result names its line of the batch");
    assert_eq!(report["data"]["policy"]["min_length"], 7);
    assert!(f.binds(&bob, &first), "nothing was written");
}

#[test]
fn ad_judges_what_a_fine_grained_policy_forbids_and_its_numbers_are_used_once_readable() {
    let Some(tb) = testbed() else { return };
    let f = Fixture::new(&tb, "Pso");
    let first = password("Pso");
    let carol = f.user("carol", "In", &first, true);
    let pso = format!("ausi-pso-{}x{}", std::process::id(), f.n);
    samba_tool(
        &tb,
        &["domain", "passwordsettings", "pso", "create", &pso, "1", "--min-pwd-length=14", "--complexity=on"],
    );
    struct Pso<'a>(&'a Testbed, String);
    impl Drop for Pso<'_> {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(|| {
                samba_tool(self.0, &["domain", "passwordsettings", "pso", "delete", &self.1]);
            });
        }
    }
    let _pso = Pso(&tb, pso.clone());
    samba_tool(&tb, &["domain", "passwordsettings", "pso", "apply", &pso, &carol]);

    // The service account cannot read the PSO: ausi checks nothing it does not know, and AD's
    // refusal comes back in words.
    let ten = password("Ten"); // 12 characters: enough for the domain, not for the PSO
    let (code, report) = f.push(&["--user", &carol, "--password-stdin"], &format!("{ten}\n"));
    assert_eq!(code, 1, "{report}");
    assert_eq!(results(&report)[0].1, "rejected");
    assert_eq!(reason(&report, 0), format!("the password is too short for the fine-grained password policy {pso}"));
    let warnings: Vec<&str> =
        report["warnings"].as_array().unwrap().iter().filter_map(|w| w["code"].as_str()).collect();
    assert!(warnings.contains(&"fine-grained-policy-unreadable"), "{report}");

    // Once it may read the PSO, the refusal is local and names the PSO's number.
    let sid = sid_of(&tb, "svc-ausi");
    let pso_dn = format!("CN={pso},CN=Password Settings Container,CN=System,{}", tb.base);
    samba_tool(&tb, &["dsacl", "set", "--objectdn", &pso_dn, "--sddl", &format!("(A;;RPLCLO;;;{sid})")]);
    let (code, report) = f.push(&["--user", &carol, "--password-stdin"], &format!("{ten}\n"));
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        reason(&report, 0),
        format!("the password is too short: the fine-grained password policy {pso} requires at least 14 characters")
    );
    assert!(f.binds(&carol, &first), "nothing was written");
}

#[test]
fn protected_outside_disabled_and_unknown_users_are_refused_and_the_rest_applied() {
    let Some(tb) = testbed() else { return };
    let f = Fixture::new(&tb, "Refuse");
    let first = password("Ref");
    let admin = f.user("adm", "In", &first, true);
    tb.ldap_modify(&format!(
        "dn: CN=Domain Admins,CN=Users,{}\nchangetype: modify\nadd: member\nmember: {}\n-\n",
        tb.base,
        f.dn(&admin, "In")
    ));
    let outside = f.user("oscar", "Out", &first, true);
    let disabled = f.user("dora", "In", &first, false);
    let fine = f.user("finn", "In", &first, true);
    let new = password("Batch");
    let lines: Vec<String> = [admin.as_str(), &outside, &disabled, "nobody-at-all", &fine]
        .iter()
        .map(|user| json!({"user": user, "password": new}).to_string())
        .collect();
    // The batch file itself holds the passwords: it lives outside the agent's directory.
    let batch_dir = tempfile::tempdir().unwrap();
    let batch_file = batch_dir.path().join("batch.jsonl");
    std::fs::write(&batch_file, lines.join("\n")).unwrap();
    let (code, report) = f.push(&["--batch", batch_file.to_str().unwrap()], "");
    assert_eq!(code, 1, "{report}");
    let got: Vec<(String, String)> = results(&report).into_iter().map(|(_, r, c)| (r, c)).collect();
    let want = [
        ("rejected", "protected-account"),
        ("rejected", "out-of-scope"),
        ("rejected", "account-disabled"),
        ("rejected", "user-not-found"),
        ("applied", ""),
    ];
    assert_eq!(got, want.map(|(r, c)| (r.to_owned(), c.to_owned())), "{report}");
    assert!(reason(&report, 0).contains("member of Domain Admins"), "{}", reason(&report, 0));
    assert_eq!(report["data"]["counts"], json!({"applied": 1, "checked": 0, "rejected": 4, "failed": 0}));
    assert!(f.binds(&fine, &new));
    assert!(f.binds(&admin, &first) && f.binds(&outside, &first), "refused users keep their password");
    // adminCount = 1 (what AD's SDProp sets on members of protected groups) is refused too,
    // and the built-in Administrator is outside the selected OU anyway.
    tb.ldap_modify(&format!("dn: {}\nchangetype: modify\nreplace: adminCount\nadminCount: 1\n-\n", f.dn(&fine, "In")));
    let (code, report) = f.push(&["--user", &fine, "--password-stdin"], &format!("{new}\n"));
    assert_eq!((code, results(&report)[0].2.as_str()), (1, "protected-account"), "{report}");
    assert!(reason(&report, 0).contains("adminCount = 1"), "{report}");
    let (code, report) = f.push(&["--user", "Administrator", "--password-stdin"], &format!("{new}\n"));
    assert_eq!((code, results(&report)[0].2.as_str()), (1, "out-of-scope"), "{report}");
}

#[test]
fn a_bad_batch_is_refused_whole_naming_lines_not_passwords() {
    let Some(tb) = testbed() else { return };
    let f = Fixture::new(&tb, "BadBatch");
    let first = password("Bad");
    let erin = f.user("erin", "In", &first, true);
    let good = password("Good");
    // The second line's password is a number: serde_json would quote it in its message.
    remember("987654321");
    let batch = format!(
        "{}\n{{\"user\": \"{erin}\", \"password\": 987654321}}\nnot json\n",
        json!({"user": erin, "password": good})
    );
    let mut cmd = common::ausi();
    cmd.args(["--config", f.cfg(), "password-push", "--batch", "-", "-o", "json"]).write_stdin(batch);
    let r = common::run(&mut cmd);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_no_password(r.stdout.as_bytes(), "the report");
    assert_no_password(r.stderr.as_bytes(), "stderr");
    let error = &r.json()["error"];
    let causes = error["causes"].to_string();
    assert!(causes.contains("line 2") && causes.contains("line 3"), "{error}");
    assert!(f.binds(&erin, &first), "nothing was sent, not even the good line");
}

#[test]
fn plain_ldap_is_refused_before_anything_is_read_or_sent() {
    let Some(tb) = testbed() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (dir, config) = tb.config("");
    let p = password("Plain");
    let source = format!("ldap://127.0.0.1:{port}");
    let mut cmd = common::ausi();
    cmd.args(["--config", config.to_str().unwrap(), "password-push", "--user", "someone", "--password-stdin"])
        .args(["--source", &source, "-o", "json"])
        .write_stdin(format!("{p}\n"));
    let r = common::run(&mut cmd);
    assert_eq!(r.code, 78, "{}", r.stdout);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("without encryption"), "{}", r.stdout);
    assert!(listener.accept().is_err(), "nothing connected to the plain LDAP port");
    assert_no_password(r.stdout.as_bytes(), "the report");
    assert_no_password_in_files(dir.path());
}

/// The contract's three password calls, with a queue the test fills.
struct AgentDouble {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<DoubleState>>,
}

#[derive(Default)]
struct DoubleState {
    /// The bearer token it accepts.
    token: String,
    changes: Vec<Value>,
    /// (change id, body) of every POST of a result.
    results: Vec<(String, Value)>,
    policy: Value,
}

const AGENT_BASE: &str = "/realm/api/agent/v1/agents/dc1/";
const TOKEN: &str = "double-token";

impl AgentDouble {
    fn start(changes: Vec<Value>, policy: Value) -> AgentDouble {
        AgentDouble::with_token(TOKEN, changes, policy)
    }

    fn with_token(token: &str, changes: Vec<Value>, policy: Value) -> AgentDouble {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(DoubleState { token: token.to_owned(), changes, results: vec![], policy }));
        let (s, st) = (stop.clone(), state.clone());
        let addr = serve(
            move || s.load(Ordering::SeqCst),
            move |mut stream| {
                let state = st.clone();
                async move {
                    let Some(request) = read_request(&mut stream).await else { return };
                    let (status, body) = answer(&state, &request);
                    answer_json(&mut stream, status, &body).await;
                }
            },
        );
        AgentDouble { addr, stop, state }
    }

    fn realm(&self) -> String {
        format!("http://{}/realm", self.addr)
    }

    fn results(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).results.clone()
    }

    /// `[tenant]` for a config: this double as the realm, its token in `dir`.
    fn tenant_section(&self, dir: &Path) -> String {
        let token = dir.join("tenant.token");
        std::fs::write(&token, TOKEN).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        format!(
            "\n[tenant]\nhome_realm = \"{}\"\nagent_name = \"dc1\"\ntoken = \"file:{}\"\nagent_api = true\n",
            self.realm(),
            token.display()
        )
    }
}

impl Drop for AgentDouble {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        std::net::TcpStream::connect(self.addr).ok();
    }
}

fn answer(state: &Mutex<DoubleState>, request: &RawRequest) -> (&'static str, String) {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    if request.header("authorization") != Some(&format!("Bearer {}", state.token)) {
        return ("401 Unauthorized", "{}".into());
    }
    let path = request.path.strip_prefix(AGENT_BASE).unwrap_or("");
    match (request.method.as_str(), path) {
        ("GET", "password-changes") => ("200 OK", json!({"changes": state.changes}).to_string()),
        ("GET", "password-policy") => ("200 OK", state.policy.to_string()),
        ("POST", id) if id.starts_with("password-changes/") => {
            let id = id.trim_start_matches("password-changes/").to_owned();
            let body: Value = serde_json::from_slice(request.body()).unwrap_or(Value::Null);
            state.changes.retain(|c| c["id"] != id.as_str());
            state.results.push((id, body));
            ("200 OK", "{}".into())
        }
        _ => ("404 Not Found", "{}".into()),
    }
}

fn append(config: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(config).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn guid_of(f: &Fixture<'_>, sam: &str) -> String {
    let (code, report) = common::json(&["--config", f.cfg(), "validate", "--user", sam]);
    assert_eq!(code, 0, "{report}");
    report["data"]["user"]["object_guid"].as_str().unwrap().to_owned()
}

#[test]
fn tenant_changes_are_applied_or_rejected_each_answered_and_one_failure_stops_none() {
    let Some(tb) = testbed() else { return };
    let f = Fixture::new(&tb, "Tenant");
    let first = password("Ten");
    let gina = f.user("gina", "In", &first, true);
    let hank = f.user("hank", "In", &first, true);
    let ivy = f.user("ivy", "In", &first, true);
    let (p_gina, p_ivy) = (password("Pg"), password("Pi"));
    remember("tiny");
    let changes = vec![
        json!({"id": "c1", "externalId": guid_of(&f, &gina), "userName": format!("{gina}@example.test"),
               "password": p_gina, "requestedAt": "2026-11-28T10:00:00Z"}),
        json!({"id": "c2", "userName": format!("{hank}@example.test"), "password": "tiny",
               "requestedAt": "2026-11-28T10:01:00Z"}),
        json!({"id": "c3", "userName": ivy, "password": p_ivy, "requestedAt": "2026-11-28T10:02:00Z"}),
    ];
    let double = AgentDouble::start(changes, json!({}));
    append(&f.config, &double.tenant_section(f.dir.path()));

    let (code, report) = f.push(&["--from-tenant"], "");
    assert_eq!(code, 1, "one change was rejected: {report}");
    let got: Vec<(String, String)> = results(&report).into_iter().map(|(_, r, c)| (r, c)).collect();
    assert_eq!(
        got,
        [("applied", ""), ("rejected", "too-short"), ("applied", "")].map(|(r, c)| (r.to_owned(), c.to_owned()))
    );
    assert!(
        report["data"]["changes"].as_array().unwrap().iter().all(|c| c["reported"] == true && c["source"] == "tenant")
    );
    let posted = double.results();
    assert_eq!(posted.len(), 3, "every change is answered");
    assert_eq!(posted[0], ("c1".to_owned(), json!({"result": "applied"})));
    assert_eq!(posted[1].0, "c2");
    assert_eq!(posted[1].1["result"], "rejected");
    assert_eq!(
        posted[1].1["reason"],
        "the password is too short: the domain's password policy requires at least 7 characters"
    );
    assert_eq!(posted[2], ("c3".to_owned(), json!({"result": "applied"})));
    assert!(f.binds(&gina, &p_gina) && f.binds(&ivy, &p_ivy) && f.binds(&hank, &first));

    // The queue is empty now: a second run has nothing to do.
    let (code, report) = f.push(&["--from-tenant"], "");
    assert_eq!((code, report["data"]["changes"].as_array().unwrap().len()), (0, 0), "{report}");
}

#[test]
fn validate_names_both_values_of_every_password_policy_mismatch() {
    let Some(tb) = testbed() else { return };
    let f = Fixture::new(&tb, "Policy");
    f.user("jo", "In", &password("Jo"), true);
    let double =
        AgentDouble::start(vec![], json!({"minLength": 12, "maxAgeDays": 90, "complexity": true, "historyCount": 24}));
    append(&f.config, &double.tenant_section(f.dir.path()));
    let (code, report) = common::json(&["--config", f.cfg(), "validate"]);
    assert_eq!(code, 1, "a mismatch is a finding: {report}");
    let alignment = &report["data"]["password_policy"];
    let mismatches = alignment["mismatches"].as_array().unwrap();
    let settings: Vec<&str> = mismatches.iter().map(|m| m["setting"].as_str().unwrap()).collect();
    assert_eq!(settings, ["minLength", "maxAgeDays"], "{alignment}");
    assert_eq!((mismatches[0]["tenant"].clone(), mismatches[0]["domain"].clone()), (json!(12), json!(7)));
    assert_eq!((mismatches[1]["tenant"].clone(), mismatches[1]["domain"].clone()), (json!(90), json!(42)));
    let message = mismatches[0]["message"].as_str().unwrap();
    assert!(
        message.contains("12") && message.contains('7') && message.contains("Set the tenant's minimum length to 7"),
        "{message}"
    );
    assert_eq!(alignment["domain"]["min_length"], 7);
}

#[test]
fn every_sync_of_an_agent_registered_with_password_sync_writes_the_queue() {
    let Some(tb) = testbed() else { return };
    let f = Fixture::new(&tb, "Sync");
    let first = password("Sy");
    let kim = f.user("kim", "In", &first, true);
    let new = password("Nk");
    let token = std::fs::read_to_string(&tb.scim_token_file).unwrap().trim().to_owned();
    let change = json!({"id": "s1", "userName": format!("{kim}@example.test"), "password": new});
    let double = AgentDouble::with_token(&token, vec![change], json!({"minLength": 7}));
    // The agent API on the double, SCIM on the real scim2-server (a tenant of its own).
    let scim = format!("{}/pwsync{}x{}/v2", tb.scim_url, std::process::id(), f.n);
    let mut cmd = common::ausi();
    cmd.args(["--config", f.cfg(), "register", "--home-realm", &double.realm(), "--scim-url", &scim])
        .args(["--agent-name", "dc1", "--token-stdin", "--password-sync", "-o", "json"])
        .write_stdin(format!("{token}\n"));
    let r = common::run(&mut cmd);
    assert_eq!(r.code, 0, "register: {}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["data"]["password_sync"], true);

    // A dry run neither writes passwords nor answers the tenant.
    let (code, report) = common::json(&["--config", f.cfg(), "sync", "--dry-run"]);
    assert_eq!(code, 0, "{report}");
    assert!(report["data"]["password_push"].is_null(), "{report}");
    assert!(double.results().is_empty());

    let r = common::run(common::ausi().args(["--config", f.cfg(), "sync", "-vv", "-o", "json"]));
    assert_no_password(r.stdout.as_bytes(), "the sync report");
    assert_no_password(r.stderr.as_bytes(), "the sync's log");
    assert_no_password_in_files(f.dir.path());
    let (code, report) = (r.code, r.json());
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["data"]["counts"]["created"], 1, "{report}");
    let push = &report["data"]["password_push"];
    assert_eq!(push["counts"]["applied"], 1, "{push}");
    assert_eq!(double.results(), [("s1".to_owned(), json!({"result": "applied"}))]);
    assert!(f.binds(&kim, &new) && !f.binds(&kim, &first));
}

//! `bind = "kerberos"` against the Samba AD DC's own KDC (127.0.0.1:88): a keytab exported for
//! the service account, a krb5.conf in the test's temporary directory (KRB5_CONFIG; the
//! machine's /etc/krb5.conf is never read), and no bind password anywhere.
//!
//! How the test reaches `ldap/dc1.example.test` without /etc/hosts: the URL is
//! `ldaps://127.0.0.1:636` (the certificate lists IP:127.0.0.1), and the SPN's host name comes
//! from the DC's rootDSE (`dnsHostName`), so no name is ever resolved; MIT Kerberos imports
//! the SPN as a principal name (no canonicalisation), and krb5.conf sets `rdns = false` and
//! `dns_canonicalize_hostname = false` besides.
#![allow(clippy::print_stderr)]
// Without the `kerberos` feature only the gMSA tests and the "no Kerberos support" test run.
#![cfg_attr(not(feature = "kerberos"), allow(dead_code))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use common::testbed::{Sandbox, Testbed, testbed};
use serde_json::Value;

static SEQ: AtomicU32 = AtomicU32::new(0);
static SPN: Once = Once::new();

const RESET_PASSWORD: &str = "00299570-246d-11d0-a768-00aa006e0529";
const USER_CLASS: &str = "bf967aba-0de6-11d0-a285-00aa003049e2";

fn samba_tool(args: &[&str]) -> (bool, String) {
    let conf = std::env::var("AUSI_TEST_SMB_CONF").expect("AUSI_TEST_SMB_CONF");
    let out = Command::new("samba-tool").args(args).args(["-s", &conf]).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The DC's `ldap/` service principal. `scripts/testbed` registers it when it provisions (Samba
/// does so only through its dnsupdate service, which the testbed does not run); an instance made
/// by an older script gets it here, once.
fn ensure_ldap_spn() {
    SPN.call_once(|| {
        let (_, listed) = samba_tool(&["spn", "list", "DC1$"]);
        if !listed.to_ascii_lowercase().contains("ldap/dc1.example.test") {
            let (ok, out) = samba_tool(&["spn", "add", "ldap/dc1.example.test", "DC1$"]);
            assert!(ok, "samba-tool spn add: {out}");
        }
    });
}

/// A temporary directory with krb5.conf (realm EXAMPLE.TEST, KDC `kdc`) and the service
/// account's keytab.
struct Krb {
    dir: tempfile::TempDir,
}

impl Krb {
    fn new(kdc: &str) -> Krb {
        ensure_ldap_spn();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("krb5.conf"),
            format!(
                "[libdefaults]\n\tdefault_realm = EXAMPLE.TEST\n\tdns_lookup_realm = false\n\tdns_lookup_kdc = false\n\
                 \trdns = false\n\tdns_canonicalize_hostname = false\n[realms]\n\tEXAMPLE.TEST = {{\n\t\tkdc = {kdc}\n\t}}\n"
            ),
        )
        .unwrap();
        let keytab = dir.path().join("svc.keytab");
        let (ok, out) = samba_tool(&["domain", "exportkeytab", keytab.to_str().unwrap(), "--principal=svc-ausi"]);
        assert!(ok, "exportkeytab: {out}");
        Krb { dir }
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("krb5.conf")
    }

    fn keytab(&self) -> PathBuf {
        self.dir.path().join("svc.keytab")
    }

    /// A keytab for the same principal with keys that are not the account's (an outdated one).
    fn wrong_keytab(&self) -> PathBuf {
        let path = self.dir.path().join("wrong.keytab");
        let script = format!(
            "addent -password -p svc-ausi@EXAMPLE.TEST -k 1 -e aes256-cts-hmac-sha1-96\nNot-The-Key-{}1!\nwkt {}\nquit\n",
            std::process::id(),
            path.display()
        );
        let mut child = Command::new("ktutil")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ktutil (Debian krb5-user, installed by scripts/testbed)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
        assert!(path.exists(), "ktutil wrote no keytab");
        path
    }

    /// The binary with this krb5.conf and no inherited Kerberos state.
    fn ausi(&self) -> assert_cmd::Command {
        let mut cmd = common::ausi();
        cmd.env("KRB5_CONFIG", self.conf()).env_remove("KRB5CCNAME").env_remove("KRB5_CLIENT_KTNAME");
        cmd
    }
}

/// `[directory]` for a Kerberos bind over LDAPS with `keytab`: no bind_dn, no bind_password.
fn kerberos_directory(tb: &Testbed, keytab: &Path) -> String {
    format!(
        "[directory]\nurl = \"{}\"\nca_file = \"{}\"\nbind = \"kerberos\"\nkeytab = \"file:{}\"\n",
        tb.ldaps,
        tb.ca,
        keytab.display()
    )
}

/// Turns an agent's simple-bind `[directory]` into a Kerberos one, keeping the rest.
fn switch_to_kerberos(tb: &Testbed, config: &Path, keytab: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let start = text.find("[directory]").unwrap();
    let end = text[start + 1..].find("\n[").map_or(text.len(), |i| start + 2 + i);
    let rest = format!("{}{}{}", &text[..start], kerberos_directory(tb, keytab), &text[end..]);
    std::fs::write(config, &rest).unwrap();
    assert!(!rest.contains("bind_password") && !rest.contains("bind_dn"), "{rest}");
}

fn json(cmd: &mut assert_cmd::Command, args: &[&str]) -> (i32, Value) {
    let r = common::run(cmd.args(args).args(["-o", "json"]));
    let v = r.json();
    assert_eq!(v["exit_code"].as_i64(), Some(i64::from(r.code)), "{}", r.stdout);
    (r.code, v)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Whether a simple bind as `upn` with `password` works (through a 0600 file, not argv).
fn binds(tb: &Testbed, dir: &Path, upn: &str, password: &str) -> bool {
    let file = dir.join(format!("try-{}.pw", SEQ.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&file, password).unwrap();
    let out = Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", &tb.ca)
        .args(["-x", "-H", &tb.ldaps, "-D", upn, "-y"])
        .arg(&file)
        .args(["-s", "base", "-b", &tb.base, "1.1"])
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    out.status.success()
}

#[test]
#[cfg(feature = "kerberos")] // scripts/test builds with it
fn kerberos_bind_lists_validates_syncs_and_pushes_a_password_with_no_password_configured() {
    let Some(tb) = testbed() else { return };
    let krb = Krb::new("127.0.0.1");

    // A sandbox: OU=In with two users, where the service account may reset passwords.
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let root = format!("OU=Krb{}x{n},{}", std::process::id(), tb.base);
    let _sandbox = Sandbox { tb: &tb, root: root.clone() };
    let first = format!("First#{}Qz", std::process::id() % 10_000);
    let mut ldif = format!(
        "dn: {root}\nchangetype: add\nobjectClass: organizationalUnit\n\ndn: OU=In,{root}\nchangetype: add\nobjectClass: organizationalUnit\n"
    );
    let sams: Vec<String> =
        ["kalice", "kbob"].iter().map(|s| format!("{s}{}x{n}", std::process::id() % 10_000)).collect();
    for sam in &sams {
        ldif.push_str(&format!(
            "\ndn: CN={sam},OU=In,{root}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\n\
             userPrincipalName: {sam}@example.test\ngivenName: {sam}\nsn: Kerberos\ndisplayName: {sam} Kerberos\n\
             mail: {sam}@example.test\nunicodePwd:: {}\nuserAccountControl: 512\n",
            b64(&utf16(&format!("\"{first}\"")))
        ));
    }
    tb.ldap_modify(&ldif);
    let (_, shown) = samba_tool(&["user", "show", "svc-ausi", "--attributes=objectSid"]);
    let sid = shown.lines().find_map(|l| l.strip_prefix("objectSid: ")).expect("objectSid").trim().to_owned();
    let (ok, out) = samba_tool(&[
        "dsacl",
        "set",
        "--objectdn",
        &root,
        "--sddl",
        &format!("(OA;CI;CR;{RESET_PASSWORD};{USER_CLASS};{sid})"),
    ]);
    assert!(ok, "dsacl: {out}");

    // An agent registered with a fresh tenant, OU=In selected; then its [directory] becomes
    // a Kerberos one: from here on no password for the DC exists in its configuration.
    let selected = format!("OU=In,{root}");
    let agent = tb.agent(&[selected.as_str()], "");
    switch_to_kerberos(&tb, &agent.config, &krb.keytab());
    let c = agent.cfg();

    let (code, v) = json(&mut krb.ausi(), &["--config", c, "list-ous"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["data"]["directory"]["dns_host_name"], "dc1.example.test");
    let listed = v["data"]["ous"].as_array().unwrap();
    assert!(listed.iter().any(|o| o["dn"] == selected.as_str() && o["users_direct"] == 2), "{v}");

    let (code, v) = json(&mut krb.ausi(), &["--config", c, "validate"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["data"]["summary"]["users_checked"], 2, "{v}");
    assert_eq!(v["data"]["summary"]["valid"], 2, "{v}");

    let (code, v) = json(&mut krb.ausi(), &["--config", c, "sync", "--full"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["data"]["mode"], "full");
    assert_eq!(v["data"]["dc"], "dc1.example.test");
    assert_eq!(v["data"]["counts"]["created"], 2, "{v}");
    let names: Vec<String> = agent
        .tenant(ausi::tenant::ResourceKind::User)
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_lowercase())
        .collect();
    for sam in &sams {
        assert!(names.contains(&format!("{sam}@example.test")), "{sam} in the tenant: {names:?}");
    }

    // Password writeback over the same Kerberos bind (Reset Password granted to the account).
    let new = format!("Krb-New#{}Qz", std::process::id() % 10_000);
    let upn = format!("{}@example.test", sams[0]);
    let r = common::run(
        krb.ausi()
            .args(["--config", c, "password-push", "--user", &upn, "--password-stdin", "-o", "json"])
            .write_stdin(format!("{new}\n")),
    );
    let v = r.json();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(v["data"]["changes"][0]["result"], "applied", "{v}");
    assert!(binds(&tb, agent.dir.path(), &upn, &new), "the pushed password binds");
    assert!(!binds(&tb, agent.dir.path(), &upn, &first), "the old one no longer does");
    for text in [&r.stdout, &r.stderr] {
        assert!(!text.contains(&new), "the pushed password leaked into the output");
    }
}

#[test]
#[cfg(feature = "kerberos")] // scripts/test builds with it
fn a_wrong_keytab_is_rejected_with_77_and_an_unreachable_kdc_is_temporary_75() {
    let Some(tb) = testbed() else { return };
    let krb = Krb::new("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();

    // Keys that are not the account's: the KDC refuses them (preauthentication failed).
    let wrong =
        common::write_config(dir.path(), &format!("version = 1\n{}", kerberos_directory(&tb, &krb.wrong_keytab())));
    let (code, v) = json(&mut krb.ausi(), &["--config", wrong.to_str().unwrap(), "list-ous"]);
    assert_eq!(code, 77, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("Kerberos") && message.contains("rejected"), "{message}");
    assert!(v["error"]["hints"][0].as_str().unwrap().contains("keytab"), "{v}");

    // An account named on the command line is a simple bind, whatever the file says.
    let mut cmd = krb.ausi();
    cmd.write_stdin(format!("{}\n", tb.password()));
    let w = wrong.to_str().unwrap();
    let (code, v) = json(&mut cmd, &["--config", w, "list-ous", "--bind-dn", &tb.bind_dn, "--bind-password-stdin"]);
    assert_eq!(code, 0, "{v}");

    // The right keytab, but krb5.conf names a KDC that does not answer (a closed port).
    let dead = Krb::new("127.0.0.1:1");
    let config = common::write_config(dir.path(), &format!("version = 1\n{}", kerberos_directory(&tb, &dead.keytab())));
    let (code, v) = json(&mut dead.ausi(), &["--config", config.to_str().unwrap(), "list-ous"]);
    assert_eq!(code, 75, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("KDC"), "{v}");

    // A keytab others can read is refused like a secret file (78), before any Kerberos.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let open = dir.path().join("open.keytab");
        std::fs::copy(krb.keytab(), &open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = common::write_config(dir.path(), &format!("version = 1\n{}", kerberos_directory(&tb, &open)));
        let (code, v) = json(&mut krb.ausi(), &["--config", config.to_str().unwrap(), "list-ous"]);
        assert_eq!(code, 78, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("chmod 600"), "{v}");
    }

    // No keytab and an empty credential cache: a configuration error (78), said plainly.
    let none =
        format!("version = 1\n[directory]\nurl = \"{}\"\nca_file = \"{}\"\nbind = \"kerberos\"\n", tb.ldaps, tb.ca);
    let config = common::write_config(dir.path(), &none);
    let mut cmd = krb.ausi();
    cmd.env("KRB5CCNAME", format!("FILE:{}", dir.path().join("no-such-cache").display()));
    let (code, v) = json(&mut cmd, &["--config", config.to_str().unwrap(), "list-ous"]);
    assert_eq!(code, 78, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("no Kerberos credentials"), "{v}");

    // A service principal the KDC does not know: a configuration error naming the SPN.
    let spn = common::write_config(
        dir.path(),
        &format!("version = 1\n{}spn_host = \"dc9.example.test\"\n", kerberos_directory(&tb, &krb.keytab())),
    );
    let (code, v) = json(&mut krb.ausi(), &["--config", spn.to_str().unwrap(), "list-ous"]);
    assert_eq!(code, 78, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("ldap/dc9.example.test"), "{v}");
}

/// `--create-service-account --gmsa`: what the Samba testbed can show of a gMSA. Samba 4.17
/// stores the object (class, name, who may retrieve the password) but has no KDS root key and
/// computes no msDS-ManagedPassword, so nobody can authenticate as the gMSA here; that part
/// (the task running as DOMAIN\NAME$ and binding with Kerberos) needs a Windows Server 2012+
/// domain.
#[test]
fn a_gmsa_is_created_with_who_may_retrieve_its_password_and_nothing_is_stored() {
    use ausi::directory::security::SecurityDescriptor;
    use base64::Engine;
    let Some(tb) = testbed() else { return };
    let name = format!("gm{}x{}", std::process::id() % 100_000, SEQ.fetch_add(1, Ordering::SeqCst));
    let dn = format!("CN={name},CN=Managed Service Accounts,{}", tb.base);
    let _cleanup = Sandbox { tb: &tb, root: dn.clone() };
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        &format!("version = 1\n\n# the test DC\n[directory]\nurl = \"{}\"\nca_file = \"{}\"\n", tb.ldaps, tb.ca),
    );
    let c = config.to_str().unwrap();
    let admin = format!("{}\n", std::fs::read_to_string(&tb.admin_pw_file).unwrap().trim_end());
    let args = [
        "--config",
        c,
        "install-service",
        "--create-service-account",
        "--gmsa",
        "--gmsa-allowed",
        "DC1$",
        "--name",
        &name,
        "--bind-dn",
        &tb.admin_dn,
        "--bind-password-stdin",
        "-o",
        "json",
    ];
    let r = common::run(common::ausi().args(args).write_stdin(admin.clone()));
    let v = r.json();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let account = &v["data"]["account"];
    assert_eq!(account["kind"], "gmsa");
    assert_eq!(account["action"], "created");
    assert_eq!(account["dn"], dn.as_str());
    assert_eq!(account["sam_account_name"], format!("{name}$"));
    assert_eq!(account["password"], "managed-by-the-domain");
    assert_eq!(account["allowed_to_retrieve"], serde_json::json!(["DC1$"]));

    // In AD: a gMSA whose msDS-GroupMSAMembership lets exactly DC1$ retrieve the password.
    let out = Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", &tb.ca)
        .args(["-x", "-H", &tb.ldaps, "-D", &tb.admin_dn, "-y", &tb.admin_pw_file, "-LLL", "-o", "ldif-wrap=no"])
        .args(["-s", "base", "-b", &dn, "(objectClass=*)", "objectClass", "msDS-GroupMSAMembership"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("objectClass: msDS-GroupManagedServiceAccount"), "{text}");
    let b64 = text.lines().find_map(|l| l.strip_prefix("msDS-GroupMSAMembership:: ")).expect("membership");
    let sd = SecurityDescriptor::parse(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
    let (_, shown) = samba_tool(&["computer", "show", "DC1", "--attributes=objectSid"]);
    let dc_sid = shown.lines().find_map(|l| l.strip_prefix("objectSid: ")).expect("objectSid").trim().to_owned();
    let aces = sd.dacl.unwrap().aces;
    assert_eq!(aces.len(), 1);
    assert_eq!(aces[0].sid().map(|s| s.to_string()), Some(dc_sid));
    assert_eq!(aces[0].mask(), Some(0x000f_01ff));

    // No secret anywhere: the configuration now binds with Kerberos, comments kept.
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("# the test DC"), "{written}");
    let parsed = ausi::config::parse(&written).unwrap();
    assert_eq!(parsed.directory.bind, ausi::config::BindMethod::Kerberos);
    assert!(parsed.directory.bind_password.is_none() && parsed.directory.bind_dn.is_none(), "{written}");
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["agent.toml"], "no secret file was written");

    // Again: the same gMSA, reused.
    let r = common::run(common::ausi().args(args).write_stdin(admin));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["data"]["account"]["action"], "reused");
}

/// `install-service --run-as DOMAIN\NAME$` with Kerberos: every check passes with no secret but
/// the tenant token, and the task runs as the gMSA with no password (a temporary root).
#[test]
#[cfg(feature = "kerberos")] // its pre-checks bind with Kerberos
fn install_service_as_a_gmsa_with_kerberos_needs_no_directory_secret() {
    let Some(tb) = testbed() else { return };
    let krb = Krb::new("127.0.0.1");
    let agent = tb.agent(&[format!("OU=EMEA,OU=Sales,OU=Corp,{}", tb.base).as_str()], "");
    switch_to_kerberos(&tb, &agent.config, &krb.keytab());
    let root = agent.dir.path().join("root");
    let args = [
        "--config",
        agent.cfg(),
        "install-service",
        "--root",
        root.to_str().unwrap(),
        "--scheduler",
        "task-scheduler",
        "--run-as",
        r"EXAMPLE\gmsa-ausi$",
    ];
    let (code, v) = json(&mut krb.ausi(), &args);
    assert_eq!(code, 0, "{v}");
    let checks = v["data"]["checks"].as_array().unwrap();
    let detail =
        |name: &str| checks.iter().find(|c| c["check"] == name).unwrap()["detail"].as_str().unwrap().to_owned();
    assert_eq!(detail("secrets"), "tenant token resolve", "no directory secret is needed");
    assert!(detail("directory").contains("Kerberos"), "{v}");
    let task = v["data"]["files"].as_array().unwrap()[0]["contents"].as_str().unwrap().to_owned();
    let doc = roxmltree::Document::parse(&task).unwrap();
    let principal = doc.descendants().find(|n| n.has_tag_name("Principal")).unwrap();
    let text = |tag: &str| principal.children().find(|n| n.has_tag_name(tag)).and_then(|n| n.text()).map(str::to_owned);
    assert_eq!(text("UserId").as_deref(), Some(r"EXAMPLE\gmsa-ausi$"));
    assert_eq!(text("LogonType").as_deref(), Some("Password"));
    let config = std::fs::read_to_string(&agent.config).unwrap();
    assert!(!config.contains("bind_password") && !config.contains(&tb.password()), "{config}");

    // Under systemd the keytab reaches the service as a credential, like a file: secret.
    let (code, v) = json(&mut krb.ausi(), &["--config", agent.cfg(), "install-service", "--print"]);
    assert_eq!(code, 0, "{v}");
    let unit = v["data"]["files"][0]["contents"].as_str().unwrap();
    let name = ausi::secrets::credential_name(&krb.keytab());
    assert!(unit.contains(&format!("LoadCredential={name}:{}", krb.keytab().display())), "{unit}");
}

/// Without the `kerberos` feature (a plain `cargo build` on Linux) the Kerberos bind is a
/// configuration error that says how to get it, never a crash or a silent simple bind.
#[test]
#[cfg(not(feature = "kerberos"))]
fn a_build_without_kerberos_says_so_with_78() {
    let Some(tb) = testbed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keytab = dir.path().join("ausi.keytab");
    std::fs::write(&keytab, b"\x05\x02").unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, format!("version = 1\n{}", kerberos_directory(&tb, &keytab))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (code, v) = json(&mut common::ausi(), &["--config", config.to_str().unwrap(), "list-ous"]);
    assert_eq!(code, 78, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("no Kerberos support"), "{v}");
}

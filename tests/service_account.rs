//! `ausi install-service --create-service-account` against the Samba AD DC: the account is
//! created once and reused, binds with the stored password, gets exactly one ACE per right on the
//! selected OU (even after repeated runs) and can then read and reset passwords there and nowhere
//! else; its password never appears in any output. Plain ldap:// is refused before connecting.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use ausi::directory::security::{SD_FLAGS_OID, SecurityDescriptor};
use base64::Engine;
use common::testbed::{Sandbox, Testbed, testbed};
use serde_json::Value;

/// An OpenLDAP tool bound as `dn` with the password in `pw_file`, over LDAPS.
fn ldap_tool(tb: &Testbed, tool: &str, dn: &str, pw_file: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(tool)
        .env("LDAPTLS_CACERT", &tb.ca)
        .args(["-x", "-H", &tb.ldaps, "-D", dn, "-y"])
        .arg(pw_file)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn admin_search(tb: &Testbed, base: &str, args: &[&str]) -> String {
    let mut all = vec!["-LLL", "-o", "ldif-wrap=no", "-b", base];
    all.extend(args);
    let (ok, text) = ldap_tool(tb, "ldapsearch", &tb.admin_dn, Path::new(&tb.admin_pw_file), &all, "");
    assert!(ok, "ldapsearch {all:?}: {text}");
    text
}

/// Explicit ACEs on `dn` whose trustee is `sid`, read with the SD flags control (DACL only).
fn explicit_aces_for(tb: &Testbed, dn: &str, sid: &str) -> usize {
    let control = format!("{SD_FLAGS_OID}=::MAMCAQQ=");
    let text = admin_search(tb, dn, &["-s", "base", "-E", &control, "(objectClass=*)", "nTSecurityDescriptor"]);
    let b64 = text.lines().find_map(|l| l.strip_prefix("nTSecurityDescriptor:: ")).expect("a descriptor");
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let sd = SecurityDescriptor::parse(&bytes).unwrap();
    assert!(sd.owner.is_none() && sd.sacl.is_none(), "the control limits the read to the DACL");
    sd.dacl.unwrap().aces.iter().filter(|a| !a.is_inherited() && a.sid().is_some_and(|s| s.to_string() == sid)).count()
}

fn accounts_named(tb: &Testbed, name: &str) -> usize {
    admin_search(tb, &tb.base, &[&format!("(sAMAccountName={name})"), "dn"])
        .lines()
        .filter(|l| l.starts_with("dn: "))
        .count()
}

/// LDIF that replaces `dn`'s password (what password writeback sends).
fn set_password_ldif(dn: &str, password: &str) -> String {
    let quoted: Vec<u8> = format!("\"{password}\"").encode_utf16().flat_map(u16::to_le_bytes).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(quoted);
    format!("dn: {dn}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {b64}\n-\n")
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

struct Runs {
    outputs: Vec<String>,
}

impl Runs {
    fn run(&mut self, args: &[&str], stdin: &str) -> (i32, Value) {
        let r = common::run(common::ausi().args(args).args(["-o", "json"]).write_stdin(stdin.to_owned()));
        self.outputs.push(format!("{}\n{}", r.stdout, r.stderr));
        (r.code, r.json())
    }
}

#[test]
fn the_service_account_is_created_once_reused_and_granted_exactly_its_rights() {
    let Some(tb) = testbed() else { return };
    let tag = common::unique_tag();
    let root = format!("OU=SvcAcct{tag},{}", tb.base);
    let people = format!("OU=People,{root}");
    let other = format!("OU=Other,{root}");
    let _sandbox = Sandbox { tb: &tb, root: root.clone() };
    let (inside, outside) = (format!("CN=Inside {tag},{people}"), format!("CN=Outside {tag},{other}"));
    let mut ldif = format!("dn: {root}\nchangetype: add\nobjectClass: organizationalUnit\n\n");
    for ou in [&people, &other] {
        ldif.push_str(&format!("dn: {ou}\nchangetype: add\nobjectClass: organizationalUnit\n\n"));
    }
    for (dn, sam) in [(&inside, format!("si{tag}")), (&outside, format!("so{tag}"))] {
        ldif.push_str(&format!(
            "dn: {dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\nuserAccountControl: 544\n\n"
        ));
    }
    tb.ldap_modify(&ldif);

    let name = format!("sa{tag}");
    let account_dn = format!("CN={name},{root}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "# kept by ausi\nversion = 1\n\n[directory]\n# the test DC\nurl = \"{}\"\nca_file = \"{}\"\n",
            tb.ldaps, tb.ca
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap().to_owned();
    let admin_pw = std::fs::read_to_string(&tb.admin_pw_file).unwrap().trim_end().to_owned();
    let admin_in = format!("{admin_pw}\n");
    let create = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--config", &c, "install-service", "--create-service-account", "--ou", &root];
        args.extend(["--name", &name, "--bind-dn", &tb.admin_dn, "--bind-password-stdin"]);
        args.extend(extra);
        args.into_iter().map(str::to_owned).collect()
    };
    let mut runs = Runs { outputs: vec![] };
    let stored = dir.path().join("bind.pw");

    // 1. Created, with the password stored beside the config and the account in the config.
    let (code, report) = runs.run(&strs(&create(&[])), &admin_in);
    assert_eq!(code, 0, "{report}");
    let account = &report["data"]["account"];
    assert_eq!(account["action"], "created", "{report}");
    assert_eq!(account["password"], "set");
    assert_eq!(account["bind_checked"], true);
    assert_eq!(account["dn"], account_dn.as_str());
    let sid = account["object_sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("S-1-5-21-"), "{sid}");
    let first_password = std::fs::read_to_string(&stored).unwrap();
    assert_eq!(first_password.chars().count(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("# kept by ausi") && text.contains("# the test DC"), "comments kept:\n{text}");
    let parsed = ausi::config::parse(&text).unwrap();
    assert_eq!(parsed.directory.bind_dn.as_deref(), Some(account_dn.as_str()));
    assert_eq!(parsed.directory.bind_password.as_deref(), Some("file:bind.pw"));
    assert_eq!(accounts_named(&tb, &name), 1);

    // A new account in an OU that does not exist: a usage error, nothing created.
    let nowhere = format!("OU=Nowhere,{root}");
    let other_name = format!("sb{tag}");
    let args = ["--config", &c, "install-service", "--create-service-account", "--ou", &nowhere, "--name", &other_name];
    let (code, report) =
        runs.run(&[&args[..], &["--bind-dn", &tb.admin_dn, "--bind-password-stdin"]].concat(), &admin_in);
    assert_eq!(code, 2, "{report}");
    assert_eq!(accounts_named(&tb, &other_name), 0);

    // 2. The written configuration binds as the new account.
    let (code, listed) = runs.run(&["--config", &c, "list-ous", "--base", &root], "");
    assert_eq!(code, 0, "list-ous as the service account: {listed}");
    // Before any grant, it cannot reset passwords in the OU.
    let (ok, _) =
        ldap_tool(&tb, "ldapmodify", &account_dn, &stored, &[], &set_password_ldif(&inside, "Bef0re!Grant-x1"));
    assert!(!ok, "no Reset Password right before --grant-rights");
    let (code, selected) = runs.run(&["--config", &c, "select-ous", "--add", &people], "");
    assert_eq!(code, 0, "{selected}");

    // Bound as the configured (service) account instead of an administrator: refused, unchanged.
    let (code, report) = runs.run(
        &[
            "--config",
            &c,
            "install-service",
            "--create-service-account",
            "--name",
            &name,
            "--grant-rights",
            "--password-sync",
        ],
        "",
    );
    assert_eq!(code, 77, "the service account may not grant itself rights: {report}");
    assert_eq!(explicit_aces_for(&tb, &people, &sid), 0);

    // 3. Reused (same password), rights granted on the selected OU only; then again: no new ACE.
    for (expected, flags, from) in [
        ("added", &["--grant-rights", "--password-sync"][..], "--password-sync"),
        ("present", &["--grant-rights"][..], "tenant.password_sync"),
    ] {
        if expected == "present" {
            // Registered for password sync: the configuration alone asks for Reset Password.
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, format!("{text}\n[tenant]\npassword_sync = true\n")).unwrap();
        }
        let (code, report) = runs.run(&strs(&create(flags)), &admin_in);
        assert_eq!(code, 0, "{report}");
        assert_eq!(report["data"]["password_sync_from"], from, "{report}");
        let account = &report["data"]["account"];
        assert_eq!((account["action"].as_str(), account["password"].as_str()), (Some("reused"), Some("kept")));
        let rights = report["data"]["rights"].as_array().unwrap();
        assert_eq!(rights.len(), 1, "{report}");
        assert_eq!(rights[0]["ou"], people.as_str());
        let states: Vec<(&str, &str)> = rights[0]["rights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["right"].as_str().unwrap(), r["state"].as_str().unwrap()))
            .collect();
        assert_eq!(states, [("read", expected), ("reset-password", expected)], "{report}");
        assert!(rights[0]["rights"][1]["dsacls"].as_str().unwrap().contains("CA;Reset Password;user"));
        assert_eq!(std::fs::read_to_string(&stored).unwrap(), first_password, "a working password is kept");
        assert_eq!(explicit_aces_for(&tb, &people, &sid), 2, "one read ACE and one Reset Password ACE");
        assert_eq!(explicit_aces_for(&tb, &other, &sid), 0, "nothing outside the selection");
        assert_eq!(explicit_aces_for(&tb, &root, &sid), 0, "nothing above the selection");
        assert_eq!(accounts_named(&tb, &name), 1, "reused, not duplicated");
    }

    // 4. The account reads the OU's users and resets a password there, and only there.
    let (ok, found) =
        ldap_tool(&tb, "ldapsearch", &account_dn, &stored, &["-LLL", "-b", &people, "(objectClass=user)", "dn"], "");
    assert!(ok && found.contains(&format!("Inside {tag}")), "the account reads the OU: {found}");
    let (ok, text) =
        ldap_tool(&tb, "ldapmodify", &account_dn, &stored, &[], &set_password_ldif(&inside, "Aft3r!Grant-x2"));
    assert!(ok, "Reset Password on a user of the selected OU: {text}");
    let (ok, _) = ldap_tool(&tb, "ldapmodify", &account_dn, &stored, &[], &set_password_ldif(&outside, "N0t!Here-x3"));
    assert!(!ok, "no Reset Password outside the selected OU");

    // 5. A missing secret: the account is reused and its password reset (and stored again).
    std::fs::remove_file(&stored).unwrap();
    let (code, report) = runs.run(&strs(&create(&[])), &admin_in);
    assert_eq!(code, 0, "{report}");
    let account = &report["data"]["account"];
    assert_eq!((account["action"].as_str(), account["password"].as_str()), (Some("reused"), Some("reset")));
    assert_eq!(account["bind_checked"], true);
    let second_password = std::fs::read_to_string(&stored).unwrap();
    assert_ne!(second_password, first_password);
    let (code, listed) = runs.run(&["--config", &c, "list-ous", "--base", &root], "");
    assert_eq!(code, 0, "list-ous with the reset password: {listed}");
    assert_eq!(accounts_named(&tb, &name), 1);

    // 6. No output ever held a password: the stored file is the one place they exist.
    for output in &runs.outputs {
        for secret in [&first_password, &second_password, &admin_pw] {
            assert!(!output.contains(secret.as_str()), "a password leaked into the output:\n{output}");
        }
    }
}

#[test]
fn plain_ldap_is_refused_before_anything_is_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "version = 1\n");
    let c = config.to_str().unwrap();
    let args =
        ["--config", c, "install-service", "--create-service-account", "--source", &url, "--bind-dn", "CN=admin"];
    let (code, report) = common::json_with(
        common::ausi().write_stdin("admin-Passw0rd!\n"),
        &[&args[..], &["--bind-password-stdin"]].concat(),
    );
    assert_eq!(code, 78, "{report}");
    assert!(report["error"]["message"].as_str().unwrap().contains("without encryption"), "{report}");
    assert!(matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "nothing connected");
    assert!(!dir.path().join("bind.pw").exists());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "version = 1\n", "the configuration is untouched");

    // An export is no place to create an account; the other options need the flag.
    let ldif = common::example("examples/northwind.ldif");
    let (code, _) = common::json(&["--config", c, "install-service", "--create-service-account", "--source", &ldif]);
    assert_eq!(code, 2);
    let r = common::run(common::ausi().args(["install-service", "--grant-rights"]));
    assert_eq!(r.code, 2, "--grant-rights requires --create-service-account: {}", r.stderr);
}

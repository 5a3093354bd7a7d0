//! The Samba AD DC and SCIM server started by `scripts/testbed up`, as the tests see them.
#![allow(dead_code, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use ausi::directory::Dn;
use base64::Engine as _;
use serde_json::Value;

pub struct Testbed {
    pub ldaps: String,
    pub ldap: String,
    pub ca: String,
    pub bind_dn: String,
    pub bind_pw_file: String,
    pub base: String,
    pub expected: Value,
    pub scim_url: String,
    pub scim_token_file: String,
    pub admin_dn: String,
    pub admin_pw_file: String,
}

/// The testbed's settings, or `None` (test skipped) when no DC was started and none is required.
pub fn testbed() -> Option<Testbed> {
    let var = |name: &str| std::env::var(name).ok();
    let Some(ldaps) = var("AUSI_TEST_LDAPS_URL") else {
        assert!(
            var("AUSI_REQUIRE_DC").as_deref() != Some("1"),
            "AUSI_REQUIRE_DC=1 but no testbed: run `scripts/testbed up` and source its env.sh"
        );
        eprintln!("skipped: no domain controller (run scripts/test)");
        return None;
    };
    let expected_path = var("AUSI_TEST_EXPECTED").expect("AUSI_TEST_EXPECTED");
    let expected = serde_json::from_str(&std::fs::read_to_string(expected_path).unwrap()).unwrap();
    Some(Testbed {
        ldaps,
        ldap: var("AUSI_TEST_LDAP_URL").expect("AUSI_TEST_LDAP_URL"),
        ca: var("AUSI_TEST_CA_FILE").expect("AUSI_TEST_CA_FILE"),
        bind_dn: var("AUSI_TEST_BIND_DN").expect("AUSI_TEST_BIND_DN"),
        bind_pw_file: var("AUSI_TEST_BIND_PASSWORD_FILE").expect("AUSI_TEST_BIND_PASSWORD_FILE"),
        base: var("AUSI_TEST_BASE_DN").expect("AUSI_TEST_BASE_DN"),
        expected,
        scim_url: var("AUSI_TEST_SCIM_URL").expect("AUSI_TEST_SCIM_URL"),
        scim_token_file: var("AUSI_TEST_SCIM_TOKEN_FILE").expect("AUSI_TEST_SCIM_TOKEN_FILE"),
        admin_dn: var("AUSI_TEST_ADMIN_DN").expect("AUSI_TEST_ADMIN_DN"),
        admin_pw_file: var("AUSI_TEST_ADMIN_PASSWORD_FILE").expect("AUSI_TEST_ADMIN_PASSWORD_FILE"),
    })
}

impl Testbed {
    /// A config for this DC in a fresh temporary directory; `extra` is appended to [directory].
    pub fn config(&self, extra: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = self.config_in(dir.path(), Path::new(&self.bind_pw_file), extra);
        (dir, path)
    }

    /// `dir/agent.toml` for this DC, reading the bind password from `password_file`.
    pub fn config_in(&self, dir: &Path, password_file: &Path, extra: &str) -> PathBuf {
        let path = dir.join("agent.toml");
        std::fs::write(
            &path,
            format!(
                "version = 1\n[directory]\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"file:{}\"\nca_file = \"{}\"\n{extra}",
                self.ldaps,
                self.bind_dn,
                password_file.display(),
                self.ca
            ),
        )
        .unwrap();
        path
    }

    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.bind_pw_file).unwrap().trim_end().to_owned()
    }

    /// How a test reads the DC itself, as svc-ausi over LDAPS, with `range_step` values of a
    /// ranged attribute a request.
    pub fn ldap_settings(&self, range_step: u32) -> ausi::directory::ldap::LdapSettings {
        use ausi::directory::ldap::{Bind, LdapSettings};
        LdapSettings {
            url: self.ldaps.clone(),
            starttls: false,
            bind: Bind::Simple {
                account: self.bind_dn.clone(),
                password: ausi::secrets::SecretString::from(self.password()),
            },
            ca_file: Some(self.ca.clone().into()),
            tls_verify: true,
            allow_plaintext_bind: false,
            connect_timeout: std::time::Duration::from_secs(10),
            operation_timeout: std::time::Duration::from_secs(60),
            page_size: 300,
            base_dn: None,
            range_step,
        }
    }

    pub fn users(&self) -> &Vec<Value> {
        self.expected["users"].as_array().unwrap()
    }
}

pub fn dn(s: &str) -> Dn {
    Dn::parse(s).unwrap()
}

pub fn under(dn_text: &str, bases: &[&str], excluded: &[&str]) -> bool {
    let d = dn(dn_text);
    bases.iter().any(|b| d.is_descendant_of(&dn(b))) && !excluded.iter().any(|x| d.is_descendant_of(&dn(x)))
}

pub fn cfg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A registered agent: its own config directory and its own empty tenant.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// `http://127.0.0.1:PORT/<tenant>/v2`
    pub scim: String,
    token: String,
}

static TENANTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Testbed {
    /// An agent registered with a fresh, empty tenant, with `ous` selected. `extra` goes at the
    /// end of the configuration (e.g. a `[sync]` section).
    pub fn agent(&self, ous: &[&str], extra: &str) -> Agent {
        let n = TENANTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tenant = format!("{}/t{}x{}x{}", self.scim_url, std::process::id(), n, jiff_like_now());
        let token = std::fs::read_to_string(&self.scim_token_file).unwrap().trim().to_owned();
        self.agent_on(&tenant, &format!("{tenant}/v2"), &token, ous, extra)
    }

    /// An agent registered with the tenant at `tenant` (home realm), SCIM base `scim`.
    pub fn agent_on(&self, tenant: &str, scim: &str, token: &str, ous: &[&str], extra: &str) -> Agent {
        let (dir, config) = self.config("");
        if !extra.is_empty() {
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, format!("{text}\n{extra}\n")).unwrap();
        }
        let (scim, token) = (scim.to_owned(), token.to_owned());
        let c = cfg(&config).to_owned();
        let r = super::run(
            super::ausi()
                .args([
                    "--config",
                    &c,
                    "register",
                    "--home-realm",
                    tenant,
                    "--scim-url",
                    &scim,
                    "--agent-name",
                    "dc1",
                    "--token-stdin",
                    "-o",
                    "json",
                ])
                .write_stdin(format!("{token}\n")),
        );
        assert_eq!(r.code, 0, "register: {}{}", r.stdout, r.stderr);
        if !ous.is_empty() {
            let mut args = vec!["--config", &c, "select-ous", "-o", "json", "--add"];
            args.extend(ous);
            let r = super::run(super::ausi().args(&args));
            assert_eq!(r.code, 0, "select-ous: {}{}", r.stdout, r.stderr);
        }
        Agent { dir, config, scim, token }
    }

    /// `ldapmodify` as the domain administrator over LDAPS (changetype records allowed).
    pub fn ldap_modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = std::process::Command::new("ldapmodify")
            .env("LDAPTLS_CACERT", &self.ca)
            .args(["-x", "-H", &self.ldaps, "-D", &self.admin_dn, "-y", &self.admin_pw_file])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "ldapmodify failed: {}\n{ldif}", String::from_utf8_lossy(&out.stderr));
    }
}

fn jiff_like_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_007)
        .unwrap_or(0)
}

impl Agent {
    pub fn cfg(&self) -> &str {
        cfg(&self.config)
    }

    /// `ausi --config … sync ARGS -o json`: exit code and report.
    pub fn sync(&self, args: &[&str]) -> (i32, Value) {
        let mut full = vec!["--config", self.cfg(), "sync"];
        full.extend(args);
        super::json_with(&mut super::ausi(), &full)
    }

    fn client(&self) -> ausi::tenant::ScimClient {
        ausi::tenant::ScimClient::new(
            &self.scim,
            ausi::secrets::SecretString::from(self.token.clone()),
            Default::default(),
        )
        .unwrap()
    }

    /// Every resource of `kind` in this agent's tenant.
    pub fn tenant(&self, kind: ausi::tenant::ResourceKind) -> Vec<Value> {
        let client = self.client();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(client.list_all(kind, 500)).unwrap()
    }
}

/// A subtree a test adds to the DC, removed again when the test ends (even on failure).
pub struct Sandbox<'a> {
    pub tb: &'a Testbed,
    pub root: String,
}

impl Drop for Sandbox<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ldapdelete")
            .env("LDAPTLS_CACERT", &self.tb.ca)
            .args(["-x", "-r", "-H", &self.tb.ldaps, "-D", &self.tb.admin_dn, "-y", &self.tb.admin_pw_file, &self.root])
            .output();
    }
}

impl Testbed {
    /// Lower-cased sAMAccountName → objectGUID (canonical text) of every user and group under `base`.
    pub fn object_guids(&self, base: &str) -> std::collections::BTreeMap<String, String> {
        let out = std::process::Command::new("ldapsearch")
            .env("LDAPTLS_CACERT", &self.ca)
            .args([
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-x",
                "-H",
                &self.ldaps,
                "-D",
                &self.admin_dn,
                "-y",
                &self.admin_pw_file,
            ])
            .args(["-b", base, "(|(objectClass=user)(objectClass=group))", "sAMAccountName", "objectGUID"])
            .output()
            .unwrap();
        assert!(out.status.success(), "ldapsearch: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut guids = std::collections::BTreeMap::new();
        for entry in text.split("\n\n") {
            let mut sam = None;
            let mut guid = None;
            for line in entry.lines() {
                if let Some(v) = line.strip_prefix("sAMAccountName: ") {
                    sam = Some(v.trim().to_lowercase());
                } else if let Some(v) = line.strip_prefix("objectGUID:: ") {
                    let bytes = base64::engine::general_purpose::STANDARD.decode(v.trim()).unwrap();
                    guid = Some(ausi::directory::ObjectGuid::from_bytes(&bytes).unwrap().to_string());
                }
            }
            if let (Some(s), Some(g)) = (sam, guid) {
                guids.insert(s, g);
            }
        }
        guids
    }
}

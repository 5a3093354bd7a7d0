//! The second SCIM server: django-scim2 (scripts/django-scim), one instance per test, since one
//! instance is one tenant. `scripts/testbed up` prepares its venv and a migrated template
//! database; a test starts its own server on a free loopback port with its own copy of that
//! database and its own token, and the server is stopped when the value is dropped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Django {
    dir: tempfile::TempDir,
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub token_file: PathBuf,
}

impl Django {
    /// A fresh, empty django-scim2 tenant; `None` (test skipped) without the testbed, unless
    /// AUSI_REQUIRE_DC=1.
    pub fn start() -> Option<Django> {
        let var = |name: &str| std::env::var(name).ok();
        let (Some(python), Some(manage), Some(template)) =
            (var("AUSI_TEST_DJANGO_PYTHON"), var("AUSI_TEST_DJANGO_MANAGE"), var("AUSI_TEST_DJANGO_TEMPLATE_DB"))
        else {
            assert!(var("AUSI_REQUIRE_DC").as_deref() != Some("1"), "AUSI_REQUIRE_DC=1 but no django-scim2 in env.sh");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite3");
        std::fs::copy(&template, &db).unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(python)
            .args([manage.as_str(), "runserver", "--noreload", &format!("127.0.0.1:{port}")])
            .env("DJANGO_SCIM_DB", &db)
            .env("DJANGO_SCIM_NETLOC", format!("127.0.0.1:{port}"))
            .env("DJANGO_SCIM_TOKEN_FILE", &token_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start django-scim2");
        let django = Django { dir, child, base: format!("http://127.0.0.1:{port}"), token_file };
        django.wait_ready();
        Some(django)
    }

    pub fn scim_url(&self) -> String {
        format!("{}/scim/v2", self.base)
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file).unwrap().trim().to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        let url = format!("{}/ServiceProviderConfig", self.scim_url());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = reqwest::Client::new();
        while start.elapsed() < Duration::from_secs(30) {
            let answer = runtime.block_on(client.get(&url).bearer_auth(self.token()).send());
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("django-scim2 did not answer within 30 s:\n{}", self.log());
    }
}

impl Drop for Django {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Helpers shared by the integration tests: run the real binary, parse its one report.
#![allow(dead_code)]

pub mod django;
pub mod example;
pub mod http;
pub mod report;
pub mod testbed;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> String {
    format!("ldif:{}", root().join(name).display())
}

/// The binary with a clean environment: no inherited config, source or output format.
pub fn ausi() -> Command {
    let mut cmd = Command::cargo_bin("ausi").expect("binary");
    cmd.env_remove("AUSI_CONFIG").env_remove("AUSI_SOURCE").env_remove("AUSI_OUTPUT").env_remove("AUSI_LOG");
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The single JSON envelope on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run ausi");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `ausi ARGS --output json` and checks the envelope is consistent with the exit code.
pub fn json(args: &[&str]) -> (i32, Value) {
    json_with(&mut ausi(), args)
}

pub fn json_with(cmd: &mut Command, args: &[&str]) -> (i32, Value) {
    let r = run(cmd.args(args).args(["--output", "json"]));
    let v = r.json();
    assert_eq!(v["exit_code"].as_i64(), Some(i64::from(r.code)), "exit_code field vs process exit code");
    let status = v["status"].as_str().unwrap();
    match r.code {
        0 => assert_eq!(status, "ok"),
        1 if v["error"].is_null() => assert_eq!(status, "findings"),
        _ => assert_eq!(status, "error"),
    }
    (r.code, v)
}

/// `[{dn, <key>: [{rule, …}]}]` (validate's `users`, sync's `quarantined`) as normalised DN →
/// the set of rules.
pub fn rules_by_dn(list: &Value, key: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| {
            let rules =
                item[key].as_array().expect("rules").iter().map(|p| p["rule"].as_str().unwrap().to_owned()).collect();
            (ausi::directory::Dn::parse(item["dn"].as_str().unwrap()).unwrap().normalized(), rules)
        })
        .collect()
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Polls `done` every 5 ms for up to `limit`; whether it became true.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// A tag for the names a test creates in the shared DC and tenant: unique across test processes
/// and runs (the tenant keeps what an earlier run created, and process ids come round again),
/// 7 hex digits so that names stay short (sAMAccountName takes 20 characters).
pub fn unique_tag() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{:07x}", (micros.wrapping_add(n) ^ (u64::from(std::process::id()) << 20)) & 0xfff_ffff)
}

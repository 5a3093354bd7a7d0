//! The bundled example (examples/agent.toml and examples/northwind.ldif) in a scratch directory,
//! run the way the README's quick start runs it, with what varies between runs made stable:
//! for the snapshot tests (tests/snapshots.rs) and the README's generated output (tests/readme.rs).

use std::path::{Path, PathBuf};

use regex::Regex;

use super::{Run, ausi, root, run};

/// A scratch directory holding `agent.toml` (the example's) and `examples/northwind.ldif`;
/// commands run in it with `--config agent.toml`, so every path they print is relative.
pub struct Example {
    pub dir: tempfile::TempDir,
}

impl Example {
    /// The example configuration as shipped (Staff selected, "Finance, Legal" excluded).
    pub fn new() -> Example {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(root().join("examples/agent.toml"), dir.path().join("agent.toml")).unwrap();
        std::fs::create_dir(dir.path().join("examples")).unwrap();
        std::fs::copy(root().join("examples/northwind.ldif"), dir.path().join("examples/northwind.ldif")).unwrap();
        Example { dir }
    }

    /// The example configuration without its `[scope]`, as the quick start begins.
    pub fn unselected() -> Example {
        let example = Example::new();
        let path = example.config();
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("# OUs to synchronise").unwrap();
        let end = text.find("# The identity tenant.").unwrap();
        std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
        example
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `ausi --config agent.toml ARGS` in the scratch directory, tables 140 columns wide.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None)
    }

    pub fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = ausi();
        cmd.current_dir(self.dir.path()).env("COLUMNS", "140").env_remove("AUSI_INSTALL_ROOT");
        cmd.args(["--config", "agent.toml"]).args(args);
        if let Some(input) = stdin {
            cmd.write_stdin(input.to_owned());
        }
        run(&mut cmd)
    }

    /// What differs from run to run, made stable: timestamps, durations, measurements, the
    /// scratch directory, the binary's path, the version.
    pub fn stable(&self, text: &str) -> String {
        let dir = self.dir.path().to_str().unwrap();
        let exe = assert_cmd::cargo::cargo_bin("ausi");
        let text = text.replace(exe.to_str().unwrap(), "/usr/local/bin/ausi").replace(dir, "/etc/ausi");
        stable(&text)
    }
}

/// Timestamps become 2026-11-28T21:40:00Z (with a fixed fraction when they had one);
/// durations, CPU, memory and ages fixed numbers.
pub fn stable(text: &str) -> String {
    let rules: &[(&str, &str)] = &[
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z", "2026-11-28T21:40:00.123456789Z"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "2026-11-28T21:40:00Z"),
        (
            r#""(duration_ms|read|plan|apply|peak_rss_bytes|cpu_user_ms|cpu_sys_ms|watermark_age_secs)":( ?)\d+"#,
            r#""$1":${2}7"#,
        ),
        (r"┆ \d+\.\d s ", "┆ 0.1 s "),
    ];
    let mut out = text.to_owned();
    for (pattern, replacement) in rules {
        out = Regex::new(pattern).unwrap().replace_all(&out, *replacement).into_owned();
    }
    out
}

//! `ausi install-service`: what it renders (systemd units that `systemd-analyze verify` accepts,
//! well-formed Task Scheduler XML), installing into a temporary root (idempotent, fully
//! uninstalled), refusing when a run could not work, and the log file the scheduled runs write.

mod common;

use std::path::{Path, PathBuf};

use common::testbed::{cfg, testbed};
use common::{ausi, example, json, json_with, run};
use serde_json::Value;

const TASK_NS: &str = "http://schemas.microsoft.com/windows/2004/02/mit/task";
const EMEA: &str = "OU=EMEA,OU=Sales,OU=Corp,DC=example,DC=test";

fn files(report: &Value) -> Vec<(String, String)> {
    report["data"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_owned(), f["contents"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn file_name(path: &str) -> String {
    Path::new(path).file_name().unwrap().to_string_lossy().into_owned()
}

/// A configuration that needs no server to be rendered (state under /var/lib/ausi).
fn offline_config(dir: &Path) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        "version = 1\n[directory]\nurl = \"ldaps://127.0.0.1:1\"\nbind_dn = \"CN=svc,DC=example,DC=test\"\n\
         bind_password = \"file:/etc/ausi/bind.pw\"\n[sync]\nstate_path = \"/var/lib/ausi/state.db\"\n",
    )
    .unwrap();
    path
}

fn systemd_analyze_verify(dir: &Path, names: &[String]) {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    // Part of Debian's systemd package; a missing one must fail the acceptance test, not skip it.
    assert!(analyze.exists(), "systemd-analyze is needed: apt-get install systemd");
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .args(names.iter().map(|n| dir.join(n)))
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn print_renders_units_that_systemd_analyze_verify_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path());
    for interval in ["1", "10", "15", "7", "120", "720", "1440"] {
        let (code, report) = json(&[
            "--config",
            cfg(&config),
            "install-service",
            "--print",
            "--scheduler",
            "systemd",
            "--interval",
            interval,
            "--full-sync-at",
            "03:15",
        ]);
        assert_eq!(code, 0, "{report}");
        assert_eq!(report["dry_run"], true);
        let rendered = files(&report);
        let names: Vec<String> = rendered.iter().map(|(p, _)| file_name(p)).collect();
        assert_eq!(names, ["ausi-sync.service", "ausi-sync.timer", "ausi-sync-full.service", "ausi-sync-full.timer"]);
        assert!(rendered.iter().all(|(p, _)| p.starts_with("/etc/systemd/system/")), "{rendered:?}");
        let out = tempfile::tempdir().unwrap();
        for (path, contents) in &rendered {
            std::fs::write(out.path().join(file_name(path)), contents).unwrap();
        }
        systemd_analyze_verify(out.path(), &names);
        let service = &rendered[0].1;
        assert!(service.contains("LoadCredential=etc_ausi_bind.pw:/etc/ausi/bind.pw\n"), "{service}");
        assert!(service.contains("ReadWritePaths=/var/lib/ausi\n"), "{service}");
        assert!(service.contains("--log-file /var/lib/ausi/logs/ausi.log --output json sync\n"));
        assert!(rendered[3].1.contains("OnCalendar=*-*-* 03:15:00\n"));
        assert!(rendered[1].1.contains(&format!("interval_minutes={interval} ")));
    }
    // Nothing was written anywhere: the configuration is as it was.
    assert!(!std::fs::read_to_string(&config).unwrap().contains("[schedule]"));
}

#[test]
fn print_renders_well_formed_task_scheduler_xml() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path());
    let (code, report) = json(&[
        "--config",
        cfg(&config),
        "install-service",
        "--print",
        "--scheduler",
        "task-scheduler",
        "--interval",
        "15",
        "--time-limit",
        "90",
        "--run-as",
        "EXAMPLE\\gmsa-ausi$",
    ]);
    assert_eq!(code, 0, "{report}");
    let rendered = files(&report);
    assert_eq!(rendered.len(), 2);
    for (i, (path, text)) in rendered.iter().enumerate() {
        assert!(path.ends_with(if i == 0 { "ausi-sync.xml" } else { "ausi-sync-full.xml" }), "{path}");
        let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{path} is not well-formed: {e}"));
        let task = doc.root_element();
        assert!(task.has_tag_name((TASK_NS, "Task")), "{path}: root element and namespace");
        let get = |path: &[&str]| -> Option<String> {
            let mut node = task;
            for name in path {
                node = node.children().find(|c| c.has_tag_name((TASK_NS, *name)))?;
            }
            node.text().map(str::to_owned)
        };
        assert_eq!(get(&["Settings", "MultipleInstancesPolicy"]).as_deref(), Some("IgnoreNew"));
        assert_eq!(get(&["Settings", "ExecutionTimeLimit"]).as_deref(), Some("PT90M"));
        assert!(get(&["Settings", "RestartOnFailure", "Interval"]).is_some());
        assert_eq!(get(&["Principals", "Principal", "UserId"]).as_deref(), Some("EXAMPLE\\gmsa-ausi$"));
        assert_eq!(get(&["Principals", "Principal", "LogonType"]).as_deref(), Some("Password"));
        let arguments = get(&["Actions", "Exec", "Arguments"]).unwrap();
        assert!(arguments.contains(&format!("--config {}", config.display())), "{arguments}");
        if i == 0 {
            assert_eq!(get(&["Triggers", "TimeTrigger", "Repetition", "Interval"]).as_deref(), Some("PT15M"));
            assert!(arguments.ends_with(" sync"));
        } else {
            assert_eq!(get(&["Triggers", "CalendarTrigger", "StartBoundary"]).as_deref(), Some("2020-01-01T02:00:00"));
            assert!(arguments.ends_with(" sync --full"));
        }
    }
}

#[test]
fn bad_schedules_are_usage_errors() {
    for args in [
        &["install-service", "--print", "--interval", "0"][..],
        &["install-service", "--print", "--full-sync-at", "25:00"],
        &["install-service", "--print", "--full-sync-at", "2am"],
        &["install-service", "--scheduler", "task-scheduler"],
    ] {
        let (code, report) = json(args);
        assert_eq!(code, 2, "{args:?}: {report}");
    }
}

#[test]
fn a_failed_check_refuses_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    ausi::config::write_atomic(&secret, b"not-a-real-password", 0o600).unwrap();
    let config = dir.path().join("agent.toml");
    let text = format!(
        "version = 1\n[directory]\nurl = \"ldaps://127.0.0.1:1\"\nbind_dn = \"CN=svc,DC=example,DC=test\"\n\
         bind_password = \"file:{s}\"\nconnect_timeout_secs = 2\n[scope]\nous = [{{ dn = \"OU=X,DC=example,DC=test\" }}]\n\
         [tenant]\nhome_realm = \"http://127.0.0.1:1/t\"\ntoken = \"file:{s}\"\n",
        s = secret.display()
    );
    std::fs::write(&config, &text).unwrap();
    let root = dir.path().join("root");
    // --force: the configuration under /tmp is hidden from the hardened unit (its own test).
    let (code, report) = json(&["--config", cfg(&config), "install-service", "--force", "--root", cfg(&root)]);
    assert_eq!(code, 75, "the DC is unreachable: retry later: {report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("directory check failed"), "{message}");
    assert!(!root.exists(), "nothing written under the root");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text, "the configuration is untouched");

    // Not registered: a configuration error, before any network call.
    let unregistered = text.split("[tenant]").next().unwrap().to_owned();
    std::fs::write(&config, &unregistered).unwrap();
    // --force: the configuration under /tmp is hidden from the hardened unit (its own test).
    let (code, report) = json(&["--config", cfg(&config), "install-service", "--force", "--root", cfg(&root)]);
    assert_eq!(code, 78, "{report}");
    assert!(report["error"]["message"].as_str().unwrap().contains("registration check failed"), "{report}");
    assert!(!root.exists());
}

#[test]
fn a_file_secret_is_read_from_the_systemd_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "version = 1\n[directory]\nbind_dn = \"x\"\nbind_password = \"file:/nonexistent/ausi/bind.pw\"\n",
    )
    .unwrap();
    let (_, report) = json(&["--config", cfg(&config), "status"]);
    assert_eq!(report["data"]["directory"]["bind_password"]["state"], "missing");
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let name = ausi::secrets::credential_name(Path::new("/nonexistent/ausi/bind.pw"));
    ausi::config::write_atomic(&credentials.join(name), b"from-systemd", 0o400).unwrap();
    let (_, report) =
        json_with(ausi().env("CREDENTIALS_DIRECTORY", &credentials), &["--config", cfg(&config), "status"]);
    assert_eq!(report["data"]["directory"]["bind_password"]["state"], "stored");
    assert!(!report.to_string().contains("from-systemd"));
}

#[test]
fn every_run_leaves_one_summary_line_in_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/ausi.log");
    let source = example("examples/northwind.ldif");
    for format in ["text", "json"] {
        let r = run(ausi().args([
            "--log-file",
            cfg(&log),
            "--log-format",
            format,
            "validate",
            "--source",
            &source,
            "-o",
            "json",
        ]));
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(!r.stderr.contains("run finished"), "the summary is for the file, not stderr: {}", r.stderr);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("run finished")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("command=\"validate\"") && lines[0].contains("exit_code=1"), "{}", lines[0]);
    let json: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(json["fields"]["command"], "validate");
    assert_eq!(json["fields"]["exit_code"], 1);
    assert_eq!(json["fields"]["outcome"], "findings");
    assert!(json["timestamp"].is_string());
}

#[test]
fn install_into_a_root_is_idempotent_and_uninstall_removes_everything() {
    let Some(tb) = testbed() else { return };
    let agent = tb.agent(&[EMEA], "");
    let root = agent.dir.path().join("root");
    let install = |extra: &[&str]| {
        // --force: the agent's directory under /tmp is hidden from the hardened unit (tested apart).
        let mut args = vec!["--config", agent.cfg(), "install-service", "--force", "--root", cfg(&root)];
        args.extend(extra);
        json(&args)
    };

    let (code, first) = install(&["--interval", "5", "--full-sync-at", "03:15"]);
    assert_eq!(code, 0, "{first}");
    let data = &first["data"];
    assert_eq!(data["changed"], true);
    assert_eq!(data["config_schedule"], "updated");
    let checks: Vec<&str> = data["checks"].as_array().unwrap().iter().map(|c| c["check"].as_str().unwrap()).collect();
    assert_eq!(checks, ["configuration", "selection", "secrets", "directory", "tenant"]);
    let paths: Vec<PathBuf> =
        data["files"].as_array().unwrap().iter().map(|f| PathBuf::from(f["path"].as_str().unwrap())).collect();
    assert_eq!(paths.len(), 4);
    for (f, path) in data["files"].as_array().unwrap().iter().zip(&paths) {
        assert_eq!(f["status"], "created");
        assert!(path.starts_with(root.join("etc/systemd/system")), "{path:?}");
        assert_eq!(std::fs::read_to_string(path).unwrap(), f["contents"].as_str().unwrap());
    }
    let logs = root.join(agent.dir.path().strip_prefix("/").unwrap()).join("logs");
    assert!(logs.is_dir(), "the log directory exists before the first run: {logs:?}");
    for c in data["commands"].as_array().unwrap() {
        assert_eq!(c["ran"], false, "systemctl is never run with --root: {c}");
    }
    let config = std::fs::read_to_string(&agent.config).unwrap();
    let parsed = ausi::config::parse(&config).unwrap();
    assert_eq!(parsed.schedule.interval_minutes, 5);
    assert_eq!(parsed.schedule.full_sync_at, "03:15");
    let names: Vec<String> = paths.iter().map(|p| file_name(&p.to_string_lossy())).collect();
    systemd_analyze_verify(paths[0].parent().unwrap(), &names);
    assert!(!first.to_string().contains(&tb.password()), "no secret in the report");

    let installed = ausi::service::installed(&agent.config, Some(&root)).expect("installed");
    assert_eq!(installed.interval_minutes, Some(5));
    assert_eq!(installed.full_sync_at.as_deref(), Some("03:15"));
    assert_eq!(installed.kind, ausi::service::ServiceKind::Systemd);

    // The same again: nothing changes, and the report says so.
    let (code, second) = install(&["--interval", "5", "--full-sync-at", "03:15"]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(second["data"]["changed"], false);
    assert_eq!(second["data"]["config_schedule"], "unchanged");
    assert!(second["data"]["files"].as_array().unwrap().iter().all(|f| f["status"] == "unchanged"), "{second}");
    assert_eq!(std::fs::read_to_string(&agent.config).unwrap(), config);

    // What the timer starts works, and leaves its summary in the log file.
    let service = std::fs::read_to_string(&paths[0]).unwrap();
    let exec = service.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let words: Vec<&str> = exec.split(' ').collect();
    let r = run(ausi().args(&words[1..]));
    assert!(r.code == 0 || r.code == 1, "the scheduled command: {}{}", r.stdout, r.stderr);
    let log = agent.dir.path().join("logs/ausi.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let summary = text.lines().find(|l| l.contains("run finished")).expect("a summary line");
    assert!(summary.contains("command=\"sync\"") && summary.contains("mode=\"full\""), "{summary}");
    assert!(summary.contains("\"created\":"), "counts in the summary: {summary}");
    assert!(!text.contains(&tb.password()));

    // Uninstall removes every file, and a second uninstall finds nothing.
    let (code, removed) = json(&["--config", agent.cfg(), "install-service", "--uninstall", "--root", cfg(&root)]);
    assert_eq!(code, 0, "{removed}");
    assert!(removed["data"]["files"].as_array().unwrap().iter().all(|f| f["status"] == "removed"), "{removed}");
    assert!(paths.iter().all(|p| !p.exists()));
    assert!(ausi::service::installed(&agent.config, Some(&root)).is_none());
    let (_, again) = json(&["--config", agent.cfg(), "install-service", "--uninstall", "--root", cfg(&root)]);
    assert_eq!(again["data"]["changed"], false);

    // The Task Scheduler definitions install the same way (UTF-16 files beside the configuration).
    let (code, tasks) = install(&["--scheduler", "task-scheduler"]);
    assert_eq!(code, 0, "{tasks}");
    for f in tasks["data"]["files"].as_array().unwrap() {
        let bytes = std::fs::read(f["path"].as_str().unwrap()).unwrap();
        let text = ausi::service::task_scheduler::decode(&bytes).expect("UTF-16LE with BOM");
        assert_eq!(text, f["contents"].as_str().unwrap());
        roxmltree::Document::parse(&text).unwrap();
    }
    let (_, removed) = json(&[
        "--config",
        agent.cfg(),
        "install-service",
        "--uninstall",
        "--root",
        cfg(&root),
        "--scheduler",
        "task-scheduler",
    ]);
    assert!(removed["data"]["files"].as_array().unwrap().iter().all(|f| f["status"] == "removed"), "{removed}");
}

/// Where systemd runs (PID 1) and the tests run as root: the real install, the timers listed by
/// `systemctl list-timers`, and a clean uninstall. Elsewhere the temporary root above is the test.
#[test]
fn a_real_install_lists_the_timers_where_systemd_runs() {
    let Some(tb) = testbed() else { return };
    let systemd = Path::new("/run/systemd/system").is_dir();
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if !(systemd && root) {
        return;
    }
    let agent = tb.agent(&[EMEA], "");
    let (code, report) = json(&["--config", agent.cfg(), "install-service"]);
    assert_eq!(code, 0, "{report}");
    assert!(report["data"]["commands"].as_array().unwrap().iter().all(|c| c["ran"] == true && c["exit_code"] == 0));
    let timers = std::process::Command::new("systemctl").args(["list-timers", "--all", "--no-pager"]).output().unwrap();
    let listed = String::from_utf8_lossy(&timers.stdout).into_owned();
    let (code, removed) = json(&["--config", agent.cfg(), "install-service", "--uninstall"]);
    assert!(listed.contains("ausi-sync.timer") && listed.contains("ausi-sync-full.timer"), "{listed}");
    assert_eq!(code, 0, "{removed}");
    assert!(!Path::new("/etc/systemd/system/ausi-sync.timer").exists());
}

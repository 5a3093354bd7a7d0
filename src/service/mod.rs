//! `install-service`: what runs ausi unattended. Pure renderers turn one [`Settings`] into the
//! files a scheduler reads (systemd units and timers, Task Scheduler XML); the command
//! (`commands::install_service`) does the checks, the writing and the `systemctl`/`schtasks` calls.
//! [`installed`] tells `status` whether a schedule is installed and how often it runs.

pub mod systemd;
pub mod task_scheduler;

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

/// Which scheduler the files are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    /// `ausi-sync.service` + `.timer` and `ausi-sync-full.service` + `.timer` (Linux).
    Systemd,
    /// Two Task Scheduler tasks, `\ausi\sync` and `\ausi\sync-full` (Windows).
    TaskScheduler,
}

impl ServiceKind {
    /// The scheduler of the machine this binary was built for.
    pub fn native() -> ServiceKind {
        if cfg!(windows) { ServiceKind::TaskScheduler } else { ServiceKind::Systemd }
    }
}

/// The account the scheduled runs use. No variant carries a password: none is ever put on a
/// command line (ours or schtasks'), see the README's "Run it unattended".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum RunAs {
    /// Windows: LocalSystem (S-1-5-18, no password). Linux: root (no `User=`).
    System,
    /// Windows: a group Managed Service Account (`DOMAIN\name$`): Windows fetches its password
    /// from AD, so the task is registered without one.
    ManagedServiceAccount(String),
    /// Windows: an ordinary account; schtasks prompts for its password on the terminal
    /// (`/RP *`). Linux: `User=`.
    Account(String),
}

impl RunAs {
    pub fn parse(text: Option<&str>) -> Result<RunAs, String> {
        let Some(name) = text.map(str::trim) else { return Ok(RunAs::System) };
        if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
            return Err(format!("--run-as {name:?} is not an account name"));
        }
        let upper = name.to_ascii_uppercase();
        if ["SYSTEM", "NT AUTHORITY\\SYSTEM", "S-1-5-18", "LOCALSYSTEM", "ROOT"].contains(&upper.as_str()) {
            return Ok(RunAs::System);
        }
        if name.ends_with('$') {
            Ok(RunAs::ManagedServiceAccount(name.to_owned()))
        } else {
            Ok(RunAs::Account(name.to_owned()))
        }
    }

    pub fn describe(&self, kind: ServiceKind) -> String {
        match (self, kind) {
            (RunAs::System, ServiceKind::TaskScheduler) => "SYSTEM (S-1-5-18)".to_owned(),
            (RunAs::System, ServiceKind::Systemd) => "root".to_owned(),
            (RunAs::ManagedServiceAccount(n), _) => format!("{n} (gMSA)"),
            (RunAs::Account(n), _) => n.clone(),
        }
    }
}

/// A local time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
}

impl TimeOfDay {
    pub fn parse(text: &str) -> Result<TimeOfDay, String> {
        let bad = || format!("{text:?} is not a time of day: expected HH:MM (00:00 to 23:59)");
        let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay { hour, minute })
    }
}

impl std::fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// A secret file handed to the service by systemd (`LoadCredential=NAME:PATH`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credential {
    pub name: String,
    pub path: String,
}

/// Everything a renderer needs, already resolved: absolute paths, validated values. No secrets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The ausi binary the scheduler starts.
    pub exe: String,
    pub config: String,
    /// Directory of the state store: the only place the service writes (state, logs).
    pub state_dir: String,
    pub log_file: String,
    pub interval_minutes: u32,
    pub full_sync_at: TimeOfDay,
    /// A run still going after this long is stopped.
    pub time_limit_minutes: u32,
    pub run_as: RunAs,
    /// systemd only: the configuration's `file:` secrets.
    pub credentials: Vec<Credential>,
}

/// After a failed start, retry this often, at most [`RESTART_COUNT`] times.
pub const RESTART_INTERVAL_MINUTES: u32 = 5;
pub const RESTART_COUNT: u32 = 3;

/// One file a renderer produces: its name (inside the directory the command chooses) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub name: &'static str,
    pub contents: String,
}

impl Settings {
    /// The arguments of one scheduled run (after the binary).
    /// Seconds after midnight of the first incremental run: half an interval after the full
    /// sync, so the two never start at the same moment (the second would find the state locked
    /// and exit 75, and Task Scheduler does not retry on an exit code: the day's full sync would
    /// be lost).
    pub fn incremental_start_secs(&self) -> u32 {
        let full = u32::from(self.full_sync_at.hour) * 3600 + u32::from(self.full_sync_at.minute) * 60;
        (full + self.interval_minutes * 30) % 86_400
    }

    pub fn run_args(&self, full: bool) -> Vec<String> {
        let mut args = vec![
            "--config".to_owned(),
            self.config.clone(),
            "--log-file".to_owned(),
            self.log_file.clone(),
            "--output".to_owned(),
            "json".to_owned(),
            "sync".to_owned(),
        ];
        if full {
            args.push("--full".to_owned());
        }
        args
    }
}

/// Renders the files for `kind`.
pub fn render(kind: ServiceKind, settings: &Settings) -> Vec<Rendered> {
    match kind {
        ServiceKind::Systemd => systemd::render(settings),
        ServiceKind::TaskScheduler => task_scheduler::render(settings),
    }
}

/// Where `kind`'s files go: the systemd unit directory, or (Windows) a `service` folder beside the
/// configuration that keeps the registered task definitions (the record of what was installed).
pub fn install_dir(kind: ServiceKind, config_path: &Path) -> PathBuf {
    match kind {
        ServiceKind::Systemd => PathBuf::from(systemd::UNIT_DIR),
        ServiceKind::TaskScheduler => {
            config_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("service")
        }
    }
}

/// `path` moved under `root` (for tests and packaging): `/etc/x` → `ROOT/etc/x`,
/// `C:\ProgramData\x` → `ROOT\ProgramData\x`.
pub fn under_root(root: Option<&Path>, path: &Path) -> PathBuf {
    match root {
        None => path.to_owned(),
        Some(root) => {
            let rest: PathBuf =
                path.components().filter(|c| !matches!(c, Component::Prefix(_) | Component::RootDir)).collect();
            root.join(rest)
        }
    }
}

/// A schedule that `install-service` left on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledService {
    pub kind: ServiceKind,
    /// The timer unit or the task definition that records it.
    pub location: PathBuf,
    pub interval_minutes: Option<u32>,
    pub full_sync_at: Option<String>,
    /// Whether the schedule runs: the systemd timer is enabled (its `timers.target.wants` link)
    /// and systemd is running. `None` where that cannot be read from files (Task Scheduler).
    pub enabled: Option<bool>,
}

/// Whether a schedule is installed for this platform (its timer unit, or its task definition
/// beside `config_path`), and how often it runs. `root` as for `install-service --root`.
pub fn installed(config_path: &Path, root: Option<&Path>) -> Option<InstalledService> {
    let kind = ServiceKind::native();
    let file = match kind {
        ServiceKind::Systemd => systemd::SYNC_TIMER,
        ServiceKind::TaskScheduler => task_scheduler::SYNC_TASK_FILE,
    };
    let location = under_root(root, &install_dir(kind, config_path).join(file));
    let text = std::fs::read(&location).ok()?;
    let text = match kind {
        ServiceKind::Systemd => String::from_utf8_lossy(&text).into_owned(),
        ServiceKind::TaskScheduler => task_scheduler::decode(&text)?,
    };
    let (interval_minutes, full_sync_at) = read_marker(&text);
    let enabled = match kind {
        ServiceKind::Systemd => {
            let wants = Path::new(systemd::UNIT_DIR).join("timers.target.wants").join(systemd::SYNC_TIMER);
            let linked = under_root(root, &wants).symlink_metadata().is_ok();
            // Under --root there is no running system to ask; on this machine systemd must run.
            Some(linked && (root.is_some() || Path::new("/run/systemd/system").is_dir()))
        }
        ServiceKind::TaskScheduler => None,
    };
    Some(InstalledService { kind, location, interval_minutes, full_sync_at, enabled })
}

/// The marker line every rendered schedule carries, so the schedule can be read back.
pub(crate) fn marker(settings: &Settings) -> String {
    format!("ausi-schedule: interval_minutes={} full_sync_at={}", settings.interval_minutes, settings.full_sync_at)
}

fn read_marker(text: &str) -> (Option<u32>, Option<String>) {
    let Some(line) = text.lines().find_map(|l| l.split_once("ausi-schedule:").map(|(_, rest)| rest)) else {
        return (None, None);
    };
    let value = |key: &str| {
        line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|w| w.strip_prefix('='))).map(str::to_owned)
    };
    (value("interval_minutes").and_then(|v| v.parse().ok()), value("full_sync_at"))
}

#[cfg(test)]
pub(crate) fn sample_settings() -> Settings {
    Settings {
        exe: "/usr/local/bin/ausi".into(),
        config: "/etc/ausi/agent.toml".into(),
        state_dir: "/var/lib/ausi".into(),
        log_file: "/var/lib/ausi/logs/ausi.log".into(),
        interval_minutes: 10,
        full_sync_at: TimeOfDay { hour: 2, minute: 0 },
        time_limit_minutes: 120,
        run_as: RunAs::System,
        credentials: vec![Credential { name: "etc_ausi_bind.pw".into(), path: "/etc/ausi/bind.pw".into() }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_is_strict() {
        assert_eq!(TimeOfDay::parse("02:00").unwrap(), TimeOfDay { hour: 2, minute: 0 });
        assert_eq!(TimeOfDay::parse("7:05").unwrap().to_string(), "07:05");
        for bad in ["24:00", "12:60", "1200", "12:5", "", "ab:cd", "-1:00", "12:00:00"] {
            assert!(TimeOfDay::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_as_never_takes_a_password() {
        assert_eq!(RunAs::parse(None).unwrap(), RunAs::System);
        assert_eq!(RunAs::parse(Some("NT AUTHORITY\\SYSTEM")).unwrap(), RunAs::System);
        assert_eq!(
            RunAs::parse(Some("NORTHWIND\\gmsa-ausi$")).unwrap(),
            RunAs::ManagedServiceAccount("NORTHWIND\\gmsa-ausi$".into())
        );
        assert_eq!(RunAs::parse(Some("svc-ausi")).unwrap(), RunAs::Account("svc-ausi".into()));
        assert!(RunAs::parse(Some("a\"b")).is_err());
    }

    #[test]
    fn root_prefixes_absolute_paths() {
        let root = Path::new("/tmp/r");
        assert_eq!(
            under_root(Some(root), Path::new("/etc/systemd/system/x")),
            Path::new("/tmp/r/etc/systemd/system/x")
        );
        assert_eq!(under_root(None, Path::new("/etc/x")), Path::new("/etc/x"));
    }

    #[test]
    fn the_marker_reads_back() {
        let s = sample_settings();
        assert_eq!(read_marker(&format!("# {}\n", marker(&s))), (Some(10), Some("02:00".to_owned())));
        assert_eq!(read_marker("nothing"), (None, None));
    }
}

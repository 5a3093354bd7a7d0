//! `ausi install-service`: checks that a run would work (configuration, secrets, the DC, the
//! tenant), writes the systemd units or Task Scheduler definitions rendered by
//! [`crate::service`], records the schedule in the configuration's `[schedule]`, and enables
//! them (`systemctl` / `schtasks`). `--print` shows the files and changes nothing; `--uninstall`
//! removes them. Installing the same thing twice changes nothing and says so.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use super::{Context, Report, display_path, open_directory};
use crate::cli::{DirectoryArgs, InstallServiceArgs, SchedulerKind};
use crate::config::{self, AgentConfig, ScheduleConfig};
use crate::directory::{Directory, SourceSpec};
use crate::error::{AppError, ErrorKind, Result};
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::secrets::{Purpose, SecretRef, credential_name};
use crate::service::{self, Credential, RunAs, ServiceKind, Settings, TimeOfDay, systemd, task_scheduler};
use crate::tenant;

#[derive(Debug, Serialize)]
pub struct InstallServiceReport {
    /// `print`, `install` or `uninstall`.
    pub action: &'static str,
    pub scheduler: ServiceKind,
    pub config_path: String,
    /// Set when the files went under this directory instead of / (`--root`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleReport>,
    /// Where the scheduled runs log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
    pub files: Vec<FileReport>,
    /// `systemctl` / `schtasks` calls: run, or why not.
    pub commands: Vec<CommandReport>,
    /// The pre-install checks that passed (a failed one stops the command with its reason).
    pub checks: Vec<CheckReport>,
    /// `updated`, `unchanged`, or `untouched` (print, uninstall).
    pub config_schedule: &'static str,
    /// Whether anything on this machine changed.
    pub changed: bool,
}

#[derive(Debug, Serialize)]
pub struct ScheduleReport {
    pub interval_minutes: u32,
    pub full_sync_at: String,
    pub time_limit_minutes: u32,
}

#[derive(Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    /// `would-write` (print), `created`, `updated`, `unchanged`, `removed` or `absent`.
    pub status: &'static str,
    /// `utf-8`, or `utf-16le` (Task Scheduler definitions, written with a byte-order mark).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CommandReport {
    pub argv: Vec<String>,
    pub ran: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it was not run, or what it printed when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub check: &'static str,
    pub detail: String,
}

pub async fn run(ctx: &Context<'_>, args: &InstallServiceArgs) -> Result<Outcome> {
    let kind = match args.scheduler {
        None => ServiceKind::native(),
        Some(k) if !args.print && args.root.is_none() => {
            return Err(AppError::usage(format!(
                "--scheduler {k:?} only works with --print or --root (this machine uses {:?})",
                ServiceKind::native()
            )));
        }
        Some(SchedulerKind::Systemd) => ServiceKind::Systemd,
        Some(SchedulerKind::TaskScheduler) => ServiceKind::TaskScheduler,
    };
    let config_path = std::path::absolute(&ctx.config_path).unwrap_or_else(|_| ctx.config_path.clone());
    if args.uninstall {
        return uninstall(ctx, args, kind, &config_path);
    }
    let full_sync_at =
        TimeOfDay::parse(&args.full_sync_at).map_err(|e| AppError::usage(format!("--full-sync-at {e}")))?;
    let run_as = RunAs::parse(args.run_as.as_deref()).map_err(AppError::usage)?;
    if kind == ServiceKind::Systemd && matches!(run_as, RunAs::ManagedServiceAccount(_)) {
        return Err(AppError::usage(
            "--run-as: a name ending in $ is a Windows managed service account; systemd needs a local user",
        ));
    }

    let mut warnings = Vec::new();
    let config = if args.print {
        ctx.config_or_none(&mut warnings)?
    } else {
        Some(ctx.optional_config(&mut warnings)?.ok_or_else(|| {
            AppError::config(format!("no configuration at {}", config_path.display()))
                .with_hint("write it first (examples/agent.toml), then `ausi register` and `ausi select-ous`")
        })?)
    };
    if config.is_none() {
        warnings.push(Warning::new(
            "no-configuration",
            format!("no configuration at {}: rendered with the default state directory", config_path.display()),
        ));
    }
    let settings = settings(kind, &config_path, config.as_ref(), args, full_sync_at, run_as, &mut warnings)?;
    let rendered = service::render(kind, &settings);
    let dir = service::install_dir(kind, &config_path);
    let root = args.root.as_deref();
    let mut report = InstallServiceReport {
        action: if args.print { "print" } else { "install" },
        scheduler: kind,
        config_path: display_path(&config_path),
        root: root.map(display_path),
        run_as: Some(settings.run_as.describe(kind)),
        schedule: Some(ScheduleReport {
            interval_minutes: settings.interval_minutes,
            full_sync_at: settings.full_sync_at.to_string(),
            time_limit_minutes: settings.time_limit_minutes,
        }),
        log_file: Some(settings.log_file.clone()),
        files: Vec::new(),
        commands: Vec::new(),
        checks: Vec::new(),
        config_schedule: "untouched",
        changed: false,
    };
    let encoding = match kind {
        ServiceKind::Systemd => "utf-8",
        ServiceKind::TaskScheduler => "utf-16le",
    };

    if args.print {
        report.files = rendered
            .into_iter()
            .map(|f| FileReport {
                path: display_path(&service::under_root(root, &dir.join(f.name))),
                status: "would-write",
                encoding: Some(encoding),
                contents: Some(f.contents),
            })
            .collect();
        let mut outcome = Outcome::new(Report::InstallService(report), ExitStatus::Ok);
        outcome.warnings = warnings;
        outcome.dry_run = true;
        return Ok(outcome);
    }

    let config = config.unwrap_or_default();
    if kind == ServiceKind::TaskScheduler
        && root.is_none()
        && matches!(settings.run_as, RunAs::Account(_))
        && !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal())
    {
        return Err(AppError::usage(format!(
            "--run-as {}: Task Scheduler needs that account's password, which schtasks asks for at a terminal (never on a command line)",
            settings.run_as.describe(kind)
        ))
        .with_hint("run install-service in an interactive console, or use a gMSA (DOMAIN\\name$) or the default SYSTEM"));
    }
    // What predicts that the scheduled service cannot work refuses the install (exit 78), unless
    // --force: then it is installed, and the warnings say what still has to be done.
    let mut blockers: Vec<String> =
        warnings.iter().filter(|w| BLOCKING.contains(&w.code)).map(|w| w.message.clone()).collect();
    if kind == ServiceKind::Systemd
        && root.is_none()
        && let Some(reason) = systemctl_skip_reason(None)
    {
        blockers.push(format!("the timers cannot be enabled: {reason}"));
        warnings.push(Warning::new("timers-not-enabled", format!("the timers were not enabled: {reason}")));
    }
    if !blockers.is_empty() && !args.force {
        return Err(AppError::config(format!(
            "the installed service could not work, so nothing was installed: {}",
            blockers.join("; ")
        ))
        .with_hint("fix that first, or run again with --force to install anyway"));
    }
    report.checks = prechecks(&config, &config_path, &mut warnings).await?;

    // The log directory must exist before the first run: the hardened unit can write only inside
    // the state directory, and systemd refuses ReadWritePaths= that do not exist.
    let logs = service::under_root(root, Path::new(&settings.log_file));
    if let Some(dir) = logs.parent() {
        create_dir(dir).map_err(|e| AppError::config(format!("cannot create {}", dir.display())).caused_by(&e))?;
    }

    // The files: written only when their content differs.
    let mut files_changed = false;
    let mut changed_files = Vec::new();
    for f in &rendered {
        let path = service::under_root(root, &dir.join(f.name));
        let bytes = match kind {
            ServiceKind::Systemd => f.contents.clone().into_bytes(),
            ServiceKind::TaskScheduler => task_scheduler::encode(&f.contents),
        };
        let status = match std::fs::read(&path) {
            Ok(old) if old == bytes => "unchanged",
            Ok(_) => "updated",
            Err(_) => "created",
        };
        if status != "unchanged" {
            config::write_atomic(&path, &bytes, 0o644)
                .map_err(|e| AppError::config(format!("cannot write {}", path.display())).caused_by(&e))?;
            files_changed = true;
            changed_files.push(f.name);
        }
        report.files.push(FileReport {
            path: display_path(&path),
            status,
            encoding: Some(encoding),
            contents: Some(f.contents.clone()),
        });
    }
    let schedule =
        ScheduleConfig { interval_minutes: settings.interval_minutes, full_sync_at: settings.full_sync_at.to_string() };
    let config_changed = config::save_schedule(&config_path, &schedule)?;
    report.config_schedule = if config_changed { "updated" } else { "unchanged" };
    report.changed = files_changed || config_changed;

    // Enable what was written.
    let mut failure = None;
    match kind {
        ServiceKind::Systemd => {
            let skip = systemctl_skip_reason(root);
            if files_changed {
                report.commands.push(call(&["systemctl", "daemon-reload"], skip.clone(), false));
            }
            let mut enable = vec!["systemctl", "enable", "--now"];
            enable.extend(systemd::TIMERS);
            report.commands.push(call(&enable, skip, false));
        }
        ServiceKind::TaskScheduler => {
            let skip = schtasks_skip_reason(root);
            for (task, file) in task_scheduler::TASKS {
                let registered = skip.is_none()
                    && !changed_files.contains(&file)
                    && call(&["schtasks", "/Query", "/TN", task], None, false).exit_code == Some(0);
                if registered {
                    continue;
                }
                let path = display_path(&dir.join(file));
                let mut argv = vec!["schtasks", "/Create", "/XML", path.as_str(), "/TN", task, "/F"];
                let prompt = matches!(settings.run_as, RunAs::Account(_));
                if prompt {
                    // schtasks asks for the password itself; it never passes through ausi.
                    argv.extend(["/RP", "*"]);
                }
                report.commands.push(call(&argv, skip.clone(), prompt));
            }
        }
    }
    if let Some(bad) = report.commands.iter().find(|c| c.ran && c.exit_code != Some(0)) {
        failure = Some(
            AppError::new(
                ErrorKind::Config,
                format!(
                    "`{}` failed (exit code {}): {}",
                    bad.argv.join(" "),
                    bad.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
                    bad.note.clone().unwrap_or_default()
                ),
            )
            .with_hint("the files are in place; fix the cause and run install-service again"),
        );
        report.changed = true;
    }
    if report.commands.iter().any(|c| c.ran) && files_changed {
        report.changed = true;
    }
    let exit = failure.as_ref().map(AppError::exit_status).unwrap_or(ExitStatus::Ok);
    let mut outcome = Outcome::new(Report::InstallService(report), exit);
    outcome.warnings = warnings;
    outcome.error = failure;
    Ok(outcome)
}

fn uninstall(ctx: &Context<'_>, args: &InstallServiceArgs, kind: ServiceKind, config_path: &Path) -> Result<Outcome> {
    let root = args.root.as_deref();
    let dir = service::install_dir(kind, config_path);
    let names: Vec<&str> = match kind {
        ServiceKind::Systemd => systemd::FILES.to_vec(),
        ServiceKind::TaskScheduler => task_scheduler::TASKS.iter().map(|(_, f)| *f).collect(),
    };
    let mut commands = Vec::new();
    let present: Vec<bool> = names.iter().map(|n| service::under_root(root, &dir.join(n)).exists()).collect();
    match kind {
        ServiceKind::Systemd => {
            if present.iter().any(|p| *p) {
                let mut disable = vec!["systemctl", "disable", "--now"];
                disable.extend(systemd::TIMERS);
                commands.push(call(&disable, systemctl_skip_reason(root), false));
            }
        }
        ServiceKind::TaskScheduler => {
            for ((task, _), present) in task_scheduler::TASKS.iter().zip(&present) {
                if *present {
                    commands.push(call(&["schtasks", "/Delete", "/TN", task, "/F"], schtasks_skip_reason(root), false));
                }
            }
        }
    }
    let mut files = Vec::new();
    for name in &names {
        let path = service::under_root(root, &dir.join(name));
        let status = match std::fs::remove_file(&path) {
            Ok(()) => "removed",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent",
            Err(e) => return Err(AppError::config(format!("cannot remove {}", path.display())).caused_by(&e)),
        };
        files.push(FileReport { path: display_path(&path), status, encoding: None, contents: None });
    }
    if kind == ServiceKind::TaskScheduler {
        // The folder install-service made for the definitions; kept if anything else is in it.
        let _ = std::fs::remove_dir(service::under_root(root, &dir));
    }
    let changed = files.iter().any(|f| f.status == "removed");
    if kind == ServiceKind::Systemd && changed {
        commands.push(call(&["systemctl", "daemon-reload"], systemctl_skip_reason(root), false));
    }
    let report = InstallServiceReport {
        action: "uninstall",
        scheduler: kind,
        config_path: display_path(&ctx.config_path),
        root: root.map(display_path),
        run_as: None,
        schedule: None,
        log_file: None,
        files,
        commands,
        checks: Vec::new(),
        config_schedule: "untouched",
        changed,
    };
    Ok(Outcome::new(Report::InstallService(report), ExitStatus::Ok))
}

/// Resolves the configuration into the renderers' settings: absolute paths, the state
/// directory, the log file, and (systemd) the `file:` secrets to pass as credentials.
fn settings(
    kind: ServiceKind,
    config_path: &Path,
    config: Option<&AgentConfig>,
    args: &InstallServiceArgs,
    full_sync_at: TimeOfDay,
    run_as: RunAs,
    warnings: &mut Vec<Warning>,
) -> Result<Settings> {
    let exe = std::env::current_exe()
        .map_err(|e| AppError::internal("cannot tell where the ausi binary is").caused_by(&e))?;
    // Resolve symlinks on Unix; on Windows canonicalize would give a \\?\ path that
    // Task Scheduler shows (and some tools mishandle), and current_exe is already absolute.
    let exe = if cfg!(unix) { exe.canonicalize().unwrap_or(exe) } else { exe };
    let defaults = AgentConfig::default();
    let config = config.unwrap_or(&defaults);
    let state = config.state_path(config_path);
    let state = std::path::absolute(&state).unwrap_or(state);
    let state_dir = state.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."));
    let log_file = state_dir.join("logs").join("ausi.log");
    if kind == ServiceKind::Systemd
        && ["/tmp", "/var/tmp", "/home", "/root", "/run/user"].iter().any(|p| state_dir.starts_with(p))
    {
        warnings.push(Warning::new(
            "state-dir-hidden-from-service",
            format!(
                "the state directory {} is hidden from the hardened service (PrivateTmp, ProtectHome): keep the configuration and state under /etc/ausi or /var/lib/ausi",
                state_dir.display()
            ),
        ));
    }
    let mut credentials = Vec::new();
    let references = [
        ("directory.bind_password", config.directory.bind_password.as_deref()),
        ("tenant.token", config.tenant.as_ref().and_then(|t| t.token.as_deref())),
        // A keytab is keys, so it reaches a systemd service the same way (see secrets::passed_file).
        ("directory.keytab", config.directory.keytab.as_deref()),
    ];
    for (key, reference) in references {
        match reference.map(SecretRef::parse).transpose()? {
            Some(SecretRef::File(path)) if kind == ServiceKind::Systemd => {
                credentials.push(Credential { name: credential_name(&path), path: display_path(&path) });
            }
            Some(SecretRef::Keyring { .. }) if kind == ServiceKind::Systemd => warnings.push(Warning::new(
                "keyring-under-systemd",
                format!(
                    "{key} is kept in the kernel keyring, which a systemd service does not share with your login session: use a file: reference (passed to the service as a credential)"
                ),
            )),
            _ => {}
        }
    }
    Ok(Settings {
        exe: display_path(&exe),
        config: display_path(config_path),
        state_dir: display_path(&state_dir),
        log_file: display_path(&log_file),
        interval_minutes: args.interval,
        full_sync_at,
        time_limit_minutes: args.time_limit,
        run_as,
        credentials,
    })
}

/// The checks `validate` and `status` rely on, in the order a run meets them; the first that
/// fails refuses the install with its reason (and its exit code).
async fn prechecks(config: &AgentConfig, config_path: &Path, warnings: &mut Vec<Warning>) -> Result<Vec<CheckReport>> {
    let refuse = |check: &'static str| {
        move |mut e: AppError| {
            e.message = format!("not installed: the {check} check failed: {}", e.message);
            e.with_hint("nothing was written; `ausi status` and `ausi validate` show the same problem")
        }
    };
    let mut checks = vec![CheckReport { check: "configuration", detail: display_path(config_path) }];

    let directory = &config.directory;
    if directory.url.is_empty() && !directory.discover {
        return Err(refuse("configuration")(AppError::config(
            "the configuration has no [directory] url (nor discover = true) for the scheduled runs",
        )));
    }
    let tenant_config = config.tenant.clone().ok_or_else(|| {
        refuse("registration")(
            AppError::config("the agent is not registered with a tenant")
                .with_hint("run `ausi register --home-realm URL`"),
        )
    })?;
    if config.scope.ous.is_empty() {
        return Err(refuse("selection")(super::no_selection()));
    }
    checks.push(CheckReport {
        check: "selection",
        detail: format!("{} selected", output::plural(config.scope.ous.len() as u64, "OU")),
    });

    // Secrets: a scheduled run cannot answer a prompt.
    let mut stored = Vec::new();
    if directory.bind_dn.is_some() && directory.bind == crate::config::BindMethod::Simple {
        let reference = directory.bind_password.as_deref().ok_or_else(|| {
            refuse("secrets")(AppError::config("[directory] has a bind_dn but no bind_password reference"))
        })?;
        let secret = SecretRef::parse(reference).map_err(AppError::from).map_err(refuse("secrets"))?;
        match secret.resolve() {
            Ok(_) => stored.push(format!("bind password in {secret}")),
            Err(e) => return Err(refuse("secrets")(e.about(Purpose::BindPassword))),
        }
    }
    super::tenant_token(&tenant_config).map_err(refuse("secrets"))?;
    stored.push("tenant token".to_owned());
    checks.push(CheckReport { check: "secrets", detail: format!("{} resolve", stored.join(", ")) });

    for url in &directory.url {
        let spec = SourceSpec::parse(url).map_err(refuse("directory"))?;
        if matches!(spec, SourceSpec::Ldif(_)) {
            return Err(refuse("directory")(AppError::config("[directory] url must name a domain controller")));
        }
    }
    let mut dc =
        open_directory(&DirectoryArgs::default(), Some(config), warnings).await.map_err(refuse("directory"))?;
    let info = dc.info().await.map_err(AppError::from).map_err(refuse("directory"))?;
    // With Kerberos the check binds as whoever runs install-service; the scheduled runs bind
    // as the --run-as identity (SYSTEM: the computer account; a gMSA: itself).
    let how = match directory.bind {
        crate::config::BindMethod::Kerberos => "bound with Kerberos as the identity running install-service",
        crate::config::BindMethod::Simple => "bound",
    };
    checks.push(CheckReport { check: "directory", detail: format!("{}: {how}, {}", info.source, info.naming_context) });
    drop(dc);

    let timeout = Duration::from_secs(config.sync.request_timeout_secs.clamp(1, 60));
    let client = tenant::client(&tenant_config, timeout).map_err(refuse("tenant"))?;
    client.service_provider_config().await.map_err(AppError::from).map_err(refuse("tenant"))?;
    client.check_token().await.map_err(AppError::from).map_err(refuse("tenant"))?;
    checks
        .push(CheckReport { check: "tenant", detail: format!("{} answers and accepts the token", client.base_url()) });
    Ok(checks)
}

/// Runs a scheduler command (or records why not). Its output never reaches stdout, except a
/// password prompt of schtasks, which needs the terminal.
fn call(argv: &[&str], skip: Option<String>, interactive: bool) -> CommandReport {
    let words: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
    if let Some(reason) = skip {
        return CommandReport { argv: words, ran: false, exit_code: None, note: Some(reason) };
    }
    let mut command = std::process::Command::new(argv[0]);
    command.args(&argv[1..]).stderr(Stdio::piped());
    if interactive {
        command.stdin(Stdio::inherit()).stdout(Stdio::inherit());
    } else {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
    }
    match command.output() {
        Ok(out) => {
            let code = out.status.code();
            let note = (code != Some(0)).then(|| {
                let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                if text.is_empty() { String::from_utf8_lossy(&out.stdout).trim().to_owned() } else { text }
            });
            CommandReport { argv: words, ran: true, exit_code: code, note }
        }
        Err(e) => CommandReport { argv: words, ran: true, exit_code: None, note: Some(format!("cannot run it: {e}")) },
    }
}

/// Creates `dir` and its parents; the ones created are not readable by others (logs name users).
fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o750);
    }
    builder.create(dir)
}

/// Warnings that predict the installed service cannot work: they refuse an install without --force.
const BLOCKING: [&str; 2] = ["state-dir-hidden-from-service", "keyring-under-systemd"];

fn systemctl_skip_reason(root: Option<&Path>) -> Option<String> {
    if root.is_some() {
        return Some("--root given: the files went under it; nothing was enabled".to_owned());
    }
    if !cfg!(target_os = "linux") {
        return Some("not on Linux".to_owned());
    }
    if !Path::new("/run/systemd/system").is_dir() {
        return Some("systemd is not running here (it is not PID 1): enable the timers once it is".to_owned());
    }
    if !is_root() {
        return Some("not running as root: run `sudo systemctl daemon-reload && sudo systemctl enable --now ausi-sync.timer ausi-sync-full.timer`".to_owned());
    }
    None
}

fn schtasks_skip_reason(root: Option<&Path>) -> Option<String> {
    if root.is_some() {
        return Some("--root given: the definitions went under it; nothing was registered".to_owned());
    }
    if !cfg!(windows) {
        return Some("not on Windows: register the definitions there with schtasks /Create /XML".to_owned());
    }
    None
}

#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

impl InstallServiceReport {
    pub fn table(&self) -> String {
        let mut out = String::new();
        if self.action == "print" {
            for f in &self.files {
                out.push_str(&format!("# {}\n{}\n", output::cell(&f.path), f.contents.as_deref().unwrap_or("")));
            }
            out.push_str("Printed only: nothing was installed.\n");
            return out;
        }
        let mut t = output::table(&["File", "Status"]);
        for f in &self.files {
            t.add_row(vec![output::cell(&f.path), f.status.to_owned()]);
        }
        out.push_str(&format!("{t}\n"));
        for c in &self.checks {
            out.push_str(&format!("  check {}: {}\n", c.check, output::cell(&c.detail)));
        }
        for c in &self.commands {
            let line = c.argv.join(" ");
            match (c.ran, c.exit_code, &c.note) {
                (true, Some(0), _) => out.push_str(&format!("  ran: {}\n", output::cell(&line))),
                (true, code, note) => out.push_str(&format!(
                    "  FAILED: {} (exit {}): {}\n",
                    output::cell(&line),
                    code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    output::cell(note.as_deref().unwrap_or(""))
                )),
                (false, _, note) => out.push_str(&format!(
                    "  not run: {} ({})\n",
                    output::cell(&line),
                    output::cell(note.as_deref().unwrap_or(""))
                )),
            }
        }
        if let Some(s) = &self.schedule {
            out.push_str(&format!(
                "Schedule: incremental sync every {} minutes, full sync daily at {}, as {}; [schedule] in the configuration {}.\n",
                s.interval_minutes,
                s.full_sync_at,
                self.run_as.as_deref().unwrap_or("-"),
                self.config_schedule
            ));
        }
        if let Some(log) = &self.log_file {
            out.push_str(&format!("Scheduled runs log to {}.\n", output::cell(log)));
        }
        out.push_str(if self.changed { "Done.\n" } else { "Already installed: nothing changed.\n" });
        out
    }
}

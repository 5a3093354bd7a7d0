//! ausi: a directory synchronisation agent that keeps a SCIM 2.0 identity tenant in step with
//! Active Directory.
//!
//! Layers call down: `commands` → `sync` → `store`, `directory` and `tenant` (a test below keeps
//! every module under `commands` from importing it). Domain modules never print, exit or read the
//! process environment (the engine's progress goes through [`sync::progress::Progress`]); [`output`] is the only writer of stdout and [`exit`]
//! the only place exit codes are chosen.

pub mod cli;
pub mod commands;
pub mod config;
pub mod directory;
pub mod error;
pub mod exit;
pub mod logfile;
pub mod output;
pub mod password;
pub mod policy;
pub mod secrets;
pub mod service;
pub mod store;
pub mod sync;
pub mod tenant;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::{Cli, GlobalArgs, LogFormat};
use crate::error::AppError;
use crate::exit::ExitStatus;
use crate::output::{Outcome, Printer};

/// Parses the command line and runs it: the whole program, minus `std::process::exit`.
pub fn main_with_args<I, T>(args: I) -> ExitStatus
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, &args),
    };
    let started = std::time::Instant::now();
    // Still one thread: the only moment the environment may be changed.
    kerberos_environment(&cli.global);
    init_logging(&cli.global);
    let printer = Printer::new(cli.global.output, cli.global.quiet).with_dry_run(commands::dry_run(&cli.command));
    let name = commands::command_name(&cli.command);
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::internal("cannot start the async runtime").caused_by(&e))
        .and_then(|runtime| {
            // A panic is a bug: still answer with an envelope and exit 70, never a bare crash.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runtime.block_on(commands::dispatch(&cli, &printer))
            }))
            .unwrap_or_else(|_| {
                Err(AppError::internal("ausi stopped on an internal error (a bug; the details are on stderr)")
                    .with_hint("please report it with the stderr output"))
            })
        });
    log_run_summary(name, &result, started.elapsed());
    printer.emit(name, result)
}

/// `bind = "kerberos"` with `keytab = "file:PATH"` (Linux): MIT Kerberos takes the client keytab
/// from `KRB5_CLIENT_KTNAME` only, so it is set here, with `KRB5CCNAME=MEMORY:` so that the
/// tickets got with it stay in this process's memory (never in a cache file another process
/// could read, nor mixed with someone's `kinit`). An unreadable configuration is left to the
/// command to report.
#[cfg(unix)]
#[allow(unsafe_code)]
fn kerberos_environment(global: &GlobalArgs) {
    let path = global.config.clone().unwrap_or_else(commands::default_config_path);
    let Ok(loaded) = config::load(&path) else { return };
    let directory = &loaded.config.directory;
    if directory.bind != config::BindMethod::Kerberos {
        return;
    }
    if let Some(keytab) = directory.keytab.as_deref().and_then(|k| k.strip_prefix("file:")) {
        let keytab = secrets::passed_file(std::path::Path::new(keytab));
        let keytab = keytab.display();
        // SAFETY: called from main_with_args before the logger, the runtime or any other thread
        // exists, so nothing reads the environment concurrently (std::env::set_var's condition).
        unsafe {
            std::env::set_var("KRB5_CLIENT_KTNAME", format!("FILE:{keytab}"));
            std::env::set_var("KRB5CCNAME", format!("MEMORY:ausi-{}", std::process::id()));
        }
    }
}

/// On Windows SSPI uses the process's logon identity; a keytab is refused by `open_directory`.
#[cfg(not(unix))]
fn kerberos_environment(_global: &GlobalArgs) {}

/// One line per run for the log file (info level, so not on stderr unless -v): what ran, how it
/// ended and, for a sync, its mode and counts. A scheduled run's report goes nowhere else.
fn log_run_summary(command: &str, result: &Result<Outcome, AppError>, elapsed: std::time::Duration) {
    if !tracing::enabled!(target: "ausi::run", tracing::Level::INFO) {
        return;
    }
    let (exit, error, data) = match result {
        Ok(o) => (o.exit, o.error.as_ref(), serde_json::to_value(&o.report).unwrap_or_default()),
        Err(e) => (e.exit_status(), Some(e), serde_json::Value::Null),
    };
    // A run that stopped with an error is an error, whatever its exit code.
    let outcome = if error.is_some() { "error" } else { sync::health::outcome_name(exit) };
    let dry_run = result.as_ref().is_ok_and(|o| o.dry_run);
    let mode = data.get("mode").and_then(serde_json::Value::as_str).unwrap_or("-");
    // sync reports `counts`, validate a `summary`; other commands have no counts.
    let counts = data.get("counts").or_else(|| data.get("summary"));
    let counts = counts.map(serde_json::Value::to_string).unwrap_or_else(|| "{}".to_owned());
    let error = error.map(|e| e.to_string()).unwrap_or_default();
    tracing::info!(
        target: "ausi::run",
        command,
        mode,
        dry_run,
        outcome,
        exit_code = exit.code(),
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        counts = %counts,
        error = %error,
        "run finished"
    );
}

/// clap's own errors: help and version go to stdout as usual (exit 0); a usage error is
/// explained on stderr and, for scripts, also reported as an envelope on stdout (exit 2), in the
/// format and under the command name the user asked for, as far as they can be made out.
fn usage_error(e: clap::Error, args: &[std::ffi::OsString]) -> ExitStatus {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitStatus::Usage
        } else {
            ExitStatus::Ok
        };
    }
    let _ = e.print();
    let message = e.render().to_string();
    // clap's message up to its usage line: "the following required arguments were not provided:"
    // is followed by the arguments on the next lines, and the report must name them.
    let first = message
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned();
    let first = if first.is_empty() { "usage error".to_owned() } else { first };
    let words: Vec<String> = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let command = <Cli as clap::CommandFactory>::command();
    let name = words
        .iter()
        .find_map(|w| command.get_subcommands().find(|s| s.get_name() == w).map(|s| s.get_name().to_owned()))
        .unwrap_or_else(|| "ausi".to_owned());
    let printer = Printer::new(requested_output(&words), true);
    if printer.format() != cli::OutputFormat::Table {
        let help = if name == "ausi" { "run `ausi --help`".to_owned() } else { format!("run `ausi {name} --help`") };
        return printer.emit(&name, Err(AppError::usage(first).with_hint(help)));
    }
    ExitStatus::Usage
}

/// `-o FMT`, `-oFMT`, `--output FMT`, `--output=FMT` or AUSI_OUTPUT, read without clap.
fn requested_output(words: &[String]) -> Option<cli::OutputFormat> {
    use clap::ValueEnum;
    let value = words.iter().enumerate().find_map(|(i, w)| match w.as_str() {
        "-o" | "--output" => words.get(i + 1).cloned(),
        _ => w.strip_prefix("--output=").or_else(|| w.strip_prefix("-o")).map(str::to_owned),
    });
    value.or_else(|| std::env::var("AUSI_OUTPUT").ok()).and_then(|v| cli::OutputFormat::from_str(&v, true).ok())
}

/// Logs go to stderr (level from -v/-q or AUSI_LOG) and, with `--log-file`, also to that file at
/// info level or more (rotated by [`logfile`]); `--log-format` applies to both.
fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("AUSI_LOG").unwrap_or_else(|_| EnvFilter::new(format!("ausi={level},warn")));
    let json = global.log_format == LogFormat::Json;
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    let stderr = if json { stderr.json().boxed() } else { stderr.boxed() };
    let mut layers = vec![stderr.with_filter(filter).boxed()];
    let mut failed = None;
    if let Some(path) = &global.log_file {
        match logfile::open(path) {
            Ok(file) => {
                let file_level = if global.verbose >= 2 { level } else { "info" };
                let file = tracing_subscriber::fmt::layer()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .with_target(false);
                let file = if json { file.json().boxed() } else { file.boxed() };
                layers.push(file.with_filter(EnvFilter::new(format!("ausi={file_level},warn"))).boxed());
            }
            Err(e) => failed = Some((path.clone(), e)),
        }
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if let Some((path, e)) = failed {
        tracing::warn!("cannot open the log file {}: {e}; logging to stderr only", path.display());
    }
}

#[cfg(test)]
mod layering {
    /// Layers call down: no module below `commands` imports from it (`output` renders its
    /// reports and `main`/`lib` dispatch to it), the store, directory and tenant sides never
    /// import `sync`, and the engine and the store never hold a `Printer`.
    #[test]
    fn no_module_below_commands_imports_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
                if !rel.ends_with(".rs") || rel.starts_with("commands/") || rel.starts_with("output/") {
                    continue;
                }
                if ["main.rs", "lib.rs"].contains(&rel.as_str()) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains("crate::commands") || text.contains("super::commands") {
                    offenders.push(format!("{rel}: imports commands"));
                }
                let below_sync =
                    rel.starts_with("store/") || rel.starts_with("directory/") || rel.starts_with("tenant/");
                let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
                if below_sync && code.clone().any(|l| l.contains("crate::sync") || l.contains("super::sync")) {
                    offenders.push(format!("{rel}: imports sync"));
                }
                let engine = rel.starts_with("sync/") || rel.starts_with("store/");
                if engine && text.contains("Printer") {
                    offenders.push(format!("{rel}: holds a Printer"));
                }
            }
        }
        assert!(offenders.is_empty(), "layering broken: {offenders:#?}");
    }
}

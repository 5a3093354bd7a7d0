//! ausi: a directory synchronisation agent that keeps a SCIM 2.0 identity tenant in step with
//! Active Directory.
//!
//! Layers call only downwards: `commands` → `sync` → `directory` (and later `tenant`).
//! Domain modules never print, exit or read the process environment; [`output`] is the only
//! writer of stdout and [`exit`] the only place exit codes are chosen.

pub mod cli;
pub mod commands;
pub mod config;
pub mod directory;
pub mod error;
pub mod exit;
pub mod output;
pub mod password;
pub mod secrets;
pub mod sync;
pub mod tenant;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, GlobalArgs, LogFormat};
use crate::error::AppError;
use crate::exit::ExitStatus;
use crate::output::Printer;

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
    init_logging(&cli.global);
    let printer = Printer::new(cli.global.output, cli.global.quiet);
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
    printer.emit(name, result)
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
    let first = message.lines().next().unwrap_or("usage error").trim_start_matches("error: ").to_owned();
    let words: Vec<String> = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let command = <Cli as clap::CommandFactory>::command();
    let name = words
        .iter()
        .find_map(|w| command.get_subcommands().find(|s| s.get_name() == w).map(|s| s.get_name().to_owned()))
        .unwrap_or_else(|| "ausi".to_owned());
    let printer = Printer::new(requested_output(&words), true);
    if printer.format() != cli::OutputFormat::Table {
        return printer.emit(&name, Err(AppError::usage(first).with_hint(format!("run `ausi {name} --help`"))));
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

fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("AUSI_LOG").unwrap_or_else(|_| EnvFilter::new(format!("ausi={level},warn")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match global.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

//! Everything that reaches stdout or a terminal: the report envelope, its JSON, JSON Lines and
//! table renderings, progress on stderr, and terminal-safe text.
//!
//! Domain modules never print; commands return an [`Outcome`] and [`Printer::emit`] writes it.

pub mod sanitize;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use comfy_table::{ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::cli::OutputFormat;
use crate::commands::Report;
use crate::error::AppError;
use crate::exit::ExitStatus;

/// Bumped when a field is removed or changes meaning; additions keep the version.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warning {
    /// Stable identifier for scripts, e.g. `tls-verify-disabled`.
    pub code: &'static str,
    pub message: String,
}

impl Warning {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Warning { code, message: message.into() }
    }
}

/// What a command hands back: its report, its warnings and how the run ended.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    pub warnings: Vec<Warning>,
    pub exit: ExitStatus,
    pub dry_run: bool,
    /// Why a run with a report still stopped (a safety stop lists its plan *and* says why).
    pub error: Option<AppError>,
}

impl Outcome {
    pub fn new(report: Report, exit: ExitStatus) -> Self {
        Outcome { report, warnings: Vec::new(), exit, dry_run: false, error: None }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    schema_version: u32,
    command: &'a str,
    status: &'static str,
    exit_code: u8,
    dry_run: bool,
    started_at: String,
    duration_ms: u64,
    data: Option<&'a Report>,
    warnings: &'a [Warning],
    error: Option<&'a AppError>,
}

/// Decides what goes to stdout and stderr, once per process.
pub struct Printer {
    format: OutputFormat,
    quiet: bool,
    progress: bool,
    started: Instant,
    started_at: jiff::Timestamp,
    /// The command line asked for a dry run: the envelope says so even when the run failed
    /// before it had a report.
    dry_run: bool,
}

impl Printer {
    pub fn new(format: Option<OutputFormat>, quiet: bool) -> Self {
        let format =
            format.unwrap_or(if std::io::stdout().is_terminal() { OutputFormat::Table } else { OutputFormat::Json });
        Printer {
            format,
            quiet,
            progress: !quiet && std::io::stderr().is_terminal(),
            started: Instant::now(),
            started_at: jiff::Timestamp::now(),
            dry_run: false,
        }
    }

    /// Marks every report of this process as a dry run's (`--dry-run` on the command line).
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// A spinner with a live count on stderr; invisible when stderr is not a terminal.
    pub fn progress(&self, message: &'static str) -> Progress {
        let bar = if self.progress {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}: {pos} entries ({rate}/s)")
                    .map(|style| {
                        // Whole entries per second: "459/s", not indicatif's "459.3704/s".
                        style.with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.0}", state.per_sec());
                        })
                    })
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(message);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// Writes the one report of this run and returns the exit status to use.
    pub fn emit(&self, command: &str, result: Result<Outcome, AppError>) -> ExitStatus {
        let (outcome, error) = match result {
            Ok(mut outcome) => {
                let error = outcome.error.take();
                (Some(outcome), error)
            }
            Err(error) => (None, Some(error)),
        };
        let exit = match (&outcome, &error) {
            (Some(outcome), _) => outcome.exit,
            (None, Some(error)) => error.exit_status(),
            (None, None) => ExitStatus::Internal,
        };
        let warnings = outcome.as_ref().map(|o| o.warnings.as_slice()).unwrap_or(&[]);
        let envelope = Envelope {
            schema_version: SCHEMA_VERSION,
            command,
            status: match (exit, &error) {
                (ExitStatus::Ok, None) => "ok",
                (ExitStatus::Findings, None) => "findings",
                _ => "error",
            },
            exit_code: exit.code(),
            dry_run: self.dry_run || outcome.as_ref().is_some_and(|o| o.dry_run),
            started_at: self.started_at.to_string(),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            data: outcome.as_ref().map(|o| &o.report),
            warnings,
            error: error.as_ref(),
        };
        let text = match self.format {
            OutputFormat::Json => {
                let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
                // A closed pipe (`ausi list-ous | head`) is not an error worth a second report.
                write_json(&mut stdout, &envelope, true);
                let _ = stdout.flush();
                return exit;
            }
            OutputFormat::Jsonl => {
                let mut envelope = serde_json::to_value(&envelope).unwrap_or_default();
                let mut text = String::new();
                for path in outcome.as_ref().map(|o| o.report.item_paths()).unwrap_or_default() {
                    if let Some(serde_json::Value::Array(items)) = take(&mut envelope["data"], path) {
                        for item in items {
                            text.push_str(&json_line(&item, false));
                        }
                    }
                }
                text + &json_line(&envelope, false)
            }
            OutputFormat::Table => {
                let mut stderr = std::io::stderr().lock();
                for w in warnings.iter().filter(|_| !self.quiet) {
                    let _ = writeln!(stderr, "warning: {}", sanitize::for_terminal(&w.message));
                }
                if let Some(error) = &error {
                    let _ = stderr.write_all(render_error(error).as_bytes());
                }
                outcome.as_ref().map(|o| o.report.table()).unwrap_or_default()
            }
        };
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`ausi list-ous | head`) is not an error worth a second report.
        let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
        exit
    }
}

/// Removes and returns the value at `path` inside `value`.
fn take(value: &mut serde_json::Value, path: &[&str]) -> Option<serde_json::Value> {
    let (last, parents) = path.split_last()?;
    let mut current = value;
    for key in parents {
        current = current.get_mut(*key)?;
    }
    current.as_object_mut()?.remove(*last)
}

/// Human rendering of an error for stderr: message, causes, hints.
pub fn render_error(error: &AppError) -> String {
    let mut out = format!("error: {}\n", sanitize::for_terminal(&error.message));
    for cause in &error.causes {
        out.push_str(&format!("  caused by: {}\n", sanitize::for_terminal(cause)));
    }
    for hint in &error.hints {
        out.push_str(&format!("  hint: {}\n", sanitize::for_terminal(hint)));
    }
    out
}

/// Serialises to JSON; characters that can disguise text on a terminal (bidi overrides, C1
/// controls, zero-width characters) are written as `\uXXXX` escapes, which keeps the data
/// identical for any JSON parser while making it safe to `cat`.
pub fn json_line<T: Serialize + ?Sized>(value: &T, pretty: bool) -> String {
    let mut out = Vec::new();
    write_json(&mut out, value, pretty);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`json_line`] written straight to `out`: a long report (a dry run's plan, a scope preview
/// of a million users) is never held as text, let alone twice.
pub fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T, pretty: bool) {
    let mut escaping = Escaping { out, pending: Vec::new() };
    let written = if pretty {
        serde_json::to_writer_pretty(&mut escaping, value)
    } else {
        serde_json::to_writer(&mut escaping, value)
    };
    let _ = match written {
        Ok(()) => escaping.finish().and_then(|()| escaping.out.write_all(b"\n")),
        Err(e) if e.is_io() => Ok(()),
        Err(e) => escaping.out.write_all(format!("{{\"error\":\"report serialisation failed: {e}\"}}\n").as_bytes()),
    };
}

/// Passes JSON text through, deceptive characters as UTF-16 `\uXXXX` escapes (ASCII controls
/// are already escaped by serde_json). A character split between two writes waits in
/// `pending` for its end.
struct Escaping<'w> {
    out: &'w mut dyn Write,
    pending: Vec<u8>,
}

impl Escaping<'_> {
    fn escape(&mut self, text: &str) -> std::io::Result<()> {
        let mut clean = 0;
        for (at, c) in text.char_indices() {
            if sanitize::is_deceptive(c) && !c.is_ascii() {
                self.out.write_all(&text.as_bytes()[clean..at])?;
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(self.out, "\\u{unit:04x}")?;
                }
                clean = at + c.len_utf8();
            }
        }
        self.out.write_all(&text.as_bytes()[clean..])
    }

    fn finish(&mut self) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        self.out.write_all(&rest)
    }
}

impl Write for Escaping<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // ASCII cannot be deceptive here (serde_json escapes the controls): the common case.
        if self.pending.is_empty() && buf.is_ascii() {
            self.out.write_all(buf)?;
            return Ok(buf.len());
        }
        let bytes: std::borrow::Cow<'_, [u8]> = if self.pending.is_empty() {
            buf.into()
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(buf);
            joined.into()
        };
        let (text, rest) = match std::str::from_utf8(&bytes) {
            Ok(text) => (text, &[][..]),
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                (std::str::from_utf8(valid).unwrap_or_default(), rest)
            }
        };
        self.escape(text)?;
        match std::str::from_utf8(rest) {
            // Not UTF-8 at all (serde_json never writes that): as it is.
            Err(e) if e.error_len().is_some() => self.out.write_all(rest)?,
            _ => self.pending.extend_from_slice(rest),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A table in the house style; every cell that holds directory text goes through [`cell`].
///
/// On a terminal it wraps to the terminal's width; a terminal that reports a width of zero (a
/// 0×0 pseudo-terminal: `docker exec -t`, `script`, serial consoles) gets `COLUMNS`, else 80.
/// Not on a terminal, it wraps only when `COLUMNS` is set (exported) explicitly.
/// No column is squeezed below its header's width: a table wider than the terminal is easier
/// to read than one letter per line.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    if let Some(width) = wrap_width(t.width(), std::env::var("COLUMNS").ok().as_deref()) {
        t.set_width(width);
    }
    for (column, title) in t.column_iter_mut().zip(header).filter(|(_, title)| !title.is_empty()) {
        let least = u16::try_from(title.chars().count()).unwrap_or(u16::MAX);
        column.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(comfy_table::Width::Fixed(least)));
    }
    t
}

/// The width tables wrap to, from what the terminal reported (`None`: not a terminal) and
/// `COLUMNS`: a reported zero means the terminal does not know its size.
pub fn wrap_width(reported: Option<u16>, columns: Option<&str>) -> Option<u16> {
    let columns = columns.and_then(|c| c.trim().parse::<u16>().ok()).filter(|&c| c > 0);
    match reported {
        Some(0) => Some(columns.unwrap_or(80)),
        None => columns,
        known => known,
    }
}

/// "1 group", "2 groups": a count and its noun (an English plural in -s).
pub fn plural(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// A timestamp for a table: to the second, in UTC ("2026-12-03T10:11:39Z"); the JSON keeps
/// full precision. Text that is not a timestamp is shown as it is (terminal-safe).
pub fn time(text: &str) -> String {
    match text.parse::<jiff::Timestamp>().ok().and_then(|t| t.round(jiff::Unit::Second).ok()) {
        Some(t) => t.to_string(),
        None => cell(text),
    }
}

/// Terminal-safe cell text.
pub fn cell(text: &str) -> String {
    sanitize::for_terminal(text).into_owned()
}

impl crate::sync::progress::Progress for Printer {
    fn begin(&self, step: &'static str) -> Box<dyn crate::sync::progress::Step + '_> {
        Box::new(self.progress(step))
    }
}

impl crate::sync::progress::Step for Progress {
    fn set(&self, count: u64) {
        Progress::set(self, count);
    }

    fn finish(&self) {
        Progress::finish(self);
    }
}

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn set(&self, count: u64) {
        self.bar.set_position(count);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_deceptive_characters_but_keeps_the_data() {
        let value = serde_json::json!({"name": "evil\u{202e}gnp.exe", "ok": "Zoë 王芳"});
        let text = json_line(&value, false);
        assert!(text.contains("\\u202e"), "{text}");
        assert!(!text.contains('\u{202e}'));
        assert!(text.contains("Zoë 王芳"));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn characters_split_between_writes_are_escaped_whole() {
        let text = "{\"name\":\"evil\u{202e}gnp \u{200b}Zoë 王芳\"}";
        let mut out = Vec::new();
        let mut escaping = Escaping { out: &mut out, pending: Vec::new() };
        for byte in text.as_bytes() {
            escaping.write_all(std::slice::from_ref(byte)).unwrap();
        }
        escaping.finish().unwrap();
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), json_line(&value, false).trim_end());
    }

    #[test]
    fn a_terminal_of_zero_columns_wraps_at_columns_then_80() {
        assert_eq!(wrap_width(Some(0), None), Some(80));
        assert_eq!(wrap_width(Some(0), Some("132")), Some(132));
        assert_eq!(wrap_width(Some(0), Some("0")), Some(80));
        assert_eq!(wrap_width(Some(0), Some("wide")), Some(80));
        assert_eq!(wrap_width(Some(100), Some("132")), Some(100), "a size the terminal knows wins");
        assert_eq!(wrap_width(None, None), None, "not a terminal: no wrapping");
        assert_eq!(wrap_width(None, Some("132")), Some(132), "unless COLUMNS says how wide");
    }

    #[test]
    fn table_timestamps_are_to_the_second() {
        assert_eq!(time("2026-12-03T10:11:39.564282633Z"), "2026-12-03T10:11:40Z");
        assert_eq!(time("2026-12-03T10:11:39Z"), "2026-12-03T10:11:39Z");
        assert_eq!(time("never"), "never");
    }

    #[test]
    fn error_rendering_is_terminal_safe() {
        let e = AppError::config("bad \u{1b}[31mred").with_hint("fix it");
        let text = render_error(&e);
        assert!(!text.contains('\u{1b}'));
        assert!(text.contains("hint: fix it"));
    }
}

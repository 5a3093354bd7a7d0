//! The end of a run in the history: one epilogue for `sync` and `password-push`. How the run
//! ended (its kind, exit status, counts and error) becomes a [`RunEnd`] the store records; a
//! history that cannot be written is a warning, never a failure of the run.

use std::time::Instant;

use crate::exit::ExitStatus;
use crate::output::Warning;
use crate::store::{RunEnd, StateError, StateStore};
use crate::sync::health;

/// How a run ended, as the history records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// What the run turned out to be (`full`, `delta`, `batch`, …).
    pub kind: &'static str,
    pub exit: ExitStatus,
    pub counts: serde_json::Value,
    /// The error's message when the run failed (reports carry no secrets, nor does this).
    pub error: Option<String>,
    pub finished_at: String,
    pub duration_ms: u64,
}

impl Ending {
    /// The run ends now; `clock` was started when it began.
    pub fn now(
        kind: &'static str,
        exit: ExitStatus,
        counts: serde_json::Value,
        error: Option<String>,
        clock: Instant,
    ) -> Ending {
        let finished_at = jiff::Timestamp::now().to_string();
        let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ending { kind, exit, counts, error, finished_at, duration_ms }
    }

    pub fn run_end(&self) -> RunEnd<'_> {
        RunEnd {
            kind: self.kind,
            outcome: health::outcome_name(self.exit),
            exit_code: i64::from(self.exit.code()),
            counts: &self.counts,
            error: self.error.as_deref(),
            finished_at: &self.finished_at,
            duration_ms: self.duration_ms,
        }
    }
}

/// Which run the ending belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Run<'a> {
    /// A run recorded when it began (`sync`: a crash shows in the history).
    Begun(i64),
    /// A run recorded at its end, in one call (a command that writes nothing a crash could leave half done).
    Whole { command: &'a str, dry_run: bool, started_at: &'a str },
}

/// Records how the run ended; returns the warning for the report when the history could not be written.
pub fn record(store: &mut StateStore, run: Run<'_>, ending: &Ending) -> Option<Warning> {
    let end = ending.run_end();
    let recorded = match run {
        Run::Begun(id) => store.finish_run(id, &end),
        Run::Whole { command, dry_run, started_at } => store.record_run(command, dry_run, started_at, &end).map(|_| ()),
    };
    recorded.err().map(|e| not_recorded(&e))
}

/// The warning for a run the history could not record (e.g. the store could not be opened).
pub fn not_recorded(e: &StateError) -> Warning {
    Warning::new("run-not-recorded", format!("this run could not be recorded in the history: {e}"))
}

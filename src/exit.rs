//! The only place where process exit codes are chosen.
//!
//! Scripts and schedulers act on these numbers, so they are part of the public contract
//! (README "Exit codes", the man pages' EXIT STATUS section, and `tests/cli.rs`).

use serde::Serialize;

/// What a run ended with, from best to worst as a scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Everything done, nothing to report.
    Ok,
    /// Done, but something needs a look: validation problems, quarantined users, per-object failures.
    Findings,
    /// The command line was wrong.
    Usage,
    /// Stopped before writing anything because going on could lose data
    /// (deletion threshold, empty or partial read, selected scope vanished).
    SafetyStop,
    /// A bug in ausi.
    Internal,
    /// Try again later: the directory or tenant is unreachable, timed out, or busy; the state is locked.
    Temporary,
    /// The directory or tenant refused the credentials or the operation.
    Permission,
    /// Missing or invalid configuration or secret; a human must act.
    Config,
}

impl ExitStatus {
    pub const ALL: [ExitStatus; 8] = [
        ExitStatus::Ok,
        ExitStatus::Findings,
        ExitStatus::Usage,
        ExitStatus::SafetyStop,
        ExitStatus::Internal,
        ExitStatus::Temporary,
        ExitStatus::Permission,
        ExitStatus::Config,
    ];

    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Findings => 1,
            ExitStatus::Usage => 2,
            ExitStatus::SafetyStop => 3,
            ExitStatus::Internal => 70,
            ExitStatus::Temporary => 75,
            ExitStatus::Permission => 77,
            ExitStatus::Config => 78,
        }
    }

    /// One line for the man page and README tables.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Ok => "success, nothing to report",
            ExitStatus::Findings => "findings: validation problems, quarantined users or per-object failures",
            ExitStatus::Usage => "usage error on the command line",
            ExitStatus::SafetyStop => {
                "safety stop, nothing written: empty or partial read, scope vanished, threshold reached"
            }
            ExitStatus::Internal => "internal error (a bug in ausi: please report it)",
            ExitStatus::Temporary => "temporary failure, retry later: directory or tenant unreachable, timeout, busy",
            ExitStatus::Permission => "permission denied: bind or token rejected, access denied",
            ExitStatus::Config => "configuration error: missing or invalid config or secret, nothing selected",
        }
    }

    /// The worse of two statuses (a findings run that then hit a config error is a config error).
    pub fn worst(self, other: ExitStatus) -> ExitStatus {
        if other.code() != 0 && (self.code() == 0 || self == ExitStatus::Findings) { other } else { self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 70, 75, 77, 78]);
    }

    #[test]
    fn worst_prefers_errors_over_findings() {
        assert_eq!(ExitStatus::Ok.worst(ExitStatus::Findings), ExitStatus::Findings);
        assert_eq!(ExitStatus::Findings.worst(ExitStatus::Config), ExitStatus::Config);
        assert_eq!(ExitStatus::Temporary.worst(ExitStatus::Findings), ExitStatus::Temporary);
        assert_eq!(ExitStatus::Findings.worst(ExitStatus::Ok), ExitStatus::Findings);
    }
}

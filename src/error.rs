//! The error every command returns: a kind that decides the exit code, a message that names
//! the object and the rule, the cause chain, and hints that tell a human what to do next.

use std::fmt;

use serde::Serialize;

use crate::exit::ExitStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Usage,
    /// Stopped before writing anything: the read was incomplete or the scope vanished.
    SafetyStop,
    Internal,
    /// Unreachable, timed out, busy: retry later.
    Temporary,
    Permission,
    Config,
}

impl ErrorKind {
    pub fn exit_status(self) -> ExitStatus {
        match self {
            ErrorKind::Usage => ExitStatus::Usage,
            ErrorKind::SafetyStop => ExitStatus::SafetyStop,
            ErrorKind::Internal => ExitStatus::Internal,
            ErrorKind::Temporary => ExitStatus::Temporary,
            ErrorKind::Permission => ExitStatus::Permission,
            ErrorKind::Config => ExitStatus::Config,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
    /// Lower-level causes, outermost first (e.g. the LDAP diagnostic, the OS error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
    /// What the administrator can do about it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        AppError { kind, message: message.into(), causes: Vec::new(), hints: Vec::new() }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Records `err` and its whole `source()` chain as causes.
    pub fn caused_by(mut self, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut next = Some(err);
        while let Some(e) = next {
            let text = e.to_string();
            if !self.causes.contains(&text) && !self.message.contains(&text) {
                self.causes.push(text);
            }
            next = e.source();
        }
        self
    }

    pub fn exit_status(&self) -> ExitStatus {
        self.kind.exit_status()
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for cause in &self.causes {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_a_documented_exit_code() {
        assert_eq!(ErrorKind::Usage.exit_status().code(), 2);
        assert_eq!(ErrorKind::SafetyStop.exit_status().code(), 3);
        assert_eq!(ErrorKind::Internal.exit_status().code(), 70);
        assert_eq!(ErrorKind::Temporary.exit_status().code(), 75);
        assert_eq!(ErrorKind::Permission.exit_status().code(), 77);
        assert_eq!(ErrorKind::Config.exit_status().code(), 78);
    }

    #[test]
    fn cause_chain_is_kept_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = AppError::new(ErrorKind::Temporary, "cannot reach ldap://127.0.0.1:1").caused_by(&io);
        assert_eq!(e.causes, ["connection refused"]);
        assert_eq!(e.to_string(), "cannot reach ldap://127.0.0.1:1: connection refused");
    }
}

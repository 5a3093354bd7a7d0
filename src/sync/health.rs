//! Is the agent healthy? A pure decision over the run history, the last heartbeat, the schedule
//! and the time now (the caller reads the clock), shared by `ausi status` (its exit code) and
//! the heartbeat (its `status` field).
//!
//! Unhealthy when:
//! - the last finished real (not dry) `sync` run failed (`last-run-failed`);
//! - the last successful real run finished more than three schedule intervals ago
//!   (`last-success-stale`), or there is none while real runs failed (`never-succeeded`);
//! - the last heartbeat to the tenant failed (`heartbeat-failed`: a tenant outage, a revoked
//!   token, an agent removed in the tenant).
//!
//! A run that has not finished (running now, or killed) decides nothing: the next one does.
//! Findings (quarantined users, per-object failures) are a successful run: they are shown, not
//! unhealthy.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::exit::ExitStatus;
use crate::store::{HeartbeatRecord, RunRecord};

/// A run's `outcome` in the history and the heartbeat: `ok`, `findings` or `error`.
pub fn outcome_name(exit: ExitStatus) -> &'static str {
    match exit {
        ExitStatus::Ok => "ok",
        ExitStatus::Findings => "findings",
        _ => "error",
    }
}

/// How many schedule intervals may pass without a successful run.
pub const STALE_INTERVALS: i64 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub healthy: bool,
    /// Why not, one entry per rule broken; empty when healthy.
    pub reasons: Vec<HealthReason>,
    /// When the last successful real `sync` run finished.
    pub last_success_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReason {
    /// `last-run-failed`, `last-success-stale`, `never-succeeded` or `heartbeat-failed`.
    pub code: &'static str,
    pub message: String,
}

/// `runs`: the history, newest first (any commands; only real `sync` runs count).
/// `heartbeat`: the last heartbeat, when the tenant has the agent API. `interval`: the schedule's
/// interval, `None` when no schedule applies (then nothing is stale).
pub fn assess(
    runs: &[RunRecord],
    heartbeat: Option<&HeartbeatRecord>,
    interval: Option<SignedDuration>,
    now: Timestamp,
) -> Health {
    let mut reasons = Vec::new();
    let real = || runs.iter().filter(|r| r.command == "sync" && !r.dry_run && r.outcome.is_some());
    let succeeded = |r: &&RunRecord| matches!(r.outcome.as_deref(), Some("ok" | "findings"));
    if let Some(last) = real().next().filter(|r| !succeeded(r)) {
        let why = last.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        reasons.push(HealthReason {
            code: "last-run-failed",
            message: format!(
                "the last sync (run {}, {} started {}) failed with exit code {}{why}",
                last.id,
                last.kind,
                last.started_at,
                last.exit_code.map_or_else(|| "?".to_owned(), |c| c.to_string())
            ),
        });
    }
    let last_success = real().find(succeeded);
    let last_success_at = last_success.map(|r| r.finished_at.clone().unwrap_or_else(|| r.started_at.clone()));
    match (&last_success_at, interval) {
        (Some(at), Some(interval)) => {
            let limit = interval.saturating_mul(STALE_INTERVALS as i32);
            if let Ok(at_time) = at.parse::<Timestamp>()
                && now.duration_since(at_time) > limit
            {
                reasons.push(HealthReason {
                    code: "last-success-stale",
                    message: format!(
                        "the last successful sync finished at {at}, more than {STALE_INTERVALS} schedule intervals ({} min) ago",
                        limit.as_secs() / 60
                    ),
                });
            }
        }
        (None, _) if real().next().is_some() => reasons.push(HealthReason {
            code: "never-succeeded",
            message: "no sync has succeeded yet, and at least one failed".to_owned(),
        }),
        _ => {}
    }
    if let Some(h) = heartbeat
        && let Some(error) = &h.last_error
    {
        reasons.push(HealthReason {
            code: "heartbeat-failed",
            message: format!("the last heartbeat to the tenant ({}) failed: {error}", h.last_attempt_at),
        });
    }
    Health { healthy: reasons.is_empty(), reasons, last_success_at }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-05-01T12:00:00Z";
    const TEN_MIN: Option<SignedDuration> = Some(SignedDuration::from_mins(10));

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// A finished real sync run that ended `ago` minutes before [`NOW`].
    fn run(id: i64, exit: ExitStatus, ago: i64) -> RunRecord {
        let at = now().checked_sub(SignedDuration::from_mins(ago)).unwrap().to_string();
        RunRecord {
            id,
            command: "sync".into(),
            kind: "delta".into(),
            dry_run: false,
            started_at: at.clone(),
            finished_at: Some(at),
            duration_ms: Some(1000),
            outcome: Some(outcome_name(exit).into()),
            exit_code: Some(i64::from(exit.code())),
            counts: serde_json::json!({}),
            error: (exit.code() > 1).then(|| "the tenant is unavailable".to_owned()),
        }
    }

    fn beat(error: Option<&str>) -> HeartbeatRecord {
        HeartbeatRecord {
            tenant_status: Some("Active".into()),
            last_success_at: Some("2026-05-01T11:00:00Z".into()),
            last_attempt_at: "2026-05-01T11:55:00Z".into(),
            last_error: error.map(str::to_owned),
        }
    }

    fn codes(h: &Health) -> Vec<&'static str> {
        h.reasons.iter().map(|r| r.code).collect()
    }

    #[test]
    fn a_recent_success_with_an_accepted_heartbeat_is_healthy() {
        let runs = [run(2, ExitStatus::Findings, 5), run(1, ExitStatus::Ok, 15)];
        let h = assess(&runs, Some(&beat(None)), TEN_MIN, now());
        assert!(h.healthy, "{h:?}");
        assert!(h.reasons.is_empty());
        assert_eq!(h.last_success_at, runs[0].finished_at);
    }

    #[test]
    fn nothing_run_yet_is_healthy() {
        let h = assess(&[], None, TEN_MIN, now());
        assert!(h.healthy, "{h:?}");
        assert_eq!(h.last_success_at, None);
    }

    #[test]
    fn a_failed_last_run_is_unhealthy_and_says_why() {
        let runs = [run(3, ExitStatus::Temporary, 2), run(2, ExitStatus::Ok, 12)];
        let h = assess(&runs, None, TEN_MIN, now());
        assert!(!h.healthy);
        assert_eq!(codes(&h), ["last-run-failed"]);
        let message = &h.reasons[0].message;
        assert!(message.contains("run 3") && message.contains("exit code 75"), "{message}");
        assert!(message.contains("the tenant is unavailable"), "{message}");
        // The success before it still counts as the last success (not stale yet).
        assert_eq!(h.last_success_at, runs[1].finished_at);
    }

    #[test]
    fn a_success_older_than_three_intervals_is_stale() {
        let h = assess(&[run(1, ExitStatus::Ok, 29)], None, TEN_MIN, now());
        assert!(h.healthy, "29 minutes is within three 10-minute intervals: {h:?}");
        let h = assess(&[run(1, ExitStatus::Ok, 31)], None, TEN_MIN, now());
        assert_eq!(codes(&h), ["last-success-stale"]);
        // No schedule, nothing stale.
        assert!(assess(&[run(1, ExitStatus::Ok, 10_000)], None, None, now()).healthy);
        // A longer interval moves the limit.
        assert!(assess(&[run(1, ExitStatus::Ok, 100)], None, Some(SignedDuration::from_hours(1)), now()).healthy);
    }

    #[test]
    fn only_failures_is_never_succeeded() {
        let runs = [run(2, ExitStatus::Config, 1), run(1, ExitStatus::Temporary, 11)];
        let h = assess(&runs, None, TEN_MIN, now());
        assert_eq!(codes(&h), ["last-run-failed", "never-succeeded"]);
    }

    #[test]
    fn a_failed_heartbeat_is_an_outage() {
        let h = assess(&[run(1, ExitStatus::Ok, 1)], Some(&beat(Some("HTTP 503"))), TEN_MIN, now());
        assert_eq!(codes(&h), ["heartbeat-failed"]);
        assert!(h.reasons[0].message.contains("HTTP 503"), "{h:?}");
    }

    #[test]
    fn dry_unfinished_and_other_commands_decide_nothing() {
        let mut dry = run(5, ExitStatus::Temporary, 1);
        dry.dry_run = true;
        let mut running = run(4, ExitStatus::Ok, 0);
        (running.outcome, running.exit_code, running.finished_at) = (None, None, None);
        let mut push = run(3, ExitStatus::Permission, 1);
        push.command = "password-push".into();
        let runs = [dry, running, push, run(2, ExitStatus::Ok, 5)];
        let h = assess(&runs, None, TEN_MIN, now());
        assert!(h.healthy, "{h:?}");
        assert_eq!(h.last_success_at, runs[3].finished_at);
    }

    #[test]
    fn everything_wrong_at_once_lists_every_reason() {
        let runs = [run(2, ExitStatus::Temporary, 1), run(1, ExitStatus::Ok, 60)];
        let h = assess(&runs, Some(&beat(Some("connection refused"))), TEN_MIN, now());
        assert_eq!(codes(&h), ["last-run-failed", "last-success-stale", "heartbeat-failed"]);
    }
}

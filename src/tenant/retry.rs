//! The retry policy shared by the SCIM client and the agent API: which answers are worth
//! another attempt (RFC 7644 §3.12, decided here and nowhere else), how long to wait between
//! attempts (exponential backoff with full jitter, or the server's `Retry-After`), and when to
//! give up.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// What one HTTP answer means for the call that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// 2xx.
    Success,
    /// Temporary: the same request may succeed later (429, 502, 503, 504, 408, 500; and every
    /// transport error: refused, reset, timed out). Retried with backoff and `Retry-After`;
    /// past the attempts, the run stops and the next one retries (exit 75).
    Temporary,
    /// The token is refused (401; 403 to a read: the token may not even list).
    Unauthorized,
    /// 404 on a resource's own URL: that resource is gone.
    NotFound,
    /// Permanent for that object and that operation: 400 (any `scimType`), 403 to a write,
    /// 404 on a collection, 409, 412, 413, 501 and any other 4xx/5xx. Never retried in the
    /// run; the object is recorded as failing and tried again once in the next run.
    Permanent,
    /// 1xx or 3xx (redirects are not followed): a protocol error.
    Unexpected,
}

/// The one place that decides temporary vs permanent for an HTTP status. `write`: the request
/// changes something (a 403 to a write is the object's, to a read the token's); `on_resource`:
/// the URL names one resource (a 404 means it is gone, not that the endpoint is wrong).
pub fn disposition(status: u16, write: bool, on_resource: bool) -> Disposition {
    match status {
        200..=299 => Disposition::Success,
        401 => Disposition::Unauthorized,
        403 if !write => Disposition::Unauthorized,
        404 if on_resource => Disposition::NotFound,
        408 | 429 | 500 | 502 | 503 | 504 => Disposition::Temporary,
        400..=599 => Disposition::Permanent,
        _ => Disposition::Unexpected,
    }
}

/// Timeouts and how often, and how patiently, a call is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Per request (connect, send and reading the whole answer).
    pub timeout: Duration,
    /// Attempts per call, the first included (0 counts as 1).
    pub max_attempts: u32,
    /// Backoff of the first retry; doubles per retry.
    pub base_delay: Duration,
    /// Backoff ceiling.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this gives up at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// What to do after a temporary failure of attempt number `attempt` (1 = the first).
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Sleep this long, then try again.
    Wait(Duration),
    /// No more attempts; the reason says why (the last failure, or a too long Retry-After).
    GiveUp(String),
}

impl RetryPolicy {
    pub fn next(&self, attempt: u32, reason: &str, retry_after: Option<Duration>) -> Next {
        if attempt >= self.max_attempts.max(1) {
            return Next::GiveUp(reason.to_owned());
        }
        match retry_after {
            Some(d) if d > self.max_retry_after => Next::GiveUp(format!(
                "{reason}; Retry-After of {} s is beyond the {} s limit",
                d.as_secs(),
                self.max_retry_after.as_secs()
            )),
            Some(d) => Next::Wait(d),
            None => Next::Wait(self.backoff(attempt)),
        }
    }

    /// Exponential backoff with full jitter for retry number `retry` (1 = first retry):
    /// uniform in `[base_delay, min(max_delay, base_delay * 2^(retry-1))]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(30);
        let cap = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let low = self.base_delay.min(cap);
        let (lo, hi) = (low.as_micros() as u64, cap.as_micros() as u64);
        if hi <= lo {
            return cap;
        }
        Duration::from_micros(rand::rng().random_range(lo..=hi))
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3; a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64: "forever", which is beyond any limit.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn temporary_and_permanent_per_rfc_7644() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(disposition(s, true, true), Disposition::Temporary, "{s}");
        }
        for s in [400, 409, 412, 413, 501, 505] {
            assert_eq!(disposition(s, true, true), Disposition::Permanent, "{s}");
        }
        assert_eq!(disposition(403, true, true), Disposition::Permanent);
        assert_eq!(disposition(403, false, false), Disposition::Unauthorized);
        assert_eq!(disposition(401, true, true), Disposition::Unauthorized);
        assert_eq!(disposition(404, true, true), Disposition::NotFound);
        assert_eq!(disposition(404, false, false), Disposition::Permanent);
        assert_eq!(disposition(204, true, true), Disposition::Success);
        assert_eq!(disposition(302, false, false), Disposition::Unexpected);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 3600 ", now), Some(Duration::from_secs(3600)));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun Nov  6 08:50:07 1994", now), Some(Duration::from_secs(30)));
        // A date in the past: retry now.
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_inside_bounds() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        for _ in 0..200 {
            let d2 = policy.backoff(2);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d4 = policy.backoff(4);
            assert!(d4 >= Duration::from_millis(100) && d4 <= Duration::from_millis(800));
            let d40 = policy.backoff(40);
            assert!(d40 >= Duration::from_millis(100) && d40 <= Duration::from_millis(1000));
        }
        let inverted = RetryPolicy {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        assert_eq!(inverted.backoff(3), Duration::from_secs(1));
    }

    #[test]
    fn gives_up_after_the_attempts_or_a_long_retry_after() {
        let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        assert!(matches!(policy.next(1, "x", None), Next::Wait(_)));
        assert_eq!(policy.next(2, "x", Some(Duration::from_secs(2))), Next::Wait(Duration::from_secs(2)));
        assert_eq!(policy.next(3, "HTTP 503", None), Next::GiveUp("HTTP 503".into()));
        assert!(
            matches!(policy.next(1, "x", Some(Duration::from_secs(3600))), Next::GiveUp(m) if m.contains("beyond"))
        );
    }
}

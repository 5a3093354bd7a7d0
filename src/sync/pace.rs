//! How many `/Bulk` requests the tenant is given at once: as many as make it faster, up to
//! `[sync] concurrency`.
//!
//! A tenant that serves requests in parallel (a hosted service) writes faster the more are in
//! flight; one bound by a single core (a small SCIM server, one Python process) writes slower:
//! its requests only take turns, and each switch costs it CPU (scim2-server took 10.0 s for a
//! 10,000-user full sync at one request at a time and 11.8 s at four). So the applier times each
//! batch it sends (request bytes per second) and the pace moves between the levels 1, 2, 4, …
//! up to the configured concurrency. It starts at one request (a slow start: a tenant that
//! juggles badly is never given the most) and now and then runs a round of trials: the level
//! above for [`TRIAL`] batches, taken when [`MARGIN`] faster than the median of the level in
//! use (and then the next one up), else the level below, taken when at least as fast (and then
//! the next one down). A round that keeps the level makes the next one come later. Pure: the
//! applier times the batches.

use std::collections::VecDeque;
use std::time::Duration;

/// A higher level is taken over the one in use only when this much faster (a lower one when at
/// least as fast): more requests in flight cost the tenant more, and a single batch can be
/// slowed by the tenant's own pauses (scim2-server's garbage collector, with 100,000 users in
/// memory).
const MARGIN: f64 = 1.15;

/// Batches a level is tried for before it is judged (their mean rate). One: a level that loses
/// costs a tenant bound by one core most in its trials (scim2-server wrote two requests at once
/// 10-25 % slower than one after the other), and a trial that is unlucky only keeps the level.
const TRIAL: u32 = 1;

/// Batches at one request before the first round: the rate it is judged against.
const FIRST_ROUND: u32 = 2;

/// Batches at the level in use between two rounds of trials; doubled each time a round keeps
/// the level (a tenant that rewards concurrency loses little to the trials). The first round
/// finds what the tenant rewards; later ones only follow a tenant that changes, and each costs
/// a one-core tenant about half a batch (scim2-server: two requests of 500 users at once took
/// 1.17 s where one after the other took 0.91 s; the 500 groups' two requests at once 1.51 s,
/// the loader's one after the other 1.2 s), so they come no oftener than every 32 batches
/// (16,000 users).
const RECHECK_AFTER: u32 = 32;
const RECHECK_MAX: u32 = 128;

/// The batches of the level in use whose median is its rate: a slow batch now and then does
/// not move it, a tenant that slows down as it fills moves it in a few.
const RECENT: usize = 5;

#[derive(Debug)]
pub struct Pace {
    /// Requests in flight the pace may choose, ascending: 1, 2, 4, …, the configured maximum.
    levels: Vec<usize>,
    /// The level in use (an index into `levels`) and the rates (request bytes per second) of
    /// its last [`RECENT`] batches.
    chosen: usize,
    recent: VecDeque<f64>,
    /// The level being tried, if any.
    trial: Option<Trial>,
    /// Batches at the level in use since the last round of trials, and how many before the
    /// next; whether this round has moved the level.
    since: u32,
    recheck: u32,
    moved: bool,
}

#[derive(Debug, Clone, Copy)]
struct Trial {
    level: usize,
    batches: u32,
    rate: f64,
}

impl Pace {
    pub fn new(max: usize) -> Pace {
        let max = max.max(1);
        let mut levels: Vec<usize> =
            std::iter::successors(Some(1usize), |l| l.checked_mul(2)).take_while(|&l| l < max).collect();
        levels.push(max);
        // The first round starts once one request at a time has a rate (a slow start: a tenant
        // that juggles badly is never given the most).
        Pace { levels, chosen: 0, recent: VecDeque::new(), trial: None, since: 0, recheck: FIRST_ROUND, moved: false }
    }

    /// Requests to send at once now.
    pub fn requests(&self) -> usize {
        self.levels[self.trial.map_or(self.chosen, |t| t.level)]
    }

    /// Records a batch of `sent` requests carrying `bytes` in all that were answered in
    /// `elapsed`, and chooses the level of the next batch. A batch at another level than the
    /// one asked for (the last of a window, short of requests) is not counted.
    pub fn record(&mut self, sent: usize, bytes: usize, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if sent != self.requests() || seconds <= 0.0 || bytes == 0 {
            return;
        }
        let rate = bytes as f64 / seconds;
        match self.trial.as_mut() {
            Some(t) => {
                t.rate = (t.rate * f64::from(t.batches) + rate) / f64::from(t.batches + 1);
                t.batches += 1;
                if t.batches >= TRIAL {
                    let t = *t;
                    self.trial = None;
                    self.judge(t);
                }
            }
            None => {
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(rate);
                self.since += 1;
                if self.since >= self.recheck {
                    // A round: the level above first, then (if that loses) the one below.
                    self.moved = false;
                    self.try_level(Some(self.chosen + 1)).or_else(|| self.try_level(self.chosen.checked_sub(1)));
                }
            }
        }
    }

    /// Starts trying the level at `index`, if there is one.
    fn try_level(&mut self, index: Option<usize>) -> Option<()> {
        let level = index.filter(|&i| i < self.levels.len())?;
        self.trial = Some(Trial { level, batches: 0, rate: 0.0 });
        Some(())
    }

    /// Ends a trial: the tried level is taken if it is better, and the round goes on in the
    /// same direction; else the round tries below (after a loss above) or ends.
    fn judge(&mut self, t: Trial) {
        let current = self.rate();
        let up = t.level > self.chosen;
        let better = if up { t.rate > current * MARGIN } else { t.rate >= current };
        if better {
            tracing::debug!(from = self.levels[self.chosen], to = self.levels[t.level], "/Bulk requests in flight");
            self.chosen = t.level;
            self.recent = VecDeque::from([t.rate]);
            self.moved = true;
            let next = if up { Some(t.level + 1) } else { t.level.checked_sub(1) };
            if self.try_level(next).is_some() {
                return;
            }
        } else if up && self.try_level(self.chosen.checked_sub(1)).is_some() {
            return;
        }
        // The round is over: sooner again if it moved the level, later if it kept it.
        self.recheck = if self.moved { RECHECK_AFTER } else { (self.recheck * 2).clamp(RECHECK_AFTER, RECHECK_MAX) };
        self.since = 0;
    }

    /// The rate of the level in use: the median of its recent batches.
    fn rate(&self) -> f64 {
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `batches` batches against a tenant whose rate at `n` in flight is `rate(n)`,
    /// returning the levels used.
    fn drive(pace: &mut Pace, batches: usize, mut rate: impl FnMut(usize) -> f64) -> Vec<usize> {
        (0..batches)
            .map(|_| {
                let n = pace.requests();
                let bytes = 1_000_000 * n;
                pace.record(n, bytes, Duration::from_secs_f64(bytes as f64 / rate(n)));
                n
            })
            .collect()
    }

    #[test]
    fn the_levels_double_up_to_the_configured_concurrency() {
        assert_eq!(Pace::new(4).levels, [1, 2, 4]);
        assert_eq!(Pace::new(6).levels, [1, 2, 4, 6]);
        assert_eq!(Pace::new(1).levels, [1]);
        assert_eq!(Pace::new(0).levels, [1]);
        assert_eq!(Pace::new(4).requests(), 1, "it starts at one");
    }

    #[test]
    fn a_tenant_bound_by_one_core_is_given_one_request_at_a_time() {
        // scim2-server: each request in flight beyond the first costs it ~6 %.
        let mut pace = Pace::new(4);
        let used = drive(&mut pace, 40, |n| 1.0 / (1.0 + 0.06 * (n as f64 - 1.0)));
        assert_eq!(&used[..5], [1, 1, 2, 1, 1], "it tries one more for a batch, which is slower");
        assert!(!used.contains(&4), "{used:?}");
        assert_eq!(used[3..].iter().filter(|&&n| n == 2).count(), 1, "one trial of 2 in 37 batches: {used:?}");
    }

    #[test]
    fn a_tenant_that_serves_in_parallel_keeps_every_request_in_flight() {
        let mut pace = Pace::new(4);
        let used = drive(&mut pace, 200, |n| n as f64);
        assert_eq!(&used[..5], [1, 1, 2, 4, 4], "it climbs while that is faster");
        let trials = used[4..].iter().filter(|&&n| n != 4).count();
        assert!(trials <= 5, "the trials get rarer when they keep the level: {trials} in 200");
    }

    #[test]
    fn a_level_only_as_fast_as_a_lower_one_is_not_worth_its_cost() {
        // 2 and 4 in flight are 10 % faster than 1: within the margin, so 1 it is.
        let mut pace = Pace::new(4);
        let used = drive(&mut pace, 6, |n| if n == 1 { 1.0 } else { 1.10 });
        assert_eq!(used, [1, 1, 2, 1, 1, 1]);
    }

    #[test]
    fn a_tenant_whose_speed_changes_is_followed() {
        let mut pace = Pace::new(4);
        drive(&mut pace, 14, |n| 1.0 / n as f64);
        assert_eq!(pace.requests(), 1);
        // It starts serving in parallel (scaled out): a later trial finds it.
        let used = drive(&mut pace, 40, |n| n as f64);
        assert_eq!(*used.last().unwrap(), 4, "{used:?}");
    }

    #[test]
    fn a_tenant_that_stops_rewarding_concurrency_is_given_fewer() {
        let mut pace = Pace::new(4);
        drive(&mut pace, 24, |n| n as f64);
        assert_eq!(pace.requests(), 4);
        let used = drive(&mut pace, 60, |n| 1.0 / n as f64);
        assert_eq!(*used.last().unwrap(), 1, "it steps down a level at a time: {used:?}");
    }

    #[test]
    fn a_pause_of_the_tenant_in_one_batch_does_not_move_the_level() {
        // One core, and every fifth batch takes twice as long (a garbage collection).
        let mut pace = Pace::new(4);
        let mut batch = 0;
        let used = drive(&mut pace, 200, |n| {
            batch += 1;
            let slow = if batch % 5 == 0 { 2.0 } else { 1.0 };
            1.0 / (1.0 + 0.06 * (n as f64 - 1.0)) / slow
        });
        let ones = used.iter().filter(|&&n| n == 1).count();
        assert!(ones >= 180 && !used.contains(&4), "{ones} of 200 at one request: {used:?}");
    }

    #[test]
    fn short_and_empty_batches_measure_nothing() {
        let mut pace = Pace::new(4);
        pace.record(3, 1000, Duration::from_secs(1));
        pace.record(4, 0, Duration::from_secs(1));
        pace.record(4, 1000, Duration::ZERO);
        assert_eq!(pace.requests(), 1);
        assert!(pace.recent.is_empty());
    }
}

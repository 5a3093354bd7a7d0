//! How many `/Bulk` requests the tenant is given at once: as many as make it faster, up to
//! `[sync] concurrency`.
//!
//! A tenant that serves requests in parallel (a hosted service) writes faster the more are in
//! flight; one bound by a single core (a small SCIM server, one Python process) writes slower:
//! its requests only take turns, and each switch costs it CPU (scim2-server took 10.0 s for a
//! 10,000-user full sync at one request at a time and 11.8 s at four). So the applier measures
//! the rate (request bytes per second) of each batch it sends and climbs between the levels 1,
//! 2, 4, … up to the configured concurrency: it starts at one request (a slow start: a tenant
//! that juggles badly is never given the most), tries the level above while that is faster,
//! keeps the fastest (a higher level must be [`MARGIN`] faster: it costs the tenant more), and
//! now and then tries the neighbours of its choice again, as a tenant's speed changes while it
//! fills. Pure: the applier times the batches.

use std::time::Duration;

/// A higher level is chosen only when it is this much faster than a lower one.
const MARGIN: f64 = 1.05;

/// Batches at a settled level before its neighbours are tried again; doubled each time the
/// trial keeps the level (a tenant that rewards concurrency loses little to the trials).
const RECHECK_AFTER: u32 = 8;
const RECHECK_MAX: u32 = 64;

#[derive(Debug)]
pub struct Pace {
    /// Requests in flight the pace may choose, ascending: 1, 2, 4, …, the configured maximum.
    levels: Vec<usize>,
    /// Request bytes per second last seen at each level (`None`: to be tried).
    rates: Vec<Option<f64>>,
    current: usize,
    /// The level settled on once its neighbours were tried.
    chosen: Option<usize>,
    /// Batches since the level settled, and how many before the neighbours are tried again.
    settled: u32,
    recheck: u32,
}

impl Pace {
    pub fn new(max: usize) -> Pace {
        let max = max.max(1);
        let mut levels: Vec<usize> =
            std::iter::successors(Some(1usize), |l| l.checked_mul(2)).take_while(|&l| l < max).collect();
        levels.push(max);
        Pace { rates: vec![None; levels.len()], current: 0, chosen: None, levels, settled: 0, recheck: RECHECK_AFTER }
    }

    /// Requests to send at once now.
    pub fn requests(&self) -> usize {
        self.levels[self.current]
    }

    /// Records a batch of `sent` requests carrying `bytes` in all that were answered in
    /// `elapsed`, and chooses the level of the next batch. A batch short of every level (the
    /// last of a window) says nothing about one and is not counted.
    pub fn record(&mut self, sent: usize, bytes: usize, elapsed: Duration) {
        let Some(at) = self.levels.iter().position(|&l| l == sent) else { return };
        let seconds = elapsed.as_secs_f64();
        if seconds <= 0.0 || bytes == 0 {
            return;
        }
        let rate = bytes as f64 / seconds;
        self.rates[at] = Some(self.rates[at].map_or(rate, |old| (old + rate) / 2.0));
        let best = self.best();
        // An untried neighbour of the best is tried next, the higher one first.
        let untried = [Some(best + 1).filter(|&i| i < self.levels.len()), best.checked_sub(1)]
            .into_iter()
            .flatten()
            .find(|&i| self.rates[i].is_none());
        if let Some(next) = untried {
            self.current = next;
            return;
        }
        if self.chosen != Some(best) {
            let from = self.chosen.map(|c| self.levels[c]);
            tracing::debug!(?from, to = self.levels[best], "/Bulk requests in flight");
            self.chosen = Some(best);
            self.recheck = RECHECK_AFTER;
            self.settled = 0;
        } else if at != best {
            // A trial kept the level: the next one comes later.
            self.recheck = (self.recheck * 2).min(RECHECK_MAX);
            self.settled = 0;
        }
        self.current = best;
        self.settled += 1;
        if self.settled >= self.recheck {
            // Time for a trial: only the level in use keeps its rate, so that no rate seen
            // when the tenant was emptier (faster) decides.
            self.settled = 0;
            for (i, rate) in self.rates.iter_mut().enumerate() {
                if i != best {
                    *rate = None;
                }
            }
        }
    }

    /// The fastest level measured; a higher one wins only by [`MARGIN`].
    fn best(&self) -> usize {
        let mut best: Option<(usize, f64)> = None;
        for (i, rate) in self.rates.iter().enumerate() {
            if let Some(rate) = *rate
                && best.is_none_or(|(_, b)| rate > b * MARGIN)
            {
                best = Some((i, rate));
            }
        }
        best.map_or(self.current, |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `batches` batches against a tenant whose rate at `n` in flight is `rate(n)`,
    /// returning the levels used.
    fn drive(pace: &mut Pace, batches: usize, rate: impl Fn(usize) -> f64) -> Vec<usize> {
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
        let used = drive(&mut pace, 12, |n| 1.0 / (1.0 + 0.06 * (n as f64 - 1.0)));
        assert_eq!(&used[..3], [1, 2, 1], "it tries one more, which is slower");
        assert!(!used.contains(&4), "{used:?}");
        assert_eq!(used[2..].iter().filter(|&&n| n == 2).count(), 1, "one trial of 2 in 10 batches: {used:?}");
    }

    #[test]
    fn a_tenant_that_serves_in_parallel_keeps_every_request_in_flight() {
        let mut pace = Pace::new(4);
        let used = drive(&mut pace, 200, |n| n as f64);
        assert_eq!(&used[..4], [1, 2, 4, 4], "it climbs while that is faster");
        let trials = used[3..].iter().filter(|&&n| n != 4).count();
        assert!(trials <= 5, "the trials get rarer when they keep the level: {trials} in 200");
    }

    #[test]
    fn a_level_only_as_fast_as_a_lower_one_is_not_worth_its_cost() {
        // 2 and 4 in flight are 3 % faster than 1: within the margin, so 1 it is.
        let mut pace = Pace::new(4);
        let used = drive(&mut pace, 4, |n| if n == 1 { 1.0 } else { 1.03 });
        assert_eq!(used, [1, 2, 1, 1]);
    }

    #[test]
    fn a_tenant_whose_speed_changes_is_followed() {
        let mut pace = Pace::new(4);
        drive(&mut pace, 12, |n| 1.0 / n as f64);
        assert_eq!(pace.requests(), 1);
        // It starts serving in parallel (scaled out): a later trial finds it.
        let used = drive(&mut pace, 40, |n| n as f64);
        assert_eq!(*used.last().unwrap(), 4, "{used:?}");
    }

    #[test]
    fn short_and_empty_batches_measure_nothing() {
        let mut pace = Pace::new(4);
        pace.record(3, 1000, Duration::from_secs(1));
        pace.record(4, 0, Duration::from_secs(1));
        pace.record(4, 1000, Duration::ZERO);
        assert_eq!(pace.requests(), 1);
        assert!(pace.rates.iter().all(Option::is_none));
    }
}

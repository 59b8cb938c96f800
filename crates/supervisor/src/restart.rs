//! Restart bookkeeping for one child, kept free of processes and clocks so that it can be
//! tested with made-up instants: the backoff before the next start, and the crash-loop state.
//!
//! - **Backoff**: 250 ms after the first crash, doubling with every further crash up to 30 s;
//!   a child that had been ready for at least 1 s when it died starts over at 250 ms. The
//!   supervisor never stops restarting.
//! - **Crash loop**: `burst` crashes within `window` (the configuration's
//!   `restart_limit_burst` and `restart_limit_interval_secs`) put the child in the crash-loop
//!   state. It stays there, however slowly the backoff now lets it crash, until the child has
//!   been ready continuously for [`RestartTracker::recovery`] (the window, at most 60 s); a
//!   child that served that long is no longer crash-looping, and its crash history starts
//!   afresh.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that had been ready this long when it died starts its backoff over.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// A crash-looping child that has been ready this long (or the whole window, if shorter) is
/// out of the crash loop.
pub const RECOVERY_MAX: Duration = Duration::from_secs(60);

/// What a call changed about the crash-loop state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// The child just entered the crash-loop state.
    CrashLoopBegan,
    /// The child just left it.
    CrashLoopEnded,
}

#[derive(Debug, Clone)]
pub struct RestartTracker {
    burst: usize,
    window: Duration,
    /// Crashes within the last `window` (older ones are dropped as crashes come in).
    crashes: VecDeque<Instant>,
    /// Crashes since the child last served for `HEALTHY_AFTER`.
    consecutive: u32,
    crash_loop_since: Option<Instant>,
}

impl RestartTracker {
    pub fn new(burst: u32, window: Duration) -> RestartTracker {
        RestartTracker {
            burst: burst.max(1) as usize,
            window,
            crashes: VecDeque::new(),
            consecutive: 0,
            crash_loop_since: None,
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// How long a crash-looping child must stay ready for the state to end.
    pub fn recovery(&self) -> Duration {
        self.window.min(RECOVERY_MAX)
    }

    pub fn in_crash_loop(&self) -> bool {
        self.crash_loop_since.is_some()
    }

    pub fn crash_loop_since(&self) -> Option<Instant> {
        self.crash_loop_since
    }

    /// Crashes within the window ending at `now`.
    pub fn crashes_in_window(&self, now: Instant) -> usize {
        self.crashes
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= self.window)
            .count()
    }

    /// Records a crash at `now`. `served` is how long the child had been ready when it died
    /// (`None`: it never became ready). Returns the delay before the next start.
    pub fn crashed(&mut self, now: Instant, served: Option<Duration>) -> (Duration, Change) {
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            self.crashes.pop_front();
        }
        let healthy = served.is_some_and(|d| d >= HEALTHY_AFTER);
        self.consecutive = if healthy { 1 } else { self.consecutive + 1 };
        let delay = (BACKOFF_FIRST * (1u32 << (self.consecutive - 1).min(7))).min(BACKOFF_MAX);
        let change = if self.crash_loop_since.is_none() && self.crashes.len() >= self.burst {
            self.crash_loop_since = Some(now);
            Change::CrashLoopBegan
        } else {
            Change::None
        };
        (delay, change)
    }

    /// When [`RestartTracker::check_recovered`] can next end the crash loop, for a child that
    /// has been ready since `ready_at`; `None` if there is nothing to wait for.
    pub fn recovery_due(&self, ready_at: Option<Instant>) -> Option<Instant> {
        match (self.crash_loop_since, ready_at) {
            (Some(_), Some(r)) => Some(r + self.recovery()),
            _ => None,
        }
    }

    /// Ends the crash loop if the child has been ready since `ready_at` for long enough.
    pub fn check_recovered(&mut self, now: Instant, ready_at: Option<Instant>) -> Change {
        match self.recovery_due(ready_at) {
            Some(due) if due <= now => {
                self.crash_loop_since = None;
                self.crashes.clear();
                Change::CrashLoopEnded
            }
            _ => Change::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_starts_over_after_serving() {
        let t0 = Instant::now();
        let mut r = RestartTracker::new(1000, Duration::from_secs(120));
        // (time of the crash, how long the child had been ready, expected delay)
        let table: &[(u64, Option<u64>, u64)] = &[
            (0, None, 250),
            (300, None, 500),
            (900, Some(200), 1_000), // ready, but not for a second: still backing off
            (2_000, None, 2_000),
            (4_100, None, 4_000),
            (8_200, None, 8_000),
            (16_300, None, 16_000),
            (32_400, None, 30_000),
            (62_500, None, 30_000),
            (92_600, None, 30_000),
            (200_000, Some(5_000), 250), // served 5 s: start over
            (200_300, None, 500),
        ];
        for &(at, served, want) in table {
            let (delay, change) = r.crashed(t0 + ms(at), served.map(ms));
            assert_eq!(delay, ms(want), "crash at {at} ms");
            assert_eq!(change, Change::None);
        }
    }

    #[test]
    fn burst_crashes_in_the_window_begin_a_crash_loop_once() {
        let t0 = Instant::now();
        let mut r = RestartTracker::new(3, Duration::from_secs(60));
        assert_eq!(r.crashed(t0, None).1, Change::None);
        assert_eq!(r.crashed(t0 + ms(1_000), None).1, Change::None);
        assert!(!r.in_crash_loop());
        assert_eq!(r.crashed(t0 + ms(2_000), None).1, Change::CrashLoopBegan);
        assert!(r.in_crash_loop());
        assert_eq!(r.crash_loop_since(), Some(t0 + ms(2_000)));
        // Reported once, however many crashes follow, and it does not end just because the
        // backoff now spreads the crashes thinner than the threshold.
        for i in 1..10u64 {
            let (delay, change) = r.crashed(t0 + ms(2_000 + i * 30_000), None);
            assert_eq!(change, Change::None);
            assert!(delay <= BACKOFF_MAX);
            assert!(r.in_crash_loop());
        }
        assert_eq!(r.crashes_in_window(t0 + ms(2_000 + 9 * 30_000)), 3);
    }

    #[test]
    fn crashes_spread_wider_than_the_window_are_no_crash_loop() {
        let t0 = Instant::now();
        let mut r = RestartTracker::new(3, Duration::from_secs(60));
        for i in 0..10u64 {
            assert_eq!(r.crashed(t0 + ms(i * 31_000), None).1, Change::None);
        }
        assert!(!r.in_crash_loop());
        assert_eq!(r.crashes_in_window(t0 + ms(9 * 31_000)), 2);
    }

    #[test]
    fn the_crash_loop_ends_after_serving_for_the_recovery_time() {
        let t0 = Instant::now();
        let window = Duration::from_secs(120);
        let mut r = RestartTracker::new(2, window);
        r.crashed(t0, None);
        assert_eq!(r.crashed(t0 + ms(500), None).1, Change::CrashLoopBegan);
        assert_eq!(r.recovery(), RECOVERY_MAX);
        // Not ready: nothing to wait for.
        assert_eq!(r.recovery_due(None), None);
        assert_eq!(r.check_recovered(t0 + ms(600_000), None), Change::None);
        let ready = t0 + ms(2_000);
        assert_eq!(r.recovery_due(Some(ready)), Some(ready + RECOVERY_MAX));
        assert_eq!(
            r.check_recovered(ready + RECOVERY_MAX - ms(1), Some(ready)),
            Change::None
        );
        assert!(r.in_crash_loop());
        assert_eq!(
            r.check_recovered(ready + RECOVERY_MAX, Some(ready)),
            Change::CrashLoopEnded
        );
        assert!(!r.in_crash_loop());
        assert_eq!(r.recovery_due(Some(ready)), None);
        assert_eq!(
            r.check_recovered(ready + RECOVERY_MAX * 2, Some(ready)),
            Change::None
        );
        // The history starts afresh: one more crash is not a crash loop again.
        let later = ready + RECOVERY_MAX + ms(1_000);
        assert_eq!(r.crashes_in_window(later), 0);
        let (delay, change) = r.crashed(later, Some(RECOVERY_MAX + ms(1_000)));
        assert_eq!((delay, change), (BACKOFF_FIRST, Change::None));
    }

    #[test]
    fn a_short_window_means_a_short_recovery() {
        let t0 = Instant::now();
        let mut r = RestartTracker::new(1, Duration::from_secs(20));
        assert_eq!(r.crashed(t0, None).1, Change::CrashLoopBegan);
        assert_eq!(r.recovery(), Duration::from_secs(20));
        let ready = t0 + ms(300);
        assert_eq!(
            r.check_recovered(ready + Duration::from_secs(20), Some(ready)),
            Change::CrashLoopEnded
        );
    }
}

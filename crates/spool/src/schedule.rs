//! Retry timing: exponential backoff from `retry_initial_secs`, doubling per attempt, capped at
//! `retry_max_secs`, and never past the message's expiry, so the last attempt happens at the
//! expiry and the bounce follows it rather than a full backoff period later.

/// When to try again after `attempts` failed attempts (counting the one that just failed).
pub fn next_attempt(now: i64, attempts: u32, initial: u64, max: u64, expires_at: i64) -> i64 {
    let exp = attempts.saturating_sub(1).min(32);
    let delay = initial.saturating_mul(1u64 << exp).min(max) as i64;
    (now + delay).min(expires_at.max(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_stops_at_expiry() {
        let t: Vec<i64> = (1..=7)
            .map(|a| next_attempt(0, a, 60, 600, 10_000))
            .collect();
        assert_eq!(t, [60, 120, 240, 480, 600, 600, 600]);
        assert_eq!(next_attempt(9_900, 5, 60, 600, 10_000), 10_000);
        assert_eq!(next_attempt(20_000, 1, 60, 600, 10_000), 20_000);
        assert_eq!(
            next_attempt(0, 200, 60, u64::MAX, i64::MAX),
            (60u64 << 32) as i64
        );
    }
}

//! How long to wait: between StartFlow attempts, and between two polls of a run.

use std::time::Duration;

use jiff::SignedDuration;

use crate::decide::Rules;

/// Capped exponential backoff with "equal jitter": half the delay is fixed, half random. The
/// attempt count lives in the status, so the backoff survives operator restarts.
pub fn retry_delay(rules: &Rules, attempts: u32, jitter: f64) -> SignedDuration {
    let exponent = attempts.saturating_sub(1).min(30);
    let full = rules
        .retry_initial_delay
        .checked_mul(1 << exponent)
        .unwrap_or(rules.retry_max_delay)
        .min(rules.retry_max_delay);
    let half = full / 2;
    let delay = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    // Whole milliseconds: finer is noise, and messages stay readable ("1s 417ms").
    SignedDuration::from_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

/// Polls come quickly while a run is young and slow down as it ages: a quarter of its age,
/// between the initial and the max interval.
pub fn poll_interval(rules: &Rules, age: SignedDuration) -> Duration {
    let interval = (age / 4)
        .max(rules.poll_initial_interval)
        .min(rules.poll_max_interval);
    Duration::try_from(interval).unwrap_or_default()
}

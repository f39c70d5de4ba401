//! Delivery rules with no I/O: how many attempts a job gets and how long each retry waits.

/// A job is tried this many times; then the queue's redrive (maxReceiveCount 3) moves it to
/// the dead-letter queue.
pub const MAX_ATTEMPTS: i64 = 3;
/// Retries never wait longer than this (SQS allows at most 12 hours of visibility).
pub const MAX_DELAY_SECONDS: i64 = 15 * 60;

/// The wait before attempt `attempt + 1`: `base` doubled per attempt made, plus up to a
/// quarter of it at random, so retries of many jobs do not arrive together.
pub fn retry_delay(attempt: i64, base_seconds: i64) -> i32 {
    let jitter = i64::from(shared::crypto::random_bytes::<1>()[0]);
    delay_with(attempt, base_seconds, jitter)
}

fn delay_with(attempt: i64, base_seconds: i64, jitter_byte: i64) -> i32 {
    let doubled = base_seconds.saturating_mul(1 << attempt.clamp(1, 10).saturating_sub(1));
    let spread = doubled / 4 * jitter_byte / 255;
    i32::try_from((doubled + spread).min(MAX_DELAY_SECONDS)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_with_a_little_jitter_and_a_cap() {
        assert_eq!(delay_with(1, 30, 0), 30);
        assert_eq!(delay_with(2, 30, 0), 60);
        assert_eq!(delay_with(3, 30, 0), 120);
        assert_eq!(delay_with(1, 30, 255), 37);
        assert_eq!(delay_with(30, 30, 255), 900);
        assert_eq!(delay_with(2, 0, 255), 0, "tests may retry at once");
        for _ in 0..100 {
            let d = retry_delay(2, 30);
            assert!((60..=75).contains(&d), "{d}");
        }
    }
}

//! Time source, injectable so that lockout windows and token expiry can be tested.

use jiff::{SignedDuration, Timestamp};
use std::sync::Mutex;

/// Where "now" comes from. Production uses [`SystemClock`]; tests use [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Whole seconds since the Unix epoch, the unit stored in the table.
    fn epoch(&self) -> i64 {
        self.now().as_second()
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn starting_now() -> Self {
        Self::new(Timestamp::now())
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.saturating_add(by).unwrap_or(*now);
    }

    pub fn set(&self, to: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Formats an epoch second as an RFC 3339 UTC instant for API responses.
pub fn rfc3339(epoch: i64) -> String {
    Timestamp::from_second(epoch)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(Timestamp::from_second(1_000).unwrap());
        assert_eq!(clock.epoch(), 1_000);
        clock.advance(SignedDuration::from_mins(20));
        assert_eq!(clock.epoch(), 2_200);
    }

    #[test]
    fn formats_utc_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}

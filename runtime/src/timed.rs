//! Values that expire by aside's clock, in moka maps that free them by the real one.

use std::time::{Duration, Instant};

use moka::Expiry;

use crate::clock;

/// A value, how long it lives, and until when by aside's clock.
///
/// Two clocks expire it: moka's own (the real one), which frees the memory,
/// and [`clock::Instant`], checked on every read, which decides what is
/// served. They agree except in a test that paused tokio's clock, where the
/// second one is the one that counts.
#[derive(Debug, Clone)]
pub(crate) struct Timed<T> {
    pub(crate) value: T,
    ttl: Duration,
    until: Option<clock::Instant>,
}

impl<T> Timed<T> {
    pub(crate) fn new(value: T, ttl: Duration) -> Self {
        Timed {
            value,
            ttl,
            until: clock::deadline(ttl),
        }
    }

    pub(crate) fn live(&self) -> bool {
        self.until.is_none_or(|until| clock::Instant::now() < until)
    }

    /// Another value with the same expiry.
    pub(crate) fn with<U>(&self, value: U) -> Timed<U> {
        Timed {
            value,
            ttl: self.ttl,
            until: self.until,
        }
    }

    /// The value, if it has not expired.
    pub(crate) fn live_value(self) -> Option<T> {
        self.live().then_some(self.value)
    }
}

/// Each value expires after its own TTL, and an overwrite restarts the clock.
pub(crate) struct PerValueTtl;

impl<T> Expiry<String, Timed<T>> for PerValueTtl {
    fn expire_after_create(&self, _key: &String, value: &Timed<T>, _at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Timed<T>,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

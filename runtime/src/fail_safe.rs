//! Fail-safe as one value: how long a value is kept to stand in for a
//! failed load, how long a stand-in is served before the next attempt, and
//! how long a caller waits for a slow load that one stands by for.
//!
//! Owns those decisions; knows nothing of the backend or the tier, which
//! the cache's flows ask.

use std::time::Duration;

use crate::clock::duration_ms;
use crate::entry::Meta;

/// Fail-safe: the last good value stands in for a load that fails
/// (`#[cached(fail_safe = "1h", fail_safe_throttle = "10s", soft_timeout = "100ms")]`),
/// given to [`Policy::fail_safe`](crate::Policy::fail_safe).
///
/// - [`keep`](Self::keep): each value is kept that long past its fresh time.
///   A lookup past the fresh time loads as usual (under the policy's
///   stampede protection); if the loader returns an error (a
///   `hard_timeout` is one), the caller gets the last good value instead,
///   counted and traced as [`Outcome::Stale`](crate::stats::Outcome::Stale).
///   Without a value to fall back on (never loaded, or invalidated), the
///   error is returned; an invalidation drops a kept value at once.
/// - [`throttle`](Self::throttle): a value that stood in is fresh again for
///   that long (default [`FailSafe::DEFAULT_THROTTLE`]), in every process
///   sharing the backend: a failing database sees one attempt per key per
///   throttle, not one per request.
/// - [`soft_timeout`](Self::soft_timeout): when a load runs while a kept
///   value stands by, the caller waits that long at most, then gets that
///   value (counted as stale); the load finishes on a task of its own and
///   stores its value when it lands. Callers waiting for that load, in this
///   process or for its lock in another, get the kept value then too. Only
///   a loader that can run on a task of its own can outlast its caller: the
///   caller that runs the load stops waiting for it only under
///   [`Cache::get_or_load_detached`](crate::Cache::get_or_load_detached).
///   Without a kept value (the first load, or after an invalidation), the
///   caller waits for the load; bound that with `hard_timeout`.
///
/// Not for sliding entries, which have no fresh time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aside::{Cache, FailSafe, Policy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let cache = Cache::memory();
/// let policy = Policy::new()
///     .ttl(Duration::from_secs(60))
///     .fail_safe(FailSafe::keep(Duration::from_secs(3600)).throttle(Duration::from_secs(5)));
/// let price = cache.get_or_load("price:7", &policy, || async { Ok::<u32, &str>(10) }).await;
/// tokio::time::advance(Duration::from_secs(61)).await;
/// // The database is down: the last good price stands in.
/// let price = cache.get_or_load("price:7", &policy, || async { Err::<u32, _>("down") }).await;
/// assert_eq!(price, Ok(10));
/// assert_eq!(cache.stats().stale_hits, 1);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailSafe {
    keep: Duration,
    throttle: Duration,
    soft_timeout: Option<Duration>,
}

impl FailSafe {
    /// How long a value that stood in is served before the loader is tried
    /// again, unless [`throttle`](Self::throttle) says: 30 s.
    pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(30);

    /// Keeps each value `keep` past its fresh time, to stand in for a failed
    /// load (`fail_safe = "1h"`).
    ///
    /// # Examples
    ///
    /// ```
    /// let fail_safe = aside::FailSafe::keep(std::time::Duration::from_secs(3600));
    /// assert_eq!(fail_safe.kept(), std::time::Duration::from_secs(3600));
    /// ```
    pub const fn keep(keep: Duration) -> Self {
        FailSafe {
            keep,
            throttle: Self::DEFAULT_THROTTLE,
            soft_timeout: None,
        }
    }

    /// How long a value that stood in is served as fresh before the loader
    /// is tried again (`fail_safe_throttle = "10s"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let fail_safe = aside::FailSafe::keep(Duration::from_secs(3600)).throttle(Duration::from_secs(5));
    /// assert_eq!(fail_safe.throttled(), Duration::from_secs(5));
    /// ```
    pub const fn throttle(mut self, throttle: Duration) -> Self {
        self.throttle = throttle;
        self
    }

    /// How long a caller waits for a load that a kept value stands by for
    /// before it gets that value (`soft_timeout = "100ms"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let fail_safe = aside::FailSafe::keep(Duration::from_secs(3600)).soft_timeout(Duration::from_millis(100));
    /// assert_eq!(fail_safe.soft_timeout_after(), Some(Duration::from_millis(100)));
    /// ```
    pub const fn soft_timeout(mut self, after: Duration) -> Self {
        self.soft_timeout = Some(after);
        self
    }

    /// How long a value is kept past its fresh time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// assert_eq!(aside::FailSafe::keep(Duration::from_secs(9)).kept(), Duration::from_secs(9));
    /// ```
    pub const fn kept(&self) -> Duration {
        self.keep
    }

    /// How long a value that stood in is served before the next attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use aside::FailSafe;
    ///
    /// let fail_safe = FailSafe::keep(std::time::Duration::from_secs(9));
    /// assert_eq!(fail_safe.throttled(), FailSafe::DEFAULT_THROTTLE);
    /// ```
    pub const fn throttled(&self) -> Duration {
        self.throttle
    }

    /// The soft timeout, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aside::FailSafe::keep(std::time::Duration::from_secs(9)).soft_timeout_after(), None);
    /// ```
    pub const fn soft_timeout_after(&self) -> Option<Duration> {
        self.soft_timeout
    }

    /// What a value with `meta` becomes when it stands in for a failed load
    /// at `now` (ms): fresh again for the throttle. `None` while it is still
    /// fresh (an early refresh that failed): it keeps its time.
    pub(crate) fn stand_in(&self, meta: Meta, now: u64) -> Option<Meta> {
        if now < meta.fresh_until_ms {
            return None;
        }
        Some(Meta {
            stored_at_ms: now,
            fresh_until_ms: now.saturating_add(duration_ms(self.throttle)),
            ..meta
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(stored_at_ms: u64, fresh_until_ms: u64) -> Meta {
        Meta {
            stored_at_ms,
            fresh_until_ms,
            ..Meta::default()
        }
    }

    #[test]
    fn a_stand_in_is_fresh_for_the_throttle_from_now() {
        let fail_safe = FailSafe::keep(Duration::from_secs(60)).throttle(Duration::from_secs(5));
        let renewed = fail_safe.stand_in(meta(1_000, 2_000), 3_000).unwrap();
        assert_eq!((renewed.stored_at_ms, renewed.fresh_until_ms), (3_000, 8_000));
    }

    #[test]
    fn a_value_still_fresh_keeps_its_time() {
        let fail_safe = FailSafe::keep(Duration::from_secs(60));
        assert_eq!(fail_safe.stand_in(meta(1_000, 2_000), 1_500), None);
    }
}

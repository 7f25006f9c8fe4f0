//! Stampede protection: what happens when many callers want a value that is
//! missing or about to expire. See [`Stampede`].

use std::time::Duration;

/// How long an early entry stays in the backend past its TTL: as long as a
/// refresh may hold its lock. A refresh that started just before expiry can
/// finish meanwhile, and readers are served the current value, not a miss.
pub(crate) const REFRESH_GRACE: Duration = Stampede::DEFAULT_LOCK_TTL;

/// The stampede protection of a call.
///
/// | mode | on a miss | near or past expiry |
/// |---|---|---|
/// | [`Stampede::Lock`] (default) | in-process coalescing, then one caller across all processes takes a lock in the backend and loads; the others wait for its value (at most `lock_wait`), then load themselves rather than fail | plain expiry |
/// | [`Stampede::Swr`] | in-process coalescing | for `stale` after the TTL the old value is served at once while one caller (across processes, under a refresh lock) reloads it; if that fails, the old value stays |
/// | [`Stampede::Early`] | in-process coalescing | XFetch: a reader recomputes before expiry, with a probability that rises as expiry nears and with what a refresh costs; one caller across processes refreshes, under a refresh lock. Past the TTL the entry is kept for the lock's TTL, served while a refresh runs |
/// | [`Stampede::None`] | every caller loads | plain expiry |
///
/// A refresh (swr, early) runs on the caller that wins it, so the function
/// needs no `'static` bound: that caller waits for the load and gets the new
/// value; every other caller is answered from the cache at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aside::{Policy, Stampede};
///
/// let policy = Policy::new()
///     .ttl(Duration::from_secs(60))
///     .stampede(Stampede::Swr { stale: Duration::from_secs(600) });
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Stampede {
    /// One load across all processes, under a lock in the backend.
    Lock {
        /// How long the lock is held at most if its holder dies.
        lock_ttl: Duration,
        /// How long other callers wait for the holder's value.
        lock_wait: Duration,
    },
    /// Stale-while-revalidate: serve the old value for `stale` after the TTL
    /// while one caller refreshes it.
    Swr {
        /// How long past its TTL a value is still served.
        stale: Duration,
    },
    /// Probabilistic early recomputation (XFetch, Vattani et al., VLDB 2015).
    Early {
        /// Higher recomputes earlier; 1.0 is the paper's choice.
        beta: f64,
    },
    /// No coalescing and no lock: every caller that misses loads.
    None,
}

impl Stampede {
    /// How long a stampede or refresh lock is held at most, if its holder
    /// never releases it (it crashed): 10 s.
    pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(10);
    /// How long callers wait for another process's load before loading
    /// themselves: 5 s.
    pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5);
    /// How long past its TTL an swr entry is still served, when `stale` is
    /// not given: 10 minutes.
    pub const DEFAULT_STALE: Duration = Duration::from_secs(600);
    /// XFetch's `beta`: 1.0, as the paper recommends.
    pub const DEFAULT_BETA: f64 = 1.0;
}

impl Default for Stampede {
    fn default() -> Self {
        Stampede::Lock {
            lock_ttl: Stampede::DEFAULT_LOCK_TTL,
            lock_wait: Stampede::DEFAULT_LOCK_WAIT,
        }
    }
}

/// XFetch: recompute now if `now - load_time * beta * ln(u) >= expiry`, with
/// `u` uniform in (0, 1]. The closer the expiry and the longer the load, the
/// likelier.
pub(crate) fn recompute_early(now_ms: u64, expiry_ms: u64, load_time: Duration, beta: f64, u: f64) -> bool {
    let gap_ms = expiry_ms.saturating_sub(now_ms) as f64;
    let delta_ms = load_time.as_secs_f64() * 1000.0;
    delta_ms * beta * -u.max(f64::MIN_POSITIVE).ln() >= gap_ms
}

/// `ttl` spread uniformly by up to `± jitter` of itself (`u` uniform in
/// [0, 1)); never zero, and `ttl` itself where the product would not fit.
pub(crate) fn jittered(ttl: Duration, jitter: f64, u: f64) -> Duration {
    if jitter.is_nan() || jitter <= 0.0 {
        return ttl;
    }
    let factor = 1.0 + jitter.min(MAX_JITTER) * (2.0 * u - 1.0);
    Duration::try_from_secs_f64(ttl.as_secs_f64() * factor)
        .unwrap_or(ttl)
        .max(Duration::from_millis(1))
}

/// The largest jitter share: TTLs may shrink to a tenth, no further.
pub(crate) const MAX_JITTER: f64 = 0.9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfetch_recomputes_more_often_as_expiry_nears() {
        let load = Duration::from_millis(50);
        let share = |gap_ms: u64| {
            let hits = (1..=1000)
                .filter(|i| recompute_early(0, gap_ms, load, 1.0, *i as f64 / 1000.0))
                .count();
            hits as f64 / 1000.0
        };
        assert!(share(1_000) < 0.01, "far from expiry: almost never");
        assert!(
            (share(50) - (-1.0f64).exp()).abs() < 0.01,
            "one load time away: e^-1"
        );
        assert!(share(0) == 1.0, "at expiry: always");
        assert!(share(10) > share(100));
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let ttl = Duration::from_secs(100);
        assert_eq!(jittered(ttl, 0.0, 0.3), ttl);
        assert_eq!(jittered(ttl, 0.1, 0.0), Duration::from_secs(90));
        assert_eq!(jittered(ttl, 0.1, 0.5), ttl);
        assert!(jittered(ttl, 0.1, 0.999_999) <= Duration::from_secs(110));
    }

    #[test]
    fn jitter_never_panics_or_zeroes() {
        assert_eq!(jittered(Duration::MAX, 0.1, 0.999), Duration::MAX);
        assert_eq!(
            jittered(Duration::from_secs(1), f64::NAN, 0.5),
            Duration::from_secs(1)
        );
        assert!(jittered(Duration::from_millis(1), 1.0, 0.0) >= Duration::from_millis(1));
    }
}

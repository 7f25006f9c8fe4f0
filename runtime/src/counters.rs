//! Counters for what the cache did.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::stats::BreakerState;

/// A snapshot of a cache's counters, from [`Cache::stats`](crate::Cache::stats).
///
/// Every lookup through [`Cache::get_or_load`](crate::Cache::get_or_load) ends
/// as exactly one of a hit (`hits`, of which `negative_hits` found a cached
/// `None` and `stale_hits` a value past its fresh time), a coalesced wait on another caller's load (`coalesced`), a
/// miss (`misses`), or a call that skipped the lookup on purpose
/// (`bypassed`: under [`bypass`](crate::bypass) or [`refresh`](crate::refresh)). `loads` counts loader runs; `errors` counts backend
/// operations that failed or timed out; `corrupt` counts stored entries that
/// did not decode and were treated as misses.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = aside::Cache::memory();
/// let stats = cache.stats();
/// assert_eq!(stats.hits + stats.misses, 0);
/// assert_eq!(stats.hit_ratio(), 0.0);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups answered from the cache, negative hits included.
    pub hits: u64,
    /// Hits that found a cached negative result (`None`).
    pub negative_hits: u64,
    /// Hits served past the value's fresh time: in `swr`'s stale window,
    /// under `early` while another caller refreshes it, or standing in for
    /// a failed load ([fail-safe](crate::Policy::fail_safe)).
    pub stale_hits: u64,
    /// Hits answered by the typed in-process tier, without the backend (a
    /// part of `hits`; the rest came from the backend).
    pub l1_hits: u64,
    /// Lookups that found nothing usable and went on to load.
    pub misses: u64,
    /// Callers that waited for another caller's in-flight load instead of loading.
    pub coalesced: u64,
    /// Calls that skipped the lookup on purpose: run under
    /// [`bypass`](crate::bypass) or [`refresh`](crate::refresh).
    pub bypassed: u64,
    /// Times a loader ran.
    pub loads: u64,
    /// Backend operations that failed or timed out (the call still succeeded).
    pub errors: u64,
    /// Stored entries that failed to decode (or, in process, held a value of
    /// another type) and were treated as misses.
    pub corrupt: u64,
    /// Loaded values not cached because they were larger, encoded, than
    /// [`CacheBuilder::max_entry_size`](crate::CacheBuilder::max_entry_size).
    pub oversized: u64,
    /// Callers waiting right now for another caller's load (a gauge, not a counter).
    pub waiting: u64,
    /// Times a `Stampede::Lock` caller found the lock held and waited.
    pub lock_waits: u64,
    /// Refreshes run (swr past the TTL, early by XFetch, and calls under
    /// [`refresh`](crate::refresh)).
    pub refreshes: u64,
    /// Refreshes whose loader failed; the current value was kept.
    pub refresh_errors: u64,
    /// Backend operations skipped because the circuit breaker was open.
    pub short_circuited: u64,
    /// The circuit breaker's state when the snapshot was taken.
    pub breaker: BreakerState,
    /// Changes not yet flushed in this cache's write-behind logs, when last
    /// seen by this process (see [`WriteBehindStats`](crate::write_behind::WriteBehindStats)).
    pub backlog: u64,
    /// Invalidations that met a failing backend and wait to be replayed
    /// when it answers again (a gauge; see [`Cache::replay_pending`](crate::Cache::replay_pending)).
    pub pending: u64,
    /// Invalidations replayed after the backend answered again.
    pub replayed: u64,
    /// Times the pending invalidations outgrew
    /// [`CacheBuilder::max_pending`](crate::CacheBuilder::max_pending) and
    /// became one clear of the namespace.
    pub overflows: u64,
}

impl Stats {
    /// What happened between `earlier` (a snapshot of the same cache) and
    /// this snapshot: every counter's difference. `waiting`, `breaker`,
    /// `backlog` and `pending`, states rather than counters, are this snapshot's.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache = aside::Cache::memory();
    /// let before = cache.stats();
    /// let _ = cache.get_or_load("k", &aside::Policy::new(), || async { Ok::<_, ()>(1) }).await;
    /// assert_eq!(cache.stats().since(&before).loads, 1);
    /// # }
    /// ```
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            hits: self.hits.saturating_sub(earlier.hits),
            negative_hits: self.negative_hits.saturating_sub(earlier.negative_hits),
            stale_hits: self.stale_hits.saturating_sub(earlier.stale_hits),
            l1_hits: self.l1_hits.saturating_sub(earlier.l1_hits),
            misses: self.misses.saturating_sub(earlier.misses),
            coalesced: self.coalesced.saturating_sub(earlier.coalesced),
            bypassed: self.bypassed.saturating_sub(earlier.bypassed),
            loads: self.loads.saturating_sub(earlier.loads),
            errors: self.errors.saturating_sub(earlier.errors),
            corrupt: self.corrupt.saturating_sub(earlier.corrupt),
            oversized: self.oversized.saturating_sub(earlier.oversized),
            waiting: self.waiting,
            lock_waits: self.lock_waits.saturating_sub(earlier.lock_waits),
            refreshes: self.refreshes.saturating_sub(earlier.refreshes),
            refresh_errors: self.refresh_errors.saturating_sub(earlier.refresh_errors),
            short_circuited: self.short_circuited.saturating_sub(earlier.short_circuited),
            breaker: self.breaker,
            backlog: self.backlog,
            pending: self.pending,
            replayed: self.replayed.saturating_sub(earlier.replayed),
            overflows: self.overflows.saturating_sub(earlier.overflows),
        }
    }

    /// Hits over all lookups (`hits / (hits + misses + coalesced)`), 0 when there were none.
    pub fn hit_ratio(&self) -> f64 {
        hit_ratio(self.hits, self.coalesced, self.misses)
    }
}

/// `hits / (hits + coalesced + misses)`, 0 when there were no lookups: the
/// ratio of [`Stats`] and of [`FunctionStats`](crate::stats::FunctionStats).
pub(crate) fn hit_ratio(hits: u64, coalesced: u64, misses: u64) -> f64 {
    let lookups = hits + coalesced + misses;
    if lookups == 0 {
        0.0
    } else {
        hits as f64 / lookups as f64
    }
}

/// The live counters of lookups' outcomes, for a cache and for a function:
/// each lookup counts one [`Outcome`]; negative and stale hits are hits too.
#[derive(Debug, Default)]
pub(crate) struct OutcomeCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) stale_hits: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) bypassed: AtomicU64,
}

impl OutcomeCounters {
    /// Nothing counted yet (for a `static`).
    pub(crate) const fn new() -> Self {
        OutcomeCounters {
            hits: AtomicU64::new(0),
            negative_hits: AtomicU64::new(0),
            stale_hits: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
        }
    }

    /// Counts one lookup's outcome.
    pub(crate) fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Hit => &self.hits,
            Outcome::Negative => {
                Counters::incr(&self.hits);
                &self.negative_hits
            }
            Outcome::Stale => {
                Counters::incr(&self.hits);
                &self.stale_hits
            }
            Outcome::Coalesced => &self.coalesced,
            Outcome::Miss => &self.misses,
            Outcome::Bypass => &self.bypassed,
        };
        Counters::incr(counter);
    }
}

/// What one lookup came to: exactly one of these per call of a cached
/// function. Spans record it as their `outcome` field and metrics label by it
/// (see [`as_str`](Outcome::as_str)).
///
/// # Examples
///
/// ```
/// assert_eq!(aside::stats::Outcome::Stale.as_str(), "stale");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// A fresh value from the cache.
    Hit,
    /// A cached negative result (`None`).
    Negative,
    /// A value past its fresh time, served while it is refreshed.
    Stale,
    /// Another caller's load of the same key, waited for: joined in this
    /// process, or found once another process's lock was released.
    Coalesced,
    /// Nothing usable: the loader ran.
    Miss,
    /// The lookup was skipped on purpose: a [`bypass`](crate::bypass) or
    /// [`refresh`](crate::refresh) scope. (With caching off, each call is a miss.)
    Bypass,
}

impl Outcome {
    /// Every outcome, in the order above.
    pub const ALL: [Outcome; 6] = [
        Outcome::Hit,
        Outcome::Negative,
        Outcome::Stale,
        Outcome::Coalesced,
        Outcome::Miss,
        Outcome::Bypass,
    ];

    /// Its name in spans and metric labels: `hit`, `negative`, `stale`,
    /// `coalesced`, `miss` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Negative => "negative",
            Outcome::Stale => "stale",
            Outcome::Coalesced => "coalesced",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
        }
    }
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Every outcome but the in-process tier's fresh hits, which count in
    /// `l1_hits` alone (see [`count_in_process`](Self::count_in_process)).
    pub(crate) outcomes: OutcomeCounters,
    pub(crate) l1_hits: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) waiting: AtomicU64,
    pub(crate) lock_waits: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) refresh_errors: AtomicU64,
    pub(crate) short_circuited: AtomicU64,
}

impl Counters {
    pub(crate) fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a caller in `gauge` until the returned guard is dropped.
    pub(crate) fn enter(gauge: &AtomicU64) -> impl Drop + '_ {
        struct Exit<'a>(&'a AtomicU64);
        impl Drop for Exit<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Relaxed);
            }
        }
        gauge.fetch_add(1, Relaxed);
        Exit(gauge)
    }

    /// Counts a hit the in-process tier answered, fresh: in `l1_hits`
    /// alone, which [`snapshot`](Self::snapshot) adds to `hits` (one
    /// increment fewer on the hottest path).
    pub(crate) fn count_in_process(&self, outcome: Outcome) {
        Counters::incr(&self.l1_hits);
        match outcome {
            Outcome::Negative => Counters::incr(&self.outcomes.negative_hits),
            Outcome::Stale => Counters::incr(&self.outcomes.stale_hits),
            _ => {}
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let l1_hits = self.l1_hits.load(Relaxed);
        Stats {
            hits: self.outcomes.hits.load(Relaxed).saturating_add(l1_hits),
            negative_hits: self.outcomes.negative_hits.load(Relaxed),
            stale_hits: self.outcomes.stale_hits.load(Relaxed),
            l1_hits,
            misses: self.outcomes.misses.load(Relaxed),
            coalesced: self.outcomes.coalesced.load(Relaxed),
            bypassed: self.outcomes.bypassed.load(Relaxed),
            loads: self.loads.load(Relaxed),
            errors: self.errors.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
            waiting: self.waiting.load(Relaxed),
            lock_waits: self.lock_waits.load(Relaxed),
            refreshes: self.refreshes.load(Relaxed),
            refresh_errors: self.refresh_errors.load(Relaxed),
            short_circuited: self.short_circuited.load(Relaxed),
            breaker: BreakerState::Closed,
            backlog: 0,
            pending: 0,
            replayed: 0,
            overflows: 0,
        }
    }
}

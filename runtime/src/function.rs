//! Statistics per cached function: what an operator asks first ("what is
//! the hit rate of *this* function, and what does a miss cost?").
//!
//! Each `#[cached]`, `#[cache_put]` and `#[invalidate]` function has a
//! `static` [`Function`] that its calls count into, whatever [`Cache`](crate::Cache)
//! they use; [`function_stats`] lists those that have been called. The
//! macro names it `module::path::function`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::codec::Codec;
use crate::counters::{Outcome, OutcomeCounters};
use crate::metrics::FunctionMetrics;

/// A cached function, as its statistics, spans and metrics name it.
///
/// The attributes make one for every function they annotate; a program
/// calling [`Cache::get_or_load`](crate::Cache::get_or_load) itself can make
/// its own and name it in the [`Policy`](crate::Policy).
///
/// # Examples
///
/// ```
/// use aside::{Cache, Function, Policy};
///
/// static USER: Function = Function::new("users::get");
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::memory();
/// let policy = Policy::new().function(&USER);
/// for _ in 0..3 {
///     let _ = cache.get_or_load("user:1", &policy, || async { Ok::<_, ()>("ada".to_owned()) }).await;
/// }
/// let stats = USER.stats();
/// assert_eq!((stats.name, stats.misses, stats.hits), ("users::get", 1, 2));
/// # }
/// ```
#[derive(Debug)]
pub struct Function {
    name: &'static str,
    /// The key template, as written (`product:<id>`), for [`check_keys`](crate::check_keys).
    key_template: Option<&'static str>,
    /// The type of the values it stores, from its first store on.
    value_type: OnceLock<&'static str>,
    registered: AtomicBool,
    counters: FunctionCounters,
    /// Its metrics' handles, registered at its first count.
    metrics: OnceLock<FunctionMetrics>,
    /// How long its last encoded value was, in bytes: what the next one is
    /// encoded into at first.
    encoded_size: AtomicUsize,
}

/// The live counters of a [`Function`].
#[derive(Debug)]
struct FunctionCounters {
    outcomes: OutcomeCounters,
    loads: AtomicU64,
    load_errors: AtomicU64,
    load_nanos: AtomicU64,
    refreshes: AtomicU64,
    refresh_errors: AtomicU64,
    corrupt: AtomicU64,
    timeouts: AtomicU64,
    oversized: AtomicU64,
    collisions: AtomicU64,
}

const fn zero() -> AtomicU64 {
    AtomicU64::new(0)
}

/// The functions that have counted something, for [`function_stats`].
static REGISTRY: Mutex<Vec<&'static Function>> = Mutex::new(Vec::new());

/// The functions that have counted something so far.
pub(crate) fn registered() -> Vec<&'static Function> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

impl Function {
    /// A function named `name`, with nothing counted yet. For a `static`.
    pub const fn new(name: &'static str) -> Self {
        Function {
            name,
            key_template: None,
            value_type: OnceLock::new(),
            registered: AtomicBool::new(false),
            counters: FunctionCounters {
                outcomes: OutcomeCounters::new(),
                loads: zero(),
                load_errors: zero(),
                load_nanos: zero(),
                refreshes: zero(),
                refresh_errors: zero(),
                corrupt: zero(),
                timeouts: zero(),
                oversized: zero(),
                collisions: zero(),
            },
            metrics: OnceLock::new(),
            encoded_size: AtomicUsize::new(Codec::FIRST_ROOM),
        }
    }

    /// The function's key template, as written: what
    /// [`check_keys`](crate::check_keys) compares. Set by the attributes.
    #[doc(hidden)]
    pub const fn key_template_is(mut self, template: &'static str) -> Self {
        self.key_template = Some(template);
        self
    }

    /// The function's name: `module::path::function` for an annotated one.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its metrics' handles (nothing without the `metrics` feature).
    pub(crate) fn metrics(&'static self) -> &'static FunctionMetrics {
        FunctionMetrics::of(&self.metrics, self.name)
    }

    pub(crate) fn key_template(&self) -> Option<&'static str> {
        self.key_template
    }

    /// The type of the values it stores, once it has stored one.
    pub(crate) fn value_type(&self) -> Option<&'static str> {
        self.value_type.get().copied()
    }

    /// It stores values of type `name`.
    pub(crate) fn stores(&'static self, name: &'static str) {
        if self.value_type.get().is_none() {
            let _ = self.value_type.set(name);
            self.register();
        }
    }

    /// The room its next value is encoded into at first: its last value's
    /// length.
    pub(crate) fn encoded_size(&self) -> usize {
        self.encoded_size.load(Relaxed)
    }

    /// It encoded a value `len` bytes long. Kept between the codec's first
    /// room (so that a small value, a `None`, leaves the next no worse off
    /// than without) and 64 KiB (so that one large value does not make
    /// every later one reserve as much).
    pub(crate) fn encoded(&self, len: usize) {
        self.encoded_size
            .store(len.clamp(Codec::FIRST_ROOM, 64 << 10), Relaxed);
    }

    /// It read an entry another function wrote with another type.
    pub(crate) fn collided(&'static self) {
        self.counters.collisions.fetch_add(1, Relaxed);
    }

    /// A snapshot of what this function's calls did, through every cache.
    pub fn stats(&self) -> FunctionStats {
        let c = &self.counters;
        FunctionStats {
            name: self.name,
            hits: c.outcomes.hits.load(Relaxed),
            negative_hits: c.outcomes.negative_hits.load(Relaxed),
            stale_hits: c.outcomes.stale_hits.load(Relaxed),
            coalesced: c.outcomes.coalesced.load(Relaxed),
            misses: c.outcomes.misses.load(Relaxed),
            bypassed: c.outcomes.bypassed.load(Relaxed),
            loads: c.loads.load(Relaxed),
            load_errors: c.load_errors.load(Relaxed),
            load_time: Duration::from_nanos(c.load_nanos.load(Relaxed)),
            refreshes: c.refreshes.load(Relaxed),
            refresh_errors: c.refresh_errors.load(Relaxed),
            corrupt: c.corrupt.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            oversized: c.oversized.load(Relaxed),
            collisions: c.collisions.load(Relaxed),
        }
    }

    /// Listed by [`function_stats`] from its first count on.
    fn register(&'static self) {
        if !self.registered.load(Relaxed) && !self.registered.swap(true, Relaxed) {
            REGISTRY.lock().unwrap_or_else(PoisonError::into_inner).push(self);
        }
    }

    pub(crate) fn outcome(&'static self, outcome: Outcome) {
        self.register();
        self.counters.outcomes.count(outcome);
        self.metrics().outcome(outcome);
    }

    /// A loader ran for `took`, and succeeded or not.
    pub(crate) fn loaded(&'static self, took: Duration, ok: bool) {
        self.register();
        let c = &self.counters;
        c.loads.fetch_add(1, Relaxed);
        c.load_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        if !ok {
            c.load_errors.fetch_add(1, Relaxed);
        }
        self.metrics().load(took, ok);
    }

    pub(crate) fn refreshed(&'static self) {
        self.counters.refreshes.fetch_add(1, Relaxed);
        self.metrics().refresh(false);
    }

    pub(crate) fn refresh_failed(&'static self) {
        self.counters.refresh_errors.fetch_add(1, Relaxed);
        self.metrics().refresh(true);
    }

    /// A load gave up at its `hard_timeout`.
    pub(crate) fn timed_out(&'static self) {
        self.register();
        self.counters.timeouts.fetch_add(1, Relaxed);
        self.metrics().timeout();
    }

    /// A loaded value was too large to cache.
    pub(crate) fn oversized(&'static self) {
        self.counters.oversized.fetch_add(1, Relaxed);
        self.metrics().oversized();
    }

    pub(crate) fn corrupt(&'static self) {
        self.register();
        self.counters.corrupt.fetch_add(1, Relaxed);
        self.metrics().corrupt();
    }
}

/// A snapshot of one function's counters, from [`Function::stats`] or
/// [`function_stats`]. The lookups add up as in [`Stats`](crate::stats::Stats):
/// each call is exactly one of a hit (`hits`, of which `negative_hits` found
/// a cached `None` and `stale_hits` a value past its fresh time), coalesced,
/// a miss, or bypassed.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// #[aside::cached(key = "square:<n>", ttl = "1m")]
/// async fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// square(3).await;
/// square(3).await;
/// let stats = aside::stats::function_stats()
///     .into_iter()
///     .find(|f| f.name.ends_with("::square"))
///     .unwrap();
/// assert_eq!((stats.calls(), stats.hits, stats.hit_ratio()), (2, 1, 0.5));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's name: `module::path::function`.
    pub name: &'static str,
    /// Calls answered from the cache, negative and stale hits included.
    pub hits: u64,
    /// Hits that found a cached negative result (`None`).
    pub negative_hits: u64,
    /// Hits served past the value's fresh time (`swr`'s stale window, or
    /// `early` while another caller refreshes).
    pub stale_hits: u64,
    /// Calls that waited for another caller's load of the same key.
    pub coalesced: u64,
    /// Calls that found nothing usable and loaded.
    pub misses: u64,
    /// Calls that skipped the lookup on purpose: under a
    /// [`bypass`](crate::bypass) or [`refresh`](crate::refresh) scope.
    pub bypassed: u64,
    /// Times the function's body ran as a loader (misses and refreshes).
    pub loads: u64,
    /// Loads that returned an error (or panicked).
    pub load_errors: u64,
    /// The time all those loads took.
    pub load_time: Duration,
    /// Refreshes of a value due for one.
    pub refreshes: u64,
    /// Refreshes whose load failed.
    pub refresh_errors: u64,
    /// Entries of this function that did not decode: read as misses.
    pub corrupt: u64,
    /// Loads that gave up at the function's `hard_timeout` (also in `load_errors`).
    pub timeouts: u64,
    /// Loaded values too large to cache (`CacheBuilder::max_entry_size`).
    pub oversized: u64,
    /// Entries it read that another function wrote with a value of another
    /// type, under a key both templates give (logged once per pair, see
    /// [`check_keys`](crate::check_keys)). Also counted in `corrupt`.
    pub collisions: u64,
}

impl FunctionStats {
    /// Every call: hits, coalesced, misses and bypassed.
    pub fn calls(&self) -> u64 {
        self.hits + self.coalesced + self.misses + self.bypassed
    }

    /// Hits over lookups (`hits / (hits + coalesced + misses)`), 0 when there were none.
    pub fn hit_ratio(&self) -> f64 {
        crate::counters::hit_ratio(self.hits, self.coalesced, self.misses)
    }

    /// The mean time of a load, zero when none ran.
    pub fn mean_load_time(&self) -> Duration {
        match u32::try_from(self.loads) {
            Ok(0) => Duration::ZERO,
            Ok(loads) => self.load_time / loads,
            Err(_) => Duration::from_nanos(
                u64::try_from(self.load_time.as_nanos() / u128::from(self.loads)).unwrap_or(u64::MAX),
            ),
        }
    }
}

/// A snapshot of every [`Function`] called so far in this process, sorted by
/// name: statistics per function, beside a cache's totals in
/// [`Cache::stats`](crate::Cache::stats).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// #[aside::cached(key = "double:<n>", ttl = "1m")]
/// async fn double(n: u64) -> u64 {
///     n * 2
/// }
///
/// double(1).await;
/// for f in aside::stats::function_stats() {
///     println!("{:<40} {:>6} calls {:>5.1}% hits", f.name, f.calls(), f.hit_ratio() * 100.0);
/// }
/// # }
/// ```
pub fn function_stats() -> Vec<FunctionStats> {
    let functions = registered();
    let mut stats: Vec<FunctionStats> = functions.iter().map(|f| f.stats()).collect();
    stats.sort_by_key(|f| f.name);
    stats
}

#[cfg(test)]
mod tests {
    use super::Function;

    #[test]
    fn the_next_value_gets_the_last_ones_room_from_128_bytes_to_64_kib() {
        static F: Function = Function::new("tests::sized");
        assert_eq!(F.encoded_size(), 128);
        F.encoded(865);
        assert_eq!(F.encoded_size(), 865);
        F.encoded(10 << 20);
        assert_eq!(F.encoded_size(), 64 << 10);
        F.encoded(4);
        assert_eq!(F.encoded_size(), 128);
    }
}

//! Per-call escape hatches, set for a future rather than threaded through
//! every signature: skip the cache, or refresh it, for the cached calls
//! that future makes; and a cache standing in for the global one.

use std::future::Future;
use std::ops::Deref;

use crate::cache::scoped::{self, Mode};
use crate::cache::Cache;

/// Runs `calls` with every cached call it makes skipping the cache: each
/// runs its function and returns the result, reading and writing nothing.
/// Calls made inside those functions cache as usual. Only lookups
/// (`#[cached]`, [`Cache::get_or_load`]) are affected: writes
/// (`#[cache_put]`, `#[invalidate]`, [`Cache::put`]) write as always.
///
/// Counted in [`Stats::bypassed`](crate::stats::Stats::bypassed). The scope covers
/// the future itself, not tasks it spawns.
///
/// # Examples
///
/// ```
/// use aside::Cache;
///
/// #[aside::cached(cache = cache, key = "balance:<account>")]
/// async fn balance(cache: &Cache, account: u64) -> u64 {
///     account * 100 // the slow query
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::memory();
/// // A payment page wants the balance as it is now, not as cached.
/// let now = aside::bypass(balance(&cache, 7)).await;
/// assert_eq!(now, 700);
/// assert_eq!(cache.stats().bypassed, 1);
/// # }
/// ```
pub async fn bypass<F: Future>(calls: F) -> F::Output {
    scoped::with_mode(Mode::Bypass, calls).await
}

/// Runs `calls` with every cached call it makes refreshing its entry: each
/// invalidates the entry (so that no load that started before can store
/// after it), runs its function, stores the value and returns it. While it
/// runs, other callers miss as after any invalidation; if it fails, the
/// entry stays invalidated and the error is returned. Calls made inside
/// those functions cache as usual; writes are not affected (see [`bypass`]).
///
/// Counted in [`Stats::bypassed`](crate::stats::Stats::bypassed) and
/// [`Stats::refreshes`](crate::stats::Stats::refreshes) (a failure also in
/// [`Stats::refresh_errors`](crate::stats::Stats::refresh_errors)).
///
/// # Examples
///
/// ```
/// use aside::Cache;
///
/// #[aside::cached(cache = cache, key = "rate:<currency>")]
/// async fn rate(cache: &Cache, currency: &str) -> f64 {
///     1.08 // the slow query
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::memory();
/// // After an admin changed the rate: load it now, and cache the new one.
/// aside::refresh(rate(&cache, "EUR")).await;
/// rate(&cache, "EUR").await; // a hit on the refreshed value
/// assert_eq!((cache.stats().refreshes, cache.stats().hits), (1, 1));
/// # }
/// ```
pub async fn refresh<F: Future>(calls: F) -> F::Output {
    scoped::with_mode(Mode::Refresh, calls).await
}

/// Runs `calls` with `cache` standing in for the [`global`](crate::global)
/// cache: every `#[cached]` function without `cache = ...` uses it. For
/// tests, each with a cache of its own ([`Cache::memory`], or
/// [`Cache::disabled`] to run every function), side by side in one process.
///
/// The scope covers the future itself, not tasks it spawns.
///
/// # Examples
///
/// ```
/// #[aside::cached(key = "answer")]
/// async fn answer() -> u32 {
///     42
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = aside::Cache::memory();
/// aside::with_global(cache.clone(), async {
///     answer().await;
///     answer().await;
/// })
/// .await;
/// assert_eq!((cache.stats().loads, cache.stats().hits), (1, 1));
/// # }
/// ```
pub async fn with_global<F: Future>(cache: Cache, calls: F) -> F::Output {
    scoped::with_cache(cache, calls).await
}

/// The cache `#[cached]` uses without `cache = ...`: the one of an
/// enclosing [`with_global`], else the global one.
pub enum Current {
    /// The global cache.
    Global(&'static Cache),
    /// A cache set by [`with_global`].
    Scoped(Cache),
}

impl Deref for Current {
    type Target = Cache;

    fn deref(&self) -> &Cache {
        match self {
            Current::Global(cache) => cache,
            Current::Scoped(cache) => cache,
        }
    }
}

/// See [`Current`].
pub fn current() -> Current {
    match scoped::cache() {
        Some(cache) => Current::Scoped(cache),
        None => Current::Global(crate::global()),
    }
}

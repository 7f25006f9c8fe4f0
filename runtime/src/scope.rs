//! Per-call escape hatches, set for a future rather than threaded through
//! every signature: skip the cache, or refresh it, for the cached calls
//! that future makes; and a cache standing in for the global one.

use std::cell::Cell;
use std::future::Future;
use std::ops::Deref;

use crate::Cache;

/// What the cached calls of a scope do instead of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Lookup,
    /// Run the function; read and write nothing.
    Bypass,
    /// Run the function and store its value, as a write-through does.
    Refresh,
}

tokio::task_local! {
    // A cell, so that a loader's polls can run with plain lookups and the
    // scope's mode be put back after each (see `lookups_only`).
    static MODE: Cell<Mode>;
    static GLOBAL: Cache;
}

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
    MODE.scope(Cell::new(Mode::Bypass), calls).await
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
    MODE.scope(Cell::new(Mode::Refresh), calls).await
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
    GLOBAL.scope(cache, calls).await
}

/// What the cached calls here do. A function's own calls run in
/// [`Mode::Lookup`]: see [`lookups_only`].
pub(crate) fn mode() -> Mode {
    MODE.try_with(Cell::get).unwrap_or(Mode::Lookup)
}

/// Sets plain lookups for one poll of a loader: a scope applies to the
/// calls it makes, not to the calls their loaders make. Returns the mode to
/// put back with [`restore`] once the poll is over. Not generic, so that
/// it is compiled once rather than per loader.
pub(crate) fn lookups_only() -> Mode {
    MODE.try_with(|mode| mode.replace(Mode::Lookup))
        .unwrap_or(Mode::Lookup)
}

/// Puts back the mode [`lookups_only`] replaced.
pub(crate) fn restore(mode: Mode) {
    let _ = MODE.try_with(|cell| cell.set(mode));
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

/// `fut` under the same scoped global cache as the caller, if any: for a
/// task it spawns (a load in the background), which task-locals do not reach.
pub(crate) fn carried<F: std::future::Future>(fut: F) -> impl std::future::Future<Output = F::Output> {
    let scoped = GLOBAL.try_with(Cache::clone).ok();
    async move {
        match scoped {
            Some(cache) => GLOBAL.scope(cache, fut).await,
            None => fut.await,
        }
    }
}

/// See [`Current`].
pub fn current() -> Current {
    GLOBAL
        .try_with(|cache| Current::Scoped(cache.clone()))
        .unwrap_or_else(|_| Current::Global(crate::global()))
}

//! What a scope set for the cached calls of a future: its [`Mode`] (a
//! `bypass` or `refresh` scope), and the cache standing in for the global
//! one (`with_global`); carried into the tasks the cache spawns.
//!
//! The task-locals live here, below the public scopes in `crate::scope`, so
//! that the flows read them without knowing the scopes.

use std::cell::Cell;
use std::future::Future;

use super::Cache;

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

/// Runs `calls` in `mode`.
pub(crate) async fn with_mode<F: Future>(mode: Mode, calls: F) -> F::Output {
    MODE.scope(Cell::new(mode), calls).await
}

/// Runs `calls` with `cache` standing in for the global one.
pub(crate) async fn with_cache<F: Future>(cache: Cache, calls: F) -> F::Output {
    GLOBAL.scope(cache, calls).await
}

/// The cache standing in for the global one here, if any.
pub(crate) fn cache() -> Option<Cache> {
    GLOBAL.try_with(Cache::clone).ok()
}

/// What the cached calls here do. A function's own calls run in
/// `Mode::Lookup`: see [`lookups_only`]. Under a test's switch
/// ([`crate::testing::caching_off`]), every call on the thread bypasses.
pub(crate) fn mode() -> Mode {
    #[cfg(feature = "testing")]
    if crate::testing::switched_off() {
        return Mode::Bypass;
    }
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

/// `fut` under the same scoped global cache as the caller, if any: for a
/// task it spawns (a load in the background), which task-locals do not reach.
pub(crate) fn carried<F: std::future::Future>(fut: F) -> impl std::future::Future<Output = F::Output> {
    let scoped = cache();
    async move {
        match scoped {
            Some(cache) => GLOBAL.scope(cache, fut).await,
            None => fut.await,
        }
    }
}

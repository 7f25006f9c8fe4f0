//! The process-wide cache that `#[cached]` uses when no `cache = ...` is given.

use std::sync::OnceLock;

use crate::cache::Cache;
use crate::error::Error;

static GLOBAL: OnceLock<Cache> = OnceLock::new();

/// Sets the global cache, used by every `#[cached]` function without a
/// `cache = ...` option. Call it once, at start-up, before the first cached call.
///
/// # Errors
///
/// [`Error::AlreadyInitialized`] if the global cache was already set, or was
/// already used (and so defaulted to an in-memory cache).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
/// let cache = aside::Cache::builder().namespace("shop").build().await?;
/// aside::init(cache)?;
/// assert!(aside::init(aside::Cache::memory()).is_err());
/// # Ok(()) }
/// ```
pub fn init(cache: Cache) -> Result<(), Error> {
    GLOBAL.set(cache).map_err(|_| Error::AlreadyInitialized)
}

/// The global cache: the one given to [`init`], or else an in-memory cache
/// with the default settings, created on first use (and logged once).
///
/// # Examples
///
/// ```
/// let cache = aside::global();
/// # let _ = cache;
/// ```
pub fn global() -> &'static Cache {
    GLOBAL.get_or_init(|| {
        tracing::info!("aside: no cache set with aside::init, using the in-memory default");
        Cache::memory()
    })
}

//! The entry of a `#[cached]` function for given arguments, typed by its value.

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;

use crate::{Cache, Cacheable, Error, Policy};

/// The entry of a `#[cached]` function for given arguments: its key and its
/// policy (TTL, tags, codec...), typed by the value it holds.
///
/// Made by [`entry!`](crate::entry) from a call of the function, so a writer
/// never re-types the key template: a misspelt function, a missing argument
/// or a value of another type is a compile error. `#[invalidate(entries = [...])]`
/// and `#[cache_put(entry = ...)]` take the same calls.
///
/// # Examples
///
/// ```
/// use aside::Cache;
///
/// #[aside::cached(cache = cache, key = "price:<id>", ttl = "1h")]
/// async fn price(cache: &Cache, id: u64) -> u32 {
///     100 // the slow query
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
/// let cache = Cache::memory();
/// let entry = aside::entry!(price(7));
/// assert_eq!(entry.key(), "price:7");
/// entry.put(&cache, 120).await;    // seeded: the next call is a hit
/// assert_eq!(price(&cache, 7).await, 120);
/// entry.invalidate(&cache).await?; // and the one after reloads
/// assert_eq!(price(&cache, 7).await, 100);
/// # Ok(()) }
/// ```
pub struct CachedEntry<T> {
    key: String,
    policy: Policy,
    value: PhantomData<fn() -> T>,
}

impl<T> CachedEntry<T> {
    /// The entry at `key`, stored under `policy`. What a `#[cached]`
    /// function's companion builds; prefer [`entry!`](crate::entry).
    #[doc(hidden)]
    pub fn new(key: String, policy: Policy) -> Self {
        CachedEntry {
            key,
            policy,
            value: PhantomData,
        }
    }

    /// The key, as [`Cache::get_or_load`] takes it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The policy the function stores its values under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The key, without the rest.
    pub fn into_key(self) -> String {
        self.key
    }

    /// The key and the policy.
    pub fn into_parts(self) -> (String, Policy) {
        (self.key, self.policy)
    }

    /// Invalidates the entry, as [`Cache::invalidate`] does.
    ///
    /// # Errors
    ///
    /// The backend failed: the entry may still be there.
    pub async fn invalidate(&self, cache: &Cache) -> Result<(), Error> {
        cache.invalidate(&self.key).await
    }
}

impl<T: Cacheable> CachedEntry<T> {
    /// Stores `value` as the function's value for these arguments, with its
    /// TTL and tags, as [`Cache::put`] does: the next call is a hit. As
    /// there, a backend failure is logged and counted in
    /// [`Stats::errors`](crate::Stats::errors), not returned.
    pub async fn put(&self, cache: &Cache, value: T) {
        let stored = cache
            .put(&self.key, &self.policy, || async { Ok::<T, Infallible>(value) })
            .await;
        let Ok(_) = stored;
    }
}

impl<T> Clone for CachedEntry<T> {
    fn clone(&self) -> Self {
        CachedEntry::new(self.key.clone(), self.policy.clone())
    }
}

impl<T> fmt::Debug for CachedEntry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedEntry")
            .field("key", &self.key)
            .field("value", &std::any::type_name::<T>())
            .finish()
    }
}

//! The entry of a `#[cached]` function for given arguments, typed by its value.

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;

use crate::cache::Cache;
use crate::cacheable::Cacheable;
use crate::error::Error;
use crate::policy::Policy;

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
///
/// # Which cache
///
/// An entry also knows the cache its function reads, unless the function
/// takes it as an argument: the global one (no `cache =`; that of an
/// enclosing [`with_global`](crate::with_global) included), `cache =
/// self.cache` for a method, or a `static`. `#[invalidate]` and
/// `#[cache_put]` write an entry there, whatever their own `cache =` (which
/// is for their `keys` and `tags`), so a repository's writer cannot miss its
/// reader's cache. A function that takes its cache as an argument
/// (`cache = cache`, as above) makes an entry that does not know it
/// (`KNOWS_CACHE` is `false`): a writer naming it goes to its own
/// `cache = ...`, and without one it does not compile.
pub struct CachedEntry<T, const KNOWS_CACHE: bool = true> {
    key: String,
    policy: Policy,
    home: Home,
    value: PhantomData<fn() -> T>,
}

/// The cache an entry's function reads.
#[derive(Clone, Debug)]
enum Home {
    /// The global one, or that of an enclosing `with_global`.
    Current,
    /// `cache = <an expression of no argument>`.
    Fixed(Cache),
    /// `cache = <an argument>`: unknown to the entry.
    Caller,
}

impl<T> CachedEntry<T, true> {
    /// The entry at `key`, stored under `policy`, of a function on the
    /// global cache. What a `#[cached]` function's companion builds; prefer
    /// [`entry!`](crate::entry).
    #[doc(hidden)]
    pub fn new(key: String, policy: Policy) -> Self {
        Self::at(key, policy, Home::Current)
    }

    /// The entry at `key`, stored under `policy`, of a function on `cache`.
    #[doc(hidden)]
    pub fn new_in(key: String, policy: Policy, cache: Cache) -> Self {
        Self::at(key, policy, Home::Fixed(cache))
    }
}

impl<T> CachedEntry<T, false> {
    /// The entry at `key`, stored under `policy`, of a function that takes
    /// its cache as an argument.
    #[doc(hidden)]
    pub fn without_cache(key: String, policy: Policy) -> Self {
        Self::at(key, policy, Home::Caller)
    }
}

impl<T, const KNOWS_CACHE: bool> CachedEntry<T, KNOWS_CACHE> {
    fn at(key: String, policy: Policy, home: Home) -> Self {
        CachedEntry {
            key,
            policy,
            home,
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

    /// The key, the policy, and the entry's own cache, or `fallback` if it
    /// does not know it: where a writer with `cache = fallback` writes it.
    #[doc(hidden)]
    pub fn into_target(self, fallback: &Cache) -> (String, Policy, Cache) {
        self.resolve(|| fallback.clone())
    }

    /// The key, the policy, and the entry's cache, or `caller()`'s.
    fn resolve(self, caller: impl FnOnce() -> Cache) -> (String, Policy, Cache) {
        let cache = match self.home {
            Home::Current => Cache::clone(&crate::scope::current()),
            Home::Fixed(cache) => cache,
            Home::Caller => caller(),
        };
        (self.key, self.policy, cache)
    }

    /// The cache of a function with `cache = <an expression of no argument>`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn fixed_cache(&self) -> Option<&Cache> {
        match &self.home {
            Home::Fixed(cache) => Some(cache),
            Home::Current | Home::Caller => None,
        }
    }

    /// What a writer with no `cache =` checks the entry's value type with.
    #[doc(hidden)]
    pub fn value_type(&self) -> PhantomData<T> {
        PhantomData
    }

    /// Invalidates the entry in `cache`, as [`Cache::invalidate`] does.
    ///
    /// # Errors
    ///
    /// The backend failed: the entry may still be there.
    pub async fn invalidate(&self, cache: &Cache) -> Result<(), Error> {
        cache.invalidate(&self.key).await
    }
}

impl<T: Cacheable, const KNOWS_CACHE: bool> CachedEntry<T, KNOWS_CACHE> {
    /// Stores `value` in `cache` as the function's value for these arguments, with its
    /// TTL and tags, as [`Cache::put`] does: the next call is a hit. As
    /// there, a backend failure is logged and counted in
    /// [`Stats::errors`](crate::stats::Stats::errors), not returned.
    pub async fn put(&self, cache: &Cache, value: T) {
        let stored = cache
            .put(&self.key, &self.policy, || async { Ok::<T, Infallible>(value) })
            .await;
        let Ok(_) = stored;
    }
}

impl<T, const KNOWS_CACHE: bool> Clone for CachedEntry<T, KNOWS_CACHE> {
    fn clone(&self) -> Self {
        CachedEntry {
            key: self.key.clone(),
            policy: self.policy.clone(),
            home: self.home.clone(),
            value: PhantomData,
        }
    }
}

/// An entry that knows its cache: what a writer with no `cache =` names.
#[diagnostic::on_unimplemented(
    message = "this entry's function takes its cache as an argument, so the entry does not know which cache to write",
    label = "its #[cached] function has `cache = <an argument>`",
    note = "say which cache on the writer: `cache = ...`, as the function's callers pass it"
)]
#[doc(hidden)]
pub trait KnowsItsCache {
    /// The key, the policy and the cache.
    fn in_its_cache(self) -> (String, Policy, Cache);
}

#[diagnostic::do_not_recommend]
impl<T> KnowsItsCache for CachedEntry<T, true> {
    fn in_its_cache(self) -> (String, Policy, Cache) {
        self.resolve(|| unreachable!("an entry of a function given its cache is `CachedEntry<T, false>`"))
    }
}

impl<T, const KNOWS_CACHE: bool> fmt::Debug for CachedEntry<T, KNOWS_CACHE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedEntry")
            .field("key", &self.key)
            .field("value", &std::any::type_name::<T>())
            .field("cache", &self.home)
            .finish()
    }
}

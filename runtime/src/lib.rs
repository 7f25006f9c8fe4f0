//! Cache-aside in one attribute.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Product { id: u64, name: String }
//!
//! #[derive(Debug)]
//! struct DbError;
//!
//! /// Runs the slow query at most once per hour per product; a missing
//! /// product (`None`) is remembered for a minute.
//! #[aside::cached(key = "product:<id>", ttl = "1h", negative_ttl = 60)]
//! async fn get_product(id: u64) -> Result<Option<Product>, DbError> {
//!     Ok(Some(Product { id, name: "lamp".into() }))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let first = get_product(42).await.unwrap();   // runs the body, caches it
//! let second = get_product(42).await.unwrap();  // served from the cache
//! assert_eq!(second.unwrap().name, "lamp");
//! # let _ = first;
//! # }
//! ```
//!
//! The attribute rewrites the function into a call of [`Cache::get_or_load`]
//! on the global cache (an in-memory one unless [`init`] sets another) or on
//! the cache named by `cache = ...`. Everything the cache does is in this
//! crate and usable without the macro: see [`Cache`] for the behaviour and
//! the README for every attribute option.
#![warn(missing_docs)]

mod backend;
mod breaker;
mod builder;
mod cache;
mod clock;
mod codec;
mod entry;
mod error;
mod flight;
mod global;
mod key;
mod l1;
mod policy;
mod stampede;
mod stats;
mod tags;

/// Caches an `async fn`: `#[aside::cached(key = "...", ttl = ..., tags = [...], stampede = "...", ...)]`.
///
/// The function becomes a call of [`Cache::get_or_load`]: look the key up,
/// return a hit, otherwise run the body once (concurrent callers in the process
/// share that run), store its value, return it.
///
/// | option | value | default |
/// |---|---|---|
/// | `key` | a template: literal text and `<name>` placeholders, where `name` is an argument or a field path on one (`<user.id>`, `<self.tenant>`) | for a free function: module path, function name and every argument, `:`-separated; a method must give one, naming what tells its instances apart (`<self.tenant>`) |
/// | `ttl` | seconds (`3600`) or `"500ms"`, `"90s"`, `"5m"`, `"1h"`, `"1d"`, or units combined, largest first (`"1h30m"`); greater than zero. Or any expression of type `Duration`: `PRODUCT_TTL`, `Duration::from_secs(60)` | the cache's [`default_ttl`](CacheBuilder::default_ttl) (5 min) |
/// | `negative_ttl` | as `ttl`; `0` turns negative caching off; not longer than `ttl` | the smaller of 60 s and `ttl` |
/// | `tags` | a list of templates, as `key`: `tags = ["product:<id>", "category:<cat>"]`; [`Cache::invalidate_tag`] with any of them drops the entry | none |
/// | `stampede` | `"lock"`, `"swr"`, `"early"` or `"none"`: see [`Stampede`] | `"lock"` |
/// | `lock_ttl`, `lock_wait` | with `"lock"`: durations, as `ttl` (also `"500ms"`) | [`DEFAULT_LOCK_TTL`], [`DEFAULT_LOCK_WAIT`] |
/// | `stale` | with `"swr"`: how long past `ttl` the old value is served while refreshed | [`DEFAULT_STALE`] |
/// | `beta` | with `"early"`: XFetch's β | [`DEFAULT_BETA`] |
/// | `jitter` | spread each stored TTL by up to ± this share: `jitter = 0.1` | 0 |
/// | `sliding` | `true`: every hit pushes the expiry out to a full `ttl`; with `"lock"` or `"none"` | `false` |
/// | `codec` | `"json"` or `"msgpack"`: how the value is serialized, see [`Codec`] | the cache's ([`CacheBuilder::codec`]), JSON by default |
/// | `l1` | over Redis with an in-process tier ([`CacheBuilder::l1`]): `false` to read Redis every time; `true`; or a duration, as `ttl`: kept in the tier that long at most (in memory, a shorter TTL) | `true` |
/// | `cache` | an expression giving a `Cache` (or anything that derefs to one): `self.cache`, `&*CACHE`, an argument | the [`global`] cache |
///
/// What is cached:
/// - `T`, `Option<T>`: the value; a `None` under `negative_ttl`.
/// - `Result<T, E>`, `Result<Option<T>, E>`: the `Ok` value; an `Err` is returned
///   as it is and never cached.
///
/// The cached type must be `Serialize + DeserializeOwned` (for the backend)
/// and `Clone + Send + Sync + 'static` (the in-process tier keeps it decoded
/// and hands out clones), and every placeholder `Display`. Placeholder values are escaped (`:` as `\:`, `\` as `\\`, see
/// [`KeyBuilder`]), and two placeholders must be separated by text containing
/// `:`, so different arguments never share a key. Methods must take `&self`.
///
/// # Examples
///
/// ```
/// use aside::Cache;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct User { id: u64, name: String }
///
/// struct Users { cache: Cache, tenant: String }
///
/// impl Users {
///     // The key is `<tenant>:user:<id>`; `None` (no such user) is kept 30 s.
///     #[aside::cached(cache = self.cache, key = "<self.tenant>:user:<id>", ttl = "10m", negative_ttl = "30s")]
///     async fn find(&self, id: u64) -> Result<Option<User>, std::io::Error> {
///         Ok((id == 1).then(|| User { id, name: "ada".into() }))
///     }
/// }
///
/// // Without `key`, every argument is part of the key; without `cache`, the
/// // global cache is used.
/// #[aside::cached(ttl = 60)]
/// async fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), std::io::Error> {
/// let users = Users { cache: Cache::memory(), tenant: "acme".into() };
/// assert_eq!(users.find(1).await?.unwrap().name, "ada");
/// assert!(users.find(2).await?.is_none());
/// assert!(users.cache.get::<Option<User>>("acme:user:1").await.unwrap().is_some());
/// assert_eq!(add(2, 3).await, 5);
/// # Ok(()) }
/// ```
///
/// ---
#[doc(inline)]
pub use aside_macros::cached;

/// Write-through: stores an `async fn`'s return value in the cache, so that
/// the next read of its key is a hit.
/// `#[aside::cache_put(key = "...", ttl = ..., negative_ttl = ..., tags = [...], cache = ...)]`.
///
/// The options are those of [`cached`], except that `key` is required (it is
/// the key of the `#[cached]` function whose value this one writes). The body
/// always runs; its value (for a `Result`, only the `Ok` value) is stored
/// through [`Cache::put`], which also makes sure a concurrent, slower load of
/// the old value cannot overwrite it.
///
/// # Examples
///
/// ```
/// use aside::Cache;
///
/// #[aside::cached(cache = cache, key = "user:<id>")]
/// async fn user_name(cache: &Cache, id: u64) -> String {
///     format!("user {id}") // the slow query
/// }
///
/// #[aside::cache_put(cache = cache, key = "user:<id>")]
/// async fn rename_user(cache: &Cache, id: u64, name: String) -> Result<String, std::io::Error> {
///     // UPDATE users SET name = ... WHERE id = ...
///     Ok(name)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), std::io::Error> {
/// let cache = Cache::memory();
/// assert_eq!(user_name(&cache, 1).await, "user 1");
/// rename_user(&cache, 1, "ada".into()).await?;
/// assert_eq!(user_name(&cache, 1).await, "ada"); // a hit on the written value
/// # Ok(()) }
/// ```
///
/// ---
#[doc(inline)]
pub use aside_macros::cache_put;

/// Invalidates keys and tags after an `async fn` that changes data:
/// `#[aside::invalidate(keys = [...], tags = [...], cache = ...)]`.
///
/// `keys` and `tags` are lists of templates with the placeholders of
/// [`cached`]; they are built from the arguments before the body runs. After
/// the body returns (for a `Result`, only on `Ok`), every key is invalidated
/// as by [`Cache::invalidate`] and every tag as by [`Cache::invalidate_tags`]:
/// once the function has returned, no read returns a value loaded before.
/// A failure to invalidate is logged (error level) and counted in
/// [`Stats::errors`], never returned: the write itself succeeded.
///
/// # Examples
///
/// ```
/// use aside::Cache;
///
/// #[aside::cached(cache = cache, key = "product:<id>", tags = ["category:<category>"])]
/// async fn product(cache: &Cache, id: u64, category: u32) -> String {
///     format!("product {id}") // the slow query
/// }
///
/// #[aside::invalidate(cache = cache, tags = ["category:<category>"])]
/// async fn reprice_category(cache: &Cache, category: u32, percent: i32) -> Result<(), std::io::Error> {
///     // UPDATE products SET price = ... WHERE category_id = ...
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), std::io::Error> {
/// let cache = Cache::memory();
/// product(&cache, 1, 7).await;
/// reprice_category(&cache, 7, 10).await?; // every product of category 7 reloads
/// assert_eq!(cache.stats().loads, 1);
/// product(&cache, 1, 7).await;
/// assert_eq!(cache.stats().loads, 2);
/// # Ok(()) }
/// ```
///
/// ---
#[doc(inline)]
pub use aside_macros::invalidate;
pub use backend::{Backend, BoxFuture, EntryKeys, Fetched, LockWatch, Locked, Tokens};
pub use breaker::BreakerState;
pub use builder::CacheBuilder;
/// The byte buffer [`Backend`]s store, re-exported so that implementations
/// need not depend on the `bytes` crate themselves.
pub use bytes::Bytes;
pub use cache::Cache;
pub use codec::Codec;
pub use error::{BackendError, Error};
pub use global::{global, init};
pub use key::KeyBuilder;
pub use l1::L1;
pub use policy::{Policy, DEFAULT_NEGATIVE_TTL};
pub use stampede::{Stampede, DEFAULT_BETA, DEFAULT_LOCK_TTL, DEFAULT_LOCK_WAIT, DEFAULT_STALE};
pub use stats::Stats;

/// What `#[cached]` expands to. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::{
        global, Cache, Codec, KeyBuilder, Policy, Stampede, DEFAULT_BETA, DEFAULT_LOCK_TTL,
        DEFAULT_LOCK_WAIT, DEFAULT_STALE,
    };
    pub use core::convert::Infallible;
    pub use core::time::Duration;

    /// What `#[invalidate]` runs after its body succeeded.
    pub async fn invalidate_after_write(cache: Cache, keys: Vec<String>, tags: Vec<String>) {
        cache.invalidate_after_write(keys, tags).await;
    }
}

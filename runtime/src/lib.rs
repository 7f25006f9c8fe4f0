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
//! [`cached`] for every option. The [`guide`] has a page per topic: keys,
//! invalidation, stampede modes, tiers, failures, batch loads, write-behind,
//! observability, testing, performance.
//!
//! Each call of a cached function counts into its [`Function`]'s statistics
//! ([`function_stats`](stats::function_stats)) and is a `tracing` span at `DEBUG` level
//! (`aside.get_or_load`, with the function, the [`Outcome`](stats::Outcome) and the load
//! time). Features:
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | on | the Redis backend (`CacheBuilder::redis`) |
//! | `tls` | off | `rediss://` URLs (rustls) |
//! | `msgpack` | off | `Codec::MessagePack` |
//! | `cluster` | off | Redis Cluster (`aside::Redis::cluster`) |
//! | `metrics` | off | counters, histograms and gauges through the `metrics` facade, labelled by function ([`guide::observability`] lists them) |
//! | `testing` | off | `aside::testing`: caching off, isolated and recorded caches, and chaos, for the tests of code that uses aside |
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without Redis, the docs' links to what only Redis brings (write-behind,
// the tier's page, `require_connection`) have nothing to point to.
#![cfg_attr(
    not(feature = "redis"),
    allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)
)]

pub mod backend;
mod breaker;
mod builder;
mod cache;
mod cacheable;
mod cached_entry;
mod clock;
mod codec;
mod collision;
#[cfg(feature = "redis")]
mod connect;
mod counters;
mod entry;
mod error;
mod fail_safe;
mod flight;
mod function;
mod global;
pub mod guide;
mod key;
mod l1;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(not(feature = "metrics"))]
#[path = "metrics_off.rs"]
mod metrics;
mod names;
mod policy;
mod recovery;
mod scope;
mod stampede;
mod tags;
#[cfg(feature = "testing")]
pub mod testing;
mod timeout;
#[cfg(feature = "redis")]
pub mod write_behind;

/// What the cache did: counters per cache and per function.
///
/// [`Cache::stats`] sums a cache's lookups, loads and backend errors;
/// [`function_stats`](stats::function_stats) gives the same per cached
/// function, whatever cache it used. Every lookup ends as one [`Outcome`](stats::Outcome).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = aside::Cache::memory();
/// let stats: aside::stats::Stats = cache.stats();
/// assert_eq!(stats.hits, 0);
/// for f in aside::stats::function_stats() {
///     println!("{}: {:.0}% hits", f.name, 100.0 * f.hit_ratio());
/// }
/// # }
/// ```
pub mod stats {
    pub use crate::breaker::BreakerState;
    pub use crate::counters::{Outcome, Stats};
    pub use crate::function::{function_stats, FunctionStats};
}

/// Caches an `async fn`: `#[aside::cached(key = "...", ttl = ..., tags = [...], stampede = "...", ...)]`.
///
/// The function becomes a call of [`Cache::get_or_load`] (or of
/// [`Cache::get_or_load_detached`], where its loads may run on a task of
/// their own: see `refresh`): look the key up,
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
/// | `lock_ttl`, `lock_wait` | with `"lock"`: durations, as `ttl` (also `"500ms"`); `lock_ttl` also with `"swr"` and `"early"`, for the refresh's lock ([`Policy::refresh_lock_ttl`]) | [`Stampede::DEFAULT_LOCK_TTL`], [`Stampede::DEFAULT_LOCK_WAIT`] |
/// | `stale` | with `"swr"`: how long past `ttl` the old value is served while refreshed | [`Stampede::DEFAULT_STALE`] |
/// | `beta` | with `"early"`: XFetch's β | [`Stampede::DEFAULT_BETA`] |
/// | `jitter` | spread each stored TTL by up to ± this share: `jitter = 0.1` | 0 |
/// | `sliding` | `true`: every hit pushes the expiry out to a full `ttl`; with `"lock"` or `"none"` | `false` |
/// | `codec` | `"json"` or `"msgpack"` (with the `msgpack` feature): how the value is serialized, see [`Codec`] | the cache's ([`CacheBuilder::codec`]), JSON by default |
/// | `l1` | over Redis with an in-process tier ([`CacheBuilder::l1`]): `false` to read Redis every time; `true`; or a duration, as `ttl`: kept in the tier that long at most (in memory, a shorter TTL; over Redis without a tier, nothing, and a warning says so once) | `true` |
/// | `cache` | an expression giving a `Cache` (or anything that derefs to one): `self.cache`, `&*CACHE`, an argument | the [`global`] cache, or that of an enclosing [`with_global`] |
/// | `unless` | a closure or function on the cached value (`T` of `Result<T, E>`): a value for which it holds is returned but not stored, as by [`Policy::unless`]: `unless = \|hits\| hits.is_empty()` | none |
/// | `hard_timeout` | a duration, as `ttl`: a load that takes longer returns `Err(E::from(`[`Timeout`]`))` (see [`hard_timeout`]); the function must return `Result` with `E: From<aside::Timeout>` | none |
/// | `fail_safe` | a duration, as `ttl`: values are kept that long past their fresh time, and the last good value is returned when a load returns an `Err` (a `hard_timeout` is one), counted as stale; see [`Policy::fail_safe`]. Not with `sliding` | none |
/// | `fail_safe_throttle` | with `fail_safe`: a duration, as `ttl`: how long a value that stood in is served before the next attempt, in every process | [`FailSafe::DEFAULT_THROTTLE`] (30 s) |
/// | `soft_timeout` | with `fail_safe`: a duration, as `ttl`: past it, a load that a kept value stands by for returns that value, and finishes on a task of its own ([`FailSafe::soft_timeout`]). Needs a future that can be made `'static`, as `refresh = "background"` does | none |
/// | `refresh` | with `"swr"` or `"early"`: `"background"` runs each refresh on a task of its own, so nobody waits for it ([`Cache::get_or_load_detached`]); `"inline"` runs it on the caller that wins it. `"background"` needs owned arguments (a borrowed one is a compile error naming it); on a `&self` method it clones `self` into the refresh (`Self: Clone + Send + Sync + 'static`). A type that borrows through an elided lifetime (`Query` for `Query<'a>`) is not seen as borrowed: write `refresh = "inline"` | `"background"` when the arguments (but `&self`) are all owned: the body must be `Send`, and a method's `Self` `Clone + Send + Sync + 'static` (a compile error says so otherwise); `"inline"` when one is borrowed |
/// | `entry` | `false` leaves out the companion that writers name the entry by (below); a trait impl, which may hold no other item, needs it | `true` |
///
/// Beside the function, a hidden companion builds its entry (key and
/// policy) from the arguments its key and tags are made of. Writers name it
/// by a call, as [`entry!`] does: `#[invalidate(entries = [product(id)])]`,
/// `#[cache_put(entry = self.price(id))]`. So they never re-type the
/// template, and a typo or a value of another type is a compile error.
/// There is no companion in an `#[async_trait]` impl, with `entry = false`,
/// or when an option is computed from an argument (`ttl = ttl_of(kind)`):
/// the companion only has the key's arguments. A generic function's
/// companion is generic too; name it with a turbofish where a type
/// argument cannot be inferred from the key's arguments.
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

/// Caches a batch load: `#[aside::cached_batch(key = "...", ...)]` on an
/// `async fn` that takes a batch of ids (`&[T]` or `Vec<T>`) and returns
/// what it found, `HashMap<T, V>` or `Result<HashMap<T, V>, E>`.
///
/// The function becomes a call of [`Cache::get_or_load_batch`]: every id's
/// entry (and every tag token) is read in one round trip, and the body runs
/// once, with only the ids that missed, deduplicated; each value it returns
/// is cached under its id's key, and an id it leaves out is cached as absent
/// (under `negative_ttl`). The result holds the ids found, whatever their
/// order or repeats in the input.
///
/// - `key` and `tags` are templates of **one** id: `<id>` for an argument
///   `ids` (the batch's name without its final `s`), or the name given by
///   `each = "..."`. The key is the one the single-item `#[cached]` function
///   writes, so that both share entries: a batch and a `#[cached]` function
///   returning `Option<V>` with the same template read and write the same
///   entries. Other arguments may appear in the templates too
///   (`<tenant>:product:<id>`, `<self.tenant>`).
/// - The other options are `#[cached]`'s, for each id: `ttl`,
///   `negative_ttl`, `cache`, `stampede` (with `lock_ttl`, `lock_wait`,
///   `stale`, `beta`), `jitter`, `codec`, `l1`, `fail_safe`,
///   `fail_safe_throttle`.
/// - Each id is coalesced with other callers of its key (single calls and
///   other batches; across processes with `"lock"`): an id another caller
///   is loading is waited for, not loaded again. The body may therefore run
///   a second time in one call, for ids whose wait ended without a value;
///   it gets the function's other arguments cloned for each run (references
///   clone as themselves).
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use aside::Cache;
///
/// // The single-item function and the batch share entries.
/// #[aside::cached(cache = cache, key = "product:<id>", ttl = "1h")]
/// async fn product(cache: &Cache, id: u64) -> Result<Option<String>, std::io::Error> {
///     Ok(Some(format!("product {id}")))
/// }
///
/// #[aside::cached_batch(cache = cache, key = "product:<id>", ttl = "1h")]
/// async fn products(cache: &Cache, ids: &[u64]) -> Result<HashMap<u64, String>, std::io::Error> {
///     // SELECT ... WHERE id = ANY($1): one query for all the missing ids.
///     Ok(ids.iter().filter(|&&id| id != 404).map(|&id| (id, format!("product {id}"))).collect())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), std::io::Error> {
/// let cache = Cache::memory();
/// product(&cache, 1).await?;
/// let found = products(&cache, &[1, 2, 404]).await?;
/// assert_eq!(found.len(), 2); // 404 is cached as absent
/// assert_eq!(product(&cache, 2).await?, Some("product 2".to_owned())); // a hit
/// # Ok(()) }
/// ```
///
/// ---
#[doc(inline)]
pub use aside_macros::cached_batch;

/// Write-through: stores an `async fn`'s return value in the cache, so that
/// the next read of its key is a hit.
/// `#[aside::cache_put(entry = cached_fn(args...), cache = ...)]`.
///
/// `entry` names the `#[cached]` function whose value this one writes, by a
/// call with the arguments its key and tags are made of (see [`entry!`]);
/// the value is stored with that function's key, TTL, tags and codec, in
/// its cache (see [which cache](CachedEntry#which-cache)). A value of
/// another type than the entry's is a compile error.
///
/// For a key that no `#[cached]` function owns, `key = "..."` with the
/// options of [`cached`] (`ttl`, `negative_ttl`, `tags`, `jitter`, `codec`, `unless`)
/// takes the place of `entry`. The body always runs; its value (for a
/// `Result`, only the `Ok` value) is stored through [`Cache::put`], which
/// also makes sure a concurrent, slower load of the old value cannot
/// overwrite it.
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
/// #[aside::cache_put(cache = cache, entry = user_name(id))]
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

/// The entry of a `#[cached]` function for given arguments, named by a call
/// of the function: `aside::entry!(product(7))`, `aside::entry!(shop::product(7))`,
/// `aside::entry!(repo.price(7))`. Gives a [`CachedEntry`] typed by the
/// function's cached value, with its key and policy.
///
/// The call takes the arguments the function's key and tags are made of
/// (all of them for a default key), in order, and by reference: nothing
/// is moved. Each `#[cached]` function has a hidden companion beside it
/// that builds its entry, and the call names that companion, so:
/// - the function is found as a call of it would be: by a path that
///   reaches it (`shop::product(7)`, or the module imported with `use shop::*`),
///   or, for a method, by a method call;
/// - a misspelt function, a wrong argument or an entry of another type is a
///   compile error;
/// - in a trait impl, where no other item may be added, `#[cached]` needs
///   `entry = false`, and has no entry to name.
///
/// # Examples
///
/// ```
/// use aside::Cache;
///
/// struct Prices { cache: Cache, tenant: String }
///
/// impl Prices {
///     #[aside::cached(cache = self.cache, key = "<self.tenant>:price:<id>")]
///     async fn price(&self, id: u64) -> u32 {
///         100 // the slow query
///     }
/// }
///
/// let prices = Prices { cache: Cache::memory(), tenant: "acme".into() };
/// assert_eq!(aside::entry!(prices.price(7)).key(), "acme:price:7");
/// ```
pub use aside_macros::entry;
/// Invalidates entries, keys and tags after an `async fn` that changes data:
/// `#[aside::invalidate(entries = [...], keys = [...], tags = [...], cache = ...)]`.
///
/// `entries` names `#[cached]` functions' entries by calls, as [`entry!`]
/// does: `entries = [product(id), self.price(id)]`. `keys` and `tags` are
/// lists of templates with the placeholders of [`cached`]. All are built
/// from the arguments (taken by reference) before the body runs. After
/// the body returns (for a `Result`, only on `Ok`), every key is invalidated
/// as by [`Cache::invalidate`] and every tag as by [`Cache::invalidate_tags`]:
/// once the function has returned, no read returns a value loaded before.
/// A failure to invalidate is logged (error level) and counted in
/// [`Stats::errors`](stats::Stats::errors), never returned: the write itself succeeded.
///
/// An entry is invalidated in the cache its function reads (see
/// [which cache](CachedEntry#which-cache)); `cache =` is where `keys` and
/// `tags` go, and entries whose function takes its cache as an argument.
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
/// #[aside::invalidate(cache = cache, entries = [product(id, category)])]
/// async fn delete_product(cache: &Cache, id: u64, category: u32) -> Result<(), std::io::Error> {
///     // DELETE FROM products WHERE id = ...
///     Ok(())
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

/// Builds a key or a tag from a template, as `#[cached]` does: literal text
/// and `<name>` placeholders, each the `Display` of a variable in scope or
/// a field path on one (`<user.id>`), escaped (see [`KeyBuilder`]).
///
/// [`Cache::invalidate_tag`] and the other methods that take a key or tag
/// take it built: `format!("category:{cat}")` matches the stored tag only
/// while `cat` contains no `:` or `\`. Build it with this macro instead, or
/// name a whole entry with [`entry!`].
///
/// # Examples
///
/// ```
/// let cat = "books:used";
/// assert_eq!(aside::key!("category:<cat>"), r"category:books\:used");
/// # async fn f(cache: aside::Cache, cat: &str) -> Result<(), aside::Error> {
/// cache.invalidate_tag(&aside::key!("category:<cat>")).await?;
/// # Ok(()) }
/// ```
pub use aside_macros::key;
pub use builder::CacheBuilder;
pub use cache::Cache;
pub use cacheable::Cacheable;
pub use cached_entry::CachedEntry;
pub use codec::Codec;
pub use collision::check_keys;
#[cfg(feature = "redis")]
pub use connect::Redis;
pub use error::{BackendError, Error};
pub use fail_safe::FailSafe;
pub use function::Function;
pub use global::{global, init};
pub use key::KeyBuilder;
pub use l1::L1;
pub use policy::Policy;
pub use scope::{bypass, refresh, with_global};
pub use stampede::Stampede;
pub use timeout::{hard_timeout, Timeout};

// At the root, hidden, so that an error names them without a path.
#[doc(hidden)]
pub use cacheable::OwnedReceiver;
#[doc(hidden)]
pub use cached_entry::KnowsItsCache;
#[doc(hidden)]
pub use policy::CanBeNegative;
#[doc(hidden)]
pub use timeout::FromTimeout;

/// What `#[cached]` expands to. Not public API: it may change in any release.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

//! Cache-aside in one attribute.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
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
mod builder;
mod cache;
mod entry;
mod error;
mod flight;
mod global;
mod key;
mod policy;
mod stats;
mod tags;

/// Caches an `async fn`: `#[aside::cached(key = "...", ttl = ..., negative_ttl = ..., cache = ...)]`.
///
/// The function becomes a call of [`Cache::get_or_load`]: look the key up,
/// return a hit, otherwise run the body once (concurrent callers in the process
/// share that run), store its value, return it.
///
/// | option | value | default |
/// |---|---|---|
/// | `key` | a template: literal text and `<name>` placeholders, where `name` is an argument or a field path on one (`<user.id>`, `<self.tenant>`) | module path, function name and every argument but `self`, `:`-separated |
/// | `ttl` | seconds (`3600`) or `"90s"`, `"5m"`, `"1h"`, `"1d"`; at least 1 s | the cache's [`default_ttl`](CacheBuilder::default_ttl) (5 min) |
/// | `negative_ttl` | as `ttl`; `0` turns negative caching off | the smaller of 60 s and `ttl` |
/// | `cache` | an expression giving a `Cache` (or anything that derefs to one): `self.cache`, `&*CACHE`, an argument | the [`global`] cache |
///
/// What is cached:
/// - `T`, `Option<T>`: the value; a `None` under `negative_ttl`.
/// - `Result<T, E>`, `Result<Option<T>, E>`: the `Ok` value; an `Err` is returned
///   as it is and never cached.
///
/// The cached type must be `Serialize + DeserializeOwned`, and every placeholder
/// `Display`. Placeholder values are escaped (`:` as `\:`, `\` as `\\`, see
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
pub use backend::{Backend, BoxFuture, EntryKeys, Fetched, Guard};
pub use builder::CacheBuilder;
pub use cache::Cache;
pub use error::{BackendError, Error};
pub use global::{global, init};
pub use key::KeyBuilder;
pub use policy::{Policy, DEFAULT_NEGATIVE_TTL};
pub use stats::Stats;

/// What `#[cached]` expands to. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::{global, Cache, KeyBuilder, Policy};
    pub use core::convert::Infallible;
    pub use core::time::Duration;
}

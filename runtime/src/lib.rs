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
mod cache;
mod entry;
mod error;
mod flight;
mod global;
mod key;
mod policy;
mod stats;

pub use aside_macros::cached;
pub use backend::{Backend, BoxFuture};
pub use cache::{Cache, CacheBuilder};
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

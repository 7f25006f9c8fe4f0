//! Where entries live: the [`Backend`] trait and its two implementations.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::BackendError;

pub(crate) mod memory;
pub(crate) mod redis;

/// A boxed, `Send` future, as returned by [`Backend`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage tier for encoded entries.
///
/// [`Cache`](crate::Cache) does everything else (keys, envelopes, TTL choice,
/// coalescing, fail-open); a backend only moves opaque bytes. The contract:
///
/// - `fetch(key)` returns the bytes last stored at `key`, or `None` if there are
///   none or they expired. It is **one round trip** on a remote backend; when
///   tags arrive, it also returns the current versions of the entry's tags in
///   that same round trip (Redis: one `MGET`), which is why it is the only read.
/// - `store(key, bytes, ttl)` replaces the entry; it expires after `ttl`.
/// - `remove(key)` deletes the entry.
/// - Every operation is bounded in time by the backend itself and reports a
///   timeout as [`BackendError::Timeout`]; the cache never waits longer.
///
/// Keys arrive already namespaced. Later capabilities extend this trait rather
/// than replace it: tag-version bumps, and `lock`/`unlock` (set-if-absent with a
/// token and a TTL, compare-and-delete) for cross-process stampede protection.
/// An in-process L1 tier in front of Redis, or a Redis Cluster backend, is
/// another implementation of this same trait.
///
/// The trait is public so that tests can inject faults and so that other
/// stores can be plugged in; it may gain methods before 1.0.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use aside::{Backend, BackendError, BoxFuture, Cache};
/// use bytes::Bytes;
///
/// /// A backend that never stores anything: every call is a miss.
/// #[derive(Debug)]
/// struct Nothing;
///
/// impl Backend for Nothing {
///     fn fetch<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>> {
///         Box::pin(async { Ok(None) })
///     }
///     fn store<'a>(&'a self, _key: &'a str, _entry: Bytes, _ttl: Duration) -> BoxFuture<'a, Result<(), BackendError>> {
///         Box::pin(async { Ok(()) })
///     }
///     fn remove<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
///         Box::pin(async { Ok(()) })
///     }
/// }
///
/// let cache = Cache::with_backend(Arc::new(Nothing));
/// # let _ = cache;
/// ```
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Reads the entry at `key` in one round trip.
    fn fetch<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>>;

    /// Writes `entry` at `key`, expiring after `ttl` (never zero).
    fn store<'a>(
        &'a self,
        key: &'a str,
        entry: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Deletes the entry at `key`, if any.
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;
}

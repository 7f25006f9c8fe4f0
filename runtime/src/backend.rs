//! Where entries live: the [`Backend`] trait, for a store of your own, and
//! what it takes and returns. aside's own backends (in memory, Redis,
//! Redis Cluster) implement it; [`Cache::with_backend`](crate::Cache::with_backend)
//! builds a cache on another one.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

/// The byte buffer backends store, re-exported so that implementations
/// need not depend on the `bytes` crate themselves.
pub use bytes::Bytes;
use tokio::sync::watch;

use crate::error::BackendError;
use crate::names::Names;

pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "redis")]
pub(crate) mod streams;
#[cfg(feature = "redis")]
pub(crate) mod tracking;

/// A boxed, `Send` future, as returned by [`Backend`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The storage names behind one cache key: the entry itself, the key's
/// *guard* token, its stampede lock, and the *tokens* of the tags the entry
/// carries.
///
/// [`Cache`](crate::Cache) builds them (see "Redis layout" in [`guide::semantics`](crate::guide::semantics)); a
/// backend only reads and writes them. The guard's and the lock's names are
/// built when first asked for: a hit needs neither.
///
/// The key is written as a Redis Cluster hash tag, `{key}`, in the entry's,
/// the guard's and the lock's names, so that the three live in one slot and
/// a script may touch them together. A tag's token has a name of its own,
/// without a hash tag: tags spread over the cluster's slots. On a single
/// node the braces mean nothing.
///
/// # Examples
///
/// ```
/// let keys = aside::backend::EntryKeys::new("shop", "product:1", ["shop#tag:category:7"]);
/// assert_eq!(keys.entry(), "shop:{product:1}");
/// assert!(keys.tags().eq(["shop#tag:category:7"]));
/// assert_eq!(keys.guard(), "shop#guard:{product:1}");
/// assert_eq!(keys.lock(), "shop#lock:{product:1}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryKeys {
    /// The entry's name, then its tags' token names: one buffer, built on
    /// every call.
    names: Names,
    /// The length of the namespace at the start of the entry's name.
    namespace: usize,
    guard: OnceLock<String>,
    lock: OnceLock<String>,
}

impl EntryKeys {
    /// The names for `key` (already shortened to a storage key) under
    /// `namespace`, with the tags' token names as given.
    ///
    /// The three names share a slot as long as `namespace` has no `{` or `}`
    /// and `key` is not empty and does not start with `}` (the cache
    /// ensures both).
    pub fn new(namespace: &str, key: &str, tags: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        Self::with_tags(namespace, key, 0, |names| {
            for tag in tags {
                names.push(tag.as_ref());
            }
        })
    }

    /// The names for `key`, with the tags' token names that `tags` pushes
    /// after the entry's (`tag_bytes` long in all, if known: room is made
    /// for them at once).
    pub(crate) fn with_tags(
        namespace: &str,
        key: &str,
        tag_bytes: usize,
        tags: impl FnOnce(&mut Names),
    ) -> Self {
        let mut names = Names::with_capacity(namespace.len() + key.len() + 3 + tag_bytes);
        names.push_with(|entry| {
            entry.lit(namespace).lit(":{").lit(key).lit("}");
        });
        tags(&mut names);
        EntryKeys {
            names,
            namespace: namespace.len(),
            guard: OnceLock::new(),
            lock: OnceLock::new(),
        }
    }

    /// Where the encoded entry is stored: `{namespace}:{{key}}`.
    pub fn entry(&self) -> &str {
        self.names.get(0)
    }

    /// Where each tag's current token is stored, in the order of the entry's tags.
    pub fn tags(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        self.names.iter().skip(1)
    }

    /// Where the key's guard token is stored (present for a while after the
    /// key was loaded, written or invalidated): `{namespace}#guard:{{key}}`.
    pub fn guard(&self) -> &str {
        self.guard.get_or_init(|| self.derived("guard"))
    }

    /// Where the key's stampede lock is taken: `{namespace}#lock:{{key}}`.
    pub fn lock(&self) -> &str {
        self.lock.get_or_init(|| self.derived("lock"))
    }

    /// The key as stored (shortened if it was long), without the namespace.
    pub(crate) fn key(&self) -> &str {
        let entry = self.entry();
        &entry[self.namespace + 2..entry.len() - 1]
    }

    /// The names an entry depends on: the entry's, then its tags' tokens.
    pub(crate) fn names(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        self.names.iter()
    }

    /// The same key's names without its tags: what invalidating it needs.
    pub(crate) fn untagged(&self) -> EntryKeys {
        EntryKeys {
            names: [self.entry()].into_iter().collect(),
            namespace: self.namespace,
            guard: self.guard.clone(),
            lock: OnceLock::new(),
        }
    }

    fn derived(&self, kind: &str) -> String {
        // The key, in its braces.
        let entry = self.entry();
        let (namespace, key) = (&entry[..self.namespace], &entry[self.namespace + 1..]);
        [namespace, "#", kind, ":", key].concat()
    }
}

/// What one read returns: the entry and the tokens it is checked against.
///
/// Not the key's guard: only a miss needs it, and a miss asks
/// [`Backend::tokens`] for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The encoded entry, if one is stored.
    pub entry: Option<Bytes>,
    /// Each tag's token, in the order of [`EntryKeys::tags`]; `None` if the
    /// tag has none (never used, or evicted).
    pub tags: Vec<Option<u64>>,
}

/// The tokens a load runs under, from [`Backend::tokens`] or [`Backend::lock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The key's guard token.
    pub guard: u64,
    /// Each tag's token, in the order of [`EntryKeys::tags`].
    pub tags: Vec<u64>,
}

impl Tokens {
    /// A [`Fetched`] of `entry` read together with these tokens.
    pub(crate) fn fetched(&self, entry: Option<Bytes>) -> Fetched {
        Fetched {
            entry,
            tags: self.tags.iter().copied().map(Some).collect(),
        }
    }
}

/// A renewal of a stored entry, for [`Backend::renew`]: its `stored_at`
/// and `fresh_until` times, which identify the entry that was read, are
/// replaced by new ones, and the backend keeps it `ttl` from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    was: [u8; 16],
    now: [u8; 16],
    /// How long the backend keeps the renewed entry.
    pub ttl: Duration,
}

impl Renewal {
    /// The renewal of an entry stored at `stored_at_ms` and fresh until
    /// `fresh_until_ms`: stored at `now_ms`, fresh for `fresh`, kept `ttl`.
    pub(crate) fn new(
        (stored_at_ms, fresh_until_ms): (u64, u64),
        now_ms: u64,
        fresh: Duration,
        ttl: Duration,
    ) -> Self {
        let fresh_until = now_ms.saturating_add(crate::clock::duration_ms(fresh));
        Renewal {
            was: crate::entry::Entry::times(stored_at_ms, fresh_until_ms),
            now: crate::entry::Entry::times(now_ms, fresh_until),
            ttl,
        }
    }

    /// `entry` renewed, if it is the entry that was read; `None` otherwise.
    ///
    /// # Examples
    ///
    /// A backend that can compare and set under a lock of its own:
    ///
    /// ```
    /// # fn renew(stored: &mut Option<aside::backend::Bytes>, renewal: aside::backend::Renewal) -> bool {
    /// match stored.as_deref().and_then(|entry| renewal.apply(entry)) {
    ///     Some(renewed) => {
    ///         *stored = Some(renewed);
    ///         true
    ///     }
    ///     None => false,
    /// }
    /// # }
    /// ```
    pub fn apply(&self, entry: &[u8]) -> Option<Bytes> {
        let times = crate::entry::TIMES;
        if entry.get(times.clone())? != self.was {
            return None;
        }
        let mut renewed = entry.to_vec();
        renewed[times].copy_from_slice(&self.now);
        Some(Bytes::from(renewed))
    }

    /// Where in a stored entry the times are, and what they are before and
    /// after: for a backend that rewrites them in place (Redis, in a script).
    pub fn times(&self) -> (std::ops::Range<usize>, &[u8; 16], &[u8; 16]) {
        (crate::entry::TIMES, &self.was, &self.now)
    }
}

/// What [`Backend::lock`] finds once it has taken a key's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// The entry, read again under the lock: another process may have stored
    /// it since the caller's read.
    pub entry: Option<Bytes>,
    /// The tokens a load under this lock runs under (missing ones created).
    pub tokens: Tokens,
}

/// Word of the release of one key's lock, from [`Backend::watch_lock`]: its
/// holder stored the value, or gave up. Dropping it ends the subscription.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (tell, changes) = tokio::sync::watch::channel(0u64);
/// let mut watch = aside::backend::LockWatch::new(changes, ());
/// tell.send_modify(|releases| *releases += 1);
/// watch.released().await; // returns at once: a release came after the watch began
/// # }
/// ```
pub struct LockWatch {
    changes: watch::Receiver<u64>,
    _subscription: Box<dyn Send + Sync>,
}

impl LockWatch {
    /// A watch that wakes whenever the value behind `changes` changes (a
    /// count of releases), holding `subscription` (undone when dropped)
    /// for as long as it lives.
    pub fn new(changes: watch::Receiver<u64>, subscription: impl Send + Sync + 'static) -> Self {
        LockWatch {
            changes,
            _subscription: Box::new(subscription),
        }
    }

    /// Returns at the next release since the watch began or since the last
    /// call returned; never, if the backend can no longer tell (the caller
    /// bounds the wait).
    pub async fn released(&mut self) {
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl std::fmt::Debug for LockWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockWatch").finish_non_exhaustive()
    }
}

/// A storage tier for encoded entries and the tokens that invalidate them.
///
/// [`Cache`](crate::Cache) does everything else (keys, envelopes, TTL choice,
/// coalescing, fail-open, comparing tokens); a backend moves opaque bytes and
/// random tokens. The contract:
///
/// - [`fetch`](Self::fetch) reads an entry and its tags' tokens **in one
///   round trip** (Redis: a `GET`, or an `MGET` with tags, pipelined with a
///   `PEXPIRE` when `touch` asks for sliding expiry), consistently enough
///   that an invalidation completed before the read started is visible to it.
/// - [`tokens`](Self::tokens) returns the guard's and each tag's token, first
///   giving a fresh random token to any that has none (a guard lives for
///   `window`), and keeps each tag's token at least `keep_tags` from now:
///   as long as the entry the load may store, so that no token outlives
///   its use and none expires under a live entry.
/// - [`store`](Self::store) writes an entry expiring after `ttl`,
///   *atomically* only if the key's guard token is still the given one, and
///   releases the caller's lock, if it names one, in the same round trip.
/// - [`invalidate`](Self::invalidate) deletes the entry and gives the guard a
///   fresh random token that lives for `window`, atomically.
/// - [`invalidate_tags`](Self::invalidate_tags) gives each tag a fresh token,
///   or deletes it (the next load creates one): O(1) per tag, whatever the
///   number of entries that carry it.
/// - [`lock`](Self::lock) takes a key's stampede lock if nobody holds it (set
///   if absent, with a token and a TTL) and, in the same round trip, reads the
///   entry again and the tokens a load runs under, as [`tokens`](Self::tokens)
///   does; [`unlock`](Self::unlock) releases a lock only if the token is
///   still the caller's (compare-and-delete).
/// - [`watch_lock`](Self::watch_lock), optional, tells lock waiters when a
///   lock is released (Redis: pub/sub on the lock's name, published by the
///   store and unlock scripts).
/// - Every operation is bounded in time by the backend itself and reports a
///   timeout as [`BackendError::Timeout`].
///
/// Every load and write runs under real tokens, so a token that goes missing
/// (expired or evicted) never equals a recorded one: losing tokens can only
/// cause misses and refused stores, never stale hits.
///
/// An in-process L1 tier in front of Redis, or a Redis Cluster backend, is
/// another implementation of this trait.
///
/// The trait is public so that tests can inject faults and other stores can
/// be plugged in; it may gain methods before 1.0. [`Cache::memory`](crate::Cache::memory)
/// is the reference implementation.
///
/// # Examples
///
/// A backend that is always down: calls still return their loader's result.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use aside::backend::{Backend, BoxFuture, Bytes, EntryKeys, Fetched, Locked, Tokens};
/// use aside::{BackendError, Cache, Policy};
///
/// #[derive(Debug)]
/// struct Down;
///
/// fn down<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, BackendError>> {
///     Box::pin(async { Err(BackendError::Timeout(Duration::from_millis(250))) })
/// }
///
/// impl Backend for Down {
///     fn fetch<'a>(&'a self, _: &'a EntryKeys, _: Option<Duration>)
///         -> BoxFuture<'a, Result<Fetched, BackendError>> { down() }
///     fn tokens<'a>(&'a self, _: &'a EntryKeys, _: Duration, _: Duration) -> BoxFuture<'a, Result<Tokens, BackendError>> { down() }
///     fn store<'a>(&'a self, _: &'a EntryKeys, _: Bytes, _: Duration, _: u64, _: Option<u64>)
///         -> BoxFuture<'a, Result<bool, BackendError>> { down() }
///     fn invalidate<'a>(&'a self, _: &'a EntryKeys, _: Duration) -> BoxFuture<'a, Result<u64, BackendError>> { down() }
///     fn invalidate_tags<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<(), BackendError>> { down() }
///     fn lock<'a>(&'a self, _: &'a EntryKeys, _: u64, _: Duration, _: Duration, _: Duration)
///         -> BoxFuture<'a, Result<Option<Locked>, BackendError>> { down() }
///     fn unlock<'a>(&'a self, _: &'a str, _: u64) -> BoxFuture<'a, Result<(), BackendError>> { down() }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::with_backend(Arc::new(Down));
/// let value = cache.get_or_load("k", &Policy::new(), || async { Ok::<_, ()>(7) }).await;
/// assert_eq!(value, Ok(7));
/// assert_eq!(cache.stats().errors, 1);
/// # }
/// ```
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Reads the entry and its tags' tokens in one round trip; with `touch`,
    /// also pushes the entry's expiry out to `touch` from now.
    fn fetch<'a>(
        &'a self,
        keys: &'a EntryKeys,
        touch: Option<Duration>,
    ) -> BoxFuture<'a, Result<Fetched, BackendError>>;

    /// Reads several entries and their tags' tokens, as [`fetch`](Self::fetch)
    /// does each, answering in the order of `keys`: for a batch lookup, in
    /// one round trip where the backend can. `None` for an entry whose part
    /// of the read failed while others succeeded (a cluster node that is
    /// down); an error if none could be read. The default fetches them one
    /// after another.
    fn fetch_many<'a>(
        &'a self,
        keys: &'a [EntryKeys],
        touch: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<Option<Fetched>>, BackendError>> {
        Box::pin(async move {
            let mut fetched = Vec::with_capacity(keys.len());
            for keys in keys {
                fetched.push(Some(self.fetch(keys, touch).await?));
            }
            Ok(fetched)
        })
    }

    /// Returns the guard's and the tags' tokens, creating the missing ones;
    /// a created guard expires after `window`, and each tag's token lives
    /// at least `keep_tags` from now (longer if it already does). One
    /// round trip.
    fn tokens<'a>(
        &'a self,
        keys: &'a EntryKeys,
        window: Duration,
        keep_tags: Duration,
    ) -> BoxFuture<'a, Result<Tokens, BackendError>>;

    /// Writes `entry`, expiring after `ttl` (never zero), if the key's guard
    /// token is still `guard`, atomically. Returns whether it was written.
    /// With `unlock`, then releases the key's lock if it is still held with
    /// that token, written or not.
    fn store<'a>(
        &'a self,
        keys: &'a EntryKeys,
        entry: Bytes,
        ttl: Duration,
        guard: u64,
        unlock: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, BackendError>>;

    /// Makes the entry at `keys` fresh again as `renewal` says, if it is
    /// still the entry that was read (neither replaced nor deleted since),
    /// and releases the lock held with `unlock` if given, in one atomic
    /// step. Returns whether the entry was renewed. For
    /// [fail-safe](crate::Policy::fail_safe)'s throttle: a value that stood
    /// in for a failed load is served as fresh for a while, in every process.
    ///
    /// The default is unsupported: each failed load then falls back without
    /// the throttle.
    fn renew<'a>(
        &'a self,
        keys: &'a EntryKeys,
        renewal: Renewal,
        unlock: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let _ = (keys, renewal, unlock);
        Box::pin(std::future::ready(Err(BackendError::Unsupported("renew"))))
    }

    /// Deletes the entry and sets a fresh guard token that expires after
    /// `window`; returns the new token.
    fn invalidate<'a>(
        &'a self,
        keys: &'a EntryKeys,
        window: Duration,
    ) -> BoxFuture<'a, Result<u64, BackendError>>;

    /// Gives each tag in `tags` a fresh token, or deletes its token (the
    /// next load creates a fresh one).
    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Takes the key's lock ([`EntryKeys::lock`]) with `token` for `ttl`,
    /// unless it is held (then `None`). Once taken, reads the entry and the
    /// tokens, creating the missing ones as [`tokens`](Self::tokens) does
    /// with `window` and `keep_tags`. One round trip.
    fn lock<'a>(
        &'a self,
        keys: &'a EntryKeys,
        token: u64,
        ttl: Duration,
        window: Duration,
        keep_tags: Duration,
    ) -> BoxFuture<'a, Result<Option<Locked>, BackendError>>;

    /// Releases the lock at `key` if it is still held with `token`.
    fn unlock<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Starts watching for releases of the key's lock, so that a caller
    /// waiting for another process's value learns when it lands instead of
    /// only polling. `None` (the default) if the backend cannot tell: the
    /// caller then polls. Best effort: a release it misses costs the caller
    /// one poll interval.
    fn watch_lock<'a>(&'a self, keys: &'a EntryKeys) -> BoxFuture<'a, Option<LockWatch>> {
        let _ = keys;
        Box::pin(std::future::ready(None))
    }

    /// The state of the backend's own circuit breakers, for a backend that
    /// keeps one per node (a Redis Cluster: a node that hangs is skipped
    /// while the others serve): the worst of them. Such a backend fails an
    /// operation on a node whose breaker is open with
    /// [`BackendError::CircuitOpen`], which the cache counts as
    /// short-circuited rather than as a failure. `None` (the default): the
    /// cache's own breaker, in front of the whole backend, is the only one.
    fn breaker(&self) -> Option<crate::breaker::BreakerState> {
        None
    }

    /// Deletes every entry and token of `namespace` (the names
    /// `{namespace}:...` and `{namespace}#...`), so that every entry becomes
    /// a miss and no load that started before can store. The default:
    /// [`BackendError::Unsupported`].
    fn clear<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        let _ = namespace;
        Box::pin(std::future::ready(Err(BackendError::Unsupported("clear"))))
    }
}

/// A fresh random token: never 0, so that no token equals an unset one
/// wherever 0 stands for "none".
pub(crate) fn fresh_token() -> u64 {
    rand::random::<u64>().max(1)
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use proptest::prelude::*;
    use redis::cluster_routing::Slot;

    use super::EntryKeys;
    use crate::key::storage_key;

    proptest! {
        /// Whatever the key, braces and all, a script that touches an
        /// entry, its guard and its lock touches one slot.
        #[test]
        fn an_entry_its_guard_and_its_lock_share_a_slot(key in "[}{a:]{0,6}") {
            let keys = EntryKeys::new("ns", &storage_key(&key), [""; 0]);
            let slot = Slot::for_key(keys.entry());
            prop_assert_eq!(Slot::for_key(keys.guard()), slot);
            prop_assert_eq!(Slot::for_key(keys.lock()), slot);
        }
    }

    #[test]
    fn tags_spread_over_slots() {
        let slots: std::collections::HashSet<_> = (0..100)
            .map(|i| Slot::for_key(format!("ns#tag:product:{i}")))
            .collect();
        assert!(slots.len() > 90, "{} slots for 100 tags", slots.len());
    }
}

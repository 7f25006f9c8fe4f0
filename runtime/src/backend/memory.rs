//! The embedded default: an in-process store on moka, bounded by bytes.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::sync::Cache as Moka;
use moka::Expiry;

use super::{fresh_token, Backend, BoxFuture, EntryKeys, Fetched, Locked, Renewal, Tokens};
use crate::clock;
use crate::error::BackendError;

/// How many tag tokens are kept. An evicted token only turns the entries
/// carrying its tag into misses.
const TAG_CAPACITY: u64 = 1 << 20;

/// A value, how long it lives, and until when by aside's clock.
///
/// Two clocks expire it: moka's own (the real one), which frees the memory,
/// and [`clock::Instant`], checked on every read, which decides what is
/// served. They agree except in a test that paused tokio's clock, where the
/// second one is the one that counts.
#[derive(Debug, Clone)]
struct Timed<T> {
    value: T,
    ttl: Duration,
    until: Option<clock::Instant>,
}

impl<T> Timed<T> {
    fn new(value: T, ttl: Duration) -> Self {
        Timed {
            value,
            ttl,
            until: clock::deadline(ttl),
        }
    }

    fn live(&self) -> bool {
        self.until.is_none_or(|until| clock::Instant::now() < until)
    }

    /// The value, if it has not expired.
    fn live_value(self) -> Option<T> {
        self.live().then_some(self.value)
    }
}

/// Each value expires after its own TTL, and an overwrite restarts the clock.
struct PerValueTtl;

impl<T> Expiry<String, Timed<T>> for PerValueTtl {
    fn expire_after_create(&self, _key: &String, value: &Timed<T>, _at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Timed<T>,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// In-process storage; operations never fail and never wait on I/O.
#[derive(Debug)]
pub(crate) struct MemoryBackend {
    entries: Moka<String, Timed<Bytes>>,
    guards: Moka<String, Timed<u64>>,
    tags: Moka<String, u64>,
    locks: Moka<String, Timed<u64>>,
    /// Makes a guarded store and an invalidation of the same key atomic with
    /// respect to each other, and lock operations atomic (held only for
    /// in-memory map operations).
    writes: Mutex<()>,
    /// Whether stores keep their entries. Not behind the typed in-process
    /// tier, which then holds every value: this backend only keeps the
    /// tokens and locks, and a store only checks the guard.
    keep_values: bool,
}

impl MemoryBackend {
    /// A store that evicts (least recently and frequently used first) once its
    /// entries, keys included, weigh more than `capacity_bytes`; with
    /// `keep_values` false, one that keeps no entry at all.
    pub(crate) fn new(capacity_bytes: u64, keep_values: bool) -> Self {
        let entries = Moka::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &String, value: &Timed<Bytes>| {
                u32::try_from(key.len() + value.value.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerValueTtl)
            .build();
        MemoryBackend {
            entries,
            guards: Moka::builder().expire_after(PerValueTtl).build(),
            tags: Moka::new(TAG_CAPACITY),
            locks: Moka::builder().expire_after(PerValueTtl).build(),
            writes: Mutex::new(()),
            keep_values,
        }
    }
}

impl Backend for MemoryBackend {
    fn fetch<'a>(
        &'a self,
        keys: &'a EntryKeys,
        touch: Option<Duration>,
    ) -> BoxFuture<'a, Result<Fetched, BackendError>> {
        // The entry first, then the tokens: an invalidation in between shows
        // as a changed token, so the entry is not used.
        let entry = match touch {
            None => self.entries.get(keys.entry()).and_then(Timed::live_value),
            Some(ttl) => {
                // Read and re-insert (which restarts the entry's clock, see
                // PerValueTtl) as one step, so that an invalidation or a newer
                // write cannot fall in between and be undone.
                let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
                let entry = self.entries.get(keys.entry()).and_then(Timed::live_value);
                if let Some(entry) = &entry {
                    self.entries
                        .insert(keys.entry().to_owned(), Timed::new(entry.clone(), ttl));
                }
                entry
            }
        };
        let tags = keys.tags().map(|t| self.tags.get(t)).collect();
        Box::pin(std::future::ready(Ok(Fetched { entry, tags })))
    }

    fn tokens<'a>(
        &'a self,
        keys: &'a EntryKeys,
        window: Duration,
        // Tag tokens are bounded by count here, least recently used first.
        _keep_tags: Duration,
    ) -> BoxFuture<'a, Result<Tokens, BackendError>> {
        Box::pin(std::future::ready(Ok(self.tokens_now(keys, window))))
    }

    fn store<'a>(
        &'a self,
        keys: &'a EntryKeys,
        entry: Bytes,
        ttl: Duration,
        guard: u64,
        unlock: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let allowed = self
            .guards
            .get(keys.guard())
            .and_then(Timed::live_value)
            .is_some_and(|g| g == guard);
        if allowed && self.keep_values {
            self.entries
                .insert(keys.entry().to_owned(), Timed::new(entry, ttl));
        }
        if let Some(token) = unlock {
            self.release(keys.lock(), token);
        }
        Box::pin(std::future::ready(Ok(allowed)))
    }

    fn renew<'a>(
        &'a self,
        keys: &'a EntryKeys,
        renewal: Renewal,
        unlock: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let renewed = self
            .entries
            .get(keys.entry())
            .and_then(Timed::live_value)
            .and_then(|stored| renewal.apply(&stored));
        let done = renewed.is_some();
        if let Some(entry) = renewed {
            self.entries
                .insert(keys.entry().to_owned(), Timed::new(entry, renewal.ttl));
        }
        if let Some(token) = unlock {
            self.release(keys.lock(), token);
        }
        Box::pin(std::future::ready(Ok(done)))
    }

    fn invalidate<'a>(
        &'a self,
        keys: &'a EntryKeys,
        window: Duration,
    ) -> BoxFuture<'a, Result<u64, BackendError>> {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let token = fresh_token();
        self.guards
            .insert(keys.guard().to_owned(), Timed::new(token, window));
        self.entries.invalidate(keys.entry());
        Box::pin(std::future::ready(Ok(token)))
    }

    fn clear<'a>(&'a self, _namespace: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        // This store is the namespace's alone. Locks stay with their holders.
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        self.entries.invalidate_all();
        self.guards.invalidate_all();
        self.tags.invalidate_all();
        Box::pin(std::future::ready(Ok(())))
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<(), BackendError>> {
        for tag in tags {
            self.tags.insert(tag.clone(), fresh_token());
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn lock<'a>(
        &'a self,
        keys: &'a EntryKeys,
        token: u64,
        ttl: Duration,
        window: Duration,
        _keep_tags: Duration,
    ) -> BoxFuture<'a, Result<Option<Locked>, BackendError>> {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let free = !self.locks.get(keys.lock()).is_some_and(|held| held.live());
        let locked = free.then(|| {
            self.locks.insert(keys.lock().to_owned(), Timed::new(token, ttl));
            Locked {
                entry: self.entries.get(keys.entry()).and_then(Timed::live_value),
                tokens: self.tokens_now(keys, window),
            }
        });
        Box::pin(std::future::ready(Ok(locked)))
    }

    fn unlock<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<(), BackendError>> {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        self.release(key, token);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl MemoryBackend {
    /// The guard's and the tags' tokens, creating the missing ones. Each
    /// get-or-create is atomic for its key; an invalidation racing it either
    /// comes first (and its token is returned) or replaces it after.
    fn tokens_now(&self, keys: &EntryKeys, window: Duration) -> Tokens {
        let guard = self
            .guards
            .entry_by_ref(keys.guard())
            .or_insert_with_if(|| Timed::new(fresh_token(), window), |g| !g.live())
            .into_value();
        let tags = keys
            .tags()
            .map(|t| self.tags.get_with_by_ref(t, fresh_token))
            .collect();
        Tokens {
            guard: guard.value,
            tags,
        }
    }

    /// Releases the lock at `key` if `token` holds it; the caller holds `writes`.
    fn release(&self, key: &str, token: u64) {
        if self
            .locks
            .get(key)
            .is_some_and(|held| held.live() && held.value == token)
        {
            self.locks.invalidate(key);
        }
    }
}

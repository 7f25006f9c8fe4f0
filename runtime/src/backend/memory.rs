//! The embedded default: an in-process cache on moka, bounded by bytes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::future::Cache as Moka;
use moka::Expiry;

use super::{Backend, BoxFuture};
use crate::BackendError;

/// An entry as moka holds it: the bytes and the TTL they were stored with.
#[derive(Debug, Clone)]
struct Stored {
    bytes: Bytes,
    ttl: Duration,
}

/// Each entry expires after its own TTL, and an overwrite restarts the clock.
struct PerEntryTtl;

impl Expiry<String, Stored> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Stored, _at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Stored,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// In-process storage; operations never fail or block.
#[derive(Debug, Clone)]
pub(crate) struct MemoryBackend {
    entries: Moka<String, Stored>,
}

impl MemoryBackend {
    /// A store that evicts (least recently and frequently used first) once its
    /// entries, keys included, weigh more than `capacity_bytes`.
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        let entries = Moka::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &String, value: &Stored| {
                u32::try_from(key.len() + value.bytes.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        MemoryBackend { entries }
    }
}

impl Backend for MemoryBackend {
    fn fetch<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move { Ok(self.entries.get(key).await.map(|s| s.bytes)) })
    }

    fn store<'a>(
        &'a self,
        key: &'a str,
        entry: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.entries
                .insert(key.to_owned(), Stored { bytes: entry, ttl })
                .await;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.entries.invalidate(key).await;
            Ok(())
        })
    }
}

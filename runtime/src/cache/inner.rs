//! What a [`Cache`](crate::Cache) handle shares between its clones: the
//! backend behind its breaker, the in-process tier, the settings, the
//! flights and the counters; and the one door to the backend, [`Inner::call`]
//! (timeout and breaker), with fail-open's [`Inner::report`].
//!
//! Knows no flow: the flows in the sibling files use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::Instrument;

use crate::backend::{Backend, BoxFuture, EntryKeys};
use crate::breaker::{Breaker, BreakerState};
use crate::codec::Codec;
use crate::counters::Counters;
use crate::error::BackendError;
use crate::flight::Flights;
use crate::key::{storage_key, Key};
use crate::l1::Local;
use crate::policy::Policy;
use crate::recovery::Recovery;

/// The settings a [`CacheBuilder`](crate::CacheBuilder) hands to the cache.
pub(crate) struct Settings {
    pub(crate) namespace: String,
    pub(crate) default_ttl: Duration,
    pub(crate) invalidation_window: Duration,
    /// The largest payload stored, in bytes (and inflated, compressed).
    pub(crate) max_entry_size: usize,
    /// Payloads larger than this are stored compressed.
    pub(crate) compress_above: Option<usize>,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) codec: Codec,
    /// Off: every call runs its loader, and nothing is stored or read.
    pub(crate) enabled: bool,
    /// Record keys in spans.
    pub(crate) trace_keys: bool,
    /// The most invalidations kept for replay; 0: none.
    pub(crate) max_pending: usize,
    /// What records the cache's operations, in a test.
    #[cfg(feature = "testing")]
    pub(crate) recorder: Option<crate::testing::Recorder>,
}

pub(super) struct Inner {
    pub(super) backend: Arc<dyn Backend>,
    /// Lock releases started in the background, by lock name; see
    /// `Cache::release_behind`.
    pub(super) releasing: Mutex<HashMap<String, Arc<Notify>>>,
    /// The typed in-process tier, if this cache has one.
    pub(super) local: Option<Arc<Local>>,
    pub(super) settings: Settings,
    pub(super) flights: Flights,
    pub(super) counters: Counters,
    pub(super) breaker: Breaker,
    /// Invalidations that met a failing backend, until it answers again.
    pub(super) recovery: Arc<Recovery>,
    /// Whether an oversized value was logged at warn level already.
    pub(super) warned_oversized: std::sync::atomic::AtomicBool,
    /// Whether a policy's `l1` on a cache without the tier was logged already.
    pub(super) warned_l1: std::sync::atomic::AtomicBool,
    pub(super) metrics: crate::metrics::CacheMetrics,
    /// Write-behind: the Redis backend's streams, and each log's counters.
    #[cfg(feature = "redis")]
    pub(super) logs: Logs,
}

/// What a cache's write-behind logs share: Redis, and each log's state by
/// name, which the cache knows only as far as [`Log`] says.
#[cfg(feature = "redis")]
#[derive(Default)]
pub(super) struct Logs {
    pub(super) streams: std::sync::OnceLock<Arc<dyn crate::backend::streams::Streams>>,
    pub(super) logs: Mutex<Vec<NamedLog>>,
}

/// One log's state, as itself (to hand it back) and as a [`Log`].
#[cfg(feature = "redis")]
pub(super) struct NamedLog {
    pub(super) name: String,
    pub(super) state: Arc<dyn std::any::Any + Send + Sync>,
    pub(super) log: Arc<dyn Log>,
}

/// A write-behind log's state, as the cache sees it: what it adds to the
/// cache's [`Stats`](crate::stats::Stats). (Defined here, implemented by write-behind, which sits
/// above the cache.)
#[cfg(feature = "redis")]
pub(crate) trait Log: Send + Sync {
    /// Changes logged and not yet flushed, when last seen.
    fn backlog(&self) -> u64;
}

impl Inner {
    pub(super) fn new(backend: Arc<dyn Backend>, local: Option<Arc<Local>>, settings: Settings) -> Inner {
        let breaker = Breaker::new(settings.breaker_threshold, settings.breaker_cooldown);
        let (flights, counters) = (Flights::default(), Counters::default());
        let recovery = Arc::new(Recovery::new(settings.max_pending));
        Inner {
            backend,
            releasing: Mutex::default(),
            local,
            settings,
            flights,
            counters,
            breaker,
            recovery,
            warned_oversized: Default::default(),
            warned_l1: Default::default(),
            metrics: crate::metrics::CacheMetrics::new(),
            #[cfg(feature = "redis")]
            logs: Logs::default(),
        }
    }

    /// The breaker's state: the backend's own (the worst of a cluster's
    /// nodes), or the cache's in front of it.
    pub(super) fn breaker_state(&self) -> BreakerState {
        self.backend.breaker().unwrap_or_else(|| self.breaker.state())
    }

    /// Runs one backend operation (`name`, for its span) through the circuit breaker: while it is
    /// open, fails at once with [`BackendError::CircuitOpen`] instead.
    pub(super) async fn call<'a, T>(
        &'a self,
        name: &'static str,
        op: impl FnOnce(&'a dyn Backend) -> BoxFuture<'a, Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        if !self.breaker.allow() {
            Counters::incr(&self.counters.short_circuited);
            self.metrics.short_circuited();
            return Err(BackendError::CircuitOpen);
        }
        // One span per round trip, under the call's: where a slow call went.
        let span = tracing::debug_span!("aside.backend", op = name);
        let timer = crate::metrics::Timer::start();
        let result = op(&*self.backend).instrument(span).await;
        let failed = self.record(&result);
        self.metrics.backend(name, timer, failed, || self.breaker_state());
        result
    }

    /// Tells the breaker (and a waiting replay) what a backend operation
    /// came to; returns whether it counts as the backend's failure.
    pub(super) fn record<T>(&self, result: &Result<T, BackendError>) -> bool {
        match result {
            Ok(_) => {
                self.breaker.success();
                // The backend answers: a replay waiting to retry goes now.
                if self.recovery.pending() > 0 {
                    self.recovery.answered.notify_one();
                }
                false
            }
            // One of the backend's own breakers (a cluster node's) is open:
            // short-circuited there, and not the whole backend's failure.
            Err(BackendError::CircuitOpen) => {
                Counters::incr(&self.counters.short_circuited);
                self.metrics.short_circuited();
                false
            }
            Err(error) if error.is_fault() => {
                self.breaker.failure();
                true
            }
            // The backend answered that it cannot, or a cluster refused
            // while it moves a slot: no node is at fault.
            Err(_) => false,
        }
    }

    /// The storage names for `key` and `tags` (each shortened past
    /// [`MAX_KEY_LEN`](crate::key::MAX_KEY_LEN) bytes). Entries live at `{ns}:{{key}}`;
    /// aside's own tokens at `{ns}#...`, which no entry name can equal
    /// (the namespace may not contain `#`, nor braces, which would move the
    /// hash tag).
    pub(super) fn keys<'t, T>(&self, key: &str, tags: T) -> EntryKeys
    where
        T: IntoIterator<Item = &'t str>,
        T::IntoIter: Clone,
    {
        let tags = tags.into_iter();
        let namespace = &self.settings.namespace;
        let tag_bytes = tags.clone().map(|tag| self.tag_key_len(tag)).sum();
        EntryKeys::with_tags(namespace, &storage_key(key), tag_bytes, |names| {
            for tag in tags {
                names.push_with(|name| self.write_tag_key(name, tag));
            }
        })
    }

    pub(super) fn tag_key(&self, tag: &str) -> String {
        let mut name = Key::with_capacity(self.tag_key_len(tag));
        self.write_tag_key(&mut name, tag);
        name.into()
    }

    /// How long `tag`'s name is, unless the tag is shortened to a digest.
    fn tag_key_len(&self, tag: &str) -> usize {
        self.settings.namespace.len() + "#tag:".len() + tag.len()
    }

    fn write_tag_key(&self, name: &mut Key, tag: &str) {
        name.lit(&self.settings.namespace)
            .lit("#tag:")
            .lit(&storage_key(tag));
    }

    /// This process changed `names` (storage names): the in-process tier
    /// drops what depends on them before the change returns.
    pub(super) fn changed<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        if let Some(local) = &self.local {
            local.changed(names);
        }
    }

    /// The in-process tier, if `policy` (whose sliding expiry is `touch`)
    /// uses it. A tier that is the cache's only store is always used; one in
    /// front of Redis not for sliding entries, whose hits must push the
    /// expiry out in Redis.
    pub(super) fn two_tiers(&self) -> bool {
        self.local.as_ref().is_some_and(|local| !local.alone())
    }

    pub(super) fn local_for(&self, policy: &Policy, touch: Option<Duration>) -> Option<&Local> {
        let local = self.local.as_deref()?;
        let used = local.alone() || (policy.l1_on() && touch.is_none());
        used.then_some(local)
    }

    /// Frees `key`'s place in the in-process tier (once
    /// [`changed`](Self::changed) has made sure it is not served).
    pub(super) fn forget(&self, key: &str) {
        if let Some(local) = &self.local {
            local.forget(key);
        }
    }

    pub(super) fn releasing(&self) -> MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.releasing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fail-open: a backend error becomes `None`, logged and counted.
    pub(super) fn report<T>(&self, result: Result<T, BackendError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            // Counted as short-circuited, and logged once when the breaker opened.
            Err(BackendError::CircuitOpen) => None,
            Err(error) => {
                Counters::incr(&self.counters.errors);
                let source = std::error::Error::source(&error);
                tracing::warn!(%error, ?source, "aside: cache backend failed, calling through");
                None
            }
        }
    }
}

//! Write-behind: a write is logged in Redis (and cached) now, and reaches
//! the database later, in batches, at least once. [`WriteBehind`] logs
//! writes; a [`Flusher`] hands them to a function of yours as a [`Batch`].
//! (With the `redis` feature, on by default: the log is a Redis stream.)

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

mod batch;
mod flusher;
mod log;

pub use batch::{Batch, Counted, ParseVersionError, Version, Written};
pub use flusher::{Flusher, FlusherBuilder};
pub(crate) use log::Counters;

use log::{Appended, Change, Log};

use crate::backend::BoxFuture;
use crate::cache::Cache;
use crate::cacheable::Cacheable;
use crate::cached_entry::CachedEntry;
use crate::error::Error;

/// What a writer does when the backlog is full (see
/// [`WriteBehindBuilder::max_backlog`]).
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), aside::Error> {
/// use std::time::Duration;
///
/// let cache = aside::Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
/// let views = aside::write_behind::WriteBehind::<u64, ()>::builder(&cache, "page_views")
///     .max_backlog(100_000)
///     .when_full(aside::write_behind::WhenFull::Wait(Duration::from_millis(500)))
///     .build()?;
/// match views.add(&7, 1).await {
///     Err(aside::Error::BacklogFull { .. }) => { /* the flushers are behind: shed load */ }
///     other => { other?; }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenFull {
    /// Fail the write at once with [`Error::BacklogFull`].
    Reject,
    /// Wait up to this long for the flushers to make room, then fail with
    /// [`Error::BacklogFull`].
    Wait(Duration),
}

/// A write-behind log: writes are acknowledged once Redis has logged them
/// (and, if so configured, the cached value updated), and a [`Flusher`]
/// hands them to the database in batches.
///
/// - **Writes.** [`set`](Self::set) logs a record's new value, and
///   [`add`](Self::add) an increment of a counter, as entries of a Redis
///   Stream (`XADD`, in a script that also enforces the backlog's bound).
///   Each returns once Redis has acknowledged the entry. With
///   [`cached`](WriteBehindBuilder::cached), `set` also stores the value
///   as the record's cached entry, so readers see the write at once.
/// - **Flushers.** Any number, in any processes, read the log as one
///   consumer group (`XREADGROUP`). Each hands batches to the flush function
///   (full, or after [`flush_every`](FlusherBuilder::flush_every)),
///   coalesced per record: the last value wins, increments are summed. It
///   acknowledges a batch only once the function returned `Ok`, retries a
///   failed one with backoff, and takes over the batch of a flusher that
///   died (after [`claim_after`](FlusherBuilder::claim_after)).
///
/// # The promise
///
/// Every change whose write returned `Ok` reaches the flush function **at
/// least once**. A batch is delivered again when its flush failed, or when
/// its flusher died (or lost Redis) before acknowledging it. A delivered
/// again batch has the same [`Batch::id`] and the same changes, so a flush
/// function that records the ids of the batches it applied, in the same
/// database transaction, applies each exactly once:
///
/// ```sql
/// -- in one transaction, per batch:
/// INSERT INTO flushed_batches (log, batch) VALUES ('page_views', :batch_id);  -- a repeat fails here: skip it
/// UPDATE products SET views = views + :delta WHERE id = :id;                 -- for each counter
/// INSERT INTO products (id, price, version) VALUES (:id, :price, :version)   -- for each value
///   ON CONFLICT (id) DO UPDATE SET price = excluded.price, version = excluded.version
///   WHERE excluded.version > products.version;                              -- an older value loses
/// ```
///
/// Values need only the version check: batches of two flushers may commit
/// in either order, and the version keeps the last write. Counters need the
/// batch id: an increment applied twice would count twice.
///
/// Durability is Redis's: with AOF and `appendfsync always` nothing
/// acknowledged is lost; with `everysec`, up to about a second of writes
/// can be, if Redis itself dies. An in-memory cache, or one turned off,
/// has nowhere durable to log: [`WriteBehind::new`] refuses it.
///
/// Within its [`write_timeout`](WriteBehindBuilder::write_timeout), a
/// write retries by itself, and a retry of a change already logged is not
/// logged again. A write that returns an error was not acknowledged; if an
/// attempt before the error timed out, Redis may still have logged it, and
/// it is then flushed like any other.
///
/// # Examples
///
/// Article 002's page views, flushed in batches without losing an
/// increment that lands during a flush:
///
/// ```no_run
/// use aside::write_behind::{Batch, WriteBehind};
/// use aside::Cache;
///
/// # #[tokio::main] async fn main() -> Result<(), aside::Error> {
/// let cache = Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
/// let views = WriteBehind::<u64, ()>::new(&cache, "page_views")?;
///
/// // On each page view: one round trip to Redis.
/// views.add(&42, 1).await?;
///
/// // In every process that should flush:
/// let flusher = views
///     .flusher(|batch: Batch<u64, ()>| async move {
///         for counted in batch.counters() {
///             println!("UPDATE products SET views = views + {} WHERE id = {}", counted.delta, counted.id);
///         }
///         Ok::<_, std::io::Error>(())
///     })
///     .start()?;
/// # flusher.stop().await;
/// # Ok(()) }
/// ```
pub struct WriteBehind<K, V> {
    shared: Arc<Shared<K, V>>,
}

/// Stores a written value as its record's cached entry.
type Refresh<K, V> = dyn Fn(&Cache, &K, V) -> BoxFuture<'static, ()> + Send + Sync;

/// Invalidates a record's cached entry.
pub(crate) type Invalidate<K> = dyn Fn(&Cache, &K) -> BoxFuture<'static, ()> + Send + Sync;

/// Where written values are cached: stored there by a write, and
/// invalidated once flushed (see [`WriteBehindBuilder::cached`]).
struct Cached<K, V> {
    put: Box<Refresh<K, V>>,
    invalidate: Arc<Invalidate<K>>,
}

struct Shared<K, V> {
    log: Arc<Log>,
    cache: Cache,
    max_backlog: u64,
    when_full: WhenFull,
    write_timeout: Duration,
    cached: Option<Cached<K, V>>,
}

impl<K, V> Clone for WriteBehind<K, V> {
    fn clone(&self) -> Self {
        WriteBehind {
            shared: self.shared.clone(),
        }
    }
}

impl<K, V> fmt::Debug for WriteBehind<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehind")
            .field("log", &self.shared.log.name)
            .field("max_backlog", &self.shared.max_backlog)
            .field("when_full", &self.shared.when_full)
            .finish_non_exhaustive()
    }
}

/// Counters of one write-behind log in this process: its writers' and its
/// flushers'.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), aside::Error> {
/// let cache = aside::Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
/// let views = aside::write_behind::WriteBehind::<u64, ()>::new(&cache, "page_views")?;
/// let stats = views.stats();
/// println!("{} unflushed, the last batch {:?} behind", stats.backlog, stats.lag);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriteBehindStats {
    /// Changes logged by this process's writers.
    pub appended: u64,
    /// Writes refused because the backlog was full.
    pub rejected: u64,
    /// The changes not yet flushed, by every process, when last seen (by a
    /// write or a flush of this process); [`WriteBehind::backlog`] asks Redis.
    pub backlog: u64,
    /// Changes flushed by this process's flushers (before coalescing).
    pub flushed: u64,
    /// Batches flushed.
    pub batches: u64,
    /// Flush attempts that failed (each is retried).
    pub flush_errors: u64,
    /// Batches delivered again: after a failure, or taken over from a
    /// flusher that died.
    pub redelivered: u64,
    /// Changes that did not decode as the flusher's types: dropped, and
    /// logged at error level.
    pub undecodable: u64,
    /// How long the oldest change of the last batch flushed had waited,
    /// from its write to the flush function's success.
    pub lag: Duration,
}

impl<K, V> WriteBehind<K, V>
where
    K: Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The log `name` on `cache`'s Redis, with the default settings (see
    /// [`builder`](Self::builder)).
    ///
    /// # Errors
    ///
    /// As [`WriteBehindBuilder::build`].
    pub fn new(cache: &Cache, name: &str) -> Result<Self, Error> {
        Self::builder(cache, name).build()
    }

    /// A builder for the log `name` on `cache`'s Redis. Every process that
    /// names the same log (on the same Redis and namespace) writes to it and
    /// flushes it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), aside::Error> {
    /// use std::time::Duration;
    /// use aside::write_behind::{WhenFull, WriteBehind};
    ///
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Product { price: u32 }
    ///
    /// #[aside::cached(key = "product:<id>", ttl = "1h")]
    /// async fn product(id: u64) -> Option<Product> { None /* the query */ }
    ///
    /// let cache = aside::Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
    /// let products = WriteBehind::<u64, Product>::builder(&cache, "products")
    ///     .cached(|id| aside::entry!(product(*id)))
    ///     .max_backlog(1_000_000)
    ///     .when_full(WhenFull::Wait(Duration::from_secs(1)))
    ///     .build()?;
    /// products.set(&7, Product { price: 120 }).await?; // product(7) now returns it
    /// # Ok(()) }
    /// ```
    pub fn builder(cache: &Cache, name: &str) -> WriteBehindBuilder<K, V> {
        WriteBehindBuilder {
            cache: cache.clone(),
            name: name.to_owned(),
            max_backlog: 1_000_000,
            when_full: WhenFull::Reject,
            write_timeout: Duration::from_secs(5),
            cached: None,
        }
    }

    /// Logs `value` as record `id`'s new value, then, with
    /// [`cached`](WriteBehindBuilder::cached), stores it as its cached
    /// entry. Returns the change's version once Redis has logged it.
    ///
    /// # Errors
    ///
    /// [`Error::BacklogFull`], [`Error::Encode`], or [`Error::Backend`] if
    /// Redis did not acknowledge the change within the write timeout.
    pub async fn set(&self, id: &K, value: V) -> Result<Version, Error> {
        let bytes = serde_json::to_vec(&value).map_err(|e| Error::Encode(Box::new(e)))?;
        let version = self.append(id, &Change::Set(bytes)).await?;
        if let Some(cached) = &self.shared.cached {
            (cached.put)(&self.shared.cache, id, value).await;
        }
        Ok(version)
    }

    /// Logs an increment of counter `id` by `delta` (negative to decrement).
    /// Returns the change's version once Redis has logged it.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub async fn add(&self, id: &K, delta: i64) -> Result<Version, Error> {
        self.append(id, &Change::Add(delta)).await
    }

    /// The changes not yet flushed, by every process: the stream's length.
    ///
    /// # Errors
    ///
    /// Redis did not answer.
    pub async fn backlog(&self) -> Result<u64, Error> {
        Ok(self.shared.log.length().await?)
    }

    /// What this process's writers and flushers of the log did so far.
    pub fn stats(&self) -> WriteBehindStats {
        let c = &self.shared.log.counters;
        WriteBehindStats {
            appended: c.appended.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            backlog: c.backlog.load(Relaxed),
            flushed: c.flushed.load(Relaxed),
            batches: c.batches.load(Relaxed),
            flush_errors: c.flush_errors.load(Relaxed),
            redelivered: c.redelivered.load(Relaxed),
            undecodable: c.undecodable.load(Relaxed),
            lag: Duration::from_millis(c.lag_ms.load(Relaxed)),
        }
    }

    /// A flusher of this log that hands batches to `flush`; configure it,
    /// then [`start`](FlusherBuilder::start) it. `flush` must return `Ok`
    /// only once the batch is durably applied, and must tolerate a batch
    /// delivered again (see the type's docs).
    pub fn flusher<F, Fut, E>(&self, flush: F) -> FlusherBuilder<K, V, F>
    where
        F: Fn(Batch<K, V>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let invalidate = self.shared.cached.as_ref().map(|cached| {
            let cache = self.shared.cache.clone();
            (cache, cached.invalidate.clone())
        });
        FlusherBuilder::new(self.shared.log.clone(), flush, invalidate)
    }

    /// Logs one change, retrying (under the same change id, so it is logged
    /// once) until Redis acknowledges it or the write timeout has passed.
    async fn append(&self, id: &K, what: &Change) -> Result<Version, Error> {
        let shared = &*self.shared;
        let key = serde_json::to_vec(id).map_err(|e| Error::Encode(Box::new(e)))?;
        let change = rand::random::<u64>();
        // A change's marker outlives every retry of it.
        let remember = shared.write_timeout + Duration::from_secs(60);
        let started = crate::clock::Instant::now();
        let full_until = match shared.when_full {
            WhenFull::Reject => started,
            WhenFull::Wait(wait) => started + wait,
        };
        let mut pause = Duration::from_millis(5);
        loop {
            let outcome = shared
                .log
                .append(change, &key, what, shared.max_backlog, remember)
                .await;
            let now = crate::clock::Instant::now();
            match outcome {
                Ok(Appended::Logged(version)) => {
                    shared.log.counters.appended();
                    return Ok(version);
                }
                Ok(Appended::Full) if now + pause > full_until => {
                    shared.log.counters.rejected();
                    return Err(Error::BacklogFull {
                        log: shared.log.name.clone(),
                        limit: shared.max_backlog,
                    });
                }
                Ok(Appended::Full) => {}
                Err(error) if !passing(&error) || now + pause > started + shared.write_timeout => {
                    return Err(error.into())
                }
                Err(error) => {
                    tracing::debug!(log = %shared.log.name, %error, "aside: a write-behind append failed; retrying");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// Configures a [`WriteBehind`]; made by [`WriteBehind::builder`].
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), aside::Error> {
/// use std::time::Duration;
///
/// let cache = aside::Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
/// let prices = aside::write_behind::WriteBehind::<u64, u32>::builder(&cache, "prices")
///     .write_timeout(Duration::from_secs(2))
///     .build()?;
/// prices.set(&7, 120).await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until built"]
pub struct WriteBehindBuilder<K, V> {
    cache: Cache,
    name: String,
    max_backlog: u64,
    when_full: WhenFull,
    write_timeout: Duration,
    cached: Option<Cached<K, V>>,
}

impl<K, V> fmt::Debug for WriteBehindBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehindBuilder")
            .field("name", &self.name)
            .field("max_backlog", &self.max_backlog)
            .field("when_full", &self.when_full)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

impl<K, V> WriteBehindBuilder<K, V>
where
    K: Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The most changes the log holds unflushed, over every process; a write
    /// beyond it is refused or waits, as [`when_full`](Self::when_full)
    /// says, and is never dropped silently. `0`: no bound. Default 1,000,000.
    pub fn max_backlog(mut self, changes: u64) -> Self {
        self.max_backlog = changes;
        self
    }

    /// What a write does when the backlog is full. Default
    /// [`WhenFull::Reject`].
    pub fn when_full(mut self, when: WhenFull) -> Self {
        self.when_full = when;
        self
    }

    /// How long a write keeps trying to get its change logged while Redis
    /// is slow, unreachable, restarting or failing over. An answer Redis
    /// would give again (a missing right, a key of another type) fails the
    /// write at once. Default 5 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Where [`set`](WriteBehind::set) also caches a record's value: the
    /// entry of the `#[cached]` function that reads it, as
    /// [`entry!`](crate::entry) names it (`|id| aside::entry!(product(*id))`),
    /// in that function's cache if it names one (`cache = self.cache`),
    /// else in the log's.
    /// A function returning `Option<V>` gets `Some(value)`.
    ///
    /// Once a batch is flushed, its flusher invalidates its records'
    /// entries: until then a read that missed (the entry evicted or
    /// expired) may have loaded the database's older value, which must not
    /// stay for a whole TTL.
    pub fn cached<T, F, const KNOWS_CACHE: bool>(mut self, entry: F) -> Self
    where
        T: Cacheable + From<V>,
        F: Fn(&K) -> CachedEntry<T, KNOWS_CACHE> + Send + Sync + 'static,
    {
        let entry = Arc::new(entry);
        let of = entry.clone();
        let put = Box::new(move |cache: &Cache, id: &K, value: V| -> BoxFuture<'static, ()> {
            let entry = of(id);
            let cache = entry.fixed_cache().unwrap_or(cache).clone();
            Box::pin(async move { entry.put(&cache, T::from(value)).await })
        });
        let invalidate = Arc::new(move |cache: &Cache, id: &K| -> BoxFuture<'static, ()> {
            let entry = entry(id);
            let cache = entry.fixed_cache().unwrap_or(cache).clone();
            Box::pin(async move {
                if let Err(error) = entry.invalidate(&cache).await {
                    tracing::warn!(%error, key = entry.key(), "aside: a flushed record's cached entry could not be invalidated");
                }
            })
        });
        self.cached = Some(Cached { put, invalidate });
        self
    }

    /// The log, ready for writes and flushers.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the cache has no Redis (in memory, or turned
    /// off: an in-memory log would not be durable), or the name is empty or
    /// has `{` or `}`.
    pub fn build(self) -> Result<WriteBehind<K, V>, Error> {
        if self.name.is_empty() || self.name.contains(['{', '}']) {
            return Err(Error::Config(
                "a write-behind log's name must not be empty, nor contain `{` or `}`".into(),
            ));
        }
        let Some((streams, namespace)) = self.cache.streams() else {
            return Err(Error::Config(
                "write-behind needs a cache on Redis: an in-memory log would lose every \
                 acknowledged write with the process"
                    .into(),
            ));
        };
        let counters = self.cache.log(&self.name, || Counters::new(&self.name));
        Ok(WriteBehind {
            shared: Arc::new(Shared {
                log: Arc::new(Log::new(streams, &namespace, &self.name, counters)),
                cache: self.cache,
                max_backlog: self.max_backlog,
                when_full: self.when_full,
                write_timeout: self.write_timeout,
                cached: self.cached,
            }),
        })
    }
}

/// Whether an append's failure may pass if the append is sent again: Redis
/// slow, unreachable, restarting or failing over. Not an answer it would
/// give again (a missing right, a key of another type).
fn passing(error: &crate::BackendError) -> bool {
    match error {
        crate::BackendError::Redis(e) => {
            e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || matches!(
                    e.code(),
                    Some("LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY" | "BUSY")
                )
        }
        _ => true,
    }
}

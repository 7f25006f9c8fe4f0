//! The [`Cache`] handle and its [`CacheBuilder`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::memory::MemoryBackend;
use crate::backend::redis::RedisBackend;
use crate::backend::Backend;
use crate::entry::{now_ms, Entry};
use crate::flight::{Flights, Join, Landed, Leader, Waiter};
use crate::stats::Counters;
use crate::{BackendError, Error, Policy, Stats};

/// A cache: a cheap-to-clone handle (an `Arc`) over one backend, its settings
/// and its counters. Clones share everything.
///
/// ## Behavior
///
/// - **Cache-aside.** [`get_or_load`](Self::get_or_load) looks the key up,
///   returns a hit, and otherwise runs the loader once, stores its value with
///   the policy's TTL and returns it.
/// - **Negative caching.** A value that serializes to JSON `null` (a `None`)
///   is stored under the negative TTL; an `Err` from the loader is never stored.
/// - **Coalescing.** Concurrent misses on one key in one process run the
///   loader once; the other callers get the same value. If that loader fails
///   or panics, each waiter runs its own; if its caller is cancelled, a waiter
///   takes over.
/// - **Fail-open.** If the backend errors or exceeds the operation timeout,
///   the call still returns the loader's result; the failure is logged
///   through `tracing` and counted in [`Stats::errors`].
/// - **Corrupt entries** (undecodable bytes, another format version, a payload
///   that no longer fits the type) are misses: counted in [`Stats::corrupt`]
///   and overwritten by the load.
///
/// # Examples
///
/// ```
/// use aside::{Cache, Policy};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), std::io::Error> {
/// let cache = Cache::memory();
/// let policy = Policy::new().ttl(std::time::Duration::from_secs(60));
/// let answer = cache
///     .get_or_load("answer", &policy, || async { Ok::<_, std::io::Error>(42) })
///     .await?;
/// assert_eq!(answer, 42);
/// // The second call is a hit: the loader does not run.
/// let again: u32 = cache
///     .get_or_load("answer", &policy, || async { Err(std::io::Error::other("not called")) })
///     .await?;
/// assert_eq!(again, 42);
/// assert_eq!(cache.stats().hits, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    namespace: String,
    default_ttl: Duration,
    flights: Flights,
    counters: Counters,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend)
            .field("namespace", &self.inner.namespace)
            .field("default_ttl", &self.inner.default_ttl)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// An in-process cache with the default settings (see [`CacheBuilder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = aside::Cache::memory();
    /// # let _ = cache;
    /// ```
    pub fn memory() -> Cache {
        CacheBuilder::new().build_memory()
    }

    /// A cache over a backend of your own, with the default settings.
    ///
    /// See [`Backend`] for an example.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Cache {
        CacheBuilder::new().build_with(backend)
    }

    /// A builder to configure the backend, namespace, default TTL and timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = aside::Cache::builder()
    ///     .redis("redis://127.0.0.1:6379")
    ///     .namespace("shop")
    ///     .default_ttl(Duration::from_secs(600))
    ///     .build()
    ///     .await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    /// Counters of what this cache (and its clones) did so far.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// The runtime entry point behind `#[cached]`: returns the value cached at
    /// `key`, or runs `load` once, caches its `Ok` value under `policy`, and
    /// returns its result.
    ///
    /// `key` is namespaced by the cache. The loader's `Err` is returned as it
    /// is and never cached. Backend failures never surface here (see the
    /// type-level docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use aside::{Cache, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache = Cache::memory();
    /// let found: Result<Option<String>, std::io::Error> = cache
    ///     .get_or_load("user:7", &Policy::new(), || async { Ok(None) })
    ///     .await;
    /// assert_eq!(found.unwrap(), None);
    /// // A `None` is cached too (under the negative TTL).
    /// let again: Result<Option<String>, std::io::Error> =
    ///     cache.get_or_load("user:7", &Policy::new(), || async { unreachable!() }).await;
    /// assert_eq!(again.unwrap(), None);
    /// assert_eq!(cache.stats().negative_hits, 1);
    /// # }
    /// ```
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, policy: &Policy, load: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = self.inner.namespaced(key);
        if let Some(value) = self.lookup(&key).await {
            return Ok(value);
        }
        loop {
            match self.inner.flights.join(&key) {
                Join::Leader(leader) => return self.load(&key, policy, load, Some(leader)).await,
                Join::Waiter(waiter) => match self.wait(waiter).await {
                    Landed::Value(payload) => {
                        if let Ok(value) = serde_json::from_slice(&payload) {
                            Counters::incr(&self.inner.counters.coalesced);
                            return Ok(value);
                        }
                        // Same key, another type: load our own.
                        return self.load(&key, policy, load, None).await;
                    }
                    Landed::Failed => return self.load(&key, policy, load, None).await,
                    Landed::Abandoned => continue,
                },
            }
        }
    }

    async fn wait(&self, waiter: Waiter) -> Landed {
        let _waiting = Counters::enter(&self.inner.counters.waiting);
        waiter.wait().await
    }

    /// Reads `key` and decodes it as `T`. Any failure is a miss (`None`).
    async fn lookup<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let bytes = self.inner.report(self.inner.backend.fetch(key).await)??;
        let counters = &self.inner.counters;
        let decoded = Entry::decode(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|entry| {
                if !entry.is_fresh(now_ms()) {
                    return Ok(None);
                }
                let value = serde_json::from_slice(entry.payload).map_err(|e| e.to_string())?;
                Ok(Some((value, entry.is_negative())))
            });
        match decoded {
            Ok(Some((value, negative))) => {
                Counters::incr(&counters.hits);
                if negative {
                    Counters::incr(&counters.negative_hits);
                }
                Some(value)
            }
            Ok(None) => None,
            Err(reason) => {
                Counters::incr(&counters.corrupt);
                tracing::warn!(key, %reason, "aside: unreadable cache entry, treating it as a miss");
                None
            }
        }
    }

    /// Runs the loader and stores its value. `leader` is the flight to land,
    /// or `None` when this caller loads on its own after a failed flight.
    async fn load<T, E, F, Fut>(
        &self,
        key: &str,
        policy: &Policy,
        load: F,
        leader: Option<Leader<'_>>,
    ) -> Result<T, E>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        Counters::incr(&self.inner.counters.misses);
        Counters::incr(&self.inner.counters.loads);
        let started = Instant::now();
        let result = match catch_unwind(load()).await {
            Ok(result) => result,
            Err(panic) => {
                // Waiters run their own loads rather than wait for this one.
                if let Some(leader) = &leader {
                    leader.land(Landed::Failed);
                }
                std::panic::resume_unwind(panic);
            }
        };
        let load_time = started.elapsed();
        let payload = match &result {
            Ok(value) => match serde_json::to_vec(value) {
                Ok(payload) => Some(Bytes::from(payload)),
                Err(error) => {
                    tracing::warn!(key, %error, "aside: value does not serialize, not caching it");
                    None
                }
            },
            Err(_) => None,
        };
        let Some(payload) = payload else {
            if let Some(leader) = &leader {
                leader.land(Landed::Failed);
            }
            return result;
        };
        if let Some(leader) = &leader {
            leader.land(Landed::Value(payload.clone()));
        }
        // Waiters already have the value; the flight stays open until the
        // write lands so that callers arriving meanwhile still join it.
        let negative = &payload[..] == Entry::NULL;
        let ttl = policy.effective_ttl(self.inner.default_ttl, negative);
        if !ttl.is_zero() {
            let entry = Entry::encode(now_ms(), ttl, load_time, &[], &payload);
            self.inner.report(self.inner.backend.store(key, entry, ttl).await);
        }
        drop(leader);
        result
    }

    /// Reads the value at `key`, if a fresh one is stored and decodes as `T`.
    ///
    /// # Errors
    ///
    /// A backend failure. A corrupt entry is not an error: it reads as `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::memory();
    /// cache.set("greeting", &"hello", None).await?;
    /// assert_eq!(cache.get::<String>("greeting").await?.as_deref(), Some("hello"));
    /// assert_eq!(cache.get::<String>("missing").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let key = self.inner.namespaced(key);
        let Some(bytes) = self.inner.backend.fetch(&key).await? else {
            return Ok(None);
        };
        match Entry::decode(&bytes) {
            Ok(entry) if entry.is_fresh(now_ms()) => Ok(serde_json::from_slice(entry.payload).ok()),
            _ => Ok(None),
        }
    }

    /// Stores `value` at `key` for `ttl` (the cache's default TTL if `None`).
    ///
    /// # Errors
    ///
    /// The value does not serialize, or the backend failed.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = aside::Cache::memory();
    /// cache.set("config:theme", &"dark", Some(Duration::from_secs(30))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let ttl = ttl.unwrap_or(self.inner.default_ttl);
        if ttl.is_zero() {
            return Ok(());
        }
        let payload = serde_json::to_vec(value)?;
        let entry = Entry::encode(now_ms(), ttl, Duration::ZERO, &[], &payload);
        Ok(self
            .inner
            .backend
            .store(&self.inner.namespaced(key), entry, ttl)
            .await?)
    }

    /// Deletes the entry at `key`, so the next call for it loads afresh.
    ///
    /// # Errors
    ///
    /// The backend failed: the entry may still be there.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::memory();
    /// cache.set("product:1", &"lamp", None).await?;
    /// cache.invalidate("product:1").await?;
    /// assert_eq!(cache.get::<String>("product:1").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate(&self, key: &str) -> Result<(), Error> {
        Ok(self.inner.backend.remove(&self.inner.namespaced(key)).await?)
    }
}

/// Runs `fut`, returning a panic from it as an `Err` instead of unwinding.
async fn catch_unwind<F: Future>(fut: F) -> std::thread::Result<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    })
    .await
}

impl Inner {
    fn namespaced(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.namespace.len() + 1 + key.len());
        full.push_str(&self.namespace);
        full.push(':');
        full.push_str(key);
        full
    }

    /// Fail-open: a backend error becomes `None`, logged and counted.
    fn report<T>(&self, result: Result<T, BackendError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                Counters::incr(&self.counters.errors);
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "aside: cache backend failed, calling through");
                None
            }
        }
    }
}

/// Configures and builds a [`Cache`].
///
/// | setting | default |
/// |---|---|
/// | backend | in-memory, [`DEFAULT_MEMORY_CAPACITY`](Self::DEFAULT_MEMORY_CAPACITY) bytes |
/// | [`namespace`](Self::namespace) | [`DEFAULT_NAMESPACE`](Self::DEFAULT_NAMESPACE) |
/// | [`default_ttl`](Self::default_ttl) | [`DEFAULT_TTL`](Self::DEFAULT_TTL) |
/// | [`op_timeout`](Self::op_timeout) | [`DEFAULT_OP_TIMEOUT`](Self::DEFAULT_OP_TIMEOUT) |
/// | [`connect_timeout`](Self::connect_timeout) | [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT) |
///
/// The Redis URL is kept out of `Debug` output (it may hold a password).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
/// let cache = aside::Cache::builder()
///     .memory_capacity(64 * 1024 * 1024)
///     .default_ttl(std::time::Duration::from_secs(30))
///     .build()
///     .await?;
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Clone)]
pub struct CacheBuilder {
    redis_url: Option<String>,
    memory_capacity: u64,
    namespace: String,
    default_ttl: Duration,
    op_timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "set"))
            .field("memory_capacity", &self.memory_capacity)
            .field("namespace", &self.namespace)
            .field("default_ttl", &self.default_ttl)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheBuilder {
    /// The prefix of every key this cache writes: `aside:product:42`.
    pub const DEFAULT_NAMESPACE: &'static str = "aside";
    /// The TTL of entries whose policy sets none: 5 minutes.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
    /// The longest any one backend operation may take before the cache gives
    /// up on it and calls through: 250 ms, generous for a Redis on the same
    /// network (a round trip is well under 1 ms) yet short next to the slow
    /// queries worth caching.
    pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(250);
    /// How long establishing a connection to Redis may take, at start-up and
    /// on each reconnect: 5 s (a TLS handshake to a remote server can take
    /// far longer than one command). Calls never wait for it longer than
    /// the operation timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The in-memory backend's bound on keys plus entries: 256 MiB.
    pub const DEFAULT_MEMORY_CAPACITY: u64 = 256 * 1024 * 1024;

    /// A builder with every setting at its default.
    pub fn new() -> Self {
        CacheBuilder {
            redis_url: None,
            memory_capacity: Self::DEFAULT_MEMORY_CAPACITY,
            namespace: Self::DEFAULT_NAMESPACE.to_owned(),
            default_ttl: Self::DEFAULT_TTL,
            op_timeout: Self::DEFAULT_OP_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Use Redis at `url` (`redis://[user:pass@]host:port[/db]`, `unix:///path`)
    /// instead of the in-memory backend.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Bound the in-memory backend to about `bytes` of keys and entries.
    pub fn memory_capacity(mut self, bytes: u64) -> Self {
        self.memory_capacity = bytes;
        self
    }

    /// Prefix every key with `namespace` and a `:`, so that several
    /// applications can share one Redis.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The TTL used when a call's policy sets none.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The most time one backend operation may take (see [`DEFAULT_OP_TIMEOUT`](Self::DEFAULT_OP_TIMEOUT)).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The most time connecting to Redis may take (see [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT)).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Builds the cache, connecting to Redis if one was configured.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting or Redis URL;
    /// [`Error::Connect`] if Redis cannot be reached within the connect timeout.
    pub async fn build(self) -> Result<Cache, Error> {
        if self.op_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config(
                "op_timeout and connect_timeout must be greater than zero".into(),
            ));
        }
        let Some(url) = &self.redis_url else {
            if self.memory_capacity == 0 {
                return Err(Error::Config("memory_capacity must be greater than zero".into()));
            }
            return Ok(self.build_memory());
        };
        // The redis crate's message names the problem, never the URL itself.
        let client = redis::Client::open(url.as_str())
            .map_err(|e| Error::Config(format!("invalid Redis URL: {e}")))?;
        let backend = RedisBackend::connect(client, self.connect_timeout, self.op_timeout)
            .await
            .map_err(Error::Connect)?;
        Ok(self.build_with(Arc::new(backend)))
    }

    fn build_memory(self) -> Cache {
        let backend = MemoryBackend::new(self.memory_capacity);
        self.build_with(Arc::new(backend))
    }

    fn build_with(self, backend: Arc<dyn Backend>) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                backend,
                namespace: self.namespace,
                default_ttl: self.default_ttl,
                flights: Flights::default(),
                counters: Counters::default(),
            }),
        }
    }
}

//! [`CacheBuilder`]: the settings of a [`Cache`] and their defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::memory::MemoryBackend;
use crate::backend::Backend;
use crate::cache::Cache;
use crate::cache::Settings;
use crate::codec::Codec;
#[cfg(feature = "redis")]
use crate::connect::{self, Redis};
use crate::error::Error;
use crate::l1::Local;
use crate::l1::L1;

/// Configures and builds a [`Cache`].
///
/// | setting | default |
/// |---|---|
/// | backend | in-memory, [`DEFAULT_MEMORY_CAPACITY`](Self::DEFAULT_MEMORY_CAPACITY) bytes |
/// | [`namespace`](Self::namespace) | [`DEFAULT_NAMESPACE`](Self::DEFAULT_NAMESPACE) |
/// | [`l1`](Self::l1) (the typed in-process tier) | in memory: the only store of values, bounded by the memory capacity; over Redis: none |
/// | [`default_ttl`](Self::default_ttl) | [`DEFAULT_TTL`](Self::DEFAULT_TTL) |
/// | [`op_timeout`](Self::op_timeout) | [`DEFAULT_OP_TIMEOUT`](Self::DEFAULT_OP_TIMEOUT) |
/// | [`connect_timeout`](Self::connect_timeout) | [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT) |
/// | [`invalidation_window`](Self::invalidation_window) | [`DEFAULT_INVALIDATION_WINDOW`](Self::DEFAULT_INVALIDATION_WINDOW) |
/// | [`breaker`](Self::breaker) | [`DEFAULT_BREAKER_THRESHOLD`](Self::DEFAULT_BREAKER_THRESHOLD) failures, [`DEFAULT_BREAKER_COOLDOWN`](Self::DEFAULT_BREAKER_COOLDOWN) |
/// | [`max_pending`](Self::max_pending) | [`DEFAULT_MAX_PENDING`](Self::DEFAULT_MAX_PENDING) |
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
    /// Where Redis is, if the cache uses it.
    #[cfg(feature = "redis")]
    redis: Option<Redis>,
    memory_capacity: u64,
    namespace: String,
    default_ttl: Duration,
    op_timeout: Duration,
    connect_timeout: Duration,
    invalidation_window: Duration,
    max_entry_size: usize,
    compress_above: Option<usize>,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
    max_pending: usize,
    /// A CA certificate (PEM) to trust for `rediss://` instead of the system's.
    tls_root_certificate: Option<Vec<u8>>,
    codec: Codec,
    /// The in-process tier: `None` for the default (on for memory, off for
    /// Redis), `Some(None)` for off.
    l1: Option<Option<L1>>,
    enabled: bool,
    trace_keys: bool,
    /// Whether `build` fails when Redis cannot be reached.
    require_connection: bool,
    /// Faults for the backend, in a test.
    #[cfg(feature = "testing")]
    chaos: Option<crate::testing::Chaos>,
    /// What records the cache's operations, in a test.
    #[cfg(feature = "testing")]
    recorder: Option<crate::testing::Recorder>,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("CacheBuilder");
        #[cfg(feature = "redis")]
        f.field("redis", &self.redis);
        f.field("memory_capacity", &self.memory_capacity)
            .field("namespace", &self.namespace)
            .field("default_ttl", &self.default_ttl)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("invalidation_window", &self.invalidation_window)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("max_pending", &self.max_pending)
            .field(
                "tls_root_certificate",
                &self.tls_root_certificate.as_ref().map(|_| "set"),
            )
            .field("l1", &self.l1)
            .field("enabled", &self.enabled)
            .field("require_connection", &self.require_connection);
        f.finish()
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
    /// How long a key's guard token lives: 5 minutes. A guard is what lets a
    /// store notice that its key was invalidated during the load; a load that
    /// takes longer than this finds its guard gone, and its value is returned
    /// but not stored.
    pub const DEFAULT_INVALIDATION_WINDOW: Duration = Duration::from_secs(300);
    /// The largest value stored, encoded: 1 MiB. A larger one is returned to
    /// its caller (and its coalesced waiters) but not cached: written to a
    /// connection that every call of the instance shares, it would hold up
    /// the hits behind it.
    pub const DEFAULT_MAX_ENTRY_SIZE: usize = 1 << 20;
    /// Consecutive backend failures that open the circuit breaker: 5.
    pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
    /// How long an open breaker skips the backend before probing it: 2 s.
    pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(2);
    /// How many invalidations that met a failing backend are kept for
    /// replay: 10,000 keys or tags. More become one clear of the namespace.
    pub const DEFAULT_MAX_PENDING: usize = 10_000;
    /// The in-memory backend's bound on keys plus entries: 256 MiB.
    pub const DEFAULT_MEMORY_CAPACITY: u64 = 256 * 1024 * 1024;

    /// A builder with every setting at its default.
    pub fn new() -> Self {
        CacheBuilder {
            #[cfg(feature = "redis")]
            redis: None,
            memory_capacity: Self::DEFAULT_MEMORY_CAPACITY,
            namespace: Self::DEFAULT_NAMESPACE.to_owned(),
            default_ttl: Self::DEFAULT_TTL,
            op_timeout: Self::DEFAULT_OP_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            invalidation_window: Self::DEFAULT_INVALIDATION_WINDOW,
            max_entry_size: Self::DEFAULT_MAX_ENTRY_SIZE,
            compress_above: None,
            breaker_threshold: Self::DEFAULT_BREAKER_THRESHOLD,
            breaker_cooldown: Self::DEFAULT_BREAKER_COOLDOWN,
            max_pending: Self::DEFAULT_MAX_PENDING,
            tls_root_certificate: None,
            codec: Codec::Json,
            l1: None,
            enabled: true,
            trace_keys: false,
            require_connection: false,
            #[cfg(feature = "testing")]
            chaos: None,
            #[cfg(feature = "testing")]
            recorder: None,
        }
    }

    #[cfg(feature = "redis")]
    /// With `true`, [`build`](Self::build) fails with [`Error::Connect`] if
    /// Redis cannot be reached within the connect timeout: for a program
    /// that would rather not start without its cache.
    ///
    /// By default (`false`) the cache is fail-open from the start: if Redis
    /// is down or unreachable, `build` logs a warning and returns a cache
    /// that connects in the background. Until it does, calls run their
    /// functions (the breaker keeps them from waiting on Redis), and the
    /// in-process tier is bypassed. A wrong password, a missing right or a
    /// certificate that cannot be verified is an error either way: waiting
    /// would not mend it. With a connection the program already has
    /// ([`Redis::shared`]) there is nothing to check: it is taken as it is.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::builder()
    ///     .redis("redis://127.0.0.1:6379")
    ///     .require_connection(true)
    ///     .build()
    ///     .await?; // Err(Error::Connect { .. }) if Redis is down
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn require_connection(mut self, required: bool) -> Self {
        self.require_connection = required;
        self
    }

    /// With `false`, the cache caches nothing (see [`Cache::disabled`]) and
    /// connects to nothing: caching turned off by configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let caching = std::env::var("CACHE").map_or(true, |v| v != "off");
    /// let cache = aside::Cache::builder().enabled(caching).build().await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// With `true`, each call's span records its cache key in a `key` field.
    /// Off by default: keys are unbounded in number (a trace backend may
    /// index every value) and may hold what should not leave the process,
    /// such as an email address. The function's name is always recorded.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::builder().trace_keys(true).build().await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn trace_keys(mut self, on: bool) -> Self {
        self.trace_keys = on;
        self
    }

    /// Puts a typed in-process tier in front of the backend, bounded by
    /// `l1`. It holds decoded values and answers hits with a clone of
    /// them: no network, no parsing. Every function uses it unless its
    /// policy says otherwise ([`Policy::l1`](crate::Policy::l1), `#[cached(l1 = false)]`).
    ///
    /// Over Redis, Redis keeps it coherent (client tracking on a connection
    /// of its own): a change to an entry or to one of its tags, by any
    /// process, drops the entry from every process's tier within the push
    /// latency; while tracking is down the tier is flushed and bypassed.
    /// Over a Redis Cluster, the same with a tracking connection per master:
    /// the tier is trusted only while all of them track. Off by default over
    /// Redis.
    ///
    /// Without Redis, the tier is the cache's only store of values, bounded
    /// by [`memory_capacity`](Self::memory_capacity) unless given another
    /// bound here; every function uses it (`l1 = false` has no effect, and a
    /// tier TTL shortens the TTL). [`no_l1`](Self::no_l1) keeps encoded
    /// entries instead.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// use aside::{Cache, L1};
    ///
    /// let cache = Cache::builder()
    ///     .redis("redis://127.0.0.1:6379")
    ///     .l1(L1::bytes(64 << 20))
    ///     .build()
    ///     .await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn l1(mut self, l1: L1) -> Self {
        self.l1 = Some(Some(l1));
        self
    }

    /// No in-process tier: every hit reads the backend (in memory: decodes
    /// the encoded entry).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::builder().no_l1().build().await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn no_l1(mut self) -> Self {
        self.l1 = Some(None);
        self
    }

    #[cfg(feature = "redis")]
    /// Use Redis instead of the in-memory backend: a URL
    /// (`redis://[user:pass@]host:port[/db]`, `rediss://` for TLS,
    /// `unix:///path`), a [`redis::Client`] or connection the program built,
    /// or a Redis Cluster's seed nodes (`Redis::cluster`, with the `cluster` feature). See [`Redis`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn redis(mut self, redis: impl Into<Redis>) -> Self {
        self.redis = Some(redis.into());
        self
    }

    /// Bound the in-memory cache to about `bytes` of keys and values, each
    /// value weighed by its encoded size.
    pub fn memory_capacity(mut self, bytes: u64) -> Self {
        self.memory_capacity = bytes;
        self
    }

    /// Prefix every key with `namespace` and a `:`, so that several
    /// applications can share one Redis. It may not contain `#` (aside's own
    /// names follow the namespace with it) or `{` and `}` (which would
    /// change the keys' Redis Cluster hash tags): [`build`](Self::build)
    /// refuses it with [`Error::Config`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let refused = aside::Cache::builder().namespace("shop{eu}").build().await;
    /// assert!(matches!(refused, Err(aside::Error::Config(_))));
    /// # }
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How values are serialized when a call's policy says nothing
    /// (default: [`Codec::Json`]). Entries record their codec, so a change
    /// needs no flush.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// // `Codec::MessagePack` with the `msgpack` feature.
    /// let cache = aside::Cache::builder().codec(aside::Codec::Json).build().await?;
    /// cache.set("k", &vec![1, 2, 3], None).await?;
    /// assert_eq!(cache.get::<Vec<u32>>("k").await?, Some(vec![1, 2, 3]));
    /// # Ok(()) }
    /// ```
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The largest value to cache, in encoded bytes (see
    /// [`DEFAULT_MAX_ENTRY_SIZE`](Self::DEFAULT_MAX_ENTRY_SIZE));
    /// `usize::MAX` for no limit. A larger value is returned but not stored,
    /// counted in [`Stats::oversized`](crate::stats::Stats::oversized) and logged
    /// (a warning the first time, then at debug level);
    /// [`Cache::set`](crate::Cache::set) refuses it with [`Error::TooLarge`](crate::Error::TooLarge).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::builder().max_entry_size(1024).build().await?;
    /// let big = "x".repeat(4096);
    /// assert!(matches!(cache.set("big", &big, None).await, Err(aside::Error::TooLarge { .. })));
    /// # Ok(()) }
    /// ```
    pub fn max_entry_size(mut self, bytes: usize) -> Self {
        self.max_entry_size = bytes;
        self
    }

    /// Compresses each value whose encoded size is above `bytes` (LZ4, at
    /// hundreds of MB/s), when that makes it smaller; off by default. The
    /// entry records it, so any reader decompresses it, whatever its own
    /// setting; a reader inflates a value only up to its
    /// [`max_entry_size`](Self::max_entry_size), so a damaged or hostile
    /// entry cannot make it allocate more (such an entry is a miss, counted
    /// as corrupt). Values of 64 bytes or less are never compressed.
    ///
    /// Worth it for large, repetitive values (JSON documents, lists), which
    /// then cost less Redis memory and network; `max_entry_size` still
    /// applies to the size before compression.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::builder().compress_above(4096).build().await?;
    /// let report = "line\n".repeat(10_000);
    /// cache.set("report", &report, None).await?;
    /// assert_eq!(cache.get::<String>("report").await?, Some(report));
    /// # Ok(()) }
    /// ```
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = Some(bytes);
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

    /// How long an invalidation is remembered (see [`DEFAULT_INVALIDATION_WINDOW`](Self::DEFAULT_INVALIDATION_WINDOW)).
    pub fn invalidation_window(mut self, window: Duration) -> Self {
        self.invalidation_window = window;
        self
    }

    /// The circuit breaker: after `threshold` consecutive backend failures,
    /// skip the backend for `cooldown`, then probe it with one call; close
    /// when it answers. A `threshold` of 0 turns the breaker off.
    pub fn breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cooldown = cooldown;
        self
    }

    /// How many invalidations that met a failing backend (a timeout, a
    /// lost connection, an open breaker, a cluster between masters) are
    /// kept, one per key or tag, and replayed as soon as the backend
    /// answers again (see [`Cache::replay_pending`]). Past `max`, they
    /// become one clear of the namespace, coarser but still correct, logged
    /// and counted in [`Stats::overflows`](crate::stats::Stats::overflows). 0
    /// keeps none: an invalidation that fails then returns its error, and
    /// entries it covers may be served until their TTL.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::builder().max_pending(100_000).build().await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn max_pending(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// Trusts the CA certificate `pem` (PEM-encoded) for a `rediss://` URL,
    /// instead of the system's roots: for a Redis whose certificate a private
    /// CA signed. Available with the `tls` feature.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = aside::Cache::builder()
    ///     .redis("rediss://app:secret@redis.internal:6380")
    ///     .tls_root_certificate(std::fs::read("/etc/redis/ca.crt")?)
    ///     .build()
    ///     .await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// Puts `chaos` in front of the backend, Redis or in memory: its
    /// operations then fail, hang or slow down as the chaos says. For
    /// tests (the `testing` feature); see [`Chaos`](crate::testing::Chaos).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let chaos = aside::testing::Chaos::seeded(3).errors(1.0);
    /// let cache = aside::Cache::builder().chaos(chaos).build().await?;
    /// let value = cache.get_or_load("k", &aside::Policy::new(), || async { Ok::<_, ()>(1) }).await;
    /// assert_eq!(value, Ok(1));
    /// assert!(cache.stats().errors > 0);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "testing")]
    pub fn chaos(mut self, chaos: crate::testing::Chaos) -> Self {
        self.chaos = Some(chaos);
        self
    }

    /// Records what the cache does in `recorder`: each lookup's outcome,
    /// load, put and invalidation, by function and key. For tests (the
    /// `testing` feature); see [`Recorder`](crate::testing::Recorder).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let rec = aside::testing::Recorder::new();
    /// let cache = aside::Cache::builder().record(&rec).build().await?;
    /// cache.invalidate("price:1").await?;
    /// assert_eq!(rec.invalidations("price:1"), 1);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "testing")]
    pub fn record(mut self, recorder: &crate::testing::Recorder) -> Self {
        self.recorder = Some(recorder.clone());
        self
    }

    /// A fresh in-memory cache standing in for `cache` in a test, with its
    /// namespace, default TTL, codec and limits, recorded by `recorder`.
    #[cfg(feature = "testing")]
    pub(crate) fn stand_in(cache: &Cache, recorder: &crate::testing::Recorder) -> Cache {
        let settings = cache.settings();
        let mut builder = CacheBuilder::new()
            .namespace(settings.namespace.clone())
            .default_ttl(settings.default_ttl)
            .codec(settings.codec)
            .max_entry_size(settings.max_entry_size)
            .enabled(settings.enabled)
            .record(recorder);
        builder.compress_above = settings.compress_above;
        builder.build_memory()
    }

    /// Builds the cache, connecting to Redis if one was configured.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting or Redis URL;
    /// [`Error::Connect`] if Redis refused the connection (a wrong password,
    /// a certificate it cannot verify), or, with
    /// [`require_connection`](Self::require_connection), could not be
    /// reached within the connect timeout.
    pub async fn build(self) -> Result<Cache, Error> {
        if self.op_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config(
                "op_timeout and connect_timeout must be greater than zero".into(),
            ));
        }
        if let Some(c) = self.namespace.chars().find(|c| matches!(c, '#' | '{' | '}')) {
            return Err(Error::Config(format!("the namespace may not contain `{c}`")));
        }
        if !self.enabled {
            return Ok(self.build_memory());
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = self.redis.clone() {
            return self.build_redis(redis).await;
        }
        if self.memory_capacity == 0 {
            return Err(Error::Config("memory_capacity must be greater than zero".into()));
        }
        Ok(self.build_memory())
    }

    #[cfg(feature = "redis")]
    async fn build_redis(mut self, redis: Redis) -> Result<Cache, Error> {
        let connected = redis
            .connect(connect::Settings {
                namespace: &self.namespace,
                connect_timeout: self.connect_timeout,
                op_timeout: self.op_timeout,
                require_connection: self.require_connection,
                tls_root_certificate: self.tls_root_certificate.as_deref(),
                l1: self.l1.flatten(),
                breaker: (self.breaker_threshold, self.breaker_cooldown),
            })
            .await?;
        if connected.breaker_per_node {
            self.breaker_threshold = 0;
        }
        let cache = self.build_tiers(connected.backend, connected.local);
        cache.attach_streams(connected.streams);
        if !connected.answered {
            // Known to be down: calls go straight to their functions,
            // rather than each waiting out a timeout until the breaker
            // would have opened; it probes after its cool-down.
            cache.trip_breaker();
        }
        Ok(cache)
    }

    pub(crate) fn build_memory(self) -> Cache {
        // By default the typed tier is the only store of values, bounded by
        // the capacity; the backend behind it keeps tokens and locks alone.
        let l1 = self.l1.unwrap_or(Some(L1::bytes(self.memory_capacity)));
        let backend = MemoryBackend::new(self.memory_capacity, l1.is_none());
        let local = l1.map(|l1| Arc::new(Local::new(l1, true)));
        self.build_tiers(Arc::new(backend), local)
    }

    pub(crate) fn build_with(self, backend: Arc<dyn Backend>) -> Cache {
        self.build_tiers(backend, None)
    }

    fn build_tiers(self, backend: Arc<dyn Backend>, local: Option<Arc<Local>>) -> Cache {
        #[cfg(feature = "testing")]
        let backend = match self.chaos {
            Some(chaos) => chaos.wrap(backend, self.op_timeout),
            None => backend,
        };
        Cache::new(
            backend,
            local,
            Settings {
                namespace: self.namespace,
                default_ttl: self.default_ttl,
                invalidation_window: self.invalidation_window,
                max_entry_size: self.max_entry_size,
                compress_above: self.compress_above,
                breaker_threshold: self.breaker_threshold,
                breaker_cooldown: self.breaker_cooldown,
                codec: self.codec,
                enabled: self.enabled,
                trace_keys: self.trace_keys,
                max_pending: self.max_pending,
                #[cfg(feature = "testing")]
                recorder: self.recorder,
            },
        )
    }
}

/// The ways to a [`Cache`]: here rather than beside the handle, so that the
/// cache knows nothing of its builder.
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

    /// A cache that caches nothing: every call runs its function, writes
    /// store nothing, reads find nothing, invalidations do nothing. For the
    /// tests of code that uses aside, or to turn caching off by
    /// configuration ([`CacheBuilder::enabled`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aside::{Cache, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), std::io::Error> {
    /// let cache = Cache::disabled();
    /// let policy = Policy::new();
    /// let first = cache.get_or_load("k", &policy, || async { Ok::<u32, std::io::Error>(1) }).await?;
    /// let second = cache.get_or_load("k", &policy, || async { Ok::<u32, std::io::Error>(2) }).await?;
    /// assert_eq!((first, second), (1, 2));
    /// # Ok(()) }
    /// ```
    pub fn disabled() -> Cache {
        CacheBuilder::new().enabled(false).build_memory()
    }

    /// A cache over a backend of your own, with the default settings.
    ///
    /// See [`Backend`] for what a backend must do.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Cache {
        CacheBuilder::new().build_with(backend)
    }

    /// A builder to configure the backend, namespace, default TTL and timeouts.
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
}

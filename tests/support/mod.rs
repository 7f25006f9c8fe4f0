//! Shared by the integration tests: a private `redis-server` per test, and
//! caches on either backend.
#![allow(dead_code, unused_imports)] // each test binary uses its own subset

pub mod coherence;
pub mod loader;
pub mod logs;
pub mod redis_cluster;
pub mod redis_server;
pub mod traffic;

use std::future::Future;
use std::time::Duration;

use aside::Cache;
pub use loader::{Load, Loader};
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;

/// Which backend a behaviour test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The in-memory default (its typed in-process tier included).
    Memory,
    /// Redis alone.
    Redis,
    /// Redis behind a typed in-process tier, kept coherent by client tracking.
    Tiered,
    /// A Redis Cluster of 3 masters with a replica each, shared by the
    /// tests of a binary: each test has a namespace of its own.
    Cluster,
}

impl Kind {
    /// Whether the cache stores in Redis (each `another()` is another process).
    pub fn is_redis(self) -> bool {
        self != Kind::Memory
    }
}

/// A cache under test, and the server behind it (stopped on drop).
pub struct TestCache {
    pub cache: Cache,
    pub server: Option<RedisServer>,
    pub kind: Kind,
    /// On the shared cluster, the test's own namespace.
    namespace: Option<String>,
}

impl std::ops::Deref for TestCache {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        &self.cache
    }
}

impl TestCache {
    /// A fresh cache on `kind`; for Redis, on a server of its own.
    pub async fn new(kind: Kind) -> TestCache {
        match kind {
            Kind::Memory => TestCache {
                cache: Cache::memory(),
                server: None,
                kind,
                namespace: None,
            },
            Kind::Redis | Kind::Tiered => {
                let server = RedisServer::start();
                let cache = server.cache_of(kind).await;
                TestCache {
                    cache,
                    server: Some(server),
                    kind,
                    namespace: None,
                }
            }
            Kind::Cluster => {
                let namespace = RedisCluster::namespace();
                TestCache {
                    cache: RedisCluster::shared().cache(&namespace).await,
                    server: None,
                    kind,
                    namespace: Some(namespace),
                }
            }
        }
    }

    /// Another cache on the same storage: for Redis a second connection
    /// (another "process"), for memory a clone.
    pub async fn another(&self) -> Cache {
        match (&self.server, &self.namespace) {
            (Some(server), _) => server.cache_of(self.kind).await,
            (None, Some(namespace)) => RedisCluster::shared().cache(namespace).await,
            (None, None) => self.cache.clone(),
        }
    }

    pub fn server(&self) -> &RedisServer {
        self.server.as_ref().expect("this test needs the Redis backend")
    }
}

/// Waits until `condition` holds, checking every millisecond, for at most
/// 10 s. For waiting on an observable state (such as the number of callers
/// parked on a load), never as a stand-in for one.
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out after 10 s waiting until {what}");
}

/// Fails the test if `fut` takes longer than `limit`: a guard against hangs.
pub async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Generates `memory::$name`, `redis::$name`, `tiered::$name` and
/// `cluster::$name` tests from `async fn $name(kind: Kind)`.
///
/// The memory tests run on tokio's paused clock: time moves only when every
/// task waits on a timer, so sleeps, TTLs and loads take no real time, and a
/// busy machine cannot stretch one of them past another. The Redis tests run
/// in real time on two worker threads (Redis expires keys by its own clock);
/// the tiered ones put the typed in-process tier in front of Redis; the
/// cluster ones share one Redis Cluster per test binary.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name($crate::support::Kind::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Kind::Redis).await
                }
            )*
        }
        mod tiered {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Kind::Tiered).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Kind::Cluster).await
                }
            )*
        }
    };
}

//! Error types.

use std::time::Duration;

/// An error from configuring or using a [`Cache`](crate::Cache) directly.
///
/// Calls through `#[cached]` and [`Cache::get_or_load`](crate::Cache::get_or_load)
/// never return this: there, backend failures are logged, counted in
/// [`Stats::errors`](crate::stats::Stats::errors), and the loader's own result is
/// returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid: a malformed Redis URL, a zero capacity.
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// From [`check_keys`](crate::check_keys): pairs of cached functions
    /// whose keys can be equal and whose values differ in type, each
    /// described as ``"`a::f` (key \"p:<id>\", u32) and `b::g` (...)"``.
    #[error("cached functions whose keys can be equal cache different types, so each reads the other's entries as corrupt: {}", .0.join("; "))]
    KeysCollide(Vec<String>),
    /// Redis refused the connection when the cache was built (a wrong
    /// password, a certificate it cannot verify), or, with
    /// [`CacheBuilder::require_connection`](crate::CacheBuilder::require_connection),
    /// could not be reached. The message names the address and the cause.
    #[error("could not connect to the cache backend at {addr}: {}", cause(.source))]
    Connect {
        /// Where: the host and port (never the URL, which may hold a password).
        addr: String,
        /// What went wrong.
        #[source]
        source: BackendError,
    },
    /// A backend operation failed or timed out.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A value could not be serialized in the cache's [`Codec`](crate::Codec).
    #[error("could not serialize a cached value")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// [`Cache::set`](crate::Cache::set) was given a value larger, encoded,
    /// than [`CacheBuilder::max_entry_size`](crate::CacheBuilder::max_entry_size).
    #[error("a value of {size} bytes encoded is larger than the cache's limit of {limit} bytes")]
    TooLarge {
        /// The value's size, encoded.
        size: usize,
        /// The limit: [`CacheBuilder::max_entry_size`](crate::CacheBuilder::max_entry_size).
        limit: usize,
    },
    /// A write-behind log's backlog is full: its flushers are behind by
    /// [`max_backlog`](crate::write_behind::WriteBehindBuilder::max_backlog) changes. The
    /// change was not logged.
    #[error(
        "the write-behind log `{log}` holds {limit} unflushed changes, its limit; the change was not logged"
    )]
    BacklogFull {
        /// The log's name.
        log: String,
        /// Its bound.
        limit: u64,
    },
    /// [`init`](crate::init) was called after the global cache was already set or used.
    #[error("the global cache is already initialized")]
    AlreadyInitialized,
}

impl Error {
    /// A failed connection to `client`'s server.
    #[cfg(feature = "redis")]
    pub(crate) fn connect(client: &redis::Client, source: BackendError) -> Error {
        let addr = client.get_connection_info().addr().to_string();
        Error::Connect { addr, source }
    }
}

/// What `error` comes down to, in words: the redis crate's own message
/// rather than "redis error".
fn cause(error: &BackendError) -> String {
    match error {
        #[cfg(feature = "redis")]
        BackendError::Redis(error) => error.to_string(),
        error => error.to_string(),
    }
}

/// A failed backend operation.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The operation did not complete within the cache's operation timeout.
    #[error("cache backend operation timed out after {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error or the connection failed.
    #[cfg(feature = "redis")]
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    /// The circuit breaker is open: the backend failed repeatedly and is not
    /// being asked until its cool-down is over.
    #[error("cache backend circuit is open after repeated failures")]
    CircuitOpen,
    /// The backend does not implement this operation.
    #[error("the cache backend does not support {0}")]
    Unsupported(&'static str),
    /// A test's `aside::testing::Chaos` (the `testing` feature) failed this operation
    /// (named) on purpose.
    #[error("the cache backend's {0} failed: injected by a test's chaos")]
    Injected(&'static str),
}

impl BackendError {
    /// Whether the operation timed out (as opposed to failing outright).
    pub fn is_timeout(&self) -> bool {
        match self {
            BackendError::Timeout(_) => true,
            #[cfg(feature = "redis")]
            BackendError::Redis(e) => e.is_timeout(),
            BackendError::CircuitOpen | BackendError::Unsupported(_) | BackendError::Injected(_) => false,
        }
    }

    /// Whether the operation may succeed if tried again: its outcome is
    /// unknown (a timeout, a dropped connection), the breaker skipped it,
    /// or Redis refused it for now (a cluster moving a slot, a server
    /// loading its data, out of memory). Not: an operation the backend does
    /// not support, or one Redis refuses whatever happens (a missing right).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            // An injected fault stands for a backend that failed for now.
            BackendError::Timeout(_) | BackendError::CircuitOpen | BackendError::Injected(_) => true,
            BackendError::Unsupported(_) => false,
            #[cfg(feature = "redis")]
            BackendError::Redis(e) => {
                !matches!(e.retry_method(), redis::RetryMethod::NoRetry)
                    || matches!(e.code(), Some("OOM" | "BUSY" | "NOREPLICAS"))
            }
        }
    }

    /// Whether the failure counts against a breaker: the backend (or the
    /// node) failed or did not answer. Not: an operation it does not
    /// support, one a breaker skipped, or a cluster's state.
    pub(crate) fn is_fault(&self) -> bool {
        !matches!(self, BackendError::Unsupported(_) | BackendError::CircuitOpen) && !self.is_cluster_state()
    }

    /// Whether a Redis Cluster refused the operation for a moment as a
    /// whole or sent it elsewhere (`CLUSTERDOWN`: a slot without a master;
    /// `TRYAGAIN`: a slot being moved; `MOVED` and `ASK` past the redis
    /// crate's redirects, as during a failover): a state of the cluster,
    /// not a failure of the node that answered, so no node's breaker counts
    /// it.
    pub(crate) fn is_cluster_state(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            BackendError::Redis(e) => e.is_cluster_error(),
            _ => false,
        }
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::BackendError;
    use std::time::Duration;

    /// The error Redis answers with `reply` (`CODE detail`).
    fn answered(reply: &str) -> BackendError {
        let value = redis::parse_redis_value(format!("-{reply}\r\n").as_bytes()).expect("an error reply");
        BackendError::Redis(value.extract_error().expect_err("an error"))
    }

    #[test]
    fn a_cluster_between_masters_is_transient_and_no_fault_of_a_node() {
        for reply in [
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MOVED 9421 127.0.0.1:7004",
            "ASK 9421 127.0.0.1:7004",
        ] {
            let error = answered(reply);
            assert!(
                error.is_cluster_state() && error.is_transient() && !error.is_fault(),
                "{reply}"
            );
        }
    }

    #[test]
    fn what_may_pass_is_kept_for_replay_and_what_cannot_is_not() {
        for transient in [
            BackendError::Timeout(Duration::from_millis(250)),
            BackendError::CircuitOpen,
            answered("LOADING Redis is loading the dataset in memory"),
            answered("MASTERDOWN Link with MASTER is down"),
            answered("OOM command not allowed when used memory > 'maxmemory'."),
            answered("READONLY You can't write against a read only replica."),
        ] {
            assert!(transient.is_transient(), "{transient:?}");
        }
        for permanent in [
            BackendError::Unsupported("clear"),
            answered("NOPERM User app has no permissions to run the 'del' command"),
            answered("ERR unknown command"),
        ] {
            assert!(!permanent.is_transient(), "{permanent:?}");
        }
        assert!(BackendError::Timeout(Duration::ZERO).is_fault());
        assert!(!BackendError::CircuitOpen.is_fault() && !BackendError::Unsupported("renew").is_fault());
    }
}

//! Error types.

use std::time::Duration;

/// An error from configuring or using a [`Cache`](crate::Cache) directly.
///
/// Calls through `#[cached]` and [`Cache::get_or_load`](crate::Cache::get_or_load)
/// never return this: there, backend failures are logged, counted in
/// [`Stats::errors`](crate::Stats::errors), and the loader's own result is
/// returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid: a malformed Redis URL, a zero capacity.
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// Redis refused the connection when the cache was built (a wrong
    /// password, a certificate it cannot verify), or, with
    /// [`CacheBuilder::require_connection`](crate::CacheBuilder::require_connection),
    /// could not be reached.
    #[error("could not connect to the cache backend")]
    Connect(#[source] BackendError),
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
    /// [`max_backlog`](crate::WriteBehindBuilder::max_backlog) changes. The
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

/// A failed backend operation.
#[derive(Debug, thiserror::Error)]
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
}

impl BackendError {
    /// Whether the operation timed out (as opposed to failing outright).
    pub fn is_timeout(&self) -> bool {
        match self {
            BackendError::Timeout(_) => true,
            #[cfg(feature = "redis")]
            BackendError::Redis(e) => e.is_timeout(),
            BackendError::CircuitOpen | BackendError::Unsupported(_) => false,
        }
    }

    /// Whether the operation may succeed if tried again: its outcome is
    /// unknown (a timeout, a dropped connection), the breaker skipped it,
    /// or Redis refused it for now (a cluster moving a slot, a server
    /// loading its data, out of memory). Not: an operation the backend does
    /// not support, or one Redis refuses whatever happens (a missing right).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            BackendError::Timeout(_) | BackendError::CircuitOpen => true,
            BackendError::Unsupported(_) => false,
            #[cfg(feature = "redis")]
            BackendError::Redis(e) => {
                !matches!(e.retry_method(), redis::RetryMethod::NoRetry)
                    || matches!(e.code(), Some("OOM" | "BUSY" | "NOREPLICAS"))
            }
        }
    }

    /// Whether a Redis Cluster refused the operation as a whole for a
    /// moment (`CLUSTERDOWN`, `TRYAGAIN`: a slot without a master, a slot
    /// being moved): a state of the cluster, not a failure of the node that
    /// answered, so no node's breaker counts it.
    pub(crate) fn is_cluster_state(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            BackendError::Redis(e) => matches!(e.code(), Some("CLUSTERDOWN" | "TRYAGAIN")),
            _ => false,
        }
    }
}

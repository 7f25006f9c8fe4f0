//! Redis, through the `redis` crate's auto-reconnecting `ConnectionManager`.
//!
//! One command per operation, never `KEYS` or `SCAN`: `GET` to fetch, `SET ... PX`
//! to store, `DEL` to remove.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Backend, BoxFuture};
use crate::entry::duration_ms;
use crate::BackendError;

/// A Redis server reached through one multiplexed, self-reconnecting connection.
#[derive(Clone)]
pub(crate) struct RedisBackend {
    conn: ConnectionManager,
    op_timeout: Duration,
}

impl std::fmt::Debug for RedisBackend {
    // The connection's Debug output includes the client's connection info;
    // print nothing that could carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to `client`, waiting at most `connect_timeout` for the first connection.
    pub(crate) async fn connect(
        client: redis::Client,
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<Self, BackendError> {
        // The manager retries a failed first connection with backoff; probe
        // once first so that a wrong address fails fast rather than after
        // `connect_timeout`. The probe connection is dropped.
        let probe = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout));
        bounded(
            connect_timeout,
            client.get_multiplexed_async_connection_with_config(&probe),
        )
        .await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout));
        let conn = bounded(
            connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await?;
        Ok(RedisBackend { conn, op_timeout })
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        bounded(self.op_timeout, async move { cmd.query_async(&mut conn).await }).await
    }
}

/// Runs a Redis future with a hard deadline, on top of the connection's own
/// response timeout (which does not cover waiting for a reconnect).
async fn bounded<T>(
    limit: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => Ok(result?),
        Err(_elapsed) => Err(BackendError::Timeout(limit)),
    }
}

impl Backend for RedisBackend {
    fn fetch<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            let bytes: Option<Vec<u8>> = self.run(redis::cmd("GET").arg(key).clone()).await?;
            Ok(bytes.map(Bytes::from))
        })
    }

    fn store<'a>(
        &'a self,
        key: &'a str,
        entry: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let ms = duration_ms(ttl).max(1);
            self.run(
                redis::cmd("SET")
                    .arg(key)
                    .arg(&entry[..])
                    .arg("PX")
                    .arg(ms)
                    .clone(),
            )
            .await
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { self.run::<()>(redis::cmd("DEL").arg(key).clone()).await })
    }
}

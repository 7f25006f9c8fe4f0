//! Opening Redis: the first connection (probed, so that a wrong address or
//! password is known at once), the self-reconnecting connection after it,
//! and what a [`RedisBackend`] sends its commands over ([`Link`]).
//!
//! Knows no operation: those are in `mod.rs`.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

use super::releases::Releases;
use super::scripts::{GUARDED_SET, LOCK, RENEW, TAG_TOKEN, TOKENS, UNLOCK};
use super::{bounded, RedisBackend};
use crate::error::BackendError;

/// What a [`RedisBackend`] sends its commands over: one node, or a cluster.
pub(crate) trait Link: ConnectionLike + Clone + Send + Sync + 'static {
    /// Whether keys of different slots may be on different nodes: then no
    /// script, pipeline or transaction may span slots.
    const CLUSTER: bool;

    /// The nodes whose keys a `SCAN` must visit, as `query_on` names them:
    /// `None` for the one node, each master's address on a cluster.
    fn scanned_nodes(&mut self) -> impl Future<Output = redis::RedisResult<Vec<Option<Node>>>> + Send;

    /// Sends `cmd` to `node` (`None`: where its keys route), for commands
    /// whose state is a node's own, such as a `SCAN` cursor.
    fn query_on<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        node: Option<&Node>,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send;
}

/// One cluster node's address: host and port.
pub(crate) type Node = (String, u16);

impl Link for ConnectionManager {
    const CLUSTER: bool = false;

    async fn scanned_nodes(&mut self) -> redis::RedisResult<Vec<Option<Node>>> {
        Ok(vec![None])
    }

    async fn query_on<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        _: Option<&Node>,
    ) -> redis::RedisResult<T> {
        cmd.query_async(self).await
    }
}

/// The longest pause between two reconnection attempts: what a restarted
/// server waits, at most, before invalidations kept during its outage are
/// replayed (a refused attempt costs next to nothing).
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(250);

impl RedisBackend {
    /// Connects to `client`, waiting at most `connect_timeout` for the first
    /// connection. If Redis cannot be reached (refused, unreachable, timed
    /// out) and `required` is false, returns a backend that connects in the
    /// background instead: its calls fail until then, and the cache calls
    /// through. Anything Redis itself refused (a wrong password, a missing
    /// right, a certificate it cannot verify) is an error either way.
    /// Also returns whether Redis answered now.
    pub(crate) async fn connect(
        client: redis::Client,
        connect_timeout: Duration,
        op_timeout: Duration,
        required: bool,
    ) -> Result<(Self, bool), BackendError> {
        // After a lost connection the manager reconnects by itself, with
        // exponential backoff; capping the pause at RECONNECT_MAX_DELAY means
        // a restarted server is found within about that long, however long
        // it was down.
        let config = ConnectionManagerConfig::new()
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout));
        // The manager retries a failed first connection with backoff; probe
        // once first so that a wrong address or password is known at once
        // rather than after `connect_timeout`. The probe connection is dropped.
        let probe = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout));
        let probed = bounded(
            connect_timeout,
            client.get_multiplexed_async_connection_with_config(&probe),
        )
        .await;
        let answered = probed.is_ok();
        let conn = match probed {
            Ok(_) => {
                let mut conn = bounded(
                    connect_timeout,
                    ConnectionManager::new_with_config(client.clone(), config),
                )
                .await?;
                // Loaded up front so that the first use of each is one round
                // trip too (the redis crate loads a script the server does
                // not know by itself, as it must after a lazy start).
                preload(&mut conn, connect_timeout).await?;
                conn
            }
            Err(error) if !required && unreachable(&error, tls(&client)) => {
                tracing::warn!(
                    %error,
                    "aside: Redis cannot be reached at start-up; calls run their functions until it can, \
                     and the cache connects in the background"
                );
                ConnectionManager::new_lazy_with_config(client.clone(), config)?
            }
            Err(error) => return Err(error),
        };
        Ok((Self::over(conn, Some(client), op_timeout), answered))
    }

    /// A backend over a connection the program made. Without its client,
    /// lock waiters poll rather than being told of releases.
    pub(crate) fn over(conn: ConnectionManager, client: Option<redis::Client>, op_timeout: Duration) -> Self {
        RedisBackend {
            conn,
            op_timeout,
            releases: Releases::new(client.into_iter().collect(), op_timeout),
            reads: super::reads::Reads::new(),
            #[cfg(feature = "cluster")]
            nodes: None,
        }
    }
}

/// Loads every script, so that the first use of each is one round trip too
/// (the redis crate loads a script the server does not know by itself, as
/// it must after a lazy start or a failover).
pub(super) async fn preload(conn: &mut impl ConnectionLike, limit: Duration) -> Result<(), BackendError> {
    for script in [&*GUARDED_SET, &*TOKENS, &*TAG_TOKEN, &*LOCK, &*UNLOCK, &*RENEW] {
        bounded(limit, script.prepare_invoke().load_async(conn)).await?;
    }
    Ok(())
}

/// Whether a failed connection attempt says only that Redis is not there
/// (yet): refused, reset, timed out, no route to its host, no address for
/// its name. Not: an answer from Redis (authentication, rights). Over TLS,
/// an I/O error may be a certificate that cannot be verified, which no
/// waiting mends: only a refusal, a drop or a timeout counts there.
pub(super) fn unreachable(error: &BackendError, tls: bool) -> bool {
    match error {
        BackendError::Timeout(_) => true,
        BackendError::Redis(error) => {
            error.is_timeout()
                || error.is_connection_refusal()
                || error.is_connection_dropped()
                || (error.is_io_error() && !tls)
        }
        BackendError::CircuitOpen | BackendError::Unsupported(_) | BackendError::Injected(_) => false,
    }
}

/// Whether `client` connects over TLS.
pub(super) fn tls(client: &redis::Client) -> bool {
    matches!(
        client.get_connection_info().addr(),
        redis::ConnectionAddr::TcpTls { .. }
    )
}

//! Redis Cluster: the `redis` crate's `ClusterConnection` as a [`Link`].
//!
//! The connection keeps one multiplexed connection per node, routes each
//! command by its key's slot, follows `MOVED` and `ASK` redirections and
//! refreshes its slot map when the cluster changes (a failover, a
//! migration), retrying within the operation timeout.

use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::Value;

use super::{bounded, preload, unreachable, Link, Node, RedisBackend};
use crate::BackendError;

impl Link for ClusterConnection {
    const CLUSTER: bool = true;

    async fn scanned_nodes(&mut self) -> redis::RedisResult<Vec<Option<Node>>> {
        let slots = self
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let mut masters = masters(&slots);
        masters.sort();
        masters.dedup();
        Ok(masters.into_iter().map(Some).collect())
    }

    async fn query_on<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        node: Option<&Node>,
    ) -> redis::RedisResult<T> {
        let Some((host, port)) = node else {
            return cmd.query_async(self).await;
        };
        let route = SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port: *port,
        };
        let value = self
            .route_command(cmd.clone(), RoutingInfo::SingleNode(route))
            .await?;
        Ok(redis::from_redis_value(value)?)
    }
}

/// The master of each slot range in a `CLUSTER SLOTS` reply: each range
/// is `[start, end, [host, port, id, ...], replicas...]`.
fn masters(slots: &Value) -> Vec<Node> {
    let Value::Array(ranges) = slots else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(range) = range else { return None };
            let Value::Array(master) = range.get(2)? else {
                return None;
            };
            let host = match master.first()? {
                Value::BulkString(host) => String::from_utf8(host.clone()).ok()?,
                Value::SimpleString(host) => host.clone(),
                _ => return None,
            };
            let Value::Int(port) = master.get(1)? else {
                return None;
            };
            Some((host, u16::try_from(*port).ok()?))
        })
        .collect()
}

impl RedisBackend<ClusterConnection> {
    /// Connects to the cluster that `client` names, as
    /// [`RedisBackend::connect`] does to one node; `pubsub` are clients for
    /// the nodes named at start-up, over which lock releases are told.
    pub(crate) async fn connect_cluster(
        client: ClusterClient,
        pubsub: Vec<redis::Client>,
        connect_timeout: Duration,
        op_timeout: Duration,
        required: bool,
    ) -> Result<Self, BackendError> {
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(connect_timeout)
            .set_response_timeout(op_timeout);
        let tls = pubsub.first().is_some_and(super::tls);
        let conn = match bounded(
            connect_timeout,
            client.get_async_connection_with_config(config.clone()),
        )
        .await
        {
            Ok(mut conn) => {
                preload(&mut conn, connect_timeout).await?;
                conn
            }
            Err(error) if !required && unreachable(&error, tls) => {
                tracing::warn!(
                    %error,
                    "aside: the Redis Cluster cannot be reached at start-up; calls run their functions \
                     until it can, and the cache connects in the background"
                );
                client.get_pending_async_connection_with_config(config)
            }
            Err(error) => return Err(error),
        };
        Ok(RedisBackend {
            conn,
            op_timeout,
            releases: super::releases::Releases::new(pubsub, op_timeout),
        })
    }
}

//! Redis Cluster: the `redis` crate's `ClusterConnection` as a [`Link`].
//!
//! The connection keeps one multiplexed connection per node, routes each
//! command by its key's slot, follows `MOVED` and `ASK` redirections and
//! refreshes its slot map when the cluster changes (a failover, a
//! migration), retrying within the operation timeout.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::Value;
use tokio::sync::watch;

use super::connection::{preload, unreachable};
use super::{bounded, Link, Node, RedisBackend};
use crate::breaker::Breaker;
use crate::breaker::BreakerState;
use crate::clock::Instant;
use crate::error::BackendError;

/// The cluster connection, which [`Nodes::follow`] replaces when a node's
/// breaker stays open: after a failover, the `redis` crate's connection can
/// keep routing a moved slot to the dead master (seen about once in twenty
/// killed-master runs on a loaded machine), while a new connection reads
/// the slot map afresh. Each command takes the current one.
#[derive(Clone)]
pub(crate) struct Cluster {
    current: Arc<RwLock<ClusterConnection>>,
    /// What a new connection is made from, and within how long.
    client: Arc<(ClusterClient, ClusterConfig, Duration)>,
}

impl Cluster {
    fn get(&self) -> ClusterConnection {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Connects anew, and, if that works, sends every later command over
    /// the new connection.
    async fn reconnect(&self) -> Result<(), BackendError> {
        let (client, config, limit) = &*self.client;
        let mut conn = bounded(*limit, client.get_async_connection_with_config(config.clone())).await?;
        preload(&mut conn, *limit).await?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = conn;
        Ok(())
    }
}

impl redis::aio::ConnectionLike for Cluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        let mut conn = self.get();
        Box::pin(async move { conn.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        let mut conn = self.get();
        Box::pin(async move { conn.req_packed_commands(cmd, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Link for Cluster {
    const CLUSTER: bool = true;

    async fn scanned_nodes(&mut self) -> redis::RedisResult<Vec<Option<Node>>> {
        let slots = cluster_slots(&mut self.get()).await?;
        let Value::Array(ranges) = &slots else {
            return Ok(Vec::new());
        };
        let mut masters: Vec<Node> = ranges.iter().filter_map(master).collect();
        masters.sort();
        masters.dedup();
        Ok(masters.into_iter().map(Some).collect())
    }

    async fn query_on<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        node: Option<&Node>,
    ) -> redis::RedisResult<T> {
        let mut conn = self.get();
        let Some((host, port)) = node else {
            return cmd.query_async(&mut conn).await;
        };
        let route = SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port: *port,
        };
        let value = conn
            .route_command(cmd.clone(), RoutingInfo::SingleNode(route))
            .await?;
        Ok(redis::from_redis_value(value)?)
    }
}

impl RedisBackend<Cluster> {
    /// Connects to the cluster that `client` names, as
    /// [`RedisBackend::connect`] does to one node; `pubsub` are clients for
    /// the nodes named at start-up, over which lock releases are told;
    /// `breaker` is each node's circuit breaker's threshold and cool-down.
    pub(crate) async fn connect_cluster(
        client: ClusterClient,
        pubsub: Vec<redis::Client>,
        (connect_timeout, op_timeout): (Duration, Duration),
        breaker: (u32, Duration),
        required: bool,
    ) -> Result<Self, BackendError> {
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(connect_timeout)
            .set_response_timeout(op_timeout);
        let tls = pubsub.first().is_some_and(super::connection::tls);
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
                client.get_pending_async_connection_with_config(config.clone())
            }
            Err(error) => return Err(error),
        };
        let conn = Cluster {
            current: Arc::new(RwLock::new(conn)),
            client: Arc::new((client, config, connect_timeout)),
        };
        let nodes = Arc::new(Nodes::new(breaker.0, breaker.1));
        Nodes::follow(&nodes, conn.clone(), op_timeout).await;
        Ok(RedisBackend {
            conn,
            op_timeout,
            releases: super::releases::Releases::new(pubsub, op_timeout),
            reads: super::reads::Reads::new(),
            nodes: Some(nodes),
        })
    }

    /// The masters that serve slots, as they change.
    pub(crate) fn masters(&self) -> Option<watch::Receiver<Vec<Node>>> {
        self.nodes.as_ref().map(|nodes| nodes.masters())
    }
}

/// How many hash slots a Redis Cluster has.
const SLOTS: usize = 16_384;
/// How often the slot map is read again, to follow failovers and moved
/// slots.
const REFRESH: Duration = Duration::from_secs(1);
/// How often while a node's breaker is not closed: a failover is under way,
/// and until the map names the promoted replica, the dead master's slots
/// answer to its open breaker.
const REFRESH_IN_FAILURE: Duration = Duration::from_millis(100);
/// How long a node's breaker may stay open before the cluster connection
/// is made anew.
const STUCK: Duration = Duration::from_secs(8);

/// Which node serves each slot, and a circuit breaker per node: a node that
/// hangs or dies is skipped on its own, while the others keep serving.
///
/// Read from `CLUSTER SLOTS` at start-up and every [`REFRESH`] (every
/// [`REFRESH_IN_FAILURE`] while a breaker is not closed); a node's
/// breaker outlives the refresh as long as the node serves slots. The
/// `redis` crate keeps its own map for routing; this one only tells whose
/// breaker a command answers to, so a stale entry costs a breaker's
/// accuracy for a second, never a misrouted command.
pub(crate) struct Nodes {
    map: RwLock<Arc<SlotMap>>,
    /// The masters that serve slots, sorted: followed by the in-process
    /// tier's tracking.
    masters: watch::Sender<Vec<Node>>,
    threshold: u32,
    cooldown: Duration,
}

#[derive(Default)]
struct SlotMap {
    /// Per slot, an index into `nodes`; `None` until known.
    owner: Vec<Option<u16>>,
    nodes: Vec<(Node, Arc<Breaker>)>,
}

impl Nodes {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Nodes {
            map: RwLock::new(Arc::new(SlotMap::default())),
            masters: watch::Sender::new(Vec::new()),
            threshold,
            cooldown,
        }
    }

    fn map(&self) -> Arc<SlotMap> {
        self.map.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The breaker of the node that serves `name`, if known.
    pub(crate) fn breaker(&self, name: &str) -> Option<Arc<Breaker>> {
        let map = self.map();
        let node = (*map.owner.get(slot(name))?)?;
        Some(map.nodes.get(usize::from(node))?.1.clone())
    }

    /// `names` grouped by the node that serves them (as indices into
    /// `names`): one group per node, all in one if the map is not known.
    pub(crate) fn by_node(&self, names: &[String]) -> Vec<Vec<usize>> {
        let map = self.map();
        let mut groups: Vec<(Option<u16>, Vec<usize>)> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let node = map.owner.get(slot(name)).copied().flatten();
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, group)) => group.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        groups.into_iter().map(|(_, group)| group).collect()
    }

    /// The worst state among the nodes' breakers.
    pub(crate) fn worst(&self) -> BreakerState {
        let states = self
            .map()
            .nodes
            .iter()
            .map(|(_, breaker)| breaker.state())
            .collect::<Vec<_>>();
        [BreakerState::Open, BreakerState::HalfOpen]
            .into_iter()
            .find(|worst| states.contains(worst))
            .unwrap_or(BreakerState::Closed)
    }

    /// Takes in a `CLUSTER SLOTS` reply.
    fn update(&self, slots: &Value) {
        let Value::Array(ranges) = slots else { return };
        let old = self.map();
        let mut map = SlotMap {
            owner: vec![None; SLOTS],
            nodes: Vec::new(),
        };
        for range in ranges {
            let (Some((start, end)), Some(node)) = (span(range), master(range)) else {
                continue;
            };
            let index = match map.nodes.iter().position(|(n, _)| *n == node) {
                Some(index) => index,
                None => {
                    let breaker = old.nodes.iter().find(|(n, _)| *n == node).map_or_else(
                        || {
                            let label = format!("{}:{}", node.0, node.1);
                            Arc::new(Breaker::for_node(self.threshold, self.cooldown, label))
                        },
                        |(_, breaker)| breaker.clone(),
                    );
                    map.nodes.push((node, breaker));
                    map.nodes.len() - 1
                }
            };
            let index = u16::try_from(index).ok();
            for owner in map.owner.iter_mut().take(end + 1).skip(start) {
                *owner = index;
            }
        }
        let mut masters: Vec<Node> = map.nodes.iter().map(|(node, _)| node.clone()).collect();
        masters.sort();
        // A map with slots no master serves (a master died, its replica
        // not yet promoted) leaves the masters as they were: dropping the
        // dead one now would let the in-process tiers trust the others
        // alone, and miss the changes the promoted replica makes before
        // its tracking is on.
        let covered = map.owner.iter().all(Option::is_some);
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
        if !covered {
            return;
        }
        self.masters.send_if_modified(|old| {
            let changed = *old != masters;
            *old = masters;
            changed
        });
    }

    /// The masters that serve slots, as the map changes.
    pub(crate) fn masters(&self) -> watch::Receiver<Vec<Node>> {
        self.masters.subscribe()
    }

    /// `CLUSTER SLOTS`, asked of the known masters by address, those whose
    /// breaker is closed first, then of any node. Not of a random node
    /// alone: after a failover, the `redis` crate keeps its own map (and
    /// the dead node among its connections) until a command it routes
    /// fails, and the open breaker of the dead node keeps every command
    /// from it, so a random pick can keep missing the new master.
    async fn read_slots(&self, conn: &mut ClusterConnection, limit: Duration) -> Option<Value> {
        let map = self.map();
        let mut known: Vec<&(Node, Arc<Breaker>)> = map.nodes.iter().collect();
        known.sort_by_key(|(_, breaker)| breaker.state() != BreakerState::Closed);
        for ((host, port), _) in known {
            let route = SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            };
            let asked = conn.route_command(slots_cmd(), RoutingInfo::SingleNode(route));
            if let Ok(slots) = bounded(limit, asked).await {
                return Some(slots);
            }
        }
        bounded(limit, cluster_slots(conn)).await.ok()
    }

    /// Whether a node that serves slots has had a breaker not closed for
    /// [`STUCK`], as of `now`; `open_since` keeps when each one opened.
    fn stuck(&self, open_since: &mut Vec<(Node, Instant)>, now: Instant) -> bool {
        let map = self.map();
        let open: Vec<&Node> = map
            .nodes
            .iter()
            .filter(|(_, breaker)| breaker.state() != BreakerState::Closed)
            .map(|(node, _)| node)
            .collect();
        open_since.retain(|(node, _)| open.contains(&node));
        for node in open {
            if !open_since.iter().any(|(n, _)| n == node) {
                open_since.push((node.clone(), now));
            }
        }
        open_since
            .iter()
            .any(|(_, since)| now.duration_since(*since) >= STUCK)
    }

    /// Reads the slot map now, then every [`REFRESH`] until `nodes` is
    /// dropped. A node whose breaker stays open for [`STUCK`] gets the
    /// connection replaced (at most once per `STUCK`): if the node is dead
    /// for good, that costs a reconnection; if the `redis` crate was
    /// routing to a master that is gone, it ends it.
    async fn follow(nodes: &Arc<Nodes>, conn: Cluster, limit: Duration) {
        if let Ok(slots) = bounded(limit, cluster_slots(&mut conn.get())).await {
            nodes.update(&slots);
        }
        let nodes = Arc::downgrade(nodes);
        tokio::spawn(async move {
            let mut open_since = Vec::new();
            let mut replaced = Instant::now();
            let mut pause = REFRESH;
            loop {
                tokio::time::sleep(pause).await;
                let Some(nodes) = nodes.upgrade() else { return };
                if let Some(slots) = nodes.read_slots(&mut conn.get(), limit).await {
                    nodes.update(&slots);
                }
                pause = match nodes.worst() {
                    BreakerState::Closed => REFRESH,
                    _ => REFRESH_IN_FAILURE,
                };
                let now = Instant::now();
                if nodes.stuck(&mut open_since, now) && now.duration_since(replaced) >= STUCK {
                    replaced = now;
                    open_since.clear();
                    match conn.reconnect().await {
                        Ok(()) => tracing::warn!(
                            "aside: a Redis Cluster node's breaker stayed open for {STUCK:?}; the cluster \
                             connection was made anew"
                        ),
                        Err(error) => {
                            tracing::warn!(%error, "aside: the Redis Cluster connection could not be made anew")
                        }
                    }
                }
            }
        });
    }
}

async fn cluster_slots(conn: &mut ClusterConnection) -> redis::RedisResult<Value> {
    conn.route_command(
        slots_cmd(),
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
    )
    .await
}

fn slots_cmd() -> redis::Cmd {
    redis::cmd("CLUSTER").arg("SLOTS").clone()
}

/// A slot range's first and last slot.
fn span(range: &Value) -> Option<(usize, usize)> {
    let Value::Array(range) = range else { return None };
    let (Value::Int(start), Value::Int(end)) = (range.first()?, range.get(1)?) else {
        return None;
    };
    let (start, end) = (usize::try_from(*start).ok()?, usize::try_from(*end).ok()?);
    (start <= end && end < SLOTS).then_some((start, end))
}

/// A slot range's master: `[start, end, [host, port, id, ...], replicas...]`.
fn master(range: &Value) -> Option<Node> {
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
}

/// The hash slot of a key: CRC16 of its hash tag (the text between the
/// first `{` and the next `}`, if not empty), or of the whole key.
fn slot(name: &str) -> usize {
    let name = name.as_bytes();
    let tag = name.iter().position(|&b| b == b'{').and_then(|open| {
        let close = name[open + 1..].iter().position(|&b| b == b'}')?;
        Some(&name[open + 1..open + 1 + close]).filter(|tag| !tag.is_empty())
    });
    usize::from(crc16::State::<crc16::XMODEM>::calculate(tag.unwrap_or(name))) % SLOTS
}

#[cfg(test)]
mod tests {
    use redis::cluster_routing::Slot;

    use super::{slot, Instant, Nodes, SLOTS, STUCK};

    #[test]
    fn slots_are_the_redis_crates() {
        for name in [
            "",
            "a",
            "{a}b",
            "a{b}c",
            "{}a",
            "a{}",
            "}{a}",
            "{a",
            "x}{y}",
            "ns:{product:1}",
            "日本{語}",
        ] {
            let want = Slot::new(u16::try_from(slot(name)).unwrap()).unwrap();
            assert_eq!(Slot::for_key(name), want, "{name:?}");
        }
    }

    /// A `CLUSTER SLOTS` range: slots `start..=end` served by the master on `port`.
    fn range(start: i64, end: i64, port: i64) -> redis::Value {
        redis::Value::Array(vec![
            redis::Value::Int(start),
            redis::Value::Int(end),
            redis::Value::Array(vec![
                redis::Value::BulkString(b"127.0.0.1".to_vec()),
                redis::Value::Int(port),
            ]),
        ])
    }

    #[test]
    fn names_are_grouped_by_the_node_of_their_slot() {
        let nodes = Nodes::new(5, std::time::Duration::from_secs(1));
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).into();
        assert_eq!(
            nodes.by_node(&names),
            vec![vec![0, 1, 2, 3]],
            "no map yet: one group"
        );
        let half = i64::try_from(SLOTS / 2).unwrap();
        nodes.update(&redis::Value::Array(vec![
            range(0, half - 1, 7000),
            range(half, half * 2 - 1, 7001),
        ]));
        let low = |name: &str| slot(name) < SLOTS / 2;
        let groups = nodes.by_node(&names);
        for group in &groups {
            let side = low(&names[group[0]]);
            assert!(group.iter().all(|&i| low(&names[i]) == side), "{groups:?}");
        }
        assert!(nodes.breaker("a").is_some());
    }

    #[test]
    fn a_map_with_slots_no_master_serves_leaves_the_masters_as_they_were() {
        let nodes = Nodes::new(5, std::time::Duration::from_secs(1));
        let half = i64::try_from(SLOTS / 2).unwrap();
        let masters = nodes.masters();
        let ports = || masters.borrow().iter().map(|(_, port)| *port).collect::<Vec<_>>();
        nodes.update(&redis::Value::Array(vec![
            range(0, half - 1, 7000),
            range(half, half * 2 - 1, 7001),
        ]));
        assert_eq!(ports(), [7000, 7001]);
        // 7001 died: its slots have no master for a while.
        nodes.update(&redis::Value::Array(vec![range(0, half - 1, 7000)]));
        assert_eq!(ports(), [7000, 7001], "the dead master still counts");
        // Its replica took over.
        nodes.update(&redis::Value::Array(vec![
            range(0, half - 1, 7000),
            range(half, half * 2 - 1, 7004),
        ]));
        assert_eq!(ports(), [7000, 7004]);
    }

    #[test]
    fn a_breaker_open_for_stuck_long_is_stuck() {
        let nodes = Nodes::new(1, std::time::Duration::from_secs(1));
        let all = range(0, i64::try_from(SLOTS).unwrap() - 1, 7000);
        nodes.update(&redis::Value::Array(vec![all]));
        let (mut open_since, start) = (Vec::new(), Instant::now());
        assert!(!nodes.stuck(&mut open_since, start), "closed");
        nodes.breaker("a").unwrap().failure();
        assert!(!nodes.stuck(&mut open_since, start), "just opened");
        assert!(!nodes.stuck(&mut open_since, start + STUCK / 2));
        assert!(nodes.stuck(&mut open_since, start + STUCK), "open for STUCK");
        nodes.breaker("a").unwrap().success();
        assert!(!nodes.stuck(&mut open_since, start + STUCK * 2), "closed again");
        assert!(open_since.is_empty());
    }
}

//! Keeps the in-process tier coherent with Redis: client tracking in
//! broadcast mode, on a RESP3 connection of its own to every node that
//! holds keys (the one Redis, or each master of a cluster).
//!
//! `CLIENT TRACKING ON BCAST PREFIX {ns}: PREFIX {ns}#tag:` makes a node push
//! the name of every key under those prefixes that changes on it: written,
//! deleted, expired or evicted, by any client, this process's included. A
//! `FLUSHALL`/`FLUSHDB` pushes a null instead of names. Each push flags the
//! tier's deps in the push sender itself, as the connection manager hands
//! it over (through its own channel; there is no queue of ours).
//!
//! Each connection is a `ConnectionManager` (it reconnects by itself). A
//! lost connection pushes `Disconnection`, and a heartbeat (`CLIENT
//! TRACKINGINFO`, every [`HEARTBEAT`]) catches one that stopped tracking
//! without dropping. The tier is trusted only while every connection
//! tracks: losing one flushes the tier and bypasses it until all track
//! again. [`Coherence`] keeps that account.
//!
//! On a cluster the set of masters is followed through the slot map: a new
//! master (a promoted replica, a node given slots) counts as a lost
//! connection until its own tracking is on, and a node that no longer
//! serves slots is dropped, so that a dead master stops counting once its
//! replica has taken over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;

use crate::l1::Local;

/// How often each tracking connection is checked while it works.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often tracking is retried while it is off.
const RETRY: Duration = Duration::from_millis(200);

/// A cluster node, as the slot map names it.
type Node = super::redis::Node;

/// Starts keeping `local` coherent with the Redis behind `client`, for the
/// keys of `namespace`. Returns once tracking is on, or has failed once (the
/// tier is then bypassed, and tracking retried in the background); runs
/// until `local` is dropped.
pub(crate) async fn track(
    client: &redis::Client,
    namespace: &str,
    local: &Arc<Local>,
    timeouts: (Duration, Duration),
) {
    let coherence = Coherence::new(namespace, local, timeouts);
    let started = coherence.start(Ok(client.clone()), None);
    let _ = started.await;
    coherence.warn_if_off();
}

/// As [`track`], on every master of a cluster: `masters` follows the slot
/// map, and `seed` (a client for one of the nodes named at start-up) lends
/// its credentials and TLS settings to the connection to each.
#[cfg(feature = "cluster")]
pub(crate) async fn track_cluster(
    seed: &redis::Client,
    mut masters: tokio::sync::watch::Receiver<Vec<Node>>,
    namespace: &str,
    local: &Arc<Local>,
    timeouts: (Duration, Duration),
) {
    let coherence = Coherence::new(namespace, local, timeouts);
    let now = masters.borrow_and_update().clone();
    futures_util::future::join_all(coherence.follow(seed, &now)).await;
    coherence.warn_if_off();
    let seed = seed.clone();
    tokio::spawn(async move {
        // Ends with the backend (which holds the map) or with the tier.
        while masters.changed().await.is_ok() && coherence.local.strong_count() > 0 {
            let now = masters.borrow_and_update().clone();
            drop(coherence.follow(&seed, &now));
        }
    });
}

/// The tracking connections of one tier, and which of them track: the tier
/// is trusted while all of them do. Every loss and restore of the tier goes
/// through here, under one lock, so they are seen in order.
pub(crate) struct Coherence {
    local: Weak<Local>,
    prefixes: [String; 2],
    /// Connect and operation timeouts.
    timeouts: (Duration, Duration),
    sources: Mutex<Sources>,
}

#[derive(Default)]
struct Sources {
    by_id: HashMap<u64, Source>,
    next_id: u64,
}

/// One tracking connection's account.
struct Source {
    /// On a cluster, the master it tracks.
    #[cfg(feature = "cluster")]
    node: Option<Node>,
    on: bool,
    /// Bumped when the connection stops tracking: an enable sent before is
    /// void, as the pushes it started may have been lost since.
    generation: u64,
    task: Option<AbortHandle>,
}

impl Coherence {
    fn new(namespace: &str, local: &Arc<Local>, timeouts: (Duration, Duration)) -> Arc<Self> {
        Arc::new(Coherence {
            local: Arc::downgrade(local),
            prefixes: [format!("{namespace}:"), format!("{namespace}#tag:")],
            timeouts,
            sources: Mutex::new(Sources::default()),
        })
    }

    fn sources(&self) -> MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a tracking connection with `client` (of `node`, on a cluster).
    /// It counts as off from now until its tracking is on. Resolves once
    /// the first attempt to turn it on is over.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    fn start(
        self: &Arc<Self>,
        client: redis::RedisResult<redis::Client>,
        node: Option<&Node>,
    ) -> oneshot::Receiver<()> {
        let id = self.add(Source {
            #[cfg(feature = "cluster")]
            node: node.cloned(),
            on: false,
            generation: 0,
            task: None,
        });
        let (started, first) = oneshot::channel();
        // A connection that cannot even be made stays off: the tier is
        // bypassed rather than trusted without it.
        match client.and_then(|client| self.connection(id, &client)) {
            Ok((conn, wake)) => {
                let task = tokio::spawn(self.clone().run(id, conn, wake, started));
                match self.sources().by_id.get_mut(&id) {
                    Some(source) => source.task = Some(task.abort_handle()),
                    None => task.abort(),
                }
            }
            Err(error) => tracing::warn!(%error, "aside: no Redis client tracking connection"),
        }
        first
    }

    /// A lazy RESP3 connection whose pushes reach the tier, and what wakes
    /// its task when it drops.
    fn connection(
        self: &Arc<Self>,
        id: u64,
        client: &redis::Client,
    ) -> redis::RedisResult<(ConnectionManager, Arc<Notify>)> {
        let info = client.get_connection_info().clone();
        let resp3 = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3))?;
        let wake = Arc::new(Notify::new());
        let on_push = {
            let (coherence, wake) = (Arc::downgrade(self), wake.clone());
            move |push: PushInfo| -> Result<(), ()> {
                let coherence = coherence.upgrade().ok_or(())?;
                coherence.pushed(id, push, &wake)
            }
        };
        let (connect, op) = self.timeouts;
        let config = ConnectionManagerConfig::new()
            .set_push_sender(on_push)
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(op));
        // Lazy: if the node is not there yet, enabling fails and is retried.
        Ok((ConnectionManager::new_lazy_with_config(client, config)?, wake))
    }

    /// One connection's life: turn tracking on, then check it every
    /// [`HEARTBEAT`], or retry every [`RETRY`] while it is off; until the
    /// tier is dropped or the connection is let go (its task aborted).
    async fn run(
        self: Arc<Self>,
        id: u64,
        mut conn: ConnectionManager,
        wake: Arc<Notify>,
        started: oneshot::Sender<()>,
    ) {
        let mut started = Some(started);
        let mut on = false;
        loop {
            if !on {
                on = self.enable(id, &mut conn).await;
                if let Some(started) = started.take() {
                    let _ = started.send(());
                }
            }
            let pause = if on { HEARTBEAT } else { RETRY };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // A disconnection: already counted as off.
                () = wake.notified() => on = false,
            }
            if self.local.strong_count() == 0 {
                return;
            }
            if on && !tracking_on(&mut conn, self.timeouts.1).await {
                self.off(id);
                on = false;
            }
        }
    }

    /// One push from a node.
    fn pushed(&self, id: u64, push: PushInfo, wake: &Notify) -> Result<(), ()> {
        let local = self.local.upgrade().ok_or(())?;
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(names)) => local.changed(names.iter().filter_map(|name| match name {
                    Value::BulkString(name) => std::str::from_utf8(name).ok(),
                    _ => None,
                })),
                // FLUSHALL or FLUSHDB.
                _ => local.changed_all(),
            },
            PushKind::Disconnection => {
                self.off(id);
                wake.notify_one();
            }
            _ => {}
        }
        Ok(())
    }

    /// Turns tracking on for connection `id`; true once Redis has
    /// acknowledged it and no loss came in between.
    ///
    /// Off first, in the same round trip: an earlier attempt that timed out
    /// here may still have reached Redis and turned tracking on, and Redis
    /// refuses to turn it on again with the same prefixes ("overlaps with an
    /// existing prefix"), which would leave the tier bypassed for good. The
    /// pushes missed between off and on do not matter: the tier is bypassed
    /// until this connection counts as on.
    async fn enable(&self, id: u64, conn: &mut ConnectionManager) -> bool {
        let Some(generation) = self.sources().by_id.get(&id).map(|s| s.generation) else {
            return false;
        };
        let mut on = redis::cmd("CLIENT");
        on.arg("TRACKING").arg("ON").arg("BCAST");
        for prefix in &self.prefixes {
            on.arg("PREFIX").arg(prefix);
        }
        let mut pipe = redis::pipe();
        pipe.cmd("CLIENT")
            .arg("TRACKING")
            .arg("OFF")
            .ignore()
            .add_command(on)
            .ignore();
        match tokio::time::timeout(self.timeouts.1, pipe.query_async::<()>(conn)).await {
            Ok(Ok(())) => self.on(id, generation),
            Ok(Err(error)) => {
                tracing::debug!(%error, "aside: enabling Redis client tracking failed");
                false
            }
            Err(_) => false,
        }
    }

    /// Counts a new connection, off: the tier is flushed and bypassed.
    fn add(&self, source: Source) -> u64 {
        let mut sources = self.sources();
        let id = sources.next_id;
        sources.next_id += 1;
        sources.by_id.insert(id, source);
        if let Some(local) = self.local.upgrade() {
            local.lost();
        }
        id
    }

    /// Connection `id` tracks, as of `generation`; the tier is trusted again
    /// if all do. False if the connection stopped tracking since.
    fn on(&self, id: u64, generation: u64) -> bool {
        let mut sources = self.sources();
        let Some(source) = sources.by_id.get_mut(&id) else {
            return false;
        };
        if source.generation != generation {
            return false;
        }
        source.on = true;
        self.restore_if_all_on(&sources);
        true
    }

    /// Connection `id` stopped tracking: the tier is flushed and bypassed.
    fn off(&self, id: u64) {
        let mut sources = self.sources();
        if let Some(source) = sources.by_id.get_mut(&id) {
            source.generation += 1;
            source.on = false;
            if let Some(local) = self.local.upgrade() {
                local.lost();
            }
        }
    }

    /// Lets connection `id` go: its node holds no keys any more.
    #[cfg(feature = "cluster")]
    fn remove(&self, id: u64) {
        let mut sources = self.sources();
        if let Some(task) = sources.by_id.remove(&id).and_then(|source| source.task) {
            task.abort();
        }
        self.restore_if_all_on(&sources);
    }

    fn restore_if_all_on(&self, sources: &Sources) {
        let all_on = !sources.by_id.is_empty() && sources.by_id.values().all(|source| source.on);
        if let (true, Some(local)) = (all_on, self.local.upgrade()) {
            local.restored();
        }
    }

    fn warn_if_off(&self) {
        let sources = self.sources();
        // No connection at all: a cluster whose slot map is not known yet.
        if sources.by_id.is_empty() || sources.by_id.values().any(|source| !source.on) {
            tracing::warn!(
                "aside: Redis client tracking is off; the in-process tier is bypassed until it is on"
            );
        }
    }

    /// Tracks exactly `masters`: starts a connection to each new one (first,
    /// so that the tier is never trusted without it) and lets go of the ones
    /// gone. An empty list (the map is not known) changes nothing. Returns
    /// the new connections' first attempts.
    #[cfg(feature = "cluster")]
    fn follow(self: &Arc<Self>, seed: &redis::Client, masters: &[Node]) -> Vec<oneshot::Receiver<()>> {
        if masters.is_empty() {
            return Vec::new();
        }
        let known: Vec<(u64, Option<Node>)> = self
            .sources()
            .by_id
            .iter()
            .map(|(&id, source)| (id, source.node.clone()))
            .collect();
        let started = masters
            .iter()
            .filter(|&master| !known.iter().any(|(_, node)| node.as_ref() == Some(master)))
            .map(|master| self.start(client_of(seed, master), Some(master)))
            .collect();
        for (id, node) in known {
            if !node.is_some_and(|node| masters.contains(&node)) {
                self.remove(id);
            }
        }
        started
    }
}

/// A client for `node`, with `seed`'s credentials and TLS settings.
#[cfg(feature = "cluster")]
fn client_of(seed: &redis::Client, (host, port): &Node) -> redis::RedisResult<redis::Client> {
    use redis::ConnectionAddr;
    let info = seed.get_connection_info().clone();
    let mut addr = info.addr().clone();
    match &mut addr {
        ConnectionAddr::Tcp(h, p) | ConnectionAddr::TcpTls { host: h, port: p, .. } => {
            (*h, *p) = (host.clone(), *port);
        }
        _ => {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a cluster node is reached over TCP",
            )))
        }
    }
    redis::Client::open(info.set_addr(addr))
}

/// Whether the connection still tracks (`CLIENT TRACKINGINFO` lists the
/// flag `on`).
async fn tracking_on(conn: &mut ConnectionManager, op_timeout: Duration) -> bool {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("TRACKINGINFO");
    match tokio::time::timeout(op_timeout, cmd.query_async::<Value>(conn)).await {
        Ok(Ok(info)) => flags_on(&info),
        _ => false,
    }
}

fn flags_on(info: &Value) -> bool {
    let Value::Map(fields) = info else {
        return false;
    };
    let is = |value: &Value, text: &str| match value {
        Value::BulkString(b) => b == text.as_bytes(),
        Value::SimpleString(s) => s == text,
        _ => false,
    };
    fields.iter().any(|(name, flags)| {
        is(name, "flags")
            && match flags {
                Value::Array(flags) | Value::Set(flags) => flags.iter().any(|flag| is(flag, "on")),
                _ => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::L1;

    fn source() -> Source {
        Source {
            #[cfg(feature = "cluster")]
            node: None,
            on: false,
            generation: 0,
            task: None,
        }
    }

    fn trusted(local: &Local) -> bool {
        local.watch("k", ["ns:k"].into_iter()).is_some()
    }

    #[test]
    fn the_tier_is_trusted_only_while_every_connection_tracks() {
        let local = Arc::new(Local::new(L1::default(), false));
        let coherence = Coherence::new("ns", &local, (Duration::ZERO, Duration::ZERO));
        let (a, b) = (coherence.add(source()), coherence.add(source()));
        assert!(coherence.on(a, 0));
        assert!(!trusted(&local), "b is not on yet");
        assert!(coherence.on(b, 0));
        assert!(trusted(&local));

        coherence.off(a);
        assert!(!trusted(&local));
        // An enable of `a` sent before it went off is void.
        assert!(!coherence.on(a, 0));
        assert!(!trusted(&local));
        assert!(coherence.on(a, 1));
        assert!(trusted(&local));

        // A new connection counts as off until it tracks.
        let c = coherence.add(source());
        assert!(!trusted(&local));
        assert!(coherence.on(c, 0));
        assert!(trusted(&local));
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn a_connection_let_go_stops_counting() {
        let local = Arc::new(Local::new(L1::default(), false));
        let coherence = Coherence::new("ns", &local, (Duration::ZERO, Duration::ZERO));
        let (a, b) = (coherence.add(source()), coherence.add(source()));
        assert!(coherence.on(a, 0));
        coherence.off(b);
        assert!(!trusted(&local));
        // `b`'s node was a master that died; its replica, now `c`, tracks.
        let c = coherence.add(source());
        assert!(coherence.on(c, 0));
        assert!(!trusted(&local), "b still counts");
        coherence.remove(b);
        assert!(trusted(&local));
        coherence.off(b);
        assert!(
            trusted(&local),
            "a late push of a connection let go changes nothing"
        );
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn a_client_for_a_node_keeps_the_seeds_credentials() {
        let seed = redis::Client::open("redis://user:secret@127.0.0.1:7000/").unwrap();
        let client = client_of(&seed, &("127.0.0.2".to_owned(), 7003)).unwrap();
        let info = client.get_connection_info();
        assert_eq!(info.addr().to_string(), "127.0.0.2:7003");
        assert_eq!(info.redis_settings().username(), Some("user"));
        assert_eq!(info.redis_settings().password(), Some("secret"));
    }
}

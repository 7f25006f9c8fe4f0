//! A throwaway Redis Cluster: six `redis-server` processes (3 masters, 3
//! replicas) on free loopback ports, persistence off, a short
//! `cluster-node-timeout`, joined by `redis-cli --cluster create`; killed and
//! cleaned up on drop, or, for the one a test binary shares, when the binary
//! exits. Never touches a server it did not start.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aside::Cache;

use super::redis_server::{free_port, spawn_server, wait_ready};

/// How long a node may be unreachable before the cluster fails it over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    /// For the shared cluster: the pipe whose closing, when the test binary
    /// exits however it exits, makes a watchdog process kill the nodes (a
    /// static is never dropped).
    watchdog: Option<Mutex<(Child, Option<ChildStdin>)>>,
}

pub struct Node {
    child: Child,
    pub port: u16,
}

impl RedisCluster {
    /// Starts six nodes, joins them as 3 masters with a replica each, and
    /// waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` is not installed (with how to install
    /// them), or the cluster does not form within 30 s.
    pub fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("aside-cluster-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("create a directory for the cluster's node files");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
            watchdog: None,
        };
        while cluster.nodes.len() < 6 {
            let port = cluster_port();
            let mut node = Node {
                child: spawn(port, &cluster.dir),
                port,
            };
            // A port taken again before the server bound it: try another.
            if node.wait_ready() {
                cluster.nodes.push(node);
            }
        }
        cluster.create();
        cluster.wait_ok(Duration::from_secs(30));
        cluster.wait_synced(Duration::from_secs(30));
        cluster
    }

    /// The cluster the tests of this binary share (started by the first),
    /// each under a namespace of its own ([`namespace`](Self::namespace)).
    /// Tests that stop or kill nodes start their own instead.
    pub fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut cluster = RedisCluster::start();
            cluster.watch_exit();
            cluster
        })
    }

    /// A namespace no other test of this binary uses.
    pub fn namespace() -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// A cache on this cluster under `namespace`.
    ///
    /// Its operation timeout is 2 s: the behaviour tests check what the
    /// cache does, and a thousand callers at once on a loaded 2-core machine
    /// running six nodes can keep an operation queued past the default
    /// 250 ms, which turns a lock into a call-through (the fault tests,
    /// `cluster_faults.rs`, check the timeouts with the defaults).
    pub async fn cache(&self, namespace: &str) -> Cache {
        Self::built(self.builder(namespace)).await
    }

    /// As [`cache`](Self::cache), behind the typed in-process tier.
    pub async fn tiered_cache(&self, namespace: &str) -> Cache {
        Self::built(self.builder(namespace).l1(aside::L1::default())).await
    }

    fn builder(&self, namespace: &str) -> aside::CacheBuilder {
        Cache::builder()
            .redis(aside::Redis::cluster(self.urls()))
            .op_timeout(Duration::from_secs(2))
            .namespace(namespace)
    }

    async fn built(builder: aside::CacheBuilder) -> Cache {
        builder.build().await.expect("connect to the test cluster")
    }

    /// Starts a process that kills the nodes and removes their directory
    /// once this process's end of its stdin closes: at exit, or on a crash.
    fn watch_exit(&mut self) {
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#"read _; dir="$1"; shift; kill -9 "$@" 2>/dev/null; sleep 0.2; rm -rf "$dir""#)
            .arg("watchdog")
            .arg(&self.dir)
            .args(self.nodes.iter().map(|node| node.child.id().to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster's watchdog (sh)");
        let stdin = watchdog.stdin.take();
        self.watchdog = Some(Mutex::new((watchdog, stdin)));
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|node| node.port == port)
            .expect("a node of this cluster")
    }

    /// The port of the master that serves the key `name`, as the first
    /// node that answers sees it.
    pub fn master_of(&self, name: &str) -> u16 {
        self.nodes
            .iter()
            .find_map(|node| {
                let mut conn = connect(node.port)?;
                let slot: i64 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(name)
                    .query(&mut conn)
                    .ok()?;
                let ranges: Vec<(i64, i64, (String, i64))> = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query::<Vec<redis::Value>>(&mut conn)
                    .ok()?
                    .into_iter()
                    .filter_map(|range| {
                        let redis::Value::Array(parts) = range else {
                            return None;
                        };
                        let start = redis::from_redis_value(parts.first()?.clone()).ok()?;
                        let end = redis::from_redis_value(parts.get(1)?.clone()).ok()?;
                        let redis::Value::Array(master) = parts.get(2)? else {
                            return None;
                        };
                        let host = redis::from_redis_value(master.first()?.clone()).ok()?;
                        let port = redis::from_redis_value(master.get(1)?.clone()).ok()?;
                        Some((start, end, (host, port)))
                    })
                    .collect();
                let (_, _, (_, port)) = ranges
                    .iter()
                    .find(|(start, end, _)| (*start..=*end).contains(&slot))?;
                u16::try_from(*port).ok()
            })
            .expect("a node answers with the slot's master")
    }

    /// Tags of `namespace` whose tokens live one on each master but the
    /// one on `except`, if given.
    pub fn tags_on_masters(&self, namespace: &str, except: Option<u16>) -> Vec<String> {
        let mut masters: Vec<u16> = except.into_iter().collect();
        let mut tags = Vec::new();
        for i in 0.. {
            let tag = format!("category:{i}");
            let master = self.master_of(&format!("{namespace}#tag:{tag}"));
            if !masters.contains(&master) {
                masters.push(master);
                tags.push(tag);
            }
            if masters.len() == 3 {
                break;
            }
        }
        tags
    }

    /// The cluster id of the node on `port`.
    pub fn id(port: u16) -> String {
        let mut conn = connect(port).expect("the node answers");
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut conn)
            .expect("CLUSTER MYID")
    }

    /// Moves `slots` slots from the master on `from` to the master on `to`,
    /// with their keys (`redis-cli --cluster reshard`: clients see `MOVED`
    /// and `ASK` while it runs). Blocks until done.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) {
        // redis-cli refuses to start while the nodes disagree about the
        // configuration, as they do for a moment after a reshard.
        self.wait_agreed(from, Duration::from_secs(30));
        let output = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &Self::id(from), "--cluster-to", &Self::id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(
            output.status.success(),
            "redis-cli --cluster reshard failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `CLUSTER INFO` of the node on `port`, if it answers.
    pub fn info(port: u16) -> Option<String> {
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query::<String>(&mut connect(port)?)
            .ok()
    }

    fn create(&self) {
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        for node in &self.nodes {
            command.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = command
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "redis-cli is not installed, and the Redis Cluster tests need it. Install it \
                 (Debian/Ubuntu: `apt-get install redis-server`, which brings redis-tools), \
                 or run `scripts/test`, which does."
            ),
            Err(e) => panic!("could not run redis-cli: {e}"),
        }
    }

    /// Waits until `redis-cli --cluster check` (through the node on `port`)
    /// finds the nodes agreeing about the configuration.
    fn wait_agreed(&self, port: u16, limit: Duration) {
        poll(limit, || {
            let output = Command::new("redis-cli")
                .args(["--cluster", "check", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .output()
                .expect("run redis-cli --cluster check");
            let report = String::from_utf8_lossy(&output.stdout);
            let agreed =
                output.status.success() && !report.contains("[ERR]") && !report.contains("[WARNING]");
            agreed
                .then_some(())
                .ok_or_else(|| format!("the nodes did not agree: {report}"))
        });
    }

    /// Waits until every replica has synced with its master (so that it
    /// can take over from it).
    fn wait_synced(&self, limit: Duration) {
        let replication = |port: u16| -> Option<String> {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut connect(port)?)
                .ok()
        };
        poll(limit, || {
            let synced = self.nodes.iter().all(|node| {
                replication(node.port).is_some_and(|info| {
                    info.contains("role:master")
                        || info.lines().any(|line| line.trim() == "master_link_status:up")
                })
            });
            synced
                .then_some(())
                .ok_or_else(|| "the replicas did not sync".to_owned())
        });
    }

    fn wait_ok(&self, limit: Duration) {
        poll(limit, || {
            let ok = self.nodes.iter().all(|node| {
                Self::info(node.port)
                    .is_some_and(|info| info.lines().any(|line| line.trim() == "cluster_state:ok"))
            });
            ok.then_some(())
                .ok_or_else(|| "the cluster did not reach cluster_state:ok".to_owned())
        });
    }
}

/// Checks every 50 ms until `check` passes; panics with its last complaint
/// if it has not within `limit`.
fn poll(limit: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(()) => return,
            Err(complaint) => assert!(Instant::now() < deadline, "{complaint} within {limit:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Node {
    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to the node's process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    fn wait_ready(&mut self) -> bool {
        wait_ready(&mut self.child, self.port)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            // SIGKILL works on stopped processes too.
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A connection to the node on `port`, if it answers within 500 ms.
fn connect(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    Some(conn)
}

/// A free port whose cluster bus port (10000 above it) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn spawn(port: u16, dir: &std::path::Path) -> Child {
    spawn_server(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT.as_millis().to_string()])
            // A replica may take over however long ago it last heard its
            // master, and syncs at once (the default waits 5 s for more).
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(dir),
        None,
    )
}

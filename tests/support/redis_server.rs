//! A throwaway `redis-server` owned by one test: a free loopback port,
//! persistence off, killed on drop. Never touches a server it did not start.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aside::Cache;

pub struct RedisServer {
    child: Child,
    port: u16,
    tls: Option<Tls>,
    /// With persistence: the directory of its append-only file.
    aof: Option<PathBuf>,
}

/// A TLS port and the files behind it: a throwaway CA and a certificate it
/// signed for 127.0.0.1.
struct Tls {
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed (with how to install it) or does not
    /// come up within 10 s.
    pub fn start() -> RedisServer {
        // A port picked by binding to 0 can be taken again before the server
        // binds it; a server that exits at start-up is retried on another.
        for _attempt in 0..5 {
            let port = free_port();
            let child = spawn(port, None, None);
            let mut server = RedisServer {
                child,
                port,
                tls: None,
                aof: None,
            };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("redis-server failed to start on 5 different ports");
    }

    /// Starts a server that persists every write before acknowledging it:
    /// an append-only file with `appendfsync always`, in a directory of its
    /// own, which [`restart`](Self::restart) reads back.
    pub fn start_durable() -> RedisServer {
        for _attempt in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("aside-aof-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create a directory for the append-only file");
            let child = spawn(port, None, Some(&dir));
            let mut server = RedisServer {
                child,
                port,
                tls: None,
                aof: Some(dir),
            };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("redis-server with an append-only file failed to start on 5 different ports");
    }

    /// Starts a server that also listens for TLS, with a certificate for
    /// 127.0.0.1 signed by a CA of its own (see [`tls_ca`](Self::tls_ca)).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), and if `openssl` cannot make the certificates.
    pub fn start_tls() -> RedisServer {
        for _attempt in 0..5 {
            let (port, tls_port) = (free_port(), free_port());
            let dir = std::env::temp_dir().join(format!("aside-tls-{}-{tls_port}", std::process::id()));
            make_certificates(&dir);
            let tls = Tls { port: tls_port, dir };
            let child = spawn(port, Some(&tls), None);
            let mut server = RedisServer {
                child,
                port,
                tls: Some(tls),
                aof: None,
            };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("redis-server with TLS failed to start on 5 different ports");
    }

    /// The `rediss://` URL of a server from [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls().port)
    }

    /// The PEM certificate of the CA that signed the server's certificate.
    pub fn tls_ca(&self) -> Vec<u8> {
        std::fs::read(self.tls().dir.join("ca.crt")).expect("read the test CA")
    }

    fn tls(&self) -> &Tls {
        self.tls
            .as_ref()
            .expect("start the server with RedisServer::start_tls")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A cache on this server, with its own connection.
    pub async fn cache(&self) -> Cache {
        Cache::builder()
            .redis(self.url())
            .build()
            .await
            .expect("connect to the test redis-server")
    }

    /// A cache on this server: Redis alone, or (`Kind::Tiered`) behind the
    /// typed in-process tier. With a 2 s operation timeout, as on the test
    /// cluster: a thousand callers on a 2-core machine whose cores are both
    /// busy can keep an operation queued past the default 250 ms, which
    /// turns a lock into a call-through. The behaviour tests test behaviour;
    /// `faults.rs`, `timeouts.rs` and `redis_backend.rs` check the timeouts,
    /// with caches of their own.
    pub async fn cache_of(&self, kind: super::Kind) -> Cache {
        let builder = Cache::builder()
            .redis(self.url())
            .op_timeout(std::time::Duration::from_secs(2));
        let builder = match kind {
            super::Kind::Tiered => builder.l1(aside::L1::default()),
            _ => builder,
        };
        builder.build().await.expect("connect to the test redis-server")
    }

    /// A raw connection, for looking behind the cache's back.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis-server")
    }

    /// Total commands the server executed, by command name, from `INFO commandstats`.
    pub async fn command_calls(&self) -> Vec<(String, u64)> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.raw().await)
            .await
            .unwrap();
        info.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }

    /// Sends a signal (`STOP`, `CONT`, `KILL`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "kill -{signal} {} failed",
            self.pid()
        );
    }

    /// Kills the server with SIGKILL (no shutdown, nothing saved) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new server on the same port, after [`kill`](Self::kill):
    /// empty, or with what its append-only file holds.
    pub fn restart(&mut self) {
        self.child = spawn(self.port, self.tls.as_ref(), self.aof.as_deref());
        assert!(
            self.wait_ready(),
            "redis-server did not restart on port {}",
            self.port
        );
    }

    fn wait_ready(&mut self) -> bool {
        wait_ready(&mut self.child, self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL works on stopped processes too.
        self.kill();
        if let Some(tls) = &self.tls {
            let _ = std::fs::remove_dir_all(&tls.dir);
        }
        if let Some(dir) = &self.aof {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Waits until `child`, a `redis-server` started on `port`, answers there;
/// `false` if it exited, or another server holds the port (`child` is then
/// killed).
///
/// # Panics
///
/// If nothing answers within 10 s.
pub fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_exited)) = child.try_wait() {
            return false;
        }
        // The server that answers on the port must be this one: another
        // test's server may hold the port (picked by both), and our child,
        // unable to bind, not have exited yet. Sharing a server would mix
        // two tests' commands and keys.
        if let Some(ours) = answers_as(port, child.id()) {
            if !ours {
                let _ = child.kill();
                let _ = child.wait();
            }
            return ours;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server on port {port} did not answer PING within 10 s");
}

/// Whether the server answering on `port` is the process `pid`; `None`
/// while nothing answers there.
pub fn answers_as(port: u16, pid: u32) -> Option<bool> {
    let info = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut conn| redis::cmd("INFO").arg("server").query::<String>(&mut conn))
        .ok()?;
    let answering = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse::<u32>().ok());
    Some(answering == Some(pid))
}

/// `command` (a `redis-server`, with its arguments) started, its output
/// discarded: persistence off, or (`aof`) an append-only file in that
/// directory, synced before each write is acknowledged.
pub fn spawn_server(command: &mut Command, aof: Option<&Path>) -> Child {
    command.args(["--save", "", "--daemonize", "no"]);
    match aof {
        Some(dir) => command
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir),
        None => command.args(["--appendonly", "no"]),
    };
    let spawned = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "redis-server is not installed, and the Redis tests need it. Install it \
             (Debian/Ubuntu: `apt-get install redis-server`), or run `scripts/test`, which does."
        ),
        Err(e) => panic!("could not start redis-server: {e}"),
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

fn spawn(port: u16, tls: Option<&Tls>, aof: Option<&Path>) -> Child {
    let mut command = Command::new("redis-server");
    command.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
    if let Some(tls) = tls {
        let file = |name: &str| tls.dir.join(name).into_os_string();
        command
            .args(["--tls-port", &tls.port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(file("server.crt"))
            .arg("--tls-key-file")
            .arg(file("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(file("ca.crt"));
    }
    spawn_server(&mut command, aof)
}

/// A CA, and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create a directory for the test certificates");
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    // One key for both certificates, an EC one: quick to make.
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let steps = [
        format!("req -x509 {key} -keyout ca.key -out ca.crt -days 2 -subj /CN=aside-test-CA"),
        format!("req {key} -keyout server.key -out server.csr -subj /CN=127.0.0.1"),
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
         -days 2 -extfile server.ext"
            .to_owned(),
    ];
    for step in steps {
        let args: Vec<&str> = step.split_whitespace().collect();
        let output = Command::new("openssl").args(&args).current_dir(dir).output();
        match output {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "openssl is not installed, and the TLS test needs it to make certificates. \
                 Install it (Debian/Ubuntu: `apt-get install openssl`), or run `scripts/test`, which does."
            ),
            Err(e) => panic!("could not run openssl: {e}"),
        }
    }
}

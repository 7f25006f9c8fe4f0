//! [`Redis`]: where a cache finds Redis, and opening it: the client, the
//! connection, the in-process tier's tracking, and a Cluster's nodes.
//!
//! Owns connection setup for [`CacheBuilder::build`](crate::CacheBuilder::build);
//! hands back a backend and a tier, and knows nothing of the cache's flows.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::IntoConnectionInfo;

use crate::backend::redis::RedisBackend;
use crate::backend::streams::Streams;
use crate::backend::tracking;
use crate::backend::Backend;
use crate::error::Error;
use crate::l1::{Local, L1};

/// Where a cache finds Redis: what [`CacheBuilder::redis`](crate::CacheBuilder::redis)
/// takes. Made from:
///
/// - a URL (`&str` or `String`): `redis://[user:pass@]host:port[/db]` (an
///   ACL user and its password, or only a password with `redis://:pass@`),
///   `rediss://...` for TLS (with the `tls` feature), or `unix:///path`;
///   checked by [`build`](crate::CacheBuilder::build), which returns
///   [`Error::Config`] for a bad one;
/// - a [`redis::ConnectionInfo`] or a [`redis::Client`] the program built
///   itself (its own TLS or connection settings);
/// - a [`ConnectionManager`] the program already has, whose commands the
///   cache shares ([`Redis::shared`] to give the client it came from too);
/// - the seed nodes of a Redis Cluster (`Redis::cluster`, with the
///   `cluster` feature).
///
/// The URL is kept out of `Debug` output (it may hold a password).
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use aside::Cache;
///
/// let cache = Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
///
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let cache = Cache::builder().redis(client).build().await?;
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redis(Source);

#[derive(Clone)]
enum Source {
    Url(String),
    Info(redis::ConnectionInfo),
    Client(redis::Client),
    Shared(ConnectionManager, Option<redis::Client>),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Source::Url(_) | Source::Info(_) => "Redis(url)",
            Source::Client(_) => "Redis(client)",
            Source::Shared(..) => "Redis(shared connection)",
            #[cfg(feature = "cluster")]
            Source::Cluster(_) => "Redis(cluster)",
        })
    }
}

impl Redis {
    /// Redis through a connection the program already has: the cache's
    /// commands share it with the program's. `client` (the one it was made
    /// from) is for what needs a connection of its own: lock waiters told of
    /// a release over pub/sub, and the in-process tier's client tracking.
    /// A connection alone (`.redis(connection)`) works without them: waiters
    /// poll, and the tier is off, with a warning.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let shared = redis::aio::ConnectionManager::new(client.clone()).await?;
    /// let cache = aside::Cache::builder()
    ///     .redis(aside::Redis::shared(shared.clone(), client))
    ///     .build()
    ///     .await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn shared(connection: ConnectionManager, client: redis::Client) -> Redis {
        Redis(Source::Shared(connection, Some(client)))
    }

    /// A Redis Cluster, found through any of `urls` (some of its nodes: the
    /// others are discovered). Each URL is as for a single Redis, and all
    /// give the same credentials and scheme (`rediss://` for TLS); Unix
    /// sockets cannot be used. Available with the `cluster` feature.
    ///
    /// An entry, its guard and its lock share a hash slot; each tag's token
    /// has its own (see [`guide::cluster`](crate::guide::cluster)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// use aside::Redis;
    ///
    /// let cache = aside::Cache::builder()
    ///     .redis(Redis::cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"]))
    ///     .build()
    ///     .await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster<I>(urls: I) -> Redis
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Redis(Source::Cluster(urls.into_iter().map(Into::into).collect()))
    }
}

impl From<&str> for Redis {
    fn from(url: &str) -> Redis {
        Redis(Source::Url(url.to_owned()))
    }
}

impl From<String> for Redis {
    fn from(url: String) -> Redis {
        Redis(Source::Url(url))
    }
}

impl From<&String> for Redis {
    fn from(url: &String) -> Redis {
        Redis(Source::Url(url.clone()))
    }
}

impl From<redis::ConnectionInfo> for Redis {
    fn from(info: redis::ConnectionInfo) -> Redis {
        Redis(Source::Info(info))
    }
}

impl From<redis::Client> for Redis {
    fn from(client: redis::Client) -> Redis {
        Redis(Source::Client(client))
    }
}

impl From<ConnectionManager> for Redis {
    fn from(connection: ConnectionManager) -> Redis {
        Redis(Source::Shared(connection, None))
    }
}

/// The builder's settings that opening Redis needs.
pub(crate) struct Settings<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) connect_timeout: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) require_connection: bool,
    pub(crate) tls_root_certificate: Option<&'a [u8]>,
    pub(crate) l1: Option<L1>,
    /// A Cluster's breaker per node: threshold and cool-down.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) breaker: (u32, Duration),
}

/// Redis, opened.
pub(crate) struct Connected {
    pub(crate) backend: Arc<dyn Backend>,
    /// The same backend, for write-behind's logs.
    pub(crate) streams: Arc<dyn Streams>,
    pub(crate) local: Option<Arc<Local>>,
    /// Whether Redis answered: if not, calls skip it until the breaker probes.
    pub(crate) answered: bool,
    /// A Cluster's backend keeps a breaker per node: the cache needs none.
    pub(crate) breaker_per_node: bool,
}

impl Redis {
    /// Opens Redis: the backend, and the in-process tier kept coherent by
    /// client tracking (without tracking, a Redis before 6 or a user not
    /// allowed `CLIENT TRACKING`, the tier stays bypassed: slower, never stale).
    pub(crate) async fn connect(self, settings: Settings<'_>) -> Result<Connected, Error> {
        let (connect, op) = (settings.connect_timeout, settings.op_timeout);
        let (backend, client, answered) = match self.0 {
            #[cfg(feature = "cluster")]
            Source::Cluster(urls) => return connect_cluster(urls, settings).await,
            Source::Shared(shared, client) => (RedisBackend::over(shared, client.clone(), op), client, true),
            Source::Url(url) => open(client(url.as_str(), &settings)?, &settings).await?,
            Source::Info(info) => open(client(info, &settings)?, &settings).await?,
            Source::Client(client) => open(client, &settings).await?,
        };
        let mut local = settings.l1.map(|l1| Arc::new(Local::new(l1, false)));
        match (&local, &client) {
            (Some(tier), Some(client)) => {
                tracking::track(client, settings.namespace, tier, (connect, op)).await;
            }
            (Some(_), None) => {
                tracing::warn!(
                    "aside: the in-process tier needs a client to track Redis with (aside::Redis::shared); it is off"
                );
                local = None;
            }
            (None, _) => {}
        }
        Ok(Connected {
            backend: Arc::new(backend.clone()),
            streams: Arc::new(backend),
            local,
            answered,
            breaker_per_node: false,
        })
    }
}

/// A backend of its own over `client`, and whether Redis answered.
async fn open(
    client: redis::Client,
    settings: &Settings<'_>,
) -> Result<(RedisBackend, Option<redis::Client>, bool), Error> {
    let (connect, op) = (settings.connect_timeout, settings.op_timeout);
    let (backend, answered) = RedisBackend::connect(client.clone(), connect, op, settings.require_connection)
        .await
        .map_err(|source| Error::connect(&client, source))?;
    Ok((backend, Some(client), answered))
}

#[cfg(feature = "cluster")]
async fn connect_cluster(urls: Vec<String>, settings: Settings<'_>) -> Result<Connected, Error> {
    let invalid = |e: redis::RedisError| Error::Config(format!("invalid Redis Cluster URL: {e}"));
    // One client per seed, for the pub/sub connection; they also check
    // each URL (and install the TLS provider).
    let pubsub = urls
        .iter()
        .map(|url| client(url.as_str(), &settings))
        .collect::<Result<Vec<_>, _>>()?;
    // The redis crate retries what a cluster refuses for now
    // (`CLUSTERDOWN`, `TRYAGAIN`) after 1.28 s at the least by default:
    // longer than an operation may take, so the refusal would surface
    // as a timeout, which counts against a node's breaker, and a
    // failover would open the healthy nodes' breakers too. Waits of
    // 5-50 ms, four at most (under 160 ms in all), let it surface as
    // what it is; redirects (`MOVED`, `ASK`) are retried without a wait.
    let cluster = redis::cluster::ClusterClientBuilder::new(urls.iter().map(String::as_str))
        .retries(4)
        .min_retry_wait(5)
        .max_retry_wait(50)
        .retry_wait_formula(10, 2);
    #[cfg(feature = "tls")]
    let cluster = match settings.tls_root_certificate {
        Some(root) => cluster.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root.to_vec()),
        }),
        None => cluster,
    };
    let client = cluster.build().map_err(invalid)?;
    let timeouts = (settings.connect_timeout, settings.op_timeout);
    // A breaker per node, in the backend, instead of the cache's for the
    // whole cluster: a node that hangs does not stop the others.
    let backend = RedisBackend::connect_cluster(
        client,
        pubsub.clone(),
        timeouts,
        settings.breaker,
        settings.require_connection,
    )
    .await
    .map_err(|source| Error::connect(&pubsub[0], source))?;
    let local = settings.l1.map(|l1| Arc::new(Local::new(l1, false)));
    if let (Some(tier), Some(seed), Some(masters)) = (&local, pubsub.first(), backend.masters()) {
        tracking::track_cluster(seed, masters, settings.namespace, tier, timeouts).await;
    }
    Ok(Connected {
        backend: Arc::new(backend.clone()),
        streams: Arc::new(backend),
        local,
        answered: true,
        breaker_per_node: true,
    })
}

/// A client for `target`, with the builder's TLS root if it has one.
fn client(target: impl IntoConnectionInfo, settings: &Settings<'_>) -> Result<redis::Client, Error> {
    // The redis crate's message names the problem, never the URL itself.
    let invalid = |e: redis::RedisError| Error::Config(format!("invalid Redis URL: {e}"));
    let info = target.into_connection_info().map_err(invalid)?;
    #[cfg(feature = "tls")]
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        // The redis crate builds its TLS settings on rustls's process-wide
        // crypto provider, and rustls cannot pick one by itself when a
        // program enables several (aws-lc-rs through another crate, say).
        // Install ring, unless the program has already chosen. (rustls
        // 0.23.48 deprecates ring's provider for lacking post-quantum key
        // exchange; it is the one that builds without a C toolchain. A
        // program that wants aws-lc-rs installs it first.)
        #[allow(deprecated)]
        let _already_chosen = rustls::crypto::ring::default_provider().install_default();
        if let Some(root) = settings.tls_root_certificate {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root.to_vec()),
            };
            return redis::Client::build_with_tls(info, certificates).map_err(invalid);
        }
    }
    #[cfg(not(feature = "tls"))]
    let _ = settings.tls_root_certificate;
    redis::Client::open(info).map_err(invalid)
}

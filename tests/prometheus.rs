//! The Prometheus example (`examples/metrics_server.rs`), run as a service
//! on a free loopback port over a private redis-server, scraped over real
//! HTTP: per function, the outcomes add up to the calls made.

#[path = "../examples/metrics_server.rs"]
#[allow(dead_code)]
mod server;
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aside::{Cache, Function, Policy, Stampede};
use metrics_exporter_prometheus::PrometheusHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::redis_server::RedisServer;

/// The process's recorder, installed by whichever test comes first.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(server::install_prometheus).clone()
}

/// One HTTP/1.1 request: the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// The samples of `metric` in a scrape, by their label set (`{...}`).
fn samples(scrape: &str, metric: &str) -> HashMap<String, f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name_labels, value) = line.rsplit_once(' ')?;
            let (name, labels) = name_labels.split_once('{').unwrap_or((name_labels, "}"));
            (name == metric).then(|| (format!("{{{labels}"), value.parse().unwrap()))
        })
        .collect()
}

/// A sample's value, 0 if it is absent.
fn sample(samples: &HashMap<String, f64>, labels: &str) -> u64 {
    samples.get(labels).copied().unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_outcomes_add_up_to_the_calls_of_each_function() {
    let redis = RedisServer::start();
    let prometheus = prometheus();
    aside::init(redis.cache().await).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, server::app(prometheus)).await });

    // products: 20 misses, then 20 hits; an unknown one: a miss, then 2
    // negative hits; 8 concurrent calls of a new one: 1 miss, the rest
    // coalesced or hits; after a write, a miss again.
    for round in 0..2 {
        for id in 1..=20 {
            let (status, body) = http(addr, "GET", &format!("/products/{id}")).await;
            assert_eq!(status, 200, "round {round}, product {id}: {body}");
        }
    }
    for _ in 0..3 {
        assert_eq!(http(addr, "GET", "/products/5000").await.0, 404);
    }
    let concurrent: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async move { http(addr, "GET", "/products/500").await.0 }))
        .collect();
    for call in concurrent {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(http(addr, "POST", "/products/1/touch").await.0, 204);
    assert_eq!(http(addr, "GET", "/products/1").await.0, 200);
    // categories: a miss, then 4 hits.
    for _ in 0..5 {
        assert_eq!(http(addr, "GET", "/categories/3").await.0, 200);
    }

    let (status, scrape) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let calls = samples(&scrape, "aside_calls_total");
    let of = |function: &str, outcome: &str| {
        sample(
            &calls,
            &format!("{{function=\"prometheus::server::{function}\",outcome=\"{outcome}\"}}"),
        )
    };
    let outcomes = ["hit", "negative", "stale", "coalesced", "miss", "bypass"];
    let total = |function: &str| outcomes.iter().map(|o| of(function, o)).sum::<u64>();
    let report = format!("aside_calls_total: {calls:#?}");

    assert_eq!(total("product"), 40 + 3 + 8 + 1, "{report}");
    assert_eq!(of("product", "negative"), 2, "{report}");
    // 20 first reads, the unknown id, the write's product, and one of the
    // concurrent ones.
    assert_eq!(of("product", "miss"), 23, "{report}");
    assert_eq!(
        of("product", "hit") + of("product", "coalesced"),
        20 + 7,
        "{report}"
    );
    assert_eq!((total("category"), of("category", "miss")), (5, 1), "{report}");
    assert_eq!(of("category", "hit"), 4, "{report}");

    // Every load timed: as many as there were misses.
    let loads = samples(&scrape, "aside_load_duration_seconds_count");
    let loads_of = |function: &str| {
        sample(
            &loads,
            &format!("{{function=\"prometheus::server::{function}\"}}"),
        )
    };
    assert_eq!((loads_of("product"), loads_of("category")), (23, 1), "{loads:#?}");
    // The backend's round trips, by operation; the breaker, closed.
    let fetches = samples(&scrape, "aside_backend_duration_seconds_count");
    assert!(sample(&fetches, "{op=\"fetch\"}") >= 40, "{fetches:#?}");
    assert_eq!(sample(&samples(&scrape, "aside_breaker_state"), "{}"), 0);
    // Nothing in flight once every response is in.
    // (Another test's functions may be running meanwhile.)
    let in_flight = samples(&scrape, "aside_calls_in_flight");
    let ours = in_flight
        .iter()
        .filter(|(labels, _)| labels.contains("prometheus::server::"));
    assert!(
        ours.clone().count() >= 2 && ours.clone().all(|(_, v)| *v == 0.0),
        "{in_flight:#?}"
    );
    assert!(
        scrape.contains("# HELP aside_calls_total"),
        "described for the exporter"
    );
    eprintln!(
        "{}",
        scrape
            .lines()
            .filter(|l| l.contains("server::product"))
            .take(12)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

static LOCKED: Function = Function::new("tests::locked");
static REFRESHED: Function = Function::new("tests::refreshed");
static CORRUPTED: Function = Function::new("tests::corrupted");

/// The metrics that need a second process or a fault: a wait for another
/// process's lock, a forced refresh, a corrupt entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_waits_refreshes_and_corrupt_entries_are_measured() {
    let prometheus = prometheus();
    let redis = RedisServer::start();
    // Two instances: the second waits for the first's lock.
    let (first, second): (Cache, Cache) = (redis.cache().await, redis.cache().await);
    let locked = Policy::new()
        .stampede(Stampede::Lock {
            lock_ttl: Duration::from_secs(30),
            lock_wait: Duration::from_secs(30),
        })
        .function(&LOCKED);
    let release = Arc::new(tokio::sync::Notify::new());
    let holder = tokio::spawn({
        let (cache, policy, release) = (first.clone(), locked.clone(), release.clone());
        async move {
            let load = || async move {
                release.notified().await;
                Ok::<_, std::io::Error>(1u32)
            };
            cache.get_or_load("locked", &policy, load).await.unwrap()
        }
    });
    support::until("the first instance loads", || first.stats().loads == 1).await;
    let waiter = tokio::spawn({
        let (cache, policy) = (second.clone(), locked.clone());
        async move {
            let load = || async { Ok::<_, std::io::Error>(2u32) };
            cache.get_or_load("locked", &policy, load).await.unwrap()
        }
    });
    support::until("the second waits for the lock", || second.stats().lock_waits == 1).await;
    release.notify_one();
    assert_eq!((holder.await.unwrap(), waiter.await.unwrap()), (1, 1));

    let refreshed = Policy::new().function(&REFRESHED);
    let load = |v: u32| move || async move { Ok::<_, std::io::Error>(v) };
    first.get_or_load("refreshed", &refreshed, load(1)).await.unwrap();
    aside::refresh(first.get_or_load("refreshed", &refreshed, load(2)))
        .await
        .unwrap();

    redis::cmd("SET")
        .arg("aside:{corrupted}")
        .arg("not an entry")
        .query_async::<()>(&mut redis.raw().await)
        .await
        .unwrap();
    let corrupted = Policy::new().function(&CORRUPTED);
    assert_eq!(
        first.get_or_load("corrupted", &corrupted, load(3)).await.unwrap(),
        3
    );

    let scrape = prometheus.render();
    let of = |metric: &str, function: &str| {
        sample(
            &samples(&scrape, metric),
            &format!("{{function=\"tests::{function}\"}}"),
        )
    };
    assert_eq!(
        of("aside_lock_wait_duration_seconds_count", "locked"),
        1,
        "{scrape}"
    );
    assert_eq!(of("aside_refreshes_total", "refreshed"), 1, "{scrape}");
    assert_eq!(of("aside_corrupt_entries_total", "corrupted"), 1, "{scrape}");
    let calls = samples(&scrape, "aside_calls_total");
    let outcome = |function: &str, outcome: &str| {
        sample(
            &calls,
            &format!("{{function=\"tests::{function}\",outcome=\"{outcome}\"}}"),
        )
    };
    // The waiter found the holder's value when the lock was released: it
    // got another caller's load, waited for (its body did not run).
    assert_eq!(
        (
            outcome("locked", "miss"),
            outcome("locked", "coalesced"),
            outcome("refreshed", "bypass")
        ),
        (1, 1, 1),
        "{calls:#?}"
    );
    assert_eq!(outcome("corrupted", "miss"), 1, "{calls:#?}");
}

/// A write-behind log's backlog, appends, flushes and lag, by log name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_logs_backlog_and_flushes_are_measured() {
    let prometheus = prometheus();
    let redis = RedisServer::start();
    let cache = redis.cache().await;
    let log = aside::write_behind::WriteBehind::<u64, u64>::new(&cache, "metered").unwrap();
    for id in 0..5 {
        log.add(&id, 1).await.unwrap();
    }
    let of = |metric: &str| sample(&samples(&prometheus.render(), metric), "{log=\"metered\"}");
    assert_eq!(of("aside_write_behind_backlog"), 5);
    assert_eq!(of("aside_write_behind_appends_total"), 5);

    let flusher = log
        .flusher(|_: aside::write_behind::Batch<u64, u64>| async { Ok::<_, std::convert::Infallible>(()) })
        .flush_every(Duration::from_millis(20))
        .start()
        .unwrap();
    support::until("the batch is flushed", || log.stats().batches == 1).await;
    flusher.stop().await;
    assert_eq!(of("aside_write_behind_backlog"), 0);
    assert_eq!(of("aside_write_behind_flushed_total"), 5);
    assert_eq!(of("aside_write_behind_lag_seconds_count"), 1);
}

/// Invalidations kept while Redis is down, then replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_kept_during_an_outage_and_replayed_are_measured() {
    let prometheus = prometheus();
    let redis = RedisServer::start();
    let chaos = aside::testing::Chaos::seeded(0);
    let cache = Cache::builder()
        .redis(redis.url())
        .chaos(chaos.clone())
        .build()
        .await
        .unwrap();
    chaos.go_down();
    cache.invalidate("product:1").await.unwrap();
    cache.invalidate_tag("category:7").await.unwrap();
    let of = |metric: &str| sample(&samples(&prometheus.render(), metric), "{}");
    assert_eq!(of("aside_recovery_pending"), 2);
    chaos.come_back();
    support::bounded("the replay", Duration::from_secs(10), cache.replay_pending()).await;
    assert_eq!(of("aside_recovery_pending"), 0);
    assert!(of("aside_recovery_replayed_total") >= 2);
}

/// The Grafana dashboard (`examples/grafana/aside-dashboard.json`) queries
/// only metrics aside describes, and takes quantiles of histograms only.
#[test]
fn the_dashboard_queries_only_metrics_aside_exports() {
    let root = env!("CARGO_MANIFEST_DIR");
    let source = std::fs::read_to_string(format!("{root}/runtime/src/metrics.rs")).unwrap();
    // Each `describe_<kind>!(` and the metric name after it.
    let mut described: HashMap<String, &str> = HashMap::new();
    for kind in ["counter", "gauge", "histogram"] {
        for (at, _) in source.match_indices(&format!("describe_{kind}!(")) {
            let rest = &source[at..];
            let name = rest.split('"').nth(1).expect("a described metric has a name");
            described.insert(name.to_owned(), kind);
        }
    }
    assert!(described.len() > 20, "{described:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/examples/grafana/aside-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("aside_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                let (base, bucket) = match name.strip_suffix("_bucket") {
                    Some(base) => (base.to_owned(), true),
                    None => (name.clone(), false),
                };
                let kind = described.get(&base).unwrap_or_else(|| {
                    panic!(
                        "panel {:?} queries {name}, which aside does not export",
                        panel["title"]
                    )
                });
                assert!(!bucket || *kind == "histogram", "{name} is not a histogram's");
                queried += 1;
            }
        }
    }
    assert!(queried >= 20, "{queried}");
}

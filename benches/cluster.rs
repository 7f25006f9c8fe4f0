//! A hit on a Redis Cluster against a hit on a single redis-server, on the
//! same machine, in the same run: private servers (a cluster of 3 masters
//! with a replica each), one cache on each, a 1 KB value.
//!
//! - **One caller:** `SAMPLES` hits one after another, alternating between
//!   the two backends in rounds; it prints p50 and p99 of each and the
//!   cluster's p50 over the single node's.
//! - **64 callers:** `WIDE` tasks calling hits over 64 keys for `WINDOW`;
//!   it prints hits per second on each and the ratio.
//!
//! Run with `cargo bench -p aside-benches --bench cluster`.

mod latency;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aside::{Cache, Policy};
use latency::{at, runtime, under_cargo_test};
use support::{RedisCluster, RedisServer};

const SAMPLES: usize = 2_000;
const ROUNDS: usize = 5;
const WIDE: usize = 64;
const KEYS: usize = 64;
const WINDOW: Duration = Duration::from_secs(2);

fn value() -> String {
    "x".repeat(1024)
}

async fn hit(cache: &Cache, key: &str) -> String {
    let policy = Policy::new().ttl(Duration::from_secs(3600));
    let got = cache.get_or_load(key, &policy, || async { Ok::<_, io::Error>(value()) });
    got.await.unwrap()
}

/// `SAMPLES` hits one by one.
async fn one_by_one(cache: &Cache, into: &mut Vec<Duration>) {
    for i in 0..SAMPLES {
        let key = format!("product:{}", i % KEYS);
        let started = Instant::now();
        std::hint::black_box(hit(cache, &key).await);
        into.push(started.elapsed());
    }
}

/// Hits per second of `WIDE` callers over `KEYS` keys for `WINDOW`.
async fn wide(cache: &Cache) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..WIDE)
        .map(|caller| {
            let (cache, stop, calls) = (cache.clone(), stop.clone(), calls.clone());
            tokio::spawn(async move {
                let mut n = caller;
                while !stop.load(Relaxed) {
                    std::hint::black_box(hit(&cache, &format!("product:{}", n % KEYS)).await);
                    calls.fetch_add(1, Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await;
    stop.store(true, Relaxed);
    let elapsed = started.elapsed();
    for task in tasks {
        task.await.unwrap();
    }
    calls.load(Relaxed) as f64 / elapsed.as_secs_f64()
}

fn main() {
    if under_cargo_test() {
        return;
    }
    let server = RedisServer::start();
    let cluster = RedisCluster::start();
    runtime().block_on(async {
        let single = Cache::builder().redis(server.url()).build().await.unwrap();
        let clustered = Cache::builder().redis(aside::Redis::cluster(cluster.urls())).build().await.unwrap();
        for cache in [&single, &clustered] {
            for key in 0..KEYS {
                hit(cache, &format!("product:{key}")).await;
            }
        }
        let (mut on_single, mut on_cluster) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            one_by_one(&single, &mut on_single).await;
            one_by_one(&clustered, &mut on_cluster).await;
        }
        on_single.sort();
        on_cluster.sort();
        let (single_p50, cluster_p50) = (at(&on_single, 0.5), at(&on_cluster, 0.5));
        println!(
            "one caller, hit: single node p50 {single_p50:?} p99 {:?}; cluster p50 {cluster_p50:?} p99 {:?}; \
             cluster / single p50 = {:.2}",
            at(&on_single, 0.99),
            at(&on_cluster, 0.99),
            cluster_p50.as_secs_f64() / single_p50.as_secs_f64()
        );
        let (mut single_rates, mut cluster_rates) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            single_rates.push(wide(&single).await);
            cluster_rates.push(wide(&clustered).await);
        }
        let median = |rates: &mut Vec<f64>| {
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        };
        let (single_rate, cluster_rate) = (median(&mut single_rates), median(&mut cluster_rates));
        println!(
            "{WIDE} callers, hits per second (median of 3): single node {single_rate:.0}; cluster {cluster_rate:.0}; \
             cluster / single = {:.2}",
            cluster_rate / single_rate
        );
        let stats = clustered.stats();
        assert_eq!(stats.errors, 0, "the cluster answered every call: {stats:?}");
    });
}

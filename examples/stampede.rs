//! How each stampede mode behaves when many callers want one key, measured.
//!
//! Four `Cache`s stand in for four processes. Two scenarios per mode:
//!
//! - **cold**: 1,000 concurrent callers (250 per process) ask for a key that
//!   is not cached; the loader takes 50 ms.
//! - **expiry**: 8 callers (2 per process) read one key in a loop for 3 s;
//!   its TTL is 1 s, so it expires (or is refreshed) about three times.
//!
//! For each: how many times the loader ran, how many reads missed, and the
//! callers' p50 and p99 latency. A baseline of plain hits is measured first
//! in the same run.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p aside-examples --example stampede   # four processes on one Redis
//! cargo run --release -p aside-examples --example stampede                                    # in memory (one process)
//! ```
//!
//! With Redis, keys go under a fresh `stampede:<timestamp>` namespace and
//! expire on their own; nothing is deleted.

#[path = "logs.rs"]
pub mod logs;

use std::error::Error;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aside::{Cache, Policy, Stampede};
use tokio::task::JoinSet;

const LOAD: Duration = Duration::from_millis(50);
const COLD_CALLERS: usize = 1000;
const TTL: Duration = Duration::from_secs(1);
const RUN: Duration = Duration::from_secs(3);
const READERS_PER_PROCESS: usize = 2;

/// What one scenario measured.
struct Outcome {
    loads: u64,
    misses: u64,
    /// Sorted.
    latencies: Vec<Duration>,
}

impl Outcome {
    fn percentile(&self, p: f64) -> Duration {
        let rank = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }
}

/// The slow query: takes `LOAD`, counts its runs.
async fn load(loads: &AtomicU64) -> io::Result<u64> {
    loads.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LOAD).await;
    Ok(42)
}

async fn cold(caches: &[Cache], policy: &Policy, key: &str) -> Outcome {
    let loads = Arc::new(AtomicU64::new(0));
    let before: Vec<_> = caches.iter().map(Cache::stats).collect();
    let mut callers = JoinSet::new();
    for i in 0..COLD_CALLERS {
        let (cache, policy, key, loads) = (
            caches[i % caches.len()].clone(),
            policy.clone(),
            key.to_owned(),
            loads.clone(),
        );
        callers.spawn(async move {
            let started = Instant::now();
            cache
                .get_or_load(&key, &policy, || load(&loads))
                .await
                .expect("the loader never fails");
            started.elapsed()
        });
    }
    let latencies = callers.join_all().await;
    finish(caches, &before, &loads, latencies)
}

async fn expiry(caches: &[Cache], policy: &Policy, key: &str) -> Outcome {
    let loads = Arc::new(AtomicU64::new(0));
    // Warm the key, then read it in a loop through its expiries.
    caches[0]
        .get_or_load(key, policy, || load(&loads))
        .await
        .expect("the loader never fails");
    loads.store(0, Ordering::Relaxed);
    let before: Vec<_> = caches.iter().map(Cache::stats).collect();
    let mut readers = JoinSet::new();
    for cache in caches {
        for _ in 0..READERS_PER_PROCESS {
            let (cache, policy, key, loads) = (cache.clone(), policy.clone(), key.to_owned(), loads.clone());
            readers.spawn(async move {
                let mut latencies = Vec::new();
                let start = Instant::now();
                while start.elapsed() < RUN {
                    let started = Instant::now();
                    cache
                        .get_or_load(&key, &policy, || load(&loads))
                        .await
                        .expect("the loader never fails");
                    latencies.push(started.elapsed());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                latencies
            });
        }
    }
    let latencies = readers.join_all().await.into_iter().flatten().collect();
    finish(caches, &before, &loads, latencies)
}

fn finish(
    caches: &[Cache],
    before: &[aside::stats::Stats],
    loads: &AtomicU64,
    mut latencies: Vec<Duration>,
) -> Outcome {
    latencies.sort_unstable();
    let misses = caches
        .iter()
        .zip(before)
        .map(|(c, b)| c.stats().since(b).misses)
        .sum();
    Outcome {
        loads: loads.load(Ordering::Relaxed),
        misses,
        latencies,
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.0} µs", ms * 1000.0)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    logs::init();
    let (caches, backend) = match std::env::var("REDIS_URL") {
        Ok(url) => {
            let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
            let namespace = format!("stampede:{run}");
            let mut caches = Vec::new();
            for _ in 0..4 {
                caches.push(
                    Cache::builder()
                        .redis(url.clone())
                        .namespace(&namespace)
                        .build()
                        .await?,
                );
            }
            (
                caches,
                format!("Redis, 4 caches (processes), keys under \"{namespace}:\""),
            )
        }
        Err(_) => (
            vec![Cache::memory(); 4],
            "in-memory, one process (set REDIS_URL for four)".to_owned(),
        ),
    };
    println!(
        "backend: {backend}; loader: {} ms; TTL {} s",
        LOAD.as_millis(),
        TTL.as_secs()
    );

    let base = Policy::new().ttl(TTL);
    let hits = expiry(&caches, &Policy::new().ttl(Duration::from_secs(3600)), "baseline").await;
    println!(
        "baseline, hits only: {} reads, p50 {}, p99 {}",
        hits.latencies.len(),
        ms(hits.percentile(0.5)),
        ms(hits.percentile(0.99))
    );
    println!();
    println!("| mode | scenario | callers | loads | misses | p50 | p99 | p99 / hit p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    let modes = [
        ("lock", Stampede::default()),
        (
            "swr",
            Stampede::Swr {
                stale: Duration::from_secs(3600),
            },
        ),
        ("early", Stampede::Early { beta: 1.0 }),
        ("none", Stampede::None),
    ];
    for (name, mode) in modes {
        let policy = base.clone().stampede(mode);
        for (scenario, outcome) in [
            ("cold", cold(&caches, &policy, &format!("cold:{name}")).await),
            (
                "expiry",
                expiry(&caches, &policy, &format!("expiry:{name}")).await,
            ),
        ] {
            let ratio = outcome.percentile(0.99).as_secs_f64() / hits.percentile(0.99).as_secs_f64();
            println!(
                "| {name} | {scenario} | {} | {} | {} | {} | {} | {ratio:.1}x |",
                outcome.latencies.len(),
                outcome.loads,
                outcome.misses,
                ms(outcome.percentile(0.5)),
                ms(outcome.percentile(0.99)),
            );
        }
    }
    println!();
    println!("cold: {COLD_CALLERS} concurrent callers on an uncached key. expiry: {} readers for {} s on a key with a {} s TTL,", caches.len() * READERS_PER_PROCESS, RUN.as_secs(), TTL.as_secs());
    println!("warmed first (its first load not counted). misses: reads that found no usable value.");
    Ok(())
}

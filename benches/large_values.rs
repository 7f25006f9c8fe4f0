//! Small hits on one instance while another task of it caches 20 MB values,
//! against a private redis-server: with no entry-size limit, and with the
//! default limit (`CacheBuilder::DEFAULT_MAX_ENTRY_SIZE`, 1 MiB), which
//! returns such values without writing them; and with no limit but
//! `compress_above(64 KiB)` (the values, one letter repeated, compress
//! about 250 times). The baseline is the same hits with no writer.
//!
//! Run with `cargo bench -p aside-benches --bench large_values`; it prints p50, p99 and the
//! worst small hit for each case, and their ratios to the baseline.

mod latency;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aside::{Cache, CacheBuilder, Policy};
use latency::{at, runtime, under_cargo_test};
use support::RedisServer;

const HITS: usize = 20_000;
const LARGE: usize = 20 << 20;

/// Latencies of `HITS` small hits, while `writer` (if any) keeps caching
/// large values on the same instance.
async fn small_hits(cache: &Cache, writer: bool) -> Vec<Duration> {
    let policy = Policy::new().ttl(Duration::from_secs(600)).l1(false);
    let small = || async { Ok::<_, io::Error>("small".to_owned()) };
    let _: String = cache.get_or_load("small", &policy, small).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer.then(|| {
        let (cache, stop, policy) = (cache.clone(), stop.clone(), policy.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Relaxed) {
                i += 1;
                let large = || async { Ok::<_, io::Error>("x".repeat(LARGE)) };
                let _: String = cache
                    .get_or_load(&format!("large:{i}"), &policy, large)
                    .await
                    .unwrap();
            }
        })
    });
    // Let the writer's first value reach the connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::with_capacity(HITS);
    for _ in 0..HITS {
        let started = Instant::now();
        let got: String = cache.get_or_load("small", &policy, small).await.unwrap();
        latencies.push(started.elapsed());
        assert_eq!(got, "small");
    }
    stop.store(true, Relaxed);
    if let Some(writing) = writing {
        writing.await.unwrap();
    }
    latencies.sort();
    latencies
}

fn main() {
    if under_cargo_test() {
        return;
    }
    let rt = runtime();
    let server = RedisServer::start();
    let build = |limit: usize| {
        rt.block_on(Cache::builder().redis(server.url()).max_entry_size(limit).build())
            .unwrap()
    };
    let (unlimited, limited) = (build(usize::MAX), build(CacheBuilder::DEFAULT_MAX_ENTRY_SIZE));
    let compressed = rt
        .block_on(
            Cache::builder()
                .redis(server.url())
                .max_entry_size(usize::MAX)
                .compress_above(64 << 10)
                .build(),
        )
        .unwrap();
    let cases = [
        ("no writer (baseline)", &limited, false),
        ("20 MB writes, no limit", &unlimited, true),
        ("20 MB writes, default 1 MiB limit", &limited, true),
        (
            "20 MB writes, no limit, compressed above 64 KiB",
            &compressed,
            true,
        ),
    ];
    let measured: Vec<_> = cases
        .iter()
        .map(|(name, cache, writer)| (*name, rt.block_on(small_hits(cache, *writer))))
        .collect();
    let base_p99 = at(&measured[0].1, 0.99);
    println!(
        "\n== {HITS} small hits on one instance while it caches 20 MB values (Redis, no in-process tier) =="
    );
    println!("| case | p50 | p99 | worst | p99 / baseline p99 |\n|---|---|---|---|---|");
    for (name, latencies) in &measured {
        let p99 = at(latencies, 0.99);
        println!(
            "| {name} | {:.0?} | {p99:.0?} | {:.0?} | {:.1} |",
            at(latencies, 0.5),
            latencies[latencies.len() - 1],
            p99.as_secs_f64() / base_p99.as_secs_f64()
        );
    }
    println!(
        "(oversized values skipped by the limited cache: {})",
        limited.stats().oversized
    );
}

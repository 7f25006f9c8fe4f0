//! What tags cost, on Redis (a private `redis-server`, as in the tests):
//!
//! - `invalidate_tag/100` vs `invalidate_tag/100000`: invalidating a tag
//!   carried by 100 entries and by 100,000. Target: ratio below 2 (it is O(1)).
//! - `hit/untagged` vs `hit/tagged`: a hit on an entry without tags and on one
//!   with two. Target: tagged within 1.2x of untagged.
//!
//! Run with `cargo bench -p aside-benches --bench tags`; the ratios are printed at the end,
//! computed from this run's criterion estimates.

mod criterion_means;
#[path = "../tests/support/mod.rs"]
mod support;

use criterion_means::mean_ns;

use std::hint::black_box;
use std::io;
use std::time::Duration;

use aside::{Cache, Policy};
use criterion::{BenchmarkId, Criterion};
use support::RedisServer;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Fills `cache` with `n` entries that all carry `tag`.
async fn populate(cache: &Cache, tag: &str, n: usize) {
    let mut tasks = JoinSet::new();
    for worker in 0..16 {
        let (cache, policy) = (
            cache.clone(),
            Policy::new().ttl(Duration::from_secs(3600)).tag(tag),
        );
        tasks.spawn(async move {
            for i in (worker..n).step_by(16) {
                let key = format!("{}:{i}", policy.tags().next().expect("a tag"));
                let _: io::Result<usize> = cache.get_or_load(&key, &policy, || async move { Ok(i) }).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn invalidate_tag(c: &mut Criterion, rt: &Runtime, cache: &Cache) {
    let mut group = c.benchmark_group("invalidate_tag");
    for n in [100, 100_000] {
        let tag = format!("tag{n}");
        rt.block_on(populate(cache, &tag, n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &tag, |b, tag| {
            b.to_async(rt)
                .iter(|| async { cache.invalidate_tag(black_box(tag)).await.unwrap() })
        });
    }
    group.finish();
}

fn hit(c: &mut Criterion, rt: &Runtime, cache: &Cache) {
    let mut group = c.benchmark_group("hit");
    let untagged = Policy::new();
    let tagged = Policy::new().tag("product:1").tag("category:7");
    for (name, policy) in [("untagged", &untagged), ("tagged", &tagged)] {
        let key = format!("hit:{name}");
        let warm: io::Result<u64> = rt.block_on(cache.get_or_load(&key, policy, || async { Ok(1) }));
        warm.unwrap();
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| async {
                let value: io::Result<u64> = cache
                    .get_or_load(black_box(&key), policy, || async { unreachable!("a hit") })
                    .await;
                value.unwrap()
            })
        });
    }
    group.finish();
}

fn main() {
    let rt = Runtime::new().unwrap();
    let server = RedisServer::start();
    let cache = rt.block_on(server.cache());
    let mut c = Criterion::default().configure_from_args();
    invalidate_tag(&mut c, &rt, &cache);
    hit(&mut c, &rt, &cache);
    c.final_summary();
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` runs each once; there is nothing to compare.
    }
    let fan_out = mean_ns("invalidate_tag", "100000") / mean_ns("invalidate_tag", "100");
    let tagged = mean_ns("hit", "tagged") / mean_ns("hit", "untagged");
    println!("ratio invalidate_tag 100000 entries / 100 entries: {fan_out:.2} (target < 2)");
    println!("ratio hit tagged / untagged:                       {tagged:.2} (target < 1.2)");
}

//! The typed in-process tier's hits against raw moka, in one process,
//! interleaved:
//!
//! | measure | aside | baseline |
//! |---|---|---|
//! | hit | `get_or_load` on `Cache::memory()` (the typed tier) | `moka::sync::Cache` get + clone of the same value |
//! | hit through `#[cached]` | a `#[cached(cache = cache, key = "product:<id>", ttl = "1h")]` function on `Cache::memory()`: what a user's call runs (the key built, the policy, the function's statistics) | moka get + clone |
//! | hit through `#[cached]`, against a peer | the same | the `cached` crate's `#[cached]` on an `async fn` (its default store: a `HashMap` behind a lock, a clone per hit, nothing ever expires) |
//! | the same, with a TTL on both sides | the same | `#[cached(ttl_secs = 3600)]` (a `TimedCache`: it reads a clock on every hit, as aside does) |
//! | the same, bounded and with a TTL on both sides | the same | `#[cached(max_size = 10_000, ttl_secs = 3600)]` (a `TimedSizedCache`: it evicts past its size, as aside's tier does) |
//! | 2-thread hit throughput | the same, on two threads | moka, on two threads |
//! | hit over Redis | `get_or_load` on Redis behind the tier | the in-memory hit |
//! | hit without the tier | `get_or_load` on the in-memory backend alone (decodes JSON) | the typed-tier hit |
//!
//! Each ratio is the median of per-round ratios over `ROUNDS` rounds, the two
//! sides alternating within a round. The value is the product of about 1 KB
//! that `benches/hits.rs` uses, over 1,000 hot keys.
//!
//! Run with `cargo bench -p aside-benches --bench l1` (criterion also times each hit); the
//! table is printed at the end. To profile one measure alone:
//! `perf record -g target/release/deps/l1-* --bench through_the_macro --profile-time 8`.

mod latency;
mod product;
#[path = "../tests/support/mod.rs"]
mod support;
mod tier;

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use aside::{Cache, Policy};
use criterion::Criterion;
use latency::median;
use product::{product, Product};
use support::{Kind, RedisServer};

const ROUNDS: usize = 11;
const HOT_KEYS: usize = 1_000;
const PER_ROUND: usize = 100_000;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn aside_hit(cache: &Cache, key: &str, policy: &Policy) -> Product {
    let got: io::Result<Product> = cache
        .get_or_load(key, policy, || async {
            Err(io::Error::other("warm: not called"))
        })
        .await;
    got.unwrap()
}

/// What a user writes: the hit path through the attribute.
#[aside::cached(cache = cache, key = "product:<id>", ttl = "1h")]
async fn cached_product(cache: &Cache, id: u64) -> io::Result<Product> {
    Err(io::Error::other(format!("warm: {id} not called")))
}

/// The peer: the `cached` crate's attribute, its defaults.
#[cached::proc_macro::cached]
async fn peer_product(id: u64) -> Product {
    product(id)
}

/// The peer with entries that expire, as aside's do.
#[cached::proc_macro::cached(ttl_secs = 3600)]
async fn timed_peer_product(id: u64) -> Product {
    product(id)
}

/// The peer bounded, with entries that expire: what aside's tier is.
#[cached::proc_macro::cached(max_size = 10_000, ttl_secs = 3600)]
async fn bounded_peer_product(id: u64) -> Product {
    product(id)
}

/// Which of the `cached` crate's stores a peer hit goes to.
#[derive(Clone, Copy)]
enum Peer {
    Plain,
    Timed,
    Bounded,
}

/// `n` hits through the `cached` crate's `#[cached]` over the hot keys,
/// on the `peer` store; the time taken.
async fn peer_hits(peer: Peer, first: usize, n: usize) -> Duration {
    let started = Instant::now();
    for i in first..first + n {
        let id = (i % HOT_KEYS) as u64;
        match peer {
            Peer::Plain => black_box(peer_product(id).await),
            Peer::Timed => black_box(timed_peer_product(id).await),
            Peer::Bounded => black_box(bounded_peer_product(id).await),
        };
    }
    started.elapsed()
}

/// `n` hits through `#[cached]` over the hot keys, from `first` on; the time taken.
async fn macro_hits(cache: &Cache, first: usize, n: usize) -> Duration {
    let started = Instant::now();
    for i in first..first + n {
        black_box(cached_product(cache, (i % HOT_KEYS) as u64).await.unwrap());
    }
    started.elapsed()
}

/// `n` hits on `cache` over the hot keys, from `first` on; the time taken.
async fn aside_hits(cache: &Cache, keys: &[String], policy: &Policy, first: usize, n: usize) -> Duration {
    let started = Instant::now();
    for i in first..first + n {
        black_box(aside_hit(cache, &keys[i % keys.len()], policy).await);
    }
    started.elapsed()
}

fn moka_hits(moka: &moka::sync::Cache<String, Product>, keys: &[String], first: usize, n: usize) -> Duration {
    let started = Instant::now();
    for i in first..first + n {
        black_box(moka.get(keys[i % keys.len()].as_str()).unwrap());
    }
    started.elapsed()
}

/// Hits per second over two threads, each running `hits` (which returns its time).
fn two_threads(hits: impl Fn(usize) -> Duration + Sync) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let hits = &hits;
        let threads: Vec<_> = (0..2).map(|t| scope.spawn(move || hits(t * 7919))).collect();
        for thread in threads {
            thread.join().unwrap();
        }
    });
    (2 * PER_ROUND) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rt = current_thread();
    let server = RedisServer::start();
    let keys: Vec<String> = (0..HOT_KEYS).map(|k| format!("product:{k}")).collect();
    let policy = Policy::new().ttl(Duration::from_secs(3600));
    let memory = Cache::memory();
    let decoding = rt.block_on(Cache::builder().no_l1().build()).unwrap();
    let tiered = rt.block_on(server.cache_of(Kind::Tiered));
    let moka = moka::sync::Cache::new(HOT_KEYS as u64 * 2);
    rt.block_on(async {
        for (k, key) in keys.iter().enumerate() {
            for cache in [&memory, &decoding, &tiered] {
                let _: io::Result<Product> = cache
                    .get_or_load(key, &policy, || async { Ok(product(k as u64)) })
                    .await;
            }
            moka.insert(key.clone(), product(k as u64));
            peer_product(k as u64).await;
            timed_peer_product(k as u64).await;
            bounded_peer_product(k as u64).await;
        }
        for key in &keys {
            tier::until_in_process(&tiered, || aside_hit(&tiered, key, &policy)).await;
        }
    });

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut group = c.benchmark_group("l1_hit");
        group.bench_function("moka_get_clone", |b| {
            b.iter(|| moka.get(black_box("product:1")).unwrap())
        });
        group.bench_function("aside_memory", |b| {
            b.to_async(&rt)
                .iter(|| aside_hit(&memory, black_box("product:1"), &policy))
        });
        group.bench_function("aside_memory_through_the_macro", |b| {
            b.to_async(&rt)
                .iter(|| async { cached_product(&memory, black_box(1)).await.unwrap() })
        });
        group.bench_function("aside_tiered_redis", |b| {
            b.to_async(&rt)
                .iter(|| aside_hit(&tiered, black_box("product:1"), &policy))
        });
        group.bench_function("aside_memory_without_l1", |b| {
            b.to_async(&rt)
                .iter(|| aside_hit(&decoding, black_box("product:1"), &policy))
        });
        group.finish();
    }
    c.final_summary();
    // `cargo test --benches` runs each once, and `--profile-time` (for a
    // profiler) runs one for a while: there is nothing to compare.
    if std::env::args().any(|a| a == "--list" || a == "--test" || a == "--profile-time") {
        return;
    }

    let (mut hit, mut wide, mut over_redis, mut without) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut through_macro, mut against_peer) = (Vec::new(), Vec::new());
    let (mut against_timed, mut against_bounded) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let first = round * 31;
        let base = moka_hits(&moka, &keys, first, PER_ROUND);
        let ours = rt.block_on(aside_hits(&memory, &keys, &policy, first, PER_ROUND));
        let macro_ = rt.block_on(macro_hits(&memory, first, PER_ROUND));
        through_macro.push(macro_.as_secs_f64() / base.as_secs_f64());
        let peer = rt.block_on(peer_hits(Peer::Plain, first, PER_ROUND));
        against_peer.push(macro_.as_secs_f64() / peer.as_secs_f64());
        let timed = rt.block_on(peer_hits(Peer::Timed, first, PER_ROUND));
        against_timed.push(macro_.as_secs_f64() / timed.as_secs_f64());
        let bounded = rt.block_on(peer_hits(Peer::Bounded, first, PER_ROUND));
        against_bounded.push(macro_.as_secs_f64() / bounded.as_secs_f64());
        let redis = rt.block_on(aside_hits(&tiered, &keys, &policy, first, PER_ROUND));
        let decoded = rt.block_on(aside_hits(&decoding, &keys, &policy, first, PER_ROUND / 10)) * 10;
        hit.push(ours.as_secs_f64() / base.as_secs_f64());
        over_redis.push(redis.as_secs_f64() / ours.as_secs_f64());
        without.push(decoded.as_secs_f64() / ours.as_secs_f64());

        let moka_rate = two_threads(|first| moka_hits(&moka, &keys, first, PER_ROUND));
        let aside_rate = two_threads(|first| {
            current_thread().block_on(aside_hits(&memory, &keys, &policy, first, PER_ROUND))
        });
        wide.push(aside_rate / moka_rate);
    }
    let l1_hits = tiered.stats().l1_hits;
    let hits = tiered.stats().hits;

    println!("\n== the typed in-process tier vs moka, medians of {ROUNDS} interleaved rounds ==");
    println!("| measure | ratio | target |\n|---|---|---|");
    println!(
        "| hit, Cache::memory() / moka get + clone | {:.2} | <= 1.5 |",
        median(hit)
    );
    println!(
        "| hit through #[cached] on Cache::memory() / moka get + clone | {:.2} | <= 1.1 |",
        median(through_macro)
    );
    println!(
        "| hit through #[cached] / the `cached` crate's #[cached] | {:.2} | <= 1.0 (issue 30) |",
        median(against_peer)
    );
    println!(
        "| the same, both with a TTL / `#[cached(ttl_secs = 3600)]` | {:.2} | <= 1.0 |",
        median(against_timed)
    );
    println!(
        "| the same, both bounded and with a TTL / `#[cached(max_size = 10_000, ttl_secs = 3600)]` | {:.2} | - |",
        median(against_bounded)
    );
    println!(
        "| 2-thread hit throughput / moka's | {:.2} | >= 0.9 |",
        median(wide)
    );
    println!(
        "| hit over Redis (tiered) / in-memory hit | {:.2} | the same |",
        median(over_redis)
    );
    println!(
        "| hit without the tier (decodes JSON) / with it | {:.2} | - |",
        median(without)
    );
    println!("\n(tiered: {l1_hits} of {hits} hits answered in process)");
}

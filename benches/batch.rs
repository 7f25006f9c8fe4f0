//! A batch of 100 hits against the hand-written baseline, on one private
//! `redis-server`, in the same run:
//!
//! | measure | aside | baseline |
//! |---|---|---|
//! | batch of 100 hits | `get_or_load_batch` of 100 untagged ids | one `MGET` of 100 keys and decoding each value |
//! | tagged batch | the same, each id with 2 tags (one its own) | the same baseline |
//! | 100 single hits | 100 `get_or_load` at once (`join_all`) | the same baseline |
//!
//! It also counts the commands a batch of hits sends (`INFO commandstats`).
//! Each ratio is the median of per-round ratios over `ROUNDS` rounds, the
//! sides alternating within a round, so that the machine's noise falls on
//! all of them; criterion also times the batch and the baseline. The value
//! is a product of about 1 KB as JSON.
//!
//! Run with `cargo bench -p aside-benches --bench batch`.

mod latency;
mod product;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use aside::{Cache, Policy};
use criterion::Criterion;
use latency::{median, runtime, timed, under_cargo_test};
use product::{product, Product};
use redis::aio::MultiplexedConnection;
use support::RedisServer;

const IDS: u64 = 100;
const ROUNDS: usize = 11;
const PER_ROUND: usize = 200;
const HOUR: Duration = Duration::from_secs(3600);

fn untagged(id: &u64) -> (String, Policy) {
    (format!("product:{id}"), Policy::new().ttl(HOUR))
}

fn tagged(id: &u64) -> (String, Policy) {
    let policy = Policy::new()
        .ttl(HOUR)
        .tag(format!("product:{id}"))
        .tag("catalog");
    (format!("tagged:{id}"), policy)
}

async fn batch(cache: &Cache, entry: fn(&u64) -> (String, Policy)) -> HashMap<u64, Product> {
    let load = |ids: Vec<u64>| async move {
        Ok::<_, io::Error>(ids.into_iter().map(|id| (id, product(id))).collect())
    };
    cache.get_or_load_batch(0..IDS, entry, load).await.unwrap()
}

async fn singles(cache: &Cache) -> HashMap<u64, Product> {
    let each = (0..IDS).map(|id| async move {
        let (key, policy) = untagged(&id);
        let got: io::Result<Option<Product>> = cache
            .get_or_load(&key, &policy, || async move { Ok(Some(product(id))) })
            .await;
        (id, got.unwrap())
    });
    let found = futures_util::future::join_all(each).await;
    found
        .into_iter()
        .filter_map(|(id, product)| Some((id, product?)))
        .collect()
}

/// What a hand-written batch lookup does: one `MGET`, decode each.
async fn baseline(conn: &mut MultiplexedConnection, keys: &[String]) -> HashMap<u64, Product> {
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(keys).query_async(conn).await.unwrap();
    values
        .into_iter()
        .zip(0..)
        .filter_map(|(value, id)| Some((id, serde_json::from_slice(&value?).ok()?)))
        .collect()
}

fn main() {
    let rt = runtime();
    let server = RedisServer::start();
    let cache = rt.block_on(server.cache());
    let raw = rt.block_on(server.raw());
    let keys: Vec<String> = (0..IDS).map(|id| format!("base:product:{id}")).collect();
    rt.block_on(async {
        assert_eq!(batch(&cache, untagged).await.len(), 100);
        assert_eq!(batch(&cache, tagged).await.len(), 100);
        let mut raw = raw.clone();
        for (id, key) in (0..IDS).zip(&keys) {
            let json = serde_json::to_vec(&product(id)).unwrap();
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(json)
                .arg("PX")
                .arg(3_600_000)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
        assert_eq!(baseline(&mut raw, &keys).await.len(), 100);
    });

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("batch");
    group.bench_function("aside batch of 100 hits", |b| {
        b.to_async(&rt).iter(|| batch(&cache, untagged))
    });
    group.bench_function("MGET of 100 and decode", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = raw.clone();
            let keys = &keys;
            async move { baseline(&mut raw, keys).await }
        })
    });
    group.finish();
    c.final_summary();
    if under_cargo_test() {
        return;
    }

    rt.block_on(async {
        let server = &server;
        let calls = |name: &'static str| async move {
            let info = server.command_calls().await;
            info.iter().find(|(n, _)| n == name).map_or(0, |(_, n)| *n)
        };
        let (mget, get) = (calls("mget").await, calls("get").await);
        batch(&cache, untagged).await;
        println!(
            "a batch of 100 hits sent {} MGET and {} GET",
            calls("mget").await - mget,
            calls("get").await - get
        );

        let (mut plain, mut with_tags, mut one_by_one) = (Vec::new(), Vec::new(), Vec::new());
        let mut per_batch = Duration::ZERO;
        for _ in 0..ROUNDS {
            let base = timed(PER_ROUND, || {
                let mut raw = raw.clone();
                let keys = &keys;
                async move { baseline(&mut raw, keys).await }
            })
            .await
            .as_secs_f64();
            let aside = timed(PER_ROUND, || batch(&cache, untagged)).await;
            let tags = timed(PER_ROUND, || batch(&cache, tagged)).await.as_secs_f64();
            let single = timed(PER_ROUND, || singles(&cache)).await.as_secs_f64();
            per_batch = aside / PER_ROUND as u32;
            plain.push(aside.as_secs_f64() / base);
            with_tags.push(tags / base);
            one_by_one.push(single / base);
        }
        println!("medians of {ROUNDS} rounds of {PER_ROUND} batches, against one MGET of 100 and decoding:");
        println!("| measure | ratio | target |");
        println!("|---|---|---|");
        println!(
            "| batch of 100 hits / MGET + decode | {:.2} | ≤ 1.3 |",
            median(plain)
        );
        println!(
            "| tagged batch of 100 hits / MGET + decode | {:.2} | |",
            median(with_tags)
        );
        println!(
            "| 100 single hits at once / MGET + decode | {:.2} | |",
            median(one_by_one)
        );
        println!("(a batch of 100 hits took {per_batch:?} in the last round)");
        assert_eq!(cache.stats().errors, 0);
    });
}

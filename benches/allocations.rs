//! Heap allocations per call, counted by a global allocator that counts:
//! the same figure on every run. Each row is a call a user makes, against
//! the hand-written code it replaces, in one process:
//!
//! | row | aside | hand-written |
//! |---|---|---|
//! | in-memory hit | a `#[cached]` function on `Cache::memory()` | the `cached` crate's `#[cached]` |
//! | Redis hit | a `#[cached]` function on Redis without the in-process tier | `ConnectionManager` + `GET` + serde_json |
//! | Redis hit, 2 tags | the same with two tags | the same `GET` |
//! | Redis hit through the tier | a `#[cached]` function on Redis behind the tier | the in-memory `cached` crate |
//!
//! Run with `cargo bench -p aside-benches --bench allocations` (a private `redis-server` is
//! started, as in the tests).

mod counting;
mod product;
#[path = "../tests/support/mod.rs"]
mod support;
mod tier;

use std::hint::black_box;
use std::io;

use aside::Cache;
use counting::Counting;
use product::{product, Product};
use support::RedisServer;

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: u64 = 100;
const CALLS: u64 = 2_000;

#[aside::cached(cache = cache, key = "product:<id>", ttl = "1h")]
async fn aside_product(cache: &Cache, id: u64) -> io::Result<Product> {
    Ok(product(id))
}

#[aside::cached(cache = cache, key = "tagged:<id>", ttl = "1h", tags = ["product:<id>", "brand:<brand>"])]
async fn tagged_product(cache: &Cache, id: u64, brand: u32) -> io::Result<Product> {
    Ok(product(id))
}

#[cached::proc_macro::cached]
async fn peer_product(id: u64) -> Product {
    product(id)
}

/// Allocations per call of `call`, over `CALLS` calls on the hot keys
/// (each called once before counting).
async fn per_call<F: std::future::Future>(call: impl Fn(u64) -> F) -> f64 {
    for id in 0..KEYS {
        black_box(call(id).await);
    }
    let before = counting::allocations();
    for i in 0..CALLS {
        black_box(call(i % KEYS).await);
    }
    (counting::allocations() - before) as f64 / CALLS as f64
}

fn main() {
    // `cargo test --benches` runs every bench once: nothing to count.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let memory = Cache::memory();
        let redis = Cache::builder()
            .redis(server.url())
            .no_l1()
            .build()
            .await
            .unwrap();
        let tiered = Cache::builder()
            .redis(server.url())
            .l1(aside::L1::default())
            .build()
            .await
            .unwrap();
        let manager = redis::Client::open(server.url())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap();
        for id in 0..KEYS {
            let json = serde_json::to_vec(&product(id)).unwrap();
            let _: () = redis::cmd("SET")
                .arg(format!("hand:{id}"))
                .arg(json)
                .query_async(&mut manager.clone())
                .await
                .unwrap();
        }
        let hand = |id: u64| {
            let mut conn = manager.clone();
            async move {
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(format!("hand:{id}"))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                serde_json::from_slice::<Product>(&bytes).unwrap()
            }
        };
        for id in 0..KEYS {
            tier::until_in_process(&tiered, || aside_product(&tiered, id)).await;
        }

        let (peer, hand) = (per_call(peer_product).await, per_call(hand).await);
        let rows = [
            (
                "in-memory hit",
                per_call(|id| aside_product(&memory, id)).await,
                peer,
                "the `cached` crate's #[cached]",
            ),
            (
                "Redis hit",
                per_call(|id| aside_product(&redis, id)).await,
                hand,
                "ConnectionManager + GET + serde_json",
            ),
            (
                "Redis hit, 2 tags",
                per_call(|id| tagged_product(&redis, id, 7)).await,
                hand,
                "the same GET",
            ),
            (
                "Redis hit through the tier",
                per_call(|id| aside_product(&tiered, id)).await,
                peer,
                "the `cached` crate's #[cached]",
            ),
        ];
        println!("\n== heap allocations per call, {CALLS} calls on {KEYS} hot keys ==");
        println!("| call | aside | hand-written | difference | hand-written is |\n|---|---:|---:|---:|---|");
        for (name, ours, theirs, what) in rows {
            println!(
                "| {name} | {ours:.1} | {theirs:.1} | {:+.1} | {what} |",
                ours - theirs
            );
        }
        println!(
            "\n(tiered: {} of {} hits answered in process)",
            tiered.stats().l1_hits,
            tiered.stats().hits
        );
    });
}

//! One kind of hit, `n` times, for `scripts/instructions-per-hit`: it runs
//! this under callgrind, which counts instructions whatever else the machine
//! is doing, and divides by `n`. Not a timing: the count is the same from run
//! to run, so a change of a few percent shows.
//!
//! `target/release/deps/per_hit-* <kind> <n>`, where kind is one of `aside`
//! (a `#[cached]` function on `Cache::memory()`), `aside_tagged` (the same
//! with two tags), `peer` (the `cached` crate's `#[cached]`), `peer_bounded`
//! (the same with `max_size = 10_000, ttl_secs = 3600`: bounded and
//! expiring, as aside's tier is), `moka` (get + clone), `quick_cache` (get +
//! clone),
//! `redis` (the `#[cached]` function on a private `redis-server`, no
//! in-process tier: the client's side of a sequential Redis hit),
//! `redis_get` (the hand-written `GET` + serde_json on the same),
//! `redis_tagged` (a `#[cached]` function with two tags on the same),
//! `redis_miss` (the `#[cached]` function's cold miss, `lock` by default),
//! `redis_miss_hand` (the hand-written miss: `GET`, then `SET PX`), or
//! `redis_wide` and `redis_get_wide` (`redis` and `redis_get` from 64 tasks
//! at once: the client's side of the 64-way hit, where aside's reads go
//! out together as `MGET`s).

mod product;
#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::io;

use product::{product, Product};

const KEYS: u64 = 100;
/// Tasks at once in the `_wide` kinds.
const WIDE: u64 = 64;
/// Where the ids of cold misses start: never read before.
const COLD: u64 = 1_000_000;

#[aside::cached(cache = cache, key = "product:<id>", ttl = "1h")]
async fn aside_product(cache: &aside::Cache, id: u64) -> io::Result<Product> {
    Ok(product(id))
}

#[aside::cached(cache = cache, key = "tagged:<id>", ttl = "1h", tags = ["product:<id>", "brand:<brand>"])]
async fn tagged_product(cache: &aside::Cache, id: u64, brand: u32) -> io::Result<Product> {
    Ok(product(id))
}

#[cached::proc_macro::cached]
async fn peer_product(id: u64) -> Product {
    product(id)
}

#[cached::proc_macro::cached(max_size = 10_000, ttl_secs = 3600)]
async fn bounded_peer_product(id: u64) -> Product {
    product(id)
}

/// The hand-written hit: `GET`, then serde_json.
async fn hand_get(conn: &mut redis::aio::ConnectionManager, key: &str) -> Product {
    let bytes: Vec<u8> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs every bench once: nothing to count.
    let [_, kind, n] = args.as_slice() else {
        return;
    };
    let n: u64 = n.parse().expect("n, a number of hits");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys: Vec<String> = (0..KEYS).map(|k| format!("product:{k}")).collect();
    match kind.as_str() {
        "aside" => rt.block_on(async {
            let cache = aside::Cache::memory();
            for id in 0..KEYS {
                aside_product(&cache, id).await.unwrap();
            }
            for i in 0..n {
                black_box(aside_product(&cache, i % KEYS).await.unwrap());
            }
        }),
        "aside_tagged" => rt.block_on(async {
            let cache = aside::Cache::memory();
            for id in 0..KEYS {
                tagged_product(&cache, id, 7).await.unwrap();
            }
            for i in 0..n {
                black_box(tagged_product(&cache, i % KEYS, 7).await.unwrap());
            }
        }),
        "redis" | "redis_get" | "redis_tagged" | "redis_miss" | "redis_miss_hand" | "redis_wide"
        | "redis_get_wide" => rt.block_on(async {
            let server = support::RedisServer::start();
            let cache = server.cache().await;
            let mut conn = redis::Client::open(server.url())
                .unwrap()
                .get_connection_manager()
                .await
                .unwrap();
            for id in 0..KEYS {
                aside_product(&cache, id).await.unwrap();
                tagged_product(&cache, id, 7).await.unwrap();
                let json = serde_json::to_vec(&product(id)).unwrap();
                let _: () = redis::cmd("SET")
                    .arg(&keys[id as usize])
                    .arg(json)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            if kind.ends_with("_wide") {
                // `WIDE` tasks at once, as many hits in all: the client's
                // side of the 64-way hit (aside's reads go out as MGETs).
                let tasks: Vec<_> = (0..WIDE)
                    .map(|t| {
                        let (cache, mut conn, keys, aside) =
                            (cache.clone(), conn.clone(), keys.clone(), kind == "redis_wide");
                        tokio::spawn(async move {
                            for i in (t..n).step_by(WIDE as usize) {
                                if aside {
                                    black_box(aside_product(&cache, i % KEYS).await.unwrap());
                                } else {
                                    black_box(hand_get(&mut conn, &keys[(i % KEYS) as usize]).await);
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                return;
            }
            for i in 0..n {
                if kind == "redis" {
                    black_box(aside_product(&cache, i % KEYS).await.unwrap());
                } else if kind == "redis_tagged" {
                    black_box(tagged_product(&cache, i % KEYS, 7).await.unwrap());
                } else if kind == "redis_miss" {
                    black_box(aside_product(&cache, COLD + i).await.unwrap());
                } else if kind == "redis_miss_hand" {
                    let key = format!("product:{}", COLD + i);
                    let cached: Option<Vec<u8>> =
                        redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
                    assert!(cached.is_none());
                    let json = serde_json::to_vec(&product(COLD + i)).unwrap();
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg(json)
                        .arg("PX")
                        .arg(3_600_000)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                } else {
                    black_box(hand_get(&mut conn, &keys[(i % KEYS) as usize]).await);
                }
            }
        }),
        "peer" => rt.block_on(async {
            for id in 0..KEYS {
                peer_product(id).await;
            }
            for i in 0..n {
                black_box(peer_product(i % KEYS).await);
            }
        }),
        "peer_bounded" => rt.block_on(async {
            for id in 0..KEYS {
                bounded_peer_product(id).await;
            }
            for i in 0..n {
                black_box(bounded_peer_product(i % KEYS).await);
            }
        }),
        "moka" => {
            let map = moka::sync::Cache::new(KEYS * 2);
            for (id, key) in keys.iter().enumerate() {
                map.insert(key.clone(), product(id as u64));
            }
            for i in 0..n {
                let key = &keys[(i % KEYS) as usize];
                black_box(map.get(key.as_str()).unwrap());
            }
        }
        "quick_cache" => {
            let map = quick_cache::sync::Cache::new(KEYS as usize * 2);
            for (id, key) in keys.iter().enumerate() {
                map.insert(key.clone(), product(id as u64));
            }
            for i in 0..n {
                let key = &keys[(i % KEYS) as usize];
                black_box(map.get(key.as_str()).unwrap());
            }
        }
        other => panic!("no kind {other}: see the doc comment at the top"),
    }
}

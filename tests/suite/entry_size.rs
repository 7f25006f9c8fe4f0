//! `CacheBuilder::max_entry_size`: a value larger than the limit is returned
//! (to its caller and to the callers coalesced onto it) but not cached; `set`
//! refuses it. In memory, on Redis, and on Redis behind the in-process tier.

use crate::support;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use aside::{Cache, CacheBuilder, Error, Policy, L1};
use support::redis_server::RedisServer;

const LIMIT: usize = 1024;

/// The three kinds of cache, each with a 1 KiB limit.
async fn caches(server: &RedisServer) -> Vec<(&'static str, Cache)> {
    let limited = |builder: CacheBuilder| builder.max_entry_size(LIMIT).build();
    vec![
        ("memory", limited(Cache::builder()).await.unwrap()),
        (
            "redis",
            limited(Cache::builder().redis(server.url())).await.unwrap(),
        ),
        (
            "tiered",
            limited(Cache::builder().redis(server.url()).l1(L1::entries(100)))
                .await
                .unwrap(),
        ),
    ]
}

fn big() -> String {
    "x".repeat(4 * LIMIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_limit_is_returned_but_not_cached() {
    let server = RedisServer::start();
    for (kind, cache) in caches(&server).await {
        let policy = Policy::new().ttl(Duration::from_secs(60));
        for _ in 0..2 {
            let got: io::Result<String> = cache
                .get_or_load(&format!("{kind}:big"), &policy, || async { Ok(big()) })
                .await;
            assert_eq!(got.unwrap().len(), 4 * LIMIT, "{kind}");
        }
        // A small value is cached as usual.
        for _ in 0..2 {
            let got: io::Result<String> = cache
                .get_or_load(&format!("{kind}:small"), &policy, || async { Ok("s".into()) })
                .await;
            assert_eq!(got.unwrap(), "s", "{kind}");
        }
        let stats = cache.stats();
        assert_eq!(
            (stats.loads, stats.hits, stats.oversized),
            (3, 1, 2),
            "{kind}: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_coalesced_onto_a_load_over_the_limit_get_its_value() {
    let server = RedisServer::start();
    for (kind, cache) in caches(&server).await {
        let release = Arc::new(tokio::sync::Notify::new());
        let call = || {
            let (cache, release) = (cache.clone(), release.clone());
            tokio::spawn(async move {
                let load = || async move {
                    release.notified().await;
                    Ok::<_, io::Error>(big())
                };
                cache
                    .get_or_load(&format!("{kind}:big"), &Policy::new(), load)
                    .await
                    .unwrap()
            })
        };
        let leader = call();
        support::until("the leader loads", || cache.stats().loads == 1).await;
        let waiters: Vec<_> = (0..5).map(|_| call()).collect();
        support::until("five callers wait", || cache.stats().waiting == 5).await;
        release.notify_one();
        assert_eq!(leader.await.unwrap().len(), 4 * LIMIT, "{kind}");
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().len(), 4 * LIMIT, "{kind}");
        }
        let stats = cache.stats();
        assert_eq!(
            (stats.loads, stats.coalesced, stats.oversized),
            (1, 5, 1),
            "{kind}: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_the_limit_are_refused_or_not_stored() {
    let server = RedisServer::start();
    for (kind, cache) in caches(&server).await {
        // Redis and Redis behind the tier share one server.
        let k = &format!("{kind}:k");
        cache.set(k, &"old", None).await.unwrap();
        match cache.set(k, &big(), None).await {
            Err(Error::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (4 * LIMIT + 2, LIMIT), "{kind}")
            }
            other => panic!("{kind}: {other:?}"),
        }
        // A refused `set` leaves the old value.
        assert_eq!(
            cache.get::<String>(k).await.unwrap().as_deref(),
            Some("old"),
            "{kind}"
        );
        // A write-through returns its value, drops the old one, and stores nothing.
        let put: io::Result<String> = cache.put(k, &Policy::new(), || async { Ok(big()) }).await;
        assert_eq!(put.unwrap().len(), 4 * LIMIT, "{kind}");
        assert_eq!(cache.get::<String>(k).await.unwrap(), None, "{kind}");
        assert_eq!(cache.stats().oversized, 2, "{kind}");
    }
}

/// `compress_above`: a large value is stored compressed (smaller in Redis),
/// read back by any reader, and a reader whose limit is below its size
/// treats it as a corrupt entry (a miss) rather than inflate it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_are_stored_compressed_and_read_by_any_reader() {
    let server = RedisServer::start();
    let writer = Cache::builder()
        .redis(server.url())
        .compress_above(1024)
        .build()
        .await
        .unwrap();
    let document: Vec<String> = (0..2_000).map(|i| format!("line {}", i % 10)).collect();
    let encoded = serde_json::to_vec(&document).unwrap().len();
    let policy = Policy::new().ttl(Duration::from_secs(600));
    let load = |value: Vec<String>| move || async move { Ok::<_, io::Error>(value) };
    let got = writer
        .get_or_load("doc", &policy, load(document.clone()))
        .await
        .unwrap();
    assert_eq!(got, document);
    let mut raw = server.raw().await;
    let stored: Vec<u8> = redis::cmd("GET")
        .arg("aside:{doc}")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        stored.len() * 4 < encoded,
        "{} bytes stored for {encoded}",
        stored.len()
    );
    // Another process without compression reads it: a hit.
    let reader = server.cache().await;
    let read = reader
        .get_or_load("doc", &policy, load(Vec::new()))
        .await
        .unwrap();
    assert_eq!(read, document);
    assert_eq!(reader.stats().hits, 1);
    // A reader whose limit is below the value's size does not inflate it:
    // a corrupt entry, a miss, and its own load.
    let small = Cache::builder()
        .redis(server.url())
        .max_entry_size(1024)
        .build()
        .await
        .unwrap();
    let read = small
        .get_or_load("doc", &policy, load(vec!["fresh".to_owned()]))
        .await
        .unwrap();
    assert_eq!(read, ["fresh"]);
    assert_eq!((small.stats().corrupt, small.stats().hits), (1, 0));
}

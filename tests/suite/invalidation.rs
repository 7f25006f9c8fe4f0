//! Tags, invalidation and write-through through the runtime API, on both
//! backends, including the races invalidation must not lose.

use crate::support;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aside::{Cache, Policy};
use support::{bounded, until, Kind, TestCache};
use tokio::sync::Notify;

/// A loader that returns `value` at once.
fn ready(value: &str) -> impl FnOnce() -> std::future::Ready<io::Result<String>> {
    let value = value.to_owned();
    move || std::future::ready(Ok(value))
}

async fn read(cache: &Cache, key: &str, policy: &Policy, value: &str) -> String {
    cache.get_or_load(key, policy, ready(value)).await.unwrap()
}

async fn a_tag_invalidates_every_entry_that_carries_it(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let lamps = Policy::new().tag("category:lamps");
    let both = Policy::new().tag("category:lamps").tag("brand:acme");
    let chairs = Policy::new().tag("category:chairs");
    assert_eq!(read(&cache, "p1", &lamps, "lamp 1").await, "lamp 1");
    assert_eq!(read(&cache, "p2", &both, "lamp 2").await, "lamp 2");
    assert_eq!(read(&cache, "p3", &chairs, "chair 3").await, "chair 3");
    assert_eq!(
        read(&cache, "p1", &lamps, "unused").await,
        "lamp 1",
        "a tagged entry hits"
    );

    cache.invalidate_tag("category:lamps").await.unwrap();
    assert_eq!(read(&cache, "p1", &lamps, "lamp 1'").await, "lamp 1'");
    assert_eq!(read(&cache, "p2", &both, "lamp 2'").await, "lamp 2'");
    assert_eq!(
        read(&cache, "p3", &chairs, "unused").await,
        "chair 3",
        "other tags are untouched"
    );

    // Any one of an entry's tags invalidates it; a batch invalidates several.
    cache
        .invalidate_tags(&["brand:acme", "category:chairs"])
        .await
        .unwrap();
    assert_eq!(read(&cache, "p1", &lamps, "unused").await, "lamp 1'");
    assert_eq!(read(&cache, "p2", &both, "lamp 2''").await, "lamp 2''");
    assert_eq!(read(&cache, "p3", &chairs, "chair 3'").await, "chair 3'");
    // Another handle (for Redis, another connection) sees the same tags.
    let other = cache.another().await;
    other.invalidate_tag("category:lamps").await.unwrap();
    if kind == Kind::Tiered {
        // Another process's change reaches this one's in-process tier as a
        // tracking push: within the push latency, not at once.
        let pushed = async {
            while read(&cache, "p1", &lamps, "lamp 1''").await != "lamp 1''" {
                tokio::task::yield_now().await;
            }
        };
        bounded(
            "another process's tag invalidation",
            Duration::from_secs(1),
            pushed,
        )
        .await;
    }
    assert_eq!(read(&cache, "p1", &lamps, "lamp 1''").await, "lamp 1''");
}

/// A caller of `key` whose loader, once started, waits for `release` and then
/// returns "old": the slow loader that read the data before it changed.
struct SlowLoad {
    task: tokio::task::JoinHandle<io::Result<String>>,
    release: Arc<Notify>,
}

async fn slow_load(cache: &Cache, key: &'static str, policy: Policy) -> SlowLoad {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let task = {
        let (cache, started, release) = (cache.clone(), started.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(key, &policy, || async move {
                    started.notify_one();
                    release.notified().await;
                    Ok("old".to_owned())
                })
                .await
        })
    };
    bounded(
        "the slow loader to start",
        Duration::from_secs(10),
        started.notified(),
    )
    .await;
    SlowLoad { task, release }
}

impl SlowLoad {
    async fn finish(self) {
        self.release.notify_one();
        let got = bounded("the slow loader", Duration::from_secs(10), self.task).await;
        assert_eq!(got.unwrap().unwrap(), "old", "its own caller gets what it loaded");
    }
}

async fn a_slow_load_cannot_outlive_a_key_invalidation(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let slow = slow_load(&cache, "product:1", Policy::new()).await;
    cache.invalidate("product:1").await.unwrap(); // while the loader is blocked
    slow.finish().await;
    assert_eq!(
        read(&cache, "product:1", &Policy::new(), "new").await,
        "new",
        "the next read misses"
    );
}

async fn a_slow_load_cannot_outlive_a_tag_invalidation(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = Policy::new().tag("category:7");
    let slow = slow_load(&cache, "product:1", policy.clone()).await;
    cache.invalidate_tag("category:7").await.unwrap();
    slow.finish().await;
    assert_eq!(
        read(&cache, "product:1", &policy, "new").await,
        "new",
        "the next read misses"
    );
}

async fn a_caller_arriving_after_an_invalidation_does_not_join_the_old_load(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = Policy::new().tag("t");
    let slow = slow_load(&cache, "k", policy.clone()).await;
    cache.invalidate_tag("t").await.unwrap();
    // This read begins after the invalidation: it may wait on the running
    // load, but must not be handed its old value.
    let late = {
        let (cache, policy) = (cache.cache.clone(), policy.clone());
        tokio::spawn(async move { read(&cache, "k", &policy, "new").await })
    };
    until("the late caller waits on the running load", || {
        cache.stats().waiting == 1
    })
    .await;
    slow.finish().await;
    assert_eq!(
        bounded("the late caller", Duration::from_secs(10), late)
            .await
            .unwrap(),
        "new"
    );
}

async fn write_through_stores_the_new_value(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = Policy::new().tag("user");
    assert_eq!(read(&cache, "user:1", &policy, "ada").await, "ada");
    let saved: io::Result<String> = cache.put("user:1", &policy, ready("grace")).await;
    assert_eq!(saved.unwrap(), "grace");
    assert_eq!(
        read(&cache, "user:1", &policy, "unused").await,
        "grace",
        "the next read is a hit"
    );

    let failed: io::Result<String> = cache
        .put("user:1", &policy, || async {
            Err(io::Error::other("constraint violated"))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(
        read(&cache, "user:1", &policy, "unused").await,
        "grace",
        "an Err stores nothing"
    );
    assert_eq!(cache.stats().loads, 1);
}

async fn write_through_beats_a_slower_load_of_the_old_value(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let slow = slow_load(&cache, "user:1", Policy::new()).await;
    let saved: io::Result<String> = cache.put("user:1", &Policy::new(), ready("new")).await;
    assert_eq!(saved.unwrap(), "new");
    slow.finish().await;
    assert_eq!(read(&cache, "user:1", &Policy::new(), "unused").await, "new");
}

on_both_backends!(
    a_tag_invalidates_every_entry_that_carries_it,
    a_slow_load_cannot_outlive_a_key_invalidation,
    a_slow_load_cannot_outlive_a_tag_invalidation,
    a_caller_arriving_after_an_invalidation_does_not_join_the_old_load,
    write_through_stores_the_new_value,
    write_through_beats_a_slower_load_of_the_old_value,
);

/// Two caches on one Redis (two "processes"); writers change a fake database
/// and invalidate; readers check that no read returns data older than the
/// last invalidation that completed before the read began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_reads_across_two_processes() {
    const KEYS: usize = 4;
    const READS_PER_READER: usize = 2_500;
    const READERS: usize = 4;
    let server = support::RedisServer::start();
    let caches = [server.cache().await, server.cache().await];
    // The fake database: a version per key. `invalidated[k]` is the highest
    // version whose invalidation has completed.
    let db: Arc<[AtomicU64; KEYS]> = Arc::new(Default::default());
    let invalidated: Arc<[AtomicU64; KEYS]> = Arc::new(Default::default());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (cache, db, invalidated, done) =
                (caches[w].clone(), db.clone(), invalidated.clone(), done.clone());
            tokio::spawn(async move {
                let mut writes = 0u64;
                while !done.load(SeqCst) {
                    let k = (writes as usize + w) % KEYS;
                    let version = db[k].fetch_add(1, SeqCst) + 1;
                    // Half by key, half by tag.
                    if writes.is_multiple_of(2) {
                        cache.invalidate(&format!("item:{k}")).await.unwrap();
                    } else {
                        cache.invalidate_tag(&format!("item-tag:{k}")).await.unwrap();
                    }
                    invalidated[k].fetch_max(version, SeqCst);
                    writes += 1;
                    tokio::task::yield_now().await;
                }
                writes
            })
        })
        .collect();

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (cache, db, invalidated) = (caches[r % 2].clone(), db.clone(), invalidated.clone());
            tokio::spawn(async move {
                let mut stale = Vec::new();
                for i in 0..READS_PER_READER {
                    let k = (i + r) % KEYS;
                    let floor = invalidated[k].load(SeqCst);
                    let policy = Policy::new().tag(format!("item-tag:{k}"));
                    let db = db.clone();
                    let seen: u64 = cache
                        .get_or_load(&format!("item:{k}"), &policy, || async move {
                            let version = db[k].load(SeqCst);
                            // A load takes a moment, so that invalidations land during loads.
                            tokio::task::yield_now().await;
                            Ok::<_, io::Error>(version)
                        })
                        .await
                        .unwrap();
                    if seen < floor {
                        stale.push((k, seen, floor));
                    }
                }
                stale
            })
        })
        .collect();

    let mut stale = Vec::new();
    for reader in readers {
        stale.extend(
            bounded("a reader", Duration::from_secs(120), reader)
                .await
                .unwrap(),
        );
    }
    done.store(true, SeqCst);
    let mut writes = 0;
    for writer in writers {
        writes += writer.await.unwrap();
    }
    let stats = [caches[0].stats(), caches[1].stats()];
    let reads = READERS * READS_PER_READER;
    assert!(
        writes > 100,
        "writers kept writing during the reads: {writes} writes"
    );
    assert!(
        stats.iter().map(|s| s.hits).sum::<u64>() > 0,
        "some reads hit: {stats:?}"
    );
    assert!(
        stale.is_empty(),
        "{} of {reads} reads (with {writes} invalidations) returned data older than a completed \
         invalidation, e.g. (key, seen, floor) {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
    assert_eq!(stats.iter().map(|s| s.errors).sum::<u64>(), 0, "{stats:?}");
}

//! Cache-aside through the runtime API (`Cache::get_or_load`, `get`, `set`,
//! `invalidate`), on both backends.

use crate::support;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aside::{Cache, Codec, Policy};
use support::{bounded, until, Kind, Loader, TestCache};

const HOUR: Duration = Duration::from_secs(3600);

async fn miss_then_hit(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Loader::new();
    let policy = Policy::new().ttl(HOUR);
    let first: String = cache
        .get_or_load("greeting", &policy, || db.ready("hi".to_owned()))
        .await
        .unwrap();
    let second: String = cache
        .get_or_load("greeting", &policy, || db.ready("other".to_owned()))
        .await
        .unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("hi", "hi"));
    assert_eq!(db.runs(), 1, "the loader runs once");
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.loads, stats.errors),
        (1, 1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(stats.hit_ratio(), 0.5);
}

async fn none_is_cached_under_negative_ttl(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Loader::new();
    let policy = Policy::new().ttl(HOUR);
    for _ in 0..3 {
        let found: Option<u32> = cache
            .get_or_load("user:1", &policy, || db.ready(None))
            .await
            .unwrap();
        assert_eq!(found, None);
    }
    assert_eq!(db.runs(), 1, "a None is cached");
    assert_eq!(cache.stats().negative_hits, 2);

    let off = Policy::new().ttl(HOUR).negative_ttl(Duration::ZERO);
    for _ in 0..3 {
        let _: Option<u32> = cache
            .get_or_load("user:2", &off, || db.ready(None))
            .await
            .unwrap();
    }
    assert_eq!(db.runs(), 4, "negative_ttl = 0 caches no None");
}

async fn negative_entries_expire_after_negative_ttl(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Loader::new();
    let policy = Policy::new().ttl(HOUR).negative_ttl(Duration::from_millis(50));
    let _: Option<u32> = cache
        .get_or_load("user:3", &policy, || db.ready(None))
        .await
        .unwrap();
    // Waiting out a TTL is what this test is about, not a synchronisation.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _: Option<u32> = cache
        .get_or_load("user:3", &policy, || db.ready(None))
        .await
        .unwrap();
    assert_eq!(
        db.runs(),
        2,
        "the negative entry expired after 50 ms although ttl is an hour"
    );
}

async fn values_expire_after_ttl(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Loader::new();
    let policy = Policy::new().ttl(Duration::from_millis(50));
    let _: u32 = cache.get_or_load("short", &policy, || db.ready(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _: u32 = cache.get_or_load("short", &policy, || db.ready(2)).await.unwrap();
    assert_eq!(db.runs(), 2);
}

/// A value written in MessagePack is read back, by its own function and by a
/// reader whose codec is JSON (entries record their codec); a `None` in
/// MessagePack is a negative entry.
async fn message_pack_entries_are_read_by_either_codec(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Loader::new();
    let packed = Policy::new().ttl(HOUR).codec(Codec::MessagePack);
    let value = vec![("lamp".to_owned(), 3u32)];
    for _ in 0..2 {
        let got: Vec<(String, u32)> = cache
            .get_or_load("k", &packed, || db.ready(value.clone()))
            .await
            .unwrap();
        assert_eq!(got, value);
    }
    let json = Policy::new().ttl(HOUR);
    let got: Vec<(String, u32)> = cache
        .get_or_load("k", &json, || db.ready(Vec::new()))
        .await
        .unwrap();
    assert_eq!(got, value, "a JSON reader decodes the MessagePack entry");
    assert_eq!(db.runs(), 1);

    for _ in 0..2 {
        let none: Option<u32> = cache
            .get_or_load("absent", &packed, || db.ready(None))
            .await
            .unwrap();
        assert_eq!(none, None);
    }
    assert_eq!(db.runs(), 2, "a None in MessagePack is cached");
    assert_eq!(cache.stats().negative_hits, 1);
}

async fn errors_are_returned_and_never_cached(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let runs = AtomicU64::new(0);
    for _ in 0..2 {
        let result: io::Result<u32> = cache
            .get_or_load("flaky", &Policy::new(), || {
                runs.fetch_add(1, SeqCst);
                async { Err(io::Error::other("database down")) }
            })
            .await;
        assert_eq!(result.unwrap_err().to_string(), "database down");
    }
    assert_eq!(runs.load(SeqCst), 2, "an Err is not cached");
    assert_eq!(cache.get::<u32>("flaky").await.unwrap(), None);
}

async fn concurrent_misses_run_one_load(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let runs = Arc::new(AtomicU64::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    const CALLERS: u64 = 100;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (cache, runs, release) = (cache.cache.clone(), runs.clone(), release.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("hot", &Policy::new(), || async move {
                        runs.fetch_add(1, SeqCst);
                        release.notified().await;
                        Ok::<_, io::Error>("value".to_owned())
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    // The load is held until every other caller is parked on it.
    until("99 callers wait on the load", || {
        cache.stats().waiting == CALLERS - 1
    })
    .await;
    release.notify_one();
    for task in tasks {
        assert_eq!(
            bounded("a caller", Duration::from_secs(10), task).await.unwrap(),
            "value"
        );
    }
    let stats = cache.stats();
    assert_eq!(
        runs.load(SeqCst),
        1,
        "one load for {CALLERS} concurrent callers: {stats:?}"
    );
    assert_eq!(
        (stats.loads, stats.coalesced, stats.waiting),
        (1, CALLERS - 1, 0),
        "{stats:?}"
    );
    // Each lookup is exactly one of hit, coalesced or miss: the one that
    // loaded is the only miss.
    assert_eq!((stats.misses, stats.hits), (1, 0), "{stats:?}");
    assert_eq!(stats.hits + stats.misses + stats.coalesced, CALLERS);
}

type Caller = tokio::task::JoinHandle<io::Result<u32>>;

/// Spawns a leader whose load, once `release` is notified, ends with `first()`,
/// then `waiters` callers of the same key, and returns once all of them are
/// parked on the leader's load. Every load after the first returns `Ok(7)`.
async fn leader_and_waiters(
    cache: &Cache,
    waiters: u64,
    first: fn() -> io::Result<u32>,
) -> (Caller, Vec<Caller>, Arc<tokio::sync::Notify>, Arc<AtomicU64>) {
    let (runs, release) = (Arc::new(AtomicU64::new(0)), Arc::new(tokio::sync::Notify::new()));
    let spawn = || {
        let (cache, runs, release) = (cache.clone(), runs.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("shared", &Policy::new(), || async move {
                    if runs.fetch_add(1, SeqCst) == 0 {
                        release.notified().await;
                        return first();
                    }
                    Ok(7)
                })
                .await
        })
    };
    let leader = spawn();
    until("the leader loads", || cache.stats().loads == 1).await;
    let parked: Vec<_> = (0..waiters).map(|_| spawn()).collect();
    until("the callers wait", || cache.stats().waiting == waiters).await;
    (leader, parked, release, runs)
}

async fn waiters_take_turns_behind_one_retry_when_the_leader_fails(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let (leader, waiters, release, _) =
        leader_and_waiters(&cache, 10, || Err(io::Error::other("boom"))).await;
    release.notify_one();
    assert_eq!(leader.await.unwrap().unwrap_err().to_string(), "boom");
    for waiter in waiters {
        let got = bounded("a waiter", Duration::from_secs(10), waiter)
            .await
            .unwrap();
        assert_eq!(
            got.unwrap(),
            7,
            "a waiter of a failed load gets the retry's value"
        );
    }
    // One waiter retried; the others waited for its value rather than all
    // loading at once. (One that looked again only after the retry stored
    // its value found it: a hit, or a miss that found it under the lock.)
    // Each lookup counted once.
    let stats = cache.stats();
    assert_eq!(
        (stats.loads, stats.misses + stats.coalesced + stats.hits),
        (2, 11),
        "{stats:?}"
    );
}

async fn waiters_are_not_left_hanging_by_a_panicking_loader(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let (leader, waiters, release, _) = leader_and_waiters(&cache, 10, || panic!("loader panicked")).await;
    release.notify_one();
    let panicked = leader.await.unwrap_err().is_panic();
    assert!(panicked, "the panic reaches the caller that ran the loader");
    for waiter in waiters {
        let got = bounded("a waiter", Duration::from_secs(10), waiter)
            .await
            .unwrap();
        assert_eq!(got.unwrap(), 7);
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.loads, stats.misses + stats.coalesced + stats.hits),
        (2, 11),
        "one waiter retried, the others got its value: {stats:?}"
    );
}

async fn a_waiter_takes_over_from_a_cancelled_leader(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let (leader, mut waiters, _release, runs) =
        leader_and_waiters(&cache, 1, || unreachable!("never released")).await;
    leader.abort();
    let waiter = waiters.pop().unwrap();
    let got = bounded("the waiter", Duration::from_secs(10), waiter)
        .await
        .unwrap();
    assert_eq!(got.unwrap(), 7, "the waiter loads once the leader is gone");
    assert_eq!(runs.load(SeqCst), 2);
}

async fn an_entry_of_another_type_is_a_counted_miss_and_is_repaired(kind: Kind) {
    let cache = TestCache::new(kind).await;
    cache.set("answer", &"not a number", None).await.unwrap();
    let db = Loader::new();
    let got: u32 = cache
        .get_or_load("answer", &Policy::new(), || db.ready(42))
        .await
        .unwrap();
    assert_eq!(got, 42);
    assert_eq!(cache.stats().corrupt, 1);
    let again: u32 = cache
        .get_or_load("answer", &Policy::new(), || db.ready(0))
        .await
        .unwrap();
    assert_eq!((again, db.runs()), (42, 1), "the load overwrote the bad entry");
}

async fn set_get_invalidate(kind: Kind) {
    let cache = TestCache::new(kind).await;
    assert_eq!(cache.get::<Vec<u8>>("k").await.unwrap(), None);
    cache.set("k", &vec![1u8, 2], Some(HOUR)).await.unwrap();
    assert_eq!(cache.get::<Vec<u8>>("k").await.unwrap(), Some(vec![1, 2]));
    // A second handle (for Redis: another connection, as another process would have) sees it.
    let other = cache.another().await;
    assert_eq!(other.get::<Vec<u8>>("k").await.unwrap(), Some(vec![1, 2]));
    other.invalidate("k").await.unwrap();
    assert_eq!(cache.get::<Vec<u8>>("k").await.unwrap(), None);

    let db = Loader::new();
    let _: u32 = cache
        .get_or_load("p", &Policy::new(), || db.ready(1))
        .await
        .unwrap();
    cache.invalidate("p").await.unwrap();
    let _: u32 = cache
        .get_or_load("p", &Policy::new(), || db.ready(2))
        .await
        .unwrap();
    assert_eq!(db.runs(), 2, "an invalidated key loads again");
}

on_both_backends!(
    message_pack_entries_are_read_by_either_codec,
    miss_then_hit,
    none_is_cached_under_negative_ttl,
    negative_entries_expire_after_negative_ttl,
    values_expire_after_ttl,
    errors_are_returned_and_never_cached,
    concurrent_misses_run_one_load,
    waiters_take_turns_behind_one_retry_when_the_leader_fails,
    waiters_are_not_left_hanging_by_a_panicking_loader,
    a_waiter_takes_over_from_a_cancelled_leader,
    an_entry_of_another_type_is_a_counted_miss_and_is_repaired,
    set_get_invalidate,
);

/// A disabled cache, for the tests of code that uses aside: every call runs
/// its function, and nothing is kept.
#[tokio::test]
async fn a_disabled_cache_runs_every_call_and_keeps_nothing() {
    let cache = Cache::disabled();
    let db = Loader::new();
    for _ in 0..3 {
        let got: u32 = cache
            .get_or_load("k", &Policy::new(), || db.ready(7))
            .await
            .unwrap();
        assert_eq!(got, 7);
    }
    assert_eq!(db.runs(), 3);
    let put: io::Result<u32> = cache.put("k", &Policy::new(), || db.ready(8)).await;
    assert_eq!((put.unwrap(), db.runs()), (8, 4));
    cache.set("k", &9u32, None).await.unwrap();
    assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
    cache.invalidate("k").await.unwrap();
    cache.invalidate_tag("t").await.unwrap();
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.loads), (0, 3, 3), "{stats:?}");
    // By configuration: `enabled(false)` connects to nothing, even with a URL.
    let off = Cache::builder()
        .redis("redis://127.0.0.1:1")
        .enabled(false)
        .build()
        .await
        .unwrap();
    let got: u32 = off
        .get_or_load("k", &Policy::new(), || db.ready(1))
        .await
        .unwrap();
    assert_eq!(got, 1);
}

//! Fail-safe: when a load fails, the last good value stands in; it is then
//! fresh for the throttle in every process, so a failing database sees one
//! attempt per key per throttle; an invalidation still drops it. And the
//! waiters of a failed load take turns rather than all load at once.

use crate::support;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::{Cache, FailSafe, Policy, Stampede};
use support::{bounded, until, Kind, Loader, RedisServer, TestCache};

const HOUR: Duration = Duration::from_secs(3600);
const TTL: Duration = Duration::from_millis(50);
const THROTTLE: Duration = Duration::from_secs(1);

fn fail_safe() -> Policy {
    Policy::new()
        .ttl(TTL)
        .fail_safe(FailSafe::keep(HOUR).throttle(THROTTLE))
        .tag("shelf:1")
}

/// Past the fresh time (and any TTL jitter): on the paused clock of the
/// memory tests, at once.
async fn expire() {
    tokio::time::sleep(TTL * 3).await;
}

async fn the_last_good_value_stands_in_for_a_failed_load_and_is_throttled(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = fail_safe();
    let db = Loader::new();
    let db = &db;
    let get = |value| cache.get_or_load("price", &policy, move || db.answer::<u32>(value));
    assert_eq!(get(Some(10)).await.unwrap(), 10);
    expire().await;
    let before = cache.stats();
    assert_eq!(get(None).await.unwrap(), 10, "the last good value stands in");
    let stats = cache.stats().since(&before);
    assert_eq!(
        (stats.stale_hits, stats.hits, stats.misses, stats.loads),
        (1, 1, 0, 1),
        "counted once, as a stale hit: {stats:?}"
    );
    assert_eq!(db.runs(), 2);
    // Within the throttle, the value is served as fresh: no attempt.
    for _ in 0..5 {
        assert_eq!(get(None).await.unwrap(), 10);
    }
    assert_eq!(db.runs(), 2, "no attempt within the throttle");
    // Past it, one attempt; it fails too, and the value stands in again.
    tokio::time::sleep(THROTTLE + TTL).await;
    assert_eq!(get(None).await.unwrap(), 10);
    assert_eq!(db.runs(), 3);
    // The database is back: the next attempt's value is stored.
    tokio::time::sleep(THROTTLE + TTL).await;
    assert_eq!(get(Some(11)).await.unwrap(), 11);
    assert_eq!(get(None).await.unwrap(), 11);
    assert_eq!(db.runs(), 4);
}

async fn an_invalidated_value_never_stands_in(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = fail_safe();
    let db = Loader::new();
    let get = |key: &'static str, value| {
        let (cache, policy, db) = (&cache, &policy, &db);
        async move { cache.get_or_load(key, policy, || db.answer::<u32>(value)).await }
    };
    assert_eq!(get("by-key", Some(1)).await.unwrap(), 1);
    assert_eq!(get("by-tag", Some(2)).await.unwrap(), 2);
    expire().await;
    cache.invalidate("by-key").await.unwrap();
    cache.invalidate_tag("shelf:1").await.unwrap();
    for key in ["by-key", "by-tag"] {
        let error = get(key, None).await.unwrap_err();
        assert_eq!(error.to_string(), "database down", "{key}: nothing stands in");
    }
}

/// A value written while the failing load ran is not replaced by the value
/// that stood in: the throttle renews only the entry that was read.
async fn a_write_during_the_failing_load_wins(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = fail_safe();
    let db = Loader::new();
    let _ = cache
        .get_or_load("k", &policy, || db.answer::<u32>(Some(1)))
        .await;
    expire().await;
    let writer = cache.another().await;
    let got = cache
        .get_or_load("k", &policy, || async {
            writer
                .put("k", &policy, || db.answer::<u32>(Some(2)))
                .await
                .unwrap();
            Err::<u32, _>(io::Error::other("database down"))
        })
        .await;
    assert_eq!(got.unwrap(), 1, "the lookup began before the write");
    let reader = cache.another().await;
    for cache in [&cache.cache, &reader] {
        let read = bounded("the written value", Duration::from_secs(10), async {
            loop {
                let got = cache.get_or_load("k", &policy, || db.answer::<u32>(None)).await;
                if let Ok(2) = got {
                    return;
                }
                assert_eq!(got.unwrap(), 1, "only a stale read of a tier not yet told");
                tokio::task::yield_now().await;
            }
        });
        read.await;
    }
}

async fn without_fail_safe_the_error_is_returned(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = Policy::new().ttl(TTL);
    let db = Loader::new();
    let _ = cache
        .get_or_load("k", &policy, || db.answer::<u32>(Some(1)))
        .await;
    expire().await;
    let got = cache.get_or_load("k", &policy, || db.answer::<u32>(None)).await;
    assert!(got.is_err());
}

/// The waiters of a load that fails fall back on the value at once: one
/// attempt for all of them.
async fn waiters_of_a_failed_load_fall_back_at_once(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = fail_safe();
    let runs = Arc::new(AtomicU64::new(0));
    let first = || {
        runs.fetch_add(1, SeqCst);
        std::future::ready(Ok::<u32, io::Error>(7))
    };
    let _ = cache.get_or_load("k", &policy, first).await;
    expire().await;
    let release = Arc::new(tokio::sync::Notify::new());
    let call = || {
        let (cache, policy, runs, release) =
            (cache.cache.clone(), policy.clone(), runs.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("k", &policy, || async move {
                    runs.fetch_add(1, SeqCst);
                    release.notified().await;
                    Err::<u32, _>(io::Error::other("database down"))
                })
                .await
        })
    };
    let leader = call();
    until("the leader loads", || runs.load(SeqCst) == 2).await;
    let waiters: Vec<_> = (0..20).map(|_| call()).collect();
    until("the callers wait", || cache.stats().waiting == 20).await;
    release.notify_one();
    assert_eq!(leader.await.unwrap().unwrap(), 7);
    for waiter in waiters {
        let got = bounded("a waiter", Duration::from_secs(10), waiter).await;
        assert_eq!(got.unwrap().unwrap(), 7);
    }
    assert_eq!(runs.load(SeqCst), 2, "one attempt for all 21 callers");
    assert_eq!(cache.stats().stale_hits, 21);
}

/// Without a value to fall back on, the waiters of a failed load take turns
/// behind one retry: never two loads of the key at once.
async fn waiters_of_a_failing_load_take_turns(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let (running, most) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let runs = Arc::new(AtomicU64::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let call = || {
        let (cache, running, most, runs, release) = (
            cache.cache.clone(),
            running.clone(),
            most.clone(),
            runs.clone(),
            release.clone(),
        );
        // Waiting as long as it takes (a `lock_wait` too large to add to now).
        let policy = Policy::new().stampede(Stampede::Lock {
            lock_ttl: aside::Stampede::DEFAULT_LOCK_TTL,
            lock_wait: Duration::MAX,
        });
        tokio::spawn(async move {
            cache
                .get_or_load("k", &policy, || async move {
                    let now = running.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    if runs.fetch_add(1, SeqCst) == 0 {
                        release.notified().await;
                    }
                    tokio::task::yield_now().await;
                    running.fetch_sub(1, SeqCst);
                    Err::<u32, _>(io::Error::other("database down"))
                })
                .await
        })
    };
    let leader = call();
    until("the leader loads", || runs.load(SeqCst) == 1).await;
    let waiters: Vec<_> = (0..100).map(|_| call()).collect();
    until("the callers wait", || cache.stats().waiting == 100).await;
    release.notify_one();
    assert!(leader.await.unwrap().is_err());
    for waiter in waiters {
        let got = bounded("a waiter", Duration::from_secs(10), waiter).await;
        assert!(got.unwrap().is_err(), "each caller gets its own error");
    }
    assert_eq!(
        most.load(SeqCst),
        1,
        "one load at a time ({} runs)",
        runs.load(SeqCst)
    );
}

on_both_backends!(
    the_last_good_value_stands_in_for_a_failed_load_and_is_throttled,
    an_invalidated_value_never_stands_in,
    a_write_during_the_failing_load_wins,
    without_fail_safe_the_error_is_returned,
    waiters_of_a_failed_load_fall_back_at_once,
    waiters_of_a_failing_load_take_turns,
);

/// The outage: 8 keys cached, then the database fails for 2 s under
/// 32 callers spread over 4 instances (processes). No caller sees an error,
/// and the database sees at most one attempt per key per throttle period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_load_costs_no_errors_and_one_attempt_per_key_per_throttle() {
    const KEYS: u64 = 8;
    const THROTTLE: Duration = Duration::from_millis(500);
    const OUTAGE: Duration = Duration::from_secs(2);
    let server = RedisServer::start();
    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(server.cache().await);
    }
    let policy = Policy::new()
        .ttl(Duration::from_millis(100))
        .fail_safe(FailSafe::keep(HOUR).throttle(THROTTLE));
    let down = Arc::new(AtomicBool::new(false));
    // Attempts during the outage, by key.
    let attempts: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let get = {
        let (policy, down, attempts) = (policy.clone(), down.clone(), attempts.clone());
        move |cache: &Cache, key: u64| {
            let (cache, policy, down, attempts) =
                (cache.clone(), policy.clone(), down.clone(), attempts.clone());
            async move {
                cache
                    .get_or_load(&format!("product:{key}"), &policy, || async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if down.load(SeqCst) {
                            *attempts.lock().unwrap().entry(key).or_default() += 1;
                            return Err(io::Error::other("database down"));
                        }
                        Ok(key * 100)
                    })
                    .await
            }
        }
    };
    for key in 0..KEYS {
        assert_eq!(get(&instances[0], key).await.unwrap(), key * 100);
    }
    down.store(true, SeqCst);
    let started = tokio::time::Instant::now();
    let (errors, wrong, calls) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let callers: Vec<_> = (0..32u64)
        .map(|caller| {
            let cache = instances[(caller % 4) as usize].clone();
            let (get, errors, wrong, calls) = (get.clone(), errors.clone(), wrong.clone(), calls.clone());
            tokio::spawn(async move {
                let mut key = caller % KEYS;
                while started.elapsed() < OUTAGE {
                    match get(&cache, key).await {
                        Ok(value) if value == key * 100 => {}
                        Ok(_) => _ = wrong.fetch_add(1, SeqCst),
                        Err(_) => _ = errors.fetch_add(1, SeqCst),
                    }
                    calls.fetch_add(1, SeqCst);
                    key = (key + 1) % KEYS;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let elapsed = started.elapsed();
    down.store(false, SeqCst);
    let attempts = attempts.lock().unwrap().clone();
    // Each key is attempted when it expires and then once per throttle at
    // most: the count is bounded by the time the outage lasted, however
    // slow the machine.
    let periods = (elapsed.as_millis() / THROTTLE.as_millis()) as u64 + 1;
    let most = attempts.values().copied().max().unwrap_or(0);
    let figures = format!(
        "{} calls in {elapsed:?}, {} errors, {} wrong values, attempts per key {:?} (at most {periods} allowed)",
        calls.load(SeqCst),
        errors.load(SeqCst),
        wrong.load(SeqCst),
        {
            let mut sorted: Vec<_> = attempts.iter().collect();
            sorted.sort();
            sorted
        }
    );
    assert_eq!(errors.load(SeqCst), 0, "{figures}");
    assert_eq!(wrong.load(SeqCst), 0, "{figures}");
    assert!(most <= periods, "{figures}");
    assert!(
        !attempts.is_empty(),
        "the keys expired during the outage: {figures}"
    );
    eprintln!("outage with fail-safe: {figures}");
    // Back up: the next attempt of each key stores its value.
    tokio::time::sleep(THROTTLE).await;
    assert_eq!(get(&instances[1], 0).await.unwrap(), 0);
}

//! Stampede protection, on both backends. For Redis, four independent
//! `Cache`s (each with its own connection) stand in for four processes; for
//! memory they are clones of one cache. Loaders take ~50 ms and count calls.

mod support;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aside::{Cache, Policy, Stampede};
use support::{bounded, until, Kind, TestCache};
use tokio::sync::{Barrier, Notify};

const LOAD: Duration = Duration::from_millis(50);
const CALLERS: usize = 1000;

/// Four caches on one backend.
async fn processes(cache: &TestCache) -> Vec<Cache> {
    let mut all = vec![cache.cache.clone()];
    for _ in 1..4 {
        all.push(cache.another().await);
    }
    all
}

/// A loader that takes `LOAD`, counts its runs, and returns `value`.
fn slow(
    runs: &Arc<AtomicU64>,
    value: &str,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<String>> + Send>> {
    let (runs, value) = (runs.clone(), value.to_owned());
    move || {
        Box::pin(async move {
            runs.fetch_add(1, SeqCst);
            tokio::time::sleep(LOAD).await;
            Ok(value)
        })
    }
}

async fn lock_loads_once_for_a_thousand_cold_callers(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let caches = processes(&cache).await;
    let runs = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (cache, runs) = (caches[i % 4].clone(), runs.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("cold", &Policy::new(), slow(&runs, "value"))
                    .await
            })
        })
        .collect();
    for caller in callers {
        let got = bounded("a caller", Duration::from_secs(30), caller)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, "value");
    }
    let waits: u64 = caches.iter().map(|c| c.stats().lock_waits).sum();
    assert_eq!(
        runs.load(SeqCst),
        1,
        "one load for {CALLERS} callers in 4 processes ({waits} lock waits)"
    );
}

async fn a_dead_lock_holder_delays_the_others_by_at_most_the_lock_ttl(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let caches = processes(&cache).await;
    let lock_ttl = Duration::from_millis(500);
    let policy = Policy::new().stampede(Stampede::Lock {
        lock_ttl,
        lock_wait: Duration::from_secs(30),
    });
    // The holder: its loader starts and never finishes; then its task is aborted.
    let started = Arc::new(Notify::new());
    let holder = {
        let (cache, policy, started) = (caches[0].clone(), policy.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("k", &policy, || async move {
                    started.notify_one();
                    std::future::pending::<io::Result<String>>().await
                })
                .await
        })
    };
    bounded(
        "the holder to start loading",
        Duration::from_secs(10),
        started.notified(),
    )
    .await;
    let runs = Arc::new(AtomicU64::new(0));
    let others: Vec<_> = (1..4)
        .map(|i| {
            let (cache, policy, runs) = (caches[i].clone(), policy.clone(), runs.clone());
            tokio::spawn(async move { cache.get_or_load("k", &policy, slow(&runs, "value")).await })
        })
        .collect();
    // In one process they wait on the holder's in-process load; across
    // processes, on its lock.
    let parked = || match kind {
        Kind::Memory => caches[0].stats().waiting == 3,
        Kind::Redis => caches[1..].iter().all(|c| c.stats().lock_waits > 0),
    };
    until("the others wait for the holder", parked).await;
    let died = Instant::now();
    holder.abort();
    for other in others {
        let got = bounded(
            "a caller after the holder died",
            lock_ttl + Duration::from_secs(5),
            other,
        )
        .await;
        assert_eq!(got.unwrap().unwrap(), "value");
    }
    let took = died.elapsed();
    assert_eq!(
        runs.load(SeqCst),
        1,
        "one of the others loaded, once (took {took:?} after the holder died)"
    );
}

async fn swr_serves_stale_at_once_while_one_caller_refreshes(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let caches = processes(&cache).await;
    let ttl = Duration::from_millis(200);
    let policy = Policy::new().ttl(ttl).stampede(Stampede::Swr {
        stale: Duration::from_secs(3600),
    });
    let first: String = caches[0]
        .get_or_load("k", &policy, || async { Ok::<_, io::Error>("old".into()) })
        .await
        .unwrap();
    assert_eq!(first, "old");
    tokio::time::sleep(ttl + Duration::from_millis(100)).await; // past the TTL: the subject of this test

    let (runs, release) = (Arc::new(AtomicU64::new(0)), Arc::new(Notify::new()));
    let done = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (cache, policy, runs, release, done) = (
                caches[i % 4].clone(),
                policy.clone(),
                runs.clone(),
                release.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                let got = cache
                    .get_or_load("k", &policy, || async move {
                        runs.fetch_add(1, SeqCst);
                        release.notified().await;
                        Ok::<_, io::Error>("new".to_owned())
                    })
                    .await
                    .unwrap();
                done.fetch_add(1, SeqCst);
                got
            })
        })
        .collect();
    // Every caller but the refreshing one returns while the refresh is held.
    until("999 callers return while the refresh is held", || {
        done.load(SeqCst) == CALLERS as u64 - 1
    })
    .await;
    assert_eq!(runs.load(SeqCst), 1, "exactly one refresh runs");
    release.notify_one();
    let mut stale = 0;
    for caller in callers {
        match bounded("a caller", Duration::from_secs(10), caller)
            .await
            .unwrap()
            .as_str()
        {
            "old" => stale += 1,
            other => assert_eq!(other, "new", "only the refresher gets the new value"),
        }
    }
    assert_eq!(stale, CALLERS - 1);
    for cache in &caches {
        let next: String = cache
            .get_or_load("k", &policy, || async { Ok::<_, io::Error>("unused".into()) })
            .await
            .unwrap();
        assert_eq!(next, "new", "the next read is fresh");
    }
}

async fn swr_keeps_the_stale_value_when_the_refresh_fails(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let ttl = Duration::from_millis(100);
    let policy = Policy::new().ttl(ttl).stampede(Stampede::Swr {
        stale: Duration::from_secs(3600),
    });
    let _: String = cache
        .get_or_load("k", &policy, || async { Ok::<_, io::Error>("old".into()) })
        .await
        .unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let failed: io::Result<String> = cache
        .get_or_load("k", &policy, || async { Err(io::Error::other("db down")) })
        .await;
    assert_eq!(
        failed.unwrap(),
        "old",
        "the refresher gets the stale value, not the error"
    );
    assert_eq!(cache.stats().refresh_errors, 1);
    let later: String = cache
        .get_or_load("k", &policy, || async { Ok::<_, io::Error>("new".into()) })
        .await
        .unwrap();
    assert_eq!(later, "new", "the stale value stayed until a refresh succeeded");
}

async fn early_refreshes_before_expiry_under_steady_traffic(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let caches = processes(&cache).await;
    let ttl = Duration::from_millis(500);
    let policy = Policy::new().ttl(ttl).stampede(Stampede::Early { beta: 1.0 });
    let runs = Arc::new(AtomicU64::new(0));
    let _ = caches[0]
        .get_or_load("k", &policy, slow(&runs, "v"))
        .await
        .unwrap();
    let before: Vec<_> = caches.iter().map(|c| c.stats()).collect();
    let run_for = Duration::from_millis(2500);
    let readers: Vec<_> = caches
        .iter()
        .map(|cache| {
            let (cache, policy, runs) = (cache.clone(), policy.clone(), runs.clone());
            tokio::spawn(async move {
                let start = Instant::now();
                while start.elapsed() < run_for {
                    cache.get_or_load("k", &policy, slow(&runs, "v")).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap();
    }
    let misses: u64 = caches
        .iter()
        .zip(&before)
        .map(|(c, b)| c.stats().since(b).misses)
        .sum();
    let refreshes: u64 = caches.iter().map(|c| c.stats().refreshes).sum();
    let loads = runs.load(SeqCst);
    assert_eq!(
        misses, 0,
        "no reader saw a miss after the first load ({refreshes} early refreshes, {loads} loads)"
    );
    assert!(
        refreshes >= 3,
        "the entry was refreshed before each expiry: {refreshes} refreshes in {run_for:?}"
    );
    assert!(
        loads <= 20,
        "and the loader ran a bounded number of times: {loads}"
    );
}

async fn none_loads_once_per_concurrent_caller(kind: Kind) {
    let cache = TestCache::new(kind).await;
    const N: usize = 10;
    let policy = Policy::new().stampede(Stampede::None);
    let (runs, all_started) = (Arc::new(AtomicU64::new(0)), Arc::new(Barrier::new(N)));
    let callers: Vec<_> = (0..N)
        .map(|_| {
            let (cache, policy, runs, all_started) = (
                cache.cache.clone(),
                policy.clone(),
                runs.clone(),
                all_started.clone(),
            );
            tokio::spawn(async move {
                cache
                    .get_or_load("k", &policy, || async move {
                        runs.fetch_add(1, SeqCst);
                        // Every caller's loader is running at once, or none finishes.
                        all_started.wait().await;
                        Ok::<_, io::Error>(1)
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(
            bounded("a caller", Duration::from_secs(10), caller)
                .await
                .unwrap()
                .unwrap(),
            1
        );
    }
    assert_eq!(runs.load(SeqCst), N as u64);
}

async fn sliding_hits_extend_the_expiry(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let ttl = Duration::from_millis(300);
    let policy = Policy::new().ttl(ttl).sliding(true);
    let runs = Arc::new(AtomicU64::new(0));
    for _ in 0..8 {
        let _ = cache.get_or_load("k", &policy, slow(&runs, "v")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await; // well within the TTL each time
    }
    assert_eq!(runs.load(SeqCst), 1, "800 ms of hits kept a 300 ms entry alive");
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let _ = cache.get_or_load("k", &policy, slow(&runs, "v")).await.unwrap();
    assert_eq!(runs.load(SeqCst), 2, "without hits it expires");
}

async fn jitter_spreads_expiries(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let ttl = Duration::from_millis(400);
    let policy = Policy::new().ttl(ttl).jitter(0.5).stampede(Stampede::None);
    for i in 0..200 {
        let _: u32 = cache
            .get_or_load(&format!("k{i}"), &policy, || async { Ok::<_, io::Error>(1) })
            .await
            .unwrap();
    }
    // With ±50%, entries expire between 200 and 600 ms: at 400 ms about half remain.
    tokio::time::sleep(ttl).await;
    let mut alive = 0;
    for i in 0..200 {
        alive += usize::from(cache.get::<u32>(&format!("k{i}")).await.unwrap().is_some());
    }
    assert!(
        (20..=180).contains(&alive),
        "expiries are spread: {alive} of 200 alive at the TTL"
    );
}

on_both_backends!(
    lock_loads_once_for_a_thousand_cold_callers,
    a_dead_lock_holder_delays_the_others_by_at_most_the_lock_ttl,
    swr_serves_stale_at_once_while_one_caller_refreshes,
    swr_keeps_the_stale_value_when_the_refresh_fails,
    early_refreshes_before_expiry_under_steady_traffic,
    none_loads_once_per_concurrent_caller,
    sliding_hits_extend_the_expiry,
    jitter_spreads_expiries,
);

#[tokio::test]
async fn a_crashed_holders_lock_expires_by_its_ttl() {
    let server = support::RedisServer::start();
    let cache = server.cache().await;
    // Another process took the lock and died without releasing it.
    let mut raw = server.raw().await;
    let _: () = ::redis::cmd("SET")
        .arg("aside#lock:k")
        .arg("12345")
        .arg("PX")
        .arg(300)
        .query_async(&mut raw)
        .await
        .unwrap();
    let policy = Policy::new().stampede(Stampede::Lock {
        lock_ttl: Duration::from_secs(10),
        lock_wait: Duration::from_secs(30),
    });
    let runs = Arc::new(AtomicU64::new(0));
    let got = bounded(
        "the caller",
        Duration::from_secs(10),
        cache.get_or_load("k", &policy, slow(&runs, "v")),
    )
    .await;
    assert_eq!(got.unwrap(), "v");
    assert_eq!(
        runs.load(SeqCst),
        1,
        "it loaded once the dead holder's lock expired"
    );
    assert!(cache.stats().lock_waits > 0);
}

#[tokio::test]
async fn jittered_ttls_are_spread_in_redis() {
    let server = support::RedisServer::start();
    let cache = server.cache().await;
    let policy = Policy::new()
        .ttl(Duration::from_secs(100))
        .jitter(0.1)
        .stampede(Stampede::None);
    let mut raw = server.raw().await;
    let mut ttls = Vec::new();
    for i in 0..100 {
        let _: u32 = cache
            .get_or_load(&format!("k{i}"), &policy, || async { Ok::<_, io::Error>(1) })
            .await
            .unwrap();
        let pttl: i64 = ::redis::AsyncCommands::pttl(&mut raw, format!("aside:k{i}"))
            .await
            .unwrap();
        ttls.push(pttl);
    }
    let (min, max) = (*ttls.iter().min().unwrap(), *ttls.iter().max().unwrap());
    assert!(
        min >= 89_000 && max <= 110_000,
        "within ±10% of 100 s: {min}..{max} ms"
    );
    assert!(max - min > 10_000, "and spread over that range: {min}..{max} ms");
}

#[aside::cached(cache = cache, key = "swr:<id>", ttl = "100ms", stampede = "swr", stale = "1h")]
async fn swr_through_the_macro(cache: &Cache, source: &AtomicU64, id: u32) -> u64 {
    source.load(SeqCst) + u64::from(id)
}

#[tokio::test]
async fn the_attribute_passes_the_stampede_options_on() {
    let cache = Cache::memory();
    let source = AtomicU64::new(1);
    assert_eq!(swr_through_the_macro(&cache, &source, 0).await, 1);
    source.store(2, SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await; // past the 100 ms TTL
                                                          // Alone, this caller wins the refresh and gets the new value.
    assert_eq!(swr_through_the_macro(&cache, &source, 0).await, 2);
    let stats = cache.stats();
    assert_eq!(
        (stats.refreshes, stats.misses),
        (1, 1),
        "a refresh, not a miss: {stats:?}"
    );
}

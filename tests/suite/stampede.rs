//! Stampede protection, on both backends. For Redis, four independent
//! `Cache`s (each with its own connection) stand in for four processes; for
//! memory they are clones of one cache. Loaders take ~50 ms and count calls.

use crate::support;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aside::stats::Stats;
use aside::{Cache, Policy, Stampede};
use support::{bounded, until, Kind, Load, Loader, TestCache};
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
fn slow(runs: &Loader, value: &str) -> impl FnOnce() -> Load<String> {
    timed(runs, value, |_| LOAD)
}

/// A loader that counts its runs, takes `time(run)` (the runs before it),
/// and returns `value`.
fn timed(runs: &Loader, value: &str, time: fn(u64) -> Duration) -> impl FnOnce() -> Load<String> {
    runs.timed(Ok(value.to_owned()), time)
}

async fn lock_loads_once_for_a_thousand_cold_callers(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let caches = processes(&cache).await;
    let runs = Loader::new();
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
        runs.runs(),
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
    let runs = Loader::new();
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
        Kind::Redis | Kind::Tiered | Kind::Cluster => caches[1..].iter().all(|c| c.stats().lock_waits > 0),
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
        runs.runs(),
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

/// What `caches` counted in `field` since `before`, added up. Clones of one
/// memory cache share their counters, so they count once.
fn total(kind: Kind, caches: &[Cache], before: &[Stats], field: fn(&Stats) -> u64) -> u64 {
    let distinct = if kind == Kind::Memory { 1 } else { caches.len() };
    caches[..distinct]
        .iter()
        .zip(before)
        .map(|(cache, before)| field(&cache.stats().since(before)))
        .sum()
}

/// A loader that takes 20 to 50 ms (a different time each run), counts its
/// runs, and returns `value`.
fn uneven(runs: &Loader, value: &str) -> impl FnOnce() -> Load<String> {
    timed(runs, value, |n| Duration::from_millis(20 + n * 7 % 31))
}

/// Four caches read one key every 2 ms for 2.5 s, five TTLs: XFetch must
/// refresh it before each expiry, so that no reader ever waits for a load.
async fn early_refreshes_before_expiry_under_steady_traffic(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let caches = processes(&cache).await;
    let ttl = Duration::from_millis(500);
    let policy = Policy::new().ttl(ttl).stampede(Stampede::Early { beta: 1.0 });
    let runs = Loader::new();
    let _ = caches[0]
        .get_or_load("k", &policy, uneven(&runs, "v"))
        .await
        .unwrap();
    let before: Vec<_> = caches.iter().map(|c| c.stats()).collect();
    let run_for = Duration::from_millis(2500);
    let readers: Vec<_> = caches
        .iter()
        .map(|cache| {
            let (cache, policy, runs) = (cache.clone(), policy.clone(), runs.clone());
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                while start.elapsed() < run_for {
                    cache.get_or_load("k", &policy, uneven(&runs, "v")).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap();
    }
    let misses = total(kind, &caches, &before, |s| s.misses);
    let refreshes = total(kind, &caches, &before, |s| s.refreshes);
    let loads = runs.runs() - 1;
    assert_eq!(
        misses, 0,
        "no reader saw a miss after the first load ({refreshes} early refreshes, {loads} loads)"
    );
    assert!(
        refreshes >= 4,
        "the entry was refreshed before each expiry: {refreshes} refreshes in {run_for:?}"
    );
    assert!(
        loads <= 20,
        "and the loader ran a bounded number of times: {loads}"
    );
}

/// Reads "k" with a loader that returns `value` at once, or fails with
/// "db down" for `None`.
async fn read_k(cache: &Cache, policy: &Policy, value: Option<&str>) -> io::Result<String> {
    let value = value.map(str::to_owned);
    cache
        .get_or_load("k", policy, || async move {
            value.ok_or_else(|| io::Error::other("db down"))
        })
        .await
}

/// Stores "old" under `policy`, then waits until it is past its TTL.
async fn expired(cache: &Cache, policy: &Policy, ttl: Duration) {
    read_k(cache, policy, Some("old")).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await; // past the TTL: the subject of this test
}

/// Past its TTL, an early entry is kept for a grace period: while a refresh
/// runs (here, one that started late), readers in every process get the
/// current value, not a miss.
async fn early_serves_the_current_value_past_its_ttl_while_a_refresh_runs(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let caches = processes(&cache).await;
    let ttl = Duration::from_millis(200);
    let policy = Policy::new().ttl(ttl).stampede(Stampede::Early { beta: 1.0 });
    expired(&caches[0], &policy, ttl).await;

    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let refresher = {
        let (cache, policy, started, release) = (
            caches[0].clone(),
            policy.clone(),
            started.clone(),
            release.clone(),
        );
        tokio::spawn(async move {
            cache
                .get_or_load("k", &policy, || async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, io::Error>("new".to_owned())
                })
                .await
        })
    };
    bounded(
        "the refresh to start",
        Duration::from_secs(10),
        started.notified(),
    )
    .await;
    let before: Vec<_> = caches.iter().map(|c| c.stats()).collect();
    for cache in &caches {
        let got = read_k(cache, &policy, Some("unused")).await.unwrap();
        assert_eq!(got, "old", "the current value while the refresh runs");
    }
    let during = |field: fn(&Stats) -> u64| total(kind, &caches, &before, field);
    assert_eq!(
        (during(|s| s.hits), during(|s| s.misses), during(|s| s.loads)),
        (4, 0, 0),
        "four hits, no miss, no load"
    );

    release.notify_one();
    let refreshed = bounded("the refresher", Duration::from_secs(10), refresher).await;
    assert_eq!(
        refreshed.unwrap().unwrap(),
        "new",
        "the refresher gets the new value"
    );
    assert_eq!(
        caches[0].stats().misses,
        2,
        "the refresher waited for a load: a miss"
    );
    for cache in &caches {
        assert_eq!(read_k(cache, &policy, Some("unused")).await.unwrap(), "new");
    }
}

/// Past its TTL, with no refresh running, an early entry is not a fallback:
/// the reader loads, and a failed load returns its error, as a miss would.
/// Before the TTL, a failed refresh keeps the current value.
async fn early_falls_back_on_the_current_value_only_before_its_ttl(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let ttl = Duration::from_millis(200);
    // So large a beta makes every read before the TTL refresh.
    let eager = Policy::new().ttl(ttl).stampede(Stampede::Early { beta: 1e12 });
    let _: String = cache
        .get_or_load("k", &eager, slow(&Arc::default(), "old"))
        .await
        .unwrap();
    let failed = read_k(&cache, &eager, None).await;
    assert_eq!(failed.unwrap(), "old", "before the TTL: the current value");
    assert_eq!(cache.stats().refresh_errors, 1);

    tokio::time::sleep(ttl + Duration::from_millis(100)).await; // past the TTL: the subject of this test
    let failed = read_k(&cache, &eager, None).await;
    assert_eq!(
        failed.unwrap_err().to_string(),
        "db down",
        "past the TTL: the error"
    );
    assert_eq!(read_k(&cache, &eager, Some("new")).await.unwrap(), "new");
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
    let ttl = Duration::from_secs(1);
    let policy = Policy::new().ttl(ttl).sliding(true);
    let runs = Loader::new();
    for _ in 0..8 {
        let _ = cache.get_or_load("k", &policy, slow(&runs, "v")).await.unwrap();
        tokio::time::sleep(ttl / 4).await; // well within the TTL each time
    }
    assert_eq!(runs.runs(), 1, "2 s of hits kept a 1 s entry alive");
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    let _ = cache.get_or_load("k", &policy, slow(&runs, "v")).await.unwrap();
    assert_eq!(runs.runs(), 2, "without hits it expires");
}

/// A caller whose read missed, and who then got the value another caller
/// loaded (it waited for that caller's lock, in another process, or joined
/// its load in this one), is counted as coalesced, not as a miss: a miss is
/// a call whose body ran.
async fn a_lock_waiter_that_gets_the_value_is_coalesced_not_a_miss(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let (first, second) = (cache.cache.clone(), cache.another().await);
    let (db, gate) = Loader::gated();
    let holder = tokio::spawn({
        let (first, load) = (first.clone(), db.load(Ok("value".to_owned())));
        async move { first.get_or_load("k", &Policy::new(), load).await }
    });
    until("the first caller loads, under the lock", || db.runs() == 1).await;
    let before = second.stats();
    let waiter = tokio::spawn({
        let second = second.clone();
        async move {
            second
                .get_or_load("k", &Policy::new(), || async {
                    Ok::<_, io::Error>("other".to_owned())
                })
                .await
        }
    });
    until("the second caller waits", || {
        let now = second.stats();
        now.lock_waits > before.lock_waits || now.waiting > before.waiting
    })
    .await;
    gate.notify_one();
    assert_eq!(holder.await.unwrap().unwrap(), "value");
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        "value",
        "the waiter got the loaded value"
    );
    let delta = second.stats().since(&before);
    assert_eq!(
        (delta.coalesced, delta.misses, delta.loads),
        (1, 0, 0),
        "{delta:?}"
    );
}

on_both_backends!(
    lock_loads_once_for_a_thousand_cold_callers,
    a_lock_waiter_that_gets_the_value_is_coalesced_not_a_miss,
    a_dead_lock_holder_delays_the_others_by_at_most_the_lock_ttl,
    swr_serves_stale_at_once_while_one_caller_refreshes,
    swr_keeps_the_stale_value_when_the_refresh_fails,
    early_refreshes_before_expiry_under_steady_traffic,
    early_serves_the_current_value_past_its_ttl_while_a_refresh_runs,
    early_falls_back_on_the_current_value_only_before_its_ttl,
    none_loads_once_per_concurrent_caller,
    sliding_hits_extend_the_expiry,
);

/// On the paused clock, so that storing 200 entries takes no time. (In Redis,
/// `jittered_ttls_are_spread_in_redis` reads the TTLs themselves.)
#[tokio::test(start_paused = true)]
async fn jitter_spreads_expiries() {
    let cache = Cache::memory();
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

/// XFetch decides once per read: a read that draws a refresh does refresh,
/// and the re-read under the lock does not draw again (which would make
/// refreshes fire with probability p² instead of p). Here p = 0.5: the entry
/// cost 100 ms to load and is `100 ms × ln 2` from expiry, on a paused clock;
/// failing refreshes keep it in place, so each of 1,000 reads draws anew.
#[tokio::test(start_paused = true)]
async fn early_refreshes_with_the_probability_xfetch_draws() {
    let cache = Cache::memory();
    let ttl = Duration::from_secs(10);
    let policy = Policy::new().ttl(ttl).stampede(Stampede::Early { beta: 1.0 });
    let _: u32 = cache
        .get_or_load("k", &policy, || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, io::Error>(1)
        })
        .await
        .unwrap();
    tokio::time::advance(ttl - Duration::from_micros(69_315)).await;
    const READS: u64 = 1000;
    for _ in 0..READS {
        let got: io::Result<u32> = cache
            .get_or_load("k", &policy, || async { Err(io::Error::other("db down")) })
            .await;
        assert_eq!(got.unwrap(), 1, "a failed early refresh keeps the value");
    }
    let refreshes = cache.stats().refreshes;
    // Binomial(1000, 0.5): 500 ± 16; p² would give 250.
    assert!(
        (400..=600).contains(&refreshes),
        "{refreshes} refreshes in {READS} reads at p = 0.5"
    );
}

#[tokio::test]
async fn a_crashed_holders_lock_expires_by_its_ttl() {
    let server = support::RedisServer::start();
    let cache = server.cache().await;
    // Another process took the lock and died without releasing it.
    let mut raw = server.raw().await;
    let _: () = ::redis::cmd("SET")
        .arg("aside#lock:{k}")
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
    let runs = Loader::new();
    let got = bounded(
        "the caller",
        Duration::from_secs(10),
        cache.get_or_load("k", &policy, slow(&runs, "v")),
    )
    .await;
    assert_eq!(got.unwrap(), "v");
    assert_eq!(runs.runs(), 1, "it loaded once the dead holder's lock expired");
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
        let pttl: i64 = ::redis::AsyncCommands::pttl(&mut raw, format!("aside:{{k{i}}}"))
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

/// The lock of an swr refresh lives `refresh_lock_ttl` in Redis (10 s by
/// default): how long a refresher that dies blocks the others' refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_swr_refresh_lock_has_the_ttl_the_policy_sets() {
    let server = support::RedisServer::start();
    let cache = server.cache().await;
    let mut raw = server.raw().await;
    let ttl = Duration::from_millis(500);
    let swr = Policy::new().ttl(ttl).stampede(Stampede::Swr {
        stale: Duration::from_secs(3600),
    });
    for (key, policy, (low, high)) in [
        ("default", swr.clone(), (8_000, 10_000)),
        (
            "short",
            swr.refresh_lock_ttl(Duration::from_secs(3)),
            (1_000, 3_000),
        ),
    ] {
        let _: String = cache
            .get_or_load(key, &policy, || async { Ok::<_, io::Error>("old".to_owned()) })
            .await
            .unwrap();
        tokio::time::sleep(ttl + Duration::from_millis(100)).await; // past the TTL: the subject of this test
        let release = Arc::new(tokio::sync::Notify::new());
        let loads = cache.stats().loads;
        let refresher = tokio::spawn({
            let (cache, policy, release) = (cache.clone(), policy.clone(), release.clone());
            async move {
                let load = || async move {
                    release.notified().await;
                    Ok::<_, io::Error>("new".to_owned())
                };
                cache.get_or_load(key, &policy, load).await.unwrap()
            }
        });
        until("the refresh loads", || cache.stats().loads == loads + 1).await;
        let pttl: i64 = ::redis::AsyncCommands::pttl(&mut raw, format!("aside#lock:{{{key}}}"))
            .await
            .unwrap();
        assert!(
            (low..=high).contains(&pttl),
            "{key}: the refresh lock lives {pttl} ms"
        );
        release.notify_one();
        assert_eq!(refresher.await.unwrap(), "new");
    }
}

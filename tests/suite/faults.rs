//! Fault injection: the harness owns its redis-server, so it can kill it, hang
//! it and corrupt its data while 32 callers keep calling. The promise under
//! test: the cache can make a call faster, never make it fail or return a
//! wrong value, and never make it much slower.

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aside::stats::BreakerState;
use aside::{Cache, CacheBuilder, Policy, Stampede, L1};
use support::traffic::Traffic;
use support::{bounded, until, RedisServer};

async fn cache_on(server: &RedisServer) -> Cache {
    Cache::builder().redis(server.url()).build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_server_costs_no_call_and_hits_resume() {
    let mut server = RedisServer::start();
    let cache = cache_on(&server).await;
    let traffic = Traffic::start(&cache);
    traffic.run_for(Duration::from_secs(1)).await;
    assert!(
        cache.stats().hits > 0,
        "warmed up: {}",
        traffic.seen.figures(&cache)
    );

    server.kill();
    traffic.run_for(Duration::from_secs(1)).await;
    let hits_while_down = cache.stats().hits;
    server.restart();
    let restarted = Instant::now();
    let resumed = tokio::time::timeout(Duration::from_secs(5), async {
        while cache.stats().hits == hits_while_down {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let resumed_after = restarted.elapsed();
    traffic.run_for(Duration::from_secs(1)).await;
    let seen = traffic.stop().await;

    let figures = seen.figures(&cache);
    assert!(resumed.is_ok(), "no hit within 5 s of the restart: {figures}");
    assert_eq!(seen.errors.load(SeqCst), 0, "{figures}");
    assert_eq!(seen.wrong.load(SeqCst), 0, "{figures}");
    assert!(cache.stats().errors > 0, "the outage was seen: {figures}");
    assert_eq!(cache.stats().breaker, BreakerState::Closed, "{figures}");
    eprintln!("kill and restart: hits resumed {resumed_after:?} after the restart; {figures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_built_while_redis_is_down_calls_through_and_connects_later() {
    let mut server = RedisServer::start();
    server.kill();
    let building = Instant::now();
    let cache = Cache::builder()
        .redis(server.url())
        .l1(L1::entries(10_000))
        .build()
        .await
        .expect("fail-open from the start: the build succeeds while Redis is down");
    let build_took = building.elapsed();
    let traffic = Traffic::start(&cache);
    traffic.run_for(Duration::from_millis(500)).await;
    assert_eq!(cache.stats().hits, 0, "{}", traffic.seen.figures(&cache));

    server.restart();
    let restarted = Instant::now();
    until("hits from Redis after it started", || cache.stats().hits > 0).await;
    let hits_after = restarted.elapsed();
    until("hits from the in-process tier, once tracking is on", || {
        cache.stats().l1_hits > 0
    })
    .await;
    let tier_after = restarted.elapsed();
    traffic.run_for(Duration::from_millis(500)).await;
    let seen = traffic.stop().await;

    let figures = seen.figures(&cache);
    assert_eq!(seen.errors.load(SeqCst), 0, "{figures}");
    assert_eq!(seen.wrong.load(SeqCst), 0, "{figures}");
    eprintln!(
        "built in {build_took:?} with Redis down; hits {hits_after:?} and tier hits {tier_after:?} after it started; {figures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_delays_no_call_past_the_timeout_and_the_breaker_opens_and_closes() {
    let server = RedisServer::start();
    let cache = cache_on(&server).await;
    let traffic = Traffic::start(&cache);
    traffic.run_for(Duration::from_secs(1)).await;

    server.signal("STOP");
    until("the breaker opens", || {
        cache.stats().breaker == BreakerState::Open
    })
    .await;
    traffic.run_for(Duration::from_millis(1500)).await;
    let short_circuited = cache.stats().short_circuited;
    server.signal("CONT");
    until("the breaker closes", || {
        cache.stats().breaker == BreakerState::Closed
    })
    .await;
    let hits = cache.stats().hits;
    until("hits resume", || cache.stats().hits > hits).await;
    let seen = traffic.stop().await;

    let figures = seen.figures(&cache);
    // A call waits for at most one timed-out operation, then runs its 2 ms
    // loader; the slack for a busy 2-core machine stays below a second timeout.
    let bound = 2 * CacheBuilder::DEFAULT_OP_TIMEOUT;
    assert!(seen.worst() < bound, "a call took {bound:?} or more: {figures}");
    assert_eq!(seen.errors.load(SeqCst), 0, "{figures}");
    assert_eq!(seen.wrong.load(SeqCst), 0, "{figures}");
    assert!(short_circuited > 0, "the open breaker skipped Redis: {figures}");
    eprintln!("stop and continue: {figures}");
}

/// What callers coalesced onto a panicking load get: one of them retries, and
/// the others get its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_leaves_no_waiter_hanging_and_no_lock_behind() {
    let server = RedisServer::start();
    let cache = cache_on(&server).await;
    let lock_ttl = Duration::from_secs(30);
    let policy = Policy::new().stampede(Stampede::Lock {
        lock_ttl,
        lock_wait: Duration::from_secs(30),
    });
    let release = Arc::new(tokio::sync::Notify::new());
    let runs = Arc::new(AtomicU64::new(0));
    let call = || {
        let (cache, policy, release, runs) = (cache.clone(), policy.clone(), release.clone(), runs.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let got: Result<u32, std::io::Error> = cache
                .get_or_load("doomed", &policy, || async move {
                    if runs.fetch_add(1, SeqCst) == 0 {
                        release.notified().await;
                        panic!("the loader panicked");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(7)
                })
                .await;
            (got.unwrap(), started.elapsed())
        })
    };
    let leader = call();
    until("the leader loads", || cache.stats().loads == 1).await;
    let waiters: Vec<_> = (0..100).map(|_| call()).collect();
    until("100 callers wait on it", || cache.stats().waiting == 100).await;
    let mut raw = server.raw().await;
    let lock_key = "aside#lock:{doomed}";
    let exists = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(lock_key)
                .query_async::<u32>(&mut raw)
                .await
                .unwrap()
                == 1
        }
    };
    assert!(exists(&mut raw).await, "the panicking caller holds the lock");
    let panicked_at = Instant::now();
    release.notify_one();

    let leader = bounded("the panicking caller", Duration::from_secs(10), leader).await;
    assert!(leader.unwrap_err().is_panic(), "the panic reaches its own caller");
    let mut worst = Duration::ZERO;
    for waiter in waiters {
        let (value, _) = bounded("a waiter", Duration::from_secs(10), waiter)
            .await
            .unwrap();
        assert_eq!(value, 7);
        worst = worst.max(panicked_at.elapsed());
    }
    // One waiter retried (a 50 ms load) and the others got its value: far
    // sooner than the 30 s that a caller waiting for the lock could wait.
    let figures = format!(
        "every waiter returned within {worst:?} of the panic; loader runs: {}",
        runs.load(SeqCst)
    );
    assert!(worst < Duration::from_secs(1), "{figures}");
    assert_eq!(runs.load(SeqCst), 2, "{figures}");
    bounded("the lock to be released", Duration::from_secs(10), async {
        while exists(&mut raw).await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    eprintln!("panic with 100 waiters: {figures}");
}

/// Garbage written into Redis behind the cache's back: each kind is a miss
/// that returns the right value, is counted, and is overwritten.
#[tokio::test]
async fn corrupt_entries_written_into_redis_are_misses_and_are_repaired() {
    let server = RedisServer::start();
    let cache = cache_on(&server).await;
    let mut raw = server.raw().await;
    let reference = {
        cache.set("reference", &5u64, None).await.unwrap();
        redis::cmd("GET")
            .arg("aside:{reference}")
            .query_async::<Vec<u8>>(&mut raw)
            .await
            .unwrap()
    };
    let older_version = {
        let mut bytes = reference.clone();
        bytes[2] = 0;
        bytes
    };
    let unknown_codec = {
        let mut bytes = reference.clone();
        bytes[3] = 9;
        bytes
    };
    let truncated = reference[..10].to_vec();
    let wrong_type = {
        // A valid envelope whose payload is a string, not a number: a struct
        // that changed shape reads the same way.
        cache.set("other", &"five", None).await.unwrap();
        redis::cmd("GET")
            .arg("aside:{other}")
            .query_async::<Vec<u8>>(&mut raw)
            .await
            .unwrap()
    };
    let cases: [(&str, Vec<u8>); 7] = [
        ("random bytes", (0..64).map(|i| (i * 37 % 251) as u8).collect()),
        ("empty", Vec::new()),
        ("an older envelope version", older_version),
        ("a codec this build does not know", unknown_codec),
        ("a truncated envelope", truncated),
        ("a payload of another type", wrong_type),
        ("plain JSON from another program", b"5".to_vec()),
    ];
    let runs = AtomicU64::new(0);
    let load = || async {
        runs.fetch_add(1, SeqCst);
        Ok::<u64, std::io::Error>(5)
    };
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let key = format!("entry{i}");
        redis::cmd("SET")
            .arg(format!("aside:{{{key}}}"))
            .arg(bytes.as_slice())
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
        let before = (cache.stats(), runs.load(SeqCst));
        let got = cache.get_or_load(&key, &Policy::new(), load).await.unwrap();
        let stats = cache.stats().since(&before.0);
        assert_eq!(got, 5, "{what}: the right value");
        assert_eq!(
            (stats.corrupt, stats.misses, runs.load(SeqCst) - before.1),
            (1, 1, 1),
            "{what}: a counted miss that loads: {stats:?}"
        );
        let again = cache.get_or_load(&key, &Policy::new(), load).await.unwrap();
        assert_eq!(again, 5);
        assert_eq!(
            runs.load(SeqCst) - before.1,
            1,
            "{what}: repaired, the next call is a hit"
        );
    }
    // A key holding another Redis type (a hash) reads as nothing and is replaced.
    redis::cmd("HSET")
        .arg("aside:{hash}")
        .arg("f")
        .arg("v")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let before = runs.load(SeqCst);
    assert_eq!(cache.get_or_load("hash", &Policy::new(), load).await.unwrap(), 5);
    assert_eq!(cache.get_or_load("hash", &Policy::new(), load).await.unwrap(), 5);
    assert_eq!(
        runs.load(SeqCst) - before,
        1,
        "a hash at the key: one miss, then repaired"
    );
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}

//! `aside::testing::Chaos`: faults injected into a cache's backend by a
//! seeded schedule. A call still returns its loader's result; the same
//! seed and the same calls give the same faults; a backend taken down
//! comes back.

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use aside::testing::{Chaos, Fault};
use aside::{Cache, Policy};
use support::redis_server::RedisServer;

/// A cache on `chaos`, in memory, with a short operation timeout (a hang
/// costs a call that long) and no breaker (which would skip the backend
/// after a run of faults, and so change which operations draw).
async fn memory(chaos: Chaos) -> Cache {
    Cache::builder()
        .op_timeout(Duration::from_millis(50))
        .breaker(0, Duration::ZERO)
        .chaos(chaos)
        .build()
        .await
        .expect("an in-memory cache builds")
}

/// Calls keys `0..n` twice each on `cache`: the loads each call ran.
async fn traffic(cache: &Cache, n: u64) -> u64 {
    let loads = AtomicU64::new(0);
    for round in 0..2 {
        for id in 0..n {
            let value = cache
                .get_or_load(&format!("item:{id}"), &Policy::new(), || async {
                    loads.fetch_add(1, SeqCst);
                    Ok::<_, ()>(id * 10)
                })
                .await;
            assert_eq!(
                value,
                Ok(id * 10),
                "round {round}: the call returns its loader's result"
            );
        }
    }
    loads.load(SeqCst)
}

fn schedule(seed: u64) -> Chaos {
    Chaos::seeded(seed)
        .errors(0.2)
        .hangs(0.1)
        .latency(0.2, Duration::from_millis(20))
}

#[tokio::test(start_paused = true)]
async fn a_seed_replays_the_same_faults() {
    let (first, again, other) = (schedule(11), schedule(11), schedule(12));
    let loads_first = traffic(&memory(first.clone()).await, 30).await;
    let loads_again = traffic(&memory(again.clone()).await, 30).await;
    let loads_other = traffic(&memory(other.clone()).await, 30).await;

    assert!(
        first.injected().len() > 10,
        "faults were injected: {:?}",
        first.injected()
    );
    assert_eq!(
        first.injected(),
        again.injected(),
        "the same seed, the same faults"
    );
    assert_eq!(loads_first, loads_again, "and the same loads");
    assert_ne!(first.injected(), other.injected(), "another seed, other faults");
    // Some second calls were misses because their first store failed.
    assert!(loads_first > 30 && loads_other > 30);
    for kind in [
        Fault::Error,
        Fault::Hang,
        Fault::Latency(Duration::from_millis(20)),
    ] {
        assert!(
            first.injected().iter().any(|(_, fault)| *fault == kind),
            "{kind:?} was injected"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_backend_costs_a_call_its_timeout_only() {
    let chaos = Chaos::seeded(1).hangs(1.0);
    let cache = memory(chaos.clone()).await;
    let started = tokio::time::Instant::now();
    let value = cache
        .get_or_load("k", &Policy::new(), || async { Ok::<_, ()>(1) })
        .await;
    assert_eq!(value, Ok(1));
    assert!(chaos.injected().iter().all(|(_, fault)| *fault == Fault::Hang));
    // Each backend operation the call made waited out the timeout once.
    let waited = started.elapsed();
    let operations = chaos.injected().len() as u32;
    assert!(operations >= 1);
    assert_eq!(
        waited,
        Duration::from_millis(50) * operations,
        "{operations} hung operations"
    );
    assert!(cache.stats().errors >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_backend_taken_down_comes_back() {
    let chaos = Chaos::seeded(5);
    let cache = memory(chaos.clone()).await;
    let (loads, policy) = (AtomicU64::new(0), Policy::new());
    let call = || {
        cache.get_or_load("k", &policy, || async {
            loads.fetch_add(1, SeqCst);
            Ok::<_, ()>(7)
        })
    };
    chaos.go_down();
    assert_eq!(call().await, Ok(7));
    assert_eq!(call().await, Ok(7));
    assert_eq!(loads.load(SeqCst), 2, "down: nothing is cached, every call loads");
    assert!(chaos.injected().iter().all(|(_, fault)| *fault == Fault::Error));
    chaos.come_back();
    assert_eq!(call().await, Ok(7));
    let stored = loads.load(SeqCst);
    assert_eq!(call().await, Ok(7));
    assert_eq!(loads.load(SeqCst), stored, "back: the value stored is a hit");
}

#[tokio::test]
async fn chaos_in_front_of_redis() {
    let server = RedisServer::start();
    let chaos = Chaos::seeded(9);
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("chaos")
        .breaker(0, Duration::ZERO)
        .chaos(chaos.clone())
        .require_connection(true)
        .build()
        .await
        .expect("a Redis cache builds");
    let (loads, policy) = (AtomicU64::new(0), Policy::new());
    let call = || {
        cache.get_or_load("k", &policy, || async {
            loads.fetch_add(1, SeqCst);
            Ok::<_, ()>(3)
        })
    };
    chaos.go_down();
    assert_eq!(call().await, Ok(3));
    assert_eq!(loads.load(SeqCst), 1);
    assert!(
        cache.stats().errors >= 1,
        "Redis is down as far as the cache knows"
    );
    chaos.come_back();
    assert_eq!(call().await, Ok(3));
    let stored = loads.load(SeqCst);
    assert_eq!(call().await, Ok(3));
    assert_eq!(
        loads.load(SeqCst),
        stored,
        "Redis back: the value stored is a hit"
    );
}

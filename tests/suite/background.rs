//! Loads nobody waits for (`Cache::get_or_load_detached`): a refresh runs on
//! a task of its own while every caller gets the current value; a load that
//! outlasts `soft_timeout` while a fail-safe value stands by finishes in the
//! background and stores its value when it lands.

use crate::support;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aside::{Cache, FailSafe, Policy, Stampede};
use support::{bounded, Kind, Loader, TestCache};
use tokio::sync::Notify;

const HOUR: Duration = Duration::from_secs(3600);
const TTL: Duration = Duration::from_millis(50);

type Db = Loader;

/// Past the fresh time (and any jitter); on the memory tests' paused clock, at once.
async fn expire() {
    tokio::time::sleep(TTL * 3).await;
}

/// Calls until the cache answers `want` (a background load landing).
async fn until_value(cache: &Cache, policy: &Policy, want: u32) {
    let never = Db::default();
    bounded("the background load's value", Duration::from_secs(10), async {
        loop {
            let got = cache
                .get_or_load_detached("k", policy, never.load::<u32>(Err(io::Error::other("unused"))))
                .await;
            if got.as_ref().ok() == Some(&want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

async fn refresh_in_background(kind: Kind, stampede: Stampede) {
    let cache = TestCache::new(kind).await;
    let policy = Policy::new().ttl(TTL).stampede(stampede);
    let db = Db::default();
    assert_eq!(
        cache
            .get_or_load_detached("k", &policy, db.load::<u32>(Ok(1)))
            .await
            .unwrap(),
        1
    );
    expire().await;
    let (slow, release) = Db::gated();
    let before = cache.stats();
    // The refresh's loader is held until released: the caller that won the
    // refresh returns without it, and so does everyone else.
    for _ in 0..5 {
        let got = bounded(
            "a caller during the refresh",
            Duration::from_secs(10),
            cache.get_or_load_detached("k", &policy, slow.load::<u32>(Ok(2))),
        )
        .await;
        assert_eq!(got.unwrap(), 1, "the current value, at once");
    }
    assert_eq!(slow.done(), 0, "nobody waited for the refresh");
    release.notify_one();
    until_value(&cache, &policy, 2).await;
    let stats = cache.stats().since(&before);
    assert_eq!(slow.runs(), 1, "one refresh: {stats:?}");
    assert_eq!((stats.refreshes, stats.misses), (1, 0), "{stats:?}");
}

async fn an_swr_refresh_runs_in_the_background(kind: Kind) {
    let stale = Duration::from_secs(600);
    refresh_in_background(kind, Stampede::Swr { stale }).await;
}

async fn an_early_refresh_runs_in_the_background(kind: Kind) {
    // Past the TTL, early serves the current value while one caller refreshes.
    refresh_in_background(kind, Stampede::Early { beta: 1.0 }).await;
}

/// A refresh running when the key is invalidated does not store its value.
async fn a_background_refresh_loses_to_an_invalidation(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = Policy::new().ttl(TTL).stampede(Stampede::Swr { stale: HOUR });
    let db = Db::default();
    let _ = cache
        .get_or_load_detached("k", &policy, db.load::<u32>(Ok(1)))
        .await;
    expire().await;
    let (slow, release) = Db::gated();
    assert_eq!(
        cache
            .get_or_load_detached("k", &policy, slow.load::<u32>(Ok(2)))
            .await
            .unwrap(),
        1
    );
    bounded("the refresh to start", Duration::from_secs(10), async {
        while slow.runs() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    cache.invalidate("k").await.unwrap();
    release.notify_one();
    bounded("the refresh to end", Duration::from_secs(10), async {
        while slow.done() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let fresh = cache
        .get_or_load_detached("k", &policy, db.load::<u32>(Ok(3)))
        .await;
    assert_eq!(
        fresh.unwrap(),
        3,
        "the refresh that began before the invalidation was not kept"
    );
}

/// A background refresh that fails keeps the current value, counted.
async fn a_failed_background_refresh_keeps_the_value(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let policy = Policy::new().ttl(TTL).stampede(Stampede::Swr { stale: HOUR });
    let db = Db::default();
    let _ = cache
        .get_or_load_detached("k", &policy, db.load::<u32>(Ok(1)))
        .await;
    expire().await;
    let failing = db.load::<u32>(Err(io::Error::other("database down")));
    assert_eq!(
        cache.get_or_load_detached("k", &policy, failing).await.unwrap(),
        1
    );
    bounded("the refresh to fail", Duration::from_secs(10), async {
        while cache.stats().refresh_errors == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let again = cache
        .get_or_load_detached("k", &policy, Db::default().load::<u32>(Ok(2)))
        .await;
    assert!(matches!(again, Ok(1 | 2)), "{again:?}");
}

/// The slow database: with `soft_timeout = 100ms` and fail-safe,
/// callers get the kept value after the timeout while the load goes on, and
/// the load's value is stored when it lands.
async fn a_slow_load_is_served_stale_after_the_soft_timeout_then_stored(kind: Kind) {
    const SOFT: Duration = Duration::from_millis(100);
    let cache = TestCache::new(kind).await;
    let policy = Policy::new()
        .ttl(TTL)
        .fail_safe(FailSafe::keep(HOUR).soft_timeout(SOFT));
    let _ = cache
        .get_or_load_detached("k", &policy, Db::default().load::<u32>(Ok(1)))
        .await;
    expire().await;
    let (slow, release) = Db::gated();
    let other = cache.another().await;
    let before = cache.stats();
    // Eight callers at once over two instances: one loads (held until
    // released), every one gets the kept value once the timeout passes.
    let callers: Vec<_> = (0..8u32)
        .map(|i| {
            let cache = if i.is_multiple_of(2) {
                cache.cache.clone()
            } else {
                other.clone()
            };
            let (policy, slow) = (policy.clone(), slow.clone());
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let got = cache
                    .get_or_load_detached("k", &policy, slow.load::<u32>(Ok(2)))
                    .await;
                (got.unwrap(), started.elapsed())
            })
        })
        .collect();
    let mut waits = Vec::new();
    for caller in callers {
        let (value, waited) = bounded("a caller", Duration::from_secs(10), caller)
            .await
            .unwrap();
        assert_eq!(value, 1, "the kept value");
        assert!(waited >= SOFT, "answered before the timeout: {waited:?}");
        waits.push(waited);
    }
    assert_eq!(slow.done(), 0, "no caller waited for the load itself");
    assert_eq!(slow.runs(), 1, "one load across both instances");
    let stats = cache.stats().since(&before);
    assert!(stats.stale_hits >= 1, "{stats:?}");
    eprintln!("soft timeout {SOFT:?}: callers answered after {waits:?}");
    release.notify_one();
    until_value(&cache, &policy, 2).await;
}

/// A repository, `Arc`-backed: `Clone + Send + Sync + 'static`.
#[derive(Clone)]
struct Prices {
    cache: Cache,
    price: Arc<AtomicU64>,
    /// While set, a load waits for it to be released.
    gate: Option<Arc<Notify>>,
    loads: Arc<AtomicU64>,
}

impl Prices {
    // No `refresh =`: a `&self` method whose `Self` can be cloned into the
    // refresh refreshes in the background, as a free function does.
    #[aside::cached(cache = self.cache, key = "price:<id>", ttl = "50ms", stampede = "swr", stale = "1h")]
    async fn price(&self, id: u64) -> u64 {
        self.loads.fetch_add(1, SeqCst);
        if let Some(gate) = &self.gate {
            gate.notified().await;
        }
        self.price.load(SeqCst) + id
    }
}

async fn a_method_refreshes_in_the_background_by_default(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let price = Arc::new(AtomicU64::new(100));
    let loads = Arc::new(AtomicU64::new(0));
    let open = Prices {
        cache: Cache::clone(&cache),
        price: price.clone(),
        gate: None,
        loads: loads.clone(),
    };
    assert_eq!(open.price(1).await, 101);
    expire().await;
    price.store(200, SeqCst);
    let gate = Arc::new(Notify::new());
    let gated = Prices {
        gate: Some(gate.clone()),
        ..open.clone()
    };
    // The caller that wins the refresh returns the current value without
    // waiting for the gated load; so does every caller after it.
    for _ in 0..3 {
        let got = bounded(
            "a caller during the refresh",
            Duration::from_secs(10),
            gated.price(1),
        )
        .await;
        assert_eq!(got, 101, "the current value, at once");
    }
    gate.notify_one();
    bounded("the refreshed value", Duration::from_secs(10), async {
        while open.price(1).await != 201 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(loads.load(SeqCst), 2, "the first load and one refresh");
}

on_both_backends!(
    a_method_refreshes_in_the_background_by_default,
    an_swr_refresh_runs_in_the_background,
    an_early_refresh_runs_in_the_background,
    a_background_refresh_loses_to_an_invalidation,
    a_failed_background_refresh_keeps_the_value,
    a_slow_load_is_served_stale_after_the_soft_timeout_then_stored,
);

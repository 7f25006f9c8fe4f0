//! Escape hatches, on every backend: a call that skips the cache, one that
//! refreshes it, values not worth keeping, and a cache of a test's own in
//! place of the global one.

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use aside::{Cache, Policy};
use support::{Kind, TestCache};
use tokio::sync::Notify;

/// A balance that changes behind the cache's back.
#[derive(Default)]
struct Ledger {
    balance: AtomicU64,
    reads: AtomicU64,
}

impl Ledger {
    fn reads(&self) -> u64 {
        self.reads.load(SeqCst)
    }
}

#[aside::cached(cache = cache, key = "balance:<account>")]
async fn balance(cache: &Cache, ledger: &Ledger, account: u64) -> u64 {
    ledger.reads.fetch_add(1, SeqCst);
    ledger.balance.load(SeqCst) + account
}

/// A cached function whose body makes a cached call of its own.
#[aside::cached(cache = cache, key = "statement:<account>")]
async fn statement(cache: &Cache, ledger: &Ledger, account: u64) -> String {
    format!("balance {}", balance(cache, ledger, account).await)
}

#[aside::cached(cache = cache, key = "search:<term>", unless = |hits| hits.is_empty())]
async fn search(cache: &Cache, ledger: &Ledger, term: &str) -> Result<Vec<String>, String> {
    ledger.reads.fetch_add(1, SeqCst);
    Ok(term
        .split(' ')
        .filter(|w| w.len() > 3)
        .map(str::to_owned)
        .collect())
}

async fn bypass_runs_the_function_and_keeps_nothing(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let ledger = Ledger::default();
    assert_eq!(balance(&cache, &ledger, 1).await, 1);
    ledger.balance.store(100, SeqCst);
    assert_eq!(aside::bypass(balance(&cache, &ledger, 1)).await, 101, "read now");
    assert_eq!(
        balance(&cache, &ledger, 1).await,
        1,
        "the cached value, untouched"
    );
    assert_eq!(ledger.reads(), 2);
    // Calls made inside the bypassed function look up as usual.
    assert_eq!(aside::bypass(statement(&cache, &ledger, 1)).await, "balance 1");
    assert_eq!(ledger.reads(), 2, "the inner call was a hit");
    let stats = cache.stats();
    assert_eq!((stats.bypassed, stats.hits), (2, 2), "{stats:?}");
    assert_eq!(
        stats.hits + stats.misses + stats.coalesced + stats.bypassed,
        5,
        "{stats:?}"
    );
}

async fn refresh_runs_the_function_and_stores_its_value(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let ledger = Ledger::default();
    assert_eq!(balance(&cache, &ledger, 2).await, 2);
    ledger.balance.store(100, SeqCst);
    assert_eq!(aside::refresh(balance(&cache, &ledger, 2)).await, 102);
    assert_eq!(
        balance(&cache, &ledger, 2).await,
        102,
        "a hit on the refreshed value"
    );
    assert_eq!(ledger.reads(), 2);
    let stats = cache.stats();
    assert_eq!(
        (stats.bypassed, stats.refreshes, stats.hits),
        (1, 1, 1),
        "{stats:?}"
    );
}

async fn values_the_function_says_not_to_keep_are_returned_not_stored(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let ledger = Ledger::default();
    for _ in 0..2 {
        assert_eq!(search(&cache, &ledger, "a b").await, Ok(vec![]));
    }
    assert_eq!(ledger.reads(), 2, "an empty result is loaded every time");
    for _ in 0..2 {
        assert_eq!(
            search(&cache, &ledger, "desk lamp").await,
            Ok(vec!["desk".into(), "lamp".into()])
        );
    }
    assert_eq!(ledger.reads(), 3, "a result is kept");
}

async fn clear_empties_the_namespace_and_beats_a_load_in_flight(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let ledger = Ledger::default();
    for account in 1..=3 {
        balance(&cache, &ledger, account).await;
    }
    search(&cache, &ledger, "desk lamp").await.unwrap();
    // Another namespace on the same storage is left alone.
    let other = match &cache.server {
        Some(server) => Cache::builder()
            .redis(server.url())
            .namespace("other")
            .build()
            .await
            .unwrap(),
        None => Cache::memory(),
    };
    other.set("kept", &1, None).await.unwrap();

    // A load that read its tokens before the clear and stores after it.
    let (started, finish) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let slow = {
        let (cache, started, finish) = (cache.another().await, started.clone(), finish.clone());
        tokio::spawn(async move {
            let policy = Policy::new();
            cache
                .get_or_load("slow", &policy, || async move {
                    started.notify_one();
                    finish.notified().await;
                    Ok::<_, ()>("old".to_owned())
                })
                .await
        })
    };
    started.notified().await;
    cache.clear().await.unwrap();
    finish.notify_one();
    assert_eq!(
        slow.await.unwrap().as_deref(),
        Ok("old"),
        "its caller still gets its value"
    );

    let reads = ledger.reads();
    for account in 1..=3 {
        balance(&cache, &ledger, account).await;
    }
    search(&cache, &ledger, "desk lamp").await.unwrap();
    assert_eq!(ledger.reads(), reads + 4, "every entry reloads");
    let policy = Policy::new();
    let after = cache
        .get_or_load("slow", &policy, || async { Ok::<_, ()>("new".to_owned()) })
        .await;
    assert_eq!(
        after.as_deref(),
        Ok("new"),
        "the load that started before the clear stored nothing"
    );
    assert_eq!(other.get::<i32>("kept").await.unwrap(), Some(1));
}

on_both_backends!(
    clear_empties_the_namespace_and_beats_a_load_in_flight,
    bypass_runs_the_function_and_keeps_nothing,
    refresh_runs_the_function_and_stores_its_value,
    values_the_function_says_not_to_keep_are_returned_not_stored,
);

static ANSWERS: AtomicU64 = AtomicU64::new(0);

/// On the global cache.
#[aside::cached(key = "answer:<n>")]
async fn answer(n: u64) -> u64 {
    ANSWERS.fetch_add(1, SeqCst);
    n * 2
}

#[tokio::test]
async fn each_test_may_put_a_cache_of_its_own_in_place_of_the_global_one() {
    let (first, second) = (Cache::memory(), Cache::memory());
    let calls = |cache: Cache| {
        aside::with_global(cache, async {
            answer(1).await;
            answer(1).await
        })
    };
    let (a, b) = tokio::join!(calls(first.clone()), calls(second.clone()));
    assert_eq!((a, b), (2, 2));
    for cache in [&first, &second] {
        let stats = cache.stats();
        assert_eq!(
            (stats.loads, stats.hits),
            (1, 1),
            "each scope used its own cache: {stats:?}"
        );
    }
    // Caching off for one scope: every call runs.
    aside::with_global(Cache::disabled(), async {
        answer(1).await;
        answer(1).await;
    })
    .await;
    assert_eq!(ANSWERS.load(SeqCst), 4);
}

//! Batch loads through the runtime API (`Cache::get_or_load_batch`), on
//! every backend kind: one read for the lookup, one loader call with the
//! missing ids, negative caching of the ids left out, entries shared with
//! single calls, coalescing with other batches, and the invalidation race.

use crate::support;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::{Cache, Policy};
use support::{bounded, until, Kind, TestCache};
use tokio::sync::Notify;

/// The key and policy of product `id`, as `#[cached(key = "product:<id>",
/// tags = ["product:<id>", "all"])]` would make them.
fn entry(id: &u64) -> (String, Policy) {
    let policy = Policy::new()
        .ttl(Duration::from_secs(3600))
        .tag(format!("product:{id}"))
        .tag("all");
    (format!("product:{id}"), policy)
}

/// The "database": product `id` is `id * 10`, unless it is in `absent`;
/// every call's ids are recorded, sorted.
#[derive(Clone, Default)]
struct Database {
    calls: Arc<Mutex<Vec<Vec<u64>>>>,
    absent: Vec<u64>,
}

impl Database {
    fn load(&self) -> impl FnMut(Vec<u64>) -> std::future::Ready<io::Result<HashMap<u64, u64>>> + '_ {
        |mut ids| {
            ids.sort_unstable();
            self.calls.lock().unwrap().push(ids.clone());
            let found = ids.into_iter().filter(|id| !self.absent.contains(id));
            std::future::ready(Ok(found.map(|id| (id, id * 10)).collect()))
        }
    }

    fn calls(&self) -> Vec<Vec<u64>> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }
}

fn values(ids: &[u64]) -> HashMap<u64, u64> {
    ids.iter().map(|&id| (id, id * 10)).collect()
}

async fn one_loader_call_with_the_missing_ids_deduplicated(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Database::default();
    let found = cache.get_or_load_batch([1, 2], entry, db.load()).await.unwrap();
    assert_eq!(found, values(&[1, 2]));
    assert_eq!(db.calls(), [vec![1, 2]]);

    let found = cache
        .get_or_load_batch([4, 1, 3, 3, 2, 4], entry, db.load())
        .await
        .unwrap();
    assert_eq!(found, values(&[1, 2, 3, 4]));
    assert_eq!(
        db.calls(),
        [vec![3, 4]],
        "one call, with the missing ids once each"
    );
    let found = cache
        .get_or_load_batch([3, 2, 1, 4], entry, db.load())
        .await
        .unwrap();
    assert_eq!(found, values(&[1, 2, 3, 4]));
    assert!(db.calls().is_empty(), "all hits");
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.loads), (4, 4), "counted per id");
}

async fn ids_left_out_are_cached_as_absent(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Database {
        absent: vec![2],
        ..Database::default()
    };
    let found = cache.get_or_load_batch([1, 2], entry, db.load()).await.unwrap();
    assert_eq!(found, values(&[1]));
    let found = cache.get_or_load_batch([1, 2], entry, db.load()).await.unwrap();
    assert_eq!(found, values(&[1]));
    assert_eq!(db.calls(), [vec![1, 2]]);
    assert_eq!(cache.stats().negative_hits, 1);
}

async fn a_batch_and_single_calls_share_entries(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Database {
        absent: vec![3],
        ..Database::default()
    };
    // A single call stores product 1 as `#[cached]` on a function
    // returning `Option<u64>` would.
    let (key, policy) = entry(&1);
    let one: Option<u64> = cache
        .get_or_load(&key, &policy, || async { Ok::<_, io::Error>(Some(10)) })
        .await
        .unwrap();
    assert_eq!(one, Some(10));
    let found = cache
        .get_or_load_batch([1, 2, 3], entry, db.load())
        .await
        .unwrap();
    assert_eq!(found, values(&[1, 2]));
    assert_eq!(
        db.calls(),
        [vec![2, 3]],
        "product 1 came from the single call's entry"
    );
    // And single calls hit what the batch stored, the absent one included.
    for (id, want) in [(2, Some(20)), (3, None)] {
        let (key, policy) = entry(&id);
        let got: Option<u64> = cache
            .get_or_load(&key, &policy, || async { Err(io::Error::other("not called")) })
            .await
            .unwrap();
        assert_eq!(got, want);
    }
}

async fn a_loader_error_is_returned_and_nothing_is_cached(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let failed: io::Result<HashMap<u64, u64>> = cache
        .get_or_load_batch([1, 2], entry, |_| async {
            Err(io::Error::other("database down"))
        })
        .await;
    assert_eq!(failed.unwrap_err().to_string(), "database down");
    let db = Database::default();
    let found = cache.get_or_load_batch([1, 2], entry, db.load()).await.unwrap();
    assert_eq!(found, values(&[1, 2]));
    assert_eq!(db.calls(), [vec![1, 2]], "nothing was cached by the failed call");
}

async fn invalidation_reaches_each_element(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Database::default();
    cache
        .get_or_load_batch([1, 2, 3], entry, db.load())
        .await
        .unwrap();
    db.calls();
    cache.invalidate_tag("product:2").await.unwrap();
    cache.invalidate("product:3").await.unwrap();
    let found = cache
        .get_or_load_batch([1, 2, 3], entry, db.load())
        .await
        .unwrap();
    assert_eq!(found, values(&[1, 2, 3]));
    assert_eq!(db.calls(), [vec![2, 3]]);
    cache.invalidate_tag("all").await.unwrap();
    cache
        .get_or_load_batch([1, 2, 3], entry, db.load())
        .await
        .unwrap();
    assert_eq!(db.calls(), [vec![1, 2, 3]]);
}

/// Ids 1, 2 and 3 on `cache`, on a task of their own, with a load that
/// waits for `gate`.
fn gated_batch(
    cache: &Cache,
    db: &Database,
    gate: &Arc<Notify>,
    entry: fn(&u64) -> (String, Policy),
) -> tokio::task::JoinHandle<HashMap<u64, u64>> {
    let (cache, db, gate) = (cache.clone(), db.clone(), gate.clone());
    tokio::spawn(async move {
        let load = |ids: Vec<u64>| {
            let (db, gate) = (db.clone(), gate.clone());
            async move {
                gate.notified().await;
                db.load()(ids).await
            }
        };
        cache.get_or_load_batch([1, 2, 3], entry, load).await.unwrap()
    })
}

/// Opens `gate` for the first batch (ids 1 to 3), checks both batches'
/// results (the second's are ids 2 to 4), and returns the loads, sorted.
async fn release(
    gate: &Notify,
    first: tokio::task::JoinHandle<HashMap<u64, u64>>,
    second: tokio::task::JoinHandle<HashMap<u64, u64>>,
    db: &Database,
) -> Vec<Vec<u64>> {
    gate.notify_one();
    let (first, second) = bounded("both batches", Duration::from_secs(10), async {
        (first.await.unwrap(), second.await.unwrap())
    })
    .await;
    assert_eq!(first, values(&[1, 2, 3]));
    assert_eq!(second, values(&[2, 3, 4]));
    let mut calls = db.calls();
    calls.sort();
    calls
}

/// Two batches that overlap, at once: each id is loaded once. The first
/// batch's load is held until the second batch's shared ids wait for it.
async fn overlapping_batches_load_each_id_once(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Database::default();
    let gate = Arc::new(Notify::new());
    let first = gated_batch(&cache, &db, &gate, entry);
    until("the first batch loads", || cache.stats().loads == 3).await;
    let second = {
        let (cache, db) = (cache.cache.clone(), db.clone());
        tokio::spawn(async move {
            cache
                .get_or_load_batch([2, 3, 4], entry, db.load())
                .await
                .unwrap()
        })
    };
    until("the second batch waits for ids 2 and 3", || {
        cache.stats().waiting == 2
    })
    .await;
    let calls = release(&gate, first, second, &db).await;
    assert_eq!(
        calls,
        [vec![1, 2, 3], vec![4]],
        "the second batch loaded only id 4"
    );
    assert_eq!(cache.stats().coalesced, 2);
}

/// A tag invalidated while a batch loads: the batch's (older) values are
/// not stored, and the next lookup loads again.
async fn an_invalidation_during_the_load_wins(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let (entered, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let loading = {
        let (cache, entered, gate) = (cache.cache.clone(), entered.clone(), gate.clone());
        tokio::spawn(async move {
            let load = |ids: Vec<u64>| {
                let (entered, gate) = (entered.clone(), gate.clone());
                async move {
                    entered.notify_one();
                    gate.notified().await;
                    Ok::<_, io::Error>(ids.into_iter().map(|id| (id, 0)).collect::<HashMap<u64, u64>>())
                }
            };
            cache.get_or_load_batch([1, 2], entry, load).await.unwrap()
        })
    };
    entered.notified().await;
    cache.invalidate_tag("product:1").await.unwrap();
    gate.notify_one();
    assert_eq!(loading.await.unwrap(), HashMap::from([(1, 0), (2, 0)]));
    let db = Database::default();
    let found = cache.get_or_load_batch([1, 2], entry, db.load()).await.unwrap();
    assert_eq!(found, HashMap::from([(1, 10), (2, 0)]));
    assert_eq!(db.calls(), [vec![1]], "only the invalidated id loads again");
}

/// Under `Stampede::Lock`, across processes: a batch on another cache
/// waits for the ids whose locks the first batch holds, and loads the rest
/// meanwhile, without waiting for them.
async fn ids_locked_elsewhere_are_waited_for_and_the_rest_load(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let other = cache.another().await;
    let locked = |id: &u64| {
        let (key, policy) = entry(id);
        (
            key,
            policy.stampede(aside::Stampede::Lock {
                lock_ttl: Duration::from_secs(30),
                lock_wait: Duration::from_secs(30),
            }),
        )
    };
    let db = Database::default();
    let gate = Arc::new(Notify::new());
    let first = gated_batch(&cache, &db, &gate, locked);
    until("the first batch loads", || cache.stats().loads == 3).await;
    let second = {
        let (db, other) = (db.clone(), other.clone());
        tokio::spawn(async move {
            other
                .get_or_load_batch([2, 3, 4], locked, db.load())
                .await
                .unwrap()
        })
    };
    // Id 4 is loaded while ids 2 and 3 are still being loaded elsewhere.
    until("the second batch loads id 4", || {
        db.calls.lock().unwrap().iter().any(|call| call == &[4])
    })
    .await;
    let calls = release(&gate, first, second, &db).await;
    assert_eq!(calls, [vec![1, 2, 3], vec![4]], "ids 2 and 3 were loaded once");
    if kind.is_redis() {
        assert_eq!(
            other.stats().lock_waits,
            2,
            "another process: it waited on the locks"
        );
    }
}

/// With Redis gone, a batch calls its loader for every id and returns its
/// values: the cache never fails a call. (Gone by `aside::testing::Chaos`:
/// what matters is the backend failing, not how it does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_the_batch_calls_through() {
    let server = support::RedisServer::start();
    let chaos = aside::testing::Chaos::seeded(0);
    let cache = Cache::builder()
        .redis(server.url())
        .chaos(chaos.clone())
        .build()
        .await
        .unwrap();
    let db = Database::default();
    cache.get_or_load_batch([1, 2], entry, db.load()).await.unwrap();
    db.calls();
    chaos.go_down();
    let found = cache
        .get_or_load_batch([1, 2, 3], entry, db.load())
        .await
        .unwrap();
    assert_eq!(found, values(&[1, 2, 3]));
    assert_eq!(db.calls(), [vec![1, 2, 3]]);
    assert!(cache.stats().errors > 0, "the failure was counted");
    assert!(!chaos.injected().is_empty());
}

on_both_backends!(
    ids_locked_elsewhere_are_waited_for_and_the_rest_load,
    one_loader_call_with_the_missing_ids_deduplicated,
    ids_left_out_are_cached_as_absent,
    a_batch_and_single_calls_share_entries,
    a_loader_error_is_returned_and_nothing_is_cached,
    invalidation_reaches_each_element,
    overlapping_batches_load_each_id_once,
    an_invalidation_during_the_load_wins,
);

/// On one Redis node, a batch of hits is one `MGET`: entries and tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_hits_is_one_mget() {
    let cache = TestCache::new(Kind::Redis).await;
    let ids: Vec<u64> = (0..100).collect();
    let db = Database::default();
    cache
        .get_or_load_batch(ids.clone(), entry, db.load())
        .await
        .unwrap();
    let server = cache.server();
    let count =
        |calls: &[(String, u64)], name: &str| calls.iter().find(|(n, _)| n == name).map_or(0, |(_, n)| *n);
    let before = server.command_calls().await;
    let found = cache
        .get_or_load_batch(ids.clone(), entry, db.load())
        .await
        .unwrap();
    let after = server.command_calls().await;
    assert_eq!(found, values(&ids));
    assert_eq!(count(&after, "mget") - count(&before, "mget"), 1);
    assert_eq!(count(&after, "get"), count(&before, "get"));
    assert_eq!(cache.stats().hits, 100);
}

/// The other modes take each id through the full flow: under `"swr"` an id
/// due for a refresh is reloaded by the batch's call (inline), and with
/// fail-safe the kept value stands in for an id whose load fails.
#[tokio::test(start_paused = true)]
async fn swr_refreshes_and_fail_safe_stands_in_per_id() {
    let cache = Cache::memory();
    let swr = |id: &u64| {
        let (key, policy) = entry(id);
        let policy = policy
            .ttl(Duration::from_secs(60))
            .stampede(aside::Stampede::Swr {
                stale: Duration::from_secs(600),
            });
        (key, policy)
    };
    let db = Database::default();
    cache.get_or_load_batch([1, 2], swr, db.load()).await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    let calls = Mutex::new(Vec::new());
    let refreshed = cache
        .get_or_load_batch([1, 2], swr, |mut ids: Vec<u64>| {
            ids.sort_unstable();
            calls.lock().unwrap().push(ids.clone());
            async move { Ok::<_, io::Error>(ids.into_iter().map(|id| (id, id * 100)).collect()) }
        })
        .await
        .unwrap();
    assert_eq!(refreshed, HashMap::from([(1, 100), (2, 200)]));
    assert_eq!(*calls.lock().unwrap(), [vec![1, 2]], "both refreshed in one call");

    let kept = |id: &u64| {
        let (key, policy) = entry(id);
        let policy = policy
            .ttl(Duration::from_secs(60))
            .fail_safe(aside::FailSafe::keep(Duration::from_secs(3600)));
        (format!("kept:{key}"), policy)
    };
    cache.get_or_load_batch([1, 2], kept, db.load()).await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    let before = cache.stats();
    let stood_in = cache
        .get_or_load_batch([1, 2], kept, |_| async { Err(io::Error::other("database down")) })
        .await
        .unwrap();
    assert_eq!(stood_in, values(&[1, 2]), "the kept values stand in");
    assert_eq!(cache.stats().since(&before).stale_hits, 2);
}

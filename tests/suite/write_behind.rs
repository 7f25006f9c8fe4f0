//! Write-behind against a real redis-server: writes are logged and cached at
//! once, flushers hand them on in coalesced batches, acknowledge only what
//! succeeded, take over a dead flusher's batch whole, and nothing
//! acknowledged is lost through flusher deaths, a failing database and a
//! Redis restart.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aside::write_behind::{Batch, Flusher, Version, WhenFull, WriteBehind};
use aside::{Cache, Error};
use support::redis_server::RedisServer;
use support::{bounded, RedisCluster};

/// A database as the README's SQL keeps one: the ids of the batches
/// applied, each record's value and version, each counter's total. A batch
/// is applied under one lock, as in one transaction.
#[derive(Debug, Default)]
struct Db {
    applied: HashSet<Version>,
    values: HashMap<u64, (u64, Version)>,
    counters: HashMap<u64, i64>,
    /// Batches delivered again after they were applied: skipped.
    repeats: u64,
}

impl Db {
    fn apply(&mut self, batch: &Batch<u64, u64>) {
        if !self.applied.insert(batch.id()) {
            self.repeats += 1;
            return;
        }
        for written in batch.values() {
            let stored = self
                .values
                .entry(written.id)
                .or_insert((written.value, written.version));
            if written.version > stored.1 {
                *stored = (written.value, written.version);
            }
        }
        for counted in batch.counters() {
            *self.counters.entry(counted.id).or_default() += counted.delta;
        }
    }
}

type SharedDb = Arc<Mutex<Db>>;

/// Waits until `condition` holds, for at most `limit`.
async fn until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    bounded(what, limit, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn log(cache: &Cache, name: &str) -> WriteBehind<u64, u64> {
    WriteBehind::new(cache, name).unwrap()
}

/// Flushes quickly, for tests: small batches, short waits.
fn quick<F, Fut>(log: &WriteBehind<u64, u64>, flush: F) -> Flusher
where
    F: Fn(Batch<u64, u64>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    log.flusher(flush)
        .batch_size(100)
        .flush_every(Duration::from_millis(50))
        .poll(Duration::from_millis(10))
        .claim_after(Duration::from_millis(800))
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .start()
        .unwrap()
}

/// `into(db)`, as a flush function with a `String` error.
fn applying(
    db: &SharedDb,
) -> impl Fn(Batch<u64, u64>) -> std::future::Ready<Result<(), String>> + Clone + Send + Sync + 'static {
    let db = db.clone();
    move |batch| {
        db.lock().unwrap().apply(&batch);
        std::future::ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_the_database_coalesced_and_the_log_empties() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "products");
    let mut versions = Vec::new();
    for (id, value) in [(1, 10), (2, 20), (1, 11), (1, 12)] {
        versions.push(log.set(&id, value).await.unwrap());
    }
    for (id, delta) in [(7, 1), (7, 1), (8, 5), (7, -3)] {
        log.add(&id, delta).await.unwrap();
    }
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions grow: {versions:?}"
    );
    assert_eq!(log.backlog().await.unwrap(), 8);
    assert_eq!(cache.stats().backlog, 8);

    let db = SharedDb::default();
    let batches = Arc::new(Mutex::new(Vec::new()));
    let seen = batches.clone();
    let flusher = log
        .flusher(move |batch: Batch<u64, u64>| {
            seen.lock().unwrap().push(batch);
            std::future::ready(Ok::<_, Infallible>(()))
        })
        .batch_size(100)
        .flush_every(Duration::from_millis(50))
        .start()
        .unwrap();
    until("the batch is flushed", Duration::from_secs(10), || {
        log.stats().batches == 1
    })
    .await;
    flusher.stop().await;

    let batch = {
        let batches = batches.lock().unwrap();
        assert_eq!(batches.len(), 1);
        batches[0].clone()
    };
    db.lock().unwrap().apply(&batch);
    assert_eq!(batch.changes(), 8);
    assert_eq!(
        batch.id(),
        versions[0],
        "a batch's id is its first change's version"
    );
    assert!(!batch.redelivered());
    {
        let db = db.lock().unwrap();
        assert_eq!(db.values[&1], (12, versions[3]), "the last value wins");
        assert_eq!(db.values[&2].0, 20);
        assert_eq!(
            (db.counters[&7], db.counters[&8]),
            (-1, 5),
            "increments are summed"
        );
    }
    assert_eq!(log.backlog().await.unwrap(), 0, "flushed entries are deleted");
    let stats = log.stats();
    assert_eq!(
        (stats.appended, stats.flushed, stats.backlog),
        (8, 8, 0),
        "{stats:?}"
    );
    assert_eq!(cache.stats().backlog, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_the_cache_keeps_the_changes_not_yet_flushed() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "products");
    log.set(&1, 10).await.unwrap();
    log.add(&2, 1).await.unwrap();
    cache.clear().await.unwrap();
    assert_eq!(log.backlog().await.unwrap(), 2, "the log is not a cache entry");
    let db = SharedDb::default();
    let flusher = quick(&log, applying(&db));
    until("both changes are flushed", Duration::from_secs(10), || {
        log.stats().flushed == 2
    })
    .await;
    flusher.stop().await;
    let db = db.lock().unwrap();
    assert_eq!((db.values[&1].0, db.counters[&2]), (10, 1));
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Product {
    price: u32,
}

static QUERIES: AtomicUsize = AtomicUsize::new(0);

#[aside::cached(cache = cache, key = "product:<id>", ttl = "1h")]
async fn product(cache: &Cache, id: u64) -> Option<Product> {
    QUERIES.fetch_add(1, SeqCst);
    Some(Product { price: 100 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_read_at_once_through_the_cached_function() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    assert_eq!(product(&cache, 7).await, Some(Product { price: 100 }));
    let products = WriteBehind::<u64, Product>::builder(&cache, "products")
        .cached(|id| aside::entry!(product(*id)))
        .build()
        .unwrap();
    products.set(&7, Product { price: 120 }).await.unwrap();
    // Before any flush, a reader in another process sees the write.
    let other = server.cache().await;
    assert_eq!(product(&other, 7).await, Some(Product { price: 120 }));
    assert_eq!(QUERIES.load(SeqCst), 1, "the database was not asked again");
    assert_eq!(
        products.backlog().await.unwrap(),
        1,
        "and the change waits in the log"
    );
}

#[tokio::test]
async fn an_in_memory_cache_refuses_write_behind() {
    let refused = WriteBehind::<u64, u64>::new(&Cache::memory(), "products").unwrap_err();
    assert!(matches!(refused, Error::Config(_)), "{refused:?}");
    assert!(
        refused.to_string().contains("needs a cache on Redis"),
        "{refused}"
    );
    let off = Cache::builder()
        .redis("redis://127.0.0.1:1")
        .enabled(false)
        .build()
        .await
        .unwrap();
    for cache in [off, Cache::disabled()] {
        let refused = WriteBehind::<u64, u64>::new(&cache, "products").unwrap_err();
        assert!(
            matches!(refused, Error::Config(_)),
            "a cache turned off: {refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_flusher_settings_are_errors() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    for name in ["", "a{b}"] {
        let refused = WriteBehind::<u64, u64>::new(&cache, name).unwrap_err();
        assert!(matches!(refused, Error::Config(_)), "{name:?}: {refused:?}");
    }
    let log = log(&cache, "settings");
    let flush = |_: Batch<u64, u64>| std::future::ready(Ok::<_, Infallible>(()));
    assert!(matches!(
        log.flusher(flush).batch_size(0).start(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        log.flusher(flush).batch_size(5_000).start(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        log.flusher(flush).flush_every(Duration::ZERO).start(),
        Err(Error::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backlog_refuses_or_waits_never_drops() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let full = WriteBehind::<u64, u64>::builder(&cache, "bounded")
        .max_backlog(3)
        .build()
        .unwrap();
    for id in 0..3 {
        full.set(&id, id).await.unwrap();
    }
    let refused = full.set(&3, 3).await.unwrap_err();
    assert!(
        matches!(refused, Error::BacklogFull { limit: 3, .. }),
        "{refused:?}"
    );
    assert_eq!((full.stats().rejected, full.backlog().await.unwrap()), (1, 3));

    // Waiting: a flusher makes room, and the write goes in.
    let waiting = WriteBehind::<u64, u64>::builder(&cache, "bounded")
        .max_backlog(3)
        .when_full(WhenFull::Wait(Duration::from_secs(10)))
        .build()
        .unwrap();
    let db = SharedDb::default();
    let write = tokio::spawn(async move { waiting.set(&3, 3).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!write.is_finished(), "the write waits while the backlog is full");
    let flusher = quick(&full, applying(&db));
    let logged = bounded("the waiting write", Duration::from_secs(10), write)
        .await
        .unwrap();
    assert!(logged.is_ok(), "{logged:?}");
    until("all four are flushed", Duration::from_secs(10), || {
        db.lock().unwrap().values.len() == 4
    })
    .await;
    flusher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_flush_is_retried_and_nothing_is_acknowledged_before_it_succeeds() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "failing");
    for id in 0..10 {
        log.add(&id, 1).await.unwrap();
    }
    let db = SharedDb::default();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (apply, tries) = (applying(&db), attempts.clone());
    let flusher = quick(&log, move |batch| {
        // The database is down for the first three attempts.
        let failed = tries.fetch_add(1, SeqCst) < 3;
        let applied = (!failed).then(|| apply(batch));
        async move {
            match applied {
                Some(applied) => applied.await,
                None => Err("the database is down".to_owned()),
            }
        }
    });
    until("the fourth attempt succeeds", Duration::from_secs(10), || {
        log.stats().batches == 1
    })
    .await;
    flusher.stop().await;
    let stats = log.stats();
    // One batch, delivered again after its first failure.
    assert_eq!((stats.flush_errors, stats.redelivered), (3, 1), "{stats:?}");
    assert_eq!(attempts.load(SeqCst), 4);
    assert_eq!(db.lock().unwrap().counters.values().sum::<i64>(), 10);
    assert_eq!(log.backlog().await.unwrap(), 0);
}

/// How a flush function may hold a batch for a test: parked before or after
/// applying it, until the test kills its flusher.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hang {
    BeforeApplying,
    AfterApplying,
}

/// What a flush function of these tests returns, when it may never finish.
type Flushing = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A flush function that applies to `db`, except that the batch that finds
/// `hang` set takes it, says so on `held`, and never returns.
fn hanging(
    db: &SharedDb,
    hang: &Arc<Mutex<Option<Hang>>>,
    held: tokio::sync::mpsc::UnboundedSender<(usize, Version)>,
    flusher: usize,
) -> impl Fn(Batch<u64, u64>) -> Flushing + Send + Sync + 'static {
    let (db, hang) = (db.clone(), hang.clone());
    move |batch| {
        let taken = hang.lock().unwrap().take();
        if taken == Some(Hang::AfterApplying) {
            db.lock().unwrap().apply(&batch);
        }
        if taken.is_some() {
            let _ = held.send((flusher, batch.id()));
            return Box::pin(std::future::pending());
        }
        db.lock().unwrap().apply(&batch);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_flushers_batch_is_taken_over_whole_with_its_id() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "takeover");
    let db = SharedDb::default();
    for hang in [Hang::BeforeApplying, Hang::AfterApplying] {
        let before = db.lock().unwrap().counters.values().sum::<i64>();
        for id in 0..20 {
            log.add(&id, 1).await.unwrap();
        }
        let slot = Arc::new(Mutex::new(Some(hang)));
        let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
        let dying = quick(&log, hanging(&db, &slot, held_tx.clone(), 0));
        let (_, id) = bounded("a batch is held", Duration::from_secs(10), held.recv())
            .await
            .unwrap();
        drop(dying); // as if its process died mid-batch

        // Another flusher takes the batch over once it is idle, whole.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (apply, got) = (applying(&db), seen.clone());
        let heir = quick(&log, move |batch| {
            got.lock()
                .unwrap()
                .push((batch.id(), batch.redelivered(), batch.changes()));
            apply(batch)
        });
        until("the heir flushes it", Duration::from_secs(10), || {
            !seen.lock().unwrap().is_empty()
        })
        .await;
        heir.stop().await;
        assert_eq!(seen.lock().unwrap()[0], (id, true, 20), "{hang:?}");
        let total = db.lock().unwrap().counters.values().sum::<i64>();
        assert_eq!(total - before, 20, "{hang:?}: applied once");
        assert_eq!(log.backlog().await.unwrap(), 0);
    }
    assert_eq!(
        db.lock().unwrap().repeats,
        1,
        "the batch applied before the death was skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_flusher_flushes_its_own_batch_first() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "restart");
    for id in 0..5 {
        log.set(&id, id * 10).await.unwrap();
    }
    let db = SharedDb::default();
    let slot = Arc::new(Mutex::new(Some(Hang::BeforeApplying)));
    let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
    let first = log
        .flusher(hanging(&db, &slot, held_tx, 0))
        .consumer("worker-1")
        .claim_after(Duration::from_secs(1))
        .start()
        .unwrap();
    let (_, id) = bounded("a batch is held", Duration::from_secs(10), held.recv())
        .await
        .unwrap();
    drop(first);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (apply, got) = (applying(&db), seen.clone());
    let again = log
        .flusher(move |batch: Batch<u64, u64>| {
            got.lock().unwrap().push((batch.id(), batch.redelivered()));
            apply(batch)
        })
        .consumer("worker-1")
        .claim_after(Duration::from_secs(1))
        .start()
        .unwrap();
    // Once the dead one's lease on the name lapses (1 s), its batch first.
    until("the batch is flushed", Duration::from_secs(10), || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    again.stop().await;
    assert_eq!(seen.lock().unwrap()[0], (id, true));
    assert_eq!(db.lock().unwrap().values.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flusher_at_a_time_runs_under_a_name() {
    // Two under one name would mix their batches: the second waits.
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "named");
    let db = SharedDb::default();
    let by = |who: &'static str, seen: &Arc<Mutex<Vec<&'static str>>>| {
        let (apply, seen) = (applying(&db), seen.clone());
        move |batch: Batch<u64, u64>| {
            seen.lock().unwrap().push(who);
            apply(batch)
        }
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let named = |who| {
        log.flusher(by(who, &seen))
            .consumer("worker-1")
            .flush_every(Duration::from_millis(20))
            .poll(Duration::from_millis(10))
            .claim_after(Duration::from_millis(400))
            .start()
            .unwrap()
    };
    let first = named("first");
    log.add(&1, 1).await.unwrap();
    until("a batch is flushed", Duration::from_secs(10), || {
        log.stats().batches == 1
    })
    .await;
    let second = named("second");
    for round in 0..5 {
        log.add(&1, 1).await.unwrap();
        until("the next batch is flushed", Duration::from_secs(10), || {
            log.stats().batches == 2 + round
        })
        .await;
    }
    assert!(seen.lock().unwrap().iter().all(|who| *who == "first"), "{seen:?}");
    first.stop().await; // gives the name up
    log.add(&1, 1).await.unwrap();
    until("the second flushes", Duration::from_secs(10), || {
        seen.lock().unwrap().last() == Some(&"second")
    })
    .await;
    second.stop().await;
    assert_eq!(db.lock().unwrap().counters[&1], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_that_lands_during_a_flush_is_not_lost() {
    // Article 002 flushes with HGETALL then HDEL: an HINCRBY between the two
    // is deleted unflushed. Here, increments land while a flush runs.
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "views");
    let db = SharedDb::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (apply, entered, release) = (applying(&db), Arc::new(tokio::sync::Notify::new()), gate.clone());
    let told = entered.clone();
    let flusher = quick(&log, move |batch| {
        let (apply, release, told) = (apply.clone(), release.clone(), told.clone());
        async move {
            told.notify_one();
            let _permit = release.acquire().await;
            apply(batch).await
        }
    });
    for _ in 0..50 {
        log.add(&1, 1).await.unwrap();
    }
    bounded("a flush begins", Duration::from_secs(10), entered.notified()).await;
    for _ in 0..50 {
        log.add(&1, 1).await.unwrap(); // during the flush
    }
    gate.add_permits(1_000);
    until("all 100 are counted", Duration::from_secs(10), || {
        db.lock().unwrap().counters.get(&1) == Some(&100)
    })
    .await;
    flusher.stop().await;
    assert_eq!(log.backlog().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_writes_flow_through_one_slot() {
    let cluster = RedisCluster::shared();
    let cache = cluster.cache(&RedisCluster::namespace()).await;
    let log = log(&cache, "products");
    for id in 0..30 {
        log.set(&id, id).await.unwrap();
        log.add(&id, 2).await.unwrap();
    }
    let db = SharedDb::default();
    let flusher = quick(&log, applying(&db));
    until("everything is flushed", Duration::from_secs(10), || {
        let db = db.lock().unwrap();
        db.values.len() == 30 && db.counters.values().sum::<i64>() == 60
    })
    .await;
    flusher.stop().await;
    assert_eq!(log.backlog().await.unwrap(), 0);
}

/// What the writers had acknowledged: per record, the value with the
/// greatest version; per counter, the sum of increments.
#[derive(Debug, Default)]
struct Acknowledged {
    values: Mutex<HashMap<u64, (u64, Version)>>,
    counters: Mutex<HashMap<u64, i64>>,
    writes: AtomicU64,
    /// Writes that waited 200 ms or more: for Redis to come back.
    waited: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_through_flusher_deaths_a_failing_database_and_a_redis_restart() {
    const WRITERS: u64 = 4;
    const WRITES: u64 = 10_000;
    const RECORDS: u64 = 50;
    let mut server = RedisServer::start_durable();
    let url = server.url();
    let db = SharedDb::default();
    let acknowledged = Arc::new(Acknowledged::default());

    // Four writer instances, each with its own cache and connection.
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let cache = Cache::builder().redis(url.clone()).build().await.unwrap();
        let log = WriteBehind::<u64, u64>::builder(&cache, "faults")
            .write_timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..WRITES / WRITERS {
                let id = (n * 7 + writer) % RECORDS;
                let started = Instant::now();
                if n.is_multiple_of(2) {
                    let value = writer * 1_000_000 + n;
                    let version = log.set(&id, value).await.expect("a write is acknowledged");
                    let mut values = acknowledged.values.lock().unwrap();
                    let known = values.entry(id).or_insert((value, version));
                    if version > known.1 {
                        *known = (value, version);
                    }
                } else {
                    let delta = i64::try_from(n % 5).unwrap() + 1;
                    log.add(&id, delta).await.expect("a write is acknowledged");
                    *acknowledged.counters.lock().unwrap().entry(id).or_default() += delta;
                }
                acknowledged.writes.fetch_add(1, SeqCst);
                if started.elapsed() >= Duration::from_millis(200) {
                    acknowledged.waited.fetch_add(1, SeqCst);
                }
                if n.is_multiple_of(50) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }

    // Flushers, each on its own cache; the database fails while `down` is set.
    let flusher_cache = Cache::builder().redis(url.clone()).build().await.unwrap();
    let log = WriteBehind::<u64, u64>::new(&flusher_cache, "faults").unwrap();
    let hang = Arc::new(Mutex::new(None));
    let down = Arc::new(Mutex::new(None::<Instant>));
    let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
    let start = |index: usize| {
        let flush = hanging(&db, &hang, held_tx.clone(), index);
        let down = down.clone();
        quick(&log, move |batch| {
            let failing = down.lock().unwrap().is_some_and(|until| Instant::now() < until);
            if failing {
                return Box::pin(std::future::ready(Err("the database is down".to_owned()))) as Flushing;
            }
            flush(batch)
        })
    };
    let mut flushers: Vec<Option<Flusher>> = (0..2).map(|i| Some(start(i))).collect();
    let progress = |at_least: u64| {
        let acknowledged = acknowledged.clone();
        async move {
            until("the writers progress", Duration::from_secs(60), || {
                acknowledged.writes.load(SeqCst) >= at_least
            })
            .await;
        }
    };

    // A flusher dies before applying its batch, another after.
    for (step, fault) in [Hang::BeforeApplying, Hang::AfterApplying]
        .into_iter()
        .enumerate()
    {
        progress(1_000 * (step as u64 + 1)).await;
        *hang.lock().unwrap() = Some(fault);
        let (index, _) = bounded("a batch is held", Duration::from_secs(10), held.recv())
            .await
            .unwrap();
        flushers[index] = None;
        flushers.push(Some(start(flushers.len())));
    }
    // The database fails for 2 s.
    progress(3_500).await;
    *down.lock().unwrap() = Some(Instant::now() + Duration::from_secs(2));
    // Redis dies (SIGKILL) and restarts from its append-only file.
    progress(5_000).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();

    for writer in writers {
        bounded("a writer", Duration::from_secs(120), writer)
            .await
            .unwrap();
    }
    let expected_values: HashMap<u64, u64> = acknowledged
        .values
        .lock()
        .unwrap()
        .iter()
        .map(|(id, (value, _))| (*id, *value))
        .collect();
    let expected_counters = acknowledged.counters.lock().unwrap().clone();
    until(
        "the database holds every acknowledged write",
        Duration::from_secs(60),
        || {
            let db = db.lock().unwrap();
            let values: HashMap<u64, u64> = db.values.iter().map(|(id, (value, _))| (*id, *value)).collect();
            values == expected_values && db.counters == expected_counters
        },
    )
    .await;
    for flusher in flushers.into_iter().flatten() {
        flusher.stop().await;
    }
    assert_eq!(log.backlog().await.unwrap(), 0);
    let db = db.lock().unwrap();
    let stats = log.stats();
    eprintln!(
        "{} writes acknowledged, {} of them after waiting for Redis to restart; {} batches flushed, \
         {} delivered again, {} repeats skipped by batch id, {} failed flush attempts; counters total {}",
        acknowledged.writes.load(SeqCst),
        acknowledged.waited.load(SeqCst),
        stats.batches,
        stats.redelivered,
        db.repeats,
        stats.flush_errors,
        db.counters.values().sum::<i64>(),
    );
    assert!(stats.flush_errors > 0, "the database failed: {stats:?}");
    assert!(
        acknowledged.waited.load(SeqCst) > 0,
        "writers were writing when Redis died"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_retried_after_a_timeout_is_logged_once() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let log = log(&cache, "retried");
    log.add(&0, 1).await.unwrap(); // Redis knows the script now
                                   // Redis holds every write for 400 ms: the append times out and is sent
                                   // again, several times, while the first copies wait in Redis, and run.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("WRITE")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    let started = Instant::now();
    log.add(&1, 1).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the append was held"
    );
    assert_eq!(
        log.backlog().await.unwrap(),
        2,
        "one entry each, however many times sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_flush_keeps_its_batch_while_its_flusher_lives() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "slow");
    for id in 0..10 {
        log.add(&id, 1).await.unwrap();
    }
    let db = SharedDb::default();
    let slow = |db: &SharedDb| {
        let apply = applying(db);
        move |batch: Batch<u64, u64>| {
            let apply = apply.clone();
            async move {
                // Three times claim_after: renewed meanwhile, never idle.
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                apply(batch).await
            }
        }
    };
    let flushers = [quick(&log, slow(&db)), quick(&log, slow(&db))];
    until("the batch is flushed", Duration::from_secs(10), || {
        log.stats().batches == 1
    })
    .await;
    for flusher in flushers {
        flusher.stop().await;
    }
    let stats = log.stats();
    assert_eq!(
        (stats.redelivered, db.lock().unwrap().repeats),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(db.lock().unwrap().counters.values().sum::<i64>(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flusher_goes_on_after_redis_restarts_empty() {
    // Without persistence, a restart loses the log and its group, and the
    // batch a flusher held with them: the flusher must not wait for it.
    let mut server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "volatile");
    let db = SharedDb::default();
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (apply, fails) = (applying(&db), failing.clone());
    let flusher = quick(&log, move |batch| {
        let fail = fails.load(SeqCst);
        let applied = (!fail).then(|| apply(batch));
        async move {
            match applied {
                Some(applied) => applied.await,
                None => Err("the database is down".to_owned()),
            }
        }
    });
    for id in 0..5 {
        log.set(&id, id).await.unwrap();
    }
    until("a flush fails", Duration::from_secs(10), || {
        log.stats().flush_errors > 0
    })
    .await;
    server.kill();
    server.restart();
    failing.store(false, SeqCst);
    for id in 5..10 {
        log.set(&id, id).await.unwrap();
    }
    until(
        "the writes after the restart are flushed",
        Duration::from_secs(20),
        || {
            let db = db.lock().unwrap();
            (5..10).all(|id| db.values.contains_key(&id))
        },
    )
    .await;
    flusher.stop().await;
    assert_eq!(log.backlog().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_delivered_unseen_join_the_batch() {
    // A read whose reply is lost (a timeout, a dropped connection) delivers
    // entries the flusher never saw: they are its pending entries all the
    // same, and must be flushed with its batch, not left behind it.
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = log(&cache, "unseen");
    let db = SharedDb::default();
    let flusher = log
        .flusher(applying(&db))
        .consumer("w")
        .flush_every(Duration::from_millis(1_500))
        .poll(Duration::from_millis(10))
        .start()
        .unwrap();
    for id in 0..3 {
        log.add(&id, 1).await.unwrap();
    }
    let mut raw = server.raw().await;
    let stream = "aside#wb:{unseen}";
    let pending = || {
        let mut raw = raw.clone();
        async move {
            let summary: (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
                .arg(stream)
                .arg("aside")
                .query_async(&mut raw)
                .await
                .unwrap();
            summary.0
        }
    };
    bounded("the flusher holds 3", Duration::from_secs(10), async {
        while pending().await < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Two more, delivered to it in the same script: it cannot see them.
    let _: redis::Value = redis::cmd("EVAL")
        .arg(
            "for id = 3, 4 do redis.call('XADD', KEYS[1], '*', 'k', id, 'op', 'add', 'v', 1) end \
             return redis.call('XREADGROUP', 'GROUP', 'aside', 'w', 'COUNT', 10, 'STREAMS', KEYS[1], '>')",
        )
        .arg(1)
        .arg(stream)
        .query_async(&mut raw)
        .await
        .unwrap();
    until("all five are flushed", Duration::from_secs(10), || {
        db.lock().unwrap().counters.values().sum::<i64>() == 5
    })
    .await;
    flusher.stop().await;
    assert_eq!(log.backlog().await.unwrap(), 0);
    assert_eq!(log.stats().batches, 1, "one batch, with the two it did not see");
}

/// The database behind `price`: what the flushes wrote.
static PRICES: Mutex<Vec<(u64, u32)>> = Mutex::new(Vec::new());

#[aside::cached(cache = cache, key = "price:<id>", ttl = "1h")]
async fn price(cache: &Cache, id: u64) -> Option<u32> {
    let prices = PRICES.lock().unwrap();
    Some(
        prices
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map_or(100, |(_, p)| *p),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_loaded_before_its_flush_does_not_outlive_it() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let prices = WriteBehind::<u64, u32>::builder(&cache, "prices")
        .cached(|id| aside::entry!(price(*id)))
        .build()
        .unwrap();
    prices.set(&7, 120).await.unwrap();
    assert_eq!(price(&cache, 7).await, Some(120), "read at once");
    // The entry is evicted before the flush: a read loads the database's
    // older value, and caches it for the TTL.
    aside::entry!(price(7)).invalidate(&cache).await.unwrap();
    assert_eq!(price(&cache, 7).await, Some(100));
    // The flush invalidates it: the next read loads the flushed value.
    let flusher = prices
        .flusher(|batch: Batch<u64, u32>| {
            let mut db = PRICES.lock().unwrap();
            db.extend(batch.values().iter().map(|w| (w.id, w.value)));
            std::future::ready(Ok::<_, Infallible>(()))
        })
        .flush_every(Duration::from_millis(20))
        .start()
        .unwrap();
    until("the batch is flushed", Duration::from_secs(10), || {
        prices.stats().batches == 1
    })
    .await;
    flusher.stop().await;
    assert_eq!(
        price(&cache, 7).await,
        Some(120),
        "not the value loaded before the flush"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_redis_refuses_fails_at_once() {
    // Another program took the log's name for a string: retrying cannot help.
    let server = RedisServer::start();
    let cache = server.cache().await;
    let log = WriteBehind::<u64, u64>::builder(&cache, "taken")
        .write_timeout(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("aside#wb:{taken}")
        .arg("not a stream")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    // Retried, it would take the write timeout: an hour.
    let refused = bounded("a refused write", Duration::from_secs(30), log.add(&1, 1)).await;
    assert!(matches!(refused, Err(Error::Backend(_))), "{refused:?}");
}

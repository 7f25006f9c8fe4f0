//! Outages lose nothing: an invalidation that meets a hung or restarted
//! Redis is kept and replayed once Redis answers again, so that no read in
//! any process returns a value loaded before the write, later than the
//! replay takes (aim: 1 s after Redis answers again), and none at all in the
//! writer's own process.
//!
//! The scene (issue 27): three caches on one redis-server ("three
//! processes"), 20 items cached for an hour with a tag `item:<id>`, and an
//! `#[invalidate]` writer that updates the database, then invalidates the
//! tag. During an outage, 10 writes go through cache 0. Once Redis answers
//! again, every cache reads the 10 written items for 3 s.

use crate::support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aside::{Cache, L1};
use support::{bounded, RedisServer};
use tokio::time::Instant;

/// The database: each item's version.
struct Db {
    versions: Vec<AtomicU64>,
}

impl Db {
    fn new(items: usize) -> Arc<Db> {
        Arc::new(Db {
            versions: (0..items).map(|_| AtomicU64::new(0)).collect(),
        })
    }
}

#[aside::cached(cache = cache, key = "item:<id>", ttl = "1h", tags = ["item:<id>"])]
async fn item(cache: &Cache, db: &Db, id: usize) -> u64 {
    db.versions[id].load(SeqCst)
}

#[aside::invalidate(cache = cache, tags = ["item:<id>"])]
async fn update(cache: &Cache, db: &Db, id: usize) -> Result<(), Infallible> {
    db.versions[id].fetch_add(1, SeqCst);
    Ok(())
}

const ITEMS: usize = 20;
const WRITES: usize = 10;
/// How long after Redis answers again a read may still return an old value.
const REPLAY_BOUND: Duration = Duration::from_secs(1);
/// How long the readers read once Redis answers again.
const READING: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGSTOP for 3 s, then SIGCONT: what was sent meanwhile sits in the
    /// socket, and is applied at SIGCONT (or not).
    Hang,
    /// SIGKILL, then a restart with the data of its append-only file: the
    /// old entries are back, the invalidations that failed are not.
    Restart,
}

/// What the readers saw.
#[derive(Debug)]
struct Seen {
    reads: u64,
    /// Reads of an old value (begun after its write had returned).
    old: u64,
    /// Of those, the ones begun later than [`REPLAY_BOUND`] after Redis answered again.
    old_late: u64,
    /// The last old read's start, after Redis answered again.
    last_old: Option<Duration>,
    /// Old reads by cache 0, the writer's own process.
    old_in_writer: u64,
}

async fn cache_on(server: &RedisServer, tier: bool, replay: bool) -> Cache {
    let builder = Cache::builder().redis(server.url());
    let builder = if tier { builder.l1(L1::default()) } else { builder };
    let builder = if replay { builder } else { builder.max_pending(0) };
    builder.build().await.expect("connect to the test redis-server")
}

/// Runs the scene with `outage`; `tier`: each cache has an in-process tier;
/// `replay`: the writer's cache keeps failed invalidations for replay.
async fn scene(outage: Outage, tier: bool, replay: bool) -> Seen {
    let mut server = match outage {
        Outage::Hang => RedisServer::start(),
        Outage::Restart => RedisServer::start_durable(),
    };
    let mut caches = Vec::new();
    for _ in 0..3 {
        caches.push(cache_on(&server, tier, replay).await);
    }
    let db = Db::new(ITEMS);
    for cache in &caches {
        for id in 0..ITEMS {
            item(cache, &db, id).await;
        }
    }
    assert_eq!(
        caches[1].stats().hits,
        ITEMS as u64,
        "warm: {:?}",
        caches[1].stats()
    );

    let began = Instant::now();
    match outage {
        Outage::Hang => server.signal("STOP"),
        Outage::Restart => server.kill(),
    }
    // The writes: each returns its own result, within a bounded delay.
    for id in 0..WRITES {
        bounded(
            "a write during the outage",
            Duration::from_secs(2),
            update(&caches[0], &db, id),
        )
        .await
        .unwrap();
    }
    // Written: from here on, version 0 of items 0..WRITES is old.
    let written = Instant::now();
    let writer = caches[0].stats();
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(began.elapsed())).await;
    match outage {
        Outage::Hang => server.signal("CONT"),
        Outage::Restart => server.restart(),
    }
    let back = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..6)
        .map(|reader| {
            let (cache, db, stop) = (caches[reader % 3].clone(), db.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = Vec::new();
                while !stop.load(SeqCst) {
                    for id in 0..WRITES {
                        let started = Instant::now();
                        let version = item(&cache, &db, id).await;
                        reads.push((reader % 3, started, version));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                reads
            })
        })
        .collect();
    tokio::time::sleep(READING).await;
    stop.store(true, SeqCst);
    let mut seen = Seen {
        reads: 0,
        old: 0,
        old_late: 0,
        last_old: None,
        old_in_writer: 0,
    };
    for reader in readers {
        for (cache, started, version) in reader.await.unwrap() {
            seen.reads += 1;
            if version > 0 || started < written {
                continue;
            }
            seen.old += 1;
            let after = started.saturating_duration_since(back);
            seen.last_old = seen.last_old.max(Some(after));
            if after > REPLAY_BOUND {
                seen.old_late += 1;
            }
            if cache == 0 {
                seen.old_in_writer += 1;
            }
        }
    }
    let stats = caches[0].stats();
    println!(
        "{outage:?}, tier {tier}, replay {replay}: {} of {} reads old ({:.1} %), {} later than {REPLAY_BOUND:?} after Redis was back, \
         last at {:?}; {} in the writer's process; writer: {} pending after the writes, {} replayed, {} pending now",
        seen.old,
        seen.reads,
        100.0 * seen.old as f64 / seen.reads.max(1) as f64,
        seen.old_late,
        seen.last_old,
        seen.old_in_writer,
        writer.pending,
        stats.replayed,
        stats.pending,
    );
    if replay {
        assert!(writer.pending > 0, "the outage was seen: {writer:?}");
        assert_eq!(stats.pending, 0, "everything replayed: {stats:?}");
    }
    seen
}

fn assert_nothing_lost(seen: Seen) {
    assert_eq!(
        seen.old_late, 0,
        "reads of an old value later than {REPLAY_BOUND:?} after Redis answered again: {seen:?}"
    );
    assert_eq!(
        seen.old_in_writer, 0,
        "the writer's own process read an old value: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_loses_no_invalidation() {
    assert_nothing_lost(scene(Outage::Hang, false, true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_loses_no_invalidation_with_in_process_tiers() {
    assert_nothing_lost(scene(Outage::Hang, true, true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_loses_no_invalidation() {
    assert_nothing_lost(scene(Outage::Restart, false, true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_loses_no_invalidation_with_in_process_tiers() {
    assert_nothing_lost(scene(Outage::Restart, true, true).await);
}

/// The negative control: the same scene without replay (`max_pending(0)`)
/// serves old values for as long as the readers read (the entries live for
/// an hour), so the check above can tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replay_a_restarted_redis_serves_old_values_until_their_ttl() {
    let seen = scene(Outage::Restart, false, false).await;
    assert!(seen.old_late > 0, "{seen:?}");
}

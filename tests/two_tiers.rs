//! The typed in-process tier in front of Redis: hits that stay in process,
//! and the coherence guarantees the README gives, each against a real
//! `redis-server`.

mod support;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::{Cache, Policy, L1};
use support::{bounded, RedisServer};
use tokio::time::Instant;

/// How long another process's change may take to reach an in-process tier.
/// A push crosses loopback in well under a millisecond; the margin is for a
/// 2-core machine whose cores are both busy.
const PROPAGATION_BOUND: Duration = Duration::from_millis(100);

async fn tiered(server: &RedisServer) -> Cache {
    server.cache_of(support::Kind::Tiered).await
}

/// Reads `key` until the in-process tier answers with a copy that no push of
/// this cache's own write can still drop; bounded. (Call it on a key no
/// other cache writes meanwhile, right after that key's last write, if any,
/// was made through `settle` itself.)
///
/// The copy a load fills is dropped when the push of the load's own write
/// arrives, at a time no test controls. A read answered by Redis after that
/// load shows the push was handled (the copy it dropped is gone), and the
/// copy that read filled depends on nothing written since.
async fn settle(cache: &Cache, key: &str, policy: &Policy) {
    bounded("a stable copy in process", Duration::from_secs(5), async {
        let mut own_write_pending = false;
        loop {
            let before = cache.stats();
            let _: u64 = cache
                .get_or_load(key, policy, || async { Ok::<_, io::Error>(1) })
                .await
                .unwrap();
            let read = cache.stats().since(&before);
            if read.loads > 0 {
                own_write_pending = true;
            } else if read.l1_hits == 0 {
                own_write_pending = false;
            } else if !own_write_pending {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_stay_in_process() {
    let server = RedisServer::start();
    let cache = tiered(&server).await;
    let policy = Policy::new().tag("category:7");
    settle(&cache, "product:1", &policy).await;

    let (before, calls_before) = (cache.stats(), server.command_calls().await);
    for _ in 0..100 {
        let value: u64 = cache
            .get_or_load("product:1", &policy, || async {
                Err(io::Error::other("not called"))
            })
            .await
            .unwrap();
        assert_eq!(value, 1);
    }
    let (stats, calls) = (cache.stats().since(&before), server.command_calls().await);
    assert_eq!((stats.hits, stats.l1_hits, stats.misses), (100, 100, 0));
    let reads = |calls: &[(String, u64)]| {
        calls
            .iter()
            .filter(|(name, _)| name == "get" || name == "mget")
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert_eq!(reads(&calls), reads(&calls_before), "no read reached Redis");

    // A policy that opts out reads Redis every time.
    let direct = policy.clone().l1(false);
    let before = cache.stats();
    let _: u64 = cache
        .get_or_load("product:1", &direct, || async { Ok::<_, io::Error>(2) })
        .await
        .unwrap();
    assert_eq!(cache.stats().since(&before).l1_hits, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_are_seen_at_once() {
    let server = RedisServer::start();
    let cache = tiered(&server).await;
    let policy = Policy::new().tag("category:7");
    settle(&cache, "product:1", &policy).await;
    let load = |v: u64| move || async move { Ok::<_, io::Error>(v) };

    cache.invalidate("product:1").await.unwrap();
    assert_eq!(cache.get_or_load("product:1", &policy, load(2)).await.unwrap(), 2);
    settle(&cache, "product:1", &policy).await;
    cache.invalidate_tag("category:7").await.unwrap();
    assert_eq!(cache.get_or_load("product:1", &policy, load(3)).await.unwrap(), 3);
    settle(&cache, "product:1", &policy).await;
    let put: io::Result<u64> = cache.put("product:1", &policy, load(4)).await;
    assert_eq!(put.unwrap(), 4);
    assert_eq!(cache.get_or_load("product:1", &policy, load(5)).await.unwrap(), 4);
}

/// What one read saw: when it started, and the version it returned.
struct Read {
    started: Instant,
    version: u64,
}

/// When each version's invalidation had returned: `done[v]` for version v.
struct Writes {
    done: Mutex<Vec<Instant>>,
}

/// Readers on `instances` (8 tasks each, 32 in all) read one tagged key while
/// a writer bumps the version in the "database" and invalidates the tag,
/// `writes` times. With `disrupt`, runs it once the writes are half done.
/// Returns each stale read's lag: how long after the invalidation it missed
/// had returned the read started.
async fn propagation(
    server: &RedisServer,
    writes: u64,
    disrupt: impl std::future::Future<Output = ()>,
) -> (Vec<Duration>, Vec<Cache>) {
    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(tiered(server).await);
    }
    let writer = tiered(server).await;
    let policy = Policy::new().ttl(Duration::from_secs(3600)).tag("category:7");
    let database = Arc::new(AtomicU64::new(0));
    let writes_done = Arc::new(Writes {
        done: Mutex::new(vec![Instant::now()]),
    });
    let stop = Arc::new(AtomicBool::new(false));
    for cache in &instances {
        settle(cache, "product:1", &policy).await;
    }

    let readers: Vec<_> = (0..32)
        .map(|i| {
            let cache = instances[i % instances.len()].clone();
            let (policy, database, stop) = (policy.clone(), database.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = Vec::new();
                while !stop.load(SeqCst) {
                    let started = Instant::now();
                    let database = database.clone();
                    let version: u64 = cache
                        .get_or_load("product:1", &policy, || async move {
                            Ok::<_, io::Error>(database.load(SeqCst))
                        })
                        .await
                        .unwrap();
                    reads.push(Read { started, version });
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();

    let writing = {
        let (database, writes_done) = (database.clone(), writes_done.clone());
        async move {
            for version in 1..=writes {
                database.store(version, SeqCst);
                writer.invalidate_tag("category:7").await.unwrap();
                writes_done.done.lock().unwrap().push(Instant::now());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let disrupting = async {
        tokio::time::sleep(Duration::from_millis(5 * writes / 2)).await;
        disrupt.await;
    };
    tokio::join!(writing, disrupting);
    // Let the readers see the last write.
    tokio::time::sleep(PROPAGATION_BOUND).await;
    stop.store(true, SeqCst);

    let done = writes_done.done.lock().unwrap().clone();
    let mut lags = Vec::new();
    for reader in readers {
        for read in reader.await.unwrap() {
            // The newest write whose invalidation had returned when the read began.
            let newest = done.partition_point(|&at| at <= read.started) as u64 - 1;
            if read.version < newest {
                lags.push(read.started - done[read.version as usize + 1]);
            }
        }
    }
    lags.sort();
    (lags, instances)
}

fn report(what: &str, lags: &[Duration]) {
    let at = |q: f64| lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1)));
    println!(
        "{what}: {} stale reads; lag p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        at(0.5),
        at(0.99),
        lags.last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_change_reaches_every_tier_within_the_bound() {
    let server = RedisServer::start();
    let (lags, instances) = propagation(&server, 100, async {}).await;
    report("propagation", &lags);
    let late = lags.iter().filter(|&&lag| lag > PROPAGATION_BOUND).count();
    assert_eq!(late, 0, "reads stale past {PROPAGATION_BOUND:?}: {lags:?}");
    // The tier did answer most reads in between.
    let l1_hits: u64 = instances.iter().map(|c| c.stats().l1_hits).sum();
    assert!(l1_hits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracking_connection_serves_nothing_stale() {
    let server = RedisServer::start();
    let kill = async {
        let mut raw = server.raw().await;
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut raw)
            .await
            .unwrap();
        // The tracking connections are the ones with the `t` flag.
        let ids: Vec<&str> = clients
            .lines()
            .filter(|line| {
                line.split(' ')
                    .any(|f| f.starts_with("flags=") && f.contains('t'))
            })
            .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
            .collect();
        assert_eq!(
            ids.len(),
            5,
            "four readers' and the writer's tracking connections"
        );
        for id in ids {
            let _: () = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
    };
    let (lags, instances) = propagation(&server, 100, kill).await;
    report("tracking killed midway", &lags);
    let late = lags.iter().filter(|&&lag| lag > PROPAGATION_BOUND).count();
    assert_eq!(late, 0, "reads stale past {PROPAGATION_BOUND:?}: {lags:?}");
    // Tracking came back: the tier answers again.
    for cache in &instances {
        settle(
            cache,
            "product:1",
            &Policy::new().ttl(Duration::from_secs(3600)).tag("category:7"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_empties_every_tier() {
    let server = RedisServer::start();
    let (a, b) = (tiered(&server).await, tiered(&server).await);
    let policy = Policy::new();
    settle(&a, "k", &policy).await;
    settle(&b, "k", &policy).await;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    for cache in [&a, &b] {
        let reloaded = async {
            while cache
                .get_or_load("k", &policy, || async { Ok::<u64, io::Error>(2) })
                .await
                .unwrap()
                != 2
            {
                tokio::task::yield_now().await;
            }
        };
        bounded("the flush reaching a tier", PROPAGATION_BOUND * 10, reloaded).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_never_comes_back_as_another_type() {
    for cache in [Cache::memory(), tiered(&RedisServer::start()).await] {
        let policy = Policy::new();
        let number: u64 = cache
            .get_or_load("k", &policy, || async { Ok::<_, io::Error>(7) })
            .await
            .unwrap();
        assert_eq!(number, 7);
        // Another type at the same key: never the u64, whatever the tier holds.
        let text: String = cache
            .get_or_load("k", &policy, || async { Ok::<_, io::Error>("seven".to_owned()) })
            .await
            .unwrap();
        assert_eq!(text, "seven");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hits_come_from_the_typed_tier() {
    let cache = Cache::builder().l1(L1::entries(100)).build().await.unwrap();
    let policy = Policy::new();
    let _: String = cache
        .get_or_load("k", &policy, || async { Ok::<_, io::Error>("v".into()) })
        .await
        .unwrap();
    let before = cache.stats();
    for _ in 0..10 {
        let _: String = cache
            .get_or_load("k", &policy, || async { Err(io::Error::other("not called")) })
            .await
            .unwrap();
    }
    let stats = cache.stats().since(&before);
    assert_eq!((stats.hits, stats.l1_hits), (10, 10));
    // Without the tier, hits decode from the backend.
    let plain = Cache::builder().no_l1().build().await.unwrap();
    let _: String = plain
        .get_or_load("k", &policy, || async { Ok::<_, io::Error>("v".into()) })
        .await
        .unwrap();
    let _: String = plain
        .get_or_load("k", &policy, || async { Ok::<_, io::Error>("v".into()) })
        .await
        .unwrap();
    assert_eq!((plain.stats().hits, plain.stats().l1_hits), (1, 0));
}

mod by_attribute {
    use super::*;

    #[aside::cached(cache = cache, key = "direct:<id>", l1 = false)]
    async fn direct(cache: &Cache, id: u64) -> u64 {
        id
    }

    #[aside::cached(cache = cache, key = "brief:<id>", ttl = "1h", l1 = "300ms")]
    async fn brief(cache: &Cache, id: u64) -> u64 {
        id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn l1_false_reads_redis_and_a_duration_caps_the_tier() {
        let server = RedisServer::start();
        let cache = tiered(&server).await;
        for _ in 0..3 {
            direct(&cache, 1).await;
        }
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.l1_hits), (2, 0));

        let answered = async {
            while cache.stats().l1_hits == 0 {
                brief(&cache, 1).await;
                tokio::task::yield_now().await;
            }
        };
        bounded("a read answered in process", Duration::from_secs(5), answered).await;
        // Past 300 ms the tier lets go; Redis still has the value (1 h). A
        // sleep here is the TTL passing, not a wait for another task.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let before = cache.stats();
        brief(&cache, 1).await;
        let stats = cache.stats().since(&before);
        assert_eq!((stats.hits, stats.l1_hits, stats.loads), (1, 0, 0));
    }

    /// The in-memory cache's tier is its only store: `l1 = false` cannot
    /// take a function off it, and a shorter tier TTL is a shorter TTL.
    #[tokio::test(start_paused = true)]
    async fn in_memory_the_tier_is_the_store() {
        let cache = Cache::memory();
        for _ in 0..3 {
            direct(&cache, 1).await;
        }
        assert_eq!(cache.stats().l1_hits, 2);
        brief(&cache, 1).await;
        tokio::time::advance(Duration::from_millis(350)).await;
        let before = cache.stats();
        brief(&cache, 1).await;
        assert_eq!(cache.stats().since(&before).loads, 1);
    }
}

/// The in-memory cache keeps no encoded copy: `set`, `get`, `put` and
/// `get_or_load` all meet in the typed tier.
#[tokio::test(start_paused = true)]
async fn in_memory_set_get_and_loads_share_the_tier() {
    let cache = Cache::memory();
    let policy = Policy::new();
    cache.set("greeting", "hello", None).await.unwrap();
    let read: String = cache
        .get_or_load("greeting", &policy, || async {
            Err(io::Error::other("not called"))
        })
        .await
        .unwrap();
    assert_eq!(
        read, "hello",
        "a value set is a hit, decoded as the reader's type"
    );
    let again: String = cache
        .get_or_load("greeting", &policy, || async {
            Err(io::Error::other("not called"))
        })
        .await
        .unwrap();
    assert_eq!((again.as_str(), cache.stats().l1_hits), ("hello", 2));

    let loaded: Vec<u32> = cache
        .get_or_load("list", &policy, || async { Ok::<_, io::Error>(vec![1, 2]) })
        .await
        .unwrap();
    assert_eq!(
        cache.get::<Vec<u64>>("list").await.unwrap(),
        Some(vec![1, 2]),
        "get reads any type, as Redis does"
    );
    assert_eq!(loaded, vec![1, 2]);

    let put: io::Result<u32> = cache.put("n", &policy, || async { Ok(5) }).await;
    assert_eq!(put.unwrap(), 5);
    let n: u32 = cache
        .get_or_load("n", &policy, || async { Err(io::Error::other("not called")) })
        .await
        .unwrap();
    assert_eq!(n, 5);
    cache.invalidate("n").await.unwrap();
    assert_eq!(cache.get::<u32>("n").await.unwrap(), None);
}

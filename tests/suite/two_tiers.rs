//! The typed in-process tier in front of Redis: hits that stay in process,
//! and the coherence guarantees the README gives, each against a real
//! `redis-server`.

use crate::support;

use std::io;
use std::time::Duration;

use aside::{Cache, Policy, L1};
use support::coherence::{assert_within_bound, propagation, report, settle, KEY, PROPAGATION_BOUND};
use support::{bounded, RedisCluster, RedisServer};

async fn tiered(server: &RedisServer) -> Cache {
    server.cache_of(support::Kind::Tiered).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_change_reaches_every_tier_within_the_bound() {
    let server = RedisServer::start();
    let tags = ["category:7".to_owned()];
    let (lags, instances) = propagation(|| tiered(&server), &tags, 100, async {}).await;
    report("propagation", &lags);
    assert_within_bound(&lags);
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
    let tags = ["category:7".to_owned()];
    let (lags, instances) = propagation(|| tiered(&server), &tags, 100, kill).await;
    report("tracking killed midway", &lags);
    assert_within_bound(&lags);
    // Tracking came back: the tier answers again.
    for cache in &instances {
        settle(cache, KEY, &support::coherence::policy(&tags)).await;
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

/// A hit the tier answers alone counts once: in `hits` and `l1_hits` (and
/// `negative_hits` for a cached `None`), however the cache keeps the count.
/// A hit that makes a refresh due is a hit, not an `l1_hits`: the tier did
/// not answer it alone.
#[tokio::test(start_paused = true)]
async fn an_in_process_hit_counts_once() {
    let cache = Cache::memory();
    let hour = Policy::new().ttl(Duration::from_secs(3600));
    let absent = || async { Ok::<Option<u64>, io::Error>(None) };
    assert_eq!(cache.get_or_load("absent", &hour, absent).await.unwrap(), None);
    let before = cache.stats();
    for _ in 0..2 {
        assert_eq!(cache.get_or_load("absent", &hour, absent).await.unwrap(), None);
    }
    let stats = cache.stats().since(&before);
    assert_eq!(
        (stats.hits, stats.negative_hits, stats.l1_hits, stats.misses),
        (2, 2, 2, 0),
        "{stats:?}"
    );

    // So large a beta makes every read of a value that took time to load
    // refresh it.
    let eager = hour.clone().stampede(aside::Stampede::Early { beta: 1e12 });
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<u64, io::Error>(7)
    };
    assert_eq!(cache.get_or_load("due", &eager, slow).await.unwrap(), 7);
    let before = cache.stats();
    assert_eq!(cache.get_or_load("due", &eager, slow).await.unwrap(), 7);
    let stats = cache.stats().since(&before);
    assert_eq!(
        (stats.hits, stats.l1_hits, stats.refreshes),
        (1, 0, 1),
        "{stats:?}"
    );
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

    /// `l1 = "300ms"` on a cache built without a tier does nothing, and
    /// says so once, naming the function.
    #[tokio::test]
    async fn an_l1_duration_without_a_tier_is_said_once() {
        let server = RedisServer::start();
        let cache = server.cache().await;
        let logs = support::logs::Logs::default();
        {
            let _logging = logs.capture();
            for id in 0..3 {
                brief(&cache, id).await;
            }
        }
        let said = logs.text();
        let warnings: Vec<&str> = said.lines().filter(|line| line.contains("has none")).collect();
        assert_eq!(warnings.len(), 1, "{said}");
        assert!(warnings[0].contains("two_tiers::by_attribute::brief"), "{said}");
        assert_eq!(cache.stats().l1_hits, 0);
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

/// Over a Redis Cluster each master pushes the changes to its own keys: the
/// tier tracks every master, and is trusted only while all of them track.
mod cluster {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hits_stay_in_process() {
        let cluster = RedisCluster::shared();
        let namespace = RedisCluster::namespace();
        let cache = cluster.tiered_cache(&namespace).await;
        let policy = support::coherence::policy(&cluster.tags_on_masters(&namespace, None));
        settle(&cache, KEY, &policy).await;
        let before = cache.stats();
        for _ in 0..100 {
            let value: u64 = cache
                .get_or_load(KEY, &policy, || async { Err(io::Error::other("not called")) })
                .await
                .unwrap();
            assert_eq!(value, 1);
        }
        let stats = cache.stats().since(&before);
        assert_eq!((stats.hits, stats.l1_hits, stats.misses), (100, 100, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalidations_from_every_master_reach_the_tier() {
        let cluster = RedisCluster::shared();
        let namespace = RedisCluster::namespace();
        let tags = cluster.tags_on_masters(&namespace, None);
        let tiered = || cluster.tiered_cache(&namespace);
        let (lags, instances) = propagation(tiered, &tags, 150, async {}).await;
        report("propagation over a cluster", &lags);
        assert_within_bound(&lags);
        let l1_hits: u64 = instances.iter().map(|c| c.stats().l1_hits).sum();
        assert!(l1_hits > 0, "the tier answered reads in between");
    }
}

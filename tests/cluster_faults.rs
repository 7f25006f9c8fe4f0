//! Fault injection on a Redis Cluster (3 masters with a replica each, a 1 s
//! node timeout), under 32 callers over 64 keys: a master dies, slots move,
//! a master hangs; and a master dying under in-process tiers and under a
//! batch. The promise is the single node's: no call fails or returns a
//! wrong value because of the cache. On a cluster, a fault on one node also
//! leaves the others serving.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use aside::{BreakerState, Cache, CacheBuilder, L1};
use support::coherence::{assert_within_bound, policy, propagation, report, settle_within, KEY};
use support::traffic::{Traffic, KEYS};
use support::{until, RedisCluster};

/// One fault at a time: six nodes and 32 callers per fault already keep
/// both cores busy, and a cluster starved of CPU misses its own failure
/// detection (a 1 s node timeout), which is not what these tests test.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cache_on(cluster: &RedisCluster) -> Cache {
    Cache::builder()
        .redis_cluster(cluster.urls())
        .build()
        .await
        .unwrap()
}

/// The storage name of the traffic's key for `id`.
fn entry(id: u64) -> String {
    format!("aside:{{item:{id}}}")
}

/// A key of the traffic's that the master on `port` does not serve.
fn elsewhere(cluster: &RedisCluster, port: u16) -> u64 {
    (0..KEYS)
        .find(|&id| cluster.master_of(&entry(id)) != port)
        .expect("the 64 keys spread over the masters")
}

/// Waits until `cache` has `id`'s entry, as a hit, and returns how long
/// that took.
async fn until_hit(cache: &Cache, id: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if cache.get::<u64>(&format!("item:{id}")).await.ok().flatten() == Some(id * 3) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "no hit on item:{id} within {limit:?}: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_over_with_no_failed_call_and_hits_resume() {
    let _alone = ALONE.lock().await;
    let cluster = RedisCluster::start();
    let cache = cache_on(&cluster).await;
    let traffic = Traffic::start(&cache);
    traffic.run_for(Duration::from_secs(1)).await;
    let figures = traffic.seen.figures(&cache);
    assert!(cache.stats().hits > 0, "warmed up: {figures}");

    let victim = cluster.master_of(&entry(0));
    let other = elsewhere(&cluster, victim);
    cluster.node(victim).signal("KILL");
    let killed = Instant::now();
    // While the victim's slots have no master, the others serve hits.
    let other_took = until_hit(&cache, other, Duration::from_secs(1)).await;
    let resumed = until_hit(&cache, 0, Duration::from_secs(30)).await;
    traffic.run_for(Duration::from_secs(1)).await;
    let seen = traffic.stop().await;

    let figures = seen.figures(&cache);
    assert_eq!(seen.errors.load(SeqCst), 0, "{figures}");
    assert_eq!(seen.wrong.load(SeqCst), 0, "{figures}");
    assert_ne!(cluster.master_of(&entry(0)), victim, "the replica took over");
    eprintln!(
        "master killed: a key on another master hit {other_took:?} after the kill; hits on the \
         moved slots resumed {resumed:?} after it ({:?} in all); {figures}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_moving_under_load_cost_no_failed_call() {
    let _alone = ALONE.lock().await;
    let cluster = RedisCluster::start();
    let cache = cache_on(&cluster).await;
    let traffic = Traffic::start(&cache);
    traffic.run_for(Duration::from_secs(1)).await;

    // A third of the slots, with their keys, go from the master of
    // item:0 to another master, then back: the callers meet MOVED and ASK.
    let from = cluster.master_of(&entry(0));
    let to = cluster.master_of(&entry(elsewhere(&cluster, from)));
    let moving = Instant::now();
    let cluster = std::sync::Arc::new(cluster);
    let mover = cluster.clone();
    tokio::task::spawn_blocking(move || {
        mover.reshard(from, to, 5_461);
        assert_ne!(mover.master_of(&entry(0)), from, "item:0's slot moved");
        mover.reshard(to, from, 2_000);
    })
    .await
    .expect("the reshard ran");
    let moved_in = moving.elapsed();
    traffic.run_for(Duration::from_millis(500)).await;
    let seen = traffic.stop().await;

    let figures = seen.figures(&cache);
    assert_eq!(seen.errors.load(SeqCst), 0, "{figures}");
    assert_eq!(seen.wrong.load(SeqCst), 0, "{figures}");
    assert!(cache.stats().hits > 0, "{figures}");
    eprintln!("7,461 slots moved under load in {moved_in:?}; {figures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_is_skipped_by_its_own_breaker_while_the_others_serve() {
    let _alone = ALONE.lock().await;
    let cluster = RedisCluster::start();
    let cache = cache_on(&cluster).await;
    let traffic = Traffic::start(&cache);
    traffic.run_for(Duration::from_secs(1)).await;

    let hung = cluster.master_of(&entry(0));
    let other = elsewhere(&cluster, hung);
    cluster.node(hung).signal("STOP");
    until("the hung master's breaker opens", || {
        cache.stats().breaker == BreakerState::Open
    })
    .await;
    // The other masters' breakers stay closed: their keys are hits, each
    // answered in one round trip, not after a timeout.
    let mut worst_other = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let got = cache.get::<u64>(&format!("item:{other}")).await;
        worst_other = worst_other.max(started.elapsed());
        assert_eq!(got.ok().flatten(), Some(other * 3), "a hit on another master");
    }
    let short_circuited = cache.stats().short_circuited;
    cluster.node(hung).signal("CONT");
    until_hit(&cache, 0, Duration::from_secs(30)).await;
    traffic.run_for(Duration::from_millis(500)).await;
    let seen = traffic.stop().await;

    let figures = seen.figures(&cache);
    // A call waits for at most one timed-out operation, then runs its 2 ms
    // loader; the slack for a busy 2-core machine stays below a second timeout.
    let bound = 2 * CacheBuilder::DEFAULT_OP_TIMEOUT;
    assert!(seen.worst() < bound, "a call took {bound:?} or more: {figures}");
    assert!(
        worst_other < CacheBuilder::DEFAULT_OP_TIMEOUT,
        "a hit on another master took {worst_other:?}: {figures}"
    );
    assert_eq!(seen.errors.load(SeqCst), 0, "{figures}");
    assert_eq!(seen.wrong.load(SeqCst), 0, "{figures}");
    assert!(
        short_circuited > 0,
        "the open breaker skipped the node: {figures}"
    );
    eprintln!("master stopped: hits on another master took at most {worst_other:?}; {figures}");
}

/// In-process tiers over a cluster whose master dies: a tier is trusted only
/// while it tracks every master, so from the kill until the replica has
/// taken over (and tracks) the tiers are bypassed, and no read is stale
/// past the propagation bound; then they answer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_leaves_in_process_tiers_nothing_stale() {
    let _alone = ALONE.lock().await;
    let cluster = RedisCluster::start();
    // The entry's master dies. The tags live on the other two, so that no
    // invalidation is lost with it (replication is asynchronous: an
    // invalidation it had acknowledged could be undone by the failover,
    // which the README states and no cache can prevent).
    let victim = cluster.master_of(&format!("aside:{{{KEY}}}"));
    let tags = cluster.tags_on_masters("aside", Some(victim));
    let made = std::sync::Mutex::new(Vec::new());
    let tiered = || async {
        let cache = Cache::builder()
            .redis_cluster(cluster.urls())
            .l1(L1::default())
            .build()
            .await
            .unwrap();
        made.lock().unwrap().push(cache.clone());
        cache
    };
    let l1_hits = || -> u64 { made.lock().unwrap().iter().map(|c| c.stats().l1_hits).sum() };
    let took = std::sync::Mutex::new(None);
    let kill = async {
        cluster.node(victim).signal("KILL");
        let killed = Instant::now();
        poll_until("the replica takes over", Duration::from_secs(30), || {
            cluster.master_of(&format!("aside:{{{KEY}}}")) != victim
        })
        .await;
        let failed_over = killed.elapsed();
        let hits = l1_hits();
        poll_until("the tiers answer again", Duration::from_secs(30), || {
            l1_hits() > hits
        })
        .await;
        *took.lock().unwrap() = Some((failed_over, killed.elapsed()));
    };
    let (lags, instances) = propagation(tiered, &tags, 1_000, kill).await;
    report("master killed under tiered readers", &lags);
    assert_within_bound(&lags);
    for cache in &instances {
        settle_within(cache, KEY, &policy(&tags), Duration::from_secs(30)).await;
    }
    let (failed_over, answered) = took.lock().unwrap().expect("the kill ran");
    eprintln!(
        "master killed: the replica took over {failed_over:?} after the kill, and the tiers \
         answered again {answered:?} after it"
    );
}

/// Checks `condition` every 10 ms until it holds, for at most `limit`.
async fn poll_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A batch over a cluster whose master just died: the ids on the other
/// masters are hits, read in the same round trip; only the dead master's
/// are loaded (called through), and every value is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_loads_only_the_ids_of_a_dead_master() {
    let _alone = ALONE.lock().await;
    let cluster = RedisCluster::start();
    let cache = cache_on(&cluster).await;
    let ids: Vec<u64> = (0..KEYS).collect();
    let item = |id: &u64| (format!("item:{id}"), aside::Policy::new());
    let loaded = std::sync::Mutex::new(Vec::new());
    let load = |mut asked: Vec<u64>| {
        asked.sort_unstable();
        loaded.lock().unwrap().push(asked.clone());
        async move { Ok::<_, std::io::Error>(asked.into_iter().map(|id| (id, id * 3)).collect()) }
    };
    let found: std::collections::HashMap<u64, u64> =
        cache.get_or_load_batch(ids.clone(), item, load).await.unwrap();
    assert_eq!(found.len(), ids.len());
    loaded.lock().unwrap().clear();

    let victim = cluster.master_of(&entry(0));
    let on_victim: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&id| cluster.master_of(&entry(id)) == victim)
        .collect();
    cluster.node(victim).signal("KILL");
    let found = cache.get_or_load_batch(ids.clone(), item, load).await.unwrap();
    assert!(ids.iter().all(|id| found[id] == id * 3), "every value is right");
    assert_eq!(
        *loaded.lock().unwrap(),
        [on_victim],
        "only the dead master's ids were loaded"
    );
}

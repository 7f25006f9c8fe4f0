//! How fast changes reach in-process tiers, for the two-tier tests on one
//! Redis and on a cluster: readers on several tiered caches read one tagged
//! key while a writer changes the "database" and invalidates a tag.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::{Cache, Policy};
use tokio::time::Instant;

use super::bounded;

/// How long another process's change may take to reach an in-process tier.
/// A push crosses loopback in well under a millisecond; the margin is for a
/// 2-core machine whose cores are both busy.
pub const PROPAGATION_BOUND: Duration = Duration::from_millis(100);

/// The key the readers read.
pub const KEY: &str = "product:1";

/// The readers' policy: an hour's TTL (only invalidations end a copy) and
/// `tags`.
pub fn policy(tags: &[String]) -> Policy {
    tags.iter()
        .fold(Policy::new().ttl(Duration::from_secs(3600)), |policy, tag| {
            policy.tag(tag.as_str())
        })
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
pub async fn settle(cache: &Cache, key: &str, policy: &Policy) {
    settle_within(cache, key, policy, Duration::from_secs(5)).await;
}

/// [`settle`], within `limit`.
pub async fn settle_within(cache: &Cache, key: &str, policy: &Policy, limit: Duration) {
    bounded("a stable copy in process", limit, async {
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

/// What one read saw: when it started, and the version it returned.
struct Read {
    started: Instant,
    version: u64,
}

/// Readers on 4 caches from `tiered` (8 tasks each, 32 in all) read [`KEY`],
/// tagged with `tags`, while a writer (a fifth cache) bumps the version in
/// the "database" and invalidates the tags in turn, `writes` times, 5 ms
/// apart; a failed invalidation is retried until it is acknowledged. With
/// `disrupt`, runs it once the writes are half done. Returns each stale
/// read's lag (how long after the invalidation it missed had returned the
/// read started) and the readers' caches.
pub async fn propagation<F, Fut>(
    tiered: F,
    tags: &[String],
    writes: u64,
    disrupt: impl Future<Output = ()>,
) -> (Vec<Duration>, Vec<Cache>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Cache>,
{
    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(tiered().await);
    }
    let writer = tiered().await;
    let policy = policy(tags);
    let database = Arc::new(AtomicU64::new(0));
    // When each version's invalidation had returned: `done[v]` for version v.
    let done = Arc::new(Mutex::new(vec![Instant::now()]));
    let stop = Arc::new(AtomicBool::new(false));
    for cache in &instances {
        settle(cache, KEY, &policy).await;
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
                        .get_or_load(KEY, &policy, || async move {
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
        let (database, done) = (database.clone(), done.clone());
        async move {
            for version in 1..=writes {
                database.store(version, SeqCst);
                let tag = &tags[version as usize % tags.len()];
                while writer.invalidate_tag(tag).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                done.lock().unwrap().push(Instant::now());
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

    let done = done.lock().unwrap().clone();
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

/// Prints the stale reads' lags.
pub fn report(what: &str, lags: &[Duration]) {
    let at = |q: f64| lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1)));
    println!(
        "{what}: {} stale reads; lag p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        at(0.5),
        at(0.99),
        lags.last()
    );
}

/// Fails the test if a read was stale for longer than [`PROPAGATION_BOUND`].
pub fn assert_within_bound(lags: &[Duration]) {
    let late: Vec<_> = lags.iter().filter(|&&lag| lag > PROPAGATION_BOUND).collect();
    assert!(
        late.is_empty(),
        "{} of {} stale reads were stale past {PROPAGATION_BOUND:?}, up to {:?}",
        late.len(),
        lags.len(),
        late.last()
    );
}

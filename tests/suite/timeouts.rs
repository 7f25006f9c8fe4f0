//! `hard_timeout`: a load that takes too long gives up with the function's
//! own error, caches nothing, and leaves no lock behind.

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use aside::Cache;
use support::redis_server::RedisServer;

#[derive(Debug, PartialEq)]
enum DbError {
    TimedOut(Duration),
}

impl From<aside::Timeout> for DbError {
    fn from(timeout: aside::Timeout) -> Self {
        DbError::TimedOut(timeout.after)
    }
}

/// How long the next load of `report` takes.
static DELAY_MS: AtomicU64 = AtomicU64::new(0);
static LOADS: AtomicU64 = AtomicU64::new(0);

#[aside::cached(key = "report:<id>", ttl = "1h", hard_timeout = "1s")]
async fn report(id: u64) -> Result<String, DbError> {
    LOADS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(DELAY_MS.load(SeqCst))).await;
    Ok(format!("report {id}"))
}

#[tokio::test(start_paused = true)]
async fn a_load_past_its_hard_timeout_returns_the_functions_error_at_the_timeout() {
    aside::with_global(Cache::memory(), async {
        DELAY_MS.store(60_000, SeqCst);
        let started = tokio::time::Instant::now();
        assert_eq!(report(1).await, Err(DbError::TimedOut(Duration::from_secs(1))));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "given up at the timeout, on the paused clock"
        );
        // Nothing was cached: the next call loads, in time now.
        DELAY_MS.store(10, SeqCst);
        assert_eq!(report(1).await.unwrap(), "report 1");
        assert_eq!(report(1).await.unwrap(), "report 1");
        assert_eq!(LOADS.load(SeqCst), 2);
    })
    .await;
    let stats = aside::stats::function_stats()
        .into_iter()
        .find(|f| f.name == "suite::timeouts::report")
        .unwrap();
    assert_eq!(
        (stats.timeouts, stats.load_errors, stats.loads),
        (1, 1, 2),
        "{stats:?}"
    );
}

#[aside::cached(
    key = "slow:<id>",
    hard_timeout = "200ms",
    lock_ttl = "30s",
    lock_wait = "30s"
)]
async fn slow(id: u64, delay: Duration) -> Result<u64, DbError> {
    tokio::time::sleep(delay).await;
    Ok(id)
}

/// On Redis, under `stampede = "lock"`: the timed-out caller releases its
/// lock, so the next caller loads at once instead of waiting `lock_ttl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_load_leaves_no_lock_behind() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    aside::with_global(cache.clone(), async {
        let started = std::time::Instant::now();
        assert_eq!(
            slow(7, Duration::from_secs(10)).await,
            Err(DbError::TimedOut(Duration::from_millis(200)))
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let again = std::time::Instant::now();
        assert_eq!(slow(7, Duration::ZERO).await, Ok(7));
        assert!(
            again.elapsed() < Duration::from_secs(5),
            "waited for a lock: {:?}",
            again.elapsed()
        );
    })
    .await;
    assert_eq!(cache.stats().lock_waits, 0, "{:?}", cache.stats());
}

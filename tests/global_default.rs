//! Without `aside::init`, `#[cached]` uses a process-wide in-memory cache.
//! (Its own test binary: the global cache is per process.)

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

static RUNS: AtomicU64 = AtomicU64::new(0);

#[aside::cached(key = "square:<n>")]
async fn square(n: u64) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    n * n
}

#[tokio::test]
async fn uses_the_in_memory_default_and_refuses_a_late_init() {
    assert_eq!(square(12).await, 144);
    assert_eq!(square(12).await, 144);
    assert_eq!(RUNS.load(SeqCst), 1);
    assert_eq!(aside::global().get::<u64>("square:12").await.unwrap(), Some(144));
    let late = aside::init(aside::Cache::memory());
    assert!(matches!(late, Err(aside::Error::AlreadyInitialized)), "{late:?}");
}

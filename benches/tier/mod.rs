//! Shared by the benchmarks: filling the in-process tier in front of Redis.

use std::future::Future;
use std::hint::black_box;
use std::time::Duration;

/// Calls `read` until `cache`'s in-process tier answers it. Over Redis, a
/// miss's own write comes back as an invalidation push and drops the fill,
/// so a first read may not be enough.
pub async fn until_in_process<F, Fut>(cache: &aside::Cache, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    loop {
        let before = cache.stats().l1_hits;
        black_box(read().await);
        if cache.stats().l1_hits > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

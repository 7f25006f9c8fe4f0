#![deny(warnings)]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

static DOWN: AtomicBool = AtomicBool::new(false);

#[derive(Debug, PartialEq)]
enum DbError {
    Down,
    TimedOut,
}

impl From<aside::Timeout> for DbError {
    fn from(_: aside::Timeout) -> Self {
        DbError::TimedOut
    }
}

#[aside::cached(key = "price:<id>", ttl = "1m", fail_safe = "1h", fail_safe_throttle = "10s", hard_timeout = "2s")]
async fn price(id: u64) -> Result<u64, DbError> {
    if DOWN.load(SeqCst) {
        return Err(DbError::Down);
    }
    Ok(id * 10)
}

const KEEP: Duration = Duration::from_secs(600);

#[aside::cached(key = "stock:<id>", stampede = "swr", fail_safe = KEEP)]
async fn stock(id: u64) -> Result<Option<u64>, DbError> {
    if DOWN.load(SeqCst) {
        return Err(DbError::Down);
    }
    Ok(Some(id))
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
pub(crate) async fn main() {
    assert_eq!(price(1).await, Ok(10));
    assert_eq!(stock(1).await, Ok(Some(1)));
    DOWN.store(true, SeqCst);
    tokio::time::advance(Duration::from_secs(10 * 60)).await;
    assert_eq!(price(1).await, Ok(10), "the last good value stands in");
    assert_eq!(stock(1).await, Ok(Some(1)));
    assert_eq!(price(2).await, Err(DbError::Down), "nothing to stand in");
}

#![deny(warnings)]

use std::time::Duration;

#[derive(Debug, PartialEq)]
enum DbError {
    TimedOut(Duration),
}

impl From<aside::Timeout> for DbError {
    fn from(timeout: aside::Timeout) -> Self {
        DbError::TimedOut(timeout.after)
    }
}

#[aside::cached(key = "slow:<id>", ttl = "1h", hard_timeout = "1s")]
async fn slow(id: u64) -> Result<u64, DbError> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(id)
}

const LIMIT: Duration = Duration::from_millis(1500);

#[aside::cached(key = "quick:<id>", hard_timeout = LIMIT)]
async fn quick(id: u64) -> Result<u64, DbError> {
    Ok(id)
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
pub(crate) async fn main() {
    assert_eq!(slow(1).await, Err(DbError::TimedOut(Duration::from_secs(1))));
    assert_eq!(quick(2).await, Ok(2));
}

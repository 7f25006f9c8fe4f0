#![deny(warnings)]

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

static LOADS: AtomicU64 = AtomicU64::new(0);

// Owned arguments: refreshed in the background by default.
#[aside::cached(key = "price:<id>", ttl = "1m", stampede = "swr")]
async fn price(id: u64, currency: String) -> Result<u64, std::io::Error> {
    LOADS.fetch_add(1, SeqCst);
    Ok(id * 10 + currency.len() as u64)
}

// Borrowed arguments: the refresh stays on the caller that wins it.
#[aside::cached(key = "name:<id>", ttl = "1m", stampede = "early")]
async fn name(id: &str) -> Result<String, std::io::Error> {
    Ok(id.to_uppercase())
}

// A body that is not `Send` can ask for the refresh inline.
#[aside::cached(key = "local:<id>", stampede = "swr", refresh = "inline")]
async fn local(id: u64) -> u64 {
    let shared = std::rc::Rc::new(id);
    tokio::task::yield_now().await;
    *shared
}

#[derive(Clone)]
struct Repo {
    db: Arc<AtomicU64>,
    tenant: u32,
}

impl Repo {
    // A `&self` method on an `Arc`-backed handle: `self` is cloned into the refresh.
    #[aside::cached(key = "<self.tenant>:stock:<id>", ttl = "1m", stampede = "swr", refresh = "background")]
    async fn stock(&self, id: u64) -> Result<u64, std::io::Error> {
        self.db.fetch_add(1, SeqCst);
        let this: &Repo = self;
        Ok(id + u64::from(this.tenant) + Self::BASE)
    }

    const BASE: u64 = 1000;
}

// Soft timeout with fail-safe: the load may finish in the background.
#[aside::cached(key = "slow:<id>", ttl = "1m", fail_safe = "1h", soft_timeout = "100ms")]
async fn slow(id: u64) -> Result<u64, std::io::Error> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(id)
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
pub(crate) async fn main() {
    assert_eq!(price(1, "EUR".into()).await.unwrap(), 13);
    assert_eq!(name("ab").await.unwrap(), "AB");
    assert_eq!(local(3).await, 3);
    let repo = Repo { db: Arc::default(), tenant: 7 };
    assert_eq!(repo.stock(1).await.unwrap(), 1008);
    assert_eq!(slow(5).await.unwrap(), 5);
    // Past the TTL: the refresh runs in the background.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(price(1, "EUR".into()).await.unwrap(), 13);
    assert_eq!(repo.stock(1).await.unwrap(), 1008);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(LOADS.load(SeqCst), 2);
    assert_eq!(repo.db.load(SeqCst), 2);
}

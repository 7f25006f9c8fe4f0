//! Testing a service that caches, three ways: with caching off (its logic
//! alone), recorded (what the cache did: hits, loads, invalidations, on a
//! paused clock for TTLs, swr and fail-safe), and under chaos (a cache
//! backend that fails, hangs or goes down). The tests are the example:
//!
//! ```sh
//! cargo test --example testing
//! ```
//!
//! They need aside's `testing` feature, in `[dev-dependencies]` only:
//! `aside = { version = "0.1", features = ["testing"] }`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use aside::Cache;

/// The database's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError;

/// The database: prices by product, its queries counted, down on demand.
#[derive(Default)]
pub struct Db {
    prices: Mutex<HashMap<u64, u32>>,
    queries: AtomicU32,
    down: AtomicBool,
}

impl Db {
    fn query(&self, id: u64) -> Result<u32, DbError> {
        self.queries.fetch_add(1, SeqCst);
        if self.down.load(SeqCst) {
            return Err(DbError);
        }
        Ok(*self.prices.lock().unwrap().get(&id).unwrap_or(&100))
    }

    fn update(&self, id: u64, price: u32) -> Result<(), DbError> {
        self.prices.lock().unwrap().insert(id, price);
        Ok(())
    }
}

/// The service under test. Its cache is built at start-up, as a service
/// builds it (from configuration: Redis in production).
#[derive(Clone)]
pub struct Pricing {
    cache: Cache,
    db: Arc<Db>,
}

impl Pricing {
    pub fn new(cache: Cache, db: Arc<Db>) -> Self {
        Pricing { cache, db }
    }

    /// A price: fresh for a minute, then served stale for up to ten while
    /// it refreshes in the background; while the database fails, the last
    /// good price stands in for an hour.
    #[aside::cached(
        cache = self.cache,
        key = "price:<id>",
        ttl = "1m",
        stampede = "swr",
        stale = "10m",
        fail_safe = "1h"
    )]
    pub async fn price(&self, id: u64) -> Result<u32, DbError> {
        self.db.query(id)
    }

    /// Changes a price: its cached entry goes once the database has it.
    #[aside::invalidate(entries = [self.price(id)])]
    pub async fn set_price(&self, id: u64, price: u32) -> Result<(), DbError> {
        self.db.update(id, price)
    }
}

fn main() {
    println!("This example is its tests: cargo test --example testing");
}

#[cfg(test)]
fn pricing() -> (Pricing, Arc<Db>) {
    let db = Arc::new(Db::default());
    (Pricing::new(Cache::memory(), db.clone()), db)
}

/// One: caching off: the service's logic, every call reaching the database.
#[cfg(test)]
mod off {
    use super::*;

    #[tokio::test]
    async fn a_new_price_is_read_back() {
        let _off = aside::testing::caching_off();
        let (pricing, db) = pricing();
        assert_eq!(pricing.price(1).await, Ok(100));
        pricing.set_price(1, 120).await.unwrap();
        assert_eq!(pricing.price(1).await, Ok(120));
        assert_eq!(db.queries.load(SeqCst), 2, "no call was answered by the cache");
    }
}

/// Two: recorded: each test on fresh caches of its own, asserting on what
/// they did. On Tokio's paused clock (`start_paused = true`), time moves
/// only when the test advances it, so TTLs, swr and fail-safe are tested
/// without waiting.
#[cfg(test)]
mod recorded {
    use std::time::Duration;

    use aside::stats::Outcome;

    use super::*;

    #[tokio::test]
    async fn a_second_call_is_a_hit() {
        let test = aside::testing::isolated();
        let (pricing, db) = pricing();
        pricing.price(1).await.unwrap();
        pricing.price(1).await.unwrap();
        let entry = aside::entry!(pricing.price(1));
        test.assert_hit(&entry);
        assert_eq!(test.loads(&entry), 1);
        assert_eq!(db.queries.load(SeqCst), 1);
    }

    #[tokio::test]
    async fn a_price_change_invalidates_its_entry() {
        let test = aside::testing::isolated();
        let (pricing, _) = pricing();
        let entry = aside::entry!(pricing.price(1));
        assert_eq!(pricing.price(1).await, Ok(100));
        pricing.set_price(1, 120).await.unwrap();
        assert_eq!(test.invalidations(&entry), 1);
        assert_eq!(pricing.price(1).await, Ok(120));
        test.assert_miss(&entry);
    }

    #[tokio::test(start_paused = true)]
    async fn past_its_ttl_a_price_is_served_stale_and_refreshed_in_the_background() {
        let test = aside::testing::isolated();
        let (pricing, db) = pricing();
        let entry = aside::entry!(pricing.price(1));
        pricing.price(1).await.unwrap();
        db.update(1, 130).unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(pricing.price(1).await, Ok(100), "fresh for a minute");
        test.assert_hit(&entry);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(pricing.price(1).await, Ok(100), "then served stale at once...");
        assert_eq!(test.last_outcome(&entry), Some(Outcome::Stale));
        tokio::task::yield_now().await; // the refresh, on a task of its own, lands
        assert_eq!(pricing.price(1).await, Ok(130), "...while it refreshes");
        assert_eq!(test.loads(&entry), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_database_fails_the_last_good_price_stands_in() {
        let test = aside::testing::isolated();
        let (pricing, db) = pricing();
        let entry = aside::entry!(pricing.price(1));
        pricing.price(1).await.unwrap();
        db.down.store(true, SeqCst);
        // Past the stale window: a call must load, and the load fails.
        tokio::time::advance(Duration::from_secs(11 * 60 + 1)).await;
        assert_eq!(pricing.price(1).await, Ok(100), "fail-safe: the last good price");
        assert_eq!(test.counts(&entry).failed_loads, 1);
        // Once the last good price is older than fail-safe's hour (counted
        // from its last stand-in), the error is the caller's.
        tokio::time::advance(Duration::from_secs(2 * 3600)).await;
        assert_eq!(pricing.price(1).await, Err(DbError));
    }
}

/// Three: under chaos: the service answers whatever its cache backend does.
/// In production the backend is Redis; `Chaos` sits in front of either.
#[cfg(test)]
mod chaos {
    use std::time::Duration;

    use aside::testing::Chaos;

    use super::*;

    async fn pricing_under(chaos: &Chaos) -> (Pricing, Arc<Db>) {
        let cache = Cache::builder()
            .chaos(chaos.clone())
            .op_timeout(Duration::from_millis(50))
            .build()
            .await
            .unwrap();
        let db = Arc::new(Db::default());
        (Pricing::new(cache, db.clone()), db)
    }

    /// Twenty calls and writes against a backend that fails, hangs or is
    /// slow: each returns what the database says.
    async fn run(seed: u64) -> Vec<(&'static str, aside::testing::Fault)> {
        let chaos = Chaos::seeded(seed)
            .errors(0.3)
            .hangs(0.1)
            .latency(0.2, Duration::from_millis(20));
        let (pricing, _) = pricing_under(&chaos).await;
        for round in 0..20u32 {
            let id = u64::from(round % 4);
            pricing.set_price(id, 200 + round).await.unwrap();
            assert_eq!(pricing.price(id).await, Ok(200 + round));
        }
        chaos.injected()
    }

    #[tokio::test(start_paused = true)]
    async fn every_call_answers_while_the_cache_misbehaves() {
        let faults = run(7).await;
        assert!(!faults.is_empty(), "faults were injected");
    }

    #[tokio::test(start_paused = true)]
    async fn a_seed_replays_the_same_faults() {
        assert_eq!(run(11).await, run(11).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_that_goes_down_and_comes_back() {
        let chaos = Chaos::seeded(1);
        let (pricing, db) = pricing_under(&chaos).await;
        chaos.go_down();
        assert_eq!(pricing.price(1).await, Ok(100));
        assert_eq!(pricing.price(1).await, Ok(100));
        assert_eq!(
            db.queries.load(SeqCst),
            2,
            "down: every call reaches the database"
        );
        chaos.come_back();
        tokio::time::advance(Duration::from_secs(60)).await; // the breaker's cool-down
        pricing.price(1).await.unwrap();
        let before = db.queries.load(SeqCst);
        assert_eq!(pricing.price(1).await, Ok(100));
        assert_eq!(db.queries.load(SeqCst), before, "back: a hit");
    }
}

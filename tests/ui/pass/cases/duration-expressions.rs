#![deny(warnings)]

// A duration may be a const or any expression of type `Duration`.
use std::time::Duration;

const PRODUCT_TTL: Duration = Duration::from_secs(3600);
const WAIT: Duration = Duration::from_millis(500);

#[aside::cached(key = "product:<id>", ttl = PRODUCT_TTL, negative_ttl = Duration::from_secs(30), lock_wait = WAIT)]
async fn product(id: u64) -> Option<u64> {
    Some(id)
}

#[aside::cached(key = "quote:<id>", ttl = Duration::from_secs(60), stampede = "swr", stale = PRODUCT_TTL / 2)]
async fn quote(id: u64) -> u64 {
    id
}

#[aside::cached(key = "brief:<id>", l1 = Duration::from_secs(5))]
async fn brief(id: u64) -> u64 {
    id
}

pub(crate) fn main() {
    let _ = (product(1), quote(1), brief(1));
}

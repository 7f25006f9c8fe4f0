#![deny(warnings)]
//! Options computed from the function's own arguments, inside and outside
//! its key. (Such a function has no companion: writers use templates.)

use std::time::Duration;

#[aside::cached(key = "p:<id>:<secs>", ttl = Duration::from_secs(secs), unless = move |v| *v < min)]
async fn price(id: u64, secs: u64, min: u32) -> u32 {
    id as u32 + secs as u32
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    assert_eq!(price(1, 60, 0).await, 61);
    assert_eq!(price(1, 60, 100).await, 61);
}

//! The README's first program: one cached function, on the in-memory default.
//!
//! ```sh
//! cargo run -p aside-examples --example quickstart
//! ```

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
}

#[aside::cached(key = "product:<id>", ttl = "1h")]
async fn get_product(id: u64) -> Result<Option<Product>, std::io::Error> {
    println!("loading product {id}"); // the slow query
    Ok(Some(Product {
        id,
        name: format!("product {id}"),
    }))
}

#[tokio::main]
async fn main() -> Result<(), std::io::Error> {
    let first = get_product(42).await?; // runs the body, caches the value
    let again = get_product(42).await?; // a hit: the body does not run
    assert_eq!(first.map(|p| p.name), again.map(|p| p.name));
    println!("second call answered from the cache");
    Ok(())
}

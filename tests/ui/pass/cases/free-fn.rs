#![deny(warnings)]

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
}

#[aside::cached(key = "product:<id>", ttl = 3600)]
async fn get_product(id: u64) -> Result<Option<Product>, std::io::Error> {
    Ok(Some(Product { id }))
}

#[aside::cached]
async fn default_everything(a: u32, b: String) -> String {
    format!("{a}{b}")
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    assert_eq!(get_product(1).await.unwrap().unwrap().id, 1);
    assert_eq!(default_everything(1, "b".into()).await, "1b");
}

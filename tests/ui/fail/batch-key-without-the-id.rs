use std::collections::HashMap;

#[aside::cached_batch(key = "products")]
async fn products(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, String::new())).collect()
}

fn main() {}

use std::collections::HashMap;

#[aside::cached_batch(key = "product:<id>")]
async fn products(id: u64) -> HashMap<u64, String> {
    HashMap::from([(id, String::new())])
}

fn main() {}

use std::collections::HashMap;

#[aside::cached_batch(key = "person:<person>")]
async fn people(batch: Vec<u64>) -> HashMap<u64, String> {
    batch.into_iter().map(|id| (id, String::new())).collect()
}

fn main() {}

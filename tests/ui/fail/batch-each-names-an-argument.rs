use std::collections::HashMap;

#[aside::cached_batch(key = "product:<id>", each = "id")]
async fn products(id: u64, ids: &[u64]) -> HashMap<u64, u64> {
    ids.iter().map(|&i| (i, id)).collect()
}

// `types` would make `<type>`, a keyword: `each` must name it.
#[aside::cached_batch(key = "type:<kind>")]
async fn kinds(types: &[u64]) -> HashMap<u64, u64> {
    types.iter().map(|&t| (t, t)).collect()
}

fn main() {}

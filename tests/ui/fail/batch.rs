// #[cached_batch] mistakes: one module per mistake.

mod batch_each_names_an_argument {
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
}

mod batch_key_without_the_id {
use std::collections::HashMap;

#[aside::cached_batch(key = "products")]
async fn products(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, String::new())).collect()
}
}

mod batch_needs_each {
use std::collections::HashMap;

#[aside::cached_batch(key = "person:<person>")]
async fn people(batch: Vec<u64>) -> HashMap<u64, String> {
    batch.into_iter().map(|id| (id, String::new())).collect()
}
}

mod batch_option_of_cached {
use std::collections::HashMap;

#[aside::cached_batch(key = "product:<id>", unless = |v: &String| v.is_empty())]
async fn products(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, String::new())).collect()
}
}

mod batch_returns_a_vec {
#[aside::cached_batch(key = "product:<id>")]
async fn products(ids: &[u64]) -> Result<Vec<String>, std::io::Error> {
    Ok(ids.iter().map(|id| id.to_string()).collect())
}
}

mod batch_template_names_the_batch {
use std::collections::HashMap;

#[aside::cached_batch(key = "product:<id>", tags = ["products:<ids>"])]
async fn products(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, String::new())).collect()
}
}

mod batch_without_a_batch {
use std::collections::HashMap;

#[aside::cached_batch(key = "product:<id>")]
async fn products(id: u64) -> HashMap<u64, String> {
    HashMap::from([(id, String::new())])
}
}

fn main() {}

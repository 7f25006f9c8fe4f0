#[aside::cached_batch(key = "product:<id>")]
async fn products(ids: &[u64]) -> Result<Vec<String>, std::io::Error> {
    Ok(ids.iter().map(|id| id.to_string()).collect())
}

fn main() {}

#[aside::cached(key = "user:<id>", ttl = "1m", negative_ttl = "1h")]
async fn find(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}

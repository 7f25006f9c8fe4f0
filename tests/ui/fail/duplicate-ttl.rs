#[aside::cached(ttl = 60, key = "p:<id>", ttl = "1h")]
async fn get(id: u64) -> u64 {
    id
}

fn main() {}

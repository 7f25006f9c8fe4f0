#[aside::invalidate(keys = ["p:<id>"], ttl = 60)]
async fn save(id: u64) {
    let _ = id;
}

#[aside::cache_put(key = "p:<id>", keys = ["p:<id>"])]
async fn put(id: u64) -> u64 {
    id
}

fn main() {}

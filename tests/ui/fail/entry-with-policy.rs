// With `entry`, the key and policy are the cached function's.
#[aside::cached(key = "product:<id>", ttl = "1h")]
async fn product(id: u64) -> Option<String> {
    Some(id.to_string())
}

#[aside::cache_put(entry = product(id), ttl = "5m", key = "product:<id>")]
async fn rename(id: u64, name: String) -> Option<String> {
    let _ = id;
    Some(name)
}

#[aside::invalidate(entries = ["product:<id>"])]
async fn delete(id: u64) {
    let _ = id;
}

#[aside::cached(key = "p", entry = "no")]
async fn flag() -> u32 {
    1
}

fn main() {}

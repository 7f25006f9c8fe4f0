// #[invalidate] and #[cache_put] given nothing to write, or options that are not theirs: one module per mistake.

mod cache_put_without_key {
#[aside::cache_put(ttl = 60)]
async fn save(id: u64) -> u64 {
    id
}
}

mod entry_with_policy {
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
}

mod invalidate_nothing {
#[aside::invalidate]
async fn save(id: u64) -> Result<(), std::io::Error> {
    let _ = id;
    Ok(())
}
}

mod invalidate_unknown_option {
#[aside::invalidate(keys = ["p:<id>"], ttl = 60)]
async fn save(id: u64) {
    let _ = id;
}

#[aside::cache_put(key = "p:<id>", keys = ["p:<id>"])]
async fn put(id: u64) -> u64 {
    id
}
}

fn main() {}

#[aside::cached(key = "p:<id>", codec = "bson")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::cache_put(key = "p:<id>", codec = msgpack)]
async fn put(id: u64) -> u64 {
    id
}

fn main() {}

#[aside::cached(key = "p:<id>", tags = "product:<id>")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::invalidate(keys = ["p:<id>", 42])]
async fn save(id: u64) {
    let _ = id;
}

fn main() {}

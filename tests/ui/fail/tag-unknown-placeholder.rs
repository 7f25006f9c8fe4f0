#[aside::cached(key = "p:<id>", tags = ["category:<cat>"])]
async fn get(id: u64) -> u64 {
    id
}

#[aside::invalidate(keys = ["p:<id"], tags = ["product:<product>"])]
async fn save(id: u64) {
    let _ = id;
}

fn main() {}

#[aside::cached(key "p:<id>")]
async fn get(id: u64) -> u64 {
    id
}

fn main() {}

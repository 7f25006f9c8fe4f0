#[aside::cached(ttl = true)]
async fn get(id: u64) -> u64 {
    id
}

fn main() {}

#[aside::cached(key = 42)]
async fn get(id: u64) -> u64 {
    id
}

fn main() {}

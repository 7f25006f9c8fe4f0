#[aside::cached(ttl = "5x")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::cached(negative_ttl = "1.5h")]
async fn get_other(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}

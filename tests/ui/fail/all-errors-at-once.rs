#[aside::cached(key = "p:<nope>", ttl = "forever", colour = "blue")]
fn get(id: u64) -> u64 {
    id
}

fn main() {}

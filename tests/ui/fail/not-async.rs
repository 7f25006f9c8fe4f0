#[aside::cached(key = "p:<id>")]
fn get(id: u64) -> u64 {
    id
}

fn main() {}

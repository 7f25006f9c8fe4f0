#[aside::invalidate(keys = ["p:<id>"])]
fn save(id: u64) {
    let _ = id;
}

fn main() {}

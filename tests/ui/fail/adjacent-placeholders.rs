#[aside::cached(key = "range:<from>-<to>")]
async fn range(from: u64, to: u64) -> Vec<u64> {
    (from..to).collect()
}

fn main() {}

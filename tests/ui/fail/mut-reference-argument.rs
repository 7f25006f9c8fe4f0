#[aside::cached(key = "p:<id>")]
async fn get(id: u64, seen: &mut Vec<u64>) -> u64 {
    seen.push(id);
    id
}

fn main() {}

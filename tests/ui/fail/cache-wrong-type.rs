struct NotACache;

#[aside::cached(key = "p:<id>", cache = NotACache)]
async fn get(id: u64) -> u64 {
    id
}

fn main() {}

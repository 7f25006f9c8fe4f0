#[aside::cached(key = "p:<id>", stampede = "fast")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::cached(key = "q:<id>", stampede = swr)]
async fn get_other(id: u64) -> u64 {
    id
}

fn main() {}

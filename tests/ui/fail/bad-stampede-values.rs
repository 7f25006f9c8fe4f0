#[aside::cached(key = "p:<id>", jitter = 1.5, lock_ttl = 0, sliding = "yes")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::cached(key = "q:<id>", stampede = "early", beta = 0)]
async fn get_other(id: u64) -> u64 {
    id
}

fn main() {}

#[aside::cached(key = "a:<id>", stale = "10m")]
async fn lock_with_stale(id: u64) -> u64 {
    id
}

#[aside::cached(key = "b:<id>", stampede = "swr", beta = 2.0, sliding = true)]
async fn swr_with_beta_and_sliding(id: u64) -> u64 {
    id
}

#[aside::cached(key = "c:<id>", stampede = "none", lock_ttl = "5s")]
async fn none_with_lock_ttl(id: u64) -> u64 {
    id
}

fn main() {}

#[aside::cached(key = "lock:<id>", ttl = "1h", lock_ttl = "5s", lock_wait = "500ms", jitter = 0.1)]
async fn locked(id: u64) -> u64 {
    id
}

#[aside::cached(key = "swr:<id>", ttl = "5m", stampede = "swr", stale = "10m")]
async fn stale_while_revalidate(id: u64) -> Option<u64> {
    Some(id)
}

#[aside::cached(key = "early:<id>", ttl = 60, stampede = "early", beta = 1.5)]
async fn early(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[aside::cached(key = "none:<id>", stampede = "none", sliding = true)]
async fn uncoordinated(id: u64) -> u64 {
    id
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(locked(1).await, 1);
    assert_eq!(stale_while_revalidate(2).await, Some(2));
    assert_eq!(early(3).await, Ok(3));
    assert_eq!(uncoordinated(4).await, 4);
}

#![deny(warnings)]

#[aside::cached(key = "lock:<id>", ttl = "1h", lock_ttl = "5s", lock_wait = "500ms", jitter = 0.1)]
async fn locked(id: u64) -> u64 {
    id
}

#[aside::cached(key = "swr:<id>", ttl = "5m", stampede = "swr", stale = "10m", lock_ttl = "3s")]
async fn stale_while_revalidate(id: u64) -> Option<u64> {
    Some(id)
}

#[aside::cached(key = "early:<id>", ttl = 60, stampede = "early", beta = 1.5, lock_ttl = 2)]
async fn early(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[aside::cached(key = "none:<id>", stampede = "none", sliding = true)]
async fn uncoordinated(id: u64) -> u64 {
    id
}

#[aside::cached(key = "packed:<id>", ttl = "1h", codec = "msgpack")]
async fn packed(id: u64) -> Option<Vec<u64>> {
    Some(vec![id])
}

#[aside::cache_put(key = "packed:<id>", codec = "msgpack")]
async fn repack(id: u64) -> Option<Vec<u64>> {
    Some(vec![id, id])
}

#[aside::cached(key = "json:<id>", codec = "json")]
async fn readable(id: u64) -> u64 {
    id
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    assert_eq!(packed(5).await, Some(vec![5]));
    assert_eq!(repack(5).await, Some(vec![5, 5]));
    assert_eq!(packed(5).await, Some(vec![5, 5]));
    assert_eq!(readable(6).await, 6);
    assert_eq!(locked(1).await, 1);
    assert_eq!(stale_while_revalidate(2).await, Some(2));
    assert_eq!(early(3).await, Ok(3));
    assert_eq!(uncoordinated(4).await, 4);
}

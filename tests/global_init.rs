//! `aside::init` sets the cache that `#[cached]` uses by default.
//! (Its own test binary: the global cache is per process.)

mod support;

use support::RedisServer;

#[aside::cached(key = "double:<n>")]
async fn double(n: u64) -> u64 {
    n * 2
}

#[tokio::test]
async fn cached_functions_use_the_initialised_cache() {
    let server = RedisServer::start();
    let cache = aside::Cache::builder()
        .redis(server.url())
        .namespace("app")
        .build()
        .await
        .unwrap();
    aside::init(cache.clone()).unwrap();
    assert_eq!(double(4).await, 8);
    assert_eq!(
        cache.get::<u64>("double:4").await.unwrap(),
        Some(8),
        "stored in the initialised cache"
    );
    let mut raw = server.raw().await;
    let exists: bool = redis::AsyncCommands::exists(&mut raw, "app:{double:4}")
        .await
        .unwrap();
    assert!(exists, "under its namespace, in Redis");
}

#![deny(warnings)]
//! Inside an `#[async_trait]` impl: the attributes see the boxed future
//! async-trait made of each `async fn`, and cache it.

use aside::Cache;

#[async_trait::async_trait]
trait Catalog {
    async fn name(&self, id: u64) -> Result<String, String>;
    async fn count(&self) -> u64;
    async fn rename(&self, id: u64, name: String) -> Result<String, String>;
    async fn delete(&self, id: u64) -> Result<(), String>;
}

struct Repo {
    cache: Cache,
}

#[async_trait::async_trait]
impl Catalog for Repo {
    #[aside::cached(cache = self.cache, key = "name:<id>")]
    async fn name(&self, id: u64) -> Result<String, String> {
        if id == 0 { Err("zero".into()) } else { Ok(format!("#{id}")) }
    }

    #[aside::cached(cache = self.cache, key = "count", ttl = "1m")]
    async fn count(&self) -> u64 {
        3
    }

    #[aside::cache_put(cache = self.cache, key = "name:<id>")]
    async fn rename(&self, id: u64, name: String) -> Result<String, String> {
        let _ = id;
        Ok(name)
    }

    #[aside::invalidate(cache = self.cache, keys = ["name:<id>"])]
    async fn delete(&self, id: u64) -> Result<(), String> {
        let _ = id;
        Ok(())
    }
}

fn spawnable<T: Send>(_: T) {}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    let repo = Repo { cache: Cache::memory() };
    let dynamic: &dyn Catalog = &repo;
    spawnable(dynamic.name(1));
    assert_eq!(dynamic.name(1).await.as_deref(), Ok("#1"));
    assert_eq!(dynamic.name(1).await.as_deref(), Ok("#1"));
    assert!(dynamic.name(0).await.is_err());
    assert_eq!(dynamic.count().await, 3);
    assert_eq!(dynamic.rename(1, "one".into()).await.as_deref(), Ok("one"));
    assert_eq!(dynamic.name(1).await.as_deref(), Ok("one"));
    dynamic.delete(1).await.unwrap();
    assert_eq!(dynamic.name(1).await.as_deref(), Ok("#1"));
    let stats = repo.cache.stats();
    assert_eq!((stats.hits, stats.loads), (2, 4), "{stats:?}");
}

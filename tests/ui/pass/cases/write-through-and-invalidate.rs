#![deny(warnings)]

use aside::Cache;

struct Repo {
    cache: Cache,
    writes: u64,
}

impl Repo {
    #[aside::cached(cache = self.cache, key = "user:<id>", tags = ["users", "user:<id>"])]
    async fn user(&self, id: u64) -> Option<String> {
        Some(format!("user {id}"))
    }

    #[aside::cache_put(cache = self.cache, key = "user:<id>", ttl = "1h", tags = ["users", "user:<id>"])]
    async fn rename(&self, id: u64, name: String) -> Result<Option<String>, String> {
        Ok(Some(name))
    }

    // `&mut self` is fine here: the body always runs.
    #[aside::invalidate(cache = self.cache, keys = ["user:<id>"], tags = ["users"])]
    async fn delete(&mut self, id: u64) -> Result<(), String> {
        self.writes += id;
        Ok(())
    }
}

// A plain (non-Result) function invalidates whenever it returns.
#[aside::invalidate(tags = ["everything"])]
async fn reset() {}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    let mut repo = Repo { cache: Cache::memory(), writes: 0 };
    assert_eq!(repo.user(1).await.as_deref(), Some("user 1"));
    assert_eq!(repo.rename(1, "ada".into()).await, Ok(Some("ada".into())));
    assert_eq!(repo.user(1).await.as_deref(), Some("ada"));
    repo.delete(1).await.unwrap();
    reset().await;
}

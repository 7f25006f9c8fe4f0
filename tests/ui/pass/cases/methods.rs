#![deny(warnings)]

use aside::Cache;

struct Repo {
    cache: Cache,
    tenant: String,
}

impl Repo {
    #[aside::cached(cache = self.cache, key = "<self.tenant>:user:<id>", ttl = "5m")]
    async fn user(&self, id: u64) -> Option<String> {
        Some(format!("{}-{id}", self.tenant))
    }
}

trait Source {
    async fn fetch(&self, id: u64) -> Result<u64, String>;
}

impl Source for Repo {
    #[aside::cached(cache = self.cache, key = "fetch:<id>", ttl = "30s", entry = false)]
    async fn fetch(&self, id: u64) -> Result<u64, String> {
        if id == 0 { Err("zero".into()) } else { Ok(id) }
    }
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    let repo = Repo { cache: Cache::memory(), tenant: "t".into() };
    assert_eq!(repo.user(1).await.as_deref(), Some("t-1"));
    assert_eq!(repo.fetch(2).await, Ok(2));
    assert!(repo.fetch(0).await.is_err());
}

#![deny(warnings)]
//! Writers name a cached function's entry by a call, never by its template.

use aside::Cache;

mod shop {
    use aside::Cache;

    // Only `id` makes the key: the companion takes `id` alone.
    #[aside::cached(cache = cache, key = "product:<id>", tags = ["category:<category>"])]
    pub async fn product(cache: &Cache, id: u64, category: u32, verbose: bool) -> Result<Option<String>, String> {
        let _ = verbose;
        Ok(Some(format!("product {id} in {category}")))
    }

    // A default key: every argument but the cache.
    #[aside::cached(cache = cache)]
    pub async fn count(cache: &Cache, table: &str, live: bool) -> u64 {
        table.len() as u64 + u64::from(live)
    }

    // A generic function.
    #[aside::cached(cache = cache, key = "show:<value>")]
    pub async fn show<T: std::fmt::Display + Sync>(cache: &Cache, value: &T) -> String {
        value.to_string()
    }
}

use shop::*;

// A value that can be `None` under an alias takes `negative_ttl`.
type MaybeName = Option<String>;

#[aside::cached(key = "name:<id>", negative_ttl = "10s")]
async fn name(id: u64) -> MaybeName {
    Some(id.to_string())
}

// Without `cache =`: the entry's own cache, the global one.
#[aside::invalidate(entries = [name(id)])]
async fn forget_name(id: u64) {
    let _ = id;
}

struct Repo {
    cache: Cache,
    tenant: String,
}

impl Repo {
    #[aside::cached(cache = self.cache, key = "<self.tenant>:price:<id>")]
    async fn price(&self, id: u64) -> Result<u32, String> {
        Ok(id as u32)
    }

    #[aside::cache_put(cache = self.cache, entry = self.price(id))]
    async fn set_price(&self, id: u64, price: u32) -> Result<u32, String> {
        Ok(price)
    }

    #[aside::cache_put(cache = self.cache, entry = shop::product(id, category))]
    async fn rename(&self, id: u64, category: u32, name: String) -> Result<Option<String>, String> {
        Ok(Some(name))
    }

    // Without `cache =`: `price`'s entry knows its cache, `self.cache`.
    #[aside::invalidate(entries = [self.price(id), name(id)])]
    async fn touch(&self, id: u64) {
        let _ = id;
    }

    // Arguments are taken by reference: `name` is still the body's.
    #[aside::invalidate(cache = self.cache, entries = [self.price(id), product(id, category), shop::count(name.as_str(), true)])]
    async fn remove(&self, id: u64, category: u32, name: String) -> Result<usize, String> {
        Ok(name.len())
    }
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    let repo = Repo { cache: Cache::memory(), tenant: "acme".into() };
    assert_eq!(repo.price(7).await, Ok(7));
    assert_eq!(repo.set_price(7, 70).await, Ok(70));
    assert_eq!(repo.price(7).await, Ok(70));
    assert_eq!(repo.remove(7, 1, "lamp".into()).await, Ok(4));
    assert_eq!(repo.price(7).await, Ok(7));
    assert_eq!(repo.set_price(7, 70).await, Ok(70));
    repo.touch(7).await;
    assert_eq!(repo.price(7).await, Ok(7));
    forget_name(1).await;
    assert_eq!(name(1).await.as_deref(), Some("1"));

    let entry = aside::entry!(repo.price(7));
    assert_eq!(entry.key(), "acme:price:7");
    let product = aside::entry!(shop::product(7, 3));
    assert_eq!(product.key(), "product:7");
    assert!(product.policy().tags().eq(["category:3"]));
    assert_eq!(aside::entry!(show::<u8>(&5)).key(), "show:5");
    assert!(aside::entry!(count("t:x", false)).key().ends_with(r"::shop::count:t\:x:false"));
    let cat = "books:used";
    assert_eq!(aside::key!("category:<cat>"), r"category:books\:used");
    let _ = (product::<>, count, show::<u8>, Repo::rename);
}

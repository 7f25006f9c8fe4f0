#![deny(warnings)]

// Every shape of annotated function stays `Send` when its error type is not
// (`Box<dyn Error>`), as it is without the attribute: it can be spawned.
use std::error::Error;

#[aside::cached(key = "n:<n>")]
async fn cached(n: u64) -> Result<u64, Box<dyn Error>> {
    Ok(n)
}

#[aside::cached(key = "swr:<n>", stampede = "swr")]
async fn swr(n: u64) -> Result<Option<u64>, Box<dyn Error>> {
    Ok(Some(n))
}

#[aside::cached(key = "early:<n>", stampede = "early")]
async fn early(n: u64) -> Result<u64, Box<dyn Error>> {
    Ok(n)
}

#[aside::cached(key = "none:<n>", stampede = "none")]
async fn unprotected(n: u64) -> Result<u64, Box<dyn Error>> {
    Ok(n)
}

#[aside::cache_put(key = "n:<n>")]
async fn put(n: u64) -> Result<u64, Box<dyn Error>> {
    Ok(n)
}

#[aside::invalidate(keys = ["n:<n>"])]
async fn invalidate(n: u64) -> Result<(), Box<dyn Error>> {
    let _ = n;
    Ok(())
}

struct Repo {
    cache: aside::Cache,
}

impl Repo {
    #[aside::cached(cache = self.cache, key = "repo:<id>")]
    async fn find(&self, id: u64) -> Result<u64, Box<dyn Error>> {
        Ok(id)
    }
}

fn spawnable<T: std::future::Future + Send>(_: T) {}

pub(crate) fn main() {
    spawnable(cached(1));
    spawnable(swr(1));
    spawnable(early(1));
    spawnable(unprotected(1));
    spawnable(put(1));
    spawnable(invalidate(1));
    let repo = Repo { cache: aside::Cache::memory() };
    spawnable(repo.find(1));
}

#![deny(warnings)]

// A body that is one expression draws no warning (`unused_braces` once did).
// (rustc leaves a block alone once it spans lines: these are one-liners.)
#[rustfmt::skip]
mod one_liners {
    #[aside::cached(key = "plain:<n>")]
    pub async fn plain(n: u32) -> u32 { n }

    #[aside::cached(key = "result:<n>")]
    pub async fn result(n: u32) -> Result<u32, std::io::Error> { Ok(n) }

    #[aside::cache_put(key = "plain:<n>")]
    pub async fn put(n: u32) -> u32 { n }

    #[aside::invalidate(keys = ["plain:<n>"])]
    pub async fn invalidate(n: u32) -> Result<u32, std::io::Error> { Ok(n) }

    pub struct Repo {
        pub cache: aside::Cache,
    }

    impl Repo {
        #[aside::cached(cache = self.cache, key = "repo:<n>")]
        pub async fn get(&self, n: u32) -> Result<u32, std::io::Error> { Ok(n) }
    }
}

pub(crate) fn main() {
    use one_liners::*;
    let repo = Repo { cache: aside::Cache::memory() };
    let _ = (plain(1), result(1), put(1), invalidate(1), repo.get(1));
}

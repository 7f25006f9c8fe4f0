// `swr` on a `&self` method refreshes in the background, cloning `self`
// into a task of its own: a `Self` that cannot be cloned is an error at the
// option, which says what to do, rather than a refresh its winner waits for.
struct Repo {
    cache: aside::Cache,
}

impl Repo {
    #[aside::cached(cache = self.cache, key = "p:<id>", stampede = "swr")]
    async fn price(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}

struct Repo {
    writes: u64,
}

impl Repo {
    #[aside::cache_put(key = "p:<id>")]
    async fn save(&mut self, id: u64) -> u64 {
        self.writes += 1;
        id
    }
}

fn main() {}

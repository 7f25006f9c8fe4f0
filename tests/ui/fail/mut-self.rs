struct Repo {
    calls: u64,
}

impl Repo {
    #[aside::cached(key = "p:<id>")]
    async fn get(&mut self, id: u64) -> u64 {
        self.calls += 1;
        id
    }
}

fn main() {}

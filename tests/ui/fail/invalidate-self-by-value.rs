struct Repo;

impl Repo {
    #[aside::invalidate(keys = ["p:<id>"])]
    async fn save(self, id: u64) {
        let _ = id;
    }
}

fn main() {}

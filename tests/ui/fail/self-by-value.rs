struct Repo;

impl Repo {
    #[aside::cached(key = "p:<id>")]
    async fn get(self, id: u64) -> u64 {
        id
    }
}

fn main() {}

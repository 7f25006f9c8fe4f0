#[aside::cached(key = "p:<id>", tags = ["product:<id>"], stampede = "swr")]
async fn get(id: u64) -> u64 {
    id
}

fn main() {}

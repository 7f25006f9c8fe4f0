#[aside::cached(key = "product:<id")]
async fn get_product(id: u64) -> u64 {
    id
}

fn main() {}

#[aside::cached(key = "product:<idd>")]
async fn get_product(id: u64, category: u32) -> u64 {
    id + u64::from(category)
}

fn main() {}

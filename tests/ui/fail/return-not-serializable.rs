#[derive(Clone)]
struct Product {
    id: u64,
}

#[aside::cached(key = "product:<id>")]
async fn get_product(id: u64) -> Result<Option<Product>, std::io::Error> {
    Ok(Some(Product { id }))
}

fn main() {}

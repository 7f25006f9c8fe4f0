// A cached value is kept decoded in process and handed out by clone.
#[derive(serde::Serialize, serde::Deserialize)]
struct Product {
    id: u64,
}

#[aside::cached(key = "product:<id>")]
async fn get_product(id: u64) -> Result<Option<Product>, std::io::Error> {
    Ok(Some(Product { id }))
}

fn main() {}

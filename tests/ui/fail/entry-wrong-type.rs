// A write-through of another type than the cached function's is an error,
// not a corrupt entry at run time.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Product {
    price: u32,
}

#[aside::cached(key = "product:<id>")]
async fn product(id: u64) -> Result<Option<Product>, String> {
    Ok(Some(Product { price: id as u32 }))
}

#[aside::cache_put(entry = product(id))]
async fn set_price(id: u64, price: u32) -> Result<u32, String> {
    let _ = id;
    Ok(price)
}

fn main() {}

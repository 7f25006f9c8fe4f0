// An entry whose function takes its cache as an argument does not know
// which cache to write: a writer naming it must say, or it would write the
// global cache while the function reads another.
use aside::Cache;

#[aside::cached(cache = cache, key = "price:<id>")]
async fn price(cache: &Cache, id: u64) -> u32 {
    id as u32
}

#[aside::invalidate(entries = [price(id)])]
async fn set_price(id: u64) {
    let _ = id;
}

#[aside::cache_put(entry = price(id))]
async fn put_price(id: u64, price: u32) -> u32 {
    let _ = id;
    price
}

fn main() {}

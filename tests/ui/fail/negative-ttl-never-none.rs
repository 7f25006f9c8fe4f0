// `negative_ttl` keeps a `None`; on a value that is never one it would do
// nothing, so it is an error rather than silently ignored.
#[aside::cached(key = "price:<id>", negative_ttl = "10s")]
async fn price(id: u64) -> Result<u32, String> {
    Ok(id as u32)
}

// The same without a companion: the function's own policy, built once at
// compile time, is checked as well.
#[aside::cached(key = "cost:<id>", negative_ttl = "10s", entry = false)]
async fn cost(id: u64) -> Result<u32, String> {
    Ok(id as u32)
}

fn main() {}

// `negative_ttl` keeps a `None`; on a value that is never one it would do
// nothing, so it is an error rather than silently ignored.
#[aside::cached(key = "price:<id>", negative_ttl = "10s")]
async fn price(id: u64) -> Result<u32, String> {
    Ok(id as u32)
}

fn main() {}

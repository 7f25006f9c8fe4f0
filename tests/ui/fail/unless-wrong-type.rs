// `unless` takes the cached value: here a `u32`, not a `String`.
#[aside::cached(key = "n:<id>", unless = |name: &String| name.is_empty())]
async fn n(id: u64) -> Result<u32, String> {
    Ok(id as u32)
}

fn main() {}

// A writer names the cached function; a typo is an error, not an
// invalidation of nothing.
#[aside::cached(key = "product:<id>")]
async fn product(id: u64) -> Option<String> {
    Some(id.to_string())
}

#[aside::invalidate(entries = [prodcut(id)])]
async fn delete(id: u64) {
    let _ = id;
}

fn main() {}

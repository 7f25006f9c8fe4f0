// The error type cannot be made from an `aside::Timeout`.
#[aside::cached(key = "a:<id>", hard_timeout = "2s")]
async fn no_from(id: u64) -> Result<u64, String> {
    Ok(id)
}

// A function without `Result` has no error to time out with.
#[aside::cached(key = "b:<id>", hard_timeout = "2s")]
async fn no_result(id: u64) -> u64 {
    id
}

fn main() {}

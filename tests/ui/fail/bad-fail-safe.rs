// A throttle without fail-safe does nothing.
#[aside::cached(key = "a:<id>", fail_safe_throttle = "10s")]
async fn throttle_alone(id: u64) -> Result<u64, String> {
    Ok(id)
}

// A sliding entry has no fresh time to outlive.
#[aside::cached(key = "b:<id>", sliding = true, fail_safe = "1h")]
async fn sliding(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}

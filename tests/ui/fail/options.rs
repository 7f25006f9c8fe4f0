// The attribute's options: each module is one mistake in an option's name or value, and the .stderr has the errors each must give.

mod all_errors_at_once {
#[aside::cached(key = "p:<nope>", ttl = "forever", colour = "blue")]
fn get(id: u64) -> u64 {
    id
}
}

mod bad_codec {
#[aside::cached(key = "p:<id>", codec = "bson")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::cache_put(key = "p:<id>", codec = msgpack)]
async fn put(id: u64) -> u64 {
    id
}
}

mod bad_duration {
#[aside::cached(ttl = "5x")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::cached(negative_ttl = "1.5h")]
async fn get_other(id: u64) -> Option<u64> {
    Some(id)
}
}

mod bad_fail_safe {
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
}

mod bad_l1 {
#[aside::cached(key = "n:<n>", l1 = "soon")]
async fn plain(n: u32) -> u32 {
    n
}
}

mod bad_stampede_values {
#[aside::cached(key = "p:<id>", jitter = 1.5, lock_ttl = 0, sliding = "yes")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::cached(key = "q:<id>", stampede = "early", beta = 0)]
async fn get_other(id: u64) -> u64 {
    id
}
}

mod duplicate_ttl {
#[aside::cached(ttl = 60, key = "p:<id>", ttl = "1h")]
async fn get(id: u64) -> u64 {
    id
}
}

mod missing_equals {
#[aside::cached(key "p:<id>")]
async fn get(id: u64) -> u64 {
    id
}
}

mod misspelt_option {
// A misspelt option or value says which one was meant.
#[aside::cached(key = "p:<id>", negativ_ttl = 60)]
async fn get(id: u64) -> Option<u64> {
    Some(id)
}

#[aside::cached(key = "q:<id>", stampede = "srw")]
async fn mode(id: u64) -> u64 {
    id
}

#[aside::invalidate(entires = [get(id)])]
async fn forget(id: u64) {
    let _ = id;
}
}

mod unknown_option {
#[aside::cached(key = "p:<id>", tll = 60)]
async fn get(id: u64) -> u64 {
    id
}
}

mod unknown_stampede_mode {
#[aside::cached(key = "p:<id>", stampede = "fast")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::cached(key = "q:<id>", stampede = swr)]
async fn get_other(id: u64) -> u64 {
    id
}
}

mod stampede_option_for_another_mode {
#[aside::cached(key = "a:<id>", stale = "10m")]
async fn lock_with_stale(id: u64) -> u64 {
    id
}

#[aside::cached(key = "b:<id>", stampede = "swr", beta = 2.0, sliding = true)]
async fn swr_with_beta_and_sliding(id: u64) -> u64 {
    id
}

#[aside::cached(key = "c:<id>", stampede = "none", lock_ttl = "5s")]
async fn none_with_lock_ttl(id: u64) -> u64 {
    id
}
}

mod ttl_wrong_type {
#[aside::cached(ttl = true)]
async fn get(id: u64) -> u64 {
    id
}
}

mod zero_ttl {
#[aside::cached(ttl = 0)]
async fn get(id: u64) -> u64 {
    id
}
}

mod negative_ttl_longer_than_ttl {
#[aside::cached(key = "user:<id>", ttl = "1m", negative_ttl = "1h")]
async fn find(id: u64) -> Option<u64> {
    Some(id)
}
}

fn main() {}

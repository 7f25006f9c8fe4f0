// An expression must be a `Duration`: a number of seconds is written as a literal.
const TTL_SECS: u64 = 60;

#[aside::cached(key = "n:<n>", ttl = TTL_SECS)]
async fn get(n: u64) -> u64 {
    n
}

fn main() {}

#![deny(warnings)]

// Durations may combine units, largest first.
#[aside::cached(key = "report:<day>", ttl = "1h30m", negative_ttl = "2m30s")]
async fn report(day: u32) -> Option<u32> {
    Some(day)
}

#[aside::cached(key = "quote:<id>", ttl = "1s500ms", stampede = "swr", stale = "1d12h")]
async fn quote(id: u32) -> u32 {
    id
}

pub(crate) fn main() {
    let _ = (report(1), quote(1));
}

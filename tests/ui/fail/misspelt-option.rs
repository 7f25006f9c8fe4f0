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

fn main() {}

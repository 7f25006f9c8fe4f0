// A borrowed argument cannot go into a task of its own.
#[aside::cached(key = "a:<id>", stampede = "swr", refresh = "background")]
async fn borrowed(id: &str) -> Result<u64, String> {
    Ok(id.len() as u64)
}

// `soft_timeout` on a `&self` method needs `refresh = "background"`.
struct Repo;

impl Repo {
    #[aside::cached(key = "b:<id>", fail_safe = "1h", soft_timeout = "100ms")]
    async fn method(&self, id: u64) -> Result<u64, String> {
        Ok(id)
    }
}

// A receiver that cannot be cloned into the refresh.
struct Plain;

impl Plain {
    #[aside::cached(key = "c:<id>", stampede = "swr", refresh = "background")]
    async fn method(&self, id: u64) -> Result<u64, String> {
        Ok(id)
    }
}

// `refresh` only applies to refreshes; `soft_timeout` needs `fail_safe`.
#[aside::cached(key = "d:<id>", refresh = "background", soft_timeout = "1s")]
async fn lock_mode(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[aside::cached(key = "e:<id>", stampede = "swr", refresh = "later")]
async fn unknown(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}

#![deny(warnings)]
//! Functions whose options are all constants: their policy is built once,
//! at compile time, and `negative_ttl` is still checked against the value,
//! whatever its type names (a type parameter, `Self`).

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

static LOADS: AtomicU32 = AtomicU32::new(0);

#[aside::cached(key = "find:<id>", ttl = "1h", negative_ttl = "10s")]
async fn find<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static>(id: u64) -> Option<T> {
    LOADS.fetch_add(1, SeqCst);
    let _ = id;
    None
}

#[derive(Clone, Serialize, Deserialize)]
struct User {
    id: u64,
}

impl User {
    #[aside::cached(key = "user:<id>", negative_ttl = "1m", entry = false)]
    async fn load(id: u64) -> Option<Self> {
        LOADS.fetch_add(1, SeqCst);
        (id > 0).then_some(User { id })
    }
}

// The empty template: one key for every call.
#[aside::cached(key = "", ttl = "1m")]
async fn everything() -> u32 {
    LOADS.fetch_add(1, SeqCst);
    7
}

#[async_trait::async_trait]
trait Directory {
    async fn lookup(&self, id: u64) -> Result<Option<String>, String>;
}

struct Names;

#[async_trait::async_trait]
impl Directory for Names {
    #[aside::cached(key = "lookup:<id>", negative_ttl = "1m", entry = false)]
    async fn lookup(&self, id: u64) -> Result<Option<String>, String> {
        LOADS.fetch_add(1, SeqCst);
        Ok((id > 0).then(|| format!("#{id}")))
    }
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    for _ in 0..2 {
        assert_eq!(find::<String>(1).await, None);
        assert_eq!(User::load(0).await.map(|u| u.id), None);
        assert_eq!(User::load(2).await.map(|u| u.id), Some(2));
        assert_eq!(everything().await, 7);
        assert_eq!(Names.lookup(3).await, Ok(Some("#3".to_owned())));
    }
    assert_eq!(LOADS.load(SeqCst), 5, "each key loaded once");
    // The policy built at compile time names its function: the second
    // calls are its hits.
    let stats = aside::stats::function_stats();
    let hits = |name: &str| stats.iter().find(|f| f.name.ends_with(name)).map(|f| f.hits);
    assert_eq!(hits("::find"), Some(1), "{stats:#?}");
    assert_eq!(hits("::load"), Some(2), "{stats:#?}");
    assert_eq!(hits("::everything"), Some(1), "{stats:#?}");
    assert_eq!(hits("::lookup"), Some(1), "{stats:#?}");
}

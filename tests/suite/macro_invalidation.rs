//! `tags`, `#[aside::invalidate]` and `#[aside::cache_put]` end to end, on
//! both backends, including their `Err` paths.

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

use aside::Cache;
use support::{Kind, TestCache};

/// A fake table of products: name and category, and the reads it served.
#[derive(Default)]
struct Db {
    rows: Mutex<Vec<(String, u32)>>,
    reads: AtomicU64,
}

impl Db {
    fn with(rows: &[(&str, u32)]) -> Db {
        let rows = rows.iter().map(|(n, c)| (n.to_string(), *c)).collect();
        Db {
            rows: Mutex::new(rows),
            reads: AtomicU64::new(0),
        }
    }
    fn reads(&self) -> u64 {
        self.reads.load(SeqCst)
    }
}

#[derive(Debug, PartialEq)]
struct Rejected;

#[aside::cached(cache = cache, key = "product:<id>", tags = ["product:<id>", "category:<category>"])]
async fn product(cache: &Cache, db: &Db, id: usize, category: u32) -> Option<String> {
    db.reads.fetch_add(1, SeqCst);
    db.rows.lock().unwrap().get(id).map(|(name, _)| name.clone())
}

#[aside::invalidate(cache = cache, tags = ["category:<category>"])]
async fn rename_category(cache: &Cache, db: &Db, category: u32, suffix: &str) -> Result<usize, Rejected> {
    if suffix.is_empty() {
        return Err(Rejected);
    }
    let mut rows = db.rows.lock().unwrap();
    let changed = rows
        .iter_mut()
        .filter(|(_, c)| *c == category)
        .map(|(name, _)| name.push_str(suffix))
        .count();
    Ok(changed)
}

#[aside::invalidate(cache = cache, keys = ["product:<id>"])]
async fn delete(cache: &Cache, db: &Db, id: usize) -> Result<(), Rejected> {
    let mut rows = db.rows.lock().unwrap();
    match rows.get_mut(id) {
        Some(row) => {
            row.0 = "(deleted)".into();
            Ok(())
        }
        None => Err(Rejected),
    }
}

#[aside::cache_put(cache = cache, key = "product:<id>", tags = ["product:<id>", "category:<category>"])]
async fn rename(
    cache: &Cache,
    db: &Db,
    id: usize,
    category: u32,
    name: &str,
) -> Result<Option<String>, Rejected> {
    if name.is_empty() {
        return Err(Rejected);
    }
    db.rows.lock().unwrap()[id].0 = name.to_owned();
    Ok(Some(name.to_owned()))
}

async fn tags_through_the_macro(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Db::with(&[("lamp", 1), ("desk", 2)]);
    assert_eq!(product(&cache, &db, 0, 1).await.as_deref(), Some("lamp"));
    assert_eq!(product(&cache, &db, 1, 2).await.as_deref(), Some("desk"));
    assert_eq!(product(&cache, &db, 0, 1).await.as_deref(), Some("lamp"));
    assert_eq!(db.reads(), 2);

    cache.invalidate_tag("category:1").await.unwrap();
    assert_eq!(product(&cache, &db, 0, 1).await.as_deref(), Some("lamp"));
    assert_eq!(product(&cache, &db, 1, 2).await.as_deref(), Some("desk"));
    assert_eq!(db.reads(), 3, "only the category-1 product reloaded");
}

async fn invalidate_runs_after_a_successful_body_only(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Db::with(&[("lamp", 1), ("desk", 2)]);
    product(&cache, &db, 0, 1).await;
    product(&cache, &db, 1, 2).await;

    assert_eq!(rename_category(&cache, &db, 1, "").await, Err(Rejected));
    assert_eq!(product(&cache, &db, 0, 1).await.as_deref(), Some("lamp"));
    assert_eq!(db.reads(), 2, "an Err invalidates nothing");

    assert_eq!(rename_category(&cache, &db, 1, " (new)").await, Ok(1));
    assert_eq!(
        product(&cache, &db, 0, 1).await.as_deref(),
        Some("lamp (new)"),
        "the tag was invalidated"
    );
    assert_eq!(product(&cache, &db, 1, 2).await.as_deref(), Some("desk"));
    assert_eq!(db.reads(), 3);

    assert_eq!(delete(&cache, &db, 9).await, Err(Rejected));
    assert_eq!(delete(&cache, &db, 1).await, Ok(()));
    assert_eq!(
        product(&cache, &db, 1, 2).await.as_deref(),
        Some("(deleted)"),
        "the key was invalidated"
    );
    assert_eq!(db.reads(), 4);
}

async fn cache_put_writes_through(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Db::with(&[("lamp", 1)]);
    product(&cache, &db, 0, 1).await;

    assert_eq!(rename(&cache, &db, 0, 1, "").await, Err(Rejected));
    assert_eq!(
        product(&cache, &db, 0, 1).await.as_deref(),
        Some("lamp"),
        "an Err stores nothing"
    );

    assert_eq!(
        rename(&cache, &db, 0, 1, "floor lamp").await,
        Ok(Some("floor lamp".into()))
    );
    assert_eq!(product(&cache, &db, 0, 1).await.as_deref(), Some("floor lamp"));
    assert_eq!(db.reads(), 1, "the read after a write-through is a hit");

    // The written entry carries its tags like a loaded one.
    cache.invalidate_tag("category:1").await.unwrap();
    product(&cache, &db, 0, 1).await;
    assert_eq!(db.reads(), 2);
}

/// One tenant's view of the products: writers name `price`'s entry by a
/// call, never by its template, so they reach this tenant's entry only.
struct Prices<'a> {
    cache: &'a Cache,
    db: &'a Db,
    tenant: &'static str,
}

impl Prices<'_> {
    #[aside::cached(cache = self.cache, key = "<self.tenant>:price:<id>", tags = ["prices:<self.tenant>"])]
    async fn price(&self, id: usize) -> Option<String> {
        self.db.reads.fetch_add(1, SeqCst);
        let rows = self.db.rows.lock().unwrap();
        rows.get(id).map(|(name, _)| format!("{}/{name}", self.tenant))
    }

    #[aside::invalidate(cache = self.cache, entries = [self.price(id)])]
    async fn rename(&self, id: usize, name: &str) {
        self.db.rows.lock().unwrap()[id].0 = name.to_owned();
    }

    #[aside::cache_put(cache = self.cache, entry = self.price(id))]
    async fn rename_through(&self, id: usize, name: &str) -> Result<Option<String>, Rejected> {
        self.db.rows.lock().unwrap()[id].0 = name.to_owned();
        Ok(Some(format!("{}/{name}", self.tenant)))
    }
}

async fn writers_name_the_entry_of_their_own_tenant(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Db::with(&[("lamp", 1)]);
    let acme = Prices {
        cache: &cache,
        db: &db,
        tenant: "acme:eu",
    };
    let globex = Prices {
        cache: &cache,
        db: &db,
        tenant: "globex",
    };
    assert_eq!(acme.price(0).await.as_deref(), Some("acme:eu/lamp"));
    assert_eq!(globex.price(0).await.as_deref(), Some("globex/lamp"));
    assert_eq!(db.reads(), 2);

    // `entries = [self.price(id)]`: acme's entry, not globex's.
    acme.rename(0, "desk lamp").await;
    assert_eq!(acme.price(0).await.as_deref(), Some("acme:eu/desk lamp"));
    assert_eq!(globex.price(0).await.as_deref(), Some("globex/lamp"), "a hit");
    assert_eq!(db.reads(), 3);

    // `entry = self.price(id)`: written with `price`'s key and tags.
    acme.rename_through(0, "floor lamp").await.unwrap();
    assert_eq!(acme.price(0).await.as_deref(), Some("acme:eu/floor lamp"));
    assert_eq!(db.reads(), 3, "the read after a write-through is a hit");
    let tenant = acme.tenant;
    cache
        .invalidate_tag(&aside::key!("prices:<tenant>"))
        .await
        .unwrap();
    assert_eq!(acme.price(0).await.as_deref(), Some("acme:eu/floor lamp"));
    assert_eq!(db.reads(), 4, "the written entry carries the tenant's tag");

    // The same entries by hand.
    let entry = aside::entry!(globex.price(0));
    assert_eq!(entry.key(), "globex:price:0");
    entry.put(&cache, Some("globex/seeded".into())).await;
    assert_eq!(globex.price(0).await.as_deref(), Some("globex/seeded"));
    entry.invalidate(&cache).await.unwrap();
    assert_eq!(globex.price(0).await.as_deref(), Some("globex/floor lamp"));
    assert_eq!(db.reads(), 5);
}

/// A repository with a cache of its own, as the README recommends for a
/// service: its writers name `price`'s entry and give no `cache =`.
struct Catalog {
    cache: Cache,
    db: std::sync::Arc<Db>,
}

impl Catalog {
    #[aside::cached(cache = self.cache, key = "catalog:price:<id>")]
    async fn price(&self, id: usize) -> u32 {
        self.db.reads.fetch_add(1, SeqCst);
        self.db.rows.lock().unwrap()[id].1
    }

    #[aside::invalidate(entries = [self.price(id)])]
    async fn set_price(&self, id: usize, price: u32) {
        self.db.rows.lock().unwrap()[id].1 = price;
    }

    #[aside::cache_put(entry = self.price(id))]
    async fn set_price_through(&self, id: usize, price: u32) -> u32 {
        self.db.rows.lock().unwrap()[id].1 = price;
        price
    }

    /// The mistake the entries prevent: a key without `cache =` goes to
    /// the global cache, not the repository's.
    #[aside::invalidate(keys = ["catalog:price:<id>"])]
    async fn set_price_by_key(&self, id: usize, price: u32) {
        self.db.rows.lock().unwrap()[id].1 = price;
    }
}

/// Waits until another process reads `want`: with its own in-process
/// tier, it may serve the old value for the push latency (README,
/// "Invalidation"); without one, it reads `want` at once.
async fn settled(kind: Kind, there: &Catalog, want: u32) {
    if kind != Kind::Tiered {
        return;
    }
    support::bounded(
        "the push to reach the other process",
        std::time::Duration::from_secs(10),
        async {
            while there.price(0).await != want {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        },
    )
    .await;
}

async fn writers_without_cache_reach_their_readers_cache(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = std::sync::Arc::new(Db::with(&[("lamp", 100)]));
    let here = Catalog {
        cache: Cache::clone(&cache),
        db: db.clone(),
    };
    // Another process's repository on the same Redis (on the in-memory
    // backend, a second handle of the same cache).
    let there = Catalog {
        cache: cache.another().await,
        db: db.clone(),
    };
    // The global cache is another one: a writer that went there would
    // leave the repository's entry as it was.
    aside::with_global(Cache::memory(), async {
        assert_eq!((here.price(0).await, there.price(0).await), (100, 100));

        here.set_price(0, 777).await;
        settled(kind, &there, 777).await;
        for _ in 0..3 {
            assert_eq!(here.price(0).await, 777, "the writer's own process");
            assert_eq!(there.price(0).await, 777, "another process");
        }

        here.set_price_through(0, 555).await;
        let reads = db.reads();
        assert_eq!(
            here.price(0).await,
            555,
            "written through to the repository's cache"
        );
        settled(kind, &there, 555).await;
        assert_eq!(there.price(0).await, 555);
        if !kind.is_redis() {
            assert_eq!(db.reads(), reads, "hits of the written value");
        }

        // The control: the same write by key misses the repository's cache.
        here.set_price_by_key(0, 999).await;
        assert_eq!(
            here.price(0).await,
            555,
            "still the old value: the key went to the global cache"
        );
    })
    .await;
}

on_both_backends!(
    writers_without_cache_reach_their_readers_cache,
    tags_through_the_macro,
    invalidate_runs_after_a_successful_body_only,
    cache_put_writes_through,
    writers_name_the_entry_of_their_own_tenant
);

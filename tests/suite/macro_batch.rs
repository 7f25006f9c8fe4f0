//! `#[aside::cached_batch]` end to end, on every backend kind: entries
//! shared with the single-item `#[cached]` function, the body run once with
//! the missing ids, absent ids cached, tags, `#[invalidate]` and
//! `#[cache_put]` per id, and the attribute's forms (a `Vec`, `each`, a
//! method, a function that cannot fail).

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aside::Cache;
use support::{Kind, TestCache};

/// The "database": every query's ids, sorted.
#[derive(Clone, Default)]
struct Db {
    queries: Arc<Mutex<Vec<Vec<u64>>>>,
}

impl Db {
    fn select(&self, ids: &[u64]) -> HashMap<u64, String> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        self.queries.lock().unwrap().push(sorted);
        ids.iter()
            .filter(|&&id| id != 404)
            .map(|&id| (id, format!("product {id}")))
            .collect()
    }

    fn queries(&self) -> Vec<Vec<u64>> {
        std::mem::take(&mut self.queries.lock().unwrap())
    }
}

#[aside::cached(cache = cache, key = "product:<id>", ttl = "1h", tags = ["product:<id>"])]
async fn product(cache: &Cache, db: &Db, id: u64) -> Result<Option<String>, std::io::Error> {
    Ok(db.select(&[id]).remove(&id))
}

#[aside::cached_batch(cache = cache, key = "product:<id>", ttl = "1h", tags = ["product:<id>"])]
async fn products(cache: &Cache, db: &Db, ids: &[u64]) -> Result<HashMap<u64, String>, std::io::Error> {
    Ok(db.select(ids))
}

#[aside::invalidate(cache = cache, tags = ["product:<id>"])]
async fn update_product(cache: &Cache, id: u64) -> Result<(), std::io::Error> {
    let _ = id;
    Ok(())
}

/// Write-through to `product`'s entry: the batch reads what it wrote.
#[aside::cache_put(cache = cache, entry = product(id))]
async fn rename_product(cache: &Cache, id: u64, name: &str) -> Result<Option<String>, std::io::Error> {
    Ok(Some(name.to_owned()))
}

async fn a_batch_and_the_single_function_share_entries(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let db = Db::default();
    assert_eq!(
        product(&cache, &db, 1).await.unwrap().as_deref(),
        Some("product 1")
    );
    let found = products(&cache, &db, &[1, 2, 404, 2]).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&2], "product 2");
    assert_eq!(
        db.queries(),
        [vec![1], vec![2, 404]],
        "one query, for the missing ids"
    );

    // The single function hits what the batch stored, the absent id too.
    assert_eq!(
        product(&cache, &db, 2).await.unwrap().as_deref(),
        Some("product 2")
    );
    assert_eq!(product(&cache, &db, 404).await.unwrap(), None);
    assert!(db.queries().is_empty());

    // An invalidation by the writer reaches the batch's entry of that id only.
    update_product(&cache, 2).await.unwrap();
    let found = products(&cache, &db, &[1, 2, 404]).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(db.queries(), [vec![2]]);

    // And a `#[cache_put]` on the single function's entry, too.
    rename_product(&cache, 1, "renamed").await.unwrap();
    let found = products(&cache, &db, &[1, 2]).await.unwrap();
    assert_eq!(found[&1], "renamed");
    assert!(db.queries().is_empty());
}

on_both_backends!(a_batch_and_the_single_function_share_entries);

/// A `mut` `Vec` of ids, named by `each`, and a function that cannot fail.
#[aside::cached_batch(cache = cache, key = "person:<person>", each = "person", ttl = 60)]
async fn people(cache: &Cache, db: &Db, mut batch: Vec<u64>) -> HashMap<u64, String> {
    batch.sort_unstable(); // a `mut` argument stays mutable in the body
    db.select(&batch)
}

/// A method: the templates may name `self`'s fields and other arguments.
struct Catalog {
    cache: Cache,
    tenant: String,
    db: Db,
}

impl Catalog {
    #[aside::cached_batch(cache = self.cache, key = "<self.tenant>:<region>:item:<id>", ttl = 60)]
    async fn items(&self, region: &str, ids: &[u64]) -> Result<HashMap<u64, String>, std::io::Error> {
        Ok(self
            .db
            .select(ids)
            .into_iter()
            .map(|(id, name)| (id, format!("{name} in {region}")))
            .collect())
    }
}

#[tokio::test(start_paused = true)]
async fn the_batch_may_be_a_vec_named_by_each() {
    let cache = Cache::memory();
    let db = Db::default();
    let found = people(&cache, &db, vec![1, 2]).await;
    assert_eq!(found.len(), 2);
    let found = people(&cache, &db, vec![2, 3]).await;
    assert_eq!(found[&3], "product 3");
    assert_eq!(db.queries(), [vec![1, 2], vec![3]]);
    let value: Option<Option<String>> = cache.get("person:1").await.unwrap();
    assert_eq!(
        value,
        Some(Some("product 1".to_owned())),
        "one entry per id, under its key"
    );
}

#[tokio::test(start_paused = true)]
async fn a_method_keys_by_its_fields_and_arguments() {
    let catalog = Catalog {
        cache: Cache::memory(),
        tenant: "acme".into(),
        db: Db::default(),
    };
    let found = catalog.items("eu", &[1, 2]).await.unwrap();
    assert_eq!(found[&1], "product 1 in eu");
    catalog.items("eu", &[1, 2]).await.unwrap();
    catalog.items("us", &[1]).await.unwrap();
    assert_eq!(
        catalog.db.queries(),
        [vec![1, 2], vec![1]],
        "the region is part of the key"
    );
    let value: Option<Option<String>> = catalog.cache.get("acme:us:item:1").await.unwrap();
    assert_eq!(value, Some(Some("product 1 in us".to_owned())));
}

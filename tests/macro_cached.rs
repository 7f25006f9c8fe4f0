//! `#[aside::cached]` end to end, on both backends: every function shape the
//! attribute accepts, and what it stores.

mod support;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use aside::{Cache, KeyBuilder};
use serde::{Deserialize, Serialize};
use support::{Kind, TestCache};

static RUNS: AtomicU64 = AtomicU64::new(0);

/// Runs of the bodies below; each test uses its own counter through `Probe`.
#[derive(Default)]
struct Probe(AtomicU64);

impl Probe {
    fn hit(&self) {
        self.0.fetch_add(1, SeqCst);
    }
    fn runs(&self) -> u64 {
        self.0.load(SeqCst)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
}

#[derive(Debug, PartialEq)]
struct DbError(&'static str);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

// A free function: `Result<Option<T>, E>`, explicit key and TTLs.
#[aside::cached(cache = cache, key = "product:<id>", ttl = "1h", negative_ttl = 60)]
async fn get_product(cache: &Cache, probe: &Probe, id: u64) -> Result<Option<Product>, DbError> {
    probe.hit();
    match id {
        0 => Err(DbError("no such table")),
        1..=100 => Ok(Some(Product {
            id,
            name: format!("product {id}"),
        })),
        _ => Ok(None),
    }
}

// A plain return type and reference arguments.
#[aside::cached(cache = cache, key = "greet:<name>:<times>")]
async fn greet(cache: &Cache, probe: &Probe, name: &str, times: &usize) -> String {
    probe.hit();
    name.repeat(*times)
}

// Field paths in placeholders.
struct User {
    id: u64,
    org: (u32, String),
}

#[aside::cached(cache = cache, key = "user:<user.id>:org:<user.org.1>")]
async fn user_label(cache: &Cache, probe: &Probe, user: &User) -> String {
    probe.hit();
    format!("{}@{}#{}", user.id, user.org.1, user.org.0)
}

// A generic function.
#[aside::cached(cache = cache, key = "echo:<value>", ttl = 60)]
async fn echo<T>(cache: &Cache, probe: &Probe, value: T) -> T
where
    T: fmt::Display + Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    probe.hit();
    value
}

// `?` and `return` in the body behave as in any async fn.
#[aside::cached(cache = cache, key = "parse:<text>")]
async fn parse(cache: &Cache, probe: &Probe, text: &str) -> Result<u32, std::num::ParseIntError> {
    probe.hit();
    if text.is_empty() {
        return Ok(0);
    }
    let n: u32 = text.trim().parse()?;
    Ok(n * 2)
}

// `Option<T>` with negative caching off.
#[aside::cached(cache = cache, key = "maybe:<id>", negative_ttl = 0)]
async fn maybe(cache: &Cache, probe: &Probe, id: u32) -> Option<u32> {
    probe.hit();
    id.is_multiple_of(2).then_some(id)
}

// Methods: an inherent impl, taking the cache and part of the key from `self`.
struct Repo {
    cache: Cache,
    tenant: String,
    probe: Probe,
}

impl Repo {
    #[aside::cached(cache = self.cache, key = "<self.tenant>:count:<table>")]
    async fn count(&self, table: &str) -> Result<u64, DbError> {
        self.probe.hit();
        Ok(table.len() as u64)
    }
}

// A trait impl method: no companion, since a trait impl takes no other item.
trait Catalog {
    async fn name_of(&self, id: u64) -> Option<String>;
}

impl Catalog for Repo {
    #[aside::cached(cache = self.cache, key = "name:<id>", entry = false)]
    async fn name_of(&self, id: u64) -> Option<String> {
        self.probe.hit();
        Some(format!("#{id}"))
    }
}

// The default key: module path, function name and every argument but `self`.
#[aside::cached(cache = &*CACHE_FOR_DEFAULT_KEY)]
async fn default_keyed(a: u32, b: &str) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("{a}{b}")
}

// An argument that is the cache is left out of the default key.
#[aside::cached(cache = cache)]
async fn default_keyed_with_cache_arg(cache: &Cache, n: u32) -> u32 {
    RUNS_WITH_CACHE_ARG.fetch_add(1, SeqCst);
    n + 1
}

static RUNS_WITH_CACHE_ARG: AtomicU64 = AtomicU64::new(0);

static CACHE_FOR_DEFAULT_KEY: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(Cache::memory);

async fn result_option_and_err(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let probe = Probe::default();
    let want = Some(Product {
        id: 7,
        name: "product 7".into(),
    });
    assert_eq!(get_product(&cache, &probe, 7).await, Ok(want.clone()));
    assert_eq!(get_product(&cache, &probe, 7).await, Ok(want));
    assert_eq!(probe.runs(), 1, "the second call is a hit");

    assert_eq!(get_product(&cache, &probe, 500).await, Ok(None));
    assert_eq!(get_product(&cache, &probe, 500).await, Ok(None));
    assert_eq!(probe.runs(), 2, "None is cached");
    assert_eq!(cache.stats().negative_hits, 1);

    assert_eq!(
        get_product(&cache, &probe, 0).await,
        Err(DbError("no such table"))
    );
    assert_eq!(
        get_product(&cache, &probe, 0).await,
        Err(DbError("no such table"))
    );
    assert_eq!(probe.runs(), 4, "Err is never cached");

    // The key is exactly the template's, so it can be read or invalidated by hand.
    assert_eq!(
        cache
            .get::<Option<Product>>("product:7")
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .id,
        7
    );
    cache.invalidate("product:7").await.unwrap();
    get_product(&cache, &probe, 7).await.unwrap();
    assert_eq!(probe.runs(), 5);
}

async fn plain_values_and_reference_args(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let probe = Probe::default();
    assert_eq!(greet(&cache, &probe, "ab", &2).await, "abab");
    assert_eq!(greet(&cache, &probe, "ab", &2).await, "abab");
    assert_eq!(greet(&cache, &probe, "ab", &3).await, "ababab");
    assert_eq!(probe.runs(), 2);
}

async fn placeholder_values_are_escaped(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let probe = Probe::default();
    // "a:b" with 1 and "a" with "b:1" would collide without escaping.
    assert_eq!(greet(&cache, &probe, "a:b", &1).await, "a:b");
    let key = KeyBuilder::new("greet:").arg("a:b").lit(":").arg(&1).finish();
    assert_eq!(key, r"greet:a\:b:1");
    assert_eq!(cache.get::<String>(&key).await.unwrap().as_deref(), Some("a:b"));
    // A call's key is written into 64 bytes of its own; past them, onto
    // the heap. Either way, the key is the one `KeyBuilder` writes. ("é:" is
    // 4 bytes escaped: the keys are 60, 64, 68 and 168 bytes long.)
    for name in [13, 14, 15, 40].map(|n| "é:".repeat(n)) {
        assert_eq!(greet(&cache, &probe, &name, &1).await, name);
        let key = KeyBuilder::new("greet:").arg(&name).lit(":").arg(&1).finish();
        assert_eq!(cache.get::<String>(&key).await.unwrap(), Some(name));
    }
}

async fn field_paths(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let probe = Probe::default();
    let user = User {
        id: 3,
        org: (9, "acme".into()),
    };
    assert_eq!(user_label(&cache, &probe, &user).await, "3@acme#9");
    // Same id and org name, another org number: the key does not see it, so this is a hit.
    let twin = User {
        id: 3,
        org: (10, "acme".into()),
    };
    assert_eq!(user_label(&cache, &probe, &twin).await, "3@acme#9");
    assert_eq!(probe.runs(), 1);
    assert!(cache.get::<String>("user:3:org:acme").await.unwrap().is_some());
}

async fn generic_functions(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let probe = Probe::default();
    assert_eq!(echo(&cache, &probe, 5u8).await, 5);
    assert_eq!(echo(&cache, &probe, 5u8).await, 5);
    assert_eq!(echo(&cache, &probe, "x".to_owned()).await, "x");
    assert_eq!(probe.runs(), 2);
}

async fn question_mark_and_return(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let probe = Probe::default();
    assert_eq!(parse(&cache, &probe, "21").await, Ok(42));
    assert_eq!(parse(&cache, &probe, "").await, Ok(0));
    assert!(parse(&cache, &probe, "x").await.is_err());
    assert_eq!(parse(&cache, &probe, "21").await, Ok(42));
    assert_eq!(probe.runs(), 3);
}

async fn option_without_negative_caching(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let probe = Probe::default();
    for _ in 0..2 {
        assert_eq!(maybe(&cache, &probe, 2).await, Some(2));
        assert_eq!(maybe(&cache, &probe, 3).await, None);
    }
    assert_eq!(probe.runs(), 3, "Some is cached, None is not");
}

async fn methods(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let repo = Repo {
        cache: cache.cache.clone(),
        tenant: "t1".into(),
        probe: Probe::default(),
    };
    assert_eq!(repo.count("users").await, Ok(5));
    assert_eq!(repo.count("users").await, Ok(5));
    assert_eq!(repo.name_of(4).await.as_deref(), Some("#4"));
    assert_eq!(repo.name_of(4).await.as_deref(), Some("#4"));
    assert_eq!(repo.probe.runs(), 2);
    assert_eq!(cache.get::<u64>("t1:count:users").await.unwrap(), Some(5));
}

on_both_backends!(
    result_option_and_err,
    plain_values_and_reference_args,
    placeholder_values_are_escaped,
    field_paths,
    generic_functions,
    question_mark_and_return,
    option_without_negative_caching,
    methods,
);

#[tokio::test]
async fn default_key_is_module_path_function_and_arguments() {
    assert_eq!(default_keyed(1, "x:y").await, "1x:y");
    assert_eq!(default_keyed(1, "x:y").await, "1x:y");
    assert_eq!(RUNS.load(SeqCst), 1);
    let key = KeyBuilder::new(concat!(module_path!(), "::default_keyed:"))
        .arg(&1)
        .lit(":")
        .arg("x:y")
        .finish();
    assert_eq!(key, r"macro_cached::default_keyed:1:x\:y");
    assert_eq!(
        CACHE_FOR_DEFAULT_KEY
            .get::<String>(&key)
            .await
            .unwrap()
            .as_deref(),
        Some("1x:y")
    );
}

#[tokio::test]
async fn default_key_leaves_out_the_cache_argument() {
    let cache = Cache::memory();
    assert_eq!(default_keyed_with_cache_arg(&cache, 1).await, 2);
    assert_eq!(default_keyed_with_cache_arg(&cache, 1).await, 2);
    assert_eq!(RUNS_WITH_CACHE_ARG.load(SeqCst), 1);
    let key = concat!(module_path!(), "::default_keyed_with_cache_arg:1");
    assert_eq!(cache.get::<u32>(key).await.unwrap(), Some(2));
}

/// Cached functions stay `Send`, so they can be spawned and used in handlers.
#[test]
fn cached_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cache = Cache::memory();
    let probe = Probe::default();
    assert_send(&get_product(&cache, &probe, 1));
    assert_send(&greet(&cache, &probe, "a", &1));
    let repo = Repo {
        cache: cache.clone(),
        tenant: "t".into(),
        probe: Probe::default(),
    };
    assert_send(&repo.count("t"));
}

// Two types in one module with a method of the same name (whose keys are
// their own: a method has no default key), and a generic function: their
// keys must not collide.
struct Left;
struct Right;

impl Left {
    #[aside::cached(cache = cache, key = "left:name:<id>")]
    async fn name(&self, cache: &Cache, id: u32) -> String {
        format!("left {id}")
    }
}

impl Right {
    #[aside::cached(cache = cache, key = "right:name:<id>")]
    async fn name(&self, cache: &Cache, id: u32) -> String {
        format!("right {id}")
    }
}

#[aside::cached(cache = cache)]
async fn type_of<T: Default + Serialize>(cache: &Cache, id: u32) -> String {
    let _ = id;
    serde_json::to_string(&T::default()).unwrap()
}

#[tokio::test]
async fn keys_tell_methods_and_type_arguments_apart() {
    let cache = Cache::memory();
    assert_eq!(Left.name(&cache, 1).await, "left 1");
    assert_eq!(Right.name(&cache, 1).await, "right 1");
    assert_eq!(type_of::<u8>(&cache, 1).await, "0");
    assert_eq!(type_of::<String>(&cache, 1).await, "\"\"");
    assert_eq!(
        cache.get::<String>("left:name:1").await.unwrap().as_deref(),
        Some("left 1")
    );
    assert_eq!(
        cache
            .get::<String>("macro_cached::type_of<u8>:1")
            .await
            .unwrap()
            .as_deref(),
        Some("0"),
        "a generic function's default key carries its type arguments"
    );
}

const SHORT: std::time::Duration = std::time::Duration::from_millis(100);

// A duration given as a const: the entry lives that long.
#[aside::cached(cache = cache, key = "short:<n>", ttl = SHORT)]
async fn short_lived(cache: &Cache, probe: &Probe, n: u32) -> u32 {
    probe.hit();
    n
}

#[tokio::test(start_paused = true)]
async fn a_duration_expression_sets_the_ttl() {
    let (cache, probe) = (Cache::memory(), Probe::default());
    short_lived(&cache, &probe, 1).await;
    short_lived(&cache, &probe, 1).await;
    assert_eq!(probe.runs(), 1, "a hit within the TTL");
    tokio::time::advance(SHORT + std::time::Duration::from_millis(1)).await;
    short_lived(&cache, &probe, 1).await;
    assert_eq!(probe.runs(), 2, "loaded again once SHORT has passed");
}

// Two functions whose templates give the same keys, caching different
// types: each reads the other's entries as corrupt. One pair per backend,
// since each pair is logged once per process.
#[aside::cached(cache = cache, key = "shared:<id>")]
async fn price_on_redis(cache: &Cache, id: u64) -> u32 {
    id as u32
}

#[aside::cached(cache = cache, key = "shared:<sku>")]
async fn name_on_redis(cache: &Cache, sku: u64) -> String {
    sku.to_string()
}

#[aside::cached(cache = cache, key = "shared-in-memory:<id>")]
async fn price_in_memory(cache: &Cache, id: u64) -> u32 {
    id as u32
}

#[aside::cached(cache = cache, key = "shared-in-memory:<sku>")]
async fn name_in_memory(cache: &Cache, sku: u64) -> String {
    sku.to_string()
}

// The control: a batch and its single-key function share entries on
// purpose, a value and an `Option` of it.
#[aside::cached(cache = cache, key = "sku:<id>")]
async fn sku(cache: &Cache, id: u64) -> Option<String> {
    Some(id.to_string())
}

#[aside::cached_batch(cache = cache, key = "sku:<id>")]
async fn skus(cache: &Cache, ids: &[u64]) -> std::collections::HashMap<u64, String> {
    ids.iter().map(|id| (*id, id.to_string())).collect()
}

/// What a collision left: the log line naming both functions, and the
/// reader's counters.
async fn collide(
    kind: Kind,
    price: impl AsyncFn(&Cache, u64) -> u32,
    name: impl AsyncFn(&Cache, u64) -> String,
) -> String {
    let cache = TestCache::new(kind).await;
    let logs = support::logs::Logs::default();
    let _capture = logs.capture();
    assert_eq!(price(&cache, 1).await, 1);
    assert_eq!(name(&cache, 1).await, "1", "a corrupt miss: the body's value");
    assert_eq!(price(&cache, 1).await, 1, "and back");
    assert_eq!(cache.stats().corrupt, 2);
    assert_eq!(sku(&cache, 1).await.as_deref(), Some("1"));
    assert_eq!(skus(&cache, &[1, 2]).await.len(), 2);
    assert_eq!(
        sku(&cache, 2).await.as_deref(),
        Some("2"),
        "a hit on the batch's entry"
    );
    assert_eq!(cache.stats().corrupt, 2, "the batch and its function share");
    logs.text()
}

fn stats_of(suffix: &str) -> aside::stats::FunctionStats {
    aside::stats::function_stats()
        .into_iter()
        .find(|f| f.name.ends_with(suffix))
        .expect("the function was called")
}

#[tokio::test(flavor = "current_thread")]
async fn colliding_templates_are_named_on_redis() {
    let logs = collide(Kind::Redis, price_on_redis, name_on_redis).await;
    let line = logs
        .lines()
        .find(|line| line.contains("ERROR") && line.contains("same keys"))
        .unwrap_or_else(|| panic!("no collision logged in:\n{logs}"));
    for expected in [
        "reader=macro_cached::name_on_redis",
        "reader_type=alloc::string::String",
        "writer=macro_cached::price_on_redis",
        "writer_type=u32",
        "key=shared:1",
    ] {
        assert!(line.contains(expected), "{expected} not in {line}");
    }
    assert!(
        !logs.contains("unreadable cache entry"),
        "said once, with the reason:\n{logs}"
    );
    assert_eq!(stats_of("::name_on_redis").collisions, 1);
    assert_eq!(stats_of("::price_on_redis").collisions, 1);
    assert_eq!(stats_of("::sku").collisions, 0);

    let checked = aside::check_keys().unwrap_err().to_string();
    assert!(
        checked.contains("`macro_cached::price_on_redis` (key \"shared:<id>\", u32)"),
        "{checked}"
    );
    assert!(
        checked.contains("`macro_cached::name_on_redis` (key \"shared:<sku>\", alloc::string::String)"),
        "{checked}"
    );
    assert!(
        !checked.contains("skus"),
        "a batch and its function share on purpose: {checked}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn colliding_templates_are_named_in_memory() {
    let logs = collide(Kind::Memory, price_in_memory, name_in_memory).await;
    assert!(
        logs.lines().any(|line| line.contains("ERROR")
            && line.contains("reader=macro_cached::name_in_memory")
            && line.contains("writer=macro_cached::price_in_memory")),
        "{logs}"
    );
    assert_eq!(stats_of("::name_in_memory").collisions, 1);
}

//! `aside::testing::caching_off`: one switch turns caching off for every
//! cached call of a test, whichever cache it names, including calls in the
//! tasks the test spawns; tests on other threads do not see it.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use aside::Cache;

/// A repository with a cache of its own, built elsewhere (as a service
/// builds it at start-up).
struct Repo {
    cache: Cache,
}

impl Repo {
    #[aside::cached(cache = self.cache, key = "price:<id>")]
    async fn price(&self, id: u64, queries: &AtomicU64) -> u32 {
        queries.fetch_add(1, SeqCst);
        id as u32 * 10
    }
}

static GLOBAL_QUERIES: AtomicU64 = AtomicU64::new(0);

#[aside::cached(key = "stock:<id>")]
async fn stock(id: u64) -> u32 {
    GLOBAL_QUERIES.fetch_add(1, SeqCst);
    id as u32
}

#[tokio::test]
async fn the_switch_reaches_a_repository_its_spawned_tasks_and_the_global_cache() {
    let repo = Arc::new(Repo {
        cache: Cache::memory(),
    });
    let queries = Arc::new(AtomicU64::new(0));
    let off = aside::testing::caching_off();
    assert_eq!(repo.price(1, &queries).await, 10);
    assert_eq!(repo.price(1, &queries).await, 10);
    let spawned = {
        let (repo, queries) = (repo.clone(), queries.clone());
        tokio::spawn(async move { repo.price(1, &queries).await })
    };
    assert_eq!(spawned.await.unwrap(), 10);
    assert_eq!(
        queries.load(SeqCst),
        3,
        "off: every call ran its function, the spawned one too"
    );
    let before = GLOBAL_QUERIES.load(SeqCst);
    stock(4).await;
    stock(4).await;
    assert_eq!(
        GLOBAL_QUERIES.load(SeqCst) - before,
        2,
        "the global cache is off too"
    );
    assert_eq!(
        repo.cache.stats().hits + repo.cache.stats().misses,
        0,
        "nothing was looked up"
    );

    drop(off);
    repo.price(1, &queries).await;
    repo.price(1, &queries).await;
    assert_eq!(queries.load(SeqCst), 4, "on again: one load, then a hit");
}

#[test]
fn two_tests_on_their_own_threads_do_not_see_each_others_switch() {
    // One repository, one cache, two threads each with its own runtime, as
    // two #[tokio::test]s running in parallel: one turns caching off.
    let repo = Arc::new(Repo {
        cache: Cache::memory(),
    });
    let steps = Arc::new(Barrier::new(2));
    let test = |off: bool| {
        let (repo, steps) = (repo.clone(), steps.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _off = off.then(aside::testing::caching_off);
                let queries = AtomicU64::new(0);
                steps.wait(); // both switches are set
                repo.price(2, &queries).await;
                steps.wait(); // the cached thread has stored the price
                repo.price(2, &queries).await;
                steps.wait();
                queries.load(SeqCst)
            })
        })
    };
    let (off, on) = (test(true), test(false));
    assert_eq!(
        off.join().unwrap(),
        2,
        "the thread with the switch ran both calls"
    );
    assert_eq!(on.join().unwrap(), 1, "the other loaded once, then hit");
}

/// A catalogue service as an application builds it: a repository with its
/// own cache, a writer naming its reader's entry, tags.
struct Catalog {
    cache: Cache,
    queries: AtomicU64,
}

impl Catalog {
    fn new(cache: Cache) -> Self {
        Catalog {
            cache,
            queries: AtomicU64::new(0),
        }
    }

    #[aside::cached(cache = self.cache, key = "product:<id>", tags = ["category:<cat>"], ttl = 60)]
    async fn product(&self, id: u64, cat: u32) -> Option<String> {
        self.queries.fetch_add(1, SeqCst);
        (id != 0).then(|| format!("product {id} in {cat}"))
    }

    #[aside::invalidate(entries = [self.product(id, cat)])]
    async fn rename(&self, id: u64, cat: u32) {
        let _ = (id, cat);
    }

    #[aside::invalidate(cache = self.cache, tags = ["category:<cat>"])]
    async fn reprice_category(&self, cat: u32) {
        let _ = cat;
    }

    #[aside::cache_put(entry = self.product(id, cat))]
    async fn save(&self, id: u64, cat: u32, name: &str) -> Option<String> {
        let _ = (id, cat);
        Some(name.to_owned())
    }
}

#[tokio::test]
async fn isolated_stands_in_for_a_repositorys_cache_and_records_by_companion() {
    // The service's cache is built elsewhere, and already holds a value
    // that the test must not see.
    let catalog = Arc::new(Catalog::new(Cache::memory()));
    catalog.product(1, 7).await;
    assert_eq!(catalog.queries.load(SeqCst), 1);

    let test = aside::testing::isolated();
    let entry = aside::entry!(catalog.product(1, 7));
    assert_eq!(catalog.product(1, 7).await.as_deref(), Some("product 1 in 7"));
    assert_eq!(catalog.queries.load(SeqCst), 2, "the stand-in started empty");
    test.assert_miss(&entry);
    let spawned = {
        let catalog = catalog.clone();
        tokio::spawn(async move { catalog.product(1, 7).await })
    };
    spawned.await.unwrap();
    test.assert_hit(&entry);
    assert_eq!(
        test.counts(&entry),
        aside::testing::Counts {
            misses: 1,
            loads: 1,
            hits: 1,
            ..Default::default()
        },
        "{:?}",
        test.events()
    );
    assert_eq!(catalog.cache.stats().hits, 1, "stats are the stand-in's");

    // A writer naming the entry, a tag writer, a put: each recorded
    // against the entry.
    catalog.rename(1, 7).await;
    assert_eq!(test.invalidations(&entry), 1);
    catalog.reprice_category(7).await;
    assert_eq!(
        test.invalidations(&entry),
        2,
        "through its tag, which the companion knows"
    );
    assert_eq!(
        test.invalidations("product:1"),
        1,
        "a key alone does not know its tags"
    );
    catalog.save(1, 7, "renamed").await;
    assert_eq!(test.counts(&entry).puts, 1);
    assert_eq!(catalog.product(1, 7).await.as_deref(), Some("renamed"));
    test.assert_hit(&entry);
    // Negative caching, by function.
    catalog.product(0, 7).await;
    catalog.product(0, 7).await;
    assert_eq!(test.counts(&aside::entry!(catalog.product(0, 7))).negative, 1);
    let by_function = test.function("product");
    assert_eq!((by_function.loads, by_function.hits), (2, 2), "{by_function:?}");
    assert_eq!(test.function("testing::save").puts, 1, "a put is its writer's");
    drop(test);

    assert_eq!(catalog.product(1, 7).await.as_deref(), Some("product 1 in 7"));
    assert_eq!(
        catalog.queries.load(SeqCst),
        3,
        "after the guard the service's cache is its own again, untouched"
    );
}

#[test]
fn isolated_tests_on_their_own_threads_share_one_static_cache_without_seeing_each_other() {
    static SHARED: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(Cache::memory);
    #[aside::cached(cache = &*SHARED, key = "greeting:<id>")]
    async fn greeting(id: u64, from: &'static str) -> String {
        format!("{from} says hello to {id}")
    }
    let steps = Arc::new(Barrier::new(2));
    let test = |name: &'static str| {
        let steps = steps.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let test = aside::testing::isolated();
                steps.wait(); // both guards live
                let first = greeting(1, name).await;
                steps.wait(); // both have stored their greeting
                let second = greeting(1, name).await;
                steps.wait();
                assert_eq!(test.loads(&aside::entry!(greeting(1))), 1);
                (first, second)
            })
        })
    };
    let (a, b) = (test("a"), test("b"));
    let expected = |name: &str| {
        (
            format!("{name} says hello to 1"),
            format!("{name} says hello to 1"),
        )
    };
    assert_eq!(a.join().unwrap(), expected("a"), "a saw only its own value");
    assert_eq!(b.join().unwrap(), expected("b"), "b saw only its own value");
    assert_eq!(
        SHARED.stats().misses + SHARED.stats().hits,
        0,
        "nothing reached the shared cache"
    );
}

#[tokio::test(start_paused = true)]
async fn isolated_on_a_paused_clock_records_expiry_and_a_refresh_in_the_background() {
    static LOADS: AtomicU64 = AtomicU64::new(0);
    #[aside::cached(key = "rate:<id>", ttl = 60, stampede = "swr", stale = 600)]
    async fn rate(id: u64) -> u64 {
        id * 100 + LOADS.fetch_add(1, SeqCst)
    }
    let test = aside::testing::isolated();
    let entry = aside::entry!(rate(1));
    let first = rate(1).await;
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    assert_eq!(rate(1).await, first, "past its TTL, the old value is served");
    assert_eq!(test.last_outcome(&entry), Some(aside::stats::Outcome::Stale));
    // The refresh runs on a task of its own; let it land.
    tokio::task::yield_now().await;
    assert_eq!(rate(1).await, first + 1, "then the refreshed one");
    test.assert_hit(&entry);
    assert_eq!(test.loads(&entry), 2, "{:?}", test.events_of(&entry));
}

#[tokio::test]
#[should_panic(
    expected = "expected the last lookup of `stock:9` to be a hit, but it was miss; what happened to it: [Lookup"
)]
async fn a_failed_assertion_names_the_entry_and_what_happened_to_it() {
    let test = aside::testing::isolated();
    stock(9).await;
    test.assert_hit(&aside::entry!(stock(9)));
}

#[tokio::test]
async fn isolated_records_coalesced_callers_and_reaches_the_global_cache() {
    static LOADS: AtomicU64 = AtomicU64::new(0);
    #[aside::cached(key = "slow:<id>")]
    async fn slow(id: u64) -> u64 {
        LOADS.fetch_add(1, SeqCst);
        for _ in 0..3 {
            tokio::task::yield_now().await; // the second caller finds the load in flight
        }
        id
    }
    let test = aside::testing::isolated();
    let (a, b) = tokio::join!(slow(3), slow(3));
    assert_eq!((a, b), (3, 3));
    let entry = aside::entry!(slow(3));
    assert_eq!(
        test.counts(&entry),
        aside::testing::Counts {
            misses: 1,
            coalesced: 1,
            loads: 1,
            ..Default::default()
        },
        "{:?}",
        test.events_of(&entry)
    );
    assert_eq!(
        aside::global().stats().coalesced,
        1,
        "the global cache's stand-in"
    );
    drop(test);
    assert_eq!(
        aside::global().stats().coalesced,
        0,
        "the global cache itself saw nothing"
    );
}

#[tokio::test]
async fn a_batch_records_the_ids_its_first_read_did_not_answer() {
    use std::collections::HashMap;
    let rec = aside::testing::Recorder::new();
    let cache = Cache::builder().record(&rec).build().await.unwrap();
    let entry = |id: &u64| (format!("n:{id}"), aside::Policy::new());
    let load = |ids: Vec<u64>| async move {
        Ok::<_, ()>(ids.into_iter().map(|id| (id, id)).collect::<HashMap<_, _>>())
    };
    cache.get_or_load_batch([1, 2], entry, load).await.unwrap();
    assert_eq!(
        rec.counts("n:1"),
        aside::testing::Counts {
            misses: 1,
            loads: 1,
            ..Default::default()
        },
        "{:?}",
        rec.events()
    );
    let events = rec.events().len();
    cache.get_or_load_batch([1, 2], entry, load).await.unwrap();
    assert_eq!(
        rec.events().len(),
        events,
        "hits answered by the batch's one read are not recorded"
    );
}

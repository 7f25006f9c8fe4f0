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

//! What a cached call tells the outside: statistics per function, and a
//! `tracing` span per call with its outcome, its tier, its load time and
//! child spans for the load, the waits and the backend's round trips.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::stats::FunctionStats;
use aside::{Cache, Function, Policy, Stampede};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use support::redis_server::RedisServer;

// ---- statistics per function ----

fn stats_of(name_ends: &str) -> FunctionStats {
    aside::stats::function_stats()
        .into_iter()
        .find(|f| f.name.ends_with(name_ends))
        .unwrap_or_else(|| panic!("no statistics for {name_ends}"))
}

/// Outcomes that add up to the calls made.
fn assert_adds_up(stats: &FunctionStats, calls: u64) {
    let outcomes = stats.hits + stats.coalesced + stats.misses + stats.bypassed;
    assert_eq!((stats.calls(), outcomes), (calls, calls), "{stats:?}");
}

#[aside::cached(key = "price:<id>", ttl = "1h")]
async fn price(id: u64, release: Arc<tokio::sync::Notify>) -> u64 {
    release.notified().await;
    id * 100
}

#[aside::cached(key = "stock:<id>", ttl = "1h")]
async fn stock(id: u64) -> Option<u32> {
    (id < 10).then_some(3)
}

/// Each function's calls are counted apart: hits, misses, negative hits,
/// coalesced waits and bypassed calls, with its load time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_counts_its_own_outcomes() {
    aside::init(Cache::memory()).unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    // 10 concurrent callers of one key: one loads, nine wait for it.
    let callers: Vec<_> = (0..10).map(|_| tokio::spawn(price(7, release.clone()))).collect();
    support::until("nine callers wait", || aside::global().stats().waiting == 9).await;
    release.notify_one();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 700);
    }
    assert_eq!(price(7, release.clone()).await, 700);
    let price_stats = stats_of("::price");
    assert_eq!(price_stats.name, "observability::price");
    assert_eq!(
        (price_stats.misses, price_stats.coalesced, price_stats.hits),
        (1, 9, 1)
    );
    assert_eq!((price_stats.loads, price_stats.load_errors), (1, 0));
    assert!(price_stats.load_time > Duration::ZERO);
    assert_adds_up(&price_stats, 11);

    // A negative result, then its hits; a bypassed call.
    for _ in 0..3 {
        assert_eq!(stock(50).await, None);
    }
    assert_eq!(stock(1).await, Some(3));
    assert_eq!(aside::bypass(stock(1)).await, Some(3));
    let stock_stats = stats_of("::stock");
    assert_eq!(
        (stock_stats.misses, stock_stats.hits, stock_stats.negative_hits),
        (2, 2, 2)
    );
    assert_eq!((stock_stats.bypassed, stock_stats.loads), (1, 3));
    assert_adds_up(&stock_stats, 5);
    assert!((stock_stats.hit_ratio() - 0.5).abs() < 1e-9, "{stock_stats:?}");
    // The cache's totals hold both.
    let totals = aside::global().stats();
    assert_eq!(totals.hits, price_stats.hits + stock_stats.hits);
    assert_eq!(totals.misses, price_stats.misses + stock_stats.misses);
}

static STALE: Function = Function::new("tests::stale");

/// A value served in swr's stale window is a stale hit, and its refresh is
/// counted; `Policy::function` names a plain `get_or_load`.
#[tokio::test(start_paused = true)]
async fn a_stale_hit_and_its_refresh_are_counted() {
    let cache = Cache::memory();
    let policy = Policy::new()
        .ttl(Duration::from_secs(60))
        .stampede(Stampede::Swr {
            stale: Duration::from_secs(3600),
        })
        .function(&STALE);
    let load = |v: u32| move || async move { Ok::<_, ()>(v) };
    assert_eq!(cache.get_or_load("s", &policy, load(1)).await, Ok(1));
    tokio::time::advance(Duration::from_secs(61)).await;
    // Past the TTL: this caller refreshes; the next is served the new value.
    assert_eq!(cache.get_or_load("s", &policy, load(2)).await, Ok(2));
    assert_eq!(cache.get_or_load("s", &policy, load(3)).await, Ok(2));
    let stats = STALE.stats();
    assert_eq!(
        (stats.misses, stats.hits, stats.stale_hits),
        (1, 2, 1),
        "{stats:?}"
    );
    assert_eq!((stats.refreshes, stats.loads), (1, 2), "{stats:?}");
    assert_eq!(cache.stats().stale_hits, 1);
    assert_adds_up(&stats, 3);
}

// ---- spans ----

/// A span as a subscriber saw it.
#[derive(Debug, Clone)]
struct Seen {
    name: &'static str,
    parent: Option<&'static str>,
    fields: HashMap<String, String>,
}

/// A layer that keeps every span it is shown, in order.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

struct Index(usize);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push(Seen {
            name: attrs.metadata().name(),
            parent: span.parent().map(|parent| parent.name()),
            fields,
        });
        span.extensions_mut().insert(Index(spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let extensions = span.extensions();
        let Index(index) = extensions.get::<Index>().unwrap();
        values.record(&mut Fields(&mut self.0.lock().unwrap()[*index].fields));
    }
}

impl Spans {
    /// Installs the layer for this thread (the tests run on a current-thread runtime).
    fn install() -> (Spans, tracing::subscriber::DefaultGuard) {
        let spans = Spans::default();
        let subscriber = tracing_subscriber::registry().with(spans.clone());
        let guard = support::logs::scoped(subscriber);
        (spans.clone(), guard)
    }

    fn named(&self, name: &str) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

#[aside::cached(key = "traced:<n>", ttl = "1h")]
async fn traced(n: u64) -> u64 {
    n + 1
}

/// A miss and a hit, each one span naming the function, with its outcome;
/// the miss with its load time and a child span for the load. No key.
#[tokio::test(flavor = "current_thread")]
async fn each_call_is_a_span_with_its_outcome() {
    let (spans, _guard) = Spans::install();
    let cache = Cache::memory();
    aside::with_global(cache, async {
        assert_eq!(traced(1).await, 2);
        assert_eq!(traced(1).await, 2);
    })
    .await;
    let calls = spans.named("aside.get_or_load");
    assert_eq!(calls.len(), 2, "{calls:#?}");
    for call in &calls {
        assert_eq!(call.fields["function"], "observability::traced");
        assert!(
            !call.fields.contains_key("key"),
            "keys are recorded only on request"
        );
    }
    assert_eq!(calls[0].fields["outcome"], "miss");
    assert!(calls[0].fields.contains_key("load_ms"), "{:?}", calls[0]);
    assert_eq!(calls[1].fields["outcome"], "hit");
    assert!(!calls[1].fields.contains_key("load_ms"));
    let loads = spans.named("aside.load");
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].parent, Some("aside.get_or_load"));
}

/// A callsite first met by a thread without a subscriber (another test's,
/// or a runtime's worker) is still seen by a test's own subscriber: while
/// it was the only one registered, tracing-core asked the meeting thread's,
/// and cached "never" (see `support::logs::scoped`). Run alone, this test
/// is the first to meet aside's call span, on the other thread.
#[test]
fn spans_are_seen_whichever_thread_meets_the_callsite_first() {
    let (spans, _guard) = Spans::install();
    let call = |n| {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(aside::with_global(Cache::memory(), traced(n)))
    };
    std::thread::spawn(move || call(1)).join().unwrap();
    call(2);
    assert_eq!(spans.named("aside.get_or_load").len(), 1);
}

#[aside::cached_batch(key = "traced:<n>")]
async fn traced_batch(ns: &[u64]) -> std::collections::HashMap<u64, u64> {
    ns.iter().map(|&n| (n, n + 1)).collect()
}

/// A batch is one span naming the function, with how many ids it had, how
/// many were plain hits and how many were loaded; the ids that missed have
/// their own call spans inside it, and the loader's run is an `aside.load`.
#[tokio::test(flavor = "current_thread")]
async fn a_batch_is_a_span_with_its_hits_and_loads() {
    let (spans, _guard) = Spans::install();
    aside::with_global(Cache::memory(), async {
        assert_eq!(traced_batch(&[1, 2]).await.len(), 2);
        assert_eq!(traced_batch(&[1, 2, 2]).await.len(), 2);
    })
    .await;
    let batches = spans.named("aside.get_or_load_batch");
    assert_eq!(batches.len(), 2, "{batches:#?}");
    for batch in &batches {
        assert_eq!(batch.fields["function"], "observability::traced_batch");
        assert_eq!(batch.fields["ids"], "2");
    }
    assert_eq!(
        (&*batches[0].fields["hits"], &*batches[0].fields["loaded"]),
        ("0", "2")
    );
    assert_eq!(
        (&*batches[1].fields["hits"], &*batches[1].fields["loaded"]),
        ("2", "0")
    );
    let calls = spans.named("aside.get_or_load");
    assert_eq!(calls.len(), 2, "one per id that missed: {calls:#?}");
    assert!(calls
        .iter()
        .all(|call| call.parent == Some("aside.get_or_load_batch")));
    // The loader's run, under the batch; each id's call shows its wait for
    // it as its own `aside.load`.
    let loads = spans.named("aside.load");
    let by_parent = |parent| loads.iter().filter(|load| load.parent == Some(parent)).count();
    assert_eq!(by_parent("aside.get_or_load_batch"), 1, "{loads:#?}");
    assert_eq!(by_parent("aside.get_or_load"), 2, "{loads:#?}");
}

/// Over Redis with the in-process tier: backend round trips are child
/// spans of the call, a hit says which tier answered, and the key is
/// recorded when the cache asks for it.
#[tokio::test(flavor = "current_thread")]
async fn redis_round_trips_and_tiers_show_in_the_spans() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .l1(aside::L1::entries(100))
        .trace_keys(true)
        .build()
        .await
        .unwrap();
    let other = Cache::builder().redis(server.url()).build().await.unwrap();
    let (spans, _guard) = Spans::install();
    aside::with_global(cache, async { traced(5).await }).await;
    let backend = spans.named("aside.backend");
    let ops: Vec<_> = backend.iter().map(|s| s.fields["op"].as_str()).collect();
    assert!(ops.contains(&"fetch") && ops.contains(&"store"), "{ops:?}");
    assert!(
        backend.iter().all(|s| s.parent == Some("aside.get_or_load")),
        "{backend:#?}"
    );
    let miss = &spans.named("aside.get_or_load")[0];
    assert_eq!(miss.fields["key"], "traced:5");

    spans.clear();
    // Read by a cache without the tier: a hit from the backend; no key.
    aside::with_global(other, async { traced(5).await }).await;
    let hit = &spans.named("aside.get_or_load")[0];
    assert_eq!(hit.fields["outcome"], "hit");
    assert!(!hit.fields.contains_key("key"));
    assert!(
        !hit.fields.contains_key("tier"),
        "one tier: nothing to tell apart"
    );
}

#[aside::cached(key = "tiered:<n>", ttl = "1h")]
async fn tiered(n: u64) -> u64 {
    n
}

/// With two tiers, a hit records which answered.
#[tokio::test(flavor = "current_thread")]
async fn a_hit_records_its_tier_when_there_are_two() {
    let server = RedisServer::start();
    let l1 = || {
        Cache::builder()
            .redis(server.url())
            .l1(aside::L1::entries(100))
            .build()
    };
    let (first, second) = (l1().await.unwrap(), l1().await.unwrap());
    aside::with_global(first, async { tiered(1).await }).await;
    let (spans, _guard) = Spans::install();
    // From Redis, then (once the tier's tracking is up, at a time no test
    // controls) from the process.
    let tier_of_last = || spans.named("aside.get_or_load").last().unwrap().fields["tier"].clone();
    aside::with_global(second.clone(), tiered(1)).await;
    assert_eq!(tier_of_last(), "backend");
    support::bounded("a hit in process", Duration::from_secs(10), async {
        while tier_of_last() != "in_process" {
            aside::with_global(second.clone(), tiered(1)).await;
        }
    })
    .await;
    let calls = spans.named("aside.get_or_load");
    assert!(calls.iter().all(|s| s.fields["outcome"] == "hit"), "{calls:#?}");
    assert_eq!(second.stats().l1_hits, 1);
}

#[aside::cached(key = "instrumented:<n>", ttl = "1h")]
#[tracing::instrument]
async fn instrumented(n: u64) -> u64 {
    n * 3
}

// Below it: its span covers the body, which runs as the loader.
#[tracing::instrument]
#[aside::cached(key = "instrumented_body:<n>", ttl = "1h")]
async fn instrumented_body(n: u64) -> u64 {
    n * 4
}

#[aside::cache_put(key = "traced:<n>", ttl = "1h")]
async fn put_traced(n: u64) -> u64 {
    n + 1
}

#[aside::invalidate(keys = ["traced:<n>"])]
async fn drop_traced(n: u64) {
    let _ = n;
}

/// `#[tracing::instrument]` on the same function wraps aside's span, or
/// sits in its load, as the attributes are ordered; the writers have spans
/// of their own.
#[tokio::test(flavor = "current_thread")]
async fn stacks_with_instrument_and_writers_have_spans() {
    let (spans, _guard) = Spans::install();
    aside::with_global(Cache::memory(), async {
        assert_eq!(instrumented(2).await, 6);
        assert_eq!(instrumented_body(2).await, 8);
        assert_eq!(put_traced(4).await, 5);
        drop_traced(4).await;
    })
    .await;
    let call = &spans.named("aside.get_or_load")[0];
    assert_eq!(call.parent, Some("instrumented"));
    assert_eq!(spans.named("instrumented_body")[0].parent, Some("aside.load"));
    assert_eq!(
        spans.named("aside.put")[0].fields["function"],
        "observability::put_traced"
    );
    assert_eq!(
        spans.named("aside.invalidate")[0].fields["function"],
        "observability::drop_traced"
    );
}

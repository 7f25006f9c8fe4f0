//! What observability costs a hit, in one process, interleaved. Every
//! variant is a `get_or_load` hit on `Cache::memory()` (the typed tier):
//!
//! | variant | what is on |
//! |---|---|
//! | baseline | no subscriber, no recorder, no function named in the policy |
//! | function | the policy names a `Function` (its statistics; metric handles, no recorder) |
//! | subscriber, spans off | a `tracing` subscriber at `INFO`: aside's `DEBUG` spans are filtered out |
//! | subscriber, spans on | a subscriber that records aside's spans (a registry with a layer that keeps nothing) |
//! | Prometheus | `metrics-exporter-prometheus`'s recorder installed, the function's metrics live |
//!
//! Each ratio is the median of per-round ratios against the baseline over
//! `ROUNDS` rounds. Run with `cargo bench -p aside-benches --bench observe`; the table is
//! printed at the end. (The benches package builds aside with its `metrics`
//! feature, so every variant runs the code that feeds metrics.)

mod latency;
mod product;

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use aside::{Cache, Function, Policy};
use criterion::Criterion;
use latency::median;
use product::{product, Product};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

const ROUNDS: usize = 11;
const HOT_KEYS: usize = 1_000;
const PER_ROUND: usize = 100_000;

static NAMED: Function = Function::new("bench::named");
static EXPORTED: Function = Function::new("bench::exported");

/// A layer that wants aside's spans and keeps nothing of them: the cost
/// of creating, entering and recording them, not of any exporter.
struct Discard;

impl<S: tracing::Subscriber> Layer<S> for Discard {}

async fn hit(cache: &Cache, key: &str, policy: &Policy) -> Product {
    let got: io::Result<Product> = cache
        .get_or_load(key, policy, || async {
            Err(io::Error::other("warm: not called"))
        })
        .await;
    got.unwrap()
}

/// `n` hits over the hot keys from `first` on, under the subscriber
/// `subscriber` makes (if any); the time taken.
///
/// The subscriber lives only for these hits, and `tracing`'s callsites
/// forget it after: a subscriber that exists anywhere in the process raises
/// the level every callsite checks first, and the other variants would pay
/// for it.
fn hits(
    rt: &tokio::runtime::Runtime,
    subscriber: Subscriber,
    (cache, policy): (&Cache, &Policy),
    keys: &[String],
    first: usize,
) -> Duration {
    let run = || {
        rt.block_on(async {
            let started = Instant::now();
            for i in first..first + PER_ROUND {
                black_box(hit(cache, &keys[i % keys.len()], policy).await);
            }
            started.elapsed()
        })
    };
    let took = match subscriber() {
        Some(dispatch) => tracing::dispatcher::with_default(&dispatch, run),
        None => run(),
    };
    tracing::callsite::rebuild_interest_cache();
    took
}

type Subscriber = fn() -> Option<tracing::Dispatch>;

fn no_subscriber() -> Option<tracing::Dispatch> {
    None
}

/// A global level, as `fmt().with_env_filter("info")` sets: a `DEBUG` span
/// is rejected at its callsite.
fn at_info() -> Option<tracing::Dispatch> {
    Some(tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(LevelFilter::INFO)
            .with(Discard),
    ))
}

fn recording_spans() -> Option<tracing::Dispatch> {
    Some(tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(LevelFilter::DEBUG)
            .with(Discard),
    ))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys: Vec<String> = (0..HOT_KEYS).map(|k| format!("product:{k}")).collect();
    let ttl = Policy::new().ttl(Duration::from_secs(3600));
    let (plain, named) = (ttl.clone(), ttl.clone().function(&NAMED));
    let exported = ttl.function(&EXPORTED);
    let cache = Cache::memory();
    rt.block_on(async {
        for (k, key) in keys.iter().enumerate() {
            let _: io::Result<Product> = cache
                .get_or_load(key, &plain, || async { Ok(product(k as u64)) })
                .await;
        }
        // Handles registered before any recorder: they stay no-ops.
        hit(&cache, &keys[0], &named).await;
    });
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("no other recorder");

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut group = c.benchmark_group("observed_hit");
        group.bench_function("baseline", |b| {
            b.to_async(&rt)
                .iter(|| hit(&cache, black_box("product:1"), &plain))
        });
        group.bench_function("spans_on", |b| {
            let spans = recording_spans().unwrap();
            let _default = tracing::dispatcher::set_default(&spans);
            b.to_async(&rt)
                .iter(|| hit(&cache, black_box("product:1"), &plain))
        });
        group.finish();
    }
    c.final_summary();
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` runs each once; there is nothing to compare.
    }

    tracing::callsite::rebuild_interest_cache();
    let variants: [(&str, Subscriber, &Policy); 4] = [
        (
            "function named (statistics, metrics without a recorder)",
            no_subscriber,
            &named,
        ),
        ("subscriber at INFO (aside's spans filtered out)", at_info, &plain),
        ("subscriber recording aside's spans", recording_spans, &plain),
        (
            "Prometheus recorder, the function's metrics live",
            no_subscriber,
            &exported,
        ),
    ];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut baseline_ns = Vec::new();
    for round in 0..ROUNDS {
        let first = round * 31;
        let base = hits(&rt, no_subscriber, (&cache, &plain), &keys, first);
        baseline_ns.push(base.as_nanos() as f64 / PER_ROUND as f64);
        for (ratios, (_, subscriber, policy)) in ratios.iter_mut().zip(variants) {
            let took = hits(&rt, subscriber, (&cache, policy), &keys, first);
            ratios.push(took.as_secs_f64() / base.as_secs_f64());
        }
    }
    println!("\n== a hit on Cache::memory() with observability, medians of {ROUNDS} interleaved rounds ==");
    println!("baseline: {:.0} ns per hit", median(baseline_ns));
    println!("| variant | time / baseline |\n|---|---|");
    for (ratios, (name, ..)) in ratios.into_iter().zip(variants) {
        println!("| {name} | {:.2} |", median(ratios));
    }
}

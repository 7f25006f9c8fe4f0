//! What a caller waits while an `swr` entry is refreshed, against a private
//! redis-server: the refresh inline (`Cache::get_or_load`, the caller that
//! wins it runs the 100 ms loader) and in the background
//! (`Cache::get_or_load_detached`, what `#[cached]` uses for owned
//! arguments). The baseline is the same calls on an entry that stays fresh.
//!
//! Four callers call one key in a loop for `WINDOW`; the entry is fresh for
//! 50 ms, so about one refresh runs every 150 ms. Each case is run
//! `ROUNDS` times, interleaved. Run with `cargo bench -p aside-benches --bench refresh`; it
//! prints p50, p99 and the worst call of each case, and for the calls
//! served while the value was due (the one that won the refresh included)
//! their p99 over the baseline's p99 (the target: at most 2) and their
//! worst over the baseline's worst.

mod latency;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aside::{Cache, Policy, Stampede};
use latency::{at, runtime, under_cargo_test};
use support::RedisServer;

const CALLERS: usize = 4;
const WINDOW: Duration = Duration::from_secs(2);
const ROUNDS: usize = 3;
const LOAD: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Fresh,
    Inline,
    Background,
}

/// What one case measured: every call's latency, that of the calls served
/// while the value was due for a refresh (the one that began it included),
/// and the loads run.
#[derive(Clone, Default)]
struct Measured {
    all: Vec<Duration>,
    refreshing: Vec<Duration>,
    loads: u64,
}

/// Every call of `CALLERS` callers for `WINDOW`.
async fn calls(cache: &Cache, case: Case, key: &str) -> Measured {
    let ttl = match case {
        Case::Fresh => Duration::from_secs(3600),
        Case::Inline | Case::Background => Duration::from_millis(50),
    };
    let policy = Policy::new().ttl(ttl).stampede(Stampede::Swr {
        stale: Duration::from_secs(600),
    });
    let loads = Arc::new(AtomicU64::new(0));
    let load = {
        let loads = loads.clone();
        move || {
            let loads = loads.clone();
            async move {
                loads.fetch_add(1, Relaxed);
                tokio::time::sleep(LOAD).await;
                Ok::<_, io::Error>("value".to_owned())
            }
        }
    };
    let _: String = cache.get_or_load(key, &policy, load.clone()).await.unwrap();
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (cache, policy, load, key) = (cache.clone(), policy.clone(), load.clone(), key.to_owned());
            tokio::spawn(async move {
                let (mut latencies, mut refreshing) = (Vec::new(), Vec::new());
                while started.elapsed() < WINDOW {
                    let stale = cache.stats().stale_hits;
                    let call = Instant::now();
                    let got = match case {
                        Case::Inline => cache.get_or_load(&key, &policy, load.clone()).await,
                        Case::Fresh | Case::Background => {
                            cache.get_or_load_detached(&key, &policy, load.clone()).await
                        }
                    };
                    let took = call.elapsed();
                    latencies.push(took);
                    // Served while the value was due: during a refresh, or
                    // the call that began it (or one beside such a call).
                    if cache.stats().stale_hits != stale {
                        refreshing.push(took);
                    }
                    assert_eq!(got.unwrap(), "value");
                }
                (latencies, refreshing)
            })
        })
        .collect();
    let mut measured = Measured::default();
    for caller in callers {
        let (all, refreshing) = caller.await.unwrap();
        measured.all.extend(all);
        measured.refreshing.extend(refreshing);
    }
    measured.loads = loads.load(Relaxed) - 1;
    measured
}

fn main() {
    if under_cargo_test() {
        return;
    }
    let rt = runtime();
    let server = RedisServer::start();
    let cache = rt.block_on(Cache::builder().redis(server.url()).build()).unwrap();
    let cases = [
        (Case::Fresh, "fresh entry (baseline)"),
        (Case::Inline, "swr refresh inline"),
        (Case::Background, "swr refresh in the background"),
    ];
    let mut results = vec![Measured::default(); cases.len()];
    for round in 0..ROUNDS {
        for (i, (case, _)) in cases.iter().enumerate() {
            let key = format!("refresh:{round}:{i}");
            let measured = rt.block_on(calls(&cache, *case, &key));
            results[i].all.extend(measured.all);
            results[i].refreshing.extend(measured.refreshing);
            results[i].loads += measured.loads;
        }
    }
    for measured in &mut results {
        measured.all.sort();
        measured.refreshing.sort();
    }
    let hit_p99 = at(&results[0].all, 0.99);
    let ratio = |d: Duration| d.as_secs_f64() / hit_p99.as_secs_f64();
    println!("\n{CALLERS} callers on one key for {WINDOW:?} x {ROUNDS}; loader {LOAD:?}");
    let fresh_worst = *results[0].all.last().unwrap();
    println!("| case | calls | refreshes | p50 | p99 | worst call | calls while due | their p99 | their worst | p99 while due / fresh p99 | worst while due / fresh worst |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for ((_, name), measured) in cases.iter().zip(&results) {
        let worst = *measured.all.last().unwrap();
        let due = &measured.refreshing;
        let (due_p99, due_worst) = match due.last() {
            Some(last) => (format!("{:?}", at(due, 0.99)), format!("{last:?}")),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let (p99_ratio, worst_ratio) = match due.last() {
            Some(last) => (
                format!("{:.2}", ratio(at(due, 0.99))),
                format!("{:.2}", last.as_secs_f64() / fresh_worst.as_secs_f64()),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "| {name} | {} | {} | {:?} | {:?} | {worst:?} | {} | {due_p99} | {due_worst} | {p99_ratio} | {worst_ratio} |",
            measured.all.len(),
            measured.loads,
            at(&measured.all, 0.5),
            at(&measured.all, 0.99),
            due.len(),
        );
    }
}

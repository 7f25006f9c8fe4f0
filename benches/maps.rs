//! The in-process tier's map, chosen by measurement: moka against
//! quick_cache on the tier's own workload, in one process, interleaved.
//!
//! The tier keys a map by the entry's key (a `String`, looked up by `&str`)
//! to an `Arc` of what it holds, and does its own expiry: the map only has
//! to find, count and evict. Each side is built as the tier would build it
//! (a bound on entries, nothing else).
//!
//! | measure | how |
//! |---|---|
//! | ns per hit, 1 thread | `get` + drop of the `Arc` over 1,000 hot keys, all present |
//! | hit throughput, 2 threads | the same on two threads at once |
//! | hit ratio, skewed | a Zipf trace (s = 0.9 and 1.1) over 100,000 keys with room for 10,000: a miss inserts |
//! | hit ratio, scan | the Zipf trace (s = 1.1) with one in four reads a one-off key (a scan) |
//! | ns per request on the skewed trace | the same trace, timed, misses and inserts included |
//!
//! Ratios are quick_cache / moka (below 1 for times, above 1 for
//! throughput: quick_cache is cheaper), medians over `ROUNDS` interleaved
//! rounds. Run with `cargo bench -p aside-benches --bench maps`.

mod latency;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use latency::median;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

const ROUNDS: usize = 11;
const HOT_KEYS: usize = 1_000;
const PER_ROUND: usize = 200_000;
const KEY_SPACE: u64 = 100_000;
const CAPACITY: usize = 10_000;
const TRACE: usize = 1_000_000;

/// What the tier holds per entry, as far as the map can tell.
type Held = Arc<[u8; 64]>;

/// The two maps behind one interface: the calls the tier makes.
trait Map: Sync {
    fn get(&self, key: &str) -> Option<Held>;
    fn insert(&self, key: String, held: Held);
}

struct Moka(moka::sync::Cache<String, Held>);

impl Map for Moka {
    fn get(&self, key: &str) -> Option<Held> {
        self.0.get(key)
    }
    fn insert(&self, key: String, held: Held) {
        self.0.insert(key, held)
    }
}

struct Quick(quick_cache::sync::Cache<String, Held>);

impl Map for Quick {
    fn get(&self, key: &str) -> Option<Held> {
        self.0.get(key)
    }
    fn insert(&self, key: String, held: Held) {
        self.0.insert(key, held)
    }
}

fn moka(capacity: usize) -> Moka {
    Moka(moka::sync::Cache::new(capacity as u64))
}

fn quick(capacity: usize) -> Quick {
    Quick(quick_cache::sync::Cache::new(capacity))
}

fn key(k: u64) -> String {
    format!("product:{k}")
}

/// `n` hits over the hot keys from `first` on; the time taken.
fn hits(map: &dyn Map, keys: &[String], first: usize, n: usize) -> Duration {
    let started = Instant::now();
    for i in first..first + n {
        black_box(map.get(&keys[i % keys.len()]).expect("a hot key is present"));
    }
    started.elapsed()
}

/// Hits per second over two threads at once.
fn two_threads(map: &dyn Map, keys: &[String]) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..2 {
            scope.spawn(move || hits(map, keys, t * 7919, PER_ROUND));
        }
    });
    (2 * PER_ROUND) as f64 / started.elapsed().as_secs_f64()
}

/// A skewed trace of key numbers; with `scan`, that share of reads go to
/// keys read once (numbered past the key space).
fn trace(s: f64, scan: f64, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let zipf = Zipf::new(KEY_SPACE as f64, s).expect("a valid Zipf");
    let mut one_off = KEY_SPACE;
    (0..TRACE)
        .map(|_| {
            if rng.random_bool(scan) {
                one_off += 1;
                one_off
            } else {
                zipf.sample(&mut rng) as u64 - 1
            }
        })
        .collect()
}

/// Runs `trace` through `map` as the tier would (a miss inserts): the hit
/// ratio and the time taken.
fn replay(map: &dyn Map, trace: &[String]) -> (f64, Duration) {
    let held: Held = Arc::new([7; 64]);
    let started = Instant::now();
    let mut found = 0usize;
    for key in trace {
        match map.get(key) {
            Some(held) => {
                black_box(held);
                found += 1;
            }
            None => map.insert(key.clone(), held.clone()),
        }
    }
    (found as f64 / trace.len() as f64, started.elapsed())
}

fn main() {
    let keys: Vec<String> = (0..HOT_KEYS as u64).map(key).collect();
    let held: Held = Arc::new([7; 64]);
    let (hot_moka, hot_quick) = (moka(HOT_KEYS * 2), quick(HOT_KEYS * 2));
    for key in &keys {
        hot_moka.insert(key.clone(), held.clone());
        hot_quick.insert(key.clone(), held.clone());
    }
    let quick_run = std::env::args().any(|a| a == "--test" || a == "--list");
    let rounds = if quick_run { 1 } else { ROUNDS };
    let traces: Vec<(&str, Vec<String>)> = [
        ("Zipf s=0.9", 0.9, 0.0),
        ("Zipf s=1.1", 1.1, 0.0),
        ("s=1.1 + 25% scan", 1.1, 0.25),
    ]
    .into_iter()
    .map(|(name, s, scan)| (name, trace(s, scan, 42).into_iter().map(key).collect()))
    .collect();

    let (mut per_hit, mut wide) = (Vec::new(), Vec::new());
    let mut ns = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let first = round * 31;
        let m = hits(&hot_moka, &keys, first, PER_ROUND);
        let q = hits(&hot_quick, &keys, first, PER_ROUND);
        per_hit.push(q.as_secs_f64() / m.as_secs_f64());
        ns.0.push(m.as_nanos() as f64 / PER_ROUND as f64);
        ns.1.push(q.as_nanos() as f64 / PER_ROUND as f64);
        wide.push(two_threads(&hot_quick, &keys) / two_threads(&hot_moka, &keys));
    }
    println!("\n== the in-process tier's map: quick_cache / moka, medians of {rounds} interleaved rounds ==");
    println!("| measure | moka | quick_cache | ratio |\n|---|---|---|---|");
    let (moka_ns, quick_ns) = (median(ns.0), median(ns.1));
    println!(
        "| ns per hit, 1 thread | {moka_ns:.0} | {quick_ns:.0} | {:.2} |",
        median(per_hit)
    );
    println!("| hit throughput, 2 threads | | | {:.2} |", median(wide));
    for (name, trace) in &traces {
        // A fresh map per side and round: the trace fills it from empty.
        let (mut ratio, mut time) = ((0.0, 0.0), Vec::new());
        for _ in 0..rounds.min(3) {
            let (mh, mt) = replay(&moka(CAPACITY), trace);
            let (qh, qt) = replay(&quick(CAPACITY), trace);
            ratio = (mh, qh);
            time.push(qt.as_secs_f64() / mt.as_secs_f64());
        }
        println!(
            "| hit ratio, {name} (100,000 keys, room for 10,000) | {:.3} | {:.3} | {:.2} |",
            ratio.0,
            ratio.1,
            ratio.1 / ratio.0
        );
        println!("| ns per request, {name} | | | {:.2} |", median(time));
    }
}

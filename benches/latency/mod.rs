//! Shared by the benchmarks that time calls one by one: percentiles, and the
//! runtime they run on.
#![allow(dead_code)] // each benchmark uses its own subset

use std::hint::black_box;
use std::time::{Duration, Instant};

/// The latency at `share` (0.99 for p99) of `latencies`, sorted.
pub fn at(latencies: &[Duration], share: f64) -> Duration {
    latencies[((latencies.len() as f64 * share) as usize).min(latencies.len() - 1)]
}

/// Whether `cargo test --benches` runs this benchmark (there is nothing to
/// compare then: it returns at once).
pub fn under_cargo_test() -> bool {
    std::env::args().any(|a| a == "--list" || a == "--test")
}

/// A runtime of two workers, as the 2-core machine the figures come from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The median of `xs`: the upper one of an even count.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// How long `n` runs of `op`, one after another, take.
pub async fn timed<F: std::future::Future>(n: usize, mut op: impl FnMut() -> F) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        black_box(op().await);
    }
    started.elapsed()
}

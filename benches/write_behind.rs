//! What a write-behind append costs against the hand-written baseline, one
//! `XADD`, on one private `redis-server`, in the same run:
//!
//! | measure | aside | baseline |
//! |---|---|---|
//! | one append | `WriteBehind::add` (a script: the backlog's bound, the change's marker, `XADD`) | `XADD` of the same fields |
//! | 64 appends at once | 64 `add`s (`join_all`) | 64 `XADD`s |
//!
//! Each ratio is the median of per-round ratios over `ROUNDS` rounds, the
//! sides alternating within a round; criterion also times one of each.
//!
//! Run with `cargo bench -p aside-benches --bench write_behind`.

mod latency;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use aside::write_behind::WriteBehind;
use criterion::Criterion;
use latency::{median, runtime, timed, under_cargo_test};
use redis::aio::MultiplexedConnection;
use support::RedisServer;

const ROUNDS: usize = 11;
const PER_ROUND: usize = 1_000;
const AT_ONCE: usize = 64;

/// What a hand-written log does: one `XADD`, no bound, no marker.
async fn baseline(conn: &mut MultiplexedConnection) {
    let _: String = redis::cmd("XADD")
        .arg("base:log")
        .arg("*")
        .arg(&[("k", "7"), ("op", "add"), ("v", "1")])
        .query_async(conn)
        .await
        .unwrap();
}

fn main() {
    let rt = runtime();
    let server = RedisServer::start();
    let cache = rt.block_on(server.cache());
    let raw = rt.block_on(server.raw());
    let log = WriteBehind::<u64, ()>::builder(&cache, "bench")
        .max_backlog(0)
        .build()
        .unwrap();
    rt.block_on(async { log.add(&7, 1).await.unwrap() });

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("write_behind");
    group.bench_function("aside add", |b| {
        b.to_async(&rt).iter(|| async { log.add(&7, 1).await.unwrap() })
    });
    group.bench_function("XADD", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = raw.clone();
            async move { baseline(&mut raw).await }
        })
    });
    group.finish();
    c.final_summary();
    if under_cargo_test() {
        return;
    }

    rt.block_on(async {
        let (mut one, mut many) = (Vec::new(), Vec::new());
        let mut per_add = Duration::ZERO;
        for _ in 0..ROUNDS {
            let base = timed(PER_ROUND, || {
                let mut raw = raw.clone();
                async move { baseline(&mut raw).await }
            })
            .await;
            let aside = timed(PER_ROUND, || async { log.add(&7, 1).await.unwrap() }).await;
            per_add = aside / PER_ROUND as u32;
            one.push(aside.as_secs_f64() / base.as_secs_f64());

            let base = timed(PER_ROUND / 10, || {
                futures_util::future::join_all((0..AT_ONCE).map(|_| {
                    let mut raw = raw.clone();
                    async move { baseline(&mut raw).await }
                }))
            })
            .await;
            let aside = timed(PER_ROUND / 10, || {
                futures_util::future::join_all((0..AT_ONCE).map(|_| async { log.add(&7, 1).await.unwrap() }))
            })
            .await;
            many.push(aside.as_secs_f64() / base.as_secs_f64());
        }
        println!("medians of {ROUNDS} rounds, against XADD of the same fields:");
        println!("| measure | ratio |");
        println!("|---|---|");
        println!("| one append: add / XADD | {:.2} |", median(one));
        println!("| {AT_ONCE} appends at once: add / XADD | {:.2} |", median(many));
        println!("(one add took {per_add:?} in the last round)");
    });
}

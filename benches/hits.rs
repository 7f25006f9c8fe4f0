//! aside's Redis hot paths against hand-written baselines, in one process, on
//! one private `redis-server` (as in the tests), interleaved:
//!
//! | measure | aside | baseline |
//! |---|---|---|
//! | sequential hit | a `#[cached]` function, untagged | `GET` + serde_json, through a `ConnectionManager` (as aside's own connection), and on a plain multiplexed connection |
//! | tagged hit | `get_or_load` with 2 tags | the untagged hit |
//! | 64-way hit throughput | 64 tasks over 1,000 hot keys | a plain multiplexed `GET` + decode loop |
//! | Redis CPU per 64-way hit | the same, and again behind the in-process tier | the `GET` loop's |
//! | cold miss | `get_or_load` on a new key, each stampede mode | `GET`, then `SET PX`, through a `ConnectionManager` (and, for `lock`, on a plain multiplexed connection) |
//! | Redis's time per cold `lock` miss | `INFO commandstats`, its scripts included | the same for `GET`, then `SET PX` |
//! | MessagePack hit | `get_or_load` with `Codec::MessagePack` | the JSON hit |
//!
//! criterion also times decoding the product in each codec.
//!
//! Each ratio is the median of per-round ratios over `ROUNDS` rounds, the two
//! sides alternating within a round, so that the machine's noise falls on
//! both. Allocations per operation come from a counting global allocator, and
//! commands per operation from `MONITOR` (those the client sent, not those
//! its scripts ran). The value is a product of about 1 KB as JSON.
//!
//! Run with `cargo bench -p aside-benches --bench hits` (criterion also times the sequential
//! hits); the table is printed at the end.

mod counting;
mod criterion_means;
mod latency;
mod product;
#[path = "../tests/support/mod.rs"]
mod support;
mod tier;

use counting::Counting;
use criterion_means::mean_ns;
use product::{product, Product};

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aside::{Cache, Codec, Policy, Stampede};
use criterion::Criterion;
use latency::{median, runtime};
use redis::aio::MultiplexedConnection;
use support::RedisServer;
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: usize = 11;
const SEQUENTIAL: usize = 2_000;
const TASKS: usize = 64;
const HOT_KEYS: usize = 1_000;
const PER_TASK: usize = 300;
const COLD: usize = 500;
const HOUR: Duration = Duration::from_secs(3600);

/// What the hand-written cache-aside does on a hit: `GET` and decode.
async fn baseline_get<C: redis::aio::ConnectionLike>(conn: &mut C, key: &str) -> Option<Product> {
    let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    bytes.and_then(|b| serde_json::from_slice(&b).ok())
}

/// ... and on a miss: `GET`, load, `SET PX`.
async fn baseline_miss<C: redis::aio::ConnectionLike>(conn: &mut C, key: &str, id: u64) -> Product {
    if let Some(found) = baseline_get(conn, key).await {
        return found;
    }
    let value = product(id);
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(serde_json::to_vec(&value).unwrap())
        .arg("PX")
        .arg(3_600_000)
        .query_async(conn)
        .await
        .unwrap();
    value
}

/// The sequential hit as a user writes it: through the macro.
#[aside::cached(cache = cache, key = "macro:<k>", ttl = "1h")]
async fn macro_hot(cache: &Cache, k: usize) -> io::Result<Product> {
    Ok(product(k as u64))
}

async fn aside_get(cache: &Cache, key: &str, policy: &Policy) -> Product {
    let got: io::Result<Product> = cache.get_or_load(key, policy, || async { Ok(product(0)) }).await;
    got.unwrap()
}

/// Runs `op` `n` times; returns the time it took.
async fn timed<F: std::future::Future>(n: usize, mut op: impl FnMut(usize) -> F) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        black_box(op(i).await);
    }
    started.elapsed()
}

/// Allocations per call of `op`, over `n` calls.
async fn allocations<F: std::future::Future>(n: usize, mut op: impl FnMut(usize) -> F) -> f64 {
    let before = counting::allocations();
    for i in 0..n {
        black_box(op(i).await);
    }
    (counting::allocations() - before) as f64 / n as f64
}

/// Commands sent per call of `op`, by name, over `n` calls: what `MONITOR`
/// shows coming from clients (each one a round trip, or part of a pipeline),
/// leaving out the commands that scripts run inside Redis.
async fn commands<F: std::future::Future>(
    server: &RedisServer,
    n: usize,
    mut op: impl FnMut(usize) -> F,
) -> String {
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "monitor"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli (installed with redis-server) runs MONITOR");
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "OK", "MONITOR started");
    for i in 0..n {
        black_box(op(i).await);
    }
    // The last line MONITOR will show for this run.
    let end = "aside-bench-end";
    let _: String = redis::cmd("ECHO")
        .arg(end)
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for line in lines {
        let line = line.unwrap();
        if line.contains(end) {
            break;
        }
        // `1732540000.123456 [0 127.0.0.1:40000] "GET" "key"`; scripts' own
        // commands show `[0 lua]`.
        let Some((source, command)) = line.split_once("] ") else {
            continue;
        };
        if source.ends_with(" lua") {
            continue;
        }
        let name = command.split('"').nth(1).unwrap_or("?").to_uppercase();
        *counts.entry(name).or_default() += 1;
    }
    monitor.kill().ok();
    monitor.wait().ok();
    counts.remove("ECHO");
    counts
        .iter()
        .map(|(name, calls)| format!("{} {name}", *calls as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// 64 tasks reading the hot keys, `PER_TASK` reads each; returns reads per second.
async fn throughput<F, Fut>(read: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let read = read.clone();
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    black_box(read((t * 7919 + i * 31) % HOT_KEYS).await);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (TASKS * PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

/// `INFO section`'s text.
async fn info(conn: &MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn.clone())
        .await
        .unwrap()
}

/// Redis's own CPU time so far, in seconds, from `INFO cpu`: user
/// (`used_cpu_user`), and user and system together.
async fn redis_cpu(conn: &MultiplexedConnection) -> (f64, f64) {
    let info = info(conn, "cpu").await;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .expect("INFO cpu has used_cpu_user and used_cpu_sys")
    };
    let user = field("used_cpu_user");
    (user, user + field("used_cpu_sys"))
}

/// Calls of `GET` and `MGET` and the µs Redis spent running them, from
/// `INFO commandstats` (its own accounting: the commands, not the I/O).
#[derive(Debug, Default, Clone, Copy)]
struct Commands {
    gets: (f64, f64),
    mgets: (f64, f64),
}

impl Commands {
    async fn read(conn: &MultiplexedConnection) -> Commands {
        let info = info(conn, "commandstats").await;
        Commands {
            gets: command_stat(&info, "get"),
            mgets: command_stat(&info, "mget"),
        }
    }

    fn add(&mut self, other: Commands) {
        self.gets = (self.gets.0 + other.gets.0, self.gets.1 + other.gets.1);
        self.mgets = (self.mgets.0 + other.mgets.0, self.mgets.1 + other.mgets.1);
    }
}

/// The µs Redis spent running the commands named (those a client sent)
/// since its stats were last reset, from `INFO commandstats`. A script's
/// time includes the commands it ran, which are also counted on lines of
/// their own: only what the client sent is summed.
async fn commands_usec(conn: &MultiplexedConnection, sent: &[&str]) -> f64 {
    let info = info(conn, "commandstats").await;
    sent.iter().map(|name| command_stat(&info, name).1).sum()
}

/// Calls of `command` and the µs Redis spent running them, from `INFO
/// commandstats` text (`cmdstat_get:calls=3,usec=12,...`); zeros if it ran none.
fn command_stat(info: &str, command: &str) -> (f64, f64) {
    let prefix = format!("cmdstat_{command}:");
    let Some(fields) = info.lines().find_map(|line| line.strip_prefix(prefix.as_str())) else {
        return (0.0, 0.0);
    };
    let field = |key: &str| -> f64 {
        fields
            .split(',')
            .find_map(|f| f.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (field("calls="), field("usec="))
}

async fn reset_stats(conn: &MultiplexedConnection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
}

/// Runs a 64-way `throughput` measure; returns its reads per second,
/// Redis's CPU time per read in µs (user, and user + system), and the
/// commands Redis ran for it.
async fn with_redis_cpu(
    conn: &MultiplexedConnection,
    run: impl std::future::Future<Output = f64>,
) -> (f64, (f64, f64), Commands) {
    reset_stats(conn).await;
    let before = redis_cpu(conn).await;
    let rate = run.await;
    let after = redis_cpu(conn).await;
    let commands = Commands::read(conn).await;
    let per_read = |spent: f64| spent * 1e6 / (TASKS * PER_TASK) as f64;
    (
        rate,
        (per_read(after.0 - before.0), per_read(after.1 - before.1)),
        commands,
    )
}

/// Decoding the product in each codec, as the cache does (MessagePack with
/// field names). Returns the encoded sizes.
fn criterion_codecs(c: &mut Criterion) -> (usize, usize) {
    let value = product(1);
    let json = serde_json::to_vec(&value).unwrap();
    let msgpack = rmp_serde::to_vec_named(&value).unwrap();
    let mut group = c.benchmark_group("decode");
    group.bench_function("json", |b| {
        b.iter(|| serde_json::from_slice::<Product>(black_box(&json)).unwrap())
    });
    group.bench_function("msgpack", |b| {
        b.iter(|| rmp_serde::from_slice::<Product>(black_box(&msgpack)).unwrap())
    });
    group.finish();
    (json.len(), msgpack.len())
}

/// aside's hits of the hot keys, 64-way, on `cache`.
async fn aside_throughput(cache: &Cache, policy: &Policy) -> f64 {
    let (cache, policy) = (cache.clone(), policy.clone());
    throughput(move |k| {
        let (cache, policy) = (cache.clone(), policy.clone());
        async move { aside_get(&cache, &format!("hot:{k}"), &policy).await }
    })
    .await
}

/// The hand-written `GET` + decode loop, 64-way, on `conn`.
async fn baseline_throughput<C>(conn: C) -> f64
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    throughput(move |k| {
        let mut conn = conn.clone();
        async move { baseline_get(&mut conn, &format!("base:{k}")).await }
    })
    .await
}

fn criterion_hits(c: &mut Criterion, rt: &Runtime, cache: &Cache, raw: &MultiplexedConnection) {
    let mut group = c.benchmark_group("redis_hit");
    let untagged = Policy::new().ttl(HOUR);
    group.bench_function("baseline_get_decode", |b| {
        b.to_async(rt).iter(|| {
            let mut raw = raw.clone();
            async move { baseline_get(&mut raw, black_box("base:0")).await.unwrap() }
        })
    });
    group.bench_function("aside_untagged", |b| {
        b.to_async(rt)
            .iter(|| aside_get(cache, black_box("hot:0"), &untagged))
    });
    group.finish();
}

struct Row {
    measure: &'static str,
    ratio: f64,
    target: &'static str,
}

fn main() {
    let rt = runtime();
    let server = RedisServer::start();
    let cache = rt.block_on(server.cache());
    let raw = rt.block_on(server.raw());
    let untagged = Policy::new().ttl(HOUR);
    let tagged = Policy::new().ttl(HOUR).tag("product:1").tag("category:7");
    let packed = Policy::new().ttl(HOUR).codec(Codec::MessagePack);

    // Warm: the hot keys in aside's layout (two policies) and as plain JSON.
    rt.block_on(async {
        let mut raw = raw.clone();
        for k in 0..HOT_KEYS {
            aside_get(&cache, &format!("hot:{k}"), &untagged).await;
            aside_get(&cache, &format!("tagged:{k}"), &tagged).await;
            aside_get(&cache, &format!("packed:{k}"), &packed).await;
            macro_hot(&cache, k).await.unwrap();
            baseline_miss(&mut raw, &format!("base:{k}"), k as u64).await;
        }
    });

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let sizes = criterion_codecs(&mut c);
    criterion_hits(&mut c, &rt, &cache, &raw);
    c.final_summary();
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` runs each once; there is nothing to compare.
    }

    let mut rows = Vec::new();
    let (mut seq, mut tag, mut wide, mut pack) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut wide_managed = Vec::new();
    // The sequential hit through the macro, over the baseline through a
    // ConnectionManager and on a plain multiplexed connection.
    let (mut seq_managed, mut seq_raw) = (Vec::new(), Vec::new());
    // The cold `lock` miss over the baseline on a plain multiplexed
    // connection; Redis's µs per cold `lock` miss, aside's and the baseline's.
    let (mut lock_raw, mut miss_usec) = (Vec::new(), Vec::new());
    let mut ran = (Commands::default(), Commands::default());
    let (mut cpu, mut cpu_all, mut cpu_us, mut rates) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The same hot keys behind the in-process tier, kept coherent by
    // Redis's client tracking: what a hit costs Redis when the tier answers.
    // In a namespace of its own, so that the other caches' writes send it
    // no invalidations (which the allocation counts would include).
    let tiered = rt.block_on(async {
        let tiered = Cache::builder()
            .redis(server.url())
            .namespace("tiered")
            .l1(aside::L1::default())
            .build()
            .await
            .expect("connect the tiered cache");
        for k in 0..HOT_KEYS {
            let key = format!("hot:{k}");
            tier::until_in_process(&tiered, || aside_get(&tiered, &key, &untagged)).await;
        }
        tiered
    });
    let mut cpu_tiered = Vec::new();
    // The connection aside uses: the same GET loop through a ConnectionManager
    // shows what is the connection's and what is aside's own.
    let managed = rt
        .block_on(
            redis::Client::open(server.url())
                .unwrap()
                .get_connection_manager(),
        )
        .unwrap();
    let mut misses: Vec<(&str, Vec<f64>)> = ["lock", "swr", "early", "none"]
        .into_iter()
        .map(|m| (m, Vec::new()))
        .collect();
    for round in 0..ROUNDS {
        rt.block_on(async {
            let mut conn = raw.clone();
            let base = timed(SEQUENTIAL, |i| {
                let key = format!("base:{}", i % HOT_KEYS);
                let mut conn = conn.clone();
                async move { baseline_get(&mut conn, &key).await }
            })
            .await;
            let base_managed = timed(SEQUENTIAL, |i| {
                let key = format!("base:{}", i % HOT_KEYS);
                let mut conn = managed.clone();
                async move { baseline_get(&mut conn, &key).await }
            })
            .await;
            let through_macro = timed(SEQUENTIAL, |i| {
                let cache = &cache;
                async move { macro_hot(cache, i % HOT_KEYS).await.unwrap() }
            })
            .await;
            seq_managed.push(through_macro.as_secs_f64() / base_managed.as_secs_f64());
            seq_raw.push(through_macro.as_secs_f64() / base.as_secs_f64());
            let plain = timed(SEQUENTIAL, |i| {
                let key = format!("hot:{}", i % HOT_KEYS);
                let (cache, policy) = (&cache, &untagged);
                async move { aside_get(cache, &key, policy).await }
            })
            .await;
            let with_tags = timed(SEQUENTIAL, |i| {
                let key = format!("tagged:{}", i % HOT_KEYS);
                let (cache, policy) = (&cache, &tagged);
                async move { aside_get(cache, &key, policy).await }
            })
            .await;
            let msgpack = timed(SEQUENTIAL, |i| {
                let key = format!("packed:{}", i % HOT_KEYS);
                let (cache, policy) = (&cache, &packed);
                async move { aside_get(cache, &key, policy).await }
            })
            .await;
            pack.push(msgpack.as_secs_f64() / plain.as_secs_f64());
            seq.push(plain.as_secs_f64() / base.as_secs_f64());
            tag.push(with_tags.as_secs_f64() / plain.as_secs_f64());

            let (base_rate, base_cpu, base_commands) =
                with_redis_cpu(&raw, baseline_throughput(raw.clone())).await;
            let (aside_rate, aside_cpu, aside_commands) =
                with_redis_cpu(&raw, aside_throughput(&cache, &untagged)).await;
            ran.0.add(aside_commands);
            ran.1.add(base_commands);
            wide.push(aside_rate / base_rate);
            cpu.push(aside_cpu.0 / base_cpu.0);
            cpu_all.push(aside_cpu.1 / base_cpu.1);
            cpu_us.push((aside_cpu, base_cpu));
            rates.push((aside_rate, base_rate));
            let managed_rate = baseline_throughput(managed.clone()).await;
            wide_managed.push(aside_rate / managed_rate);
            let (_, tiered_cpu, _) = with_redis_cpu(&raw, aside_throughput(&tiered, &untagged)).await;
            cpu_tiered.push(tiered_cpu.1 / base_cpu.1);

            for (mode, ratios) in &mut misses {
                let policy = Policy::new().ttl(HOUR).stampede(stampede(mode));
                reset_stats(&raw).await;
                let base = timed(COLD, |i| {
                    let key = format!("cold:base:{round}:{mode}:{i}");
                    let mut conn = managed.clone();
                    async move { baseline_miss(&mut conn, &key, i as u64).await }
                })
                .await;
                let lock = *mode == "lock";
                // The time Redis spent, for the `lock` mode only: what the
                // hand-written miss sent (its commands, and nothing else
                // between the resets)...
                let base_usec = if lock {
                    commands_usec(&raw, &["get", "set"]).await
                } else {
                    0.0
                };
                // ... and, both baselines timed before aside's misses,
                // the same miss on a plain multiplexed connection.
                let on_raw = if lock {
                    Some(
                        timed(COLD, |i| {
                            let key = format!("cold:raw:{round}:{mode}:{i}");
                            let mut conn = conn.clone();
                            async move { baseline_miss(&mut conn, &key, i as u64).await }
                        })
                        .await,
                    )
                } else {
                    None
                };
                reset_stats(&raw).await;
                let ours = timed(COLD, |i| {
                    let key = format!("cold:{round}:{mode}:{i}");
                    let (cache, policy) = (&cache, &policy);
                    async move { aside_get(cache, &key, policy).await }
                })
                .await;
                ratios.push(ours.as_secs_f64() / base.as_secs_f64());
                if let Some(on_raw) = on_raw {
                    // What aside's client sent: a GET and two EVALSHAs. A
                    // script's own commands are counted on their own lines
                    // too; an uncontended miss's scripts run no GET (the
                    // lock script reads a held lock's value only).
                    let ours_usec = commands_usec(&raw, &["get", "evalsha"]).await;
                    miss_usec.push((ours_usec / COLD as f64, base_usec / COLD as f64));
                    lock_raw.push(ours.as_secs_f64() / on_raw.as_secs_f64());
                }
            }
            let _ = &mut conn;
        });
    }
    rows.push(Row {
        measure: "sequential hit through #[cached] / GET + serde_json through a ConnectionManager",
        ratio: median(seq_managed),
        target: "<= 1.03",
    });
    rows.push(Row {
        measure: "the same / GET + serde_json on a multiplexed connection",
        ratio: median(seq_raw),
        target: "-",
    });
    rows.push(Row {
        measure: "sequential hit through get_or_load / GET + serde_json on a multiplexed connection",
        ratio: median(seq),
        target: "-",
    });
    rows.push(Row {
        measure: "64-way hit throughput / multiplexed GET + decode loop",
        ratio: median(wide),
        target: ">= 1.2",
    });
    rows.push(Row {
        measure: "Redis CPU (used_cpu_user) per 64-way hit / the GET loop's",
        ratio: median(cpu),
        target: "<= 0.5",
    });
    let cpu_all_median = median(cpu_all.clone());
    rows.push(Row {
        measure: "Redis CPU (user + system) per 64-way hit / the GET loop's",
        ratio: cpu_all_median,
        target: "-",
    });
    rows.push(Row {
        measure: "Redis CPU (user + system) per 64-way hit, in-process tier on / the GET loop's",
        ratio: median(cpu_tiered),
        target: "-",
    });
    rows.push(Row {
        measure: "64-way hit throughput / the same loop through a ConnectionManager",
        ratio: median(wide_managed),
        target: "-",
    });
    rows.push(Row {
        measure: "2-tag hit / untagged hit",
        ratio: median(tag),
        target: "<= 1.05",
    });
    rows.push(Row {
        measure: "MessagePack hit / JSON hit",
        ratio: median(pack),
        target: "-",
    });
    for (mode, ratios) in misses {
        rows.push(Row {
            measure: match mode {
                "lock" => "cold miss, lock / GET + SET PX through a ConnectionManager",
                "swr" => "cold miss, swr / the same",
                "early" => "cold miss, early / the same",
                _ => "cold miss, none / the same",
            },
            ratio: median(ratios),
            target: if mode == "lock" { "<= 1.6" } else { "-" },
        });
    }
    rows.push(Row {
        measure: "cold miss, lock / GET + SET PX on a multiplexed connection",
        ratio: median(lock_raw),
        target: "-",
    });
    rows.push(Row {
        measure: "Redis's time per cold miss (INFO commandstats), lock / GET + SET PX",
        ratio: median(miss_usec.iter().map(|(ours, base)| ours / base).collect()),
        target: "-",
    });

    let (allocs, cmds) = rt.block_on(async {
        let n = 1000;
        let conn = raw.clone();
        let base_get = allocations(n, |i| {
            let mut conn = conn.clone();
            async move { baseline_get(&mut conn, &format!("base:{}", i % HOT_KEYS)).await }
        })
        .await;
        let hit = allocations(n, |i| {
            let (cache, policy) = (&cache, &untagged);
            async move { aside_get(cache, &format!("hot:{}", i % HOT_KEYS), policy).await }
        })
        .await;
        let tagged_hit = allocations(n, |i| {
            let (cache, policy) = (&cache, &tagged);
            async move { aside_get(cache, &format!("tagged:{}", i % HOT_KEYS), policy).await }
        })
        .await;
        let base_miss = allocations(n, |i| {
            let mut conn = conn.clone();
            async move { baseline_miss(&mut conn, &format!("alloc:base:{i}"), i as u64).await }
        })
        .await;
        let lock = Policy::new().ttl(HOUR);
        let miss = allocations(n, |i| {
            let (cache, policy) = (&cache, &lock);
            async move { aside_get(cache, &format!("alloc:miss:{i}"), policy).await }
        })
        .await;
        let allocs = vec![
            ("hit, GET + serde_json", base_get),
            ("hit, aside untagged", hit),
            ("hit, aside 2 tags", tagged_hit),
            ("cold miss, GET + SET PX", base_miss),
            ("cold miss, aside lock", miss),
        ];
        let n = 200;
        let mut cmds = vec![
            (
                "hit, untagged".to_owned(),
                commands(&server, n, |i| {
                    let (cache, policy) = (&cache, &untagged);
                    async move { aside_get(cache, &format!("hot:{}", i % HOT_KEYS), policy).await }
                })
                .await,
            ),
            (
                "hit, 2 tags".to_owned(),
                commands(&server, n, |i| {
                    let (cache, policy) = (&cache, &tagged);
                    async move { aside_get(cache, &format!("tagged:{}", i % HOT_KEYS), policy).await }
                })
                .await,
            ),
        ];
        for mode in ["lock", "swr", "early", "none"] {
            let policy = Policy::new().ttl(HOUR).stampede(stampede(mode));
            let per_op = commands(&server, n, |i| {
                let (cache, policy) = (&cache, &policy);
                async move { aside_get(cache, &format!("cmds:{mode}:{i}"), policy).await }
            })
            .await;
            cmds.push((format!("cold miss, {mode}"), per_op));
        }
        (allocs, cmds)
    });

    println!("\n== aside vs hand-written, one redis-server, medians of {ROUNDS} interleaved rounds ==");
    println!("| measure | ratio | target |\n|---|---|---|");
    for row in &rows {
        println!("| {} | {:.2} | {} |", row.measure, row.ratio, row.target);
    }
    // Per round: (aside, the GET loop), each (user, user + system).
    type Round = ((f64, f64), (f64, f64));
    let middle = |pick: fn(&Round) -> f64| median(cpu_us.iter().map(pick).collect());
    println!(
        "\nRedis CPU per 64-way hit, medians (µs): user: aside {:.2}, GET loop {:.2}; user + system: aside {:.2}, GET loop {:.2}",
        middle(|c| c.0 .0),
        middle(|c| c.1 .0),
        middle(|c| c.0 .1),
        middle(|c| c.1 .1),
    );
    let (low, high) = cpu_all
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), &r| (l.min(r), h.max(r)));
    println!(
        "Redis CPU (user + system) per 64-way hit / the GET loop's, per round: {low:.2}-{high:.2}; Redis's capacity (hits per CPU-second) / the GET loop's: {:.2}",
        1.0 / cpu_all_median
    );
    // Every read of the 64-way runs is a GET, or a key of an MGET.
    let (ours, theirs) = ran;
    let reads = (ROUNDS * TASKS * PER_TASK) as f64;
    println!(
        "Redis's time running the commands (INFO commandstats) per 64-way hit: aside {:.2} µs ({:.0}% of reads in an MGET, {:.1} keys per MGET), GET loop {:.2} µs",
        (ours.gets.1 + ours.mgets.1) / reads,
        100.0 * (reads - ours.gets.0) / reads,
        (reads - ours.gets.0) / ours.mgets.0.max(1.0),
        (theirs.gets.1 + theirs.mgets.1) / reads,
    );
    println!(
        "Redis's time per cold miss (INFO commandstats, scripts included), medians: lock {:.1} µs, GET + SET PX {:.1} µs",
        median(miss_usec.iter().map(|m| m.0).collect()),
        median(miss_usec.iter().map(|m| m.1).collect()),
    );
    println!(
        "64-way hits per second, medians: aside {:.0}, GET loop {:.0}",
        median(rates.iter().map(|r: &(f64, f64)| r.0).collect()),
        median(rates.iter().map(|r: &(f64, f64)| r.1).collect()),
    );
    let decode = mean_ns("decode", "msgpack") / mean_ns("decode", "json");
    println!(
        "\n| the product in each codec | JSON | MessagePack |\n|---|---|---|\n| bytes | {} | {} |\n| decode (criterion mean) | {:.2} µs | {:.2} µs ({decode:.2}x) |",
        sizes.0,
        sizes.1,
        mean_ns("decode", "json") / 1000.0,
        mean_ns("decode", "msgpack") / 1000.0,
    );
    println!("\n| allocations per operation | count |\n|---|---|");
    for (what, n) in allocs {
        println!("| {what} | {n:.1} |");
    }
    println!("\n| commands sent per operation (MONITOR) | commands |\n|---|---|");
    for (what, per_op) in cmds {
        println!("| {what} | {per_op} |");
    }
}

fn stampede(mode: &str) -> Stampede {
    match mode {
        "lock" => Stampede::default(),
        "swr" => Stampede::Swr { stale: HOUR },
        "early" => Stampede::Early { beta: 1.0 },
        _ => Stampede::None,
    }
}

//! Article 002's page-view counter on the product_api database, counted
//! twice: one `UPDATE` per view, then through aside's write-behind.
//!
//! The article counted views with `HINCRBY` into a pending hash and flushed
//! it with `HGETALL` then `HDEL`, which deletes, unflushed, any view counted
//! between the two calls. Here each view is an entry of a Redis Stream
//! (`WriteBehind::add`, one round trip), and a flusher applies them in
//! batches: one SQLite transaction per batch, which also records the batch's
//! id, so that a batch delivered twice (its flusher died before
//! acknowledging it) is applied once.
//!
//! It needs Redis (write-behind logs there, durably) and the product_api
//! database (built by `cargo run --release -p aside-examples --example product_api`, or here
//! if missing):
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p aside-examples --example page_views
//! ```
//!
//! `VIEWS=50000` changes the number of views per variant (default 20,000).
//! Keys go under a fresh `page_views:<timestamp>` namespace; the flushed
//! stream entries are deleted, nothing else is touched.

#[path = "product_api.rs"]
#[allow(dead_code)]
mod product_api;

use std::error::Error;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aside::write_behind::{Batch, WriteBehind};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};
use rusqlite::{params, Connection};
use tokio::task::JoinSet;

const DEFAULT_VIEWS: usize = 20_000;
const WORKERS: usize = 8;

/// The one connection that writes, as SQLite allows one writer at a time.
#[derive(Clone)]
struct Writer {
    conn: Arc<Mutex<Connection>>,
    /// Transactions committed and rows updated, by either variant.
    transactions: Arc<AtomicU64>,
    rows: Arc<AtomicU64>,
    /// The longest a flushed view waited, from its write to its commit, in ms.
    worst_lag_ms: Arc<AtomicU64>,
}

impl Writer {
    fn open(path: &std::path::Path) -> Result<Writer, Box<dyn Error>> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS flushed_batches (
                 log   TEXT NOT NULL,
                 batch TEXT NOT NULL,
                 PRIMARY KEY (log, batch)
             )",
        )?;
        Ok(Writer {
            conn: Arc::new(Mutex::new(conn)),
            transactions: Arc::default(),
            rows: Arc::default(),
            worst_lag_ms: Arc::default(),
        })
    }

    fn total_views(&self) -> rusqlite::Result<i64> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.query_row("SELECT SUM(view_count) FROM products", [], |row| row.get(0))
    }

    /// Without write-behind: one `UPDATE` (one transaction) per view.
    fn count_one(&self, id: i64) -> rusqlite::Result<()> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute(
            "UPDATE products SET view_count = view_count + 1 WHERE id = ?1",
            [id],
        )?;
        self.transactions.fetch_add(1, Relaxed);
        self.rows.fetch_add(1, Relaxed);
        Ok(())
    }

    /// With write-behind: a batch in one transaction, applied once however
    /// often it is delivered.
    fn apply(&self, batch: &Batch<i64, ()>) -> rusqlite::Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction()?;
        let new = tx.execute(
            "INSERT OR IGNORE INTO flushed_batches (log, batch) VALUES ('page_views', ?1)",
            [batch.id().to_string()],
        )?;
        if new == 1 {
            let mut update =
                tx.prepare_cached("UPDATE products SET view_count = view_count + ?1 WHERE id = ?2")?;
            for counted in batch.counters() {
                update.execute(params![counted.delta, counted.id])?;
            }
            self.rows.fetch_add(batch.counters().len() as u64, Relaxed);
        }
        tx.commit()?;
        self.transactions.fetch_add(1, Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.worst_lag_ms
            .fetch_max(now.saturating_sub(batch.id().ms()), Relaxed);
        Ok(())
    }
}

/// What one variant measured.
struct Measured {
    wall: Duration,
    latencies: Vec<Duration>,
    transactions: u64,
    rows: u64,
}

/// Sends `views` page views (`count(id)`) from `WORKERS` tasks.
async fn run<F, Fut>(ids: &Arc<[i64]>, count: F) -> Result<(Duration, Vec<Duration>), Box<dyn Error>>
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), Box<dyn Error + Send + Sync>>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..WORKERS {
        let (ids, next, count) = (ids.clone(), next.clone(), count.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                let Some(&id) = ids.get(i) else {
                    return Ok::<_, Box<dyn Error + Send + Sync>>(latencies);
                };
                let sent = Instant::now();
                count(id).await?;
                latencies.push(sent.elapsed());
            }
        });
    }
    let mut latencies = Vec::with_capacity(ids.len());
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done?.map_err(|e| e.to_string())?);
    }
    latencies.sort_unstable();
    Ok((started.elapsed(), latencies))
}

fn percentile(latencies: &[Duration], p: f64) -> Duration {
    latencies[((latencies.len() - 1) as f64 * p) as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    product_api::logs::init();
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!(
            "page_views needs Redis, where write-behind logs its changes durably:\n  \
             REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p aside-examples --example page_views"
        );
        std::process::exit(2);
    };
    let path = std::env::temp_dir().join("aside_product_api.sqlite");
    if !product_api::is_seeded(&path) {
        println!("building the product_api database at {} ...", path.display());
        product_api::seed(&path)?;
    }
    let writer = Writer::open(&path)?;
    let views: usize = match std::env::var("VIEWS") {
        Ok(v) => v.parse()?,
        Err(_) => DEFAULT_VIEWS,
    };
    let zipf = Zipf::new(product_api::PRODUCTS as f64, product_api::ZIPF_EXPONENT)?;
    let mut rng = StdRng::seed_from_u64(11);
    let ids: Arc<[i64]> = (0..views).map(|_| zipf.sample(&mut rng) as i64).collect();
    let before = writer.total_views()?;
    println!("{views} page views per variant, from {WORKERS} tasks, products drawn by Zipf");

    // One UPDATE per view.
    println!("counting with one UPDATE per view...");
    let direct = {
        let w = writer.clone();
        let (wall, latencies) = run(&ids, move |id| {
            let w = w.clone();
            async move {
                tokio::task::spawn_blocking(move || w.count_one(id)).await??;
                Ok(())
            }
        })
        .await?;
        Measured {
            wall,
            latencies,
            transactions: writer.transactions.swap(0, Relaxed),
            rows: writer.rows.swap(0, Relaxed),
        }
    };

    // Write-behind: each view one stream entry; batches of up to 1,000
    // views, or whatever came within a second, in one transaction.
    println!("counting through write-behind...");
    let run_id = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let cache = aside::Cache::builder()
        .redis(url)
        .namespace(format!("page_views:{run_id}"))
        .build()
        .await?;
    let log = WriteBehind::<i64, ()>::new(&cache, "page_views")?;
    let w = writer.clone();
    let flusher = log
        .flusher(move |batch: Batch<i64, ()>| {
            let w = w.clone();
            async move {
                tokio::task::spawn_blocking(move || w.apply(&batch))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
        })
        .batch_size(1_000)
        .flush_every(Duration::from_secs(1))
        .start()?;
    let started = Instant::now();
    let behind = {
        let log = log.clone();
        let (wall, latencies) = run(&ids, move |id| {
            let log = log.clone();
            async move {
                log.add(&id, 1).await?;
                Ok(())
            }
        })
        .await?;
        Measured {
            wall,
            latencies,
            transactions: 0,
            rows: 0,
        }
    };
    while log.backlog().await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flusher.stop().await;
    let flushed_in = started.elapsed();
    let behind = Measured {
        transactions: writer.transactions.swap(0, Relaxed),
        rows: writer.rows.swap(0, Relaxed),
        ..behind
    };
    let counted = writer.total_views()? - before;
    assert_eq!(counted, 2 * views as i64, "every view counted, once");

    println!();
    println!("| Page views | views/s | view p50 | view p99 | DB transactions | DB writes/s | rows updated |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, m, over) in [
        ("one UPDATE per view", &direct, direct.wall),
        ("write-behind", &behind, flushed_in),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.1} | {} |",
            views as f64 / m.wall.as_secs_f64(),
            percentile(&m.latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&m.latencies, 0.99).as_secs_f64() * 1e3,
            m.transactions,
            m.transactions as f64 / over.as_secs_f64(),
            m.rows,
        );
    }
    let stats = log.stats();
    println!();
    println!(
        "write-behind: {} batches, {} changes flushed; the longest a view waited for its commit: {} ms \
         (flush_every 1 s); all {} views of both variants are in view_count.",
        stats.batches,
        stats.flushed,
        writer.worst_lag_ms.load(Relaxed),
        2 * views
    );
    println!(
        "DB writes/s is transactions per second of wall time, the write-behind's until its last batch \
         was committed ({:.2} s).",
        flushed_in.as_secs_f64()
    );
    Ok(())
}

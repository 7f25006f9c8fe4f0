//! The product page from the article aside grew out of, cached with one attribute.
//!
//! The article: a product API took 1.8 s per page because of one query, a join
//! of products, categories, brands and reviews over 100k products and 500k
//! reviews; caching it cut p50 from 1.8 s to 45 ms. This example rebuilds that
//! setup and measures it:
//!
//! 1. Builds (once) a SQLite database of the article's size and schema in the
//!    temp directory, with a progress bar: 100,000 products, 200 categories,
//!    300 brands, 500,000 reviews.
//! 2. Runs the article's product-page query in `get_product`, cached with
//!    `#[aside::cached(key = "product:<id>", ttl = "1h")]`, and in
//!    `get_product_uncached`, the same function without the attribute.
//! 3. Sends requests from 8 concurrent tasks, with product ids drawn from a
//!    Zipf distribution (a few products are far more popular than the rest,
//!    as on a real shop): first uncached; then cached, starting from a cold
//!    cache; then, after warming the cache with the whole catalog (one batch
//!    query and `Cache::set`), cached and warm. It prints the article's
//!    results table for the three.
//! 4. Serves a category listing (the first 50 products of a category, the
//!    categories drawn from a Zipf distribution) three ways, each from a cold
//!    cache: uncached (one listing query per request), 50 `#[cached]`
//!    `get_product` calls at once, and one `#[cached_batch]` call,
//!    `get_products`, which shares `get_product`'s entries and loads the
//!    products it misses with one listing query.
//!
//! Run it with the in-memory cache (the default):
//!
//! ```sh
//! cargo run --release -p aside-examples --example product_api
//! ```
//!
//! or against Redis (keys go under a fresh `product_api:<timestamp>` namespace,
//! so each run starts cold; they expire after the 1 h TTL, nothing is flushed):
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p aside-examples --example product_api
//! ```
//!
//! With Redis, hot products are also kept in process (the typed in-process
//! tier, kept coherent by Redis); `L1=off` reads Redis on every hit.
//!
//! `REQUESTS=10000` changes the number of cold cached requests (default 3000);
//! `UNCACHED_REQUESTS` the number of uncached ones (default: as many as fit in
//! about 15 s, at most `REQUESTS`); `WARM_REQUESTS` the warm ones (default 100,000);
//! `LISTING_REQUESTS` the listing requests per variant (default 100). `RUST_LOG=warn,aside=debug` shows more of aside's
//! logs (default: warnings only).

#[path = "logs.rs"]
pub mod logs;

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

pub(crate) const PRODUCTS: i64 = 100_000;
const CATEGORIES: i64 = 200;
const BRANDS: i64 = 300;
const REVIEWS: i64 = 500_000;

/// Concurrent clients.
const WORKERS: usize = 8;
/// Zipf exponent of product popularity: product 1 is the most requested.
pub(crate) const ZIPF_EXPONENT: f64 = 1.1;
const DEFAULT_REQUESTS: usize = 3000;
/// Requests in the warm phase: hits are cheap, so many more of them.
const DEFAULT_WARM_REQUESTS: usize = 100_000;
/// The TTL `get_product` caches under (`ttl = "1h"`), for warming the cache by hand.
const TTL: Duration = Duration::from_secs(3600);
/// Products on a category listing page.
const PAGE: usize = 50;
/// Listing requests per variant.
const DEFAULT_LISTING_REQUESTS: usize = 100;
/// How long the uncached phase may take by default.
const UNCACHED_BUDGET: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// The cached function: everything aside asks of you.
// ---------------------------------------------------------------------------

/// A product page: the product, its category and brand names, and its reviews'
/// average and count. Cached values must be `Serialize + Deserialize`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: i64,
    name: String,
    description: String,
    price: f64,
    stock: i64,
    category_id: i64,
    brand_id: i64,
    category_name: Option<String>,
    brand_name: Option<String>,
    /// `None` for a product without reviews.
    avg_rating: Option<f64>,
    review_count: i64,
}

/// At most one database query per product per hour; every other request for
/// it is answered from the cache. A missing product (`Ok(None)`) is cached
/// too, for a minute; an `Err` is never cached.
#[aside::cached(key = "product:<id>", ttl = "1h")]
async fn get_product(db: &Db, id: i64) -> Result<Option<Product>, DbError> {
    db.product(id).await
}

/// The same query, every time.
async fn get_product_uncached(db: &Db, id: i64) -> Result<Option<Product>, DbError> {
    db.product(id).await
}

/// A category listing's products, in one call: the entries are
/// `get_product`'s (the same key), read in one round trip, and the products
/// not cached are loaded with one query. A product the query does not find
/// is cached as absent, as `get_product` caches its `None`.
#[aside::cached_batch(key = "product:<id>", ttl = "1h")]
async fn get_products(db: &Db, ids: &[i64]) -> Result<HashMap<i64, Product>, DbError> {
    db.products(ids.to_vec()).await
}

// ---------------------------------------------------------------------------
// The database.
// ---------------------------------------------------------------------------

/// The article's product-page query, as written there (with `?` for the id).
const PRODUCT_QUERY: &str = "
    SELECT
        p.*,
        c.name AS category_name,
        b.name AS brand_name,
        AVG(r.rating) AS avg_rating,
        COUNT(r.id) AS review_count
    FROM products p
    LEFT JOIN categories c ON p.category_id = c.id
    LEFT JOIN brands b ON p.brand_id = b.id
    LEFT JOIN reviews r ON r.product_id = p.id
    WHERE p.id = ?1
    GROUP BY p.id, c.name, b.name";

/// A database error.
#[derive(Debug)]
struct DbError(rusqlite::Error);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database error: {}", self.0)
    }
}

impl Error for DbError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e)
    }
}

/// A handle on the SQLite database: a small pool of read-only connections
/// (a `rusqlite::Connection` is `Send` but not `Sync`, so each query takes
/// one for itself) and a count of the queries run.
#[derive(Clone)]
struct Db {
    inner: Arc<DbInner>,
}

struct DbInner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    queries: AtomicU64,
}

impl Db {
    /// Connections are opened as queries need them.
    fn new(path: &Path) -> Db {
        Db {
            inner: Arc::new(DbInner {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                queries: AtomicU64::new(0),
            }),
        }
    }

    /// Product queries run so far.
    fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Runs the product query on a blocking-pool thread, as blocking database
    /// calls should be from async code.
    async fn product(&self, id: i64) -> Result<Option<Product>, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.product_blocking(id))
            .await
            // Only a panic in the query can fail the task: pass it on.
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Runs the listing query (the product query for several ids at once).
    async fn products(&self, ids: Vec<i64>) -> Result<HashMap<i64, Product>, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            db.inner.queries.fetch_add(1, Ordering::Relaxed);
            let conn = db.checkout()?;
            let found = query_products(&conn, &ids);
            db.inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
            found
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    fn product_blocking(&self, id: i64) -> Result<Option<Product>, DbError> {
        self.inner.queries.fetch_add(1, Ordering::Relaxed);
        let conn = self.checkout()?;
        let product = query_product(&conn, id);
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        product
    }

    /// An idle connection, or a new one: there are never more connections
    /// than concurrent queries.
    fn checkout(&self) -> Result<Connection, DbError> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => Ok(Connection::open_with_flags(
                &self.inner.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?),
        }
    }
}

fn query_product(conn: &Connection, id: i64) -> Result<Option<Product>, DbError> {
    let mut stmt = conn.prepare_cached(PRODUCT_QUERY)?;
    Ok(stmt.query_row([id], product_from_row).optional()?)
}

/// The product pages of `ids`: one query, whose reviews are read in one scan.
fn query_products(conn: &Connection, ids: &[i64]) -> Result<HashMap<i64, Product>, DbError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = products_query(Some(ids.len()));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        rusqlite::params_from_iter(ids.iter().chain(ids)),
        product_from_row,
    )?;
    rows.map(|row| Ok(row.map(|product| (product.id, product))?))
        .collect()
}

fn product_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        id: row.get("id")?,
        name: row.get("name")?,
        description: row.get("description")?,
        price: row.get("price")?,
        stock: row.get("stock")?,
        category_id: row.get("category_id")?,
        brand_id: row.get("brand_id")?,
        category_name: row.get("category_name")?,
        brand_name: row.get("brand_name")?,
        avg_rating: row.get("avg_rating")?,
        review_count: row.get("review_count")?,
    })
}

/// Product pages several at a time: the article's query with the reviews
/// aggregated in one pass instead of once per product, for `ids` (`?`
/// placeholders, given twice), or for every product (`None`, to warm the
/// cache). It yields exactly the rows `PRODUCT_QUERY` does for each id.
fn products_query(ids: Option<usize>) -> String {
    let marks = ids.map(|n| vec!["?"; n].join(", "));
    let (reviews, products) = match &marks {
        Some(marks) => (
            format!("WHERE product_id IN ({marks})"),
            format!("WHERE p.id IN ({marks})"),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "SELECT
            p.*,
            c.name AS category_name,
            b.name AS brand_name,
            r.avg_rating,
            COALESCE(r.review_count, 0) AS review_count
        FROM products p
        LEFT JOIN categories c ON p.category_id = c.id
        LEFT JOIN brands b ON p.brand_id = b.id
        LEFT JOIN (
            SELECT product_id, AVG(rating) AS avg_rating, COUNT(id) AS review_count
            FROM reviews {reviews} GROUP BY product_id
        ) r ON r.product_id = p.id
        {products}"
    )
}

/// Cache warming, as in the article, but for the whole catalog and with one
/// query: stores every product page under the key `get_product` reads, so
/// that from then on every request is a hit until the TTL. Returns how many
/// pages were stored.
async fn warm_cache(db: &Db, cache: &aside::Cache) -> Result<usize, Box<dyn Error>> {
    let path = db.inner.path.clone();
    let products = tokio::task::spawn_blocking(move || -> Result<Vec<Product>, DbError> {
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut stmt = conn.prepare(&products_query(None))?;
        let rows = stmt.query_map([], product_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    })
    .await??;
    let count = products.len();
    let products: Arc<[Product]> = products.into();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..WORKERS {
        let (cache, products, next) = (cache.clone(), products.clone(), next.clone());
        tasks.spawn(async move {
            while let Some(product) = products.get(next.fetch_add(1, Ordering::Relaxed)) {
                // The key and the value exactly as `#[cached(key = "product:<id>")]`
                // stores them for `get_product(db, product.id)`, which returns
                // `Option<Product>`.
                let key = aside::KeyBuilder::new("product:").arg(&product.id).finish();
                cache.set(&key, &Some(product), Some(TTL)).await?;
            }
            Ok::<_, aside::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(count)
}

/// The article's tables. Like the article's database, `reviews` has no index
/// on `product_id`: the query scans all 500,000 reviews, 20-30 ms here on
/// SQLite (the article's 1.8 s was on a busier server). The example keeps it
/// that way on purpose, so there is something worth caching.
///
/// In a real application, add the index first:
/// `CREATE INDEX reviews_product_id ON reviews (product_id)` takes a quarter
/// of a second to build and brings this query down to about 20 µs. Caching is
/// for what is still slow after that.
const SCHEMA: &str = "
    CREATE TABLE categories (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL
    );
    CREATE TABLE brands (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL
    );
    CREATE TABLE products (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,
        description TEXT NOT NULL,
        price       REAL NOT NULL,
        stock       INTEGER NOT NULL,
        view_count  INTEGER NOT NULL,
        category_id INTEGER REFERENCES categories (id),
        brand_id    INTEGER REFERENCES brands (id),
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE reviews (
        id         INTEGER PRIMARY KEY,
        product_id INTEGER NOT NULL REFERENCES products (id),
        user_id    INTEGER NOT NULL,
        rating     INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
        body       TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );";

/// Stored in `PRAGMA user_version`: a database from an older schema is rebuilt.
const SCHEMA_VERSION: i64 = 1;

const EXPECTED_ROWS: [(&str, i64); 4] = [
    ("categories", CATEGORIES),
    ("brands", BRANDS),
    ("products", PRODUCTS),
    ("reviews", REVIEWS),
];

/// Whether the database at `path` exists, has this schema and holds the expected row counts.
pub(crate) fn is_seeded(path: &Path) -> bool {
    if !path.exists() {
        return false;
    }
    let Ok(conn) = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return false;
    };
    let version = conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0));
    version.is_ok_and(|v| v == SCHEMA_VERSION)
        && EXPECTED_ROWS.iter().all(|(table, expected)| {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .is_ok_and(|count| count == *expected)
        })
}

/// Creates the database at `path`: written to a temporary file in one
/// transaction, then renamed into place, so an interrupted run leaves nothing
/// half-built behind.
pub(crate) fn seed(path: &Path) -> Result<(), Box<dyn Error>> {
    let building = path.with_extension("sqlite.building");
    let _ = std::fs::remove_file(&building);
    let mut conn = Connection::open(&building)?;
    // Nothing to protect until the file is renamed into place.
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.execute_batch(SCHEMA)?;

    let total = EXPECTED_ROWS.iter().map(|(_, n)| *n as u64).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "seeding {msg:<10} [{bar:24.cyan/blue}] {percent:>3}% of {human_len} rows ({eta} left)",
        )?
        .progress_chars("=> "),
    );
    let mut rng = StdRng::seed_from_u64(42);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let tx = conn.transaction()?;
    {
        bar.set_message("categories");
        let mut insert = tx.prepare("INSERT INTO categories (id, name) VALUES (?1, ?2)")?;
        for id in 1..=CATEGORIES {
            insert.execute(params![id, format!("{} {id}", pick(&mut rng, CATEGORY_WORDS))])?;
            bar.inc(1);
        }

        bar.set_message("brands");
        let mut insert = tx.prepare("INSERT INTO brands (id, name) VALUES (?1, ?2)")?;
        for id in 1..=BRANDS {
            let name = format!(
                "{}{}",
                pick(&mut rng, BRAND_PARTS),
                pick(&mut rng, BRAND_SUFFIXES)
            );
            insert.execute(params![id, format!("{name} {id}")])?;
            bar.inc(1);
        }

        bar.set_message("products");
        let mut insert = tx.prepare(
            "INSERT INTO products
                 (id, name, description, price, stock, view_count, category_id, brand_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for id in 1..=PRODUCTS {
            let adjective = pick(&mut rng, ADJECTIVES);
            let noun = pick(&mut rng, NOUNS);
            let cents: i64 = rng.random_range(199..=99_999);
            insert.execute(params![
                id,
                format!("{adjective} {noun} #{id}"),
                format!("A {} {noun} for every day.", adjective.to_lowercase()),
                cents as f64 / 100.0,
                rng.random_range(0..500),
                rng.random_range(0..100_000),
                rng.random_range(1..=CATEGORIES),
                rng.random_range(1..=BRANDS),
                now - rng.random_range(0..3 * 365 * 86_400),
            ])?;
            if id % 1000 == 0 {
                bar.inc(1000);
            }
        }

        bar.set_message("reviews");
        let mut insert = tx.prepare(
            "INSERT INTO reviews (id, product_id, user_id, rating, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for id in 1..=REVIEWS {
            insert.execute(params![
                id,
                rng.random_range(1..=PRODUCTS),
                rng.random_range(1..=200_000),
                // Skewed towards good ratings, as reviews are.
                [1, 2, 3, 3, 4, 4, 4, 5, 5, 5][rng.random_range(0..10)],
                pick(&mut rng, REVIEW_BODIES),
                now - rng.random_range(0..3 * 365 * 86_400),
            ])?;
            if id % 1000 == 0 {
                bar.inc(1000);
            }
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    drop(conn);
    std::fs::rename(&building, path)?;
    bar.finish_and_clear();
    Ok(())
}

fn pick<'a>(rng: &mut StdRng, words: &[&'a str]) -> &'a str {
    words[rng.random_range(0..words.len())]
}

const CATEGORY_WORDS: &[&str] = &[
    "Kitchen", "Garden", "Outdoor", "Office", "Audio", "Lighting", "Bath", "Toys", "Sports", "Travel",
];
const BRAND_PARTS: &[&str] = &["Nord", "Acme", "Blue", "Iron", "Oak", "Pixel", "Sun", "Terra"];
const BRAND_SUFFIXES: &[&str] = &["ware", "works", "co", "labs", "craft", "line"];
const ADJECTIVES: &[&str] = &[
    "Compact", "Classic", "Smart", "Sturdy", "Portable", "Deluxe", "Eco", "Mini",
];
const NOUNS: &[&str] = &[
    "Lamp", "Kettle", "Backpack", "Speaker", "Chair", "Blender", "Tent", "Mug",
];
const REVIEW_BODIES: &[&str] = &[
    "Does what it says.",
    "Great value for the price.",
    "Broke after a month.",
    "Arrived quickly, works well.",
    "Not as pictured.",
    "Would buy again.",
];

// ---------------------------------------------------------------------------
// The load test.
// ---------------------------------------------------------------------------

/// What one phase measured.
struct Phase {
    requests: usize,
    /// Sorted.
    latencies: Vec<Duration>,
    wall: Duration,
    db_queries: u64,
    /// The cache's counters during the phase.
    cache: aside::stats::Stats,
}

impl Phase {
    fn percentile(&self, p: f64) -> Duration {
        let rank = ((self.latencies.len() as f64 * p).ceil() as usize).max(1);
        self.latencies[rank - 1]
    }

    fn db_qps(&self) -> f64 {
        self.db_queries as f64 / self.wall.as_secs_f64()
    }

    fn queries_per_request(&self) -> f64 {
        self.db_queries as f64 / self.requests as f64
    }

    fn throughput(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }
}

/// Sends `get_product` (or its uncached twin) for every id in `ids`, from
/// `WORKERS` concurrent tasks.
async fn run_phase(db: &Db, ids: &Arc<[i64]>, cached: bool) -> Result<Phase, Box<dyn Error>> {
    let ids = ids.clone();
    run_requests(db, ids.len(), move |db, i| {
        let id = ids[i];
        async move {
            let product = if cached {
                get_product(&db, id).await?
            } else {
                get_product_uncached(&db, id).await?
            };
            assert!(product.is_some_and(|p| p.id == id), "product {id} exists");
            Ok(())
        }
    })
    .await
}

/// How a category listing is served.
#[derive(Clone, Copy, Debug)]
enum Listing {
    /// The listing query, every time.
    Uncached,
    /// `get_product` for each of the 50 products, all at once.
    Singles,
    /// `get_products`, the batch.
    Batch,
}

/// Serves the category pages `picks` (indices into `pages`), the way
/// `listing` says, from `WORKERS` concurrent tasks.
async fn run_listing(
    db: &Db,
    pages: &Arc<[Vec<i64>]>,
    picks: &Arc<[usize]>,
    listing: Listing,
) -> Result<Phase, Box<dyn Error>> {
    let (pages, picks) = (pages.clone(), picks.clone());
    run_requests(db, picks.len(), move |db, i| {
        let page = pages[picks[i]].clone();
        async move {
            let found = match listing {
                Listing::Uncached => db.products(page.clone()).await?.len(),
                Listing::Singles => {
                    let each = page.iter().map(|&id| get_product(&db, id));
                    let products = futures_util::future::try_join_all(each).await?;
                    products.into_iter().flatten().count()
                }
                Listing::Batch => get_products(&db, &page).await?.len(),
            };
            assert_eq!(found, page.len(), "every product of the page exists");
            Ok(())
        }
    })
    .await
}

/// Runs `request(db, i)` for every `i` below `count`, from `WORKERS`
/// concurrent tasks, and measures it.
async fn run_requests<F, Fut>(db: &Db, count: usize, request: F) -> Result<Phase, Box<dyn Error>>
where
    F: Fn(Db, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), DbError>> + Send,
{
    let stats_before = aside::global().stats();
    let next = Arc::new(AtomicUsize::new(0));
    let queries_before = db.queries();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..WORKERS {
        let (db, next, request) = (db.clone(), next.clone(), request.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, DbError>(latencies);
                }
                let sent = Instant::now();
                request(db.clone(), i).await?;
                latencies.push(sent.elapsed());
            }
        });
    }
    let mut latencies = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let wall = started.elapsed();
    latencies.sort_unstable();
    Ok(Phase {
        requests: count,
        latencies,
        wall,
        db_queries: db.queries() - queries_before,
        cache: aside::global().stats().since(&stats_before),
    })
}

/// The first page (50 products, by id) of every category: one query.
async fn category_pages(db: &Db) -> Result<Arc<[Vec<i64>]>, Box<dyn Error>> {
    let path = db.inner.path.clone();
    let pages = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<i64>>, DbError> {
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut stmt = conn.prepare("SELECT category_id, id FROM products ORDER BY category_id, id")?;
        let rows = stmt.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))?;
        let mut pages: Vec<(i64, Vec<i64>)> = Vec::new();
        for row in rows {
            let (category, id) = row?;
            match pages.last_mut() {
                Some((c, page)) if *c == category => {
                    if page.len() < PAGE {
                        page.push(id);
                    }
                }
                _ => pages.push((category, vec![id])),
            }
        }
        Ok(pages
            .into_iter()
            .map(|(_, page)| page)
            .filter(|page| page.len() == PAGE)
            .collect())
    })
    .await??;
    Ok(pages.into())
}

fn env_usize(name: &str) -> Result<Option<usize>, Box<dyn Error>> {
    match std::env::var(name) {
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!("{name} must be a positive whole number, not {value:?}").into()),
        },
        Err(_) => Ok(None),
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else if ms >= 0.001 {
        format!("{:.0} µs", ms * 1000.0)
    } else {
        format!("{:.2} µs", ms * 1000.0)
    }
}

/// `before → after` as the article writes it: the reduction in percent.
fn reduction(before: f64, after: f64) -> String {
    if before <= 0.0 {
        return "-".into();
    }
    // Truncated, so that 99.96% does not read as 100%.
    let percent = ((before - after) / before * 1000.0).trunc() / 10.0;
    if after > 0.0 && before / after >= 2.0 {
        format!("{percent:.1}% ({})", times(before / after))
    } else {
        format!("{percent:.1}%")
    }
}

/// A ratio: `2.6x`, `310x`.
fn times(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}x")
    } else {
        format!("{ratio:.1}x")
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    logs::init();

    // The cache: Redis if REDIS_URL is set, else in memory. `aside::init` makes
    // it the one every `#[cached]` function without `cache = ...` uses.
    let (cache, backend) = match std::env::var("REDIS_URL") {
        Ok(url) => {
            // A fresh namespace per run, so that each run starts cold without
            // deleting anything from a Redis that may be shared.
            let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
            let namespace = format!("product_api:{run}");
            let builder = aside::Cache::builder().redis(url).namespace(&namespace);
            // Hot products served from process memory, kept coherent by Redis;
            // `L1=off` reads Redis on every hit.
            let tiered = std::env::var("L1").map_or(true, |v| v != "off");
            let builder = if tiered {
                builder.l1(aside::L1::entries(100_000))
            } else {
                builder
            };
            let cache = builder.build().await?;
            let tier = if tiered {
                "in-process tier in front of "
            } else {
                ""
            };
            (
                cache,
                format!("{tier}Redis (REDIS_URL), keys under \"{namespace}:\""),
            )
        }
        Err(_) => (
            aside::Cache::memory(),
            "in-memory (set REDIS_URL to use Redis)".to_owned(),
        ),
    };
    aside::init(cache.clone())?;
    println!("cache backend: {backend}");

    // The database.
    let path = std::env::temp_dir().join("aside_product_api.sqlite");
    if is_seeded(&path) {
        println!("database: {} (already seeded)", path.display());
    } else {
        let started = Instant::now();
        seed(&path)?;
        println!(
            "database: {} (seeded {PRODUCTS} products, {CATEGORIES} categories, {BRANDS} brands, \
             {REVIEWS} reviews in {:.1} s)",
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let db = Db::new(&path);

    // One query on its own, to size the uncached phase.
    let mut probes = Vec::new();
    for id in [1, 50_000, 99_999] {
        let started = Instant::now();
        get_product_uncached(&db, id).await?;
        probes.push(started.elapsed());
    }
    probes.sort_unstable();
    let one_query = probes[1];
    println!("one product query, alone: {} (the article: 1.8 s)", ms(one_query));

    // The requests: product ids with Zipf-distributed popularity, the same
    // sequence for both phases.
    let requests = env_usize("REQUESTS")?.unwrap_or(DEFAULT_REQUESTS);
    let zipf = Zipf::new(PRODUCTS as f64, ZIPF_EXPONENT)?;
    let mut rng = StdRng::seed_from_u64(7);
    let ids: Arc<[i64]> = (0..requests).map(|_| zipf.sample(&mut rng) as i64).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let affordable = (UNCACHED_BUDGET.as_secs_f64() * threads as f64 / one_query.as_secs_f64()) as usize;
    let uncached_requests = env_usize("UNCACHED_REQUESTS")?
        .unwrap_or(affordable.max(WORKERS))
        .min(requests);
    let distinct = {
        let mut seen = ids.to_vec();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    println!(
        "requests: {requests} cached, {uncached_requests} uncached, from {WORKERS} concurrent tasks; \
         {distinct} distinct products (Zipf, exponent {ZIPF_EXPONENT})"
    );

    println!("running uncached...");
    let uncached = run_phase(&db, &ids[..uncached_requests].into(), false).await?;
    println!("running cached, starting cold (every first request for a product is a miss)...");
    let cold = run_phase(&db, &ids, true).await?;
    let started = Instant::now();
    let warmed = warm_cache(&db, &cache).await?;
    println!(
        "warmed the cache with all {warmed} product pages in {:.1} s (one batch query, then cache.set)",
        started.elapsed().as_secs_f64()
    );
    // A new sequence from the same distribution: what requests see once the
    // cache holds the catalog, as it does in a shop that has been up for a while.
    let mut rng = StdRng::seed_from_u64(8);
    let warm_requests = env_usize("WARM_REQUESTS")?.unwrap_or(DEFAULT_WARM_REQUESTS);
    let later: Arc<[i64]> = (0..warm_requests).map(|_| zipf.sample(&mut rng) as i64).collect();
    println!("running cached, warm ({warm_requests} requests)...");
    let warm = run_phase(&db, &later, true).await?;

    // The category listing, three ways, each from a cold cache.
    let pages = category_pages(&db).await?;
    let listing_requests = env_usize("LISTING_REQUESTS")?.unwrap_or(DEFAULT_LISTING_REQUESTS);
    let page_zipf = Zipf::new(pages.len() as f64, ZIPF_EXPONENT)?;
    let mut rng = StdRng::seed_from_u64(9);
    let picks: Arc<[usize]> = (0..listing_requests)
        .map(|_| page_zipf.sample(&mut rng) as usize - 1)
        .collect();
    let mut listings = Vec::new();
    for listing in [Listing::Uncached, Listing::Singles, Listing::Batch] {
        cache.clear().await?;
        println!("running the category listing ({PAGE} products a page), {listing:?}...");
        listings.push((listing, run_listing(&db, &pages, &picks, listing).await?));
    }

    let phases = [&uncached, &cold, &warm];
    let row = |metric: &str, cell: &dyn Fn(&Phase) -> String, better: &dyn Fn(&Phase) -> f64| {
        let improvement = reduction(better(&uncached), better(&warm));
        let [before, cold, after] = phases.map(cell);
        println!("| {metric:<22} | {before:>10} | {cold:>13} | {after:>13} | {improvement:>16} |");
    };
    println!();
    println!(
        "| {:<22} | {:>10} | {:>13} | {:>13} | {:>16} |",
        "Metric", "Uncached", "Cached, cold", "Cached, warm", "Improvement"
    );
    println!("|{:-<24}|{:->12}|{:->15}|{:->15}|{:->18}|", "", "", "", "", "");
    let p50 = |p: &Phase| p.percentile(0.50).as_secs_f64();
    let p99 = |p: &Phase| p.percentile(0.99).as_secs_f64();
    row("Response time (p50)", &|p| ms(p.percentile(0.50)), &p50);
    row("Response time (p99)", &|p| ms(p.percentile(0.99)), &p99);
    row("Database load", &|p| format!("{:.0} qps", p.db_qps()), &|p| {
        p.db_qps()
    });
    row(
        "DB queries per request",
        &|p| format!("{:.2}", p.queries_per_request()),
        &|p| p.queries_per_request(),
    );
    row("Throughput", &|p| format!("{:.0} req/s", p.throughput()), &|p| {
        1.0 / p.throughput()
    });
    let hit_rate = |p: &Phase| match p.cache.hits + p.cache.misses + p.cache.coalesced {
        0 => "-".to_owned(),
        _ => format!("{:.1}%", p.cache.hit_ratio() * 100.0),
    };
    row("Cache hit rate", &hit_rate, &|_| 0.0);
    println!();
    println!(
        "Improvement compares uncached with cached, warm. Database load is DB queries per second of\n\
         wall time: the clients send a request as soon as the last one is answered, so while the cache\n\
         is cold the database is as busy as it can be; \"DB queries per request\" is the load at equal\n\
         traffic. Cold, the hit rate is low because {distinct} of the {requests} requests are the first\n\
         for their product; warm, the cache holds the catalog (as it would in a shop that has been\n\
         serving for a while, or that warms its cache at start-up)."
    );
    println!();
    for (name, phase) in [("uncached", &uncached), ("cold", &cold), ("warm", &warm)] {
        let c = &phase.cache;
        println!(
            "{name:<9} {} requests, {} DB queries in {:.1} s; cache: {} hits, {} misses, {} coalesced, {} errors",
            phase.requests,
            phase.db_queries,
            phase.wall.as_secs_f64(),
            c.hits,
            c.misses,
            c.coalesced,
            c.errors
        );
    }
    println!();
    println!(
        "category listing: {listing_requests} requests for the first page ({PAGE} products) of {} categories \
         (Zipf), from {WORKERS} tasks, each variant from a cold cache:",
        pages.len()
    );
    println!("| Listing of {PAGE} | p50 | p99 | DB queries per request | Throughput |");
    println!("|---|---:|---:|---:|---:|");
    for (listing, phase) in &listings {
        let name = match listing {
            Listing::Uncached => "uncached: one query".to_owned(),
            Listing::Singles => format!("{PAGE} `#[cached]` calls"),
            Listing::Batch => "one `#[cached_batch]` call".to_owned(),
        };
        println!(
            "| {name} | {} | {} | {:.2} | {:.0} req/s |",
            ms(phase.percentile(0.50)),
            ms(phase.percentile(0.99)),
            phase.queries_per_request(),
            phase.throughput()
        );
    }
    println!();
    println!("per function, over the whole run (aside::stats::function_stats()):");
    println!("| function | calls | hit rate | misses | coalesced | loads | mean load |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for f in aside::stats::function_stats() {
        println!(
            "| {} | {} | {:.1}% | {} | {} | {} | {} |",
            f.name,
            f.calls(),
            f.hit_ratio() * 100.0,
            f.misses,
            f.coalesced,
            f.loads,
            ms(f.mean_load_time())
        );
    }
    Ok(())
}

//! A small HTTP service with cached endpoints and a Prometheus `/metrics`
//! endpoint: what an operator scrapes to see each function's hit rate and
//! load time.
//!
//! ```sh
//! cargo run --example metrics_server                      # in memory
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example metrics_server
//! curl localhost:3000/products/7; curl localhost:3000/metrics
//! ```
//!
//! `PORT` picks the port (3000; `0` for any free one). The test
//! `tests/prometheus.rs` runs this same service and scrapes it.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub category: u32,
}

#[derive(Debug)]
pub struct DbError;

/// The slow query: 5 ms, and ids above 1,000 do not exist.
#[aside::cached(key = "product:<id>", ttl = "1m", tags = ["product:<id>"])]
pub async fn product(id: u64) -> Result<Option<Product>, DbError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok((id <= 1_000).then(|| Product {
        id,
        name: format!("product {id}"),
        category: (id % 10) as u32,
    }))
}

/// The ids in a category: served stale while it is refreshed.
#[aside::cached(key = "category:<category>", ttl = "30s", stampede = "swr")]
pub async fn category(category: u32) -> Result<Vec<u64>, DbError> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok((1..=1_000)
        .filter(|id| id % 10 == u64::from(category))
        .take(20)
        .collect())
}

/// A write: the product's entry is dropped once it succeeded.
#[aside::invalidate(tags = ["product:<id>"])]
pub async fn touch_product(id: u64) -> Result<(), DbError> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(())
}

/// The service: `/products/{id}`, `/categories/{id}`, `POST
/// /products/{id}/touch` and `/metrics`.
pub fn app(prometheus: PrometheusHandle) -> Router {
    Router::new()
        .route("/products/{id}", get(get_product))
        .route("/products/{id}/touch", post(post_touch))
        .route("/categories/{id}", get(get_category))
        .route(
            "/metrics",
            get(|State(handle): State<PrometheusHandle>| async move { handle.render() }),
        )
        .with_state(prometheus)
}

async fn get_product(Path(id): Path<u64>) -> Result<String, StatusCode> {
    match product(id).await {
        Ok(Some(product)) => serde_json::to_string(&product).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR),
        Ok(None) => Err(StatusCode::NOT_FOUND),
        Err(DbError) => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

async fn get_category(Path(id): Path<u32>) -> Result<String, StatusCode> {
    let ids = category(id)
        .await
        .map_err(|DbError| StatusCode::SERVICE_UNAVAILABLE)?;
    serde_json::to_string(&ids).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

async fn post_touch(Path(id): Path<u64>) -> StatusCode {
    match touch_product(id).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(DbError) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The Prometheus recorder, installed as the process's: before the first
/// cached call, so that every function's metrics reach it.
pub fn install_prometheus() -> PrometheusHandle {
    PrometheusBuilder::new()
        // Buckets for load times, lock waits and round trips, in seconds;
        // without them the exporter writes summaries instead of histograms.
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        ])
        .expect("the buckets are not empty")
        .install_recorder()
        .expect("no other recorder is installed")
}

#[allow(dead_code)] // a test includes this file for `app`, not `main`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let prometheus = install_prometheus();
    let mut cache = aside::Cache::builder();
    if let Ok(url) = std::env::var("REDIS_URL") {
        cache = cache.redis(url);
    }
    aside::init(cache.build().await?)?;
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(prometheus)).await?;
    Ok(())
}

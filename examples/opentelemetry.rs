//! aside's spans in OpenTelemetry, through `tracing-opentelemetry`: each
//! cached call becomes an OpenTelemetry span named `aside.get_or_load`, with
//! the function, the outcome and the load time as attributes, and the load
//! and the backend's round trips as child spans.
//!
//! ```sh
//! cargo run --example opentelemetry
//! ```
//!
//! This one prints the spans to stdout; a service would give the provider
//! an OTLP exporter (the `opentelemetry-otlp` crate) instead. For metrics,
//! let the OpenTelemetry Collector scrape the Prometheus endpoint of
//! `examples/metrics_server.rs` (its `prometheus` receiver).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[aside::cached(key = "greeting:<name>", ttl = "1m")]
async fn greeting(name: String) -> String {
    format!("hello, {name}")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    tracing_subscriber::registry()
        // aside's spans are at DEBUG: ask for them.
        .with(tracing_subscriber::EnvFilter::new("info,aside=debug"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("example")))
        .init();

    greeting("ada".to_owned()).await; // a miss: the span has a child `aside.load`
    greeting("ada".to_owned()).await; // a hit

    provider.shutdown()?; // flushes the spans
    Ok(())
}

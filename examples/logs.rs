//! The examples' logs, shared by `#[path]`.

/// Logs on stderr: warnings, unless `RUST_LOG` says otherwise (levels by
/// target, `warn,aside=debug`, through `tracing_subscriber::filter::Targets`,
/// which needs no regex engine to build).
pub fn init() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
}

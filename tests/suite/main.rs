//! The integration tests that share no process-wide state, as one binary:
//! `support` is compiled once and the dependency tree linked once, not once
//! per file (each file under `tests/` is a crate of its own, built and linked
//! apart). A file here is a module: `cargo test --test suite faults::` runs
//! one. The tests that set the global cache, a global metrics recorder or
//! tracing subscriber, read the key registry, or load both cores on purpose
//! stay files of their own under `tests/`.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod background;
mod batch;
mod cache_aside;
mod chaos;
mod credentials;
mod entry_size;
mod escape_hatches;
mod fail_safe;
mod faults;
mod hostile_keys;
mod invalidation;
mod macro_batch;
mod macro_invalidation;
mod outages;
mod redis_backend;
mod redis_cluster;
mod stampede;
mod timeouts;
mod two_tiers;
mod write_behind;

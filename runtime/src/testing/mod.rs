//! Testing code that uses aside (the `testing` feature).
//!
//! [`Chaos`]: faults injected into a cache's backend, the in-memory one or
//! Redis, by a seeded schedule, so that a test can see how a service
//! behaves when its cache is slow, failing, hung or flapping without
//! killing a process, and replay a failure with the same seed.

mod chaos;

pub use chaos::{Chaos, Fault};

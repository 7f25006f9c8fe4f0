//! The guide: one page per topic, each readable on its own. Every snippet
//! in it is compiled and run by `cargo test`, so none of them can drift
//! from the code. (The README is the front door; the pages move here from
//! it, one topic at a time.)
//!
//! Pages:
//!
//! - `cluster`: running on Redis Cluster (the `cluster` feature).
//! - [`write_behind`]: writes logged in Redis now and flushed to the
//!   database in batches, at least once (the `redis` feature).
#![cfg_attr(
    feature = "testing",
    doc = "- [`testing`]: testing code that uses aside: caching off, isolated and recorded, \
           under chaos, and time on a paused clock (the `testing` feature)."
)]
#![cfg_attr(
    not(feature = "testing"),
    doc = "- `testing`: testing code that uses aside (shown with the `testing` feature)."
)]

#[cfg(feature = "testing")]
#[doc = include_str!("testing.md")]
pub mod testing {}

#[cfg(feature = "redis")]
#[doc = include_str!("write_behind.md")]
pub mod write_behind {}

#[cfg(feature = "cluster")]
#[doc = include_str!("cluster.md")]
pub mod cluster {}

//! The guide: one page per topic, each readable on its own. Every snippet
//! in it is compiled and run by `cargo test`, so none of them can drift
//! from the code. (The README is the front door; the pages move here from
//! it, one topic at a time.)
//!
//! Pages:
//!
//! - [`keys`]: key templates, methods, how a key is made, the compile
//!   errors, and keys that collide.
//! - [`invalidation`]: `#[invalidate]` and `#[cache_put]`, which cache a
//!   writer writes, the runtime API without the macro, escape hatches.
//! - [`semantics`]: what is cached, keys, entries, coalescing, the
//!   invalidation guarantee and why it holds, the Redis layout.
//! - [`stampede`]: the four stampede modes and which to choose.
//! - [`batch`]: `#[cached_batch]`, many ids in one round trip and one query.
//! - [`tiers`]: the typed in-process tier, alone or in front of Redis, and
//!   its coherence (the `redis` feature).
//! - [`failures`]: what a call does when Redis or the database fails, and
//!   invalidations kept through an outage.
//! - [`performance`]: what the main example measures, and the compile cost.
//! - [`observability`]: statistics, spans, metrics, a dashboard.
//! - [`write_behind`]: writes logged in Redis now and flushed to the
//!   database in batches, at least once (the `redis` feature).
//! - `cluster`: running on Redis Cluster (the `cluster` feature).
#![cfg_attr(
    feature = "testing",
    doc = "- [`testing`]: testing code that uses aside: caching off, isolated and recorded, \
           under chaos, and time on a paused clock (the `testing` feature)."
)]
#![cfg_attr(
    not(feature = "testing"),
    doc = "- `testing`: testing code that uses aside (shown with the `testing` feature)."
)]

#[doc = include_str!("keys.md")]
pub mod keys {}

#[doc = include_str!("invalidation.md")]
pub mod invalidation {}

#[doc = include_str!("semantics.md")]
pub mod semantics {}

#[doc = include_str!("stampede.md")]
pub mod stampede {}

#[doc = include_str!("batch.md")]
pub mod batch {}

#[cfg(feature = "redis")]
#[doc = include_str!("tiers.md")]
pub mod tiers {}

#[doc = include_str!("failures.md")]
pub mod failures {}

#[doc = include_str!("performance.md")]
pub mod performance {}

#[doc = include_str!("observability.md")]
#[doc = include_str!("dashboard.md")]
pub mod observability {}

#[cfg(feature = "testing")]
#[doc = include_str!("testing.md")]
pub mod testing {}

#[cfg(feature = "redis")]
#[doc = include_str!("write_behind.md")]
pub mod write_behind {}

#[cfg(feature = "cluster")]
#[doc = include_str!("cluster.md")]
pub mod cluster {}

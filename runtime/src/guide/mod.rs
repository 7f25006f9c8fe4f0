//! The guide: one page per topic, each readable on its own. Every snippet
//! in it is compiled and run by `cargo test`, so none of them can drift
//! from the code. (The README is the front door; the pages move here from
//! it, one topic at a time.)
//!
//! Pages:
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

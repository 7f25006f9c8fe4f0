//! Metrics without the `metrics` feature: the names of `metrics.rs`, doing
//! nothing and holding nothing, so that the flows report what they do
//! without a `#[cfg]` and without cost when nobody collects it.

use std::sync::OnceLock;
use std::time::Duration;

use crate::breaker::BreakerState;
use crate::counters::Outcome;

/// One function's handles: none.
#[derive(Debug)]
pub(crate) struct FunctionMetrics;

impl FunctionMetrics {
    /// None to register: not even the cell is read.
    pub(crate) fn of<'a>(_: &'a OnceLock<FunctionMetrics>, _: &'static str) -> &'a FunctionMetrics {
        &FunctionMetrics
    }
    pub(crate) fn outcome(&self, _: Outcome) {}
    pub(crate) fn load(&self, _: Duration, _: bool) {}
    pub(crate) fn lock_wait(&self, _: Timer) {}
    pub(crate) fn refresh(&self, _: bool) {}
    pub(crate) fn timeout(&self) {}
    pub(crate) fn oversized(&self) {}
    pub(crate) fn corrupt(&self) {}
}

/// A call in flight: not counted.
pub(crate) struct InFlight;

impl InFlight {
    pub(crate) fn enter(_: &'static FunctionMetrics) -> Self {
        InFlight
    }
}

/// A cache's handles: none.
#[derive(Debug)]
pub(crate) struct CacheMetrics;

impl CacheMetrics {
    pub(crate) fn new() -> Self {
        CacheMetrics
    }
    pub(crate) fn pending(&self, _: usize, _: u64) {}
    pub(crate) fn overflowed(&self) {}
    pub(crate) fn short_circuited(&self) {}
    pub(crate) fn backend(&self, _: &'static str, _: Timer, _: bool, _: impl FnOnce() -> BreakerState) {}
}

/// A write-behind log's handles: none.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct LogMetrics;

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl LogMetrics {
    pub(crate) fn new(_: &str) -> Self {
        LogMetrics
    }
    pub(crate) fn backlog(&self, _: u64) {}
    pub(crate) fn appended(&self) {}
    pub(crate) fn rejected(&self) {}
    pub(crate) fn flushed(&self, _: u64, _: Duration) {}
    pub(crate) fn flush_failed(&self) {}
    pub(crate) fn redelivered(&self) {}
}

/// The start of something timed: nothing read, since nothing is recorded.
pub(crate) struct Timer;

impl Timer {
    pub(crate) fn start() -> Self {
        Timer
    }
}

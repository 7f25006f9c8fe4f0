//! Metrics without the `metrics` feature: the names of `metrics.rs`, doing
//! nothing and holding nothing, so that the flows report what they do
//! without a `#[cfg]` and without cost when nobody collects it.

use std::time::Duration;

use crate::function::Function;
use crate::stats::Outcome;
use crate::BreakerState;

/// One function's handles: none.
#[derive(Debug)]
pub(crate) struct FunctionMetrics;

impl Function {
    pub(crate) fn metric_outcome(&'static self, _: Outcome) {}
    pub(crate) fn metric_load(&'static self, _: Duration, _: bool) {}
    pub(crate) fn metric_lock_wait(&'static self, _: Timer) {}
    pub(crate) fn metric_refresh(&'static self, _: bool) {}
    pub(crate) fn metric_timeout(&'static self) {}
    pub(crate) fn metric_oversized(&'static self) {}
    pub(crate) fn metric_corrupt(&'static self) {}
}

/// A call in flight: not counted.
pub(crate) struct InFlight;

impl InFlight {
    pub(crate) fn enter(_: &'static Function) -> Self {
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

//! Metrics through the [`metrics`] facade (the `metrics` feature): counters,
//! histograms and gauges labelled by function, never by key.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `aside_calls_total` | counter | `function`, `outcome` (`hit`, `negative`, `stale`, `coalesced`, `miss`, `bypass`) |
//! | `aside_calls_in_flight` | gauge | `function` (calls past the in-process tier: a hit there is over at once) |
//! | `aside_load_duration_seconds` | histogram | `function` |
//! | `aside_load_errors_total` | counter | `function` |
//! | `aside_lock_wait_duration_seconds` | histogram | `function` |
//! | `aside_refreshes_total`, `aside_refresh_errors_total` | counter | `function` |
//! | `aside_corrupt_entries_total` | counter | `function` |
//! | `aside_load_timeouts_total` | counter | `function` (loads that gave up at `hard_timeout`) |
//! | `aside_oversized_total` | counter | `function` (values over `max_entry_size`, not cached) |
//! | `aside_backend_duration_seconds` | histogram | `op` (`fetch`, `store`, `lock`, ...) |
//! | `aside_backend_errors_total` | counter | `op` |
//! | `aside_short_circuited_total` | counter | |
//! | `aside_breaker_state` | gauge: 0 closed, 1 half-open, 2 open | |
//! | `aside_recovery_pending` | gauge | (invalidations waiting for the backend to answer again) |
//! | `aside_recovery_replayed_total` | counter | |
//! | `aside_recovery_overflows_total` | counter | (times they outgrew `max_pending` and became one clear) |
//!
//! A function's handles are registered at its first call, and a cache's at
//! its build: install the recorder (e.g. `metrics-exporter-prometheus`)
//! before either, as the `metrics` crate asks of every library.

use std::sync::{Once, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics::{Counter, Gauge, Histogram};

use crate::breaker::BreakerState;
use crate::clock::Instant;
use crate::counters::Outcome;

/// One function's handles.
#[derive(Debug)]
pub(crate) struct FunctionMetrics {
    calls: [Counter; Outcome::ALL.len()],
    in_flight: Gauge,
    load_duration: Histogram,
    load_errors: Counter,
    lock_wait: Histogram,
    refreshes: Counter,
    refresh_errors: Counter,
    corrupt: Counter,
    timeouts: Counter,
    oversized: Counter,
}

impl FunctionMetrics {
    fn new(function: &'static str) -> Self {
        describe();
        FunctionMetrics {
            calls: Outcome::ALL
                .map(|o| counter!("aside_calls_total", "function" => function, "outcome" => o.as_str())),
            in_flight: gauge!("aside_calls_in_flight", "function" => function),
            load_duration: histogram!("aside_load_duration_seconds", "function" => function),
            load_errors: counter!("aside_load_errors_total", "function" => function),
            lock_wait: histogram!("aside_lock_wait_duration_seconds", "function" => function),
            refreshes: counter!("aside_refreshes_total", "function" => function),
            refresh_errors: counter!("aside_refresh_errors_total", "function" => function),
            corrupt: counter!("aside_corrupt_entries_total", "function" => function),
            timeouts: counter!("aside_load_timeouts_total", "function" => function),
            oversized: counter!("aside_oversized_total", "function" => function),
        }
    }
}

impl FunctionMetrics {
    /// The handles kept in `cell`, registered at the first use.
    pub(crate) fn of<'a>(cell: &'a OnceLock<FunctionMetrics>, function: &'static str) -> &'a FunctionMetrics {
        cell.get_or_init(|| FunctionMetrics::new(function))
    }

    pub(crate) fn outcome(&self, outcome: Outcome) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.calls[index].increment(1);
    }

    pub(crate) fn load(&self, took: Duration, ok: bool) {
        self.load_duration.record(took);
        if !ok {
            self.load_errors.increment(1);
        }
    }

    pub(crate) fn lock_wait(&self, waited: Timer) {
        self.lock_wait.record(waited.elapsed());
    }

    pub(crate) fn refresh(&self, failed: bool) {
        if failed {
            self.refresh_errors.increment(1);
        } else {
            self.refreshes.increment(1);
        }
    }

    pub(crate) fn timeout(&self) {
        self.timeouts.increment(1);
    }

    pub(crate) fn oversized(&self) {
        self.oversized.increment(1);
    }

    pub(crate) fn corrupt(&self) {
        self.corrupt.increment(1);
    }
}

/// A call in flight, counted in its function's gauge until dropped.
pub(crate) struct InFlight(&'static FunctionMetrics);

impl InFlight {
    pub(crate) fn enter(metrics: &'static FunctionMetrics) -> Self {
        metrics.in_flight.increment(1.0);
        InFlight(metrics)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.decrement(1.0);
    }
}

/// The backend operations a cache times (`Inner::call`'s names).
const OPS: [&str; 9] = [
    "fetch",
    "store",
    "tokens",
    "lock",
    "unlock",
    "renew",
    "invalidate",
    "invalidate_tags",
    "clear",
];

/// A cache's handles, registered when it is built.
#[derive(Debug)]
pub(crate) struct CacheMetrics {
    /// Per operation of `OPS`: its round trips' durations and errors.
    ops: [(Histogram, Counter); OPS.len()],
    short_circuited: Counter,
    breaker: Gauge,
    pending: Gauge,
    replayed: Counter,
    overflows: Counter,
}

impl CacheMetrics {
    pub(crate) fn new() -> Self {
        describe();
        CacheMetrics {
            ops: OPS.map(|op| {
                (
                    histogram!("aside_backend_duration_seconds", "op" => op),
                    counter!("aside_backend_errors_total", "op" => op),
                )
            }),
            short_circuited: counter!("aside_short_circuited_total"),
            breaker: gauge!("aside_breaker_state"),
            pending: gauge!("aside_recovery_pending"),
            replayed: counter!("aside_recovery_replayed_total"),
            overflows: counter!("aside_recovery_overflows_total"),
        }
    }

    /// The invalidations pending now, and replayed so far.
    pub(crate) fn pending(&self, pending: usize, replayed: u64) {
        self.pending.set(pending as f64);
        self.replayed.absolute(replayed);
    }

    pub(crate) fn overflowed(&self) {
        self.overflows.increment(1);
    }

    pub(crate) fn short_circuited(&self) {
        self.short_circuited.increment(1);
    }

    pub(crate) fn breaker(&self, state: BreakerState) {
        self.breaker.set(match state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        });
    }

    /// One backend round trip, `op`, timed by `timer`, failed or not; the
    /// breaker's state after it, as `breaker` reads it. An operation of
    /// `OPS` uses the handles registered at build (registering by name
    /// allocates the label on every call); another is registered by name.
    pub(crate) fn backend(
        &self,
        op: &'static str,
        timer: Timer,
        failed: bool,
        breaker: impl FnOnce() -> BreakerState,
    ) {
        let record = |duration: &Histogram, errors: &Counter| {
            duration.record(timer.elapsed());
            if failed {
                errors.increment(1);
            }
        };
        match OPS.iter().position(|known| *known == op) {
            Some(i) => record(&self.ops[i].0, &self.ops[i].1),
            None => record(
                &histogram!("aside_backend_duration_seconds", "op" => op),
                &counter!("aside_backend_errors_total", "op" => op),
            ),
        }
        self.breaker(breaker());
    }
}

/// Describes every metric once, for the exporters' help texts.
fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_counter!("aside_calls_total", "Calls of a cached function, by outcome.");
        describe_gauge!(
            "aside_calls_in_flight",
            "Calls of a cached function running now, past the in-process tier."
        );
        describe_histogram!(
            "aside_load_duration_seconds",
            Unit::Seconds,
            "Time the function's body took as a loader (misses and refreshes)."
        );
        describe_counter!(
            "aside_load_errors_total",
            "Loads that returned an error or panicked."
        );
        describe_histogram!(
            "aside_lock_wait_duration_seconds",
            Unit::Seconds,
            "Time a caller waited for another process's stampede lock."
        );
        describe_counter!("aside_refreshes_total", "Refreshes of a value due for one.");
        describe_counter!("aside_refresh_errors_total", "Refreshes whose load failed.");
        describe_counter!(
            "aside_corrupt_entries_total",
            "Stored entries that did not decode: read as misses."
        );
        describe_counter!(
            "aside_load_timeouts_total",
            "Loads that gave up at the function's hard_timeout."
        );
        describe_counter!(
            "aside_oversized_total",
            "Loaded values larger than max_entry_size: returned, not cached."
        );
        describe_histogram!(
            "aside_backend_duration_seconds",
            Unit::Seconds,
            "Time of one round trip to the cache backend."
        );
        describe_counter!(
            "aside_backend_errors_total",
            "Backend round trips that failed or timed out."
        );
        describe_counter!(
            "aside_short_circuited_total",
            "Backend calls skipped because the breaker was open."
        );
        describe_gauge!(
            "aside_recovery_pending",
            "Invalidations that met a failing backend, waiting to be replayed."
        );
        describe_counter!(
            "aside_recovery_replayed_total",
            "Invalidations replayed once the backend answered again."
        );
        describe_counter!(
            "aside_recovery_overflows_total",
            "Times the pending invalidations outgrew max_pending and became one clear."
        );
        describe_gauge!(
            "aside_breaker_state",
            "The circuit breaker: 0 closed, 1 half-open, 2 open."
        );
        describe_gauge!(
            "aside_write_behind_backlog",
            "Changes not yet flushed in a write-behind log, when last seen."
        );
        describe_counter!(
            "aside_write_behind_appends_total",
            "Changes logged by this process's writers."
        );
        describe_counter!(
            "aside_write_behind_rejected_total",
            "Writes refused because the log's backlog was full."
        );
        describe_counter!(
            "aside_write_behind_flushed_total",
            "Changes flushed by this process's flushers, before coalescing."
        );
        describe_counter!(
            "aside_write_behind_flush_errors_total",
            "Flush attempts that failed (each is retried)."
        );
        describe_counter!(
            "aside_write_behind_redelivered_total",
            "Batches delivered again: after a failure, or taken over from a dead flusher."
        );
        describe_histogram!(
            "aside_write_behind_lag_seconds",
            Unit::Seconds,
            "How long a batch's oldest change waited, from its write to its flush's success."
        );
    });
}

/// A write-behind log's handles, by its name.
#[derive(Debug)]
pub(crate) struct LogMetrics {
    backlog: Gauge,
    appends: Counter,
    rejected: Counter,
    flushed: Counter,
    flush_errors: Counter,
    redelivered: Counter,
    lag: Histogram,
}

impl LogMetrics {
    pub(crate) fn new(log: &str) -> Self {
        describe();
        let log = log.to_owned();
        LogMetrics {
            backlog: gauge!("aside_write_behind_backlog", "log" => log.clone()),
            appends: counter!("aside_write_behind_appends_total", "log" => log.clone()),
            rejected: counter!("aside_write_behind_rejected_total", "log" => log.clone()),
            flushed: counter!("aside_write_behind_flushed_total", "log" => log.clone()),
            flush_errors: counter!("aside_write_behind_flush_errors_total", "log" => log.clone()),
            redelivered: counter!("aside_write_behind_redelivered_total", "log" => log.clone()),
            lag: histogram!("aside_write_behind_lag_seconds", "log" => log),
        }
    }

    pub(crate) fn backlog(&self, length: u64) {
        self.backlog.set(length as f64);
    }

    pub(crate) fn appended(&self) {
        self.appends.increment(1);
    }

    pub(crate) fn rejected(&self) {
        self.rejected.increment(1);
    }

    /// A batch of `changes` flushed, the oldest `lag` old.
    pub(crate) fn flushed(&self, changes: u64, lag: Duration) {
        self.flushed.increment(changes);
        self.lag.record(lag);
    }

    pub(crate) fn flush_failed(&self) {
        self.flush_errors.increment(1);
    }

    pub(crate) fn redelivered(&self) {
        self.redelivered.increment(1);
    }
}

/// The start of something timed: a backend round trip, a lock wait.
pub(crate) struct Timer(Instant);

impl Timer {
    pub(crate) fn start() -> Self {
        Timer(Instant::now())
    }

    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

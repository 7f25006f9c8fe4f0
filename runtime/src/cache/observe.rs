//! What a call tells the outside: a cache's totals, its function's
//! statistics, a `tracing` span per call, and (with the `metrics` feature)
//! metrics labelled by function.
//!
//! Spans are at `DEBUG` level (`aside=debug` in a filter): a cached call is
//! often a hit of well under a microsecond, and an `INFO` span on each would
//! cost more than the hit. Without a subscriber that wants them, a span is
//! one comparison.

use tracing::field::Empty;
use tracing::Span;

use super::Cache;
use crate::backend::EntryKeys;
use crate::clock::Instant;
use crate::counters::{Counters, Outcome};
use crate::metrics::Timer;
use crate::policy::Policy;

/// What kind of call a span covers; its name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CallKind {
    Lookup,
    Put,
}

impl Cache {
    /// The span of one call of `policy`'s function at `key` (recorded only
    /// if the cache was built with [`trace_keys`](crate::CacheBuilder::trace_keys)).
    pub(super) fn call_span(&self, kind: CallKind, key: &str, policy: &Policy) -> Span {
        let function = policy.function_name().unwrap_or("");
        let span = match kind {
            CallKind::Lookup => tracing::debug_span!(
                "aside.get_or_load",
                function,
                outcome = Empty,
                tier = Empty,
                load_ms = Empty,
                key = Empty,
            ),
            CallKind::Put => tracing::debug_span!("aside.put", function, load_ms = Empty, key = Empty),
        };
        if self.inner.settings.trace_keys && !span.is_disabled() {
            span.record("key", key);
        }
        span
    }

    /// Counts one lookup's outcome: in the cache's totals, its function's,
    /// and the current span (the call's).
    pub(super) fn count(&self, policy: &Policy, outcome: Outcome) {
        self.count_as(policy, outcome, false);
    }

    /// [`count`](Self::count); `l1` for a fresh hit the in-process tier
    /// answered, which the cache counts as an `l1_hits` alone.
    fn count_as(&self, policy: &Policy, outcome: Outcome, l1: bool) {
        if l1 {
            self.inner.counters.count_in_process(outcome);
        } else {
            self.inner.counters.outcomes.count(outcome);
        }
        #[cfg(feature = "testing")]
        crate::testing::outcome(outcome);
        if let Some(function) = policy.named() {
            function.outcome(outcome);
        }
        // The call's span is at `DEBUG`: below that, there is none to find.
        if tracing::level_enabled!(tracing::Level::DEBUG) {
            Span::current().record("outcome", outcome.as_str());
            tracing::debug!(outcome = outcome.as_str(), "aside: lookup");
        }
    }

    /// A stored entry did not decode (or held another type).
    pub(super) fn count_corrupt(&self, policy: &Policy) {
        Counters::incr(&self.inner.counters.corrupt);
        if let Some(function) = policy.named() {
            function.corrupt();
        }
    }

    /// A refresh of a due value (or a forced one) begins.
    pub(super) fn count_refresh(&self, policy: &Policy) {
        Counters::incr(&self.inner.counters.refreshes);
        if let Some(function) = policy.named() {
            function.refreshed();
        }
    }

    /// The loader `observed` started ran, and succeeded or not.
    pub(super) fn loaded(&self, policy: &Policy, observed: &Observed, ok: bool) {
        let Some((started, _)) = &observed.load else {
            return;
        };
        let took = started.elapsed();
        if let Some(function) = policy.named() {
            function.loaded(took, ok);
        }
        #[cfg(feature = "testing")]
        if let Some(call) = &observed.recorded {
            call.loaded(ok);
        }
        if !observed.call.is_disabled() {
            observed.call.record("load_ms", took.as_secs_f64() * 1e3);
        }
    }
}

/// A call in flight: counted in its function's gauge (with the `metrics`
/// feature) until dropped.
pub(crate) struct InFlight {
    _guard: Option<crate::metrics::InFlight>,
}

impl InFlight {
    /// Not a call: a load on a task of its own.
    fn none() -> Self {
        InFlight { _guard: None }
    }

    pub(super) fn enter(policy: &Policy) -> Self {
        InFlight {
            _guard: policy
                .named()
                .map(|function| crate::metrics::InFlight::enter(function.metrics())),
        }
    }
}

/// A wait for another process's stampede lock, from its start until
/// dropped: its function's lock-wait histogram (with the `metrics` feature).
pub(crate) struct LockWait {
    started: Option<(Timer, &'static crate::Function)>,
}

impl LockWait {
    pub(super) fn none() -> Self {
        LockWait { started: None }
    }

    pub(super) fn start(policy: &Policy) -> Self {
        LockWait {
            started: policy.named().map(|function| (Timer::start(), function)),
        }
    }
}

impl Drop for LockWait {
    fn drop(&mut self) {
        if let Some((started, function)) = self.started.take() {
            function.metrics().lock_wait(started);
        }
    }
}

/// What a lookup keeps for the outside, as one value (the generic lookup
/// holds it across its awaits; one value is less code than several): the
/// call's span, its place in the in-flight gauge, and its load's start and
/// span once it loads.
pub(crate) struct Observed {
    pub(super) call: Span,
    load: Option<(Instant, Span)>,
    _in_flight: InFlight,
    /// In a test, where the call's load is recorded.
    #[cfg(feature = "testing")]
    recorded: Option<std::sync::Arc<crate::testing::Call>>,
}

impl Observed {
    pub(super) fn new(call: Span, policy: &Policy) -> Self {
        Observed {
            call,
            load: None,
            _in_flight: InFlight::enter(policy),
            #[cfg(feature = "testing")]
            recorded: crate::testing::polled(),
        }
    }

    /// What a load that runs on a task of its own keeps, started by the
    /// call `caller`: a span of its own, a child of the caller's.
    pub(super) fn detached(caller: &Observed) -> Self {
        Observed {
            call: tracing::debug_span!(parent: &caller.call, "aside.background"),
            load: None,
            _in_flight: InFlight::none(),
            #[cfg(feature = "testing")]
            recorded: caller.recorded.clone(),
        }
    }

    /// The loader starts: its span, a child of the call's.
    pub(super) fn start_load(&mut self) -> &Span {
        let span = tracing::debug_span!(parent: &self.call, "aside.load");
        &self.load.insert((Instant::now(), span)).1
    }
}

impl Cache {
    /// What records this cache's operations, in a test.
    #[cfg(feature = "testing")]
    pub(super) fn recorder(&self) -> Option<&crate::testing::Recorder> {
        self.inner.settings.recorder.as_ref()
    }

    /// Records `event`, if this cache is recorded.
    #[cfg(feature = "testing")]
    pub(super) fn record(&self, event: impl FnOnce() -> crate::testing::Event) {
        if let Some(recorder) = self.recorder() {
            recorder.push(event());
        }
    }

    /// A policy asks for the in-process tier (`l1 = "30s"`) of a cache
    /// that has none: said once per cache, since it does nothing.
    #[cold]
    pub(super) fn l1_without_tier(&self, policy: &Policy) {
        if !self
            .inner
            .warned_l1
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let function = policy.function_name().unwrap_or("a policy");
            tracing::warn!(
                function,
                "aside: `l1` asks for the in-process tier, but this cache has none: it does nothing (build the cache with CacheBuilder::l1 to have one); said once"
            );
        }
    }

    /// The in-process tier, the only store, holds a value of another type.
    pub(super) fn other_type_in_process(&self, key: &str, policy: &Policy, expected: &'static str) {
        self.count_corrupt(policy);
        if !Self::explain_corrupt(policy, expected, key) {
            tracing::warn!(
                key,
                expected,
                "aside: cached value of another type, treating it as a miss"
            );
        }
    }

    /// Logs who else writes `key` with another type, if a function does:
    /// whether it did.
    pub(super) fn explain_corrupt(policy: &Policy, expected: &'static str, key: &str) -> bool {
        policy
            .named()
            .is_some_and(|reader| crate::collision::explain_corrupt(reader, expected, key))
    }

    /// A refresh failed; the current value stands in if `fallback`.
    pub(super) fn refresh_failed(&self, keys: &EntryKeys, policy: &Policy, fallback: bool) {
        Counters::incr(&self.inner.counters.refresh_errors);
        if let Some(function) = policy.named() {
            function.refresh_failed();
        }
        if fallback {
            let key = keys.entry();
            tracing::warn!(key, "aside: refresh failed, keeping the current value");
        }
    }

    /// Counts a hit: of a cached `None` (`negative`), past its fresh time
    /// (`stale`), where it was `answered`.
    pub(super) fn count_hit(&self, policy: &Policy, negative: bool, stale: bool, answered: Answered) {
        let outcome = match (stale, negative) {
            (true, negative) => {
                if negative {
                    Counters::incr(&self.inner.counters.outcomes.negative_hits);
                }
                Outcome::Stale
            }
            (false, true) => Outcome::Negative,
            (false, false) => Outcome::Hit,
        };
        self.count_as(policy, outcome, answered == Answered::InProcessAlone);
        if self.inner.two_tiers() {
            let tier = if answered == Answered::Backend {
                "backend"
            } else {
                "in_process"
            };
            tracing::Span::current().record("tier", tier);
        }
    }

    /// Counts the lookup as `outcome`, unless it was counted already.
    pub(super) fn count_once(&self, policy: &Policy, outcome: Outcome, uncounted: &mut bool) {
        if std::mem::take(uncounted) {
            self.count(policy, outcome);
        }
    }
}

/// Where a hit was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answered {
    /// By the backend, or by a value standing by for a failed load.
    Backend,
    /// By the in-process tier, with a refresh due.
    InProcess,
    /// By the in-process tier alone: fresh, nothing due. The cache counts
    /// it in `l1_hits` only (see `Counters::count_in_process`).
    InProcessAlone,
}

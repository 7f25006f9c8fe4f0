//! A circuit breaker in front of the backend: after enough consecutive
//! failures it stops asking a failing backend for a cool-down, so that calls
//! go straight to their loaders instead of each waiting out a timeout.
//!
//! ```text
//! closed --(threshold consecutive failures)--> open --(cool-down over)--> half-open
//!   ^                                           ^                           |
//!   +------------------(probe succeeds)---------+---(probe fails)-----------+
//! ```
//!
//! In half-open, one call (the probe) goes to the backend; the others are
//! short-circuited until it answers, or, if the probe never answers (its
//! caller was cancelled), until another cool-down has passed and a new probe
//! goes. Each transition is logged once.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Instant;

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go to the backend.
    Closed,
    /// Calls skip the backend until the cool-down is over.
    Open,
    /// One probe call is testing the backend.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

/// The breaker; `threshold == 0` disables it.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// Whether `state` is closed with no failure counted: then a call, and
    /// its success, take no lock. Cleared (under the lock) by the first
    /// failure, set again by the success that closes the breaker.
    healthy: AtomicBool,
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
    /// What the breaker guards, for its log lines: empty for the whole
    /// backend, a node's address for one of a Redis Cluster's.
    node: String,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self::for_node(threshold, cooldown, String::new())
    }

    /// A breaker for one node of a backend that keeps one per node.
    pub(crate) fn for_node(threshold: u32, cooldown: Duration, node: String) -> Self {
        Breaker {
            healthy: AtomicBool::new(true),
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold,
            cooldown,
            node,
        }
    }

    /// Whether a call may go to the backend now.
    pub(crate) fn allow(&self) -> bool {
        if self.healthy.load(Relaxed) {
            return true;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                *state = State::HalfOpen { probe_since: now };
                tracing::info!(node = %self.node, "aside: cache backend circuit half-open, probing");
                true
            }
            // A probe that never answered: send another.
            State::HalfOpen { probe_since } if now >= probe_since + self.cooldown => {
                *state = State::HalfOpen { probe_since: now };
                true
            }
            State::Open { .. } | State::HalfOpen { .. } => false,
        }
    }

    /// Records a call that reached the backend and succeeded.
    pub(crate) fn success(&self) {
        if self.healthy.load(Relaxed) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!(node = %self.node, "aside: cache backend answered, circuit closed");
        }
        *state = State::Closed { failures: 0 };
        self.healthy.store(true, Relaxed);
    }

    /// Records a call that reached the backend and failed.
    pub(crate) fn failure(&self) {
        if self.threshold == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.healthy.store(false, Relaxed);
        let open = match *state {
            State::Closed { failures } if failures + 1 >= self.threshold => true,
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen { .. } => true,
            State::Open { .. } => false,
        };
        if open {
            *state = State::Open {
                until: Instant::now() + self.cooldown,
            };
            let cooldown = self.cooldown;
            tracing::warn!(
                ?cooldown,
                node = %self.node,
                "aside: cache backend failing, circuit open: calling loaders directly"
            );
        }
    }

    /// Opens the breaker now, for a backend known to be down (unless the
    /// breaker is off).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn trip(&self) {
        if self.threshold == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.healthy.store(false, Relaxed);
        *state = State::Open {
            until: Instant::now() + self.cooldown,
        };
        let cooldown = self.cooldown;
        tracing::warn!(?cooldown, node = %self.node, "aside: cache backend down, circuit open: calling loaders directly");
    }

    pub(crate) fn state(&self) -> BreakerState {
        match *self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_probe_at_a_time() {
        let breaker = Breaker::new(1, Duration::from_secs(3600));
        *breaker.state.lock().unwrap() = State::Open {
            until: Instant::now(),
        };
        breaker.healthy.store(false, Relaxed);
        assert!(breaker.allow());
        assert!(!breaker.allow(), "the probe is in flight");
    }

    #[test]
    fn opens_after_threshold_and_closes_after_a_good_probe() {
        let breaker = Breaker::new(3, Duration::ZERO);
        breaker.failure();
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.success(); // a success resets the count
        breaker.failure();
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.allow(), "cool-down over: one probe");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Open, "a failed probe reopens");
        assert!(breaker.allow());
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_probe_that_never_answers_is_replaced_after_a_cooldown() {
        let breaker = Breaker::new(1, Duration::ZERO);
        breaker.failure();
        assert!(breaker.allow(), "the probe");
        // Its caller is cancelled: neither success nor failure is recorded.
        assert!(breaker.allow(), "with a zero cool-down, another probe at once");
        let slow = Breaker::new(1, Duration::from_secs(3600));
        slow.failure();
        assert!(!slow.allow());
    }

    #[test]
    fn a_tripped_breaker_is_open_until_its_cooldown_is_over() {
        let breaker = Breaker::new(5, Duration::from_secs(3600));
        breaker.trip();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.allow());
        let off = Breaker::new(0, Duration::from_secs(3600));
        off.trip();
        assert!(off.allow(), "a breaker that is off stays off");
    }

    #[test]
    fn stays_open_during_the_cooldown() {
        let breaker = Breaker::new(1, Duration::from_secs(3600));
        breaker.failure();
        assert!(!breaker.allow());
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let breaker = Breaker::new(0, Duration::ZERO);
        for _ in 0..100 {
            breaker.failure();
        }
        assert!(breaker.allow());
    }
}

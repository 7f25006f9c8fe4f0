//! In-process coalescing: concurrent misses on one key run one load.
//!
//! The first caller to miss on a key becomes the *leader* and holds a
//! [`Leader`] guard; later callers become *waiters* on a watch channel. The
//! leader publishes the loaded value's payload (encoded bytes, so waiters
//! need no `Clone` bound on the value and decode their own copy) before it
//! writes to the backend, and its guard removes the flight when dropped. That
//! drop is also what makes the scheme cancellation- and panic-safe:
//!
//! - leader finished with a value: waiters get [`Landed::Value`];
//! - leader's loader returned an error or panicked: waiters get
//!   [`Landed::Failed`]; they fall back on a value kept for fail-safe, or
//!   join again, one of them retrying (the error type need not be `Clone`,
//!   so each caller gets its own result);
//! - leader was cancelled (its future dropped): waiters see the channel close
//!   ([`Landed::Abandoned`]) and join again; one of them takes over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use crate::tags::Stamp;

/// What a waiter learns about the load it waited for.
#[derive(Debug, Clone)]
pub(crate) enum Landed {
    /// The encoded payload of the loaded value, and the tokens the load
    /// ran under (`None` if the backend could not be read).
    Value(Bytes, Option<Stamp>),
    /// The loader returned an error or panicked.
    Failed,
    /// The loader succeeded, but its value could not be shared (it does not
    /// encode): each waiter loads its own.
    Unshared,
    /// The leader was cancelled before it finished.
    Abandoned,
    /// The leader found the value stored by another process: read it.
    Stored,
}

#[derive(Debug, Clone)]
enum State {
    Loading,
    Done(Landed),
}

/// The flights in progress, by full key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Arc<Map>,
}

/// The flights' receivers, by key: shared with each leader, which may
/// outlive the caller that started it (a load on a task of its own).
type Map = Mutex<HashMap<String, watch::Receiver<State>>>;

/// The caller's role in the load of one key.
pub(crate) enum Join {
    Leader(Leader),
    Waiter(Waiter),
}

impl Flights {
    /// Joins the flight for `key`, starting one if there is none.
    pub(crate) fn join(&self, key: &str) -> Join {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = map.get(key) {
            return Join::Waiter(Waiter(rx.clone()));
        }
        let (tx, rx) = watch::channel(State::Loading);
        map.insert(key.to_owned(), rx);
        Join::Leader(Leader {
            map: self.map.clone(),
            key: key.to_owned(),
            tx,
        })
    }

    /// Leads a new flight for `key`, unless one is in progress.
    pub(crate) fn try_lead(&self, key: &str) -> Option<Leader> {
        match self.join(key) {
            Join::Leader(leader) => Some(leader),
            Join::Waiter(_) => None,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

/// The guard of the caller that runs the load. Dropping it ends the flight.
pub(crate) struct Leader {
    map: Arc<Map>,
    key: String,
    tx: watch::Sender<State>,
}

impl Leader {
    /// Tells the waiters how the load ended. The flight stays joinable (and
    /// new joiners get this result at once) until the guard is dropped.
    pub(crate) fn land(&self, landed: Landed) {
        self.tx.send_replace(State::Done(landed));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&self.key);
    }
}

/// A caller waiting for another caller's load.
pub(crate) struct Waiter(watch::Receiver<State>);

impl Waiter {
    pub(crate) async fn wait(mut self) -> Landed {
        match self.0.wait_for(|s| matches!(s, State::Done(_))).await {
            Ok(state) => match &*state {
                State::Done(landed) => landed.clone(),
                State::Loading => unreachable!("wait_for returned a state it was not waiting for"),
            },
            Err(_closed) => Landed::Abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(join: Join) -> Leader {
        match join {
            Join::Leader(l) => l,
            Join::Waiter(_) => panic!("expected to lead"),
        }
    }

    fn waiter(join: Join) -> Waiter {
        match join {
            Join::Waiter(w) => w,
            Join::Leader(_) => panic!("expected to wait"),
        }
    }

    #[tokio::test]
    async fn waiters_get_the_landed_value() {
        let flights = Flights::default();
        let lead = leader(flights.join("k"));
        let w = waiter(flights.join("k"));
        lead.land(Landed::Value(Bytes::from_static(b"1"), None));
        // A caller joining after the value landed gets it at once.
        let late = waiter(flights.join("k"));
        drop(lead);
        assert_eq!(flights.len(), 0);
        for w in [w, late] {
            assert!(matches!(w.wait().await, Landed::Value(b, None) if &b[..] == b"1"));
        }
    }

    #[tokio::test]
    async fn cancelled_leader_abandons_and_frees_the_key() {
        let flights = Flights::default();
        let lead = leader(flights.join("k"));
        let w = waiter(flights.join("k"));
        drop(lead);
        assert!(matches!(w.wait().await, Landed::Abandoned));
        let _next = leader(flights.join("k"));
    }

    #[tokio::test]
    async fn failed_leader_fails_its_waiters() {
        let flights = Flights::default();
        let lead = leader(flights.join("k"));
        let w = waiter(flights.join("k"));
        lead.land(Landed::Failed);
        drop(lead);
        assert!(matches!(w.wait().await, Landed::Failed));
        assert_eq!(flights.len(), 0);
    }
}

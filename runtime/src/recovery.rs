//! Invalidations that met a failing backend, kept until it answers again.
//!
//! An invalidation that fails or times out may or may not have landed (a
//! hung Redis applies what sat in its socket buffer once it wakes). Either
//! way the data it stands for has changed, so it is kept here and replayed
//! as soon as the backend answers: every invalidation is idempotent, so
//! replaying one that did land costs nothing but a miss.
//!
//! The queue is coalesced by storage name (one item per key, tag or the
//! whole namespace) and bounded: a full queue becomes one clear of the
//! namespace, coarser but still correct. Each item carries the sequence
//! number of its latest enqueue, so that a replay that began before an item
//! was queued again does not remove it.
//!
//! While an item is pending, this process treats every read it covers as a
//! miss (see `Cache::covered`): the writer never reads what it invalidated.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::backend::EntryKeys;

/// What a pending item does when replayed.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Invalidate one key: delete its entry, give its guard a new token.
    Key(EntryKeys),
    /// Invalidate a tag (its storage name is the item's).
    Tag,
    /// Delete every entry and token of the namespace.
    Clear,
}

/// One pending item: its storage name, the sequence number of its latest
/// enqueue, and what it does.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) name: String,
    pub(crate) seq: u64,
    pub(crate) op: Op,
}

/// The name a [`Op::Clear`] is kept under: no entry or tag name is empty.
const CLEAR: &str = "";

/// A cache's pending invalidations.
#[derive(Debug)]
pub(crate) struct Recovery {
    queue: Mutex<Queue>,
    /// How many items are pending: read on every backend read, without the lock.
    pending: AtomicUsize,
    capacity: usize,
    /// Woken when the queue empties (by the replay, once it has reported
    /// the count).
    pub(crate) drained: Notify,
    /// Woken when the backend answered something: the replay need not wait
    /// out its back-off.
    pub(crate) answered: Notify,
    /// Whether a replay task is running.
    pub(crate) replaying: AtomicBool,
    pub(crate) replayed: AtomicU64,
    pub(crate) overflows: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    items: HashMap<String, (u64, Op)>,
    next_seq: u64,
}

/// What [`Recovery::queue`] did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Kept (coalesced with a pending item of the same name, if any).
    Kept,
    /// The queue was full: everything pending became one clear.
    Overflowed,
    /// Replay is off (a capacity of 0): nothing is kept.
    Off,
}

impl Recovery {
    /// A queue of at most `capacity` items; 0 keeps none.
    pub(crate) fn new(capacity: usize) -> Self {
        Recovery {
            queue: Mutex::default(),
            pending: AtomicUsize::new(0),
            capacity,
            drained: Notify::new(),
            answered: Notify::new(),
            replaying: AtomicBool::new(false),
            replayed: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        }
    }

    fn queue_lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many items are pending.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(SeqCst)
    }

    /// Keeps an invalidation of `keys` for replay.
    pub(crate) fn queue_key(&self, keys: &EntryKeys) -> Queued {
        let name = keys.entry().to_owned();
        self.queue([(name, Op::Key(keys.untagged()))])
    }

    /// Keeps an invalidation of each tag (by storage name) for replay.
    pub(crate) fn queue_tags(&self, names: &[String]) -> Queued {
        self.queue(names.iter().map(|name| (name.clone(), Op::Tag)))
    }

    /// Keeps a clear of the namespace for replay: it covers, and replaces,
    /// everything pending.
    pub(crate) fn queue_clear(&self) -> Queued {
        self.queue([(CLEAR.to_owned(), Op::Clear)])
    }

    fn queue(&self, items: impl IntoIterator<Item = (String, Op)>) -> Queued {
        if self.capacity == 0 {
            return Queued::Off;
        }
        let mut queue = self.queue_lock();
        let mut outcome = Queued::Kept;
        for (name, op) in items {
            let seq = queue.next_seq;
            queue.next_seq += 1;
            // A clear covers what is pending. What comes after a pending
            // clear is kept beside it: the clear may have landed already.
            if matches!(op, Op::Clear) {
                queue.items.clear();
            }
            let full = queue.items.len() >= self.capacity && !queue.items.contains_key(&name);
            if full {
                queue.items.clear();
                queue.items.insert(CLEAR.to_owned(), (seq, Op::Clear));
                self.overflows.fetch_add(1, SeqCst);
                outcome = Queued::Overflowed;
                continue;
            }
            queue.items.insert(name, (seq, op));
        }
        self.pending.store(queue.items.len(), SeqCst);
        outcome
    }

    /// The pending items, oldest first.
    pub(crate) fn items(&self) -> Vec<Item> {
        if self.pending() == 0 {
            return Vec::new();
        }
        let queue = self.queue_lock();
        let mut items: Vec<Item> = queue
            .items
            .iter()
            .map(|(name, (seq, op))| Item {
                name: name.clone(),
                seq: *seq,
                op: op.clone(),
            })
            .collect();
        items.sort_unstable_by_key(|item| item.seq);
        items
    }

    /// Whether a pending item covers a read of `keys`: an invalidation of
    /// its key, of one of its tags, or a clear. One atomic load when
    /// nothing is pending.
    pub(crate) fn covers(&self, keys: &EntryKeys) -> bool {
        if self.pending() == 0 {
            return false;
        }
        let queue = self.queue_lock();
        queue.items.contains_key(CLEAR)
            || queue.items.contains_key(keys.entry())
            || keys.tags().any(|tag| queue.items.contains_key(tag))
    }

    /// `item` was replayed: it is removed, unless it was queued again since
    /// the replay began. Returns whether the queue is now empty.
    pub(crate) fn landed(&self, item: &Item) -> bool {
        self.remove(item, true)
    }

    /// Gives up `item` for good (the backend refuses it whatever happens).
    pub(crate) fn dropped(&self, item: &Item) {
        self.remove(item, false);
    }

    /// Removes `item` unless it was queued again since it was read;
    /// counts it as `replayed`. Returns whether the queue is now empty.
    fn remove(&self, item: &Item, replayed: bool) -> bool {
        let mut queue = self.queue_lock();
        if queue
            .items
            .get(&item.name)
            .is_some_and(|(seq, _)| *seq == item.seq)
        {
            queue.items.remove(&item.name);
            if replayed {
                self.replayed.fetch_add(1, SeqCst);
            }
        }
        self.pending.store(queue.items.len(), SeqCst);
        queue.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(key: &str, tags: &[&str]) -> EntryKeys {
        EntryKeys::new("ns", key, tags.iter().map(|t| format!("ns#tag:{t}")))
    }

    #[test]
    fn items_are_coalesced_by_name_and_replayed_oldest_first() {
        let recovery = Recovery::new(10);
        assert_eq!(recovery.queue_key(&keys("a", &[])), Queued::Kept);
        assert_eq!(recovery.queue_tags(&["ns#tag:t".into()]), Queued::Kept);
        assert_eq!(recovery.queue_key(&keys("a", &[])), Queued::Kept);
        assert_eq!(recovery.pending(), 2);
        let names: Vec<String> = recovery.items().into_iter().map(|i| i.name).collect();
        assert_eq!(
            names,
            ["ns#tag:t", "ns:{a}"],
            "the key's latest enqueue is the newer"
        );
    }

    #[test]
    fn a_read_is_covered_by_its_key_its_tags_or_a_clear() {
        let recovery = Recovery::new(10);
        assert!(!recovery.covers(&keys("a", &["t"])));
        recovery.queue_key(&keys("a", &[]));
        assert!(recovery.covers(&keys("a", &["t"])));
        assert!(!recovery.covers(&keys("b", &["u"])));
        recovery.queue_tags(&["ns#tag:u".into()]);
        assert!(recovery.covers(&keys("b", &["u"])));
        assert!(!recovery.covers(&keys("b", &["v"])));
        recovery.queue_clear();
        assert!(recovery.covers(&keys("b", &["v"])));
        assert_eq!(recovery.pending(), 1, "a clear replaces what it covers");
    }

    #[test]
    fn an_item_queued_again_during_its_replay_stays() {
        let recovery = Recovery::new(10);
        recovery.queue_key(&keys("a", &[]));
        let replaying = recovery.items();
        recovery.queue_key(&keys("a", &[]));
        assert!(!recovery.landed(&replaying[0]), "queued again since: not removed");
        assert_eq!(recovery.pending(), 1);
        let again = recovery.items();
        assert!(recovery.landed(&again[0]));
        assert_eq!(recovery.pending(), 0);
        assert_eq!(recovery.replayed.load(SeqCst), 1);
    }

    #[test]
    fn a_full_queue_becomes_one_clear() {
        let recovery = Recovery::new(2);
        recovery.queue_key(&keys("a", &[]));
        recovery.queue_key(&keys("b", &[]));
        assert_eq!(
            recovery.queue_key(&keys("b", &[])),
            Queued::Kept,
            "coalesced: not more"
        );
        assert_eq!(recovery.queue_key(&keys("c", &[])), Queued::Overflowed);
        let items = recovery.items();
        assert!(
            matches!(items.as_slice(), [Item { op: Op::Clear, .. }]),
            "{items:?}"
        );
        assert!(recovery.covers(&keys("z", &[])));
        assert_eq!(recovery.overflows.load(SeqCst), 1);
        // What comes after the clear is kept beside it.
        recovery.queue_key(&keys("d", &[]));
        assert_eq!(recovery.pending(), 2);
    }

    #[test]
    fn a_capacity_of_zero_keeps_nothing() {
        let recovery = Recovery::new(0);
        assert_eq!(recovery.queue_key(&keys("a", &[])), Queued::Off);
        assert_eq!(recovery.pending(), 0);
        assert!(!recovery.covers(&keys("a", &[])));
    }
}

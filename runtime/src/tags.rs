//! Invalidation that cannot lose a race with a slow loader.
//!
//! Two kinds of random tokens, stored next to the entries:
//!
//! - a **tag token** per tag (`{ns}#tag:{tag}`). An entry records the
//!   tokens of its tags as they were *before* its loader ran; a read fetches
//!   the entry and the current tokens in the same round trip, and any
//!   difference is a miss. Invalidating a tag deletes its token (in memory:
//!   gives it a new one), and the next load makes a fresh one: O(1),
//!   however many entries carry it, and nothing to walk. A token lives as
//!   long as the longest-lived entry that recorded it: a load whose entry
//!   could outlive it gives it twice its entry's lifetime, so tags per user
//!   or per order do not grow Redis forever, and its TTL changes (a change
//!   client tracking pushes) once per that lifetime at most.
//! - a **guard token** per recently loaded or invalidated key
//!   (`{ns}#guard:{key}`, expiring after the invalidation window).
//!   Invalidating a key deletes the entry and sets a new guard; a load reads
//!   (or creates) the guard before it runs and stores its value only if the
//!   guard is unchanged, atomically. So a slow loader that read old data
//!   cannot write it back after the invalidation.
//!
//! Callers coalesced onto another caller's load compare that load's [`Stamp`]
//! with the one their own read saw, so a load that began before an
//! invalidation is never handed to a caller whose read began after it.
//!
//! Loads and writes always run under real tokens (missing ones are created
//! first), so a token that goes missing (evicted, expired) never equals a
//! recorded one: losing tokens costs misses and refused stores, never stale
//! reads. In particular a load that outlives its guard (the invalidation
//! window) is returned but not stored.
//!
//! ## On a Redis Cluster: reads that are not atomic
//!
//! An entry and its guard share a slot, so the guarded store and the key's
//! invalidation stay atomic. A tag's token lives in a slot of its own, so a
//! read of an entry and its tags' tokens is several reads, one per slot,
//! answered at slightly different moments. That can cost a miss, never serve
//! a stale value:
//!
//! - A tag invalidation that completed before the read began (every node
//!   acknowledged its new token) is seen by the read of that token, whenever
//!   it lands: the token read returns the new token, which no entry stored
//!   before it can carry.
//! - Tokens are random and never reused, so a token read is either one an
//!   entry recorded or not; there is no "older but equal" value.
//! - An entry records its tags' tokens as they were *before* its load began.
//!   If the entry is read after a reload that followed an invalidation, but
//!   the token before that invalidation landed, the two do not match: a
//!   miss. If the entry is read before and the token after, they do not
//!   match either: a miss. A match needs the token that the entry's load
//!   began under to be current when the token is read, and then no
//!   invalidation completed between the load's start and the read, so the
//!   value is as fresh as a single atomic read would have allowed.
//!
//! The token scripts of a miss are split the same way: the guard with the
//! entry (and, under the stampede lock, with the lock), each tag's token on
//! its own, sent together. The load runs only once every part has
//! answered, so every token it records was read before it began.
//! `tests/suite/invalidation.rs` runs its barrier races (an invalidation landing
//! while a load runs) on a real cluster too.

/// The tokens a load ran under: the key's guard and its tags' tokens, read
/// before the loader started (what [`Backend::tokens`](crate::backend::Backend::tokens)
/// and [`Backend::lock`](crate::backend::Backend::lock) return).
pub(crate) type Stamp = crate::backend::Tokens;

impl Stamp {
    /// Whether an entry recorded with `recorded` tag tokens is still valid
    /// given the `current` ones (all present and equal).
    pub(crate) fn tags_match(recorded: impl ExactSizeIterator<Item = u64>, current: &[Option<u64>]) -> bool {
        recorded.len() == current.len() && recorded.zip(current).all(|(r, c)| Some(r) == *c)
    }
}

#[cfg(test)]
mod tests {
    use super::Stamp;

    #[test]
    fn tags_match_only_when_all_tokens_are_present_and_equal() {
        assert!(Stamp::tags_match([].into_iter(), &[]));
        assert!(Stamp::tags_match([1, 2].into_iter(), &[Some(1), Some(2)]));
        assert!(!Stamp::tags_match([1, 2].into_iter(), &[Some(1), Some(3)]));
        assert!(!Stamp::tags_match([1, 2].into_iter(), &[Some(1), None]));
        assert!(!Stamp::tags_match([1].into_iter(), &[Some(1), Some(2)]));
    }
}

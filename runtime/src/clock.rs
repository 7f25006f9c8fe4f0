//! Time as aside reads it: tokio's clock.
//!
//! Outside a test, tokio's clock is the system's monotonic clock. In a test
//! with a paused clock (`#[tokio::test(start_paused = true)]`, tokio's
//! `test-util` feature), it moves only as the test sleeps or advances it, and
//! so do TTLs, freshness, locks and load times of the in-memory backend: such
//! a test runs through an hour of expiries in microseconds, and no scheduler
//! delay can make an entry expire early. (Redis keeps its own clock for
//! expiry, so a Redis-backed test runs in real time.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use tokio::time::Instant;

/// Milliseconds since the Unix epoch: the wall clock that envelopes share
/// across processes, moved by however far tokio's clock is ahead of (or
/// behind) the real one, which is zero unless a test paused it.
pub(crate) fn now_ms() -> u64 {
    // tokio's clock first: unpaused, the real clock read after it is never
    // behind it, and the nanoseconds between the two reads round to 0 ms.
    let tokio = Instant::now().into_std();
    let real = std::time::Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms);
    match tokio.checked_duration_since(real) {
        Some(ahead) => wall.saturating_add(duration_ms(ahead)),
        None => wall.saturating_sub(duration_ms(real - tokio)),
    }
}

/// Whole milliseconds in `d`, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `now + d`, or `None` (never) where that is past what an `Instant` holds.
pub(crate) fn deadline(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wall_clock_when_not_paused() {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let ours = now_ms();
        assert!(ours.abs_diff(duration_ms(wall)) <= 1, "{ours} vs {wall:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn moves_with_a_paused_tokio_clock() {
        let before = now_ms();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let after = now_ms();
        // Exactly the hour: the real time that passed meanwhile cancels out
        // (up to each reading rounding down to a millisecond).
        let moved = after - before;
        assert!((3_599_999..=3_600_001).contains(&moved), "{moved}");
    }
}

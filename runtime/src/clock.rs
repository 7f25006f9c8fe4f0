//! Time as aside reads it: tokio's clock.
//!
//! Outside a test, tokio's clock is the system's monotonic clock. In a test
//! with a paused clock (`#[tokio::test(start_paused = true)]`, tokio's
//! `test-util` feature), it moves only as the test sleeps or advances it, and
//! so do TTLs, freshness, locks and load times of the in-memory backend: such
//! a test runs through an hour of expiries in microseconds, and no scheduler
//! delay can make an entry expire early. (Redis keeps its own clock for
//! expiry, so a Redis-backed test runs in real time.)

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use tokio::time::Instant;

/// Milliseconds since the Unix epoch: the wall clock that envelopes share
/// across processes, moved by however far tokio's clock is ahead of (or
/// behind) the real one, which is zero unless a test paused it.
///
/// One clock read: tokio's clock plus an offset, `wall - monotonic`, which
/// only a step of the wall clock changes. The offset is measured again once
/// a second (two more reads), so a step is picked up within a second.
pub(crate) fn now_ms() -> u64 {
    let anchor = *ANCHOR.get_or_init(std::time::Instant::now);
    let since = signed_ms(Instant::now().into_std(), anchor);
    if since.saturating_sub(MEASURED_AT.load(Relaxed)) >= REMEASURE_MS {
        OFFSET.store(offset(anchor), Relaxed);
        MEASURED_AT.store(since, Relaxed);
    }
    u64::try_from(OFFSET.load(Relaxed).saturating_add(since)).unwrap_or(0)
}

/// How often the wall clock's offset is measured again, in ms of tokio's clock.
const REMEASURE_MS: i64 = 1000;
/// What "ms since" counts from: the first reading of the real clock.
static ANCHOR: OnceLock<std::time::Instant> = OnceLock::new();
/// Wall-clock ms at the anchor, as of the last measurement.
static OFFSET: AtomicI64 = AtomicI64::new(0);
/// When that was, in ms since the anchor; far in the past until measured.
static MEASURED_AT: AtomicI64 = AtomicI64::new(i64::MIN);

/// The wall clock's ms at `anchor`: now's, less the real time since. It is
/// the same whatever tokio's clock says, paused or not.
fn offset(anchor: std::time::Instant) -> i64 {
    let real = std::time::Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms);
    i64::try_from(wall)
        .unwrap_or(i64::MAX)
        .saturating_sub(signed_ms(real, anchor))
}

/// `a - b` in whole ms, negative when `a` is earlier.
fn signed_ms(a: std::time::Instant, b: std::time::Instant) -> i64 {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match a.checked_duration_since(b) {
        Some(ahead) => ms(ahead),
        None => -ms(b - a),
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

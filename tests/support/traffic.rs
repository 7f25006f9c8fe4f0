//! 32 callers over 64 keys, for the fault tests: the loader never fails and
//! always returns `id * 3`, so an error or another value could only come
//! from the cache.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aside::{Cache, Policy};

use super::bounded;

pub const CALLERS: u64 = 32;
pub const KEYS: u64 = 64;
/// What the loader costs: a fast query.
pub const LOAD_TIME: Duration = Duration::from_millis(2);

/// What the callers saw. The loader never fails, so an error could only come
/// from the cache; a caller that panics fails the test in [`Traffic::stop`].
#[derive(Debug, Default)]
pub struct Seen {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub wrong: AtomicU64,
    /// The slowest call, in µs.
    pub worst_us: AtomicU64,
}

impl Seen {
    pub fn worst(&self) -> Duration {
        Duration::from_micros(self.worst_us.load(SeqCst))
    }

    pub fn figures(&self, cache: &Cache) -> String {
        let stats = cache.stats();
        format!(
            "{} calls, {} errors, {} wrong values, worst call {:?}; hits {}, misses {}, \
             backend errors {}, short-circuited {}",
            self.calls.load(SeqCst),
            self.errors.load(SeqCst),
            self.wrong.load(SeqCst),
            self.worst(),
            stats.hits,
            stats.misses,
            stats.errors,
            stats.short_circuited,
        )
    }
}

/// 32 callers calling `cache` in a loop over 64 keys until dropped.
pub struct Traffic {
    pub seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(cache: &Cache) -> Traffic {
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..CALLERS)
            .map(|caller| {
                let (cache, seen, stop) = (cache.clone(), seen.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = caller;
                    while !stop.load(SeqCst) {
                        let id = n * 7 % KEYS;
                        n += 1;
                        let started = Instant::now();
                        let got: Result<u64, std::io::Error> = cache
                            .get_or_load(
                                &format!("item:{id}"),
                                &Policy::new().ttl(Duration::from_secs(60)),
                                || async move {
                                    tokio::time::sleep(LOAD_TIME).await;
                                    Ok(id * 3)
                                },
                            )
                            .await;
                        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        seen.worst_us.fetch_max(took, SeqCst);
                        seen.calls.fetch_add(1, SeqCst);
                        match got {
                            Ok(value) if value == id * 3 => {}
                            Ok(_) => _ = seen.wrong.fetch_add(1, SeqCst),
                            Err(_) => _ = seen.errors.fetch_add(1, SeqCst),
                        }
                        // A hit from the in-process tier completes without
                        // waiting on anything: let the other tasks (and the
                        // test's timers) run, as a caller doing I/O would.
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        Traffic { seen, stop, tasks }
    }

    /// Lets the callers run for `time`, checking that they make progress.
    pub async fn run_for(&self, time: Duration) {
        let before = self.seen.calls.load(SeqCst);
        tokio::time::sleep(time).await;
        assert!(
            self.seen.calls.load(SeqCst) > before,
            "the callers made no progress in {time:?}"
        );
    }

    pub async fn stop(self) -> Arc<Seen> {
        self.stop.store(true, SeqCst);
        for task in self.tasks {
            bounded("a caller to stop", Duration::from_secs(10), task)
                .await
                .expect("a caller panicked");
        }
        self.seen
    }
}

//! The flusher: reads a log as one consumer of its group, hands batches to
//! the flush function, and acknowledges them once it succeeds.

use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::batch::{coalesce, Batch};
use super::log::{Log, Raw, MAX_BATCH};
use crate::clock::Instant;
use crate::{BackendError, Error};

/// How a [`Flusher`] batches, retries and takes over; made by
/// [`WriteBehind::flusher`](crate::WriteBehind::flusher).
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), aside::Error> {
/// use std::time::Duration;
///
/// let cache = aside::Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
/// let views = aside::WriteBehind::<u64, ()>::new(&cache, "page_views")?;
/// let flusher = views
///     .flusher(|batch: aside::Batch<u64, ()>| async move {
///         // UPDATE products SET views = views + delta ... (see WriteBehind)
///         Ok::<_, std::io::Error>(())
///     })
///     .batch_size(1_000)
///     .flush_every(Duration::from_secs(5))
///     .start()?;
/// // ... and when the service shuts down:
/// flusher.stop().await;
/// # Ok(()) }
/// ```
#[must_use = "a flusher runs only once started"]
pub struct FlusherBuilder<K, V, F> {
    log: Arc<Log>,
    flush: F,
    consumer: Option<String>,
    batch_size: usize,
    flush_every: Duration,
    claim_after: Duration,
    poll: Duration,
    backoff: (Duration, Duration),
    types: PhantomData<fn(K, V)>,
}

impl<K, V, F> std::fmt::Debug for FlusherBuilder<K, V, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlusherBuilder")
            .field("log", &self.log.name)
            .field("consumer", &self.consumer)
            .field("batch_size", &self.batch_size)
            .field("flush_every", &self.flush_every)
            .field("claim_after", &self.claim_after)
            .finish_non_exhaustive()
    }
}

impl<K, V, F, Fut, E> FlusherBuilder<K, V, F>
where
    K: DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: DeserializeOwned + Clone + Send + Sync + 'static,
    F: Fn(Batch<K, V>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    pub(crate) fn new(log: Arc<Log>, flush: F) -> Self {
        FlusherBuilder {
            log,
            flush,
            consumer: None,
            batch_size: 500,
            flush_every: Duration::from_secs(1),
            claim_after: Duration::from_secs(30),
            poll: Duration::from_millis(50),
            backoff: (Duration::from_millis(100), Duration::from_secs(10)),
            types: PhantomData,
        }
    }

    /// This flusher's name in the log's consumer group. Default: one made
    /// from the process id and a random number. A flusher restarted under
    /// its old name flushes the batch it held at once, instead of waiting
    /// for another to take it over after [`claim_after`](Self::claim_after).
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = Some(name.into());
        self
    }

    /// Flush once this many changes are read (before coalescing); at most
    /// 4,096. Default 500.
    pub fn batch_size(mut self, changes: usize) -> Self {
        self.batch_size = changes;
        self
    }

    /// Flush what was read once its first change has waited this long,
    /// even if the batch is not full. Default 1 s.
    pub fn flush_every(mut self, every: Duration) -> Self {
        self.flush_every = every;
        self
    }

    /// Take over the batch of a flusher that has not been heard of for this
    /// long (it died, or lost Redis). A live flusher renews its batch every
    /// quarter of it, even during a long flush. Default 30 s.
    pub fn claim_after(mut self, idle: Duration) -> Self {
        self.claim_after = idle;
        self
    }

    /// How often an idle flusher looks for new changes. Default 50 ms.
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// The pauses between attempts of a failing flush: from `first`,
    /// doubling up to `max`. Default 100 ms to 10 s.
    pub fn retry_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max);
        self
    }

    /// Starts the flusher on a task of its own.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a batch size of 0 or above 4,096, or a zero
    /// duration.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(self) -> Result<Flusher, Error> {
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return Err(Error::Config(format!(
                "a flusher's batch_size must be between 1 and {MAX_BATCH}"
            )));
        }
        let durations = [self.flush_every, self.claim_after, self.poll, self.backoff.0];
        if durations.iter().any(Duration::is_zero) || self.backoff.1 < self.backoff.0 {
            return Err(Error::Config(
                "a flusher's durations must be greater than zero, and its longest backoff no shorter than its first"
                    .into(),
            ));
        }
        let consumer = self
            .consumer
            .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), rand::random::<u32>()));
        let stop = Arc::new(Stop::default());
        let runner = Runner {
            log: self.log,
            flush: Arc::new(self.flush),
            consumer: consumer.clone(),
            batch_size: self.batch_size,
            flush_every: self.flush_every,
            claim_after: self.claim_after,
            poll: self.poll,
            backoff: self.backoff,
            stop: stop.clone(),
            types: PhantomData,
        };
        let task = tokio::spawn(runner.run());
        Ok(Flusher {
            consumer,
            stop,
            task: Some(task),
        })
    }
}

#[derive(Debug, Default)]
struct Stop {
    asked: AtomicBool,
    notify: Notify,
}

/// A running flusher (see [`WriteBehind`](crate::WriteBehind)).
///
/// [`stop`](Self::stop) ends it cleanly: it flushes the batch it holds,
/// then returns. Dropped, it stops at once, as if its process died: the
/// batch it held is flushed by another flusher after `claim_after`, or by
/// this consumer's next start.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), aside::Error> {
/// let cache = aside::Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
/// let log = aside::WriteBehind::<u64, u32>::new(&cache, "prices")?;
/// let flusher = log
///     .flusher(|batch: aside::Batch<u64, u32>| async move { Ok::<_, std::io::Error>(()) })
///     .consumer("worker-1")
///     .start()?;
/// // ... until the service shuts down:
/// flusher.stop().await; // what it holds is flushed first
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a flusher is stopped when dropped"]
pub struct Flusher {
    consumer: String,
    stop: Arc<Stop>,
    task: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Its name in the log's consumer group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Flushes the batch it holds (once: if that fails, the batch is left
    /// for another flusher), then stops.
    pub async fn stop(mut self) {
        self.stop.asked.store(true, Relaxed);
        self.stop.notify.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Aborts a task when dropped: a flush attempt dies with its flusher.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Runner<K, V, F> {
    log: Arc<Log>,
    flush: Arc<F>,
    consumer: String,
    batch_size: usize,
    flush_every: Duration,
    claim_after: Duration,
    poll: Duration,
    backoff: (Duration, Duration),
    stop: Arc<Stop>,
    types: PhantomData<fn(K, V)>,
}

/// Whether a batch was read fresh or is delivered again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    New,
    Again,
}

impl<K, V, F, Fut, E> Runner<K, V, F>
where
    K: DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: DeserializeOwned + Clone + Send + Sync + 'static,
    F: Fn(Batch<K, V>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    /// How often a held batch is renewed: well within `claim_after`.
    fn renew_every(&self) -> Duration {
        self.claim_after / 4
    }

    fn stopping(&self) -> bool {
        self.stop.asked.load(Relaxed)
    }

    async fn run(self) {
        let mut pause = self.backoff.0;
        // Redis may be down at start: retry until it answers.
        while let Err(error) = self.start_up().await {
            tracing::warn!(log = %self.log.name, %error, "aside: a write-behind flusher cannot reach its log; retrying");
            if self.rest(pause).await {
                return;
            }
            pause = (pause * 2).min(self.backoff.1);
        }
        let mut held: Vec<Raw> = Vec::new();
        let mut first_read = Instant::now();
        let mut last_claim = Instant::now();
        let mut renewed = Instant::now();
        pause = self.backoff.0;
        loop {
            let stopping = self.stopping();
            if stopping && held.is_empty() {
                return;
            }
            if held.is_empty() && !stopping && last_claim.elapsed() >= self.claim_after / 4 {
                last_claim = Instant::now();
                match self.take_over().await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(log = %self.log.name, %error, "aside: a write-behind flusher could not look for abandoned batches");
                    }
                }
            }
            let mut read_all = false;
            if !stopping && held.len() < self.batch_size {
                let want = self.batch_size - held.len();
                match self.log.read(&self.consumer, want, ">").await {
                    Ok(read) => {
                        read_all = read.len() < want;
                        if held.is_empty() {
                            first_read = Instant::now();
                        }
                        held.extend(read);
                        pause = self.backoff.0;
                    }
                    Err(error) => {
                        tracing::warn!(log = %self.log.name, %error, "aside: a write-behind flusher could not read its log");
                        let _ = self.log.create_group().await;
                        if self.rest(pause).await && held.is_empty() {
                            return;
                        }
                        pause = (pause * 2).min(self.backoff.1);
                        continue;
                    }
                }
            }
            // A batch that fills slowly is renewed as a flush is: nobody
            // takes it over while this flusher lives.
            if !held.is_empty() && renewed.elapsed() >= self.renew_every() {
                renewed = Instant::now();
                let _ = self.log.mine(&self.consumer).await;
            }
            let due = held.len() >= self.batch_size || first_read.elapsed() >= self.flush_every || stopping;
            if !held.is_empty() && due {
                let batch = std::mem::take(&mut held);
                self.flush_held(batch, Delivery::New).await;
                continue;
            }
            if read_all {
                let wait = if held.is_empty() {
                    self.poll
                } else {
                    let due_in = self.flush_every.saturating_sub(first_read.elapsed());
                    self.poll.min(due_in).min(self.renew_every())
                };
                self.rest(wait).await;
            }
        }
    }

    /// Creates the group, then flushes what this consumer held before a
    /// restart, as the batch it was.
    async fn start_up(&self) -> Result<(), BackendError> {
        self.log.create_group().await?;
        let pending = self.log.read(&self.consumer, MAX_BATCH, "0").await?;
        if !pending.is_empty() {
            self.flush_held(pending, Delivery::Again).await;
        }
        Ok(())
    }

    /// Takes over the batch of a consumer idle for `claim_after`, and
    /// flushes it alone. Whether there was one.
    async fn take_over(&self) -> Result<bool, BackendError> {
        let Some(idle) = self.log.idle_consumer(&self.consumer, self.claim_after).await? else {
            return Ok(false);
        };
        let claimed = self.log.claim(&idle, &self.consumer, self.claim_after).await?;
        tracing::info!(
            log = %self.log.name, from = %idle, changes = claimed.len(),
            "aside: a write-behind flusher took over the batch of an idle one"
        );
        let took = !claimed.is_empty();
        if took {
            self.flush_held(claimed, Delivery::Again).await;
        }
        let _ = self.log.forget(&idle).await;
        Ok(took)
    }

    /// Sleeps for `pause`, or until asked to stop; whether asked.
    async fn rest(&self, pause: Duration) -> bool {
        if !self.stopping() {
            let _ = tokio::time::timeout(pause, self.stop.notify.notified()).await;
        }
        self.stopping()
    }

    /// Flushes `held` (this consumer's pending entries) until the flush
    /// function succeeds, then acknowledges them. Asked to stop, it makes
    /// one more attempt and leaves the batch pending if that fails.
    async fn flush_held(&self, mut held: Vec<Raw>, delivery: Delivery) {
        let mut pause = self.backoff.0;
        let mut redelivered = delivery == Delivery::Again;
        loop {
            // What this consumer still holds: another may have taken the
            // batch over while Redis or this process was slow.
            match self.log.mine(&self.consumer).await {
                Ok(mine) => held.retain(|raw| mine.contains(&raw.id)),
                Err(error) => {
                    tracing::warn!(log = %self.log.name, %error, "aside: a write-behind flusher could not renew its batch");
                    // A Redis restarted without persistence has lost the
                    // group, and the batch with it: with the group made
                    // again, this consumer holds nothing.
                    let _ = self.log.create_group().await;
                    if self.rest(pause).await {
                        return;
                    }
                    pause = (pause * 2).min(self.backoff.1);
                    continue;
                }
            }
            if held.is_empty() {
                return;
            }
            let (batch, undecodable) = coalesce::<K, V>(&held, redelivered);
            let counters = &self.log.counters;
            if undecodable > 0 {
                counters.undecodable.fetch_add(undecodable as u64, Relaxed);
                tracing::error!(
                    log = %self.log.name, undecodable,
                    "aside: write-behind changes that do not decode as this flusher's types are dropped"
                );
            }
            let flushed = match batch {
                Some(batch) => self.attempt(batch).await,
                None => Ok(()),
            };
            match flushed {
                Ok(()) => {
                    self.acknowledge(&held).await;
                    return;
                }
                Err(error) => {
                    counters.flush_failed();
                    tracing::warn!(
                        log = %self.log.name, %error, retry_in = ?pause,
                        "aside: a write-behind flush failed; it is retried"
                    );
                    redelivered = true;
                    // Rest no longer than a renewal's interval: the batch
                    // is renewed as the next attempt begins.
                    if self.rest(pause.min(self.renew_every())).await {
                        // One more attempt on the way out.
                        if let (Some(batch), _) = coalesce::<K, V>(&held, true) {
                            if self.attempt(batch).await.is_ok() {
                                self.acknowledge(&held).await;
                            }
                        }
                        return;
                    }
                    pause = (pause * 2).min(self.backoff.1);
                }
            }
        }
    }

    /// One run of the flush function, on a task of its own (a panic is a
    /// failure), renewing the batch every quarter of `claim_after` meanwhile.
    async fn attempt(&self, batch: Batch<K, V>) -> Result<(), String> {
        let counters = &self.log.counters;
        if batch.redelivered {
            counters.redelivered();
        }
        let (changes, oldest) = (batch.changes, batch.id);
        let span = tracing::info_span!(
            "aside.flush", log = %self.log.name, batch = %batch.id, changes, redelivered = batch.redelivered
        );
        let flush = self.flush.clone();
        let mut task = AbortOnDrop(tokio::spawn(tracing::Instrument::instrument(
            async move { flush(batch).await },
            span,
        )));
        let mut renew = tokio::time::interval(self.renew_every());
        renew.tick().await;
        let result = loop {
            tokio::select! {
                joined = &mut task.0 => break joined,
                _ = renew.tick() => {
                    let _ = self.log.mine(&self.consumer).await;
                }
            }
        };
        match result {
            Ok(Ok(())) => {
                // Redis's clock wrote the version; this process's reads it
                // now. On one machine, or clocks in sync, that is the lag.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                let lag = Duration::from_millis(now.saturating_sub(oldest.ms()));
                counters.flushed(changes as u64, lag);
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(panicked) => Err(format!("the flush function panicked: {panicked}")),
        }
    }

    /// Acknowledges a flushed batch, retrying while Redis fails: until then
    /// the batch stays pending, and would be flushed again.
    async fn acknowledge(&self, held: &[Raw]) {
        let ids: Vec<String> = held.iter().map(|raw| raw.id.clone()).collect();
        let mut pause = self.backoff.0;
        while let Err(error) = self.log.ack(&ids).await {
            tracing::warn!(log = %self.log.name, %error, "aside: a flushed write-behind batch could not be acknowledged; retrying");
            let _ = self.log.create_group().await;
            if self.rest(pause).await {
                return;
            }
            pause = (pause * 2).min(self.backoff.1);
        }
    }
}

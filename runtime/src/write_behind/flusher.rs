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
use super::log::{Log, Raw, Renewal, MAX_BATCH};
use super::Invalidate;
use crate::cache::Cache;
use crate::clock::Instant;
use crate::error::{BackendError, Error};

/// How a [`Flusher`] batches, retries and takes over; made by
/// [`WriteBehind::flusher`](crate::write_behind::WriteBehind::flusher).
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), aside::Error> {
/// use std::time::Duration;
///
/// let cache = aside::Cache::builder().redis("redis://127.0.0.1:6379").build().await?;
/// let views = aside::write_behind::WriteBehind::<u64, ()>::new(&cache, "page_views")?;
/// let flusher = views
///     .flusher(|batch: aside::write_behind::Batch<u64, ()>| async move {
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
    /// The cache of the log's written values, and how to drop one.
    invalidate: Option<(Cache, Arc<Invalidate<K>>)>,
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
    pub(crate) fn new(log: Arc<Log>, flush: F, invalidate: Option<(Cache, Arc<Invalidate<K>>)>) -> Self {
        FlusherBuilder {
            log,
            flush,
            invalidate,
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
    /// from the process id and a random number. One flusher at a time runs
    /// under a name (it holds a lease on it, renewed with its batch): a
    /// second one waits until the first stops, or until the lease lapses,
    /// [`claim_after`](Self::claim_after) after the first died. It then
    /// flushes the batch the first held, if nobody took it over meanwhile.
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
    /// quarter of it, even during a long flush. At least 100 ms; default 30 s.
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
    /// doubling up to `max`, and never longer than a quarter of
    /// `claim_after` (the batch is renewed before each attempt). Default
    /// 100 ms to 10 s.
    pub fn retry_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max);
        self
    }

    /// Starts the flusher on a task of its own.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a batch size of 0 or above 4,096, a zero
    /// duration, or a `claim_after` under 100 ms.
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
        let durations = [self.flush_every, self.poll, self.backoff.0];
        if durations.iter().any(Duration::is_zero)
            || self.backoff.1 < self.backoff.0
            || self.claim_after < MIN_CLAIM_AFTER
        {
            return Err(Error::Config(format!(
                "a flusher's durations must be greater than zero, its longest backoff no shorter than its \
                 first, and its claim_after at least {MIN_CLAIM_AFTER:?}"
            )));
        }
        let consumer = self
            .consumer
            .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), rand::random::<u32>()));
        let stop = Arc::new(Stop::default());
        let runner = Runner {
            log: self.log,
            flush: Arc::new(self.flush),
            invalidate: self.invalidate,
            consumer: consumer.clone(),
            token: format!("{:016x}", rand::random::<u64>()),
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

/// The shortest `claim_after`: a quarter of it is the renewals' interval,
/// which a Redis round trip must fit in.
const MIN_CLAIM_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Stop {
    asked: AtomicBool,
    notify: Notify,
}

/// A running flusher (see [`WriteBehind`](crate::write_behind::WriteBehind)).
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
/// let log = aside::write_behind::WriteBehind::<u64, u32>::new(&cache, "prices")?;
/// let flusher = log
///     .flusher(|batch: aside::write_behind::Batch<u64, u32>| async move { Ok::<_, std::io::Error>(()) })
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

    /// Flushes the batch it holds (one attempt after the call: if that
    /// fails, the batch is left for another flusher), then stops. It waits
    /// for a flush function that is running to return.
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
    invalidate: Option<(Cache, Arc<Invalidate<K>>)>,
    consumer: String,
    /// This flusher's token on the consumer name's lease.
    token: String,
    batch_size: usize,
    flush_every: Duration,
    claim_after: Duration,
    poll: Duration,
    backoff: (Duration, Duration),
    stop: Arc<Stop>,
    types: PhantomData<fn(K, V)>,
}

/// How a batch's flush ended.
enum Flushed {
    /// Applied and acknowledged.
    Done,
    /// Another flusher took it over: it is theirs now.
    Taken,
    /// What this consumer holds in Redis is not the batch: read it again.
    Resync,
    /// Left pending: asked to stop, or the name's lease lost.
    Left,
}

impl<K, V, F, Fut, E> Runner<K, V, F>
where
    K: DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: DeserializeOwned + Clone + Send + Sync + 'static,
    F: Fn(Batch<K, V>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    /// How often a held batch (and the name's lease) is renewed: well
    /// within `claim_after`.
    fn renew_every(&self) -> Duration {
        self.claim_after / 4
    }

    fn stopping(&self) -> bool {
        self.stop.asked.load(Relaxed)
    }

    /// Sleeps for `pause`, or until asked to stop; whether asked.
    async fn rest(&self, pause: Duration) -> bool {
        if !self.stopping() {
            let _ = tokio::time::timeout(pause, self.stop.notify.notified()).await;
        }
        self.stopping()
    }

    fn warn(&self, error: &dyn std::fmt::Display, what: &str) {
        tracing::warn!(log = %self.log.name, consumer = %self.consumer, %error, "aside: a write-behind flusher {what}");
    }

    async fn run(self) {
        // The name's lease first: one flusher at a time under a name.
        let mut pause = self.backoff.0;
        loop {
            let _ = self.log.create_group().await;
            match self
                .log
                .lease(&self.consumer, &self.token, self.claim_after)
                .await
            {
                Ok(true) => break,
                Ok(false) => {
                    tracing::info!(
                        log = %self.log.name, consumer = %self.consumer,
                        "aside: another write-behind flusher runs under this name; waiting for it to stop"
                    );
                    pause = self.renew_every();
                }
                Err(error) => {
                    self.warn(&error, "cannot reach its log; retrying");
                    pause = (pause * 2).min(self.backoff.1);
                }
            }
            if self.rest(pause).await {
                return;
            }
        }
        self.serve().await;
    }

    /// Reads, batches and flushes until asked to stop (or the lease is lost).
    async fn serve(&self) {
        // What this consumer holds in Redis: `held`, when `known`. Unknown
        // at start (a batch held before a restart) and after any failed
        // command that may have delivered entries (a read, a claim).
        let (mut held, mut known, mut again) = (Vec::<Raw>::new(), false, true);
        let mut first_read = Instant::now();
        let mut last_claim: Option<Instant> = None;
        let mut renewed = Instant::now();
        let mut pause = self.backoff.0;
        loop {
            if !known {
                match self.log.read(&self.consumer, MAX_BATCH, "0").await {
                    Ok(pending) => {
                        (held, known, pause) = (pending, true, self.backoff.0);
                        first_read = Instant::now();
                    }
                    Err(error) => {
                        self.warn(&error, "could not read what it holds");
                        let _ = self.log.create_group().await;
                        if self.rest(pause).await {
                            return self.leave(false).await;
                        }
                        pause = (pause * 2).min(self.backoff.1);
                        continue;
                    }
                }
                if !held.is_empty() {
                    // Delivered before: flush it as it is, alone.
                    match self.flush(&held, again).await {
                        Flushed::Done | Flushed::Taken => held.clear(),
                        Flushed::Resync => (known, again) = (false, true),
                        Flushed::Left => return self.leave(!held.is_empty()).await,
                    }
                    continue;
                }
            }
            let stopping = self.stopping();
            if held.is_empty() {
                if stopping {
                    return self.leave(false).await;
                }
                again = false;
                if last_claim.is_none_or(|at| at.elapsed() >= self.renew_every()) {
                    last_claim = Some(Instant::now());
                    match self.take_over().await {
                        Ok(false) => {}
                        Ok(true) => {
                            // Flush it (read back below), then look again.
                            (known, again, last_claim) = (false, true, None);
                            continue;
                        }
                        Err(error) => {
                            self.warn(&error, "could not look for abandoned batches");
                            known = false;
                            continue;
                        }
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
                        self.warn(&error, "could not read its log");
                        known = false;
                        let _ = self.log.create_group().await;
                        if self.rest(pause).await && held.is_empty() {
                            return self.leave(false).await;
                        }
                        pause = (pause * 2).min(self.backoff.1);
                        continue;
                    }
                }
            }
            // The name's lease, and a batch that fills slowly, are renewed
            // as a flush's batch is: nobody takes them while this lives.
            if renewed.elapsed() >= self.renew_every() {
                renewed = Instant::now();
                if let Err(Renewal::Lost) = self.log.mine(&self.consumer, &self.token, self.claim_after).await
                {
                    return self.lost();
                }
            }
            let due = held.len() >= self.batch_size || first_read.elapsed() >= self.flush_every || stopping;
            if !held.is_empty() && due {
                match self.flush(&held, false).await {
                    Flushed::Done | Flushed::Taken => held.clear(),
                    Flushed::Resync => (known, again) = (false, true),
                    Flushed::Left => return self.leave(true).await,
                }
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

    /// Stops: gives the name's lease up, and the name itself if it holds
    /// nothing (`holding`: a batch is left pending, for another flusher or
    /// this name's next start).
    async fn leave(&self, holding: bool) {
        let _ = self.log.release(&self.consumer, &self.token).await;
        if !holding {
            let _ = self.log.forget(&self.consumer).await;
        }
    }

    /// Stops at once: another flusher holds the name now.
    fn lost(&self) {
        tracing::error!(
            log = %self.log.name, consumer = %self.consumer,
            "aside: another write-behind flusher took this one's consumer name (its lease lapsed); this one stops"
        );
    }

    /// Takes over the batch of a consumer idle for `claim_after`, if any;
    /// whether it did.
    async fn take_over(&self) -> Result<bool, BackendError> {
        for idle in self.log.idle_consumers(&self.consumer, self.claim_after).await? {
            let claimed = self.log.claim(&idle, &self.consumer, self.claim_after).await?;
            if claimed > 0 {
                tracing::info!(
                    log = %self.log.name, consumer = %self.consumer, from = %idle, changes = claimed,
                    "aside: a write-behind flusher took over the batch of an idle one"
                );
                let _ = self.log.forget(&idle).await;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Flushes `held`, this consumer's pending entries, until the flush
    /// function succeeds, then acknowledges them. Before each attempt it
    /// renews them and checks that they are still exactly what it holds.
    /// Asked to stop, it makes one more attempt, and leaves the batch
    /// pending if that fails.
    async fn flush(&self, held: &[Raw], mut again: bool) -> Flushed {
        let ids: Vec<&str> = held.iter().map(|raw| raw.id.as_str()).collect();
        let mut pause = self.backoff.0;
        let (mut attempted, mut counted_again) = (false, false);
        loop {
            let last = self.stopping();
            match self.log.mine(&self.consumer, &self.token, self.claim_after).await {
                Ok(mine) if mine.is_empty() => return Flushed::Taken,
                // The batch is the first MAX_BATCH pending entries, and only
                // those: one that arrived unseen would come back with it.
                Ok(mine) if holds(&mine, &ids) => {}
                Ok(_) => return Flushed::Resync,
                Err(Renewal::Lost) => {
                    self.lost();
                    return Flushed::Left;
                }
                Err(Renewal::Failed(error)) => {
                    self.warn(&error, "could not renew its batch");
                    // A Redis restarted without persistence has lost the
                    // group, and the batch with it: with the group made
                    // again, this consumer holds nothing.
                    let _ = self.log.create_group().await;
                    if last || self.rest(pause.min(self.renew_every())).await {
                        return Flushed::Left;
                    }
                    pause = (pause * 2).min(self.backoff.1);
                    continue;
                }
            }
            let (batch, undecodable) = coalesce::<K, V>(held, again);
            let counters = &self.log.counters;
            if undecodable > 0 && !attempted {
                counters.undecodable.fetch_add(undecodable as u64, Relaxed);
                tracing::error!(
                    log = %self.log.name, undecodable,
                    "aside: write-behind changes that do not decode as this flusher's types are dropped"
                );
            }
            if again && !counted_again {
                counters.redelivered();
                counted_again = true;
            }
            attempted = true;
            let written: Vec<K> = match (&batch, &self.invalidate) {
                (Some(batch), Some(_)) => batch.values.iter().map(|w| w.id.clone()).collect(),
                _ => Vec::new(),
            };
            let flushed = match batch {
                Some(batch) => self.attempt(batch).await,
                None => Ok(()),
            };
            match flushed {
                Ok(()) => {
                    // The database has the values now: a cached entry
                    // loaded from it before could be older.
                    if let Some((cache, invalidate)) = &self.invalidate {
                        futures_util::future::join_all(written.iter().map(|id| invalidate(cache, id))).await;
                    }
                    return self.acknowledge(&ids).await;
                }
                Err(error) => {
                    counters.flush_failed();
                    tracing::warn!(
                        log = %self.log.name, %error, retry_in = ?pause,
                        "aside: a write-behind flush failed; it is retried"
                    );
                    again = true;
                    // Rest no longer than a renewal's interval: the batch
                    // is renewed as the next attempt begins.
                    if last {
                        return Flushed::Left;
                    }
                    self.rest(pause.min(self.renew_every())).await;
                    pause = (pause * 2).min(self.backoff.1);
                }
            }
        }
    }

    /// One run of the flush function, on a task of its own (a panic is a
    /// failure), renewing the batch every quarter of `claim_after` meanwhile.
    async fn attempt(&self, batch: Batch<K, V>) -> Result<(), String> {
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
                    // A lost lease shows at the next check, before any
                    // acknowledgement.
                    let _ = self.log.mine(&self.consumer, &self.token, self.claim_after).await;
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
                self.log.counters.flushed(changes as u64, lag);
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(panicked) => Err(format!("the flush function panicked: {panicked}")),
        }
    }

    /// Acknowledges a flushed batch, retrying while Redis fails: until then
    /// the batch stays pending, and would be delivered again (and skipped
    /// by a flush function that records batch ids).
    async fn acknowledge(&self, ids: &[&str]) -> Flushed {
        let mut pause = self.backoff.0;
        while let Err(error) = self.log.ack(ids).await {
            self.warn(&error, "could not acknowledge a flushed batch; retrying");
            let _ = self.log.create_group().await;
            if self.rest(pause).await {
                return Flushed::Left;
            }
            pause = (pause * 2).min(self.backoff.1);
        }
        Flushed::Done
    }
}

/// Whether the pending ids `mine` (the first `MAX_BATCH + 1`, in order) are
/// the batch `ids`: all of them, or, for a full batch, its first ones.
fn holds(mine: &[String], ids: &[&str]) -> bool {
    let same = |n: usize| mine.len() >= n && mine.iter().zip(ids).all(|(a, b)| a == b);
    (mine.len() == ids.len() && same(ids.len())) || (ids.len() == MAX_BATCH && same(MAX_BATCH))
}

//! Coalesced reads: hits for different keys that wait on the one connection
//! at the same time go to Redis as one `MGET`.
//!
//! The first read goes out at once, as its own command: a caller alone never
//! waits for anyone. Reads that come while it is in flight queue up, and go
//! as one `MGET` as soon as it is answered; reads that come while that one
//! is in flight make the next, and so on, until nobody waits. Redis then
//! dispatches one command for a whole batch instead of one per key.
//!
//! A queued read is sent after it was asked for, so it sees every write that
//! completed before the call began: an invalidation is never read around.
//!
//! Owns the queue and who sends it; knows nothing of entries or tags (a read
//! is a list of names, and its answer their values, nil where none).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{bounded, Link};
use crate::error::BackendError;

/// The values of a read's names, in order: nil for a missing key (or one of
/// another type, which `MGET` reads as nil).
pub(super) type Values = Vec<Option<Vec<u8>>>;

/// One connection's read queue.
pub(super) struct Reads {
    queue: Mutex<Queue>,
    /// The runtime the connection was made on, which drives it: batches are
    /// sent there, not on whatever runtime the first read happened to end on
    /// (a `block_on` that returns would leave them unsent).
    runtime: Option<tokio::runtime::Handle>,
}

#[derive(Default)]
struct Queue {
    /// Since when a read has been in flight: a new read waits for the next
    /// batch, unless this is older than the operation timeout. A read that
    /// went first is answered within it; past it, its caller's future is
    /// parked unpolled (or the task sending batches is stuck), and a new
    /// read goes at once rather than wait for it.
    busy: Option<Instant>,
    /// The next batch's `MGET`, built as reads join it.
    next: Option<redis::Cmd>,
    /// Who waits for the next batch, in the order of its names.
    waiting: Vec<Waiter>,
}

struct Waiter {
    names: usize,
    reply: oneshot::Sender<Result<Values, BackendError>>,
}

/// What a read does now.
pub(super) enum Turn<'a, C: Link> {
    /// Nothing is in flight: send the read at once, and drop the ticket when
    /// it is answered (which sends whatever queued up behind it).
    Now(Ticket<'a, C>),
    /// Joined the next batch: its values come here.
    Queued(oneshot::Receiver<Result<Values, BackendError>>),
}

impl Reads {
    /// A queue for a connection made on the current runtime, if any.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Reads {
            queue: Mutex::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the reads of `names` on `conn`: goes first if nothing is in
    /// flight, else joins the next batch.
    pub(super) fn join<'a, 'n, C: Link>(
        self: &'a Arc<Self>,
        conn: &'a C,
        limit: Duration,
        names: impl Iterator<Item = &'n str>,
    ) -> Turn<'a, C> {
        let mut queue = self.queue();
        let now = Instant::now();
        if queue.busy.is_none_or(|since| now.duration_since(since) >= limit) {
            queue.busy = Some(now);
            return Turn::Now(Ticket {
                reads: self,
                conn,
                limit,
            });
        }
        let mget = queue.next.get_or_insert_with(|| redis::cmd("MGET"));
        let mut count = 0;
        for name in names {
            mget.arg(name);
            count += 1;
        }
        let (reply, answer) = oneshot::channel();
        queue.waiting.push(Waiter { names: count, reply });
        Turn::Queued(answer)
    }

    /// Sends what queued up while a read was in flight, on a task of its own
    /// (the caller that went first returns at once), or marks the connection
    /// idle when nobody waits.
    fn hand_on<C: Link>(self: &Arc<Self>, conn: &C, limit: Duration) {
        let mut queue = self.queue();
        if queue.waiting.is_empty() {
            queue.busy = None;
            return;
        }
        match self
            .runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        {
            Some(runtime) => {
                drop(queue);
                runtime.spawn(drain(self.clone(), conn.clone(), limit));
            }
            // Outside a runtime nothing can send them: they hear that
            // their read was dropped, and the connection is idle again.
            None => *queue = Queue::default(),
        }
    }

    /// The next batch, or `None` (and the connection idle) when nobody waits.
    fn take(&self) -> Option<(redis::Cmd, Vec<Waiter>)> {
        let mut queue = self.queue();
        if queue.waiting.is_empty() {
            queue.busy = None;
            return None;
        }
        queue.busy = Some(Instant::now());
        Some((queue.next.take()?, std::mem::take(&mut queue.waiting)))
    }
}

/// The read that went first. Dropped when it is answered (or abandoned),
/// it sends the reads that queued up behind it.
pub(super) struct Ticket<'a, C: Link> {
    reads: &'a Arc<Reads>,
    conn: &'a C,
    limit: Duration,
}

impl<C: Link> Drop for Ticket<'_, C> {
    fn drop(&mut self) {
        self.reads.hand_on(self.conn, self.limit);
    }
}

/// Sends batch after batch until nobody waits.
fn drain<C: Link>(reads: Arc<Reads>, mut conn: C, limit: Duration) -> impl Future<Output = ()> + Send {
    // Dropped before it is done (the runtime shutting down, even before its
    // first poll): the connection is idle again, and those still waiting
    // hear that their read was dropped.
    struct Abandon(Arc<Reads>, bool);
    impl Abandon {
        fn done(mut self) {
            self.1 = false;
        }
    }
    impl Drop for Abandon {
        fn drop(&mut self) {
            if self.1 {
                *self.0.queue() = Queue::default();
            }
        }
    }
    let abandon = Abandon(reads, true);
    async move {
        while let Some((mget, waiting)) = abandon.0.take() {
            // Those who gave up (timed out, cancelled) need no answer.
            if waiting.iter().all(|waiter| waiter.reply.is_closed()) {
                continue;
            }
            let answer = bounded(limit, mget.query_async::<Values>(&mut conn)).await;
            answer_each(waiting, answer);
        }
        abandon.done();
    }
}

/// Gives each waiter its names' values, or the batch's error.
fn answer_each(waiting: Vec<Waiter>, answer: Result<Values, BackendError>) {
    let expected: usize = waiting.iter().map(|waiter| waiter.names).sum();
    let answer = answer.and_then(|values| {
        if values.len() == expected {
            Ok(values)
        } else {
            Err(BackendError::Redis(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "MGET answered a different number of values",
            ))))
        }
    });
    match answer {
        Ok(values) => {
            let mut values = values.into_iter();
            for waiter in waiting {
                let _ = waiter
                    .reply
                    .send(Ok(values.by_ref().take(waiter.names).collect()));
            }
        }
        Err(error) => {
            for waiter in waiting {
                let _ = waiter.reply.send(Err(error.clone()));
            }
        }
    }
}

/// A queued read's answer: its values, or why there are none. Bounded by
/// `limit` from when it joined, as a read of its own would be: waiting
/// for the read in flight is part of its time.
pub(super) async fn queued(
    answer: oneshot::Receiver<Result<Values, BackendError>>,
    limit: Duration,
) -> Result<Values, BackendError> {
    match tokio::time::timeout(limit, answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_dropped)) => Err(BackendError::Redis(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "aside: a coalesced read was dropped before it was sent",
        )))),
        Err(_elapsed) => Err(BackendError::Timeout(limit)),
    }
}

//! Lock releases over pub/sub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_core::Stream;
use redis::aio::PubSubSink;
use tokio::sync::watch;

use super::bounded;
use crate::backend::LockWatch;
use crate::error::BackendError;

/// Lock releases, told over pub/sub: the store and unlock scripts publish on
/// the lock's name when they release it, and a waiter in this process
/// subscribes to that channel while it waits. One pub/sub connection,
/// opened at the first wait and again after it drops. Polling stays the
/// fallback: a release published while no subscription was active (or lost
/// with a connection) costs the waiter its next poll, no more.
///
/// On a cluster, a `PUBLISH` reaches every node, so the connection may be
/// to any of them: the first of the given nodes that answers.
#[derive(Clone)]
pub(super) struct Releases(Arc<ReleasesInner>);

struct ReleasesInner {
    /// Where to open the connection, in order of preference. None with a
    /// connection the program gave without its client: no pub/sub, waiters
    /// poll.
    clients: Vec<redis::Client>,
    op_timeout: Duration,
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    /// Per channel: the count of releases seen, and how many watch it.
    watched: Mutex<HashMap<String, (watch::Sender<u64>, usize)>>,
    /// The task that reads the pub/sub connection; ended with the backend,
    /// which closes the connection.
    reader: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for ReleasesInner {
    fn drop(&mut self) {
        let reader = self.reader.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(reader) = reader.take() {
            reader.abort();
        }
    }
}

impl Releases {
    pub(super) fn new(clients: Vec<redis::Client>, op_timeout: Duration) -> Self {
        Releases(Arc::new(ReleasesInner {
            clients,
            op_timeout,
            sink: tokio::sync::Mutex::new(None),
            watched: Mutex::new(HashMap::new()),
            reader: Mutex::new(None),
        }))
    }

    /// The subscription side of the pub/sub connection, opened if needed,
    /// with a task that hands each message to the channel's watchers.
    async fn sink(&self) -> Result<PubSubSink, BackendError> {
        let mut sink = self.0.sink.lock().await;
        if let Some(sink) = &*sink {
            return Ok(sink.clone());
        }
        let mut opened = Err(BackendError::Redis(redis::RedisError::from((
            redis::ErrorKind::Client,
            "no client to open a pub/sub connection with",
        ))));
        for client in &self.0.clients {
            opened = bounded(self.0.op_timeout, client.get_async_pubsub()).await;
            if opened.is_ok() {
                break;
            }
        }
        let pubsub = opened?;
        let (opened, stream) = pubsub.split();
        // The reader holds the backend weakly, so that dropping the backend
        // ends it (see `ReleasesInner::drop`).
        let this = Arc::downgrade(&self.0);
        let reader = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(message) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
                let Some(this) = this.upgrade() else { return };
                let watched = this.watched.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((releases, _)) = watched.get(message.get_channel_name()) {
                    releases.send_modify(|n| *n += 1);
                }
            }
            // The connection is gone: the next watch opens another.
            if let Some(this) = this.upgrade() {
                *this.sink.lock().await = None;
            }
        });
        let previous = self
            .0
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(reader.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
        *sink = Some(opened.clone());
        Ok(opened)
    }

    pub(super) async fn watch(&self, channel: &str) -> Option<LockWatch> {
        let mut sink = self.sink().await.ok()?;
        let changes = {
            let mut watched = self.0.watched.lock().unwrap_or_else(PoisonError::into_inner);
            let (releases, watchers) = watched
                .entry(channel.to_owned())
                .or_insert_with(|| (watch::channel(0).0, 0));
            *watchers += 1;
            releases.subscribe()
        };
        let watching = Watching {
            releases: self.clone(),
            channel: channel.to_owned(),
            sink: sink.clone(),
        };
        // Dropping `watching` on failure undoes the count.
        bounded(self.0.op_timeout, sink.subscribe(channel)).await.ok()?;
        Some(LockWatch::new(changes, watching))
    }
}

/// One watcher of a channel; the last one to go unsubscribes.
struct Watching {
    releases: Releases,
    channel: String,
    sink: PubSubSink,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut watched = self
            .releases
            .0
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some((_, watchers)) = watched.get_mut(&self.channel) else {
            return;
        };
        *watchers -= 1;
        if *watchers > 0 {
            return;
        }
        watched.remove(&self.channel);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (mut sink, channel) = (self.sink.clone(), std::mem::take(&mut self.channel));
            let limit = self.releases.0.op_timeout;
            runtime.spawn(async move { bounded(limit, sink.unsubscribe(channel)).await });
        }
    }
}

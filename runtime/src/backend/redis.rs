//! Redis, through the `redis` crate's auto-reconnecting `ConnectionManager`.
//!
//! Each operation is one round trip, and nothing uses `KEYS` or `SCAN`:
//!
//! | operation | commands |
//! |---|---|
//! | fetch | `GET entry`, or `MGET entry tag...` (pipelined with `PEXPIRE entry` for sliding expiry) |
//! | tokens | a script: `GET` the guard and tag tokens, `SET` the missing ones |
//! | lock | a script: `SET lock token NX PX ttl`; if taken, `GET` the entry and the tokens as above |
//! | store | a script: compare the guard, then `SET entry ... PX`; release the caller's lock, if any |
//! | invalidate | `MULTI`, `SET guard token PX window`, `DEL entry`, `EXEC` |
//! | invalidate tags | `MSET tag token ...` |
//! | unlock | a script: `DEL lock` if it still holds the token |
//! | renew | a script: rewrite the entry's times if they are still those read (fail-safe's throttle); release the caller's lock, if any |

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::Script;

use tokio::sync::watch;

use super::{fresh_token, Backend, BoxFuture, EntryKeys, Fetched, LockWatch, Locked, Renewal, Tokens};
use crate::clock::duration_ms;
use crate::BackendError;

/// KEYS: entry, guard, and the lock to release, if any. ARGV: bytes, ttl in
/// ms, the expected guard, and the lock's token. A missing guard (GET gives
/// false) never equals it. The lock is released whether or not the entry
/// was written.
static GUARDED_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local stored = 0
        if redis.call('GET', KEYS[2]) == ARGV[3] then
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
            stored = 1
        end
        if KEYS[3] and redis.call('GET', KEYS[3]) == ARGV[4] then
            redis.call('DEL', KEYS[3])
            -- pcall: a user without the right to publish (Redis 7 ACLs
            -- allow no channel by default) still stores; waiters poll.
            redis.pcall('PUBLISH', KEYS[3], stored)
        end
        return stored",
    )
});

/// Reads the tokens at KEYS[first..] into `out` from `out_at` on, giving each
/// missing one (or one that is not a number, which no reader could match
/// anyway) the fresh token at ARGV[i + 1]; the first, the guard, lives for
/// ARGV[window] ms, the tags' indefinitely. Shared by TOKENS and LOCK.
const READ_TOKENS: &str = r"
    local function read_tokens(first, window, out, out_at)
        for i = first, #KEYS do
            local token = redis.call('GET', KEYS[i])
            if not token or not tonumber(token) then
                token = ARGV[i + 1]
                if i == first then
                    redis.call('SET', KEYS[i], token, 'PX', ARGV[window])
                else
                    redis.call('SET', KEYS[i], token)
                end
            end
            out[out_at + i - first] = token
        end
        return out
    end";

/// KEYS: the guard, then the tag tokens. ARGV: the guard's lifetime in ms,
/// then a fresh token for each key.
static TOKENS: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{READ_TOKENS}\n return read_tokens(1, 1, {{}}, 1)")));

/// KEYS: the lock, the entry, the guard, then the tag tokens. ARGV: the
/// lock's token, its TTL in ms, the guard's lifetime in ms, then a fresh
/// token for the guard and each tag. Returns nil if the lock is held, else
/// the entry (nil if absent), the guard and the tag tokens.
static LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{READ_TOKENS}
        if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
        -- Another type at the entry's key reads as no entry, as MGET has it.
        local entry = redis.pcall('GET', KEYS[2])
        if type(entry) == 'table' and entry.err then entry = false end
        return read_tokens(3, 3, {{entry}}, 2)"
    ))
});

/// KEYS: entry, and the lock to release, if any. ARGV: the entry's times as
/// read and as renewed (see [`Renewal`]), the TTL in ms, and the lock's
/// token. The entry is rewritten only if its times are still those read.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    let times = crate::entry::TIMES;
    let (first, last) = (times.start + 1, times.end);
    Script::new(&format!(
        r"
        local renewed = 0
        local entry = redis.pcall('GET', KEYS[1])
        if type(entry) == 'string' and string.sub(entry, {first}, {last}) == ARGV[1] then
            local bytes = string.sub(entry, 1, {first} - 1) .. ARGV[2] .. string.sub(entry, {last} + 1)
            redis.call('SET', KEYS[1], bytes, 'PX', ARGV[3])
            renewed = 1
        end
        if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[4] then
            redis.call('DEL', KEYS[2])
            redis.pcall('PUBLISH', KEYS[2], renewed)
        end
        return renewed"
    ))
});

/// KEYS: the lock. ARGV: the owner's token. Compare-and-delete, and word
/// to the waiters (see [`Releases`]).
static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        redis.call('DEL', KEYS[1])
        redis.pcall('PUBLISH', KEYS[1], 0)
        return 1",
    )
});

/// The longest pause between two reconnection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// A Redis server reached through one multiplexed, self-reconnecting
/// connection, and a pub/sub connection for lock releases.
#[derive(Clone)]
pub(crate) struct RedisBackend {
    conn: ConnectionManager,
    op_timeout: Duration,
    releases: Releases,
}

/// Lock releases, told over pub/sub: the store and unlock scripts publish on
/// the lock's name when they release it, and a waiter in this process
/// subscribes to that channel while it waits. One pub/sub connection,
/// opened at the first wait and again after it drops. Polling stays the
/// fallback: a release published while no subscription was active (or lost
/// with a connection) costs the waiter its next poll, no more.
#[derive(Clone)]
struct Releases(Arc<ReleasesInner>);

struct ReleasesInner {
    /// `None` with a connection the program gave without its client: no
    /// pub/sub, waiters poll.
    client: Option<redis::Client>,
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
    fn new(client: Option<redis::Client>, op_timeout: Duration) -> Self {
        Releases(Arc::new(ReleasesInner {
            client,
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
        let Some(client) = &self.0.client else {
            return Err(BackendError::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "no client to open a pub/sub connection with",
            ))));
        };
        let pubsub = bounded(self.0.op_timeout, client.get_async_pubsub()).await?;
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

    async fn watch(&self, channel: &str) -> Option<LockWatch> {
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

impl std::fmt::Debug for RedisBackend {
    // The connection's Debug output includes the client's connection info;
    // print nothing that could carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to `client`, waiting at most `connect_timeout` for the first
    /// connection. If Redis cannot be reached (refused, unreachable, timed
    /// out) and `required` is false, returns a backend that connects in the
    /// background instead: its calls fail until then, and the cache calls
    /// through. Anything Redis itself refused (a wrong password, a missing
    /// right, a certificate it cannot verify) is an error either way.
    pub(crate) async fn connect(
        client: redis::Client,
        connect_timeout: Duration,
        op_timeout: Duration,
        required: bool,
    ) -> Result<Self, BackendError> {
        // After a lost connection the manager reconnects by itself, with
        // exponential backoff; capping the pause at RECONNECT_MAX_DELAY means
        // a restarted server is found within about that long, however long
        // it was down.
        let config = ConnectionManagerConfig::new()
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout));
        // The manager retries a failed first connection with backoff; probe
        // once first so that a wrong address or password is known at once
        // rather than after `connect_timeout`. The probe connection is dropped.
        let probe = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout));
        let probed = bounded(
            connect_timeout,
            client.get_multiplexed_async_connection_with_config(&probe),
        )
        .await;
        let conn = match probed {
            Ok(_) => {
                let mut conn = bounded(
                    connect_timeout,
                    ConnectionManager::new_with_config(client.clone(), config),
                )
                .await?;
                // Loaded up front so that the first use of each is one round
                // trip too (the redis crate loads a script the server does
                // not know by itself, as it must after a lazy start).
                for script in [&*GUARDED_SET, &*TOKENS, &*LOCK, &*UNLOCK, &*RENEW] {
                    bounded(connect_timeout, script.prepare_invoke().load_async(&mut conn)).await?;
                }
                conn
            }
            Err(error) if !required && unreachable(&error, &client) => {
                tracing::warn!(
                    %error,
                    "aside: Redis cannot be reached at start-up; calls run their functions until it can, \
                     and the cache connects in the background"
                );
                ConnectionManager::new_lazy_with_config(client.clone(), config)?
            }
            Err(error) => return Err(error),
        };
        Ok(Self::over(conn, Some(client), op_timeout))
    }

    /// A backend over a connection the program made. Without its client,
    /// lock waiters poll rather than being told of releases.
    pub(crate) fn over(conn: ConnectionManager, client: Option<redis::Client>, op_timeout: Duration) -> Self {
        RedisBackend {
            conn,
            op_timeout,
            releases: Releases::new(client, op_timeout),
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        bounded(self.op_timeout, cmd.query_async(&mut conn)).await
    }

    async fn run_script<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        bounded(self.op_timeout, invocation.invoke_async(&mut conn)).await
    }
}

/// Whether a failed connection attempt says only that Redis is not there
/// (yet): refused, reset, timed out, no route to its host, no address for
/// its name. Not: an answer from Redis (authentication, rights). Over TLS,
/// an I/O error may be a certificate that cannot be verified, which no
/// waiting mends: only a refusal, a drop or a timeout counts there.
fn unreachable(error: &BackendError, client: &redis::Client) -> bool {
    match error {
        BackendError::Timeout(_) => true,
        BackendError::Redis(error) => {
            let tls = matches!(
                client.get_connection_info().addr(),
                redis::ConnectionAddr::TcpTls { .. }
            );
            error.is_timeout()
                || error.is_connection_refusal()
                || error.is_connection_dropped()
                || (error.is_io_error() && !tls)
        }
        BackendError::CircuitOpen | BackendError::Unsupported(_) => false,
    }
}

/// Runs a Redis future with a hard deadline, on top of the connection's own
/// response timeout (which does not cover waiting for a reconnect).
async fn bounded<T>(
    limit: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => Ok(result?),
        Err(_elapsed) => Err(BackendError::Timeout(limit)),
    }
}

/// A duration as Redis's `PX` takes it: whole milliseconds, at least 1
/// (Redis refuses 0).
fn px(d: Duration) -> u64 {
    duration_ms(d).max(1)
}

/// The guard's token, then the tags', as the token scripts return them: only
/// numbers. A 0 for anything else never matches a fresh token, so it can only
/// cost a miss.
fn tokens_from(mut tokens: impl Iterator<Item = Option<u64>>) -> Tokens {
    let guard = tokens.next().flatten().unwrap_or(0);
    Tokens {
        guard,
        tags: tokens.map(|t| t.unwrap_or(0)).collect(),
    }
}

/// A token as stored: decimal text. Anything else reads as no token.
fn parse_token(raw: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(raw?).ok()?.parse().ok()
}

impl Backend for RedisBackend {
    fn fetch<'a>(
        &'a self,
        keys: &'a EntryKeys,
        touch: Option<Duration>,
    ) -> BoxFuture<'a, Result<Fetched, BackendError>> {
        Box::pin(async move {
            // The common hit is one plain GET: no pipeline, no array reply.
            if keys.tags.is_empty() && touch.is_none() {
                let entry = match self
                    .query::<Option<Bytes>>(redis::cmd("GET").arg(&keys.entry))
                    .await
                {
                    // Another type at the key (MGET reads it as nil): no
                    // entry, and the store will replace it.
                    Err(BackendError::Redis(e)) if e.code() == Some("WRONGTYPE") => None,
                    entry => entry?,
                };
                return Ok(Fetched {
                    entry,
                    tags: Vec::new(),
                });
            }
            let mut mget = redis::cmd("MGET");
            mget.arg(&keys.entry).arg(&keys.tags);
            let values: Vec<Option<Vec<u8>>> = match touch {
                // A tagged hit: one plain MGET, no pipeline either.
                None => self.query(&mget).await?,
                Some(ttl) => {
                    let mut pipe = redis::pipe();
                    pipe.add_command(mget);
                    pipe.cmd("PEXPIRE").arg(&keys.entry).arg(px(ttl)).ignore();
                    let mut conn = self.conn.clone();
                    let (values,) = bounded(self.op_timeout, pipe.query_async(&mut conn)).await?;
                    values
                }
            };
            let mut values = values.into_iter();
            let entry = values.next().flatten().map(Bytes::from);
            let tags = values.map(|v| parse_token(v.as_deref())).collect();
            Ok(Fetched { entry, tags })
        })
    }

    fn tokens<'a>(
        &'a self,
        keys: &'a EntryKeys,
        window: Duration,
    ) -> BoxFuture<'a, Result<Tokens, BackendError>> {
        Box::pin(async move {
            let mut invocation = TOKENS.prepare_invoke();
            invocation.arg(px(window));
            for key in std::iter::once(keys.guard()).chain(keys.tags.iter().map(String::as_str)) {
                invocation.key(key).arg(fresh_token().to_string());
            }
            let tokens: Vec<Option<Vec<u8>>> = self.run_script(invocation).await?;
            Ok(tokens_from(tokens.iter().map(|t| parse_token(t.as_deref()))))
        })
    }

    fn store<'a>(
        &'a self,
        keys: &'a EntryKeys,
        entry: Bytes,
        ttl: Duration,
        guard: u64,
        unlock: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let mut invocation = GUARDED_SET.prepare_invoke();
            invocation.key(&keys.entry).key(keys.guard());
            invocation.arg(&entry[..]).arg(px(ttl)).arg(guard.to_string());
            if let Some(token) = unlock {
                invocation.key(keys.lock()).arg(token.to_string());
            }
            let stored: i64 = self.run_script(invocation).await?;
            Ok(stored == 1)
        })
    }

    fn renew<'a>(
        &'a self,
        keys: &'a EntryKeys,
        renewal: Renewal,
        unlock: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let (_, was, now) = renewal.times();
            let mut invocation = RENEW.prepare_invoke();
            invocation.key(&keys.entry);
            invocation.arg(&was[..]).arg(&now[..]).arg(px(renewal.ttl));
            if let Some(token) = unlock {
                invocation.key(keys.lock()).arg(token.to_string());
            }
            let renewed: i64 = self.run_script(invocation).await?;
            Ok(renewed == 1)
        })
    }

    fn invalidate<'a>(
        &'a self,
        keys: &'a EntryKeys,
        window: Duration,
    ) -> BoxFuture<'a, Result<u64, BackendError>> {
        Box::pin(async move {
            let token = fresh_token();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .set(keys.guard(), token.to_string())
                .arg("PX")
                .arg(px(window))
                .ignore()
                .del(&keys.entry)
                .ignore();
            let mut conn = self.conn.clone();
            bounded(self.op_timeout, pipe.query_async::<()>(&mut conn)).await?;
            Ok(token)
        })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            if tags.is_empty() {
                return Ok(());
            }
            let mut cmd = redis::cmd("MSET");
            for tag in tags {
                cmd.arg(tag).arg(fresh_token().to_string());
            }
            self.query::<()>(&cmd).await
        })
    }

    fn lock<'a>(
        &'a self,
        keys: &'a EntryKeys,
        token: u64,
        ttl: Duration,
        window: Duration,
    ) -> BoxFuture<'a, Result<Option<Locked>, BackendError>> {
        Box::pin(async move {
            let mut invocation = LOCK.prepare_invoke();
            invocation.key(keys.lock()).key(&keys.entry);
            invocation.arg(token.to_string()).arg(px(ttl)).arg(px(window));
            for key in std::iter::once(keys.guard()).chain(keys.tags.iter().map(String::as_str)) {
                invocation.key(key).arg(fresh_token().to_string());
            }
            let Some(reply): Option<Vec<Option<Vec<u8>>>> = self.run_script(invocation).await? else {
                return Ok(None);
            };
            let mut reply = reply.into_iter();
            let entry = reply.next().flatten().map(Bytes::from);
            Ok(Some(Locked {
                entry,
                tokens: tokens_from(reply.map(|t| parse_token(t.as_deref()))),
            }))
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut invocation = UNLOCK.prepare_invoke();
            invocation.key(key).arg(token.to_string());
            self.run_script::<i64>(invocation).await?;
            Ok(())
        })
    }

    fn watch_lock<'a>(&'a self, keys: &'a EntryKeys) -> BoxFuture<'a, Option<LockWatch>> {
        Box::pin(self.releases.watch(keys.lock()))
    }

    fn clear<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            // SCAN never blocks the server; each batch is one round trip,
            // bounded by the operation timeout. Guards go too, so a load
            // that started before cannot store after (its guard is gone).
            let lock_prefix = format!("{namespace}#lock:");
            for kind in [":", "#"] {
                let pattern = format!("{}{kind}*", glob_escaped(namespace));
                let mut cursor: u64 = 0;
                loop {
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(CLEAR_BATCH);
                    let (next, mut names): (u64, Vec<Vec<u8>>) = self.query(&scan).await?;
                    // Locks stay with their holders, whose stores the
                    // guards' deletion already refuses.
                    names.retain(|name| !name.starts_with(lock_prefix.as_bytes()));
                    if !names.is_empty() {
                        self.query::<()>(redis::cmd("UNLINK").arg(&names)).await?;
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
            Ok(())
        })
    }
}

/// How many names one `SCAN` of [`Backend::clear`] asks for.
const CLEAR_BATCH: usize = 1_000;

/// `text` as a `SCAN MATCH` pattern that matches only itself.
fn glob_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

//! Redis, through the `redis` crate: one node behind an auto-reconnecting
//! `ConnectionManager`, or a Redis Cluster behind its `ClusterConnection`
//! (feature `cluster`).
//!
//! Each operation is one round trip of latency, and nothing uses `KEYS` or
//! `SCAN`:
//!
//! | operation | commands |
//! |---|---|
//! | fetch | `GET entry`, or `MGET entry tag...` (pipelined with `PEXPIRE entry` for sliding expiry); on one node, fetches that come while one is in flight go together as one `MGET` (see `reads`) |
//! | tokens | a script: `MGET` the guard and tag tokens, `SET` the missing ones, and give a tag token that the entry could outlive twice the entry's lifetime |
//! | lock | a script: `SET lock token NX PX ttl`; if taken, `MGET` the entry and the tokens as above; if held, mark it waited for |
//! | store | a script: `MGET` the guard and the lock, compare the guard, then `SET entry ... PX`; release the caller's lock, if any, publishing the release if it was waited for |
//! | invalidate | `MULTI`, `SET guard token PX window`, `DEL entry`, `EXEC` |
//! | invalidate tags | `DEL tag ...` (the next load makes a fresh token) |
//! | unlock | a script: `DEL lock` if it still holds the token (and `PUBLISH` if it was waited for) |
//! | renew | a script: rewrite the entry's times if they are still those read (fail-safe's throttle); release the caller's lock, if any |
//!
//! On a cluster, an entry, its guard and its lock share a slot (see
//! [`EntryKeys`]), but each tag's token has its own. No script or
//! transaction touches two slots there: a read or a token script that
//! involves tags is split into the part on the entry's slot and one part
//! per tag, sent together, so that it still costs one round trip of
//! latency (`MGET` and `DEL` the `redis` crate splits by slot itself).
//! Why reading those parts at slightly different times can only cost
//! misses, never serve a stale value, is in [`crate::tags`].

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;

use super::{fresh_token, Backend, BoxFuture, EntryKeys, Fetched, LockWatch, Locked, Renewal, Tokens};
use crate::clock::duration_ms;
use crate::error::BackendError;
use fetch::{fetched, sized, Read};
use releases::Releases;
use scripts::{Eval, GUARDED_SET, LOCK, RENEW, TAG_TOKEN, TOKENS, UNLOCK};

#[cfg(feature = "cluster")]
mod cluster;
mod connection;
mod fetch;
mod reads;
mod releases;
mod scripts;

pub(crate) use connection::{Link, Node};

/// A Redis server (or cluster) reached through one multiplexed,
/// self-reconnecting connection, and a pub/sub connection for lock releases.
#[derive(Clone)]
pub(crate) struct RedisBackend<C = ConnectionManager> {
    conn: C,
    op_timeout: Duration,
    releases: Releases,
    /// Reads waiting on the connection at once go as one `MGET` (one node).
    reads: std::sync::Arc<reads::Reads>,
    /// On a cluster: the slot map and a circuit breaker per node.
    #[cfg(feature = "cluster")]
    nodes: Option<std::sync::Arc<cluster::Nodes>>,
}

impl<C> std::fmt::Debug for RedisBackend<C> {
    // The connection's Debug output includes the client's connection info;
    // print nothing that could carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl<C: Link> RedisBackend<C> {
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        bounded(self.op_timeout, cmd.query_async(&mut conn)).await
    }

    /// Runs `eval`, loading its script first if Redis does not know it (a
    /// restart or a failover forgets the scripts loaded at connect).
    async fn eval<T: redis::FromRedisValue>(&self, eval: &Eval) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        bounded(self.op_timeout, async {
            match eval.cmd.query_async(&mut conn).await {
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    eval.script.load_async(&mut conn).await?;
                    eval.cmd.query_async(&mut conn).await
                }
                answer => answer,
            }
        })
        .await
    }
}

/// Write-behind's log: plain commands and scripts, each within the operation
/// timeout, not through a cluster node's breaker (a write to the log must
/// learn that it failed, not be skipped).
impl<C: Link> crate::backend::streams::Streams for RedisBackend<C> {
    fn command(&self, cmd: redis::Cmd) -> BoxFuture<'_, Result<redis::Value, BackendError>> {
        Box::pin(async move { self.query(&cmd).await })
    }

    fn script(
        &self,
        script: &'static redis::Script,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
    ) -> BoxFuture<'_, Result<redis::Value, BackendError>> {
        Box::pin(async move {
            let bytes = keys
                .iter()
                .map(String::len)
                .chain(args.iter().map(Vec::len))
                .sum();
            let mut eval = Eval::new(script, keys.len(), args.len(), bytes);
            for key in &keys {
                eval.arg(key);
            }
            for arg in &args {
                eval.arg(arg.as_slice());
            }
            self.eval(&eval).await
        })
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

impl<C: Link> RedisBackend<C> {
    /// Runs one part of an operation, whose keys are on the node that serves
    /// `name`: on a cluster, through that node's circuit breaker (open, it
    /// fails the part at once with [`BackendError::CircuitOpen`]).
    async fn part<T>(
        &self,
        name: &str,
        part: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        #[cfg(feature = "cluster")]
        if let Some(breaker) = self.nodes.as_ref().and_then(|nodes| nodes.breaker(name)) {
            if !breaker.allow() {
                return Err(BackendError::CircuitOpen);
            }
            let result = part.await;
            match &result {
                Ok(_) => breaker.success(),
                // The cluster refusing while a slot has no master is no
                // fault of this node: its breaker must not open for it.
                Err(error) if !error.is_fault() => {}
                Err(_) => breaker.failure(),
            }
            return result;
        }
        let _ = name;
        part.await
    }

    /// `names` grouped by the node that serves them, as indices: one group
    /// on a single node.
    fn by_node(&self, names: &[String]) -> Vec<Vec<usize>> {
        #[cfg(feature = "cluster")]
        if let Some(nodes) = &self.nodes {
            return nodes.by_node(names);
        }
        vec![(0..names.len()).collect()]
    }

    /// Each tag's token, created where missing and kept at least `keep`:
    /// one script per tag, sent together (on a cluster, tags live in slots
    /// of their own).
    async fn tag_tokens(
        &self,
        tags: impl Iterator<Item = &str>,
        keep: Duration,
    ) -> Result<Vec<u64>, BackendError> {
        let each = tags.map(|tag| {
            self.part(tag, async move {
                let mut eval = Eval::new(&TAG_TOKEN, 1, 2, tag.len() + 40);
                eval.arg(tag).arg(fresh_token()).arg(px(keep));
                let token: Option<Vec<u8>> = self.eval(&eval).await?;
                Ok(parse_token(token.as_deref()).unwrap_or(0))
            })
        });
        futures_util::future::try_join_all(each).await
    }
}

/// The bytes of a token script's names (the guard and `tags`) and of its
/// numbers: a fresh token per name, and `numbers` more.
fn names_len<'a>(keys: &EntryKeys, tags: impl ExactSizeIterator<Item = &'a str>, numbers: usize) -> usize {
    let count = tags.len();
    keys.guard().len() + tags.map(str::len).sum::<usize>() + 20 * (numbers + 1 + count)
}

impl<C: Link> Backend for RedisBackend<C> {
    fn fetch<'a>(
        &'a self,
        keys: &'a EntryKeys,
        touch: Option<Duration>,
    ) -> BoxFuture<'a, Result<Fetched, BackendError>> {
        Box::pin(async move {
            // On one node, a read that finds another in flight joins the
            // next batch (see `reads`).
            let first = match (C::CLUSTER, touch) {
                (false, None) => match self.reads.join(&self.conn, self.op_timeout, keys.names()) {
                    reads::Turn::Now(first) => Some(first),
                    reads::Turn::Queued(answer) => {
                        return Ok(fetched(reads::queued(answer, self.op_timeout).await?))
                    }
                },
                _ => None,
            };
            // The common hit is one plain GET: no pipeline, no array reply.
            if keys.tags().len() == 0 && touch.is_none() {
                let entry = self.part(keys.entry(), self.entry(keys.entry())).await?;
                drop(first);
                return Ok(Fetched {
                    entry,
                    tags: Vec::new(),
                });
            }
            if C::CLUSTER {
                return self.fetch_apart(keys, touch).await;
            }
            let mget = sized("MGET", keys.names());
            match touch {
                // A tagged hit: one plain MGET, no pipeline either.
                None => {
                    let Read(fetched) = self.query(&mget).await?;
                    drop(first);
                    Ok(fetched)
                }
                Some(ttl) => {
                    let mut pipe = redis::pipe();
                    pipe.add_command(mget);
                    pipe.cmd("PEXPIRE").arg(keys.entry()).arg(px(ttl)).ignore();
                    let mut conn = self.conn.clone();
                    let (Read(fetched),) = bounded(self.op_timeout, pipe.query_async(&mut conn)).await?;
                    Ok(fetched)
                }
            }
        })
    }

    fn fetch_many<'a>(
        &'a self,
        keys: &'a [EntryKeys],
        touch: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<Option<Fetched>>, BackendError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            // The entries, then each tag once: one MGET (per node, on a cluster).
            let mut names: Vec<String> = keys.iter().map(|keys| keys.entry().to_owned()).collect();
            let mut tag_at: HashMap<&str, usize> = HashMap::new();
            for tag in keys.iter().flat_map(EntryKeys::tags) {
                tag_at.entry(tag).or_insert_with(|| {
                    names.push(tag.to_owned());
                    names.len() - 1
                });
            }
            let values = self.read_all(&names, touch.map(|ttl| (ttl, keys.len()))).await?;
            // A token on a node that failed fails the entries that need it.
            let tokens: Vec<Option<Option<u64>>> = values[keys.len()..]
                .iter()
                .map(|t| t.as_ref().map(|t| parse_token(t.as_deref())))
                .collect();
            let token = |tag: &str| tokens[tag_at[tag] - keys.len()];
            Ok(keys
                .iter()
                .zip(values)
                .map(|(keys, entry)| {
                    Some(Fetched {
                        entry: entry?.map(Bytes::from),
                        tags: keys.tags().map(token).collect::<Option<_>>()?,
                    })
                })
                .collect())
        })
    }

    fn tokens<'a>(
        &'a self,
        keys: &'a EntryKeys,
        window: Duration,
        keep_tags: Duration,
    ) -> BoxFuture<'a, Result<Tokens, BackendError>> {
        Box::pin(async move {
            let apart = C::CLUSTER && keys.tags().len() > 0;
            let guard = self.part(keys.guard(), async {
                let tags = keys.tags().take(if apart { 0 } else { usize::MAX });
                let mut eval = Eval::new(
                    &TOKENS,
                    1 + tags.len(),
                    3 + tags.len(),
                    names_len(keys, tags.clone(), 2),
                );
                eval.arg(keys.guard());
                for tag in tags.clone() {
                    eval.arg(tag);
                }
                eval.arg(px(window));
                for _ in 0..=tags.len() {
                    eval.arg(fresh_token());
                }
                eval.arg(px(keep_tags));
                let tokens: Vec<Option<Vec<u8>>> = self.eval(&eval).await?;
                Ok(tokens_from(tokens.iter().map(|t| parse_token(t.as_deref()))))
            });
            if !apart {
                return guard.await;
            }
            let (mut tokens, tags) = tokio::try_join!(guard, self.tag_tokens(keys.tags(), keep_tags))?;
            tokens.tags = tags;
            Ok(tokens)
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
            let locked = usize::from(unlock.is_some());
            let bytes = keys.entry().len() + keys.guard().len() + keys.lock().len() + entry.len() + 60;
            let mut eval = Eval::new(&GUARDED_SET, 2 + locked, 3 + locked, bytes);
            eval.arg(keys.entry()).arg(keys.guard());
            if unlock.is_some() {
                eval.arg(keys.lock());
            }
            eval.arg(&entry[..]).arg(px(ttl)).arg(guard);
            if let Some(token) = unlock {
                eval.arg(token);
            }
            let stored: i64 = self.part(keys.entry(), self.eval(&eval)).await?;
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
            let locked = usize::from(unlock.is_some());
            let bytes = keys.entry().len() + keys.lock().len() + was.len() + now.len() + 40;
            let mut eval = Eval::new(&RENEW, 1 + locked, 3 + locked, bytes);
            eval.arg(keys.entry());
            if unlock.is_some() {
                eval.arg(keys.lock());
            }
            eval.arg(&was[..]).arg(&now[..]).arg(px(renewal.ttl));
            if let Some(token) = unlock {
                eval.arg(token);
            }
            let renewed: i64 = self.part(keys.entry(), self.eval(&eval)).await?;
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
                .del(keys.entry())
                .ignore();
            let mut conn = self.conn.clone();
            let invalidated = bounded(self.op_timeout, pipe.query_async::<()>(&mut conn));
            self.part(keys.entry(), invalidated).await?;
            Ok(token)
        })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            if tags.is_empty() {
                return Ok(());
            }
            // One DEL per node (the redis crate splits each by slot), done
            // once every node has acknowledged its part. A deleted token
            // leaves nothing behind, and the next load makes a fresh one.
            let parts = self.by_node(tags).into_iter().map(|group| {
                let mut cmd = redis::cmd("DEL");
                for &i in &group {
                    cmd.arg(&tags[i]);
                }
                self.part(&tags[group[0]], async move { self.query::<()>(&cmd).await })
            });
            futures_util::future::try_join_all(parts).await?;
            Ok(())
        })
    }

    fn lock<'a>(
        &'a self,
        keys: &'a EntryKeys,
        token: u64,
        ttl: Duration,
        window: Duration,
        keep_tags: Duration,
    ) -> BoxFuture<'a, Result<Option<Locked>, BackendError>> {
        Box::pin(async move {
            let apart = C::CLUSTER && keys.tags().len() > 0;
            let locked = self.part(keys.entry(), async {
                let tags = keys.tags().take(if apart { 0 } else { usize::MAX });
                let bytes = names_len(keys, tags.clone(), 5) + keys.lock().len() + keys.entry().len();
                let mut eval = Eval::new(&LOCK, 3 + tags.len(), 5 + tags.len(), bytes);
                eval.arg(keys.lock()).arg(keys.entry()).arg(keys.guard());
                for tag in tags.clone() {
                    eval.arg(tag);
                }
                eval.arg(token).arg(px(ttl)).arg(px(window));
                for _ in 0..=tags.len() {
                    eval.arg(fresh_token());
                }
                eval.arg(px(keep_tags));
                let Some(reply): Option<Vec<Option<Vec<u8>>>> = self.eval(&eval).await? else {
                    return Ok(None);
                };
                let mut reply = reply.into_iter();
                let entry = reply.next().flatten().map(Bytes::from);
                Ok(Some(Locked {
                    entry,
                    tokens: tokens_from(reply.map(|t| parse_token(t.as_deref()))),
                }))
            });
            if !apart {
                return locked.await;
            }
            // The tags' tokens are read whether or not the lock is taken:
            // the two go together, and a token read for nothing is harmless.
            let (locked, tags) = tokio::try_join!(locked, self.tag_tokens(keys.tags(), keep_tags))?;
            Ok(locked.map(|mut locked| {
                locked.tokens.tags = tags;
                locked
            }))
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut eval = Eval::new(&UNLOCK, 1, 1, key.len() + 20);
            eval.arg(key).arg(token);
            self.part(key, self.eval::<i64>(&eval)).await?;
            Ok(())
        })
    }

    fn watch_lock<'a>(&'a self, keys: &'a EntryKeys) -> BoxFuture<'a, Option<LockWatch>> {
        Box::pin(self.releases.watch(keys.lock()))
    }

    fn breaker(&self) -> Option<crate::breaker::BreakerState> {
        #[cfg(feature = "cluster")]
        if let Some(nodes) = &self.nodes {
            return Some(nodes.worst());
        }
        None
    }

    fn clear<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            // SCAN never blocks the server; each batch is one round trip,
            // bounded by the operation timeout. Guards go too, so a load
            // that started before cannot store after (its guard is gone).
            // A cluster is scanned master by master: a cursor is a node's.
            let lock_prefix = format!("{namespace}#lock:");
            // Write-behind's logs hold changes not yet in the database:
            // never cache entries.
            let log_prefix = format!("{namespace}#wb:");
            let mut conn = self.conn.clone();
            let nodes = bounded(self.op_timeout, conn.scanned_nodes()).await?;
            for node in &nodes {
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
                        let (next, mut names): (u64, Vec<Vec<u8>>) =
                            bounded(self.op_timeout, conn.query_on(&scan, node.as_ref())).await?;
                        // Locks stay with their holders, whose stores the
                        // guards' deletion already refuses.
                        names.retain(|name| {
                            !name.starts_with(lock_prefix.as_bytes())
                                && !name.starts_with(log_prefix.as_bytes())
                        });
                        if !names.is_empty() {
                            self.query::<()>(redis::cmd("UNLINK").arg(&names)).await?;
                        }
                        cursor = next;
                        if cursor == 0 {
                            break;
                        }
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

//! Redis, through the `redis` crate's auto-reconnecting `ConnectionManager`.
//!
//! Each operation is one round trip, and nothing uses `KEYS` or `SCAN`:
//!
//! | operation | commands |
//! |---|---|
//! | fetch | `MGET entry guard tag...` |
//! | tag tokens | a script: `GET` each tag token, `SET` the missing ones |
//! | guarded store | a script: compare the guard, then `SET entry ... PX` |
//! | unguarded store | `SET entry ... PX` |
//! | invalidate | `MULTI`, `SET guard token PX window`, `DEL entry`, `EXEC` |
//! | invalidate tags | `MSET tag token ...` |

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{fresh_token, Backend, BoxFuture, EntryKeys, Fetched, Guard};
use crate::entry::duration_ms;
use crate::BackendError;

/// KEYS: entry, guard. ARGV: bytes, ttl in ms, the expected guard ('' for none).
static GUARDED_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if (redis.call('GET', KEYS[2]) or '') ~= ARGV[3] then return 0 end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return 1",
    )
});

/// KEYS: tag tokens. ARGV: a fresh token for each, used where one is missing
/// (or is not a number, which no reader could match anyway).
static TAG_TOKENS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local tokens = {}
        for i, key in ipairs(KEYS) do
            local token = redis.call('GET', key)
            if not token or not tonumber(token) then
                token = ARGV[i]
                redis.call('SET', key, token)
            end
            tokens[i] = token
        end
        return tokens",
    )
});

/// A Redis server reached through one multiplexed, self-reconnecting connection.
#[derive(Clone)]
pub(crate) struct RedisBackend {
    conn: ConnectionManager,
    op_timeout: Duration,
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
    /// Connects to `client`, waiting at most `connect_timeout` for the first connection.
    pub(crate) async fn connect(
        client: redis::Client,
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<Self, BackendError> {
        // The manager retries a failed first connection with backoff; probe
        // once first so that a wrong address fails fast rather than after
        // `connect_timeout`. The probe connection is dropped.
        let probe = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout));
        bounded(
            connect_timeout,
            client.get_multiplexed_async_connection_with_config(&probe),
        )
        .await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout));
        let mut conn = bounded(
            connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await?;
        // Loaded up front so that the first use of each is one round trip too
        // (the redis crate reloads them by itself if the server forgets them).
        for script in [&*GUARDED_SET, &*TAG_TOKENS] {
            bounded(connect_timeout, script.prepare_invoke().load_async(&mut conn)).await?;
        }
        Ok(RedisBackend { conn, op_timeout })
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

/// A token as stored: decimal text. Anything else reads as no token.
fn parse_token(raw: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(raw?).ok()?.parse().ok()
}

impl Backend for RedisBackend {
    fn fetch<'a>(&'a self, keys: &'a EntryKeys) -> BoxFuture<'a, Result<Fetched, BackendError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("MGET");
            cmd.arg(&keys.entry).arg(&keys.guard).arg(&keys.tags);
            let values: Vec<Option<Vec<u8>>> = self.query(&cmd).await?;
            let mut values = values.into_iter();
            let entry = values.next().flatten().map(Bytes::from);
            let guard = parse_token(values.next().flatten().as_deref());
            let tags = values.map(|v| parse_token(v.as_deref())).collect();
            Ok(Fetched { entry, guard, tags })
        })
    }

    fn tag_tokens<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<Vec<u64>, BackendError>> {
        Box::pin(async move {
            if tags.is_empty() {
                return Ok(Vec::new());
            }
            let mut invocation = TAG_TOKENS.prepare_invoke();
            for tag in tags {
                invocation.key(tag).arg(fresh_token().to_string());
            }
            let tokens: Vec<String> = self.run_script(invocation).await?;
            // The script only returns numbers; anything else is a broken server.
            Ok(tokens.iter().map(|t| t.parse().unwrap_or(0)).collect())
        })
    }

    fn store<'a>(
        &'a self,
        keys: &'a EntryKeys,
        entry: Bytes,
        ttl: Duration,
        guard: Guard,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let ms = duration_ms(ttl).max(1);
            match guard {
                Guard::Unchecked => {
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(&keys.entry).arg(&entry[..]).arg("PX").arg(ms);
                    self.query::<()>(&cmd).await?;
                    Ok(true)
                }
                Guard::Expect(expected) => {
                    let mut invocation = GUARDED_SET.prepare_invoke();
                    invocation
                        .key(&keys.entry)
                        .key(&keys.guard)
                        .arg(&entry[..])
                        .arg(ms);
                    invocation.arg(expected.map_or(String::new(), |g| g.to_string()));
                    let stored: i64 = self.run_script(invocation).await?;
                    Ok(stored == 1)
                }
            }
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
                .set(&keys.guard, token.to_string())
                .arg("PX")
                .arg(duration_ms(window).max(1))
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
}

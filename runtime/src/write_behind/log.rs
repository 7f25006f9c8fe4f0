//! The log in Redis: one stream per write-behind, read by one consumer
//! group, and the scripts that keep each batch's entries together.
//!
//! | name | what |
//! |---|---|
//! | `{namespace}#wb:{{name}}` | the stream: one entry per change, deleted once flushed |
//! | `{namespace}#wb:{{name}}#c:{change}` | a change's marker: its entry's id, for a while, so that a write sent twice is logged once |
//! | `{namespace}#wb:{{name}}#owner:{consumer}` | the lease on a consumer name: one flusher at a time uses it |
//!
//! All share the name's hash tag, so on a cluster the scripts touch one
//! slot. An entry is deleted in the script that acknowledges it, so the
//! stream's length is the backlog: changes not yet flushed.
//!
//! A batch is always a consumer's pending entries, the first [`MAX_BATCH`]
//! of them in order, read back from Redis before its first attempt and
//! checked before each one (a reply lost on the way may have delivered
//! more than the flusher saw). A consumer reads more only while it holds no
//! batch being flushed, acknowledges a batch's entries in one script, and
//! takes over another consumer's entries all at once (`CLAIM`), only while
//! it holds none of its own; and one flusher at a time holds a consumer
//! name. So a batch delivered again, to anyone, has the same entries and
//! the same [`Version`] as its id: what lets a flush function recognise a
//! batch it has already applied.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::streams::{StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{Script, Value};

use super::Version;
use crate::backend::streams::Streams;
use crate::clock::duration_ms;
use crate::error::BackendError;

/// The consumer group every flusher of a log reads in.
const GROUP: &str = "aside";

/// The most entries a batch holds: the acknowledging script passes them
/// all to one `XACK` and one `XDEL`, within Lua's limit on arguments.
pub(crate) const MAX_BATCH: usize = 4_096;

/// KEYS: the stream, the change's marker. ARGV: the backlog's bound (0:
/// none), the marker's lifetime in ms, then the entry's fields and values.
/// Returns `{id, length}`, or `{0, length}` when the backlog is full. A
/// change whose marker is there was logged already: its id is returned.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local length = redis.call('XLEN', KEYS[1])
        local seen = redis.call('GET', KEYS[2])
        if seen then return {seen, length} end
        local bound = tonumber(ARGV[1])
        if bound > 0 and length >= bound then return {0, length} end
        local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
        redis.call('SET', KEYS[2], id, 'PX', ARGV[2])
        return {id, length + 1}",
    )
});

/// KEYS: the stream. ARGV: the group, then the ids of a flushed batch.
/// Acknowledges and deletes them together; returns the stream's length.
static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
        redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
        return redis.call('XLEN', KEYS[1])",
    )
});

/// KEYS: the stream, the consumer's lease. ARGV: the group, the consumer,
/// the most ids, the lease's token, its lifetime in ms. Renews the lease
/// (an `ASIDE_LEASE` error if another flusher holds it), then returns the
/// ids pending for the consumer and resets their idle time: a heartbeat,
/// so that nobody takes them over while the flusher lives.
static MINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local owner = redis.call('GET', KEYS[2])
        if owner and owner ~= ARGV[4] then
            return redis.error_reply('ASIDE_LEASE another flusher runs under this consumer name')
        end
        redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
        local mine = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3], ARGV[2])
        local ids = {}
        local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
        for i, entry in ipairs(mine) do
            ids[i] = entry[1]
            claim[#claim + 1] = entry[1]
        end
        if #ids > 0 then
            claim[#claim + 1] = 'JUSTID'
            redis.call(unpack(claim))
        end
        return ids",
    )
});

/// KEYS: the lease. ARGV: a token, the lease's lifetime in ms. Takes the
/// lease if nobody holds it (or this token does); whether it did.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local owner = redis.call('GET', KEYS[1])
        if owner and owner ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return 1",
    )
});

/// KEYS: the lease. ARGV: a token. Gives the lease up if this token holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0",
    )
});

/// KEYS: the stream. ARGV: the group, the consumer taken over, the one
/// taking over, the idle time in ms every one of its entries must have
/// reached. Claims all of them or none, however many: a batch moves whole.
/// Returns how many were claimed.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local theirs = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000000000, ARGV[2])
        for _, entry in ipairs(theirs) do
            if entry[3] < tonumber(ARGV[4]) then return 0 end
        end
        -- In chunks: Lua passes at most about 8,000 arguments to a call.
        for first = 1, #theirs, 4000 do
            local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0}
            for i = first, math.min(first + 3999, #theirs) do
                claim[#claim + 1] = theirs[i][1]
            end
            claim[#claim + 1] = 'JUSTID'
            redis.call(unpack(claim))
        end
        return #theirs",
    )
});

/// KEYS: the stream. ARGV: the group, a consumer. Deletes the consumer if
/// it has no pending entry (if it lives, its next read adds it again).
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
            return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
        end
        return -1",
    )
});

/// Counters of one log, shared by its writers and flushers in the process,
/// summed into the cache's [`Stats`](crate::stats::Stats), and reported as metrics
/// (feature `metrics`).
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) appended: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// The stream's length when last seen (by an append or an acknowledgement).
    pub(crate) backlog: AtomicU64,
    pub(crate) flushed: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) flush_errors: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    /// How long the oldest change of the last flushed batch waited, in ms.
    pub(crate) lag_ms: AtomicU64,
    metrics: crate::metrics::LogMetrics,
}

impl crate::cache::Log for Counters {
    fn backlog(&self) -> u64 {
        self.backlog.load(Relaxed)
    }
}

impl Counters {
    pub(crate) fn new(log: &str) -> Self {
        let _ = log;
        Counters {
            appended: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            flush_errors: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            metrics: crate::metrics::LogMetrics::new(log),
        }
    }

    fn backlog(&self, length: u64) {
        self.backlog.store(length, Relaxed);
        self.metrics.backlog(length);
    }

    pub(crate) fn appended(&self) {
        self.appended.fetch_add(1, Relaxed);
        self.metrics.appended();
    }

    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
        self.metrics.rejected();
    }

    /// A batch of `changes` flushed, the oldest `lag` old.
    pub(crate) fn flushed(&self, changes: u64, lag: Duration) {
        self.flushed.fetch_add(changes, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.lag_ms.store(duration_ms(lag), Relaxed);
        self.metrics.flushed(changes, lag);
    }

    pub(crate) fn flush_failed(&self) {
        self.flush_errors.fetch_add(1, Relaxed);
        self.metrics.flush_failed();
    }

    pub(crate) fn redelivered(&self) {
        self.redelivered.fetch_add(1, Relaxed);
        self.metrics.redelivered();
    }
}

/// One entry as read: its id and its fields, still encoded.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub(crate) id: String,
    pub(crate) version: Option<Version>,
    /// `None` for an entry deleted since it was delivered.
    pub(crate) fields: Option<Fields>,
}

/// An entry's fields: the record's id, and the change.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub(crate) key: Vec<u8>,
    pub(crate) change: Change,
}

#[derive(Debug, Clone)]
pub(crate) enum Change {
    Set(Vec<u8>),
    Add(i64),
}

impl Change {
    /// The entry's fields after the record's id, as appended.
    pub(crate) fn fields(&self) -> [(&'static str, Vec<u8>); 2] {
        match self {
            Change::Set(value) => [("op", b"set".to_vec()), ("v", value.clone())],
            Change::Add(n) => [("op", b"add".to_vec()), ("v", n.to_string().into_bytes())],
        }
    }
}

/// Why a renewal failed.
#[derive(Debug)]
pub(crate) enum Renewal {
    /// Another flusher holds the consumer name's lease.
    Lost,
    /// Redis failed.
    Failed(BackendError),
}

/// The outcome of an append.
pub(crate) enum Appended {
    Logged(Version),
    Full,
}

/// A write-behind log: its stream and group, over the cache's Redis.
pub(crate) struct Log {
    streams: Arc<dyn Streams>,
    pub(crate) name: String,
    stream: String,
    pub(crate) counters: Arc<Counters>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Log {
    pub(crate) fn new(
        streams: Arc<dyn Streams>,
        namespace: &str,
        name: &str,
        counters: Arc<Counters>,
    ) -> Log {
        Log {
            streams,
            name: name.to_owned(),
            stream: format!("{namespace}#wb:{{{name}}}"),
            counters,
        }
    }

    /// Appends the change `change` (an id the writer chose) of `key`, unless
    /// the stream holds `bound` entries (0: no bound). Sent again with the
    /// same `change` within `remember`, it is not appended twice.
    pub(crate) async fn append(
        &self,
        change: u64,
        key: &[u8],
        what: &Change,
        bound: u64,
        remember: Duration,
    ) -> Result<Appended, BackendError> {
        let marker = format!("{}#c:{change:016x}", self.stream);
        let mut args = vec![
            bound.to_string().into_bytes(),
            duration_ms(remember).max(1).to_string().into_bytes(),
            b"k".to_vec(),
            key.to_vec(),
        ];
        for (field, value) in what.fields() {
            args.push(field.as_bytes().to_vec());
            args.push(value);
        }
        let reply = self
            .streams
            .script(&APPEND, vec![self.stream.clone(), marker], args)
            .await?;
        let (id, length): (Value, u64) = parse(reply)?;
        self.counters.backlog(length);
        match id {
            Value::Int(0) => Ok(Appended::Full),
            id => {
                let id: String = parse(id)?;
                let version = Version::parse(&id).ok_or_else(|| unexpected("an entry id"))?;
                Ok(Appended::Logged(version))
            }
        }
    }

    /// The stream's length: the changes not yet flushed.
    pub(crate) async fn length(&self) -> Result<u64, BackendError> {
        let reply = self
            .streams
            .command(redis::cmd("XLEN").arg(&self.stream).clone())
            .await?;
        let length = parse(reply)?;
        self.counters.backlog(length);
        Ok(length)
    }

    /// Creates the group (and the stream), reading from the stream's start,
    /// unless it exists.
    pub(crate) async fn create_group(&self) -> Result<(), BackendError> {
        let cmd = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .clone();
        match self.streams.command(cmd).await {
            Err(BackendError::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map(drop),
        }
    }

    /// Up to `count` entries never delivered to anyone (`from` = `>`), or
    /// those pending for `consumer` (`from` = `0`).
    pub(crate) async fn read(
        &self,
        consumer: &str,
        count: usize,
        from: &str,
    ) -> Result<Vec<Raw>, BackendError> {
        let cmd = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(from)
            .clone();
        let reply: Option<StreamReadReply> = parse(self.streams.command(cmd).await?)?;
        Ok(reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .map(raw)
            .collect())
    }

    /// Where the lease on the consumer name `consumer` is kept.
    fn lease_key(&self, consumer: &str) -> String {
        format!("{}#owner:{consumer}", self.stream)
    }

    /// Takes the lease on `consumer` for `ttl` under `token`, unless
    /// another flusher holds it; whether it did.
    pub(crate) async fn lease(
        &self,
        consumer: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let args = [token, &duration_ms(ttl).max(1).to_string()].map(|a| a.as_bytes().to_vec());
        let reply = self
            .streams
            .script(&LEASE, vec![self.lease_key(consumer)], args.into())
            .await?;
        Ok(parse::<i64>(reply)? == 1)
    }

    /// Gives up the lease on `consumer`, if `token` holds it.
    pub(crate) async fn release(&self, consumer: &str, token: &str) -> Result<(), BackendError> {
        let args = vec![token.as_bytes().to_vec()];
        self.streams
            .script(&RELEASE, vec![self.lease_key(consumer)], args)
            .await
            .map(drop)
    }

    /// Renews the lease on `consumer`, then returns the ids pending for it
    /// (the first `MAX_BATCH + 1`, in order), whose idle time this resets.
    pub(crate) async fn mine(
        &self,
        consumer: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, Renewal> {
        let args = [
            GROUP,
            consumer,
            &(MAX_BATCH + 1).to_string(),
            token,
            &duration_ms(ttl).max(1).to_string(),
        ]
        .map(|a| a.as_bytes().to_vec());
        let keys = vec![self.stream.clone(), self.lease_key(consumer)];
        match self.streams.script(&MINE, keys, args.into()).await {
            Ok(reply) => parse(reply).map_err(Renewal::Failed),
            Err(BackendError::Redis(e)) if e.code() == Some("ASIDE_LEASE") => Err(Renewal::Lost),
            Err(e) => Err(Renewal::Failed(e)),
        }
    }

    /// The consumers other than `me` with an entry idle for `idle` or
    /// longer, oldest first.
    pub(crate) async fn idle_consumers(&self, me: &str, idle: Duration) -> Result<Vec<String>, BackendError> {
        let cmd = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("IDLE")
            .arg(duration_ms(idle))
            .arg("-")
            .arg("+")
            .arg(64)
            .clone();
        let reply: StreamPendingCountReply = parse(self.streams.command(cmd).await?)?;
        let mut consumers: Vec<String> = Vec::new();
        for pending in reply.ids {
            if pending.consumer != me && !consumers.contains(&pending.consumer) {
                consumers.push(pending.consumer);
            }
        }
        Ok(consumers)
    }

    /// Takes over every entry pending for `from`, if all of them have been
    /// idle for `idle`; none otherwise. How many it took.
    pub(crate) async fn claim(&self, from: &str, me: &str, idle: Duration) -> Result<u64, BackendError> {
        let args = [GROUP, from, me, &duration_ms(idle).to_string()].map(|a| a.as_bytes().to_vec());
        let reply = self
            .streams
            .script(&CLAIM, vec![self.stream.clone()], args.into())
            .await?;
        parse(reply)
    }

    /// Deletes `consumer` from the group if it holds nothing.
    pub(crate) async fn forget(&self, consumer: &str) -> Result<(), BackendError> {
        let args = [GROUP, consumer].map(|a| a.as_bytes().to_vec());
        self.streams
            .script(&FORGET, vec![self.stream.clone()], args.into())
            .await
            .map(drop)
    }

    /// Acknowledges and deletes a flushed batch's entries.
    pub(crate) async fn ack(&self, ids: &[&str]) -> Result<(), BackendError> {
        let args = std::iter::once(GROUP.as_bytes().to_vec())
            .chain(ids.iter().map(|id| id.as_bytes().to_vec()))
            .collect();
        let reply = self.streams.script(&ACK, vec![self.stream.clone()], args).await?;
        let length = parse(reply)?;
        self.counters.backlog(length);
        Ok(())
    }
}

/// An entry as the `redis` crate parsed it, as a [`Raw`]: fields that are
/// missing or not what an append writes read as `None`, as a deleted one.
fn raw(entry: StreamId) -> Raw {
    let version = Version::parse(&entry.id);
    let bytes = |name: &str| entry.get::<Vec<u8>>(name);
    let fields = (|| {
        let key = bytes("k")?;
        let value = bytes("v")?;
        let change = match bytes("op")?.as_slice() {
            b"set" => Change::Set(value),
            b"add" => Change::Add(std::str::from_utf8(&value).ok()?.parse().ok()?),
            _ => return None,
        };
        Some(Fields { key, change })
    })();
    Raw {
        id: entry.id,
        version,
        fields,
    }
}

fn parse<T: redis::FromRedisValue>(reply: Value) -> Result<T, BackendError> {
    redis::from_redis_value(reply).map_err(|e| BackendError::Redis(e.into()))
}

fn unexpected(what: &str) -> BackendError {
    BackendError::Redis(redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "the write-behind log's reply is not",
        what.to_owned(),
    )))
}

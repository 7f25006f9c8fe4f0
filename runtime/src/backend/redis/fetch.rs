//! Reading entries and tokens: one `GET`, one `MGET`, an entry and its tags
//! apart on a cluster (their slots differ), and many at once for a batch.
//!
//! Knows the commands, not the queue that coalesces reads (`reads`) nor
//! what a read means to the cache.

use std::time::Duration;

use bytes::Bytes;

use super::{bounded, parse_token, px, Link, RedisBackend};
use crate::backend::{EntryKeys, Fetched};
use crate::error::BackendError;

impl<C: Link> RedisBackend<C> {
    /// The entry at `name`: another type there (which `MGET` reads as nil)
    /// is no entry, and the store will replace it.
    pub(super) async fn entry(&self, name: &str) -> Result<Option<Bytes>, BackendError> {
        match self.query::<Option<Bytes>>(&sized("GET", [name])).await {
            Err(BackendError::Redis(e)) if e.code() == Some("WRONGTYPE") => Ok(None),
            entry => entry,
        }
    }

    /// A fetch whose parts are on different slots: the entry (and its
    /// sliding expiry) on its own, and the tags' tokens, sent together.
    pub(super) async fn fetch_apart(
        &self,
        keys: &EntryKeys,
        touch: Option<Duration>,
    ) -> Result<Fetched, BackendError> {
        let entry = async {
            let Some(ttl) = touch else {
                return self.entry(keys.entry()).await;
            };
            let mut pipe = redis::pipe();
            pipe.cmd("MGET").arg(keys.entry());
            pipe.cmd("PEXPIRE").arg(keys.entry()).arg(px(ttl)).ignore();
            let mut conn = self.conn.clone();
            let ((entry,),): ((Option<Vec<u8>>,),) =
                bounded(self.op_timeout, pipe.query_async(&mut conn)).await?;
            Ok(entry.map(Bytes::from))
        };
        let tags = async {
            if keys.tags().len() == 0 {
                return Ok(Vec::new());
            }
            let mget = sized("MGET", keys.tags());
            let tokens: Vec<Option<Vec<u8>>> = self.query(&mget).await?;
            Ok(tokens.iter().map(|t| parse_token(t.as_deref())).collect())
        };
        let (entry, tags) = tokio::try_join!(entry, tags)?;
        Ok(Fetched { entry, tags })
    }

    /// The values at `names` (nil for a missing key or another type): one
    /// `MGET` on a single node; on a cluster one per node, sent together,
    /// each through its node's breaker. With `touch`, `(ttl, n)`, the first
    /// `n` names' expiries are pushed out to `ttl` from now. `None` for the
    /// names of a node that failed, unless all failed: then the error.
    pub(super) async fn read_all(
        &self,
        names: &[String],
        touch: Option<(Duration, usize)>,
    ) -> Result<Vec<Option<Option<Vec<u8>>>>, BackendError> {
        let groups = self.by_node(names);
        let each = groups.iter().map(|group| {
            let mget = sized("MGET", group.iter().map(|&i| names[i].as_str()));
            let touched = touch.map(|(ttl, n)| (ttl, group.iter().filter(move |&&i| i < n)));
            self.part(&names[group[0]], async move {
                let Some((ttl, touched)) = touched else {
                    return self.query::<Vec<Option<Vec<u8>>>>(&mget).await;
                };
                let expire = |i: usize| {
                    let mut cmd = redis::cmd("PEXPIRE");
                    cmd.arg(&names[i]).arg(px(ttl));
                    cmd
                };
                if C::CLUSTER {
                    // A pipeline on a cluster keeps to one slot: each on its own.
                    let expiries = touched.map(|&i| {
                        let cmd = expire(i);
                        async move { self.query::<()>(&cmd).await }
                    });
                    let (values, _) =
                        tokio::try_join!(self.query(&mget), futures_util::future::try_join_all(expiries))?;
                    return Ok(values);
                }
                let mut pipe = redis::pipe();
                pipe.add_command(mget);
                for &i in touched {
                    pipe.add_command(expire(i)).ignore();
                }
                let mut conn = self.conn.clone();
                let (values,) = bounded(self.op_timeout, pipe.query_async(&mut conn)).await?;
                Ok(values)
            })
        });
        let parts = futures_util::future::join_all(each).await;
        if parts.iter().all(Result::is_err) {
            return Err(parts
                .into_iter()
                .find_map(Result::err)
                .expect("at least one part"));
        }
        let mut values = vec![None; names.len()];
        for (group, part) in groups.iter().zip(parts) {
            match part {
                Ok(part) => {
                    for (&i, value) in group.iter().zip(part) {
                        values[i] = Some(value);
                    }
                }
                Err(error) => tracing::debug!(%error, "aside: part of a batch read failed"),
            }
        }
        Ok(values)
    }
}

/// An entry and its tags' tokens, from their names' values in order.
pub(super) fn fetched(values: Vec<Option<Vec<u8>>>) -> Fetched {
    let mut values = values.into_iter();
    let entry = values.next().flatten().map(Bytes::from);
    let tags = values.map(|v| parse_token(v.as_deref())).collect();
    Fetched { entry, tags }
}

/// An `MGET` of an entry's names, read straight from the reply into what a
/// fetch returns: the entry, then its tags' tokens. (Read as
/// `Vec<Option<Vec<u8>>>` first, the reply's array was copied into a new
/// one, and then again for the tokens.) Each name's value reads as that type
/// would read it.
pub(super) struct Read(pub(super) Fetched);

impl redis::FromRedisValue for Read {
    fn from_redis_value(reply: redis::Value) -> Result<Self, redis::ParsingError> {
        let values = match reply {
            redis::Value::Array(values) => values,
            redis::Value::Nil => Vec::new(),
            other => return Err(format!("an MGET of an entry's names answered {other:?}").into()),
        };
        let mut values = values.into_iter().map(Option::<Vec<u8>>::from_redis_value);
        let entry = values.next().transpose()?.flatten().map(Bytes::from);
        let tags = values
            .map(|value| Ok(parse_token(value?.as_deref())))
            .collect::<Result<_, redis::ParsingError>>()?;
        Ok(Read(Fetched { entry, tags }))
    }
}

/// The command `name` with `args`, its buffers sized once (`redis::cmd`
/// grows them as arguments come: an allocation or two more on every read).
pub(super) fn sized<'a, I>(name: &str, args: I) -> redis::Cmd
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let args = args.into_iter();
    let (count, bytes) = args
        .clone()
        .fold((1, name.len()), |(n, b), arg| (n + 1, b + arg.len()));
    let mut cmd = redis::Cmd::with_capacity(count, bytes);
    cmd.arg(name);
    for arg in args {
        cmd.arg(arg);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use redis::{FromRedisValue, Value};

    use super::{fetched, Read};

    #[test]
    fn an_mget_reply_reads_as_the_entry_then_its_tokens() {
        let read = |reply| Read::from_redis_value(reply).map(|Read(fetched)| fetched);
        let got = read(Value::Array(vec![
            Value::BulkString(b"entry".to_vec()),
            Value::BulkString(b"42".to_vec()),
            Value::Nil,
            Value::BulkString(b"not a token".to_vec()),
        ]))
        .unwrap();
        assert_eq!(got.entry.as_deref(), Some(&b"entry"[..]));
        assert_eq!(got.tags, [Some(42), None, None]);

        // Whatever the reply, it reads as it did through `Vec<Option<Vec<u8>>>`.
        let odd = [
            Value::Nil,
            Value::Okay,
            Value::Int(7),
            Value::Array(vec![Value::Nil]),
            Value::Array(vec![Value::Nil, Value::Int(3), Value::Okay]),
            Value::Array(vec![Value::BulkString(b"e".to_vec()), Value::Array(vec![])]),
            Value::Array(vec![Value::Double(1.5), Value::Boolean(true)]),
        ];
        for reply in odd {
            let before = Vec::<Option<Vec<u8>>>::from_redis_value(reply.clone()).map(fetched);
            assert_eq!(read(reply.clone()).ok(), before.ok(), "{reply:?}");
        }
    }
}

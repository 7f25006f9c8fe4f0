//! Write-through and invalidation: `put`, `set`, `get`, `invalidate` and
//! tags, and the invalidation that follows an `#[invalidate]` function.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::observe::CallKind;
use super::slot::{Slot, Typed};
use super::{detached, Cache};
use crate::backend::EntryKeys;
use crate::cacheable::Cacheable;
use crate::clock::{now_ms, Instant};
use crate::counters::Counters;
use crate::entry::Entry;
use crate::error::{BackendError, Error};
use crate::function::Function;
use crate::policy::Policy;
use crate::tags::Stamp;
use tracing::Instrument;

impl Cache {
    /// The flow of [`Cache::put`]. Generic around the loader and the value;
    /// the write itself is [`write_behind`](Self::write_behind).
    pub(super) async fn write_through<T, E, F, Fut>(
        &self,
        key: &str,
        policy: &Policy,
        load: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let span = self.call_span(CallKind::Put, key, policy);
        #[cfg(feature = "testing")]
        self.record(|| crate::testing::Event::Put {
            function: policy.function_name(),
            key: key.to_owned(),
        });
        let keys = self.inner.keys(key, policy.tags());
        // The tag tokens are read before the new value is computed, as for a load.
        let tokens = self.tokens(&keys, policy).instrument(span.clone()).await;
        let started = Instant::now();
        // The error need not be `Send`: returned before any `.await`.
        let value = load().instrument(span.clone()).await?;
        // A value the policy skips is not stored; the key is still
        // invalidated, since the data changed.
        let slot = Typed(Some(value.clone()));
        let payload = (!slot.skipped_by(policy))
            .then(|| self.encode_slot(&keys, policy, &slot))
            .flatten()
            .filter(|payload| self.fits(&keys, policy, payload));
        let write = Write {
            keys,
            policy: policy.clone(),
            key: key.to_owned(),
            payload,
            tokens,
            load_time: started.elapsed(),
            value: Box::new(slot),
        };
        // Detached, so that the write's invalidation happens even if the
        // caller is cancelled now: the data has already changed.
        detached(self.clone().write_behind(write).instrument(span)).await;
        Ok(value)
    }

    /// Invalidates the key, then stores the written value under the tokens
    /// read before it was computed, and keeps it in process.
    async fn write_behind(self, write: Write) {
        let Write {
            keys,
            policy,
            key,
            payload,
            tokens,
            load_time,
            value,
        } = write;
        let guard = match self.invalidate_keys(&keys).await {
            Ok(guard) => guard,
            // Kept for replay, or reported: the value is not stored.
            Err(missed) => return missed.report(&self),
        };
        let (Some(payload), Some(tokens)) = (payload, tokens) else {
            return;
        };
        // After the invalidation (which voids older fills), before
        // the store (which makes the value visible).
        let local = self
            .inner
            .local_for(&policy, policy.touch(self.inner.settings.default_ttl));
        let watch = local.and_then(|local| local.watch(&key, keys.names()));
        let stamp = Stamp {
            guard,
            tags: tokens.tags,
        };
        let stored = self
            .store(&keys, &policy, &payload, &stamp, load_time, None)
            .await;
        if let (Some(watch), Some(meta)) = (watch, stored) {
            value.keep(&self, &watch, payload.len(), meta, &policy);
        }
    }

    /// The flow of [`Cache::get`].
    pub(super) async fn read_plain<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        if let Some(local) = &self.inner.local
            && let Some((bytes, codec, meta, tagless)) = local.encoded(key)
            && now_ms() < meta.fresh_until_ms
            && tagless
        {
            return Ok(codec.decode(&bytes).ok());
        }
        let keys = self.inner.keys(key, []);
        if self.covered(&keys) {
            return Ok(None);
        }
        let fetched = self.inner.call("fetch", |b| b.fetch(&keys, None)).await?;
        let Some(bytes) = fetched.entry else {
            return Ok(None);
        };
        match Entry::decode(&bytes) {
            Ok(entry) if entry.is_fresh(now_ms()) && entry.tag_versions().len() == 0 => {
                let value = entry.value(self.inner.settings.max_entry_size).ok();
                Ok(value.and_then(|value| entry.codec.decode(&value).ok()))
            }
            _ => Ok(None),
        }
    }

    /// The flow of [`Cache::set`].
    pub(super) async fn write_plain<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let ttl = ttl.unwrap_or(self.inner.settings.default_ttl);
        let codec = self.inner.settings.codec;
        let payload = codec.encode(value).map_err(Error::Encode)?;
        let limit = self.inner.settings.max_entry_size;
        if payload.len() > limit {
            Counters::incr(&self.inner.counters.oversized);
            let size = payload.len();
            return Err(Error::TooLarge { size, limit });
        }
        let keys = self.inner.keys(key, []);
        // Not stored if the invalidation did not land (it may be replayed).
        let guard = self.invalidate_keys(&keys).await.map_err(|missed| missed.error)?;
        if !ttl.is_zero() {
            let compress = self.inner.settings.compress_above;
            let Some(entry) = Entry::encode(now_ms(), ttl, Duration::ZERO, &[], (codec, &payload), compress)
            else {
                unreachable!("an entry without tags always encodes")
            };
            let meta = Entry::decode(&entry).ok().map(|entry| entry.meta());
            // After the invalidation, before the store, as for `put`.
            let watch = self
                .inner
                .local
                .as_ref()
                .and_then(|local| local.watch(key, keys.names()));
            // Refused only if another invalidation or write came in between,
            // which then wins: nothing to report.
            let stored = self
                .inner
                .call("store", |b| b.store(&keys, entry, ttl, guard, None))
                .await?;
            if let (true, Some(local), Some(watch), Some(meta)) = (stored, &self.inner.local, watch, meta) {
                local.fill_encoded(&watch, (codec, Bytes::from(payload)), meta, ttl);
            }
        }
        Ok(())
    }

    /// The flow of [`Cache::invalidate`].
    pub(super) async fn invalidate_key(&self, key: &str) -> Result<(), Error> {
        #[cfg(feature = "testing")]
        self.record(|| crate::testing::Event::Invalidate { key: key.to_owned() });
        let invalidated = self.invalidate_keys(&self.inner.keys(key, [])).await;
        self.inner.forget(key);
        match invalidated {
            Ok(_) => Ok(()),
            Err(missed) => Ok(missed.kept()?),
        }
    }

    /// Deletes the entry and gives the key a new guard token, returned.
    /// If the backend fails, the invalidation is kept for replay where it
    /// may land later.
    pub(super) async fn invalidate_keys(&self, keys: &EntryKeys) -> Result<u64, Missed> {
        let guard = self
            .inner
            .call("invalidate", |b| {
                b.invalidate(keys, self.inner.settings.invalidation_window)
            })
            .await;
        // After the backend (a read that starts from here on finds it
        // invalidated, and one that started before is voided), and after
        // a failure too: the data changed either way.
        self.inner.changed([keys.entry()]);
        guard.map_err(|error| {
            let kept = self.keep_for_replay(&error, |queue| queue.queue_key(keys));
            Missed { error, kept }
        })
    }

    /// The flow of [`Cache::invalidate_tags`].
    pub(super) async fn invalidate_tag_names<S: AsRef<str>>(&self, tags: &[S]) -> Result<(), Error> {
        #[cfg(feature = "testing")]
        for tag in tags {
            self.record(|| crate::testing::Event::InvalidateTag {
                tag: tag.as_ref().to_owned(),
            });
        }
        let names: Vec<String> = tags.iter().map(|t| self.inner.tag_key(t.as_ref())).collect();
        let done = self
            .inner
            .call("invalidate_tags", |b| b.invalidate_tags(&names))
            .await;
        self.inner.changed(names.iter().map(String::as_str));
        match done {
            Ok(()) => Ok(()),
            Err(error) if self.keep_for_replay(&error, |queue| queue.queue_tags(&names)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// What `#[invalidate]` runs after its body succeeded. Detached, so that
    /// it completes even if the caller is cancelled now (the data has already
    /// changed). A failure is logged and counted but not returned: the write
    /// itself succeeded.
    pub(crate) async fn invalidate_after_write(
        self,
        keys: Vec<String>,
        tags: Vec<String>,
        function: &Function,
    ) {
        #[cfg(feature = "testing")]
        let this = self.target().into_owned();
        #[cfg(not(feature = "testing"))]
        let this = self;
        let span = tracing::debug_span!("aside.invalidate", function = function.name());
        let write = async move {
            let mut failed = Vec::new();
            for key in &keys {
                #[cfg(feature = "testing")]
                this.record(|| crate::testing::Event::Invalidate { key: key.clone() });
                if let Err(missed) = this.invalidate_keys(&this.inner.keys(key, [])).await {
                    failed.extend(missed.kept().err());
                }
                this.inner.forget(key);
            }
            if !tags.is_empty()
                && let Err(Error::Backend(error)) = this.invalidate_tags(&tags).await
            {
                failed.push(error);
            }
            for error in failed {
                Counters::incr(&this.inner.counters.errors);
                tracing::error!(%error, ?keys, ?tags, "aside: invalidation after a write failed; entries may be stale until their TTL");
            }
        };
        detached(write.instrument(span)).await;
    }
}

/// An invalidation that did not land now: its error, and whether it was
/// kept for replay.
pub(super) struct Missed {
    pub(super) error: BackendError,
    kept: bool,
}

impl Missed {
    /// `Ok` if kept for replay (it lands once the backend answers), else
    /// the error.
    pub(super) fn kept(self) -> Result<(), BackendError> {
        if self.kept {
            Ok(())
        } else {
            Err(self.error)
        }
    }

    /// Logs and counts the error, unless it was kept for replay (logged then).
    pub(super) fn report(self, cache: &Cache) {
        if let Err(error) = self.kept() {
            cache.inner.report::<()>(Err(error));
        }
    }
}

/// A write-through's value, on its way to the backend.
struct Write {
    keys: EntryKeys,
    policy: Policy,
    key: String,
    /// `None`: not to be stored (it did not encode, or the policy skips it).
    payload: Option<Bytes>,
    /// The tokens read before the value was computed; `None`: the backend failed.
    tokens: Option<Stamp>,
    load_time: Duration,
    /// The value, for the in-process tier.
    value: Box<dyn Slot>,
}

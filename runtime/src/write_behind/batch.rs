//! What a flush function receives: a batch of changes, coalesced per record.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

use serde::de::DeserializeOwned;

use super::log::{Change, Raw};

/// Where a change stands in its log: the id Redis gave its stream entry,
/// `milliseconds-sequence`. Later changes have greater versions, so a
/// database that keeps each record's version can refuse an older value
/// (`... WHERE excluded.version > records.version`): last write wins even
/// when two flushers' batches arrive out of order.
///
/// # Examples
///
/// ```
/// let version: aside::write_behind::Version = "1764547200000-3".parse().unwrap();
/// assert_eq!((version.ms(), version.seq()), (1_764_547_200_000, 3));
/// assert!(version > "1764547200000-2".parse().unwrap());
/// assert_eq!(version.to_string(), "1764547200000-3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    ms: u64,
    seq: u64,
}

impl Version {
    /// When Redis logged the change, in milliseconds since the Unix epoch
    /// (by Redis's clock).
    pub fn ms(&self) -> u64 {
        self.ms
    }

    /// Which of the changes logged in that millisecond.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn parse(id: &str) -> Option<Version> {
        let (ms, seq) = id.split_once('-')?;
        Some(Version {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A text that is not `milliseconds-sequence`.
///
/// # Examples
///
/// ```
/// assert!("yesterday".parse::<aside::write_behind::Version>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a write-behind version (`milliseconds-sequence`)")]
pub struct ParseVersionError;

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s).ok_or(ParseVersionError)
    }
}

/// A record's value as last written within a batch.
///
/// # Examples
///
/// ```
/// // An upsert that keeps the later version (see `WriteBehind`).
/// fn upsert(written: &aside::write_behind::Written<u64, u32>) -> String {
///     let (id, price, v) = (written.id, written.value, written.version);
///     format!(
///         "INSERT INTO prices VALUES ({id}, {price}, {}, {}) ON CONFLICT (id) DO UPDATE ... \
///          WHERE (excluded.v_ms, excluded.v_seq) > (prices.v_ms, prices.v_seq)",
///         v.ms(),
///         v.seq()
///     )
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Written<K, V> {
    /// The record's id.
    pub id: K,
    /// Its latest value in the batch.
    pub value: V,
    /// That value's version.
    pub version: Version,
}

/// A counter's increments within a batch, summed.
///
/// # Examples
///
/// ```
/// fn update(counted: &aside::write_behind::Counted<u64>) -> String {
///     format!("UPDATE products SET views = views + {} WHERE id = {}", counted.delta, counted.id)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counted<K> {
    /// The counter's id.
    pub id: K,
    /// The sum of its increments in the batch.
    pub delta: i64,
    /// The version of its last increment in the batch.
    pub version: Version,
}

/// A batch of changes for a flush function, coalesced per record: the
/// last value written wins, and a counter's increments are summed.
///
/// A batch that is delivered again (its flush failed, or its flusher died
/// before acknowledging it) holds the same changes under the same
/// [`id`](Batch::id), so a flush function can tell a repeat: see
/// [`WriteBehind`](crate::write_behind::WriteBehind).
///
/// # Examples
///
/// ```
/// use std::collections::HashSet;
///
/// /// A flush function's work, on a database kept in memory: a batch
/// /// already applied is skipped, the rest applied.
/// fn apply(applied: &mut HashSet<aside::write_behind::Version>, views: &mut Vec<(u64, i64)>, batch: &aside::write_behind::Batch<u64, ()>) {
///     if !applied.insert(batch.id()) {
///         return; // delivered again: applied before
///     }
///     for counted in batch.counters() {
///         views.push((counted.id, counted.delta));
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Batch<K, V> {
    pub(crate) id: Version,
    pub(crate) values: Vec<Written<K, V>>,
    pub(crate) counters: Vec<Counted<K>>,
    pub(crate) changes: usize,
    pub(crate) redelivered: bool,
}

impl<K, V> Batch<K, V> {
    /// The batch's id: the version of its first change. The same each time
    /// the batch is delivered, and no other batch's while the log lives (a
    /// Redis that restarts without persistence starts the log again, and
    /// its ids could meet old ones only if its clock went back).
    pub fn id(&self) -> Version {
        self.id
    }

    /// The values written, one per record.
    pub fn values(&self) -> &[Written<K, V>] {
        &self.values
    }

    /// The counters incremented, one per counter.
    pub fn counters(&self) -> &[Counted<K>] {
        &self.counters
    }

    /// How many changes the batch covers, before coalescing.
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// Whether this batch was delivered before: to a flusher that died or
    /// whose flush failed. Its changes may have been applied already.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The values and the counters, owned.
    pub fn into_parts(self) -> (Vec<Written<K, V>>, Vec<Counted<K>>) {
        (self.values, self.counters)
    }
}

/// Coalesces `entries` into a batch. Entries that do not decode (another
/// type written under the same log name, a hand-written entry) are left
/// out and counted in the second value. `None` when no entry decoded.
pub(crate) fn coalesce<K, V>(entries: &[Raw], redelivered: bool) -> (Option<Batch<K, V>>, usize)
where
    K: DeserializeOwned + Eq + Hash + Clone,
    V: DeserializeOwned,
{
    let mut values: Vec<Written<K, V>> = Vec::new();
    let mut counters: Vec<Counted<K>> = Vec::new();
    let (mut value_at, mut counter_at) = (HashMap::new(), HashMap::new());
    // The id is over every entry, decodable or not: the same entries give
    // the same id to flushers whatever types they decode them as.
    let first = entries.iter().filter_map(|entry| entry.version).min();
    let (mut decoded, mut changes, mut undecodable) = (false, 0, 0);
    for entry in entries {
        let (Some(version), Some(fields)) = (entry.version, &entry.fields) else {
            undecodable += usize::from(entry.fields.is_some());
            continue;
        };
        let Ok(id) = serde_json::from_slice::<K>(&fields.key) else {
            undecodable += 1;
            continue;
        };
        match &fields.change {
            Change::Set(bytes) => {
                let Ok(value) = serde_json::from_slice::<V>(bytes) else {
                    undecodable += 1;
                    continue;
                };
                let written = Written {
                    id: id.clone(),
                    value,
                    version,
                };
                match value_at.get(&id) {
                    Some(&at) => {
                        let slot: &mut Written<K, V> = &mut values[at];
                        if version > slot.version {
                            *slot = written;
                        }
                    }
                    None => {
                        value_at.insert(id, values.len());
                        values.push(written);
                    }
                }
            }
            Change::Add(delta) => match counter_at.get(&id) {
                Some(&at) => {
                    let slot: &mut Counted<K> = &mut counters[at];
                    slot.delta = slot.delta.saturating_add(*delta);
                    slot.version = slot.version.max(version);
                }
                None => {
                    counter_at.insert(id.clone(), counters.len());
                    counters.push(Counted {
                        id,
                        delta: *delta,
                        version,
                    });
                }
            },
        }
        changes += 1;
        decoded = true;
    }
    let batch = first.filter(|_| decoded).map(|id| Batch {
        id,
        values,
        counters,
        changes,
        redelivered,
    });
    (batch, undecodable)
}

#[cfg(test)]
mod tests {
    use super::super::log::{Change, Fields, Raw};
    use super::{coalesce, Version};

    fn entry(id: &str, key: u32, change: Change) -> Raw {
        Raw {
            id: id.into(),
            version: Version::parse(id),
            fields: Some(Fields {
                key: serde_json::to_vec(&key).unwrap(),
                change,
            }),
        }
    }

    fn set(value: &str) -> Change {
        Change::Set(serde_json::to_vec(value).unwrap())
    }

    #[test]
    fn the_last_value_wins_and_increments_add_up() {
        let entries = [
            entry("5-0", 1, set("a")),
            entry("5-1", 1, set("b")),
            entry("6-0", 2, set("c")),
            entry("6-1", 7, Change::Add(2)),
            entry("7-0", 7, Change::Add(-5)),
            entry("8-0", 8, Change::Add(1)),
        ];
        let (batch, undecodable) = coalesce::<u32, String>(&entries, false);
        let batch = batch.unwrap();
        assert_eq!(undecodable, 0);
        assert_eq!(batch.id().to_string(), "5-0");
        assert_eq!(batch.changes(), 6);
        let values: Vec<_> = batch
            .values()
            .iter()
            .map(|w| (w.id, w.value.as_str(), w.version.to_string()))
            .collect();
        assert_eq!(values, [(1, "b", "5-1".into()), (2, "c", "6-0".into())]);
        let counters: Vec<_> = batch
            .counters()
            .iter()
            .map(|c| (c.id, c.delta, c.version.to_string()))
            .collect();
        assert_eq!(counters, [(7, -3, "7-0".into()), (8, 1, "8-0".into())]);
    }

    #[test]
    fn a_later_value_read_first_still_wins() {
        let entries = [entry("9-0", 1, set("new")), entry("3-0", 1, set("old"))];
        let batch = coalesce::<u32, String>(&entries, true).0.unwrap();
        assert_eq!(batch.values()[0].value, "new");
        assert_eq!(batch.id().to_string(), "3-0");
        assert!(batch.redelivered());
    }

    #[test]
    fn entries_that_do_not_decode_are_left_out_and_counted() {
        let deleted = Raw {
            id: "1-0".into(),
            version: Version::parse("1-0"),
            fields: None,
        };
        let entries = [
            deleted,
            entry("2-0", 1, Change::Set(b"{not json".to_vec())),
            entry("3-0", 1, set("ok")),
        ];
        let (batch, undecodable) = coalesce::<u32, String>(&entries, false);
        assert_eq!(undecodable, 1, "a deleted entry is not counted");
        let batch = batch.unwrap();
        assert_eq!(batch.changes(), 1);
        assert_eq!(batch.id().to_string(), "1-0", "the id is over every entry");
        assert!(coalesce::<u32, String>(&entries[..2], false).0.is_none());
    }
}

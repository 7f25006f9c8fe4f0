//! What a lookup finds and plans: the values the flows pass between
//! them (a read's `Found`, the in-process tier's `InProcess`, a lookup's
//! `Plan` and `Begin`, a planned load's `Pending`). Types only: the flows
//! that make and take them live in `lookup.rs`, `stampede.rs`, `batch.rs`.

use std::time::Duration;

use super::observe::Observed;
use super::scoped::Mode;
use super::Under;
use crate::backend::EntryKeys;
use crate::clock::Instant;
use crate::entry::Meta;
use crate::l1::Watch;

/// What a read found; a value it found is in the caller's slot.
pub(super) enum Found {
    /// A value to return.
    Fresh,
    /// A value to return unless this caller wins the refresh.
    Due(Due),
    /// A value past its fresh time, kept for fail-safe: a miss, whose load
    /// it stands in for if that fails.
    Expired(Meta),
    /// A value past its time: a miss.
    Gone,
}

/// What the in-process tier holds for a lookup.
pub(super) enum InProcess {
    /// A fresh value, in the slot.
    Hit,
    /// A value due for a refresh, in the slot.
    Due(Due),
    /// A value kept for fail-safe, in the slot: see [`Found::Expired`].
    Expired(Meta),
    Miss,
}

/// What a lookup comes to before its loader runs. (Returned once per
/// lookup and taken apart at once: boxing `Load` would only cost.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Begin {
    /// The value is in the slot, and the lookup counted.
    Answer,
    /// Run the loader; `None`: alone, past the cache.
    Load(Option<Pending>),
}

/// Where the read path goes on from the in-process tier (see
/// `Cache::look_first`).
pub(super) struct First {
    pub(super) mode: Mode,
    pub(super) observed: Observed,
    pub(super) in_process: InProcess,
}

/// How a call was served.
pub(super) enum Served {
    /// With the value in the loader's slot.
    Value,
    /// With its loader's error.
    Error,
}

/// A load that a lookup planned, and what its value needs afterwards.
pub(super) struct Pending {
    pub(super) keys: EntryKeys,
    /// The in-process tier's, taken before the backend was read.
    pub(super) watch: Option<Watch>,
    pub(super) under: Under,
    pub(super) started: Instant,
    /// Whether it refreshes a value (its failure is a refresh error).
    pub(super) refresh: Refresh,
    /// What stands in if it fails.
    pub(super) standby: Option<Standby>,
}

/// How long a caller waits for its load running on a task of its own before
/// its standby answers.
pub(super) struct SoftWait {
    pub(super) after: Duration,
    pub(super) standby: Standby,
}

/// A value that stands in for a load if it fails (in the caller's slot):
/// one due for a refresh, or kept for fail-safe.
#[derive(Debug, Clone, Copy)]
pub(super) struct Standby {
    /// What it was stored with.
    pub(super) meta: Meta,
    /// The lookup's outcome is counted when the load ends.
    pub(super) uncounted: bool,
    /// With a soft timeout: until when the lookup waits, once it began to.
    pub(super) soft_until: Option<Instant>,
}

impl Standby {
    pub(super) fn new(meta: Meta) -> Self {
        Standby {
            meta,
            uncounted: false,
            soft_until: None,
        }
    }
}

/// A value due for a refresh.
#[derive(Clone, Copy)]
pub(super) struct Due {
    /// What it was stored with. A re-read that finds another `stored_at`
    /// finds another caller's refresh.
    pub(super) meta: Meta,
    /// Whether the value may stand in for a failed refresh: yes while it is
    /// fresh (early) or stale within swr's window. An early entry past its
    /// TTL is only served while another caller refreshes it.
    pub(super) fallback: bool,
}

/// What a lookup comes to, before its loader (if any) runs.
// Returned once per lookup and taken apart at once: boxing `Load` would only cost.
#[allow(clippy::large_enum_variant)]
pub(super) enum Plan {
    /// The value is in the slot, and the lookup counted.
    Answer,
    /// The lookup's standby answers it: a soft timeout passed while it
    /// waited (from [`plan_locked`](Cache::plan_locked) only; not counted).
    Standby,
    /// Run the loader under `under`; its cost runs from `started`.
    Load {
        under: Under,
        started: Instant,
        /// Whether it refreshes a value.
        refresh: Refresh,
        /// What stands in if it fails.
        standby: Option<Standby>,
    },
}

impl Plan {
    pub(super) fn load(under: Under, started: Instant) -> Self {
        Plan::Load {
            under,
            started,
            refresh: Refresh::No,
            standby: None,
        }
    }
}

/// Whether a load refreshes a value.
#[derive(Clone, Copy)]
pub(super) enum Refresh {
    No,
    /// Under [`refresh`](crate::refresh): nothing in the slot.
    Forced,
    /// A value due for a refresh, which is in the slot.
    Due,
    /// The same, refreshed on a task of its own, which takes the refresh
    /// lock first (see [`Cache::lock_refresh`]): its caller is answered
    /// without waiting even for that.
    Unlocked(Due),
}

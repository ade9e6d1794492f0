//! Ordered lanes: several requests out to one storage at once, and still every series in
//! timestamp order.
//!
//! A storage without an out-of-order window (Prometheus, Mimir and Thanos by default)
//! rejects a sample that is not newer than the newest one of its series. Two requests out
//! at once may be applied in either order. So the invariant is: **a batch goes out while
//! others are out only when it shares no series with any batch of the window** (every
//! batch sent or waiting, until the cursor moves past it). A batch that shares a series
//! waits until the earlier batch is settled. Retries do not break this: a batch stays in
//! the window, with its series, until its final answer.
//!
//! A series is recognised by its key ([`crate::wire::series_hash`], a hash of its labels
//! as stored, so as the storage sees them). The same series always has the same key, so order is never
//! lost. Two series may share a key; that only holds a batch back.
//!
//! Keys cost a decompression and a walk over every series. The worker computes them only
//! when the storage is slow to answer every time ([`Pace`], see `worker`). A near storage
//! answers sooner, and its batches go one at a time without keys. A 2.0 record has no keys here (its
//! labels are references into its own symbols table): it goes alone.

use std::sync::Arc;
use std::time::Duration;

use crate::wal::Record;
use crate::wire::{series_hashes, Version};

/// The series of one batch, as sorted, distinct keys. Shared: the batch and the lanes
/// hold the same keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Keys(Arc<[u64]>);

impl Keys {
    /// The keys of every series in `records`. `None` when some record is 2.0 or cannot
    /// be read: the batch then goes alone.
    pub(super) fn of(records: &[Record]) -> Option<Keys> {
        let mut keys = Vec::new();
        let mut decoder = snap::raw::Decoder::new();
        let mut raw = Vec::new();
        for record in records {
            if record.protocol != Version::V1 {
                return None;
            }
            let len = snap::raw::decompress_len(&record.payload).ok()?;
            raw.resize(len, 0);
            decoder.decompress(&record.payload, &mut raw).ok()?;
            series_hashes(&raw, &mut keys).ok()?;
        }
        Some(Keys::from(keys))
    }

    /// How many distinct keys.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key is in both. One merge walk over the two sorted lists: for the few
    /// batches of a window this costs less than a map of every key held, which the
    /// profile showed at a seventh of the relay's CPU.
    fn disjoint(&self, other: &Keys) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        match (a.first(), a.last(), b.first(), b.last()) {
            (Some(a0), Some(a1), Some(b0), Some(b1)) if a0 <= b1 && b0 <= a1 => {}
            _ => return true,
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i], b[j]);
            if x == y {
                return false;
            }
            i += usize::from(x < y);
            j += usize::from(y < x);
        }
        true
    }
}

impl From<Vec<u64>> for Keys {
    fn from(mut keys: Vec<u64>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        Keys(keys.into())
    }
}

/// What the window knows of one batch's series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Series {
    /// Not computed yet.
    Unknown,
    /// Computed.
    Known(Keys),
    /// Cannot be known (a 2.0 record, or a payload that does not read): the batch shares
    /// a series with every other.
    Any,
}

impl Series {
    /// From what [`Keys::of`] returned.
    pub(super) fn computed(keys: Option<Keys>) -> Series {
        keys.map_or(Series::Any, Series::Known)
    }
}

/// The series of every batch in the window.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    /// The keys of each batch of the window whose series are known (a batch twice in
    /// the window is here twice).
    held: Vec<Keys>,
    /// Batches of the window whose series are not known: while there is one, no batch
    /// goes out beside others.
    blind: usize,
}

impl Lanes {
    /// Whether a batch with `series` may go out now beside the window's batches.
    pub(super) fn admits(&self, series: &Series) -> bool {
        match series {
            Series::Known(keys) => self.blind == 0 && self.held.iter().all(|h| h.disjoint(keys)),
            Series::Unknown | Series::Any => false,
        }
    }

    /// A batch with `series` entered the window.
    pub(super) fn enter(&mut self, series: &Series) {
        match series {
            Series::Known(keys) => self.held.push(keys.clone()),
            Series::Unknown | Series::Any => self.blind += 1,
        }
    }

    /// A batch with `series` left the window (it was settled).
    pub(super) fn leave(&mut self, series: &Series) {
        match series {
            Series::Known(keys) => {
                let at = self
                    .held
                    .iter()
                    .position(|h| Arc::ptr_eq(&h.0, &keys.0))
                    .or_else(|| self.held.iter().position(|h| h == keys));
                if let Some(at) = at {
                    self.held.swap_remove(at);
                }
            }
            Series::Unknown | Series::Any => self.blind = self.blind.saturating_sub(1),
        }
    }

    /// Whether nothing is held: the window is empty.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty() && self.blind == 0
    }
}

/// Answers that tell a slow storage: lanes pay off only when every one was slow.
const PACE_ANSWERS: usize = 8;

/// How long the storage took to answer the last requests. A far storage is slow every
/// time (its round trip); a near one that is busy is slow now and then. Only the first
/// gains from lanes; for the second, keys would cost the relay CPU it needs.
#[derive(Debug, Default)]
pub(super) struct Pace {
    last: [Duration; PACE_ANSWERS],
    answered: usize,
}

impl Pace {
    /// One more answer, `took` after its request went out.
    pub(super) fn answered(&mut self, took: Duration) {
        self.last[self.answered % PACE_ANSWERS] = took;
        self.answered += 1;
    }

    /// Whether each of the last answers took `after` or more.
    pub(super) fn slow(&self, after: Duration) -> bool {
        self.answered >= PACE_ANSWERS && self.last.iter().all(|t| *t >= after)
    }
}

#[cfg(test)]
pub(super) mod tests;

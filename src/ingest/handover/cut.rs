//! Where the old source ended: the per-series cut of a handover.
//!
//! A cut says, per series, which samples of the new source may still be forwarded: only
//! those strictly newer than the old source's last sample of that series plus half its
//! step. Series are matched by a [`SeriesKey`] that leaves out the labels telling the two
//! sources apart (their external labels, e.g. `replica`), so the cut is exact per series
//! even when the replica label reaches the storage.
//!
//! The old source's writes are read newest first, and only until they reach
//! [`LOOKBACK_STEPS`] usual steps back: at a high rate its ring holds millions of samples,
//! and the newest steps name every series that is scraped at the usual interval.
//!
//! A series the old source did not forward in what was read (a series only the new source
//! has, one scraped less often than the others, or one older than the ring) is cut at the
//! group's *handover point*: the newest sample the group forwarded plus half the usual
//! step. Such a series loses the part of the new source's data older than that point,
//! never more.

use super::super::error::IngestError;
use super::super::trim::{learn_ends, ConstantLabels, SeriesEnd, SeriesKey, SeriesMap};
use super::ring::{Entry, RingName};
use super::Held;

/// The writes of each side read to learn its constant labels: the newest ones. Every
/// series of a sender carries its external labels, so a few writes suffice.
pub(super) const LABEL_SAMPLE_WRITES: usize = 8;

/// How far back, in usual steps, the old source's writes are read: two steps give every
/// regular series its last sample and its step; the third is a margin for late shards.
const LOOKBACK_STEPS: i64 = 3;

/// The old source's writes read between two looks at how far back they reach.
const LOOK_EVERY: usize = 16;

/// The step the cut assumes when neither side shows two samples of any series (a takeover
/// right after the old source's first scrape, or scrape intervals longer than the window):
/// one second, the shortest common scrape interval. With a longer real interval the new
/// source's samples less than half a second after the old source's last one are still
/// dropped (later ones may crowd it); with a shorter one the new source loses at most half
/// a second.
const UNKNOWN_STEP_MS: i64 = 1_000;

/// The cut of one handover.
pub(super) struct Cut {
    /// How series are matched across the two sources.
    pub(super) key: SeriesKey,
    /// Per series: forward only samples strictly newer than this.
    thresholds: SeriesMap<i64>,
    /// The handover point, for series the old source did not forward.
    fallback: i64,
    /// The largest threshold: a write entirely past it needs no trimming.
    pub(super) max: i64,
    /// The smallest threshold: a write entirely at or before it is dropped whole.
    pub(super) min: i64,
    /// Writes of the old source read to learn it.
    pub(super) old_writes_read: usize,
}

/// What the cut is learned from.
pub(super) struct Sides<'a> {
    /// What the old source forwarded, newest first.
    pub(super) old: &'a [Entry],
    /// The old source's ring.
    pub(super) old_name: &'a RingName,
    /// The new source's newest held writes, newest first, and then its live write.
    pub(super) new: &'a [Held],
    /// The newest sample the group forwarded, if any.
    pub(super) last_ts: Option<i64>,
    /// The ingest's decoded size limit.
    pub(super) max_decoded_bytes: u64,
}

impl Cut {
    /// The cut between the two sides, `None` when the group never forwarded a sample.
    pub(super) fn learn(sides: &Sides<'_>) -> Result<Option<Cut>, IngestError> {
        let limit = sides.max_decoded_bytes;
        let old_held = || sides.old.iter().filter_map(|e| e.read(sides.old_name));
        // One write decoded at a time: the old side's ring can hold its whole byte cap.
        let mut old_labels = ConstantLabels::default();
        for held in old_held().take(LABEL_SAMPLE_WRITES) {
            old_labels.learn(&held.decoded_v1(limit)?)?;
        }
        let mut new_labels = ConstantLabels::default();
        for held in sides.new {
            new_labels.learn(&held.decoded_v1(limit)?)?;
        }
        let key = SeriesKey::skipping(old_labels.telling_apart(&new_labels));
        let (ends, old_writes_read) = learn_old_ends(sides, &key)?;
        let newest_end = ends.values().map(|e| e.last).max();
        let Some(end) = newest_end.max(sides.last_ts) else {
            return Ok(None);
        };
        // The usual step: the old source's, else the new source's (same scrape configs).
        let step = match median_step(&ends) {
            Some(step) => step,
            None => {
                let mut new_ends = SeriesMap::default();
                for held in sides.new {
                    // A write the cut cannot read was refused at ingest: nothing to learn.
                    if let Ok(raw) = held.decoded_v1(limit) {
                        let _ = learn_ends(&raw, &key, &mut new_ends);
                    }
                }
                median_step(&new_ends).unwrap_or(UNKNOWN_STEP_MS)
            }
        };
        let thresholds: SeriesMap<i64> = ends
            .into_iter()
            .map(|(k, e)| {
                let e = if e.step > 0 {
                    e
                } else {
                    SeriesEnd { step, ..e }
                };
                (k, e.threshold())
            })
            .collect();
        let fallback = SeriesEnd { last: end, step }.threshold();
        let max = thresholds.values().copied().fold(fallback, i64::max);
        let min = thresholds.values().copied().fold(fallback, i64::min);
        Ok(Some(Cut {
            key,
            thresholds,
            fallback,
            max,
            min,
            old_writes_read,
        }))
    }

    /// The newest sample time of `series` that must not be forwarded.
    pub(super) fn threshold(&self, series: u64) -> i64 {
        self.thresholds
            .get(&series)
            .copied()
            .unwrap_or(self.fallback)
    }

    /// After forwarding `raw`, nothing at or before its samples may follow, per series
    /// (guards against a sender re-sending what was backfilled).
    pub(super) fn advance(&mut self, raw: &[u8]) -> Result<(), IngestError> {
        let mut ends = SeriesMap::default();
        learn_ends(raw, &self.key, &mut ends)?;
        for (series, end) in ends {
            let t = self.thresholds.entry(series).or_insert(self.fallback);
            *t = (*t).max(end.last);
            self.max = self.max.max(*t);
        }
        Ok(())
    }
}

/// The ends of the old source's series, from its newest writes back to [`LOOKBACK_STEPS`]
/// usual steps behind its newest sample; and how many writes that took.
fn learn_old_ends(
    sides: &Sides<'_>,
    key: &SeriesKey,
) -> Result<(SeriesMap<SeriesEnd>, usize), IngestError> {
    let mut ends = SeriesMap::default();
    let newest = sides.old.iter().map(|e| e.meta.max_ts).max();
    let mut read = 0usize;
    for entry in sides.old {
        let Some(held) = entry.read(sides.old_name) else {
            continue;
        };
        learn_ends(&held.decoded_v1(sides.max_decoded_bytes)?, key, &mut ends)?;
        read += 1;
        if read.is_multiple_of(LOOK_EVERY) {
            let reach = newest.unwrap_or(0).saturating_sub(entry.meta.min_ts);
            if median_step(&ends).is_some_and(|step| reach >= LOOKBACK_STEPS * step) {
                break;
            }
        }
    }
    Ok((ends, read))
}

/// The median of the known steps (0 is unknown).
fn median_step(ends: &SeriesMap<SeriesEnd>) -> Option<i64> {
    let mut steps: Vec<i64> = ends.values().map(|e| e.step).filter(|s| *s > 0).collect();
    if steps.is_empty() {
        return None;
    }
    let mid = steps.len() / 2;
    Some(*steps.select_nth_unstable(mid).1)
}

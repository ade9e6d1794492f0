//! Where the old source ended: the per-series cut of a handover.
//!
//! A cut says, per series, which samples of the new source may still be forwarded: only
//! those strictly newer than the old source's last sample of that series plus half its
//! step. Series are matched by a [`SeriesKey`] that leaves out the labels telling the two
//! sources apart (their external labels, e.g. `replica`), so the cut is exact per series
//! even when the replica label reaches the storage.
//!
//! A series the old source did not forward within the held window (a series only the new
//! source has, or one older than the ring) is cut at the group's *handover point*: the
//! newest sample the group forwarded plus half the usual step. Such a series loses the
//! part of the new source's data older than that point, never more.

use std::collections::HashMap;

use super::super::decode::decompress;
use super::super::error::IngestError;
use super::super::trim::{learn_ends, ConstantLabels, SeriesEnd, SeriesKey};
use super::Held;

/// The writes of each side read to learn its constant labels: the newest ones. Every
/// series of a sender carries its external labels, so a few writes suffice; reading all
/// of a ring at a high rate would cost seconds.
const LABEL_SAMPLE_WRITES: usize = 32;

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
    thresholds: HashMap<u64, i64>,
    /// The handover point, for series the old source did not forward.
    fallback: i64,
    /// The largest threshold: a write entirely past it needs no trimming.
    pub(super) max: i64,
}

/// What the cut is learned from.
pub(super) struct Sides<'a> {
    /// What the old source forwarded, oldest first.
    pub(super) old: &'a [Held],
    /// What the new source holds, oldest first, and then its live write.
    pub(super) new: &'a [&'a Held],
    /// The newest sample the group forwarded, if any.
    pub(super) last_ts: Option<i64>,
    /// The ingest's decoded size limit.
    pub(super) max_decoded_bytes: u64,
}

impl Cut {
    /// The cut between the two sides, `None` when the group never forwarded a sample.
    pub(super) fn learn(sides: &Sides<'_>) -> Result<Option<Cut>, IngestError> {
        let limit = sides.max_decoded_bytes;
        // One write decoded at a time on the old side: its ring can hold the byte cap.
        let mut old_labels = ConstantLabels::default();
        let old_newest = sides.old.len().saturating_sub(LABEL_SAMPLE_WRITES);
        for held in &sides.old[old_newest..] {
            old_labels.learn(&decompress(&held.payload, limit)?)?;
        }
        let new_newest = sides.new.len().saturating_sub(LABEL_SAMPLE_WRITES);
        let new_raw = sides.new[new_newest..]
            .iter()
            .map(|h| decompress(&h.payload, limit))
            .collect::<Result<Vec<_>, _>>()?;
        let mut new_labels = ConstantLabels::default();
        for raw in &new_raw {
            new_labels.learn(raw)?;
        }
        let key = SeriesKey::skipping(old_labels.telling_apart(&new_labels));

        let mut ends = HashMap::new();
        for held in sides.old {
            learn_ends(&decompress(&held.payload, limit)?, &key, &mut ends)?;
        }
        let newest_end = ends.values().map(|e| e.last).max();
        let Some(end) = newest_end.max(sides.last_ts) else {
            return Ok(None);
        };
        // The usual step: the old source's, else the new source's (same scrape configs).
        let step = median_step(&ends).or_else(|| {
            let mut new_ends = HashMap::new();
            for raw in &new_raw {
                // A write the cut cannot read was refused at ingest: nothing to learn.
                let _ = learn_ends(raw, &key, &mut new_ends);
            }
            median_step(&new_ends)
        });
        let step = step.unwrap_or(UNKNOWN_STEP_MS);
        let thresholds: HashMap<u64, i64> = ends
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
        Ok(Some(Cut {
            key,
            thresholds,
            fallback,
            max,
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
        let mut ends = HashMap::new();
        learn_ends(raw, &self.key, &mut ends)?;
        for (series, end) in ends {
            let t = self.thresholds.entry(series).or_insert(self.fallback);
            *t = (*t).max(end.last);
            self.max = self.max.max(*t);
        }
        Ok(())
    }
}

/// The median of the known steps (0 is unknown).
fn median_step(ends: &HashMap<u64, SeriesEnd>) -> Option<i64> {
    let mut steps: Vec<i64> = ends.values().map(|e| e.step).filter(|s| *s > 0).collect();
    if steps.is_empty() {
        return None;
    }
    let mid = steps.len() / 2;
    Some(*steps.select_nth_unstable(mid).1)
}

//! Recovery at start-up: rebuilds the in-memory index of buffered records from the span
//! trees, from the persisted floor on, and moves the records of an earlier version's single
//! tree into spans first.
//!
//! # Invariants
//! - Records below the floor (`first_seq` in `meta`) have left the buffer: they are not
//!   indexed, even while their span is still stored, and spans wholly below it are dropped.
//! - A damaged record (checksum, truncation) is removed on its own with an ERROR line and
//!   leaves a hole in the index; the rest of the buffer stays.
//! - The next sequence is the largest of the persisted high-water mark, the floor and the
//!   last stored record + 1, so it never lands behind a cursor after a full drain.

use std::collections::VecDeque;

use super::log::{be, seq_of, Entry, FIRST_SEQ, NEXT_SEQ};
use super::record::Record;
use super::spans::Spans;
use super::WalError;
use crate::disk_sync::DiskSync;
use crate::metrics::METRICS;

/// What recovery found.
pub(super) struct Recovered {
    pub(super) index: VecDeque<Entry>,
    pub(super) first_seq: u64,
    pub(super) next_seq: u64,
    pub(super) bytes: u64,
    pub(super) damaged: u64,
}

/// Scans the spans (after migrating an earlier version's tree) and prepares the span the
/// next append goes to.
pub(super) fn recover(
    spans: &Spans,
    meta: &sled::Tree,
    sync: &DiskSync,
    db: &sled::Db,
) -> Result<Recovered, WalError> {
    migrate_legacy(spans, sync, db)?;
    let floor = meta.get(FIRST_SEQ)?.and_then(|v| seq_of(&v)).unwrap_or(0);

    let mut index = VecDeque::new();
    let mut first_seq = None;
    let mut bytes = 0u64;
    let mut damaged = 0u64;
    let mut last = None;
    for tree in spans.all() {
        for item in tree.range(be(floor)..) {
            let (key, value) = item?;
            let Some(seq) = seq_of(&key) else {
                tracing::error!(key = ?key, "wal: removing a record with a malformed key");
                tree.remove(key)?;
                continue;
            };
            if value.is_empty() {
                // A placeholder: no record was stored under it.
                continue;
            }
            let first = *first_seq.get_or_insert(seq);
            // Holes (records removed as damaged) keep the index contiguous.
            while first + (index.len() as u64) < seq {
                index.push_back(hole());
            }
            match Record::decode_meta(&value) {
                Ok(m) => {
                    index.push_back(Entry::new(value.len(), &m));
                    bytes += value.len() as u64;
                }
                Err(e) => {
                    tracing::error!(seq, error = %e, "wal: damaged record removed at recovery; its samples are lost");
                    METRICS.wal_damaged.inc();
                    tree.remove(key)?;
                    index.push_back(hole());
                    damaged += 1;
                }
            }
            last = Some(seq);
        }
    }
    let hwm = meta.get(NEXT_SEQ)?.and_then(|v| seq_of(&v)).unwrap_or(0);
    let next_seq = hwm.max(floor).max(last.map_or(0, |l| l + 1));
    let first_seq = first_seq.unwrap_or(next_seq);
    spans.prepare(next_seq)?;
    // Spans a failed drop left behind.
    spans.drop_below(floor.min(first_seq))?;
    Ok(Recovered {
        index,
        first_seq,
        next_seq,
        bytes,
        damaged,
    })
}

fn hole() -> Entry {
    Entry {
        len: 0,
        received_ms: 0,
        min_ts: i64::MAX,
        max_ts: i64::MIN,
    }
}

/// Moves the records of the single tree earlier versions kept into spans, makes them
/// durable, then drops the old tree. A crash before the drop repeats the move at the next
/// start (the same keys and values again), so no record is lost either way.
fn migrate_legacy(spans: &Spans, sync: &DiskSync, db: &sled::Db) -> Result<(), WalError> {
    let Some(legacy) = spans.legacy()? else {
        return Ok(());
    };
    let mut moved = 0u64;
    for item in legacy.iter() {
        let (key, value) = item?;
        match seq_of(&key) {
            Some(seq) if !value.is_empty() => {
                spans.insert(seq, &value)?;
                moved += 1;
            }
            _ => {
                tracing::error!(key = ?key, "wal: dropping a malformed key of the old records tree")
            }
        }
    }
    sync.flush(db)?;
    spans.drop_legacy()?;
    sync.flush(db)?;
    tracing::info!(
        records = moved,
        "wal: records moved from the old single tree into spans"
    );
    Ok(())
}

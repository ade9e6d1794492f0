//! Recovery at start-up. It first moves an earlier version's sled trees into segments. Then
//! it opens the segments from the persisted floor on and rebuilds the in-memory index.
//!
//! # Invariants
//! - Records below the floor (`first_seq` in `meta`) have left the buffer. Recovery does
//!   not index them, even while their segment is still stored. It deletes the segments
//!   wholly below the floor.
//! - Recovery reports a damaged record (checksum, truncation) with an ERROR line. It marks
//!   the record removed and leaves a hole in the index. The rest of the buffer stays.
//!   Damaged framing gets the same treatment: the records it hides become holes.
//! - A crash can cut short the last write of a segment. That write was never
//!   acknowledged, so recovery cuts it off with a WARN line. A reused segment file still
//!   holds old records after its end. Recovery cuts them off with an INFO line.
//! - The next sequence is the largest of three values: the persisted high-water mark, the
//!   floor, and the last stored record + 1. So it never lands behind a cursor after a full
//!   drain.

use std::collections::VecDeque;
use std::path::Path;

use super::index::{seq_of, Entry, FIRST_SEQ, NEXT_SEQ};
use super::segments::{Damage, Recovered as Found, Segments};
use super::WalError;
use crate::disk_sync::DiskSync;
use crate::metrics::METRICS;

/// What recovery found.
pub(super) struct Recovered {
    pub(super) segments: Segments,
    pub(super) index: VecDeque<Entry>,
    pub(super) first_seq: u64,
    pub(super) next_seq: u64,
    pub(super) bytes: u64,
    pub(super) damaged: u64,
}

/// Opens the segments in `dir` and indexes the buffered records.
pub(super) fn recover(
    dir: &Path,
    segment_bytes: u64,
    meta: &sled::Tree,
    sync: &DiskSync,
    db: &sled::Db,
) -> Result<Recovered, WalError> {
    let floor = meta.get(FIRST_SEQ)?.and_then(|v| seq_of(&v)).unwrap_or(0);
    let (mut segments, mut found, damage) = Segments::open(dir, floor, segment_bytes)?;
    let mut damaged = report(&damage);
    if super::migrate::from_sled(db, sync, &segments, floor)? > 0 {
        // Read back what was moved, as any other start does.
        drop(segments);
        let damage;
        (segments, found, damage) = Segments::open(dir, floor, segment_bytes)?;
        damaged += report(&damage);
    }

    let mut index = VecDeque::new();
    let mut first_seq = None;
    let mut bytes = 0u64;
    for Found { seq, len, meta } in found {
        let first = *first_seq.get_or_insert(seq);
        // Holes (records removed as damaged) keep the index contiguous.
        while first + (index.len() as u64) < seq {
            index.push_back(hole());
        }
        match meta {
            Ok(m) => {
                index.push_back(Entry::new(len as usize, &m));
                bytes += u64::from(len);
            }
            Err(e) => {
                tracing::error!(seq, error = %e, "wal: damaged record removed at recovery; its samples are lost");
                METRICS.wal.damaged.inc();
                index.push_back(hole());
                damaged += 1;
            }
        }
    }
    let hwm = meta.get(NEXT_SEQ)?.and_then(|v| seq_of(&v)).unwrap_or(0);
    let last = segments.last_seq();
    let next_seq = hwm.max(floor).max(last.map_or(0, |l| l + 1));
    let first_seq = first_seq.unwrap_or(next_seq);
    Ok(Recovered {
        segments,
        index,
        first_seq,
        next_seq,
        bytes,
        damaged,
    })
}

/// Logs damaged framing (ERROR) and writes cut short (WARN). Returns the number of
/// stretches of damaged framing.
fn report(damage: &Damage) -> u64 {
    for (path, from, to) in &damage.skipped {
        tracing::error!(segment = %path.display(), from, to, "wal: damaged bytes in a segment skipped at recovery; the records in them are lost");
        METRICS.wal.damaged.inc();
    }
    for (path, bytes) in &damage.cut {
        tracing::warn!(segment = %path.display(), bytes, "wal: cut off the end of a write a crash interrupted (it was never acknowledged)");
    }
    for (path, bytes) in &damage.stale {
        tracing::info!(segment = %path.display(), bytes, "wal: cut off the old records of a reused segment file after its last record (and any write a crash interrupted there, never acknowledged)");
    }
    damage.skipped.len() as u64
}

fn hole() -> Entry {
    Entry {
        len: 0,
        received_ms: 0,
        min_ts: i64::MAX,
        max_ts: i64::MIN,
    }
}

//! What the WAL keeps in memory for each record, and how sequences are written as sled
//! keys and values. This module is a leaf: the handle, the recovery and the collector
//! share it.

/// The high-water mark: the next sequence to assign. It is persisted so that it never goes
/// back.
pub(super) const NEXT_SEQ: &[u8] = b"next_seq";
/// The buffer's floor: every sequence below it has left the buffer. Its segment may not be
/// deleted yet (see [`super::segments::Segments`]).
pub(super) const FIRST_SEQ: &[u8] = b"first_seq";

/// What the in-memory index keeps of a record. With it, limits and lag need no disk reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// Encoded length. 0 for a hole that a damaged record left.
    pub(super) len: u32,
    pub(super) received_ms: u64,
    pub(super) min_ts: i64,
    pub(super) max_ts: i64,
}

impl Entry {
    pub(super) fn new(len: usize, m: &super::RecordMeta) -> Entry {
        let empty = m.samples == 0 && m.histograms == 0;
        Entry {
            len: len as u32,
            received_ms: m.received_ms,
            // A write without samples (metadata only) has no data time.
            min_ts: if empty { i64::MAX } else { m.min_ts },
            max_ts: if empty { i64::MIN } else { m.max_ts },
        }
    }

    pub(super) fn has_samples(&self) -> bool {
        self.len > 0 && self.min_ts <= self.max_ts
    }
}

pub(super) fn be(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(super) fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

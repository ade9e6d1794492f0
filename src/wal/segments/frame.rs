//! How a record sits in a segment file, and how a segment's bytes are read back at
//! start-up.
//!
//! Each record is preceded by a header of its own (little endian):
//! ```text
//! len u32 | seq u64 | state u8 | 0 u8 x3 | crc32 u32 (of the 16 bytes before it)
//! ```
//! The record after the header carries its own checksum ([`crate::wal::record`]). The
//! header's checksum lets a reader tell three cases apart:
//! - a damaged record: the header is good, so the reader skips exactly `len` bytes;
//! - damaged framing: the header is bad, so the reader looks for the next good header;
//! - a write that a crash cut short at the end of a file: it was never acknowledged, so
//!   the reader cuts it off.

use crate::wal::record::{CodecError, Record, RecordMeta};

/// Bytes of a frame header.
pub(super) const HEADER: usize = 20;

/// A stored record.
pub(super) const LIVE: u8 = 1;
/// A record that start-up found damaged and reported. Later scans skip it without a report.
pub(super) const REMOVED: u8 = 2;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) len: u32,
    pub(super) seq: u64,
    pub(super) state: u8,
}

impl Header {
    pub(super) fn encode(&self) -> [u8; HEADER] {
        let mut out = [0u8; HEADER];
        out[..4].copy_from_slice(&self.len.to_le_bytes());
        out[4..12].copy_from_slice(&self.seq.to_le_bytes());
        out[12] = self.state;
        let crc = crc32fast::hash(&out[..16]);
        out[16..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The header at the start of `bytes`, if its checksum and fields hold.
    pub(super) fn decode(bytes: &[u8]) -> Option<Header> {
        let h = bytes.get(..HEADER)?;
        // The cheap checks come first, because a start-up scan may try every offset of a
        // file.
        let state = h[12];
        if (state != LIVE && state != REMOVED) || h[13..16] != [0, 0, 0] {
            return None;
        }
        let crc = u32::from_le_bytes(h[16..].try_into().ok()?);
        if crc32fast::hash(&h[..16]) != crc {
            return None;
        }
        Some(Header {
            len: u32::from_le_bytes(h[..4].try_into().ok()?),
            seq: u64::from_le_bytes(h[4..12].try_into().ok()?),
            state,
        })
    }
}

/// One frame found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) seq: u64,
    /// Offset of its header in the file.
    pub(super) at: u64,
    /// Length of the record (after the header).
    pub(super) len: u32,
    /// The record's metadata, or why its bytes are not a record. The caller reports a bad
    /// record, then marks it [`REMOVED`]. `None` for a record removed at an earlier start.
    pub(super) meta: Option<Result<RecordMeta, CodecError>>,
}

/// What a segment's bytes hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    /// The frames, in file order, sequences increasing.
    pub(super) frames: Vec<Found>,
    /// Where the good bytes end. Anything after it is a write cut short, which was never
    /// acknowledged.
    pub(super) end: u64,
    /// Stretches of damaged framing skipped to reach a good header further on.
    pub(super) skipped: Vec<(u64, u64)>,
    /// The bytes after `end` hold frames of the file's earlier use, not only a write cut
    /// short. This happens in a reused segment ([`super::spare`]).
    pub(super) stale: bool,
}

/// Reads the frames of one segment. `after` is the larger of two sequences: the last
/// sequence of the segments before this one, and the sequence before the segment's name.
/// Frames must be above `after`. A frame that is not comes from the file's earlier use.
pub(super) fn scan(bytes: &[u8], after: Option<u64>) -> Scan {
    let mut out = Scan::default();
    // A header that checks out, fits in the file, and is above what came before.
    let good = |at: usize, last: Option<u64>| -> Option<Header> {
        let h = Header::decode(&bytes[at..])?;
        let fits = at + HEADER + h.len as usize <= bytes.len();
        (fits && last.is_none_or(|l| h.seq > l)).then_some(h)
    };
    let mut last = after;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let (at, h) = match good(pos, last) {
            Some(h) => (pos, h),
            None => match (pos + 1..bytes.len()).find_map(|at| good(at, last).map(|h| (at, h))) {
                Some(found) => {
                    out.skipped.push((pos as u64, found.0 as u64));
                    found
                }
                // Nothing good follows. This is the end of a write cut short, or the end
                // of what this use of the file wrote.
                None => {
                    let old = |h: Header| last.is_some_and(|l| h.seq <= l);
                    out.stale =
                        (pos..bytes.len()).any(|at| Header::decode(&bytes[at..]).is_some_and(old));
                    break;
                }
            },
        };
        let body = at + HEADER;
        let record = &bytes[body..body + h.len as usize];
        let meta = (h.state == LIVE).then(|| Record::decode_meta(record));
        out.frames.push(Found {
            seq: h.seq,
            at: at as u64,
            len: h.len,
            meta,
        });
        last = Some(h.seq);
        pos = body + h.len as usize;
        out.end = pos as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{scan, Header, HEADER, LIVE, REMOVED};
    use crate::wal::record::{CodecError, Record, RecordMeta};

    fn record(i: u64) -> Vec<u8> {
        Record {
            group: "g".into(),
            source: "a".into(),
            meta: RecordMeta {
                received_ms: i,
                samples: 1,
                ..RecordMeta::default()
            },
            payload: vec![i as u8; 30 + i as usize].into(),
            protocol: crate::wire::Version::V1,
        }
        .encode()
    }

    fn frame(out: &mut Vec<u8>, seq: u64, state: u8, record: &[u8]) -> usize {
        let at = out.len();
        let h = Header {
            len: record.len() as u32,
            seq,
            state,
        };
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(record);
        at
    }

    fn segment(seqs: &[u64]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let ats = seqs
            .iter()
            .map(|&s| frame(&mut out, s, LIVE, &record(s)))
            .collect();
        (out, ats)
    }

    fn seqs(s: &super::Scan) -> Vec<u64> {
        s.frames.iter().map(|f| f.seq).collect()
    }

    #[test]
    fn headers_round_trip_and_any_flipped_bit_is_caught() {
        let h = Header {
            len: 51_234,
            seq: u64::MAX - 3,
            state: LIVE,
        };
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes), Some(h));
        for bit in 0..HEADER * 8 {
            let mut bad = bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Header::decode(&bad), None, "bit {bit}");
        }
        assert_eq!(Header::decode(&bytes[..HEADER - 1]), None);
    }

    #[test]
    fn a_whole_segment_reads_back_in_order() {
        let (bytes, ats) = segment(&[7, 8, 9]);
        let s = scan(&bytes, Some(6));
        assert_eq!(seqs(&s), vec![7, 8, 9]);
        assert_eq!(s.end, bytes.len() as u64);
        assert!(s.skipped.is_empty());
        for (f, at) in s.frames.iter().zip(ats) {
            assert_eq!(f.at, at as u64);
            assert_eq!(
                f.meta.clone().map(|m| m.map(|m| m.received_ms)),
                Some(Ok(f.seq))
            );
        }
        assert_eq!(scan(&[], None), super::Scan::default());
    }

    #[test]
    fn a_write_cut_short_ends_the_segment_wherever_it_was_cut() {
        let (bytes, ats) = segment(&[0, 1, 2]);
        for cut in ats[2] + 1..bytes.len() {
            let s = scan(&bytes[..cut], None);
            assert_eq!(seqs(&s), vec![0, 1], "cut at {cut}");
            assert_eq!(s.end, ats[2] as u64);
            assert!(s.skipped.is_empty());
        }
    }

    #[test]
    fn a_damaged_record_is_reported_and_the_next_one_read() {
        let (mut bytes, ats) = segment(&[0, 1, 2]);
        bytes[ats[1] + HEADER + 10] ^= 0x40;
        let s = scan(&bytes, None);
        assert_eq!(seqs(&s), vec![0, 1, 2]);
        assert!(matches!(
            s.frames[1].meta,
            Some(Err(CodecError::Checksum { .. }))
        ));
        assert!(matches!(s.frames[2].meta, Some(Ok(_))));
    }

    #[test]
    fn a_removed_record_is_skipped_without_a_report() {
        let mut bytes = Vec::new();
        frame(&mut bytes, 0, LIVE, &record(0));
        frame(&mut bytes, 1, REMOVED, b"whatever was there");
        frame(&mut bytes, 2, LIVE, &record(2));
        let s = scan(&bytes, None);
        assert_eq!(seqs(&s), vec![0, 1, 2]);
        assert_eq!(s.frames[1].meta, None);
    }

    #[test]
    fn damaged_framing_is_skipped_up_to_the_next_good_header() {
        let (mut bytes, ats) = segment(&[0, 1, 2, 3]);
        bytes[ats[1] + 2] ^= 0x01;
        let s = scan(&bytes, None);
        assert_eq!(seqs(&s), vec![0, 2, 3]);
        assert_eq!(s.skipped, vec![(ats[1] as u64, ats[2] as u64)]);
        assert_eq!(s.end, bytes.len() as u64);
    }

    #[test]
    fn frames_must_go_above_what_came_before() {
        let (bytes, _) = segment(&[4, 5]);
        assert_eq!(seqs(&scan(&bytes, Some(4))), vec![5]);
        let old = scan(&bytes, Some(5));
        assert!(old.frames.is_empty() && old.end == 0);
        assert!(
            old.stale,
            "frames at or below `after` are from an earlier use"
        );
        assert!(
            !scan(&bytes[..bytes.len() - 3], None).stale,
            "a write cut short"
        );
    }
}

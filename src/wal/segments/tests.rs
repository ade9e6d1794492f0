//! Unit tests of the segment files on a real temp directory: reads across segments and
//! limits, restarts, deletion below the floor, writes cut short, damaged records and
//! framing, syncs, the disk reserve, freeing in steps, and the reused spare.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::space::{shrink_away, SHRINK_STEP};
use super::{Damage, Recovered, Segments, HEADER, SEGMENT_BYTES};
use crate::wal::record::{CodecError, Record, RecordMeta};

/// Helpers that reach behind the index's back.
impl Segments {
    /// How many segment files there are (for tests).
    fn count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Flips a byte inside record `seq` on disk, behind the index's back (for tests).
    pub(in crate::wal) fn damage(&self, seq: u64, offset: u64) -> io::Result<()> {
        let state = self.lock();
        let (first, s) = state
            .segments
            .range(..=seq)
            .next_back()
            .ok_or_else(|| io::Error::other("no such record"))?;
        let loc = s.locs[(seq - first) as usize];
        let at = loc.at + HEADER as u64 + offset;
        let mut byte = [0u8];
        s.file.read_exact_at(&mut byte, at)?;
        s.file.write_all_at(&[byte[0] ^ 0xff], at)
    }

    /// The file that holds `seq` (for tests that damage framing).
    fn path_of(&self, seq: u64) -> Option<PathBuf> {
        let state = self.lock();
        let (_, s) = state.segments.range(..=seq).next_back()?;
        Some(s.path.clone())
    }
}

fn record(seq: u64, size: usize) -> Vec<u8> {
    Record {
        group: "g".into(),
        source: "a".into(),
        meta: RecordMeta {
            received_ms: seq,
            samples: 1,
            ..RecordMeta::default()
        },
        payload: vec![seq as u8; size].into(),
        protocol: crate::wire::Version::V1,
    }
    .encode()
}

fn open(dir: &Path, floor: u64) -> (Segments, Vec<Recovered>, Damage) {
    Segments::open(dir, floor, SEGMENT_BYTES).expect("open segments")
}

fn found_seqs(found: &[Recovered]) -> Vec<u64> {
    found.iter().map(|r| r.seq).collect()
}

fn seqs(read: &[(u64, bytes::Bytes)]) -> Vec<u64> {
    read.iter().map(|(s, _)| *s).collect()
}

fn all(s: &Segments) -> Vec<(u64, bytes::Bytes)> {
    s.read(0, u64::MAX, usize::MAX, usize::MAX).expect("read")
}

/// Appends `seqs` with records of `size` bytes.
fn fill(s: &Segments, seqs: std::ops::Range<u64>, size: usize) {
    for seq in seqs {
        s.append(seq, &record(seq, size)).expect("append");
    }
}

#[test]
fn records_read_back_as_written_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, found, _) = open(dir.path(), 0);
    assert!(found.is_empty());
    fill(&s, 0..20, 200);
    assert!(s.count() > 3, "{} segments for 20 x 200 bytes", s.count());
    let got = all(&s);
    assert_eq!(seqs(&got), (0..20).collect::<Vec<_>>());
    for (seq, bytes) in &got {
        assert_eq!(&bytes[..], &record(*seq, 200)[..]);
    }
    assert_eq!(s.last_seq(), Some(19));
    assert!(s.append(19, &record(19, 10)).is_err(), "sequences increase");
}

#[test]
fn reads_stop_at_the_limits_and_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _, _) = open(dir.path(), 0);
    fill(&s, 5..25, 100);
    let read = |from, end, n, b| seqs(&s.read(from, end, n, b).expect("read"));
    assert_eq!(read(0, 8, usize::MAX, usize::MAX), vec![5, 6, 7]);
    assert_eq!(read(9, u64::MAX, 3, usize::MAX), vec![9, 10, 11]);
    let one = record(0, 100).len();
    // The record that reaches the byte limit is the last one.
    assert_eq!(read(10, u64::MAX, usize::MAX, 2 * one), vec![10, 11]);
    assert_eq!(
        read(10, u64::MAX, usize::MAX, 2 * one + 1),
        vec![10, 11, 12]
    );
    assert_eq!(read(10, u64::MAX, usize::MAX, 1), vec![10]);
    assert!(read(25, u64::MAX, 10, usize::MAX).is_empty());
    assert!(read(7, 7, 10, usize::MAX).is_empty());
}

#[test]
fn a_restart_finds_every_record_and_appends_to_a_fresh_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (s, _, _) = open(dir.path(), 0);
        fill(&s, 0..3, 50);
        s.sync().expect("sync");
    }
    let (s, found, damage) = open(dir.path(), 0);
    assert_eq!(found_seqs(&found), vec![0, 1, 2]);
    assert!(found.iter().all(|r| r.meta.is_ok()));
    assert!(damage.cut.is_empty() && damage.skipped.is_empty());
    assert_eq!(s.count(), 1);
    fill(&s, 3..4, 50);
    assert_eq!(s.count(), 2, "appends after a restart open a new segment");
    assert_eq!(seqs(&all(&s)), vec![0, 1, 2, 3]);
}

#[test]
fn only_segments_wholly_below_the_floor_go_and_never_the_open_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _, _) = open(dir.path(), 0);
    fill(&s, 0..30, 200);
    let before = s.count();
    assert!(!s.any_below(0));
    assert!(s.any_below(30));
    let deleted = s.delete_below(30).expect("delete");
    assert_eq!(deleted, before - 1, "all but the open segment");
    assert_eq!(s.count(), 1);
    let kept = seqs(&all(&s));
    assert_eq!(kept.last(), Some(&29));
    fill(&s, 30..31, 200);
    drop(s);
    // A restart deletes what is below the floor and reports only records from it on.
    let (s, found, _) = open(dir.path(), 30);
    assert_eq!(found_seqs(&found), vec![30]);
    assert_eq!(seqs(&all(&s)).last(), Some(&30));
    let files = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(files, s.count());
}

#[test]
fn a_write_cut_short_is_cut_off_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = {
        let (s, _, _) = open(dir.path(), 0);
        fill(&s, 0..3, 50);
        s.path_of(2).expect("path")
    };
    let len = std::fs::metadata(&path).expect("meta").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(len - 7).expect("truncate");
    drop(file);
    let (s, found, damage) = open(dir.path(), 0);
    assert_eq!(found_seqs(&found), vec![0, 1]);
    assert_eq!(damage.cut.len(), 1);
    assert_eq!(s.last_seq(), Some(1));
    fill(&s, 2..3, 50);
    drop(s);
    let (_, found, damage) = open(dir.path(), 0);
    assert_eq!(found_seqs(&found), vec![0, 1, 2]);
    assert!(damage.cut.is_empty(), "cut off once");
}

#[test]
fn a_damaged_record_is_reported_once_and_its_neighbours_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (s, _, _) = open(dir.path(), 0);
        fill(&s, 0..3, 50);
        s.damage(1, 30).expect("damage");
    }
    let (s, found, _) = open(dir.path(), 0);
    assert_eq!(found.len(), 3);
    assert!(matches!(found[1].meta, Err(CodecError::Checksum { .. })));
    assert_eq!(seqs(&all(&s)), vec![0, 2], "a damaged record is not read");
    drop(s);
    let (s, found, _) = open(dir.path(), 0);
    assert_eq!(found_seqs(&found), vec![0, 2]);
    assert_eq!(seqs(&all(&s)), vec![0, 2]);
}

#[test]
fn damaged_framing_costs_only_the_records_it_hides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = {
        let (s, _, _) = open(dir.path(), 0);
        fill(&s, 0..3, 50);
        s.path_of(1).expect("path")
    };
    let mut bytes = std::fs::read(&path).expect("read");
    let second = HEADER + record(0, 50).len();
    bytes[second + 5] ^= 0x10;
    std::fs::write(&path, bytes).expect("write");
    let (s, found, damage) = open(dir.path(), 0);
    assert_eq!(found_seqs(&found), vec![0, 2]);
    assert_eq!(damage.skipped.len(), 1);
    assert_eq!(seqs(&all(&s)), vec![0, 2]);
    assert!(SEGMENT_BYTES > 3 * (HEADER as u64 + 120), "one segment");
}

#[test]
fn sync_covers_segments_closed_since_the_last_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _, _) = open(dir.path(), 0);
    fill(&s, 0..10, 300);
    assert!(s.count() > 2);
    s.sync().expect("sync");
    assert!(s.lock().unsynced.is_empty());
    assert!(!s.lock().dir_unsynced);
    fill(&s, 10..11, 300);
    assert_eq!(s.lock().unsynced.len(), 1);
}

#[test]
fn the_reserve_is_one_percent_within_bounds() {
    use super::space::reserve;
    assert_eq!(reserve(80 << 20), 16 << 20);
    assert_eq!(reserve(10 << 30), (10 << 30) / 100);
    assert_eq!(reserve(4 << 40), 256 << 20);
}

#[test]
fn free_space_is_read_from_the_file_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (free, total) = super::space::disk_space(dir.path()).expect("statvfs");
    assert!(total > 0 && free <= total, "{free} free of {total}");
}

#[test]
fn a_full_disk_is_a_retryable_refusal_not_a_failure() {
    use crate::wal::WalError;
    let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
    let e = WalError::from(enospc);
    assert!(matches!(e, WalError::DiskFull(_)), "{e:?}");
    assert!(e.is_retryable());
    let eio = WalError::from(std::io::Error::from_raw_os_error(libc::EIO));
    assert!(matches!(eio, WalError::Disk(_)) && !eio.is_retryable());
}

#[test]
fn a_segment_whose_first_write_failed_takes_the_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _, _) = open(dir.path(), 0);
    fill(&s, 0..3, 50);
    {
        // What a failed first write into a fresh segment leaves: the file, no record.
        let path = dir.path().join(super::name(3));
        let file = std::fs::File::create_new(&path).expect("create");
        let mut state = s.lock();
        state.segments.insert(
            3,
            super::Segment {
                file: std::sync::Arc::new(file),
                path,
                locs: Vec::new(),
                end: 0,
                reused: false,
            },
        );
        state.sealed = false;
    }
    assert_eq!(s.last_seq(), Some(2), "an empty segment holds no sequence");
    let before = s.count();
    fill(&s, 3..4, 50);
    assert_eq!(s.count(), before, "the retry goes into the empty segment");
    assert_eq!(seqs(&all(&s)), vec![0, 1, 2, 3]);
}

#[test]
fn shrink_away_frees_a_file_in_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create");
    let len = 2 * SHRINK_STEP + 123;
    file.set_len(len).expect("grow");
    shrink_away(&file, len).expect("shrink");
    assert_eq!(file.metadata().expect("stat").len(), 0);
    shrink_away(&file, 0).expect("nothing to do");
}

/// The names in the segment directory, sorted.
fn on_disk(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn has_spare(dir: &Path) -> bool {
    dir.join(super::spare::NAME).exists()
}

#[test]
fn a_shipped_segment_file_takes_the_next_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _, _) = open(dir.path(), 0);
    fill(&s, 0..32, 200);
    s.sync().expect("sync");
    s.delete_below(32).expect("delete");
    assert!(has_spare(dir.path()));
    let spare_len = std::fs::metadata(dir.path().join(super::spare::NAME))
        .expect("spare")
        .len();
    assert!(spare_len >= SEGMENT_BYTES, "a full segment is kept");
    // The open segment is full: the next append goes to the spare, under its new name.
    assert_eq!(s.count(), 1);
    fill(&s, 32..33, 50);
    assert_eq!(s.count(), 2);
    assert_eq!(on_disk(dir.path()).len(), 2, "{:?}", on_disk(dir.path()));
    assert!(!has_spare(dir.path()));
    fill(&s, 33..60, 200);
    let got = s.read(32, u64::MAX, usize::MAX, usize::MAX).expect("read");
    assert_eq!(seqs(&got), (32..60).collect::<Vec<_>>());
    for (seq, bytes) in &got {
        let size = if *seq == 32 { 50 } else { 200 };
        assert_eq!(&bytes[..], &record(*seq, size)[..]);
    }
    s.sync().expect("sync");
    drop(s);
    // A restart reads exactly what was written, whatever the reused files held before.
    let (s, found, damage) = open(dir.path(), 32);
    assert_eq!(found_seqs(&found), (32..60).collect::<Vec<_>>());
    assert!(found.iter().all(|r| r.meta.is_ok()));
    assert!(damage.cut.is_empty() && damage.skipped.is_empty());
    assert_eq!(seqs(&all(&s)).first(), Some(&32));
}

/// Segments 0..12 shipped, then record 12 (small) at the start of a reused file full of
/// old records, then a crash; the path of that file.
fn reused_with_one_record(dir: &Path) -> PathBuf {
    let (s, _, _) = open(dir, 0);
    fill(&s, 0..12, 200);
    s.sync().expect("sync");
    s.delete_below(12).expect("delete");
    fill(&s, 12..13, 50);
    s.sync().expect("sync");
    s.path_of(12).expect("path")
}

#[test]
fn the_old_records_of_a_reused_file_are_not_read_as_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    reused_with_one_record(dir.path());
    let (s, found, damage) = open(dir.path(), 12);
    assert_eq!(found_seqs(&found), vec![12]);
    assert!(found[0].meta.is_ok());
    assert!(damage.cut.is_empty() && damage.skipped.is_empty());
    assert_eq!(damage.stale.len(), 1, "{damage:?}");
    assert_eq!(seqs(&all(&s)), vec![12]);
    // The segment below the floor became the spare; the next segment reuses it.
    fill(&s, 13..14, 50);
    s.sync().expect("sync");
    drop(s);
    let (_, found, damage) = open(dir.path(), 12);
    assert_eq!(found_seqs(&found), vec![12, 13]);
    assert!(damage.cut.is_empty() && damage.skipped.is_empty());
}

#[test]
fn a_write_cut_short_over_old_bytes_is_not_a_damaged_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = reused_with_one_record(dir.path());
    // What a crash between the record and its header leaves: the record, old bytes where
    // its header goes.
    let end = (HEADER + record(12, 50).len()) as u64;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.write_all_at(&record(13, 50), end + HEADER as u64)
        .expect("write");
    drop(file);
    let (_, found, damage) = open(dir.path(), 12);
    assert_eq!(found_seqs(&found), vec![12]);
    assert!(found[0].meta.is_ok());
    assert!(damage.skipped.is_empty() && damage.cut.is_empty());
    assert_eq!(damage.stale.len(), 1);
}

#[test]
fn a_file_still_held_is_deleted_not_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _, _) = open(dir.path(), 0);
    fill(&s, 0..30, 200);
    // Not synced yet: the pending sync holds every file.
    s.delete_below(30).expect("delete");
    assert!(!has_spare(dir.path()));
    assert_eq!(on_disk(dir.path()).len(), 1);
}

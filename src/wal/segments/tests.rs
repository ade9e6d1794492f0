use std::fs::File;
use std::path::Path;

use super::space::{shrink_away, SHRINK_STEP};
use super::{Damage, Recovered, Segments, SEGMENT_BYTES};
use crate::wal::record::{CodecError, Record, RecordMeta};

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
    }
    .encode()
}

fn open(dir: &Path, floor: u64) -> (Segments, Vec<Recovered>, Damage) {
    Segments::open(dir, floor).expect("open segments")
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
    assert_eq!(
        found.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
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
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![30]);
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
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(damage.cut.len(), 1);
    assert_eq!(s.last_seq(), Some(1));
    fill(&s, 2..3, 50);
    drop(s);
    let (_, found, damage) = open(dir.path(), 0);
    assert_eq!(
        found.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
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
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![0, 2]);
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
    let second = super::HEADER + record(0, 50).len();
    bytes[second + 5] ^= 0x10;
    std::fs::write(&path, bytes).expect("write");
    let (s, found, damage) = open(dir.path(), 0);
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(damage.skipped.len(), 1);
    assert_eq!(seqs(&all(&s)), vec![0, 2]);
    assert!(
        SEGMENT_BYTES > 3 * (super::HEADER as u64 + 120),
        "one segment"
    );
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

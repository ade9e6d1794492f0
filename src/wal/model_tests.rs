//! Model-based property test: the WAL against a plain in-memory model over append (records
//! as received and compact), read, cursor moves, garbage collection, the size limit and
//! restarts.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::{
    Compression, Durability, FullPolicy, ReadItem, Record, RecordMeta, StartAt, Wal, WalConfig,
};

pub(super) const ENDPOINTS: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Advance(usize, u64),
    Gc,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..600).prop_map(Op::Append),
        3 => (0usize..2, 0u64..6).prop_map(|(e, n)| Op::Advance(e, n)),
        1 => Just(Op::Gc),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    next_seq: u64,
    records: VecDeque<(u64, Record, u64)>,
    cursors: BTreeMap<&'static str, u64>,
    bytes: u64,
}

impl Model {
    fn first_seq(&self) -> u64 {
        self.records.front().map_or(self.next_seq, |r| r.0)
    }

    fn drop_below(&mut self, upto: u64) {
        while self.records.front().is_some_and(|r| r.0 < upto) {
            let (_, _, len) = self.records.pop_front().expect("checked");
            self.bytes -= len;
        }
    }
}

pub(super) fn record(i: u64, size: usize) -> Record {
    Record {
        group: "g".into(),
        source: format!("s{}", i % 3),
        meta: RecordMeta {
            received_ms: 1,
            min_ts: i as i64,
            max_ts: i as i64 + 5,
            series: 1,
            samples: size as u32,
            histograms: 0,
            exemplars: 0,
        },
        payload: Bytes::from(vec![(i % 251) as u8; size]),
        protocol: crate::wire::Version::V1,
    }
}

/// Opens the WAL, waiting (bounded) for sled's background thread of the previous instance
/// in this process to release the directory lock.
pub(super) fn reopen(config: WalConfig) -> Wal {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Wal::open(config.clone()) {
            Ok(w) => return w,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open wal: {e}"),
        }
    }
}

pub(super) fn open(dir: &std::path::Path, max_bytes: u64) -> Wal {
    let wal = reopen(WalConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        max_age: Duration::from_secs(1 << 40),
        full_policy: FullPolicy::DropOldest,
        durability: Durability::None,
        flush_interval: Duration::from_millis(100),
        compression: Compression::Auto,
        ..WalConfig::for_tests(dir)
    });
    let names: Vec<String> = ENDPOINTS.iter().map(|s| s.to_string()).collect();
    wal.register_endpoints(&names, StartAt::Oldest)
        .expect("register");
    wal
}

fn check(wal: &Wal, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(wal.next_seq(), model.next_seq);
    let stats = wal.stats();
    prop_assert_eq!(stats.bytes, model.bytes);
    prop_assert_eq!(stats.records, model.records.len() as u64);
    // From the start: exactly what is buffered, nothing that left (even when its span is
    // still stored).
    let all: Vec<u64> = wal
        .read_blocking(0, usize::MAX, usize::MAX)
        .expect("read")
        .iter()
        .map(ReadItem::seq)
        .collect();
    let want: Vec<u64> = model.records.iter().map(|r| r.0).collect();
    prop_assert_eq!(all, want);
    for name in ENDPOINTS {
        let cursor = wal.cursor(name).expect("known endpoint");
        prop_assert_eq!(cursor, model.cursors[name], "cursor of {}", name);
        let got = wal
            .read_blocking(cursor, usize::MAX, usize::MAX)
            .expect("read");
        let want: Vec<_> = model.records.iter().filter(|r| r.0 >= cursor).collect();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            match g {
                ReadItem::Record(seq, r) => {
                    prop_assert_eq!(*seq, w.0);
                    prop_assert_eq!(r, &w.1);
                }
                ReadItem::Corrupt(seq, e) => prop_assert!(false, "corrupt {} {}", seq, e),
            }
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>, max_bytes: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = open(dir.path(), max_bytes);
    let mut model = Model::default();
    for name in ENDPOINTS {
        model.cursors.insert(name, 0);
    }
    for op in ops {
        match op {
            Op::Append(size) => {
                let r = record(model.next_seq, size);
                // Every other size is stored compact (zstd; as while a storage is down):
                // both forms live side by side and read back alike.
                let encoded = if size % 2 == 1 {
                    r.encode_compact()
                } else {
                    r.encode()
                };
                let len = encoded.len() as u64;
                let result = wal.insert(&encoded, r.meta);
                if len > max_bytes {
                    prop_assert!(result.is_err());
                    continue;
                }
                // drop-oldest: evict from the front until the new record fits.
                while model.bytes + len > max_bytes {
                    let upto = model.first_seq() + 1;
                    model.drop_below(upto);
                    let first = model.first_seq();
                    for c in model.cursors.values_mut() {
                        *c = (*c).max(first);
                    }
                }
                let seq = result.expect("append");
                prop_assert_eq!(seq, model.next_seq);
                model.records.push_back((seq, r, len));
                model.bytes += len;
                model.next_seq += 1;
                // A record appended into an empty buffer moves the cursors past holes only.
            }
            Op::Advance(e, n) => {
                let name = ENDPOINTS[e];
                let to = (model.cursors[name] + n).min(model.next_seq);
                let c = model.cursors.get_mut(name).expect("known");
                if to > *c {
                    wal.move_cursor(name, to).expect("skip");
                    *c = to;
                }
            }
            Op::Gc => {
                wal.collect_garbage().expect("gc");
                let slowest = *model.cursors.values().min().expect("two endpoints");
                model.drop_below(slowest);
            }
            Op::Restart => {
                wal.flush_blocking().expect("flush");
                drop(wal);
                wal = open(dir.path(), max_bytes);
            }
        }
        check(&wal, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn wal_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, u64::MAX)?;
    }

    #[test]
    fn wal_matches_model_under_the_size_limit(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, 2_000)?;
    }
}

#[test]
fn sequence_survives_a_full_drain_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path(), u64::MAX);
    for i in 0..5 {
        let r = record(i, 10);
        wal.insert(&r.encode(), r.meta).expect("append");
    }
    for e in ENDPOINTS {
        assert!(wal.advance_cursor(e, 0, 5).expect("advance"));
    }
    wal.collect_garbage().expect("gc");
    assert_eq!(wal.stats().records, 0);
    wal.flush_blocking().expect("flush");
    drop(wal);
    let wal = open(dir.path(), u64::MAX);
    assert_eq!(
        wal.next_seq(),
        5,
        "must not restart at 0 behind the cursors"
    );
    let r = record(5, 10);
    assert_eq!(wal.insert(&r.encode(), r.meta).expect("append"), 5);
}

#[test]
fn damaged_record_is_skipped_at_recovery_not_the_buffer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path(), u64::MAX);
    for i in 0..4 {
        let r = record(i, 100);
        wal.insert(&r.encode(), r.meta).expect("append");
    }
    // Damage the tail record behind the WAL's back.
    wal.flush_blocking().expect("flush");
    wal.damage_for_tests(3, 40);
    drop(wal);
    let wal = open(dir.path(), u64::MAX);
    let got = wal.read_blocking(0, 100, usize::MAX).expect("read");
    assert_eq!(
        got.iter().map(ReadItem::seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        wal.next_seq(),
        4,
        "the damaged record's sequence is not reused"
    );
}

#[test]
fn block_policy_refuses_when_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(WalConfig {
        dir: dir.path().to_path_buf(),
        max_bytes: 500,
        max_age: Duration::from_secs(3600),
        full_policy: FullPolicy::Block,
        durability: Durability::None,
        flush_interval: Duration::from_millis(100),
        compression: Compression::Auto,
        ..WalConfig::for_tests(dir.path())
    })
    .expect("open");
    wal.register_endpoints(&["a".into()], StartAt::Oldest)
        .expect("register");
    let r = record(0, 300);
    wal.insert(&r.encode(), r.meta).expect("first fits");
    let err = wal
        .insert(&r.encode(), r.meta)
        .expect_err("second does not");
    assert!(err.is_retryable());
    // Once the endpoint took the first one, there is room again.
    assert!(wal.advance_cursor("a", 0, 1).expect("advance"));
    wal.collect_garbage().expect("gc");
    wal.insert(&r.encode(), r.meta).expect("fits after gc");
}

/// What earlier versions left in the WAL's sled database: `trees` (name, first sequence,
/// records, empty placeholders after them), a high-water mark and a floor.
fn old_database(
    dir: &std::path::Path,
    trees: &[(&str, u64, &[Record], u64)],
    next: u64,
    floor: u64,
) {
    let db = sled::Config::new()
        .path(dir)
        .segment_size(super::log::SEGMENT_SIZE)
        .open()
        .expect("open");
    for (name, first, records, placeholders) in trees {
        let tree = db.open_tree(name).expect("tree");
        for (i, r) in records.iter().enumerate() {
            tree.insert((first + i as u64).to_be_bytes(), r.encode())
                .expect("insert");
        }
        let after = first + records.len() as u64;
        for seq in after..after + placeholders {
            tree.insert(seq.to_be_bytes(), &[]).expect("placeholder");
        }
    }
    let meta = db.open_tree("meta").expect("meta");
    meta.insert(super::index::NEXT_SEQ, &next.to_be_bytes())
        .expect("meta");
    meta.insert(super::index::FIRST_SEQ, &floor.to_be_bytes())
        .expect("meta");
    db.flush().expect("flush");
}

/// Opens the WAL twice (the move happens once) and checks it holds `want` from `first` on.
fn assert_moved(dir: &std::path::Path, first: u64, want: &[Record], next: u64) {
    for _ in 0..2 {
        let wal = open(dir, u64::MAX);
        assert_eq!(wal.first_seq(), first);
        assert_eq!(wal.next_seq(), next);
        let got = wal.read_blocking(0, 100, usize::MAX).expect("read");
        assert_eq!(got.len(), want.len());
        for (item, (i, r)) in got.iter().zip(want.iter().enumerate()) {
            match item {
                ReadItem::Record(s, got) => assert_eq!((*s, got), (first + i as u64, r)),
                ReadItem::Corrupt(s, e) => panic!("record {s} damaged: {e}"),
            }
        }
        let names = wal.inner.db_for_tests().tree_names();
        assert!(
            !names.iter().any(|n| n.starts_with(b"records")),
            "the old trees are dropped once their records are moved"
        );
        drop(wal);
    }
}

#[test]
fn records_of_the_old_single_tree_move_into_segments_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records: Vec<Record> = (0..11).map(|i| record(i, 50)).collect();
    // The first versions: one `records` tree, 11 records from sequence 3 on.
    old_database(dir.path(), &[("records", 3, &records, 0)], 14, 0);
    assert_moved(dir.path(), 3, &records, 14);
}

#[test]
fn records_of_span_trees_move_into_segments_from_the_floor_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records: Vec<Record> = (0..9).map(|i| record(i, 80)).collect();
    // Spans of 4 from sequence 4 on, the last one with placeholders ahead of its records
    // and an empty span prepared after it; sequences below 6 were taken.
    old_database(
        dir.path(),
        &[
            ("records-0000000000000001", 4, &records[0..4], 0),
            ("records-0000000000000002", 8, &records[4..8], 0),
            ("records-0000000000000003", 12, &records[8..9], 3),
            ("records-0000000000000004", 16, &[], 4),
        ],
        13,
        6,
    );
    assert_moved(dir.path(), 6, &records[2..9], 13);
}

#[test]
fn a_move_cut_short_by_a_crash_goes_on_where_it_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records: Vec<Record> = (0..6).map(|i| record(i, 60)).collect();
    old_database(
        dir.path(),
        &[("records-0000000000000000", 0, &records, 0)],
        6,
        0,
    );
    {
        // The first three were moved when the crash came.
        let (segments, _, _) = super::segments::Segments::open(
            &dir.path().join("segments"),
            0,
            super::segments::SEGMENT_BYTES,
        )
        .expect("segments");
        for (i, r) in records[..3].iter().enumerate() {
            segments.append(i as u64, &r.encode()).expect("append");
        }
    }
    assert_moved(dir.path(), 0, &records, 6);
}

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::proto::{TimeSeries, WriteRequest};
use crate::shipper::window::{Batch, Unit, Window};
use crate::wal::record::tests::{sample, snappy_record};

/// A 1.0 record with one sample at `ts` of each series `s<i>` for `i` in `series`.
pub(in crate::shipper) fn record(series: &[usize], ts: i64) -> Record {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|i| TimeSeries::named(&format!("s{i}"), &[ts]))
            .collect(),
        metadata: Vec::new(),
    };
    Record {
        payload: Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .expect("snappy"),
        ),
        protocol: Version::V1,
        ..sample()
    }
}

fn known(records: &[Record]) -> Series {
    Series::computed(Keys::of(records))
}

#[test]
fn keys_are_the_distinct_series_of_every_record() {
    let a = Keys::of(&[record(&[1, 2, 3], 10)]).expect("1.0 records have keys");
    assert_eq!(a.len(), 3);
    let again = Keys::of(&[record(&[3, 2, 1], 20), record(&[2], 30)]).expect("keys");
    assert_eq!(a, again, "the same series, whatever the order and times");
    let other = Keys::of(&[record(&[4], 10)]).expect("keys");
    assert_ne!(a, other);
}

#[test]
fn a_record_without_keys_makes_the_batch_share_every_series() {
    let v2 = Record {
        protocol: Version::V2,
        ..record(&[1], 10)
    };
    assert_eq!(known(&[record(&[1], 1), v2]), Series::Any);
    assert_eq!(known(&[snappy_record()]), Series::Any, "not a WriteRequest");
}

proptest! {
    /// The merge walk tells exactly whether two key lists share a key.
    #[test]
    fn disjoint_is_an_empty_intersection(
        a in proptest::collection::vec(0u64..64, 0..40),
        b in proptest::collection::vec(0u64..64, 0..40),
    ) {
        let want = a.iter().all(|k| !b.contains(k));
        let (a, b) = (Keys::from(a), Keys::from(b));
        prop_assert_eq!(a.disjoint(&b), want);
        prop_assert_eq!(b.disjoint(&a), want);
    }
}

#[test]
fn a_batch_is_admitted_only_beside_batches_with_other_series() {
    let mut lanes = Lanes::default();
    let a = known(&[record(&[1, 2], 10)]);
    let b = known(&[record(&[3], 10)]);
    let c = known(&[record(&[2, 5], 20)]);
    assert!(lanes.admits(&a));
    lanes.enter(&a);
    assert!(lanes.admits(&b), "no series in common");
    assert!(!lanes.admits(&c), "s2 is out");
    assert!(!lanes.admits(&Series::Unknown));
    assert!(!lanes.admits(&Series::Any));
    lanes.enter(&b);
    lanes.leave(&a);
    assert!(lanes.admits(&c), "s2 was settled");
    lanes.enter(&Series::Unknown);
    assert!(
        !lanes.admits(&c),
        "a batch of unknown series holds every other back"
    );
    lanes.leave(&Series::Unknown);
    lanes.leave(&b);
    assert!(lanes.is_empty());
}

#[test]
fn a_key_held_by_two_batches_stays_held_until_both_leave() {
    let mut lanes = Lanes::default();
    let a = known(&[record(&[1], 10)]);
    lanes.enter(&a);
    lanes.enter(&a);
    lanes.leave(&a);
    assert!(!lanes.admits(&a));
    lanes.leave(&a);
    assert!(lanes.admits(&a));
}

/// One run of the model: records over a few series, joined into batches, driven
/// through a real [`Window`] by a random schedule.
#[derive(Debug, Clone)]
struct Run {
    /// The series of each record, in sequence order.
    records: Vec<Vec<usize>>,
    /// Records per batch, cycled.
    joins: Vec<usize>,
    /// Requests out at once at most.
    limit: usize,
    /// The schedule: which batch out answers next, and whether it fails and is retried
    /// (`true`), applied or not.
    steps: Vec<(usize, u8)>,
}

fn runs() -> impl Strategy<Value = Run> {
    (
        prop::collection::vec(prop::collection::btree_set(0usize..10, 1..5), 1..40),
        prop::collection::vec(1usize..4, 1..5),
        1usize..6,
        prop::collection::vec((any::<usize>(), any::<u8>()), 200..400),
    )
        .prop_map(|(records, joins, limit, steps)| Run {
            records: records
                .into_iter()
                .map(|s| s.into_iter().collect())
                .collect(),
            joins,
            limit,
            steps,
        })
}

/// What the storage saw: every sample, every series' newest timestamp, and the first
/// new sample that came older than that (a storage without an out-of-order window rejects
/// it).
#[derive(Default)]
struct Storage {
    seen: HashSet<(usize, i64)>,
    newest: HashMap<usize, i64>,
    out_of_order: Option<String>,
    applied: usize,
}

impl Storage {
    fn apply(&mut self, records: &[Vec<usize>], first: usize, len: usize) {
        for (seq, series) in records.iter().enumerate().skip(first).take(len) {
            for s in series {
                let ts = seq as i64;
                // A sample sent again (a retry after a lost answer) is a duplicate: every
                // at-least-once sender makes them, one request out at a time too. The
                // invariant is about new samples.
                if !self.seen.insert((*s, ts)) {
                    continue;
                }
                let newest = self.newest.entry(*s).or_insert(i64::MIN);
                if ts < *newest && self.out_of_order.is_none() {
                    self.out_of_order = Some(format!("s{s}: {ts} after {newest}"));
                }
                *newest = (*newest).max(ts);
            }
        }
        self.applied += 1;
    }
}

/// Drives the window as the worker does: the next batch goes out when the window admits
/// it, answers come in the schedule's order, a failed send stays out and is sent again,
/// some answers are lost after the storage applied the batch (it is sent again), and the
/// head is settled once answered. Returns the storage and how many batches were out at
/// once at most.
fn drive(run: &Run) -> (Storage, usize) {
    let records: Vec<Record> = run
        .records
        .iter()
        .enumerate()
        .map(|(i, s)| record(s, i as i64))
        .collect();
    let mut window = Window::new(0);
    let mut storage = Storage::default();
    // Per batch out (by first sequence): (records, answered).
    let mut out: Vec<(u64, usize, bool)> = Vec::new();
    let mut next = 0usize;
    let mut join = 0usize;
    let mut widest = 0;
    let mut steps = run.steps.iter().cycle();
    let mut budget = 10_000;
    while next < records.len() || window.staged.is_some() || !out.is_empty() {
        budget -= 1;
        assert!(budget > 0, "the model made no progress");
        // Fill: stage the next batch, start it when the window admits it.
        while out.len() < run.limit {
            if window.staged.is_none() && next < records.len() {
                let len = run.joins[join % run.joins.len()].min(records.len() - next);
                join += 1;
                let batch_records = records[next..next + len].to_vec();
                window.staged = Some(Batch {
                    first: next as u64,
                    series: known(&batch_records),
                    records: batch_records,
                    version: Version::V1,
                    held_back: false,
                });
                next += len;
            }
            let Some(batch) = window.staged.take() else {
                break;
            };
            if !window.admits(&batch) {
                window.staged = Some(batch);
                break;
            }
            out.push((batch.first, batch.records.len(), false));
            window.push(Unit::Batch {
                batch,
                send: None,
                sent: Instant::now(),
            });
        }
        widest = widest.max(out.len());
        // One answer, in the schedule's order.
        let &(pick, fate) = steps.next().expect("cycled");
        let unanswered: Vec<usize> = (0..out.len()).filter(|&i| !out[i].2).collect();
        if let Some(&i) = unanswered.get(pick % unanswered.len().max(1)) {
            let (first, len, _) = out[i];
            match fate % 4 {
                // 503 or a timeout before the storage read it: sent again later.
                0 => {}
                // Applied, but the answer was lost: applied again later.
                1 => storage.apply(&run.records, first as usize, len),
                _ => {
                    storage.apply(&run.records, first as usize, len);
                    out[i].2 = true;
                }
            }
        }
        // Settle answered heads, in sequence order.
        while out.first().is_some_and(|o| o.2) {
            out.remove(0);
            assert!(matches!(window.pop(), Some(Unit::Batch { .. })));
        }
    }
    assert!(window.pop().is_none(), "every batch was settled");
    (storage, widest)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The ordering invariant: whatever order the answers come in, with retries and
    /// lost answers, no series reaches the storage out of order, and every batch is
    /// delivered.
    #[test]
    fn no_series_goes_out_of_order_whatever_the_answers(run in runs()) {
        let (storage, widest) = drive(&run);
        prop_assert_eq!(storage.out_of_order, None);
        prop_assert!(widest <= run.limit);
        prop_assert!(storage.applied >= run.records.len().div_ceil(3), "every batch was applied");
        prop_assert_eq!(storage.seen.len(), run.records.iter().map(Vec::len).sum::<usize>());
    }
}

/// The model does send side by side when series allow it: batches over disjoint series
/// go out together, up to the limit.
#[test]
fn disjoint_batches_go_out_together() {
    let run = Run {
        records: (0..8).map(|i| vec![i]).collect(),
        joins: vec![1],
        limit: 4,
        steps: vec![(0, 2)],
    };
    let (storage, widest) = drive(&run);
    assert_eq!(storage.out_of_order, None);
    assert_eq!(widest, 4);
    let run = Run {
        records: (0..8).map(|_| vec![0]).collect(),
        ..run
    };
    assert_eq!(drive(&run).1, 1, "one series: one at a time");
}

#[test]
fn a_storage_is_slow_when_each_of_its_last_answers_was() {
    let ms = Duration::from_millis;
    let mut pace = Pace::default();
    for _ in 0..7 {
        pace.answered(ms(20));
    }
    assert!(!pace.slow(ms(10)), "seven answers are not enough to tell");
    pace.answered(ms(20));
    assert!(pace.slow(ms(10)));
    pace.answered(ms(3));
    assert!(
        !pace.slow(ms(10)),
        "one quick answer: a near storage, busy now and then"
    );
    for _ in 0..7 {
        pace.answered(ms(30));
    }
    assert!(
        !pace.slow(ms(10)),
        "the quick one is still among the last eight"
    );
    pace.answered(ms(30));
    assert!(pace.slow(ms(10)));
}

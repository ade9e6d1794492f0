//! The final role of a write under its group's lock: a real WAL in a temporary directory,
//! the standalone election with a fake clock.

use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::election::Elector;
use crate::ingest::handover::HandoverConfig;
use crate::proto::{TimeSeries, WriteRequest};
use crate::wal::{ReadItem, WalConfig};

fn ingest(dir: &std::path::Path) -> Ingest {
    let clock = Arc::new(ManualClock::at(1_000));
    Ingest {
        wal: Wal::open(WalConfig::for_tests(dir)).expect("wal"),
        promotions: Arc::new(Elector::new(Duration::from_secs(5), clock.clone())),
        limits: decode::Limits {
            max_body_bytes: 1 << 20,
            max_decoded_bytes: 1 << 24,
        },
        replica_label: None,
        group_label: None,
        ready: Arc::new(AtomicBool::new(true)),
        clock,
        handover: Handover::new(HandoverConfig {
            window: Duration::from_secs(15),
            max_bytes_per_source: 1 << 20,
            max_decoded_bytes: 1 << 24,
        }),
    }
}

/// A write of one series `up` with one sample at `ts`.
fn write(ts: i64) -> Held {
    write_of("up", ts)
}

/// A write of one series `name` with one sample at `ts`.
fn write_of(name: &str, ts: i64) -> Held {
    let req = WriteRequest {
        timeseries: vec![TimeSeries::named(name, &[ts])],
        metadata: vec![],
    };
    Held::of_request(&req, ts as u64)
}

/// The role `observe` gives a write of `source` with `weight`.
fn observe(ingest: &Ingest, source: &str, weight: u64, ts: i64) -> Role {
    ingest.promotions.observe(Observation {
        group: "default",
        source,
        weight,
        samples: 1,
        data_ts: Some(ts),
    })
}

/// (source, max_ts) of every record in the WAL, in order.
fn stored(ingest: &Ingest) -> Vec<(String, i64)> {
    ingest
        .wal
        .read_blocking(0, 1_000, 1 << 30)
        .expect("read")
        .into_iter()
        .map(|item| match item {
            ReadItem::Record(_, r) => (r.source, r.meta.max_ts),
            ReadItem::Corrupt(seq, e) => panic!("record {seq}: {e}"),
        })
        .collect()
}

#[test]
fn an_old_sources_write_that_arrives_after_a_switch_is_held_as_a_standbys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ingest = ingest(dir.path());
    assert_eq!(observe(&ingest, "a", 1, 1_000), Role::Promoted);
    let settled = settle(&ingest, "default", "a", write(1_000)).expect("settle");
    assert!(matches!(settled, Settled::Appended(Some(_))));
    // a's next write is judged promoted, then b takes over (bigger weight) and its write
    // takes the group's lock first.
    assert_eq!(observe(&ingest, "a", 1, 2_000), Role::Promoted);
    assert_eq!(observe(&ingest, "b", 2, 2_300), Role::Promoted);
    let settled = settle(&ingest, "default", "b", write(2_300)).expect("settle");
    assert!(matches!(settled, Settled::Appended(Some(_))));
    // a's late write: a standby's, not forwarded behind b's.
    let settled = settle(&ingest, "default", "a", write(2_000)).expect("settle");
    assert_eq!(settled, Settled::Standby);
    assert_eq!(
        stored(&ingest),
        vec![("a".to_owned(), 1_000), ("b".to_owned(), 2_300)]
    );
}

#[test]
fn a_standbys_write_that_arrives_after_its_promotion_is_forwarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ingest = ingest(dir.path());
    for t in [1_000, 2_000, 3_000] {
        assert_eq!(observe(&ingest, "a", 1, t), Role::Promoted);
        settle(&ingest, "default", "a", write(t)).expect("settle");
    }
    // Two writes of b (two connections, two series) are judged a standby's; before they
    // take the lock, b takes over with a third one.
    assert_eq!(observe(&ingest, "b", 1, 3_300), Role::Standby);
    assert_eq!(observe(&ingest, "b", 1, 3_700), Role::Standby);
    assert_eq!(observe(&ingest, "b", 2, 4_300), Role::Promoted);
    settle(&ingest, "default", "b", write(4_300)).expect("settle");
    // Held now, they would never be forwarded: they are planned like live writes, by the
    // cut (a ended at 3000 with a 1000 step: from 3500 on).
    let settled = settle(&ingest, "default", "b", write(3_300)).expect("settle");
    assert_eq!(settled, Settled::Appended(None), "overlaps a's last sample");
    let settled = settle(&ingest, "default", "b", write_of("x", 3_700)).expect("settle");
    assert!(matches!(settled, Settled::Appended(Some(_))));
    assert_eq!(
        stored(&ingest),
        vec![
            ("a".to_owned(), 1_000),
            ("a".to_owned(), 2_000),
            ("a".to_owned(), 3_000),
            ("b".to_owned(), 4_300),
            ("b".to_owned(), 3_700)
        ]
    );
}

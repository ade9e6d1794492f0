//! The final role of a write under its group's lock: a real WAL in a temporary directory,
//! the standalone election with a fake clock.

use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::election::{Elector, Observation};
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
        require_ha_labels: false,
        ready: Arc::new(AtomicBool::new(true)),
        clock,
        handover: Handover::open(
            HandoverConfig {
                window: Duration::from_secs(15),
                max_bytes_per_source: 1 << 20,
                max_decoded_bytes: 1 << 24,
                dir: dir.join("handover"),
            },
            0,
        )
        .expect("handover rings"),
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

/// Settles a write of `source` with `weight`, as the ingest does once it is decoded.
fn send(ingest: &Ingest, source: &str, weight: u64, held: Held) -> Settled {
    let obs = Observation {
        protocol: Default::default(),
        group: "default",
        source,
        weight,
        samples: u64::from(held.meta.samples),
        data_ts: Some(held.meta.max_ts),
    };
    settle(ingest, obs, held).expect("settle")
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
    assert!(matches!(
        send(&ingest, "a", 1, write(1_000)),
        Settled::Appended(Some(_))
    ));
    // b takes over (bigger weight) before a's next write (sent at 2000) takes the lock.
    assert!(matches!(
        send(&ingest, "b", 2, write(2_300)),
        Settled::Appended(Some(_))
    ));
    // a's late write: a standby's, not forwarded behind b's.
    assert_eq!(send(&ingest, "a", 1, write(2_000)), Settled::Standby);
    assert_eq!(
        stored(&ingest),
        vec![("a".to_owned(), 1_000), ("b".to_owned(), 2_300)]
    );
}

#[test]
fn a_standbys_held_writes_are_backfilled_by_the_cut_when_it_takes_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ingest = ingest(dir.path());
    for t in [1_000, 2_000, 3_000] {
        send(&ingest, "a", 1, write(t));
    }
    // Two writes of b (two connections, two series) while a is promoted: held.
    assert_eq!(send(&ingest, "b", 1, write(3_300)), Settled::Standby);
    assert_eq!(
        send(&ingest, "b", 1, write_of("x", 3_700)),
        Settled::Standby
    );
    // b takes over: its held writes are cut where a ended (3000 with a 1000 step: from
    // 3500 on), then its live write follows.
    assert!(matches!(
        send(&ingest, "b", 2, write(4_300)),
        Settled::Appended(Some(_))
    ));
    assert_eq!(
        stored(&ingest),
        vec![
            ("a".to_owned(), 1_000),
            ("a".to_owned(), 2_000),
            ("a".to_owned(), 3_000),
            ("b".to_owned(), 3_700),
            ("b".to_owned(), 4_300)
        ]
    );
}

//! Handover tests: fake times, real wire bytes.

use bytes::Bytes;
use prost::Message;

use super::*;
use crate::proto::{TimeSeries, WriteRequest};

const STEP: i64 = 1_000;

fn write(series: &[(&str, &[i64])], received_ms: u64) -> Held {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(name, ts)| TimeSeries::named(name, ts))
            .collect(),
        metadata: vec![],
    };
    let raw = req.encode_to_vec();
    let s = wire::scan(&raw, Wanted::default()).expect("valid");
    Held {
        payload: Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy"),
        ),
        meta: RecordMeta {
            received_ms,
            min_ts: s.min_ts.unwrap_or(0),
            max_ts: s.max_ts.unwrap_or(0),
            series: s.series,
            samples: s.samples,
            histograms: 0,
            exemplars: 0,
        },
    }
}

fn samples(h: &Held) -> Vec<(String, i64)> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&h.payload)
        .expect("snappy");
    WriteRequest::decode(raw.as_slice())
        .expect("proto")
        .timeseries
        .iter()
        .flat_map(|t| {
            let name = t.labels[0].value.clone();
            t.samples.iter().map(move |s| (name.clone(), s.timestamp))
        })
        .collect()
}

fn handover() -> Handover {
    Handover::new(HandoverConfig {
        window: Duration::from_secs(15),
        max_bytes_per_source: 1 << 20,
        max_decoded_bytes: 1 << 24,
    })
}

/// Feeds a promoted write through plan + hold, returns what would be appended.
async fn promoted(h: &Handover, source: &str, w: Held) -> Vec<(String, i64)> {
    let out = h
        .forward("g", source, w.clone(), |plan| -> Vec<_> {
            plan.backfill
                .iter()
                .chain(plan.live.iter())
                .flat_map(samples)
                .collect()
        })
        .expect("plan");
    h.hold("g", source, &w, true);
    out
}

#[tokio::test]
async fn failover_backfills_the_gap_without_overlap() {
    let h = handover();
    // a is promoted and scrapes at 0, 1000, …, 5000, then dies; b scrapes 300 ms later in
    // the cycle and is held as standby meanwhile, until 9300.
    for i in 0..=9 {
        let t = i * STEP;
        if i <= 5 {
            promoted(&h, "a", write(&[("up", &[t]), ("x", &[t + 10])], t as u64)).await;
        }
        h.hold(
            "g",
            "b",
            &write(&[("up", &[t + 300]), ("x", &[t + 310])], (t + 300) as u64),
            false,
        );
    }
    // b's first promoted write: 10300.
    let out = promoted(
        &h,
        "b",
        write(&[("up", &[10_300]), ("x", &[10_310])], 10_300),
    )
    .await;
    let up: Vec<i64> = out
        .iter()
        .filter(|(n, _)| n == "up")
        .map(|(_, t)| *t)
        .collect();
    // a ended at 5000 with a 1000 step: b's samples after 5500 fill the gap, in order.
    assert_eq!(up, vec![6_300, 7_300, 8_300, 9_300, 10_300]);
    let x: Vec<i64> = out
        .iter()
        .filter(|(n, _)| n == "x")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(x, vec![6_310, 7_310, 8_310, 9_310, 10_310]);
    // Later live writes pass untouched.
    let out = promoted(&h, "b", write(&[("up", &[11_300])], 11_300)).await;
    assert_eq!(out, vec![("up".to_owned(), 11_300)]);
}

#[tokio::test]
async fn takeover_by_a_live_source_trims_the_overlap() {
    let h = handover();
    for t in (0..=5).map(|i| i * STEP) {
        promoted(&h, "a", write(&[("up", &[t])], t as u64)).await;
        h.hold(
            "g",
            "b",
            &write(&[("up", &[t + 600])], (t + 600) as u64),
            false,
        );
    }
    // b takes over (bigger weight): its held writes reach back behind a's end (a's last is
    // 5000 with step 1000: b's samples must be after 5500), its live write carries 6600.
    let out = promoted(&h, "b", write(&[("up", &[6_600])], 6_600)).await;
    assert_eq!(
        out,
        vec![("up".to_owned(), 5_600), ("up".to_owned(), 6_600)]
    );
    let crowded = promoted(&h, "b", write(&[("up", &[7_600])], 7_600)).await;
    assert_eq!(crowded, vec![("up".to_owned(), 7_600)]);
}

#[tokio::test]
async fn a_live_write_repeating_backfilled_samples_is_trimmed() {
    let h = handover();
    for t in (0..=5).map(|i| i * STEP) {
        promoted(&h, "a", write(&[("up", &[t])], t as u64)).await;
        h.hold(
            "g",
            "b",
            &write(&[("up", &[t + 600])], (t + 600) as u64),
            false,
        );
    }
    // b re-sends 5600 (a retry of a write that was already held) along with 6600.
    let out = promoted(&h, "b", write(&[("up", &[5_600, 6_600])], 6_600)).await;
    assert_eq!(
        out,
        vec![("up".to_owned(), 5_600), ("up".to_owned(), 6_600)]
    );
}

#[tokio::test]
async fn a_lagging_new_source_only_forwards_what_is_newer() {
    let h = handover();
    for t in (0..=9).map(|i| i * STEP) {
        promoted(&h, "a", write(&[("up", &[t])], t as u64)).await;
    }
    // b lags: its held data only reaches 4200.
    for t in (0..=4).map(|i| i * STEP + 200) {
        h.hold("g", "b", &write(&[("up", &[t])], t as u64 + 6_000), false);
    }
    let out = promoted(&h, "b", write(&[("up", &[5_200])], 11_000)).await;
    assert!(
        out.is_empty(),
        "everything b has is older than a's end: {out:?}"
    );
    let out = promoted(&h, "b", write(&[("up", &[9_600])], 12_000)).await;
    assert_eq!(out, vec![("up".to_owned(), 9_600)], "9600 > 9000 + 500");
}

#[tokio::test]
async fn a_new_source_with_nothing_held_forwards_its_live_writes_after_the_cut() {
    let h = handover();
    // c, a standby seen at the start, makes the group an HA group: a holds its writes.
    h.hold("g", "c", &write(&[("up", &[0])], 0), false);
    for t in (0..=3).map(|i| i * STEP) {
        promoted(&h, "a", write(&[("up", &[t])], t as u64)).await;
    }
    let out = promoted(&h, "b", write(&[("up", &[3_200, 4_200])], 4_200)).await;
    assert_eq!(out, vec![("up".to_owned(), 4_200)]);
}

#[tokio::test]
async fn without_the_old_source_held_the_group_end_serves() {
    let h = handover();
    for t in (0..=3).map(|i| i * STEP) {
        promoted(&h, "a", write(&[("up", &[t])], t as u64)).await;
    }
    // a's ring is gone (forgotten), only the group's last timestamp is known.
    h.rings.lock().expect("rings").clear();
    let out = promoted(&h, "b", write(&[("up", &[2_500, 3_000, 3_500])], 4_000)).await;
    assert_eq!(out, vec![("up".to_owned(), 3_500)]);
}

#[tokio::test]
async fn the_first_source_of_a_group_is_forwarded_as_is() {
    let h = handover();
    h.hold("g", "a", &write(&[("up", &[0])], 0), false);
    let out = promoted(&h, "a", write(&[("up", &[1_000])], 1_000)).await;
    assert_eq!(
        out,
        vec![("up".to_owned(), 1_000)],
        "no backfill without a previous source"
    );
}

#[test]
fn rings_are_bounded_in_data_time_and_bytes() {
    let h = Handover::new(HandoverConfig {
        window: Duration::from_secs(5),
        max_bytes_per_source: 400,
        max_decoded_bytes: 1 << 24,
    });
    for t in (0..=20).map(|i| i * STEP) {
        h.hold("g", "b", &write(&[("up", &[t])], t as u64), false);
        h.hold("g", "a", &write(&[("up", &[t])], t as u64), false);
    }
    let held = h.held("g", "a", false);
    assert!(
        held.iter().all(|w| w.meta.max_ts >= 15_000),
        "older than the window kept"
    );
    assert!(held.iter().map(|w| w.payload.len() as u64).sum::<u64>() <= 400);
    assert_eq!(held.last().map(|w| w.meta.max_ts), Some(20_000));
}

#[test]
fn a_source_alone_in_its_group_holds_nothing() {
    let h = handover();
    let held = |source: &str| h.held("g", source, false).len();
    for t in (0..=3).map(|i| i * STEP) {
        h.hold("g", "a", &write(&[("up", &[t])], t as u64), true);
    }
    assert_eq!(held("a"), 0, "nobody to hand over to");
    // b appears: from now on both hold.
    h.hold("g", "b", &write(&[("up", &[4_300])], 4_300), false);
    h.hold("g", "a", &write(&[("up", &[5_000])], 5_000), true);
    assert_eq!((held("a"), held("b")), (1, 1));
    // A source of another group does not count.
    h.hold("other", "x", &write(&[("up", &[5_000])], 5_000), true);
    assert_eq!(h.held("other", "x", false).len(), 0);
    // b silent for longer than the window (15 s): a is alone again and lets go.
    h.hold("g", "a", &write(&[("up", &[20_000])], 20_000), true);
    assert_eq!(held("a"), 0);
}

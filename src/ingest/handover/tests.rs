//! Handover tests: fake times, real wire bytes.

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
    Held::of_request(&req, received_ms)
}

/// The timestamps of series `name` in `out`.
fn times(out: &[(String, i64)], name: &str) -> Vec<i64> {
    out.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, t)| *t)
        .collect()
}

fn samples(h: &Held) -> Vec<(String, i64)> {
    let raw = h.decoded_v1(u64::MAX).expect("a valid write");
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

/// Rings in a temporary directory (kept as long as the handle).
struct Rings {
    handover: Handover,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Rings {
    type Target = Handover;
    fn deref(&self) -> &Handover {
        &self.handover
    }
}

fn config(dir: &std::path::Path, window_s: u64, max_bytes: u64) -> HandoverConfig {
    HandoverConfig {
        window: Duration::from_secs(window_s),
        max_bytes_per_source: max_bytes,
        max_decoded_bytes: 1 << 24,
        dir: dir.join("handover"),
    }
}

fn rings(window_s: u64, max_bytes: u64) -> Rings {
    let dir = tempfile::tempdir().expect("temporary directory");
    let handover = Handover::open(config(dir.path(), window_s, max_bytes), 0).expect("open");
    Rings {
        handover,
        _dir: dir,
    }
}

fn handover() -> Rings {
    rings(15, 1 << 20)
}

/// Feeds a promoted write through plan + record, returns what would be appended.
async fn promoted(h: &Handover, source: &str, w: Held) -> Vec<(String, i64)> {
    let mut guard = h.lock("g");
    let mut plan = guard.plan(source, w.clone()).expect("plan");
    let mut out = Vec::new();
    while let Some(records) = plan.next_records().expect("records") {
        for r in records {
            out.extend(samples(&Held {
                payload: r.payload,
                meta: r.meta,
                protocol: r.protocol,
            }));
        }
    }
    plan.record(&w, true);
    out
}

/// Holds a standby write.
fn standby(h: &Handover, group: &str, source: &str, w: &Held) {
    h.lock(group).hold_standby(source, w);
}

/// The writes held for `source` of group `group`, all of them or only the forwarded ones.
fn held(h: &Handover, group: &str, source: &str, only_forwarded: bool) -> Vec<Held> {
    let guard = h.lock(group);
    let Some(ring) = guard.state.rings.get(source) else {
        return Vec::new();
    };
    ring.entries()
        .filter(|e| e.forwarded || !only_forwarded)
        .filter_map(|e| e.read(&ring.name))
        .collect()
}

/// Forgets every ring of group `g` (as after a long silence).
fn forget_rings(h: &Handover) {
    let mut guard = h.lock("g");
    for (_, r) in guard.state.rings.drain() {
        r.remove();
    }
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
        standby(
            &h,
            "g",
            "b",
            &write(&[("up", &[t + 300]), ("x", &[t + 310])], (t + 300) as u64),
        );
    }
    // b's first promoted write: 10300.
    let out = promoted(
        &h,
        "b",
        write(&[("up", &[10_300]), ("x", &[10_310])], 10_300),
    )
    .await;
    let up = times(&out, "up");
    // a ended at 5000 with a 1000 step: b's samples after 5500 fill the gap, in order.
    assert_eq!(up, vec![6_300, 7_300, 8_300, 9_300, 10_300]);
    let x = times(&out, "x");
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
        standby(
            &h,
            "g",
            "b",
            &write(&[("up", &[t + 600])], (t + 600) as u64),
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
        standby(
            &h,
            "g",
            "b",
            &write(&[("up", &[t + 600])], (t + 600) as u64),
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
        standby(&h, "g", "b", &write(&[("up", &[t])], t as u64 + 6_000));
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
    standby(&h, "g", "c", &write(&[("up", &[0])], 0));
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
    forget_rings(&h);
    let out = promoted(&h, "b", write(&[("up", &[2_500, 3_000, 3_500])], 4_000)).await;
    assert_eq!(out, vec![("up".to_owned(), 3_500)]);
}

#[tokio::test]
async fn the_first_source_of_a_group_is_forwarded_as_is() {
    let h = handover();
    standby(&h, "g", "a", &write(&[("up", &[0])], 0));
    let out = promoted(&h, "a", write(&[("up", &[1_000])], 1_000)).await;
    assert_eq!(
        out,
        vec![("up".to_owned(), 1_000)],
        "no backfill without a previous source"
    );
}

#[test]
fn rings_are_bounded_in_data_time_and_bytes() {
    let h = rings(5, 400);
    for t in (0..=20).map(|i| i * STEP) {
        standby(&h, "g", "b", &write(&[("up", &[t])], t as u64));
        standby(&h, "g", "a", &write(&[("up", &[t])], t as u64));
    }
    let held = held(&h, "g", "a", false);
    assert!(
        held.iter().all(|w| w.meta.max_ts >= 15_000),
        "older than the window kept"
    );
    assert!(held.iter().map(|w| w.payload.len() as u64).sum::<u64>() <= 400);
    assert_eq!(held.last().map(|w| w.meta.max_ts), Some(20_000));
}

#[test]
fn a_source_alone_in_its_group_holds_only_a_small_tail() {
    let h = rings(15, 64 * 200);
    let size = write(&[("up", &[9 * STEP])], 0).payload.len() as u64;
    let bytes = |source: &str| {
        held(&h, "g", source, false)
            .iter()
            .map(|w| w.payload.len() as u64)
            .sum::<u64>()
    };
    let forwarded = |t: i64| {
        let w = write(&[("up", &[t])], t as u64);
        h.lock("g").hold("a", &w, true);
    };
    for t in (0..=9).map(|i| i * STEP) {
        forwarded(t);
    }
    let held = held(&h, "g", "a", false).len();
    assert!(
        bytes("a") <= 200 && held >= 200 / size as usize - 1,
        "alone: 1/64 of the cap, {} bytes in {held} writes",
        bytes("a")
    );
    // b appears: from now on a holds up to the whole cap.
    standby(&h, "g", "b", &write(&[("up", &[10_300])], 10_300));
    for t in (10..=14).map(|i| i * STEP) {
        forwarded(t);
    }
    assert!(bytes("a") > 200, "{} bytes", bytes("a"));
    // A source of another group does not count.
    h.lock("other")
        .hold("x", &write(&[("up", &[5_000])], 5_000), true);
    assert!(bytes("a") > 200);
    // b silent for longer than the window (15 s): a is alone again and keeps the tail.
    forwarded(40_000);
    assert!(bytes("a") <= 200, "{} bytes", bytes("a"));
}

/// A write of replica `replica`: series `name{replica=…}` with the samples at `ts`.
fn replica_write(replica: &str, series: &[(&str, &[i64])], received_ms: u64) -> Held {
    replica_write_in(Version::V1, replica, series, received_ms)
}

/// [`replica_write`] in `version`: a 2.0 write is the one a Prometheus 3 replica sends,
/// with its own symbols table.
fn replica_write_in(
    version: Version,
    replica: &str,
    series: &[(&str, &[i64])],
    received_ms: u64,
) -> Held {
    let held = replica_write_v1(replica, series, received_ms);
    match version {
        Version::V1 => held,
        Version::V2 => {
            let raw = held.decoded_v1(u64::MAX).expect("valid");
            let req = WriteRequest::decode(raw.as_slice()).expect("proto");
            let v2 = crate::proto::v2::Request::from_v1(&req).encode_to_vec();
            Held {
                payload: compress(&v2).expect("snappy"),
                protocol: Version::V2,
                ..held
            }
        }
    }
}

fn replica_write_v1(replica: &str, series: &[(&str, &[i64])], received_ms: u64) -> Held {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(name, ts)| {
                let mut t = TimeSeries::named(name, ts);
                t.labels.push(crate::proto::Label {
                    name: "replica".into(),
                    value: replica.into(),
                });
                t
            })
            .collect(),
        metadata: vec![],
    };
    Held::of_request(&req, received_ms)
}

#[tokio::test]
async fn replicas_that_keep_their_replica_label_are_cut_per_series() {
    replicas_cut_per_series(Version::V1, Version::V1).await;
}

#[tokio::test]
async fn replicas_sending_2_0_are_cut_per_series_as_1_0_replicas_are() {
    replicas_cut_per_series(Version::V2, Version::V2).await;
    // A rolling upgrade: the old replica still sends 1.0, the new one 2.0, and back.
    replicas_cut_per_series(Version::V1, Version::V2).await;
    replicas_cut_per_series(Version::V2, Version::V1).await;
}

/// a (in `va`) and b (in `vb`) keep their replica label; a dies and b takes over.
async fn replicas_cut_per_series(va: Version, vb: Version) {
    let replica_write = |version: Version| {
        move |replica: &str, series: &[(&str, &[i64])], received_ms: u64| {
            replica_write_in(version, replica, series, received_ms)
        }
    };
    let (write_a, write_b) = (replica_write(va), replica_write(vb));
    let h = handover();
    // a (replica="a") scrapes at 0, 1000, …, 5000 and dies; its last write carried `up`
    // only (x's last sample is 4010). b (replica="b") scrapes 300 ms later in the cycle,
    // held as a standby, until 9300. Nobody strips the label.
    for i in 0..=9 {
        let t = i * STEP;
        if i < 5 {
            let w = write_a("a", &[("up", &[t]), ("x", &[t + 10])], t as u64);
            promoted(&h, "a", w).await;
        } else if i == 5 {
            promoted(&h, "a", write_a("a", &[("up", &[t])], t as u64)).await;
        }
        let w = write_b(
            "b",
            &[("up", &[t + 300]), ("x", &[t + 310])],
            (t + 300) as u64,
        );
        standby(&h, "g", "b", &w);
    }
    let live = write_b("b", &[("up", &[10_300]), ("x", &[10_310])], 10_300);
    let out = promoted(&h, "b", live).await;
    // Not b's whole ring (from 300): from half a step after a's last sample of each
    // series, matched without the replica label.
    assert_eq!(times(&out, "up"), vec![6_300, 7_300, 8_300, 9_300, 10_300]);
    assert_eq!(
        times(&out, "x"),
        vec![5_310, 6_310, 7_310, 8_310, 9_310, 10_310]
    );
}

#[tokio::test]
async fn a_series_the_old_source_never_sent_is_cut_at_the_handover_point() {
    let h = handover();
    for i in 0..=5 {
        let t = i * STEP;
        promoted(&h, "a", write(&[("up", &[t])], t as u64)).await;
        // b also has a series `extra` that a never forwarded.
        let w = write(
            &[("up", &[t + 700]), ("extra", &[t + 700])],
            (t + 700) as u64,
        );
        standby(&h, "g", "b", &w);
    }
    let out = promoted(
        &h,
        "b",
        write(&[("up", &[6_700]), ("extra", &[6_700])], 6_700),
    )
    .await;
    let extra = times(&out, "extra");
    // The group's newest forwarded sample is 5000, the usual step 1000: from 5500 on, not
    // b's whole ring (from 700).
    assert_eq!(extra, vec![5_700, 6_700]);
}

#[tokio::test]
async fn a_bigger_weight_taking_over_at_start_up_finds_the_old_sources_tail() {
    let h = handover();
    // a alone (b not started yet), scraping every 10 s: only its tail is held.
    let step = 10 * STEP;
    for i in 0..=5 {
        let t = i * step;
        promoted(&h, "a", replica_write("a", &[("up", &[t])], t as u64)).await;
    }
    // b's first write takes over at once: nothing of b is held, and its live write carries
    // one sample per series (no step to learn from it). The tail shows a's 10 s step: b's
    // sample 0.9 s after a's last one crowds it (an unknown step would count as 1 s and
    // keep it).
    let out = promoted(&h, "b", replica_write("b", &[("up", &[50_900])], 50_900)).await;
    assert!(out.is_empty(), "0.9 s after a's last sample: {out:?}");
    let out = promoted(&h, "b", replica_write("b", &[("up", &[60_900])], 60_900)).await;
    assert_eq!(out, vec![("up".to_owned(), 60_900)]);
}

#[tokio::test]
async fn an_unknown_step_counts_as_one_second() {
    let h = handover();
    // a forwarded one scrape only (alone: its tail holds it); b's first write, with one
    // scrape too, takes over 46 ms later in the cycle: no side shows a step.
    promoted(&h, "a", replica_write("a", &[("up", &[5_386])], 5_386)).await;
    let out = promoted(&h, "b", replica_write("b", &[("up", &[5_432])], 5_432)).await;
    assert!(out.is_empty(), "46 ms after a's last sample: {out:?}");
    let out = promoted(&h, "b", replica_write("b", &[("up", &[6_432])], 6_432)).await;
    assert_eq!(out, vec![("up".to_owned(), 6_432)]);
}

#[tokio::test]
async fn the_new_sources_step_serves_when_the_old_source_shows_none() {
    let h = handover();
    promoted(&h, "a", write(&[("up", &[1_000])], 1_000)).await;
    forget_rings(&h);
    let out = promoted(&h, "b", write(&[("up", &[1_000, 1_001])], 1_100)).await;
    assert_eq!(out, vec![("up".to_owned(), 1_001)]);
}

/// a forwards until step `a_ends` and b is held (on disk: the group has two sources) until
/// step 5, 300 ms later in the cycle.
async fn ha_pair(h: &Handover, a_ends: i64) {
    for i in 0..=5 {
        let t = i * STEP;
        if i <= a_ends {
            promoted(h, "a", write(&[("up", &[t])], t as u64)).await;
        }
        standby(h, "g", "b", &write(&[("up", &[t + 300])], (t + 300) as u64));
    }
}

#[tokio::test]
async fn held_writes_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = || config(dir.path(), 15, 1 << 20);
    {
        let h = Handover::open(config(), 0).expect("open");
        ha_pair(&h, 3).await;
    }
    // A restart: a stays the group's forwarded source, b's held writes are back.
    let h = Handover::open(config(), 6_000).expect("open again");
    assert_eq!(held(&h, "g", "b", false).len(), 6);
    // a's first write came while it was alone: that one was held in memory only.
    assert_eq!(held(&h, "g", "a", true).len(), 3);
    let out = promoted(&h, "b", write(&[("up", &[6_300])], 6_300)).await;
    assert_eq!(
        times(&out, "up"),
        vec![4_300, 5_300, 6_300],
        "cut at 3000 + 500"
    );
    // Rings untouched for longer than they are kept are deleted at start-up.
    drop(h);
    let h = Handover::open(config(), 6_300 + FORGET_MS).expect("open later");
    assert!(held(&h, "g", "b", false).is_empty());
    let left = std::fs::read_dir(dir.path().join("handover"))
        .expect("dir")
        .count();
    assert_eq!(left, 0, "the rings' directories are deleted");
}

#[tokio::test]
async fn a_held_file_cut_short_by_a_crash_is_cut_at_its_last_whole_write() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = || config(dir.path(), 15, 1 << 20);
    {
        let h = Handover::open(config(), 0).expect("open");
        ha_pair(&h, 3).await;
    }
    let ring = std::fs::read_dir(dir.path().join("handover"))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            let name = std::fs::read_to_string(p.join("ring.json")).unwrap_or_default();
            name.contains("\"b\"")
        })
        .expect("b's ring");
    let file = ring.join(format!("{:016x}.held", 0));
    let len = std::fs::metadata(&file).expect("file").len();
    // The last write is cut in half; the one before has its payload damaged.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    f.set_len(len - 10).expect("truncate");
    drop(f);
    let h = Handover::open(config(), 6_000).expect("open again");
    let b = held(&h, "g", "b", false);
    assert_eq!(
        b.iter().map(|w| w.meta.max_ts).collect::<Vec<_>>(),
        vec![300, 1_300, 2_300, 3_300, 4_300],
        "the write cut short is gone"
    );
    // b takes over: its held writes after a's end are backfilled, then its live write.
    let out = promoted(&h, "b", write(&[("up", &[6_300])], 6_300)).await;
    assert_eq!(
        times(&out, "up"),
        vec![4_300, 6_300],
        "5300 was lost in the crash"
    );
}

#[tokio::test]
async fn a_damaged_held_write_is_skipped() {
    use std::os::unix::fs::FileExt;
    let h = handover();
    ha_pair(&h, 3).await;
    {
        let guard = h.lock("g");
        let ring = &guard.state.rings["b"];
        let path = ring::ring_dir(&h.config.dir, &ring.name).join(format!("{:016x}.held", 0));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open");
        // The newest write (5300) ends the file: flip its last byte.
        let len = f.metadata().expect("meta").len();
        f.write_all_at(&[0xff], len - 1).expect("write");
    }
    let out = promoted(&h, "b", write(&[("up", &[6_300])], 6_300)).await;
    assert_eq!(
        times(&out, "up"),
        vec![4_300, 6_300],
        "5300 is damaged: skipped"
    );
}

#[tokio::test]
async fn the_old_source_is_read_only_a_few_steps_back() {
    let h = handover();
    // a and b scrape every 100 ms; b's held writes reach 10 s back.
    for i in 0..100 {
        let t = i * 100;
        promoted(&h, "a", write(&[("up", &[t]), ("x", &[t + 1])], t as u64)).await;
        let w = write(&[("up", &[t + 30]), ("x", &[t + 31])], (t + 30) as u64);
        standby(&h, "g", "b", &w);
    }
    let out = promoted(
        &h,
        "b",
        write(&[("up", &[10_030]), ("x", &[10_031])], 10_030),
    )
    .await;
    // a's last samples are 9900 and 9901: b's 9930 and 9931 crowd them (half a step).
    assert_eq!(times(&out, "up"), vec![10_030]);
    assert_eq!(times(&out, "x"), vec![10_031]);
    let guard = h.lock("g");
    let read = guard.state.cut.as_ref().expect("a cut").old_writes_read;
    assert!(read < 40, "{read} of a's 100 writes read");
}

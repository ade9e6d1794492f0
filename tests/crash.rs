//! Crash tests: highlander is SIGKILLed while writers are being acknowledged and the
//! storage is down (a backlog on disk), once; and then 25 times in a row at seeded random
//! moments while the storage flaps and small segment files are shipped and reused, at
//! `--durability sync` and at `batch`. After the restarts and the storage's return, every
//! sample that got a 2xx must arrive (with `batch`: every one outside its documented loss
//! window).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const WRITERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_sample_survives_kill_9() {
    let port = free_port();
    let mut node = Node::start(&[
        "--remote-write",
        &format!("http://127.0.0.1:{port}/api/v1/write"),
    ])
    .await;
    let acked: Arc<Mutex<BTreeSet<(String, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let url = node.write_url("highlander_source=a");
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (acked, stop, url) = (acked.clone(), stop.clone(), url.clone());
        writers.push(tokio::spawn(async move {
            let client = http();
            // Bounded: at most 5000 requests per writer.
            for i in 0..5_000i64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let req = request(&format!("crash_w{w}"), 10, 2, 1_700_000_000_000 + i * 2_000);
                let ok = acknowledged(&client, &url, &req, None).await;
                if !ok {
                    break;
                }
                let mut a = acked.lock().expect("acked");
                for t in &req.timeseries {
                    for s in &t.samples {
                        a.insert((series_key(&t.labels), s.timestamp));
                    }
                }
            }
        }));
    }
    // Let a backlog build up on disk, then kill without warning while writes are in flight.
    wait_until(
        "a backlog of acknowledged writes",
        Duration::from_secs(30),
        || async { (acked.lock().expect("acked").len() >= 20_000).then_some(()) },
    )
    .await;
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() >= 20_000);

    let sink = Sink::start_on(port).await;
    node.restart().await;
    assert!(node.log().contains("wal: recovered"));
    let received = wait_until(
        "every acknowledged sample at the storage",
        Duration::from_secs(90),
        || async {
            let got: BTreeSet<(String, i64)> = sink.samples().into_iter().collect();
            acked.is_subset(&got).then_some(got)
        },
    )
    .await;
    eprintln!(
        "acknowledged {} samples before kill -9; storage received {} distinct ({} with duplicates)",
        acked.len(),
        received.len(),
        sink.samples().len()
    );
}

/// A kill moments after the first start: the endpoint's new cursor must already be on
/// disk. Otherwise the next start creates it again at the newest record and skips every
/// write acknowledged before the kill (found by `corrupt_state.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_right_after_the_first_start_loses_no_acknowledged_write() {
    let port = free_port();
    let mut node = Node::start(&[
        "--remote-write",
        &format!("http://127.0.0.1:{port}/api/v1/write"),
    ])
    .await;
    let url = node.write_url("highlander_source=a");
    let c = http();
    for i in 0..3 {
        let (code, text) = post(
            &c,
            &url,
            &request("early", 2, 1, 1_700_000_000_000 + i * 1000),
        )
        .await;
        assert_eq!(code, 204, "{text}");
    }
    node.kill9();
    let sink = Sink::start_on(port).await;
    node.restart().await;
    sink.wait_samples(6, Duration::from_secs(20)).await;
    assert_eq!(
        node.log().matches("new endpoint, cursor created").count(),
        1,
        "the cursor is created once, at the first start:\n{}",
        node.log()
    );
}

/// Kills in each crash loop.
const KILLS: usize = 25;

/// Segment file size in the crash loops: small, so that every life with a working storage
/// ships whole segments and the next ones reuse their files (the spare).
const SEGMENT_BYTES: &str = "64KiB";

/// The flush period of the `batch` loop: the loss window the README documents for it.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// A small seeded generator (SplitMix64), so a failing run can be replayed with
/// `HIGHLANDER_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// What a crash loop saw.
struct LoopFigures {
    acked: usize,
    lost: usize,
    duplicates: usize,
    /// Recoveries that found a reused segment file open at the kill.
    reused_at_kill: usize,
}

/// A crash loop: writers retry every refused or unanswered write (as Prometheus does), the
/// storage is up in about two lives of three and refuses with 503 in the others (so a
/// backlog builds, and in the good lives whole segments are shipped and their files reused),
/// and highlander is SIGKILLed `KILLS` times at seeded random moments, restarted on the same
/// data directory each time. Then the storage takes everything. Every acknowledged sample
/// must arrive, except, with `batch`, samples acknowledged in the last `FLUSH_INTERVAL`
/// before a kill (the documented window); those are counted as lost.
async fn crash_loop(durability: &str) -> LoopFigures {
    let seed = std::env::var("HIGHLANDER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| common::e2e::now_ms() as u64);
    eprintln!(
        "crash loop ({durability}) seed {seed} (HIGHLANDER_CRASH_SEED={seed} replays the kill times)"
    );
    let mut rng = Rng(seed);
    let sink = Sink::start().await;
    let flush = format!("{}ms", FLUSH_INTERVAL.as_millis());
    let mut node = Node::start(&[
        "--remote-write",
        &sink.url(),
        "--durability",
        durability,
        "--flush-interval",
        &flush,
        "--buffer-segment-bytes",
        SEGMENT_BYTES,
    ])
    .await;
    // Each acknowledged sample with the moment its 2xx arrived.
    let acked: Arc<Mutex<BTreeMap<(String, i64), Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let url = node.write_url("highlander_source=a");
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (acked, stop, url) = (acked.clone(), stop.clone(), url.clone());
        writers.push(tokio::spawn(async move {
            let client = http();
            let mut i = 0i64;
            // Bounded: the loop ends with `stop`, and at most 100 000 attempts.
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let req = request(&format!("loop_w{w}"), 20, 1, 1_700_000_000_000 + i * 1_000);
                let ok = acknowledged(&client, &url, &req, Some(Duration::from_secs(2))).await;
                if !ok {
                    // Down or restarting: the same write again, as Prometheus does.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let now = Instant::now();
                let mut a = acked.lock().expect("acked");
                for t in &req.timeseries {
                    for s in &t.samples {
                        a.entry((series_key(&t.labels), s.timestamp)).or_insert(now);
                    }
                }
                i += 1;
            }
        }));
    }
    let mut lives = Vec::new();
    let mut kills = Vec::new();
    for _ in 0..KILLS {
        let storage_up = rng.below(3) > 0;
        sink.set_mode(if storage_up {
            Mode::Accept
        } else {
            Mode::Fail(503)
        });
        let life = Duration::from_millis(50 + rng.below(450));
        let before = acked.lock().expect("acked").len();
        tokio::time::sleep(life).await;
        kills.push(Instant::now());
        node.kill9();
        lives.push((
            life.as_millis(),
            storage_up,
            acked.lock().expect("acked").len() - before,
        ));
        node.restart().await;
    }
    sink.set_mode(Mode::Accept);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().expect("acked").clone();
    eprintln!("lives (ms alive, storage up, samples acknowledged): {lives:?}");
    assert!(
        lives.iter().filter(|(_, _, n)| *n > 0).count() >= KILLS / 2,
        "most lives acknowledged writes: {lives:?}"
    );

    // Samples that may be missing: none in `sync`; in `batch`, those acknowledged in the
    // last flush interval before a kill.
    let in_window = |at: &Instant| {
        durability == "batch"
            && kills
                .iter()
                .any(|k| *at <= *k && k.duration_since(*at) <= FLUSH_INTERVAL)
    };
    let must: BTreeSet<(String, i64)> = acked
        .iter()
        .filter(|(_, at)| !in_window(at))
        .map(|(k, _)| k.clone())
        .collect();
    let received = wait_until(
        "every acknowledged sample outside the loss window at the storage",
        Duration::from_secs(90),
        || async {
            let got: BTreeSet<(String, i64)> = sink.samples().into_iter().collect();
            must.is_subset(&got).then_some(got)
        },
    )
    .await;
    // What else arrives comes with the drain: wait for it before counting losses.
    node.wait_drained(Duration::from_secs(30)).await;
    let all = sink.samples();
    let received: BTreeSet<(String, i64)> =
        received.into_iter().chain(all.iter().cloned()).collect();
    let lost = acked.keys().filter(|k| !received.contains(*k)).count();
    let log = node.log();
    assert!(!log.contains("panicked"), "{log}");
    let figures = LoopFigures {
        acked: acked.len(),
        lost,
        duplicates: all.len() - received.len(),
        reused_at_kill: log
            .matches("wal: cut off the old records of a reused segment file")
            .count(),
    };
    eprintln!(
        "crash loop ({durability}, {SEGMENT_BYTES} segments): {} samples acknowledged over {} lives; \
         storage received {} distinct, {} duplicates; {} lost ({} acknowledged within {FLUSH_INTERVAL:?} \
         before a kill); {} recoveries found a reused segment file open at the kill",
        figures.acked,
        KILLS + 1,
        received.len(),
        figures.duplicates,
        figures.lost,
        acked.values().filter(|at| in_window(at)).count(),
        figures.reused_at_kill,
    );
    figures
}

/// The crash loop at the default `--durability sync`: nothing acknowledged is lost, also
/// when a kill lands while a reused segment file is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_sample_survives_a_crash_loop() {
    let f = crash_loop("sync").await;
    assert_eq!(f.lost, 0, "sync loses nothing acknowledged");
    assert!(
        f.reused_at_kill >= 1,
        "some kill landed while a reused segment file was open"
    );
}

/// The crash loop at `--durability batch`: a kill loses at most what was acknowledged in
/// the last flush interval (asserted per sample in `crash_loop`); the page cache outlives
/// a killed process, so in practice nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_durability_loses_at_most_its_window_in_a_crash_loop() {
    let f = crash_loop("batch").await;
    assert!(
        f.reused_at_kill >= 1,
        "some kill landed while a reused segment file was open"
    );
}

//! Crash tests: highlander is SIGKILLed while writers are being acknowledged and the
//! storage is down (a backlog on disk), once and then 25 times in a row at seeded random
//! moments. After the restarts and the storage's return, every sample that got a 2xx must
//! arrive.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
                let ok = client
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(body(&req))
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 204)
                    .unwrap_or(false);
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

/// Kills in the crash loop.
const KILLS: usize = 25;

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

/// A crash loop: with the storage down and writers retrying every refused or unanswered
/// write, highlander is SIGKILLed 25 times at random moments and restarted on the same
/// data directory each time. Then the storage comes back: every sample that got a 2xx, in
/// any of the 26 lives, arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_sample_survives_a_crash_loop() {
    let seed = std::env::var("HIGHLANDER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| common::e2e::now_ms() as u64);
    eprintln!("crash loop seed {seed} (HIGHLANDER_CRASH_SEED={seed} replays the kill times)");
    let mut rng = Rng(seed);
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
            let mut i = 0i64;
            // Bounded: the loop ends with `stop`, and at most 100 000 attempts.
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let req = request(&format!("loop_w{w}"), 20, 1, 1_700_000_000_000 + i * 1_000);
                let ok = client
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(body(&req))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 204)
                    .unwrap_or(false);
                if !ok {
                    // Down or restarting: the same write again, as Prometheus does.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let mut a = acked.lock().expect("acked");
                for t in &req.timeseries {
                    for s in &t.samples {
                        a.insert((series_key(&t.labels), s.timestamp));
                    }
                }
                i += 1;
            }
        }));
    }
    let mut lives = Vec::new();
    for _ in 0..KILLS {
        let life = Duration::from_millis(50 + rng.below(450));
        let before = acked.lock().expect("acked").len();
        tokio::time::sleep(life).await;
        node.kill9();
        lives.push((
            life.as_millis(),
            acked.lock().expect("acked").len() - before,
        ));
        node.restart().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().expect("acked").clone();
    eprintln!("lives (ms alive, samples acknowledged): {lives:?}");
    assert!(
        lives.iter().filter(|(_, n)| *n > 0).count() >= KILLS / 2,
        "most lives acknowledged writes: {lives:?}"
    );

    let sink = Sink::start_on(port).await;
    let received = wait_until(
        "every acknowledged sample at the storage",
        Duration::from_secs(90),
        || async {
            let got: BTreeSet<(String, i64)> = sink.samples().into_iter().collect();
            acked.is_subset(&got).then_some(got)
        },
    )
    .await;
    let all = sink.samples().len();
    eprintln!(
        "crash loop: {} samples acknowledged over {} lives; storage received {} distinct, {} duplicates",
        acked.len(),
        KILLS + 1,
        received.len(),
        all - received.len()
    );
}

//! Crash test: highlander is SIGKILLed while writers are being acknowledged and the storage
//! is down (a backlog on disk). After a restart and the storage's return, every sample that
//! got a 2xx must arrive.

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

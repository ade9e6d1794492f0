//! Gapless, overlap-free handover on real sockets: two simulated replicas scrape the same
//! series at different phases; the promoted one stops (or is overtaken, or failed over by
//! an operator) and the storage must see one sample per step with neither a hole nor a
//! doubled sample at the switch.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const T0: i64 = 1_700_000_000_000;
/// The simulated scrape interval, in data time and (roughly) in wall time.
const STEP: i64 = 200;

async fn scrape(node: &Node, source: &str, weight: u64, ts: i64) -> u16 {
    let url = node.write_url(&format!(
        "highlander_source={source}&highlander_weight={weight}"
    ));
    let mut req = request("up", 2, 1, ts);
    for t in &mut req.timeseries {
        t.samples[0].value = 1.0;
    }
    post(&http(), &url, &req).await.0
}

/// Every series at the sink: strictly increasing, steps within [STEP/2, 1.5 STEP].
fn assert_gapless(sink: &Sink, from: i64) {
    let samples = sink.samples();
    for series in ["__name__=up,series=00000", "__name__=up,series=00001"] {
        let ts: Vec<i64> = samples
            .iter()
            .filter(|(k, t)| k == series && *t >= from)
            .map(|(_, t)| *t)
            .collect();
        assert!(ts.len() > 10, "{series}: too few samples {ts:?}");
        for w in ts.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                (STEP / 2..=STEP * 3 / 2).contains(&gap),
                "{series}: gap {gap} ms between {} and {} in {ts:?}",
                w[0] - T0,
                w[1] - T0
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_of_the_promoted_source_is_bridged_by_the_standby() {
    let sink = Sink::start().await;
    let node = Node::start(&[
        "--remote-write",
        &sink.url(),
        "--health-tick",
        "100ms",
        "--health-expiry",
        "1s",
    ])
    .await;
    // a scrapes at phase 0, b at phase 70 ms; a stops after 10 steps.
    for k in 0..40 {
        let t = T0 + k * STEP;
        if k < 10 {
            assert_eq!(scrape(&node, "a", 10, t).await, 204);
        }
        let status = scrape(&node, "b", 5, t + 70).await;
        assert!(status == 202 || status == 204, "{status}");
        tokio::time::sleep(Duration::from_millis(STEP as u64)).await;
    }
    node.wait_drained(Duration::from_secs(10)).await;
    assert_gapless(&sink, T0);
    let log = node.log();
    assert!(log.contains("lost source : 'a'"), "{log}");
    assert!(log.contains("handover : 'b' takes over from 'a'"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigger_weight_takeover_has_no_overlap() {
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    for k in 0..30 {
        let t = T0 + k * STEP;
        let status = scrape(&node, "a", 5, t).await;
        assert!(status == 204 || (k > 10 && status == 202), "{k}: {status}");
        // b joins after 10 steps with a bigger weight: it takes over while a is alive.
        if k >= 10 {
            assert_eq!(scrape(&node, "b", 9, t + 120).await, 204);
        }
    }
    node.wait_drained(Duration::from_secs(10)).await;
    assert_gapless(&sink, T0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_failover_has_no_hole_and_no_overlap() {
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let admin = format!("http://{}/api/v1/groups/default/failover", node.admin);
    for k in 0..30 {
        let t = T0 + k * STEP;
        scrape(&node, "a", 9, t).await;
        scrape(&node, "b", 1, t + 150).await;
        if k == 15 {
            let r = http()
                .post(&admin)
                .header("Content-Type", "application/json")
                .body(json!({}).to_string())
                .send()
                .await
                .expect("admin");
            assert_eq!(r.status().as_u16(), 200);
        }
    }
    node.wait_drained(Duration::from_secs(10)).await;
    assert_gapless(&sink, T0);
    assert_eq!(node.metric("highlander_handover_total").await, 1.0);
}

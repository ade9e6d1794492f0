//! Gapless failover of an HA pair at a high rate, in the default configuration: each
//! replica keeps its own `replica` label, sends thousands of series per step in parallel
//! shards, and the handover rings have a small byte budget and a short window. Failover
//! by expiry, by a bigger weight, by an operator, and across a restart of highlander must
//! each leave every series with one sample per step: no hole, no doubled sample.

mod common;

use std::time::{Duration, Instant};

use common::*;
use highlander::proto::{Label, Sample, TimeSeries, WriteRequest};
use serde_json::json;
use tokio::sync::watch;

const T0: i64 = 1_700_000_000_000;
/// The scrape interval, in data time and in wall time.
const STEP: i64 = 100;
/// Series per replica, sent in `SHARDS` parallel writes per step.
const SERIES: usize = 4_000;
const SHARDS: usize = 2;
/// Flags of every node: a short expiry, a window of expiry + 1 s, a small byte budget
/// (about five times what the window needs at this rate).
const FLAGS: [&str; 8] = [
    "--health-tick",
    "200ms",
    "--health-expiry",
    "1s",
    "--handover-window",
    "2s",
    "--handover-max-bytes",
    "4MiB",
];

/// One replica of the pair.
#[derive(Clone, Copy)]
struct Replica {
    name: &'static str,
    weight: u64,
    /// Its scrape phase in the step.
    phase: i64,
}

const A: Replica = Replica {
    name: "a",
    weight: 5,
    phase: 0,
};
const B: Replica = Replica {
    name: "b",
    weight: 3,
    phase: 40,
};

/// Shard `shard` of the replica's scrape at `ts`: series `load{replica, series}`.
fn shard(replica: &str, shard: usize, ts: i64) -> WriteRequest {
    let per = SERIES / SHARDS;
    let label = |name: &str, value: String| Label {
        name: name.into(),
        value,
    };
    WriteRequest {
        timeseries: (shard * per..(shard + 1) * per)
            .map(|i| TimeSeries {
                labels: vec![
                    label("__name__", "load".into()),
                    label("replica", replica.into()),
                    label("series", format!("{i:05}")),
                ],
                samples: vec![Sample {
                    value: ts as f64,
                    timestamp: ts,
                }],
                ..TimeSeries::default()
            })
            .collect(),
        metadata: vec![],
    }
}

/// Sends step `k` of `r` as a sender does: its shards in parallel, each retried (for up to
/// 30 s) while highlander is away or answers 5xx. Returns the shards' statuses.
async fn send_step(url: &str, r: Replica, k: i64) -> Vec<u16> {
    let ts = T0 + k * STEP + r.phase;
    let client = http();
    let shards = (0..SHARDS).map(|s| {
        let client = client.clone();
        async move {
            let req = shard(r.name, s, ts);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let status = match client
                    .post(url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(body(&req))
                    .send()
                    .await
                {
                    Ok(resp) => resp.status().as_u16(),
                    Err(_) => 0,
                };
                if (status != 0 && status < 500) || Instant::now() >= deadline {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    futures_util::future::join_all(shards).await
}

/// Runs `r` from step `from` to step `to` (exclusive), step `k` due `k` steps of wall time
/// after `zero` (later when highlander is slower). `progress` tells the last step sent.
async fn run(
    node_url: String,
    r: Replica,
    from: i64,
    to: i64,
    zero: Instant,
    progress: watch::Sender<i64>,
) {
    let url = format!(
        "{node_url}?highlander_source={}&highlander_weight={}",
        r.name, r.weight
    );
    for k in from..to {
        let due = zero + Duration::from_millis((k * STEP) as u64);
        tokio::time::sleep_until(due.into()).await;
        for status in send_step(&url, r, k).await {
            assert!(
                status == 204 || status == 202,
                "{} step {k}: {status}",
                r.name
            );
        }
        progress.send_replace(k);
    }
}

/// Every series at the sink, both replicas merged without the `replica` label: one sample
/// per step from the first step on, none doubled (gaps within [STEP/2, 1.5 STEP]).
fn assert_gapless(sink: &Sink, steps: i64) {
    let mut by_series: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for (key, ts) in sink.samples() {
        let series: String = key
            .split(',')
            .filter(|l| !l.starts_with("replica="))
            .collect::<Vec<_>>()
            .join(",");
        by_series.entry(series).or_default().push(ts);
    }
    assert_eq!(by_series.len(), SERIES, "every series reached the sink");
    for (series, mut ts) in by_series {
        ts.sort_unstable();
        let steps_seen: Vec<i64> = ts.iter().map(|t| (t - T0) / STEP).collect();
        assert!(
            ts.len() as i64 >= steps - 2,
            "{series}: {} samples for {steps} steps: {steps_seen:?}",
            ts.len()
        );
        for w in ts.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                (STEP / 2..=STEP * 3 / 2).contains(&gap),
                "{series}: gap {gap} ms between {} and {}",
                w[0] - T0,
                w[1] - T0
            );
        }
    }
}

async fn start() -> (Sink, Node) {
    let sink = Sink::start().await;
    let mut flags = vec!["--remote-write".to_owned(), sink.url()];
    flags.extend(FLAGS.iter().map(|f| f.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = Node::start(&flags).await;
    (sink, node)
}

/// Runs both replicas at once: `a` for steps `0..a_to`, `b` for `b_from..b_to`. `b`
/// starts a step after `a` at the earliest: a takeover right at the first scrape knows no
/// step and would cut at one second (see `handover/cut.rs`).
///
/// `b`'s first write waits until `a` has sent the step before it. On a loaded machine
/// `a`'s sender falls behind wall time; its last steps before `b_from` would then reach
/// highlander after a takeover by `b`, as a standby's writes, and `b` has no data before
/// `b_from` to fill them: the hole a new source's missed data leaves (`handover.rs`).
async fn pair(node: &Node, a_to: i64, b_from: i64, b_to: i64, b: Replica) {
    let url = node.write_url("").trim_end_matches('?').to_owned();
    let zero = Instant::now();
    let (a_progress, mut a_sent) = watch::channel(-1);
    let a = tokio::spawn(run(url.clone(), A, 0, a_to, zero, a_progress));
    let b = tokio::spawn(async move {
        let a_before_b = a_sent.wait_for(|&k| k >= b_from - 1);
        tokio::time::timeout(Duration::from_secs(30), a_before_b)
            .await
            .expect("a sends the step before b's first in 30 s")
            .expect("a sends the step before b's first");
        run(url, b, b_from, b_to, zero, watch::channel(0).0).await
    });
    a.await.expect("a");
    b.await.expect("b");
}

fn handovers(node: &Node) -> usize {
    node.log().matches("handover : ").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_at_a_high_rate_leaves_no_hole_and_no_overlap() {
    let (sink, node) = start().await;
    // a stops after 30 steps (3 s); b goes on for 3 s more, past the expiry.
    pair(&node, 30, 1, 60, B).await;
    node.wait_drained(Duration::from_secs(30)).await;
    assert_gapless(&sink, 60);
    assert_eq!(handovers(&node), 1, "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigger_weight_at_a_high_rate_leaves_no_hole_and_no_overlap() {
    let (sink, node) = start().await;
    let heavy = Replica { weight: 9, ..B };
    // b joins after 20 steps with a bigger weight and takes over while a goes on.
    pair(&node, 50, 20, 50, heavy).await;
    node.wait_drained(Duration::from_secs(30)).await;
    assert_gapless(&sink, 50);
    assert_eq!(handovers(&node), 1, "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_failover_at_a_high_rate_leaves_no_hole_and_no_overlap() {
    let (sink, node) = start().await;
    let admin = format!("http://{}/api/v1/groups/default/failover", node.admin);
    let failover = async {
        tokio::time::sleep(Duration::from_millis((25 * STEP) as u64)).await;
        let r = http()
            .post(&admin)
            .header("Content-Type", "application/json")
            .body(json!({}).to_string())
            .send()
            .await
            .expect("admin");
        assert_eq!(r.status().as_u16(), 200);
    };
    tokio::join!(pair(&node, 50, 1, 50, B), failover);
    node.wait_drained(Duration::from_secs(30)).await;
    assert_gapless(&sink, 50);
    assert_eq!(handovers(&node), 1, "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_the_standbys_writes_and_the_switch_keeps_the_guarantee() {
    let (sink, mut node) = start().await;
    // a forwards for 22 steps and dies; b is held for 30 steps (a's expiry has not come
    // yet); highlander is killed and started again. b's writes held before the restart
    // must fill the gap after a's last sample.
    pair(&node, 22, 1, 30, B).await;
    node.restart().await;
    let url = node.write_url("").trim_end_matches('?').to_owned();
    let zero = Instant::now() - Duration::from_millis((30 * STEP) as u64);
    run(url, B, 30, 60, zero, watch::channel(0).0).await;
    node.wait_drained(Duration::from_secs(30)).await;
    assert_gapless(&sink, 60);
    let log = node.log();
    assert!(
        log.contains("held writes found from the previous run"),
        "{log}"
    );
    assert_eq!(handovers(&node), 1, "{log}");
}

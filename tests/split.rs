//! Requests that carry several HA sources at once, as an agent in front of highlander
//! (vmagent, Grafana Alloy, an OpenTelemetry collector) sends them: the series are split
//! per (replica, group) label pair and each pair is judged on its own. The storage holds
//! exactly the promoted replica of each group, plus the series that carry no replica
//! label; a replica that goes silent inside the batched stream fails over on its own.

mod common;

use std::time::Duration;

use highlander::proto::{Label, Sample, TimeSeries, WriteRequest};

use common::*;

const T0: i64 = 1_700_000_000_000;
/// Each replica's samples are offset by its own few milliseconds, so the storage's
/// samples tell which replica sent them after the replica label was stripped.
const OFFSET_A: i64 = 1;
const OFFSET_B: i64 = 2;

fn series(metric: &str, cluster: Option<&str>, replica: Option<&str>, t: i64) -> TimeSeries {
    let mut labels = vec![Label {
        name: "__name__".into(),
        value: metric.into(),
    }];
    if let Some(r) = replica {
        labels.push(Label {
            name: "__replica__".into(),
            value: r.into(),
        });
    }
    if let Some(c) = cluster {
        labels.push(Label {
            name: "cluster".into(),
            value: c.into(),
        });
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels,
        samples: vec![Sample {
            value: 1.0,
            timestamp: t,
        }],
        ..TimeSeries::default()
    }
}

/// One batch of the agent at `t`: two groups, each with the replicas in `replicas`, and one
/// series of the agent itself (no replica label).
fn batch(t: i64, replicas: &[&str]) -> WriteRequest {
    let mut timeseries = Vec::new();
    for cluster in ["eu", "us"] {
        for r in replicas {
            let offset = if *r == "a" { OFFSET_A } else { OFFSET_B };
            for metric in ["up", "cpu"] {
                timeseries.push(series(metric, Some(cluster), Some(r), t + offset));
            }
        }
    }
    timeseries.push(series("agent_up", None, None, t));
    WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

/// The storage's samples: (series, replica that sent it) for HA series, ("agent", -) for
/// the agent's own.
fn stored(sink: &Sink) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = sink
        .samples()
        .into_iter()
        .map(|(k, ts)| {
            let who = match ts.rem_euclid(1000) {
                OFFSET_A => "a",
                OFFSET_B => "b",
                _ => "-",
            };
            (k, who)
        })
        .collect();
    out.sort();
    out
}

async fn node(sink: &Sink, extra: &[&str]) -> Node {
    let mut args = vec![
        "--remote-write".to_owned(),
        sink.url(),
        "--replica-label".into(),
        "__replica__".into(),
        "--group-label".into(),
        "cluster".into(),
        "--health-expiry".into(),
        "2s".into(),
        "--health-tick".into(),
        "200ms".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_two_groups_of_two_replicas_stores_the_promoted_replica_of_each() {
    let sink = Sink::start().await;
    let node = node(&sink, &[]).await;
    let url = node.write_url("highlander_source=agent-1");
    let c = http();

    // Both replicas in every batch: a appears first in each group, so a is promoted in both.
    for k in 0..3 {
        let (status, text) = post(&c, &url, &batch(T0 + k * 1000, &["a", "b"])).await;
        assert_eq!(status, 204, "{text}");
    }
    sink.wait_samples(3 * 5, Duration::from_secs(10)).await;
    let got = stored(&sink);
    for cluster in ["eu", "us"] {
        for metric in ["cpu", "up"] {
            let key = format!("__name__={metric},cluster={cluster}");
            let from: Vec<&str> = got
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, w)| *w)
                .collect();
            assert_eq!(
                from,
                vec!["a"; 3],
                "{key}: only the promoted replica, once per batch: {got:?}"
            );
        }
    }
    let agent = got.iter().filter(|(k, _)| k == "__name__=agent_up").count();
    assert_eq!(
        agent, 3,
        "the series without a replica label are stored as they are: {got:?}"
    );
    assert_eq!(got.len(), 3 * 5, "nothing else: {got:?}");
    assert!(
        got.iter().all(|(k, _)| !k.contains("__replica__")),
        "the replica label is stripped: {got:?}"
    );

    // Each group has its own election, named by its label, with both replicas.
    let groups = node.admin_json("/api/v1/groups").await;
    for cluster in ["eu", "us"] {
        let g = groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["name"] == cluster)
            .unwrap_or_else(|| panic!("group {cluster}: {groups}"));
        assert_eq!(g["promoted"]["source"], "a", "{g}");
        assert!(g["sources"]["b"].is_object(), "{g}");
    }
    assert_eq!(
        node.metric("highlander_ingest_split_requests_total").await,
        3.0
    );
    assert_eq!(
        node.metric("highlander_ingest_split_parts_total").await,
        15.0
    );
    assert_eq!(
        node.metric("highlander_ingest_non_ha_series_total").await,
        3.0
    );

    // a dies behind the agent: its series stop coming. b takes over in each group at the
    // expiry, with its held series backfilled, and the storage gets b's series from then.
    let mut t = T0 + 3000;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, text) = post(&c, &url, &batch(t, &["b"])).await;
        assert!(status == 204 || status == 202, "{status} {text}");
        t += 1000;
        let groups = node.admin_json("/api/v1/groups").await;
        let promoted_b = groups["groups"]
            .as_array()
            .is_some_and(|gs| gs.iter().filter(|g| g["promoted"]["source"] == "b").count() == 2);
        if promoted_b {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b was not promoted: {groups}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, _) = post(&c, &url, &batch(t, &["b"])).await;
    assert_eq!(status, 204);
    wait_until(
        "b's series in the storage",
        Duration::from_secs(10),
        || async {
            let got = stored(&sink);
            ["eu", "us"]
                .iter()
                .all(|cl| {
                    got.iter()
                        .any(|(k, w)| *w == "b" && k.contains(&format!("cluster={cl}")))
                })
                .then_some(())
        },
    )
    .await;
    let history = node.admin_json("/api/v1/groups/eu/history").await;
    assert_eq!(history["switches"][0]["from"], "a", "{history}");
    assert_eq!(history["switches"][0]["to"], "b", "{history}");
    assert_eq!(history["switches"][0]["reason"], "expiry", "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_2_0_batch_is_split_too_and_its_answer_counts_the_whole_request() {
    let sink = Sink::start().await;
    let node = node(&sink, &[]).await;
    let url = node.write_url("");
    let req = batch(T0, &["a", "b"]);
    let (status, text) = post_raw(
        &http(),
        &url,
        common::v2::body(&common::v2::from_v1(&req)),
        "snappy",
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    )
    .await;
    assert_eq!(status, 204, "{text}");
    sink.wait_samples(5, Duration::from_secs(10)).await;
    let got = stored(&sink);
    assert_eq!(
        got.iter().filter(|(_, w)| *w == "a").count(),
        4,
        "a's series of both groups: {got:?}"
    );
    assert!(got.iter().all(|(_, w)| *w != "b"), "none of b's: {got:?}");
    // The Written headers count the whole request (9 samples), as for any 2.0 write.
    let resp = http()
        .post(&url)
        .header("Content-Encoding", "snappy")
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .body(common::v2::body(&common::v2::from_v1(&batch(
            T0 + 1000,
            &["a", "b"],
        ))))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 204);
    let written = resp
        .headers()
        .get("X-Prometheus-Remote-Write-Samples-Written")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(written.as_deref(), Some("9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_ha_labels_refuses_series_without_the_replica_label() {
    let sink = Sink::start().await;
    let node = node(&sink, &["--require-ha-labels"]).await;
    let (status, text) = post(&http(), &node.write_url(""), &batch(T0, &["a", "b"])).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("1 series without the replica label \"__replica__\""),
        "{text}"
    );
    let mut only_ha = batch(T0, &["a", "b"]);
    only_ha.timeseries.pop();
    let (status, text) = post(&http(), &node.write_url(""), &only_ha).await;
    assert_eq!(status, 204, "{text}");
}

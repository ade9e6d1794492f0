//! Remote-Write 2.0 end to end, with the real modern servers: two Prometheus 3.5 replicas
//! send 2.0 (`protobuf_message: io.prometheus.write.v2.Request`), with a classic histogram
//! turned into a native histogram with custom buckets (NHCB), through highlander into two
//! storages: VictoriaMetrics 1.145 and a Prometheus 3.5 started as a Remote-Write receiver.
//!
//! Checked: the promoted replica's series arrive in both storages and the standby's in
//! neither; the NHCB histogram arrives in the Prometheus storage with its bucket bounds;
//! every write came as 2.0; the default protocol `auto` speaks 2.0 to the Prometheus
//! storage and falls back to 1.0 for VictoriaMetrics (which answers a 2.0 body with a 204
//! and writes nothing), and VictoriaMetrics still holds every sample the 2.0 storage
//! holds; and on both replicas, the standby included,
//! `prometheus_remote_storage_{samples,histograms,exemplars}_failed_total` stay 0 while they
//! sent samples and histograms. Failover with 2.0 is in `e2e_failover.rs`.

mod common;

use std::time::Duration;

use common::e2e::*;
use common::*;

/// The `replica` label of every series of a query's result.
fn replicas(result: &[serde_json::Value]) -> Vec<String> {
    result
        .iter()
        .map(|r| r["metric"]["replica"].as_str().unwrap_or("-").to_owned())
        .collect()
}

#[test]
fn prometheus_3_replicas_sending_2_0_reach_victoriametrics_and_a_prometheus_storage() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(scenario());
}

async fn scenario() {
    Servers::Sid.require();
    let tmp = tempfile::tempdir().expect("tempdir");
    let client = http();
    // The second storage: Prometheus 3.5 as a Remote-Write receiver.
    let (_storage, store) = start_receiver(&client, tmp.path()).await;
    let store_write = format!("{store}/api/v1/write");
    let mut e = E2e::start_with(
        Servers::Sid,
        Labels::Kept,
        &["--remote-write", &store_write],
    )
    .await;
    e.protocol = Protocol::V2;
    e.start_replica("a", 10).await;
    e.wait_promoted("a", Duration::from_secs(20)).await;
    e.start_replica("b", 5).await;
    e.wait_dropped("b", 4, Duration::from_secs(30)).await;

    // The NHCB histogram in the Prometheus storage, with its custom bucket bounds.
    let histogram = wait_until(
        "the native histogram in the Prometheus storage",
        Duration::from_secs(20),
        || async {
            let r = instant_query(&client, &store, HISTOGRAM).await;
            r.first()
                .filter(|s| s.get("histogram").is_some())
                .map(|_| r.clone())
        },
    )
    .await;
    assert_eq!(replicas(&histogram), ["a"], "{histogram:?}");
    let buckets = histogram[0]["histogram"][1]["buckets"].to_string();
    assert!(
        buckets.contains("\"0.1\"") && buckets.contains("\"0.5\""),
        "custom bucket bounds 0.1 and 0.5 expected: {buckets}"
    );
    // The counter in both storages: the promoted replica's only.
    let counter = instant_query(&client, &store, METRIC).await;
    assert_eq!(replicas(&counter), ["a"], "{counter:?}");
    let vm = wait_until(
        "the counter in VictoriaMetrics",
        Duration::from_secs(20),
        || async {
            let (samples, series) = e.vm_samples().await?;
            (!samples.is_empty()).then_some(series)
        },
    )
    .await;
    assert!(
        vm.len() == 1 && vm.iter().all(|l| l.contains(r#""replica":"a""#)),
        "a's series only: {vm:?}"
    );

    // auto: 2.0 to the Prometheus storage, 1.0 to VictoriaMetrics after its headerless 204;
    // what that first answer lost went again as 1.0.
    let queue = e.node.admin_json("/api/v1/queue").await;
    let in_use: Vec<(String, String)> = queue["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|ep| {
            let url = ep["url"].as_str().unwrap_or_default();
            let kind = if url.starts_with(&store) {
                "prometheus"
            } else {
                "vm"
            };
            (
                kind.to_owned(),
                ep["protocol_in_use"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert!(
        in_use.contains(&("prometheus".into(), "2.0".into())),
        "{in_use:?}"
    );
    assert!(in_use.contains(&("vm".into(), "1.0".into())), "{in_use:?}");
    let stored = prometheus_samples(&client, &store, e.started_ms, now_ms())
        .await
        .expect("the Prometheus storage answers");
    let last = *stored.last().expect("samples in the Prometheus storage");
    let vm: Vec<i64> = e
        .wait_vm_reaches(last, Duration::from_secs(20))
        .await
        .iter()
        .map(|s| s.0)
        .filter(|t| *t <= last)
        .collect();
    assert_eq!(
        e.rel(&vm),
        e.rel(&stored),
        "VictoriaMetrics (1.0) holds the samples the 2.0 storage holds"
    );

    // Every write came as 2.0, the standby's were dropped, and no replica counted a
    // failed sample, histogram or exemplar.
    let v2 = e
        .metric("highlander_ingest_protocol_requests_total{protocol=\"2.0\"}")
        .await;
    assert!(v2 > 0.0, "no 2.0 write");
    assert_eq!(
        e.metric("highlander_ingest_protocol_requests_total{protocol=\"1.0\"}")
            .await,
        0.0
    );
    for name in ["a", "b"] {
        let (samples, histograms) = e.assert_no_failed_sends(name).await;
        eprintln!(
            "replica {name}: sent {samples} samples and {histograms} histograms, none failed"
        );
        assert!(histograms > 0.0, "replica {name} sent no histogram");
    }
    e.target_handle.stop(false).await;
}

//! What highlander does with a storage's refusals, on real sockets:
//! - refused credentials (401 or 403: an expired or rotated token) quarantine nothing: the
//!   endpoint shows `unauthorized`, one ERROR line says so, every write stays buffered and
//!   is retried, and all of it arrives once the credentials work again;
//! - permanent rejections (400) fill the quarantine only up to its cap: the oldest batches
//!   are dropped, counted and logged.

mod common;

use std::time::Duration;

use common::*;

const T0: i64 = 1_700_000_000_000;

async fn endpoint(node: &Node) -> serde_json::Value {
    node.admin_json("/api/v1/queue").await["endpoints"][0].clone()
}

async fn refused_credentials_are_retried_not_quarantined(status: u16) {
    let sink = Sink::start().await;
    sink.set_mode(Mode::Fail(status));
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    for i in 0..5 {
        let (code, text) = post(&c, &url, &request("m", 10, 1, T0 + i * 1000)).await;
        assert_eq!(code, 204, "{text}");
    }
    let e = wait_until(
        "the endpoint unauthorized",
        Duration::from_secs(10),
        || async {
            let e = endpoint(&node).await;
            (e["state"] == "unauthorized").then_some(e)
        },
    )
    .await;
    assert!(
        e["last_error"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("HTTP {status}")) && s.contains("credentials")),
        "{e}"
    );
    // Several refused attempts later: still nothing quarantined, one ERROR line.
    wait_until("retries", Duration::from_secs(10), || async {
        (endpoint(&node).await["retries"].as_u64() >= Some(3)).then_some(())
    })
    .await;
    let q = node.admin_json("/api/v1/queue").await;
    assert_eq!(q["quarantined"], 0, "{q}");
    let metric = format!(
        "highlander_shipper_state{{endpoint=\"{}\",state=\"unauthorized\"}}",
        e["name"].as_str().unwrap_or_default()
    );
    assert_eq!(node.metric(&metric).await, 1.0, "{metric}");
    let auth_failures = format!(
        "highlander_shipper_failures_total{{class=\"auth\",endpoint=\"{}\"}}",
        e["name"].as_str().unwrap_or_default()
    );
    assert!(node.metric(&auth_failures).await >= 3.0, "{auth_failures}");
    let log = node.log();
    let errors = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("refuses the credentials"))
        .count();
    assert_eq!(errors, 1, "one ERROR line per state change:\n{log}");

    // The credentials work again: every write arrives, the endpoint recovers.
    sink.set_mode(Mode::Accept);
    sink.wait_samples(50, Duration::from_secs(30)).await;
    wait_until(
        "the endpoint recovered",
        Duration::from_secs(10),
        || async { (endpoint(&node).await["state"] != "unauthorized").then_some(()) },
    )
    .await;
    assert_eq!(node.admin_json("/api/v1/queue").await["quarantined"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_retried_and_quarantines_nothing() {
    refused_credentials_are_retried_not_quarantined(401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_retried_and_quarantines_nothing() {
    refused_credentials_are_retried_not_quarantined(403).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_rejects_everything_fills_the_quarantine_only_up_to_its_cap() {
    let sink = Sink::start().await;
    sink.set_mode(Mode::Fail(400));
    let node = Node::start(&[
        "--remote-write",
        &sink.url(),
        "--buffer-max-bytes",
        "1MiB",
        "--max-body-bytes",
        "128KiB",
        "--quarantine-max-bytes",
        "16KiB",
    ])
    .await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    // 40 writes of about 700 bytes each once quarantined: 28 KB, more than the cap.
    for i in 0..40 {
        let (code, text) = post(&c, &url, &request("m", 100, 1, T0 + i * 1000)).await;
        assert_eq!(code, 204, "{text}");
    }
    node.wait_drained(Duration::from_secs(20)).await;
    let dropped = wait_until("quarantine drops", Duration::from_secs(10), || async {
        let n = node
            .metric("highlander_wal_quarantine_dropped_total{reason=\"size\"}")
            .await;
        (n > 0.0).then_some(n)
    })
    .await;
    let bytes = node.metric("highlander_wal_quarantined_bytes").await;
    assert!(bytes > 0.0 && bytes <= 16_384.0, "quarantine bytes {bytes}");
    let kept = node.admin_json("/api/v1/queue").await["quarantined"]
        .as_u64()
        .expect("quarantined");
    assert_eq!(
        kept + dropped as u64,
        40,
        "every write quarantined, then kept or dropped"
    );
    // The newest batches are the ones kept.
    let list = node.admin_json("/api/v1/quarantine").await;
    let seqs: Vec<u64> = list["quarantine"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|q| q["seq"].as_u64())
        .collect();
    assert_eq!(seqs.len() as u64, kept);
    assert!(
        seqs.iter().all(|&s| s >= 40 - kept),
        "the newest stay: {seqs:?}"
    );
    let log = node.log();
    assert!(
        log.contains("quarantine limit reached"),
        "an ERROR line says so:\n{log}"
    );
}

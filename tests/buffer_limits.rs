//! The buffer's age limit on a real process: with the storage down, writes older than
//! `--buffer-max-age` are dropped (counted per reason and per endpoint, logged at ERROR),
//! and only the newer ones reach the storage when it comes back.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const T0: i64 = 1_700_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_older_than_the_age_limit_are_dropped_counted_and_never_sent() {
    let port = free_port();
    // Retries every 200 ms at most, so the storage's return is seen before the newer
    // writes age out too.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.toml");
    std::fs::write(
        &path,
        format!(
            "[shipper]\nretry_initial = \"100ms\"\nretry_max = \"200ms\"\n\n[[endpoint]]\nname = \"lts\"\nurl = \"http://127.0.0.1:{port}/api/v1/write\"\n"
        ),
    )
    .expect("toml");
    let node = Node::start(&[
        "--config",
        path.to_str().expect("UTF-8"),
        "--buffer-max-age",
        "3s",
    ])
    .await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    for i in 0..5 {
        assert_eq!(
            post(&c, &url, &request("old", 2, 1, T0 + i * 1000)).await.0,
            204
        );
    }
    // The collector checks the age once a second.
    wait_until(
        "the old writes dropped",
        Duration::from_secs(10),
        || async {
            (node
                .metric("highlander_wal_dropped_records_total{reason=\"age\"}")
                .await
                >= 5.0)
                .then_some(())
        },
    )
    .await;
    for i in 0..5 {
        assert_eq!(
            post(&c, &url, &request("new", 2, 1, T0 + i * 1000)).await.0,
            204
        );
    }
    let e = node.admin_json("/api/v1/queue").await["endpoints"][0].clone();
    assert_eq!(e["dropped_records"], 5, "{e}");
    let sink = Sink::start_on(port).await;
    sink.wait_samples(10, Duration::from_secs(20)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    let names: BTreeSet<String> = sink
        .samples()
        .into_iter()
        .map(|(k, _)| k.split(',').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, BTreeSet::from(["__name__=new".to_owned()]));
    assert_eq!(sink.samples().len(), 10);
    let log = node.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("oldest records dropped")),
        "an ERROR line for the loss:\n{log}"
    );
}

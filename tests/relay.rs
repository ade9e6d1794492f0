//! Black-box tests of one highlander process on real sockets, with an in-test storage.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;

const T0: i64 = 1_700_000_000_000;

/// name, URL, body, Content-Encoding, Content-Type, expected status.
type BadCase<'a> = (&'a str, String, Vec<u8>, &'a str, &'a str, u16);

fn client() -> reqwest::Client {
    http()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_the_promoted_source_and_drops_the_standby() {
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = client();
    let a = node.write_url("highlander_weight=10&highlander_source=a");
    let b = node.write_url("highlander_weight=5&highlander_source=b");
    assert_eq!(post(&c, &a, &request("from_a", 2, 3, T0)).await.0, 204);
    assert_eq!(post(&c, &b, &request("from_b", 2, 3, T0)).await.0, 202);
    assert_eq!(
        post(&c, &a, &request("from_a", 2, 3, T0 + 3_000)).await.0,
        204
    );
    sink.wait_samples(12, Duration::from_secs(10)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    let samples = sink.samples();
    assert_eq!(samples.len(), 12);
    assert!(
        samples.iter().all(|(k, _)| k.contains("from_a")),
        "standby leaked: {samples:?}"
    );
    // Headers a storage expects.
    let headers = sink.with(|r| r.headers[0].clone());
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert!(headers["user-agent"].starts_with("highlander/"));
    let groups = node.admin_json("/api/v1/groups").await;
    let g = &groups["groups"][0];
    assert_eq!(g["name"], "default");
    assert_eq!(g["promoted"]["source"], "a");
    assert_eq!(g["sources"]["b"]["samples_dropped"], 6);
    assert!(node
        .log()
        .contains("new source : 'a' (no current promoted source) (10)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strictly_bigger_weight_takes_over() {
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = client();
    let w = |q: &str| node.write_url(q);
    assert_eq!(
        post(
            &c,
            &w("highlander_weight=5&highlander_source=a"),
            &request("m", 1, 1, T0)
        )
        .await
        .0,
        204
    );
    assert_eq!(
        post(
            &c,
            &w("highlander_weight=5&highlander_source=b"),
            &request("m", 1, 1, T0)
        )
        .await
        .0,
        202
    );
    assert_eq!(
        post(
            &c,
            &w("highlander_weight=6&highlander_source=b"),
            &request("m", 1, 1, T0 + 1000)
        )
        .await
        .0,
        204
    );
    assert_eq!(
        post(
            &c,
            &w("highlander_weight=5&highlander_source=a"),
            &request("m", 1, 1, T0 + 2000)
        )
        .await
        .0,
        202
    );
    assert!(
        node.log()
            .contains("new source : 'b' (bigger Highlander Weight) (5 -> 6)"),
        "{}",
        node.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_after_expiry() {
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
    let c = client();
    let a = node.write_url("highlander_weight=10&highlander_source=a");
    let b = node.write_url("highlander_weight=1&highlander_source=b");
    assert_eq!(post(&c, &a, &request("m", 1, 1, T0)).await.0, 204);
    assert_eq!(post(&c, &b, &request("m", 1, 1, T0)).await.0, 202);
    // a goes silent; b keeps writing and is promoted once the expiry passed.
    let promoted_at = wait_until("b to be promoted", Duration::from_secs(10), || async {
        let (status, _) = post(&c, &b, &request("m", 1, 1, T0 + 1000)).await;
        (status == 204).then_some(std::time::Instant::now())
    })
    .await;
    let _ = promoted_at;
    let log = node.log();
    assert!(log.contains("lost source : 'a' (no data for 1s)"), "{log}");
    assert!(
        log.contains("new source : 'b' (no current promoted source) (1)"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_the_node_keeps_serving() {
    let sink = Sink::start().await;
    let node = Node::start(&[
        "--remote-write",
        &sink.url(),
        "--max-body-bytes",
        "4KiB",
        "--max-decoded-bytes",
        "64KiB",
    ])
    .await;
    let c = client();
    let url = node.write_url("highlander_source=a");
    let good = body(&request("m", 1, 1, T0));
    let mut bomb = Vec::new();
    // snappy varint header announcing 1 GiB.
    bomb.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x04]);
    bomb.extend_from_slice(&[0; 8]);
    let unsorted = {
        let mut r = request("m", 1, 1, T0);
        r.timeseries[0].labels.reverse();
        body(&r)
    };
    let cases: Vec<BadCase> = vec![
        (
            "no encoding",
            url.clone(),
            good.clone(),
            "",
            "application/x-protobuf",
            415,
        ),
        (
            "gzip",
            url.clone(),
            good.clone(),
            "gzip",
            "application/x-protobuf",
            415,
        ),
        (
            "json",
            url.clone(),
            good.clone(),
            "snappy",
            "application/json",
            415,
        ),
        (
            "unknown proto",
            url.clone(),
            good.clone(),
            "snappy",
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
            415,
        ),
        (
            "bad snappy",
            url.clone(),
            b"\xff\xff\xff\xff\xff".to_vec(),
            "snappy",
            "application/x-protobuf",
            400,
        ),
        (
            "bad protobuf",
            url.clone(),
            snap::raw::Encoder::new()
                .compress_vec(b"\x0b\x0c")
                .expect("c"),
            "snappy",
            "application/x-protobuf",
            400,
        ),
        (
            "unsorted labels",
            url.clone(),
            unsorted,
            "snappy",
            "application/x-protobuf",
            400,
        ),
        (
            "bad weight",
            node.write_url("highlander_weight=-3"),
            good.clone(),
            "snappy",
            "application/x-protobuf",
            400,
        ),
        (
            "too large",
            url.clone(),
            vec![0; 8 << 10],
            "snappy",
            "application/x-protobuf",
            413,
        ),
        (
            "snappy bomb",
            url.clone(),
            bomb,
            "snappy",
            "application/x-protobuf",
            413,
        ),
    ];
    for (name, url, body, enc, ct, want) in cases {
        let (status, text) = post_raw(&c, &url, body, enc, ct).await;
        assert_eq!(status, want, "{name}: {text}");
        assert_eq!(
            text.trim().lines().count(),
            1,
            "{name}: one-line reason, got {text:?}"
        );
    }
    // GET is not a write.
    let r = c.get(node.write_url("")).send().await.expect("reachable");
    assert_eq!(r.status().as_u16(), 405);
    // Still serving, and nothing bad reached the storage.
    assert_eq!(post(&c, &url, &request("m", 1, 1, T0)).await.0, 204);
    sink.wait_samples(1, Duration::from_secs(10)).await;
    assert_eq!(sink.samples().len(), 1);
    assert!(node.log().contains("write refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dead_storage_does_not_slow_the_other_and_catches_up_in_order() {
    let alive = Sink::start().await;
    let dead = Sink::start().await;
    dead.set_mode(Mode::Fail(503));
    let node = Node::start(&[
        "--remote-write",
        &format!("alive={}", alive.url()),
        "--remote-write",
        &format!("dead={}", dead.url()),
    ])
    .await;
    let c = client();
    let url = node.write_url("highlander_source=a");
    assert_eq!(post(&c, &url, &request("m", 3, 2, T0)).await.0, 204);
    // Once a storage is down, the writes that wait for it are stored compressed (zstd).
    wait_until(
        "the dead storage to be retried",
        Duration::from_secs(10),
        || async {
            let q = node.admin_json("/api/v1/queue").await;
            let states: Vec<String> = q["endpoints"]
                .as_array()?
                .iter()
                .filter(|e| e["name"] == "dead")
                .map(|e| e["state"].as_str().unwrap_or("").to_owned())
                .collect();
            (states == ["backoff"] || states == ["failing"]).then_some(())
        },
    )
    .await;
    assert_eq!(node.metric("highlander_wal_compacting").await, 1.0);
    for i in 1..20 {
        assert_eq!(
            post(&c, &url, &request("m", 3, 2, T0 + i * 2_000)).await.0,
            204
        );
    }
    assert_eq!(
        node.metric("highlander_wal_compact_records_total").await,
        19.0
    );
    assert!(node.log().contains("new writes are stored compressed"));
    // Both storages get the same samples from the compressed records (the alive one first).
    alive.wait_samples(120, Duration::from_secs(10)).await;
    let q = node.admin_json("/api/v1/queue").await;
    let dead_view = q["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["name"] == "dead")
        .expect("dead")
        .clone();
    assert!(dead_view["lag_records"].as_u64().expect("lag") > 0, "{q}");
    assert!(
        dead_view["last_error"]
            .as_str()
            .expect("error")
            .contains("503"),
        "{q}"
    );
    assert!(
        ["backoff", "failing", "shipping"].contains(&dead_view["state"].as_str().expect("state")),
        "{q}"
    );
    assert!(
        q["records"].as_u64().expect("records") > 0,
        "kept for the dead endpoint: {q}"
    );
    // The storage comes back: everything arrives, in timestamp order per series.
    dead.set_mode(Mode::Accept);
    dead.wait_samples(120, Duration::from_secs(60)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    assert_eq!(alive.samples().len(), 120);
    let samples = dead.samples();
    assert_eq!(samples.len(), 120);
    assert_eq!(node.metric("highlander_wal_compacting").await, 0.0);
    assert!(node.log().contains("new writes are stored as received"));
    for series in samples
        .iter()
        .map(|(k, _)| k.clone())
        .collect::<BTreeSet<_>>()
    {
        let ts: Vec<i64> = samples
            .iter()
            .filter(|(k, _)| *k == series)
            .map(|(_, t)| *t)
            .collect();
        assert!(
            ts.windows(2).all(|w| w[0] < w[1]),
            "{series}: out of order {ts:?}"
        );
    }
    // Garbage collection removes what both took.
    wait_until(
        "the buffer to be collected",
        Duration::from_secs(10),
        || async { (node.admin_json("/api/v1/queue").await["records"] == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_cursors() {
    let first = Sink::start().await;
    let port = first.addr.port();
    let mut node = Node::start(&[
        "--remote-write",
        &format!("http://127.0.0.1:{port}/api/v1/write"),
    ])
    .await;
    let c = client();
    let url = node.write_url("highlander_source=a");
    let write = |name: &'static str, i: i64| {
        let (c, url) = (c.clone(), url.clone());
        async move { post(&c, &url, &request(name, 2, 1, T0 + i * 1_000)).await.0 }
    };
    // Ten writes shipped before the stop...
    for i in 0..10 {
        assert_eq!(write("shipped", i).await, 204);
    }
    first.wait_samples(20, Duration::from_secs(20)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    // ... and ten buffered while the storage is away. A stopped in-test server still
    // answers on connections it had open, so it refuses first: nothing buffered may reach it.
    first.set_mode(Mode::Fail(503));
    first.stop().await;
    for i in 0..10 {
        assert_eq!(write("buffered", i).await, 204);
    }
    assert!(
        node.terminate().success(),
        "clean exit on SIGTERM:\n{}",
        node.log()
    );
    assert!(node.log().contains("stopped; buffer flushed"));
    let second = Sink::start_on(port).await;
    node.restart().await;
    second.wait_samples(20, Duration::from_secs(20)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    // The cursor resumed after the shipped writes: only the buffered ones come, once.
    let names: BTreeSet<String> = second
        .samples()
        .into_iter()
        .map(|(k, _)| k.split(',').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, BTreeSet::from(["__name__=buffered".to_owned()]));
    assert_eq!(second.samples().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_rejection_is_quarantined_and_the_cursor_moves_on() {
    let sink = Sink::start().await;
    sink.set_mode(Mode::RejectMetric("poison".into()));
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = client();
    let url = node.write_url("highlander_source=a");
    assert_eq!(post(&c, &url, &request("good", 1, 1, T0)).await.0, 204);
    assert_eq!(post(&c, &url, &request("poison", 1, 1, T0)).await.0, 204);
    assert_eq!(
        post(&c, &url, &request("good", 1, 1, T0 + 1000)).await.0,
        204
    );
    sink.wait_samples(2, Duration::from_secs(10)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    let q = node.admin_json("/api/v1/queue").await;
    assert_eq!(q["quarantined"], 1, "{q}");
    assert_eq!(q["endpoints"][0]["quarantined"], 1, "{q}");
    assert!(q["endpoints"][0]["last_error"]
        .as_str()
        .expect("error")
        .contains("400"));
    assert!(node.log().contains("rejected the batch permanently"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_for_the_storage_is_split_in_halves() {
    let sink = Sink::start().await;
    sink.set_mode(Mode::MaxSeries(3));
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = client();
    assert_eq!(
        post(
            &c,
            &node.write_url("highlander_source=a"),
            &request("m", 10, 2, T0)
        )
        .await
        .0,
        204
    );
    sink.wait_samples(20, Duration::from_secs(10)).await;
    let keys: BTreeSet<String> = sink.samples().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 10);
    assert_eq!(node.admin_json("/api/v1/queue").await["quarantined"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_label_names_the_source_and_is_stripped() {
    let sink = Sink::start().await;
    let node = Node::start(&[
        "--remote-write",
        &sink.url(),
        "--replica-label",
        "__replica__",
        "--group-label",
        "cluster",
    ])
    .await;
    let c = client();
    let labelled = |replica: &str| {
        let mut r = request("m", 2, 1, T0);
        for t in &mut r.timeseries {
            t.labels.insert(
                0,
                highlander::proto::Label {
                    name: "__replica__".into(),
                    value: replica.into(),
                },
            );
            t.labels.insert(
                1,
                highlander::proto::Label {
                    name: "__name__".into(),
                    value: "m".into(),
                },
            );
            t.labels.remove(2);
            t.labels.insert(
                1,
                highlander::proto::Label {
                    name: "cluster".into(),
                    value: "eu".into(),
                },
            );
        }
        r.timeseries
            .iter_mut()
            .for_each(|t| t.labels.sort_by(|a, b| a.name.cmp(&b.name)));
        r
    };
    assert_eq!(post(&c, &node.write_url(""), &labelled("r1")).await.0, 204);
    assert_eq!(post(&c, &node.write_url(""), &labelled("r2")).await.0, 202);
    sink.wait_samples(2, Duration::from_secs(10)).await;
    for (k, _) in sink.samples() {
        assert!(
            !k.contains("__replica__"),
            "replica label must be stripped: {k}"
        );
        assert!(k.contains("cluster=eu"), "{k}");
    }
    let g = node.admin_json("/api/v1/groups/eu").await;
    assert_eq!(g["promoted"]["source"], "r1", "{g}");
    let missing = http()
        .get(format!("http://{}/api/v1/groups/nope", node.admin))
        .send()
        .await
        .expect("admin");
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_under_block_policy_answers_503_with_retry_after() {
    let port = free_port();
    let node = Node::start(&[
        "--remote-write",
        &format!("http://127.0.0.1:{port}"),
        "--buffer-max-bytes",
        "64KiB",
        "--max-body-bytes",
        "16KiB",
        "--buffer-full-policy",
        "block",
    ])
    .await;
    let c = client();
    let url = node.write_url("highlander_source=a");
    let mut statuses = Vec::new();
    for i in 0..1000 {
        let resp = c
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body(&request("m", 50, 5, T0 + i * 5_000)))
            .send()
            .await
            .expect("reachable");
        let status = resp.status().as_u16();
        if status == 503 {
            assert!(resp.headers().contains_key("retry-after"));
        }
        statuses.push(status);
        if status == 503 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 204));
    // Every refusal has a log line: a 503 at WARN (at most every 10 s).
    assert!(
        node.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("write deferred with 503")),
        "{}",
        node.log()
    );
    // The storage comes up: the buffer drains and writes are accepted again.
    let sink = Sink::start_on(port).await;
    let accepted = statuses.len() - 1;
    sink.wait_samples(accepted * 250, Duration::from_secs(60))
        .await;
    wait_until("writes accepted again", Duration::from_secs(20), || async {
        (post(&c, &url, &request("m", 1, 1, T0 + 10_000_000)).await.0 == 204).then_some(())
    })
    .await;
}

/// With `max_in_flight` above 1 a slow storage gets several requests at once, and the
/// cursor still moves only over a contiguous prefix of settled writes: nothing is lost or
/// sent twice, and a bad write among concurrent ones is the only one quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_settle_in_sequence_order() {
    let sink = Sink::start().await;
    sink.set_mode(Mode::Fail(503));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.toml");
    std::fs::write(
        &path,
        format!(
            "[[endpoint]]\nname = \"vm\"\nurl = \"{}\"\nmax_batch_bytes = \"0\"\nmax_in_flight = 4\n",
            sink.url()
        ),
    )
    .expect("write");
    let node = Node::start(&["--config", path.to_str().expect("utf8 path")]).await;
    let c = client();
    let url = node.write_url("highlander_source=a");
    let writes = 24;
    for i in 0..writes {
        let name = if i == 9 { "poison" } else { "m" };
        let t = T0 + i as i64 * 10_000;
        assert_eq!(post(&c, &url, &request(name, 3, 2, t)).await.0, 204);
    }
    // While the storage fails, four sends are out, each in its retry loop.
    wait_until("4 requests in flight", Duration::from_secs(10), || async {
        let q = node.admin_json("/api/v1/queue").await;
        let e = &q["endpoints"][0];
        (e["in_flight"] == 4 && e["max_in_flight"] == 4).then_some(())
    })
    .await;
    sink.set_delay(Duration::from_millis(100));
    sink.set_mode(Mode::RejectMetric("poison".into()));
    let good = (writes - 1) * 3 * 2;
    sink.wait_samples(good, Duration::from_secs(30)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    let samples = sink.samples();
    let distinct: BTreeSet<&(String, i64)> = samples.iter().collect();
    assert_eq!(distinct.len(), samples.len(), "no sample twice");
    assert_eq!(samples.len(), good, "every good write delivered");
    let most = sink.with(|r| r.max_in_flight);
    assert!(
        (2..=4).contains(&most),
        "up to 4 requests at once, got {most}"
    );
    let q = node.admin_json("/api/v1/queue").await;
    assert_eq!(q["quarantined"], 1, "only the poison write: {q}");
    assert_eq!(q["endpoints"][0]["in_flight"], 0, "{q}");
}

/// Live writes at a moderate rate into a near storage go out joined too: the worker waits
/// a moment for more records instead of sending each one alone. The writes go out every
/// 2 ms on a fixed schedule, each without waiting for the answers to the earlier ones (as
/// a sender's shards do), so they arrive 2 ms apart however slowly this machine answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_writes_to_a_near_storage_go_out_joined() {
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = client();
    let url = node.write_url("highlander_source=a");
    let writes = 60;
    let start = tokio::time::Instant::now();
    let sends: Vec<_> = (0..writes)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(start + Duration::from_millis(2 * i as u64)).await;
                let t = T0 + i as i64 * 1_000;
                post(&c, &url, &request("m", 5, 1, t)).await.0
            })
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.expect("send"), 204);
    }
    sink.wait_samples(writes * 5, Duration::from_secs(30)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    let samples = sink.samples();
    assert_eq!(samples.len(), writes * 5, "no sample twice, none lost");
    let requests = sink.with(|r| r.requests.len());
    assert!(
        requests <= writes / 3,
        "{writes} writes a few ms apart should go out joined, got {requests} requests"
    );
}

/// A storage that was down gets the backlog in fewer, joined requests: every sample, per
/// series in timestamp order; a bad write inside a joined request is the only one
/// quarantined (the rest are sent again one by one and delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_is_joined_into_fewer_requests_in_order() {
    let sink = Sink::start().await;
    sink.set_mode(Mode::Fail(503));
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = client();
    let url = node.write_url("highlander_source=a");
    let writes = 30;
    for i in 0..writes {
        let t = T0 + i as i64 * 10_000;
        assert_eq!(post(&c, &url, &request("m", 5, 2, t)).await.0, 204);
    }
    sink.set_mode(Mode::Accept);
    sink.wait_samples(writes * 5 * 2, Duration::from_secs(30))
        .await;
    node.wait_drained(Duration::from_secs(10)).await;
    let samples = sink.samples();
    assert_eq!(samples.len(), writes * 5 * 2, "no sample twice, none lost");
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (series, ts) in &samples {
        if let Some(prev) = last.insert(series.clone(), *ts) {
            assert!(prev < *ts, "{series}: {ts} arrived after {prev}");
        }
    }
    let requests = sink.with(|r| r.requests.len());
    assert!(
        requests < writes / 2,
        "{writes} buffered writes should go out joined, got {requests} requests"
    );

    // A poison write in the middle of a backlog: joined request refused, then one by one.
    sink.set_mode(Mode::Fail(503));
    for i in 0..10 {
        let name = if i == 4 { "poison" } else { "n" };
        let t = T0 + 1_000_000 + i as i64 * 1000;
        assert_eq!(post(&c, &url, &request(name, 2, 1, t)).await.0, 204);
    }
    sink.set_mode(Mode::RejectMetric("poison".into()));
    sink.wait_samples(writes * 5 * 2 + 9 * 2, Duration::from_secs(30))
        .await;
    node.wait_drained(Duration::from_secs(10)).await;
    let q = node.admin_json("/api/v1/queue").await;
    assert_eq!(q["quarantined"], 1, "only the poison write: {q}");
    let poisoned = sink
        .samples()
        .iter()
        .filter(|(k, _)| k.contains("poison"))
        .count();
    assert_eq!(poisoned, 0);
}

//! Every kind of malformed request, posted to a real node: each gets its status and a
//! one-line reason, the node keeps serving (a good write before and after is delivered),
//! and the buffer holds exactly the good writes, none damaged.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use highlander::proto::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

const T0: i64 = 1_700_000_000_000;
const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy")
}

/// A series named `up` with `labels` after `__name__` (already sorted) and one sample.
fn series(labels: Vec<Label>) -> TimeSeries {
    let mut all = vec![Label {
        name: "__name__".into(),
        value: "up".into(),
    }];
    all.extend(labels);
    TimeSeries {
        labels: all,
        samples: vec![Sample {
            value: 1.0,
            timestamp: T0,
        }],
        ..TimeSeries::default()
    }
}

/// A body whose only series carries a million labels.
fn million_labels() -> Vec<u8> {
    let labels = (0..1_000_000)
        .map(|i| Label {
            name: format!("l{i:07}"),
            value: "v".into(),
        })
        .collect();
    let req = WriteRequest {
        timeseries: vec![series(labels)],
        metadata: vec![],
    };
    snappy(&req.encode_to_vec())
}

/// A `WriteRequest` with one series whose label value is not UTF-8, by hand.
fn invalid_utf8() -> Vec<u8> {
    // Label { name: "__name__", value: 0xff 0xfe }
    let label = [&[0x0a, 8][..], b"__name__", &[0x12, 2, 0xff, 0xfe]].concat();
    let series = [&[0x0a, label.len() as u8][..], &label].concat();
    snappy(&[&[0x0a, series.len() as u8][..], &series].concat())
}

/// A snappy preamble that announces 4 GiB less a byte (the most snappy can), and a few
/// bytes.
fn snappy_bomb() -> Vec<u8> {
    vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00]
}

struct Case {
    what: &'static str,
    query: &'static str,
    body: Vec<u8>,
    encoding: &'static str,
    content_type: &'static str,
    /// Accepted statuses (a million labels is valid; it may also be too large).
    want: &'static [u16],
}

fn cases() -> Vec<Case> {
    let good = snappy(&request("m", 1, 1, T0).encode_to_vec());
    let ct = "application/x-protobuf";
    let case = |what, query, body, encoding, content_type, want| Case {
        what,
        query,
        body,
        encoding,
        content_type,
        want,
    };
    vec![
        case("empty body", "", Vec::new(), "snappy", ct, &[400]),
        case("gzip encoding", "", good.clone(), "gzip", ct, &[415]),
        case("no encoding", "", good.clone(), "", ct, &[415]),
        case(
            "json content type",
            "",
            good.clone(),
            "snappy",
            "application/json",
            &[415],
        ),
        case(
            "truncated snappy",
            "",
            good[..good.len() / 2].to_vec(),
            "snappy",
            ct,
            &[400],
        ),
        case(
            "snappy bomb of 4 GiB",
            "",
            snappy_bomb(),
            "snappy",
            ct,
            &[413],
        ),
        // Field 1 (timeseries) as a varint.
        case(
            "wrong wire type",
            "",
            snappy(&[0x08, 0x01]),
            "snappy",
            ct,
            &[400],
        ),
        case(
            "truncated protobuf",
            "",
            snappy(&[0x0a, 0x20, 0x0a]),
            "snappy",
            ct,
            &[400],
        ),
        case("invalid UTF-8", "", invalid_utf8(), "snappy", ct, &[400]),
        case(
            "a 1.0 body sent as 2.0",
            "",
            good.clone(),
            "snappy",
            V2,
            &[400],
        ),
        case(
            "garbage sent as 2.0",
            "",
            snappy(&[0xff; 64]),
            "snappy",
            V2,
            &[400],
        ),
        case(
            "a million labels",
            "",
            million_labels(),
            "snappy",
            ct,
            &[204, 400, 413],
        ),
        case(
            "huge weight",
            "highlander_weight=99999999999999999999999",
            good.clone(),
            "snappy",
            ct,
            &[400],
        ),
        case(
            "negative weight",
            "highlander_weight=-1",
            good.clone(),
            "snappy",
            ct,
            &[400],
        ),
        case(
            "empty source",
            "highlander_source=",
            good,
            "snappy",
            ct,
            &[400],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_gets_its_status_and_the_node_keeps_serving() {
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = http();
    let good = |t: i64| snappy(&request("good", 1, 1, t).encode_to_vec());
    let url = node.write_url("");
    assert_eq!(
        post_raw(&c, &url, good(T0), "snappy", "application/x-protobuf")
            .await
            .0,
        204
    );
    let mut failures = Vec::new();
    for case in cases() {
        let url = node.write_url(case.query);
        let (status, text) = post_raw(&c, &url, case.body, case.encoding, case.content_type).await;
        let lines = text.trim().lines().count();
        if !case.want.contains(&status) || (status != 204 && lines != 1) {
            failures.push(format!("{}: {status} {text:?}", case.what));
        }
    }
    // Wrong method and path.
    let get = c
        .get(&url)
        .send()
        .await
        .expect("reachable")
        .status()
        .as_u16();
    let other = c
        .post(format!("http://{}/api/v2/write", node.ingest))
        .body(good(T0))
        .send()
        .await
        .expect("reachable")
        .status()
        .as_u16();
    if get != 405 && get != 404 {
        failures.push(format!("GET on the write path: {get}"));
    }
    if other != 404 {
        failures.push(format!("POST to an unknown path: {other}"));
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Still serving; the buffer holds the good writes and nothing damaged.
    assert_eq!(
        post_raw(
            &c,
            &url,
            good(T0 + 1000),
            "snappy",
            "application/x-protobuf"
        )
        .await
        .0,
        204
    );
    // The million-label write may be delivered too: count the good ones.
    let good_samples = || {
        sink.samples()
            .iter()
            .filter(|(k, _)| k.starts_with("__name__=good"))
            .count()
    };
    wait_until(
        "both good writes at the sink",
        Duration::from_secs(20),
        || async { (good_samples() >= 2).then_some(()) },
    )
    .await;
    node.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(good_samples(), 2, "each good write once");
    assert_eq!(
        node.metric("highlander_wal_damaged_records_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_body_does_not_hold_up_other_writers() {
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    // Headers that promise a 1 MiB body, then a trickle.
    let mut slow = std::net::TcpStream::connect(node.ingest).expect("connect");
    write!(
        slow,
        "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1048576\r\n\r\n"
    )
    .expect("headers");
    slow.write_all(&[0u8; 16]).expect("a few bytes");
    let c = http();
    for i in 0..5 {
        let body = snappy(&request("good", 1, 1, T0 + i * 1000).encode_to_vec());
        let started = std::time::Instant::now();
        let (status, text) = post_raw(
            &c,
            &node.write_url(""),
            body,
            "snappy",
            "application/x-protobuf",
        )
        .await;
        assert_eq!(status, 204, "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a write waited {:?} behind the slow one",
            started.elapsed()
        );
        let _ = slow.write_all(&[0u8; 1]);
    }
    sink.wait_samples(5, Duration::from_secs(20)).await;
}

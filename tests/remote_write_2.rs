//! Remote-Write 2.0 at ingest, on real sockets: a 2.0 write is answered with the
//! `X-Prometheus-Remote-Write-*-Written` headers on every kind of answer (promoted, standby,
//! 400, 413, 415, 503), a 1.0 write never gets them, and a storage that reads only 1.0 gets
//! the same 1.0 series a 1.0 sender would have written.

mod common;

use std::time::Duration;

use common::*;

const T0: i64 = 1_700_000_000_000;

/// What an answer said: status, the three Written headers (if any) and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    written: Option<(u64, u64, u64)>,
    retry_after: Option<String>,
    text: String,
}

async fn send(c: &reqwest::Client, url: &str, body: Vec<u8>, encoding: &str, ct: &str) -> Answer {
    let resp = c
        .post(url)
        .header("Content-Encoding", encoding)
        .header("Content-Type", ct)
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .body(body)
        .send()
        .await
        .expect("highlander reachable");
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(format!("X-Prometheus-Remote-Write-{name}-Written"))
            .map(|v| v.to_str().expect("ascii").parse::<u64>().expect("a count"))
    };
    let written = match (header("Samples"), header("Histograms"), header("Exemplars")) {
        (Some(s), Some(h), Some(e)) => Some((s, h, e)),
        (None, None, None) => None,
        other => panic!("some Written headers but not all: {other:?}"),
    };
    let retry_after = resp
        .headers()
        .get("Retry-After")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    Answer {
        status,
        written,
        retry_after,
        text: resp.text().await.unwrap_or_default(),
    }
}

/// POSTs `req` as a 2.0 body.
async fn send_v2(c: &reqwest::Client, url: &str, req: &highlander::proto::WriteRequest) -> Answer {
    let body = v2::body(&v2::from_v1(req));
    send(c, url, body, "snappy", v2::CONTENT_TYPE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_0_write_reaches_a_1_0_storage_as_1_0_and_every_answer_says_what_was_written() {
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &sink.url(), "--max-body-bytes", "4KiB"]).await;
    let c = http();
    let a = node.write_url("highlander_weight=10&highlander_source=a");
    let b = node.write_url("highlander_weight=5&highlander_source=b");

    let promoted = send_v2(&c, &a, &request("from_a", 3, 2, T0)).await;
    assert_eq!(promoted.status, 204, "{promoted:?}");
    assert_eq!(promoted.written, Some((6, 0, 0)));
    // The standby's write is deduplicated on purpose: it is told everything was written,
    // or Prometheus would count its samples as failed and drop the batch.
    let standby = send_v2(&c, &b, &request("from_b", 2, 2, T0)).await;
    assert_eq!(standby.status, 202, "{standby:?}");
    assert_eq!(standby.written, Some((4, 0, 0)));
    // A 1.0 write gets no Written headers.
    let v1 = send(
        &c,
        &a,
        body(&request("v1", 1, 1, T0)),
        "snappy",
        "application/x-protobuf",
    )
    .await;
    assert_eq!((v1.status, v1.written), (204, None), "{v1:?}");
    // The group view names each source's version: a's latest write was 1.0, b's 2.0.
    let groups = node.admin_json("/api/v1/groups").await;
    let sources = &groups["groups"][0]["sources"];
    assert_eq!(
        (
            sources["a"]["protocol"].as_str(),
            sources["b"]["protocol"].as_str()
        ),
        (Some("1.0"), Some("2.0")),
        "{groups}"
    );

    sink.wait_samples(7, Duration::from_secs(20)).await;
    let mut got = sink.samples();
    got.sort();
    let want: Vec<(String, i64)> = (0..3)
        .flat_map(|i| {
            (0..2).map(move |k| (format!("__name__=from_a,series={i:05}"), T0 + k * 1000))
        })
        .chain([("__name__=v1,series=00000".to_owned(), T0)])
        .collect();
    assert_eq!(got, want, "the 1.0 series a 1.0 sender would have written");
    assert_eq!(
        node.metric("highlander_ingest_protocol_requests_total{protocol=\"2.0\"}")
            .await,
        2.0
    );
    assert_eq!(
        node.metric("highlander_ingest_protocol_requests_total{protocol=\"1.0\"}")
            .await,
        1.0
    );

    // Refusals of a 2.0 write carry the headers too, with zeros.
    let odd_refs = {
        let mut r = v2::from_v1(&request("m", 1, 1, T0));
        r.timeseries[0].labels_refs.push(1);
        v2::body(&r)
    };
    let refusals = [
        ("invalid 2.0", odd_refs, "snappy", v2::CONTENT_TYPE, 400),
        (
            "too large",
            vec![0; 8 << 10],
            "snappy",
            v2::CONTENT_TYPE,
            413,
        ),
        (
            "gzip",
            v2::body(&v2::from_v1(&request("m", 1, 1, T0))),
            "gzip",
            v2::CONTENT_TYPE,
            415,
        ),
    ];
    for (what, body, enc, ct, want) in refusals {
        let r = send(&c, &a, body, enc, ct).await;
        assert_eq!(r.status, want, "{what}: {r:?}");
        assert_eq!(r.written, Some((0, 0, 0)), "{what}: {r:?}");
        assert_eq!(r.text.trim().lines().count(), 1, "{what}: one-line reason");
    }
    // An unknown proto is not 2.0: 415 naming what is accepted, no Written headers.
    let v3 = "application/x-protobuf;proto=io.prometheus.write.v3.Request";
    let r = send(
        &c,
        &a,
        v2::body(&v2::from_v1(&request("m", 1, 1, T0))),
        "snappy",
        v3,
    )
    .await;
    assert_eq!((r.status, r.written), (415, None), "{r:?}");
    assert!(r.text.contains("io.prometheus.write.v2.Request"), "{r:?}");
    // A 1.0 body sent as 2.0 is refused, not taken for an empty write.
    let r = send(
        &c,
        &a,
        body(&request("m", 1, 1, T0)),
        "snappy",
        v2::CONTENT_TYPE,
    )
    .await;
    assert_eq!((r.status, r.written), (400, Some((0, 0, 0))), "{r:?}");
    assert!(r.text.contains("1.0"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_on_a_2_0_write_is_503_with_retry_after_and_zero_written() {
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
    let c = http();
    let url = node.write_url("highlander_source=a");
    let mut last = None;
    for i in 0..1000 {
        let r = send_v2(&c, &url, &request("m", 50, 5, T0 + i * 5_000)).await;
        if r.status != 204 {
            last = Some(r);
            break;
        }
        assert_eq!(r.written, Some((250, 0, 0)), "{r:?}");
    }
    let r = last.expect("the buffer fills up");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.retry_after.is_some(), "{r:?}");
    assert_eq!(r.written, Some((0, 0, 0)), "{r:?}");
}

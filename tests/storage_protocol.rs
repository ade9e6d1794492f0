//! The Remote-Write version each storage gets, on real sockets: writes that arrived as 2.0
//! are stored as 2.0 and go to each endpoint in the version it reads. `auto` (the default)
//! ends on 1.0 against a storage that ignores 2.0 (a headerless 204, as VictoriaMetrics
//! answers) or refuses it (415), and on 2.0 against one that reads it; in every case the
//! storage holds every sample exactly once, after a graceful restart too, and the fallback
//! is not probed again.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

const T0: i64 = 1_700_000_000_000;
const WAIT: Duration = Duration::from_secs(20);

/// POSTs `req` as 2.0 (`v2`) or 1.0 and expects it stored.
async fn write(c: &reqwest::Client, url: &str, req: &highlander::proto::WriteRequest, v2: bool) {
    let (body, ct) = if v2 {
        (v2::body(&v2::from_v1(req)), v2::CONTENT_TYPE)
    } else {
        (compress(req), "application/x-protobuf")
    };
    let resp = c
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .expect("highlander reachable");
    assert_eq!(resp.status().as_u16(), 204, "{:?}", resp.text().await);
}

fn compress(req: &highlander::proto::WriteRequest) -> Vec<u8> {
    use prost::Message;
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("compress")
}

/// Sends `rounds` writes of two series, alternating 2.0 and 1.0, from `t0` on.
async fn send_rounds(node: &Node, rounds: i64, t0: i64) {
    let c = http();
    let url = node.write_url("highlander_source=a");
    for i in 0..rounds {
        write(&c, &url, &request("mixed", 2, 1, t0 + i * 1000), i % 2 == 0).await;
    }
}

/// Every (series, timestamp) the sink holds, with how often it holds it.
fn held(sink: &Sink) -> BTreeMap<(String, i64), usize> {
    let mut out = BTreeMap::new();
    for s in sink.samples() {
        *out.entry(s).or_default() += 1;
    }
    out
}

fn assert_exactly_once(sink: &Sink, samples: usize) {
    let held = held(sink);
    assert_eq!(held.len(), samples, "every sample arrived");
    let doubled: Vec<_> = held.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "samples held twice: {doubled:?}");
}

/// A per-endpoint metric of the sink's endpoint (named after its address by default).
fn per_endpoint(name: &str, sink: &Sink) -> String {
    format!("{name}{{endpoint=\"{}\"}}", sink.addr)
}

async fn in_use(node: &Node) -> (String, String) {
    let q = node.admin_json("/api/v1/queue").await;
    let e = &q["endpoints"][0];
    (
        e["protocol"].as_str().unwrap_or_default().to_owned(),
        e["protocol_in_use"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `auto` against one kind of storage: where it ends, and nothing lost or doubled, also
/// across a restart.
async fn auto_against(speaks: Speaks, settles_on: &str) {
    let sink = Sink::start().await;
    sink.set_speaks(speaks);
    let mut node = Node::start(&["--remote-write", &sink.url()]).await;
    send_rounds(&node, 10, T0).await;
    sink.wait_samples(20, WAIT).await;
    node.wait_drained(WAIT).await;
    assert_exactly_once(&sink, 20);
    assert_eq!(in_use(&node).await, ("auto".into(), settles_on.into()));
    let v2_kept = sink.with(|r| r.protocols.iter().filter(|p| **p == "2.0").count());
    let (ignored, refused) = sink.with(|r| (r.ignored_v2, r.refused));
    match speaks {
        Speaks::V2 => {
            assert_eq!(v2_kept, 5, "each 2.0 write went as 2.0, alone");
            assert_eq!((ignored, refused), (0, 0));
        }
        Speaks::IgnoresV2 | Speaks::RefusesV2 => {
            assert_eq!(v2_kept, 0);
            assert_eq!(ignored + refused, 1, "one probe, then 1.0 for good");
            assert!(
                node.metric(&per_endpoint(
                    "highlander_shipper_converted_records_total",
                    &sink
                ))
                .await
                    >= 5.0,
                "the 2.0 records were converted"
            );
        }
    }

    // A graceful restart: its cursors are flushed, so nothing is sent twice. (After a
    // kill -9, what was delivered since the last cursor flush is sent again: at least
    // once.)
    node.restart_gracefully().await;
    assert_eq!(
        in_use(&node).await.1,
        settles_on,
        "the fallback is kept across a restart"
    );
    send_rounds(&node, 4, T0 + 100_000).await;
    sink.wait_samples(28, WAIT).await;
    node.wait_drained(WAIT).await;
    assert_exactly_once(&sink, 28);
    assert_eq!(
        sink.with(|r| r.ignored_v2 + r.refused),
        ignored + refused,
        "no new probe after the restart"
    );
    drop(node);
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_1_0_when_the_storage_ignores_2_0() {
    auto_against(Speaks::IgnoresV2, "1.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_1_0_when_the_storage_refuses_2_0() {
    auto_against(Speaks::RefusesV2, "1.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_keeps_2_0_for_a_storage_that_reads_it() {
    auto_against(Speaks::V2, "2.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_spec_headers_of_the_version_they_speak() {
    let sink = Sink::start().await;
    sink.set_speaks(Speaks::V2);
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    send_rounds(&node, 2, T0).await;
    sink.wait_samples(4, WAIT).await;
    let seen: Vec<(String, String)> = sink.with(|r| {
        r.headers
            .iter()
            .map(|h| {
                (
                    h.get("content-type").cloned().unwrap_or_default(),
                    h.get("x-prometheus-remote-write-version")
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect()
    });
    assert!(
        seen.contains(&(
            "application/x-protobuf;proto=io.prometheus.write.v2.Request".into(),
            "2.0.0".into()
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("application/x-protobuf".into(), "0.1.0".into())),
        "{seen:?}"
    );
    drop(node);
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_protocol_is_kept_whatever_the_storage_answers() {
    // 1.0: a 2.0 storage still gets 1.0 only.
    let sink = Sink::start().await;
    sink.set_speaks(Speaks::V2);
    let node = Node::start(&[
        "--remote-write",
        &sink.url(),
        "--remote-write-protocol",
        "1.0",
    ])
    .await;
    send_rounds(&node, 4, T0).await;
    sink.wait_samples(8, WAIT).await;
    assert!(sink.with(|r| r.protocols.iter().all(|p| *p == "1.0")));
    assert_exactly_once(&sink, 8);
    drop(node);
    sink.stop().await;

    // 2.0: a storage that refuses 2.0 gets the 2.0 writes quarantined (with the 415), the
    // 1.0 writes delivered.
    let sink = Sink::start().await;
    sink.set_speaks(Speaks::RefusesV2);
    let node = Node::start(&[
        "--remote-write",
        &sink.url(),
        "--remote-write-protocol",
        "2.0",
    ])
    .await;
    send_rounds(&node, 4, T0).await;
    sink.wait_samples(4, WAIT).await;
    node.wait_drained(WAIT).await;
    assert_eq!(
        node.metric(&per_endpoint("highlander_shipper_quarantined_total", &sink))
            .await,
        2.0
    );
    assert_eq!(in_use(&node).await, ("2.0".into(), "2.0".into()));
    drop(node);
    sink.stop().await;
}

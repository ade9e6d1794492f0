//! The admin API on a live node: every endpoint's happy path, 401 without the token, 404
//! for unknown names, 400 for bad bodies; pin/failover against the election rules; pause,
//! skip, replay and the quarantine against a storage that rejects, then accepts.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-admin-token";
const T0: i64 = 1_700_000_000_000;

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(node: &Node) -> Api {
        Api {
            base: format!("http://{}", node.admin),
            client: http(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut r = match method {
            "GET" => self.client.get(url),
            "POST" => self.client.post(url),
            "DELETE" => self.client.delete(url),
            m => panic!("method {m}"),
        };
        if let Some(t) = token {
            r = r.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            r = r
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = r.send().await.expect("admin reachable");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body), Some(TOKEN)).await
    }
}

async fn write(node: &Node, source: &str, weight: u64, name: &str, t: i64) -> u16 {
    let url = node.write_url(&format!(
        "highlander_source={source}&highlander_weight={weight}"
    ));
    post(&http(), &url, &request(name, 1, 1, t)).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_need_the_token_and_reads_do_not() {
    let sink = Sink::start().await;
    let node = Node::start(&[
        "--remote-write",
        &format!("lts={}", sink.url()),
        "--admin-token",
        TOKEN,
    ])
    .await;
    let api = Api::new(&node);
    let (s, v) = api.get("/api/v1/status").await;
    assert_eq!(s, 200);
    assert_eq!(v["role"], "standalone");
    assert_eq!(v["durability"], "sync");
    assert_eq!(v["endpoints"], json!(["lts"]));
    for (method, path) in [
        ("POST", "/api/v1/endpoints/lts/pause"),
        ("POST", "/api/v1/groups/default/failover"),
        ("DELETE", "/api/v1/quarantine/1"),
    ] {
        let (s, v) = api.call(method, path, None, None).await;
        assert_eq!(s, 401, "{method} {path}: {v}");
        assert_eq!(v["error"], "unauthorized");
        let (s, _) = api.call(method, path, None, Some("wrong")).await;
        assert_eq!(s, 401, "{method} {path} with a wrong token");
    }
    let (s, v) = api.post("/api/v1/endpoints/lts/pause", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !node.log().contains(TOKEN),
        "the token must never be logged"
    );
    assert!(node.log().contains("admin: endpoint paused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_can_be_protected_too() {
    let node = Node::start(&["--admin-token", TOKEN, "--admin-token-reads"]).await;
    let api = Api::new(&node);
    assert_eq!(api.get("/api/v1/queue").await.0, 401);
    assert_eq!(
        api.call("GET", "/api/v1/queue", None, Some(TOKEN)).await.0,
        200
    );
    assert_eq!(api.get("/healthz").await.0, 200, "probes stay open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_404_and_bad_bodies_400() {
    let node = Node::start(&["--admin-token", TOKEN]).await;
    let api = Api::new(&node);
    for path in ["/api/v1/groups/nope", "/api/v1/queue/records/12345"] {
        let (s, v) = api.get(path).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert!(v["detail"].is_string(), "{v}");
    }
    for path in [
        "/api/v1/endpoints/nope/pause",
        "/api/v1/groups/nope/unpin",
        "/api/v1/quarantine/7/replay",
    ] {
        let (s, v) = api.post(path, json!({})).await;
        assert_eq!(s, 404, "{path}: {v}");
    }
    let name = node.admin_json("/api/v1/status").await["endpoints"][0]
        .as_str()
        .expect("name")
        .to_owned();
    let bad: Vec<(String, Value)> = vec![
        (format!("/api/v1/endpoints/{name}/skip"), json!({})),
        (
            format!("/api/v1/endpoints/{name}/skip"),
            json!({"to_seq": 1, "to_time": 5}),
        ),
        (
            format!("/api/v1/endpoints/{name}/replay"),
            json!({"from_time": "yesterday"}),
        ),
        (
            format!("/api/v1/endpoints/{name}/skip"),
            json!({"to_sequence": 3}),
        ),
        ("/api/v1/groups/default/pin".to_owned(), json!({"until": 5})),
    ];
    for (path, body) in bad {
        let (s, v) = api.post(&path, body.clone()).await;
        assert_eq!(s, 400, "{path} {body}: {v}");
        assert_eq!(
            v["error"].as_str().map(|e| !e.is_empty()),
            Some(true),
            "{v}"
        );
    }
    let (s, _) = api
        .call(
            "POST",
            "/api/v1/groups/default/pin",
            Some(Value::String("not json".into())),
            Some(TOKEN),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_unpin_and_failover_follow_the_election_rules() {
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &sink.url(), "--admin-token", TOKEN]).await;
    let api = Api::new(&node);
    assert_eq!(write(&node, "a", 10, "m", T0).await, 204);
    assert_eq!(write(&node, "b", 5, "m", T0).await, 202);
    assert_eq!(write(&node, "c", 1, "m", T0).await, 202);

    // Pin b: it is promoted at once, and a's bigger weight no longer counts.
    let (s, v) = api
        .post(
            "/api/v1/groups/default/pin",
            json!({"source": "b", "for": "1h"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["promoted"]["source"], "b");
    assert_eq!(v["pin"]["kind"], "pin");
    assert_eq!(write(&node, "a", 10, "m", T0 + 1000).await, 202);
    assert_eq!(write(&node, "b", 5, "m", T0 + 1000).await, 204);
    let (s, _) = api
        .post("/api/v1/groups/default/pin", json!({"source": "zz"}))
        .await;
    assert_eq!(s, 404, "unknown source");

    // Unpin: weights count again at a's next write.
    let (s, v) = api.post("/api/v1/groups/default/unpin", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        api.post("/api/v1/groups/default/unpin", json!({})).await.0,
        409,
        "not pinned any more"
    );
    assert_eq!(write(&node, "a", 10, "m", T0 + 2000).await, 204);

    // Failover away from a: the best live candidate (b, weight 5 > c's 1) is promoted and
    // stays, although a is alive and heavier.
    write(&node, "b", 5, "m", T0 + 2000).await;
    write(&node, "c", 1, "m", T0 + 2000).await;
    let (s, v) = api.post("/api/v1/groups/default/failover", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["promoted"]["source"], "b");
    assert_eq!(v["pin"]["kind"], "failover");
    assert_eq!(write(&node, "a", 10, "m", T0 + 3000).await, 202);

    // The history says what happened, newest first, and survives a restart: the
    // promotions, and the handovers at the new sources' first writes.
    let (_, g) = api.get("/api/v1/groups/default").await;
    let events: Vec<String> = g["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| match h["change"].as_str() {
            Some("handover") => format!("handover to {}", h["source"].as_str().unwrap_or("-")),
            _ => h["reason"]["kind"].as_str().unwrap_or("-").to_owned(),
        })
        .collect();
    assert_eq!(
        events,
        [
            "failover",
            "handover to a",
            "bigger_weight",
            "handover to b",
            "pinned",
            "no_promoted_source"
        ],
        "{g}"
    );
    // The same, as switches.
    let switches: Vec<(String, String, bool)> = g["switches"]
        .as_array()
        .expect("switches")
        .iter()
        .map(|s| {
            (
                s["reason"].as_str().unwrap_or("-").to_owned(),
                s["to"].as_str().unwrap_or("-").to_owned(),
                s["handover"].is_object(),
            )
        })
        .collect();
    let expected = [
        ("operator", "b", false),
        ("bigger_weight", "a", true),
        ("pin", "b", true),
        ("first_source", "a", false),
    ];
    assert_eq!(
        switches,
        expected.map(|(r, t, h)| (r.to_owned(), t.to_owned(), h)),
        "{g}"
    );
    let mut node = node;
    node.terminate();
    node.restart().await;
    let (_, g) = Api::new(&node).get("/api/v1/groups/default").await;
    assert_eq!(g["history"].as_array().map(Vec::len), Some(6), "{g}");
    assert_eq!(
        g["pin"]["source"], "b",
        "the failover pin survives a restart: {g}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_skip_replay_and_quarantine_against_a_storage() {
    let sink = Sink::start().await;
    let node = Node::start(&[
        "--remote-write",
        &format!("lts={}", sink.url()),
        "--admin-token",
        TOKEN,
    ])
    .await;
    let api = Api::new(&node);

    // Paused: records stay buffered, nothing is sent.
    assert_eq!(
        api.post("/api/v1/endpoints/lts/pause", json!({})).await.0,
        200
    );
    for i in 0..5 {
        assert_eq!(write(&node, "a", 0, "m", T0 + i * 1000).await, 204);
    }
    let (_, q) = api.get("/api/v1/queue").await;
    assert_eq!(q["endpoints"][0]["state"], "paused", "{q}");
    assert_eq!(q["endpoints"][0]["lag_records"], 5, "{q}");
    let (s, recs) = api.get("/api/v1/queue/records?limit=2").await;
    assert_eq!(s, 200);
    assert_eq!(recs["records"].as_array().map(Vec::len), Some(2), "{recs}");
    let first = recs["records"][0]["seq"].as_u64().expect("seq");
    let (s, one) = api.get(&format!("/api/v1/queue/records/{first}")).await;
    assert_eq!(s, 200);
    assert_eq!(one["preview"][0]["labels"]["__name__"], "m", "{one}");
    assert_eq!(one["source"], "a");

    // Skip three of them, then resume: only the last two arrive.
    let (s, v) = api
        .post("/api/v1/endpoints/lts/skip", json!({"to_seq": first + 3}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["skipped_records"], 3);
    assert_eq!(
        api.post("/api/v1/endpoints/lts/resume", json!({})).await.0,
        200
    );
    sink.wait_samples(2, Duration::from_secs(10)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    assert_eq!(sink.samples().len(), 2);

    // A poison batch is quarantined; replaying it while the storage still refuses keeps it
    // there; once the storage accepts, the replay delivers it and it leaves the quarantine.
    sink.set_mode(Mode::RejectMetric("poison".into()));
    assert_eq!(write(&node, "a", 0, "poison", T0 + 10_000).await, 204);
    let entry = wait_until(
        "the batch to be quarantined",
        Duration::from_secs(10),
        || async {
            let (_, v) = api.get("/api/v1/quarantine").await;
            v["quarantine"].as_array().and_then(|l| l.first().cloned())
        },
    )
    .await;
    assert_eq!(entry["status"], 400, "{entry}");
    assert_eq!(entry["endpoint"], "lts");
    let seq = entry["seq"].as_u64().expect("seq");
    sink.set_mode(Mode::Accept);
    let (s, v) = api
        .post(&format!("/api/v1/quarantine/{seq}/replay"), json!({}))
        .await;
    assert_eq!(s, 202, "{v}");
    wait_until(
        "the replayed batch to arrive",
        Duration::from_secs(10),
        || async {
            sink.samples()
                .iter()
                .any(|(k, _)| k.contains("poison"))
                .then_some(())
        },
    )
    .await;
    wait_until(
        "the quarantine to empty",
        Duration::from_secs(10),
        || async {
            (api.get("/api/v1/quarantine").await.1["quarantine"] == json!([])).then_some(())
        },
    )
    .await;

    // Replay of records no longer buffered is a conflict; delete of an unknown batch 404.
    wait_until(
        "delivered records to be collected",
        Duration::from_secs(10),
        || async { (api.get("/api/v1/queue").await.1["records"] == 0).then_some(()) },
    )
    .await;
    let (s, v) = api
        .post("/api/v1/endpoints/lts/replay", json!({"from_seq": 0}))
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/api/v1/quarantine/{seq}"),
            None,
            Some(TOKEN)
        )
        .await
        .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_takes_effect_while_the_storage_is_failing() {
    let sink = Sink::start().await;
    sink.set_mode(Mode::Fail(500));
    let node = Node::start(&[
        "--remote-write",
        &format!("lts={}", sink.url()),
        "--admin-token",
        TOKEN,
    ])
    .await;
    let api = Api::new(&node);
    for i in 0..3 {
        assert_eq!(write(&node, "a", 0, "m", T0 + i * 1000).await, 204);
    }
    wait_until(
        "the endpoint to back off",
        Duration::from_secs(10),
        || async {
            let (_, q) = api.get("/api/v1/queue").await;
            (q["endpoints"][0]["retries"].as_u64().unwrap_or(0) >= 2).then_some(())
        },
    )
    .await;
    let (_, q) = api.get("/api/v1/queue").await;
    let next = q["next_seq"].as_u64().expect("next_seq");
    let (s, v) = api
        .post("/api/v1/endpoints/lts/skip", json!({"to_seq": next}))
        .await;
    assert_eq!(s, 200, "{v}");
    sink.set_mode(Mode::Accept);
    assert_eq!(write(&node, "a", 0, "after", T0 + 5000).await, 204);
    sink.wait_samples(1, Duration::from_secs(10)).await;
    let samples = sink.samples();
    assert!(
        samples.iter().all(|(k, _)| k.contains("after")),
        "skipped records were sent: {samples:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_for_promtool_and_describe_the_node() {
    let promtool = "/usr/bin/promtool";
    assert!(
        std::path::Path::new(promtool).exists(),
        "{promtool} is missing: install the Debian package prometheus (scripts/test does)"
    );
    let sink = Sink::start().await;
    let node = Node::start(&["--remote-write", &format!("lts={}", sink.url())]).await;
    assert_eq!(write(&node, "a", 1, "m", T0).await, 204);
    assert_eq!(write(&node, "b", 0, "m", T0).await, 202);
    let bad = post_raw(
        &http(),
        &node.write_url(""),
        b"junk".to_vec(),
        "snappy",
        "application/x-protobuf",
    )
    .await;
    assert_eq!(bad.0, 400);
    sink.wait_samples(1, Duration::from_secs(10)).await;
    let text = http()
        .get(format!("http://{}/metrics", node.admin))
        .send()
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("text");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "highlander_ingest_requests_total{outcome=\"promoted\"} 1",
        "highlander_ingest_requests_total{outcome=\"standby\"} 1",
        "highlander_ingest_rejected_total{reason=\"snappy\"} 1",
        "highlander_election_promoted_source_info{group=\"default\",source=\"a\"} 1",
        "highlander_shipper_sent_samples_total{endpoint=\"lts\"} 1",
        "highlander_shipper_state{endpoint=\"lts\",state=\"idle\"}",
        "highlander_wal_flush_duration_seconds_count",
        "highlander_ready 1",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

//! Three real highlander processes forming a raft cluster on loopback, with an in-test
//! storage: a leader ships, the others stand by; SIGKILL of the leader under load → a new
//! leader within seconds, the same promoted source, shipping resumes and every sample a
//! surviving node acknowledged arrives; the killed node rejoins as a follower. An operator
//! moves leadership to a named node and shipping follows it.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const SECRET: &str = "cluster-test-secret";

async fn start_cluster(sink: &Sink) -> Vec<Node> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let id = (i + 1).to_string();
        let listen = format!("127.0.0.1:{port}");
        nodes.push(
            Node::start(&[
                "--remote-write",
                &sink.url(),
                "--node-id",
                &id,
                "--cluster-listen",
                &listen,
                "--peers",
                &peers,
                "--cluster-secret",
                SECRET,
                "--health-tick",
                "200ms",
                "--health-expiry",
                "2s",
                "--cluster-overlap",
                "10s",
            ])
            .await,
        );
    }
    nodes
}

async fn role(node: &Node) -> String {
    node.admin_json("/api/v1/status").await["role"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

async fn leader_of(nodes: &[&Node]) -> usize {
    wait_until("a cluster leader", Duration::from_secs(30), || async {
        for (i, n) in nodes.iter().enumerate() {
            if role(n).await == "leader" {
                return Some(i);
            }
        }
        None
    })
    .await
}

/// Writes one request of source `a` to every live node; returns the samples each 204
/// acknowledged.
async fn write_everywhere(
    nodes: &[Option<&Node>],
    t: i64,
) -> Vec<(usize, BTreeSet<(String, i64)>)> {
    let client = http();
    let req = request("clustered", 5, 1, t);
    let keys: BTreeSet<(String, i64)> = req
        .timeseries
        .iter()
        .map(|s| (series_key(&s.labels), s.samples[0].timestamp))
        .collect();
    let mut acked = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        let url = node.write_url("highlander_source=a&highlander_weight=10");
        let ok = client
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body(&req))
            .send()
            .await
            .map(|r| r.status().as_u16() == 204)
            .unwrap_or(false);
        if ok {
            acked.push((i, keys.clone()));
        }
    }
    acked
}

/// Writes source `a` to every node until all three acknowledge it (the first writes get 503
/// until the leader commits the promotion); returns the data time of the last write.
async fn promote_a(nodes: &[Node]) -> i64 {
    let mut t = 1_700_000_000_000i64;
    wait_until(
        "the promotion of a to be committed",
        Duration::from_secs(20),
        || {
            t += 1_000;
            let nodes: Vec<Option<&Node>> = nodes.iter().map(Some).collect();
            let ts = t;
            async move { (write_everywhere(&nodes, ts).await.len() == 3).then_some(()) }
        },
    )
    .await;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_loss_keeps_the_promoted_source_and_loses_nothing_acknowledged() {
    let sink = Sink::start().await;
    let mut nodes = start_cluster(&sink).await;
    let first_leader = leader_of(&nodes.iter().collect::<Vec<_>>()).await;

    let mut t = promote_a(&nodes).await;

    let mut acked_by: Vec<BTreeSet<(String, i64)>> = vec![BTreeSet::new(); 3];
    for _ in 0..20 {
        t += 1_000;
        let live: Vec<Option<&Node>> = nodes.iter().map(Some).collect();
        for (i, keys) in write_everywhere(&live, t).await {
            acked_by[i].extend(keys);
        }
    }
    // Only the leader ships.
    sink.wait_samples(100, Duration::from_secs(20)).await;
    let q = nodes[(first_leader + 1) % 3]
        .admin_json("/api/v1/queue")
        .await;
    assert_eq!(
        q["endpoints"][0]["state"], "standby",
        "a follower must not ship: {q}"
    );
    let metrics = http()
        .get(format!("http://{}/metrics", nodes[first_leader].admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "highlander_cluster_leader 1",
        "highlander_cluster_members 3",
        "highlander_cluster_lease_fresh 1",
        "highlander_cluster_replication_lag_entries{member=",
    ] {
        assert!(metrics.contains(line), "missing {line:?}");
    }

    // SIGKILL the leader while writes continue.
    nodes[first_leader].kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != first_leader).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        t += 1_000;
        let live: Vec<Option<&Node>> = (0..3)
            .map(|i| (i != first_leader).then(|| &nodes[i]))
            .collect();
        for (i, keys) in write_everywhere(&live, t).await {
            acked_by[i].extend(keys);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let survivor_refs: Vec<&Node> = survivors.iter().map(|i| &nodes[*i]).collect();
    let new_leader = survivors[leader_of(&survivor_refs).await];
    assert_ne!(new_leader, first_leader);
    let g = nodes[new_leader].admin_json("/api/v1/groups/default").await;
    assert_eq!(
        g["promoted"]["source"], "a",
        "the promoted source is kept: {g}"
    );

    // Every sample a surviving node acknowledged reaches the storage.
    let wanted: BTreeSet<(String, i64)> = survivors
        .iter()
        .flat_map(|i| acked_by[*i].iter().cloned())
        .collect();
    assert!(!wanted.is_empty());
    wait_until(
        "every sample acknowledged by a survivor at the storage",
        Duration::from_secs(60),
        || async {
            let got: BTreeSet<(String, i64)> = sink.samples().into_iter().collect();
            wanted.is_subset(&got).then_some(())
        },
    )
    .await;

    // The killed node comes back as a follower.
    nodes[first_leader].restart().await;
    wait_until(
        "the old leader to rejoin as follower",
        Duration::from_secs(30),
        || async { (role(&nodes[first_leader]).await == "follower").then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_through_the_admin_api_and_is_removed_again() {
    let sink = Sink::start().await;
    let nodes = start_cluster(&sink).await;
    let leader = leader_of(&nodes.iter().collect::<Vec<_>>()).await;
    let port = free_port();
    let status = nodes[0].admin_json("/api/v1/cluster").await;
    let mut peers: Vec<String> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| format!("{}={}", m["id"], m["addr"].as_str().expect("addr")))
        .collect();
    peers.push(format!("4=127.0.0.1:{port}"));
    let listen = format!("127.0.0.1:{port}");
    let joiner = Node::start(&[
        "--remote-write",
        &sink.url(),
        "--node-id",
        "4",
        "--cluster-listen",
        &listen,
        "--peers",
        &peers.join(","),
        "--cluster-secret",
        SECRET,
        "--join",
    ])
    .await;
    // Added with the CLI through a follower (forwarded to the leader).
    let via = &nodes[(leader + 1) % 3];
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_highlander"))
            .args(args)
            .args(["--admin", &format!("http://{}", via.admin)])
            .output()
            .expect("run the CLI");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(&["cluster", "add", "4", &listen]);
    wait_until(
        "the new node to follow",
        Duration::from_secs(30),
        || async { (role(&joiner).await == "follower").then_some(()) },
    )
    .await;
    let members = cli(&["cluster"]);
    assert!(members.contains(&listen), "{members}");
    cli(&["cluster", "remove", "4"]);
    wait_until(
        "node 4 to leave the membership",
        Duration::from_secs(30),
        || async {
            let members = nodes[leader].admin_json("/api/v1/cluster").await["members"].clone();
            (!members.to_string().contains(&listen)).then_some(())
        },
    )
    .await;
    // A standalone node has no cluster to change.
    let alone = Node::start(&[]).await;
    let r = http()
        .post(format!("http://{}/api/v1/cluster/members", alone.admin))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({"id": 9, "addr": "x:1"}).to_string())
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_named_voter_and_shipping_follows() {
    let sink = Sink::start().await;
    let nodes = start_cluster(&sink).await;
    let leader = leader_of(&nodes.iter().collect::<Vec<_>>()).await;
    let target = (leader + 1) % 3;
    let via = &nodes[(leader + 2) % 3];
    let mut t = promote_a(&nodes).await;
    let term_before = nodes[leader].admin_json("/api/v1/cluster").await["status"]["term"]
        .as_u64()
        .expect("term");

    // Asked through a node that is neither the leader nor the target.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(["cluster", "transfer-leader", &(target + 1).to_string()])
        .args(["--admin", &format!("http://{}", via.admin)])
        .output()
        .expect("run the CLI");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "transfer-leader failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "leadership moved from node {} to node {}",
            leader + 1,
            target + 1
        )),
        "{stdout}"
    );
    eprintln!("{stdout}");
    for (i, n) in nodes.iter().enumerate() {
        let want = if i == target { "leader" } else { "follower" };
        wait_until(
            &format!("node {} to be {want}", i + 1),
            Duration::from_secs(10),
            || async { (role(n).await == want).then_some(()) },
        )
        .await;
    }
    let status = nodes[target].admin_json("/api/v1/cluster").await["status"].clone();
    assert!(
        status["term"].as_u64().expect("term") > term_before,
        "{status}"
    );
    let g = nodes[target].admin_json("/api/v1/groups/default").await;
    assert_eq!(
        g["promoted"]["source"], "a",
        "the promoted source is kept: {g}"
    );

    // Writes go on, and the new leader ships every acknowledged sample.
    let mut acked: BTreeSet<(String, i64)> = BTreeSet::new();
    for _ in 0..10 {
        t += 1_000;
        let live: Vec<Option<&Node>> = nodes.iter().map(Some).collect();
        for (_, keys) in write_everywhere(&live, t).await {
            acked.extend(keys);
        }
    }
    assert!(!acked.is_empty());
    wait_until(
        "every acknowledged sample at the storage",
        Duration::from_secs(30),
        || async {
            let got: BTreeSet<(String, i64)> = sink.samples().into_iter().collect();
            acked.is_subset(&got).then_some(())
        },
    )
    .await;
    let q = nodes[leader].admin_json("/api/v1/queue").await;
    assert_eq!(
        q["endpoints"][0]["state"], "standby",
        "the old leader ships: {q}"
    );
    assert!(
        nodes[leader]
            .log()
            .contains("elections and heartbeats resumed"),
        "the old leader did not resume"
    );

    // To the leader itself: nothing to do. To a node that is not a member: refused.
    let transfer = |to: u64| {
        let url = format!("http://{}/api/v1/cluster/transfer-leader", via.admin);
        async move {
            let r = http()
                .post(url)
                .header("Content-Type", "application/json")
                .body(serde_json::json!({ "to": to }).to_string())
                .send()
                .await
                .expect("admin");
            let status = r.status().as_u16();
            let text = r.text().await.expect("body");
            let value: serde_json::Value = serde_json::from_str(&text).expect("json");
            (status, value)
        }
    };
    let (status, body) = transfer(target as u64 + 1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["transferred"]["took_ms"], 0, "{body}");
    let (status, body) = transfer(9).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "not_a_voter", "{body}");
}

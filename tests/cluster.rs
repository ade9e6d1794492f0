//! Three real highlander processes forming a raft cluster on loopback, with an in-test
//! storage: a leader ships, the others stand by; SIGKILL of the leader under load → a new
//! leader within seconds, the same promoted source, shipping resumes and every sample a
//! surviving node acknowledged arrives; the killed node rejoins as a follower. An operator
//! moves leadership to a named node and shipping follows it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;

const SECRET: &str = "cluster-test-secret";

async fn start_cluster(sink: &Sink) -> Vec<Node> {
    start_cluster_to([sink.url(), sink.url(), sink.url()]).await
}

/// Three nodes; node `i` ships to `urls[i]`.
async fn start_cluster_to(urls: [String; 3]) -> Vec<Node> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = peers(&ports);
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let id = (i + 1).to_string();
        let listen = format!("127.0.0.1:{port}");
        nodes.push(
            Node::start(&[
                "--remote-write",
                &urls[i],
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
        let ok = acknowledged(&client, &url, &req, None).await;
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

/// Kills of the leader in the loop.
const LEADER_KILLS: usize = 10;

/// A small seeded generator (SplitMix64), so a failing run can be replayed with
/// `HIGHLANDER_CLUSTER_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// The leader SIGKILLed ten times in a row under load, each time at a seeded moment, and
/// restarted once the others have a new leader. Two replicas of one group write to every node as Prometheus does (a
/// refused or unanswered write is sent again, in order, to that node): `a` with weight 10,
/// `b` with weight 5. Each node ships to its own path of one storage, so the storage sees
/// who ships. Between two kills, no two nodes ship at once (their first-to-last requests
/// never overlap), `b` is never shipped (no node ever promotes another source than the
/// committed one), and at the end every sample any node acknowledged is at the storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kills_in_a_loop_never_ship_twice_at_once_and_lose_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let seed = std::env::var("HIGHLANDER_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| common::e2e::now_ms() as u64);
    eprintln!(
        "leader kill loop seed {seed} (HIGHLANDER_CLUSTER_SEED={seed} replays the kill times)"
    );
    let mut rng = Rng(seed);
    let sink = Sink::start().await;
    let urls = [1, 2, 3].map(|i| format!("http://{}/node{i}/api/v1/write", sink.addr));
    let mut nodes = start_cluster_to(urls).await;
    promote_a(&nodes).await;
    let write_urls: Vec<[String; 2]> = nodes
        .iter()
        .map(|n| {
            [
                n.write_url("highlander_source=a&highlander_weight=10"),
                n.write_url("highlander_source=b&highlander_weight=5"),
            ]
        })
        .collect();

    // One writer per (node, replica), like one remote_write queue each.
    // Each acknowledged sample: which nodes acknowledged it, and when first.
    type Acks = BTreeMap<(String, i64), (Vec<usize>, Instant)>;
    let acked: Arc<Mutex<Acks>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // The most writes any writer has had acknowledged: after `stop`, every writer catches
    // up to it, as a Prometheus queue drains once its node is back.
    let most = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let t0 = 1_800_000_000_000i64;
    let mut writers = Vec::new();
    for (node, urls) in write_urls.iter().enumerate() {
        for (r, url) in urls.iter().enumerate() {
            let (acked, stop, url, most) = (acked.clone(), stop.clone(), url.clone(), most.clone());
            let name = if r == 0 { "loop_a" } else { "loop_b" };
            writers.push(tokio::spawn(async move {
                let client = http();
                let mut next = 0i64;
                // Bounded: ends once caught up after `stop`, and at most 5000 tries.
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) && next >= most.load(Ordering::Relaxed) {
                        break;
                    }
                    let req = request(name, 5, 1, t0 + next * 200);
                    let ok = acknowledged(&client, &url, &req, Some(Duration::from_secs(2))).await;
                    if ok {
                        let mut a = acked.lock().expect("acked");
                        for t in &req.timeseries {
                            let e = a
                                .entry((series_key(&t.labels), t.samples[0].timestamp))
                                .or_insert_with(|| (Vec::new(), Instant::now()));
                            e.0.push(node);
                        }
                        next += 1;
                        if stop.load(Ordering::Relaxed) {
                            // Catching up: no pause.
                            continue;
                        }
                        most.fetch_max(next, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }));
        }
    }

    let mut kills = Vec::new();
    for _ in 0..LEADER_KILLS {
        let leader = leader_of(&nodes.iter().collect::<Vec<_>>()).await;
        tokio::time::sleep(Duration::from_millis(1_000 + rng.below(2_000))).await;
        kills.push((Instant::now(), leader));
        nodes[leader].kill9();
        // Back once the others have elected a leader: a node restarted sooner takes its
        // old leadership back (its committed vote), and nothing fails over.
        let others: Vec<&Node> = (0..3).filter(|&i| i != leader).map(|i| &nodes[i]).collect();
        leader_of(&others).await;
        nodes[leader].restart().await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("acked").clone();
    let want: BTreeSet<(String, i64)> = acked
        .keys()
        .filter(|(k, _)| k.starts_with("__name__=loop_a"))
        .cloned()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: BTreeSet<(String, i64)> = sink.samples().into_iter().collect();
        let missing: Vec<&(String, i64)> = want.difference(&got).collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let start = kills[0].0 - Duration::from_secs(10);
            let show: Vec<String> = missing
                .iter()
                .filter(|k| k.0.ends_with("series=00000"))
                .map(|k| {
                    let (by, at) = &acked[*k];
                    format!(
                        "ts +{} acked by {by:?} at {:?}",
                        (k.1 - t0) / 200,
                        at.duration_since(start)
                    )
                })
                .collect();
            let kills: Vec<String> = kills
                .iter()
                .map(|(at, l)| format!("node {} at {:?}", l + 1, at.duration_since(start)))
                .collect();
            panic!(
                "seed {seed}: {} acknowledged samples of a missing: {show:#?}; kills: {kills:?}",
                missing.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (arrivals, paths, b_samples) = sink.with(|r| {
        let b = r
            .requests
            .iter()
            .flat_map(|w| w.timeseries.iter())
            .filter(|t| t.labels.iter().any(|l| l.value == "loop_b"))
            .count();
        (r.arrivals.clone(), r.paths.clone(), b)
    });
    assert_eq!(b_samples, 0, "the standby replica b was never shipped");
    // Between two kills (and after the last), each shipping node's first-to-last span.
    let mut bounds: Vec<Instant> = kills.iter().map(|(at, _)| *at).collect();
    bounds.push(Instant::now());
    let mut from = arrivals.first().copied().unwrap_or_else(Instant::now);
    let mut handovers = Vec::new();
    for to in bounds {
        let mut spans: Vec<(Instant, Instant, &str)> = Vec::new();
        for (at, path) in arrivals.iter().zip(&paths) {
            if *at < from || *at >= to {
                continue;
            }
            match spans.iter_mut().find(|s| s.2 == path.as_str()) {
                Some(s) => s.1 = *at,
                None => spans.push((*at, *at, path.as_str())),
            }
        }
        spans.sort_by_key(|s| s.0);
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "seed {seed}: {} shipped until {:?} after {} began",
                w[0].2,
                w[0].1 - w[1].0,
                w[1].2
            );
        }
        handovers.push(
            spans
                .iter()
                .map(|s| s.2.trim_end_matches("/api/v1/write").to_owned())
                .collect::<Vec<_>>(),
        );
        from = to;
    }
    let all = sink.samples();
    let distinct: BTreeSet<&(String, i64)> = all.iter().collect();
    for (i, n) in nodes.iter().enumerate() {
        assert!(
            !n.log().contains("panicked"),
            "node {}:\n{}",
            i + 1,
            n.log()
        );
    }
    eprintln!(
        "leader kill loop: {} kills (leaders killed: {:?}); shippers between kills: {handovers:?}; \
         {} samples of a acknowledged, all at the storage ({} received, {} duplicates); 0 samples of b shipped",
        kills.len(),
        kills.iter().map(|(_, l)| l + 1).collect::<Vec<_>>(),
        want.len(),
        all.len(),
        all.len() - distinct.len(),
    );
}

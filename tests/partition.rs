//! A network partition of a three-node cluster, with real highlander processes on loopback
//! (issue 4): "the minority side never ships and never changes the promoted source; after
//! healing it catches up and trims".
//!
//! Every node's `--peers` address is a port of a fault-injecting proxy in this process
//! ([`common::proxy`]) that forwards to the node's real cluster listener; the proxy learns
//! the sender of each connection from the `x-highlander-node` header of its first request,
//! so it can cut one node off in both directions. Each node ships to its own in-test
//! storage (all named `lts`, so they share the committed watermark): a storage that receives
//! anything names the node that shipped it. Two writers play the Prometheus pair of one HA
//! group: `a` (weight 10, even timestamps) and `b` (weight 5, odd timestamps), each writing
//! every [`WRITE_EVERY`] to every node, like `remote_write` with one entry per node.
//!
//! Two scenarios, one at a time (six processes on two cores):
//! - the **leader** is isolated, its traffic black-holed (its RPCs hang until they time
//!   out): the majority elects a new leader that resumes shipping; the old leader stops
//!   shipping within its lease, before the new one starts;
//! - a **follower** is isolated, its connections closed at once: the majority keeps its
//!   leader and term and keeps shipping; the isolated node campaigns alone.
//!
//! In both, while the node is isolated, writer `a` stops: the majority fails over to `b`
//! (exactly one promotion), the isolated node keeps `a` promoted, never ships, answers
//! writes from its last committed state (204 for `a`, 202 for `b`, never 503), and nobody
//! retries the cut connections more than a few times a second. Heal: the isolated node
//! follows, holds the majority's promotion (same epoch and time), trims its buffer below
//! the committed watermark (every record it held at the heal collected), and every sample
//! the majority acknowledged is at the storages (duplicates identical); one leader, of the
//! majority, ships.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::logs::{key_lines, tail};
use common::proxy::{Cut, Partition};
use common::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "partition-test-secret";
const HEALTH_TICK: &str = "200ms";
/// `--health-expiry`: a source silent this long is demoted.
const EXPIRY: Duration = Duration::from_secs(2);
/// `--cluster-overlap`: followers keep this much data time below the watermark.
const OVERLAP: Duration = Duration::from_secs(4);
/// Each writer sends one request to every node this often.
const WRITE_EVERY: Duration = Duration::from_millis(200);
/// The leader lease with the default raft timings (`election_timeout_max` 2 s minus the
/// 250 ms heartbeat): a leader that heard from no quorum for this long stops shipping.
const LEASE: Duration = Duration::from_millis(1_750);
/// The isolated leader's last request must reach its storage within the lease plus this
/// (the shipping gate is checked every 100 ms; one request may be in flight; a loaded
/// 2-core machine schedules late).
const STOP_SLACK: Duration = Duration::from_millis(1_250);
/// A new leader among the majority within this long of the isolation (election timeout
/// 1–2 s after the lease voters honour, plus a vote round; generous for a loaded machine).
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(10);
/// Most connections a node may open per second to a peer it cannot reach: raft backs off
/// (heartbeat interval doubling to 1 s), black-holed RPCs time out after a heartbeat
/// (250 ms), and a few other requests (follower reports, forwarded proposals) add up to a
/// handful a second.
const MAX_CUT_RATE: f64 = 10.0;
/// How long the minority is watched after the majority promoted `b`.
const WATCH_MINORITY: Duration = Duration::from_secs(3);

/// One write of one writer to one node and its answer (0: no answer).
#[derive(Debug, Clone)]
struct Write {
    source: &'static str,
    node: usize,
    ts: i64,
    status: u16,
    at: Instant,
}

type Writes = Arc<Mutex<Vec<Write>>>;

/// A writer playing one Prometheus replica: every [`WRITE_EVERY`], one request of three
/// series with one sample at a fresh timestamp of its parity, to every node.
struct Writer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(
        source: &'static str,
        weight: u64,
        parity: i64,
        nodes: &[&Node],
        writes: Writes,
    ) -> Writer {
        let urls: Vec<String> = nodes
            .iter()
            .map(|n| {
                n.write_url(&format!(
                    "highlander_source={source}&highlander_weight={weight}"
                ))
            })
            .collect();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let client = http();
            let mut last = 0i64;
            let mut tick = tokio::time::interval(WRITE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let mut ts = common::e2e::now_ms().max(last + 1);
                if ts.rem_euclid(2) != parity {
                    ts += 1;
                }
                last = ts;
                let body = body(&request("partitioned", 3, 1, ts));
                let sends = urls.iter().enumerate().map(|(node, url)| {
                    let client = client.clone();
                    let body = body.clone();
                    async move {
                        let status = client
                            .post(url)
                            .header("Content-Encoding", "snappy")
                            .header("Content-Type", "application/x-protobuf")
                            .timeout(Duration::from_secs(3))
                            .body(body)
                            .send()
                            .await
                            .map_or(0, |r| r.status().as_u16());
                        Write {
                            source,
                            node,
                            ts,
                            status,
                            at: Instant::now(),
                        }
                    }
                });
                let done = futures_util::future::join_all(sends).await;
                writes.lock().expect("writes").extend(done);
            }
        });
        Writer { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The three series keys of a write at `ts`.
fn keys_at(ts: i64) -> Vec<(String, i64)> {
    request("partitioned", 3, 1, ts)
        .timeseries
        .iter()
        .map(|t| (series_key(&t.labels), ts))
        .collect()
}

/// The cluster, its storages, the proxy and the writers' log. On a panic, its drop prints
/// every node's key log lines, what went through the proxy and what each storage got.
struct Scenario {
    nodes: Vec<Node>,
    sinks: Vec<Sink>,
    partition: Partition,
    writes: Writes,
    /// Test start, the origin of the times printed.
    t0: Instant,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let keep = std::env::temp_dir().join(format!(
                "highlander-partition-{}-node{}.log",
                std::process::id(),
                i + 1
            ));
            if std::fs::write(&keep, n.log()).is_ok() {
                eprintln!("node {} full log kept in {}", i + 1, keep.display());
            }
            eprintln!(
                "===== node {} log: cluster, election, shipping lines and warnings (last 150) =====\n{}",
                i + 1,
                tail(&key_lines(&n.log()), 150)
            );
        }
        eprintln!("===== proxy traffic =====\n{:?}", self.partition.traffic());
        for (i, s) in self.sinks.iter().enumerate() {
            let arrivals = s.with(|r| r.arrivals.clone());
            eprintln!(
                "===== storage of node {}: {} requests, first at {:?}, last at {:?} (s since start)",
                i + 1,
                arrivals.len(),
                arrivals.first().map(|a| self.secs(*a)),
                arrivals.last().map(|a| self.secs(*a)),
            );
        }
        let writes = self.writes.lock().map(|w| w.clone()).unwrap_or_default();
        let mut statuses: BTreeMap<(usize, &str, u16), usize> = BTreeMap::new();
        for w in &writes {
            *statuses
                .entry((w.node + 1, w.source, w.status))
                .or_default() += 1;
        }
        eprintln!("===== answers by (node, source, status) =====\n{statuses:?}");
    }
}

impl Scenario {
    /// Three storages, the proxies, and three nodes whose peers are the proxies.
    async fn start(cut: Cut) -> Scenario {
        let t0 = Instant::now();
        let mut sinks = Vec::new();
        for _ in 0..3 {
            sinks.push(Sink::start().await);
        }
        let listen: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: BTreeMap<u64, (u16, std::net::SocketAddr)> = listen
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let target = format!("127.0.0.1:{port}").parse().expect("addr");
                (i as u64 + 1, (free_port(), target))
            })
            .collect();
        let partition = Partition::start(&routes, cut).await;
        let peers = (1..=3u64)
            .map(|id| format!("{id}={}", partition.addr(id)))
            .collect::<Vec<_>>()
            .join(",");
        let expiry = format!("{}s", EXPIRY.as_secs());
        let overlap = format!("{}s", OVERLAP.as_secs());
        let mut nodes = Vec::new();
        for (i, port) in listen.iter().enumerate() {
            let id = (i + 1).to_string();
            let cluster_listen = format!("127.0.0.1:{port}");
            let storage = format!("lts={}", sinks[i].url());
            nodes.push(
                Node::start(&[
                    "--remote-write",
                    &storage,
                    "--node-id",
                    &id,
                    "--cluster-listen",
                    &cluster_listen,
                    "--peers",
                    &peers,
                    "--cluster-secret",
                    SECRET,
                    "--health-tick",
                    HEALTH_TICK,
                    "--health-expiry",
                    &expiry,
                    "--cluster-overlap",
                    &overlap,
                ])
                .await,
            );
        }
        Scenario {
            nodes,
            sinks,
            partition,
            writes: Arc::default(),
            t0,
        }
    }

    fn secs(&self, at: Instant) -> String {
        format!("{:.2}", at.saturating_duration_since(self.t0).as_secs_f64())
    }

    fn writer(&self, source: &'static str, weight: u64, parity: i64) -> Writer {
        let nodes: Vec<&Node> = self.nodes.iter().collect();
        Writer::start(source, weight, parity, &nodes, self.writes.clone())
    }

    async fn status(&self, i: usize) -> Value {
        self.nodes[i].admin_json("/api/v1/status").await
    }

    async fn role(&self, i: usize) -> String {
        self.status(i).await["role"]
            .as_str()
            .unwrap_or("?")
            .to_owned()
    }

    /// Node `i`'s committed control state (`/api/v1/cluster` → `control`).
    async fn control(&self, i: usize) -> Value {
        self.nodes[i].admin_json("/api/v1/cluster").await["control"].clone()
    }

    /// Node `i`'s committed state of the `default` group (promoted source, epoch, ...).
    async fn group(&self, i: usize) -> Value {
        self.control(i).await["groups"]["default"].clone()
    }

    async fn queue(&self, i: usize) -> Value {
        self.nodes[i].admin_json("/api/v1/queue").await
    }

    async fn endpoint_state(&self, i: usize) -> String {
        let q = self.queue(i).await;
        q["endpoints"][0]["state"]
            .as_str()
            .unwrap_or_else(|| panic!("node {}: no endpoint state: {q}", i + 1))
            .to_owned()
    }

    /// Waits until one of `among` leads (raft role); returns its index.
    async fn leader(&self, among: &[usize], timeout: Duration) -> usize {
        wait_until(
            &format!("a leader among nodes {:?}", one_based(among)),
            timeout,
            || async {
                for &i in among {
                    if self.role(i).await == "leader" {
                        return Some(i);
                    }
                }
                None
            },
        )
        .await
    }

    /// Waits until every node of `on` has `source` committed as promoted.
    async fn wait_promoted(&self, on: &[usize], source: &str, timeout: Duration) {
        wait_until(
            &format!("'{source}' promoted on nodes {:?}", one_based(on)),
            timeout,
            || async {
                for &i in on {
                    if self.group(i).await["promoted"]["source"] != source {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await
    }

    /// Requests node `i`'s storage accepted, and when they arrived.
    fn arrivals(&self, i: usize) -> Vec<Instant> {
        self.sinks[i].with(|r| r.arrivals.clone())
    }

    /// Every sample at every storage, as (series, ts) → values seen.
    fn stored(&self) -> BTreeMap<(String, i64), Vec<f64>> {
        let mut out: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
        for s in &self.sinks {
            s.with(|r| {
                for w in &r.requests {
                    for t in &w.timeseries {
                        let k = series_key(&t.labels);
                        for smp in &t.samples {
                            out.entry((k.clone(), smp.timestamp))
                                .or_default()
                                .push(smp.value);
                        }
                    }
                }
            });
        }
        out
    }

    /// The writes answered so far.
    fn writes(&self) -> Vec<Write> {
        self.writes.lock().expect("writes").clone()
    }

    /// Node `i`'s key log lines written since `mark` lines.
    fn lines_since(&self, i: usize, mark: usize) -> Vec<String> {
        let lines = key_lines(&self.nodes[i].log());
        lines[mark.min(lines.len())..].to_vec()
    }

    fn marks(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| key_lines(&n.log()).len())
            .collect()
    }
}

fn one_based(idx: &[usize]) -> Vec<usize> {
    idx.iter().map(|i| i + 1).collect()
}

/// Which node the scenario isolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// The raft leader: the majority must elect another one, the old one stop shipping.
    Leader,
    /// A follower: the majority keeps its leader; the isolated node campaigns alone (its
    /// term grows) and must not disturb anything but, at most, one election after the heal.
    Follower,
}

/// Both scenarios start six processes; on two cores they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_stops_shipping_keeps_its_promotion_and_catches_up_after_healing() {
    let _one = ONE_AT_A_TIME.lock().await;
    partition_scenario(Victim::Leader, Cut::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_follower_never_ships_keeps_its_promotion_and_catches_up_after_healing() {
    let _one = ONE_AT_A_TIME.lock().await;
    partition_scenario(Victim::Follower, Cut::Close).await;
}

async fn partition_scenario(victim: Victim, cut: Cut) {
    let s = Scenario::start(cut).await;
    let all = [0usize, 1, 2];
    let first_leader = s.leader(&all, Duration::from_secs(30)).await;
    eprintln!(
        "[{victim:?}, {cut:?}] cluster formed at {} s: node {} leads",
        s.secs(Instant::now()),
        first_leader + 1
    );

    // ---- 1. a promoted, shipped by the leader only ---------------------------------
    let writer_a = s.writer("a", 10, 0);
    s.wait_promoted(&all, "a", Duration::from_secs(20)).await;
    let writer_b = s.writer("b", 5, 1);
    wait_until(
        "b's writes answered as standby by every node",
        Duration::from_secs(20),
        || async {
            let w = s.writes();
            all.iter()
                .all(|&i| {
                    w.iter()
                        .any(|w| w.node == i && w.source == "b" && w.status == 202)
                })
                .then_some(())
        },
    )
    .await;
    let leader = s.leader(&all, Duration::from_secs(10)).await;
    s.sinks[leader]
        .wait_samples(30, Duration::from_secs(20))
        .await;
    for i in all {
        if i != leader {
            assert_eq!(
                s.endpoint_state(i).await,
                "standby",
                "follower node {} must not ship",
                i + 1
            );
            assert!(
                s.arrivals(i).is_empty(),
                "follower node {} shipped to its storage",
                i + 1
            );
        }
    }
    let committed_a = s.group(leader).await;
    assert_eq!(committed_a["promoted"]["source"], "a", "{committed_a}");
    let term_before = s.status(leader).await["cluster"]["term"]
        .as_u64()
        .expect("term");
    eprintln!(
        "steady at {} s: node {} ships a (committed {committed_a})",
        s.secs(Instant::now()),
        leader + 1
    );

    // ---- 2. Isolate one node --------------------------------------------------------
    let cut_off = match victim {
        Victim::Leader => leader,
        Victim::Follower => (leader + 1) % 3,
    };
    let majority: Vec<usize> = all.iter().copied().filter(|i| *i != cut_off).collect();
    let marks = s.marks();
    let traffic_before = s.partition.traffic();
    let isolated_at = Instant::now();
    s.partition.isolate(cut_off as u64 + 1);
    let majority_leader = s.leader(&majority, NEW_LEADER_WITHIN).await;
    let term_after = s.status(majority_leader).await["cluster"]["term"]
        .as_u64()
        .expect("term");
    eprintln!(
        "node {} isolated; node {} leads the majority (term {term_before} -> {term_after}) \
         {:.2} s later",
        cut_off + 1,
        majority_leader + 1,
        isolated_at.elapsed().as_secs_f64()
    );
    let cut_off_requests = match victim {
        Victim::Leader => {
            assert!(
                term_after > term_before,
                "a new term: {term_before} -> {term_after}"
            );
            check_old_leader_stops(&s, cut_off, majority_leader, isolated_at).await
        }
        Victim::Follower => {
            // Nothing changes for the majority: same leader, same term, still shipping.
            assert_eq!(majority_leader, leader, "the majority kept its leader");
            assert_eq!(term_after, term_before, "no election in the majority");
            let before = s.arrivals(leader).len();
            s.sinks[leader]
                .wait_samples(
                    s.sinks[leader].samples().len() + 15,
                    Duration::from_secs(10),
                )
                .await;
            assert!(s.arrivals(leader).len() > before);
            assert_eq!(s.endpoint_state(cut_off).await, "standby");
            0
        }
    };

    // ---- 3. The promoted writer stops while the node is isolated --------------------
    writer_a.stop().await;
    let a_stopped_at = Instant::now();
    s.wait_promoted(&majority, "b", EXPIRY + Duration::from_secs(6))
        .await;
    let majority_leader = s.leader(&majority, Duration::from_secs(10)).await;
    let committed_b = s.group(majority_leader).await;
    eprintln!(
        "a stopped; b promoted on the majority {:.2} s later: {committed_b}",
        a_stopped_at.elapsed().as_secs_f64()
    );
    // The minority keeps its last committed state, does not ship, answers writes.
    let watch_until = Instant::now() + WATCH_MINORITY;
    while Instant::now() < watch_until {
        let g = s.group(cut_off).await;
        assert_eq!(
            g, committed_a,
            "the isolated node changed its promoted source on its own"
        );
        assert_eq!(s.endpoint_state(cut_off).await, "standby");
        assert_eq!(
            s.arrivals(cut_off).len(),
            cut_off_requests,
            "the isolated node shipped"
        );
        let status = s.status(cut_off).await;
        assert!(
            status["cluster"]["lease_remaining_ms"].is_null(),
            "the isolated node holds no lease: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let since_isolation = s.lines_since(cut_off, marks[cut_off]);
    assert!(
        !since_isolation.iter().any(|l| l.contains("source : ")),
        "the isolated node logged an election change:\n{}",
        since_isolation.join("\n")
    );
    for &i in &majority {
        let lines = s.lines_since(i, marks[i]);
        let promotions = lines
            .iter()
            .filter(|l| l.contains("new source : "))
            .collect::<Vec<_>>();
        assert!(
            promotions.len() == 1 && promotions[0].contains("new source : 'b'"),
            "node {}: b promoted exactly once, nothing else:\n{}",
            i + 1,
            lines.join("\n")
        );
    }
    // Writes to the isolated node were answered from its committed state: a's stored
    // (204), b's dropped as standby (202); never 503, never unanswered.
    let to_cut_off: Vec<Write> = s
        .writes()
        .into_iter()
        .filter(|w| w.node == cut_off && w.at > isolated_at)
        .collect();
    let stored_a = to_cut_off
        .iter()
        .filter(|w| w.source == "a" && w.status == 204)
        .count();
    let dropped_b = to_cut_off
        .iter()
        .filter(|w| w.source == "b" && w.status == 202)
        .count();
    let other: Vec<&Write> = to_cut_off
        .iter()
        .filter(|w| !matches!((w.source, w.status), ("a", 204) | ("b", 202)))
        .collect();
    assert!(
        stored_a > 0 && dropped_b > 0 && other.is_empty(),
        "writes to the isolated node: {stored_a} of a stored, {dropped_b} of b dropped, \
         others: {other:?}"
    );
    let q = s.queue(cut_off).await;
    let (records_at_heal, next_seq_at_heal) = (
        q["records"].as_u64().expect("records"),
        q["next_seq"].as_u64().expect("next_seq"),
    );
    let isolated_term = s.status(cut_off).await["cluster"]["term"].clone();
    eprintln!(
        "isolated node (term {isolated_term}) answered {stored_a} writes of a (stored) and \
         {dropped_b} of b (standby); its buffer holds {records_at_heal} records (next seq \
         {next_seq_at_heal})"
    );

    // Nobody hammers the unreachable node (or, from it, the others): attempts back off.
    let isolated_for = isolated_at.elapsed().as_secs_f64();
    let traffic_during = s.partition.traffic();
    for (pair, n) in &traffic_during.cut {
        let n = n - traffic_before.cut.get(pair).copied().unwrap_or(0);
        let rate = n as f64 / isolated_for;
        eprintln!(
            "connections {} -> {} cut during the partition: {n} ({rate:.1}/s)",
            pair.0, pair.1
        );
        assert!(
            rate <= MAX_CUT_RATE,
            "node {} retried its connections to node {} {rate:.0} times a second while they \
             were cut (at most {MAX_CUT_RATE}/s: unreachable peers must be backed off)",
            pair.0,
            pair.1
        );
    }

    // ---- 4. Heal ------------------------------------------------------------------
    let healed_at = Instant::now();
    s.partition.heal();
    wait_until(
        "the isolated node to follow and hold the majority's promotion",
        Duration::from_secs(30),
        || async {
            if s.role(cut_off).await != "follower" {
                return None;
            }
            let current = s.leader(&majority, Duration::from_secs(10)).await;
            let want = s.group(current).await;
            (s.group(cut_off).await == want).then_some(want)
        },
    )
    .await;
    let converged = s.group(cut_off).await;
    assert_eq!(
        converged["promoted"], committed_b["promoted"],
        "the same promotion of b (epoch, since) as the majority committed"
    );
    eprintln!(
        "healed: node {} follows and holds the promotion of b {:.2} s after the heal",
        cut_off + 1,
        healed_at.elapsed().as_secs_f64()
    );
    // Its buffer is trimmed below the committed watermark: everything it buffered before
    // the heal is behind the watermark minus the overlap, and collected.
    let trimmed = wait_until(
        "the isolated node's buffer trimmed past what it held at the heal",
        OVERLAP + Duration::from_secs(15),
        || async {
            let q = s.queue(cut_off).await;
            (q["first_seq"].as_u64()? >= next_seq_at_heal
                && q["endpoints"][0]["cursor"].as_u64()? >= next_seq_at_heal)
                .then_some(q)
        },
    )
    .await;
    let watermark = s.control(cut_off).await["watermarks"]["lts"].clone();
    eprintln!(
        "isolated node's buffer trimmed {:.2} s after the heal: the {records_at_heal} \
         records held at the heal collected (first seq {} >= {next_seq_at_heal}; {} newer \
         records held), watermark {watermark}",
        healed_at.elapsed().as_secs_f64(),
        trimmed["first_seq"],
        trimmed["records"]
    );

    // ---- 5. Nothing the majority acknowledged is lost ---------------------------------
    writer_b.stop().await;
    let wanted: BTreeSet<(String, i64)> = s
        .writes()
        .iter()
        .filter(|w| w.node != cut_off && w.status == 204)
        .flat_map(|w| keys_at(w.ts))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let stored = s.stored();
        let missing: Vec<(String, i64)> = wanted
            .iter()
            .filter(|k| !stored.contains_key(*k))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        missing.is_empty(),
        "{} of {} samples the majority acknowledged are not at any storage, e.g. {:?}",
        missing.len(),
        wanted.len(),
        &missing[..missing.len().min(10)]
    );
    let stored = s.stored();
    let mut duplicates = 0;
    for ((series, ts), values) in &stored {
        duplicates += values.len() - 1;
        assert!(
            values.iter().all(|v| *v == *ts as f64),
            "{series} at {ts}: values {values:?} (expected the timestamp, identical copies)"
        );
    }
    // The isolated node never shipped again; one leader, of the majority, ships.
    let current = s.leader(&all, Duration::from_secs(10)).await;
    assert_ne!(current, cut_off, "the isolated node took over");
    assert_eq!(
        s.arrivals(cut_off).len(),
        cut_off_requests,
        "the isolated node shipped after the isolation"
    );
    for i in all {
        let state = s.endpoint_state(i).await;
        if i == current {
            assert_ne!(state, "standby", "the leader ships");
        } else {
            assert_eq!(state, "standby", "node {} must not ship", i + 1);
        }
    }
    let traffic = s.partition.traffic();
    assert_eq!(traffic.unattributed, 0, "connections of unknown senders");
    let id = cut_off as u64 + 1;
    assert!(
        traffic.cut.keys().any(|(from, _)| *from == id)
            && traffic.cut.keys().any(|(_, to)| *to == id),
        "the isolated node's traffic was cut both ways: {traffic:?}"
    );
    let after_heal = s.lines_since(current, marks[current]);
    eprintln!(
        "done at {} s: {} samples acknowledged by the majority all stored ({} distinct \
         stored, {duplicates} identical duplicates); proxy cut {:?}; leader now node {} \
         (term {}); its cluster lines since the isolation:\n{}",
        s.secs(Instant::now()),
        wanted.len(),
        stored.len(),
        traffic.cut,
        current + 1,
        s.status(current).await["cluster"]["term"],
        tail(&after_heal, 15)
    );
}

/// The isolated old leader stops shipping within its lease, before the new leader starts;
/// returns how many requests its storage got in all.
async fn check_old_leader_stops(
    s: &Scenario,
    old: usize,
    new_leader: usize,
    isolated_at: Instant,
) -> usize {
    // The majority keeps shipping: the new leader's storage starts receiving.
    s.sinks[new_leader]
        .wait_samples(15, Duration::from_secs(15))
        .await;
    // The old leader's endpoint leaves `shipping` for `standby`; its storage gets nothing
    // more.
    wait_until(
        "the isolated old leader's endpoint to stand by",
        LEASE + STOP_SLACK + Duration::from_secs(3),
        || async { (s.endpoint_state(old).await == "standby").then_some(()) },
    )
    .await;
    let old_last = *s
        .arrivals(old)
        .last()
        .expect("the old leader shipped before");
    let new_first = *s.arrivals(new_leader).first().expect("new leader shipped");
    let stopped_after = old_last.saturating_duration_since(isolated_at);
    eprintln!(
        "old leader's last request reached its storage {:.3} s after the isolation; the new \
         leader's first {:.3} s after it",
        stopped_after.as_secs_f64(),
        new_first
            .saturating_duration_since(isolated_at)
            .as_secs_f64()
    );
    assert!(
        stopped_after <= LEASE + STOP_SLACK,
        "the isolated leader shipped {stopped_after:?} after losing its quorum (lease {LEASE:?})"
    );
    assert!(
        old_last < new_first,
        "two nodes shipped at once: the old leader's last request arrived {:.3} s after the \
         new leader's first",
        (old_last - new_first).as_secs_f64()
    );
    s.arrivals(old).len()
}

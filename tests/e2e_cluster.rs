//! The cluster end to end with the real servers (issue 4): three highlander processes on
//! loopback form a raft cluster in front of a real VictoriaMetrics; two real Prometheus
//! replicas (`a` weight 10, `b` weight 5, `__replica__` external label) scrape the same
//! in-test counter every second and each remote_write to EVERY node (three entries).
//!
//! 1. Steady state: VM holds one merged series (no `__replica__`) at one sample per scrape
//!    (not both replicas'), every node shows `a` promoted, only the raft leader ships (the
//!    followers' endpoints are `standby`).
//! 2. SIGKILL of the raft leader: a new leader within seconds, the same committed promoted
//!    source (same `since`), shipping resumes; in VM's settled series across the change no
//!    hole longer than [`LEADER_CHANGE_MAX_GAP`], a counter that never decreases (re-sent
//!    duplicates are allowed — at least once — and must be identical), and every sample `a`
//!    scraped in the window arrives.
//! 3. With two nodes left, SIGKILL of the promoted Prometheus `a`: `b` is promoted on both
//!    survivors within the expiry plus a few seconds, and the gapless handover holds in
//!    cluster mode too: no hole longer than [`SWITCH_MAX_GAP`], every sample `b` scraped
//!    after its first stored one arrives.
//! 4. The killed node restarts from its data dir and rejoins as a follower (and applies the
//!    promotion of `b` committed while it was down); it never ships, even though its
//!    persisted vote may make it believe for a moment that it still leads.
//!
//! The binaries come from the Debian packages `prometheus` and `victoria-metrics`; when one
//! is missing the test fails and says so (it never skips). Every process is SIGKILLed when
//! the scenario drops, and on a panic every log is printed first.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::e2e::*;
use common::*;

const SECRET: &str = "e2e-cluster-secret";
/// A new leader must be seen within this long of the SIGKILL of the old one.
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(10);
/// Largest hole allowed in the settled series across a leader change.
const LEADER_CHANGE_MAX_GAP: Duration = Duration::from_millis(2_500);
/// Largest hole allowed across the replica switch: 1.5 scrape intervals plus 100 ms of
/// scrape jitter, the single-node handover bound (see `e2e_failover.rs`).
const SWITCH_MAX_GAP: Duration = Duration::from_millis(1_600);
/// Two distinct samples closer than this come from both replicas (a doubled rate).
const MIN_SPACING: Duration = Duration::from_millis(500);
/// The steady-state window measured.
const STEADY_WINDOW: Duration = Duration::from_secs(8);
/// Windows checked around an event: from this long before it ...
const BEFORE: Duration = Duration::from_secs(6);
/// ... to this long after its effect (new leader, new promoted source).
const AFTER: Duration = Duration::from_secs(6);
/// Bound on "b is promoted after a died": the expiry plus a few seconds.
const PROMOTION_SLACK: Duration = Duration::from_secs(5);

/// A Prometheus replica.
struct Prom {
    name: String,
    proc: Proc,
    api: String,
}

/// Every process of the scenario. Dropping it SIGKILLs them all; on a panic it prints
/// every log first.
struct Scenario {
    client: reqwest::Client,
    nodes: Vec<Node>,
    /// Which nodes are running.
    up: Vec<bool>,
    vm: Proc,
    vm_url: String,
    proms: Vec<Prom>,
    target: std::net::SocketAddr,
    target_handle: actix_web::dev::ServerHandle,
    /// Dropped last: the processes' logs and data live in it.
    tmp: tempfile::TempDir,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            eprintln!(
                "===== highlander node {} ({}) log, without DEBUG lines (last 200) =====\n{}",
                i + 1,
                if self.up[i] { "running" } else { "killed" },
                tail(&info_lines(&n.log()), 200)
            );
        }
        eprintln!(
            "===== victoria-metrics log (tail) =====\n{}",
            self.vm.log_tail(40)
        );
        for p in &self.proms {
            eprintln!(
                "===== {} log (tail) =====\n{}",
                p.proc.name,
                p.proc.log_tail(40)
            );
        }
    }
}

/// The lines of a highlander log above DEBUG level.
fn info_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .map(str::to_owned)
        .collect()
}

/// The lines of a highlander log about the cluster, the election and handovers, and its
/// warnings; without openraft's once-a-second complaints about an unreachable (killed)
/// peer.
fn key_lines(log: &str) -> Vec<String> {
    info_lines(log)
        .into_iter()
        .filter(|l| {
            let raft_retry = l.contains("openraft::")
                && (l.contains("Unreachable") || l.contains("backoff_drain_events"));
            !raft_retry
                && (l.contains("cluster")
                    || l.contains("source : ")
                    || l.contains("handover")
                    || l.contains(" WARN ")
                    || l.contains(" ERROR "))
        })
        .collect()
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Scenario {
    /// The scrape target, VictoriaMetrics and three highlander nodes forming a cluster;
    /// waits for a raft leader.
    async fn start() -> Scenario {
        require_servers();
        let client = http();
        let tmp = tempfile::tempdir().expect("tempdir");
        let (target, target_handle) = start_target().await;
        let (vm, vm_url) = start_victoria_metrics(&client, tmp.path()).await;
        let mut s = Scenario {
            client,
            nodes: Vec::new(),
            up: Vec::new(),
            vm,
            vm_url,
            proms: Vec::new(),
            target,
            target_handle,
            tmp,
        };
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let remote_write = format!("{}/api/v1/write", s.vm_url);
        let expiry = format!("{}s", HEALTH_EXPIRY.as_secs());
        for (i, port) in ports.iter().enumerate() {
            let id = (i + 1).to_string();
            let listen = format!("127.0.0.1:{port}");
            s.nodes.push(
                Node::start(&[
                    "--remote-write",
                    &remote_write,
                    "--node-id",
                    &id,
                    "--cluster-listen",
                    &listen,
                    "--peers",
                    &peers,
                    "--cluster-secret",
                    SECRET,
                    "--health-tick",
                    HEALTH_TICK,
                    "--health-expiry",
                    &expiry,
                    "--replica-label",
                    "__replica__",
                    "--cluster-overlap",
                    "10s",
                ])
                .await,
            );
            s.up.push(true);
        }
        s.leader(&[0, 1, 2], Duration::from_secs(30)).await;
        s
    }

    /// The running nodes' indexes.
    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.up[*i]).collect()
    }

    /// GET an admin path of node `i` as JSON; `None` when it does not answer (bounded).
    async fn admin(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let r = self
            .client
            .get(format!("http://{}{path}", self.nodes[i].admin))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        serde_json::from_str(&r.text().await.ok()?).ok()
    }

    /// Node `i`'s raft role ("leader", "follower", ...), "?" when it does not answer.
    async fn role(&self, i: usize) -> String {
        match self.admin(i, "/api/v1/status").await {
            Some(v) => v["role"].as_str().unwrap_or("?").to_owned(),
            None => "?".to_owned(),
        }
    }

    /// Waits until one of `among` is the raft leader.
    async fn leader(&self, among: &[usize], timeout: Duration) -> usize {
        wait_until(
            &format!("a raft leader among nodes {among:?} (indexes)"),
            timeout,
            || async {
                for i in among {
                    if self.role(*i).await == "leader" {
                        return Some(*i);
                    }
                }
                None
            },
        )
        .await
    }

    /// The `default` group on node `i` as `/api/v1/groups` shows it.
    async fn group(&self, i: usize) -> Option<serde_json::Value> {
        let groups = self.admin(i, "/api/v1/groups").await?;
        groups["groups"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == "default")
            .cloned()
    }

    /// Waits until every node of `on` shows `source` promoted; returns their groups.
    async fn wait_promoted(
        &self,
        on: &[usize],
        source: &str,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        wait_until(
            &format!("'{source}' promoted on nodes {on:?} (indexes)"),
            timeout,
            || async {
                let mut all = Vec::new();
                for i in on {
                    let g = self.group(*i).await?;
                    if g["promoted"]["source"] != source {
                        return None;
                    }
                    all.push(g);
                }
                Some(all)
            },
        )
        .await
    }

    /// The state of node `i`'s (only) storage endpoint.
    async fn endpoint_state(&self, i: usize) -> String {
        let q = self
            .admin(i, "/api/v1/queue")
            .await
            .unwrap_or_else(|| panic!("node {} /api/v1/queue", i + 1));
        q["endpoints"][0]["state"]
            .as_str()
            .unwrap_or_else(|| panic!("node {}: no endpoint state: {q}", i + 1))
            .to_owned()
    }

    /// Only `leader` ships: its endpoint is not `standby`, every other live node's is.
    async fn check_only_leader_ships(&self, leader: usize) {
        for i in self.live() {
            let state = self.endpoint_state(i).await;
            if i == leader {
                assert_ne!(state, "standby", "the leader (node {}) must ship", i + 1);
            } else {
                assert_eq!(
                    state,
                    "standby",
                    "follower node {} must not ship (leader: node {})",
                    i + 1,
                    leader + 1
                );
            }
        }
    }

    /// Starts Prometheus `name` with `weight`, writing to every node.
    async fn start_prometheus(&mut self, name: &str, weight: u64) {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                n.write_url(&format!(
                    "highlander_weight={weight}&highlander_source={name}"
                ))
            })
            .collect();
        let config = prometheus_config_multi(self.target, &urls, name);
        let (proc, api) = start_prometheus(&self.client, self.tmp.path(), name, &config).await;
        self.proms.push(Prom {
            name: name.to_owned(),
            proc,
            api,
        });
    }

    fn prom(&self, name: &str) -> &Prom {
        self.proms
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no prometheus {name}"))
    }

    /// What Prometheus `name` scraped itself in `[from, to]`.
    async fn scraped(&self, name: &str, from: i64, to: i64) -> Vec<i64> {
        let p = self.prom(name);
        prometheus_samples(&self.client, &p.api, from, to)
            .await
            .unwrap_or_else(|| panic!("{}: its own samples unreadable", p.proc.name))
    }

    /// VM's raw samples (duplicates kept) and series.
    async fn vm(&self) -> (Vec<(i64, f64)>, BTreeSet<String>) {
        wait_until("VictoriaMetrics to answer", Duration::from_secs(10), || {
            vm_export(&self.client, &self.vm_url)
        })
        .await
    }

    /// Waits until VM holds a sample at or after `ts`.
    async fn wait_vm_reaches(&self, ts: i64, timeout: Duration) {
        wait_until(
            &format!("VictoriaMetrics to hold {METRIC} samples up to {ts}"),
            timeout,
            || async {
                let (samples, _) = vm_export(&self.client, &self.vm_url).await?;
                (samples.last()?.0 >= ts).then_some(())
            },
        )
        .await
    }

    /// Waits (bounded) until VM holds every timestamp of `wanted`; returns VM's samples
    /// and what is still missing at the deadline.
    async fn wait_vm_holds(
        &self,
        wanted: &[i64],
        timeout: Duration,
    ) -> (Vec<(i64, f64)>, Vec<i64>) {
        let deadline = Instant::now() + timeout;
        loop {
            let (samples, _) = self.vm().await;
            let have: BTreeSet<i64> = samples.iter().map(|s| s.0).collect();
            let missing: Vec<i64> = wanted
                .iter()
                .copied()
                .filter(|t| !have.contains(t))
                .collect();
            if missing.is_empty() || Instant::now() >= deadline {
                return (samples, missing);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Node `i`'s cluster, election and handover log lines.
    fn key_lines(&self, i: usize) -> Vec<String> {
        key_lines(&self.nodes[i].log())
    }

    /// How many key log lines every node has written so far.
    fn marks(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .map(|i| self.key_lines(i).len())
            .collect()
    }

    /// The key log lines every node of `on` wrote since `marks` (at most `last` each).
    fn lines_since(&self, on: &[usize], marks: &[usize], last: usize) -> String {
        on.iter()
            .map(|i| {
                let lines = self.key_lines(*i);
                let new = &lines[marks[*i].min(lines.len())..];
                format!("--- node {} ---\n{}", i + 1, tail(new, last))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// VM's samples in a window, duplicates (identical timestamps) folded.
struct Window {
    /// Distinct samples, by timestamp.
    samples: Vec<(i64, f64)>,
    /// Samples VM holds more than once.
    duplicates: usize,
    /// Timestamps held with different values (must not happen).
    conflicts: Vec<String>,
}

impl Window {
    fn of(raw: &[(i64, f64)], from: i64, to: i64) -> Window {
        let mut w = Window {
            samples: Vec::new(),
            duplicates: 0,
            conflicts: Vec::new(),
        };
        for &(t, v) in raw.iter().filter(|(t, _)| (from..=to).contains(t)) {
            match w.samples.last() {
                Some(&(lt, lv)) if lt == t => {
                    w.duplicates += 1;
                    if lv != v {
                        w.conflicts.push(format!("{t}: {lv} and {v}"));
                    }
                }
                _ => w.samples.push((t, v)),
            }
        }
        w
    }

    fn ts(&self) -> Vec<i64> {
        self.samples.iter().map(|s| s.0).collect()
    }

    /// The largest interval between consecutive samples (earlier, later, ms).
    fn largest_gap(&self) -> (i64, i64, i64) {
        gaps(&self.ts())
            .into_iter()
            .max_by_key(|g| g.2)
            .unwrap_or((0, 0, 0))
    }

    /// The smallest interval between consecutive distinct samples (earlier, later, ms).
    fn smallest_gap(&self) -> (i64, i64, i64) {
        gaps(&self.ts())
            .into_iter()
            .min_by_key(|g| g.2)
            .unwrap_or((0, 0, i64::MAX))
    }

    /// Where the counter decreases, relative to `origin`.
    fn decreasing(&self, origin: i64) -> Vec<String> {
        self.samples
            .windows(2)
            .filter(|w| w[1].1 < w[0].1)
            .map(|w| {
                format!(
                    "{} ({}) -> {} ({})",
                    rel(&[w[0].0], origin),
                    w[0].1,
                    rel(&[w[1].0], origin),
                    w[1].1
                )
            })
            .collect()
    }

    /// Every interval longer than `limit`, relative to `origin`.
    fn holes(&self, limit: i64, origin: i64) -> Vec<String> {
        gaps(&self.ts())
            .into_iter()
            .filter(|g| g.2 > limit)
            .map(|(a, b, g)| format!("{g} ms from {} to {}", rel(&[a], origin), rel(&[b], origin)))
            .collect()
    }
}

/// Timestamps of `ts` within `margin` ms of `[from, to]`, relative to `origin`.
fn near(ts: &[i64], from: i64, to: i64, margin: i64, origin: i64) -> String {
    let v: Vec<i64> = ts
        .iter()
        .copied()
        .filter(|t| (from - margin..=to + margin).contains(t))
        .collect();
    rel(&v, origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_three_with_prometheus_pair_and_victoria_metrics() {
    let started = Instant::now();
    let mut s = Scenario::start().await;
    let all = s.live();
    eprintln!("cluster formed in {:.1}s", started.elapsed().as_secs_f64());

    // ---- 1. Steady state ------------------------------------------------------------
    // a first, so that it is promoted as the first writer (its first writes get 503 until
    // the leader commits the promotion; Prometheus retries), then b, a standby.
    s.start_prometheus("a", 10).await;
    let promoted_a = s.wait_promoted(&all, "a", Duration::from_secs(30)).await;
    eprintln!(
        "a promoted on every node at {:.1}s",
        started.elapsed().as_secs_f64()
    );
    s.start_prometheus("b", 5).await;
    wait_until(
        "b's writes dropped as standby on every node",
        Duration::from_secs(30),
        || async {
            for i in &all {
                let g = s.group(*i).await?;
                if g["sources"]["b"]["requests_dropped"].as_u64() < Some(3) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    eprintln!(
        "b standby on every node at {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let steady_from = now_ms();
    let steady_to = steady_from + ms(STEADY_WINDOW);
    s.wait_vm_reaches(steady_to + 2_000, Duration::from_secs(30))
        .await;
    let (raw, series) = s.vm().await;
    assert_eq!(series.len(), 1, "one merged series expected: {series:?}");
    let labels = series.iter().next().expect("one series");
    assert!(
        !labels.contains("__replica__"),
        "replica label reached storage: {labels}"
    );
    let steady = Window::of(&raw, steady_from, steady_to);
    let expected = (ms(STEADY_WINDOW) / ms(SCRAPE_INTERVAL)) as usize;
    let smallest = steady.smallest_gap();
    eprintln!(
        "steady state: {} samples in {} s ({} duplicates), intervals {} ms .. {} ms",
        steady.samples.len(),
        STEADY_WINDOW.as_secs(),
        steady.duplicates,
        smallest.2,
        steady.largest_gap().2
    );
    assert!(
        (expected - 2..=expected + 1).contains(&steady.samples.len())
            && smallest.2 >= ms(MIN_SPACING),
        "steady state: one sample per scrape expected ({expected} in {STEADY_WINDOW:?}, none \
         closer than {MIN_SPACING:?}), VM holds (s): {}",
        rel(&steady.ts(), steady_from)
    );
    let leader = s.leader(&all, Duration::from_secs(10)).await;
    for i in &all {
        let g = s.group(*i).await.expect("groups");
        assert_eq!(
            g["promoted"]["source"],
            "a",
            "node {}: a promoted: {g}",
            i + 1
        );
    }
    s.check_only_leader_ships(leader).await;
    eprintln!(
        "steady state checked at {:.1}s: leader node {}",
        started.elapsed().as_secs_f64(),
        leader + 1
    );

    // ---- 2. SIGKILL of the raft leader ----------------------------------------------
    let since_before = promoted_a[0]["promoted"]["since_ms"].clone();
    let leader_marks = s.marks();
    let kill_at = now_ms();
    s.nodes[leader].kill9();
    s.up[leader] = false;
    let survivors = s.live();
    let new_leader = s.leader(&survivors, NEW_LEADER_WITHIN).await;
    let leader_at = now_ms();
    eprintln!(
        "leader change: node {} killed, node {} leads {} ms later",
        leader + 1,
        new_leader + 1,
        leader_at - kill_at
    );
    let groups = s
        .wait_promoted(&survivors, "a", Duration::from_secs(5))
        .await;
    for g in &groups {
        assert_eq!(
            g["promoted"]["since_ms"], since_before,
            "the committed promotion of a must be kept, not redone: {g}"
        );
    }
    // Shipping resumes from the new leader; its gate opens once its leadership is
    // confirmed.
    wait_until(
        "the new leader to ship",
        Duration::from_secs(10),
        || async { (s.endpoint_state(new_leader).await != "standby").then_some(()) },
    )
    .await;
    s.check_only_leader_ships(new_leader).await;
    let leader_from = kill_at - ms(BEFORE);
    let leader_to = leader_at + ms(AFTER);
    s.wait_vm_reaches(leader_to + 2_000, Duration::from_secs(30))
        .await;
    // Every sample a scraped in the window arrives (at least once).
    let a_scraped = s.scraped("a", leader_from, leader_to).await;
    let (raw, missing) = s.wait_vm_holds(&a_scraped, Duration::from_secs(15)).await;
    let w = Window::of(&raw, leader_from, leader_to);
    let lg = w.largest_gap();
    let leader_context = || {
        format!(
            "\n(times in s relative to the SIGKILL of the leader; new leader seen at {})\
             \nVM: {}\na:  {}\nhighlander:\n{}",
            rel(&[leader_at], kill_at),
            rel(&w.ts(), kill_at),
            rel(&a_scraped, kill_at),
            s.lines_since(&survivors, &leader_marks, 40)
        )
    };
    eprintln!(
        "leader change: {} samples in the window ({} duplicates re-sent), largest interval \
         {} ms (from {} to {} s after the kill), smallest {} ms",
        w.samples.len(),
        w.duplicates,
        lg.2,
        rel(&[lg.0], kill_at),
        rel(&[lg.1], kill_at),
        w.smallest_gap().2
    );
    eprintln!(
        "leader change: VM around the kill (s): {}",
        near(&w.ts(), kill_at, leader_at, 3_000, kill_at)
    );
    assert!(
        missing.is_empty(),
        "leader change: samples a scraped are missing in VM: {}{}",
        rel(&missing, kill_at),
        leader_context()
    );
    assert!(
        w.conflicts.is_empty(),
        "leader change: duplicates with different values: {:?}{}",
        w.conflicts,
        leader_context()
    );
    let holes = w.holes(ms(LEADER_CHANGE_MAX_GAP), kill_at);
    assert!(
        holes.is_empty(),
        "leader change: holes longer than {LEADER_CHANGE_MAX_GAP:?}: {holes:?}{}",
        leader_context()
    );
    let decreasing = w.decreasing(kill_at);
    assert!(
        decreasing.is_empty(),
        "leader change: the counter decreases: {decreasing:?}{}",
        leader_context()
    );
    assert!(
        w.smallest_gap().2 >= ms(MIN_SPACING),
        "leader change: distinct samples closer than {MIN_SPACING:?} (both replicas \
         shipped){}",
        leader_context()
    );
    eprintln!(
        "leader change checked at {:.1}s; highlander since the kill:\n{}",
        started.elapsed().as_secs_f64(),
        s.lines_since(&survivors, &leader_marks, 30)
    );

    // ---- 3. SIGKILL of the promoted Prometheus, two nodes left ------------------------
    let a_own = s
        .scraped("a", now_ms() - ms(BEFORE) - 5_000, now_ms())
        .await;
    let switch_marks = s.marks();
    let switch_at = now_ms();
    let a_proc = &mut s.proms.iter_mut().find(|p| p.name == "a").expect("a").proc;
    a_proc.kill9();
    s.wait_promoted(&survivors, "b", HEALTH_EXPIRY + PROMOTION_SLACK)
        .await;
    let promoted_at = now_ms();
    eprintln!(
        "replica switch: b promoted on both survivors {} ms after a's SIGKILL",
        promoted_at - switch_at
    );
    let switch_leader = s.leader(&survivors, Duration::from_secs(10)).await;
    let handover = wait_until(
        "the handover log line on the leader",
        Duration::from_secs(10),
        || async {
            s.key_lines(switch_leader)
                .into_iter()
                .find(|l| l.contains("handover : 'b' takes over from 'a'"))
        },
    )
    .await;
    eprintln!(
        "replica switch (leader node {}): {handover}",
        switch_leader + 1
    );
    let switch_from = switch_at - ms(BEFORE);
    let switch_to = promoted_at + ms(AFTER);
    s.wait_vm_reaches(switch_to + 2_000, Duration::from_secs(30))
        .await;
    let b_scraped = s.scraped("b", switch_from, switch_to).await;
    let (raw, _) = s.vm().await;
    let first_b = {
        let w = Window::of(&raw, switch_from, switch_to);
        let a_set: BTreeSet<i64> = a_own.iter().copied().collect();
        let b_set: BTreeSet<i64> = b_scraped.iter().copied().collect();
        w.ts()
            .into_iter()
            .find(|t| b_set.contains(t) && !a_set.contains(t))
    };
    // Every sample b scraped after its first stored one arrives.
    let b_after: Vec<i64> = b_scraped
        .iter()
        .copied()
        .filter(|t| first_b.is_some_and(|f| *t > f))
        .collect();
    let (raw, missing) = s.wait_vm_holds(&b_after, Duration::from_secs(15)).await;
    let w = Window::of(&raw, switch_from, switch_to);
    let lg = w.largest_gap();
    let sm = w.smallest_gap();
    let switch_context = || {
        format!(
            "\n(times in s relative to a's SIGKILL; b promoted seen at {})\nVM: {}\na:  {}\nb:  {}\
             \nhighlander:\n{}",
            rel(&[promoted_at], switch_at),
            rel(&w.ts(), switch_at),
            rel(&a_own, switch_at),
            rel(&b_scraped, switch_at),
            s.lines_since(&survivors, &switch_marks, 40)
        )
    };
    eprintln!(
        "replica switch: {} samples in the window ({} duplicates), largest interval {} ms \
         (from {} to {} s after the kill), smallest {} ms (from {} to {})",
        w.samples.len(),
        w.duplicates,
        lg.2,
        rel(&[lg.0], switch_at),
        rel(&[lg.1], switch_at),
        sm.2,
        rel(&[sm.0], switch_at),
        rel(&[sm.1], switch_at),
    );
    eprintln!(
        "replica switch around the switch (s after a's kill):\n  VM: {}\n  a:  {}\n  b:  {}",
        near(&w.ts(), switch_at, promoted_at, 3_000, switch_at),
        near(&a_own, switch_at, promoted_at, 3_000, switch_at),
        near(&b_scraped, switch_at, promoted_at, 3_000, switch_at),
    );
    assert!(
        first_b.is_some(),
        "replica switch: no sample of b in VM{}",
        switch_context()
    );
    assert!(
        missing.is_empty(),
        "replica switch: samples b scraped after its first stored one are missing in VM: {}{}",
        rel(&missing, switch_at),
        switch_context()
    );
    assert!(
        w.conflicts.is_empty(),
        "replica switch: duplicates with different values: {:?}{}",
        w.conflicts,
        switch_context()
    );
    let decreasing = w.decreasing(switch_at);
    assert!(
        decreasing.is_empty(),
        "replica switch: the counter decreases: {decreasing:?}{}",
        switch_context()
    );
    let holes = w.holes(ms(SWITCH_MAX_GAP), switch_at);
    assert!(
        holes.is_empty(),
        "replica switch: holes longer than {SWITCH_MAX_GAP:?}: {holes:?}{}",
        switch_context()
    );
    assert!(
        sm.2 >= ms(MIN_SPACING),
        "replica switch: overlap, samples {} ms apart at {} and {}{}",
        sm.2,
        rel(&[sm.0], switch_at),
        rel(&[sm.1], switch_at),
        switch_context()
    );
    eprintln!(
        "replica switch checked at {:.1}s; highlander since a's kill:\n{}",
        started.elapsed().as_secs_f64(),
        s.lines_since(&survivors, &switch_marks, 30)
    );

    // ---- 4. The killed node rejoins as a follower -------------------------------------
    let restart_marks = s.marks();
    s.nodes[leader].restart().await;
    s.up[leader] = true;
    wait_until(
        "the killed node to rejoin as follower",
        Duration::from_secs(30),
        || async { (s.role(leader).await == "follower").then_some(()) },
    )
    .await;
    s.wait_promoted(&[leader], "b", Duration::from_secs(15))
        .await;
    // Its committed vote from before the SIGKILL may make it believe, for a moment, that it
    // still leads; without a fresh quorum acknowledgement it must never ship.
    let since_restart = s.lines_since(&[leader], &restart_marks, usize::MAX);
    assert!(
        !since_restart.contains("this node leads and ships"),
        "the restarted node shipped although another node leads:\n{since_restart}"
    );
    let current = s.leader(&s.live(), Duration::from_secs(10)).await;
    s.check_only_leader_ships(current).await;
    eprintln!(
        "node {} rejoined as follower; scenario done in {:.1}s; its log since the restart:\n{}",
        leader + 1,
        started.elapsed().as_secs_f64(),
        s.lines_since(&[leader], &restart_marks, 30)
    );
    s.target_handle.stop(false).await;
}

//! The scenario of the end-to-end cluster test (`tests/e2e_cluster.rs`): three highlander
//! processes forming a raft cluster in front of a real VictoriaMetrics, real Prometheus
//! replicas writing to every node, and the helpers its phases use (roles, groups, endpoint
//! states, what each replica scraped, what VM holds, key log lines) and the check of a
//! switch of the promoted replica ([`Scenario::check_switch`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::e2e::*;
use super::logs::{info_lines, key_lines, tail};
use super::series::{near, Window};
use super::{free_port, http, wait_until, Node};

pub const SECRET: &str = "e2e-cluster-secret";
/// Two distinct samples closer than this come from both replicas (a doubled rate).
pub const MIN_SPACING: Duration = Duration::from_millis(500);
/// Windows checked around an event: from this long before it ...
pub const BEFORE: Duration = Duration::from_secs(6);
/// ... to this long after its effect (new leader, new promoted source).
pub const AFTER: Duration = Duration::from_secs(6);

/// `--handover-window` of every node: how much of its own recent data each replica's ring
/// holds for a gapless handover. The default (three expiries, 9 s here) is not enough when
/// the raft leader dies with the promoted replica: the new leader demotes it one expiry
/// after it took over, so the new replica is promoted up to `election (≤ 10 s) + expiry
/// (3 s) + slack` after the other one's last sample, and its ring must still reach back
/// that far.
pub const HANDOVER_WINDOW: Duration = Duration::from_secs(20);

/// A Prometheus replica.
pub struct Prom {
    pub name: String,
    pub proc: Proc,
    pub api: String,
}

/// Every process of the scenario. Dropping it SIGKILLs them all; on a panic it prints
/// every log first.
pub struct Scenario {
    pub client: reqwest::Client,
    pub nodes: Vec<Node>,
    /// Which nodes are running.
    pub up: Vec<bool>,
    pub vm: Proc,
    pub vm_url: String,
    pub proms: Vec<Prom>,
    pub target: std::net::SocketAddr,
    pub target_handle: actix_web::dev::ServerHandle,
    /// Dropped last: the processes' logs and data live in it.
    pub tmp: tempfile::TempDir,
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

impl Scenario {
    /// The scrape target, VictoriaMetrics and three highlander nodes forming a cluster;
    /// waits for a raft leader.
    pub async fn start() -> Scenario {
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
        let peers = super::peers(&ports);
        let remote_write = format!("{}/api/v1/write", s.vm_url);
        let expiry = format!("{}s", HEALTH_EXPIRY.as_secs());
        let handover_window = format!("{}s", HANDOVER_WINDOW.as_secs());
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
                    "--handover-window",
                    &handover_window,
                ])
                .await,
            );
            s.up.push(true);
        }
        s.leader(&[0, 1, 2], Duration::from_secs(30)).await;
        s
    }

    /// The running nodes' indexes.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.up[*i]).collect()
    }

    /// GET an admin path of node `i` as JSON; `None` when it does not answer (bounded).
    pub async fn admin(&self, i: usize, path: &str) -> Option<serde_json::Value> {
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
    pub async fn role(&self, i: usize) -> String {
        match self.admin(i, "/api/v1/status").await {
            Some(v) => v["role"].as_str().unwrap_or("?").to_owned(),
            None => "?".to_owned(),
        }
    }

    /// Waits until one of `among` is the raft leader.
    pub async fn leader(&self, among: &[usize], timeout: Duration) -> usize {
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
    pub async fn group(&self, i: usize) -> Option<serde_json::Value> {
        let groups = self.admin(i, "/api/v1/groups").await?;
        groups["groups"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == "default")
            .cloned()
    }

    /// Waits until every node of `on` shows `source` promoted; returns their groups.
    pub async fn wait_promoted(
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
    pub async fn endpoint_state(&self, i: usize) -> String {
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
    pub async fn check_only_leader_ships(&self, leader: usize) {
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
    pub async fn start_prometheus(&mut self, name: &str, weight: u64) {
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

    pub fn prom(&self, name: &str) -> &Prom {
        self.proms
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no prometheus {name}"))
    }

    /// What Prometheus `name` scraped itself in `[from, to]`.
    pub async fn scraped(&self, name: &str, from: i64, to: i64) -> Vec<i64> {
        let p = self.prom(name);
        prometheus_samples(&self.client, &p.api, from, to)
            .await
            .unwrap_or_else(|| panic!("{}: its own samples unreadable", p.proc.name))
    }

    /// VM's raw samples (duplicates kept) and series.
    pub async fn vm(&self) -> (Vec<(i64, f64)>, BTreeSet<String>) {
        wait_until("VictoriaMetrics to answer", Duration::from_secs(10), || {
            vm_export(&self.client, &self.vm_url)
        })
        .await
    }

    /// Waits until VM holds a sample at or after `ts`.
    pub async fn wait_vm_reaches(&self, ts: i64, timeout: Duration) {
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
    pub async fn wait_vm_holds(
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
    pub fn key_lines(&self, i: usize) -> Vec<String> {
        key_lines(&self.nodes[i].log())
    }

    /// How many key log lines every node has written so far.
    pub fn marks(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .map(|i| self.key_lines(i).len())
            .collect()
    }

    /// Node `i`'s committed state of the `default` group (`/api/v1/cluster` → control).
    pub async fn control_group(&self, i: usize) -> serde_json::Value {
        self.admin(i, "/api/v1/cluster")
            .await
            .unwrap_or_else(|| panic!("node {} /api/v1/cluster", i + 1))["control"]["groups"]
            ["default"]
            .clone()
    }

    /// The committed epoch of the `default` group on node `i`.
    pub async fn epoch(&self, i: usize) -> u64 {
        let g = self.control_group(i).await;
        g["epoch"]
            .as_u64()
            .unwrap_or_else(|| panic!("node {}: no epoch: {g}", i + 1))
    }

    /// Checks VM's series across a switch of the promoted replica to `sw.new`: every
    /// sample the new replica scraped after its first stored one arrives, duplicates are
    /// identical, the counter never decreases, no hole longer than `sw.max_gap`, no two
    /// distinct samples closer than [`MIN_SPACING`] (both replicas shipped).
    pub async fn check_switch(&self, sw: Switch<'_>) {
        let from = sw.at - ms(BEFORE);
        let to = sw.promoted_at + ms(AFTER);
        self.wait_vm_reaches(to + 2_000, Duration::from_secs(30))
            .await;
        let new_scraped = self.scraped(sw.new, from, to).await;
        let (raw, _) = self.vm().await;
        let first_new = {
            let w = Window::of(&raw, from, to);
            let old: BTreeSet<i64> = sw.old_own.iter().copied().collect();
            let new: BTreeSet<i64> = new_scraped.iter().copied().collect();
            w.ts()
                .into_iter()
                .find(|t| new.contains(t) && !old.contains(t))
        };
        // Every sample the new replica scraped after its first stored one arrives.
        let new_after: Vec<i64> = new_scraped
            .iter()
            .copied()
            .filter(|t| first_new.is_some_and(|f| *t > f))
            .collect();
        let (raw, missing) = self
            .wait_vm_holds(&new_after, Duration::from_secs(15))
            .await;
        let w = Window::of(&raw, from, to);
        let lg = w.largest_gap();
        let sm = w.smallest_gap();
        let what = sw.what;
        let context = || {
            format!(
                "\n(times in s relative to the SIGKILL; {} promoted seen at {})\nVM: {}\nold: {}\
                 \n{}:  {}\nhighlander:\n{}",
                sw.new,
                rel(&[sw.promoted_at], sw.at),
                rel(&w.ts(), sw.at),
                rel(sw.old_own, sw.at),
                sw.new,
                rel(&new_scraped, sw.at),
                self.lines_since(sw.nodes, sw.marks, 40)
            )
        };
        eprintln!(
            "{what}: {} samples in the window ({} duplicates), largest interval {} ms (from {} \
             to {} s after the kill), smallest {} ms (from {} to {})",
            w.samples.len(),
            w.duplicates,
            lg.2,
            rel(&[lg.0], sw.at),
            rel(&[lg.1], sw.at),
            sm.2,
            rel(&[sm.0], sw.at),
            rel(&[sm.1], sw.at),
        );
        eprintln!(
            "{what} around the switch (s after the kill):\n  VM:  {}\n  old: {}\n  {}:   {}",
            near(&w.ts(), sw.at, sw.promoted_at, 3_000, sw.at),
            near(sw.old_own, sw.at, sw.promoted_at, 3_000, sw.at),
            sw.new,
            near(&new_scraped, sw.at, sw.promoted_at, 3_000, sw.at),
        );
        assert!(
            first_new.is_some(),
            "{what}: no sample of {} in VM{}",
            sw.new,
            context()
        );
        assert!(
            missing.is_empty(),
            "{what}: samples {} scraped after its first stored one are missing in VM: {}{}",
            sw.new,
            rel(&missing, sw.at),
            context()
        );
        assert!(
            w.conflicts.is_empty(),
            "{what}: duplicates with different values: {:?}{}",
            w.conflicts,
            context()
        );
        let decreasing = w.decreasing(sw.at);
        assert!(
            decreasing.is_empty(),
            "{what}: the counter decreases: {decreasing:?}{}",
            context()
        );
        let holes = w.holes(ms(sw.max_gap), sw.at);
        assert!(
            holes.is_empty(),
            "{what}: holes longer than {:?}: {holes:?}{}",
            sw.max_gap,
            context()
        );
        let old: BTreeSet<i64> = sw.old_own.iter().copied().collect();
        let close: Vec<(i64, i64)> = w
            .ts()
            .windows(2)
            .filter(|p| p[1] - p[0] < ms(MIN_SPACING))
            .map(|p| (p[0], p[1]))
            .collect();
        let tolerated = |&(a, b): &(i64, i64)| {
            sw.unseen_last_batch.is_some_and(|d| {
                [a, b]
                    .iter()
                    .any(|t| old.contains(t) && *t <= sw.at && *t > sw.at - ms(d))
            })
        };
        let overlaps = close.len();
        assert!(
            close.iter().all(tolerated) && overlaps <= usize::from(sw.unseen_last_batch.is_some()),
            "{what}: overlap, samples {} ms apart at {} and {} ({overlaps} close pairs){}",
            sm.2,
            rel(&[sm.0], sw.at),
            rel(&[sm.1], sw.at),
            context()
        );
        if overlaps > 0 {
            eprintln!(
                "{what}: one sample of the old replica's last batch (at {} s) reached the storage                  through the dead leader only; tolerated",
                rel(&[close[0].0], sw.at)
            );
        }
    }

    /// The key log lines every node of `on` wrote since `marks` (at most `last` each).
    pub fn lines_since(&self, on: &[usize], marks: &[usize], last: usize) -> String {
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

/// A switch of the promoted replica, as [`Scenario::check_switch`] checks it.
pub struct Switch<'a> {
    /// For messages.
    pub what: &'static str,
    /// What the old promoted replica scraped itself before it died.
    pub old_own: &'a [i64],
    /// The replica promoted instead.
    pub new: &'static str,
    /// When the old one was SIGKILLed (ms since the epoch).
    pub at: i64,
    /// When the new one was seen promoted everywhere.
    pub promoted_at: i64,
    /// The nodes whose log lines explain a failure, and where they were at `at`.
    pub nodes: &'a [usize],
    pub marks: &'a [usize],
    /// Largest hole allowed.
    pub max_gap: Duration,
    /// `None`: no overlap at all. `Some(d)`: the raft leader died with the old replica, so
    /// the old replica's last batch may have reached the dead leader (and the storage) but
    /// not the new leader, whose handover cut cannot know it: at most one old sample, taken
    /// within `d` before the kill, may sit closer than [`MIN_SPACING`] to a new one.
    pub unseen_last_batch: Option<Duration>,
}

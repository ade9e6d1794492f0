//! Three or four cluster nodes in one process on loopback. The tests cover election,
//! forwarded writes, failover, restart and catch-up (from the log and from a snapshot),
//! membership changes, and the shared secret.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::election::Reason;

const SECRET: &str = "test-cluster-secret";
/// Every wait in these tests ends by then.
const WAIT: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn node_config(id: NodeId, peers: &BTreeMap<NodeId, String>, dir: &TempDir) -> ClusterConfig {
    let listen = peers[&id].parse().expect("addr");
    let mut c = ClusterConfig::new(
        id,
        listen,
        peers.clone(),
        SECRET.into(),
        dir.path().join(format!("node-{id}")),
    );
    c.heartbeat_interval = Duration::from_millis(100);
    c.election_timeout_min = Duration::from_millis(300);
    c.election_timeout_max = Duration::from_millis(600);
    c.write_timeout = Duration::from_secs(5);
    c
}

struct TestCluster {
    dir: TempDir,
    configs: Vec<ClusterConfig>,
    nodes: Vec<Option<Cluster>>,
    shutdown: CancellationToken,
}

impl TestCluster {
    async fn start(n: u64, tweak: impl Fn(&mut ClusterConfig)) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let peers: BTreeMap<NodeId, String> = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let shutdown = CancellationToken::new();
        let mut configs = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let mut c = node_config(id, &peers, &dir);
            tweak(&mut c);
            nodes.push(Some(
                Cluster::start(c.clone(), shutdown.clone())
                    .await
                    .expect("start"),
            ));
            configs.push(c);
        }
        TestCluster {
            dir,
            configs,
            nodes,
            shutdown,
        }
    }

    fn node(&self, id: NodeId) -> &Cluster {
        self.nodes[(id - 1) as usize].as_ref().expect("running")
    }

    fn running(&self) -> impl Iterator<Item = &Cluster> {
        self.nodes.iter().flatten()
    }

    /// The leader every running node agrees on.
    async fn agreed_leader(&self) -> NodeId {
        wait_until("every running node agrees on one leader", || async {
            let leaders: Vec<_> = self.running().map(|c| c.leader()).collect();
            let first = leaders[0]?;
            let leads = self.running().find(|c| c.node_id() == first)?.is_leader();
            (leads && leaders.iter().all(|l| *l == Some(first))).then_some(first)
        })
        .await
    }

    async fn stop(&mut self, id: NodeId) {
        let node = self.nodes[(id - 1) as usize].take().expect("running");
        node.shutdown().await;
    }

    /// Restarts a stopped node from its data directory. Its sled database is released a
    /// moment after raft stops (openraft's state machine worker ends on its own), so opening
    /// it is retried.
    async fn restart(&mut self, id: NodeId) {
        let config = self.configs[(id - 1) as usize].clone();
        let shutdown = self.shutdown.clone();
        let node = wait_until("the stopped node restarts from its data dir", || {
            let (config, shutdown) = (config.clone(), shutdown.clone());
            async move {
                match Cluster::start(config, shutdown).await {
                    Ok(c) => Some(c),
                    Err(ClusterError::Open(_)) => None,
                    Err(e) => panic!("restart: {e}"),
                }
            }
        })
        .await;
        self.nodes[(id - 1) as usize] = Some(node);
    }

    async fn shutdown(self) {
        self.shutdown.cancel();
        for n in self.nodes.iter().flatten() {
            n.shutdown().await;
        }
        drop(self.dir);
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, at most [`WAIT`].
async fn wait_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn promote(source: &str, at_ms: u64) -> Request {
    Request::Promote {
        group: "g".into(),
        source: source.into(),
        weight: 1,
        reason: Reason::NoPromotedSource,
        at_ms,
        expect: None,
    }
}

fn watermark(data_ts: i64) -> Request {
    Request::Watermark {
        endpoint: "vm".into(),
        data_ts,
        at_ms: 0,
    }
}

/// Waits until every running node applied a state where `group g` has `source` promoted
/// at `epoch`.
async fn wait_promoted_everywhere(tc: &TestCluster, source: &str, epoch: u64) {
    wait_until("every node applied the promotion", || async {
        tc.running()
            .all(|c| {
                let applied = c.control().current();
                applied
                    .state
                    .promoted("g")
                    .is_some_and(|p| p.source == source && p.epoch == epoch)
            })
            .then_some(())
    })
    .await
}

fn a_follower(tc: &TestCluster, leader: NodeId) -> &Cluster {
    tc.running()
        .find(|c| c.node_id() != leader)
        .expect("a follower")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_a_leader_and_commit_a_write_made_on_a_follower() {
    let started = Instant::now();
    let tc = TestCluster::start(3, |_| {}).await;
    let leader = tc.agreed_leader().await;
    eprintln!("elected node {leader} in {:?}", started.elapsed());

    let follower = a_follower(&tc, leader);
    assert!(!follower.is_leader());
    let r = follower.write(promote("a", 1)).await.expect("write");
    assert_eq!(
        r,
        Response::Group {
            epoch: 1,
            changed: true
        }
    );
    wait_promoted_everywhere(&tc, "a", 1).await;

    let status = tc.node(leader).status();
    assert_eq!(status.role, Role::Leader);
    assert_eq!(status.leader, Some(leader));
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.voter));
    assert_eq!(status.replication.len(), 3, "{status:?}");
    assert!(tc.node(leader).leader_lease().is_some(), "{status:?}");
    tc.node(leader)
        .ensure_linearizable()
        .await
        .expect("the leader confirms its leadership");
    let f = follower.status();
    assert_eq!(f.role, Role::Follower);
    assert!(f.replication.is_empty() && f.lease_remaining_ms.is_none());
    assert!(follower.leader_lease().is_none());
    assert!(matches!(
        follower.ensure_linearizable().await,
        Err(ClusterWriteError::NotLeader { leader: Some(l) }) if l == leader
    ));

    // The late peers' bootstrap (after 2 × election_timeout_max) finds them already in the
    // cluster: no second election.
    let term = tc.node(leader).term();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(tc.agreed_leader().await, leader);
    assert_eq!(
        tc.node(leader).term(),
        term,
        "no re-election after formation"
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_loss_elects_a_new_leader_that_keeps_the_promoted_source() {
    let mut tc = TestCluster::start(3, |_| {}).await;
    let old = tc.agreed_leader().await;
    tc.node(old).write(promote("a", 1)).await.expect("write");
    wait_promoted_everywhere(&tc, "a", 1).await;
    let term = tc.node(old).term();

    let lost = Instant::now();
    tc.stop(old).await;
    let new = tc.agreed_leader().await;
    eprintln!(
        "failover from node {old} to node {new} in {:?}",
        lost.elapsed()
    );
    assert_ne!(new, old);
    assert!(tc.node(new).term() > term);
    assert!(
        lost.elapsed() < Duration::from_secs(5),
        "{:?}",
        lost.elapsed()
    );
    wait_promoted_everywhere(&tc, "a", 1).await;

    // A write through the remaining follower reaches the new leader.
    let follower = a_follower(&tc, new);
    let r = follower.write(watermark(1_000)).await.expect("write");
    assert_eq!(
        r,
        Response::Watermark {
            data_ts: 1_000,
            moved: true
        }
    );
    tc.node(new).write(promote("b", 2)).await.expect("write");
    wait_promoted_everywhere(&tc, "b", 2).await;

    // The old leader rejoins as a follower and catches up from the log.
    let back = Instant::now();
    tc.restart(old).await;
    wait_promoted_everywhere(&tc, "b", 2).await;
    eprintln!("node {old} rejoined and caught up in {:?}", back.elapsed());
    let rejoined = tc.node(old);
    assert_eq!(
        rejoined.control().current().state.watermark("vm"),
        Some(1_000)
    );
    assert_eq!(
        tc.agreed_leader().await,
        new,
        "the rejoined node does not disrupt"
    );
    assert_eq!(rejoined.status().role, Role::Follower);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_its_quorum_loses_its_lease_and_cannot_commit() {
    let mut tc = TestCluster::start(3, |c| c.write_timeout = Duration::from_secs(1)).await;
    let leader = tc.agreed_leader().await;
    wait_until("the leader holds its lease", || async {
        tc.node(leader).leader_lease()
    })
    .await;
    for id in 1..=3 {
        if id != leader {
            tc.stop(id).await;
        }
    }
    let cut_off = Instant::now();
    let alone = tc.node(leader);
    wait_until("the lease runs out", || async {
        alone.leader_lease().is_none().then_some(())
    })
    .await;
    let lease_lost = cut_off.elapsed();
    eprintln!("lease lost {lease_lost:?} after the quorum went silent");
    // Within election_timeout_max (600 ms) of the last acknowledgement, plus polling.
    assert!(lease_lost < Duration::from_millis(900), "{lease_lost:?}");
    let err = alone.write(watermark(1)).await.expect_err("no quorum");
    assert!(err.outcome_unknown(), "{err:?}");
    let err = alone.ensure_linearizable().await.expect_err("no quorum");
    assert!(matches!(err, ClusterWriteError::NoQuorum { .. }), "{err:?}");
    alone.shutdown().await;
    assert_eq!(
        alone.write(watermark(2)).await,
        Err(ClusterWriteError::Stopped)
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_missed_purged_logs_catches_up_from_a_snapshot() {
    let mut tc = TestCluster::start(3, |c| {
        c.snapshot_every = 3;
        c.logs_kept_after_snapshot = 0;
    })
    .await;
    let leader = tc.agreed_leader().await;
    let absent = a_follower(&tc, leader).node_id();
    tc.node(leader).write(promote("a", 1)).await.expect("write");
    wait_promoted_everywhere(&tc, "a", 1).await;
    tc.stop(absent).await;

    for ts in 1..=10 {
        tc.node(leader).write(watermark(ts)).await.expect("write");
    }
    // The leader snapshots and purges what the absent node would need.
    let purged = wait_until("the leader purged its log", || async {
        let m = tc.node(leader).raft().metrics().borrow().clone();
        m.purged.filter(|p| p.index >= 5).map(|p| p.index)
    })
    .await;
    eprintln!("leader purged up to {purged}");

    tc.restart(absent).await;
    wait_until("the absent node installed the snapshot", || async {
        let c = tc.node(absent);
        let s = c.control().current();
        (s.state.watermark("vm") == Some(10) && s.state.promoted("g").is_some()).then_some(())
    })
    .await;
    let snap = tc.node(absent).status().snapshot_index;
    assert!(
        snap.is_some_and(|i| i >= purged),
        "snapshot {snap:?} purged {purged}"
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_are_added_and_removed_through_any_node() {
    let tc = TestCluster::start(3, |_| {}).await;
    let leader = tc.agreed_leader().await;
    tc.node(leader).write(promote("a", 1)).await.expect("write");

    // Node 4 joins an existing cluster: no bootstrap.
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = node_config(1, &BTreeMap::from([(1, addr.clone())]), &tc.dir);
    c.node_id = 4;
    c.data_dir = tc.dir.path().join("node-4");
    c.peers = BTreeMap::from([(4, addr.clone())]);
    c.bootstrap = false;
    let fourth = Cluster::start(c, tc.shutdown.clone()).await.expect("start");

    let follower = a_follower(&tc, leader);
    follower.add_voter(4, addr).await.expect("add voter");
    wait_until("node 4 votes and caught up", || async {
        let members = tc.node(leader).members();
        let voter = members.iter().any(|m| m.id == 4 && m.voter);
        let caught_up = fourth
            .control()
            .current()
            .state
            .promoted("g")
            .is_some_and(|p| p.source == "a");
        (voter && caught_up && fourth.leader() == Some(leader)).then_some(())
    })
    .await;
    assert_eq!(fourth.status().role, Role::Follower);

    follower.remove(4).await.expect("remove");
    wait_until("node 4 is gone", || async {
        tc.running()
            .all(|c| c.members().iter().all(|m| m.id != 4) && c.members().len() == 3)
            .then_some(())
    })
    .await;
    assert!(matches!(
        follower.remove(9).await,
        Err(ClusterWriteError::Rejected { .. })
    ));
    fourth.shutdown().await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_secret_are_rejected_with_401() {
    let tc = TestCluster::start(1, |_| {}).await;
    let leader = tc.agreed_leader().await;
    assert_eq!(leader, 1);
    let addr = &tc.configs[0].peers[&1];
    let client = reqwest::Client::new();
    let post = |path: &str, auth: Option<&str>| {
        let mut req = client
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    for path in [
        rpc::APPEND_PATH,
        rpc::VOTE_PATH,
        rpc::SNAPSHOT_PATH,
        rpc::WRITE_PATH,
    ] {
        for auth in [None, Some("Bearer wrong"), Some(SECRET)] {
            let r = post(path, auth).await.expect("send");
            assert_eq!(r.status(), 401, "{path} with {auth:?}");
        }
        // The right secret gets past the check (then the empty body is refused).
        let r = post(path, Some(&format!("Bearer {SECRET}")))
            .await
            .expect("send");
        assert_eq!(r.status(), 400, "{path}");
    }
    assert!(tc.node(1).is_leader());
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_an_empty_secret_and_a_node_outside_its_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = BTreeMap::from([(1, format!("127.0.0.1:{}", free_port()))]);
    let mut c = node_config(1, &peers, &dir);
    c.secret.clear();
    let err = Cluster::start(c, CancellationToken::new())
        .await
        .expect_err("empty secret");
    assert!(matches!(err, ClusterError::Config(_)), "{err}");
    let mut c = node_config(1, &peers, &dir);
    c.node_id = 2;
    let err = Cluster::start(c, CancellationToken::new())
        .await
        .expect_err("not a peer");
    assert!(matches!(err, ClusterError::Config(_)), "{err}");
    assert!(!format!("{:?}", node_config(1, &peers, &dir)).contains(SECRET));
}

/// An HTTPS client of the test cluster's listeners, trusting `roots` only.
fn https_client(roots: Vec<reqwest::Certificate>) -> reqwest::Client {
    crate::shipper::client::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only(roots)
        .build()
        .expect("https client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_over_tls_elects_commits_fails_over_and_still_checks_the_secret() {
    let certs = tempfile::tempdir().expect("tempdir");
    let tls = crate::cluster::tls::testing::files(certs.path());
    let mut tc = TestCluster::start(3, |c| c.tls = Some(tls.clone())).await;
    let leader = tc.agreed_leader().await;

    // Raft RPCs and a forwarded write, all over HTTPS.
    let follower = a_follower(&tc, leader).node_id();
    let r = tc
        .node(follower)
        .write(promote("a", 1))
        .await
        .expect("write");
    assert_eq!(
        r,
        Response::Group {
            epoch: 1,
            changed: true
        }
    );
    wait_promoted_everywhere(&tc, "a", 1).await;

    // A new leader, and the old one catching up when it comes back.
    tc.stop(leader).await;
    let new = tc.agreed_leader().await;
    assert_ne!(new, leader);
    tc.node(new).write(promote("b", 2)).await.expect("write");
    tc.restart(leader).await;
    wait_promoted_everywhere(&tc, "b", 2).await;

    let addr = tc.configs[(new - 1) as usize].peers[&new].clone();
    // Plain HTTP gets no HTTP answer at all.
    let plain = reqwest::Client::new()
        .post(format!("http://{addr}{}", rpc::VOTE_PATH))
        .header("authorization", format!("Bearer {SECRET}"))
        .body("{}")
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // Over HTTPS the secret is checked as before: 401 without it, past the check with it.
    let roots = tls.client_roots().expect("roots").expect("a CA");
    let client = https_client(roots);
    let post = |auth: Option<String>| {
        let mut req = client
            .post(format!("https://{addr}{}", rpc::VOTE_PATH))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let r = post(None).await.expect("https");
    assert_eq!(r.status(), 401);
    let r = post(Some("Bearer wrong".into())).await.expect("https");
    assert_eq!(r.status(), 401);
    let r = post(Some(format!("Bearer {SECRET}"))).await.expect("https");
    assert_eq!(r.status(), 400, "the empty body is refused after the check");
    // A client that does not trust the cluster's CA does not get through the handshake.
    let (stranger, _) = crate::cluster::tls::testing::ca("another CA");
    let stranger = reqwest::Certificate::from_pem(stranger.pem().as_bytes()).expect("pem");
    let r = https_client(vec![stranger])
        .post(format!("https://{addr}{}", rpc::VOTE_PATH))
        .send()
        .await;
    assert!(r.is_err(), "an untrusted certificate was accepted: {r:?}");
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_unusable_tls_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = BTreeMap::from([(1, format!("127.0.0.1:{}", free_port()))]);
    let mut c = node_config(1, &peers, &dir);
    c.tls = Some(crate::cluster::ClusterTls {
        cert: dir.path().join("missing.pem"),
        key: dir.path().join("missing-key.pem"),
        ca: None,
    });
    let err = Cluster::start(c, CancellationToken::new())
        .await
        .expect_err("missing files");
    assert!(matches!(err, ClusterError::Tls(_)), "{err}");
}

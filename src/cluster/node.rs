//! One cluster node. [`Cluster::start`] opens the raft stores and starts raft, the cluster
//! listener and the bootstrap. The [`Cluster`] handle proposes from any node (a follower
//! forwards to the leader), reads the committed control state and reports status.
//!
//! # Bootstrap
//! Every node of the initial cluster starts with the same static `peers` and calls raft's
//! `initialize` with them.
//! - On a pristine node, `initialize` writes the initial membership and starts an election.
//!   The membership is log index 0 and identical on every node, so every node may write it.
//! - On a node that already has state, raft refuses `initialize`. We treat that as done.
//!
//! The peer with the smallest id initialises at once. The others wait `2 ×
//! election_timeout_max`, and initialise only if no leader reached them by then. Why: a
//! pristine node that campaigns in the leader's own term would force one more election.
//! Raft elects a leader as soon as a quorum of peers is up. Nothing here waits for peers.
//!
//! `peers` must stay as the cluster was first formed. Later changes go through
//! [`Cluster::add_voter`] and [`Cluster::remove`] (the admin API). A node added that way
//! starts with [`ClusterConfig::bootstrap`] off. So it never writes an initial membership
//! that differs from the cluster's. This matters because raft assumes that equal log ids
//! hold equal entries.
//!
//! # Leadership and shipping
//! [`Cluster::is_leader`] reads raft's metrics. That is fine for routing, but not for
//! acting alone. A leader that is cut off from the others believes it leads until it
//! notices. So before each batch, a node that acts as the only leader (shipping) checks
//! [`Cluster::leader_lease`].
//!
//! The lease is `Some` only while a quorum acknowledged this leader recently. "Recently"
//! means: no other node can have been elected since. Voters refuse to elect another leader
//! within `election_timeout_max` of hearing from the current one, and the lease keeps one
//! heartbeat of margin.
//!
//! [`Cluster::ensure_linearizable`] is the slower, exact check: one round trip to a quorum.

use crate::cluster::reports::{Report, Reports};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use openraft::error::{CheckIsLeaderError, InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::network::ClusterTransport;
use crate::cluster::rpc::{self, RpcState, Secret};
use crate::cluster::store::{self, ControlReader};
use crate::cluster::transfer::{ElectionAction, ElectionPause, TransferError};
use crate::cluster::types::{NodeId, Raft};

pub use super::config::*;
pub use super::error::{ClusterError, ClusterWriteError};
use super::status::members_of;
pub use super::status::{ClusterStatus, Member, ReplicationStatus, Role};

mod propose;

/// A running cluster node. A cheap clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.inner.node_id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    node_id: NodeId,
    raft: Raft,
    control: ControlReader,
    transport: ClusterTransport,
    write_timeout: Duration,
    retry_pause: Duration,
    lease: Duration,
    /// When a quorum last acknowledged this node as leader. `None` when not leading.
    quorum_ack: Arc<Mutex<Option<Instant>>>,
    /// Latest follower reports (used while leading).
    reports: Reports,
    /// This node's side of a leadership transfer.
    pause: Arc<ElectionPause>,
    server: ServerHandle,
    server_task: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
    stop: CancellationToken,
    stopped: tokio::sync::OnceCell<()>,
}

impl Cluster {
    /// Starts this node. It opens the raft database and starts raft and the cluster
    /// listener. If this node is new, it forms the cluster from the static peers. The node
    /// stops when `shutdown` is cancelled, or on [`Cluster::shutdown`].
    pub async fn start(
        config: ClusterConfig,
        shutdown: CancellationToken,
    ) -> Result<Cluster, ClusterError> {
        let secret = Secret::new(&config.secret);
        validate(&config, &secret)?;
        let tls_server = config
            .tls
            .as_ref()
            .map(|tls| tls.server_config())
            .transpose()?;
        let transport = ClusterTransport::new(
            config.node_id,
            &secret,
            config.heartbeat_interval,
            config.tls.as_ref(),
        )?;
        let (raft, control) = open_raft(&config, transport.clone()).await?;
        let marker = member_marker(&config.data_dir);
        if let Err(e) = check_membership(&raft, config.node_id, &config.data_dir, &marker).await {
            let _ = raft.shutdown().await;
            return Err(e);
        }

        let reports = Reports::default();
        let pause = Arc::new(ElectionPause::default());
        let state = RpcState {
            pause: pause.clone(),
            raft: raft.clone(),
            node_id: config.node_id,
            secret,
            write_timeout: config.write_timeout,
            reports: reports.clone(),
        };
        let server = match serve_rpc(config.listen, tls_server, state) {
            Ok(s) => s,
            Err(source) => {
                let _ = raft.shutdown().await;
                return Err(ClusterError::Bind {
                    addr: config.listen,
                    source,
                });
            }
        };
        let server_handle = server.handle();
        let server_task = tokio::spawn(server);

        let stop = shutdown.child_token();
        let quorum_ack = Arc::new(Mutex::new(None));
        let lease = config
            .election_timeout_max
            .saturating_sub(config.heartbeat_interval);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                raft: raft.clone(),
                control,
                transport,
                write_timeout: config.write_timeout,
                retry_pause: config.heartbeat_interval,
                lease,
                quorum_ack: quorum_ack.clone(),
                reports,
                pause,
                server: server_handle,
                server_task: Mutex::new(Some(server_task)),
                stop: stop.clone(),
                stopped: tokio::sync::OnceCell::new(),
            }),
        };
        tokio::spawn(watch_metrics(
            raft.clone(),
            config.node_id,
            quorum_ack,
            marker,
            stop.clone(),
        ));
        let weak: Weak<Inner> = Arc::downgrade(&cluster.inner);
        tokio::spawn(async move {
            stop.cancelled().await;
            if let Some(inner) = weak.upgrade() {
                Cluster { inner }.shutdown().await;
            }
        });

        tracing::info!(
            node = config.node_id,
            listen = %config.listen,
            peers = ?config.peers,
            tls = config.tls.is_some(),
            "cluster: started"
        );
        if config.bootstrap {
            if let Err(e) = cluster.bootstrap(&config).await {
                cluster.shutdown().await;
                return Err(e);
            }
        }
        Ok(cluster)
    }

    /// Forms the cluster from the static peers if this node has no raft state. The peer
    /// with the smallest id initialises at once. The others give it `2 ×
    /// election_timeout_max` to reach them first. Why: a pristine node that initialised
    /// itself after a leader was elected would start a competing election in the same
    /// term. That costs one more election.
    async fn bootstrap(&self, config: &ClusterConfig) -> Result<(), ClusterError> {
        let node = self.inner.node_id;
        let initialized = self
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if initialized {
            tracing::info!(node, "cluster: raft state found, rejoining");
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = config
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        if config.peers.keys().next() == Some(&node) {
            return initialize(&self.inner.raft, node, members).await;
        }
        let raft = self.inner.raft.clone();
        let stop = self.inner.stop.clone();
        let grace = config.election_timeout_max * 2;
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(grace) => {}
            }
            if let Err(e) = initialize(&raft, node, members).await {
                tracing::error!(node, error = %e, "cluster: cannot form the cluster");
            }
        });
        Ok(())
    }
    /// The raft node.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The committed control state, as applied on this node.
    pub fn control(&self) -> &ControlReader {
        &self.inner.control
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// Whether this node believes it leads, from raft's metrics. Use it for routing and
    /// display. Before acting as the only leader, use [`Cluster::leader_lease`].
    pub fn is_leader(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.node_id)
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// The current raft term.
    pub fn term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
    }

    /// How much longer no other node can have become leader, while this node leads with a
    /// fresh quorum acknowledgement. `None` when not leading, or when the quorum went
    /// silent.
    pub fn leader_lease(&self) -> Option<Duration> {
        if !self.is_leader() {
            return None;
        }
        let acked = (*self.inner.quorum_ack.lock())?;
        self.inner
            .lease
            .checked_sub(acked.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// Confirms with a quorum that this node still leads. Then waits until everything
    /// committed so far is applied here (a linearizable read point).
    pub async fn ensure_linearizable(&self) -> Result<(), ClusterWriteError> {
        if self.inner.stop.is_cancelled() {
            return Err(ClusterWriteError::Stopped);
        }
        let timeout = self.inner.write_timeout;
        match tokio::time::timeout(timeout, self.inner.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(ClusterWriteError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                Err(ClusterWriteError::NoQuorum {
                    reason: e.to_string(),
                })
            }
            Ok(Err(RaftError::Fatal(_))) => Err(ClusterWriteError::Stopped),
            Err(_) => Err(ClusterWriteError::NoQuorum {
                reason: format!("no answer within {timeout:?}"),
            }),
        }
    }

    /// Moves leadership to voter `to` (see [`super::transfer`]). Returns how long it took.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<Duration, TransferError> {
        super::transfer::run(self, to).await
    }

    /// Applies a leadership transfer step on node `id`. It applies the step directly on
    /// this node, and over the cluster listener on another node.
    pub(super) async fn election_step(
        &self,
        id: NodeId,
        action: ElectionAction,
    ) -> Result<(), String> {
        let inner = &self.inner;
        if id == inner.node_id {
            inner.pause.apply(&inner.raft, id, action).await;
            return Ok(());
        }
        let addr = self
            .addr_of(id)
            .ok_or_else(|| format!("node {id} has no known address"))?;
        inner
            .transport
            .election(&addr, &action, inner.write_timeout)
            .await
    }

    /// The cluster address of member `id`, as this node's membership has it.
    fn addr_of(&self, id: NodeId) -> Option<String> {
        self.members()
            .into_iter()
            .find(|m| m.id == id)
            .map(|m| m.addr)
    }

    /// Follower reports received while leading.
    pub fn reports(&self) -> &Reports {
        &self.inner.reports
    }

    /// Sends this node's report to the current leader. Does nothing when no leader is
    /// known or when this node leads.
    pub async fn send_report(&self, report: &Report) -> Result<(), String> {
        let Some(leader) = self.leader().filter(|l| *l != self.inner.node_id) else {
            return Ok(());
        };
        let Some(addr) = self.addr_of(leader) else {
            return Err(format!("leader {leader} has no known address"));
        };
        self.inner
            .transport
            .report(&addr, report, self.inner.write_timeout)
            .await
    }

    /// The members as this node knows them (the latest membership in its log).
    pub fn members(&self) -> Vec<Member> {
        members_of(&self.metrics())
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let m = self.metrics();
        let last = m.last_log_index;
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, matched)| {
                        let matched_index = matched.map(|l| l.index);
                        let have = matched_index.map_or(0, |i| i + 1);
                        let want = last.map_or(0, |i| i + 1);
                        ReplicationStatus {
                            id: *id,
                            matched_index,
                            lag: want.saturating_sub(have),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        ClusterStatus {
            node_id: self.inner.node_id,
            role: m.state.into(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: last,
            last_applied: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            lease_remaining_ms: self
                .leader_lease()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            members: members_of(&m),
            replication,
        }
    }

    /// Stops the cluster listener and raft. Idempotent. Concurrent callers all wait for the
    /// one shutdown.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner
            .stopped
            .get_or_init(|| async {
                inner.stop.cancel();
                inner.server.stop(true).await;
                if let Err(e) = inner.raft.shutdown().await {
                    tracing::warn!(error = %e, "cluster: raft did not stop cleanly");
                }
                let task = inner.server_task.lock().take();
                if let Some(task) = task {
                    match tokio::time::timeout(Duration::from_secs(2), task).await {
                        Ok(Ok(Ok(()))) => {}
                        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "cluster: listener failed"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "cluster: listener task failed"),
                        Err(_) => tracing::warn!("cluster: listener did not stop in time"),
                    }
                }
                tracing::info!(node = inner.node_id, "cluster: stopped");
            })
            .await;
    }
}

/// Refuses a configuration the cluster cannot start with.
fn validate(config: &ClusterConfig, secret: &Secret) -> Result<(), ClusterError> {
    if secret.is_empty() {
        return Err(ClusterError::Config("the cluster secret is empty".into()));
    }
    if config.bootstrap && !config.peers.contains_key(&config.node_id) {
        return Err(ClusterError::Config(format!(
            "node {} is not among the peers {:?}",
            config.node_id,
            config.peers.keys().collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// Opens the raft database off the reactor and starts raft on it.
async fn open_raft(
    config: &ClusterConfig,
    transport: ClusterTransport,
) -> Result<(Raft, ControlReader), ClusterError> {
    let raft_config = Arc::new(config.raft_config()?);
    let dir = config.data_dir.clone();
    let (log_store, state_machine) = tokio::task::spawn_blocking(move || store::open(&dir))
        .await
        .map_err(|e| ClusterError::Raft(format!("opening the raft database: {e}")))??;
    let control = state_machine.reader();
    let raft = Raft::new(
        config.node_id,
        raft_config,
        transport,
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| ClusterError::Raft(e.to_string()))?;
    Ok((raft, control))
}

/// Binds the cluster listener (raft RPCs and reports), with TLS when configured.
fn serve_rpc(
    listen: std::net::SocketAddr,
    tls: Option<rustls::ServerConfig>,
    state: RpcState,
) -> std::io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .configure(rpc::routes)
    })
    .workers(2)
    .keep_alive(Duration::from_secs(15))
    .disable_signals()
    .shutdown_timeout(1);
    let bound = match tls {
        Some(tls) => server.bind_rustls_0_23(listen, tls)?,
        None => server.bind(listen)?,
    };
    Ok(bound.run())
}

/// The file that says this node has held raft state: beside the raft directory, named
/// after it (`<data-dir>/raft-member`), so that it outlives damage to the raft database.
fn member_marker(raft_dir: &Path) -> PathBuf {
    let name = raft_dir
        .file_name()
        .map_or_else(|| "raft".into(), |n| n.to_string_lossy());
    raft_dir.with_file_name(format!("{name}-member"))
}

/// Refuses a node whose raft database is empty although its marker says it was a member
/// ([`ClusterError::StateLost`]). A node with raft state gets the marker if it lacks it
/// (data directories of earlier versions).
async fn check_membership(
    raft: &Raft,
    node: NodeId,
    dir: &Path,
    marker: &Path,
) -> Result<(), ClusterError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
    if initialized {
        mark_member(marker, node);
        return Ok(());
    }
    if marker.exists() {
        tracing::error!(node, dir = %dir.display(), marker = %marker.display(), "cluster: the raft state is gone but this node was a member; refusing to start");
        return Err(ClusterError::StateLost {
            node,
            dir: dir.display().to_string(),
            marker: marker.display().to_string(),
        });
    }
    Ok(())
}

/// Writes the member marker once the node holds raft state (a vote or a log entry),
/// durably: a node that voted and then lost its database must be recognised.
fn mark_member(marker: &Path, node: NodeId) {
    if marker.exists() {
        return;
    }
    let written = std::fs::write(marker, format!("{node}\n")).and_then(|()| {
        std::fs::File::open(marker)?.sync_all()?;
        match marker.parent() {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    });
    match written {
        Ok(()) => {
            tracing::debug!(node, marker = %marker.display(), "cluster: member marker written")
        }
        Err(e) => {
            tracing::warn!(node, marker = %marker.display(), error = %e, "cluster: could not write the member marker; a later loss of the raft state would go unnoticed")
        }
    }
}

/// Writes the initial membership, unless this node already has raft state. A node with
/// state joined through the leader, or restarted.
async fn initialize(
    raft: &Raft,
    node: NodeId,
    members: BTreeMap<NodeId, BasicNode>,
) -> Result<(), ClusterError> {
    // Check first, because openraft logs a refused initialize as an error.
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
    if initialized {
        tracing::debug!(node, "cluster: already part of the cluster");
        return Ok(());
    }
    match raft.initialize(members).await {
        Ok(()) => {
            tracing::info!(node, "cluster: initial membership written");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            tracing::debug!(node, "cluster: already part of the cluster");
            Ok(())
        }
        Err(e) => Err(ClusterError::Raft(format!("initialize: {e}"))),
    }
}

/// Follows raft's metrics. It logs role and leader changes. It timestamps the leader's
/// quorum acknowledgements for [`Cluster::leader_lease`]. Raft reports how long ago a
/// quorum acknowledged. We stamp that on arrival, so the lease keeps shrinking even if
/// raft stops reporting.
async fn watch_metrics(
    raft: Raft,
    node_id: NodeId,
    quorum_ack: Arc<Mutex<Option<Instant>>>,
    marker: PathBuf,
    stop: CancellationToken,
) {
    let mut rx = raft.metrics();
    let mut marked = marker.exists();
    let mut seen: Option<(Role, Option<NodeId>, u64)> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
        let now = Instant::now();
        let (role, leader, term, acked_ms, has_log) = {
            let m = rx.borrow_and_update();
            (
                Role::from(m.state),
                m.current_leader,
                m.current_term,
                m.millis_since_quorum_ack,
                m.last_log_index.is_some(),
            )
        };
        // A term above 0 is a vote this node has stored.
        if !marked && (term > 0 || has_log) {
            let marker = marker.clone();
            let _ = tokio::task::spawn_blocking(move || mark_member(&marker, node_id)).await;
            marked = true;
        }
        *quorum_ack.lock() = match (role, acked_ms) {
            (Role::Leader, Some(ms)) => now.checked_sub(Duration::from_millis(ms)),
            _ => None,
        };
        let current = (role, leader, term);
        let (was_role, was_leader) = seen.map_or((None, None), |(r, l, _)| (Some(r), l));
        if was_role != Some(role) || was_leader != leader {
            if role == Role::Leader {
                tracing::info!(node = node_id, term, "cluster: this node leads");
            } else if was_role == Some(Role::Leader) {
                tracing::info!(
                    node = node_id,
                    term,
                    ?leader,
                    role = role.as_str(),
                    "cluster: this node stopped leading"
                );
            } else if was_leader != leader {
                tracing::info!(
                    node = node_id,
                    term,
                    ?leader,
                    role = role.as_str(),
                    "cluster: leader changed"
                );
            }
        }
        seen = Some(current);
    }
    *quorum_ack.lock() = None;
}

//! How a node joins the cluster: ids, addresses, secret, raft timings, with defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use openraft::SnapshotPolicy;

use crate::cluster::error::ClusterError;
use crate::cluster::rpc;
use crate::cluster::tls::ClusterTls;
use crate::cluster::types::NodeId;

/// Default leader heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
/// Default lower bound of the randomised election timeout.
pub const DEFAULT_ELECTION_TIMEOUT_MIN: Duration = Duration::from_millis(1_000);
/// Default upper bound of the randomised election timeout. It is also the leader lease
/// that voters honour. A failover takes about `max + a random value in [min, max)`, plus
/// one vote round.
pub const DEFAULT_ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(2_000);
/// Default time a proposal may take, forwarding and commit included.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of log entries between two snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 5_000;
/// Default number of log entries kept behind a snapshot. With them, a briefly absent
/// follower catches up from the log, not from a snapshot.
pub const DEFAULT_LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1_000;

/// How a node joins the cluster.
#[derive(Clone)]
pub struct ClusterConfig {
    /// This node's id (`--node-id`). It must be a key of `peers` when `bootstrap` is on.
    pub node_id: NodeId,
    /// Address the cluster listener binds (raft RPCs and forwarded proposals).
    pub listen: SocketAddr,
    /// The initial cluster (`--peers`): node id → `host:port` of its cluster listener.
    /// This node is included.
    pub peers: BTreeMap<NodeId, String>,
    /// Shared secret every cluster request carries. Never logged.
    pub secret: String,
    /// Directory of this node's raft database (the app passes `<data-dir>/raft`).
    pub data_dir: PathBuf,
    /// Whether to form the cluster from `peers` when this node has no raft state yet. Off
    /// for a node added later through the admin API, which gets its membership from the
    /// leader.
    pub bootstrap: bool,
    /// Leader heartbeat interval. It is also the timeout of one append-entries RPC.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomised election timeout. It is also the timeout of a vote
    /// RPC.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomised election timeout and the leader lease.
    pub election_timeout_max: Duration,
    /// How long a proposal may take, forwarding and commit included.
    pub write_timeout: Duration,
    /// Log entries between two snapshots.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot.
    pub logs_kept_after_snapshot: u64,
    /// TLS on the listener and to the peers. `None`: plain HTTP.
    pub tls: Option<ClusterTls>,
}

impl ClusterConfig {
    /// A configuration with the default timings.
    pub fn new(
        node_id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, String>,
        secret: String,
        data_dir: PathBuf,
    ) -> Self {
        ClusterConfig {
            node_id,
            listen,
            peers,
            secret,
            data_dir,
            bootstrap: true,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            election_timeout_min: DEFAULT_ELECTION_TIMEOUT_MIN,
            election_timeout_max: DEFAULT_ELECTION_TIMEOUT_MAX,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            logs_kept_after_snapshot: DEFAULT_LOGS_KEPT_AFTER_SNAPSHOT,
            tls: None,
        }
    }

    pub(super) fn raft_config(&self) -> Result<openraft::Config, ClusterError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "highlander".to_owned(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            // One chunk per RPC, on loopback or a LAN. Generous, because snapshots are a
            // few KiB.
            install_snapshot_timeout: ms(self.election_timeout_max).max(5_000),
            snapshot_max_chunk_size: rpc::SNAPSHOT_CHUNK_BYTES,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| ClusterError::Config(format!("raft timings: {e}")))
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("secret", &"<redacted>")
            .field("data_dir", &self.data_dir)
            .field("bootstrap", &self.bootstrap)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("election_timeout_min", &self.election_timeout_min)
            .field("election_timeout_max", &self.election_timeout_max)
            .field("write_timeout", &self.write_timeout)
            .field("snapshot_every", &self.snapshot_every)
            .field("logs_kept_after_snapshot", &self.logs_kept_after_snapshot)
            .field("tls", &self.tls)
            .finish()
    }
}

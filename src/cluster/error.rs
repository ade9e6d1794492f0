//! Why a cluster node could not start, and why a proposal or leadership check failed.

use std::net::SocketAddr;

use crate::cluster::network::TransportError;
use crate::cluster::store::OpenError;
use crate::cluster::tls::TlsError;
use crate::cluster::types::NodeId;

/// Why a cluster node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration is unusable (empty secret, node not among its peers, timings).
    #[error("cluster configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The listener's TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The raft database could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The cluster listener could not bind.
    #[error("cannot listen on {addr} (cluster): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// This node was a cluster member (its marker file says so) but its raft database is
    /// empty: the files were lost or damaged. It may have voted in the current term, and
    /// a voter that forgot its vote could elect a second leader, so it must not rejoin as
    /// a new node.
    #[error("the raft state in {dir} is gone (lost or damaged files), but this node ({node}) was a cluster member ({marker}); it may have voted in the current term and must not rejoin as a new node: run `highlander cluster remove {node}` on a member, delete {dir} and {marker}, start this node with --join and add it again with `highlander cluster add`")]
    StateLost {
        /// This node's id.
        node: u64,
        /// The raft directory.
        dir: String,
        /// The marker file.
        marker: String,
    },
    /// Raft failed to start or to initialise.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a proposal or a leadership check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterWriteError {
    /// No leader was known within the write timeout: an election is under way, or there
    /// is no quorum. Nothing was proposed.
    #[error("no cluster leader")]
    NoLeader,
    /// The leader could not be reached within the write timeout. Nothing was proposed.
    #[error("cluster leader {leader} unreachable: {reason}")]
    LeaderUnreachable {
        /// The leader.
        leader: NodeId,
        /// The last failure.
        reason: String,
    },
    /// The proposal was handed to a leader, but its commit was not confirmed. Reasons: no
    /// quorum in time, leader lost, raft stopped. It may or may not take effect.
    #[error("proposal outcome unknown: {reason}")]
    OutcomeUnknown {
        /// Why.
        reason: String,
    },
    /// The leader refused a membership change. Nothing was committed.
    #[error("membership change rejected: {reason}")]
    Rejected {
        /// Why.
        reason: String,
    },
    /// This node is not the leader (leadership checks).
    #[error("not the cluster leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// This node leads but could not confirm it with a quorum in time.
    #[error("leadership not confirmed by a quorum: {reason}")]
    NoQuorum {
        /// Why.
        reason: String,
    },
    /// This node's raft has stopped.
    #[error("raft stopped on this node")]
    Stopped,
}

impl ClusterWriteError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            ClusterWriteError::Rejected { .. } | ClusterWriteError::Stopped
        )
    }

    /// Whether the proposal may still take effect.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ClusterWriteError::OutcomeUnknown { .. })
    }

    /// A metrics label.
    pub fn as_label(&self) -> &'static str {
        match self {
            ClusterWriteError::NoLeader => "no_leader",
            ClusterWriteError::LeaderUnreachable { .. } => "leader_unreachable",
            ClusterWriteError::OutcomeUnknown { .. } => "outcome_unknown",
            ClusterWriteError::Rejected { .. } => "rejected",
            ClusterWriteError::NotLeader { .. } => "not_leader",
            ClusterWriteError::NoQuorum { .. } => "no_quorum",
            ClusterWriteError::Stopped => "stopped",
        }
    }
}

//! A node's view of the cluster (role, leader, term, members, replication). The admin API
//! and the metrics read it.

use std::collections::BTreeSet;

use openraft::{BasicNode, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};

use crate::cluster::types::NodeId;

/// A node's raft role. The default is `Learner`, as for openraft's `ServerState`. A node
/// starts out replicating without a vote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Leads the cluster. It proposes, replicates and ships.
    Leader,
    /// Follows a leader.
    Follower,
    /// Campaigning.
    Candidate,
    /// Replicates without voting.
    #[default]
    Learner,
    /// Raft stopped.
    Shutdown,
}

impl Role {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

impl From<ServerState> for Role {
    fn from(s: ServerState) -> Self {
        match s {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        }
    }
}

/// One cluster member as this node knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    /// Node id.
    pub id: NodeId,
    /// Its cluster listener, `host:port`.
    pub addr: String,
    /// Voter; otherwise learner.
    pub voter: bool,
}

/// How far one member's log is behind the leader's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicationStatus {
    /// Node id.
    pub id: NodeId,
    /// The last log index known to be replicated to it.
    pub matched_index: Option<u64>,
    /// Entries it is missing.
    pub lag: u64,
}

/// A node's view of the cluster, for the admin API and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterStatus {
    /// This node.
    pub node_id: NodeId,
    /// Its role.
    pub role: Role,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Current raft term.
    pub term: u64,
    /// Last log index on this node.
    pub last_log_index: Option<u64>,
    /// Last log index applied to the control state.
    pub last_applied: Option<u64>,
    /// Last log index covered by the current snapshot.
    pub snapshot_index: Option<u64>,
    /// Leader only: the remaining leader lease in ms (see [`super::Cluster::leader_lease`]).
    pub lease_remaining_ms: Option<u64>,
    /// Members, voters and learners.
    pub members: Vec<Member>,
    /// Leader only: replication progress of every member.
    pub replication: Vec<ReplicationStatus>,
}

pub(super) fn members_of(m: &RaftMetrics<NodeId, BasicNode>) -> Vec<Member> {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| Member {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

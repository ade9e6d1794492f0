//! What a node asks the leader to commit ([`Proposal`]), what the leader answers
//! ([`ProposalReply`]), and how the leader runs one (`propose_locally`).
//!
//! Any node can propose. A follower forwards the proposal to the leader over the cluster
//! listener (`POST /cluster/write`). The leader runs it here. The forwarded path and the
//! local path both end in the same [`ProposalReply`], so a caller sees one set of outcomes.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use crate::cluster::transfer::ElectionPause;
use crate::cluster::types::{NodeId, Raft, Request, Response};

/// Something only the leader can commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Proposal {
    /// A control-state command.
    Write {
        /// The command.
        request: Request,
    },
    /// Adds a learner, or updates its address. Does not wait for it to catch up.
    AddLearner {
        /// Its node id.
        id: NodeId,
        /// Its cluster listener, `host:port`.
        addr: String,
    },
    /// A membership change (joint consensus, two log entries).
    ChangeMembership {
        /// What changes.
        changes: ChangeMembers<NodeId, BasicNode>,
        /// Whether removed voters stay as learners.
        retain: bool,
    },
}

/// The leader's answer to a [`Proposal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ProposalReply {
    /// Committed and applied.
    Applied {
        /// What the apply did ([`Response::Empty`] for membership changes).
        response: Response,
    },
    /// The node asked is not the leader. Nothing was proposed.
    ForwardToLeader {
        /// The leader it knows of, if any.
        leader: Option<NodeId>,
    },
    /// The leader refused a membership change. Reasons: another change in progress, an
    /// unknown learner, an empty membership. Nothing was committed.
    Rejected {
        /// Why.
        reason: String,
    },
    /// The proposal did not finish: raft stopped, or no quorum answered in time. It may
    /// still commit later.
    Failed {
        /// Why.
        reason: String,
        /// Whether it may have been committed, or may still be committed.
        outcome_unknown: bool,
    },
}

/// Runs `proposal` on this node, as leader, and waits at most `timeout` for the commit.
/// While this node hands leadership over (`pause`), nothing is proposed. The caller is
/// sent on to the next leader.
pub(crate) async fn propose_locally(
    raft: &Raft,
    pause: &ElectionPause,
    proposal: Proposal,
    timeout: Duration,
) -> ProposalReply {
    if pause.is_paused() {
        return ProposalReply::ForwardToLeader { leader: None };
    }
    let run = async {
        match proposal {
            Proposal::Write { request } => raft.client_write(request).await,
            Proposal::AddLearner { id, addr } => {
                raft.add_learner(id, BasicNode::new(addr), false).await
            }
            Proposal::ChangeMembership { changes, retain } => {
                raft.change_membership(changes, retain).await
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(written)) => ProposalReply::Applied {
            response: written.data,
        },
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            ProposalReply::ForwardToLeader {
                leader: f.leader_id,
            }
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            ProposalReply::Rejected {
                reason: e.to_string(),
            }
        }
        Ok(Err(RaftError::Fatal(e))) => ProposalReply::Failed {
            reason: format!("raft: {e}"),
            outcome_unknown: true,
        },
        Err(_) => ProposalReply::Failed {
            reason: format!("not committed within {timeout:?} (no quorum?)"),
            outcome_unknown: true,
        },
    }
}

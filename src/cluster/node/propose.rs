//! Proposals from this node: control-state writes and membership changes go to the
//! leader — run here when this node leads, forwarded over the cluster listener otherwise —
//! and are retried while nothing was proposed (no leader yet, leader unreachable, a
//! leadership transfer in progress), within the write timeout.

use std::collections::BTreeSet;

use openraft::{BasicNode, ChangeMembers};

use super::Cluster;
use crate::cluster::network::ForwardError;
use crate::cluster::proposal::{propose_locally, Proposal, ProposalReply};
use crate::cluster::types::{NodeId, Request, Response};
use crate::cluster::ClusterWriteError;

impl Cluster {
    /// Commits `request` through the leader (forwarding when this node follows) and returns
    /// what applying it did. Commands are safe to repeat after an
    /// [`ClusterWriteError::OutcomeUnknown`]: re-promoting the promoted source, demoting a
    /// source no longer promoted, setting the same pin or an older watermark change nothing.
    pub async fn write(&self, request: Request) -> Result<Response, ClusterWriteError> {
        self.propose(Proposal::Write { request }).await
    }

    /// Adds (or re-addresses) a learner: it starts replicating but does not vote. Does not
    /// wait for it to catch up (see [`Cluster::status`]).
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<(), ClusterWriteError> {
        self.propose(Proposal::AddLearner { id, addr })
            .await
            .map(|_| ())
    }

    /// Adds a voter: as a learner first, then into the voters.
    pub async fn add_voter(&self, id: NodeId, addr: String) -> Result<(), ClusterWriteError> {
        self.add_learner(id, addr).await?;
        self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
    }

    /// Applies a membership change (joint consensus). With `retain`, removed voters stay as
    /// learners.
    pub async fn change_membership(
        &self,
        changes: ChangeMembers<NodeId, BasicNode>,
        retain: bool,
    ) -> Result<(), ClusterWriteError> {
        self.propose(Proposal::ChangeMembership { changes, retain })
            .await
            .map(|_| ())
    }

    /// Removes a member, voter or learner. Removing the leader makes it step down once the
    /// change commits.
    pub async fn remove(&self, id: NodeId) -> Result<(), ClusterWriteError> {
        let member = self.members().into_iter().find(|m| m.id == id);
        match member {
            Some(m) if m.voter => {
                self.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
            }
            Some(_) => {
                self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await
            }
            None => Err(ClusterWriteError::Rejected {
                reason: format!("node {id} is not a member"),
            }),
        }
    }

    /// Runs `proposal` on the leader, finding it, forwarding and retrying while nothing was
    /// proposed, within the write timeout.
    async fn propose(&self, proposal: Proposal) -> Result<Response, ClusterWriteError> {
        let inner = &self.inner;
        if inner.stop.is_cancelled() {
            return Err(ClusterWriteError::Stopped);
        }
        let deadline = tokio::time::Instant::now() + inner.write_timeout;
        let mut hint: Option<NodeId> = None;
        let mut last_failure = ClusterWriteError::NoLeader;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(last_failure);
            }
            let remaining = deadline - now;
            let target = match hint.take().or_else(|| self.leader()) {
                Some(l) => l,
                None => self.wait_for_leader(deadline).await?,
            };
            let reply = if target == inner.node_id {
                propose_locally(&inner.raft, &inner.pause, proposal.clone(), remaining).await
            } else {
                let Some(addr) = self.addr_of(target) else {
                    last_failure = ClusterWriteError::LeaderUnreachable {
                        leader: target,
                        reason: "no address in the membership".into(),
                    };
                    self.pause(deadline).await;
                    continue;
                };
                match inner
                    .transport
                    .forward(target, &addr, &proposal, remaining)
                    .await
                {
                    Ok(reply) => reply,
                    Err(ForwardError::NotDelivered { reason, .. }) => {
                        tracing::debug!(leader = target, %reason, "cluster: forward failed");
                        last_failure = ClusterWriteError::LeaderUnreachable {
                            leader: target,
                            reason,
                        };
                        self.pause(deadline).await;
                        continue;
                    }
                    Err(e @ ForwardError::NoReply { .. }) => {
                        return Err(ClusterWriteError::OutcomeUnknown {
                            reason: e.to_string(),
                        })
                    }
                }
            };
            match reply {
                ProposalReply::Applied { response } => return Ok(response),
                ProposalReply::ForwardToLeader { leader } => {
                    last_failure = ClusterWriteError::NoLeader;
                    hint = leader.filter(|l| *l != target);
                    if hint.is_none() {
                        self.pause(deadline).await;
                    }
                }
                ProposalReply::Rejected { reason } => {
                    return Err(ClusterWriteError::Rejected { reason })
                }
                ProposalReply::Failed { reason, .. } => {
                    return Err(ClusterWriteError::OutcomeUnknown { reason })
                }
            }
        }
    }

    async fn pause(&self, deadline: tokio::time::Instant) {
        let until = (tokio::time::Instant::now() + self.inner.retry_pause).min(deadline);
        tokio::time::sleep_until(until).await;
    }

    async fn wait_for_leader(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<NodeId, ClusterWriteError> {
        let mut rx = self.inner.raft.metrics();
        let wait = async {
            rx.wait_for(|m| m.current_leader.is_some())
                .await
                .map(|m| m.current_leader)
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(Some(leader))) => Ok(leader),
            Ok(Ok(None)) | Err(_) => Err(ClusterWriteError::NoLeader),
            Ok(Err(_)) => Err(ClusterWriteError::Stopped),
        }
    }
}

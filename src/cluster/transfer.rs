//! Leadership transfer (`highlander cluster transfer-leader ID`), for planned maintenance.
//! It moves the leader off a node before the node restarts. Without it, the leader would
//! die and the cluster would wait for an election timeout.
//!
//! openraft 0.9 has no transfer call. A voter refuses to elect anyone while it has heard
//! from a leader within the lease (`election_timeout_max`). So the node that the operator
//! asked (any member) builds a transfer from openraft's runtime switches:
//! 1. Every voter except the target *pauses*: it stops its own election timer. The leader
//!    also stops its heartbeats and refuses proposals. Without append-entries, the
//!    followers' leases run out. The leader's own shipping lease runs out with them, so it
//!    stops shipping.
//! 2. After the lease, the target is told to start an election at once. It is the only
//!    candidate, and its log is up to date (checked first). So a majority elects it.
//! 3. Every paused node resumes.
//!
//! # Invariants
//! - A pause ends by itself after [`PAUSE`], even if the coordinator dies or a resume is
//!   lost. So no node stays without elections or heartbeats. A newer pause or resume
//!   supersedes the timer of an older one (generation counter).
//! - Nothing acknowledged depends on the transfer. Every node keeps appending and
//!   acknowledging writes. Only shipping pauses, for about a lease plus an election.
//! - The target may not win, for example because it died meanwhile. Then the old leader
//!   resumes its heartbeats after [`PAUSE`] and usually stays leader. The caller gets an
//!   error that names the leader at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::types::{NodeId, Raft};
use super::Cluster;

/// The longest a node stays paused without hearing a resume.
pub const PAUSE: Duration = Duration::from_secs(8);

/// What the transfer coordinator asks of a node (`POST /cluster/election`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum ElectionAction {
    /// Stop electing for at most `ms`. A leader also stops heartbeats and proposals.
    Pause {
        /// How long, in milliseconds (capped at [`PAUSE`]).
        ms: u64,
    },
    /// Start an election now.
    Elect,
    /// End a pause.
    Resume,
}

/// One node's side of a transfer: the pause and its self-ending timer.
#[derive(Debug, Default)]
pub struct ElectionPause {
    /// Odd while paused. Every pause and resume increments it.
    generation: AtomicU64,
}

impl ElectionPause {
    /// Whether this node is paused. A paused leader refuses proposals.
    pub fn is_paused(&self) -> bool {
        self.generation.load(Ordering::Acquire) % 2 == 1
    }

    /// Applies `action` to this node's raft.
    pub async fn apply(self: &Arc<Self>, raft: &Raft, node: NodeId, action: ElectionAction) {
        match action {
            ElectionAction::Pause { ms } => {
                let until = Duration::from_millis(ms).min(PAUSE);
                let generation = self.next(true);
                raft.runtime_config().elect(false);
                raft.runtime_config().heartbeat(false);
                tracing::info!(node, pause = ?until, "cluster: elections and heartbeats paused for a leadership transfer");
                let this = self.clone();
                let raft = raft.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(until).await;
                    if this.generation.load(Ordering::Acquire) == generation {
                        this.resume(&raft, node);
                    }
                });
            }
            ElectionAction::Resume => self.resume(raft, node),
            ElectionAction::Elect => {
                tracing::info!(
                    node,
                    "cluster: starting an election for a leadership transfer"
                );
                if let Err(e) = raft.trigger().elect().await {
                    tracing::error!(node, error = %e, "cluster: could not start an election");
                }
            }
        }
    }

    fn resume(&self, raft: &Raft, node: NodeId) {
        if !self.is_paused() {
            return;
        }
        self.next(false);
        raft.runtime_config().heartbeat(true);
        raft.runtime_config().elect(true);
        tracing::info!(node, "cluster: elections and heartbeats resumed");
    }

    /// Moves to the next generation with the wanted parity and returns it.
    fn next(&self, paused: bool) -> u64 {
        let mut current = self.generation.load(Ordering::Acquire);
        loop {
            let next = current + if (current % 2 == 1) == paused { 2 } else { 1 };
            match self.generation.compare_exchange(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return next,
                Err(now) => current = now,
            }
        }
    }
}

/// Runs a transfer to `to` from this node (any member). Returns how long it took.
pub(super) async fn run(cluster: &Cluster, to: NodeId) -> Result<Duration, TransferError> {
    let started = Instant::now();
    let members = cluster.members();
    if !members.iter().any(|m| m.id == to && m.voter) {
        return Err(TransferError::NotAVoter(to));
    }
    let leader = cluster.leader().ok_or(TransferError::NoLeader)?;
    if leader == to {
        return Ok(Duration::ZERO);
    }
    if cluster.is_leader() {
        let metrics = cluster.raft().metrics().borrow().clone();
        let last = metrics.last_log_index;
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&to).cloned().flatten())
            .map(|l| l.index);
        if matched < last {
            return Err(TransferError::Lagging { to, matched, last });
        }
    }
    let lease = Duration::from_millis(cluster.raft().config().election_timeout_max);
    tracing::info!(from = leader, to, "cluster: leadership transfer started");
    // Pause the followers first, so none of them starts an election once the leader goes
    // quiet.
    let others = members
        .iter()
        .filter(|m| m.voter && m.id != to && m.id != leader)
        .map(|m| m.id)
        .chain(std::iter::once(leader));
    let pause = ElectionAction::Pause {
        ms: PAUSE.as_millis() as u64,
    };
    let mut paused = Vec::new();
    for id in others {
        if let Err(reason) = cluster.election_step(id, pause).await {
            resume(cluster, &paused).await;
            return Err(TransferError::Unreachable { node: id, reason });
        }
        paused.push(id);
    }
    // Every voter has now gone a lease without hearing from the leader, so it will vote.
    tokio::time::sleep(lease + lease / 4).await;
    if let Err(reason) = cluster.election_step(to, ElectionAction::Elect).await {
        resume(cluster, &paused).await;
        return Err(TransferError::Unreachable { node: to, reason });
    }
    let waited = lease * 2;
    let mut metrics = cluster.raft().metrics();
    let elected = tokio::time::timeout(waited, metrics.wait_for(|m| m.current_leader == Some(to)))
        .await
        .is_ok_and(|r| r.is_ok());
    resume(cluster, &paused).await;
    if elected {
        tracing::info!(from = leader, to, took = ?started.elapsed(), "cluster: leadership transferred");
        Ok(started.elapsed())
    } else {
        let leader = cluster.leader();
        tracing::warn!(
            to,
            ?leader,
            "cluster: leadership transfer failed, the target was not elected"
        );
        Err(TransferError::NotElected { to, waited, leader })
    }
}

/// Ends the pauses. Best effort: each pause also ends by itself after [`PAUSE`].
async fn resume(cluster: &Cluster, paused: &[NodeId]) {
    for &id in paused {
        if let Err(reason) = cluster.election_step(id, ElectionAction::Resume).await {
            tracing::warn!(node = id, %reason, "cluster: could not end a transfer pause; it ends by itself");
        }
    }
}

/// Why a transfer did not happen or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The target is not a voter of the cluster.
    #[error("node {0} is not a voting member")]
    NotAVoter(NodeId),
    /// No leader is known to hand over from.
    #[error("no leader is known; try again once one is elected")]
    NoLeader,
    /// The target's log is behind the leader's, so it could not win an election.
    #[error("node {to} is behind the leader (matched log index {matched:?}, leader at {last:?}); try again when it has caught up")]
    Lagging {
        /// The target.
        to: NodeId,
        /// Its last log index known to match the leader's.
        matched: Option<u64>,
        /// The leader's last log index.
        last: Option<u64>,
    },
    /// A node could not be told to pause or to elect.
    #[error("node {node} did not answer ({reason}); nothing changed beyond a short pause")]
    Unreachable {
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The target did not become leader in time.
    #[error("node {to} did not become leader within {waited:?}; the leader is {leader:?}")]
    NotElected {
        /// The target.
        to: NodeId,
        /// How long the transfer waited.
        waited: Duration,
        /// The leader when it gave up.
        leader: Option<NodeId>,
    },
}

impl TransferError {
    /// A short, stable name for the API and logs.
    pub fn as_label(&self) -> &'static str {
        match self {
            TransferError::NotAVoter(_) => "not_a_voter",
            TransferError::NoLeader => "no_leader",
            TransferError::Lagging { .. } => "lagging",
            TransferError::Unreachable { .. } => "unreachable",
            TransferError::NotElected { .. } => "not_elected",
        }
    }

    /// Whether the same request may succeed later unchanged.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, TransferError::NotAVoter(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_alternate_and_supersede() {
        let p = ElectionPause::default();
        assert!(!p.is_paused());
        let first = p.next(true);
        assert!(p.is_paused());
        // A second pause gets a newer generation, so the first pause's timer no longer
        // matches.
        let second = p.next(true);
        assert!(p.is_paused());
        assert_ne!(first, second);
        p.next(false);
        assert!(!p.is_paused());
        assert_ne!(p.generation.load(Ordering::Acquire), second);
    }

    #[test]
    fn actions_have_a_stable_wire_form() {
        let pause = serde_json::to_string(&ElectionAction::Pause { ms: 1500 }).expect("json");
        assert_eq!(pause, r#"{"action":"pause","ms":1500}"#);
        let elect: ElectionAction = serde_json::from_str(r#"{"action":"elect"}"#).expect("json");
        assert_eq!(elect, ElectionAction::Elect);
    }
}

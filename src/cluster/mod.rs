//! The cluster: highlander nodes agree, through raft (openraft 0.9), on who leads and on the
//! control state every node acts on.
//!
//! # What raft carries
//! Control state only ([`ControlState`]), a few KiB in total:
//! - per HA group, the promoted source with its weight, the reason and an **epoch**, a
//!   counter bumped by every promotion and demotion of that group, so a node can tell a stale
//!   promotion from the current one (`PromotedSource::epoch` < `GroupControl::epoch`);
//! - per group, the operator pin;
//! - per storage endpoint, the shipped **watermark** in data time (the newest sample
//!   timestamp the leader shipped); followers trim their WAL below it minus an overlap
//!   window, a new leader resumes shipping from it minus the overlap.
//!
//! Bulk samples never go through raft: every node buffers the promoted source's writes in its
//! own WAL, and only the leader ships. The leader itself is raft's leader (not in the state).
//!
//! Commands ([`Request`]) are decided by the leader and applied by every node with the pure
//! [`ControlState::apply`]; what an apply did comes back as a [`Response`]. An election
//! command carries the state of its group it was decided on ([`Expect`]) and changes nothing
//! if the group moved on before it was committed.
//!
//! # The store
//! One sled database in its own directory (`<data-dir>/raft`, see [`store::open`]) holds the
//! raft log, the vote and the state machine. Invariants:
//! - the vote is flushed to disk before `save_vote` returns;
//! - appended entries are reported durable (the `LogFlushed` callback) only after the flush
//!   that covers them, and are readable as soon as `append` returns;
//! - the log has no holes: `truncate` removes every index ≥ the given one, `purge` every
//!   index ≤ it (in chunks of [`store::PURGE_CHUNK`] keys) after recording the purged log id,
//!   so an empty log still reports where it ended;
//! - the state machine (control state, last applied log id, last membership) is written as
//!   one value and flushed after every apply batch; readers ([`ControlReader`]) see a new
//!   state only once it is durable;
//! - the current snapshot is persisted with its meta; an installed snapshot replaces state
//!   and snapshot in one batch; a restart never starts behind the stored snapshot;
//! - applying is deterministic: the same log gives the same state on every node.
//!
//! # The node
//! [`Cluster::start`] ([`node`]) opens the store, starts raft, the cluster listener and the
//! bootstrap from the static peers; the [`Cluster`] handle proposes from any node (a follower
//! forwards to the leader), reads the applied state, reports status and changes membership.
//! Leadership for acting alone (shipping) is [`Cluster::leader_lease`], not
//! [`Cluster::is_leader`]: see [`node`].
//!
//! # The transport
//! Raft RPCs and forwarded proposals are JSON over HTTP on the cluster's own listener
//! (`rpc.rs`: `POST /raft/append`, `/raft/vote`, `/raft/snapshot` in 1 MiB chunks,
//! `/cluster/write`), every request carrying the shared secret (`Authorization: Bearer`,
//! checked in constant time before the body is read; 401 and a WARN otherwise). The client
//! side ([`network`]) is one reqwest client per node; refused connections are reported to
//! openraft as unreachable so it backs off (heartbeat interval doubling up to 1 s). TLS is
//! optional ([`tls`]): with a certificate and key the listener speaks HTTPS only and peers
//! are called over HTTPS; the secret still authenticates callers (no client certificates).

mod config;
mod error;
pub mod network;
pub mod node;
pub mod promotions;
pub mod proposal;
pub mod reports;
mod rpc;
pub mod shipping;
mod status;
pub mod store;
pub mod tls;
pub mod transfer;
pub mod types;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

pub use node::{
    Cluster, ClusterConfig, ClusterError, ClusterStatus, ClusterWriteError, Member,
    ReplicationStatus, Role,
};
pub use proposal::{Proposal, ProposalReply};
pub use store::{AppliedControl, ControlReader, LogStore, StateMachineStore};
pub use tls::{ClusterTls, TlsError};
pub use types::{
    ControlState, Expect, GroupControl, NodeId, PromotedSource, Raft, Request, Response, TypeConfig,
};

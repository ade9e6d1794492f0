//! The cluster: highlander nodes agree, through raft (openraft 0.9), on who leads and on the
//! control state that every node acts on.
//!
//! # What raft carries
//! Raft carries control state only ([`ControlState`]), a few KiB in total:
//! - per HA group: the promoted source with its weight, the reason and an **epoch**. The
//!   epoch is a counter. Every promotion and demotion of that group bumps it. So a node can
//!   tell a stale promotion from the current one (`PromotedSource::epoch` <
//!   `GroupControl::epoch`).
//! - per group: the operator pin.
//! - per storage endpoint: the shipped **watermark** in data time, that is the newest
//!   sample timestamp the leader shipped. Followers trim their WAL below the watermark
//!   minus an overlap window. A new leader resumes shipping from the watermark minus the
//!   overlap.
//!
//! Bulk samples never go through raft. Every node buffers the promoted source's writes in
//! its own WAL, and only the leader ships. The leader is raft's leader; the state does not
//! name it.
//!
//! The leader decides commands ([`Request`]). Every node applies them with the pure
//! [`ControlState::apply`]. A [`Response`] says what an apply did. An election command
//! carries the state of its group that the leader decided on ([`Expect`]). If the group
//! moved on before the command was committed, the command changes nothing.
//!
//! # The store
//! One sled database in its own directory (`<data-dir>/raft`, see [`store::open`]) holds the
//! raft log, the vote and the state machine. Invariants:
//! - The vote is flushed to disk before `save_vote` returns.
//! - Appended entries are readable as soon as `append` returns. They are reported durable
//!   (the `LogFlushed` callback) only after the flush that covers them.
//! - The log has no holes. `truncate` removes every index ≥ the given one. `purge` first
//!   records the purged log id, then removes every index ≤ the given one, in chunks of
//!   [`store::PURGE_CHUNK`] keys. So an empty log still reports where it ended.
//! - The state machine (control state, last applied log id, last membership) is written as
//!   one value and flushed after every apply batch. Readers ([`ControlReader`]) see a new
//!   state only once it is durable.
//! - The current snapshot is persisted with its meta. An installed snapshot replaces the
//!   state and the snapshot in one batch. A restart never starts behind the stored
//!   snapshot.
//! - Applying is deterministic: the same log gives the same state on every node.
//!
//! # The node
//! [`Cluster::start`] ([`node`]) opens the store and starts raft, the cluster listener and
//! the bootstrap from the static peers. The [`Cluster`] handle does four things: it
//! proposes from any node (a follower forwards to the leader), reads the applied state,
//! reports status and changes membership. To act alone (shipping), a node checks
//! [`Cluster::leader_lease`], not [`Cluster::is_leader`]; [`node`] explains why.
//!
//! # The transport
//! Raft RPCs and forwarded proposals are JSON over HTTP on the cluster's own listener
//! (`rpc.rs`): `POST /raft/append`, `/raft/vote`, `/raft/snapshot` (in 1 MiB chunks) and
//! `/cluster/write`.
//! - Every request carries the shared secret (`Authorization: Bearer`). The listener checks
//!   it in constant time before it reads the body. Otherwise it answers 401 and logs a WARN.
//! - The client side ([`network`]) is one reqwest client per node. It reports refused
//!   connections to openraft as unreachable, so openraft backs off: the heartbeat interval
//!   doubles, up to 1 s.
//! - TLS is optional ([`tls`]). With a certificate and key, the listener speaks HTTPS only,
//!   and peers are called over HTTPS. The secret still authenticates callers; there are no
//!   client certificates.

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

//! What raft carries:
//! - the type configuration;
//! - the commands ([`Request`]) that the leader proposes;
//! - what applying a command did ([`Response`]);
//! - the replicated [`ControlState`], with its pure, deterministic [`ControlState::apply`].
//!
//! Everything here is serialized into the raft log and into snapshots. So field names are
//! a storage format: add fields with `#[serde(default)]`, and never rename them.

use std::collections::BTreeMap;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::election::{PinView, Reason};

/// A raft node's identity (`--node-id`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of highlander's cluster.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running raft node.
pub type Raft = openraft::Raft<TypeConfig>;
/// One raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A raft log position: (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// A raft vote.
pub type Vote = openraft::Vote<NodeId>;
/// A membership config together with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// What a snapshot covers.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// A snapshot: its meta and its data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// openraft's storage error, as our stores return it.
pub type StorageError = openraft::StorageError<NodeId>;

/// A command the leader commits. Every node applies it to its [`ControlState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Request {
    /// `source` becomes the promoted source of `group`. Ignored when `expect` no longer
    /// describes the group, because a stale decision must not replace a newer one.
    Promote {
        /// HA group.
        group: String,
        /// The promoted source.
        source: String,
        /// Its `highlander_weight`.
        weight: u64,
        /// Why the leader promoted it.
        reason: Reason,
        /// When the leader decided (ms since the epoch).
        at_ms: u64,
        /// The group as the decision saw it; `None`: unconditional.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<Expect>,
    },
    /// `source` stops being the promoted source of `group`. Ignored in two cases:
    /// - `source` is not the promoted source any more. A stale demotion must not demote its
    ///   successor.
    /// - `expect` no longer describes the group.
    Demote {
        /// HA group.
        group: String,
        /// The source to demote.
        source: String,
        /// When the leader decided (ms since the epoch).
        at_ms: u64,
        /// The group as the decision saw it; `None`: unconditional.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<Expect>,
    },
    /// Sets (`Some`) or removes (`None`) the operator pin of `group`. Ignored when `expect`
    /// no longer describes the group. So when the leader removes an expired pin, it does
    /// not remove a pin that an operator set since.
    SetPin {
        /// HA group.
        group: String,
        /// The new pin.
        pin: Option<PinView>,
        /// The group as the decision saw it; `None`: unconditional (an operator's pin).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<Expect>,
    },
    /// The leader shipped everything up to `data_ts` (sample time, ms) to `endpoint`.
    /// Monotonic: an older watermark never moves the stored one back.
    Watermark {
        /// Storage endpoint name.
        endpoint: String,
        /// Newest sample timestamp shipped (ms since the epoch).
        data_ts: i64,
        /// When the leader proposed it (ms since the epoch). For logs only.
        at_ms: u64,
    },
}

/// The state of a group that a command was decided on. The command applies only if the
/// group is still in that state.
///
/// The leader decides on the state it applied, but its commands land later. They land
/// after any command committed in between. Examples: an operator's pin, or the decisions
/// of a leader that just lost its lease and forwards them to its successor. Without this
/// check, such a stale decision would undo a newer one, and the next round would undo it
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expect {
    /// The group's epoch ([`GroupControl::epoch`]).
    pub epoch: u64,
    /// The promoted source. It is checked with the epoch, because two different histories
    /// can reach the same epoch. With both checks, the command still fits the group it
    /// lands on.
    pub promoted: Option<String>,
    /// The group's pin, exactly.
    pub pin: Option<PinView>,
}

impl Expect {
    /// `group` as it stands in `state`. A group never seen has epoch 0, nothing promoted
    /// and no pin.
    pub fn of(state: &ControlState, group: &str) -> Expect {
        let g = state.groups.get(group);
        Expect {
            epoch: g.map_or(0, |g| g.epoch),
            promoted: g
                .and_then(|g| g.promoted.as_ref())
                .map(|p| p.source.clone()),
            pin: g.and_then(|g| g.pin.clone()),
        }
    }

    fn holds(expect: Option<&Expect>, state: &ControlState, group: &str) -> bool {
        expect.is_none_or(|e| *e == Expect::of(state, group))
    }
}

/// What applying one log entry did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Response {
    /// A blank or membership entry. The control state is untouched.
    Empty,
    /// A `Promote` or `Demote`.
    Group {
        /// The group's epoch after the apply.
        epoch: u64,
        /// Whether the promoted source changed. False for a stale demotion, or for a
        /// re-promotion of the promoted source, which only refreshes its weight.
        changed: bool,
    },
    /// A `SetPin`.
    Pin {
        /// Whether the pin changed.
        changed: bool,
    },
    /// A `Watermark`.
    Watermark {
        /// The endpoint's watermark after the apply.
        data_ts: i64,
        /// Whether it moved forward.
        moved: bool,
    },
}

/// The promoted source of one group, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedSource {
    /// Source (replica) identity.
    pub source: String,
    /// Its weight when it was (re)promoted.
    pub weight: u64,
    /// Why it was promoted.
    pub reason: Reason,
    /// When it was promoted (ms since the epoch, leader's clock).
    pub since_ms: u64,
    /// The group epoch its promotion created.
    pub epoch: u64,
}

/// The committed control state of one HA group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupControl {
    /// Incremented by every promotion and demotion of the group. 0 = never promoted.
    /// Lets a node tell a stale promotion from the current one.
    pub epoch: u64,
    /// The promoted source, if any.
    pub promoted: Option<PromotedSource>,
    /// The operator pin, if any.
    pub pin: Option<PinView>,
    /// When the promoted source last changed (ms since the epoch). 0 = never.
    pub changed_ms: u64,
}

/// Everything raft replicates: control state only, never samples.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    /// Per HA group.
    pub groups: BTreeMap<String, GroupControl>,
    /// Per storage endpoint: the newest sample time (ms) that the leader shipped.
    pub watermarks: BTreeMap<String, i64>,
}

impl ControlState {
    /// Applies one committed command. Pure and deterministic: every node gets the same
    /// state from the same log.
    pub fn apply(&mut self, request: &Request) -> Response {
        match request {
            Request::Promote {
                group,
                source,
                weight,
                reason,
                at_ms,
                expect,
            } => {
                if !Expect::holds(expect.as_ref(), self, group) {
                    return Response::Group {
                        epoch: self.epoch(group),
                        changed: false,
                    };
                }
                let g = self.groups.entry(group.clone()).or_default();
                if let Some(p) = g.promoted.as_mut().filter(|p| &p.source == source) {
                    p.weight = *weight;
                    return Response::Group {
                        epoch: g.epoch,
                        changed: false,
                    };
                }
                g.epoch += 1;
                g.changed_ms = *at_ms;
                g.promoted = Some(PromotedSource {
                    source: source.clone(),
                    weight: *weight,
                    reason: reason.clone(),
                    since_ms: *at_ms,
                    epoch: g.epoch,
                });
                Response::Group {
                    epoch: g.epoch,
                    changed: true,
                }
            }
            Request::Demote {
                group,
                source,
                at_ms,
                expect,
            } => {
                if !Expect::holds(expect.as_ref(), self, group) {
                    return Response::Group {
                        epoch: self.epoch(group),
                        changed: false,
                    };
                }
                let Some(g) = self.groups.get_mut(group) else {
                    return Response::Group {
                        epoch: 0,
                        changed: false,
                    };
                };
                if g.promoted.as_ref().is_none_or(|p| &p.source != source) {
                    return Response::Group {
                        epoch: g.epoch,
                        changed: false,
                    };
                }
                g.epoch += 1;
                g.changed_ms = *at_ms;
                g.promoted = None;
                Response::Group {
                    epoch: g.epoch,
                    changed: true,
                }
            }
            Request::SetPin { group, pin, expect } => {
                if !Expect::holds(expect.as_ref(), self, group) {
                    return Response::Pin { changed: false };
                }
                let changed = match (self.groups.get_mut(group), pin) {
                    (Some(g), _) => {
                        let changed = g.pin != *pin;
                        g.pin = pin.clone();
                        changed
                    }
                    (None, None) => false,
                    (None, Some(pin)) => {
                        self.groups.insert(
                            group.clone(),
                            GroupControl {
                                pin: Some(pin.clone()),
                                ..GroupControl::default()
                            },
                        );
                        true
                    }
                };
                Response::Pin { changed }
            }
            Request::Watermark {
                endpoint, data_ts, ..
            } => match self.watermarks.get_mut(endpoint) {
                Some(current) if *current >= *data_ts => Response::Watermark {
                    data_ts: *current,
                    moved: false,
                },
                Some(current) => {
                    *current = *data_ts;
                    Response::Watermark {
                        data_ts: *data_ts,
                        moved: true,
                    }
                }
                None => {
                    self.watermarks.insert(endpoint.clone(), *data_ts);
                    Response::Watermark {
                        data_ts: *data_ts,
                        moved: true,
                    }
                }
            },
        }
    }

    /// The committed promoted source of `group`.
    pub fn promoted(&self, group: &str) -> Option<&PromotedSource> {
        self.groups.get(group)?.promoted.as_ref()
    }

    /// The current epoch of `group` (0 if it was never promoted).
    pub fn epoch(&self, group: &str) -> u64 {
        self.groups.get(group).map_or(0, |g| g.epoch)
    }

    /// The committed watermark of `endpoint`.
    pub fn watermark(&self, endpoint: &str) -> Option<i64> {
        self.watermarks.get(endpoint).copied()
    }
}

#[cfg(test)]
mod tests;

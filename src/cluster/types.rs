//! What raft carries: the type configuration, the commands ([`Request`]) the leader
//! proposes, what applying one did ([`Response`]), and the replicated [`ControlState`] with
//! its pure, deterministic [`ControlState::apply`].
//!
//! Everything here is serialized into the raft log and into snapshots, so field names are a
//! storage format: add fields with `#[serde(default)]`, never rename them.

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

/// A command the leader commits; every node applies it to its [`ControlState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Request {
    /// `source` becomes the promoted source of `group`. Ignored when `expect` no longer
    /// describes the group (a stale decision must not replace a newer one).
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
    /// `source` stops being the promoted source of `group`. Ignored when `source` is not the
    /// promoted source any more (a stale demotion must not demote its successor), or when
    /// `expect` no longer describes the group.
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
    /// no longer describes the group (the leader removing an expired pin must not remove
    /// the one an operator set since).
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
    /// Monotonic: an older watermark never moves it back.
    Watermark {
        /// Storage endpoint name.
        endpoint: String,
        /// Newest sample timestamp shipped (ms since the epoch).
        data_ts: i64,
        /// When the leader proposed it (ms since the epoch); for logs only.
        at_ms: u64,
    },
}

/// The state of a group a command was decided on: the command applies only if the group is
/// still in it. The leader decides on the state it applied, but its commands land later,
/// after any command committed in between (an operator's pin, the decisions of a leader
/// that just lost its lease and forwards them to its successor); without this check such a
/// stale decision would undo a newer one, and the next round would undo it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expect {
    /// The group's epoch ([`GroupControl::epoch`]).
    pub epoch: u64,
    /// The promoted source. With the epoch: two different histories can reach the same
    /// epoch, but then the command still fits the group it lands on.
    pub promoted: Option<String>,
    /// The group's pin, exactly.
    pub pin: Option<PinView>,
}

impl Expect {
    /// `group` as it stands in `state` (a group never seen: epoch 0, nothing promoted, no
    /// pin).
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
    /// A blank or membership entry: the control state is untouched.
    Empty,
    /// A `Promote` or `Demote`.
    Group {
        /// The group's epoch after the apply.
        epoch: u64,
        /// Whether the promoted source changed (false: stale demotion, or a re-promotion of
        /// the promoted source, which only refreshes its weight).
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
    /// Incremented by every promotion and demotion of the group; 0 = never promoted.
    /// Lets a node tell a stale promotion from the current one.
    pub epoch: u64,
    /// The promoted source, if any.
    pub promoted: Option<PromotedSource>,
    /// The operator pin, if any.
    pub pin: Option<PinView>,
    /// When the promoted source last changed (ms since the epoch); 0 = never.
    pub changed_ms: u64,
}

/// Everything raft replicates: control state only, never samples.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    /// Per HA group.
    pub groups: BTreeMap<String, GroupControl>,
    /// Per storage endpoint: newest sample time (ms) the leader shipped.
    pub watermarks: BTreeMap<String, i64>,
}

impl ControlState {
    /// Applies one committed command. Pure and deterministic: every node gets the same state
    /// from the same log.
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
mod tests {
    use super::*;
    use crate::election::PinKind;

    fn promote(group: &str, source: &str, weight: u64, at_ms: u64) -> Request {
        Request::Promote {
            group: group.into(),
            source: source.into(),
            weight,
            reason: Reason::NoPromotedSource,
            at_ms,
            expect: None,
        }
    }

    fn demote(group: &str, source: &str, at_ms: u64) -> Request {
        Request::Demote {
            group: group.into(),
            source: source.into(),
            at_ms,
            expect: None,
        }
    }

    fn watermark(endpoint: &str, data_ts: i64) -> Request {
        Request::Watermark {
            endpoint: endpoint.into(),
            data_ts,
            at_ms: 0,
        }
    }

    fn pin(source: &str) -> PinView {
        PinView {
            source: source.into(),
            kind: PinKind::Pin,
            since_ms: 7,
            until_ms: None,
        }
    }

    #[test]
    fn first_promotion_starts_epoch_one() {
        let mut s = ControlState::default();
        assert_eq!(s.epoch("g"), 0);
        let r = s.apply(&promote("g", "a", 3, 100));
        assert_eq!(
            r,
            Response::Group {
                epoch: 1,
                changed: true
            }
        );
        let p = s.promoted("g").expect("promoted");
        assert_eq!(
            (p.source.as_str(), p.weight, p.since_ms, p.epoch),
            ("a", 3, 100, 1)
        );
        assert_eq!(s.groups["g"].changed_ms, 100);
    }

    #[test]
    fn every_promotion_and_demotion_bumps_the_epoch() {
        let mut s = ControlState::default();
        s.apply(&promote("g", "a", 1, 1));
        let r = s.apply(&Request::Promote {
            group: "g".into(),
            source: "b".into(),
            weight: 5,
            reason: Reason::BiggerWeight {
                previous: "a".into(),
                previous_weight: 1,
            },
            at_ms: 2,
            expect: None,
        });
        assert_eq!(
            r,
            Response::Group {
                epoch: 2,
                changed: true
            }
        );
        assert_eq!(s.promoted("g").map(|p| p.epoch), Some(2));
        let r = s.apply(&demote("g", "b", 3));
        assert_eq!(
            r,
            Response::Group {
                epoch: 3,
                changed: true
            }
        );
        assert!(s.promoted("g").is_none());
        assert_eq!(s.epoch("g"), 3);
        assert_eq!(s.groups["g"].changed_ms, 3);
        s.apply(&promote("g", "a", 1, 4));
        assert_eq!(s.promoted("g").map(|p| p.epoch), Some(4));
    }

    #[test]
    fn repromoting_the_promoted_source_only_refreshes_its_weight() {
        let mut s = ControlState::default();
        s.apply(&promote("g", "a", 1, 10));
        let r = s.apply(&promote("g", "a", 9, 20));
        assert_eq!(
            r,
            Response::Group {
                epoch: 1,
                changed: false
            }
        );
        let p = s.promoted("g").expect("promoted");
        assert_eq!((p.weight, p.since_ms, p.epoch), (9, 10, 1));
    }

    #[test]
    fn stale_demotion_leaves_the_successor_promoted() {
        let mut s = ControlState::default();
        s.apply(&promote("g", "a", 1, 1));
        s.apply(&promote("g", "b", 2, 2));
        let r = s.apply(&demote("g", "a", 3));
        assert_eq!(
            r,
            Response::Group {
                epoch: 2,
                changed: false
            }
        );
        assert_eq!(s.promoted("g").map(|p| p.source.as_str()), Some("b"));
    }

    #[test]
    fn demoting_in_an_unknown_group_creates_nothing() {
        let mut s = ControlState::default();
        let r = s.apply(&demote("nope", "a", 1));
        assert_eq!(
            r,
            Response::Group {
                epoch: 0,
                changed: false
            }
        );
        assert!(s.groups.is_empty());
    }

    #[test]
    fn groups_are_independent() {
        let mut s = ControlState::default();
        s.apply(&promote("g1", "a", 1, 1));
        s.apply(&promote("g2", "x", 1, 1));
        s.apply(&demote("g1", "a", 2));
        assert_eq!(s.epoch("g1"), 2);
        assert_eq!(s.epoch("g2"), 1);
        assert_eq!(s.promoted("g2").map(|p| p.source.as_str()), Some("x"));
    }

    #[test]
    fn pins_are_set_replaced_and_removed_without_touching_the_epoch() {
        let mut s = ControlState::default();
        let set = |s: &mut ControlState, p: Option<PinView>| {
            s.apply(&Request::SetPin {
                group: "g".into(),
                pin: p,
                expect: None,
            })
        };
        assert_eq!(set(&mut s, None), Response::Pin { changed: false });
        assert!(s.groups.is_empty());
        assert_eq!(set(&mut s, Some(pin("a"))), Response::Pin { changed: true });
        assert_eq!(
            set(&mut s, Some(pin("a"))),
            Response::Pin { changed: false }
        );
        assert_eq!(set(&mut s, Some(pin("b"))), Response::Pin { changed: true });
        assert_eq!(s.groups["g"].pin, Some(pin("b")));
        assert_eq!(set(&mut s, None), Response::Pin { changed: true });
        assert_eq!(s.groups["g"].pin, None);
        assert_eq!(s.epoch("g"), 0);
    }

    #[test]
    fn a_command_decided_on_another_state_of_its_group_changes_nothing() {
        let mut s = ControlState::default();
        s.apply(&promote("g", "a", 1, 1));
        let on_a = Expect::of(&s, "g");
        assert_eq!(
            on_a,
            Expect {
                epoch: 1,
                promoted: Some("a".into()),
                pin: None
            }
        );
        // An operator pin lands first: the stale takeover and demotion are ignored.
        s.apply(&Request::SetPin {
            group: "g".into(),
            pin: Some(pin("a")),
            expect: None,
        });
        let before = s.clone();
        let r = s.apply(&Request::Promote {
            group: "g".into(),
            source: "b".into(),
            weight: 9,
            reason: Reason::BiggerWeight {
                previous: "a".into(),
                previous_weight: 1,
            },
            at_ms: 2,
            expect: Some(on_a.clone()),
        });
        assert_eq!(
            r,
            Response::Group {
                epoch: 1,
                changed: false
            }
        );
        let r = s.apply(&Request::Demote {
            group: "g".into(),
            source: "a".into(),
            at_ms: 2,
            expect: Some(on_a.clone()),
        });
        assert_eq!(
            r,
            Response::Group {
                epoch: 1,
                changed: false
            }
        );
        // Nor does removing a pin that was replaced since the decision.
        let r = s.apply(&Request::SetPin {
            group: "g".into(),
            pin: None,
            expect: Some(on_a),
        });
        assert_eq!(r, Response::Pin { changed: false });
        assert_eq!(s, before);
        // The same commands decided on the current state apply.
        let now = Expect::of(&s, "g");
        let r = s.apply(&Request::Demote {
            group: "g".into(),
            source: "a".into(),
            at_ms: 3,
            expect: Some(now),
        });
        assert_eq!(
            r,
            Response::Group {
                epoch: 2,
                changed: true
            }
        );
    }

    #[test]
    fn commands_logged_without_an_expectation_still_apply() {
        let json = r#"{"op":"promote","group":"g","source":"a","weight":1,
            "reason":{"kind":"no_promoted_source"},"at_ms":5}"#;
        let r: Request = serde_json::from_str(json).expect("deserialize");
        assert_eq!(r, promote("g", "a", 1, 5));
        let json = serde_json::to_value(&r).expect("serialize");
        assert!(json.get("expect").is_none(), "{json}");
        let mut s = ControlState::default();
        assert_eq!(
            s.apply(&r),
            Response::Group {
                epoch: 1,
                changed: true
            }
        );
    }

    #[test]
    fn watermarks_never_move_back() {
        let mut s = ControlState::default();
        assert_eq!(s.watermark("vm"), None);
        assert_eq!(
            s.apply(&watermark("vm", 1_000)),
            Response::Watermark {
                data_ts: 1_000,
                moved: true
            }
        );
        assert_eq!(
            s.apply(&watermark("vm", 900)),
            Response::Watermark {
                data_ts: 1_000,
                moved: false
            }
        );
        assert_eq!(
            s.apply(&watermark("vm", 1_000)),
            Response::Watermark {
                data_ts: 1_000,
                moved: false
            }
        );
        assert_eq!(
            s.apply(&watermark("vm", 2_000)),
            Response::Watermark {
                data_ts: 2_000,
                moved: true
            }
        );
        s.apply(&watermark("other", -5));
        assert_eq!(s.watermark("vm"), Some(2_000));
        assert_eq!(s.watermark("other"), Some(-5));
    }

    #[test]
    fn requests_and_state_round_trip_through_json() {
        let requests = [
            promote("g", "a", 1, 2),
            demote("g", "a", 3),
            Request::SetPin {
                group: "g".into(),
                pin: Some(pin("a")),
                expect: None,
            },
            watermark("vm", 4),
        ];
        let mut s = ControlState::default();
        for r in &requests {
            let json = serde_json::to_string(r).expect("serialize");
            let back: Request = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(&back, r);
            s.apply(r);
        }
        let json = serde_json::to_vec(&s).expect("serialize");
        let back: ControlState = serde_json::from_slice(&json).expect("deserialize");
        assert_eq!(back, s);
        let json = serde_json::to_value(&requests[0]).expect("serialize");
        assert_eq!(json["op"], "promote");
    }

    #[test]
    fn the_same_log_gives_the_same_state() {
        let log = [
            promote("g", "a", 1, 1),
            watermark("vm", 10),
            promote("g", "b", 2, 2),
            demote("g", "a", 3),
            watermark("vm", 5),
            demote("g", "b", 4),
        ];
        let run = || {
            let mut s = ControlState::default();
            let responses: Vec<_> = log.iter().map(|r| s.apply(r)).collect();
            (s, responses)
        };
        assert_eq!(run(), run());
    }
}

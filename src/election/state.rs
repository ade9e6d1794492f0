//! The pure election state machine: no clock, no I/O, no logging. Time comes in as
//! milliseconds, so tests drive it with plain numbers.
//!
//! Invariant: a group has at most one promoted source. Every decision depends only on
//! this state and the time passed in.

use std::collections::BTreeMap;

use serde::Serialize;

mod operator;

pub use operator::ElectionError;

/// One accepted write, as the election sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// HA group name.
    pub group: &'a str,
    /// Source (replica) identity.
    pub source: &'a str,
    /// `highlander_weight` of the request; higher wins.
    pub weight: u64,
    /// Samples (float + histogram) in the request, for the per-source counters.
    pub samples: u64,
    /// Newest sample timestamp of the request (ms), if it has samples. It tells how fresh
    /// the source's data is.
    pub data_ts: Option<i64>,
    /// The Remote-Write version of the request.
    pub protocol: crate::wire::Version,
}

/// Whether a write is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The write comes from the promoted source: buffer and forward it.
    Promoted,
    /// The write comes from a standby: acknowledge and drop it.
    Standby,
    /// Nobody is promoted yet, and this node cannot decide now. In a cluster, there is no
    /// leader, or the leader has not committed a promotion yet. The sender must retry.
    Undecided,
}

/// Why a source was promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    /// The group had no promoted source.
    NoPromotedSource,
    /// The source's weight is strictly bigger than the promoted one's.
    BiggerWeight {
        /// The source that lost its promotion.
        previous: String,
        /// Its weight.
        previous_weight: u64,
    },
    /// An operator pinned the source.
    Pinned {
        /// The source that lost its promotion, if any.
        previous: Option<String>,
    },
    /// An operator forced a failover away from `previous`.
    Failover {
        /// The source that was demoted.
        previous: String,
    },
}

/// A change of the promoted source of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum Change {
    /// `source` is now the promoted source of `group`.
    Promoted {
        /// HA group.
        group: String,
        /// The newly promoted source.
        source: String,
        /// Its weight.
        weight: u64,
        /// Why.
        reason: Reason,
    },
    /// `source` stopped being promoted because it went silent.
    Demoted {
        /// HA group.
        group: String,
        /// The source that went silent.
        source: String,
        /// Milliseconds since its last write.
        silent_ms: u64,
    },
    /// An operator pin reached its `until` time and was removed.
    PinExpired {
        /// HA group.
        group: String,
        /// The source that was pinned.
        source: String,
    },
    /// `source`'s first forwarded write after its promotion handed the group over from
    /// `from`: what was backfilled and trimmed. Recorded in the history only; the election
    /// never decides one.
    Handover {
        /// HA group.
        group: String,
        /// The new source.
        source: String,
        /// The source it took over from.
        from: String,
        /// Samples of `source`'s held writes appended before its live write.
        backfilled: u64,
        /// Samples dropped as overlap with what `from` forwarded.
        trimmed: u64,
        /// Data time between `from`'s newest forwarded sample and `source`'s oldest
        /// forwarded one (0 when they overlap per series); `None` when either is unknown.
        gap_ms: Option<u64>,
        /// How long the handover held its group.
        took_ms: u64,
    },
    /// Cluster: another node leads. Recorded in the history of every group this node
    /// knows, so that a switch the new leader decides reads as one.
    LeaderChanged {
        /// HA group.
        group: String,
        /// The node that led before.
        from: u64,
        /// The node that leads now.
        to: u64,
    },
}

impl Change {
    /// A short, stable name of why it happened, for metrics.
    pub fn reason_label(&self) -> &'static str {
        match self {
            Change::Promoted { reason, .. } => match reason {
                Reason::NoPromotedSource => "no_promoted_source",
                Reason::BiggerWeight { .. } => "bigger_weight",
                Reason::Pinned { .. } => "pinned",
                Reason::Failover { .. } => "failover",
            },
            Change::Demoted { .. } => "silent",
            Change::PinExpired { .. } => "pin_expired",
            Change::Handover { .. } => "handover",
            Change::LeaderChanged { .. } => "leader_changed",
        }
    }

    /// The group it concerns.
    pub fn group(&self) -> &str {
        match self {
            Change::Promoted { group, .. }
            | Change::Demoted { group, .. }
            | Change::PinExpired { group, .. }
            | Change::Handover { group, .. }
            | Change::LeaderChanged { group, .. } => group,
        }
    }
}

/// What kind of operator override a pin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinKind {
    /// `POST /groups/{g}/pin`.
    Pin,
    /// `POST /groups/{g}/failover`. The candidate that it promoted stays promoted.
    Failover,
}

/// An operator override: the pinned source is preferred over any weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PinView {
    /// The preferred source.
    pub source: String,
    /// How it was set.
    pub kind: PinKind,
    /// When it was set (ms since the epoch).
    pub since_ms: u64,
    /// When it ends by itself (ms since the epoch). `None`: it lasts until it is removed.
    pub until_ms: Option<u64>,
}

/// What is known of one source of a group. It also travels in follower reports. There, as
/// in the admin API, a field that an older node leaves out reads as its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SourceView {
    /// Weight of its latest write.
    pub weight: u64,
    /// Receive time of its first write (ms since the epoch).
    pub first_seen_ms: u64,
    /// Receive time of its latest write (ms since the epoch).
    pub last_seen_ms: u64,
    /// Newest sample timestamp it sent (ms since the epoch).
    pub last_data_ts: Option<i64>,
    /// Writes forwarded.
    pub requests_accepted: u64,
    /// Writes dropped as standby.
    pub requests_dropped: u64,
    /// Samples forwarded.
    pub samples_accepted: u64,
    /// Samples dropped as standby.
    pub samples_dropped: u64,
    /// The Remote-Write version of its latest write: `1.0` or `2.0` (empty from a node
    /// that does not report it).
    pub protocol: String,
}

impl SourceView {
    /// Records one write of this source and what became of it.
    pub fn record(&mut self, obs: &Observation<'_>, role: Role, now_ms: u64) {
        self.weight = obs.weight;
        if self.protocol != obs.protocol.as_str() {
            obs.protocol.as_str().clone_into(&mut self.protocol);
        }
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        if let Some(ts) = obs.data_ts {
            self.last_data_ts = Some(self.last_data_ts.map_or(ts, |t| t.max(ts)));
        }
        match role {
            Role::Promoted => {
                self.requests_accepted += 1;
                self.samples_accepted += obs.samples;
            }
            Role::Standby => {
                self.requests_dropped += 1;
                self.samples_dropped += obs.samples;
            }
            Role::Undecided => {}
        }
    }
}

/// The promoted source of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PromotedView {
    /// Source identity.
    pub source: String,
    /// Weight it was promoted with. Its own later writes update it.
    pub weight: u64,
    /// When it was promoted (ms since the epoch).
    pub since_ms: u64,
}

/// One HA group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GroupView {
    /// Currently promoted source, if any.
    pub promoted: Option<PromotedView>,
    /// Every source seen recently.
    pub sources: BTreeMap<String, SourceView>,
    /// Operator override, if any.
    pub pin: Option<PinView>,
}

/// After `demoted` went silent, promotes the best live standby at once. The order is:
/// 1. the pinned source, if it is alive;
/// 2. else the highest weight;
/// 3. then the freshest data, because a lagging replica must not win;
/// 4. then the most recent write.
///
/// `None` when no other source wrote within the expiry. Then the next source that writes
/// is promoted (seed rule).
fn promote_best(
    name: &str,
    group: &mut GroupView,
    demoted: &str,
    expiry_ms: u64,
    now_ms: u64,
) -> Option<Change> {
    let live = |s: &SourceView| alive(s, now_ms, expiry_ms);
    let pinned = group.pin.as_ref().map(|p| p.source.clone());
    let (source, view) = group
        .sources
        .iter()
        .filter(|(id, s)| id.as_str() != demoted && live(s))
        .max_by_key(|(id, s)| {
            (
                pinned.as_deref() == Some(id.as_str()),
                s.weight,
                s.last_data_ts.unwrap_or(i64::MIN),
                s.last_seen_ms,
            )
        })?;
    let (source, weight) = (source.clone(), view.weight);
    let reason = if pinned.as_deref() == Some(source.as_str()) {
        Reason::Pinned { previous: None }
    } else {
        Reason::NoPromotedSource
    };
    group.promoted = Some(PromotedView {
        source: source.clone(),
        weight,
        since_ms: now_ms,
    });
    Some(Change::Promoted {
        group: name.to_owned(),
        source,
        weight,
        reason,
    })
}

/// Whether `source` wrote within the health expiry.
fn alive(source: &SourceView, now_ms: u64, expiry_ms: u64) -> bool {
    now_ms.saturating_sub(source.last_seen_ms) < expiry_ms
}

/// The election of every group.
#[derive(Debug, Clone)]
pub struct ElectionState {
    expiry_ms: u64,
    forget_ms: u64,
    groups: BTreeMap<String, GroupView>,
}

impl ElectionState {
    /// A state that demotes a promoted source silent for `expiry_ms`. It forgets standby
    /// sources that are silent for much longer, so the table stays bounded.
    pub fn new(expiry_ms: u64) -> Self {
        ElectionState {
            expiry_ms,
            forget_ms: expiry_ms.saturating_mul(20).max(60_000),
            groups: BTreeMap::new(),
        }
    }

    /// Decides the role of one write received at `now_ms`. It may promote the write's
    /// source.
    pub fn observe(&mut self, obs: Observation<'_>, now_ms: u64) -> (Role, Option<Change>) {
        let group = self.groups.entry(obs.group.to_owned()).or_default();
        let pinned = group
            .pin
            .as_ref()
            .filter(|p| p.until_ms.is_none_or(|u| u > now_ms))
            .map(|p| p.source.clone());
        let change = match (&group.promoted, pinned) {
            (None, Some(pin)) if pin == obs.source => Some(Reason::Pinned { previous: None }),
            (None, _) => Some(Reason::NoPromotedSource),
            (Some(p), _) if p.source == obs.source => None,
            // Under a pin, weights do not count. Only the pinned source takes over.
            (Some(p), Some(pin)) if pin == obs.source => Some(Reason::Pinned {
                previous: Some(p.source.clone()),
            }),
            (Some(_), Some(_)) => None,
            (Some(p), None) if obs.weight > p.weight => Some(Reason::BiggerWeight {
                previous: p.source.clone(),
                previous_weight: p.weight,
            }),
            (Some(_), None) => None,
        };
        let change = change.map(|reason| {
            group.promoted = Some(PromotedView {
                source: obs.source.to_owned(),
                weight: obs.weight,
                since_ms: now_ms,
            });
            Change::Promoted {
                group: obs.group.to_owned(),
                source: obs.source.to_owned(),
                weight: obs.weight,
                reason,
            }
        });
        let role = match &mut group.promoted {
            Some(p) if p.source == obs.source => {
                p.weight = obs.weight;
                Role::Promoted
            }
            _ => Role::Standby,
        };
        let source = group
            .sources
            .entry(obs.source.to_owned())
            .or_insert_with(|| SourceView {
                first_seen_ms: now_ms,
                ..SourceView::default()
            });
        source.record(&obs, role, now_ms);
        (role, change)
    }

    /// The health check. It demotes every promoted source that was silent for the expiry.
    /// It forgets standbys and empty groups that were silent for much longer.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for (name, group) in &mut self.groups {
            if let Some(pin) = &group.pin {
                if pin.until_ms.is_some_and(|u| u <= now_ms) {
                    changes.push(Change::PinExpired {
                        group: name.clone(),
                        source: pin.source.clone(),
                    });
                    group.pin = None;
                }
            }
            if let Some(p) = &group.promoted {
                let last = group
                    .sources
                    .get(&p.source)
                    .map_or(p.since_ms, |s| s.last_seen_ms);
                let silent_ms = now_ms.saturating_sub(last);
                if silent_ms >= self.expiry_ms {
                    let demoted = p.source.clone();
                    changes.push(Change::Demoted {
                        group: name.clone(),
                        source: demoted.clone(),
                        silent_ms,
                    });
                    group.promoted = None;
                    if let Some(change) =
                        promote_best(name, group, &demoted, self.expiry_ms, now_ms)
                    {
                        changes.push(change);
                    }
                }
            }
            let forget_ms = self.forget_ms;
            let promoted = group.promoted.as_ref().map(|p| p.source.clone());
            group.sources.retain(|id, s| {
                Some(id) == promoted.as_ref() || now_ms.saturating_sub(s.last_seen_ms) < forget_ms
            });
        }
        self.groups
            .retain(|_, g| g.promoted.is_some() || !g.sources.is_empty() || g.pin.is_some());
        changes
    }

    /// Restores a group's committed decision. In a cluster, the leader rebuilds it from
    /// raft.
    pub fn restore(&mut self, group: &str, promoted: Option<PromotedView>, pin: Option<PinView>) {
        let g = self.groups.entry(group.to_owned()).or_default();
        g.promoted = promoted;
        g.pin = pin;
    }

    /// Merges what some node saw of a source. In a cluster, the result is the union of
    /// every node's view.
    pub fn see(&mut self, group: &str, source: &str, seen: &SourceView) {
        let view = self
            .groups
            .entry(group.to_owned())
            .or_default()
            .sources
            .entry(source.to_owned())
            .or_insert_with(|| SourceView {
                first_seen_ms: seen.first_seen_ms,
                ..SourceView::default()
            });
        if seen.last_seen_ms >= view.last_seen_ms {
            view.weight = seen.weight;
            view.last_seen_ms = seen.last_seen_ms;
        }
        view.first_seen_ms = view.first_seen_ms.min(seen.first_seen_ms);
        view.last_data_ts = view.last_data_ts.max(seen.last_data_ts);
    }

    /// Every decision at once, from the merged view. The cluster leader calls it each
    /// tick. First it handles pin expiry and silent sources, as [`ElectionState::tick`]
    /// does. Then, per group:
    /// - nobody promoted: the best live source is promoted;
    /// - a live pinned source is not promoted: it takes over;
    /// - no pin: a live source with a strictly bigger weight takes over.
    pub fn decide(&mut self, now_ms: u64) -> Vec<Change> {
        let mut changes = self.tick(now_ms);
        let expiry_ms = self.expiry_ms;
        for (name, group) in &mut self.groups {
            let live = |s: &SourceView| alive(s, now_ms, expiry_ms);
            let Some(current) = group.promoted.clone() else {
                changes.extend(promote_best(name, group, "", expiry_ms, now_ms));
                continue;
            };
            let pinned = group.pin.as_ref().map(|p| p.source.clone());
            let next = match &pinned {
                Some(pin) if *pin != current.source => {
                    group.sources.get(pin).filter(|s| live(s)).map(|s| {
                        (
                            pin.clone(),
                            s.weight,
                            Reason::Pinned {
                                previous: Some(current.source.clone()),
                            },
                        )
                    })
                }
                Some(_) => None,
                None => group
                    .sources
                    .iter()
                    .filter(|(id, s)| {
                        **id != current.source && live(s) && s.weight > current.weight
                    })
                    .max_by_key(|(_, s)| (s.weight, s.last_data_ts.unwrap_or(i64::MIN)))
                    .map(|(id, s)| {
                        (
                            id.clone(),
                            s.weight,
                            Reason::BiggerWeight {
                                previous: current.source.clone(),
                                previous_weight: current.weight,
                            },
                        )
                    }),
            };
            if let Some((source, weight, reason)) = next {
                group.promoted = Some(PromotedView {
                    source: source.clone(),
                    weight,
                    since_ms: now_ms,
                });
                changes.push(Change::Promoted {
                    group: name.clone(),
                    source,
                    weight,
                    reason,
                });
            }
        }
        changes
    }

    /// Restores a pin kept durably, at start-up. It creates the group if needed.
    pub fn restore_pin(&mut self, group: &str, pin: PinView) {
        self.groups.entry(group.to_owned()).or_default().pin = Some(pin);
    }

    /// Every group, by name.
    pub fn groups(&self) -> &BTreeMap<String, GroupView> {
        &self.groups
    }
}

#[cfg(test)]
mod tests;

//! A group's switches: its history read as "who took over from whom, why, and what the
//! handover did". The history holds single events (a demotion, a promotion, a handover);
//! an operator asks for switches. This module pairs them. It is pure: no clock, no I/O.

use serde::{Deserialize, Serialize};

use super::state::{Change, Reason};
use super::store::HistoryEntry;

/// Why the forwarded source changed, in the words of the status page and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SwitchReason {
    /// The group had nobody promoted and this source wrote first.
    #[default]
    FirstSource,
    /// The promoted source went silent for the health expiry.
    Expiry,
    /// A source with a strictly bigger weight took over.
    BiggerWeight,
    /// An operator pinned the source.
    Pin,
    /// An operator forced a failover.
    Operator,
    /// Cluster: the promoted source went silent and a new leader decided the switch (the
    /// old leader died, often with the promoted replica).
    LeaderChange,
}

impl SwitchReason {
    /// The reason in words.
    pub fn words(self) -> &'static str {
        match self {
            SwitchReason::FirstSource => "first source",
            SwitchReason::Expiry => "expiry",
            SwitchReason::BiggerWeight => "bigger weight",
            SwitchReason::Pin => "pin",
            SwitchReason::Operator => "operator",
            SwitchReason::LeaderChange => "leader change",
        }
    }
}

/// What the handover of a switch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HandoverStats {
    /// When the new source's first write was handed over (ms since the epoch).
    pub at_ms: u64,
    /// Samples of the new source's held writes appended before its live write.
    pub backfilled: u64,
    /// Samples dropped as overlap with what the old source forwarded.
    pub trimmed: u64,
    /// Data time between the old source's newest and the new source's oldest forwarded
    /// sample; 0 when they overlap, `None` when unknown.
    pub gap_ms: Option<u64>,
    /// How long the handover held its group.
    pub took_ms: u64,
}

/// One change of a group's forwarded source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Switch {
    /// When the new source was promoted (ms since the epoch).
    pub at_ms: u64,
    /// The source that was forwarded before, if any.
    pub from: Option<String>,
    /// The source forwarded from then on.
    pub to: String,
    /// Its weight.
    pub weight: u64,
    /// Why.
    pub reason: SwitchReason,
    /// For an expiry: how long the old source had been silent.
    pub silent_ms: Option<u64>,
    /// The handover at the new source's first write. `None` until it wrote, and for a
    /// group's first source.
    pub handover: Option<HandoverStats>,
}

/// The switches of a history given newest first (as the store returns it), newest first.
pub fn switches(history: &[HistoryEntry]) -> Vec<Switch> {
    let mut out: Vec<Switch> = Vec::new();
    // The last demotion not yet followed by a promotion: the source that expired.
    let mut expired: Option<(String, u64)> = None;
    // Whether another node leads since the last switch.
    let mut new_leader = false;
    for entry in history.iter().rev() {
        match &entry.change {
            Change::LeaderChanged { .. } => new_leader = true,
            Change::Demoted {
                source, silent_ms, ..
            } => expired = Some((source.clone(), *silent_ms)),
            Change::Promoted {
                source,
                weight,
                reason,
                ..
            } => {
                let (reason, from, silent_ms) = match reason {
                    Reason::NoPromotedSource => match expired.take() {
                        Some((from, silent)) if new_leader => {
                            (SwitchReason::LeaderChange, Some(from), Some(silent))
                        }
                        Some((from, silent)) => (SwitchReason::Expiry, Some(from), Some(silent)),
                        None => (SwitchReason::FirstSource, None, None),
                    },
                    Reason::BiggerWeight { previous, .. } => {
                        (SwitchReason::BiggerWeight, Some(previous.clone()), None)
                    }
                    Reason::Pinned { previous } => (SwitchReason::Pin, previous.clone(), None),
                    Reason::Failover { previous } => {
                        (SwitchReason::Operator, Some(previous.clone()), None)
                    }
                };
                expired = None;
                new_leader = false;
                out.push(Switch {
                    at_ms: entry.at_ms,
                    from,
                    to: source.clone(),
                    weight: *weight,
                    reason,
                    silent_ms,
                    handover: None,
                });
            }
            Change::Handover {
                source,
                backfilled,
                trimmed,
                gap_ms,
                took_ms,
                ..
            } => {
                // The newest switch to this source that has no handover yet.
                let open = out
                    .iter_mut()
                    .rev()
                    .find(|s| s.to == *source)
                    .filter(|s| s.handover.is_none());
                if let Some(switch) = open {
                    switch.handover = Some(HandoverStats {
                        at_ms: entry.at_ms,
                        backfilled: *backfilled,
                        trimmed: *trimmed,
                        gap_ms: *gap_ms,
                        took_ms: *took_ms,
                    });
                }
            }
            Change::PinExpired { .. } => {}
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: u64, change: Change) -> HistoryEntry {
        HistoryEntry { at_ms, change }
    }

    fn promoted(source: &str, reason: Reason) -> Change {
        Change::Promoted {
            group: "g".into(),
            source: source.into(),
            weight: 5,
            reason,
        }
    }

    fn handover(source: &str, from: &str, backfilled: u64) -> Change {
        Change::Handover {
            group: "g".into(),
            source: source.into(),
            from: from.into(),
            backfilled,
            trimmed: 3,
            gap_ms: Some(1000),
            took_ms: 2,
        }
    }

    /// The store's order: newest first.
    fn newest_first(mut oldest_first: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
        oldest_first.reverse();
        oldest_first
    }

    #[test]
    fn an_expiry_pairs_the_demotion_the_promotion_and_the_handover() {
        let history = newest_first(vec![
            entry(1_000, promoted("a", Reason::NoPromotedSource)),
            entry(
                9_000,
                Change::Demoted {
                    group: "g".into(),
                    source: "a".into(),
                    silent_ms: 5_000,
                },
            ),
            entry(9_000, promoted("b", Reason::NoPromotedSource)),
            entry(9_400, handover("b", "a", 4_000)),
        ]);
        let s = switches(&history);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].from.as_deref(), s[0].to.as_str()), (Some("a"), "b"));
        assert_eq!(s[0].reason, SwitchReason::Expiry);
        assert_eq!(s[0].silent_ms, Some(5_000));
        let h = s[0].handover.as_ref().expect("handover attached");
        assert_eq!(
            (h.at_ms, h.backfilled, h.trimmed, h.gap_ms),
            (9_400, 4_000, 3, Some(1000))
        );
        assert_eq!(
            (s[1].from.as_deref(), s[1].reason),
            (None, SwitchReason::FirstSource)
        );
        assert!(s[1].handover.is_none());
    }

    #[test]
    fn operator_weight_and_pin_name_the_previous_source() {
        let history = newest_first(vec![
            entry(1, promoted("a", Reason::NoPromotedSource)),
            entry(
                2,
                promoted(
                    "b",
                    Reason::BiggerWeight {
                        previous: "a".into(),
                        previous_weight: 1,
                    },
                ),
            ),
            entry(
                3,
                promoted(
                    "a",
                    Reason::Failover {
                        previous: "b".into(),
                    },
                ),
            ),
            entry(
                4,
                promoted(
                    "b",
                    Reason::Pinned {
                        previous: Some("a".into()),
                    },
                ),
            ),
            entry(5, handover("b", "a", 7)),
        ]);
        let s = switches(&history);
        let seen: Vec<_> = s
            .iter()
            .map(|s| {
                (
                    s.from.as_deref(),
                    s.to.as_str(),
                    s.reason,
                    s.handover.is_some(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some("a"), "b", SwitchReason::Pin, true),
                (Some("b"), "a", SwitchReason::Operator, false),
                (Some("a"), "b", SwitchReason::BiggerWeight, false),
                (None, "a", SwitchReason::FirstSource, false),
            ],
            "a handover belongs to the newest switch to its source only"
        );
    }

    #[test]
    fn an_expiry_decided_by_a_new_leader_reads_as_a_leader_change() {
        let leader = |at, from, to| {
            entry(
                at,
                Change::LeaderChanged {
                    group: "g".into(),
                    from,
                    to,
                },
            )
        };
        let demoted = |at| {
            entry(
                at,
                Change::Demoted {
                    group: "g".into(),
                    source: "a".into(),
                    silent_ms: 3_000,
                },
            )
        };
        let history = newest_first(vec![
            entry(1, promoted("a", Reason::NoPromotedSource)),
            leader(2, 1, 2),
            demoted(5),
            entry(5, promoted("b", Reason::NoPromotedSource)),
            demoted(9),
            entry(9, promoted("a", Reason::NoPromotedSource)),
        ]);
        let reasons: Vec<_> = switches(&history).iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            vec![
                SwitchReason::Expiry,
                SwitchReason::LeaderChange,
                SwitchReason::FirstSource
            ],
            "only the switch right after the leader change"
        );
    }

    #[test]
    fn a_history_cut_by_its_cap_still_reads() {
        // The oldest entries fell out of the store: a handover with no switch before it,
        // and a demotion whose promotion comes later.
        let history = newest_first(vec![
            entry(1, handover("a", "z", 1)),
            entry(
                2,
                Change::Demoted {
                    group: "g".into(),
                    source: "a".into(),
                    silent_ms: 5_000,
                },
            ),
            entry(
                3,
                Change::PinExpired {
                    group: "g".into(),
                    source: "a".into(),
                },
            ),
            entry(9, promoted("b", Reason::NoPromotedSource)),
        ]);
        let s = switches(&history);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].from.as_deref(), s[0].reason),
            (Some("a"), SwitchReason::Expiry)
        );
    }
}

//! The pure election state machine: no clock, no I/O, no logging. Time comes in as
//! milliseconds, so tests drive it with plain numbers.

use std::collections::BTreeMap;

use serde::Serialize;

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
}

/// Whether a write is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The write comes from the promoted source: buffer and forward it.
    Promoted,
    /// The write comes from a standby: acknowledge and drop it.
    Standby,
}

/// Why a source was promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

/// A change of the promoted source of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

/// What is known of one source of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceView {
    /// Weight of its latest write.
    pub weight: u64,
    /// Receive time of its first write (ms since the epoch).
    pub first_seen_ms: u64,
    /// Receive time of its latest write (ms since the epoch).
    pub last_seen_ms: u64,
    /// Writes forwarded.
    pub requests_accepted: u64,
    /// Writes dropped as standby.
    pub requests_dropped: u64,
    /// Samples forwarded.
    pub samples_accepted: u64,
    /// Samples dropped as standby.
    pub samples_dropped: u64,
}

/// The promoted source of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromotedView {
    /// Source identity.
    pub source: String,
    /// Weight it was promoted with (updated by its own later writes).
    pub weight: u64,
    /// When it was promoted (ms since the epoch).
    pub since_ms: u64,
}

/// One HA group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// Currently promoted source, if any.
    pub promoted: Option<PromotedView>,
    /// Every source seen recently.
    pub sources: BTreeMap<String, SourceView>,
}

/// The election of every group.
#[derive(Debug, Clone)]
pub struct ElectionState {
    expiry_ms: u64,
    forget_ms: u64,
    groups: BTreeMap<String, GroupView>,
}

impl ElectionState {
    /// A state where a promoted source silent for `expiry_ms` is demoted. Standby sources
    /// silent for much longer are forgotten, so the table stays bounded.
    pub fn new(expiry_ms: u64) -> Self {
        ElectionState {
            expiry_ms,
            forget_ms: expiry_ms.saturating_mul(20).max(60_000),
            groups: BTreeMap::new(),
        }
    }

    /// Decides the role of one write received at `now_ms`; may promote its source.
    pub fn observe(&mut self, obs: Observation<'_>, now_ms: u64) -> (Role, Option<Change>) {
        let group = self.groups.entry(obs.group.to_owned()).or_default();
        let change = match &group.promoted {
            None => Some(Reason::NoPromotedSource),
            Some(p) if p.source == obs.source => None,
            Some(p) if obs.weight > p.weight => Some(Reason::BiggerWeight {
                previous: p.source.clone(),
                previous_weight: p.weight,
            }),
            Some(_) => None,
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
        source.weight = obs.weight;
        source.last_seen_ms = source.last_seen_ms.max(now_ms);
        match role {
            Role::Promoted => {
                source.requests_accepted += 1;
                source.samples_accepted += obs.samples;
            }
            Role::Standby => {
                source.requests_dropped += 1;
                source.samples_dropped += obs.samples;
            }
        }
        (role, change)
    }

    /// The health check: demotes every promoted source silent for the expiry, and forgets
    /// standbys (and empty groups) silent for much longer.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for (name, group) in &mut self.groups {
            if let Some(p) = &group.promoted {
                let last = group
                    .sources
                    .get(&p.source)
                    .map_or(p.since_ms, |s| s.last_seen_ms);
                let silent_ms = now_ms.saturating_sub(last);
                if silent_ms >= self.expiry_ms {
                    changes.push(Change::Demoted {
                        group: name.clone(),
                        source: p.source.clone(),
                        silent_ms,
                    });
                    group.promoted = None;
                }
            }
            let forget_ms = self.forget_ms;
            let promoted = group.promoted.as_ref().map(|p| p.source.clone());
            group.sources.retain(|id, s| {
                Some(id) == promoted.as_ref() || now_ms.saturating_sub(s.last_seen_ms) < forget_ms
            });
        }
        self.groups
            .retain(|_, g| g.promoted.is_some() || !g.sources.is_empty());
        changes
    }

    /// Every group, by name.
    pub fn groups(&self) -> &BTreeMap<String, GroupView> {
        &self.groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs<'a>(source: &'a str, weight: u64) -> Observation<'a> {
        Observation {
            group: "g",
            source,
            weight,
            samples: 10,
        }
    }

    #[test]
    fn first_writer_is_promoted() {
        let mut s = ElectionState::new(5_000);
        let (role, change) = s.observe(obs("a", 1), 1_000);
        assert_eq!(role, Role::Promoted);
        assert_eq!(
            change,
            Some(Change::Promoted {
                group: "g".into(),
                source: "a".into(),
                weight: 1,
                reason: Reason::NoPromotedSource
            })
        );
        let (role, change) = s.observe(obs("b", 1), 1_100);
        assert_eq!((role, change), (Role::Standby, None));
    }

    #[test]
    fn equal_or_smaller_weight_does_not_take_over() {
        let mut s = ElectionState::new(5_000);
        s.observe(obs("a", 5), 0);
        assert_eq!(s.observe(obs("b", 5), 10).0, Role::Standby);
        assert_eq!(s.observe(obs("c", 4), 20).0, Role::Standby);
        assert_eq!(s.observe(obs("a", 5), 30).0, Role::Promoted);
    }

    #[test]
    fn strictly_bigger_weight_takes_over() {
        let mut s = ElectionState::new(5_000);
        s.observe(obs("a", 5), 0);
        let (role, change) = s.observe(obs("b", 6), 10);
        assert_eq!(role, Role::Promoted);
        assert_eq!(
            change,
            Some(Change::Promoted {
                group: "g".into(),
                source: "b".into(),
                weight: 6,
                reason: Reason::BiggerWeight {
                    previous: "a".into(),
                    previous_weight: 5
                }
            })
        );
        assert_eq!(s.observe(obs("a", 5), 20).0, Role::Standby);
    }

    #[test]
    fn promoted_source_lowering_its_weight_can_be_overtaken() {
        let mut s = ElectionState::new(5_000);
        s.observe(obs("a", 5), 0);
        s.observe(obs("a", 1), 10);
        assert_eq!(s.observe(obs("b", 2), 20).0, Role::Promoted);
    }

    #[test]
    fn silent_promoted_source_is_demoted_after_expiry() {
        let mut s = ElectionState::new(5_000);
        s.observe(obs("a", 1), 0);
        s.observe(obs("b", 1), 100);
        assert!(s.tick(4_999).is_empty());
        assert_eq!(
            s.tick(5_000),
            vec![Change::Demoted {
                group: "g".into(),
                source: "a".into(),
                silent_ms: 5_000
            }]
        );
        // Seed semantics: the next source that writes is promoted.
        let (role, change) = s.observe(obs("b", 1), 5_100);
        assert_eq!(role, Role::Promoted);
        assert!(matches!(
            change,
            Some(Change::Promoted {
                reason: Reason::NoPromotedSource,
                ..
            })
        ));
    }

    #[test]
    fn writes_keep_the_promoted_source_alive() {
        let mut s = ElectionState::new(5_000);
        for t in (0..60_000).step_by(1_000) {
            s.observe(obs("a", 1), t);
            assert!(s.tick(t + 500).is_empty());
        }
    }

    #[test]
    fn groups_are_independent() {
        let mut s = ElectionState::new(5_000);
        let a = Observation {
            group: "eu",
            source: "a",
            weight: 1,
            samples: 1,
        };
        let b = Observation {
            group: "us",
            source: "b",
            weight: 1,
            samples: 1,
        };
        assert_eq!(s.observe(a, 0).0, Role::Promoted);
        assert_eq!(s.observe(b, 0).0, Role::Promoted);
        assert_eq!(s.groups().len(), 2);
    }

    #[test]
    fn counters_and_forgetting() {
        let mut s = ElectionState::new(1_000);
        s.observe(obs("a", 1), 0);
        s.observe(obs("b", 1), 0);
        s.observe(obs("b", 1), 10);
        let g = &s.groups()["g"];
        assert_eq!(g.sources["a"].samples_accepted, 10);
        assert_eq!(g.sources["b"].requests_dropped, 2);
        assert_eq!(g.sources["b"].samples_dropped, 20);
        // Long silence: a is demoted, both are forgotten, the group disappears.
        s.tick(2_000);
        s.tick(10 * 60_000);
        assert!(s.groups().is_empty());
    }
}

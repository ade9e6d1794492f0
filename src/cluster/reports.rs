//! Follower reports. Every tick, each follower tells the leader which sources it sees. So
//! the leader decides on the union of every node's view. A replica that can reach only
//! some nodes is still alive for the group.
//!
//! Reports travel over HTTP. They can arrive late, twice, or after a newer report. So the
//! leader keeps, per node and source, the newest view (by last write) that any report
//! carried. It does not keep the last report to arrive. Why: an old report delivered late
//! must not make a writing source look silent, and get it demoted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::NodeId;
use crate::election::state::SourceView;

/// One source as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// HA group.
    pub group: String,
    /// Source.
    pub source: String,
    /// Weight, first/last seen, data time. The leader does not use the counters.
    pub view: SourceView,
}

/// What a follower sends each tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting node.
    pub node: NodeId,
    /// Every source it saw recently.
    pub seen: Vec<Seen>,
}

/// Per node, per (group, source): the newest view that its reports carried, and when the
/// report that carried it arrived. Ordered, so the leader merges views in the same order
/// every time.
type Latest = BTreeMap<NodeId, BTreeMap<(String, String), (Instant, SourceView)>>;

/// What the nodes reported to this one, as received. A cheap clone.
#[derive(Debug, Clone, Default)]
pub struct Reports(Arc<Mutex<Latest>>);

impl Reports {
    /// Keeps the parts of a node's report that are newer than what the node said before.
    pub fn insert(&self, report: Report) {
        self.insert_at(report, Instant::now());
    }

    /// Every source reported within `max_age`. Older views are dropped.
    pub fn fresh(&self, max_age: Duration) -> Vec<Seen> {
        self.fresh_at(max_age, Instant::now())
    }

    /// [`Reports::insert`] of a report received at `now`.
    pub(crate) fn insert_at(&self, report: Report, now: Instant) {
        let mut map = self.0.lock();
        let node = map.entry(report.node).or_default();
        for Seen {
            group,
            source,
            view,
        } in report.seen
        {
            let kept = node.entry((group, source)).or_insert((now, view.clone()));
            if view.last_seen_ms >= kept.1.last_seen_ms {
                *kept = (now, view);
            }
        }
    }

    /// [`Reports::fresh`] as of `now`.
    pub(crate) fn fresh_at(&self, max_age: Duration, now: Instant) -> Vec<Seen> {
        let mut map = self.0.lock();
        for sources in map.values_mut() {
            sources.retain(|_, (at, _)| now.saturating_duration_since(*at) <= max_age);
        }
        map.retain(|_, sources| !sources.is_empty());
        map.values()
            .flat_map(|sources| {
                sources.iter().map(|((group, source), (_, view))| Seen {
                    group: group.clone(),
                    source: source.clone(),
                    view: view.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: NodeId, source: &str, last_seen_ms: u64) -> Report {
        Report {
            node,
            seen: vec![Seen {
                group: "g".into(),
                source: source.into(),
                view: SourceView {
                    weight: 1,
                    first_seen_ms: 0,
                    last_seen_ms,
                    ..SourceView::default()
                },
            }],
        }
    }

    fn last_seen(seen: &[Seen], source: &str) -> Vec<u64> {
        seen.iter()
            .filter(|s| s.source == source)
            .map(|s| s.view.last_seen_ms)
            .collect()
    }

    #[test]
    fn a_report_delivered_late_does_not_hide_a_newer_one() {
        let reports = Reports::default();
        let t0 = Instant::now();
        reports.insert_at(report(2, "a", 2_000), t0);
        reports.insert_at(report(2, "a", 1_000), t0 + Duration::from_secs(1));
        reports.insert_at(report(2, "a", 2_000), t0 + Duration::from_secs(2));
        let seen = reports.fresh_at(Duration::from_secs(10), t0 + Duration::from_secs(3));
        assert_eq!(last_seen(&seen, "a"), [2_000]);
    }

    #[test]
    fn views_expire_by_arrival_per_source_and_nodes_stay_apart() {
        let reports = Reports::default();
        let t0 = Instant::now();
        reports.insert_at(report(2, "a", 1_000), t0);
        reports.insert_at(report(2, "b", 1_000), t0 + Duration::from_secs(5));
        reports.insert_at(report(3, "a", 900), t0 + Duration::from_secs(5));
        let seen = reports.fresh_at(Duration::from_secs(10), t0 + Duration::from_secs(12));
        assert_eq!(last_seen(&seen, "a"), [900]);
        assert_eq!(last_seen(&seen, "b"), [1_000]);
        let seen = reports.fresh_at(Duration::from_secs(10), t0 + Duration::from_secs(16));
        assert!(seen.is_empty());
    }
}

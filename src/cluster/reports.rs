//! Follower reports: every tick each follower tells the leader which sources it sees, so
//! the leader decides on the union of every node's view (a replica that can reach only
//! some nodes is still alive for the group).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Weight, first/last seen, data time (counters are not used by the leader).
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

/// A node's latest report and when it arrived.
type Latest = HashMap<NodeId, (Instant, Vec<Seen>)>;

/// The latest report of each node, as received by this one. A cheap clone.
#[derive(Debug, Clone, Default)]
pub struct Reports(Arc<Mutex<Latest>>);

impl Reports {
    /// Keeps a node's latest report.
    pub fn insert(&self, report: Report) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(report.node, (Instant::now(), report.seen));
    }

    /// Every source from reports received within `max_age`; older reports are dropped.
    pub fn fresh(&self, max_age: Duration) -> Vec<Seen> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (at, _)| at.elapsed() <= max_age);
        map.values()
            .flat_map(|(_, seen)| seen.iter().cloned())
            .collect()
    }
}

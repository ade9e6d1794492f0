//! The human form of each admin API answer. Every function takes two arguments: an answer,
//! as the [`crate::api`] type it parses into, and the current time. It returns the text to
//! print. Absent facts (`None`) show as `-`, so an answer from a newer or older node still
//! renders.

use std::collections::BTreeMap;

use serde::Serialize;

use super::table::{bytes, millis, pairs, secs, timestamp, Align, Table};
use crate::api::{self, ClusterStatus, Member};

mod groups;
mod queue;

pub use groups::{group, group_changed, groups, histories, history, unpinned, Histories};
pub use queue::{
    endpoints, paused, quarantine, quarantine_deleted, quarantine_queued, queue, record, records,
    replayed, skipped,
};

/// A number that may be absent, `-` when it is.
fn count(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// An enum as the name it has on the wire (`backoff`, `drop-oldest`), `-` when absent.
fn name<T: Serialize>(v: Option<&T>) -> String {
    match v.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::String(s))) => s,
        _ => "-".to_owned(),
    }
}

/// Names as a comma-separated list, `-` when there are none.
fn list(names: &[String]) -> String {
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(", ")
    }
}

/// A leader's node id, or that none is known.
fn leader(id: Option<u64>) -> String {
    id.map_or_else(|| "none known".to_owned(), |l| l.to_string())
}

/// `GET /api/v1/status`.
pub fn status(v: &api::Status, _now: u64) -> String {
    let node = &v.node;
    let uptime = node
        .uptime_seconds
        .map_or_else(|| "-".to_owned(), |s| secs(s as f64));
    let started = node
        .started_ms
        .map_or_else(String::new, |ms| format!(" (since {})", timestamp(ms)));
    let buffer = &v.buffer;
    let cluster = v.cluster.as_ref().map_or_else(
        || "-".to_owned(),
        |c| {
            format!(
                "node {}, leader {}, term {}, {} members",
                c.node_id,
                leader(c.leader),
                c.term,
                c.members.len()
            )
        },
    );
    pairs(&[
        ("instance", node.instance_id.clone()),
        ("version", node.version.clone()),
        ("role", v.role.clone()),
        ("cluster", cluster),
        (
            "ready",
            match v.ready {
                Some(true) => "yes".to_owned(),
                Some(false) => "no (starting or stopping: writes get 503)".to_owned(),
                None => "-".to_owned(),
            },
        ),
        ("uptime", format!("{uptime}{started}")),
        ("ingest", v.listeners.ingest.clone()),
        ("admin", v.listeners.admin.clone()),
        ("data dir", v.data_dir.clone()),
        ("durability", name(v.durability.as_ref())),
        (
            "buffer",
            format!(
                "max {}, max age {}, when full {}, compression {}{}",
                bytes(buffer.max_bytes),
                secs(buffer.max_age_seconds as f64),
                name(buffer.full_policy.as_ref()),
                name(buffer.compression.as_ref()),
                if buffer.compressing {
                    " (compressing now)"
                } else {
                    ""
                },
            ),
        ),
        (
            "health",
            format!(
                "tick {}, expiry {}",
                millis(v.health.tick_ms),
                millis(v.health.expiry_ms)
            ),
        ),
        ("endpoints", list(&v.endpoints)),
    ])
}

/// `cluster`: the status (when there is one) and the members.
pub fn cluster(c: &api::Cluster) -> String {
    membership(c.status.as_ref(), &c.members)
}

/// The answer of `cluster add` and `cluster remove`: the members after the change.
pub fn members(m: &api::Members) -> String {
    membership(None, &m.members)
}

/// A leadership transfer's answer: what moved, then the cluster as [`cluster`] shows it.
pub fn transferred(t: &api::Transferred) -> String {
    format!(
        "leadership moved from node {} to node {} in {} ms\n\n{}",
        leader(t.transferred.from),
        t.transferred.to,
        t.transferred.took_ms,
        membership(t.status.as_ref(), &t.members)
    )
}

/// The raft status as pairs (when there is one), then a table of the members.
fn membership(status: Option<&ClusterStatus>, members: &[Member]) -> String {
    let mut out = String::new();
    if let Some(s) = status {
        out.push_str(&pairs(&[
            ("node", s.node_id.to_string()),
            ("role", s.role.as_str().to_owned()),
            ("leader", leader(s.leader)),
            ("term", s.term.to_string()),
            ("last log index", count(s.last_log_index)),
            ("last applied", count(s.last_applied)),
        ]));
        out.push('\n');
    }
    let lag: BTreeMap<u64, u64> = status
        .map(|s| s.replication.iter().map(|r| (r.id, r.lag)).collect())
        .unwrap_or_default();
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("ADDRESS", Align::Left),
        ("VOTER", Align::Left),
        ("LAG", Align::Right),
    ]);
    for m in members {
        t.row(vec![
            m.id.to_string(),
            m.addr.clone(),
            if m.voter { "yes" } else { "learner" }.to_owned(),
            count(lag.get(&m.id).copied()),
        ]);
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests;

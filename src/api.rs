//! The admin API's answers as types: one struct per JSON body. [`crate::admin`] sends
//! them, and [`crate::client`] reads them. So a renamed field fails to compile on both
//! sides; it does not show up as `-` in the client.
//!
//! Each answer parses with `#[serde(default)]`, so an answer from a node of another
//! version still reads:
//! - unknown fields are ignored;
//! - a missing count reads as 0;
//! - a missing endpoint state reads as a new worker's state (idle).
//!
//! Some facts have no neutral value: whether the node is ready, its durability, the
//! cluster status. Such a fact is an `Option`, and the client shows a missing one as `-`.
//!
//! The nested types belong to the parts that own them: the election's group views and
//! history, the cluster status, the endpoint workers' status, and the WAL's cursor
//! positions, record summaries and quarantine entries. Pins, history entries and the
//! control state also sit on disk or in the raft log, so they keep their own strict
//! rules. A field added to one of them needs its own `#[serde(default)]`. A rolling
//! upgrade needs that anyway.
//!
//! The order of keys on the wire follows the order of the fields here. JSON readers do not
//! depend on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::cluster::{ClusterStatus, ControlState, Member};
pub use crate::election::{
    Change, GroupView, HandoverStats, HistoryEntry, PinView, Reason, Switch, SwitchReason,
};
pub use crate::shipper::{EndpointState, EndpointStatus};
pub use crate::wal::{
    Compression, CursorStats, Durability, FullPolicy, Quarantined, RecordSummary,
};

/// `GET /api/v1/status`: who the node is, its role and its settings.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Status {
    /// The node's identity and age.
    pub node: Node,
    /// `standalone`, or the node's raft role (`leader`, `follower`, …).
    pub role: String,
    /// The cluster as this node sees it. `None` on a standalone node.
    pub cluster: Option<ClusterStatus>,
    /// Whether the node accepts writes.
    pub ready: Option<bool>,
    /// The node's listeners.
    pub listeners: Listeners,
    /// The data directory.
    pub data_dir: String,
    /// When a write counts as durable.
    pub durability: Option<Durability>,
    /// The buffer's limits.
    pub buffer: Buffer,
    /// How the promoted sources' health is checked.
    pub health: Health,
    /// The names of the storage endpoints.
    pub endpoints: Vec<String>,
}

/// The node part of [`Status`].
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Node {
    /// The instance ID.
    pub instance_id: String,
    /// The highlander version.
    pub version: String,
    /// The start time (ms since the epoch).
    pub started_ms: Option<u64>,
    /// The seconds since the start.
    pub uptime_seconds: Option<u64>,
}

/// The listeners part of [`Status`].
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Listeners {
    /// The remote_write listener.
    pub ingest: String,
    /// The admin listener.
    pub admin: String,
}

/// The buffer part of [`Status`].
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Buffer {
    /// The byte cap.
    pub max_bytes: u64,
    /// The age limit (seconds).
    pub max_age_seconds: u64,
    /// What an append does when the buffer is full.
    pub full_policy: Option<FullPolicy>,
    /// When buffered writes are stored compressed.
    pub compression: Option<Compression>,
    /// Whether the buffer compresses its records right now.
    pub compressing: bool,
}

/// The health part of [`Status`].
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Health {
    /// The health tick (ms).
    pub tick_ms: u64,
    /// The silence after which a promoted source is demoted (ms).
    pub expiry_ms: u64,
}

/// `GET /api/v1/cluster`: the raft status, the members and the replicated control state.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Cluster {
    /// The cluster as this node sees it.
    pub status: Option<ClusterStatus>,
    /// The voters and learners.
    pub members: Vec<Member>,
    /// The applied control state: promotions, pins and watermarks.
    pub control: ControlState,
}

/// The answer of `POST /api/v1/cluster/members` and `DELETE /api/v1/cluster/members/{id}`:
/// the members after the change.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Members {
    /// The voters and learners.
    pub members: Vec<Member>,
}

/// The answer of `POST /api/v1/cluster/transfer-leader`: what moved, then the cluster.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Transferred {
    /// The move itself.
    pub transferred: Transfer,
    /// The cluster after the move, as this node sees it.
    pub status: Option<ClusterStatus>,
    /// The voters and learners.
    pub members: Vec<Member>,
}

/// One leadership transfer.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Transfer {
    /// The leader before the move, when one was known.
    pub from: Option<u64>,
    /// The node that leads now.
    pub to: u64,
    /// How long the move took (ms).
    pub took_ms: u64,
}

/// `GET /api/v1/queue`: buffer totals and every endpoint.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Queue {
    /// Buffered records.
    pub records: u64,
    /// Buffered bytes.
    pub bytes: u64,
    /// The byte cap.
    pub max_bytes: u64,
    /// The age of the oldest buffered record (seconds).
    pub oldest_age_seconds: f64,
    /// The sequence of the oldest buffered record.
    pub first_seq: u64,
    /// The sequence the next record gets.
    pub next_seq: u64,
    /// Records dropped by the buffer's limits.
    pub dropped_records: u64,
    /// Quarantined batches.
    pub quarantined: usize,
    /// Every endpoint with its position in the buffer.
    pub endpoints: Vec<Endpoint>,
}

/// `GET /api/v1/endpoints`: every endpoint with its position in the buffer.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Endpoints {
    /// The endpoints, in configuration order.
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint: its worker's status with its position in the buffer.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Endpoint {
    /// The name, URL, state, counters and last error, as the worker reports them.
    #[serde(flatten)]
    pub worker: EndpointStatus,
    /// The cursor and the lag behind the newest record.
    #[serde(flatten)]
    pub position: CursorStats,
}

/// `GET /api/v1/queue/records`: buffered records without their payloads.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Records {
    /// The records, oldest first.
    pub records: Vec<RecordSummary>,
}

/// `GET /api/v1/queue/records/{seq}`: one record with a decoded look at its first series.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Record {
    /// The record without its payload.
    #[serde(flatten)]
    pub summary: RecordSummary,
    /// The first series. `None` when the payload does not decode.
    pub preview: Option<Vec<SeriesPreview>>,
}

/// One series of a [`Record`] preview.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct SeriesPreview {
    /// The labels, `__name__` included.
    pub labels: BTreeMap<String, String>,
    /// Float samples.
    pub samples: usize,
    /// Native histogram samples.
    pub histograms: usize,
    /// Exemplars.
    pub exemplars: usize,
}

/// `GET /api/v1/groups`: every HA group with its recent history.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Groups {
    /// The groups, by name.
    pub groups: Vec<Group>,
}

/// `GET /api/v1/groups/{group}`: one group with its name and history.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Group {
    /// The group name.
    pub name: String,
    /// The promoted source, the sources and the pin.
    #[serde(flatten)]
    pub view: GroupView,
    /// The election history, newest first.
    pub history: Vec<HistoryEntry>,
    /// The switches read from the whole history, newest first (at most 10 in the list).
    pub switches: Vec<Switch>,
}

/// `GET /api/v1/groups/{group}/history`: the group's switches and the events they were
/// read from.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct GroupHistory {
    /// The group name.
    pub group: String,
    /// Changes of the forwarded source, newest first, with their handovers.
    pub switches: Vec<Switch>,
    /// The durable history they come from, newest first.
    pub events: Vec<HistoryEntry>,
}

/// `GET /api/v1/trends`: rates and lag over the last 15 minutes (`?step=1m`: the last
/// hour, a point per minute).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Trends {
    /// Time covered by one point.
    pub step_seconds: u64,
    /// Per source: samples received per second (forwarded or dropped).
    pub sources: Vec<SourceTrend>,
    /// Per endpoint: samples sent per second and lag in data time.
    pub endpoints: Vec<EndpointTrend>,
}

/// One source's rate, oldest point first.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct SourceTrend {
    /// Its group.
    pub group: String,
    /// The source.
    pub source: String,
    /// Samples received per second.
    pub received: Vec<TrendPoint>,
}

/// One endpoint's rate and lag, oldest point first.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct EndpointTrend {
    /// The endpoint.
    pub endpoint: String,
    /// Samples sent per second.
    pub sent: Vec<TrendPoint>,
    /// Lag in data time (seconds): at each sample, or a minute's largest.
    pub lag_seconds: Vec<TrendPoint>,
}

/// One point of a trend.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
#[serde(default)]
pub struct TrendPoint {
    /// The end of the period it covers (ms since the epoch).
    pub at_ms: u64,
    /// The value.
    pub value: f64,
}

/// The answer of `POST /api/v1/groups/{group}/unpin`.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Unpinned {
    /// The pin (or failover hold) that was removed.
    pub removed: Option<PinView>,
}

/// `GET /api/v1/quarantine`: batches the storages rejected permanently.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Quarantine {
    /// The batches, by endpoint then sequence.
    pub quarantine: Vec<Quarantined>,
}

/// The answer of `POST /api/v1/quarantine/{seq}/replay` (202).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct QuarantineQueued {
    /// The batch.
    pub seq: u64,
    /// The endpoints that will send it again.
    pub queued_for: Vec<String>,
}

/// The answer of `DELETE /api/v1/quarantine/{seq}`.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct QuarantineDeleted {
    /// The batch.
    pub seq: u64,
    /// The endpoints whose copy was deleted.
    pub deleted_for: Vec<String>,
}

/// The answer of `POST /api/v1/endpoints/{name}/pause` and `…/resume`.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Paused {
    /// The endpoint.
    pub endpoint: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// Whether it was paused before.
    pub was_paused: bool,
}

/// How an endpoint's cursor moved: the common part of [`Skipped`] and [`Replayed`].
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct CursorMoved {
    /// The endpoint.
    pub endpoint: String,
    /// The cursor before.
    pub from: u64,
    /// The cursor after.
    pub to: u64,
}

/// The answer of `POST /api/v1/endpoints/{name}/skip`.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Skipped {
    /// The endpoint and its cursor move.
    #[serde(flatten)]
    pub moved: CursorMoved,
    /// Records the endpoint will not get.
    pub skipped_records: u64,
}

/// The answer of `POST /api/v1/endpoints/{name}/replay`.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct Replayed {
    /// The endpoint and its cursor move.
    #[serde(flatten)]
    pub moved: CursorMoved,
    /// Records the endpoint gets again.
    pub replayed_records: u64,
}

/// The body of every error answer.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct ErrorBody {
    /// A short code for scripts, e.g. `unknown_endpoint`.
    pub error: String,
    /// One line for people.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn keys(v: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = v
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn an_endpoint_has_the_keys_it_always_had() {
        let v = serde_json::to_value(Endpoint::default()).expect("serializes");
        assert_eq!(
            keys(&v),
            [
                "cursor",
                "dropped_records",
                "failed_requests",
                "in_flight",
                "lag_bytes",
                "lag_records",
                "lag_seconds",
                "last_error",
                "last_error_ms",
                "max_in_flight",
                "name",
                "next_retry_ms",
                "ordered",
                "protocol",
                "protocol_in_use",
                "quarantined",
                "retries",
                "sent_bytes",
                "sent_records",
                "sent_samples",
                "state",
                "url",
            ],
            "the worker's shipped watermark stays out: {v}"
        );
        assert!(v["last_error"].is_null(), "{v}");
    }

    #[test]
    fn flattened_answers_read_back_what_they_wrote() {
        let record = json!({"seq": 7, "group": "g", "source": "a", "damaged": null,
            "preview": [{"labels": {"__name__": "up"}, "samples": 1}]});
        let read: Record = serde_json::from_value(record).expect("reads");
        assert_eq!((read.summary.seq, read.summary.source.as_str()), (7, "a"));
        let again = serde_json::to_value(&read).expect("serializes");
        assert_eq!(again["preview"][0]["labels"]["__name__"], "up");
        assert_eq!(again["histograms"], 0, "a missing count reads as 0");

        let skipped: Skipped = serde_json::from_value(
            json!({"endpoint": "lts", "from": 1, "to": 4, "skipped_records": 3}),
        )
        .expect("reads");
        assert_eq!(
            serde_json::to_value(&skipped).expect("serializes"),
            json!({"endpoint": "lts", "from": 1, "to": 4, "skipped_records": 3})
        );
    }
}

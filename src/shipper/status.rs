//! What each endpoint worker reports, for the admin API.

use serde::{Deserialize, Serialize};

/// What a worker is doing. A new worker is idle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// Caught up, waiting for new records.
    #[default]
    Idle,
    /// Sending.
    Shipping,
    /// Waiting before a retry.
    Backoff,
    /// Retrying for a while already. The storage needs attention.
    Failing,
    /// The storage refuses highlander's credentials (401 or 403). highlander retries with
    /// the capped backoff and quarantines nothing: an operator must fix the token or the
    /// password.
    Unauthorized,
    /// Stopped by an operator.
    Paused,
    /// Cluster: this node is not the leader, and the leader ships.
    Standby,
}

/// One endpoint as its worker sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointStatus {
    /// Endpoint name.
    pub name: String,
    /// Write URL, without credentials.
    pub url: String,
    /// Current state.
    pub state: EndpointState,
    /// Last failure (one line).
    pub last_error: Option<String>,
    /// When it happened (ms since the epoch).
    pub last_error_ms: Option<u64>,
    /// When the next attempt is due (ms since the epoch), while backing off.
    pub next_retry_ms: Option<u64>,
    /// Records delivered.
    pub sent_records: u64,
    /// Samples (float + histogram) delivered.
    pub sent_samples: u64,
    /// Compressed bytes delivered.
    pub sent_bytes: u64,
    /// Attempts that failed with a retryable error.
    pub failed_requests: u64,
    /// Retries made.
    pub retries: u64,
    /// Records quarantined after a permanent rejection.
    pub quarantined: u64,
    /// Newest sample timestamp delivered (ms): the shipped watermark. The cluster reads it.
    /// The admin API leaves it out.
    #[serde(skip)]
    pub shipped_data_ts: Option<i64>,
    /// Requests out now. Each counts until its final answer, retries included.
    pub in_flight: usize,
    /// Most requests out at once (configured).
    pub max_in_flight: usize,
    /// Whether the requests out at once share no series (ordered lanes): every series
    /// stays in order. `false` when `max_in_flight` is above 1.
    pub ordered: bool,
    /// The configured Remote-Write protocol: `1.0`, `2.0` or `auto`.
    pub protocol: String,
    /// The version 2.0 records go as now (`1.0` or `2.0`): for `auto`, `1.0` once the
    /// storage showed it does not read 2.0.
    pub protocol_in_use: String,
}

impl EndpointStatus {
    /// A fresh status.
    pub fn new(name: String, url: String, max_in_flight: usize) -> Self {
        EndpointStatus {
            name,
            url,
            state: EndpointState::Idle,
            last_error: None,
            last_error_ms: None,
            next_retry_ms: None,
            sent_records: 0,
            sent_samples: 0,
            sent_bytes: 0,
            failed_requests: 0,
            retries: 0,
            quarantined: 0,
            shipped_data_ts: None,
            in_flight: 0,
            max_in_flight,
            ordered: false,
            protocol: String::new(),
            protocol_in_use: String::new(),
        }
    }
}

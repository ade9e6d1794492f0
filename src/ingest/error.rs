//! Why a write is refused, and what the sender is told.

use actix_web::http::StatusCode;

use crate::wal::WalError;
use crate::wire::WireError;

/// A refused write. Bad input is always 4xx with a one-line reason; 5xx means "retry".
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// `Content-Encoding` is missing or not snappy.
    #[error(
        "unsupported Content-Encoding {0:?}: remote write bodies must be snappy (block format)"
    )]
    Encoding(String),
    /// `Content-Type` is not a Remote-Write protobuf of a known version.
    #[error("unsupported Content-Type {0:?}: expected application/x-protobuf, with proto=prometheus.WriteRequest (Remote-Write 1.0, the default) or proto=io.prometheus.write.v2.Request (2.0)")]
    ContentType(String),
    /// The compressed body is over the limit.
    #[error("body of {len} bytes is over the limit of {limit} bytes")]
    BodyTooLarge {
        /// Bytes received or announced.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The snappy header announces a decoded size over the limit.
    #[error("decoded body of {len} bytes would be over the limit of {limit} bytes")]
    DecodedTooLarge {
        /// Announced decoded size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The body could not be read off the connection.
    #[error("could not read the body: {0}")]
    Body(String),
    /// The snappy block is invalid.
    #[error("invalid snappy block: {0}")]
    Snappy(String),
    /// The protobuf or its labels are invalid.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// A `highlander_*` query parameter is invalid.
    #[error("invalid query parameter {name}: {reason}")]
    Param {
        /// Parameter name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `--require-ha-labels`: some series lack the replica label.
    #[error("{series} series without the replica label {label:?} (--require-ha-labels)")]
    MissingHaLabels {
        /// How many.
        series: u32,
        /// The label.
        label: String,
    },
    /// The buffer is full under the `block` policy.
    #[error("buffer full, retry later")]
    Full,
    /// The buffer's disk is (nearly) full.
    #[error("{0}")]
    DiskFull(String),
    /// Starting up or shutting down.
    #[error("not ready, retry later")]
    NotReady,
    /// Cluster: no promoted source committed for the group yet (no leader, or the leader
    /// is still deciding).
    #[error("no promoted source decided for this group yet (no cluster leader or election in progress), retry later")]
    NoLeader,
    /// The WAL failed; nothing was acknowledged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<WalError> for IngestError {
    /// What the sender is told when the WAL does not take a promoted write.
    fn from(e: WalError) -> Self {
        match e {
            WalError::Full { .. } => IngestError::Full,
            e @ WalError::DiskFull(_) => IngestError::DiskFull(e.to_string()),
            WalError::Closed => IngestError::NotReady,
            e => IngestError::Internal(e.to_string()),
        }
    }
}

impl IngestError {
    /// The HTTP status for this refusal.
    pub fn status_code(&self) -> StatusCode {
        match self {
            IngestError::Encoding(_) | IngestError::ContentType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            IngestError::BodyTooLarge { .. }
            | IngestError::DecodedTooLarge { .. }
            | IngestError::Wire(WireError::ConvertedTooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::Body(_)
            | IngestError::Snappy(_)
            | IngestError::Wire(_)
            | IngestError::Param { .. }
            | IngestError::MissingHaLabels { .. } => StatusCode::BAD_REQUEST,
            IngestError::Full
            | IngestError::DiskFull(_)
            | IngestError::NotReady
            | IngestError::NoLeader => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, stable name for metrics and logs.
    pub fn as_label(&self) -> &'static str {
        match self {
            IngestError::Encoding(_) => "content_encoding",
            IngestError::ContentType(_) => "content_type",
            IngestError::BodyTooLarge { .. } => "body_too_large",
            IngestError::DecodedTooLarge { .. } => "decoded_too_large",
            IngestError::Body(_) => "body_read",
            IngestError::Snappy(_) => "snappy",
            IngestError::Wire(w) => w.as_label(),
            IngestError::Param { .. } => "query_param",
            IngestError::MissingHaLabels { .. } => "missing_ha_labels",
            IngestError::Full => "buffer_full",
            IngestError::DiskFull(_) => "disk_full",
            IngestError::NotReady => "not_ready",
            IngestError::NoLeader => "no_leader",
            IngestError::Internal(_) => "internal",
        }
    }

    /// Whether the sender did something wrong (logged at DEBUG/WARN, not ERROR).
    pub fn is_client_error(&self) -> bool {
        self.status_code().is_client_error()
    }
}

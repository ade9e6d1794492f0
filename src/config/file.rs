//! The optional TOML config file. Every field is optional, and flags override it. Unknown
//! fields are errors, because a typo must not be silently ignored. `data/highlander.toml`
//! documents every field with its default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address of the remote_write listener.
    pub listen: Option<String>,
    /// Address of the admin listener.
    pub admin_listen: Option<String>,
    /// Directory for the buffer and node state.
    pub data_dir: Option<PathBuf>,
    /// File holding the admin bearer token.
    pub admin_token_file: Option<PathBuf>,
    /// Require the admin token for reads too.
    pub admin_token_reads: Option<bool>,
    /// This node's identity.
    pub instance_id: Option<String>,
    /// Health check period.
    pub health_tick: Option<String>,
    /// Silence after which the promoted source is demoted.
    pub health_expiry: Option<String>,
    /// Label carrying the replica name (stripped before storage).
    pub replica_label: Option<String>,
    /// Label carrying the HA group name.
    pub group_label: Option<String>,
    /// Refuse requests with series that lack the replica label.
    pub require_ha_labels: Option<bool>,
    /// Cluster settings.
    pub cluster: Option<ClusterSection>,
    /// Data time of recent writes held per source for handovers.
    pub handover_window: Option<String>,
    /// Bytes of recent writes held per source for handovers.
    pub handover_max_bytes: Option<String>,
    /// Largest compressed request body.
    pub max_body_bytes: Option<String>,
    /// Largest decoded request body.
    pub max_decoded_bytes: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Log filter.
    pub log_level: Option<String>,
    /// How long a graceful shutdown may take.
    pub shutdown_timeout: Option<String>,
    /// The buffer.
    #[serde(default)]
    pub buffer: BufferSection,
    /// Shipping, all endpoints.
    #[serde(default)]
    pub shipper: ShipperSection,
    /// Storage endpoints (in addition to `--remote-write`).
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<EndpointSection>,
}

/// `[cluster]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's id.
    pub node_id: Option<u64>,
    /// Raft RPC listener.
    pub listen: Option<String>,
    /// Members, `id = "host:port"`.
    pub peers: Option<BTreeMap<String, String>>,
    /// File holding the shared secret.
    pub secret_file: Option<PathBuf>,
    /// Data time re-sent after a leader change.
    pub overlap: Option<String>,
    /// PEM certificate (chain) of the cluster listener. With `tls_key`, TLS is on.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM roots trusted when calling peers over HTTPS (default: the system's).
    pub tls_ca: Option<PathBuf>,
}

/// `[buffer]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferSection {
    /// Cap on buffered bytes.
    pub max_bytes: Option<String>,
    /// Records older than this are dropped.
    pub max_age: Option<String>,
    /// Cap on the quarantine's bytes.
    pub quarantine_max_bytes: Option<String>,
    /// Quarantined batches older than this are dropped.
    pub quarantine_max_age: Option<String>,
    /// `drop-oldest` or `block`.
    pub full_policy: Option<String>,
    /// `sync`, `batch` or `none`.
    pub durability: Option<String>,
    /// Flush period in `batch` mode.
    pub flush_interval: Option<String>,
    /// `auto`, `always` or `never`.
    pub compression: Option<String>,
}

/// `[shipper]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipperSection {
    /// `newest` or `oldest`.
    pub new_endpoint_start: Option<String>,
    /// First wait after a failure.
    pub retry_initial: Option<String>,
    /// Longest wait between attempts.
    pub retry_max: Option<String>,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Option<String>,
    /// Requests out at once per endpoint, unless the endpoint sets its own.
    pub max_in_flight: Option<usize>,
    /// Requests out at once per endpoint that share no series, unless the endpoint sets
    /// its own.
    pub ordered_in_flight: Option<usize>,
}

/// One `[[endpoint]]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    /// Name. It is the cursor key, so keep it stable.
    pub name: Option<String>,
    /// Write URL.
    pub url: Option<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Basic auth.
    pub basic_auth: Option<BasicAuthSection>,
    /// Bearer token.
    pub bearer_token: Option<String>,
    /// File holding the bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// Request timeout.
    pub timeout: Option<String>,
    /// Extra CA bundle (PEM).
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any certificate (testing only).
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    /// Decoded bytes of consecutive buffered writes joined into one request, e.g. "4MiB".
    /// "0" sends one write per request.
    pub max_batch_bytes: Option<String>,
    /// Requests out at once (default: `[shipper] max_in_flight`).
    pub max_in_flight: Option<usize>,
    /// Requests out at once that share no series (default: `[shipper]
    /// ordered_in_flight`).
    pub ordered_in_flight: Option<usize>,
    /// `1.0`, `2.0` or `auto`: the version writes that arrived as 2.0 go as (default auto).
    pub protocol: Option<String>,
}

/// `basic_auth = { ... }`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSection {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
}

//! Command-line flags (each with a `HIGHLANDER_*` environment variable).
//!
//! Every value is kept as text here and parsed in [`super::Config::build`], so that all
//! problems are reported at once rather than the first one only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// highlander: a highly available relay for Prometheus remote_write.
#[derive(Debug, Parser)]
#[command(name = "highlander", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a relay node.
    Serve(Box<ServeArgs>),
}

/// Flags of `highlander serve`. Flags override the config file; the file overrides the
/// built-in defaults.
#[derive(Debug, Default, Clone, Args)]
pub struct ServeArgs {
    /// TOML config file (optional; every field documented in data/highlander.toml).
    #[arg(long, env = "HIGHLANDER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the remote_write listener [default: 0.0.0.0:9091].
    #[arg(long, env = "HIGHLANDER_LISTEN")]
    pub listen: Option<String>,
    /// Address of the admin listener [default: 127.0.0.1:9092].
    #[arg(long, env = "HIGHLANDER_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Bearer token required for admin mutations (prefer the file or env form: flags show
    /// in `ps`) [default: none, mutations open to whoever reaches the admin listener].
    #[arg(long, env = "HIGHLANDER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin bearer token.
    #[arg(long, env = "HIGHLANDER_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Require the admin token for reads too (not for /healthz, /readyz).
    #[arg(long, env = "HIGHLANDER_ADMIN_TOKEN_READS")]
    pub admin_token_reads: bool,
    /// Directory for the buffer and node state [default: ./data].
    #[arg(long, env = "HIGHLANDER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Storage to forward to, `URL` or `name=URL`; repeatable (comma-separated in the env
    /// var). A URL without a path gets /api/v1/write
    /// [default: http://localhost:8428/api/v1/write].
    #[arg(
        long = "remote-write",
        env = "HIGHLANDER_REMOTE_WRITE",
        value_delimiter = ','
    )]
    pub remote_write: Vec<String>,
    /// How often the promoted source's health is checked [default: 1s].
    #[arg(long, env = "HIGHLANDER_HEALTH_TICK")]
    pub health_tick: Option<String>,
    /// Silence after which the promoted source is demoted [default: 5s].
    #[arg(long, env = "HIGHLANDER_HEALTH_EXPIRY")]
    pub health_expiry: Option<String>,
    /// This node's identity in logs and the admin API [default: generated once, kept in
    /// the data dir].
    #[arg(long, env = "HIGHLANDER_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Label carrying the replica name (e.g. `__replica__`); used as the source identity
    /// when `highlander_source` is absent, and stripped before storage.
    #[arg(long, env = "HIGHLANDER_REPLICA_LABEL")]
    pub replica_label: Option<String>,
    /// Label carrying the HA group name (e.g. `cluster`), used when `highlander_group` is
    /// absent.
    #[arg(long, env = "HIGHLANDER_GROUP_LABEL")]
    pub group_label: Option<String>,
    /// Cluster: this node's id (a member of --peers).
    #[arg(long, env = "HIGHLANDER_NODE_ID")]
    pub node_id: Option<u64>,
    /// Cluster: the raft RPC listener [default: 0.0.0.0:9093].
    #[arg(long, env = "HIGHLANDER_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,
    /// Cluster: every member as `id=host:port`, comma-separated (this node included). Without
    /// it the node runs standalone.
    #[arg(long, env = "HIGHLANDER_PEERS")]
    pub peers: Option<String>,
    /// Cluster: shared secret of the raft RPCs (prefer the file or env form).
    #[arg(long, env = "HIGHLANDER_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Cluster: file holding the shared secret.
    #[arg(long, env = "HIGHLANDER_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Cluster: data time re-sent after a leader change, and kept by followers behind the
    /// shipped watermark [default: 30s].
    #[arg(long, env = "HIGHLANDER_CLUSTER_OVERLAP")]
    pub cluster_overlap: Option<String>,
    /// Data time of recent writes held per source, for gapless handovers [default: 3 ×
    /// health-expiry].
    #[arg(long, env = "HIGHLANDER_HANDOVER_WINDOW")]
    pub handover_window: Option<String>,
    /// Bytes of recent writes held per source, for gapless handovers [default: 64MiB].
    #[arg(long, env = "HIGHLANDER_HANDOVER_MAX_BYTES")]
    pub handover_max_bytes: Option<String>,
    /// Largest compressed request body [default: 32MiB].
    #[arg(long, env = "HIGHLANDER_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<String>,
    /// Largest decoded request body [default: 256MiB].
    #[arg(long, env = "HIGHLANDER_MAX_DECODED_BYTES")]
    pub max_decoded_bytes: Option<String>,
    /// Cap on buffered bytes [default: 2GiB].
    #[arg(long, env = "HIGHLANDER_BUFFER_MAX_BYTES")]
    pub buffer_max_bytes: Option<String>,
    /// Records older than this are dropped from the buffer [default: 24h].
    #[arg(long, env = "HIGHLANDER_BUFFER_MAX_AGE")]
    pub buffer_max_age: Option<String>,
    /// What a full buffer does: `drop-oldest` or `block` [default: drop-oldest].
    #[arg(long, env = "HIGHLANDER_BUFFER_FULL_POLICY")]
    pub buffer_full_policy: Option<String>,
    /// When a write is acknowledged: `sync`, `batch` or `none` [default: sync].
    #[arg(long, env = "HIGHLANDER_DURABILITY")]
    pub durability: Option<String>,
    /// Flush period in `batch` durability mode [default: 200ms].
    #[arg(long, env = "HIGHLANDER_FLUSH_INTERVAL")]
    pub flush_interval: Option<String>,
    /// Where a newly configured endpoint starts: `newest` or `oldest` [default: newest].
    #[arg(long, env = "HIGHLANDER_NEW_ENDPOINT_START")]
    pub new_endpoint_start: Option<String>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "HIGHLANDER_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `highlander=debug` [default: info; RUST_LOG also works].
    #[arg(long, env = "HIGHLANDER_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// How long a graceful shutdown may take [default: 30s].
    #[arg(long, env = "HIGHLANDER_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,
}

//! Command-line flags (each with a `HIGHLANDER_*` environment variable).
//!
//! Every value is kept as text here. [`super::Config::build`] parses it, so all problems
//! are reported at once, not only the first one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// highlander: a highly available relay for Prometheus remote_write.
#[derive(Debug, Parser)]
#[command(name = "highlander", version = env!("HIGHLANDER_VERSION"), about, long_about = None)]
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
    /// Client commands that talk to a running node's admin API.
    #[command(flatten)]
    Admin(AdminCommand),
}

/// The admin client's subcommands (`highlander status`, `highlander pin …`): each is one
/// call to the admin API of a running node, printed as a table (or its JSON with `--json`).
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// The node: identity, version, uptime, role, listeners, durability, buffer limits.
    Status(AdminArgs),
    /// Every HA group's promoted source and sources; with GROUP, also its history.
    Groups(GroupsArgs),
    /// The buffer and, per storage, its lag, state and last error.
    Queue(AdminArgs),
    /// The storages: URL, cursor, state, lag, sent counts, last error.
    Endpoints(AdminArgs),
    /// Peek at buffered records (no payloads); with SEQ, one record with a preview.
    Records(RecordsArgs),
    /// Batches a storage rejected permanently; `replay` or `delete` one.
    Quarantine(QuarantineArgs),
    /// Prefer SOURCE in GROUP over any weight, now and until unpinned or expired.
    Pin(PinArgs),
    /// Remove GROUP's pin (or failover hold): weights count again.
    Unpin(GroupArgs),
    /// Demote GROUP's promoted source now; the best other live source takes over.
    Failover(FailoverArgs),
    /// Stop sending to ENDPOINT; its records stay buffered.
    Pause(EndpointArgs),
    /// Send to ENDPOINT again.
    Resume(EndpointArgs),
    /// Drop ENDPOINT's backlog up to a record (the records are not sent to it).
    Skip(SkipArgs),
    /// Send ENDPOINT buffered records again from an earlier record.
    Replay(ReplayArgs),
    /// The raft cluster: members (default), `add`, `remove`.
    Cluster(ClusterArgs),
}

/// `highlander cluster [members | add ID ADDR | remove ID | transfer-leader ID]`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Without an action: the cluster's status and members.
    #[command(subcommand)]
    pub action: Option<ClusterAction>,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// A membership change (any member forwards it to the leader).
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterAction {
    /// Status and members (the default).
    Members,
    /// Add node ID at ADDR (host:port of its cluster listener); start it with --join first.
    Add {
        /// Node id.
        id: u64,
        /// Its cluster listener, host:port.
        addr: String,
        /// Add it as a non-voting learner only.
        #[arg(long)]
        learner: bool,
    },
    /// Remove node ID from the cluster.
    Remove {
        /// Node id.
        id: u64,
    },
    /// Move leadership to voter ID (takes about 2.5 s; writes go on).
    TransferLeader {
        /// Node id of the new leader.
        id: u64,
    },
}

impl AdminCommand {
    /// How to reach the admin API, whatever the command.
    pub fn admin(&self) -> &AdminArgs {
        match self {
            AdminCommand::Status(a) | AdminCommand::Queue(a) | AdminCommand::Endpoints(a) => a,
            AdminCommand::Groups(a) => &a.admin,
            AdminCommand::Records(a) => &a.admin,
            AdminCommand::Quarantine(a) => &a.admin,
            AdminCommand::Pin(a) => &a.admin,
            AdminCommand::Unpin(a) => &a.admin,
            AdminCommand::Failover(a) => &a.admin,
            AdminCommand::Pause(a) | AdminCommand::Resume(a) => &a.admin,
            AdminCommand::Skip(a) => &a.admin,
            AdminCommand::Replay(a) => &a.admin,
            AdminCommand::Cluster(a) => &a.admin,
        }
    }
}

/// Where the admin API is and how to talk to it (every client command takes these).
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Base URL of the node's admin listener.
    #[arg(
        long = "admin",
        env = "HIGHLANDER_ADMIN",
        default_value = "http://127.0.0.1:9092",
        global = true
    )]
    pub url: String,
    /// Admin bearer token (prefer the env or file form: flags show in `ps`).
    #[arg(
        long,
        env = "HIGHLANDER_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// File holding the admin bearer token.
    #[arg(
        long,
        env = "HIGHLANDER_ADMIN_TOKEN_FILE",
        conflicts_with = "token",
        global = true
    )]
    pub token_file: Option<PathBuf>,
    /// Print the server's JSON answer (pretty) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for the node's answer.
    #[arg(long, default_value = "10s", global = true)]
    pub timeout: String,
}

/// `highlander groups [GROUP]`.
#[derive(Debug, Clone, Args)]
pub struct GroupsArgs {
    /// One group, with its election history.
    pub group: Option<String>,
    /// The switches of the group (of every group without GROUP): when, from which source
    /// to which, why, and what the handover backfilled, trimmed and left as a gap.
    #[arg(long)]
    pub history: bool,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `highlander records [SEQ] [--from SEQ] [--limit N]`.
#[derive(Debug, Clone, Args)]
pub struct RecordsArgs {
    /// One record, with a decoded preview of its first series.
    #[arg(conflicts_with_all = ["from", "limit"])]
    pub seq: Option<u64>,
    /// First sequence to show [default: the oldest buffered].
    #[arg(long)]
    pub from: Option<u64>,
    /// How many records (at most 1000) [default: 100].
    #[arg(long)]
    pub limit: Option<usize>,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `highlander quarantine [replay|delete SEQ]`.
#[derive(Debug, Clone, Args)]
pub struct QuarantineArgs {
    /// Without an action: list the quarantined batches.
    #[command(subcommand)]
    pub action: Option<QuarantineAction>,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// What to do with a quarantined batch.
#[derive(Debug, Clone, Subcommand)]
pub enum QuarantineAction {
    /// Send the batch again (to the storages that rejected it, or only to --endpoint).
    Replay(QuarantinedBatch),
    /// Delete the batch for good (for every storage that rejected it, or only --endpoint).
    Delete(QuarantinedBatch),
}

/// One quarantined batch.
#[derive(Debug, Clone, Args)]
pub struct QuarantinedBatch {
    /// Its sequence.
    pub seq: u64,
    /// Only this storage's copy.
    #[arg(long)]
    pub endpoint: Option<String>,
}

/// How long an operator override lasts: `--for 1h` or `--until TIME` (default: until
/// removed).
#[derive(Debug, Clone, Args)]
pub struct HoldArgs {
    /// For how long, e.g. `30m`, `1h`.
    #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
    pub for_: Option<String>,
    /// Until when: RFC 3339 (`2026-11-21T22:00:00Z`) or ms since the epoch.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// `highlander pin GROUP SOURCE`.
#[derive(Debug, Clone, Args)]
pub struct PinArgs {
    /// HA group.
    pub group: String,
    /// Source to promote and keep.
    pub source: String,
    /// How long the pin lasts (default: until unpinned).
    #[command(flatten)]
    pub hold: HoldArgs,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `highlander unpin GROUP`.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// HA group.
    pub group: String,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `highlander failover GROUP`.
#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// HA group.
    pub group: String,
    /// How long the newly promoted source is held (default: until unpinned).
    #[command(flatten)]
    pub hold: HoldArgs,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `highlander pause|resume ENDPOINT`.
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// Storage name (see `highlander endpoints`).
    pub endpoint: String,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `highlander skip ENDPOINT (--to-seq N | --to-time T)`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true)))]
pub struct SkipArgs {
    /// Storage name.
    pub endpoint: String,
    /// The first record it will be sent (everything before is skipped).
    #[arg(long, group = "target", value_name = "SEQ")]
    pub to_seq: Option<u64>,
    /// Skip the records received before this time: RFC 3339, ms since the epoch, `now`,
    /// or an age like `10m ago`.
    #[arg(long, group = "target", value_name = "TIME")]
    pub to_time: Option<String>,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `highlander replay ENDPOINT (--from-seq N | --from-time T)`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true)))]
pub struct ReplayArgs {
    /// Storage name.
    pub endpoint: String,
    /// The first record to send again.
    #[arg(long, group = "target", value_name = "SEQ")]
    pub from_seq: Option<u64>,
    /// Send again the records received from this time on: RFC 3339, ms since the epoch,
    /// or an age like `2h ago`.
    #[arg(long, group = "target", value_name = "TIME")]
    pub from_time: Option<String>,
    /// How to reach the node.
    #[command(flatten)]
    pub admin: AdminArgs,
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
    /// The Remote-Write version the `--remote-write` storages get for writes that arrived
    /// as 2.0: `1.0` (converted), `2.0` (as received) or `auto` (2.0 until the storage shows
    /// it reads only 1.0, then 1.0) [default: auto].
    #[arg(long, env = "HIGHLANDER_REMOTE_WRITE_PROTOCOL")]
    pub remote_write_protocol: Option<String>,
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
    /// Refuse (400) a request with a series that lacks the replica label, instead of
    /// forwarding such series as they are (needs --replica-label).
    #[arg(long, env = "HIGHLANDER_REQUIRE_HA_LABELS")]
    pub require_ha_labels: bool,
    /// Cluster: this node's id (a member of --peers). Read as text and checked with the
    /// rest of the configuration, so a bad value is listed with every other problem.
    #[arg(long, env = "HIGHLANDER_NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster: the raft RPC listener [default: 0.0.0.0:9093].
    #[arg(long, env = "HIGHLANDER_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,
    /// Cluster: every member as `id=host:port`, comma-separated (this node included). Without
    /// it the node runs standalone.
    #[arg(long, env = "HIGHLANDER_PEERS")]
    pub peers: Option<String>,
    /// Cluster: this node joins an existing cluster (added with `POST
    /// /api/v1/cluster/members` on a member) instead of forming one from --peers.
    #[arg(long, env = "HIGHLANDER_JOIN")]
    pub join: bool,
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
    /// Cluster: PEM certificate (chain) of this node's cluster listener; with
    /// --cluster-tls-key, the listener speaks HTTPS only and peers are called over HTTPS.
    #[arg(long, env = "HIGHLANDER_CLUSTER_TLS_CERT")]
    pub cluster_tls_cert: Option<PathBuf>,
    /// Cluster: PEM private key of --cluster-tls-cert.
    #[arg(long, env = "HIGHLANDER_CLUSTER_TLS_KEY")]
    pub cluster_tls_key: Option<PathBuf>,
    /// Cluster: PEM roots trusted when calling peers over HTTPS [default: the system's].
    #[arg(long, env = "HIGHLANDER_CLUSTER_TLS_CA")]
    pub cluster_tls_ca: Option<PathBuf>,
    /// Data time of recent writes held per source, for gapless handovers [default: 3 ×
    /// health-expiry].
    #[arg(long, env = "HIGHLANDER_HANDOVER_WINDOW")]
    pub handover_window: Option<String>,
    /// Bytes of recent writes held per source, for gapless handovers [default: 512MiB].
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
    /// Cap on the quarantine's bytes, which count against --buffer-max-bytes [default: an
    /// eighth of --buffer-max-bytes].
    #[arg(long, env = "HIGHLANDER_QUARANTINE_MAX_BYTES")]
    pub quarantine_max_bytes: Option<String>,
    /// Quarantined batches older than this are dropped [default: 7d].
    #[arg(long, env = "HIGHLANDER_QUARANTINE_MAX_AGE")]
    pub quarantine_max_age: Option<String>,
    /// What a full buffer does: `drop-oldest` or `block` [default: drop-oldest].
    #[arg(long, env = "HIGHLANDER_BUFFER_FULL_POLICY")]
    pub buffer_full_policy: Option<String>,
    /// When a write is acknowledged: `sync`, `batch` or `none` [default: sync].
    #[arg(long, env = "HIGHLANDER_DURABILITY")]
    pub durability: Option<String>,
    /// Flush period in `batch` durability mode [default: 200ms].
    #[arg(long, env = "HIGHLANDER_FLUSH_INTERVAL")]
    pub flush_interval: Option<String>,
    /// Bytes after which a buffer segment file is closed [default: 32MiB]. Hidden: it
    /// exists so that tests cross segment reuse within seconds; nothing in production
    /// needs another size.
    #[arg(long, env = "HIGHLANDER_BUFFER_SEGMENT_BYTES", hide = true)]
    pub buffer_segment_bytes: Option<String>,
    /// When buffered writes are stored zstd-compressed: `auto` (while a storage is down),
    /// `always` or `never` [default: auto].
    #[arg(long, env = "HIGHLANDER_BUFFER_COMPRESSION")]
    pub buffer_compression: Option<String>,
    /// Where a newly configured endpoint starts: `newest` or `oldest` [default: newest].
    #[arg(long, env = "HIGHLANDER_NEW_ENDPOINT_START")]
    pub new_endpoint_start: Option<String>,
    /// Requests out at once per storage with no regard to order, 1 to 64 [default: 1].
    /// Above 1 only for storages that accept out-of-order samples; at 1,
    /// `--ordered-in-flight` applies.
    #[arg(long, env = "HIGHLANDER_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<String>,
    /// Requests out at once per storage that share no series, so every series stays in
    /// timestamp order, 1 to 64 [default: 4]. Used when the storage answers slowly.
    #[arg(long, env = "HIGHLANDER_ORDERED_IN_FLIGHT")]
    pub ordered_in_flight: Option<String>,
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

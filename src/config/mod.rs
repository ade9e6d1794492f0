//! Configuration: flags (with `HIGHLANDER_*` env vars) over an optional TOML file over the
//! built-in defaults, validated in one pass that reports every problem at once.

pub mod cli;
mod endpoints;
pub mod file;
pub mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cli::{Cli, Command, ServeArgs};
pub use endpoints::parse_endpoint_url;
use endpoints::{cluster, endpoints};
use file::FileConfig;
use units::{parse_duration, parse_size};

use crate::cluster::ClusterTls;
use crate::ingest::handover::HandoverConfig;
use crate::ingest::Limits;
use crate::shipper::{EndpointConfig, RetryConfig};
use crate::wal::{Compression, Durability, FullPolicy, StartAt, WalConfig};

/// Default remote_write listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9091";
/// Default admin listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9092";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default storage: a VictoriaMetrics single node on this host.
pub const DEFAULT_REMOTE_WRITE: &str = "http://localhost:8428/api/v1/write";
/// Default health tick.
pub const DEFAULT_HEALTH_TICK: &str = "1s";
/// Default health expiry.
pub const DEFAULT_HEALTH_EXPIRY: &str = "5s";
/// Default largest compressed body (Prometheus sends well under 1 MiB per request).
pub const DEFAULT_MAX_BODY: &str = "32MiB";
/// Default largest decoded body.
pub const DEFAULT_MAX_DECODED: &str = "256MiB";
/// Default buffer cap.
pub const DEFAULT_BUFFER_MAX_BYTES: &str = "2GiB";
/// Default buffer age limit.
pub const DEFAULT_BUFFER_MAX_AGE: &str = "24h";
/// Default flush period in `batch` mode.
pub const DEFAULT_FLUSH_INTERVAL: &str = "200ms";
/// Default decoded size of one request to a storage when consecutive buffered writes are
/// joined (well under the usual receiver limits: Mimir 100 MiB, VictoriaMetrics 32 MiB).
pub const DEFAULT_MAX_BATCH_BYTES: &str = "4MiB";
/// Default request timeout to a storage.
pub const DEFAULT_ENDPOINT_TIMEOUT: &str = "30s";
/// Default raft RPC listener.
pub const DEFAULT_CLUSTER_LISTEN: &str = "0.0.0.0:9093";
/// Default cluster overlap window.
pub const DEFAULT_CLUSTER_OVERLAP: &str = "30s";
/// Default bytes of recent writes held per source for handovers.
pub const DEFAULT_HANDOVER_MAX_BYTES: &str = "64MiB";
/// Default graceful shutdown deadline.
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "30s";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// remote_write listener.
    pub listen: SocketAddr,
    /// Body limits.
    pub limits: Limits,
    /// Replica label (stripped before storage).
    pub replica_label: Option<String>,
    /// Group label.
    pub group_label: Option<String>,
    /// Rings of recent writes for gapless handovers.
    pub handover: HandoverConfig,
}

/// Election settings.
#[derive(Debug, Clone, Copy)]
pub struct ElectionConfig {
    /// Health check period.
    pub health_tick: Duration,
    /// Silence after which the promoted source is demoted.
    pub health_expiry: Duration,
}

/// Shipper settings.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Storages.
    pub endpoints: Vec<EndpointConfig>,
    /// Where a new endpoint's cursor starts.
    pub start_at: StartAt,
    /// Retry timing.
    pub retry: RetryConfig,
}

/// Cluster settings (present only when members are configured).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node's id.
    pub node_id: u64,
    /// Raft RPC listener.
    pub listen: SocketAddr,
    /// Every member, `id → host:port`.
    pub peers: BTreeMap<u64, String>,
    /// Shared secret of the raft RPCs.
    pub secret: String,
    /// Data time re-sent after a leader change / kept behind the watermark.
    pub overlap: Duration,
    /// Join an existing cluster instead of forming one.
    pub join: bool,
    /// TLS on the cluster listener and to the peers; `None`: plain HTTP.
    pub tls: Option<ClusterTls>,
}

/// Admin settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Admin listener.
    pub listen: SocketAddr,
    /// Bearer token required for mutations (and reads, with `token_reads`).
    pub token: Option<String>,
    /// Whether reads need the token too.
    pub token_reads: bool,
}

/// The validated configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Instance ID, if configured (else generated and kept in the data dir).
    pub instance_id: Option<String>,
    /// Ingest.
    pub ingest: IngestConfig,
    /// Election.
    pub election: ElectionConfig,
    /// Buffer.
    pub wal: WalConfig,
    /// Shipping.
    pub shipper: ShipperConfig,
    /// Admin.
    pub admin: AdminConfig,
    /// Cluster, when members are configured.
    pub cluster: Option<ClusterSettings>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// Graceful shutdown deadline.
    pub shutdown_timeout: Duration,
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    /// One line each.
    pub problems: Vec<String>,
}

/// Collects problems while parsing.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<String>);

impl Problems {
    pub(crate) fn take<T>(&mut self, what: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.0.push(format!("{what}: {e}"))).ok()
    }
    pub(crate) fn check(&mut self, ok: bool, msg: impl Into<String>) {
        if !ok {
            self.0.push(msg.into());
        }
    }
}

fn pick<'a>(flag: &'a Option<String>, file: &'a Option<String>, default: &'a str) -> &'a str {
    flag.as_deref().or(file.as_deref()).unwrap_or(default)
}

pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:9091"))
}

impl Config {
    /// Builds the configuration from flags, reading the TOML file they name.
    pub fn build(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path).map_err(|e| ConfigError { problems: vec![e] })?,
            None => FileConfig::default(),
        };
        Self::from_parts(args, &file)
    }

    /// Builds the configuration from flags and an already parsed file.
    pub fn from_parts(args: &ServeArgs, file: &FileConfig) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let listen = p.take(
            "listen",
            parse_addr(pick(&args.listen, &file.listen, DEFAULT_LISTEN)),
        );
        let admin_listen = p.take(
            "admin-listen",
            parse_addr(pick(
                &args.admin_listen,
                &file.admin_listen,
                DEFAULT_ADMIN_LISTEN,
            )),
        );
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let dur =
            |p: &mut Problems, what: &str, flag: &Option<String>, f: &Option<String>, d: &str| {
                p.take(what, parse_duration(pick(flag, f, d)))
            };
        let size =
            |p: &mut Problems, what: &str, flag: &Option<String>, f: &Option<String>, d: &str| {
                p.take(what, parse_size(pick(flag, f, d)))
            };
        let health_tick = dur(
            &mut p,
            "health-tick",
            &args.health_tick,
            &file.health_tick,
            DEFAULT_HEALTH_TICK,
        );
        let health_expiry = dur(
            &mut p,
            "health-expiry",
            &args.health_expiry,
            &file.health_expiry,
            DEFAULT_HEALTH_EXPIRY,
        );
        let max_body = size(
            &mut p,
            "max-body-bytes",
            &args.max_body_bytes,
            &file.max_body_bytes,
            DEFAULT_MAX_BODY,
        );
        let max_decoded = size(
            &mut p,
            "max-decoded-bytes",
            &args.max_decoded_bytes,
            &file.max_decoded_bytes,
            DEFAULT_MAX_DECODED,
        );
        let b = &file.buffer;
        let buffer_max = size(
            &mut p,
            "buffer-max-bytes",
            &args.buffer_max_bytes,
            &b.max_bytes,
            DEFAULT_BUFFER_MAX_BYTES,
        );
        let buffer_age = dur(
            &mut p,
            "buffer-max-age",
            &args.buffer_max_age,
            &b.max_age,
            DEFAULT_BUFFER_MAX_AGE,
        );
        let flush_interval = dur(
            &mut p,
            "flush-interval",
            &args.flush_interval,
            &b.flush_interval,
            DEFAULT_FLUSH_INTERVAL,
        );
        let shutdown_timeout = dur(
            &mut p,
            "shutdown-timeout",
            &args.shutdown_timeout,
            &file.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
        );
        let handover_window_set = args
            .handover_window
            .as_ref()
            .or(file.handover_window.as_ref());
        let mut handover_window = match handover_window_set {
            Some(w) => p.take("handover-window", parse_duration(w)),
            // A few expiry windows: the new source's data since the old one went silent.
            None => health_expiry.map(|e| e * 3),
        };
        let handover_max = size(
            &mut p,
            "handover-max-bytes",
            &args.handover_max_bytes,
            &file.handover_max_bytes,
            DEFAULT_HANDOVER_MAX_BYTES,
        );
        let full_policy = p.take(
            "buffer-full-policy",
            match pick(&args.buffer_full_policy, &b.full_policy, "drop-oldest") {
                "drop-oldest" => Ok(FullPolicy::DropOldest),
                "block" => Ok(FullPolicy::Block),
                o => Err(format!("{o:?} is not one of drop-oldest, block")),
            },
        );
        let durability = p.take(
            "durability",
            match pick(&args.durability, &b.durability, "sync") {
                "sync" => Ok(Durability::Sync),
                "batch" => Ok(Durability::Batch),
                "none" => Ok(Durability::None),
                o => Err(format!("{o:?} is not one of sync, batch, none")),
            },
        );
        let compression = p.take(
            "buffer-compression",
            match pick(&args.buffer_compression, &b.compression, "auto") {
                "auto" => Ok(Compression::Auto),
                "always" => Ok(Compression::Always),
                "never" => Ok(Compression::Never),
                o => Err(format!("{o:?} is not one of auto, always, never")),
            },
        );
        let s = &file.shipper;
        let start_at = p.take(
            "new-endpoint-start",
            match pick(&args.new_endpoint_start, &s.new_endpoint_start, "newest") {
                "newest" => Ok(StartAt::Newest),
                "oldest" => Ok(StartAt::Oldest),
                o => Err(format!("{o:?} is not one of newest, oldest")),
            },
        );
        let defaults = RetryConfig::default();
        let retry_initial = p.take(
            "shipper.retry_initial",
            s.retry_initial
                .as_deref()
                .map_or(Ok(defaults.initial), parse_duration),
        );
        let retry_max = p.take(
            "shipper.retry_max",
            s.retry_max
                .as_deref()
                .map_or(Ok(defaults.max), parse_duration),
        );
        let max_retry_after = p.take(
            "shipper.max_retry_after",
            s.max_retry_after
                .as_deref()
                .map_or(Ok(defaults.max_retry_after), parse_duration),
        );
        let log_format = p.take(
            "log-format",
            match pick(&args.log_format, &file.log_format, "text") {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                o => Err(format!("{o:?} is not one of text, json")),
            },
        );
        let log_level = pick(&args.log_level, &file.log_level, "info").to_owned();
        p.take(
            "log-level",
            tracing_subscriber::EnvFilter::try_new(&log_level)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
        let endpoints = endpoints(&mut p, args, file);
        let token = match (
            &args.admin_token,
            args.admin_token_file
                .as_ref()
                .or(file.admin_token_file.as_ref()),
        ) {
            (Some(t), _) => Some(t.trim().to_owned()),
            (None, Some(path)) => p.take(
                "admin-token-file",
                std::fs::read_to_string(path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| format!("{}: {e}", path.display())),
            ),
            (None, None) => None,
        };
        if let Some(t) = &token {
            p.check(!t.is_empty(), "admin token: must not be empty");
        }
        let cluster = cluster(&mut p, args, file);
        if cluster.is_some() && handover_window_set.is_none() {
            // In a cluster the raft leader may die with the promoted replica: the new
            // leader is elected first, and only then lets the replica expire, so the next
            // replica's ring must reach back over an election as well.
            handover_window =
                handover_window.map(|w| w + 2 * crate::cluster::node::DEFAULT_ELECTION_TIMEOUT_MAX);
        }
        let token_reads = args.admin_token_reads || file.admin_token_reads.unwrap_or(false);
        p.check(
            !token_reads || token.is_some(),
            "admin-token-reads needs an admin token",
        );
        let instance_id = args
            .instance_id
            .clone()
            .or_else(|| file.instance_id.clone());
        if let Some(id) = &instance_id {
            p.check(!id.trim().is_empty(), "instance-id: must not be empty");
        }
        let label = |flag: &Option<String>, f: &Option<String>| {
            flag.clone().or_else(|| f.clone()).filter(|l| !l.is_empty())
        };
        let replica_label = label(&args.replica_label, &file.replica_label);
        let group_label = label(&args.group_label, &file.group_label);

        if let (Some(t), Some(e)) = (health_tick, health_expiry) {
            p.check(!t.is_zero(), "health-tick: must be more than 0");
            p.check(
                t <= e,
                format!(
                    "health-tick ({}) must not be longer than health-expiry ({})",
                    humantime::format_duration(t),
                    humantime::format_duration(e)
                ),
            );
        }
        if let (Some(w), Some(e)) = (handover_window, health_expiry) {
            p.check(w > e, "handover-window must be longer than health-expiry (the new source's data since the old one went silent must still be held)");
        }
        if let (Some(b), Some(d)) = (max_body, max_decoded) {
            p.check(
                b > 0 && b <= d,
                "max-body-bytes must be more than 0 and at most max-decoded-bytes",
            );
        }
        if let (Some(b), Some(cap)) = (max_body, buffer_max) {
            p.check(
                cap >= b.saturating_mul(4),
                "buffer-max-bytes must hold at least 4 bodies of max-body-bytes",
            );
        }
        if let (Some(a), Some(b)) = (listen, admin_listen) {
            p.check(a != b, "listen and admin-listen must differ");
        }
        if !p.0.is_empty() {
            return Err(ConfigError { problems: p.0 });
        }
        // Every parse failure was recorded above; a None left here would be a bug.
        macro_rules! parsed {
            ($($v:ident),* $(,)?) => {
                $(let Some($v) = $v else {
                    return Err(ConfigError {
                        problems: vec![format!("internal: {} failed to parse silently", stringify!($v))],
                    });
                };)*
            };
        }
        parsed!(
            listen,
            admin_listen,
            health_tick,
            health_expiry,
            max_body,
            max_decoded,
            buffer_max,
            buffer_age,
            flush_interval,
            shutdown_timeout,
            full_policy,
            durability,
            compression,
            start_at,
            retry_initial,
            retry_max,
            max_retry_after,
            log_format,
            handover_window,
            handover_max,
        );
        Ok(Config {
            wal: WalConfig {
                dir: data_dir.join("wal"),
                max_bytes: buffer_max,
                max_age: buffer_age,
                full_policy,
                durability,
                flush_interval,
                compression,
            },
            data_dir,
            instance_id,
            ingest: IngestConfig {
                listen,
                limits: Limits {
                    max_body_bytes: max_body,
                    max_decoded_bytes: max_decoded,
                },
                replica_label,
                group_label,
                handover: HandoverConfig {
                    window: handover_window,
                    max_bytes_per_source: handover_max,
                    max_decoded_bytes: max_decoded,
                },
            },
            election: ElectionConfig {
                health_tick,
                health_expiry,
            },
            shipper: ShipperConfig {
                endpoints,
                start_at,
                retry: RetryConfig {
                    initial: retry_initial,
                    max: retry_max,
                    max_retry_after,
                },
            },
            cluster,
            admin: AdminConfig {
                listen: admin_listen,
                token,
                token_reads,
            },
            log_format,
            log_level,
            shutdown_timeout,
        })
    }
}

/// Reads and parses the TOML file.
pub fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| format!("config file {}: {}", path.display(), e.to_string().trim()))
}

#[cfg(test)]
mod tests;

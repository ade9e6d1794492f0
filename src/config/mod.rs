//! Configuration. Flags (with `HIGHLANDER_*` env vars) override an optional TOML file, and
//! the file overrides the built-in defaults.
//!
//! Invariant: validation runs in one pass and reports every problem at once, not only the
//! first.

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
use file::{BufferSection, FileConfig};
use units::{parse_duration, parse_size};

use crate::cluster::ClusterTls;
use crate::ingest::handover::HandoverConfig;
use crate::ingest::Limits;
use crate::shipper::{EndpointConfig, RetryConfig};
use crate::wal::{StartAt, WalConfig};

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
/// Default `--quarantine-max-age`.
pub const DEFAULT_QUARANTINE_MAX_AGE: &str = "7d";
/// Default flush period in `batch` mode.
pub const DEFAULT_FLUSH_INTERVAL: &str = "200ms";
/// Default size of a buffer segment file (hidden `--buffer-segment-bytes`).
pub const DEFAULT_BUFFER_SEGMENT_BYTES: &str = "32MiB";
/// Default decoded size of one request to a storage when consecutive buffered writes are
/// joined. It is well under the usual receiver limits (Mimir 100 MiB, VictoriaMetrics
/// 32 MiB).
pub const DEFAULT_MAX_BATCH_BYTES: &str = "4MiB";
/// Default requests out at once per storage that share no series (ordered lanes).
pub const DEFAULT_ORDERED_IN_FLIGHT: usize = 4;
/// Default request timeout to a storage.
pub const DEFAULT_ENDPOINT_TIMEOUT: &str = "30s";
/// Default raft RPC listener.
pub const DEFAULT_CLUSTER_LISTEN: &str = "0.0.0.0:9093";
/// Default cluster overlap window.
pub const DEFAULT_CLUSTER_OVERLAP: &str = "30s";
/// Default bytes of recent writes held on disk per source for handovers. It is the default
/// window (15 s) at 1 M samples/s, at about 30 compressed bytes a sample.
pub const DEFAULT_HANDOVER_MAX_BYTES: &str = "512MiB";
/// Default graceful shutdown deadline.
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "30s";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    /// Refuse requests with series that lack the replica label.
    pub require_ha_labels: bool,
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
    /// TLS on the cluster listener and to the peers. `None`: plain HTTP.
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

    /// Builds the configuration from flags and an already parsed file. Every setting of
    /// every component is parsed before any is refused, so all problems are reported at
    /// once.
    pub fn from_parts(args: &ServeArgs, file: &FileConfig) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let cluster = cluster(&mut p, args, file);
        let election = election(&mut p, args, file);
        let health = election.map(|e| (e.health_tick, e.health_expiry));
        let ingest = ingest(&mut p, args, file, health, cluster.is_some(), &data_dir);
        let wal = wal(&mut p, args, file, &data_dir);
        let shipper = shipper(&mut p, args, file);
        let admin = admin(&mut p, args, file);
        let shutdown_timeout = setting(
            &mut p,
            "shutdown-timeout",
            (&args.shutdown_timeout, &file.shutdown_timeout),
            DEFAULT_SHUTDOWN_TIMEOUT,
            parse_duration,
        );
        let log_format = setting(
            &mut p,
            "log-format",
            (&args.log_format, &file.log_format),
            "text",
            choice,
        );
        let log_level = pick(&args.log_level, &file.log_level, "info").to_owned();
        p.take(
            "log-level",
            tracing_subscriber::EnvFilter::try_new(&log_level)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
        let instance_id = args
            .instance_id
            .clone()
            .or_else(|| file.instance_id.clone());
        if let Some(id) = &instance_id {
            p.check(!id.trim().is_empty(), "instance-id: must not be empty");
        }
        if let (Some(i), Some(w)) = (&ingest, &wal) {
            p.check(
                w.max_bytes >= i.limits.max_body_bytes.saturating_mul(4),
                "buffer-max-bytes must hold at least 4 bodies of max-body-bytes",
            );
        }
        if let (Some(i), Some(a)) = (&ingest, &admin) {
            p.check(i.listen != a.listen, "listen and admin-listen must differ");
        }
        match (
            ingest,
            election,
            wal,
            shipper,
            admin,
            shutdown_timeout,
            log_format,
        ) {
            (
                Some(ingest),
                Some(election),
                Some(wal),
                Some(shipper),
                Some(admin),
                Some(s),
                Some(f),
            ) if p.0.is_empty() => Ok(Config {
                data_dir,
                instance_id,
                ingest,
                election,
                wal,
                shipper,
                admin,
                cluster,
                log_format: f,
                log_level,
                shutdown_timeout: s,
            }),
            _ if p.0.is_empty() => Err(ConfigError {
                problems: vec!["internal: a setting failed to parse silently".into()],
            }),
            _ => Err(ConfigError { problems: p.0 }),
        }
    }
}

/// One setting: from its flag, else its file field, else `default`. `parse` parses it. A
/// problem is recorded under `what`.
fn setting<T>(
    p: &mut Problems,
    what: &str,
    (flag, file): (&Option<String>, &Option<String>),
    default: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    p.take(what, parse(pick(flag, file, default)))
}

/// One of `T`'s values, by the kebab-case name that its serde form gives it. So the name is
/// spelled once, on the enum. A wrong name gives "unknown variant `x`, expected one of
/// `a`, `b`".
fn choice<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    T::deserialize(value.into_deserializer()).map_err(|e: serde::de::value::Error| e.to_string())
}

/// `--health-tick`, `--health-expiry`.
fn election(p: &mut Problems, args: &ServeArgs, file: &FileConfig) -> Option<ElectionConfig> {
    let tick = setting(
        p,
        "health-tick",
        (&args.health_tick, &file.health_tick),
        DEFAULT_HEALTH_TICK,
        parse_duration,
    );
    let expiry = setting(
        p,
        "health-expiry",
        (&args.health_expiry, &file.health_expiry),
        DEFAULT_HEALTH_EXPIRY,
        parse_duration,
    );
    let (tick, expiry) = (tick?, expiry?);
    p.check(!tick.is_zero(), "health-tick: must be more than 0");
    p.check(
        tick <= expiry,
        format!(
            "health-tick ({}) must not be longer than health-expiry ({})",
            humantime::format_duration(tick),
            humantime::format_duration(expiry)
        ),
    );
    Some(ElectionConfig {
        health_tick: tick,
        health_expiry: expiry,
    })
}

/// The listener, body limits, identity labels and handover rings.
fn ingest(
    p: &mut Problems,
    args: &ServeArgs,
    file: &FileConfig,
    health: Option<(Duration, Duration)>,
    clustered: bool,
    data_dir: &Path,
) -> Option<IngestConfig> {
    let expiry = health.map(|(_, e)| e);
    let listen = setting(
        p,
        "listen",
        (&args.listen, &file.listen),
        DEFAULT_LISTEN,
        parse_addr,
    );
    let max_body = setting(
        p,
        "max-body-bytes",
        (&args.max_body_bytes, &file.max_body_bytes),
        DEFAULT_MAX_BODY,
        parse_size,
    );
    let max_decoded = setting(
        p,
        "max-decoded-bytes",
        (&args.max_decoded_bytes, &file.max_decoded_bytes),
        DEFAULT_MAX_DECODED,
        parse_size,
    );
    let window_set = args
        .handover_window
        .as_ref()
        .or(file.handover_window.as_ref());
    let window = match window_set {
        Some(w) => p.take("handover-window", parse_duration(w)),
        // A few expiry windows: the new source's data since the old one went silent. In
        // a cluster, the raft leader may die with the promoted replica. The new leader is
        // elected first, and only then lets the replica expire. So the next replica's
        // ring must reach back over an election as well.
        None if clustered => {
            expiry.map(|e| e * 3 + 2 * crate::cluster::node::DEFAULT_ELECTION_TIMEOUT_MAX)
        }
        None => expiry.map(|e| e * 3),
    };
    let handover_max = setting(
        p,
        "handover-max-bytes",
        (&args.handover_max_bytes, &file.handover_max_bytes),
        DEFAULT_HANDOVER_MAX_BYTES,
        parse_size,
    );
    let label = |flag: &Option<String>, f: &Option<String>| {
        flag.clone().or_else(|| f.clone()).filter(|l| !l.is_empty())
    };
    let (max_body, max_decoded, window) = (max_body?, max_decoded?, window?);
    p.check(
        max_body > 0 && max_body <= max_decoded,
        "max-body-bytes must be more than 0 and at most max-decoded-bytes",
    );
    // A tick longer than the expiry is reported by the election's settings.
    if let Some((tick, expiry)) = health.filter(|(t, e)| t <= e) {
        let least = expiry + 2 * tick;
        p.check(window >= least, format!("handover-window ({}) must be at least health-expiry plus two health ticks ({}): the new source's data since the old one went silent must still be held when it takes over", humantime::format_duration(window), humantime::format_duration(least)));
    }
    let replica_label = label(&args.replica_label, &file.replica_label);
    let require_ha_labels = args.require_ha_labels || file.require_ha_labels.unwrap_or(false);
    p.check(
        !require_ha_labels || replica_label.is_some(),
        "require-ha-labels needs replica-label: without it no series carries the label it requires",
    );
    Some(IngestConfig {
        listen: listen?,
        limits: Limits {
            max_body_bytes: max_body,
            max_decoded_bytes: max_decoded,
        },
        replica_label,
        group_label: label(&args.group_label, &file.group_label),
        require_ha_labels,
        handover: HandoverConfig {
            window,
            max_bytes_per_source: handover_max?,
            max_decoded_bytes: max_decoded,
            dir: data_dir.join("handover"),
        },
    })
}

/// The buffer: `[buffer]` and the `--buffer-*`, `--durability`, `--flush-interval` flags.
fn wal(
    p: &mut Problems,
    args: &ServeArgs,
    file: &FileConfig,
    data_dir: &Path,
) -> Option<WalConfig> {
    let b = &file.buffer;
    let max_bytes = setting(
        p,
        "buffer-max-bytes",
        (&args.buffer_max_bytes, &b.max_bytes),
        DEFAULT_BUFFER_MAX_BYTES,
        parse_size,
    );
    let max_age = setting(
        p,
        "buffer-max-age",
        (&args.buffer_max_age, &b.max_age),
        DEFAULT_BUFFER_MAX_AGE,
        parse_duration,
    );
    let quarantine_max_age = setting(
        p,
        "quarantine-max-age",
        (&args.quarantine_max_age, &b.quarantine_max_age),
        DEFAULT_QUARANTINE_MAX_AGE,
        parse_duration,
    );
    let quarantine_max_bytes = quarantine_cap(p, args, b, max_bytes);
    let flush_interval = setting(
        p,
        "flush-interval",
        (&args.flush_interval, &b.flush_interval),
        DEFAULT_FLUSH_INTERVAL,
        parse_duration,
    );
    let segment_bytes = setting(
        p,
        "buffer-segment-bytes",
        (&args.buffer_segment_bytes, &None),
        DEFAULT_BUFFER_SEGMENT_BYTES,
        |s| match parse_size(s)? {
            n if n >= 4096 => Ok(n),
            _ => Err(format!("{s:?} is too small; use at least 4KiB")),
        },
    );
    let full_policy = setting(
        p,
        "buffer-full-policy",
        (&args.buffer_full_policy, &b.full_policy),
        "drop-oldest",
        choice,
    );
    let durability = setting(
        p,
        "durability",
        (&args.durability, &b.durability),
        "sync",
        choice,
    );
    let compression = setting(
        p,
        "buffer-compression",
        (&args.buffer_compression, &b.compression),
        "auto",
        choice,
    );
    Some(WalConfig {
        dir: data_dir.join("wal"),
        max_bytes: max_bytes?,
        max_age: max_age?,
        full_policy: full_policy?,
        durability: durability?,
        flush_interval: flush_interval?,
        segment_bytes: segment_bytes?,
        compression: compression?,
        quarantine_max_bytes: quarantine_max_bytes?,
        quarantine_max_age: quarantine_max_age?,
    })
}

/// `--quarantine-max-bytes`: an eighth of the buffer's cap by default, at most half of it
/// (the quarantine's bytes count against the buffer's cap).
fn quarantine_cap(
    p: &mut Problems,
    args: &ServeArgs,
    b: &BufferSection,
    buffer: Option<u64>,
) -> Option<u64> {
    let buffer = buffer?;
    let set = pick(&args.quarantine_max_bytes, &b.quarantine_max_bytes, "");
    if set.is_empty() {
        return Some(buffer / 8);
    }
    let cap = p.take("quarantine-max-bytes", parse_size(set))?;
    p.check(
        cap <= buffer / 2,
        format!("quarantine-max-bytes ({cap}) must be at most half of buffer-max-bytes ({buffer}): the quarantine's bytes count against the buffer's cap"),
    );
    Some(cap)
}

/// The storages, where a new one starts, and the retry timing.
fn shipper(p: &mut Problems, args: &ServeArgs, file: &FileConfig) -> Option<ShipperConfig> {
    let s = &file.shipper;
    let start_at = setting(
        p,
        "new-endpoint-start",
        (&args.new_endpoint_start, &s.new_endpoint_start),
        "newest",
        choice,
    );
    let defaults = RetryConfig::default();
    let mut retry = |what: &str, value: &Option<String>, default: Duration| {
        p.take(what, value.as_deref().map_or(Ok(default), parse_duration))
    };
    let initial = retry("shipper.retry_initial", &s.retry_initial, defaults.initial);
    let max = retry("shipper.retry_max", &s.retry_max, defaults.max);
    let max_retry_after = retry(
        "shipper.max_retry_after",
        &s.max_retry_after,
        defaults.max_retry_after,
    );
    let endpoints = endpoints(p, args, file);
    Some(ShipperConfig {
        endpoints,
        start_at: start_at?,
        retry: RetryConfig {
            initial: initial?,
            max: max?,
            max_retry_after: max_retry_after?,
        },
    })
}

/// The admin listener and its token.
fn admin(p: &mut Problems, args: &ServeArgs, file: &FileConfig) -> Option<AdminConfig> {
    let listen = setting(
        p,
        "admin-listen",
        (&args.admin_listen, &file.admin_listen),
        DEFAULT_ADMIN_LISTEN,
        parse_addr,
    );
    let token_file = args
        .admin_token_file
        .as_ref()
        .or(file.admin_token_file.as_ref());
    let token = match (&args.admin_token, token_file) {
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
    let token_reads = args.admin_token_reads || file.admin_token_reads.unwrap_or(false);
    p.check(
        !token_reads || token.is_some(),
        "admin-token-reads needs an admin token",
    );
    Some(AdminConfig {
        listen: listen?,
        token,
        token_reads,
    })
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

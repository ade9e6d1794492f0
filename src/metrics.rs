//! Process-wide Prometheus metrics: every counter and histogram that the parts record
//! into, in one registry.
//!
//! Gauges that describe current state (buffer size, lag, promoted sources) are filled at
//! scrape time. The admin `/metrics` handler fills them from the parts' handles. So they
//! can never drift from what the admin API shows.
//!
//! Names follow `highlander_<component>_<what>_<unit>`. Labels are low-cardinality:
//! outcome, reason, endpoint, group, source. A deployment has a handful of each.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric of the process, by component.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// `highlander_ingest_*`.
    pub ingest: IngestMetrics,
    /// `highlander_election_*`.
    pub election: ElectionMetrics,
    /// `highlander_handover_*`.
    pub handover: HandoverMetrics,
    /// `highlander_wal_*`.
    pub wal: WalMetrics,
    /// `highlander_shipper_*`.
    pub shipper: ShipperMetrics,
    /// `highlander_cluster_*`.
    pub cluster: ClusterMetrics,
    /// 1 when the node accepts writes (scrape time).
    pub ready: IntGauge,
}

/// The remote-write receiver.
pub struct IngestMetrics {
    /// Requests by outcome (`promoted`, `standby`, `rejected`).
    pub requests: IntCounterVec,
    /// Refused requests by reason (`snappy`, `unsorted_labels`, `buffer_full`, …).
    pub rejected: IntCounterVec,
    /// Samples (float + histogram) received, by outcome (`promoted`, `standby`).
    pub samples: IntCounterVec,
    /// Compressed bytes received, by outcome.
    pub bytes: IntCounterVec,
    /// Requests by the protocol version of their `Content-Type` (`1.0`, `2.0`).
    pub protocol: IntCounterVec,
    /// Time from request to answer, by outcome.
    pub duration: HistogramVec,
    /// Requests whose series carried several (replica, group) pairs, split per pair.
    pub split_requests: IntCounter,
    /// The parts those requests were split into.
    pub split_parts: IntCounter,
    /// Series without the replica label in split requests, stored as they are.
    pub non_ha_series: IntCounter,
}

/// The election of each group's promoted source.
pub struct ElectionMetrics {
    /// Changes by reason.
    pub changes: IntCounterVec,
    /// 1 per group for its promoted source (scrape time).
    pub promoted: IntGaugeVec,
    /// Sources seen per group (scrape time).
    pub sources: IntGaugeVec,
}

/// Handovers between the sources of a group.
pub struct HandoverMetrics {
    /// Handovers.
    pub total: IntCounter,
    /// Samples of the new source's held writes forwarded at handovers.
    pub backfilled: IntCounter,
    /// Samples of the new source dropped as overlap (at or before the handover point).
    pub trimmed: IntCounter,
    /// Time one handover took (learning the cut and trimming the backfill).
    pub duration: Histogram,
    /// Writes that could not be held on disk (no room, or an error), so they are not held.
    pub held_errors: IntCounter,
    /// Payload bytes of writes held for handovers on disk.
    pub held_disk_bytes: IntGauge,
    /// Payload bytes of writes held for handovers in memory.
    pub held_memory_bytes: IntGauge,
}

/// The write-ahead buffer.
pub struct WalMetrics {
    /// Time to insert one record (before the flush).
    pub append_duration: Histogram,
    /// Time of one flush.
    pub flush_duration: Histogram,
    /// Records made durable by one flush (group commit batch size).
    pub group_commit_records: Histogram,
    /// Records dropped by the buffer limits, by reason (`size`, `age`).
    pub dropped: IntCounterVec,
    /// Records found damaged (checksum) and removed or skipped.
    pub damaged: IntCounter,
    /// Records stored compact (zstd) because a storage was down.
    pub compact_records: IntCounter,
    /// 1 while new records are stored compact.
    pub compacting: IntGauge,
    /// Buffered records (scrape time).
    pub records: IntGauge,
    /// Buffered bytes (scrape time).
    pub bytes: IntGauge,
    /// Byte cap (scrape time).
    pub max_bytes: IntGauge,
    /// Age of the oldest buffered record (scrape time).
    pub oldest_age: Gauge,
    /// Quarantined batches (scrape time).
    pub quarantined: IntGauge,
    /// Bytes in the quarantine.
    pub quarantined_bytes: IntGauge,
    /// Quarantined batches dropped by the quarantine's limits, by reason (size, age).
    pub quarantine_dropped: IntCounterVec,
}

/// The workers that ship to the storages, per endpoint.
pub struct ShipperMetrics {
    /// Records delivered.
    pub sent_records: IntCounterVec,
    /// Samples delivered.
    pub sent_samples: IntCounterVec,
    /// Compressed bytes delivered.
    pub sent_bytes: IntCounterVec,
    /// Duration of one request to a storage.
    pub request_duration: HistogramVec,
    /// Retries.
    pub retries: IntCounterVec,
    /// Failed requests, by class (`5xx`, `429`, `413`, `4xx`, `network`).
    pub failures: IntCounterVec,
    /// Batches quarantined.
    pub quarantined: IntCounterVec,
    /// Requests sent, by endpoint and Remote-Write version (`1.0`, `2.0`).
    pub protocol: IntCounterVec,
    /// 2.0 records converted to 1.0 for a storage that takes 1.0.
    pub converted: IntCounterVec,
    /// Parts of 2.0 records that 1.0 cannot carry, dropped by the conversion, by endpoint
    /// and what (`start_timestamp`, `unknown_field`).
    pub conversion_dropped: IntCounterVec,
    /// Batches held back because they share a series with a request out (ordered
    /// lanes).
    pub lane_waits: IntCounterVec,
    /// Requests out (scrape time).
    pub in_flight: IntGaugeVec,
    /// Records the endpoint has not taken (scrape time).
    pub lag_records: IntGaugeVec,
    /// Bytes the endpoint has not taken (scrape time).
    pub lag_bytes: IntGaugeVec,
    /// Data-time lag (scrape time).
    pub lag_seconds: GaugeVec,
    /// 1 for the endpoint's current state, 0 for the others (scrape time).
    pub state: IntGaugeVec,
}

/// The raft cluster (all scrape time).
pub struct ClusterMetrics {
    /// 1 when this node leads.
    pub leader: IntGauge,
    /// The raft term.
    pub term: IntGauge,
    /// Members known to this node.
    pub members: IntGauge,
    /// 1 while this node's leader lease is fresh, so it may ship.
    pub lease: IntGauge,
    /// Leader only: log entries each member is missing.
    pub replication_lag: IntGaugeVec,
}

/// Registers `metric` and hands it back.
fn registered<M: Collector + Clone + 'static>(r: &Registry, metric: prometheus::Result<M>) -> M {
    let metric = metric.expect("valid metric");
    r.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn int_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    registered(r, IntCounter::new(name, help))
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    registered(r, IntGauge::new(name, help))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    registered(r, HistogramVec::new(opts, labels))
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    registered(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
    )
}

/// Latency buckets from 100 µs to ~52 s.
fn seconds() -> Vec<f64> {
    exponential_buckets(0.0001, 2.0, 20).expect("valid buckets")
}

impl IngestMetrics {
    fn new(r: &Registry) -> Self {
        let by_outcome = |name, help| counter(r, name, help, &["outcome"]);
        IngestMetrics {
            requests: by_outcome(
                "highlander_ingest_requests_total",
                "Remote-write requests received, by outcome.",
            ),
            rejected: counter(
                r,
                "highlander_ingest_rejected_total",
                "Remote-write requests refused, by reason.",
                &["reason"],
            ),
            samples: by_outcome(
                "highlander_ingest_samples_total",
                "Samples (float and histogram) received, by outcome.",
            ),
            bytes: by_outcome(
                "highlander_ingest_bytes_total",
                "Compressed request bytes received, by outcome.",
            ),
            protocol: counter(
                r,
                "highlander_ingest_protocol_requests_total",
                "Remote-write requests received, by the protocol version their Content-Type names (1.0 or 2.0).",
                &["protocol"],
            ),
            duration: histogram_vec(
                r,
                "highlander_ingest_request_duration_seconds",
                "Time from receiving a remote-write request to answering it, by outcome.",
                seconds(),
                &["outcome"],
            ),
            split_requests: int_counter(
                r,
                "highlander_ingest_split_requests_total",
                "Requests whose series carried several (replica, group) label pairs (an agent in front batched several sources), split per pair.",
            ),
            split_parts: int_counter(
                r,
                "highlander_ingest_split_parts_total",
                "Parts the split requests were split into (one per replica and group pair).",
            ),
            non_ha_series: int_counter(
                r,
                "highlander_ingest_non_ha_series_total",
                "Series without the replica label in split requests: stored as they are, not deduplicated.",
            ),
        }
    }
}

impl ElectionMetrics {
    fn new(r: &Registry) -> Self {
        ElectionMetrics {
            changes: counter(
                r,
                "highlander_election_changes_total",
                "Changes of the promoted source, by reason.",
                &["reason"],
            ),
            promoted: gauge_vec(
                r,
                "highlander_election_promoted_source_info",
                "1 for the promoted source of each group.",
                &["group", "source"],
            ),
            sources: gauge_vec(
                r,
                "highlander_election_sources",
                "Sources seen recently, per group.",
                &["group"],
            ),
        }
    }
}

impl HandoverMetrics {
    fn new(r: &Registry) -> Self {
        HandoverMetrics {
            total: int_counter(
                r,
                "highlander_handover_total",
                "Handovers from one source of a group to another.",
            ),
            backfilled: int_counter(
                r,
                "highlander_handover_backfilled_samples_total",
                "Samples of the new source's held writes forwarded at handovers.",
            ),
            trimmed: int_counter(
                r,
                "highlander_handover_trimmed_samples_total",
                "Samples of a new source dropped as overlap at or before the handover point.",
            ),
            duration: histogram(
                r,
                "highlander_handover_duration_seconds",
                "Time one handover took.",
                seconds(),
            ),
            held_errors: int_counter(
                r,
                "highlander_handover_held_errors_total",
                "Writes of groups with two or more sources that could not be held on disk for a handover (no room, or an error) and were not held.",
            ),
            held_disk_bytes: gauge(
                r,
                "highlander_handover_held_disk_bytes",
                "Payload bytes of recent writes held on disk for handovers.",
            ),
            held_memory_bytes: gauge(
                r,
                "highlander_handover_held_memory_bytes",
                "Payload bytes of recent writes held in memory for handovers.",
            ),
        }
    }
}

impl WalMetrics {
    fn new(r: &Registry) -> Self {
        WalMetrics {
            append_duration: histogram(
                r,
                "highlander_wal_append_duration_seconds",
                "Time to insert one record into the buffer, before its flush.",
                seconds(),
            ),
            flush_duration: histogram(
                r,
                "highlander_wal_flush_duration_seconds",
                "Time of one flush of the buffer to disk.",
                seconds(),
            ),
            group_commit_records: histogram(
                r,
                "highlander_wal_group_commit_records",
                "Records made durable by one flush (group commit batch size).",
                exponential_buckets(1.0, 2.0, 12).expect("valid buckets"),
            ),
            dropped: counter(
                r,
                "highlander_wal_dropped_records_total",
                "Records dropped by the buffer limits before every endpoint took them, by reason.",
                &["reason"],
            ),
            damaged: int_counter(
                r,
                "highlander_wal_damaged_records_total",
                "Buffered records found damaged (checksum mismatch) and skipped; their samples are lost.",
            ),
            compact_records: int_counter(
                r,
                "highlander_wal_compact_records_total",
                "Records stored zstd-compressed because a storage was down (see --buffer-compression).",
            ),
            compacting: gauge(
                r,
                "highlander_wal_compacting",
                "1 while new records are stored zstd-compressed (a storage is down, or --buffer-compression always).",
            ),
            records: gauge(r, "highlander_wal_records", "Records in the buffer."),
            bytes: gauge(r, "highlander_wal_bytes", "Bytes of the records in the buffer."),
            max_bytes: gauge(r, "highlander_wal_max_bytes", "Cap on the bytes of the buffer."),
            oldest_age: registered(
                r,
                Gauge::new(
                    "highlander_wal_oldest_age_seconds",
                    "Seconds since the oldest buffered record was received.",
                ),
            ),
            quarantined: gauge(
                r,
                "highlander_wal_quarantined_records",
                "Batches in the quarantine.",
            ),
            quarantined_bytes: gauge(
                r,
                "highlander_wal_quarantined_bytes",
                "Bytes in the quarantine; they count against the buffer's cap.",
            ),
            quarantine_dropped: counter(
                r,
                "highlander_wal_quarantine_dropped_total",
                "Quarantined batches dropped by the quarantine's limits (their samples are lost), by reason (size, age).",
                &["reason"],
            ),
        }
    }
}

impl ShipperMetrics {
    fn new(r: &Registry) -> Self {
        let per_endpoint = |name, help| counter(r, name, help, &["endpoint"]);
        let gauge_per_endpoint = |name, help| gauge_vec(r, name, help, &["endpoint"]);
        ShipperMetrics {
            sent_records: per_endpoint(
                "highlander_shipper_sent_records_total",
                "Records delivered, per endpoint.",
            ),
            sent_samples: per_endpoint(
                "highlander_shipper_sent_samples_total",
                "Samples delivered, per endpoint.",
            ),
            sent_bytes: per_endpoint(
                "highlander_shipper_sent_bytes_total",
                "Compressed bytes delivered, per endpoint.",
            ),
            request_duration: histogram_vec(
                r,
                "highlander_shipper_request_duration_seconds",
                "Duration of one request to a storage, per endpoint.",
                seconds(),
                &["endpoint"],
            ),
            retries: per_endpoint(
                "highlander_shipper_retries_total",
                "Requests retried after a retryable failure, per endpoint.",
            ),
            failures: counter(
                r,
                "highlander_shipper_failures_total",
                "Failed requests, per endpoint and class (5xx, 429, 413, 4xx, network).",
                &["endpoint", "class"],
            ),
            quarantined: per_endpoint(
                "highlander_shipper_quarantined_total",
                "Batches an endpoint rejected permanently and that were quarantined.",
            ),
            protocol: counter(
                r,
                "highlander_shipper_protocol_requests_total",
                "Requests sent to an endpoint, by the Remote-Write version they speak (1.0 or 2.0).",
                &["endpoint", "protocol"],
            ),
            converted: per_endpoint(
                "highlander_shipper_converted_records_total",
                "Remote-Write 2.0 records converted to 1.0 for an endpoint that takes 1.0.",
            ),
            conversion_dropped: counter(
                r,
                "highlander_shipper_conversion_dropped_total",
                "Parts of Remote-Write 2.0 records that 1.0 cannot carry, dropped when they are converted for an endpoint, by what (start_timestamp, unknown_field).",
                &["endpoint", "what"],
            ),
            lane_waits: per_endpoint(
                "highlander_shipper_lane_waits_total",
                "Batches held back because they share a series with a request out to the endpoint (ordered lanes keep every series in order).",
            ),
            in_flight: gauge_per_endpoint(
                "highlander_shipper_in_flight",
                "Requests out to an endpoint, each until its final answer (retries included).",
            ),
            lag_records: gauge_per_endpoint(
                "highlander_shipper_lag_records",
                "Buffered records an endpoint has not taken.",
            ),
            lag_bytes: gauge_per_endpoint(
                "highlander_shipper_lag_bytes",
                "Buffered bytes an endpoint has not taken.",
            ),
            lag_seconds: registered(
                r,
                GaugeVec::new(
                    Opts::new(
                        "highlander_shipper_lag_seconds",
                        "Data time between the oldest sample an endpoint has not taken and the newest buffered sample.",
                    ),
                    &["endpoint"],
                ),
            ),
            state: gauge_vec(
                r,
                "highlander_shipper_state",
                "1 for the current state of an endpoint's worker, 0 for the others.",
                &["endpoint", "state"],
            ),
        }
    }
}

impl ClusterMetrics {
    fn new(r: &Registry) -> Self {
        ClusterMetrics {
            leader: gauge(
                r,
                "highlander_cluster_leader",
                "1 when this node is the raft leader.",
            ),
            term: gauge(r, "highlander_cluster_term", "Current raft term."),
            members: gauge(
                r,
                "highlander_cluster_members",
                "Cluster members known to this node.",
            ),
            lease: gauge(
                r,
                "highlander_cluster_lease_fresh",
                "1 while this node leads with a fresh lease and may ship.",
            ),
            replication_lag: gauge_vec(
                r,
                "highlander_cluster_replication_lag_entries",
                "Leader only: raft log entries each member is missing.",
                &["member"],
            ),
        }
    }
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let p = prometheus::process_collector::ProcessCollector::for_self();
            r.register(Box::new(p)).expect("process collector");
        }
        Metrics {
            ingest: IngestMetrics::new(&r),
            election: ElectionMetrics::new(&r),
            handover: HandoverMetrics::new(&r),
            wal: WalMetrics::new(&r),
            shipper: ShipperMetrics::new(&r),
            cluster: ClusterMetrics::new(&r),
            ready: gauge(&r, "highlander_ready", "1 when the node accepts writes."),
            registry: r,
        }
    }
}

/// The process' metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Encodes every metric in the Prometheus text format.
pub fn encode() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&METRICS.registry.gather(), &mut buf) {
        tracing::error!(error = %e, "metrics: encoding failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}

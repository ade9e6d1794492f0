//! Process-wide Prometheus metrics: every counter and histogram the parts record into, in one
//! registry. Gauges that describe current state (buffer size, lag, promoted sources) are
//! filled from the parts' handles at scrape time by the admin `/metrics` handler, so they
//! can never drift from what the admin API shows.
//!
//! Names follow `highlander_<component>_<what>_<unit>`; labels are low-cardinality (outcome,
//! reason, endpoint, group, source — a deployment has a handful of each).

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric of the process.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Ingest requests by outcome (`promoted`, `standby`, `rejected`).
    pub ingest_requests: IntCounterVec,
    /// Refused ingest requests by reason (`snappy`, `unsorted_labels`, `buffer_full`, …).
    pub ingest_rejected: IntCounterVec,
    /// Samples (float + histogram) received, by outcome (`promoted`, `standby`).
    pub ingest_samples: IntCounterVec,
    /// Compressed bytes received, by outcome.
    pub ingest_bytes: IntCounterVec,
    /// Time from request to answer, by outcome.
    pub ingest_duration: HistogramVec,
    /// Election changes by reason.
    pub election_changes: IntCounterVec,
    /// Time to insert one record into the WAL (before the flush).
    pub wal_append_duration: prometheus::Histogram,
    /// Time of one flush of the WAL.
    pub wal_flush_duration: prometheus::Histogram,
    /// Records made durable by one flush (group commit batch size).
    pub wal_group_commit_records: prometheus::Histogram,
    /// Records dropped by the buffer limits, by reason (`size`, `age`).
    pub wal_dropped: IntCounterVec,
    /// Records found damaged (checksum) and removed or skipped.
    pub wal_damaged: IntCounter,
    /// Records stored compact (zstd) because a storage was down.
    pub wal_compact_records: IntCounter,
    /// 1 while new records are stored compact.
    pub wal_compacting: IntGauge,
    /// Records delivered, per endpoint.
    pub shipper_sent_records: IntCounterVec,
    /// Samples delivered, per endpoint.
    pub shipper_sent_samples: IntCounterVec,
    /// Compressed bytes delivered, per endpoint.
    pub shipper_sent_bytes: IntCounterVec,
    /// Duration of one request to a storage, per endpoint.
    pub shipper_request_duration: HistogramVec,
    /// Retries, per endpoint.
    pub shipper_retries: IntCounterVec,
    /// Failed requests, per endpoint and class (`5xx`, `429`, `413`, `4xx`, `network`).
    pub shipper_failures: IntCounterVec,
    /// Batches quarantined, per endpoint.
    pub shipper_quarantined: IntCounterVec,
    /// Buffered records (scrape time).
    pub wal_records: IntGauge,
    /// Buffered bytes (scrape time).
    pub wal_bytes: IntGauge,
    /// Byte cap (scrape time).
    pub wal_max_bytes: IntGauge,
    /// Age of the oldest buffered record (scrape time).
    pub wal_oldest_age: prometheus::Gauge,
    /// Quarantined batches (scrape time).
    pub wal_quarantined: IntGauge,
    /// Requests out to an endpoint (scrape time).
    pub shipper_in_flight: IntGaugeVec,
    /// Records an endpoint has not taken (scrape time).
    pub shipper_lag_records: IntGaugeVec,
    /// Bytes an endpoint has not taken (scrape time).
    pub shipper_lag_bytes: IntGaugeVec,
    /// Data-time lag of an endpoint (scrape time).
    pub shipper_lag_seconds: GaugeVec,
    /// 1 for the endpoint's current state, 0 for the others (scrape time).
    pub shipper_state: IntGaugeVec,
    /// 1 per group for its promoted source (scrape time).
    pub election_promoted: IntGaugeVec,
    /// Sources seen per group (scrape time).
    pub election_sources: IntGaugeVec,
    /// 1 when the node accepts writes (scrape time).
    pub ready: IntGauge,
    /// Cluster: 1 when this node leads (scrape time).
    pub cluster_leader: IntGauge,
    /// Cluster: the raft term (scrape time).
    pub cluster_term: IntGauge,
    /// Cluster: members known to this node (scrape time).
    pub cluster_members: IntGauge,
    /// Cluster: 1 while this node's leader lease is fresh, i.e. it may ship (scrape time).
    pub cluster_lease: IntGauge,
    /// Cluster, leader only: log entries each member is missing (scrape time).
    pub cluster_replication_lag: IntGaugeVec,
    /// Handovers between sources.
    pub handovers: IntCounter,
    /// Samples of the new source's held writes forwarded at handovers.
    pub handover_backfilled: IntCounter,
    /// Samples of the new source dropped as overlap (at or before the handover point).
    pub handover_trimmed: IntCounter,
    /// Time one handover took (learning the cut and trimming the backfill).
    pub handover_duration: prometheus::Histogram,
}

fn int_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// Latency buckets from 100 µs to ~52 s.
fn seconds() -> Vec<f64> {
    exponential_buckets(0.0001, 2.0, 20).expect("valid buckets")
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let p = prometheus::process_collector::ProcessCollector::for_self();
            r.register(Box::new(p)).expect("process collector");
        }
        let wal_oldest_age = prometheus::Gauge::new(
            "highlander_wal_oldest_age_seconds",
            "Seconds since the oldest buffered record was received.",
        )
        .expect("valid metric");
        r.register(Box::new(wal_oldest_age.clone()))
            .expect("unique metric");
        let shipper_lag_seconds = GaugeVec::new(
            Opts::new(
                "highlander_shipper_lag_seconds",
                "Data time between the oldest sample an endpoint has not taken and the newest buffered sample.",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        r.register(Box::new(shipper_lag_seconds.clone()))
            .expect("unique metric");
        let wal_damaged = IntCounter::new(
            "highlander_wal_damaged_records_total",
            "Buffered records found damaged (checksum mismatch) and skipped; their samples are lost.",
        )
        .expect("valid metric");
        r.register(Box::new(wal_damaged.clone()))
            .expect("unique metric");
        let wal_compact_records = IntCounter::new(
            "highlander_wal_compact_records_total",
            "Records stored zstd-compressed because a storage was down (see --buffer-compression).",
        )
        .expect("valid metric");
        r.register(Box::new(wal_compact_records.clone()))
            .expect("unique metric");
        let single = |h: HistogramVec| h.with_label_values(&[] as &[&str]);
        Metrics {
            ingest_requests: counter(
                &r,
                "highlander_ingest_requests_total",
                "Remote-write requests received, by outcome.",
                &["outcome"],
            ),
            ingest_rejected: counter(
                &r,
                "highlander_ingest_rejected_total",
                "Remote-write requests refused, by reason.",
                &["reason"],
            ),
            ingest_samples: counter(
                &r,
                "highlander_ingest_samples_total",
                "Samples (float and histogram) received, by outcome.",
                &["outcome"],
            ),
            ingest_bytes: counter(
                &r,
                "highlander_ingest_bytes_total",
                "Compressed request bytes received, by outcome.",
                &["outcome"],
            ),
            ingest_duration: histogram(
                &r,
                "highlander_ingest_request_duration_seconds",
                "Time from receiving a remote-write request to answering it, by outcome.",
                seconds(),
                &["outcome"],
            ),
            election_changes: counter(
                &r,
                "highlander_election_changes_total",
                "Changes of the promoted source, by reason.",
                &["reason"],
            ),
            wal_append_duration: single(histogram(
                &r,
                "highlander_wal_append_duration_seconds",
                "Time to insert one record into the buffer, before its flush.",
                seconds(),
                &[],
            )),
            wal_flush_duration: single(histogram(
                &r,
                "highlander_wal_flush_duration_seconds",
                "Time of one flush of the buffer to disk.",
                seconds(),
                &[],
            )),
            wal_group_commit_records: single(histogram(
                &r,
                "highlander_wal_group_commit_records",
                "Records made durable by one flush (group commit batch size).",
                exponential_buckets(1.0, 2.0, 12).expect("valid buckets"),
                &[],
            )),
            wal_dropped: counter(
                &r,
                "highlander_wal_dropped_records_total",
                "Records dropped by the buffer limits before every endpoint took them, by reason.",
                &["reason"],
            ),
            wal_damaged,
            wal_compact_records,
            wal_compacting: gauge(
                &r,
                "highlander_wal_compacting",
                "1 while new records are stored zstd-compressed (a storage is down, or --buffer-compression always).",
            ),
            shipper_sent_records: counter(
                &r,
                "highlander_shipper_sent_records_total",
                "Records delivered, per endpoint.",
                &["endpoint"],
            ),
            shipper_sent_samples: counter(
                &r,
                "highlander_shipper_sent_samples_total",
                "Samples delivered, per endpoint.",
                &["endpoint"],
            ),
            shipper_sent_bytes: counter(
                &r,
                "highlander_shipper_sent_bytes_total",
                "Compressed bytes delivered, per endpoint.",
                &["endpoint"],
            ),
            shipper_request_duration: histogram(
                &r,
                "highlander_shipper_request_duration_seconds",
                "Duration of one request to a storage, per endpoint.",
                seconds(),
                &["endpoint"],
            ),
            shipper_retries: counter(
                &r,
                "highlander_shipper_retries_total",
                "Requests retried after a retryable failure, per endpoint.",
                &["endpoint"],
            ),
            shipper_failures: counter(
                &r,
                "highlander_shipper_failures_total",
                "Failed requests, per endpoint and class (5xx, 429, 413, 4xx, network).",
                &["endpoint", "class"],
            ),
            shipper_quarantined: counter(
                &r,
                "highlander_shipper_quarantined_total",
                "Batches an endpoint rejected permanently and that were quarantined.",
                &["endpoint"],
            ),
            wal_records: gauge(&r, "highlander_wal_records", "Records in the buffer."),
            wal_bytes: gauge(
                &r,
                "highlander_wal_bytes",
                "Bytes of the records in the buffer.",
            ),
            wal_max_bytes: gauge(
                &r,
                "highlander_wal_max_bytes",
                "Cap on the bytes of the buffer.",
            ),
            wal_oldest_age,
            wal_quarantined: gauge(
                &r,
                "highlander_wal_quarantined_records",
                "Batches in the quarantine.",
            ),
            shipper_in_flight: gauge_vec(
                &r,
                "highlander_shipper_in_flight",
                "Requests out to an endpoint, each until its final answer (retries included).",
                &["endpoint"],
            ),
            shipper_lag_records: gauge_vec(
                &r,
                "highlander_shipper_lag_records",
                "Buffered records an endpoint has not taken.",
                &["endpoint"],
            ),
            shipper_lag_bytes: gauge_vec(
                &r,
                "highlander_shipper_lag_bytes",
                "Buffered bytes an endpoint has not taken.",
                &["endpoint"],
            ),
            shipper_lag_seconds,
            shipper_state: gauge_vec(
                &r,
                "highlander_shipper_state",
                "1 for the current state of an endpoint's worker, 0 for the others.",
                &["endpoint", "state"],
            ),
            election_promoted: gauge_vec(
                &r,
                "highlander_election_promoted_source_info",
                "1 for the promoted source of each group.",
                &["group", "source"],
            ),
            election_sources: gauge_vec(
                &r,
                "highlander_election_sources",
                "Sources seen recently, per group.",
                &["group"],
            ),
            ready: gauge(&r, "highlander_ready", "1 when the node accepts writes."),
            cluster_leader: gauge(
                &r,
                "highlander_cluster_leader",
                "1 when this node is the raft leader.",
            ),
            cluster_term: gauge(&r, "highlander_cluster_term", "Current raft term."),
            cluster_members: gauge(
                &r,
                "highlander_cluster_members",
                "Cluster members known to this node.",
            ),
            cluster_lease: gauge(
                &r,
                "highlander_cluster_lease_fresh",
                "1 while this node leads with a fresh lease and may ship.",
            ),
            cluster_replication_lag: gauge_vec(
                &r,
                "highlander_cluster_replication_lag_entries",
                "Leader only: raft log entries each member is missing.",
                &["member"],
            ),
            handovers: int_counter(
                &r,
                "highlander_handover_total",
                "Handovers from one source of a group to another.",
            ),
            handover_backfilled: int_counter(
                &r,
                "highlander_handover_backfilled_samples_total",
                "Samples of the new source's held writes forwarded at handovers.",
            ),
            handover_trimmed: int_counter(
                &r,
                "highlander_handover_trimmed_samples_total",
                "Samples of a new source dropped as overlap at or before the handover point.",
            ),
            handover_duration: single(histogram(
                &r,
                "highlander_handover_duration_seconds",
                "Time one handover took.",
                seconds(),
                &[],
            )),
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

//! Microbenchmarks of the per-request hot path, so a regression shows as a number:
//!
//! - `decode`: snappy + wire scan of a realistic Remote-Write 1.0 request (2000
//!   node_exporter-like series, one sample each), as received and with the replica label to
//!   strip (which re-encodes and re-compresses the body), and the wire scan alone;
//! - `election`: [`ElectionState::observe`] for the promoted source and for a standby, and
//!   [`ElectionState::tick`] over 100 groups of 2 sources;
//! - `wal_append`: `insert_all` + `wait_durable` of one ~50 KB record, durability `none`
//!   and `sync` (group commit, so one flush per append here);
//! - `handover`: learning where the old source's series end, and trimming a request by the
//!   cut (per series);
//! - `record_codec`: [`Record::encode`] / [`Record::decode`] of the same record, and the
//!   same with [`Record::encode_compact`] (zstd) and its decode (back to snappy).
//!
//! `cargo bench --bench hot_path` (add `-- --quick` for a fast look, or a group name to
//! filter, e.g. `-- decode`). The end-to-end comparison with vmagent is in `bench/`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use highlander::election::state::ElectionState;
use highlander::election::Observation;
use highlander::ingest::decode::decode;
use highlander::ingest::protocol::Version;
use highlander::ingest::trim::{learn_ends, trim, SeriesKey, SeriesMap};
use highlander::ingest::Limits;
use highlander::proto::{Label, Sample, TimeSeries, WriteRequest};
use highlander::wal::{
    Compression, Durability, FullPolicy, Record, RecordMeta, StartAt, Wal, WalConfig,
};
use highlander::wire::{scan, scan_v2, Wanted};

/// Series per request: Prometheus' default `max_samples_per_send` is 2000.
const SERIES: usize = 2_000;
const REPLICA_LABEL: &str = "__replica__";
/// A sample time in the recent past (ms since the epoch); the scan only reads it.
const TS_MS: i64 = 1_763_700_000_000;

const LIMITS: Limits = Limits {
    max_body_bytes: 64 << 20,
    max_decoded_bytes: 256 << 20,
};

/// A node_exporter-like request: 10 labels per series (11 with the replica label), sorted
/// by name as Prometheus sends them, one float sample each.
fn write_request(series: usize, replica: Option<&str>) -> WriteRequest {
    const MODES: [&str; 8] = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    const FILESYSTEMS: [(&str, &str, &str); 4] = [
        ("/dev/nvme0n1p1", "ext4", "/"),
        ("/dev/nvme0n1p2", "ext4", "/var/lib/prometheus"),
        ("tmpfs", "tmpfs", "/run"),
        ("/dev/nvme1n1", "xfs", "/srv/data"),
    ];
    const NICS: [&str; 4] = ["eth0", "eth1", "bond0", "lo"];
    let label = |name: &str, value: &str| Label {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let timeseries = (0..series)
        .map(|i| {
            // About 250 series per host, like one node_exporter scrape.
            let host = i / 250;
            let j = i % 250;
            let mut labels = Vec::with_capacity(11);
            let (name, specific): (&str, Vec<(&str, String)>) = match j {
                0..=127 => (
                    "node_cpu_seconds_total",
                    vec![
                        ("cpu", (j / 8).to_string()),
                        ("mode", MODES[j % 8].to_owned()),
                    ],
                ),
                128..=191 => {
                    let (device, fstype, mountpoint) = FILESYSTEMS[j % 4];
                    let metric = [
                        "node_filesystem_avail_bytes",
                        "node_filesystem_size_bytes",
                        "node_filesystem_free_bytes",
                        "node_filesystem_files_free",
                    ][(j / 4) % 4];
                    (
                        metric,
                        vec![
                            ("device", device.to_owned()),
                            ("fstype", fstype.to_owned()),
                            ("mountpoint", mountpoint.to_owned()),
                        ],
                    )
                }
                192..=223 => (
                    [
                        "node_network_receive_bytes_total",
                        "node_network_transmit_bytes_total",
                        "node_network_receive_packets_total",
                        "node_network_transmit_errs_total",
                    ][(j / 4) % 4],
                    vec![("device", NICS[j % 4].to_owned())],
                ),
                _ => (
                    [
                        "node_disk_read_bytes_total",
                        "node_disk_written_bytes_total",
                        "node_disk_io_time_seconds_total",
                    ][j % 3],
                    vec![("device", format!("nvme{}n1", j % 2))],
                ),
            };
            labels.push(label("__name__", name));
            if let Some(r) = replica {
                labels.push(label(REPLICA_LABEL, r));
            }
            labels.push(label("cluster", "eu-west-1-prod"));
            labels.push(label("datacenter", "eu-west-1b"));
            labels.push(label("env", "production"));
            labels.push(label(
                "instance",
                &format!("node-{host:03}.eu-west-1.prod.example.internal:9100"),
            ));
            labels.push(label("job", "node"));
            labels.push(label("region", "eu-west-1"));
            labels.push(label("team", "platform-observability"));
            labels.extend(specific.iter().map(|(n, v)| label(n, v)));
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: vec![Sample {
                    value: 1_234_567.25 + i as f64,
                    timestamp: TS_MS + (i % 7) as i64,
                }],
                ..Default::default()
            }
        })
        .collect();
    WriteRequest {
        timeseries,
        ..Default::default()
    }
}

/// The body as Prometheus sends it: protobuf, snappy block-compressed.
fn body(req: &WriteRequest) -> Bytes {
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map(Bytes::from)
        .expect("snappy accepts any input")
}

/// One accepted write of the decode benchmark's request (about 52 KB), as the WAL stores it.
fn record() -> Record {
    Record {
        group: "eu-west-1-prod".to_owned(),
        source: "prometheus-0".to_owned(),
        meta: RecordMeta {
            received_ms: TS_MS as u64 + 150,
            min_ts: TS_MS,
            max_ts: TS_MS + 6,
            series: SERIES as u32,
            samples: SERIES as u32,
            histograms: 0,
            exemplars: 0,
        },
        payload: body(&write_request(SERIES, None)),
        protocol: Version::V1,
    }
}

fn decode_benches(c: &mut Criterion) {
    let plain = body(&write_request(SERIES, None));
    let with_replica = body(&write_request(SERIES, Some("prometheus-0")));
    eprintln!(
        "decode: {SERIES} series, body {} B compressed / {} B raw (with {REPLICA_LABEL}: {} B)",
        plain.len(),
        snap::raw::decompress_len(&plain).unwrap_or(0),
        with_replica.len(),
    );
    let mut group = c.benchmark_group("decode");
    // Samples per second (one per series); criterion shows one throughput per benchmark,
    // so bytes per second = samples per second × the body size above / SERIES.
    group.throughput(Throughput::Elements(SERIES as u64));
    // No label configured (identity from the query): the body is stored as received.
    group.bench_function("as_received", |b| {
        b.iter(|| {
            decode(
                black_box(plain.clone()),
                LIMITS,
                Wanted::default(),
                Version::V1,
            )
            .expect("valid")
        })
    });
    // The wire scan alone (validation + timestamps), on the decompressed body.
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&plain)
        .expect("valid snappy");
    group.bench_function("scan_only", |b| {
        b.iter(|| scan(black_box(&raw), Wanted::default()).expect("valid"))
    });
    let wanted = Wanted {
        replica: Some(REPLICA_LABEL),
        ..Wanted::default()
    };
    let stripped = decode(with_replica.clone(), LIMITS, wanted, Version::V1).expect("valid");
    assert!(
        stripped.payload.len() < with_replica.len(),
        "label was stripped"
    );
    group.bench_function("strip_replica", |b| {
        b.iter(|| {
            decode(black_box(with_replica.clone()), LIMITS, wanted, Version::V1).expect("valid")
        })
    });
    // An agent's batch: the same number of series, half from each of two replicas. The
    // request is split per replica (a second pass), each part stripped and compressed.
    let mut mixed = write_request(SERIES / 2, Some("prometheus-0"));
    mixed
        .timeseries
        .extend(write_request(SERIES - SERIES / 2, Some("prometheus-1")).timeseries);
    let mixed = body(&mixed);
    let split = decode(mixed.clone(), LIMITS, wanted, Version::V1).expect("valid");
    assert_eq!(split.parts.len(), 2, "split in two");
    group.bench_function("split_two_replicas", |b| {
        b.iter(|| decode(black_box(mixed.clone()), LIMITS, wanted, Version::V1).expect("valid"))
    });
    // The same series sent as Remote-Write 2.0: decompressed and scanned, stored as
    // received (the conversion for a 1.0 storage happens when it is sent).
    let v2 = v2_body(&write_request(SERIES, None));
    let v2_replica = v2_body(&write_request(SERIES, Some("prometheus-0")));
    eprintln!(
        "decode: the 2.0 body is {} B compressed / {} B raw",
        v2.len(),
        snap::raw::decompress_len(&v2).unwrap_or(0),
    );
    group.bench_function("v2_as_received", |b| {
        b.iter(|| {
            decode(
                black_box(v2.clone()),
                LIMITS,
                Wanted::default(),
                Version::V2,
            )
            .expect("valid")
        })
    });
    let v2_raw = snap::raw::Decoder::new()
        .decompress_vec(&v2)
        .expect("valid snappy");
    group.bench_function("v2_scan_only", |b| {
        b.iter(|| scan_v2(black_box(&v2_raw), Wanted::default()).expect("valid"))
    });
    group.bench_function("v2_strip_replica", |b| {
        b.iter(|| {
            decode(black_box(v2_replica.clone()), LIMITS, wanted, Version::V2).expect("valid")
        })
    });
    group.finish();
}

/// The compressed 2.0 body of a 1.0 request, with metadata on every series as Prometheus
/// sends it.
fn v2_body(req: &WriteRequest) -> Bytes {
    let mut v2 = highlander::proto::v2::Request::from_v1(req);
    for t in &mut v2.timeseries {
        t.metadata = Some(Default::default());
    }
    let raw = v2.encode_to_vec();
    Bytes::from(
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("compress"),
    )
}

const GROUPS: usize = 100;
const EXPIRY_MS: u64 = 5_000;

fn obs<'a>(group: &'a str, source: &'a str) -> Observation<'a> {
    Observation {
        protocol: Default::default(),
        group,
        source,
        weight: 0,
        samples: SERIES as u64,
        data_ts: Some(TS_MS),
    }
}

/// 100 groups, each with `replica-a` promoted and `replica-b` as standby, both seen at
/// `now_ms`.
fn election_state(names: &[String], now_ms: u64) -> ElectionState {
    let mut state = ElectionState::new(EXPIRY_MS);
    for g in names {
        state.observe(obs(g, "replica-a"), now_ms);
        state.observe(obs(g, "replica-b"), now_ms);
    }
    state
}

fn election_benches(c: &mut Criterion) {
    let names: Vec<String> = (0..GROUPS)
        .map(|i| format!("k8s-eu-west-1-prod-{i:03}"))
        .collect();
    let start = TS_MS as u64;
    let mut group = c.benchmark_group("election");
    group.throughput(Throughput::Elements(1));

    let mut state = election_state(&names, start);
    let g = names[GROUPS / 2].as_str();
    let mut now = start;
    group.bench_function("observe_promoted", |b| {
        b.iter(|| {
            now += 1;
            state.observe(black_box(obs(g, "replica-a")), now)
        })
    });
    group.bench_function("observe_standby", |b| {
        b.iter(|| {
            now += 1;
            state.observe(black_box(obs(g, "replica-b")), now)
        })
    });

    // Per tick over every group, hence one element per group.
    group.throughput(Throughput::Elements(GROUPS as u64));
    let mut state = election_state(&names, start);
    group.bench_function("tick_steady_100x2", |b| {
        // Nobody is silent: the check that runs every health tick.
        b.iter(|| state.tick(black_box(start + 1)))
    });
    let state = election_state(&names, start);
    group.bench_function("tick_failover_100x2", |b| {
        // Worst case: every promoted source is silent past the expiry while its standby
        // wrote, so each group demotes and promotes.
        let mut silent = state.clone();
        for g in &names {
            silent.observe(obs(g, "replica-b"), start + EXPIRY_MS);
        }
        b.iter_batched_ref(
            || silent.clone(),
            |s| s.tick(black_box(start + EXPIRY_MS + 1)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Records appended between two garbage collections (outside the timing), so the buffer
/// stays around 12 MB whatever the iteration count.
const GC_EVERY: u64 = 256;

fn wal_config(dir: &Path, durability: Durability) -> WalConfig {
    WalConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(3600),
        full_policy: FullPolicy::Block,
        durability,
        flush_interval: Duration::from_millis(100),
        segment_bytes: 32 << 20,
        compression: Compression::Never,
        quarantine_max_bytes: 1 << 28,
        quarantine_max_age: Duration::from_secs(7 * 86_400),
    }
}

fn wal_benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let record = record();
    let records = std::slice::from_ref(&record);
    let mut group = c.benchmark_group("wal_append");
    group.throughput(Throughput::Bytes(record.encode().len() as u64));
    for (name, durability) in [("none", Durability::None), ("sync", Durability::Sync)] {
        if durability == Durability::Sync {
            // Disk-bound: one fsync per append (milliseconds here, and noisy on a shared
            // disk), so few samples keep the run short.
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(5));
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = Wal::open(wal_config(&dir.path().join("wal"), durability)).expect("open wal");
        wal.register_endpoints(&["bench".to_owned()], StartAt::Oldest)
            .expect("register endpoint");
        let shutdown = CancellationToken::new();
        let tasks = rt.block_on(async { wal.start(&shutdown) });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(GC_EVERY);
                    left -= chunk;
                    total += rt.block_on(async {
                        let started = Instant::now();
                        for _ in 0..chunk {
                            let seq = wal.insert_all(records).expect("insert");
                            wal.wait_durable(seq).await.expect("durable");
                        }
                        started.elapsed()
                    });
                    // The endpoint takes everything, the GC removes it.
                    let cursor = wal.cursor("bench").expect("cursor");
                    wal.advance_cursor("bench", cursor, wal.next_seq())
                        .expect("advance");
                    wal.collect_garbage().expect("gc");
                }
                total
            })
        });
        shutdown.cancel();
        assert!(
            rt.block_on(tasks.stopped(tokio::time::Instant::now() + Duration::from_secs(30))),
            "the WAL's tasks stop"
        );
    }
    group.finish();
}

fn codec_benches(c: &mut Criterion) {
    let record = record();
    let encoded = record.encode();
    let mut group = c.benchmark_group("record_codec");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode", |b| b.iter(|| black_box(&record).encode()));
    group.bench_function("decode", |b| {
        b.iter(|| Record::decode(black_box(&encoded)).expect("valid"))
    });
    // Compact records (stored while a storage is down): zstd in, snappy again out.
    let compact = record.encode_compact();
    group.bench_function("encode_compact", |b| {
        b.iter(|| black_box(&record).encode_compact())
    });
    group.bench_function("decode_compact", |b| {
        b.iter(|| Record::decode(black_box(&compact)).expect("valid"))
    });
    group.finish();
}

/// What a handover costs per series: learning where the old source's series end, and
/// trimming the new source's request by the cut.
fn handover_benches(c: &mut Criterion) {
    let raw = write_request(SERIES, Some("prometheus-0")).encode_to_vec();
    let key = SeriesKey::skipping([REPLICA_LABEL.as_bytes().to_vec()]);
    let mut group = c.benchmark_group("handover");
    group.throughput(Throughput::Elements(SERIES as u64));
    group.bench_function("learn_ends", |b| {
        b.iter_batched(
            SeriesMap::default,
            |mut ends| {
                learn_ends(black_box(&raw), &key, &mut ends).expect("valid");
                ends
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("trim_half", |b| {
        b.iter(|| trim(black_box(&raw), &key, |h| TS_MS + (h % 7) as i64 - 3).expect("valid"))
    });
    group.finish();
}

criterion_group!(
    benches,
    handover_benches,
    decode_benches,
    election_benches,
    wal_benches,
    codec_benches
);
criterion_main!(benches);

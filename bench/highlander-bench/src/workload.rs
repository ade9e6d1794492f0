//! The generated workload: node_exporter-like series and the pre-encoded request pool.
//!
//! The series look like a fleet of node_exporters that one Prometheus scrapes. Each
//! instance (`10.a.b.c:9100`, `job="node"`) has about 250 series of CPU, disk, network,
//! filesystem, memory, vmstat, netstat and scrape metrics. Each series has its usual
//! labels, sorted by name as the spec requires. Instances are added until the series count
//! is met.
//!
//! Request `j` of the pool carries one sample of each of the series
//! `[j * samples_per_request, (j + 1) * samples_per_request)`, as Prometheus' shards send
//! them. Walking the pool once (a *round*) sends every series once. The sender patches the
//! round's timestamp into every sample (see [`crate::snappy`]). So each series' timestamps
//! increase from round to round, and no sample repeats.

use highlander::proto::{v2, Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

use crate::snappy::{compress_protected, put_varint};
use crate::wire;

/// How many bytes the timestamp varint of every pooled sample takes. Millisecond times
/// from 1971 to 2109 all need exactly 6 bytes, so a patch never changes the length.
pub const TS_WIDTH: usize = 6;
const TS_MIN: i64 = 1 << 35;
const TS_MAX: i64 = (1 << 42) - 1;

/// What the workload is made of. The same parameters build the same workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// Distinct series.
    pub series: usize,
    /// Samples (= series) per request.
    pub samples_per_request: usize,
    /// Requests in the pool (a round); fewer than `series / samples_per_request` leaves
    /// some series out.
    pub pool: usize,
}

impl Shape {
    /// The shape for `series` series, filling `pool` (default: one round) requests.
    pub fn new(
        series: usize,
        samples_per_request: usize,
        pool: Option<usize>,
    ) -> Result<Self, String> {
        if series == 0 || samples_per_request == 0 {
            return Err("--series and --samples-per-request must be positive".into());
        }
        if samples_per_request > series {
            return Err(format!(
                "--samples-per-request {samples_per_request} exceeds --series {series}: a request carries one sample per series"
            ));
        }
        let round = series.div_ceil(samples_per_request);
        let pool = pool.unwrap_or(round);
        if pool == 0 || pool > round {
            return Err(format!(
                "--pool must be between 1 and {round} (one round of all series)"
            ));
        }
        Ok(Shape {
            series,
            samples_per_request,
            pool,
        })
    }
}

/// The Remote-Write version of the requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// `prometheus.WriteRequest`.
    #[default]
    #[value(name = "1.0")]
    V1,
    /// `io.prometheus.write.v2.Request`, one symbols table per request.
    #[value(name = "2.0")]
    V2,
}

impl Protocol {
    /// The `Content-Type` of a request.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::V1 => "application/x-protobuf",
            Protocol::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// The `X-Prometheus-Remote-Write-Version` of a request.
    pub fn version(self) -> &'static str {
        match self {
            Protocol::V1 => "0.1.0",
            Protocol::V2 => "2.0.0",
        }
    }
}

/// One pre-encoded request.
pub struct Template {
    /// Snappy-compressed `WriteRequest`, timestamps to be patched.
    pub body: Vec<u8>,
    /// Offsets of the timestamp varints in `body`.
    pub slots: Vec<u32>,
    /// Samples in the request.
    pub samples: u64,
    /// The series hash (see `wire::series_hash`) of every series, in order.
    pub series_hashes: Vec<u64>,
}

impl Template {
    /// A request body carrying `ts` as the timestamp of every sample.
    pub fn render(&self, ts: i64) -> Vec<u8> {
        let mut body = self.body.clone();
        let mut varint = Vec::with_capacity(10);
        put_varint(&mut varint, ts as u64);
        assert_eq!(
            varint.len(),
            TS_WIDTH,
            "timestamp {ts} out of the 6-byte varint range"
        );
        for &slot in &self.slots {
            let at = slot as usize;
            body[at..at + TS_WIDTH].copy_from_slice(&varint);
        }
        body
    }
}

/// The request pool and what it weighs.
pub struct Pool {
    /// The version the requests are encoded in.
    pub protocol: Protocol,
    /// Requests, in round order.
    pub templates: Vec<Template>,
    /// Decoded bytes of all requests.
    pub bytes_decoded: u64,
    /// Compressed bytes of all requests (our patchable encoding).
    pub bytes_compressed: u64,
    /// What `snap` would have made of the same requests, for comparison.
    pub bytes_snap_reference: u64,
}

/// Builds the pool in `protocol`. With `compress` false only the series hashes are computed
/// (enough to verify an acknowledgement log). The series hashes are those of the 1.0
/// encoding, which the sink receives whatever the relay was sent.
pub fn build(shape: Shape, compress: bool, protocol: Protocol) -> Result<Pool, String> {
    let catalog = catalog(shape.series);
    let placeholder = now_ms().clamp(TS_MIN, TS_MAX);
    let mut rng = SplitMix(0x5eed_0f0a);
    let mut pool = Pool {
        protocol,
        templates: Vec::with_capacity(shape.pool),
        bytes_decoded: 0,
        bytes_compressed: 0,
        bytes_snap_reference: 0,
    };
    for j in 0..shape.pool {
        let first = j * shape.samples_per_request;
        let last = (first + shape.samples_per_request).min(shape.series);
        let request = WriteRequest {
            timeseries: catalog[first..last]
                .iter()
                .map(|labels| TimeSeries {
                    labels: labels.clone(),
                    samples: vec![Sample {
                        value: rng.value(),
                        timestamp: placeholder,
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let raw = request.encode_to_vec();
        let wire::Layout {
            slots,
            series_hashes,
        } = wire::layout(&raw).map_err(|e| e.to_string())?;
        let (raw, slots) = match protocol {
            Protocol::V1 => (raw, slots),
            Protocol::V2 => {
                let raw = v2::Request::from_v1(&request).encode_to_vec();
                let slots = wire::sample_slots(&raw, 5).map_err(|e| e.to_string())?;
                (raw, slots)
            }
        };
        if slots.iter().any(|&(_, len)| len != TS_WIDTH) {
            return Err("a timestamp varint is not 6 bytes long".into());
        }
        pool.bytes_decoded += raw.len() as u64;
        let (body, slots) = if compress {
            let packed = compress_protected(&raw, &slots);
            pool.bytes_compressed += packed.bytes.len() as u64;
            let reference = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .map_err(|e| e.to_string())?;
            pool.bytes_snap_reference += reference.len() as u64;
            (packed.bytes, packed.slots)
        } else {
            (Vec::new(), Vec::new())
        };
        pool.templates.push(Template {
            body,
            slots,
            samples: (last - first) as u64,
            series_hashes,
        });
    }
    Ok(pool)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A tiny deterministic PRNG (SplitMix64): the workload must be the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Values like a node_exporter's: byte counts, counters with decimals, small gauges.
    fn value(&mut self) -> f64 {
        let r = self.next();
        match r % 4 {
            0 => ((r >> 8) % 64_000_000_000) as f64,
            1 => ((r >> 8) % 10_000_000) as f64 / 100.0,
            2 => ((r >> 8) % 100) as f64,
            _ => ((r >> 8) % 1_000_000) as f64 / 1000.0,
        }
    }
}

/// One metric family of a node_exporter: a name and its label combinations.
struct Family {
    names: &'static [&'static str],
    labels: Vec<Vec<(&'static str, String)>>,
}

fn families() -> Vec<Family> {
    fn combos(keys: &[&'static str], values: &[&[&str]]) -> Vec<Vec<(&'static str, String)>> {
        let mut out = vec![Vec::new()];
        for (key, vals) in keys.iter().zip(values) {
            out = out
                .into_iter()
                .flat_map(|prefix: Vec<(&'static str, String)>| {
                    vals.iter().map(move |v| {
                        let mut next = prefix.clone();
                        next.push((*key, (*v).to_string()));
                        next
                    })
                })
                .collect();
        }
        out
    }
    let cpus: Vec<String> = (0..8).map(|c| c.to_string()).collect();
    let cpus: Vec<&str> = cpus.iter().map(String::as_str).collect();
    let disks: &[&str] = &["dm-0", "nvme0n1", "sda", "sdb"];
    let nics: &[&str] = &["docker0", "eth0", "eth1", "lo"];
    let collectors: &[&str] = &[
        "arp",
        "conntrack",
        "cpu",
        "diskstats",
        "filesystem",
        "loadavg",
        "meminfo",
        "netdev",
        "netstat",
        "stat",
        "time",
        "vmstat",
    ];
    let filesystems: Vec<Vec<(&'static str, String)>> = [
        ("/dev/sda1", "ext4", "/"),
        ("/dev/sdb1", "xfs", "/data"),
        ("/dev/nvme0n1p1", "vfat", "/boot/efi"),
        ("tmpfs", "tmpfs", "/run"),
    ]
    .iter()
    .map(|(d, f, m)| {
        vec![
            ("device", d.to_string()),
            ("fstype", f.to_string()),
            ("mountpoint", m.to_string()),
        ]
    })
    .collect();
    vec![
        Family {
            names: &["node_cpu_seconds_total"],
            labels: combos(
                &["cpu", "mode"],
                &[
                    &cpus,
                    &[
                        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
                    ],
                ],
            ),
        },
        Family {
            names: &["node_cpu_guest_seconds_total"],
            labels: combos(&["cpu", "mode"], &[&cpus, &["nice", "user"]]),
        },
        Family {
            names: &[
                "node_disk_io_now",
                "node_disk_io_time_seconds_total",
                "node_disk_read_bytes_total",
                "node_disk_read_time_seconds_total",
                "node_disk_reads_completed_total",
                "node_disk_write_time_seconds_total",
                "node_disk_writes_completed_total",
                "node_disk_written_bytes_total",
            ],
            labels: combos(&["device"], &[disks]),
        },
        Family {
            names: &[
                "node_network_mtu_bytes",
                "node_network_receive_bytes_total",
                "node_network_receive_drop_total",
                "node_network_receive_errs_total",
                "node_network_receive_packets_total",
                "node_network_transmit_bytes_total",
                "node_network_transmit_drop_total",
                "node_network_transmit_errs_total",
                "node_network_transmit_packets_total",
                "node_network_up",
            ],
            labels: combos(&["device"], &[nics]),
        },
        Family {
            names: &[
                "node_filesystem_avail_bytes",
                "node_filesystem_device_error",
                "node_filesystem_files",
                "node_filesystem_files_free",
                "node_filesystem_free_bytes",
                "node_filesystem_readonly",
                "node_filesystem_size_bytes",
            ],
            labels: filesystems,
        },
        Family {
            names: &[
                "node_memory_Active_bytes",
                "node_memory_Buffers_bytes",
                "node_memory_Cached_bytes",
                "node_memory_Committed_AS_bytes",
                "node_memory_Dirty_bytes",
                "node_memory_Inactive_bytes",
                "node_memory_MemAvailable_bytes",
                "node_memory_MemFree_bytes",
                "node_memory_MemTotal_bytes",
                "node_memory_Shmem_bytes",
                "node_memory_Slab_bytes",
                "node_memory_SwapFree_bytes",
                "node_memory_SwapTotal_bytes",
                "node_memory_Writeback_bytes",
                "node_boot_time_seconds",
                "node_context_switches_total",
                "node_entropy_available_bits",
                "node_filefd_allocated",
                "node_filefd_maximum",
                "node_forks_total",
                "node_intr_total",
                "node_load1",
                "node_load15",
                "node_load5",
                "node_procs_blocked",
                "node_procs_running",
                "node_time_seconds",
                "node_vmstat_oom_kill",
                "node_vmstat_pgfault",
                "node_vmstat_pgmajfault",
                "node_vmstat_pgpgin",
                "node_vmstat_pgpgout",
                "node_vmstat_pswpin",
                "node_vmstat_pswpout",
                "node_netstat_Icmp_InErrors",
                "node_netstat_Tcp_ActiveOpens",
                "node_netstat_Tcp_CurrEstab",
                "node_netstat_Tcp_InErrs",
                "node_netstat_Tcp_PassiveOpens",
                "node_netstat_Tcp_RetransSegs",
                "node_netstat_Udp_InDatagrams",
                "node_netstat_Udp_InErrors",
                "node_netstat_Udp_OutDatagrams",
                "scrape_duration_seconds",
                "scrape_samples_post_metric_relabeling",
                "scrape_samples_scraped",
                "scrape_series_added",
                "up",
            ],
            labels: vec![Vec::new()],
        },
        Family {
            names: &[
                "node_scrape_collector_duration_seconds",
                "node_scrape_collector_success",
            ],
            labels: combos(&["collector"], &[collectors]),
        },
    ]
}

/// The first `count` series of the fleet, labels sorted by name.
pub fn catalog(count: usize) -> Vec<Vec<Label>> {
    let families = families();
    let mut out = Vec::with_capacity(count);
    let mut host = 0u32;
    while out.len() < count {
        let instance = format!(
            "10.{}.{}.{}:9100",
            (host >> 16) & 0xff,
            (host >> 8) & 0xff,
            host & 0xff
        );
        'families: for family in &families {
            for name in family.names {
                for extra in &family.labels {
                    if out.len() == count {
                        break 'families;
                    }
                    let mut labels: Vec<Label> = Vec::with_capacity(extra.len() + 3);
                    labels.push(label("__name__", name));
                    labels.push(label("instance", &instance));
                    labels.push(label("job", "node"));
                    labels.extend(extra.iter().map(|(k, v)| label(k, v)));
                    labels.sort_by(|a, b| a.name.cmp(&b.name));
                    out.push(labels);
                }
            }
        }
        host += 1;
    }
    out
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_string(),
        value: value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_unique_and_sorted() {
        let series = catalog(5000);
        assert_eq!(series.len(), 5000);
        let mut seen = std::collections::HashSet::new();
        for labels in &series {
            assert!(
                labels.windows(2).all(|w| w[0].name < w[1].name),
                "{labels:?}"
            );
            assert!(seen.insert(labels.clone()), "duplicate series {labels:?}");
        }
    }

    #[test]
    fn rendered_2_0_requests_decode_with_the_new_timestamp() {
        let shape = Shape::new(3000, 1000, None).expect("valid shape");
        let pool = build(shape, true, Protocol::V2).expect("builds");
        let ts = 1_800_000_000_123;
        let body = pool.templates[2].render(ts);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("snappy");
        let request = v2::Request::decode(raw.as_slice()).expect("protobuf");
        assert_eq!(request.symbols[0], "");
        assert_eq!(request.timeseries.len(), 1000);
        assert!(request
            .timeseries
            .iter()
            .all(|s| s.samples.len() == 1 && s.samples[0].timestamp == ts));
        let v1 = build(shape, false, Protocol::V1).expect("builds");
        assert_eq!(
            pool.templates[2].series_hashes, v1.templates[2].series_hashes,
            "the hashes of the 1.0 series the sink receives"
        );
    }

    #[test]
    fn rendered_requests_decode_with_the_new_timestamp() {
        let shape = Shape::new(3000, 1000, None).expect("valid shape");
        let pool = build(shape, true, Protocol::V1).expect("builds");
        assert_eq!(pool.templates.len(), 3);
        let ts = 1_800_000_000_123;
        let body = pool.templates[1].render(ts);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("snappy");
        let request = WriteRequest::decode(raw.as_slice()).expect("protobuf");
        assert_eq!(request.timeseries.len(), 1000);
        assert!(request
            .timeseries
            .iter()
            .all(|s| s.samples.len() == 1 && s.samples[0].timestamp == ts));
        let mut hashes = Vec::new();
        wire::for_each_sample(&raw, |h, _| hashes.push(h)).expect("scan");
        assert_eq!(hashes, pool.templates[1].series_hashes);
        assert!(
            pool.bytes_compressed < pool.bytes_snap_reference * 2,
            "patchable encoding stays near snap: {} vs {}",
            pool.bytes_compressed,
            pool.bytes_snap_reference
        );
    }

    #[test]
    fn shape_rejects_nonsense() {
        assert!(Shape::new(10, 20, None).is_err());
        assert!(Shape::new(100, 10, Some(11)).is_err());
        assert_eq!(Shape::new(100, 30, None).map(|s| s.pool), Ok(4));
    }
}

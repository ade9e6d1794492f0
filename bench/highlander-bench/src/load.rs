//! `highlander-bench load`: posts the pre-encoded pool as a Prometheus would. It uses a
//! fixed number of connections and an optional request rate, for a fixed time. It reports
//! what got through as one JSON object.
//!
//! Requests are numbered globally: request `k` is pool entry `k % pool` of round
//! `k / pool`. A round's timestamp comes from the wall clock when its first request is
//! scheduled. It is at least 1 ms past the previous round's timestamp. So each series'
//! timestamps strictly increase and stay near "now". With `--timestamp-parity`, every
//! round's timestamp is even (or odd). Two generators that send the same series then
//! never send the same sample, even when their rounds start in the same millisecond.
//!
//! With a rate, request `k` is due at `start + k / rate`. The schedule does not slow down
//! when the server does. Latency is measured from the actual send, so a saturated server
//! shows in `requests_per_s`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::workload::{self, Pool, Shape};

/// Everything `load` needs (parsed by `main`).
pub struct LoadConfig {
    /// Write URL, query included.
    pub url: url::Url,
    /// The workload.
    pub shape: Shape,
    /// Connections / requests in flight.
    pub concurrency: usize,
    /// Requests per second. 0 = as fast as the server answers.
    pub rate: f64,
    /// How long new requests are started.
    pub duration: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Where to write the acknowledgement log (pool index, timestamp and status of every
    /// 2xx).
    pub ack_log: Option<PathBuf>,
    /// Round timestamps only even or only odd (none: any).
    pub parity: Option<Parity>,
    /// Wall-clock time (ms since the epoch) to send the first request at, after the pool
    /// is built; none = at once. Lets two generators start a known time apart.
    pub start_at_ms: Option<i64>,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// The Remote-Write version sent.
    pub protocol: workload::Protocol,
}

/// Which round timestamps a generator takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Parity {
    /// Even milliseconds only.
    Even,
    /// Odd milliseconds only.
    Odd,
}

impl Parity {
    /// The first timestamp at or after `ts` of this parity.
    fn at_or_after(self, ts: i64) -> i64 {
        let odd = ts.rem_euclid(2) == 1;
        if odd == (self == Parity::Odd) {
            ts
        } else {
            ts + 1
        }
    }
}

/// The global request schedule.
struct Schedule {
    start: Instant,
    deadline: Instant,
    rate: f64,
    pool: u64,
    parity: Option<Parity>,
    state: Mutex<RoundClock>,
}

struct RoundClock {
    next: u64,
    round: Option<u64>,
    round_ts: i64,
}

/// One request to send.
struct Ticket {
    index: usize,
    ts: i64,
    due: Option<Instant>,
}

impl Schedule {
    fn next(&self) -> Option<Ticket> {
        let (k, ts) = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let k = s.next;
            s.next += 1;
            let round = k / self.pool;
            if s.round != Some(round) {
                s.round = Some(round);
                let ts = workload::now_ms().max(s.round_ts + 1);
                s.round_ts = self.parity.map_or(ts, |p| p.at_or_after(ts));
            }
            (k, s.round_ts)
        };
        let due =
            (self.rate > 0.0).then(|| self.start + Duration::from_secs_f64(k as f64 / self.rate));
        if due.unwrap_or_else(Instant::now) >= self.deadline {
            return None;
        }
        Some(Ticket {
            index: (k % self.pool) as usize,
            ts,
            due,
        })
    }
}

/// Live counters for the progress line.
#[derive(Default)]
struct Live {
    requests: AtomicU64,
    acked_samples: AtomicU64,
    failures: AtomicU64,
}

/// One worker's tally. The tallies are merged at the end.
struct Tally {
    latency_us: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    requests: u64,
    sent_samples: u64,
    sent_bytes: u64,
    acked_requests: u64,
    acked_samples: u64,
    acked_bytes: u64,
    acks: Vec<Ack>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            // 1 µs to 1 h. `saturating_record` clamps; it does not grow the range.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static bounds are valid"),
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            requests: 0,
            sent_samples: 0,
            sent_bytes: 0,
            acked_requests: 0,
            acked_samples: 0,
            acked_bytes: 0,
            acks: Vec::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (k, v) in other.status {
            *self.status.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.requests += other.requests;
        self.sent_samples += other.sent_samples;
        self.sent_bytes += other.sent_bytes;
        self.acked_requests += other.acked_requests;
        self.acked_samples += other.acked_samples;
        self.acked_bytes += other.acked_bytes;
        self.acks.extend(other.acks);
    }
}

/// Runs the load and returns the report.
pub async fn run(config: LoadConfig) -> Result<serde_json::Value, String> {
    highlander::shipper::client::install_crypto_provider();
    let built = Instant::now();
    let shape = config.shape;
    let pool = tokio::task::spawn_blocking(move || workload::build(shape, true, config.protocol))
        .await
        .map_err(|e| e.to_string())??;
    let build_s = built.elapsed().as_secs_f64();
    let pool = Arc::new(pool);

    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(config.concurrency)
        .timeout(config.timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;

    if let Some(at) = config.start_at_ms {
        let wait = at.saturating_sub(workload::now_ms());
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }
    let start = Instant::now();
    let started_ms = workload::now_ms();
    let schedule = Arc::new(Schedule {
        start,
        deadline: start + config.duration,
        rate: config.rate,
        pool: pool.templates.len() as u64,
        parity: config.parity,
        state: Mutex::new(RoundClock {
            next: 0,
            round: None,
            round_ts: 0,
        }),
    });
    let live = Arc::new(Live::default());
    let progress = config.progress.then(|| {
        let live = live.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "{}",
                    json!({
                        "t": start.elapsed().as_secs_f64(),
                        "unix_ms": workload::now_ms(),
                        "requests": live.requests.load(Ordering::Relaxed),
                        "acked_samples": live.acked_samples.load(Ordering::Relaxed),
                        "failures": live.failures.load(Ordering::Relaxed),
                    })
                );
            }
        })
    });

    let keep_acks = config.ack_log.is_some();
    let workers: Vec<_> = (0..config.concurrency)
        .map(|_| {
            tokio::spawn(worker(
                client.clone(),
                config.url.clone(),
                pool.clone(),
                schedule.clone(),
                live.clone(),
                keep_acks,
            ))
        })
        .collect();
    let mut total = Tally::new();
    for w in workers {
        total.merge(w.await.map_err(|e| format!("a worker failed: {e}"))?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(p) = progress {
        p.abort();
    }

    if let Some(path) = &config.ack_log {
        write_ack_log(path, shape, &total.acks)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }

    let ms = |q: f64| total.latency_us.value_at_quantile(q) as f64 / 1000.0;
    let failures: u64 = total.errors.values().sum::<u64>()
        + total
            .status
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum::<u64>();
    Ok(json!({
        "url": config.url.as_str(),
        "protocol": format!("{:?}", config.protocol),
        "series": shape.series,
        "samples_per_request": shape.samples_per_request,
        "pool_requests": pool.templates.len(),
        "concurrency": config.concurrency,
        "rate_limit": config.rate,
        "started_unix_ms": started_ms,
        "duration_s": elapsed,
        "requests": total.requests,
        "acked_requests": total.acked_requests,
        "failed_requests": failures,
        "sent_samples": total.sent_samples,
        "acked_samples": total.acked_samples,
        "sent_bytes": total.sent_bytes,
        "acked_bytes": total.acked_bytes,
        "requests_per_s": total.acked_requests as f64 / elapsed,
        "samples_per_s": total.acked_samples as f64 / elapsed,
        "bytes_per_s": total.acked_bytes as f64 / elapsed,
        "latency_ms": {
            "p50": ms(0.5),
            "p90": ms(0.9),
            "p99": ms(0.99),
            "max": total.latency_us.max() as f64 / 1000.0,
            "mean": total.latency_us.mean() / 1000.0,
        },
        "status": total.status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "errors": total.errors.values().sum::<u64>(),
        "error_kinds": total.errors,
        "pool": {
            "build_s": build_s,
            "bytes_decoded": pool.bytes_decoded,
            "bytes_compressed": pool.bytes_compressed,
            "bytes_snap_reference": pool.bytes_snap_reference,
            "compression_ratio": pool.bytes_decoded as f64 / pool.bytes_compressed.max(1) as f64,
        },
    }))
}

async fn worker(
    client: reqwest::Client,
    url: url::Url,
    pool: Arc<Pool>,
    schedule: Arc<Schedule>,
    live: Arc<Live>,
    keep_acks: bool,
) -> Tally {
    let mut tally = Tally::new();
    while let Some(ticket) = schedule.next() {
        if let Some(due) = ticket.due {
            tokio::time::sleep_until(due.into()).await;
        }
        let template = &pool.templates[ticket.index];
        let body = template.render(ticket.ts);
        let bytes = body.len() as u64;
        tally.requests += 1;
        tally.sent_samples += template.samples;
        tally.sent_bytes += bytes;
        let sent = Instant::now();
        let result = client
            .post(url.clone())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", pool.protocol.content_type())
            .header("X-Prometheus-Remote-Write-Version", pool.protocol.version())
            .header("User-Agent", "highlander-bench")
            .body(body)
            .send()
            .await;
        let outcome = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the answer so the connection goes back to the pool.
                match response.bytes().await {
                    Ok(_) => Ok(status),
                    Err(e) => Err(error_kind(&e)),
                }
            }
            Err(e) => Err(error_kind(&e)),
        };
        let took = sent.elapsed().as_micros() as u64;
        live.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(status) => {
                tally.latency_us.saturating_record(took.max(1));
                *tally.status.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    tally.acked_requests += 1;
                    tally.acked_samples += template.samples;
                    tally.acked_bytes += bytes;
                    live.acked_samples
                        .fetch_add(template.samples, Ordering::Relaxed);
                    if keep_acks {
                        tally.acks.push(Ack {
                            index: ticket.index as u32,
                            ts: ticket.ts,
                            status: Some(status),
                        });
                    }
                } else {
                    live.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(kind) => {
                *tally.errors.entry(kind).or_default() += 1;
                live.failures.fetch_add(1, Ordering::Relaxed);
                // A refused connection fails at once. Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tally
}

fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else if e.is_request() {
        "request"
    } else {
        "other"
    }
}

/// One acknowledged request: which pool entry, with which timestamp, and its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Pool index of the request.
    pub index: u32,
    /// The timestamp of all of its samples.
    pub ts: i64,
    /// The 2xx status it got; `None` in logs written before the status was recorded.
    pub status: Option<u16>,
}

/// Header line: the workload shape as JSON; then `pool_index timestamp_ms status` per 2xx
/// (older logs have no status column; [`read_ack_log`] reads both).
fn write_ack_log(path: &std::path::Path, shape: Shape, acks: &[Ack]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{}", serde_json::to_string(&shape)?)?;
    for ack in acks {
        match ack.status {
            Some(status) => writeln!(out, "{} {} {status}", ack.index, ack.ts)?,
            None => writeln!(out, "{} {}", ack.index, ack.ts)?,
        }
    }
    out.flush()
}

/// One line of an acknowledgement log: two or three numbers.
fn parse_ack(line: &str) -> Option<Ack> {
    let mut fields = line.split_ascii_whitespace();
    let index = fields.next()?.parse().ok()?;
    let ts = fields.next()?.parse().ok()?;
    let status = match fields.next() {
        Some(s) => Some(s.parse().ok()?),
        None => None,
    };
    fields.next().is_none().then_some(Ack { index, ts, status })
}

/// Reads an acknowledgement log back.
pub fn read_ack_log(path: &std::path::Path) -> Result<(Shape, Vec<Ack>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let shape: Shape = serde_json::from_str(lines.next().unwrap_or_default())
        .map_err(|e| format!("{}: bad header: {e}", path.display()))?;
    let mut acks = Vec::new();
    for (n, line) in lines.enumerate() {
        match parse_ack(line) {
            Some(ack) => acks.push(ack),
            None => return Err(format!("{}:{}: bad line {line:?}", path.display(), n + 2)),
        }
    }
    Ok((shape, acks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_tallies_give_sane_quantiles() {
        let mut a = Tally::new();
        let mut b = Tally::new();
        for v in 1..=1000u64 {
            a.latency_us.saturating_record(v * 10);
            b.latency_us.saturating_record(v * 10 + 5);
        }
        a.merge(b);
        let p50 = a.latency_us.value_at_quantile(0.5);
        assert!((4900..=5100).contains(&p50), "p50 {p50}");
        assert!(a.latency_us.value_at_quantile(0.99) >= 9800);
    }

    #[test]
    fn parity_moves_a_timestamp_at_most_one_ms() {
        assert_eq!(Parity::Even.at_or_after(10), 10);
        assert_eq!(Parity::Even.at_or_after(11), 12);
        assert_eq!(Parity::Odd.at_or_after(10), 11);
        assert_eq!(Parity::Odd.at_or_after(11), 11);
    }

    #[test]
    fn ack_log_keeps_the_status_and_reads_old_logs() {
        let dir = std::env::temp_dir().join(format!("hb-acklog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let shape = Shape::new(10, 5, None).expect("shape");
        let acks = [
            Ack {
                index: 0,
                ts: 1_700_000_000_000,
                status: Some(204),
            },
            Ack {
                index: 1,
                ts: 1_700_000_000_001,
                status: Some(202),
            },
        ];
        let path = dir.join("new.log");
        write_ack_log(&path, shape, &acks).expect("write");
        assert_eq!(read_ack_log(&path).expect("read"), (shape, acks.to_vec()));

        // Before the status column: two numbers a line.
        let old = dir.join("old.log");
        let header = serde_json::to_string(&shape).expect("json");
        std::fs::write(&old, format!("{header}\n3 42\n")).expect("write");
        let (_, read) = read_ack_log(&old).expect("read");
        assert_eq!(
            read,
            [Ack {
                index: 3,
                ts: 42,
                status: None
            }]
        );

        std::fs::write(&old, format!("{header}\n3 42 204 9\n")).expect("write");
        assert!(read_ack_log(&old).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

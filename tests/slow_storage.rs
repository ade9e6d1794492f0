//! A long load into a storage slower than the load: the backlog must land on disk, not in
//! memory. The test measures the relay's own maximum rate first (this build, this
//! machine), then sends 80 % of it for three minutes (`SLOW_STORAGE_SECONDS`) into a
//! storage that takes half of that, and checks:
//! - the relay's RSS stays bounded and does not grow with the backlog;
//! - ingest latency stays bounded and every write is acknowledged (no 5xx: the buffer
//!   has room);
//! - the backlog is in the buffer on disk, far larger than the process.
//!
//! It prints the figures (peak RSS, latency percentiles, backlog) for the README's
//! reliability table.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use parking_lot::Mutex;

use common::*;

/// Series per request and samples per series: 2000 samples a request, like the benchmark.
const SERIES: usize = 1000;
const SAMPLES: usize = 2;
/// Writers, like the benchmark's connections.
const WRITERS: usize = 8;

/// A storage that takes at most `rate` body bytes per second (0: no limit), one request
/// at a time, and counts what it took.
struct SlowSink {
    url: String,
    rate: Arc<AtomicU64>,
    taken: Arc<AtomicU64>,
    handle: actix_web::dev::ServerHandle,
}

struct Pace {
    rate: Arc<AtomicU64>,
    taken: Arc<AtomicU64>,
    /// When the storage is free again.
    free_at: Mutex<Instant>,
}

async fn take(pace: web::Data<Pace>, body: web::Bytes) -> HttpResponse {
    let len = body.len() as u64;
    let rate = pace.rate.load(Ordering::Relaxed);
    if rate > 0 {
        let done = {
            let mut free = pace.free_at.lock();
            let start = (*free).max(Instant::now());
            *free = start + Duration::from_secs_f64(len as f64 / rate as f64);
            *free
        };
        tokio::time::sleep_until(done.into()).await;
    }
    pace.taken.fetch_add(len, Ordering::Relaxed);
    HttpResponse::NoContent().finish()
}

impl SlowSink {
    async fn start() -> SlowSink {
        let port = free_port();
        let (rate, taken) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let pace = web::Data::new(Pace {
            rate: rate.clone(),
            taken: taken.clone(),
            free_at: Mutex::new(Instant::now()),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(pace.clone())
                .app_data(web::PayloadConfig::new(256 << 20))
                .route("/api/v1/write", web::post().to(take))
        })
        .workers(1)
        .bind(("127.0.0.1", port))
        .expect("bind the sink")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        SlowSink {
            url: format!("http://127.0.0.1:{port}/api/v1/write"),
            rate,
            taken,
            handle,
        }
    }
}

/// What the writers saw.
#[derive(Default)]
struct Load {
    requests: u64,
    bytes: u64,
    refused: u64,
    latencies_us: Vec<u64>,
}

/// `WRITERS` writers sending `bodies` round robin for `duration`, `rate` requests per
/// second in all (0: as fast as they are answered).
async fn load(url: &str, bodies: Arc<Vec<Vec<u8>>>, rate: f64, duration: Duration) -> Load {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (url, bodies) = (url.to_owned(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let client = http();
            let mut seen = Load::default();
            let mut k = 0u64;
            while start.elapsed() < duration {
                if rate > 0.0 {
                    // Request k of writer w is due at (k * WRITERS + w) / rate.
                    let due = start
                        + Duration::from_secs_f64((k * WRITERS as u64 + w as u64) as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = &bodies[(k as usize * WRITERS + w) % bodies.len()];
                let sent = Instant::now();
                let status = client
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body.clone())
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                seen.latencies_us.push(sent.elapsed().as_micros() as u64);
                seen.requests += 1;
                if (200..300).contains(&status) {
                    seen.bytes += body.len() as u64;
                } else {
                    seen.refused += 1;
                }
                k += 1;
            }
            seen
        }));
    }
    let mut all = Load::default();
    for t in tasks {
        let l = t.await.expect("writer");
        all.requests += l.requests;
        all.bytes += l.bytes;
        all.refused += l.refused;
        all.latencies_us.extend(l.latencies_us);
    }
    all.latencies_us.sort_unstable();
    all
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The process's resident set in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_slower_than_the_load_fills_the_disk_not_the_memory() {
    let seconds: u64 = std::env::var("SLOW_STORAGE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let sink = SlowSink::start().await;
    let node = Node::start(&[
        "--remote-write",
        &format!("slow={}", sink.url),
        "--buffer-max-bytes",
        "6GiB",
    ])
    .await;
    let url = node.write_url("highlander_source=a");
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..32)
            .map(|i| {
                body(&request(
                    &format!("slow_storage_{i}"),
                    SERIES,
                    SAMPLES,
                    1_700_000_000_000 + i * 10_000,
                ))
            })
            .collect(),
    );
    let body_bytes = bodies.iter().map(Vec::len).sum::<usize>() as f64 / bodies.len() as f64;

    // The relay's maximum on this machine: 10 s as fast as it answers, storage unlimited.
    let max = load(&url, bodies.clone(), 0.0, Duration::from_secs(10)).await;
    let max_rate = max.requests as f64 / 10.0;
    assert!(
        max.refused == 0 && max_rate > 10.0,
        "the calibration ran: {} requests, {} refused",
        max.requests,
        max.refused
    );
    node.wait_drained(Duration::from_secs(120)).await;

    // 80 % of it, into a storage that takes 40 %.
    let rate = max_rate * 0.8;
    sink.rate
        .store((max_rate * 0.4 * body_bytes) as u64, Ordering::Relaxed);
    let taken_before = sink.taken.load(Ordering::Relaxed);
    eprintln!(
        "slow storage: max {max_rate:.0} requests/s ({:.2} M samples/s); load {rate:.0}/s into a storage taking {:.0}/s, for {seconds} s",
        max_rate * (SERIES * SAMPLES) as f64 / 1e6,
        max_rate * 0.4
    );
    let pid = node.pid();
    let started = Instant::now();
    let rss: Arc<Mutex<Vec<(f64, f64)>>> = Arc::default();
    let sampler = {
        let rss = rss.clone();
        tokio::spawn(async move {
            loop {
                rss.lock()
                    .push((started.elapsed().as_secs_f64(), rss_mib(pid)));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let seen = load(&url, bodies.clone(), rate, Duration::from_secs(seconds)).await;
    sampler.abort();
    let queue = node.admin_json("/api/v1/queue").await;
    let taken = sink.taken.load(Ordering::Relaxed) - taken_before;

    let rss = rss.lock().clone();
    let peak = rss.iter().map(|r| r.1).fold(0.0, f64::max);
    let third = seconds as f64 / 3.0;
    let early = rss
        .iter()
        .filter(|r| r.0 < third)
        .map(|r| r.1)
        .fold(0.0, f64::max);
    let late = rss
        .iter()
        .filter(|r| r.0 >= 2.0 * third)
        .map(|r| r.1)
        .fold(0.0, f64::max);
    let backlog = queue["bytes"].as_f64().unwrap_or(0.0) / f64::from(1 << 20);
    let (p50, p99, worst) = (
        percentile(&seen.latencies_us, 0.5),
        percentile(&seen.latencies_us, 0.99),
        percentile(&seen.latencies_us, 1.0),
    );
    eprintln!(
        "slow storage: {} writes acknowledged ({:.0} MiB), {} refused; the storage took {:.0} MiB; \
         backlog {backlog:.0} MiB on disk; relay RSS peak {peak:.1} MiB (first third {early:.1}, last third {late:.1}); \
         ingest latency p50 {p50:.1} ms, p99 {p99:.1} ms, max {worst:.1} ms",
        seen.requests - seen.refused,
        seen.bytes as f64 / f64::from(1 << 20),
        seen.refused,
        taken as f64 / f64::from(1 << 20),
    );

    assert_eq!(
        seen.refused, 0,
        "every write acknowledged: the buffer had room"
    );
    let behind = (seen.bytes as f64 - taken as f64) / f64::from(1 << 20);
    assert!(
        backlog >= 0.8 * behind && backlog > peak,
        "the backlog ({backlog:.0} MiB, the storage is {behind:.0} MiB behind) is in the buffer \
         on disk, larger than the whole process ({peak:.0} MiB)"
    );
    assert!(peak < 256.0, "RSS bounded: peak {peak:.1} MiB");
    assert!(
        late < early + 32.0,
        "RSS does not grow with the backlog: {early:.1} MiB in the first third, {late:.1} in the last"
    );
    assert!(p99 < 1_000.0, "ingest p99 {p99:.1} ms stays bounded");
    sink.handle.stop(false).await;
}

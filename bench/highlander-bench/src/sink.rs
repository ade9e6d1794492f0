//! `highlander-bench sink`: a Remote-Write receiver that decodes and counts everything.
//!
//! - `POST /api/v1/write` (and `POST /`): snappy-decode, scan (see [`crate::wire`]), record
//!   every sample in the [`Ledger`], answer 204. A bad body gets 400.
//! - While the outage switch is on, every write gets `--fail-status` (503) and is not read
//!   further. The switch is on after `POST /outage/on`, or while the `--outage-file`
//!   exists.
//! - `GET /stats` returns the counters as JSON.
//! - `POST /check` takes 16-byte records (series hash, timestamp; little endian). It
//!   answers how many were never received. `POST /check?bits` answers which were
//!   received, one bit per record (see [`Ledger::received_bits`]).
//!
//! - `--answer-delay-ms` holds every write's answer back, as a distant storage does.
//!
//! The final stats are printed on SIGTERM/SIGINT.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

use crate::ledger::{shard_of, Ledger, SHARDS};
use crate::wire;
use crate::workload::now_ms;

/// Everything `sink` needs (parsed by `main`).
pub struct SinkConfig {
    /// Listen address.
    pub listen: String,
    /// Status answered during an outage.
    pub fail_status: u16,
    /// `Retry-After` seconds sent with outage answers (none by default, like most storages).
    pub retry_after: Option<u64>,
    /// While this file exists, the sink is in outage.
    pub outage_file: Option<PathBuf>,
    /// actix-web worker threads.
    pub workers: usize,
    /// Bound on remembered sample timestamps (8 bytes each).
    pub max_remembered: u64,
    /// Largest decoded body accepted.
    pub max_decoded_bytes: usize,
    /// Read a request whose `Content-Type` names Remote-Write 2.0 as 2.0, and answer it
    /// with the `X-Prometheus-Remote-Write-*-Written` headers. Without it, the sink reads
    /// every body as 1.0, as VictoriaMetrics does: a 2.0 body holds nothing it counts, and
    /// gets a 204 without those headers.
    pub accept_v2: bool,
    /// How long every write waits before its answer (a simulated network round trip).
    pub answer_delay: Duration,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    rejected_requests: AtomicU64,
    bad_requests: AtomicU64,
    bytes_compressed: AtomicU64,
    bytes_decoded: AtomicU64,
    series: AtomicU64,
    samples: AtomicU64,
    unique_samples: AtomicU64,
    duplicate_samples: AtomicU64,
    histograms: AtomicU64,
    exemplars: AtomicU64,
    first_request_ms: AtomicI64,
    last_request_ms: AtomicI64,
    max_sample_ts_ms: AtomicI64,
}

struct Sink {
    counters: Counters,
    ledger: Ledger,
    outage: AtomicBool,
    outage_file_present: AtomicBool,
    fail_status: StatusCode,
    retry_after: Option<u64>,
    max_decoded_bytes: usize,
    accept_v2: bool,
    answer_delay: Duration,
    started: Instant,
}

/// Per-thread scratch space: the decoded body and one batch per ledger shard.
struct Scratch {
    decoded: Vec<u8>,
    batches: Vec<Vec<(u64, i64)>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        decoded: Vec::new(),
        batches: (0..SHARDS).map(|_| Vec::new()).collect(),
    });
}

impl Sink {
    fn in_outage(&self) -> bool {
        self.outage.load(Ordering::Relaxed) || self.outage_file_present.load(Ordering::Relaxed)
    }

    /// Reads one body (2.0 when `v2`) into the ledger and the counters; returns what it
    /// counted.
    fn ingest(&self, body: &[u8], v2: bool) -> Result<wire::Counts, String> {
        let len = snap::raw::decompress_len(body).map_err(|e| format!("snappy: {e}"))?;
        if len > self.max_decoded_bytes {
            return Err(format!("decoded size {len} over the limit"));
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Scratch { decoded, batches } = &mut *scratch;
            decoded.resize(len, 0);
            snap::raw::Decoder::new()
                .decompress(body, decoded)
                .map_err(|e| format!("snappy: {e}"))?;
            for b in batches.iter_mut() {
                b.clear();
            }
            let mut max_ts = i64::MIN;
            let on_sample = |series, ts| {
                max_ts = max_ts.max(ts);
                batches[shard_of(series)].push((series, ts));
            };
            let counts = if v2 {
                wire::for_each_sample_v2(decoded, on_sample)
            } else {
                wire::for_each_sample(decoded, on_sample)
            }
            .map_err(|e| format!("protobuf: {e}"))?;
            let mut new = 0;
            let mut duplicates = 0;
            for (shard, batch) in batches.iter().enumerate() {
                let o = self.ledger.record(shard, batch);
                new += o.new;
                duplicates += o.duplicates;
            }
            let c = &self.counters;
            let now = now_ms();
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.bytes_compressed
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            c.bytes_decoded.fetch_add(len as u64, Ordering::Relaxed);
            c.series.fetch_add(counts.series, Ordering::Relaxed);
            c.samples.fetch_add(counts.samples, Ordering::Relaxed);
            c.unique_samples.fetch_add(new, Ordering::Relaxed);
            c.duplicate_samples.fetch_add(duplicates, Ordering::Relaxed);
            c.histograms.fetch_add(counts.histograms, Ordering::Relaxed);
            c.exemplars.fetch_add(counts.exemplars, Ordering::Relaxed);
            let _ =
                c.first_request_ms
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            c.last_request_ms.fetch_max(now, Ordering::Relaxed);
            c.max_sample_ts_ms.fetch_max(max_ts, Ordering::Relaxed);
            Ok(counts)
        })
    }

    fn stats(&self) -> serde_json::Value {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "outage": self.in_outage(),
            "requests": get(&c.requests),
            "rejected_requests": get(&c.rejected_requests),
            "bad_requests": get(&c.bad_requests),
            "bytes_compressed": get(&c.bytes_compressed),
            "bytes_decoded": get(&c.bytes_decoded),
            "series": get(&c.series),
            "unique_series": self.ledger.series(),
            "samples": get(&c.samples),
            "unique_samples": get(&c.unique_samples),
            "duplicate_samples": get(&c.duplicate_samples),
            "histograms": get(&c.histograms),
            "exemplars": get(&c.exemplars),
            "ledger_saturated": self.ledger.saturated(),
            "first_request_unix_ms": c.first_request_ms.load(Ordering::Relaxed),
            "last_request_unix_ms": c.last_request_ms.load(Ordering::Relaxed),
            "max_sample_ts_ms": c.max_sample_ts_ms.load(Ordering::Relaxed).max(0),
        })
    }
}

async fn write(
    req: actix_web::HttpRequest,
    sink: web::Data<Sink>,
    body: web::Bytes,
) -> HttpResponse {
    if sink.in_outage() {
        sink.counters
            .rejected_requests
            .fetch_add(1, Ordering::Relaxed);
        let mut answer = HttpResponse::build(sink.fail_status);
        if let Some(seconds) = sink.retry_after {
            answer.insert_header(("Retry-After", seconds.to_string()));
        }
        return answer.body("sink outage\n");
    }
    let v2 = sink.accept_v2
        && req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("io.prometheus.write.v2.Request"));
    let counted = sink.ingest(&body, v2);
    if !sink.answer_delay.is_zero() {
        tokio::time::sleep(sink.answer_delay).await;
    }
    match counted {
        Ok(counts) if v2 => HttpResponse::NoContent()
            .insert_header(("X-Prometheus-Remote-Write-Samples-Written", counts.samples))
            .insert_header((
                "X-Prometheus-Remote-Write-Histograms-Written",
                counts.histograms,
            ))
            .insert_header((
                "X-Prometheus-Remote-Write-Exemplars-Written",
                counts.exemplars,
            ))
            .finish(),
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(reason) => {
            sink.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            HttpResponse::BadRequest().body(format!("{reason}\n"))
        }
    }
}

async fn stats(sink: web::Data<Sink>) -> HttpResponse {
    HttpResponse::Ok().json(sink.stats())
}

async fn outage(sink: web::Data<Sink>, path: web::Path<String>) -> HttpResponse {
    let on = match path.as_str() {
        "on" => true,
        "off" => false,
        _ => return HttpResponse::NotFound().body("use /outage/on or /outage/off\n"),
    };
    sink.outage.store(on, Ordering::Relaxed);
    HttpResponse::Ok().json(json!({ "outage": sink.in_outage() }))
}

/// The query of `POST /check`.
#[derive(serde::Deserialize)]
struct CheckQuery {
    /// Answer a bitmap of the received records instead of a count of the missing ones.
    bits: Option<String>,
}

/// What `/check` found, computed off the reactor (an `HttpResponse` is not `Send`).
enum CheckAnswer {
    /// How many records were checked and how many of them never arrived.
    Missing { checked: usize, missing: u64 },
    /// One bit per record, set when it arrived.
    Received(Vec<u8>),
}

async fn check(
    sink: web::Data<Sink>,
    query: web::Query<CheckQuery>,
    body: web::Bytes,
) -> HttpResponse {
    if !body.len().is_multiple_of(16) {
        return HttpResponse::BadRequest().body("body must be 16-byte records\n");
    }
    let sink = sink.into_inner();
    let bits = query.bits.is_some();
    let answer = web::block(move || {
        let samples: Vec<(u64, i64)> = body
            .chunks_exact(16)
            .map(|r| {
                let (h, t) = r.split_at(8);
                (
                    u64::from_le_bytes(h.try_into().expect("8 bytes")),
                    i64::from_le_bytes(t.try_into().expect("8 bytes")),
                )
            })
            .collect();
        if bits {
            CheckAnswer::Received(sink.ledger.received_bits(&samples))
        } else {
            CheckAnswer::Missing {
                checked: samples.len(),
                missing: sink.ledger.missing(&samples),
            }
        }
    })
    .await;
    match answer {
        Ok(CheckAnswer::Missing { checked, missing }) => {
            HttpResponse::Ok().json(json!({ "checked": checked, "missing": missing }))
        }
        Ok(CheckAnswer::Received(bits)) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bits),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

/// Runs the sink until SIGTERM/SIGINT, then prints the stats.
pub async fn run(config: SinkConfig) -> Result<(), String> {
    let fail_status = StatusCode::from_u16(config.fail_status)
        .map_err(|_| format!("--fail-status {} is not an HTTP status", config.fail_status))?;
    let sink = web::Data::new(Sink {
        counters: Counters::default(),
        ledger: Ledger::new(config.max_remembered),
        outage: AtomicBool::new(false),
        outage_file_present: AtomicBool::new(false),
        fail_status,
        retry_after: config.retry_after,
        max_decoded_bytes: config.max_decoded_bytes,
        accept_v2: config.accept_v2,
        answer_delay: config.answer_delay,
        started: Instant::now(),
    });
    if let Some(file) = config.outage_file.clone() {
        let sink = sink.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                // One stat(2) every 100 ms is cheap enough to do on the reactor.
                let present = file.exists();
                sink.outage_file_present.store(present, Ordering::Relaxed);
            }
        });
    }
    let max_body = config.max_decoded_bytes;
    let data = sink.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .route("/api/v1/write", web::post().to(write))
            .route("/", web::post().to(write))
            .route("/stats", web::get().to(stats))
            .route("/outage/{switch}", web::post().to(outage))
            .route("/check", web::post().to(check))
    })
    .workers(config.workers)
    .backlog(1024)
    .disable_signals()
    .bind(&config.listen)
    .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?
    .run();
    let handle = server.handle();
    let serving = tokio::spawn(server);
    eprintln!("highlander-bench sink listening on {}", config.listen);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("{}", sink.stats());
    handle.stop(false).await;
    let _ = serving.await;
    Ok(())
}

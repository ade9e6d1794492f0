//! Per-series order at full speed: a storage that rejects a sample not newer than the
//! series' last one (as Prometheus and Mimir do without an out-of-order window) gets
//! everything in order from highlander's defaults. The writers shard the series as
//! Prometheus does (each series on one connection only), so each series' samples reach
//! highlander in timestamp order; the default of one request in flight per storage must
//! keep that order, joined batches and retries included.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use parking_lot::Mutex;
use prost::Message as _;

use highlander::proto::WriteRequest;

use common::*;

const WRITERS: usize = 8;
const SERIES_PER_WRITER: usize = 250;
const LOAD: Duration = Duration::from_secs(10);

/// What the strict storage saw.
#[derive(Default)]
struct Seen {
    last: HashMap<String, i64>,
    accepted: u64,
    out_of_order: u64,
    first_problem: Option<String>,
    /// Requests answered 503 on purpose (every 50th), so that retries happen.
    refused: u64,
    requests: u64,
}

async fn strict(seen: web::Data<Arc<Mutex<Seen>>>, body: web::Bytes) -> HttpResponse {
    let Some(req) = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .ok()
        .and_then(|raw| WriteRequest::decode(raw.as_slice()).ok())
    else {
        return HttpResponse::BadRequest().body("not a 1.0 write");
    };
    let mut s = seen.lock();
    s.requests += 1;
    if s.requests.is_multiple_of(50) {
        s.refused += 1;
        return HttpResponse::ServiceUnavailable().finish();
    }
    // Check the whole request first: a rejected request changes nothing, as in Prometheus.
    let mut problem = None;
    let mut newest: HashMap<String, i64> = HashMap::new();
    for ts in &req.timeseries {
        let key = series_key(&ts.labels);
        let mut last = newest
            .get(&key)
            .or_else(|| s.last.get(&key))
            .copied()
            .unwrap_or(i64::MIN);
        for sample in &ts.samples {
            if sample.timestamp <= last {
                problem.get_or_insert(format!("{key}: {} after {last}", sample.timestamp));
            }
            last = sample.timestamp;
        }
        newest.insert(key, last);
    }
    if let Some(p) = problem {
        s.out_of_order += 1;
        s.first_problem.get_or_insert(p.clone());
        return HttpResponse::BadRequest().body(format!("out of order sample: {p}"));
    }
    s.accepted += req
        .timeseries
        .iter()
        .map(|t| t.samples.len() as u64)
        .sum::<u64>();
    s.last.extend(newest);
    HttpResponse::NoContent().finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_rejects_out_of_order_samples_gets_every_series_in_order() {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let port = free_port();
    let state = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(64 << 20))
            .route("/api/v1/write", web::post().to(strict))
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .expect("bind")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    let node = Node::start(&["--remote-write", &format!("strict=http://127.0.0.1:{port}")]).await;

    // Each writer owns its series and sends them with a timestamp one step newer each time.
    let url = node.write_url("highlander_source=a");
    let start = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let url = url.clone();
        writers.push(tokio::spawn(async move {
            let client = http();
            let mut sent = 0u64;
            let mut t = 1_700_000_000_000i64;
            while start.elapsed() < LOAD {
                let req = request(&format!("ordering_w{w}"), SERIES_PER_WRITER, 1, t);
                let (status, text) = post(&client, &url, &req).await;
                assert_eq!(status, 204, "{text}");
                sent += SERIES_PER_WRITER as u64;
                t += 1000;
            }
            sent
        }));
    }
    let mut sent = 0;
    for w in writers {
        sent += w.await.expect("writer");
    }
    wait_until(
        "the storage to take everything",
        Duration::from_secs(120),
        || async { (seen.lock().accepted >= sent).then_some(()) },
    )
    .await;
    {
        let s = seen.lock();
        eprintln!(
            "ordering: {sent} samples acknowledged in {LOAD:?}, {} accepted in {} requests ({} refused with 503 on purpose), {} out of order",
            s.accepted, s.requests, s.refused, s.out_of_order
        );
        assert_eq!(
            s.out_of_order, 0,
            "out-of-order samples reached the storage: {:?}",
            s.first_problem
        );
        assert_eq!(s.accepted, sent, "every acknowledged sample once");
        assert!(s.refused > 0, "retries happened");
    }
    handle.stop(false).await;
}

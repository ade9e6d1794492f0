//! Per-series order: a storage that rejects a sample not newer than the series' last one
//! (as Prometheus and Mimir do without an out-of-order window) gets everything in order
//! from highlander's defaults. The writers shard the series as Prometheus does (each
//! series on one connection only), so each series' samples reach highlander in timestamp
//! order.
//! - At full speed into a near storage, batches go one at a time, joined, with retries.
//! - Into a distant storage (every answer 40 ms late), ordered lanes send batches that
//!   share no series side by side; the storage applies concurrent requests in a random
//!   order, and still sees every series in order.
//! - The same with a real one: Prometheus 3.5 as a Remote-Write receiver (no out-of-order
//!   window) behind a link that delays every request by 15 to 45 ms. It answers 400 to an
//!   out-of-order sample, which highlander would quarantine.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use parking_lot::Mutex;
use prost::Message as _;

use highlander::proto::WriteRequest;

use common::e2e::{instant_query, now_ms, start_receiver};
use common::*;

const WRITERS: usize = 8;
const SERIES_PER_WRITER: usize = 250;
const LOAD: Duration = Duration::from_secs(10);
/// The first sample's timestamp (ms) for the storages of this file.
const T0: i64 = 1_700_000_000_000;

/// What the strict storage saw.
#[derive(Default)]
struct Seen {
    last: HashMap<String, i64>,
    accepted: u64,
    out_of_order: u64,
    first_problem: Option<String>,
    /// Requests answered 503 on purpose, so that retries happen.
    refused: u64,
    requests: u64,
    /// Requests being answered now, and the most at once.
    open: u64,
    most_open: u64,
}

/// How the strict storage answers.
#[derive(Clone)]
struct Storage {
    seen: Arc<Mutex<Seen>>,
    /// How long an answer takes. The request is applied at a random moment within it, so
    /// requests that are open together are applied in any order.
    delay: Duration,
    /// Every this many requests one is answered 503 instead.
    refuse_every: u64,
}

/// Closes a request in [`Seen::open`] when the handler ends, however it ends.
struct Open(Arc<Mutex<Seen>>);

impl Open {
    fn new(seen: &Arc<Mutex<Seen>>) -> Open {
        let mut s = seen.lock();
        s.open += 1;
        s.most_open = s.most_open.max(s.open);
        Open(seen.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.lock().open -= 1;
    }
}

async fn strict(storage: web::Data<Storage>, body: web::Bytes) -> HttpResponse {
    let Some(req) = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .ok()
        .and_then(|raw| WriteRequest::decode(raw.as_slice()).ok())
    else {
        return HttpResponse::BadRequest().body("not a 1.0 write");
    };
    let _open = Open::new(&storage.seen);
    let before = storage.delay.mul_f64(rand::random::<f64>());
    if !before.is_zero() {
        tokio::time::sleep(before).await;
    }
    let answer = apply(&storage.seen, &req, storage.refuse_every);
    if !storage.delay.is_zero() {
        tokio::time::sleep(storage.delay - before).await;
    }
    answer
}

/// Applies one request as a storage without an out-of-order window does.
fn apply(seen: &Mutex<Seen>, req: &WriteRequest, refuse_every: u64) -> HttpResponse {
    let mut s = seen.lock();
    s.requests += 1;
    if s.requests.is_multiple_of(refuse_every) {
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

/// Serves `handler` at `/api/v1/write` on one worker, with `state` for it; returns the
/// port and the stop handle.
fn serve_write<T, H, Args>(state: T, handler: H) -> (u16, actix_web::dev::ServerHandle)
where
    T: Send + Sync + 'static,
    H: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    H::Output: actix_web::Responder + 'static,
{
    let port = free_port();
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(64 << 20))
            .route("/api/v1/write", web::post().to(handler.clone()))
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .expect("bind")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (port, handle)
}

/// `WRITERS` writers, each with its own `series` series, send one sample of each, one
/// step newer each time from `t0` (ms), every `pace` (back to back when zero) for `load`.
/// Returns the samples acknowledged.
async fn write_sharded(url: &str, series: usize, t0: i64, pace: Duration, load: Duration) -> u64 {
    let start = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let url = url.to_owned();
        writers.push(tokio::spawn(async move {
            let client = http();
            let mut sent = 0u64;
            let mut t = t0;
            // Prometheus' shards do not send in step: spread the first writes.
            tokio::time::sleep(pace.mul_f64(w as f64 / WRITERS as f64)).await;
            while start.elapsed() < load {
                let req = request(&format!("ordering_w{w}"), series, 1, t);
                let (status, text) = post(&client, &url, &req).await;
                assert_eq!(status, 204, "{text}");
                sent += series as u64;
                t += 1000;
                tokio::time::sleep(pace).await;
            }
            sent
        }));
    }
    let mut sent = 0;
    for w in writers {
        sent += w.await.expect("writer");
    }
    sent
}

/// Waits until the storage took `sent` samples, then checks that none came out of order
/// and returns the most requests it had open at once.
async fn check_in_order(seen: &Arc<Mutex<Seen>>, sent: u64, what: &str) -> u64 {
    wait_until(
        "the storage to take everything",
        Duration::from_secs(120),
        || async { (seen.lock().accepted >= sent).then_some(()) },
    )
    .await;
    let s = seen.lock();
    eprintln!(
        "{what}: {sent} samples acknowledged, {} accepted in {} requests ({} refused with 503 on purpose), {} out of order, at most {} requests open at once",
        s.accepted, s.requests, s.refused, s.out_of_order, s.most_open
    );
    assert_eq!(
        s.out_of_order, 0,
        "out-of-order samples reached the storage: {:?}",
        s.first_problem
    );
    assert_eq!(s.accepted, sent, "every acknowledged sample once");
    assert!(s.refused > 0, "retries happened");
    s.most_open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_rejects_out_of_order_samples_gets_every_series_in_order() {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (port, handle) = serve_write(
        Storage {
            seen: seen.clone(),
            delay: Duration::ZERO,
            refuse_every: 50,
        },
        strict,
    );
    let node = Node::start(&["--remote-write", &format!("strict=http://127.0.0.1:{port}")]).await;
    let url = node.write_url("highlander_source=a");
    let sent = write_sharded(&url, SERIES_PER_WRITER, T0, Duration::ZERO, LOAD).await;
    check_in_order(&seen, sent, "near storage, full speed").await;
    handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distant_storage_gets_requests_side_by_side_and_every_series_in_order() {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (port, handle) = serve_write(
        Storage {
            seen: seen.clone(),
            delay: Duration::from_millis(40),
            refuse_every: 5,
        },
        strict,
    );
    let node = Node::start(&["--remote-write", &format!("strict=http://127.0.0.1:{port}")]).await;
    let url = node.write_url("highlander_source=a");
    // Each writer sends its 200 series every 100 ms, as a Prometheus shard sends its
    // series once per scrape interval: a write every 12.5 ms, each answered 40 ms later.
    // Once the storage was slow to answer 8 times, a lane opens 10 ms after each send,
    // for the writes of other writers that came meanwhile.
    let sent = write_sharded(
        &url,
        200,
        T0,
        Duration::from_millis(100),
        Duration::from_secs(6),
    )
    .await;
    let most_open = check_in_order(&seen, sent, "distant storage").await;
    assert!(
        most_open > 1,
        "ordered lanes sent batches side by side (at most {most_open} open at once)"
    );
    let queue = node.admin_json("/api/v1/queue").await;
    let endpoint = &queue["endpoints"][0];
    assert_eq!(endpoint["ordered"], true, "{queue}");
    assert_eq!(endpoint["max_in_flight"], 4, "the default: {queue}");
    handle.stop(false).await;
}

/// A link that delays every request by 0.5 to 1.5 times `delay` (at random, so requests
/// open together may overtake each other) before it reaches `target`, and counts the
/// requests it holds open.
#[derive(Clone)]
struct SlowLink {
    target: String,
    delay: Duration,
    client: reqwest::Client,
    seen: Arc<Mutex<Seen>>,
}

async fn slow_link(
    link: web::Data<SlowLink>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let _open = Open::new(&link.seen);
    tokio::time::sleep(link.delay.mul_f64(0.5 + rand::random::<f64>())).await;
    let mut out = link.client.post(&link.target).body(body);
    for (name, value) in req.headers() {
        let name = name.as_str();
        if name.starts_with("content-") && name != "content-length"
            || name.starts_with("x-prometheus-remote-write-")
        {
            out = out.header(name, value.as_bytes());
        }
    }
    let answer = match out.send().await {
        Ok(answer) => answer,
        Err(e) => return HttpResponse::BadGateway().body(format!("{e}")),
    };
    let status = answer.status().as_u16();
    let mut back =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("an HTTP status"));
    for (name, value) in answer.headers() {
        if name.as_str().starts_with("x-prometheus-remote-write-") {
            back.insert_header((name.as_str(), value.as_bytes()));
        }
    }
    let text = answer.text().await.unwrap_or_default();
    if status >= 400 {
        link.seen.lock().first_problem.get_or_insert(text.clone());
    }
    back.body(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_storage_30_ms_away_gets_every_series_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let client = http();
    let (_storage, store) = start_receiver(&client, tmp.path()).await;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (port, handle) = serve_write(
        SlowLink {
            target: format!("{store}/api/v1/write"),
            delay: Duration::from_millis(30),
            client: http(),
            seen: seen.clone(),
        },
        slow_link,
    );
    let node = Node::start(&[
        "--remote-write",
        &format!("prometheus=http://127.0.0.1:{port}"),
    ])
    .await;
    let url = node.write_url("highlander_source=a");
    // Recent samples (the receiver keeps them in its head block), one step a second per
    // series; each writer sends its series every 100 ms, as in the test above.
    let t0 = now_ms() - 15 * 60_000;
    let sent = write_sharded(
        &url,
        200,
        t0,
        Duration::from_millis(100),
        Duration::from_secs(6),
    )
    .await;
    // Until the receiver holds every acknowledged sample, or refused a request.
    let stored = wait_until(
        "the receiver to hold every acknowledged sample",
        Duration::from_secs(60),
        || async {
            if seen.lock().first_problem.is_some() {
                return Some(0);
            }
            let mut n = 0;
            for w in 0..WRITERS {
                let q = format!("sum(count_over_time(ordering_w{w}[30m]))");
                n += prometheus_count(&client, &store, &q).await?;
            }
            (n >= sent).then_some(n)
        },
    )
    .await;
    let (most_open, problem) = {
        let s = seen.lock();
        (s.most_open, s.first_problem.clone())
    };
    eprintln!("Prometheus 3.5, 30 ms away: {sent} samples acknowledged, {stored} stored, at most {most_open} requests open at once");
    assert_eq!(problem, None, "the receiver refused a request");
    assert_eq!(stored, sent, "every acknowledged sample once");
    assert!(
        most_open > 1,
        "ordered lanes sent batches side by side (at most {most_open} open at once)"
    );
    let queue = node.admin_json("/api/v1/queue").await;
    assert_eq!(queue["quarantined"], 0, "nothing quarantined: {queue}");
    handle.stop(false).await;
}

/// The value of a PromQL query that returns one number; `None` while there is none.
async fn prometheus_count(client: &reqwest::Client, base: &str, q: &str) -> Option<u64> {
    instant_query(client, base, q).await.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

//! Shared harness for the black-box tests: free ports, temp dirs, a real highlander child
//! process, an in-test storage that decodes what it receives, a request builder, and waits
//! with deadlines. Every child process is killed when its handle drops.
#![allow(dead_code)]
pub mod cluster_e2e;
pub mod e2e;
pub mod logs;
pub mod proxy;
pub mod series;
pub mod v2;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use highlander::proto::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

/// An HTTP client for tests.
pub fn http() -> reqwest::Client {
    highlander::shipper::client::install_crypto_provider();
    reqwest::Client::new()
}

/// A port nobody listens on right now.
///
/// Ports come from a counter in 20000–31999, below the kernel's ephemeral range, so two
/// tests running in parallel in one binary never get the same port, and no outgoing
/// connection can grab a port between the pick and the child's bind (asking the kernel for
/// port 0 and releasing it raced with parallel tests and produced "address in use").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each test binary starts at its own offset, so consecutive binaries rarely reuse ports
    // that may still linger in TIME_WAIT.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 600) * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A highlander child process.
pub struct Node {
    child: Option<Child>,
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    args: Vec<String>,
    log_path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node with a fresh data dir and `extra` flags; waits until it is ready.
    pub async fn start(extra: &[&str]) -> Node {
        Self::start_in(None, extra).await
    }

    /// [`Node::start`] with its data in `data_dir` (default: a fresh temp dir).
    pub async fn start_in(data_dir: Option<&Path>, extra: &[&str]) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = data_dir.map_or_else(|| tmp.path().join("data"), Path::to_path_buf);
        let mut node = Node {
            child: None,
            ingest: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
            admin: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
            log_path: tmp.path().join("highlander.log"),
            data_dir,
            args: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        node.spawn();
        node.wait_ready().await;
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_highlander"))
            .arg("serve")
            .arg("--listen")
            .arg(self.ingest.to_string())
            .arg("--admin-listen")
            .arg(self.admin.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("RUST_LOG", "info,highlander=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn highlander");
        self.child = Some(child);
    }

    /// Waits for `/readyz`; panics with the log if the process died or never got ready.
    pub async fn wait_ready(&mut self) {
        let url = format!("http://{}/readyz", self.admin);
        let client = http();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("highlander exited early with {status}:\n{}", self.log());
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!("highlander not ready after 30s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "highlander did not stop within 40s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process with SIGTERM (it flushes its cursors) and starts it again on the
    /// same ports and data dir.
    pub async fn restart_gracefully(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "highlander exited with {status}");
        self.spawn();
        self.wait_ready().await;
    }

    /// Starts the process again on the same ports and data dir, and waits until it is
    /// ready or has exited: `Err` with its exit status when it refused to start.
    pub async fn try_restart(&mut self) -> Result<(), std::process::ExitStatus> {
        self.kill9();
        self.spawn();
        let url = format!("http://{}/readyz", self.admin);
        let client = http();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(status);
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "highlander neither ready nor exited after 30s:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the process again on the same ports and data dir (after SIGKILL).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready().await;
    }

    /// Adds flags for the next start.
    pub fn add_args(&mut self, extra: &[&str]) {
        self.args.extend(extra.iter().map(|s| s.to_string()));
    }

    /// Everything the process logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The write URL with a query string.
    pub fn write_url(&self, query: &str) -> String {
        format!("http://{}/api/v1/write?{query}", self.ingest)
    }

    /// GET an admin path as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        http()
            .get(format!("http://{}{path}", self.admin))
            .send()
            .await
            .expect("admin reachable")
            .text()
            .await
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .expect("admin JSON")
    }

    /// The value of an unlabelled metric on the admin listener's `/metrics` (0 when
    /// absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = http()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("admin reachable")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.trim().parse::<f64>().expect("metric value"))
            .next()
            .unwrap_or(0.0)
    }

    /// Waits until every endpoint has taken everything buffered.
    pub async fn wait_drained(&self, timeout: Duration) {
        wait_until("the queue to drain", timeout, || async {
            let q = self.admin_json("/api/v1/queue").await;
            let lag: u64 = q["endpoints"]
                .as_array()
                .expect("endpoints")
                .iter()
                .map(|e| e["lag_records"].as_u64().unwrap_or(u64::MAX))
                .sum();
            (lag == 0).then_some(())
        })
        .await
    }
}

/// `--peers` for a cluster of nodes 1, 2, 3… on these loopback raft ports.
pub fn peers(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

impl Drop for Node {
    /// Kills the node, then checks that no secret it was given reached its log: every test
    /// that starts a node with a token or a secret checks it this way.
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            return;
        }
        let log = self.log();
        for secret in secrets_of(&self.args) {
            assert!(
                !log.contains(&secret),
                "a secret given to the node is in its log: {secret:?}"
            );
        }
    }
}

/// The secrets among a node's flags: the values of the token and secret flags, and the
/// contents of the files the `-file` flags name (short values are left out: they would
/// match by chance).
fn secrets_of(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for pair in args.windows(2) {
        let value = match pair[0].as_str() {
            "--admin-token" | "--cluster-secret" => pair[1].clone(),
            "--admin-token-file" | "--cluster-secret-file" => std::fs::read_to_string(&pair[1])
                .unwrap_or_default()
                .trim()
                .to_owned(),
            _ => continue,
        };
        if value.len() >= 8 {
            out.push(value);
        }
    }
    out
}

/// How the in-test storage answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 204 and keep the samples.
    Accept,
    /// Answer this status (and keep nothing).
    Fail(u16),
    /// Answer this status with `Retry-After: <seconds>` (and keep nothing).
    FailRetryAfter(u16, u64),
    /// 400 when any series is named this; else accept.
    RejectMetric(String),
    /// 413 when the request has more series than this; else accept.
    MaxSeries(usize),
}

/// How the sink treats a Remote-Write 2.0 request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Speaks {
    /// Like VictoriaMetrics: reads every body as 1.0, so a 2.0 body is answered 204
    /// without the Written headers and nothing is kept.
    #[default]
    IgnoresV2,
    /// Like a strict 1.0 receiver: 415 to a 2.0 request.
    RefusesV2,
    /// Reads 2.0 (and 1.0): a 2.0 request is kept and answered with the Written headers.
    V2,
}

/// What the storage received.
#[derive(Default)]
pub struct Received {
    pub mode: Option<Mode>,
    /// How a 2.0 request is treated.
    pub speaks: Speaks,
    /// The version of each accepted request (`1.0` or `2.0`), same order as `requests`.
    pub protocols: Vec<&'static str>,
    /// 2.0 requests answered 204 without headers and dropped (`Speaks::IgnoresV2`).
    pub ignored_v2: u64,
    /// Accepted requests, in arrival order.
    pub requests: Vec<WriteRequest>,
    /// When each accepted request arrived (same order as `requests`).
    pub arrivals: Vec<Instant>,
    /// The URL path of each accepted request (same order as `requests`): tells apart
    /// senders given different paths to the same sink.
    pub paths: Vec<String>,
    /// Every request's headers (accepted or not), lower-case names.
    pub headers: Vec<BTreeMap<String, String>>,
    /// When every request (accepted or not) was looked at, in order.
    pub attempts: Vec<Instant>,
    /// Requests answered with a failure.
    pub refused: u64,
    /// How long each request is held before it is looked at (a slow storage).
    pub delay: Duration,
    /// Requests being held right now, and the most ever held at once.
    pub in_flight: usize,
    pub max_in_flight: usize,
}

/// An in-process storage that decodes every Remote-Write request it receives.
pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<Mutex<Received>>,
    handle: actix_web::dev::ServerHandle,
}

/// `__name__` plus the other labels, as one string.
pub fn series_key(labels: &[Label]) -> String {
    labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<Received>>>,
) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let delay = {
        let mut s = state.lock().expect("sink state");
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    state.lock().expect("sink state").in_flight -= 1;
    let is_v2 = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("io.prometheus.write.v2.Request"));
    let raw = snap::raw::Decoder::new().decompress_vec(&body).ok();
    let mut s = state.lock().expect("sink state");
    s.headers.push(headers);
    s.attempts.push(Instant::now());
    let decoded = match (is_v2, s.speaks) {
        (true, Speaks::RefusesV2) => {
            s.refused += 1;
            return HttpResponse::UnsupportedMediaType().body("sink: 1.0 only");
        }
        (true, Speaks::IgnoresV2) => {
            s.ignored_v2 += 1;
            return HttpResponse::NoContent().finish();
        }
        (true, Speaks::V2) => raw.and_then(|raw| v2::to_v1(&raw)),
        (false, _) => raw.and_then(|raw| WriteRequest::decode(raw.as_slice()).ok()),
    };
    let Some(wr) = decoded else {
        s.refused += 1;
        return HttpResponse::BadRequest().body("sink: undecodable body");
    };
    let mode = s.mode.clone().unwrap_or(Mode::Accept);
    let mut retry_after = None;
    let refuse = match &mode {
        Mode::Accept => None,
        Mode::Fail(code) => Some(*code),
        Mode::FailRetryAfter(code, secs) => {
            retry_after = Some(*secs);
            Some(*code)
        }
        Mode::RejectMetric(name) => wr
            .timeseries
            .iter()
            .any(|t| {
                t.labels
                    .iter()
                    .any(|l| l.name == "__name__" && &l.value == name)
            })
            .then_some(400),
        Mode::MaxSeries(n) => (wr.timeseries.len() > *n).then_some(413),
    };
    match refuse {
        Some(code) => {
            s.refused += 1;
            let mut resp =
                HttpResponse::build(actix_web::http::StatusCode::from_u16(code).expect("status"));
            if let Some(secs) = retry_after {
                resp.insert_header(("Retry-After", secs.to_string()));
            }
            resp.body(format!("sink refuses with {code}"))
        }
        None => {
            let mut resp = HttpResponse::NoContent();
            if is_v2 {
                let count = |f: fn(&highlander::proto::TimeSeries) -> usize| {
                    wr.timeseries.iter().map(f).sum::<usize>().to_string()
                };
                resp.insert_header((
                    "X-Prometheus-Remote-Write-Samples-Written",
                    count(|t| t.samples.len()),
                ))
                .insert_header((
                    "X-Prometheus-Remote-Write-Histograms-Written",
                    count(|t| t.histograms.len()),
                ))
                .insert_header((
                    "X-Prometheus-Remote-Write-Exemplars-Written",
                    count(|t| t.exemplars.len()),
                ));
            }
            s.protocols.push(if is_v2 { "2.0" } else { "1.0" });
            s.requests.push(wr);
            s.arrivals.push(Instant::now());
            s.paths.push(req.path().to_owned());
            resp.finish()
        }
    }
}

impl Sink {
    /// Starts on a port the kernel picks while binding: the sink lives in this process and
    /// holds its socket, so unlike a port handed to a child there is no window between
    /// choosing the port and binding it (a pick-then-bind once failed with "address in use").
    pub async fn start() -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind sink");
        Self::serve(listener)
    }

    /// Starts on `port` (to bring a "dead" storage back on its old address).
    pub async fn start_on(port: u16) -> Sink {
        Self::serve(TcpListener::bind(("127.0.0.1", port)).expect("bind sink"))
    }

    fn serve(listener: TcpListener) -> Sink {
        let port = listener.local_addr().expect("sink address").port();
        let state = Arc::new(Mutex::new(Received::default()));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .default_service(web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("listen sink")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Sink {
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
            state,
            handle,
        }
    }

    /// The write URL.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Changes how it answers.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("sink").mode = Some(mode);
    }

    /// How the sink treats 2.0 requests from now on.
    pub fn set_speaks(&self, speaks: Speaks) {
        self.state.lock().expect("sink").speaks = speaks;
    }

    /// Holds every request this long before answering it.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("sink").delay = delay;
    }

    /// Runs `f` on what was received.
    pub fn with<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        f(&self.state.lock().expect("sink"))
    }

    /// Every accepted sample as (series, timestamp), in arrival order.
    pub fn samples(&self) -> Vec<(String, i64)> {
        self.with(|r| {
            r.requests
                .iter()
                .flat_map(|w| {
                    w.timeseries.iter().flat_map(|t| {
                        let k = series_key(&t.labels);
                        t.samples.iter().map(move |s| (k.clone(), s.timestamp))
                    })
                })
                .collect()
        })
    }

    /// Waits until at least `n` samples were accepted.
    pub async fn wait_samples(&self, n: usize, timeout: Duration) {
        wait_until(&format!("{n} samples at the sink"), timeout, || async {
            (self.samples().len() >= n).then_some(())
        })
        .await
    }

    /// Stops listening.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A request of `series` series named `name` with `samples` samples each, timestamps
/// `t0, t0+1000, …`, values equal to the timestamp.
pub fn request(name: &str, series: usize, samples: usize, t0: i64) -> WriteRequest {
    WriteRequest {
        timeseries: (0..series)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: name.into(),
                    },
                    Label {
                        name: "series".into(),
                        value: format!("{i:05}"),
                    },
                ],
                samples: (0..samples as i64)
                    .map(|k| Sample {
                        value: (t0 + k * 1000) as f64,
                        timestamp: t0 + k * 1000,
                    })
                    .collect(),
                ..TimeSeries::default()
            })
            .collect(),
        metadata: vec![],
    }
}

/// The snappy-compressed body of a request.
pub fn body(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("compress")
}

/// POSTs a request as Prometheus does; returns the status and the body text.
pub async fn post(client: &reqwest::Client, url: &str, req: &WriteRequest) -> (u16, String) {
    post_raw(client, url, body(req), "snappy", "application/x-protobuf").await
}

/// POSTs a request as Prometheus does and tells whether it was acknowledged (204). Any
/// other answer, a network error (a node down or restarting) or `timeout` passing is
/// `false`.
pub async fn acknowledged(
    client: &reqwest::Client,
    url: &str,
    req: &WriteRequest,
    timeout: Option<Duration>,
) -> bool {
    let mut r = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body(req));
    if let Some(t) = timeout {
        r = r.timeout(t);
    }
    r.send()
        .await
        .map(|r| r.status().as_u16() == 204)
        .unwrap_or(false)
}

/// POSTs arbitrary bytes with the given encoding and type headers.
pub async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    encoding: &str,
    content_type: &str,
) -> (u16, String) {
    let mut r = client.post(url).body(body);
    if !encoding.is_empty() {
        r = r.header("Content-Encoding", encoding);
    }
    if !content_type.is_empty() {
        r = r.header("Content-Type", content_type);
    }
    let resp = r.send().await.expect("highlander reachable");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// A temp dir path helper for tests that need their own files.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

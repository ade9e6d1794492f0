//! End to end with the real servers: two Prometheus replicas scrape one in-test target and
//! remote_write through highlander into a real VictoriaMetrics single node. No mocks.
//!
//! What is checked, against the storage's raw samples and each replica's own TSDB:
//! - only the promoted replica reaches the storage (one sample per scrape, never both);
//! - killing the promoted replica fails over to the standby within the expiry, with a
//!   bounded hole in the series;
//! - a storage outage loses nothing: highlander buffers, and after the storage is back the
//!   series has no hole across the outage.
//!
//! The binaries come from the Debian packages `prometheus` and `victoria-metrics`; when one
//! is missing the test fails and says so (it never skips silently).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};
use common::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";
/// The metric the in-test target serves; its series is what every check reads.
const METRIC: &str = "e2e_counter_total";
/// Both replicas scrape this often, so a healthy series has one sample per second.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
const HEALTH_TICK: &str = "500ms";
const HEALTH_EXPIRY: Duration = Duration::from_secs(3);
/// Window over which "one replica only" is measured.
const STEADY_WINDOW: Duration = Duration::from_secs(10);
/// Largest hole allowed in the series at a failover. highlander (seed semantics) drops the
/// standby's writes until the promoted source has been silent for the expiry; then it
/// needs up to one health tick (0.5 s) to notice, and the standby's next batch comes up to
/// its `batch_send_deadline` (1 s) later. One more scrape interval covers the phase between
/// the replicas' scrapes, and 1.5 s more absorbs a loaded machine.
const MAX_FAILOVER_GAP: Duration = Duration::from_secs(HEALTH_EXPIRY.as_secs() + 4);
/// How long the storage stays down: long enough for several of highlander's retries.
const OUTAGE: Duration = Duration::from_secs(30);
/// Largest hole allowed across the outage: one scrape interval plus slack for one late
/// scrape. A lost write (one batch = one scrape here) would show as a 2 s hole only, so the
/// outage check also compares sample by sample with the replica's own TSDB.
const MAX_OUTAGE_GAP: Duration = Duration::from_millis(2_500);
/// Two samples closer than this come from two replicas (scrapes are 1 s apart).
const MIN_SPACING: Duration = Duration::from_millis(500);

/// Milliseconds since the Unix epoch, the unit of sample timestamps.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Fails the test, clearly, when a server binary is not installed.
fn require_binary(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: this end-to-end test needs the real server \
         (install the Debian package `{package}`, e.g. `apt-get install -y {package}`)"
    );
}

/// A child process that is SIGKILLed (and reaped) when dropped, even when the test panics.
struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `program` with `args`; stdout and stderr go to `log_path` (appended).
    fn spawn(name: &str, program: &str, args: Vec<String>, log_path: PathBuf) -> Proc {
        let mut p = Proc {
            name: name.to_owned(),
            program: program.into(),
            args,
            log_path,
            child: None,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} ({:?}): {e}", self.name, self.program));
        self.child = Some(child);
    }

    /// The exit status if the process has ended.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL, no chance to flush anything.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for a graceful exit; SIGKILL and panic past `timeout`.
    async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("{} did not stop within {timeout:?} of SIGTERM", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `url` until it answers 2xx; panics with the log if the process exits first
    /// or `timeout` passes.
    async fn wait_http_ok(&mut self, client: &reqwest::Client, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited early with {status}:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            if let Ok(r) = client.get(url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} not answering {url} after {timeout:?}:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines the process logged.
    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The scrape target: `/metrics` with a counter of the seconds since it started.
async fn start_target() -> (std::net::SocketAddr, actix_web::dev::ServerHandle) {
    async fn metrics(started: web::Data<Instant>) -> HttpResponse {
        let secs = started.elapsed().as_secs_f64();
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(format!(
                "# HELP {METRIC} Seconds since the e2e target started.\n\
                 # TYPE {METRIC} counter\n\
                 {METRIC} {secs:.3}\n\
                 # HELP e2e_gauge A constant.\n\
                 # TYPE e2e_gauge gauge\n\
                 e2e_gauge{{kind=\"constant\"}} 42\n"
            ))
    }
    let started = web::Data::new(Instant::now());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(started.clone())
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(("127.0.0.1", 0))
    .expect("bind the scrape target");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (addr, handle)
}

/// One Prometheus replica's config: scrape the target every second, remote_write to
/// highlander promptly, with the replica name as `__replica__` external label.
fn prometheus_config(target: std::net::SocketAddr, write_url: &str, replica: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
  external_labels:
    __replica__: {replica}
scrape_configs:
  - job_name: e2e
    static_configs:
      - targets: ['{target}']
remote_write:
  - url: '{write_url}'
    remote_timeout: 5s
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#
    )
}

/// Everything the scenario runs. When the test panics, its drop prints every log before
/// the processes are killed.
struct E2e {
    client: reqwest::Client,
    node: Node,
    vm: Proc,
    vm_url: String,
    /// Replica "a" (weight 10) then "b" (weight 5), each with its HTTP API URL.
    proms: Vec<(Proc, String)>,
    target: actix_web::dev::ServerHandle,
    tmp: tempfile::TempDir,
}

impl Drop for E2e {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== highlander log =====\n{}", self.node.log());
            eprintln!(
                "===== victoria-metrics log (tail) =====\n{}",
                self.vm.log_tail(80)
            );
            for (p, _) in &self.proms {
                eprintln!("===== {} log (tail) =====\n{}", p.name, p.log_tail(80));
            }
        }
    }
}

impl E2e {
    /// The `default` group as `/api/v1/groups` shows it (null before any write).
    async fn group(&self) -> serde_json::Value {
        let groups = self.node.admin_json("/api/v1/groups").await;
        groups["groups"]
            .as_array()
            .expect("groups array")
            .iter()
            .find(|g| g["name"] == "default")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// Waits until `/api/v1/groups` shows `source` promoted.
    async fn wait_promoted(&self, source: &str, timeout: Duration) -> serde_json::Value {
        wait_until(&format!("'{source}' promoted"), timeout, || async {
            let g = self.group().await;
            (g["promoted"]["source"] == source).then_some(g)
        })
        .await
    }

    /// The raw samples of [`METRIC`] in VictoriaMetrics as (timestamp ms, value), sorted,
    /// and the label sets of every series found. `None` while VM does not answer.
    async fn vm_samples(&self) -> Option<(Vec<(i64, f64)>, BTreeSet<String>)> {
        let r = self
            .client
            .get(with_params(
                &format!("{}/api/v1/export", self.vm_url),
                &[("match[]", METRIC.to_owned())],
            ))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        let text = r.text().await.ok()?;
        let mut samples = Vec::new();
        let mut series = BTreeSet::new();
        // One JSON object per line; one series may span several lines (one per block).
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("VM export {line}: {e}"));
            series.insert(v["metric"].to_string());
            let ts = v["timestamps"].as_array().expect("timestamps");
            let vals = v["values"].as_array().expect("values");
            assert_eq!(ts.len(), vals.len(), "VM export line {line}");
            for (t, x) in ts.iter().zip(vals) {
                samples.push((t.as_i64().expect("ts"), x.as_f64().unwrap_or(f64::NAN)));
            }
        }
        samples.sort_by_key(|s| s.0);
        Some((samples, series))
    }

    /// Waits until VM holds a sample of [`METRIC`] at or after `ts`; returns every sample.
    async fn wait_vm_reaches(&self, ts: i64, timeout: Duration) -> Vec<(i64, f64)> {
        wait_until(
            &format!("VictoriaMetrics to hold {METRIC} samples up to {ts}"),
            timeout,
            || async {
                let (samples, _) = self.vm_samples().await?;
                (samples.last()?.0 >= ts).then_some(samples)
            },
        )
        .await
    }

    /// The timestamps replica `idx` scraped itself (its local TSDB) in `[from, to]`.
    async fn replica_samples(&self, idx: usize, from: i64, to: i64) -> Vec<i64> {
        let (p, url) = &self.proms[idx];
        let range_secs = (now_ms() - from) / 1000 + 2;
        let text = self
            .client
            .get(with_params(
                &format!("{url}/api/v1/query"),
                &[
                    ("query", format!("{METRIC}{{job=\"e2e\"}}[{range_secs}s]")),
                    ("time", format!("{:.3}", now_ms() as f64 / 1000.0)),
                ],
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} API: {e}", p.name))
            .text()
            .await
            .unwrap_or_else(|e| panic!("{} API body: {e}", p.name));
        let r: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} API JSON: {e}: {text}", p.name));
        assert_eq!(r["status"], "success", "{}: {r}", p.name);
        let result = r["data"]["result"].as_array().expect("result");
        assert_eq!(result.len(), 1, "{}: one series expected: {r}", p.name);
        result[0]["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| (v[0].as_f64().expect("ts") * 1000.0).round() as i64)
            .filter(|t| (from..=to).contains(t))
            .collect()
    }
}

/// `base` with a URL-encoded query string.
fn with_params(base: &str, params: &[(&str, String)]) -> url::Url {
    url::Url::parse_with_params(base, params).expect("valid URL")
}

/// Consecutive differences of sorted timestamps, as (earlier, later, gap ms).
fn gaps(ts: &[i64]) -> Vec<(i64, i64, i64)> {
    ts.windows(2).map(|w| (w[0], w[1], w[1] - w[0])).collect()
}

fn in_window(samples: &[(i64, f64)], from: i64, to: i64) -> Vec<i64> {
    samples
        .iter()
        .map(|s| s.0)
        .filter(|t| (from..=to).contains(t))
        .collect()
}

/// Timestamps relative to `origin`, in seconds, for readable failure messages.
fn rel(ts: &[i64], origin: i64) -> String {
    ts.iter()
        .map(|t| format!("{:.3}", (t - origin) as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_pair_through_highlander_into_victoria_metrics() {
    require_binary(PROMETHEUS, "prometheus");
    require_binary(VICTORIA_METRICS, "victoria-metrics");
    let test_start = now_ms();
    let client = http();
    let tmp = tempfile::tempdir().expect("tempdir");

    // 1. The scrape target.
    let (target, target_handle) = start_target().await;

    // 2. VictoriaMetrics.
    let vm_port = free_port();
    let vm_url = format!("http://127.0.0.1:{vm_port}");
    let vm_data = tmp.path().join("vm-data");
    let mut vm = Proc::spawn(
        "victoria-metrics",
        VICTORIA_METRICS,
        vec![
            format!("-httpListenAddr=127.0.0.1:{vm_port}"),
            format!("-storageDataPath={}", vm_data.display()),
            "-retentionPeriod=100y".into(),
            "-search.latencyOffset=0s".into(),
            "-loggerLevel=WARN".into(),
        ],
        tmp.path().join("vm.log"),
    );
    vm.wait_http_ok(
        &client,
        &format!("{vm_url}/health"),
        Duration::from_secs(30),
    )
    .await;

    // 3. highlander in front of it.
    let node = Node::start(&[
        "--remote-write",
        &format!("{vm_url}/api/v1/write"),
        "--health-tick",
        HEALTH_TICK,
        "--health-expiry",
        &format!("{}s", HEALTH_EXPIRY.as_secs()),
        "--replica-label",
        "__replica__",
    ])
    .await;

    let mut e = E2e {
        client: client.clone(),
        node,
        vm,
        vm_url,
        proms: Vec::new(),
        target: target_handle,
        tmp,
    };

    // 4. The replicas: "a" first, so it is promoted as the first writer (deterministic),
    // then "b" with a smaller weight, which stays standby.
    for (name, weight) in [("a", 10), ("b", 5)] {
        let dir = e.tmp.path().join(format!("prom-{name}"));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        let write_url = e.node.write_url(&format!(
            "highlander_weight={weight}&highlander_source={name}"
        ));
        std::fs::write(&config, prometheus_config(target, &write_url, name))
            .expect("write prometheus config");
        let port = free_port();
        let mut p = Proc::spawn(
            &format!("prometheus-{name}"),
            PROMETHEUS,
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ],
            dir.join("prometheus.log"),
        );
        let url = format!("http://127.0.0.1:{port}");
        p.wait_http_ok(&client, &format!("{url}/-/ready"), Duration::from_secs(30))
            .await;
        e.proms.push((p, url));
        if name == "a" {
            e.wait_promoted("a", Duration::from_secs(20)).await;
        }
    }

    // 5a. Series arrive, merged into one: __replica__ was stripped before storage.
    wait_until(
        "b's writes to be dropped",
        Duration::from_secs(20),
        || async {
            let g = e.group().await;
            (g["sources"]["b"]["requests_dropped"].as_u64() > Some(0)).then_some(())
        },
    )
    .await;
    let (_, series) = wait_until(
        "series in VictoriaMetrics",
        Duration::from_secs(30),
        || async { e.vm_samples().await.filter(|(s, _)| !s.is_empty()) },
    )
    .await;
    assert_eq!(series.len(), 1, "one merged series expected: {series:?}");
    let labels = series.iter().next().expect("one series");
    assert!(
        !labels.contains("__replica__"),
        "replica label reached storage: {labels}"
    );
    assert!(
        labels.contains("\"job\":\"e2e\""),
        "scrape labels kept: {labels}"
    );
    assert!(e
        .node
        .log()
        .contains("new source : 'a' (no current promoted source) (10)"));

    // 5b. Steady state: exactly replica a's samples, one per scrape.
    let window_start = now_ms();
    tokio::time::sleep(STEADY_WINDOW).await;
    let window_end = now_ms();
    let samples = e.wait_vm_reaches(window_end, Duration::from_secs(15)).await;
    let got = in_window(&samples, window_start, window_end);
    let from_a = e.replica_samples(0, window_start, window_end).await;
    let from_b = e.replica_samples(1, window_start, window_end).await;
    let close: Vec<_> = gaps(&got)
        .into_iter()
        .filter(|g| g.2 < ms(MIN_SPACING))
        .collect();
    assert!(
        close.is_empty(),
        "two replicas forwarded: samples closer than {MIN_SPACING:?}: {close:?}\nVM: {}",
        rel(&got, test_start)
    );
    let max_count = (STEADY_WINDOW.as_secs_f64() / SCRAPE_INTERVAL.as_secs_f64() * 1.3) as usize;
    assert!(
        got.len() <= max_count && got.len() >= 5,
        "{} samples in {STEADY_WINDOW:?}, expected about one per scrape: {}",
        got.len(),
        rel(&got, test_start)
    );
    assert_eq!(
        got,
        from_a,
        "VM should hold exactly replica a's samples\nVM: {}\na:  {}\nb:  {}",
        rel(&got, test_start),
        rel(&from_a, test_start),
        rel(&from_b, test_start)
    );
    let g = e.group().await;
    assert_eq!(g["promoted"]["source"], "a", "{g}");
    assert!(
        g["sources"]["b"]["requests_dropped"]
            .as_u64()
            .expect("dropped")
            > 0,
        "{g}"
    );
    assert_eq!(g["sources"]["a"]["requests_dropped"], 0, "{g}");

    // 5c. Failover: the promoted replica dies; b takes over within the expiry.
    let killed_at = now_ms();
    e.proms[0].0.kill9();
    let g = e
        .wait_promoted("b", HEALTH_EXPIRY + Duration::from_secs(12))
        .await;
    let promoted_at = now_ms();
    eprintln!(
        "failover: b promoted {:.1}s after a was killed: {g}",
        (promoted_at - killed_at) as f64 / 1000.0
    );
    // The admin API can show the promotion a moment before its log line is written.
    wait_until("the failover log lines", Duration::from_secs(5), || async {
        let log = e.node.log();
        (log.contains("lost source : 'a'")
            && log.contains("new source : 'b' (no current promoted source) (5)"))
        .then_some(())
    })
    .await;
    let samples = e
        .wait_vm_reaches(promoted_at + 3_000, Duration::from_secs(20))
        .await;
    let around = in_window(&samples, killed_at - 5_000, now_ms());
    let worst = gaps(&around).into_iter().max_by_key(|g| g.2).expect("gaps");
    eprintln!(
        "failover: largest gap {} ms ({:.3}s .. {:.3}s after start)",
        worst.2,
        (worst.0 - test_start) as f64 / 1000.0,
        (worst.1 - test_start) as f64 / 1000.0
    );
    assert!(
        worst.2 <= ms(MAX_FAILOVER_GAP),
        "failover gap {} ms > {MAX_FAILOVER_GAP:?}: {}",
        worst.2,
        rel(&around, test_start)
    );
    let close: Vec<_> = gaps(&around)
        .into_iter()
        .filter(|g| g.2 < ms(MIN_SPACING))
        .collect();
    assert!(close.is_empty(), "overlap at the failover: {close:?}");
    // After the kill, everything stored is b's; everything b scraped once promoted is stored.
    let last = around.last().copied().expect("samples");
    let from_b = e.replica_samples(1, killed_at, last).await;
    let after_kill: Vec<i64> = around.iter().copied().filter(|t| *t > killed_at).collect();
    let b_set: BTreeSet<i64> = from_b.iter().copied().collect();
    let vm_set: BTreeSet<i64> = around.iter().copied().collect();
    assert!(
        after_kill.iter().all(|t| b_set.contains(t)),
        "VM holds samples b never scraped after the kill\nVM: {}\nb:  {}",
        rel(&after_kill, test_start),
        rel(&from_b, test_start)
    );
    let missing: Vec<i64> = from_b
        .iter()
        .copied()
        .filter(|t| *t > promoted_at && !vm_set.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "b's samples after its promotion missing in VM: {}",
        rel(&missing, test_start)
    );

    // 5d. Storage outage: VM stops gracefully (keeping what it acknowledged), stays down,
    // comes back on the same port and data dir; highlander's buffer fills the hole.
    let stopped_at = now_ms();
    let status = e.vm.terminate(Duration::from_secs(30)).await;
    eprintln!("victoria-metrics stopped with {status}");
    wait_until(
        "highlander to buffer during the outage",
        Duration::from_secs(10),
        || async {
            let q = e.node.admin_json("/api/v1/queue").await;
            let lag = q["endpoints"][0]["lag_records"].as_u64().unwrap_or(0);
            (lag > 0).then_some(())
        },
    )
    .await;
    tokio::time::sleep(
        OUTAGE.saturating_sub(Duration::from_millis((now_ms() - stopped_at).max(0) as u64)),
    )
    .await;
    let q = e.node.admin_json("/api/v1/queue").await;
    eprintln!("queue during the outage: {q}");
    let restarted_at = now_ms();
    e.vm.start();
    let health = format!("{}/health", e.vm_url);
    e.vm.wait_http_ok(&client, &health, Duration::from_secs(30))
        .await;
    // highlander's retry backoff is capped at 30 s (full jitter): allow that plus slack.
    e.node.wait_drained(Duration::from_secs(60)).await;
    let drained_at = now_ms();
    eprintln!(
        "outage: drained {:.1}s after VM came back",
        (drained_at - restarted_at) as f64 / 1000.0
    );
    let samples = e.wait_vm_reaches(drained_at, Duration::from_secs(20)).await;
    let (from, to) = (stopped_at - 3_000, restarted_at + 3_000);
    let across = in_window(&samples, from, to);
    let worst = gaps(&across).into_iter().max_by_key(|g| g.2).expect("gaps");
    assert!(
        worst.2 <= ms(MAX_OUTAGE_GAP),
        "hole of {} ms across the outage ({:.3}s .. {:.3}s after start)\nVM: {}",
        worst.2,
        (worst.0 - test_start) as f64 / 1000.0,
        (worst.1 - test_start) as f64 / 1000.0,
        rel(&across, test_start)
    );
    let from_b = e.replica_samples(1, from, to).await;
    assert_eq!(
        across,
        from_b,
        "VM should hold exactly what b scraped across the outage\nVM: {}\nb:  {}",
        rel(&across, test_start),
        rel(&from_b, test_start)
    );
    let (_, series) = e.vm_samples().await.expect("VM answers");
    assert_eq!(series.len(), 1, "still one merged series: {series:?}");
    eprintln!(
        "e2e done in {:.1}s",
        (now_ms() - test_start) as f64 / 1000.0
    );
    e.target.stop(false).await;
}

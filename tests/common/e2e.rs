//! Shared harness of the end-to-end tests with the real servers: a child-process guard
//! (SIGKILLed on drop, even on panic), the in-test scrape target, Prometheus replicas
//! remote-writing through a highlander child process into a real VictoriaMetrics single
//! node, and the helpers that read back what each of them holds.
//!
//! The binaries come from the Debian packages `prometheus` and `victoria-metrics`: bookworm's
//! (2.42 and 1.79, installed by the test command) and sid's (3.5 and 1.145, fetched into
//! `tools/sid` by `scripts/sid-servers`, see [`Servers`]). When one is missing the tests
//! fail and say so (they never skip silently).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};

use super::{free_port, http, wait_until, Node};

/// The metric the in-test target serves; its series is what every check reads.
pub const METRIC: &str = "e2e_counter_total";
/// Both replicas scrape this often, so a healthy series has one sample per second.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
pub const HEALTH_TICK: &str = "500ms";
pub const HEALTH_EXPIRY: Duration = Duration::from_secs(3);

/// Milliseconds since the Unix epoch, the unit of sample timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

pub fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Fails the test, clearly, when a server binary is not installed.
pub fn require_binary(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: this end-to-end test needs the real server \
         (install the Debian package `{package}`, e.g. `apt-get install -y {package}`)"
    );
}

/// Both servers the end-to-end tests run.
pub fn require_servers() {
    Servers::Bookworm.require();
}

/// Which builds of Prometheus and VictoriaMetrics a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Servers {
    /// Debian bookworm's packages: Prometheus 2.42, VictoriaMetrics 1.79.
    Bookworm,
    /// Debian sid's packages, fetched by `scripts/sid-servers` into `tools/sid`:
    /// Prometheus 3.5, VictoriaMetrics 1.145.
    Sid,
}

impl Servers {
    fn path(self, program: &str) -> String {
        match self {
            Servers::Bookworm => format!("/usr/bin/{program}"),
            Servers::Sid => format!("{}/tools/sid/usr/bin/{program}", env!("CARGO_MANIFEST_DIR")),
        }
    }

    /// The Prometheus binary.
    pub fn prometheus(self) -> String {
        self.path("prometheus")
    }

    /// The VictoriaMetrics single-node binary.
    pub fn victoria_metrics(self) -> String {
        self.path("victoria-metrics")
    }

    /// The vmagent binary (Debian package `victoria-metrics`).
    pub fn vmagent(self) -> String {
        self.path("vmagent")
    }

    /// Fails the test, clearly, when a binary is missing.
    pub fn require(self) {
        match self {
            Servers::Bookworm => {
                require_binary(&self.prometheus(), "prometheus");
                require_binary(&self.victoria_metrics(), "victoria-metrics");
            }
            Servers::Sid => {
                for path in [self.prometheus(), self.victoria_metrics(), self.vmagent()] {
                    assert!(
                        Path::new(&path).is_file(),
                        "{path} is missing: this end-to-end test needs Debian sid's server \
                         (run `scripts/sid-servers`, which the test command runs)"
                    );
                }
            }
        }
    }
}

/// How the replicas of the HA pair are told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// `--replica-label __replica__`: highlander names the source by it and strips it, so
    /// the storage holds one series.
    Stripped,
    /// The default configuration: no `--replica-label`; the replicas are named by
    /// `highlander_source` and their own `replica` external label reaches the storage, so
    /// it holds one series per replica.
    Kept,
}

impl Labels {
    /// The external label each replica carries.
    pub fn external_label(self) -> &'static str {
        match self {
            Labels::Stripped => "__replica__",
            Labels::Kept => "replica",
        }
    }

    /// highlander's flags for this mode.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Labels::Stripped => &["--replica-label", "__replica__"],
            Labels::Kept => &[],
        }
    }
}

/// The Remote-Write version the replicas send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// 1.0, Prometheus' default.
    V1,
    /// 2.0: `protobuf_message: io.prometheus.write.v2.Request` (Prometheus 3 only).
    V2,
}

/// A child process that is SIGKILLed (and reaped) when dropped, even when the test panics.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `program` with `args`; stdout and stderr go to `log_path` (appended).
    pub fn spawn(name: &str, program: &str, args: Vec<String>, log_path: PathBuf) -> Proc {
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

    pub fn start(&mut self) {
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
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the running process.
    pub fn signal(&self, signal: i32) {
        let c = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on our own, not yet reaped child's pid has no memory-safety
        // concerns.
        let rc = unsafe { libc::kill(c.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.name);
    }

    /// SIGTERM, then waits (bounded) for a graceful exit; SIGKILL and panic past `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
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
    pub async fn wait_http_ok(&mut self, client: &reqwest::Client, url: &str, timeout: Duration) {
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

    /// Everything the process logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines the process logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The classic histogram of the scrape target: each scrape observes one value per bucket
/// per second since the start. Prometheus 3 replicas that send 2.0 turn it into a native
/// histogram with custom buckets (NHCB).
pub const HISTOGRAM: &str = "e2e_latency_seconds";

/// The scrape target: `/metrics` with a counter of the seconds since it started (so it
/// increases by one per second, and samples in timestamp order never decrease), a gauge
/// and a classic histogram ([`HISTOGRAM`]).
pub async fn start_target() -> (std::net::SocketAddr, actix_web::dev::ServerHandle) {
    async fn metrics(started: web::Data<Instant>) -> HttpResponse {
        let secs = started.elapsed().as_secs_f64();
        let n = started.elapsed().as_secs();
        let histogram = format!(
            "# HELP {HISTOGRAM} Latency.\n\
             # TYPE {HISTOGRAM} histogram\n\
             {HISTOGRAM}_bucket{{le=\"0.1\"}} {n}\n\
             {HISTOGRAM}_bucket{{le=\"0.5\"}} {}\n\
             {HISTOGRAM}_bucket{{le=\"+Inf\"}} {}\n\
             {HISTOGRAM}_sum {}\n\
             {HISTOGRAM}_count {}\n",
            2 * n,
            3 * n,
            n,
            3 * n
        );
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(format!(
                "# HELP {METRIC} Seconds since the e2e target started.\n\
                 # TYPE {METRIC} counter\n\
                 {METRIC} {secs:.3}\n\
                 # HELP e2e_gauge A constant.\n\
                 # TYPE e2e_gauge gauge\n\
                 e2e_gauge{{kind=\"constant\"}} 42\n\
                 {histogram}"
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
/// highlander promptly in `protocol`, with the replica name as the `label` external label.
pub fn prometheus_config(
    target: std::net::SocketAddr,
    write_url: &str,
    label: &str,
    replica: &str,
    protocol: Protocol,
) -> String {
    // With 2.0 the classic histogram goes as a native histogram with custom buckets.
    let (nhcb, message) = match protocol {
        Protocol::V1 => ("", ""),
        Protocol::V2 => (
            "\n    convert_classic_histograms_to_nhcb: true",
            "\n    protobuf_message: io.prometheus.write.v2.Request\n    send_native_histograms: true",
        ),
    };
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
  external_labels:
    {label}: {replica}
scrape_configs:
  - job_name: e2e{nhcb}
    static_configs:
      - targets: ['{target}']
remote_write:
  - url: '{write_url}'
    remote_timeout: 5s{message}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#
    )
}

/// One Prometheus replica writing through highlander.
pub struct Replica {
    pub name: String,
    pub proc: Proc,
    /// Its HTTP API, e.g. `http://127.0.0.1:9090`.
    pub api: String,
    config: PathBuf,
}

/// Everything a scenario runs: the target, VictoriaMetrics, highlander in front of it, and
/// the replicas. When the test panics, its drop prints every log before the processes are
/// killed.
pub struct E2e {
    pub client: reqwest::Client,
    pub node: Node,
    pub vm: Proc,
    pub vm_url: String,
    pub replicas: Vec<Replica>,
    pub target: std::net::SocketAddr,
    pub target_handle: actix_web::dev::ServerHandle,
    pub tmp: tempfile::TempDir,
    /// When the scenario started (ms since the epoch), the origin of readable timestamps.
    pub started_ms: i64,
    /// The server builds.
    pub servers: Servers,
    /// How the replicas are told apart.
    pub labels: Labels,
    /// What the replicas send; set before they start.
    pub protocol: Protocol,
    /// A vmagent between the replicas and highlander, when started: the replicas write
    /// to it and it forwards both in one stream.
    pub agent: Option<(Proc, String)>,
}

impl Drop for E2e {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== highlander log =====\n{}", self.node.log());
            if let Some((agent, _)) = &self.agent {
                eprintln!("===== vmagent log (tail) =====\n{}", agent.log_tail(80));
            }
            eprintln!(
                "===== victoria-metrics log (tail) =====\n{}",
                self.vm.log_tail(80)
            );
            for r in &self.replicas {
                eprintln!(
                    "===== {} log (tail) =====\n{}",
                    r.proc.name,
                    r.proc.log_tail(80)
                );
            }
        }
    }
}

impl E2e {
    /// Starts the scrape target, VictoriaMetrics, and highlander in front of it with
    /// `--replica-label __replica__`, the e2e health tick and expiry, and `extra` flags, on
    /// bookworm's servers. No replica yet.
    pub async fn start(extra: &[&str]) -> E2e {
        Self::start_with(Servers::Bookworm, Labels::Stripped, extra).await
    }

    /// [`E2e::start`] with the given server builds and replica labels.
    pub async fn start_with(servers: Servers, labels: Labels, extra: &[&str]) -> E2e {
        servers.require();
        let started_ms = now_ms();
        let client = http();
        let tmp = tempfile::tempdir().expect("tempdir");
        let (target, target_handle) = start_target().await;

        let vm_port = free_port();
        let vm_url = format!("http://127.0.0.1:{vm_port}");
        let vm_data = tmp.path().join("vm-data");
        let mut vm = Proc::spawn(
            "victoria-metrics",
            &servers.victoria_metrics(),
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

        let remote_write = format!("{vm_url}/api/v1/write");
        let expiry = format!("{}s", HEALTH_EXPIRY.as_secs());
        let mut args = vec![
            "--remote-write",
            &remote_write,
            "--health-tick",
            HEALTH_TICK,
            "--health-expiry",
            &expiry,
        ];
        args.extend_from_slice(labels.flags());
        args.extend_from_slice(extra);
        let node = Node::start(&args).await;
        E2e {
            client,
            node,
            vm,
            vm_url,
            replicas: Vec::new(),
            target,
            target_handle,
            tmp,
            started_ms,
            servers,
            labels,
            protocol: Protocol::V1,
            agent: None,
        }
    }

    /// Starts a vmagent that forwards everything it receives to highlander, with no query
    /// parameters: highlander must tell the replicas apart by their labels in one stream.
    pub async fn start_agent(&mut self) {
        let port = free_port();
        let dir = self.tmp.path().join("vmagent");
        let mut agent = Proc::spawn(
            "vmagent",
            &self.servers.vmagent(),
            vec![
                format!("-httpListenAddr=127.0.0.1:{port}"),
                format!("-remoteWrite.url={}", self.node.write_url("")),
                format!("-remoteWrite.tmpDataPath={}", dir.display()),
                "-remoteWrite.forcePromProto".into(),
                // One queue: every push of the replicas goes into the same pending block,
                // flushed each second, so each request carries both replicas' series.
                "-remoteWrite.queues=1".into(),
                "-remoteWrite.flushInterval=1s".into(),
                "-loggerLevel=WARN".into(),
            ],
            self.tmp.path().join("vmagent.log"),
        );
        agent
            .wait_http_ok(
                &self.client,
                &format!("http://127.0.0.1:{port}/health"),
                Duration::from_secs(30),
            )
            .await;
        self.agent = Some((agent, format!("http://127.0.0.1:{port}/api/v1/write")));
    }

    /// The write URL of a replica: its name as `highlander_source`, and its weight; or
    /// the agent's, when one forwards for the replicas.
    fn write_url(&self, name: &str, weight: u64) -> String {
        if let Some((_, url)) = &self.agent {
            return url.clone();
        }
        self.node.write_url(&format!(
            "highlander_weight={weight}&highlander_source={name}"
        ))
    }

    /// Starts Prometheus replica `name` with `weight`; waits until it is ready.
    pub async fn start_replica(&mut self, name: &str, weight: u64) {
        self.spawn_replica(name, weight);
        self.wait_replica_ready(name).await;
    }

    /// The config of replica `name` writing with `weight`.
    fn replica_config(&self, name: &str, weight: u64) -> String {
        let label = self.labels.external_label();
        let url = self.write_url(name, weight);
        prometheus_config(self.target, &url, label, name, self.protocol)
    }

    /// Starts Prometheus replica `name` with `weight`, without waiting for it.
    pub fn spawn_replica(&mut self, name: &str, weight: u64) {
        let dir = self.tmp.path().join(format!("prom-{name}"));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, self.replica_config(name, weight))
            .expect("write prometheus config");
        let port = free_port();
        let proc = Proc::spawn(
            &format!("prometheus-{name}"),
            &self.servers.prometheus(),
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
            .into_iter()
            .chain(
                (self.protocol == Protocol::V2)
                    .then(|| "--enable-feature=native-histograms".to_owned()),
            )
            .collect(),
            dir.join("prometheus.log"),
        );
        self.replicas.push(Replica {
            name: name.to_owned(),
            proc,
            api: format!("http://127.0.0.1:{port}"),
            config,
        });
    }

    /// Checks that replica `name` sent data and that none of it failed: Prometheus counts
    /// a batch it dropped (a 4xx, or a 2.0 answer whose Written headers say less than it
    /// sent) in `prometheus_remote_storage_{samples,histograms,exemplars}_failed_total`.
    /// Returns how many samples and histograms it sent.
    pub async fn assert_no_failed_sends(&self, name: &str) -> (f64, f64) {
        let text = self
            .client
            .get(format!("{}/metrics", self.replica(name).api))
            .send()
            .await
            .expect("replica reachable")
            .text()
            .await
            .expect("metrics text");
        let sum = |metric: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let sent = (
            sum("prometheus_remote_storage_samples_total"),
            sum("prometheus_remote_storage_histograms_total"),
        );
        assert!(sent.0 > 0.0, "replica {name} sent no samples");
        for metric in [
            "prometheus_remote_storage_samples_failed_total",
            "prometheus_remote_storage_histograms_failed_total",
            "prometheus_remote_storage_exemplars_failed_total",
        ] {
            assert_eq!(sum(metric), 0.0, "replica {name}: {metric}");
        }
        sent
    }

    /// Waits until replica `name` is ready.
    pub async fn wait_replica_ready(&mut self, name: &str) {
        let client = self.client.clone();
        let r = self.replica_mut(name);
        let ready = format!("{}/-/ready", r.api);
        r.proc
            .wait_http_ok(&client, &ready, Duration::from_secs(30))
            .await;
    }

    fn replica_index(&self, name: &str) -> usize {
        self.replicas
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| panic!("no replica {name}"))
    }

    /// Replica `name`.
    pub fn replica(&self, name: &str) -> &Replica {
        &self.replicas[self.replica_index(name)]
    }

    /// Replica `name`, mutable (to kill it).
    pub fn replica_mut(&mut self, name: &str) -> &mut Replica {
        let i = self.replica_index(name);
        &mut self.replicas[i]
    }

    /// Gives replica `name` a new weight without stopping it: rewrites its config and
    /// reloads it (SIGHUP). Prometheus keeps scraping, stops (and flushes) the old
    /// remote-write queue and starts a new one for the new URL. Waits until the reload
    /// completed.
    pub async fn reweight(&self, name: &str, weight: u64) {
        const DONE: &str = "Completed loading of configuration file";
        let r = self.replica(name);
        std::fs::write(&r.config, self.replica_config(name, weight))
            .expect("rewrite prometheus config");
        let before = r.proc.log().matches(DONE).count();
        r.proc.signal(libc::SIGHUP);
        wait_until(
            &format!("{} to reload its config", r.proc.name),
            Duration::from_secs(15),
            || async {
                let log = r.proc.log();
                assert!(
                    !log.contains("Error reloading config"),
                    "{} refused the new config:\n{}",
                    r.proc.name,
                    r.proc.log_tail(20)
                );
                (log.matches(DONE).count() > before).then_some(())
            },
        )
        .await;
    }

    /// The `default` group as `/api/v1/groups` shows it (null before any write).
    pub async fn group(&self) -> serde_json::Value {
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
    pub async fn wait_promoted(&self, source: &str, timeout: Duration) -> serde_json::Value {
        wait_until(&format!("'{source}' promoted"), timeout, || async {
            let g = self.group().await;
            (g["promoted"]["source"] == source).then_some(g)
        })
        .await
    }

    /// Waits until highlander has dropped at least `n` writes of standby `source`.
    pub async fn wait_dropped(&self, source: &str, n: u64, timeout: Duration) {
        wait_until(
            &format!("{n} writes of '{source}' dropped"),
            timeout,
            || async {
                let g = self.group().await;
                (g["sources"][source]["requests_dropped"].as_u64() >= Some(n)).then_some(())
            },
        )
        .await
    }

    /// The value of an unlabelled metric on highlander's `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        self.node.metric(name).await
    }

    /// The raw samples of [`METRIC`] in VictoriaMetrics as (timestamp ms, value), sorted,
    /// and the label sets of every series found. `None` while VM does not answer.
    pub async fn vm_samples(&self) -> Option<(Vec<(i64, f64)>, BTreeSet<String>)> {
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
    pub async fn wait_vm_reaches(&self, ts: i64, timeout: Duration) -> Vec<(i64, f64)> {
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

    /// The timestamps replica `name` scraped itself (its local TSDB) in `[from, to]`.
    pub async fn replica_samples(&self, name: &str, from: i64, to: i64) -> Vec<i64> {
        let r = self.replica(name);
        let range_secs = (now_ms() - from) / 1000 + 2;
        let text = self
            .client
            .get(with_params(
                &format!("{}/api/v1/query", r.api),
                &[
                    ("query", format!("{METRIC}{{job=\"e2e\"}}[{range_secs}s]")),
                    ("time", format!("{:.3}", now_ms() as f64 / 1000.0)),
                ],
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} API: {e}", r.proc.name))
            .text()
            .await
            .unwrap_or_else(|e| panic!("{} API body: {e}", r.proc.name));
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} API JSON: {e}: {text}", r.proc.name));
        assert_eq!(v["status"], "success", "{}: {v}", r.proc.name);
        let result = v["data"]["result"].as_array().expect("result");
        assert_eq!(result.len(), 1, "{}: one series expected: {v}", r.proc.name);
        result[0]["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| (v[0].as_f64().expect("ts") * 1000.0).round() as i64)
            .filter(|t| (from..=to).contains(t))
            .collect()
    }

    /// Timestamps relative to the scenario's start, in seconds, for readable messages.
    pub fn rel(&self, ts: &[i64]) -> String {
        rel(ts, self.started_ms)
    }
}

/// `base` with a URL-encoded query string.
pub fn with_params(base: &str, params: &[(&str, String)]) -> url::Url {
    url::Url::parse_with_params(base, params).expect("valid URL")
}

/// Consecutive differences of sorted timestamps, as (earlier, later, gap ms).
pub fn gaps(ts: &[i64]) -> Vec<(i64, i64, i64)> {
    ts.windows(2).map(|w| (w[0], w[1], w[1] - w[0])).collect()
}

/// The timestamps of `samples` in `[from, to]`.
pub fn in_window(samples: &[(i64, f64)], from: i64, to: i64) -> Vec<i64> {
    samples
        .iter()
        .map(|s| s.0)
        .filter(|t| (from..=to).contains(t))
        .collect()
}

/// Timestamps relative to `origin`, in seconds, for readable failure messages.
pub fn rel(ts: &[i64], origin: i64) -> String {
    ts.iter()
        .map(|t| format!("{:.3}", (t - origin) as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One Prometheus replica's config writing to several highlander nodes: the same scrape
/// as [`prometheus_config`], one `remote_write` entry per URL (named `hl1`, `hl2`, ...),
/// each with the same prompt queue settings.
pub fn prometheus_config_multi(
    target: std::net::SocketAddr,
    write_urls: &[String],
    replica: &str,
) -> String {
    let mut config = format!(
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
"#
    );
    for (i, url) in write_urls.iter().enumerate() {
        config.push_str(&format!(
            r#"  - name: hl{}
    url: '{url}'
    remote_timeout: 5s
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#,
            i + 1
        ));
    }
    config
}

/// Starts a VictoriaMetrics single node with its data in `dir`; waits until it answers.
/// Returns the process and its base URL.
pub async fn start_victoria_metrics(client: &reqwest::Client, dir: &Path) -> (Proc, String) {
    require_servers();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut vm = Proc::spawn(
        "victoria-metrics",
        &Servers::Bookworm.victoria_metrics(),
        vec![
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", dir.join("vm-data").display()),
            "-retentionPeriod=100y".into(),
            "-search.latencyOffset=0s".into(),
            "-loggerLevel=WARN".into(),
        ],
        dir.join("vm.log"),
    );
    vm.wait_http_ok(client, &format!("{url}/health"), Duration::from_secs(30))
        .await;
    (vm, url)
}

/// Starts Prometheus `name` with `config` (YAML), its files in `dir/prom-<name>`; waits
/// until it is ready. Returns the process and its API base URL.
pub async fn start_prometheus(
    client: &reqwest::Client,
    dir: &Path,
    name: &str,
    config: &str,
) -> (Proc, String) {
    require_servers();
    let dir = dir.join(format!("prom-{name}"));
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus config");
    let port = free_port();
    let mut proc = Proc::spawn(
        &format!("prometheus-{name}"),
        &Servers::Bookworm.prometheus(),
        vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        dir.join("prometheus.log"),
    );
    let api = format!("http://127.0.0.1:{port}");
    proc.wait_http_ok(client, &format!("{api}/-/ready"), Duration::from_secs(30))
        .await;
    (proc, api)
}

/// An instant query against a Prometheus; the `data.result` array.
pub async fn instant_query(
    client: &reqwest::Client,
    base: &str,
    q: &str,
) -> Vec<serde_json::Value> {
    let url = with_params(&format!("{base}/api/v1/query"), &[("query", q.to_owned())]);
    let Ok(resp) = client.get(url).send().await else {
        return Vec::new();
    };
    let text = resp.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Debian sid's Prometheus 3.5 as a Remote-Write receiver (no out-of-order window, as
/// by default), its data under `dir`. Returns the process and its base URL.
pub async fn start_receiver(client: &reqwest::Client, dir: &Path) -> (Proc, String) {
    Servers::Sid.require();
    let port = free_port();
    let config = dir.join("store.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("store config");
    let mut proc = Proc::spawn(
        "prometheus-storage",
        &Servers::Sid.prometheus(),
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("store").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
            "--enable-feature=native-histograms".into(),
        ],
        dir.join("store.log"),
    );
    let api = format!("http://127.0.0.1:{port}");
    proc.wait_http_ok(client, &format!("{api}/-/ready"), Duration::from_secs(30))
        .await;
    (proc, api)
}

/// The raw samples of [`METRIC`] VictoriaMetrics at `vm_url` exports, as (timestamp ms,
/// value) sorted by timestamp (duplicates kept), and the label sets of every series.
/// `None` while VM does not answer.
pub async fn vm_export(
    client: &reqwest::Client,
    vm_url: &str,
) -> Option<(Vec<(i64, f64)>, BTreeSet<String>)> {
    let r = client
        .get(with_params(
            &format!("{vm_url}/api/v1/export"),
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
    samples.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    Some((samples, series))
}

/// The timestamps of [`METRIC`] a Prometheus (API base `api`) scraped itself, in
/// `[from, to]`; `None` when it does not answer (e.g. killed).
pub async fn prometheus_samples(
    client: &reqwest::Client,
    api: &str,
    from: i64,
    to: i64,
) -> Option<Vec<i64>> {
    let range_secs = (now_ms() - from) / 1000 + 2;
    let text = client
        .get(with_params(
            &format!("{api}/api/v1/query"),
            &[
                ("query", format!("{METRIC}{{job=\"e2e\"}}[{range_secs}s]")),
                ("time", format!("{:.3}", now_ms() as f64 / 1000.0)),
            ],
        ))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let result = v["data"]["result"].as_array()?;
    let values = result.first()?["values"].as_array()?;
    Some(
        values
            .iter()
            .filter_map(|v| Some((v[0].as_f64()? * 1000.0).round() as i64))
            .filter(|t| (from..=to).contains(t))
            .collect(),
    )
}

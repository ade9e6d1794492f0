//! The only place that builds every part and wires the parts together. It runs until a
//! signal, then stops in this order:
//! 1. refuse new writes;
//! 2. drain in-flight writes, which still get their flush;
//! 3. stop the workers;
//! 4. final flush;
//! 5. stop the admin listener.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin, NodeInfo};
use crate::clock::{Clock, SystemClock};
use crate::cluster::{self, promotions::ClusterPromotions, Cluster, ClusterConfig, ClusterError};
use crate::config::Config;
use crate::election::{ElectionStore, Elector, Promotions};
use crate::ingest::handover::Handover;
use crate::ingest::{self, Ingest};
use crate::shipper::{ClientError, Shipper};
use crate::wal::{Wal, WalError, WalTasks};

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The cluster could not start.
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    /// The stop did not end cleanly: the last writes may not be on disk.
    #[error("stopping: {0}")]
    Shutdown(String),
    /// The election state could not be opened.
    #[error("opening the election state: {0}")]
    State(sled::Error),
    /// A blocking start-up step ended without an answer, because it panicked.
    #[error("{0} did not finish")]
    StartUp(&'static str),
    /// The held writes of the handover rings could not be read.
    #[error("opening the handover rings: {0}")]
    Handover(std::io::Error),
    /// The buffer could not be opened.
    #[error("opening the buffer: {0}")]
    Wal(#[from] WalError),
    /// An endpoint client could not be built.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// A listener could not be bound.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Its address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A server failed while running.
    #[error("{what} server failed: {source}")]
    Server {
        /// Which server.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Reads the instance ID kept in the data dir, or creates one.
fn instance_id(config: &Config) -> Result<String, AppError> {
    if let Some(id) = &config.instance_id {
        return Ok(id.clone());
    }
    let path = config.data_dir.join("instance-id");
    let io = |source| AppError::DataDir {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let id = format!("{:016x}", rand::random::<u64>());
    std::fs::write(&path, format!("{id}\n")).map_err(io)?;
    Ok(id)
}

fn create_dir(path: &Path) -> Result<(), AppError> {
    std::fs::create_dir_all(path).map_err(|source| AppError::DataDir {
        path: path.display().to_string(),
        source,
    })
}

/// Runs a node until SIGTERM/SIGINT. It builds the parts, serves, and stops in order.
pub async fn run(config: Config) -> Result<(), AppError> {
    crate::shipper::client::install_crypto_provider();
    create_dir(&config.data_dir)?;
    let instance_id = instance_id(&config)?;
    log_start(&config, &instance_id);
    let node = Node::build(&config, instance_id).await?;
    let mut servers = Servers::bind(&config, &node)?;
    node.ready.store(true, Ordering::Release);
    tracing::info!(ingest = %config.ingest.listen, admin = %config.admin.listen, "ready");
    let failure = servers.until_stopped().await;
    let stopped = node.stop(servers, config.shutdown_timeout).await;
    failure.and(stopped)
}

/// The seed's start-up lines, one each and word for word as the original proxy wrote them
/// (no space before the colon, no extra field), then the rest of the settings in one line.
fn log_start(config: &Config, instance_id: &str) {
    tracing::info!("binding address: {}", config.ingest.listen);
    for e in &config.shipper.endpoints {
        tracing::info!("remote address: {}", e.display_url());
    }
    tracing::info!(
        "health tick: {}",
        humantime::format_duration(config.election.health_tick)
    );
    tracing::info!(
        "health expiry: {}",
        humantime::format_duration(config.election.health_expiry)
    );
    tracing::info!("instance ID: {instance_id}");
    tracing::info!(
        admin = %config.admin.listen,
        data_dir = %config.data_dir.display(),
        durability = ?config.wal.durability,
        buffer_max_bytes = config.wal.max_bytes,
        full_policy = ?config.wal.full_policy,
        compression = ?config.wal.compression,
        "starting"
    );
}

/// Every part of a running node, built and wired, with the tasks it started.
struct Node {
    wal: Wal,
    wal_tasks: WalTasks,
    /// The workers, the election's health checks, the cluster's tasks, the trimmer.
    tasks: Vec<JoinHandle<()>>,
    cluster: Option<Cluster>,
    ingest: Ingest,
    admin: Admin,
    /// False until the listeners are bound, and again from the shutdown on.
    ready: Arc<AtomicBool>,
    /// Stops every task.
    shutdown: CancellationToken,
}

/// What decides the promoted sources, and the cluster behind it if there is one.
struct Election {
    promotions: Arc<dyn Promotions>,
    cluster: Option<Cluster>,
}

impl Node {
    /// Opens the buffer and the election state. Starts the workers and the election, or
    /// the cluster. Builds the ingest and admin handles.
    async fn build(config: &Config, instance_id: String) -> Result<Node, AppError> {
        let (wal, store) = open_state(config).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let shutdown = CancellationToken::new();
        let wal_tasks = wal.start(&shutdown);
        let mut tasks = vec![tokio::spawn(crate::alloc::run_trimmer(shutdown.clone()))];
        // Standalone: always ship. Cluster: ship only while this node leads (see
        // cluster::shipping).
        let (gate, gate_rx) = tokio::sync::watch::channel(config.cluster.is_none());
        let (shipper, workers) = Shipper::start(
            &config.shipper.endpoints,
            config.shipper.retry,
            &wal,
            &shutdown,
            gate_rx,
            clock.clone(),
        )?;
        tasks.extend(workers);
        let election = match &config.cluster {
            None => {
                let elector =
                    Elector::with_store(config.election.health_expiry, clock.clone(), store);
                tasks.push(tokio::spawn(
                    elector
                        .clone()
                        .run_health_checks(config.election.health_tick, shutdown.clone()),
                ));
                Election {
                    promotions: Arc::new(elector),
                    cluster: None,
                }
            }
            Some(c) => {
                let cluster = start_cluster(config, c, &shutdown).await?;
                let promotions = ClusterPromotions::new(
                    cluster.clone(),
                    config.election.health_expiry,
                    clock.clone(),
                    Some(store),
                );
                tasks.push(tokio::spawn(
                    promotions
                        .clone()
                        .run(config.election.health_tick, shutdown.clone()),
                ));
                tasks.push(tokio::spawn(cluster::shipping::run(
                    cluster.clone(),
                    wal.clone(),
                    shipper.clone(),
                    c.overlap,
                    gate,
                    shutdown.clone(),
                )));
                Election {
                    promotions: Arc::new(promotions),
                    cluster: Some(cluster),
                }
            }
        };
        let ready = Arc::new(AtomicBool::new(false));
        let ingest = Ingest {
            wal: wal.clone(),
            promotions: election.promotions.clone(),
            limits: config.ingest.limits,
            replica_label: config.ingest.replica_label.as_deref().map(Arc::from),
            group_label: config.ingest.group_label.as_deref().map(Arc::from),
            require_ha_labels: config.ingest.require_ha_labels,
            ready: ready.clone(),
            clock: clock.clone(),
            handover: Handover::open(config.ingest.handover.clone(), clock.now_ms())
                .map_err(AppError::Handover)?,
        };
        let admin = Admin {
            wal: wal.clone(),
            promotions: election.promotions,
            shipper,
            cluster: election.cluster.clone(),
            ready: ready.clone(),
            info: Arc::new(node_info(config, instance_id, clock.now_ms())),
            token: config.admin.token.as_deref().map(Arc::from),
            token_reads: config.admin.token_reads,
            trends: Default::default(),
        };
        tasks.push(tokio::spawn(crate::admin::trends::run(
            admin.clone(),
            admin.trends.clone(),
            clock.clone(),
            shutdown.clone(),
        )));
        Ok(Node {
            wal,
            wal_tasks,
            tasks,
            cluster: election.cluster,
            ingest,
            admin,
            ready,
            shutdown,
        })
    }

    /// Stops in this order:
    /// 1. refuse new writes;
    /// 2. drain in-flight writes, which still get their flush;
    /// 3. stop the workers and the cluster;
    /// 4. final flush;
    /// 5. stop the admin listener.
    ///
    /// Everything waits at most `grace`. An error when the buffer's last flush failed or
    /// did not finish: the exit status then says that the last writes may not be on disk.
    async fn stop(self, servers: Servers, grace: Duration) -> Result<(), AppError> {
        self.ready.store(false, Ordering::Release);
        servers.ingest.stop(true).await;
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        for t in self.tasks {
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
        if let Some(cluster) = &self.cluster {
            if tokio::time::timeout_at(deadline, cluster.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("cluster: did not stop within the shutdown timeout");
            }
        }
        let mut failed = None;
        if !self.wal_tasks.stopped(deadline).await {
            tracing::error!("final flush did not finish within the shutdown timeout");
            failed =
                Some("the buffer's flusher did not stop within the shutdown timeout".to_owned());
        }
        servers.admin.stop(true).await;
        let wal = self.wal;
        match tokio::task::spawn_blocking(move || wal.flush_blocking()).await {
            Ok(Ok(())) => tracing::info!("stopped; buffer flushed"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "final flush failed");
                failed = Some(format!("final flush failed: {e}"));
            }
            Err(e) => {
                tracing::error!(error = %e, "final flush failed");
                failed = Some(format!("final flush failed: {e}"));
            }
        }
        failed.map_or(Ok(()), |why| Err(AppError::Shutdown(why)))
    }
}

/// Opens the buffer, with the endpoints' cursors, and the election state. Runs off the
/// reactor.
async fn open_state(config: &Config) -> Result<(Wal, ElectionStore), AppError> {
    let wal_config = config.wal.clone();
    let wal = tokio::task::spawn_blocking(move || Wal::open(wal_config))
        .await
        .map_err(|_| AppError::StartUp("opening the buffer"))??;
    let names: Vec<String> = config
        .shipper
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    wal.register_endpoints(&names, config.shipper.start_at)?;
    let state_dir = config.data_dir.join("state");
    let store = tokio::task::spawn_blocking(move || ElectionStore::open(&state_dir))
        .await
        .map_err(|_| AppError::StartUp("opening the election state"))?
        .map_err(AppError::State)?;
    Ok((wal, store))
}

/// Starts this node's part of the raft cluster.
async fn start_cluster(
    config: &Config,
    c: &crate::config::ClusterSettings,
    shutdown: &CancellationToken,
) -> Result<Cluster, AppError> {
    if c.peers.len() == 2 {
        tracing::warn!("cluster: 2 voters cannot survive the loss of either; run 3 (or 5)");
    }
    let mut cc = ClusterConfig::new(
        c.node_id,
        c.listen,
        c.peers.clone(),
        c.secret.clone(),
        config.data_dir.join("raft"),
    );
    cc.bootstrap = !c.join;
    cc.tls = c.tls.clone();
    Ok(Cluster::start(cc, shutdown.clone()).await?)
}

/// The static facts the admin API shows.
fn node_info(config: &Config, instance_id: String, started_ms: u64) -> NodeInfo {
    NodeInfo {
        instance_id,
        version: env!("HIGHLANDER_VERSION"),
        started_ms,
        ingest_listen: config.ingest.listen.to_string(),
        admin_listen: config.admin.listen.to_string(),
        data_dir: config.data_dir.display().to_string(),
        durability: config.wal.durability,
        full_policy: config.wal.full_policy,
        compression: config.wal.compression,
        buffer_max_bytes: config.wal.max_bytes,
        buffer_max_age_seconds: config.wal.max_age.as_secs(),
        health_tick_ms: config.election.health_tick.as_millis() as u64,
        health_expiry_ms: config.election.health_expiry.as_millis() as u64,
    }
}

/// The two HTTP listeners, running.
struct Servers {
    ingest: ServerHandle,
    admin: ServerHandle,
    ingest_task: JoinHandle<std::io::Result<()>>,
    admin_task: JoinHandle<std::io::Result<()>>,
}

impl Servers {
    /// Binds and starts the ingest and admin listeners. Each has its own signal handling
    /// off, because `run` orders the shutdown.
    fn bind(config: &Config, node: &Node) -> Result<Servers, AppError> {
        let ingest = node.ingest.clone();
        let ingest_server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(ingest.clone()))
                .configure(ingest::routes)
        })
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs().max(1))
        .bind(config.ingest.listen)
        .map_err(|source| AppError::Bind {
            what: "ingest",
            addr: config.ingest.listen,
            source,
        })?
        .run();
        let admin = node.admin.clone();
        let admin_server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(admin.clone()))
                .configure(admin::routes)
                .default_service(web::route().to(admin::not_found))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(config.admin.listen)
        .map_err(|source| AppError::Bind {
            what: "admin",
            addr: config.admin.listen,
            source,
        })?
        .run();
        Ok(Servers {
            ingest: ingest_server.handle(),
            admin: admin_server.handle(),
            ingest_task: tokio::spawn(ingest_server),
            admin_task: tokio::spawn(admin_server),
        })
    }

    /// Waits for SIGTERM/SIGINT (`Ok`), or for a listener to fail (`Err`).
    async fn until_stopped(&mut self) -> Result<(), AppError> {
        let (what, result) = tokio::select! {
            signal = shutdown_signal() => {
                tracing::info!(signal, "shutting down");
                return Ok(());
            }
            r = &mut self.ingest_task => ("ingest", r),
            r = &mut self.admin_task => ("admin", r),
        };
        let source = match result {
            Ok(Ok(())) => std::io::Error::other("stopped unexpectedly"),
            Ok(Err(e)) => e,
            Err(e) => std::io::Error::other(e.to_string()),
        };
        tracing::error!(server = what, error = %source, "shutting down: a listener failed");
        Err(AppError::Server { what, source })
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

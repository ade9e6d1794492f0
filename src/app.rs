//! Builds every part, wires them together, runs until a signal, and stops in order:
//! refuse new writes → drain in-flight writes (they still get their flush) → stop the
//! workers → final flush → stop the admin listener.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
use crate::wal::{Wal, WalError};

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
    /// The election state could not be opened.
    #[error("opening the election state: {0}")]
    State(sled::Error),
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

/// Runs a node until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), AppError> {
    crate::shipper::client::install_crypto_provider();
    create_dir(&config.data_dir)?;
    let instance_id = instance_id(&config)?;

    tracing::info!("binding address : {}", config.ingest.listen);
    for e in &config.shipper.endpoints {
        tracing::info!(endpoint = %e.name, "remote address : {}", e.display_url());
    }
    tracing::info!(
        "health tick : {}",
        humantime::format_duration(config.election.health_tick)
    );
    tracing::info!(
        "health expiry : {}",
        humantime::format_duration(config.election.health_expiry)
    );
    tracing::info!("instance ID : {instance_id}");
    tracing::info!(
        admin = %config.admin.listen,
        data_dir = %config.data_dir.display(),
        durability = ?config.wal.durability,
        buffer_max_bytes = config.wal.max_bytes,
        full_policy = ?config.wal.full_policy,
        compression = ?config.wal.compression,
        "starting"
    );

    let wal_config = config.wal.clone();
    let wal = tokio::task::spawn_blocking(move || Wal::open(wal_config))
        .await
        .map_err(|_| WalError::Closed)??;
    let names: Vec<String> = config
        .shipper
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    wal.register_endpoints(&names, config.shipper.start_at)?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let shutdown = CancellationToken::new();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let state_dir = config.data_dir.join("state");
    let store = tokio::task::spawn_blocking(move || ElectionStore::open(&state_dir))
        .await
        .map_err(|_| WalError::Closed)?
        .map_err(AppError::State)?;
    let wal_tasks = wal.start(&shutdown);
    tasks.push(tokio::spawn(crate::alloc::run_trimmer(shutdown.clone())));
    // Standalone: always ship. Cluster: only while this node leads (see cluster::shipping).
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

    let (promotions, cluster): (Arc<dyn Promotions>, Option<Cluster>) = match &config.cluster {
        None => {
            let elector = Elector::with_store(config.election.health_expiry, clock.clone(), store);
            tasks.push(tokio::spawn(
                elector
                    .clone()
                    .run_health_checks(config.election.health_tick, shutdown.clone()),
            ));
            (Arc::new(elector), None)
        }
        Some(c) => {
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
            let cluster = Cluster::start(cc, shutdown.clone()).await?;
            tracing::info!(node = c.node_id, listen = %c.listen, peers = ?c.peers, "cluster: started");
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
            (Arc::new(promotions), Some(cluster))
        }
    };
    let ready = Arc::new(AtomicBool::new(false));
    let ingest = Ingest {
        wal: wal.clone(),
        promotions: promotions.clone(),
        limits: config.ingest.limits,
        replica_label: config.ingest.replica_label.as_deref().map(Arc::from),
        group_label: config.ingest.group_label.as_deref().map(Arc::from),
        ready: ready.clone(),
        clock: clock.clone(),
        handover: Handover::new(config.ingest.handover),
    };
    let info = NodeInfo {
        instance_id,
        version: env!("CARGO_PKG_VERSION"),
        started_ms: SystemClock.now_ms(),
        ingest_listen: config.ingest.listen.to_string(),
        admin_listen: config.admin.listen.to_string(),
        data_dir: config.data_dir.display().to_string(),
        durability: format!("{:?}", config.wal.durability).to_lowercase(),
        full_policy: match config.wal.full_policy {
            crate::wal::FullPolicy::DropOldest => "drop-oldest".into(),
            crate::wal::FullPolicy::Block => "block".into(),
        },
        compression: match config.wal.compression {
            crate::wal::Compression::Auto => "auto".into(),
            crate::wal::Compression::Always => "always".into(),
            crate::wal::Compression::Never => "never".into(),
        },
        buffer_max_bytes: config.wal.max_bytes,
        buffer_max_age_seconds: config.wal.max_age.as_secs(),
        health_tick_ms: config.election.health_tick.as_millis() as u64,
        health_expiry_ms: config.election.health_expiry.as_millis() as u64,
    };
    let admin = Admin {
        wal: wal.clone(),
        promotions,
        shipper,
        cluster: cluster.clone(),
        ready: ready.clone(),
        info: Arc::new(info),
        token: config.admin.token.as_deref().map(Arc::from),
        token_reads: config.admin.token_reads,
    };

    let grace = config.shutdown_timeout;
    let ingest_server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(ingest.clone()))
            .configure(ingest::routes)
    })
    .disable_signals()
    .shutdown_timeout(grace.as_secs().max(1))
    .bind(config.ingest.listen)
    .map_err(|source| AppError::Bind {
        what: "ingest",
        addr: config.ingest.listen,
        source,
    })?
    .run();
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
    let ingest_handle = ingest_server.handle();
    let admin_handle = admin_server.handle();
    let mut ingest_task = tokio::spawn(ingest_server);
    let mut admin_task = tokio::spawn(admin_server);
    ready.store(true, Ordering::Release);
    tracing::info!(ingest = %config.ingest.listen, admin = %config.admin.listen, "ready");

    let mut failure = None;
    tokio::select! {
        signal = shutdown_signal() => tracing::info!(signal, "shutting down"),
        r = &mut ingest_task => failure = Some(("ingest", r)),
        r = &mut admin_task => failure = Some(("admin", r)),
    }

    ready.store(false, Ordering::Release);
    // In-flight writes finish (their flush still runs) before the workers stop.
    ingest_handle.stop(true).await;
    shutdown.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    for t in tasks {
        let _ = tokio::time::timeout_at(deadline, t).await;
    }
    if !wal_tasks.stopped(deadline).await {
        tracing::error!("final flush did not finish within the shutdown timeout");
    }
    admin_handle.stop(true).await;
    match tokio::task::spawn_blocking(move || wal.flush_blocking()).await {
        Ok(Ok(())) => tracing::info!("stopped; buffer flushed"),
        Ok(Err(e)) => tracing::error!(error = %e, "final flush failed"),
        Err(e) => tracing::error!(error = %e, "final flush failed"),
    }
    match failure {
        Some((what, Ok(Err(source)))) => Err(AppError::Server { what, source }),
        Some((what, Err(e))) => Err(AppError::Server {
            what,
            source: std::io::Error::other(e.to_string()),
        }),
        _ => Ok(()),
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

//! Admin HTTP: health, readiness, JSON views of the node, operator actions, metrics and
//! the status page.
//!
//! # Invariants
//! - The admin API reads the handles of the other parts. Its only state of its own is the
//!   trend rings ([`trends`]): bounded, in memory, filled from the same views.
//! - It runs on its own listener (default 127.0.0.1:9092), apart from the ingest listener.
//! - When a token is configured, mutations need `Authorization: Bearer <token>`. With
//!   `--admin-token-reads`, reads need it too.
//! - Every mutation is logged at INFO with the caller and the action.
//! - Errors are JSON `{error, detail}`.

mod actions;
mod auth;
mod error;
mod metrics;
mod page;
pub mod trends;
mod views;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;

pub use error::AdminError;

use crate::election::Promotions;
use crate::shipper::Shipper;
use crate::wal::{Compression, Durability, FullPolicy, Wal};

/// Static facts about the node, for `/api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// Instance ID.
    pub instance_id: String,
    /// highlander version.
    pub version: &'static str,
    /// Start time (ms since the epoch).
    pub started_ms: u64,
    /// remote_write listener.
    pub ingest_listen: String,
    /// Admin listener.
    pub admin_listen: String,
    /// Data directory.
    pub data_dir: String,
    /// Durability mode.
    pub durability: Durability,
    /// Full-buffer policy.
    pub full_policy: FullPolicy,
    /// When buffered writes are stored compressed (`auto`, `always`, `never`).
    pub compression: Compression,
    /// Buffer byte cap.
    pub buffer_max_bytes: u64,
    /// Buffer age limit (seconds).
    pub buffer_max_age_seconds: u64,
    /// Health tick (ms).
    pub health_tick_ms: u64,
    /// Health expiry (ms).
    pub health_expiry_ms: u64,
}

/// What the admin handlers read and act on. A cheap clone.
#[derive(Clone)]
pub struct Admin {
    /// The buffer.
    pub wal: Wal,
    /// The election.
    pub promotions: Arc<dyn Promotions>,
    /// The endpoint workers.
    pub shipper: Shipper,
    /// Whether the node accepts writes.
    pub ready: Arc<AtomicBool>,
    /// Static facts.
    pub info: Arc<NodeInfo>,
    /// Bearer token for mutations (and reads with `token_reads`).
    pub token: Option<Arc<str>>,
    /// Whether reads need the token.
    pub token_reads: bool,
    /// The cluster, when this node is a member of one.
    pub cluster: Option<crate::cluster::Cluster>,
    /// Rates and lag of the last minutes, filled by [`trends::run`].
    pub trends: Arc<parking_lot::Mutex<trends::Trends>>,
}

/// What a handler answers: 200 with a JSON body of the [`crate::api`] type `T`, or else an
/// [`AdminError`].
type Answer<T> = Result<web::Json<T>, AdminError>;

/// Registers the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(views::healthz))
        .route("/readyz", web::get().to(views::readyz))
        .route("/", web::get().to(page::index))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/api/v1/status", web::get().to(views::status))
        .route("/api/v1/cluster", web::get().to(views::cluster))
        .route(
            "/api/v1/cluster/members",
            web::post().to(actions::add_member),
        )
        .route(
            "/api/v1/cluster/members/{id}",
            web::delete().to(actions::remove_member),
        )
        .route(
            "/api/v1/cluster/transfer-leader",
            web::post().to(actions::transfer_leader),
        )
        .route("/api/v1/queue", web::get().to(views::queue))
        .route("/api/v1/trends", web::get().to(views::trends))
        .route("/api/v1/queue/records", web::get().to(views::records))
        .route("/api/v1/queue/records/{seq}", web::get().to(views::record))
        .route("/api/v1/endpoints", web::get().to(views::endpoints))
        .route("/api/v1/groups", web::get().to(views::groups))
        .route("/api/v1/groups/{group}", web::get().to(views::group))
        .route(
            "/api/v1/groups/{group}/history",
            web::get().to(views::group_history),
        )
        .route("/api/v1/quarantine", web::get().to(views::quarantine))
        .route("/api/v1/groups/{group}/pin", web::post().to(actions::pin))
        .route(
            "/api/v1/groups/{group}/unpin",
            web::post().to(actions::unpin),
        )
        .route(
            "/api/v1/groups/{group}/failover",
            web::post().to(actions::failover),
        )
        .route(
            "/api/v1/endpoints/{name}/pause",
            web::post().to(actions::pause),
        )
        .route(
            "/api/v1/endpoints/{name}/resume",
            web::post().to(actions::resume),
        )
        .route(
            "/api/v1/endpoints/{name}/skip",
            web::post().to(actions::skip),
        )
        .route(
            "/api/v1/endpoints/{name}/replay",
            web::post().to(actions::replay),
        )
        .route(
            "/api/v1/quarantine/{seq}/replay",
            web::post().to(actions::replay_quarantined),
        )
        .route(
            "/api/v1/quarantine/{seq}",
            web::delete().to(actions::delete_quarantined),
        )
        .app_data(web::JsonConfig::default().error_handler(bad_input))
        .app_data(web::PathConfig::default().error_handler(bad_input))
        .app_data(web::QueryConfig::default().error_handler(bad_input));
}

/// A body, path or query string that does not parse: 400 with the parser's reason.
fn bad_input<E: std::fmt::Display>(err: E, _: &actix_web::HttpRequest) -> actix_web::Error {
    AdminError::bad_request(err.to_string()).into()
}

/// Any other path or method: a JSON 404 like every other admin error.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, AdminError> {
    Err(AdminError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no admin endpoint {} {}", req.method(), req.path()),
    ))
}

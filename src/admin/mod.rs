//! Admin HTTP: health, readiness, and JSON views of the queue and the groups.
//!
//! It reads the handles of the other parts and owns no state of its own. Runs on its own
//! listener (default 127.0.0.1:9092), apart from the ingest listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::election::{GroupView, Promotions};
use crate::shipper::{EndpointState, Shipper};
use crate::wal::Wal;

/// What the admin handlers read. A cheap clone.
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
    /// This node's identity.
    pub instance_id: String,
}

/// Registers the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/api/v1/queue", web::get().to(queue))
        .route("/api/v1/groups", web::get().to(groups))
        .route("/api/v1/groups/{group}", web::get().to(group));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(admin: web::Data<Admin>) -> HttpResponse {
    if admin.ready.load(Ordering::Acquire) {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("not ready\n")
    }
}

/// One endpoint in `/api/v1/queue`.
#[derive(Serialize)]
struct EndpointView {
    name: String,
    url: String,
    state: EndpointState,
    cursor: u64,
    lag_records: u64,
    lag_bytes: u64,
    lag_seconds: f64,
    dropped_records: u64,
    last_error: Option<String>,
    last_error_ms: Option<u64>,
    next_retry_ms: Option<u64>,
    sent_records: u64,
    sent_samples: u64,
    sent_bytes: u64,
    failed_requests: u64,
    retries: u64,
    quarantined: u64,
}

/// `/api/v1/queue`.
#[derive(Serialize)]
struct QueueView {
    instance_id: String,
    records: u64,
    bytes: u64,
    max_bytes: u64,
    oldest_age_seconds: f64,
    first_seq: u64,
    next_seq: u64,
    dropped_records: u64,
    quarantined: usize,
    endpoints: Vec<EndpointView>,
}

async fn queue(admin: web::Data<Admin>) -> HttpResponse {
    let admin = admin.get_ref().clone();
    let view = web::block(move || {
        let stats = admin.wal.stats();
        let endpoints = admin
            .shipper
            .statuses()
            .into_iter()
            .map(|s| {
                let c = stats.endpoints.get(&s.name);
                EndpointView {
                    cursor: c.map_or(0, |c| c.cursor),
                    lag_records: c.map_or(0, |c| c.lag_records),
                    lag_bytes: c.map_or(0, |c| c.lag_bytes),
                    lag_seconds: c.map_or(0.0, |c| c.lag_seconds),
                    dropped_records: c.map_or(0, |c| c.dropped_records),
                    name: s.name,
                    url: s.url,
                    state: s.state,
                    last_error: s.last_error,
                    last_error_ms: s.last_error_ms,
                    next_retry_ms: s.next_retry_ms,
                    sent_records: s.sent_records,
                    sent_samples: s.sent_samples,
                    sent_bytes: s.sent_bytes,
                    failed_requests: s.failed_requests,
                    retries: s.retries,
                    quarantined: s.quarantined,
                }
            })
            .collect();
        QueueView {
            instance_id: admin.instance_id.clone(),
            records: stats.records,
            bytes: stats.bytes,
            max_bytes: stats.max_bytes,
            oldest_age_seconds: stats.oldest_age_seconds,
            first_seq: stats.first_seq,
            next_seq: stats.next_seq,
            dropped_records: stats.dropped_records,
            quarantined: admin.wal.quarantined(),
            endpoints,
        }
    })
    .await;
    match view {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(e) => error(500, "internal", &e.to_string()),
    }
}

/// One group in `/api/v1/groups`.
#[derive(Serialize)]
struct NamedGroup {
    name: String,
    #[serde(flatten)]
    group: GroupView,
}

async fn groups(admin: web::Data<Admin>) -> HttpResponse {
    let groups: Vec<NamedGroup> = admin
        .promotions
        .groups()
        .into_iter()
        .map(|(name, group)| NamedGroup { name, group })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "groups": groups }))
}

async fn group(admin: web::Data<Admin>, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    match admin.promotions.groups().remove(&name) {
        Some(group) => HttpResponse::Ok().json(NamedGroup { name, group }),
        None => error(
            404,
            "unknown_group",
            &format!("no group named {name:?} has been seen"),
        ),
    }
}

/// A JSON error `{error, detail}`.
fn error(status: u16, error: &str, detail: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(serde_json::json!({ "error": error, "detail": detail }))
}

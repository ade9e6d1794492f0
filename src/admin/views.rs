//! Read-only admin endpoints.

use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::web::Json;
use actix_web::{web, HttpResponse};
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::Read;
use super::{Admin, AdminError};
use crate::clock::{Clock, SystemClock};
use crate::election::{ElectionError, GroupView, HistoryEntry};
use crate::proto::WriteRequest;
use crate::shipper::EndpointState;
use crate::wal::{ReadItem, RecordSummary};

/// History entries shown per group in the list view.
const HISTORY_IN_LIST: usize = 10;
/// Most records one peek returns.
const MAX_PEEK: usize = 1_000;
/// Series shown in a record preview.
const PREVIEW_SERIES: usize = 5;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

pub async fn readyz(admin: web::Data<Admin>) -> HttpResponse {
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

/// What a view answers: 200 with a JSON body, or an [`AdminError`].
type View<T = Value> = Result<Json<T>, AdminError>;

pub async fn status(admin: web::Data<Admin>, _: Read) -> View {
    let now = SystemClock.now_ms();
    let info = &admin.info;
    Ok(Json(json!({
        "node": {
            "instance_id": info.instance_id,
            "version": info.version,
            "started_ms": info.started_ms,
            "uptime_seconds": now.saturating_sub(info.started_ms) / 1000,
        },
        "role": admin.cluster.as_ref().map_or("standalone", |c| c.status().role.as_str()),
        "cluster": admin.cluster.as_ref().map(|c| c.status()),
        "ready": admin.ready.load(Ordering::Acquire),
        "listeners": { "ingest": info.ingest_listen, "admin": info.admin_listen },
        "data_dir": info.data_dir,
        "durability": info.durability,
        "buffer": {
            "max_bytes": info.buffer_max_bytes,
            "max_age_seconds": info.buffer_max_age_seconds,
            "full_policy": info.full_policy,
            "compression": info.compression,
            "compressing": admin.wal.compacting(),
        },
        "health": { "tick_ms": info.health_tick_ms, "expiry_ms": info.health_expiry_ms },
        "endpoints": admin.shipper.statuses().into_iter().map(|s| s.name).collect::<Vec<_>>(),
    })))
}

pub async fn cluster(admin: web::Data<Admin>, _: Read) -> View {
    let c = admin
        .cluster
        .as_ref()
        .ok_or_else(AdminError::not_clustered)?;
    Ok(Json(json!({
        "status": c.status(),
        "members": c.members(),
        "control": c.control().current().state,
    })))
}

/// One endpoint: the worker's status with its position in the buffer.
#[derive(Serialize)]
pub struct EndpointView {
    pub(super) name: String,
    url: String,
    pub(super) state: EndpointState,
    cursor: u64,
    pub(super) lag_records: u64,
    pub(super) lag_bytes: u64,
    pub(super) lag_seconds: f64,
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
    pub(super) in_flight: usize,
    max_in_flight: usize,
}

/// `/api/v1/queue`.
#[derive(Serialize)]
pub struct QueueView {
    pub(super) records: u64,
    pub(super) bytes: u64,
    pub(super) max_bytes: u64,
    pub(super) oldest_age_seconds: f64,
    first_seq: u64,
    next_seq: u64,
    dropped_records: u64,
    pub(super) quarantined: usize,
    pub(super) endpoints: Vec<EndpointView>,
}

/// Builds the queue view (blocking: reads the WAL's index).
pub fn queue_view(admin: &Admin) -> QueueView {
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
                in_flight: s.in_flight,
                max_in_flight: s.max_in_flight,
            }
        })
        .collect();
    QueueView {
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
}

pub async fn queue(admin: web::Data<Admin>, _: Read) -> View<QueueView> {
    let admin = admin.get_ref().clone();
    Ok(Json(web::block(move || queue_view(&admin)).await?))
}

pub async fn endpoints(admin: web::Data<Admin>, _: Read) -> View {
    let admin = admin.get_ref().clone();
    let endpoints = web::block(move || queue_view(&admin).endpoints).await?;
    Ok(Json(json!({ "endpoints": endpoints })))
}

/// `?from=SEQ&limit=N`.
#[derive(Deserialize)]
pub struct Peek {
    from: Option<u64>,
    limit: Option<usize>,
}

pub async fn records(admin: web::Data<Admin>, _: Read, q: web::Query<Peek>) -> View {
    let wal = admin.wal.clone();
    let from = q.from.unwrap_or_else(|| wal.first_seq());
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PEEK);
    let records = web::block(move || wal.peek(from, limit)).await??;
    Ok(Json(json!({ "records": records })))
}

/// A record with a decoded look at its first series.
#[derive(Serialize)]
pub struct RecordPreview {
    #[serde(flatten)]
    summary: RecordSummary,
    preview: Option<Vec<SeriesPreview>>,
}

#[derive(Serialize)]
struct SeriesPreview {
    labels: std::collections::BTreeMap<String, String>,
    samples: usize,
    histograms: usize,
    exemplars: usize,
}

fn preview(payload: &[u8]) -> Option<Vec<SeriesPreview>> {
    let raw = snap::raw::Decoder::new().decompress_vec(payload).ok()?;
    let req = WriteRequest::decode(raw.as_slice()).ok()?;
    Some(
        req.timeseries
            .iter()
            .take(PREVIEW_SERIES)
            .map(|t| SeriesPreview {
                labels: t
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                samples: t.samples.len(),
                histograms: t.histograms.len(),
                exemplars: t.exemplars.len(),
            })
            .collect(),
    )
}

pub async fn record(admin: web::Data<Admin>, _: Read, seq: web::Path<u64>) -> View<RecordPreview> {
    let seq = seq.into_inner();
    let wal = admin.wal.clone();
    let item = web::block(move || wal.get(seq)).await??.ok_or_else(|| {
        AdminError::new(
            StatusCode::NOT_FOUND,
            "unknown_record",
            format!("record {seq} is not buffered"),
        )
    })?;
    let preview = match &item {
        ReadItem::Record(_, r) => preview(&r.payload),
        ReadItem::Corrupt(..) => None,
    };
    Ok(Json(RecordPreview {
        summary: RecordSummary::of(&item),
        preview,
    }))
}

/// One group with its name and recent history.
#[derive(Serialize)]
pub struct NamedGroup {
    name: String,
    #[serde(flatten)]
    group: GroupView,
    history: Vec<HistoryEntry>,
}

pub async fn groups(admin: web::Data<Admin>, _: Read) -> View {
    let admin = admin.get_ref().clone();
    let groups = web::block(move || {
        admin
            .promotions
            .groups()
            .into_iter()
            .map(|(name, group)| {
                let mut history = admin.promotions.history(&name);
                history.truncate(HISTORY_IN_LIST);
                NamedGroup {
                    name,
                    group,
                    history,
                }
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(json!({ "groups": groups })))
}

pub async fn group(admin: web::Data<Admin>, _: Read, name: web::Path<String>) -> View<NamedGroup> {
    let name = name.into_inner();
    let unknown = ElectionError::UnknownGroup(name.clone());
    let admin = admin.get_ref().clone();
    let view = web::block(move || {
        let history = admin.promotions.history(&name);
        // A group silent for long is forgotten by the election, but its history is kept:
        // show it with nobody promoted rather than as unknown.
        let group = match admin.promotions.groups().remove(&name) {
            Some(g) => g,
            None if !history.is_empty() => GroupView::default(),
            None => return None,
        };
        Some(NamedGroup {
            name,
            group,
            history,
        })
    })
    .await?;
    Ok(Json(view.ok_or(unknown)?))
}

pub async fn quarantine(admin: web::Data<Admin>, _: Read) -> View {
    let wal = admin.wal.clone();
    let list = web::block(move || wal.quarantine_list()).await??;
    Ok(Json(json!({ "quarantine": list })))
}

//! Read-only admin endpoints.

use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::web::Json;
use actix_web::{web, HttpResponse};
use prost::Message;
use serde::Deserialize;

use super::auth::Read;
use super::{Admin, AdminError, Answer};
use crate::api;
use crate::clock::{Clock, SystemClock};
use crate::election::{ElectionError, GroupView};
use crate::proto::WriteRequest;
use crate::wal::{ReadItem, Record, RecordSummary};
use crate::wire::{self, Version, Wanted};

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

pub async fn status(admin: web::Data<Admin>, _: Read) -> Answer<api::Status> {
    let now = SystemClock.now_ms();
    let info = &admin.info;
    let cluster = admin.cluster.as_ref().map(|c| c.status());
    Ok(Json(api::Status {
        node: api::Node {
            instance_id: info.instance_id.clone(),
            version: info.version.to_owned(),
            started_ms: Some(info.started_ms),
            uptime_seconds: Some(now.saturating_sub(info.started_ms) / 1000),
        },
        role: cluster
            .as_ref()
            .map_or("standalone", |c| c.role.as_str())
            .to_owned(),
        cluster,
        ready: Some(admin.ready.load(Ordering::Acquire)),
        listeners: api::Listeners {
            ingest: info.ingest_listen.clone(),
            admin: info.admin_listen.clone(),
        },
        data_dir: info.data_dir.clone(),
        durability: Some(info.durability),
        buffer: api::Buffer {
            max_bytes: info.buffer_max_bytes,
            max_age_seconds: info.buffer_max_age_seconds,
            full_policy: Some(info.full_policy),
            compression: Some(info.compression),
            compressing: admin.wal.compacting(),
        },
        health: api::Health {
            tick_ms: info.health_tick_ms,
            expiry_ms: info.health_expiry_ms,
        },
        endpoints: admin
            .shipper
            .statuses()
            .into_iter()
            .map(|s| s.name)
            .collect(),
    }))
}

pub async fn cluster(admin: web::Data<Admin>, _: Read) -> Answer<api::Cluster> {
    let c = admin
        .cluster
        .as_ref()
        .ok_or_else(AdminError::not_clustered)?;
    Ok(Json(api::Cluster {
        status: Some(c.status()),
        members: c.members(),
        control: c.control().current().state.clone(),
    }))
}

/// Builds the queue view (blocking: reads the WAL's index).
pub fn queue_view(admin: &Admin) -> api::Queue {
    let mut stats = admin.wal.stats();
    let endpoints = admin
        .shipper
        .statuses()
        .into_iter()
        .map(|worker| api::Endpoint {
            // An endpoint without a cursor yet has taken nothing and lags by nothing.
            position: stats.endpoints.remove(&worker.name).unwrap_or_default(),
            worker,
        })
        .collect();
    api::Queue {
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

pub async fn queue(admin: web::Data<Admin>, _: Read) -> Answer<api::Queue> {
    let admin = admin.get_ref().clone();
    Ok(Json(web::block(move || queue_view(&admin)).await?))
}

/// `?step=10s` (default) or `?step=1m`.
#[derive(Deserialize)]
pub struct TrendStep {
    step: Option<String>,
}

pub async fn trends(
    admin: web::Data<Admin>,
    _: Read,
    q: web::Query<TrendStep>,
) -> Answer<api::Trends> {
    let coarse = match q.step.as_deref() {
        None | Some("10s") => false,
        Some("1m") => true,
        Some(other) => {
            return Err(AdminError::bad_request(format!(
                "step {other:?}: use 10s or 1m"
            )))
        }
    };
    Ok(Json(admin.trends.lock().view(coarse)))
}

pub async fn endpoints(admin: web::Data<Admin>, _: Read) -> Answer<api::Endpoints> {
    let admin = admin.get_ref().clone();
    let endpoints = web::block(move || queue_view(&admin).endpoints).await?;
    Ok(Json(api::Endpoints { endpoints }))
}

/// `?from=SEQ&limit=N`.
#[derive(Deserialize)]
pub struct Peek {
    from: Option<u64>,
    limit: Option<usize>,
}

pub async fn records(
    admin: web::Data<Admin>,
    _: Read,
    q: web::Query<Peek>,
) -> Answer<api::Records> {
    let wal = admin.wal.clone();
    let from = q.from.unwrap_or_else(|| wal.first_seq());
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PEEK);
    let records = web::block(move || wal.peek(from, limit)).await??;
    Ok(Json(api::Records { records }))
}

/// The first series of a record, a 2.0 record seen through its 1.0 form.
fn preview(record: &Record) -> Option<Vec<api::SeriesPreview>> {
    let mut raw = snap::raw::Decoder::new()
        .decompress_vec(&record.payload)
        .ok()?;
    if record.protocol == Version::V2 {
        raw = wire::convert_v2(&raw, Wanted::default(), None, u64::from(u32::MAX))
            .ok()?
            .1;
    }
    let req = WriteRequest::decode(raw.as_slice()).ok()?;
    Some(
        req.timeseries
            .iter()
            .take(PREVIEW_SERIES)
            .map(|t| api::SeriesPreview {
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

pub async fn record(admin: web::Data<Admin>, _: Read, seq: web::Path<u64>) -> Answer<api::Record> {
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
        ReadItem::Record(_, r) => preview(r),
        ReadItem::Corrupt(..) => None,
    };
    Ok(Json(api::Record {
        summary: RecordSummary::of(&item),
        preview,
    }))
}

pub async fn groups(admin: web::Data<Admin>, _: Read) -> Answer<api::Groups> {
    let admin = admin.get_ref().clone();
    let groups = web::block(move || {
        admin
            .promotions
            .groups()
            .into_iter()
            .map(|(name, view)| {
                let mut history = admin.promotions.history(&name);
                let mut switches = crate::election::switches(&history);
                history.truncate(HISTORY_IN_LIST);
                switches.truncate(HISTORY_IN_LIST);
                api::Group {
                    name,
                    view,
                    history,
                    switches,
                }
            })
            .collect()
    })
    .await?;
    Ok(Json(api::Groups { groups }))
}

pub async fn group(
    admin: web::Data<Admin>,
    _: Read,
    name: web::Path<String>,
) -> Answer<api::Group> {
    let name = name.into_inner();
    let unknown = ElectionError::UnknownGroup(name.clone());
    let admin = admin.get_ref().clone();
    let view = web::block(move || {
        let history = admin.promotions.history(&name);
        // The election forgets a group that was silent for long, but keeps its history.
        // Show such a group with nobody promoted, not as unknown.
        let view = match admin.promotions.groups().remove(&name) {
            Some(g) => g,
            None if !history.is_empty() => GroupView::default(),
            None => return None,
        };
        Some(api::Group {
            name,
            view,
            switches: crate::election::switches(&history),
            history,
        })
    })
    .await?;
    Ok(Json(view.ok_or(unknown)?))
}

pub async fn group_history(
    admin: web::Data<Admin>,
    _: Read,
    name: web::Path<String>,
) -> Answer<api::GroupHistory> {
    let name = name.into_inner();
    let unknown = ElectionError::UnknownGroup(name.clone());
    let admin = admin.get_ref().clone();
    let history = web::block(move || {
        let events = admin.promotions.history(&name);
        if events.is_empty() && !admin.promotions.groups().contains_key(&name) {
            return None;
        }
        Some(api::GroupHistory {
            switches: crate::election::switches(&events),
            group: name,
            events,
        })
    })
    .await?;
    Ok(Json(history.ok_or(unknown)?))
}

pub async fn quarantine(admin: web::Data<Admin>, _: Read) -> Answer<api::Quarantine> {
    let wal = admin.wal.clone();
    let quarantine = web::block(move || wal.quarantine_list()).await??;
    Ok(Json(api::Quarantine { quarantine }))
}

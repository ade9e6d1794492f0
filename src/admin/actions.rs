//! Operator actions: pin/unpin/failover a group; pause/resume/skip/replay an endpoint;
//! replay/delete a quarantined batch. Each checks the token and is logged at INFO.

use std::time::UNIX_EPOCH;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{auth, election_error, error, shipper_error, Admin};
use crate::clock::{Clock, SystemClock};
use crate::shipper::Target;

macro_rules! guard_mutation {
    ($admin:expr, $req:expr) => {
        if let Some(resp) = auth::mutation(&$admin, &$req) {
            return resp;
        }
    };
}

/// A point in time: milliseconds since the epoch, or an RFC 3339 string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TimeArg {
    /// ms since the epoch.
    Millis(u64),
    /// e.g. `2026-11-21T22:00:00Z`.
    Text(String),
}

impl TimeArg {
    fn millis(&self) -> Result<u64, String> {
        match self {
            TimeArg::Millis(ms) => Ok(*ms),
            TimeArg::Text(t) => humantime::parse_rfc3339_weak(t)
                .map_err(|e| format!("{t:?} is not an RFC 3339 time ({e})"))
                .and_then(|st| {
                    st.duration_since(UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .map_err(|_| format!("{t:?} is before 1970"))
                }),
        }
    }
}

fn bad_request(detail: &str) -> HttpResponse {
    error(StatusCode::BAD_REQUEST, "bad_request", detail)
}

/// Body of `pin`: a source, and optionally an end (`until`) or a duration (`for`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    source: String,
    until: Option<TimeArg>,
    #[serde(rename = "for")]
    for_: Option<String>,
}

/// Body of `failover` (optional): how long the new source stays pinned.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverBody {
    until: Option<TimeArg>,
    #[serde(rename = "for")]
    for_: Option<String>,
}

fn until_ms(until: &Option<TimeArg>, for_: &Option<String>) -> Result<Option<u64>, String> {
    match (until, for_) {
        (Some(_), Some(_)) => Err("give either until or for, not both".into()),
        (Some(u), None) => u.millis().map(Some),
        (None, Some(f)) => humantime::parse_duration(f)
            .map(|d| Some(SystemClock.now_ms() + d.as_millis() as u64))
            .map_err(|e| format!("for: {f:?} is not a duration ({e})")),
        (None, None) => Ok(None),
    }
}

pub async fn pin(
    admin: web::Data<Admin>,
    req: HttpRequest,
    group: web::Path<String>,
    body: web::Json<PinBody>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    let until = match until_ms(&body.until, &body.for_) {
        Ok(u) => u,
        Err(e) => return bad_request(&e),
    };
    match admin.promotions.pin(&group, &body.source, until).await {
        Ok(view) => {
            tracing::info!(caller = %auth::caller(&req), group = %group, source = %body.source, until_ms = ?until, "admin: group pinned");
            HttpResponse::Ok().json(view)
        }
        Err(e) => election_error(&e),
    }
}

pub async fn unpin(
    admin: web::Data<Admin>,
    req: HttpRequest,
    group: web::Path<String>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    match admin.promotions.unpin(&group).await {
        Ok(pin) => {
            tracing::info!(caller = %auth::caller(&req), group = %group, source = %pin.source, "admin: group unpinned");
            HttpResponse::Ok().json(serde_json::json!({ "removed": pin }))
        }
        Err(e) => election_error(&e),
    }
}

pub async fn failover(
    admin: web::Data<Admin>,
    req: HttpRequest,
    group: web::Path<String>,
    body: Option<web::Json<FailoverBody>>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let until = match until_ms(&body.until, &body.for_) {
        Ok(u) => u,
        Err(e) => return bad_request(&e),
    };
    match admin.promotions.failover(&group, until).await {
        Ok(view) => {
            tracing::info!(
                caller = %auth::caller(&req),
                group = %group,
                promoted = ?view.promoted.as_ref().map(|p| &p.source),
                "admin: failover forced"
            );
            HttpResponse::Ok().json(view)
        }
        Err(e) => election_error(&e),
    }
}

pub async fn pause(
    admin: web::Data<Admin>,
    req: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    set_paused(&admin, &req, &name, true)
}

pub async fn resume(
    admin: web::Data<Admin>,
    req: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    set_paused(&admin, &req, &name, false)
}

fn set_paused(admin: &Admin, req: &HttpRequest, name: &str, paused: bool) -> HttpResponse {
    guard_mutation!(admin, req);
    let result = if paused {
        admin.shipper.pause(name)
    } else {
        admin.shipper.resume(name)
    };
    match result {
        Ok(was) => {
            let action = if paused { "paused" } else { "resumed" };
            tracing::info!(caller = %auth::caller(req), endpoint = %name, "admin: endpoint {action}");
            HttpResponse::Ok()
                .json(serde_json::json!({ "endpoint": name, "paused": paused, "was_paused": was }))
        }
        Err(e) => shipper_error(&e),
    }
}

/// Body of `skip`: exactly one of `to_seq`, `to_time`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipBody {
    to_seq: Option<u64>,
    to_time: Option<TimeArg>,
}

/// Body of `replay`: exactly one of `from_seq`, `from_time`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    from_seq: Option<u64>,
    from_time: Option<TimeArg>,
}

fn target(seq: Option<u64>, time: &Option<TimeArg>, names: &str) -> Result<Target, String> {
    match (seq, time) {
        (Some(s), None) => Ok(Target::Seq(s)),
        (None, Some(t)) => t.millis().map(Target::Time),
        _ => Err(format!("give exactly one of {names}")),
    }
}

pub async fn skip(
    admin: web::Data<Admin>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Json<SkipBody>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    let t = match target(body.to_seq, &body.to_time, "to_seq, to_time") {
        Ok(t) => t,
        Err(e) => return bad_request(&e),
    };
    match admin.shipper.skip(&name, t) {
        Ok(m) => {
            tracing::warn!(caller = %auth::caller(&req), endpoint = %name, from = m.from, to = m.to, records = m.records, "admin: endpoint backlog skipped; those records will not reach it");
            HttpResponse::Ok().json(serde_json::json!({ "endpoint": *name, "from": m.from, "to": m.to, "skipped_records": m.records }))
        }
        Err(e) => shipper_error(&e),
    }
}

pub async fn replay(
    admin: web::Data<Admin>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Json<ReplayBody>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    let t = match target(body.from_seq, &body.from_time, "from_seq, from_time") {
        Ok(t) => t,
        Err(e) => return bad_request(&e),
    };
    match admin.shipper.replay(&name, t) {
        Ok(m) => {
            tracing::info!(caller = %auth::caller(&req), endpoint = %name, from = m.from, to = m.to, records = m.records, "admin: endpoint replays buffered records");
            HttpResponse::Ok().json(serde_json::json!({ "endpoint": *name, "from": m.from, "to": m.to, "replayed_records": m.records }))
        }
        Err(e) => shipper_error(&e),
    }
}

/// `?endpoint=NAME` for quarantine actions.
#[derive(Debug, Deserialize)]
pub struct EndpointQuery {
    endpoint: Option<String>,
}

pub async fn replay_quarantined(
    admin: web::Data<Admin>,
    req: HttpRequest,
    seq: web::Path<u64>,
    q: web::Query<EndpointQuery>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    let shipper = admin.shipper.clone();
    let (seq, endpoint) = (seq.into_inner(), q.into_inner().endpoint);
    let e2 = endpoint.clone();
    let result = web::block(move || shipper.replay_quarantined(seq, e2.as_deref())).await;
    match result {
        Ok(Ok(names)) => {
            tracing::info!(caller = %auth::caller(&req), seq, endpoints = ?names, "admin: quarantined batch queued for replay");
            HttpResponse::Accepted().json(serde_json::json!({ "seq": seq, "queued_for": names }))
        }
        Ok(Err(e)) => shipper_error(&e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

pub async fn delete_quarantined(
    admin: web::Data<Admin>,
    req: HttpRequest,
    seq: web::Path<u64>,
    q: web::Query<EndpointQuery>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    let shipper = admin.shipper.clone();
    let (seq, endpoint) = (seq.into_inner(), q.into_inner().endpoint);
    let result = web::block(move || shipper.delete_quarantined(seq, endpoint.as_deref())).await;
    match result {
        Ok(Ok(names)) => {
            tracing::warn!(caller = %auth::caller(&req), seq, endpoints = ?names, "admin: quarantined batch deleted; its samples are gone");
            HttpResponse::Ok().json(serde_json::json!({ "seq": seq, "deleted_for": names }))
        }
        Ok(Err(e)) => shipper_error(&e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

/// Body of `POST /api/v1/cluster/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    id: u64,
    addr: String,
    #[serde(default = "yes")]
    voter: bool,
}

fn yes() -> bool {
    true
}

fn cluster_error(e: &crate::cluster::ClusterWriteError) -> HttpResponse {
    use crate::cluster::ClusterWriteError as E;
    let status = match e {
        E::Rejected { .. } => StatusCode::CONFLICT,
        _ if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.as_label(), &e.to_string())
}

fn not_clustered() -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "not_clustered",
        "this node runs standalone (no --peers)",
    )
}

pub async fn add_member(
    admin: web::Data<Admin>,
    req: HttpRequest,
    body: web::Json<MemberBody>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    let Some(cluster) = &admin.cluster else {
        return not_clustered();
    };
    let result = if body.voter {
        cluster.add_voter(body.id, body.addr.clone()).await
    } else {
        cluster.add_learner(body.id, body.addr.clone()).await
    };
    match result {
        Ok(()) => {
            tracing::info!(caller = %auth::caller(&req), id = body.id, addr = %body.addr, voter = body.voter, "admin: cluster member added");
            HttpResponse::Ok().json(serde_json::json!({ "members": cluster.members() }))
        }
        Err(e) => cluster_error(&e),
    }
}

pub async fn remove_member(
    admin: web::Data<Admin>,
    req: HttpRequest,
    id: web::Path<u64>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    let Some(cluster) = &admin.cluster else {
        return not_clustered();
    };
    let id = id.into_inner();
    match cluster.remove(id).await {
        Ok(()) => {
            tracing::warn!(caller = %auth::caller(&req), id, "admin: cluster member removed");
            HttpResponse::Ok().json(serde_json::json!({ "members": cluster.members() }))
        }
        Err(e) => cluster_error(&e),
    }
}

/// Body of `POST /api/v1/cluster/transfer-leader`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    to: u64,
}

pub async fn transfer_leader(
    admin: web::Data<Admin>,
    req: HttpRequest,
    body: web::Json<TransferBody>,
) -> HttpResponse {
    guard_mutation!(admin, req);
    let Some(cluster) = &admin.cluster else {
        return not_clustered();
    };
    let from = cluster.leader();
    match cluster.transfer_leader(body.to).await {
        Ok(took) => {
            tracing::info!(caller = %auth::caller(&req), from = ?from, to = body.to, ?took, "admin: leadership transferred");
            HttpResponse::Ok().json(serde_json::json!({
                "transferred": { "from": from, "to": body.to, "took_ms": took.as_millis() as u64 },
                "status": cluster.status(),
                "members": cluster.members(),
            }))
        }
        Err(e) => {
            tracing::warn!(caller = %auth::caller(&req), to = body.to, error = %e, "admin: leadership transfer failed");
            let status = if e.is_retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::CONFLICT
            };
            error(status, e.as_label(), &e.to_string())
        }
    }
}

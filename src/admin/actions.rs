//! Operator actions: pin/unpin/failover a group; pause/resume/skip/replay an endpoint;
//! replay/delete a quarantined batch; cluster membership and leadership. Each needs the
//! token ([`Mutation`]) and is logged with its caller.

use std::time::UNIX_EPOCH;

use actix_web::web::Json;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Mutation;
use super::{Admin, AdminError};
use crate::clock::{Clock, SystemClock};
use crate::cluster::Cluster;
use crate::shipper::Target;

/// What an action answers: 200 with a JSON body, or an [`AdminError`].
type Answer = Result<Json<Value>, AdminError>;

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
    who: Mutation,
    group: web::Path<String>,
    body: Json<PinBody>,
) -> Answer {
    let until = until_ms(&body.until, &body.for_).map_err(AdminError::bad_request)?;
    let view = admin.promotions.pin(&group, &body.source, until).await?;
    tracing::info!(caller = %who.caller, group = %group, source = %body.source, until_ms = ?until, "admin: group pinned");
    Ok(Json(json!(view)))
}

pub async fn unpin(admin: web::Data<Admin>, who: Mutation, group: web::Path<String>) -> Answer {
    let pin = admin.promotions.unpin(&group).await?;
    tracing::info!(caller = %who.caller, group = %group, source = %pin.source, "admin: group unpinned");
    Ok(Json(json!({ "removed": pin })))
}

pub async fn failover(
    admin: web::Data<Admin>,
    who: Mutation,
    group: web::Path<String>,
    body: Option<Json<FailoverBody>>,
) -> Answer {
    let body = body.map(Json::into_inner).unwrap_or_default();
    let until = until_ms(&body.until, &body.for_).map_err(AdminError::bad_request)?;
    let view = admin.promotions.failover(&group, until).await?;
    tracing::info!(
        caller = %who.caller,
        group = %group,
        promoted = ?view.promoted.as_ref().map(|p| &p.source),
        "admin: failover forced"
    );
    Ok(Json(json!(view)))
}

pub async fn pause(admin: web::Data<Admin>, who: Mutation, name: web::Path<String>) -> Answer {
    let was = admin.shipper.pause(&name)?;
    tracing::info!(caller = %who.caller, endpoint = %name, "admin: endpoint paused");
    Ok(Json(
        json!({ "endpoint": *name, "paused": true, "was_paused": was }),
    ))
}

pub async fn resume(admin: web::Data<Admin>, who: Mutation, name: web::Path<String>) -> Answer {
    let was = admin.shipper.resume(&name)?;
    tracing::info!(caller = %who.caller, endpoint = %name, "admin: endpoint resumed");
    Ok(Json(
        json!({ "endpoint": *name, "paused": false, "was_paused": was }),
    ))
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
    who: Mutation,
    name: web::Path<String>,
    body: Json<SkipBody>,
) -> Answer {
    let t =
        target(body.to_seq, &body.to_time, "to_seq, to_time").map_err(AdminError::bad_request)?;
    let m = admin.shipper.skip(&name, t)?;
    tracing::warn!(caller = %who.caller, endpoint = %name, from = m.from, to = m.to, records = m.records, "admin: endpoint backlog skipped; those records will not reach it");
    Ok(Json(
        json!({ "endpoint": *name, "from": m.from, "to": m.to, "skipped_records": m.records }),
    ))
}

pub async fn replay(
    admin: web::Data<Admin>,
    who: Mutation,
    name: web::Path<String>,
    body: Json<ReplayBody>,
) -> Answer {
    let t = target(body.from_seq, &body.from_time, "from_seq, from_time")
        .map_err(AdminError::bad_request)?;
    let m = admin.shipper.replay(&name, t)?;
    tracing::info!(caller = %who.caller, endpoint = %name, from = m.from, to = m.to, records = m.records, "admin: endpoint replays buffered records");
    Ok(Json(
        json!({ "endpoint": *name, "from": m.from, "to": m.to, "replayed_records": m.records }),
    ))
}

/// `?endpoint=NAME` for quarantine actions.
#[derive(Debug, Deserialize)]
pub struct EndpointQuery {
    endpoint: Option<String>,
}

pub async fn replay_quarantined(
    admin: web::Data<Admin>,
    who: Mutation,
    seq: web::Path<u64>,
    q: web::Query<EndpointQuery>,
) -> Result<HttpResponse, AdminError> {
    let shipper = admin.shipper.clone();
    let (seq, endpoint) = (seq.into_inner(), q.into_inner().endpoint);
    let names = web::block(move || shipper.replay_quarantined(seq, endpoint.as_deref())).await??;
    tracing::info!(caller = %who.caller, seq, endpoints = ?names, "admin: quarantined batch queued for replay");
    Ok(HttpResponse::Accepted().json(json!({ "seq": seq, "queued_for": names })))
}

pub async fn delete_quarantined(
    admin: web::Data<Admin>,
    who: Mutation,
    seq: web::Path<u64>,
    q: web::Query<EndpointQuery>,
) -> Answer {
    let shipper = admin.shipper.clone();
    let (seq, endpoint) = (seq.into_inner(), q.into_inner().endpoint);
    let names = web::block(move || shipper.delete_quarantined(seq, endpoint.as_deref())).await??;
    tracing::warn!(caller = %who.caller, seq, endpoints = ?names, "admin: quarantined batch deleted; its samples are gone");
    Ok(Json(json!({ "seq": seq, "deleted_for": names })))
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

/// The cluster, or 404 on a standalone node.
fn clustered(admin: &Admin) -> Result<&Cluster, AdminError> {
    admin.cluster.as_ref().ok_or_else(AdminError::not_clustered)
}

pub async fn add_member(admin: web::Data<Admin>, who: Mutation, body: Json<MemberBody>) -> Answer {
    let cluster = clustered(&admin)?;
    if body.voter {
        cluster.add_voter(body.id, body.addr.clone()).await?;
    } else {
        cluster.add_learner(body.id, body.addr.clone()).await?;
    }
    tracing::info!(caller = %who.caller, id = body.id, addr = %body.addr, voter = body.voter, "admin: cluster member added");
    Ok(Json(json!({ "members": cluster.members() })))
}

pub async fn remove_member(admin: web::Data<Admin>, who: Mutation, id: web::Path<u64>) -> Answer {
    let cluster = clustered(&admin)?;
    let id = id.into_inner();
    cluster.remove(id).await?;
    tracing::warn!(caller = %who.caller, id, "admin: cluster member removed");
    Ok(Json(json!({ "members": cluster.members() })))
}

/// Body of `POST /api/v1/cluster/transfer-leader`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    to: u64,
}

pub async fn transfer_leader(
    admin: web::Data<Admin>,
    who: Mutation,
    body: Json<TransferBody>,
) -> Answer {
    let cluster = clustered(&admin)?;
    let from = cluster.leader();
    let took = cluster.transfer_leader(body.to).await.inspect_err(|e| {
        tracing::warn!(caller = %who.caller, to = body.to, error = %e, "admin: leadership transfer failed");
    })?;
    tracing::info!(caller = %who.caller, from = ?from, to = body.to, ?took, "admin: leadership transferred");
    Ok(Json(json!({
        "transferred": { "from": from, "to": body.to, "took_ms": took.as_millis() as u64 },
        "status": cluster.status(),
        "members": cluster.members(),
    })))
}

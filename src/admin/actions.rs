//! Operator actions:
//! - pin, unpin or fail over a group;
//! - pause, resume, skip or replay an endpoint;
//! - replay or delete a quarantined batch;
//! - cluster membership and leadership.
//!
//! Each action needs the token ([`Mutation`]) and is logged with its caller.

use std::future::{ready, Ready};
use std::time::UNIX_EPOCH;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Json, Path, Query};
use actix_web::{FromRequest, HttpRequest};
use serde::Deserialize;

use super::auth::Mutation;
use super::{Admin, AdminError, Answer};
use crate::api;
use crate::clock::{Clock, SystemClock};
use crate::cluster::Cluster;
use crate::election::GroupView;
use crate::shipper::Target;
use crate::wal::CursorMove;

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
    admin: Data<Admin>,
    who: Mutation,
    group: Path<String>,
    body: Json<PinBody>,
) -> Answer<GroupView> {
    let until = until_ms(&body.until, &body.for_).map_err(AdminError::bad_request)?;
    let view = admin.promotions.pin(&group, &body.source, until).await?;
    tracing::info!(caller = %who.caller, group = %group, source = %body.source, until_ms = ?until, "admin: group pinned");
    Ok(Json(view))
}

pub async fn unpin(
    admin: Data<Admin>,
    who: Mutation,
    group: Path<String>,
) -> Answer<api::Unpinned> {
    let pin = admin.promotions.unpin(&group).await?;
    tracing::info!(caller = %who.caller, group = %group, source = %pin.source, "admin: group unpinned");
    Ok(Json(api::Unpinned { removed: Some(pin) }))
}

pub async fn failover(
    admin: Data<Admin>,
    who: Mutation,
    group: Path<String>,
    body: Option<Json<FailoverBody>>,
) -> Answer<GroupView> {
    let body = body.map(Json::into_inner).unwrap_or_default();
    let until = until_ms(&body.until, &body.for_).map_err(AdminError::bad_request)?;
    let view = admin.promotions.failover(&group, until).await?;
    tracing::info!(
        caller = %who.caller,
        group = %group,
        promoted = ?view.promoted.as_ref().map(|p| &p.source),
        "admin: failover forced"
    );
    Ok(Json(view))
}

pub async fn pause(admin: Data<Admin>, who: Mutation, name: Path<String>) -> Answer<api::Paused> {
    set_paused(&admin, &who, name.into_inner(), true)
}

pub async fn resume(admin: Data<Admin>, who: Mutation, name: Path<String>) -> Answer<api::Paused> {
    set_paused(&admin, &who, name.into_inner(), false)
}

/// Pauses or resumes `endpoint`. The answer says whether it was paused before.
fn set_paused(
    admin: &Admin,
    who: &Mutation,
    endpoint: String,
    paused: bool,
) -> Answer<api::Paused> {
    let was_paused = if paused {
        admin.shipper.pause(&endpoint)?
    } else {
        admin.shipper.resume(&endpoint)?
    };
    let change = if paused { "paused" } else { "resumed" };
    tracing::info!(caller = %who.caller, endpoint = %endpoint, "admin: endpoint {change}");
    Ok(Json(api::Paused {
        endpoint,
        paused,
        was_paused,
    }))
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
    admin: Data<Admin>,
    who: Mutation,
    name: Path<String>,
    body: Json<SkipBody>,
) -> Answer<api::Skipped> {
    let t =
        target(body.to_seq, &body.to_time, "to_seq, to_time").map_err(AdminError::bad_request)?;
    let m = admin.shipper.skip(&name, t)?;
    tracing::warn!(caller = %who.caller, endpoint = %name, from = m.from, to = m.to, records = m.records, "admin: endpoint backlog skipped; those records will not reach it");
    Ok(Json(api::Skipped {
        moved: moved(name.into_inner(), &m),
        skipped_records: m.records,
    }))
}

pub async fn replay(
    admin: Data<Admin>,
    who: Mutation,
    name: Path<String>,
    body: Json<ReplayBody>,
) -> Answer<api::Replayed> {
    let t = target(body.from_seq, &body.from_time, "from_seq, from_time")
        .map_err(AdminError::bad_request)?;
    let m = admin.shipper.replay(&name, t)?;
    tracing::info!(caller = %who.caller, endpoint = %name, from = m.from, to = m.to, records = m.records, "admin: endpoint replays buffered records");
    Ok(Json(api::Replayed {
        moved: moved(name.into_inner(), &m),
        replayed_records: m.records,
    }))
}

/// How `skip` or `replay` moved `endpoint`'s cursor, for their answers.
fn moved(endpoint: String, m: &CursorMove) -> api::CursorMoved {
    api::CursorMoved {
        endpoint,
        from: m.from,
        to: m.to,
    }
}

/// `?endpoint=NAME` for quarantine actions.
#[derive(Debug, Deserialize)]
pub struct EndpointQuery {
    endpoint: Option<String>,
}

pub async fn replay_quarantined(
    admin: Data<Admin>,
    who: Mutation,
    seq: Path<u64>,
    q: Query<EndpointQuery>,
) -> Result<(Json<api::QuarantineQueued>, StatusCode), AdminError> {
    let shipper = admin.shipper.clone();
    let (seq, endpoint) = (seq.into_inner(), q.into_inner().endpoint);
    let queued_for =
        web::block(move || shipper.replay_quarantined(seq, endpoint.as_deref())).await??;
    tracing::info!(caller = %who.caller, seq, endpoints = ?queued_for, "admin: quarantined batch queued for replay");
    Ok((
        Json(api::QuarantineQueued { seq, queued_for }),
        StatusCode::ACCEPTED,
    ))
}

pub async fn delete_quarantined(
    admin: Data<Admin>,
    who: Mutation,
    seq: Path<u64>,
    q: Query<EndpointQuery>,
) -> Answer<api::QuarantineDeleted> {
    let shipper = admin.shipper.clone();
    let (seq, endpoint) = (seq.into_inner(), q.into_inner().endpoint);
    let deleted_for =
        web::block(move || shipper.delete_quarantined(seq, endpoint.as_deref())).await??;
    tracing::warn!(caller = %who.caller, seq, endpoints = ?deleted_for, "admin: quarantined batch deleted; its samples are gone");
    Ok(Json(api::QuarantineDeleted { seq, deleted_for }))
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

/// The cluster that a membership or leadership action changes. 404 on a standalone node.
/// The actions take it last, so a missing token (401) and a bad body (400) are reported
/// first.
pub struct Clustered(Cluster);

impl FromRequest for Clustered {
    type Error = AdminError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let cluster = req
            .app_data::<Data<Admin>>()
            .ok_or_else(|| AdminError::internal("the admin state is missing"))
            .and_then(|admin| admin.cluster.clone().ok_or_else(AdminError::not_clustered));
        ready(cluster.map(Clustered))
    }
}

pub async fn add_member(
    who: Mutation,
    body: Json<MemberBody>,
    Clustered(cluster): Clustered,
) -> Answer<api::Members> {
    if body.voter {
        cluster.add_voter(body.id, body.addr.clone()).await?;
    } else {
        cluster.add_learner(body.id, body.addr.clone()).await?;
    }
    tracing::info!(caller = %who.caller, id = body.id, addr = %body.addr, voter = body.voter, "admin: cluster member added");
    Ok(Json(api::Members {
        members: cluster.members(),
    }))
}

pub async fn remove_member(
    who: Mutation,
    id: Path<u64>,
    Clustered(cluster): Clustered,
) -> Answer<api::Members> {
    cluster.remove(*id).await?;
    tracing::warn!(caller = %who.caller, id = *id, "admin: cluster member removed");
    Ok(Json(api::Members {
        members: cluster.members(),
    }))
}

/// Body of `POST /api/v1/cluster/transfer-leader`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    to: u64,
}

pub async fn transfer_leader(
    who: Mutation,
    body: Json<TransferBody>,
    Clustered(cluster): Clustered,
) -> Answer<api::Transferred> {
    let from = cluster.leader();
    let took = cluster.transfer_leader(body.to).await.inspect_err(|e| {
        tracing::warn!(caller = %who.caller, to = body.to, error = %e, "admin: leadership transfer failed");
    })?;
    tracing::info!(caller = %who.caller, from = ?from, to = body.to, ?took, "admin: leadership transferred");
    Ok(Json(api::Transferred {
        transferred: api::Transfer {
            from,
            to: body.to,
            took_ms: took.as_millis() as u64,
        },
        status: Some(cluster.status()),
        members: cluster.members(),
    }))
}

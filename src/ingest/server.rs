//! The HTTP handlers of the ingest listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;

use super::decode::{self, Limits};
use super::error::IngestError;
use super::handover::{Handover, Held};
use super::identity::{self, Params};
use super::protocol::{Version, Written};
use crate::clock::Clock;
use crate::election::{Observation, Promotions, Role};
use crate::metrics::METRICS;
use crate::wal::Wal;
use crate::wire::Wanted;

/// Seconds a sender is asked to wait after a 503.
const RETRY_AFTER_SECS: u64 = 5;

/// Everything the ingest handlers need. A cheap clone.
#[derive(Clone)]
pub struct Ingest {
    /// Where promoted writes go.
    pub wal: Wal,
    /// Who is promoted.
    pub promotions: Arc<dyn Promotions>,
    /// Body limits.
    pub limits: Limits,
    /// Label naming the replica (stripped before storage), if configured.
    pub replica_label: Option<Arc<str>>,
    /// Label naming the HA group, if configured.
    pub group_label: Option<Arc<str>>,
    /// Refuse requests with series that lack the replica label.
    pub require_ha_labels: bool,
    /// False while starting or shutting down: writes get 503.
    pub ready: Arc<AtomicBool>,
    /// Receive times.
    pub clock: Arc<dyn Clock>,
    /// Recent writes of every source, for gapless handovers.
    pub handover: Handover,
}

/// Registers the write routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for path in ["/api/v1/write", "/"] {
        cfg.service(
            web::resource(path)
                .route(web::post().to(write))
                .route(web::route().to(method_not_allowed)),
        );
    }
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "POST"))
        .body("only POST is accepted here\n")
}

/// What happened to an accepted write.
enum Outcome {
    Stored,
    Dropped,
}

/// An accepted write: its outcome and size.
struct Accepted {
    outcome: Outcome,
    /// Samples and histograms in it.
    samples: u64,
    /// Its body's length.
    bytes: u64,
    /// What a 2.0 sender is told was written.
    written: Written,
}

async fn write(req: HttpRequest, payload: web::Payload, ingest: web::Data<Ingest>) -> HttpResponse {
    let started = std::time::Instant::now();
    let (version, result) = match Version::of(req.headers()) {
        Ok(v) => (Some(v), accept(&req, payload, &ingest, v).await),
        Err(e) => (None, Err(e)),
    };
    let m = &METRICS;
    if let Some(v) = version {
        m.ingest.protocol.with_label_values(&[v.as_str()]).inc();
    }
    // Every answer to a 2.0 request says what was written (zeros when nothing was).
    let written = |resp: &mut actix_web::HttpResponseBuilder, w: Written| {
        if version == Some(Version::V2) {
            w.insert(resp);
        }
    };
    let (outcome, resp) = match result {
        Ok(accepted) => {
            let (role, mut resp) = match accepted.outcome {
                Outcome::Stored => ("promoted", HttpResponse::NoContent()),
                Outcome::Dropped => {
                    let mut resp = HttpResponse::Accepted();
                    resp.insert_header(("X-Highlander-Role", "standby"));
                    ("standby", resp)
                }
            };
            // A standby's write is told it was written: it was deduplicated on purpose,
            // and Prometheus drops a batch whose 2xx says nothing was written.
            written(&mut resp, accepted.written);
            let resp = resp.finish();
            m.ingest
                .samples
                .with_label_values(&[role])
                .inc_by(accepted.samples);
            m.ingest
                .bytes
                .with_label_values(&[role])
                .inc_by(accepted.bytes);
            (role, resp)
        }
        Err(e) => {
            m.ingest.rejected.with_label_values(&[e.as_label()]).inc();
            let mut resp = refusal(&req, &e);
            written(&mut resp, Written::default());
            ("rejected", resp.body(format!("{e}\n")))
        }
    };
    m.ingest.requests.with_label_values(&[outcome]).inc();
    m.ingest
        .duration
        .with_label_values(&[outcome])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Logs a refusal and starts its answer (status, `Retry-After` on 503, content type).
fn refusal(req: &HttpRequest, e: &IngestError) -> actix_web::HttpResponseBuilder {
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    if e.is_client_error() {
        tracing::warn!(peer = %peer, reason = e.as_label(), error = %e, "ingest: write refused");
    } else if matches!(e, IngestError::Internal(_)) {
        tracing::error!(peer = %peer, error = %e, "ingest: write failed, not acknowledged");
    } else {
        log_deferred(&peer, e);
    }
    let mut resp = HttpResponse::build(e.status_code());
    if e.status_code().as_u16() == 503 {
        resp.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
    }
    resp.content_type("text/plain; charset=utf-8");
    resp
}

/// How often a 503 refusal is logged at WARN. Under back-pressure they come by the
/// thousand each second; the line in between counts them.
const DEFERRED_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Logs a 503 refusal: at WARN once per [`DEFERRED_LOG_EVERY`], with how many there were
/// since the last WARN line; the others at DEBUG.
fn log_deferred(peer: &str, e: &IngestError) {
    static LAST: parking_lot::Mutex<Option<std::time::Instant>> = parking_lot::Mutex::new(None);
    static SINCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = SINCE.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = LAST.lock();
    if last.is_some_and(|t| t.elapsed() < DEFERRED_LOG_EVERY) {
        tracing::debug!(peer = %peer, reason = e.as_label(), error = %e, "ingest: write deferred");
        return;
    }
    *last = Some(std::time::Instant::now());
    SINCE.store(0, Ordering::Relaxed);
    tracing::warn!(peer = %peer, reason = e.as_label(), error = %e, deferred = count, "ingest: write deferred with 503, the sender retries later (one line every 10 s; deferred counts the refusals since the last one)");
}

async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    ingest: &Ingest,
    version: Version,
) -> Result<Accepted, IngestError> {
    check_encoding(req.headers())?;
    let params = Params::parse(req.query_string())?;
    if !ingest.ready.load(Ordering::Acquire) {
        return Err(IngestError::NotReady);
    }
    // From here to the insert the flusher waits for this write (group commit). A
    // standby's write counts until its role is known (after the decode): a fraction of a
    // millisecond, and never more than the flusher's linger.
    let writing = ingest.wal.writing();
    let body = read_body(req.headers(), payload, ingest.limits.max_body_bytes).await?;
    let wanted = Wanted {
        replica: ingest.replica_label.as_deref(),
        group: ingest.group_label.as_deref(),
    };
    let bytes = body.len() as u64;
    let decoded = decode::decode(body, ingest.limits, wanted, version)?;
    if ingest.require_ha_labels && decoded.unlabelled > 0 {
        return Err(IngestError::MissingHaLabels {
            series: decoded.unlabelled,
            label: ingest
                .replica_label
                .as_deref()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    let peer = req.peer_addr().map(|a| a.ip());
    let (accepted, durable) = if decoded.parts.is_empty() {
        accept_one(ingest, &params, peer, decoded, version, bytes)?
    } else {
        accept_parts(ingest, &params, peer, decoded, version, bytes)?
    };
    drop(writing);
    if let Some(seq) = durable {
        ingest.wal.wait_durable(seq).await?;
    }
    Ok(accepted)
}

/// The usual request, of one source: observed, and stored or dropped whole. Returns the
/// answer and the sequence to wait for before it.
fn accept_one(
    ingest: &Ingest,
    params: &Params,
    peer: Option<std::net::IpAddr>,
    decoded: decode::Decoded,
    version: Version,
    bytes: u64,
) -> Result<(Accepted, Option<u64>), IngestError> {
    let samples = u64::from(decoded.meta.samples) + u64::from(decoded.meta.histograms);
    let source = identity::source(params, decoded.replica.as_deref(), peer);
    let group = identity::group(params, decoded.group.as_deref());
    let observation = Observation {
        group: &group,
        source: &source,
        weight: params.weight,
        samples,
        data_ts: (samples > 0).then_some(decoded.meta.max_ts),
        protocol: version,
    };
    let mut meta = decoded.meta;
    meta.received_ms = ingest.clock.now_ms();
    let held = Held {
        payload: decoded.payload,
        meta,
        protocol: decoded.protocol,
    };
    let (outcome, durable) = match settle(ingest, observation, held)? {
        Settled::Standby => (Outcome::Dropped, None),
        Settled::Appended(seq) => (Outcome::Stored, seq),
    };
    let accepted = Accepted {
        outcome,
        samples,
        bytes,
        written: decoded.written,
    };
    Ok((accepted, durable))
}

/// A request whose series carry several (replica, group) pairs: each pair is observed,
/// held and stored (or dropped) as if it had come alone, with its own handover ring.
/// A part's labels name its source and group; the query parameters fill in what they do
/// not name. Series without the replica label are stored as they are, not deduplicated.
/// Returns the answer and the sequence to wait for before it. A part refused on the way
/// (no leader in a cluster) refuses the request: the sender retries it whole, and the
/// parts stored before it are stored again (at least once).
fn accept_parts(
    ingest: &Ingest,
    params: &Params,
    peer: Option<std::net::IpAddr>,
    decoded: decode::Decoded,
    version: Version,
    bytes: u64,
) -> Result<(Accepted, Option<u64>), IngestError> {
    let m = &METRICS.ingest;
    m.split_requests.inc();
    m.split_parts.inc_by(decoded.parts.len() as u64);
    m.non_ha_series.inc_by(u64::from(decoded.unlabelled));
    let now = ingest.clock.now_ms();
    let (mut stored, mut last_seq, mut samples) = (false, None, 0);
    for part in decoded.parts {
        let mut meta = part.meta;
        meta.received_ms = now;
        let carried = u64::from(meta.samples) + u64::from(meta.histograms);
        samples += carried;
        let group = identity::group(params, part.group.as_deref());
        let held = Held {
            payload: part.payload,
            meta,
            protocol: Version::V1,
        };
        let Some(replica) = part.replica else {
            let record = crate::wal::Record {
                group,
                source: identity::source(params, None, peer),
                meta: held.meta,
                payload: held.payload,
                protocol: held.protocol,
            };
            last_seq = last_seq.max(Some(ingest.wal.insert_all(&[record])?));
            stored = true;
            continue;
        };
        let observation = Observation {
            group: &group,
            source: &replica,
            weight: params.weight,
            samples: carried,
            data_ts: (carried > 0).then_some(meta.max_ts),
            protocol: version,
        };
        if let Settled::Appended(seq) = settle(ingest, observation, held)? {
            stored = true;
            last_seq = last_seq.max(seq);
        }
    }
    let outcome = if stored {
        Outcome::Stored
    } else {
        Outcome::Dropped
    };
    let accepted = Accepted {
        outcome,
        samples,
        bytes,
        written: decoded.written,
    };
    Ok((accepted, last_seq))
}

/// A write's final role, decided under its group's lock.
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// Held in its ring, not forwarded.
    Standby,
    /// Appended to the WAL (up to this sequence; `None` when the handover trimmed all of
    /// it), not yet durable.
    Appended(Option<u64>),
}

/// Decides a write's role and, for the promoted source, appends its plan to the WAL, all
/// under the group's lock. Roles are decided in the order the group's writes take the
/// lock, so a write of a source that lost its role never lands after the new source's
/// backfill, and a standby's write is in its ring before its source's handover looks.
/// The lock is released before the wait for the flush (group commit).
fn settle(ingest: &Ingest, obs: Observation<'_>, held: Held) -> Result<Settled, IngestError> {
    let (group, source) = (obs.group, obs.source);
    let mut guard = ingest.handover.lock(group);
    match ingest.promotions.observe(obs) {
        Role::Promoted => {}
        Role::Standby => {
            guard.hold_standby(source, &held);
            return Ok(Settled::Standby);
        }
        Role::Undecided => return Err(IngestError::NoLeader),
    }
    let mut plan = guard.plan(source, held.clone())?;
    let mut appended = Ok(None);
    loop {
        match plan.next_records() {
            Ok(Some(records)) => match ingest.wal.insert_all(&records) {
                Ok(seq) => appended = Ok(Some(seq)),
                Err(e) => {
                    appended = Err(e.into());
                    break;
                }
            },
            Ok(None) => break,
            Err(e) => {
                appended = Err(e);
                break;
            }
        }
    }
    let handover = plan.record(&held, appended.is_ok());
    drop(guard);
    // Out of the group's lock: the history is written (and synced) to disk.
    if let Some(change) = handover {
        ingest.promotions.record(change);
    }
    Ok(Settled::Appended(appended?))
}

/// Refuses a body that is not snappy.
fn check_encoding(headers: &HeaderMap) -> Result<(), IngestError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("<not ASCII>").trim().to_owned());
    match encoding {
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        other => Err(IngestError::Encoding(other.unwrap_or_default())),
    }
}

async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: u64,
) -> Result<bytes::Bytes, IngestError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced {
        if len > limit {
            return Err(IngestError::BodyTooLarge { len, limit });
        }
    }
    let mut body = BytesMut::with_capacity(announced.unwrap_or(8 << 10) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| IngestError::Body(e.to_string()))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(IngestError::BodyTooLarge {
                len: (body.len() + chunk.len()) as u64,
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests;

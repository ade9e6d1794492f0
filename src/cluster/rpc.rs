//! The cluster listener's routes: the raft RPCs (`POST /raft/append`, `/raft/vote`,
//! `/raft/snapshot`) and the leader's proposal endpoint (`POST /cluster/write`). The shared
//! secret guards them all.
//!
//! The wire format lives here, in one place: paths, the auth header, and JSON bodies.
//! openraft's request types go in; `Result<response, RaftError>` comes out.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::cluster::proposal::{propose_locally, Proposal};
use crate::cluster::transfer::{ElectionAction, ElectionPause};
use crate::cluster::types::{NodeId, Raft, TypeConfig};

/// Path of the append-entries (and heartbeat) RPC.
pub const APPEND_PATH: &str = "/raft/append";
/// Path of the vote RPC.
pub const VOTE_PATH: &str = "/raft/vote";
/// Path of the install-snapshot RPC (one chunk per call).
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Path where the leader takes proposals forwarded by followers.
pub const WRITE_PATH: &str = "/cluster/write";
/// Follower reports of the sources they see.
pub const REPORT_PATH: &str = "/cluster/report";
/// Path of a leadership transfer step ([`super::transfer::ElectionAction`]).
pub const ELECTION_PATH: &str = "/cluster/election";
/// Header that names the sending node on every cluster request. Logs and the partition
/// test's fault proxy read it. Informational only: never trusted for authentication.
pub const NODE_HEADER: &str = "x-highlander-node";

/// Largest request body on the cluster listener. A snapshot chunk holds at most
/// [`SNAPSHOT_CHUNK_BYTES`] of data. JSON (an array of numbers) inflates it up to 4×.
/// actix-web's own defaults (256 KiB payload, 2 MiB JSON) are far too small.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Snapshot chunk size handed to openraft.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;

/// How the secret is presented: `Authorization: Bearer <secret>`.
const AUTH_SCHEME: &str = "Bearer ";

/// The shared cluster secret. Sent as `Authorization: Bearer <secret>`. Never printed.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps `secret`.
    pub fn new(secret: &str) -> Self {
        Secret(Arc::from(secret))
    }

    /// Whether the secret is empty (not allowed for a cluster).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `Authorization` header value that carries the secret. Mark the header
    /// sensitive.
    pub fn authorization(&self) -> String {
        format!("{AUTH_SCHEME}{}", self.0)
    }

    /// Whether an `Authorization` header value carries this secret. Constant time in the
    /// secret's content; only its length can leak.
    pub fn matches(&self, authorization: Option<&[u8]>) -> bool {
        let Some(presented) = authorization.and_then(|v| v.strip_prefix(AUTH_SCHEME.as_bytes()))
        else {
            return false;
        };
        bool::from(presented.ct_eq(self.0.as_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What the cluster handlers need. A cheap clone.
#[derive(Clone)]
pub(crate) struct RpcState {
    pub(crate) raft: Raft,
    pub(crate) node_id: NodeId,
    pub(crate) secret: Secret,
    /// How long a forwarded proposal may wait for its commit.
    pub(crate) write_timeout: Duration,
    /// Reports received from followers.
    pub(crate) reports: super::reports::Reports,
    /// This node's side of a leadership transfer.
    pub(crate) pause: Arc<ElectionPause>,
}

/// Registers the cluster routes on an app that carries `web::Data<RpcState>`.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("")
            .wrap(from_fn(authenticate))
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .route(APPEND_PATH, web::post().to(append))
            .route(VOTE_PATH, web::post().to(vote))
            .route(SNAPSHOT_PATH, web::post().to(snapshot))
            .route(WRITE_PATH, web::post().to(write))
            .route(REPORT_PATH, web::post().to(report))
            .route(ELECTION_PATH, web::post().to(election)),
    );
}

/// Rejects every request without the shared secret before its body is read.
async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let authorised = req.app_data::<web::Data<RpcState>>().is_some_and(|s| {
        let presented = req.headers().get(header::AUTHORIZATION);
        s.secret.matches(presented.map(|v| v.as_bytes()))
    });
    if authorised {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let peer = req
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    let presented = req.headers().contains_key(header::AUTHORIZATION);
    let node = req
        .headers()
        .get(NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    tracing::warn!(
        %peer,
        %node,
        path = req.path(),
        credentials_presented = presented,
        "cluster: request without the cluster secret rejected"
    );
    let response = HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .body("cluster secret missing or wrong\n");
    Ok(req.into_response(response).map_into_right_body())
}

fn bad_request(e: &serde_json::Error) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain; charset=utf-8")
        .body(format!("cannot decode the request: {e}\n"))
}

fn reply<T: Serialize>(value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => HttpResponse::Ok()
            .content_type("application/json")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot encode an RPC reply");
            HttpResponse::InternalServerError().finish()
        }
    }
}

async fn append(state: web::Data<RpcState>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(rpc) => reply(&state.raft.append_entries(rpc).await),
        Err(e) => bad_request(&e),
    }
}

async fn vote(state: web::Data<RpcState>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<VoteRequest<NodeId>>(&body) {
        Ok(rpc) => reply(&state.raft.vote(rpc).await),
        Err(e) => bad_request(&e),
    }
}

async fn snapshot(state: web::Data<RpcState>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(rpc) => reply(&state.raft.install_snapshot(rpc).await),
        Err(e) => bad_request(&e),
    }
}

async fn write(state: web::Data<RpcState>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Proposal>(&body) {
        Ok(proposal) => {
            tracing::debug!(
                node = state.node_id,
                ?proposal,
                "cluster: forwarded proposal"
            );
            reply(&propose_locally(&state.raft, &state.pause, proposal, state.write_timeout).await)
        }
        Err(e) => bad_request(&e),
    }
}

async fn election(state: web::Data<RpcState>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<ElectionAction>(&body) {
        Ok(action) => {
            state.pause.apply(&state.raft, state.node_id, action).await;
            HttpResponse::NoContent().finish()
        }
        Err(e) => bad_request(&e),
    }
}

async fn report(state: web::Data<RpcState>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<super::reports::Report>(&body) {
        Ok(r) => {
            state.reports.insert(r);
            HttpResponse::NoContent().finish()
        }
        Err(e) => bad_request(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_matches_only_the_exact_bearer_value() {
        let s = Secret::new("s3cret");
        let m = |v: &str| s.matches(Some(v.as_bytes()));
        assert!(m("Bearer s3cret"));
        assert!(m(&s.authorization()));
        assert!(!m("Bearer s3cre"));
        assert!(!m("Bearer s3cret2"));
        assert!(!m("bearer s3cret"));
        assert!(!m("s3cret"));
        assert!(!m("Bearer "));
        assert!(!s.matches(None));
    }

    #[test]
    fn secret_is_never_printed() {
        let s = Secret::new("s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}

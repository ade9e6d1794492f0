//! The client side of the cluster transport: raft RPCs to peers over HTTP, and proposals
//! forwarded to the leader. The whole node uses one reqwest client.
//!
//! Errors are classified so that openraft reacts well:
//! - [`Unreachable`]: the peer refuses the connection, or closes it before answering, or
//!   answers with anything but a raft reply. openraft then backs off before it retries.
//!   The backoff is [`ClusterTransport`]'s: the heartbeat interval, doubling up to
//!   [`MAX_BACKOFF`].
//! - [`Timeout`]: the request timed out.
//! - [`NetworkError`]: a reply body was lost midway.
//! - [`RemoteError`]: the peer returned a raft error.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes, RaftNetwork, RaftNetworkFactory};
use parking_lot::Mutex;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cluster::proposal::{Proposal, ProposalReply};
use crate::cluster::rpc::{self, Secret};
use crate::cluster::tls::{ClusterTls, TlsError};
use crate::cluster::types::{NodeId, TypeConfig};

/// Longest pause openraft makes between attempts to reach an unreachable peer. It also
/// bounds how long a restarted peer waits to be caught up.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why building the transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The secret holds characters an HTTP header cannot carry.
    #[error("the cluster secret cannot be sent in an HTTP header (control characters?)")]
    SecretNotAHeader,
    /// reqwest could not build its client.
    #[error("cannot build the cluster HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The roots to trust when calling peers are unusable.
    #[error("TLS roots: {0}")]
    Tls(#[from] TlsError),
}

/// Why a forwarded proposal got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The leader could not be reached, so the proposal was not delivered.
    #[error("leader {leader} at {addr} unreachable: {reason}")]
    NotDelivered {
        /// Leader id.
        leader: NodeId,
        /// Its cluster address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The proposal was sent, but no usable reply came back. It may have been committed.
    #[error("no reply from leader {leader} at {addr}: {reason}")]
    NoReply {
        /// Leader id.
        leader: NodeId,
        /// Its cluster address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

/// The raft network factory of one node. It also forwards proposals to the leader. A cheap
/// clone: every connection shares one HTTP client.
#[derive(Debug, Clone)]
pub struct ClusterTransport {
    client: reqwest::Client,
    /// `https` when the cluster runs TLS, else `http`.
    scheme: &'static str,
    auth: HeaderValue,
    node_id: NodeId,
    first_backoff: Duration,
    /// Peers whose last RPC could not connect. Each is logged once when it goes and once
    /// when it comes back. openraft itself logs every failed attempt.
    unreachable: Arc<Mutex<BTreeSet<NodeId>>>,
}

impl ClusterTransport {
    /// Builds the transport of node `node_id`. `heartbeat` sets the first backoff step.
    /// With `tls`, peers are called over HTTPS only, and the transport trusts the roots of
    /// `tls`.
    pub fn new(
        node_id: NodeId,
        secret: &Secret,
        heartbeat: Duration,
        tls: Option<&ClusterTls>,
    ) -> Result<Self, TransportError> {
        crate::shipper::client::install_crypto_provider();
        let mut auth = HeaderValue::from_str(&secret.authorization())
            .map_err(|_| TransportError::SecretNotAHeader)?;
        // This keeps the secret out of HTTP debug logs.
        auth.set_sensitive(true);
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "highlander/",
                env!("CARGO_PKG_VERSION"),
                " cluster"
            ))
            .connect_timeout(Duration::from_secs(1))
            // Below the listener's keep-alive (15 s), so we never reuse a connection that
            // the listener closed.
            .pool_idle_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true);
        let scheme = match tls {
            Some(tls) => {
                builder = builder.https_only(true);
                if let Some(roots) = tls.client_roots()? {
                    builder = builder.tls_certs_only(roots);
                }
                "https"
            }
            None => "http",
        };
        let client = builder.build().map_err(TransportError::Client)?;
        Ok(ClusterTransport {
            client,
            scheme,
            auth,
            node_id,
            first_backoff: heartbeat.max(Duration::from_millis(10)),
            unreachable: Arc::default(),
        })
    }

    /// Records whether `peer` could be reached and logs the transitions.
    fn note_reachable(&self, peer: NodeId, addr: &str, reachable: bool, reason: &str) {
        let mut down = self.unreachable.lock();
        if reachable && down.remove(&peer) {
            tracing::info!(peer, %addr, "cluster: peer reachable again");
        } else if !reachable && down.insert(peer) {
            tracing::warn!(peer, %addr, %reason, "cluster: peer unreachable");
        }
    }

    async fn post(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.client
            .post(format!("{}://{addr}{path}", self.scheme))
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, self.auth.clone())
            .header(rpc::NODE_HEADER, self.node_id)
            .timeout(timeout)
            .body(body)
            .send()
            .await
    }

    /// Sends this node's report to the leader at `addr`.
    pub async fn report(
        &self,
        addr: &str,
        report: &super::reports::Report,
        timeout: Duration,
    ) -> Result<(), String> {
        self.post_ok(addr, rpc::REPORT_PATH, report, timeout).await
    }

    /// Asks the node at `addr` to take a leadership transfer step.
    pub async fn election(
        &self,
        addr: &str,
        action: &super::transfer::ElectionAction,
        timeout: Duration,
    ) -> Result<(), String> {
        self.post_ok(addr, rpc::ELECTION_PATH, action, timeout)
            .await
    }

    /// Posts `body` as JSON. Any 2xx is success. Anything else gives a one-line reason.
    async fn post_ok<T: serde::Serialize>(
        &self,
        addr: &str,
        path: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let response = self
            .post(addr, path, body, timeout)
            .await
            .map_err(|e| error_chain(&e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }

    /// Sends `proposal` to the leader `leader` at `addr` and waits at most `timeout`.
    pub async fn forward(
        &self,
        leader: NodeId,
        addr: &str,
        proposal: &Proposal,
        timeout: Duration,
    ) -> Result<ProposalReply, ForwardError> {
        let not_delivered = |reason: String| ForwardError::NotDelivered {
            leader,
            addr: addr.to_owned(),
            reason,
        };
        let no_reply = |reason: String| ForwardError::NoReply {
            leader,
            addr: addr.to_owned(),
            reason,
        };
        let body = serde_json::to_vec(proposal).map_err(|e| not_delivered(e.to_string()))?;
        let response = self
            .post(addr, rpc::WRITE_PATH, body, timeout)
            .await
            .map_err(|e| {
                if e.is_connect() {
                    not_delivered(error_chain(&e))
                } else {
                    no_reply(error_chain(&e))
                }
            })?;
        let status = response.status();
        if status.is_client_error() {
            // Refused before the handler ran (auth, body limit, decoding), so nothing was
            // proposed.
            return Err(not_delivered(format!("HTTP {status}")));
        }
        if status != StatusCode::OK {
            return Err(no_reply(format!("HTTP {status}")));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| no_reply(error_chain(&e)))?;
        serde_json::from_slice(&bytes).map_err(|e| no_reply(format!("bad reply: {e}")))
    }
}

impl RaftNetworkFactory<TypeConfig> for ClusterTransport {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            transport: self.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// The raft connection to one peer.
#[derive(Debug)]
pub struct PeerConnection {
    transport: ClusterTransport,
    target: NodeId,
    node: BasicNode,
}

impl PeerConnection {
    /// Sends one raft RPC. `E` is the raft API error that the peer may return.
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let sent = self
            .transport
            .post(&self.node.addr, path, body, timeout)
            .await;
        let addr = &self.node.addr;
        let response = match sent {
            Ok(r) => {
                self.transport.note_reachable(self.target, addr, true, "");
                r
            }
            Err(e) => {
                if e.is_connect() {
                    let reason = error_chain(&e);
                    self.transport
                        .note_reachable(self.target, addr, false, &reason);
                }
                return Err(self.classify(action, timeout, &e));
            }
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::PAYLOAD_TOO_LARGE if action == RPCTypes::AppendEntries => {
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(16),
                ));
            }
            StatusCode::UNAUTHORIZED => {
                tracing::warn!(
                    peer = self.target,
                    addr = %self.node.addr,
                    "cluster: peer rejected our cluster secret (secrets differ?)"
                );
                return Err(RPCError::Unreachable(unreachable(
                    "peer rejected the cluster secret",
                )));
            }
            status => {
                // Not a raft listener, or a broken one. Back off as for a dead peer.
                return Err(RPCError::Unreachable(unreachable(&format!(
                    "peer answered HTTP {status}"
                ))));
            }
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.classify(action, timeout, &e))?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    fn classify<E: std::error::Error>(
        &self,
        action: RPCTypes,
        timeout: Duration,
        e: &reqwest::Error,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        if e.is_timeout() {
            RPCError::Timeout(Timeout {
                action,
                id: self.transport.node_id,
                target: self.target,
                timeout,
            })
        } else if e.is_connect() || e.is_request() {
            // Refused, or closed before any answer. Causes: a proxy or sidecar in front of
            // a dead peer, or a TLS mismatch. Back off as for a dead peer. As a
            // `NetworkError`, openraft would resend at once, hundreds of times a second.
            RPCError::Unreachable(unreachable(&error_chain(e)))
        } else {
            RPCError::Network(NetworkError::new(e))
        }
    }
}

fn unreachable(reason: &str) -> Unreachable {
    Unreachable::new(&std::io::Error::other(reason.to_owned()))
}

/// reqwest's error with its causes ("error sending request: … : connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RPCTypes::AppendEntries, rpc::APPEND_PATH, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RPCTypes::InstallSnapshot, rpc::SNAPSHOT_PATH, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RPCTypes::Vote, rpc::VOTE_PATH, &rpc, &option)
            .await
    }

    fn backoff(&self) -> Backoff {
        let first = self.transport.first_backoff;
        Backoff::new(
            std::iter::successors(Some(first), |d| Some((*d * 2).min(MAX_BACKOFF)))
                .map(|d| d.min(MAX_BACKOFF)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backoff_doubles_up_to_the_cap() {
        let transport =
            ClusterTransport::new(1, &Secret::new("x"), Duration::from_millis(100), None)
                .expect("transport");
        let conn = PeerConnection {
            transport,
            target: 2,
            node: BasicNode::new("127.0.0.1:1"),
        };
        let steps: Vec<u128> = conn.backoff().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1000, 1000]);
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut factory =
            ClusterTransport::new(1, &Secret::new("x"), Duration::from_millis(100), None)
                .expect("transport");
        let mut conn = factory
            .new_client(2, &BasicNode::new(format!("127.0.0.1:{port}")))
            .await;
        let rpc = VoteRequest {
            vote: openraft::Vote::new(1, 1),
            last_log_id: None,
        };
        let err = conn
            .vote(rpc, RPCOption::new(Duration::from_millis(500)))
            .await
            .expect_err("nobody listens");
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }
}

//! Shipper: delivers buffered records to every storage endpoint.
//!
//! Each endpoint has one worker and its own durable cursor in the WAL. So a slow or dead
//! storage never slows the others.
//!
//! # Invariants
//! - Within an endpoint, requests go out in sequence order.
//! - By default (ordered lanes, `lanes.rs`), requests out at once share no series, so
//!   per series the samples reach the storage in timestamp order. A storage that answers
//!   quickly gets one request at a time; a slow one up to `ordered_in_flight`.
//! - With `max_in_flight` above 1 (`send.rs`), later batches go out before the earlier
//!   ones are answered, whatever series they hold. This is for storages that accept
//!   out-of-order samples.
//! - Either way, the cursor moves only over a contiguous prefix of settled records.
//!   `window.rs` holds one pass's sends and the cursor.
//! - A lagging worker joins consecutive records into one request, up to the endpoint's
//!   `max_batch_bytes` (`batch.rs`: a byte copy, no re-encode). When the storage refuses a
//!   joined request, the worker sends it again record by record. So verdicts and the
//!   quarantine stay per record.
//!
//! # Outcomes
//! See [`retry`] for how an answer is classed, `verdict.rs` for what the worker then does.
//! - 2xx moves the cursor.
//! - 5xx, 429 and network errors are retried forever, with capped exponential backoff and
//!   full jitter. The worker honours `Retry-After`.
//! - 413 splits the batch in halves.
//! - Any other 4xx is permanent. The batch is quarantined in the WAL (kept and
//!   inspectable), counted and logged, and the cursor moves on.

mod batch;
pub mod client;
pub mod control;
mod lanes;
pub mod protocol;
pub mod retry;
mod send;
mod split;
pub mod status;
mod verdict;
mod window;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use client::{Auth, ClientError, EndpointConfig};
pub use protocol::EgressProtocol;
pub use status::{EndpointState, EndpointStatus};

use control::EndpointControl;

use crate::clock::Clock;
use crate::wal::{CursorMove, Wal, WalError};

/// Why an operator request on endpoints is refused.
#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    /// No endpoint of that name is configured.
    #[error("no endpoint named {0:?} is configured")]
    UnknownEndpoint(String),
    /// The move goes the wrong way for the request.
    #[error("{0}")]
    Direction(String),
    /// No quarantined batch with that sequence.
    #[error("no quarantined batch with sequence {0}")]
    NotQuarantined(u64),
    /// The buffer refused or failed.
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// Where an operator moves a cursor to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A sequence number.
    Seq(u64),
    /// The first record received at or after this time (ms since the epoch).
    Time(u64),
}

struct EndpointHandle {
    name: String,
    status: Arc<Mutex<EndpointStatus>>,
    control: Arc<EndpointControl>,
}

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    /// First wait after a failure.
    pub initial: Duration,
    /// Longest wait between attempts: 5 s, as Prometheus' own `max_backoff`. The wait
    /// after a storage comes back adds to the catch-up of an outage. Once the ceiling is
    /// reached, that wait is uniform in [0, max], so a high ceiling costs most of a short
    /// outage's catch-up (`bench/HISTORY.md`). One request per endpoint every few seconds
    /// costs a struggling storage nothing. A storage that wants fewer requests sends
    /// `Retry-After`, and the worker honours it.
    pub max: Duration,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// The endpoint workers. A cheap clone.
#[derive(Clone)]
pub struct Shipper {
    endpoints: Arc<Vec<EndpointHandle>>,
    wal: Wal,
}

impl Shipper {
    /// Builds every client, then spawns one worker per endpoint on the current runtime.
    pub fn start(
        endpoints: &[EndpointConfig],
        retry: RetryConfig,
        wal: &Wal,
        shutdown: &CancellationToken,
        gate: watch::Receiver<bool>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Shipper, Vec<JoinHandle<()>>), ClientError> {
        let clients = endpoints
            .iter()
            .map(client::EndpointClient::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        for (cfg, client) in endpoints.iter().zip(clients) {
            let max_in_flight = cfg.max_in_flight.max(1);
            let settled = wal.endpoint_protocol(&cfg.name).unwrap_or_else(|e| {
                tracing::error!(endpoint = %cfg.name, error = %e, "shipper: cannot read the endpoint's stored protocol; probing 2.0 again");
                None
            });
            let speaker = protocol::Speaker::new(cfg.protocol, settled);
            let ordered_in_flight = cfg.ordered_in_flight.max(1);
            let mut status =
                EndpointStatus::new(cfg.name.clone(), cfg.display_url(), max_in_flight);
            if max_in_flight == 1 {
                status.max_in_flight = ordered_in_flight;
                status.ordered = true;
            }
            status.protocol = cfg.protocol.as_str().to_owned();
            status.protocol_in_use = speaker.speaks().as_str().to_owned();
            let status = Arc::new(Mutex::new(status));
            let control = Arc::new(EndpointControl::new());
            handles.push(EndpointHandle {
                name: cfg.name.clone(),
                status: status.clone(),
                control: control.clone(),
            });
            let sender = send::Sender {
                name: cfg.name.as_str().into(),
                client,
                status,
                control_rx: control.subscribe(),
                backoff: retry::Backoff::new(retry.initial, retry.max, retry.max_retry_after),
                shutdown: shutdown.clone(),
                gate: gate.clone(),
                wal: wal.clone(),
                clock: clock.clone(),
            };
            let worker = worker::Worker {
                sender,
                wal: wal.clone(),
                control,
                max_batch_bytes: cfg.max_batch_bytes,
                max_in_flight,
                ordered_in_flight,
                join_buf: bytes::BytesMut::new(),
                speaker,
                pace: lanes::Pace::default(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        Ok((
            Shipper {
                endpoints: Arc::new(handles),
                wal: wal.clone(),
            },
            tasks,
        ))
    }

    /// Every endpoint's status, in configuration order.
    pub fn statuses(&self) -> Vec<EndpointStatus> {
        self.endpoints
            .iter()
            .map(|h| {
                let mut s = h.status.lock().clone();
                if h.control.is_paused() {
                    s.state = EndpointState::Paused;
                }
                s
            })
            .collect()
    }

    fn handle(&self, name: &str) -> Result<&EndpointHandle, ShipperError> {
        self.endpoints
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| ShipperError::UnknownEndpoint(name.to_owned()))
    }

    /// Stops sending to `name` (its records stay buffered). Returns whether it was paused.
    pub fn pause(&self, name: &str) -> Result<bool, ShipperError> {
        Ok(self.handle(name)?.control.set_paused(true))
    }

    /// Sends to `name` again. Returns whether it was paused.
    pub fn resume(&self, name: &str) -> Result<bool, ShipperError> {
        Ok(self.handle(name)?.control.set_paused(false))
    }

    fn seq_of(&self, target: Target) -> u64 {
        match target {
            Target::Seq(s) => s,
            Target::Time(ms) => self.wal.seq_at(ms),
        }
    }

    /// Cluster: puts `name`'s cursor at `seq` when this node takes over shipping, or when
    /// it trims as a follower. The cursor moves either way, as far as records are buffered.
    pub fn reposition(&self, name: &str, seq: u64) -> Result<CursorMove, ShipperError> {
        let h = self.handle(name)?;
        let first = self.wal.first_seq();
        let moved = self.wal.move_cursor(name, seq.max(first))?;
        h.control.poke();
        Ok(moved)
    }

    /// Endpoint names, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.endpoints.iter().map(|h| h.name.clone()).collect()
    }

    /// Moves `name`'s cursor forward, dropping its backlog up to `target`.
    pub fn skip(&self, name: &str, target: Target) -> Result<CursorMove, ShipperError> {
        self.move_cursor(name, target, true)
    }

    /// Moves `name`'s cursor back to `target` to send buffered records again.
    pub fn replay(&self, name: &str, target: Target) -> Result<CursorMove, ShipperError> {
        self.move_cursor(name, target, false)
    }

    fn move_cursor(
        &self,
        name: &str,
        target: Target,
        forward: bool,
    ) -> Result<CursorMove, ShipperError> {
        let h = self.handle(name)?;
        let to = self.seq_of(target);
        let at = self.wal.cursor(name)?;
        if forward && to < at {
            return Err(ShipperError::Direction(format!(
                "sequence {to} is behind the cursor ({at}); use replay to go back"
            )));
        }
        if !forward && to > at {
            return Err(ShipperError::Direction(format!(
                "sequence {to} is ahead of the cursor ({at}); use skip to go forward"
            )));
        }
        let moved = self.wal.move_cursor(name, to)?;
        h.control.poke();
        Ok(moved)
    }

    /// Queues the quarantined batch `seq` to be sent again. It goes to `endpoint`, or to
    /// every endpoint that quarantined it. Returns the endpoints it was queued for.
    pub fn replay_quarantined(
        &self,
        seq: u64,
        endpoint: Option<&str>,
    ) -> Result<Vec<String>, ShipperError> {
        let names = self.quarantined_at(seq, endpoint)?;
        for name in &names {
            self.handle(name)?.control.replay(seq);
        }
        Ok(names)
    }

    /// Deletes the quarantined batch `seq` (of `endpoint`, or of every endpoint).
    pub fn delete_quarantined(
        &self,
        seq: u64,
        endpoint: Option<&str>,
    ) -> Result<Vec<String>, ShipperError> {
        let names = self.quarantined_at(seq, endpoint)?;
        for name in &names {
            self.wal.quarantine_remove(name, seq)?;
        }
        Ok(names)
    }

    fn quarantined_at(
        &self,
        seq: u64,
        endpoint: Option<&str>,
    ) -> Result<Vec<String>, ShipperError> {
        if let Some(e) = endpoint {
            self.handle(e)?;
        }
        let mut names = Vec::new();
        for h in self.endpoints.iter() {
            if endpoint.is_some_and(|e| e != h.name) {
                continue;
            }
            if self.wal.quarantine_get(&h.name, seq)?.is_some() {
                names.push(h.name.clone());
            }
        }
        if names.is_empty() {
            return Err(ShipperError::NotQuarantined(seq));
        }
        Ok(names)
    }
}

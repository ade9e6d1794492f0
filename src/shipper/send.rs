//! One request's way to a storage. The request is sent again after every transient
//! failure, with the endpoint's backoff. This goes on until the storage gives a final
//! answer, or until the worker stops or an operator interrupts it.
//!
//! A [`Sender`] is cheap to copy. The worker keeps one for its own sends. With
//! `max_in_flight` above 1, each concurrent send gets its own copy, with its own backoff,
//! on its own task ([`InFlight`]). Every copy reports into the endpoint's one status.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::EndpointClient;
use super::retry::{Backoff, Verdict};
use super::status::{EndpointState, EndpointStatus};
use crate::clock::Clock;
use crate::metrics::METRICS;
use crate::wal::Wal;
use crate::wire::Version;

/// Consecutive failed attempts after which the state is `failing` rather than `backoff`.
const FAILING_AFTER: u64 = 5;

/// How a send ended, once retries are over.
pub(super) enum Final {
    Delivered,
    TooLarge,
    Reject {
        status: u16,
        answer: String,
    },
    /// A 2.0 request the storage did not read as 2.0 (see [`Verdict::NotV2`]).
    NotV2 {
        status: u16,
        reason: String,
    },
}

/// Why a send or a worker stopped what it was doing.
#[derive(Debug)]
pub(super) enum Stop {
    /// The process is shutting down.
    Shutdown,
    /// An operator changed something, or this node stopped shipping. Look at the controls
    /// and the cursor again.
    Interrupted,
}

/// Whether writes to the endpoint are going to wait. They wait when the endpoint is
/// paused, or when it failed and has not answered since (a retry is waiting or under way).
/// While a retry waits for its answer, the state says `shipping`, for up to the endpoint's
/// timeout.
fn is_down(s: &EndpointStatus) -> bool {
    s.state == EndpointState::Paused || s.next_retry_ms.is_some()
}

/// Resolves when the gate changes. When its sender is gone, the gate stays as it is, and
/// this never resolves. A standalone node keeps no sender, because it always ships.
pub(super) async fn gate_changed(gate: &mut watch::Receiver<bool>) {
    if gate.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Everything one send needs.
pub(super) struct Sender {
    pub name: Arc<str>,
    pub client: EndpointClient,
    pub status: Arc<Mutex<EndpointStatus>>,
    pub control_rx: watch::Receiver<u64>,
    pub backoff: Backoff,
    pub shutdown: CancellationToken,
    /// False while this node must not ship (cluster follower).
    pub gate: watch::Receiver<bool>,
    /// Told when the endpoint goes down or comes back, so it stores waiting writes
    /// compact.
    pub wal: Wal,
    /// Times of errors and retries.
    pub clock: Arc<dyn Clock>,
}

impl Sender {
    /// A copy for a concurrent send: the same endpoint and signals, its own backoff.
    pub fn fork(&self) -> Sender {
        Sender {
            name: self.name.clone(),
            client: self.client.clone(),
            status: self.status.clone(),
            control_rx: self.control_rx.clone(),
            backoff: self.backoff.fresh(),
            shutdown: self.shutdown.clone(),
            gate: self.gate.clone(),
            wal: self.wal.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Changes the status. It tells the WAL when the endpoint goes down (retrying or
    /// paused) or comes back. It does this under the status lock, so concurrent sends
    /// report in order.
    pub fn update(&self, f: impl FnOnce(&mut EndpointStatus)) {
        let mut s = self.status.lock();
        let was = is_down(&s);
        f(&mut s);
        let now = is_down(&s);
        if was != now {
            self.wal.set_storage_down(&self.name, now);
        }
    }

    /// Waits `d`, unless the process stops or an operator interrupts.
    pub async fn sleep(&mut self, d: std::time::Duration) -> Result<(), Stop> {
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(Stop::Shutdown),
            _ = self.control_rx.changed() => Err(Stop::Interrupted),
            _ = gate_changed(&mut self.gate) => Err(Stop::Interrupted),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Sends until the answer is not "retry". `end` is the sequence after the batch's last
    /// record: when the endpoint's cursor passed it meanwhile (the buffer's size or age
    /// limit dropped the batch, or an operator skipped it), the send gives up with
    /// [`Stop::Interrupted`] instead of delivering what the buffer counted as dropped.
    pub async fn send_until_final(
        &mut self,
        payload: &Bytes,
        version: Version,
        end: Option<u64>,
    ) -> Result<Final, Stop> {
        let _out = Outstanding::new(&self.status);
        let mut failures = 0u64;
        loop {
            self.update(|s| {
                if !matches!(
                    s.state,
                    EndpointState::Failing | EndpointState::Unauthorized
                ) {
                    s.state = EndpointState::Shipping;
                }
            });
            // Only a retry can find its batch dropped meanwhile: the first attempt skips the
            // log's lock.
            if !*self.gate.borrow() || (failures > 0 && self.passed(end)) {
                return Err(Stop::Interrupted);
            }
            let client = self.client.clone();
            let started = std::time::Instant::now();
            let verdict = tokio::select! {
                _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                _ = self.control_rx.changed() => return Err(Stop::Interrupted),
                _ = gate_changed(&mut self.gate) => return Err(Stop::Interrupted),
                v = client.send(payload.clone(), version) => v,
            };
            METRICS
                .shipper
                .protocol
                .with_label_values(&[&self.name, version.as_str()])
                .inc();
            METRICS
                .shipper
                .request_duration
                .with_label_values(&[&self.name])
                .observe(started.elapsed().as_secs_f64());
            if let Some(class) = verdict.failure_class() {
                METRICS
                    .shipper
                    .failures
                    .with_label_values(&[&self.name, class])
                    .inc();
            }
            let (status, reason, after) = match verdict {
                Verdict::Retry {
                    status,
                    reason,
                    after,
                } => (status, reason, after),
                Verdict::Delivered => return Ok(self.recovered(failures, Final::Delivered)),
                Verdict::TooLarge => return Ok(self.recovered(failures, Final::TooLarge)),
                Verdict::Reject { status, answer } => {
                    return Ok(self.recovered(failures, Final::Reject { status, answer }))
                }
                Verdict::NotV2 { status, reason } => {
                    return Ok(self.recovered(failures, Final::NotV2 { status, reason }))
                }
            };
            failures += 1;
            METRICS
                .shipper
                .retries
                .with_label_values(&[&self.name])
                .inc();
            let delay = self.backoff.next_delay(after);
            let now = self.clock.now_ms();
            let unauthorized = matches!(status, Some(401 | 403));
            let mut entered = false;
            self.update(|s| {
                s.retries += 1;
                s.failed_requests += 1;
                s.last_error = Some(reason.clone());
                s.last_error_ms = Some(now);
                s.next_retry_ms = Some(now + delay.as_millis() as u64);
                let state = if unauthorized {
                    EndpointState::Unauthorized
                } else if failures >= FAILING_AFTER {
                    EndpointState::Failing
                } else {
                    EndpointState::Backoff
                };
                entered = unauthorized && s.state != state;
                s.state = state;
            });
            if entered {
                tracing::error!(endpoint = %self.name, error = %reason, "shipper: the storage refuses the credentials; nothing is quarantined, the buffer keeps every write and highlander retries until the credentials are fixed");
            } else if failures == 1 || failures.is_multiple_of(20) {
                tracing::warn!(endpoint = %self.name, attempts = failures, retry_in = ?delay, error = %reason, "shipper: send failed, will retry");
            }
            self.sleep(delay).await?;
        }
    }

    /// Whether the endpoint's cursor is at or past `end`: the batch left the buffer.
    fn passed(&self, end: Option<u64>) -> bool {
        end.is_some_and(|end| self.wal.cursor(&self.name).is_ok_and(|c| c >= end))
    }

    /// Leaves the retry loop: resets the backoff and the state.
    fn recovered(&mut self, failures: u64, outcome: Final) -> Final {
        self.backoff.reset();
        self.update(|s| {
            s.next_retry_ms = None;
            if matches!(
                s.state,
                EndpointState::Failing | EndpointState::Backoff | EndpointState::Unauthorized
            ) {
                s.state = EndpointState::Shipping;
            }
        });
        if failures > 0 {
            tracing::info!(endpoint = %self.name, attempts = failures + 1, "shipper: storage answers again");
        }
        outcome
    }

    /// Starts `send_until_final(payload, version, end)` on a task of its own, with its own
    /// backoff.
    pub fn spawn(&self, payload: Bytes, version: Version, end: Option<u64>) -> InFlight {
        let mut sender = self.fork();
        InFlight(tokio::spawn(async move {
            sender.send_until_final(&payload, version, end).await
        }))
    }
}

/// Counts a send in the endpoint's `in_flight` while the send lives, also when it is
/// aborted.
struct Outstanding(Arc<Mutex<EndpointStatus>>);

impl Outstanding {
    fn new(status: &Arc<Mutex<EndpointStatus>>) -> Self {
        status.lock().in_flight += 1;
        Outstanding(status.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
    }
}

/// A send running on its own task. Dropping it aborts the send, so a worker that is
/// interrupted or stopped leaves nothing running behind it.
pub(super) struct InFlight(JoinHandle<Result<Final, Stop>>);

impl InFlight {
    /// The send's outcome. A send task that panicked counts as interrupted, and the worker
    /// starts again from its cursor.
    /// Cancel-safe: if this future is dropped before it completes, it can be awaited again.
    pub async fn outcome(&mut self, endpoint: &str) -> Result<Final, Stop> {
        match (&mut self.0).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(endpoint, error = %e, "shipper: a send task failed; starting again from the cursor");
                Err(Stop::Interrupted)
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    use super::{gate_changed, is_down};
    use crate::shipper::status::{EndpointState, EndpointStatus};

    #[test]
    fn an_endpoint_is_down_from_its_first_failure_until_it_answers_or_while_paused() {
        let mut s = EndpointStatus::new("vm".into(), "http://vm:8428".into(), 1);
        assert!(!is_down(&s), "fresh");
        s.state = EndpointState::Backoff;
        s.next_retry_ms = Some(1);
        assert!(is_down(&s), "waiting to retry");
        s.state = EndpointState::Shipping;
        assert!(
            is_down(&s),
            "the retry waits for its answer (up to the timeout)"
        );
        s.next_retry_ms = None;
        assert!(!is_down(&s), "answered");
        s.state = EndpointState::Paused;
        assert!(is_down(&s), "paused by an operator");
    }

    #[tokio::test]
    async fn a_gate_without_its_sender_stays_as_it_is() {
        let (tx, mut rx) = watch::channel(true);
        let wait = std::time::Duration::from_millis(50);
        drop(tx);
        assert!(
            tokio::time::timeout(wait, gate_changed(&mut rx))
                .await
                .is_err(),
            "no change can come"
        );
        let (tx, mut rx) = watch::channel(true);
        tx.send_replace(false);
        assert!(tokio::time::timeout(wait, gate_changed(&mut rx))
            .await
            .is_ok());
    }
}

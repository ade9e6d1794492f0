//! One endpoint's worker: reads the WAL from its own cursor, sends record by record in
//! sequence order (so per series the storage sees timestamps in order), retries what is
//! transient, quarantines what is permanent, and moves the cursor only past records that
//! are done.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::client::EndpointClient;
use super::retry::{Backoff, Verdict};
use super::split::halve;
use super::status::{EndpointState, EndpointStatus};
use crate::election::{Clock, SystemClock};
use crate::wal::{ReadItem, Record, Wal};

/// Records read from the WAL at a time.
const READ_RECORDS: usize = 64;
/// Bytes read from the WAL at a time (about).
const READ_BYTES: usize = 16 << 20;
/// Consecutive failed attempts after which the state is `failing` rather than `backoff`.
const FAILING_AFTER: u64 = 5;

/// How a send ended, once retries are over.
enum Final {
    Delivered,
    TooLarge,
    Reject { status: u16, answer: String },
}

/// The shutdown token fired while waiting.
struct Stopped;

pub(super) struct Worker {
    pub name: String,
    pub client: EndpointClient,
    pub wal: Wal,
    pub status: Arc<Mutex<EndpointStatus>>,
    pub backoff: Backoff,
    pub shutdown: CancellationToken,
}

impl Worker {
    fn update(&self, f: impl FnOnce(&mut EndpointStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    pub async fn run(mut self) {
        let mut appended = self.wal.subscribe_appended();
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let cursor = match self.wal.cursor(&self.name) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(endpoint = %self.name, error = %e, "shipper: no cursor, worker stops");
                    return;
                }
            };
            appended.mark_unchanged();
            let items = match self.wal.read(cursor, READ_RECORDS, READ_BYTES).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(endpoint = %self.name, error = %e, "shipper: reading the buffer failed");
                    if self.sleep(Duration::from_secs(1)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if items.is_empty() {
                self.update(|s| s.state = EndpointState::Idle);
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = appended.changed() => {}
                    // Cursors may be moved from elsewhere (limits); look again now and then.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            for item in items {
                let seq = item.seq();
                match item {
                    ReadItem::Corrupt(seq, e) => {
                        tracing::error!(endpoint = %self.name, seq, error = %e, "shipper: damaged record skipped; its samples are lost");
                    }
                    ReadItem::Record(seq, record) => {
                        if self.deliver(seq, &record).await.is_err() {
                            return;
                        }
                    }
                }
                if let Err(e) = self.wal.advance_cursor(&self.name, seq + 1) {
                    tracing::error!(endpoint = %self.name, error = %e, "shipper: cursor update failed");
                }
            }
        }
    }

    async fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(Stopped),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Delivers one record (in parts if the storage says it is too large). Returns when it
    /// is delivered or quarantined; only a shutdown interrupts it.
    async fn deliver(&mut self, seq: u64, record: &Record) -> Result<(), Stopped> {
        let mut parts: Vec<Bytes> = vec![record.payload.clone()];
        let mut rejected: Option<(u16, String)> = None;
        while let Some(part) = parts.pop() {
            match self.send_until_final(&part).await? {
                Final::Delivered => {}
                Final::TooLarge => match halve(&part) {
                    Some((first, second)) => {
                        tracing::warn!(endpoint = %self.name, seq, bytes = part.len(), "shipper: storage answered 413, sending the batch in halves");
                        parts.push(second);
                        parts.push(first);
                    }
                    None => rejected = Some((413, "too large and cannot be split".into())),
                },
                Final::Reject { status, answer } => rejected = Some((status, answer)),
            }
        }
        let samples = u64::from(record.meta.samples) + u64::from(record.meta.histograms);
        match rejected {
            None => self.update(|s| {
                s.sent_records += 1;
                s.sent_samples += samples;
                s.sent_bytes += record.payload.len() as u64;
            }),
            Some((status, answer)) => {
                tracing::error!(
                    endpoint = %self.name, seq, status, answer = %answer,
                    group = %record.group, source = %record.source, samples,
                    "shipper: storage rejected the batch permanently; quarantined, moving on"
                );
                if let Err(e) = self
                    .wal
                    .quarantine(&self.name, seq, record, status, &answer)
                {
                    tracing::error!(endpoint = %self.name, seq, error = %e, "shipper: could not store the quarantined batch; it is lost");
                }
                self.update(|s| {
                    s.quarantined += 1;
                    s.last_error = Some(format!("HTTP {status}: {answer}"));
                    s.last_error_ms = Some(SystemClock.now_ms());
                });
            }
        }
        Ok(())
    }

    /// Sends until the answer is not "retry".
    async fn send_until_final(&mut self, payload: &Bytes) -> Result<Final, Stopped> {
        let mut failures = 0u64;
        loop {
            self.update(|s| {
                if s.state != EndpointState::Failing {
                    s.state = EndpointState::Shipping;
                }
            });
            let verdict = tokio::select! {
                _ = self.shutdown.cancelled() => return Err(Stopped),
                v = self.client.send(payload.clone()) => v,
            };
            let (reason, after) = match verdict {
                Verdict::Retry { reason, after } => (reason, after),
                Verdict::Delivered => return Ok(self.recovered(failures, Final::Delivered)),
                Verdict::TooLarge => return Ok(self.recovered(failures, Final::TooLarge)),
                Verdict::Reject { status, answer } => {
                    return Ok(self.recovered(failures, Final::Reject { status, answer }))
                }
            };
            failures += 1;
            let delay = self.backoff.next_delay(after);
            let now = SystemClock.now_ms();
            self.update(|s| {
                s.retries += 1;
                s.failed_requests += 1;
                s.last_error = Some(reason.clone());
                s.last_error_ms = Some(now);
                s.next_retry_ms = Some(now + delay.as_millis() as u64);
                s.state = if failures >= FAILING_AFTER {
                    EndpointState::Failing
                } else {
                    EndpointState::Backoff
                };
            });
            if failures == 1 || failures % 20 == 0 {
                tracing::warn!(endpoint = %self.name, attempts = failures, retry_in = ?delay, error = %reason, "shipper: send failed, will retry");
            }
            self.sleep(delay).await?;
        }
    }

    /// Leaves the retry loop: resets the backoff and the state.
    fn recovered(&mut self, failures: u64, outcome: Final) -> Final {
        self.backoff.reset();
        self.update(|s| {
            s.next_retry_ms = None;
            if matches!(s.state, EndpointState::Failing | EndpointState::Backoff) {
                s.state = EndpointState::Shipping;
            }
        });
        if failures > 0 {
            tracing::info!(endpoint = %self.name, attempts = failures + 1, "shipper: storage answers again");
        }
        outcome
    }
}

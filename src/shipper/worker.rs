//! One endpoint's worker: reads the WAL from its own cursor, sends one request at a time in
//! sequence order (consecutive records joined up to the batch limit; per series the
//! storage sees timestamps in order), retries what is
//! transient, quarantines what is permanent, and moves the cursor only past records that
//! are done — and only if nobody (an operator, the buffer limits) moved it meanwhile.
//!
//! Operator controls (pause, resume, cursor moves, quarantine replays) wake the worker
//! through its control channel, also in the middle of a retry loop: a storage that has been
//! failing for an hour can be skipped past or paused at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::batch::{decoded_len, join};
use super::client::EndpointClient;
use super::control::EndpointControl;
use super::retry::{Backoff, Verdict};
use super::split::halve;
use super::status::{EndpointState, EndpointStatus};
use crate::election::{Clock, SystemClock};
use crate::metrics::METRICS;
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

/// Why a worker stopped what it was doing.
enum Stop {
    /// The process is shutting down.
    Shutdown,
    /// An operator changed something: look at the controls and the cursor again.
    Interrupted,
}

pub(super) struct Worker {
    pub name: String,
    pub client: EndpointClient,
    pub wal: Wal,
    pub status: Arc<Mutex<EndpointStatus>>,
    pub control: Arc<EndpointControl>,
    pub control_rx: watch::Receiver<u64>,
    pub backoff: Backoff,
    pub shutdown: CancellationToken,
    /// False while this node must not ship (cluster follower).
    pub gate: watch::Receiver<bool>,
    /// Decoded bytes of consecutive records joined into one request (at least one record).
    pub max_batch_bytes: u64,
    /// Where joined requests are built, kept between batches (see [`join`]).
    pub join_buf: BytesMut,
}

/// What a record adds to a joined request (decoded bytes; a record whose preamble cannot
/// be read counts as too large to join, so it goes alone).
fn batch_len(record: &Record) -> u64 {
    decoded_len(&record.payload).unwrap_or(u64::MAX / 2)
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
            self.control_rx.mark_unchanged();
            self.gate.mark_unchanged();
            if !*self.gate.borrow() {
                self.update(|s| {
                    s.state = EndpointState::Standby;
                    s.next_retry_ms = None;
                });
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.gate.changed() => {}
                    _ = self.control_rx.changed() => {}
                }
                continue;
            }
            if self.control.is_paused() {
                self.update(|s| {
                    s.state = EndpointState::Paused;
                    s.next_retry_ms = None;
                });
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.control_rx.changed() => {}
                }
                continue;
            }
            if let Some(seq) = self.control.next_replay() {
                match self.replay_quarantined(seq).await {
                    Err(Stop::Shutdown) => return,
                    Err(Stop::Interrupted) => self.control.requeue_replay(seq),
                    Ok(()) => {}
                }
                continue;
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
                    match self.sleep(Duration::from_secs(1)).await {
                        Err(Stop::Shutdown) => return,
                        _ => continue,
                    }
                }
            };
            if items.is_empty() {
                self.update(|s| s.state = EndpointState::Idle);
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = appended.changed() => {}
                    _ = self.control_rx.changed() => {}
                    // The limits may move cursors from elsewhere; look again now and then.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let mut expected = cursor;
            let mut items = items.into_iter().peekable();
            while let Some(item) = items.next() {
                let (first, record) = match item {
                    ReadItem::Corrupt(seq, e) => {
                        tracing::error!(endpoint = %self.name, seq, error = %e, "shipper: damaged record skipped; its samples are lost");
                        METRICS.wal_damaged.inc();
                        match self.move_cursor(expected, seq + 1) {
                            Some(next) => expected = next,
                            None => break,
                        }
                        continue;
                    }
                    ReadItem::Record(seq, record) => (seq, record),
                };
                // Consecutive records go out as one request, up to the batch limit.
                let mut batch = vec![record];
                let mut decoded = batch_len(&batch[0]);
                let max = self.max_batch_bytes;
                let fits = |item: &ReadItem, decoded: u64| match item {
                    ReadItem::Record(_, r) => decoded + batch_len(r) <= max,
                    ReadItem::Corrupt(..) => false,
                };
                while let Some(ReadItem::Record(_, next)) = items.next_if(|i| fits(i, decoded)) {
                    decoded += batch_len(&next);
                    batch.push(next);
                }
                let last = first + batch.len() as u64 - 1;
                match self.deliver_batch(first, &batch, expected).await {
                    Err(Stop::Shutdown) => return,
                    Err(Stop::Interrupted) => break,
                    Ok(Some(next)) if next == last + 1 => expected = next,
                    // The cursor moved under us (operator, limits) or a part was interrupted.
                    Ok(_) => break,
                }
            }
        }
    }

    /// Moves the cursor from `from` to `to`; `None` when someone else moved it meanwhile
    /// (their position wins) or the update failed.
    fn move_cursor(&self, from: u64, to: u64) -> Option<u64> {
        match self.wal.advance_cursor(&self.name, from, to) {
            Ok(true) => Some(to),
            Ok(false) => None,
            Err(e) => {
                tracing::error!(endpoint = %self.name, error = %e, "shipper: cursor update failed");
                None
            }
        }
    }

    /// Ships the records `first, first + 1, ...` as one request when the storage takes it;
    /// else (rejected, too large, or just one record) record by record, each with its own
    /// verdict and quarantine entry. Moves the cursor from `cursor` past what is done and
    /// returns where it stands, `None` when it could not be moved.
    async fn deliver_batch(
        &mut self,
        first: u64,
        batch: &[Record],
        cursor: u64,
    ) -> Result<Option<u64>, Stop> {
        if batch.len() > 1 {
            let payloads: Vec<Bytes> = batch.iter().map(|r| r.payload.clone()).collect();
            if let Some(joined) = join(&payloads, &mut self.join_buf) {
                if let Final::Delivered = self.send_until_final(&joined).await? {
                    for record in batch {
                        self.count_sent(record);
                    }
                    return Ok(self.move_cursor(cursor, first + batch.len() as u64));
                }
                tracing::debug!(endpoint = %self.name, records = batch.len(), "shipper: joined batch not taken; sending its records one by one");
            }
        }
        let mut at = cursor;
        for (seq, record) in (first..).zip(batch) {
            match self.deliver(record).await? {
                None => self.count_sent(record),
                Some((status, answer)) => self.quarantine(seq, record, status, &answer),
            }
            match self.move_cursor(at, seq + 1) {
                Some(next) => at = next,
                None => return Ok(None),
            }
        }
        Ok(Some(at))
    }

    fn count_sent(&self, record: &Record) {
        let samples = u64::from(record.meta.samples) + u64::from(record.meta.histograms);
        if samples > 0 {
            let ts = record.meta.max_ts;
            self.update(|s| s.shipped_data_ts = Some(s.shipped_data_ts.map_or(ts, |t| t.max(ts))));
        }
        let m = &METRICS;
        m.shipper_sent_records
            .with_label_values(&[&self.name])
            .inc();
        m.shipper_sent_samples
            .with_label_values(&[&self.name])
            .inc_by(samples);
        m.shipper_sent_bytes
            .with_label_values(&[&self.name])
            .inc_by(record.payload.len() as u64);
        self.update(|s| {
            s.sent_records += 1;
            s.sent_samples += samples;
            s.sent_bytes += record.payload.len() as u64;
        });
    }

    fn quarantine(&self, seq: u64, record: &Record, status: u16, answer: &str) {
        let samples = u64::from(record.meta.samples) + u64::from(record.meta.histograms);
        tracing::error!(
            endpoint = %self.name, seq, status, answer = %answer,
            group = %record.group, source = %record.source, samples,
            "shipper: storage rejected the batch permanently; quarantined, moving on"
        );
        if let Err(e) = self.wal.quarantine(&self.name, seq, record, status, answer) {
            tracing::error!(endpoint = %self.name, seq, error = %e, "shipper: could not store the quarantined batch; it is lost");
        }
        METRICS
            .shipper_quarantined
            .with_label_values(&[&self.name])
            .inc();
        self.update(|s| {
            s.quarantined += 1;
            s.last_error = Some(format!("HTTP {status}: {answer}"));
            s.last_error_ms = Some(SystemClock.now_ms());
        });
    }

    /// Sends a quarantined batch again (operator request). Delivered: it leaves the
    /// quarantine. Rejected again: it stays, with the new answer.
    async fn replay_quarantined(&mut self, seq: u64) -> Result<(), Stop> {
        let record = match self.wal.quarantine_get(&self.name, seq) {
            Ok(Some((_, record))) => record,
            Ok(None) => {
                tracing::warn!(endpoint = %self.name, seq, "shipper: quarantined batch to replay is gone");
                return Ok(());
            }
            Err(e) => {
                tracing::error!(endpoint = %self.name, seq, error = %e, "shipper: cannot read the quarantine");
                return Ok(());
            }
        };
        match self.deliver(&record).await? {
            None => {
                self.count_sent(&record);
                if let Err(e) = self.wal.quarantine_remove(&self.name, seq) {
                    tracing::error!(endpoint = %self.name, seq, error = %e, "shipper: could not remove the replayed batch from the quarantine");
                }
                tracing::info!(endpoint = %self.name, seq, "shipper: quarantined batch replayed and delivered");
            }
            Some((status, answer)) => {
                tracing::warn!(endpoint = %self.name, seq, status, answer = %answer, "shipper: replayed batch rejected again; it stays quarantined");
                if let Err(e) = self
                    .wal
                    .quarantine(&self.name, seq, &record, status, &answer)
                {
                    tracing::error!(endpoint = %self.name, seq, error = %e, "shipper: could not update the quarantine");
                }
            }
        }
        Ok(())
    }

    async fn sleep(&mut self, d: Duration) -> Result<(), Stop> {
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(Stop::Shutdown),
            _ = self.control_rx.changed() => Err(Stop::Interrupted),
            _ = self.gate.changed() => Err(Stop::Interrupted),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Delivers one record (in parts if the storage says it is too large). `Ok(None)`:
    /// delivered; `Ok(Some((status, answer)))`: rejected permanently.
    async fn deliver(&mut self, record: &Record) -> Result<Option<(u16, String)>, Stop> {
        let mut parts: Vec<Bytes> = vec![record.payload.clone()];
        let mut rejected: Option<(u16, String)> = None;
        while let Some(part) = parts.pop() {
            match self.send_until_final(&part).await? {
                Final::Delivered => {}
                Final::TooLarge => match halve(&part) {
                    Some((first, second)) => {
                        tracing::warn!(endpoint = %self.name, bytes = part.len(), "shipper: storage answered 413, sending the batch in halves");
                        parts.push(second);
                        parts.push(first);
                    }
                    None => rejected = Some((413, "too large and cannot be split".into())),
                },
                Final::Reject { status, answer } => rejected = Some((status, answer)),
            }
        }
        Ok(rejected)
    }

    /// Sends until the answer is not "retry".
    async fn send_until_final(&mut self, payload: &Bytes) -> Result<Final, Stop> {
        let mut failures = 0u64;
        loop {
            self.update(|s| {
                if s.state != EndpointState::Failing {
                    s.state = EndpointState::Shipping;
                }
            });
            if !*self.gate.borrow() {
                return Err(Stop::Interrupted);
            }
            let client = self.client.clone();
            let started = std::time::Instant::now();
            let verdict = tokio::select! {
                _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                _ = self.control_rx.changed() => return Err(Stop::Interrupted),
                _ = self.gate.changed() => return Err(Stop::Interrupted),
                v = client.send(payload.clone()) => v,
            };
            METRICS
                .shipper_request_duration
                .with_label_values(&[&self.name])
                .observe(started.elapsed().as_secs_f64());
            if let Some(class) = verdict.failure_class() {
                METRICS
                    .shipper_failures
                    .with_label_values(&[&self.name, class])
                    .inc();
            }
            let (reason, after) = match verdict {
                Verdict::Retry { reason, after } => (reason, after),
                Verdict::Delivered => return Ok(self.recovered(failures, Final::Delivered)),
                Verdict::TooLarge => return Ok(self.recovered(failures, Final::TooLarge)),
                Verdict::Reject { status, answer } => {
                    return Ok(self.recovered(failures, Final::Reject { status, answer }))
                }
            };
            failures += 1;
            METRICS
                .shipper_retries
                .with_label_values(&[&self.name])
                .inc();
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

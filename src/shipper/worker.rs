//! One endpoint's worker. It reads the WAL from its own cursor and sends in sequence
//! order. It joins consecutive records up to the batch limit (waiting [`LINGER`] for more
//! when nothing is out and the batch would not be full), and keeps several requests out
//! at once. Each send retries what is transient (`send`); what the worker does with a
//! final answer is in `verdict`.
//!
//! The worker moves the cursor only over a contiguous prefix of records that are done. It
//! moves it only if nobody else (an operator, the buffer limits) moved it meanwhile.
//!
//! By default (`max_in_flight` 1) the storage sees each series' timestamps in order: a
//! batch goes out beside others only when it shares no series with the window's batches
//! (ordered lanes, see `lanes`), and only when the storage is slow: the newest send has
//! waited [`LANES_AFTER`], and so did each of the last requests. With `max_in_flight`
//! above 1, later batches go out before earlier ones are answered, so a storage may see a
//! series' samples out of order. The cursor still waits for every earlier batch.
//!
//! Operator controls (pause, resume, cursor moves, quarantine replays) wake the worker
//! through its control channel, also in the middle of a retry loop. So an operator can
//! skip past or pause a storage at once, even one that has been failing for an hour.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::batch::{decoded_len, join};
use super::control::EndpointControl;
use super::lanes::{Pace, Series};
use super::protocol::{payloads_in, Speaker};
use super::send::{gate_changed, Final, Sender, Stop};
use super::status::{EndpointState, EndpointStatus};
use super::window::{Batch, Pass, Unit, Window};

use crate::metrics::METRICS;
use crate::wal::{ReadItem, Record, Wal};
use crate::wire::Version;

/// Records read from the WAL at a time.
const READ_RECORDS: usize = 64;
/// Bytes read from the WAL at a time (about).
const READ_BYTES: usize = 16 << 20;
/// Ordered lanes open for a storage that took this long or longer to answer each of the
/// last requests; a lane opens this long after the newest send. The worker then computes
/// series keys to send the next batch beside the ones out. A storage that answers sooner
/// gets one batch at a time and costs no keys.
const LANES_AFTER: Duration = Duration::from_millis(10);
/// How long the worker waits for more records before it sends a batch that is not full
/// while nothing is out (a near storage at a moderate rate). Without the wait, every
/// record went alone, and each request cost the relay and the storage a round of
/// wake-ups and system calls. It is short beside a sender's own batching (Prometheus
/// waits up to 5 s to fill a request).
const LINGER: Duration = Duration::from_millis(10);

pub(super) struct Worker {
    /// Sends of this endpoint (and the signals that stop them).
    pub sender: Sender,
    pub wal: Wal,
    pub control: Arc<EndpointControl>,
    /// Decoded bytes of consecutive records joined into one request (at least one record).
    pub max_batch_bytes: u64,
    /// Requests out at once (at least 1), with no regard to order.
    pub max_in_flight: usize,
    /// Requests out at once (at least 1) that share no series: every series stays in
    /// order. Used when `max_in_flight` is 1.
    pub ordered_in_flight: usize,
    /// Where joined requests are built, kept between batches (see [`join`]).
    pub join_buf: BytesMut,
    /// The Remote-Write version 2.0 records go as.
    pub speaker: Speaker,
    /// How long the storage took to answer the last requests.
    pub pace: Pace,
}

/// What a record adds to a joined request, in decoded bytes. A record whose preamble
/// cannot be read counts as too large to join, so it goes alone. A 2.0 record is joined
/// only converted, so it counts with the 1.0 form's usual growth.
fn batch_len(record: &Record) -> u64 {
    let len = decoded_len(&record.payload).unwrap_or(u64::MAX / 2);
    match record.protocol {
        Version::V1 => len,
        Version::V2 => len.saturating_mul(crate::wire::V1_GROWTH as u64),
    }
}

/// What waiting for the head of the window gave.
enum Head {
    /// The window is empty.
    Empty,
    /// New records arrived while the head was out: fill the window again.
    Grown,
    /// The head's answer (`None`: it was not sent as one request).
    Answered(Option<Final>),
    /// The head is slow: learn the series of the batches, so that more may go out.
    Widen,
}

impl Worker {
    pub(super) fn name(&self) -> &str {
        &self.sender.name
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut EndpointStatus)) {
        self.sender.update(f)
    }

    /// Whether the requests out must share no series (ordered lanes).
    fn ordered(&self) -> bool {
        self.max_in_flight <= 1
    }

    /// Requests out at once at most.
    fn limit(&self) -> usize {
        if self.ordered() {
            self.ordered_in_flight.max(1)
        } else {
            self.max_in_flight
        }
    }

    pub async fn run(mut self) {
        let mut appended = self.wal.subscribe_appended();
        loop {
            if self.sender.shutdown.is_cancelled() {
                return;
            }
            self.sender.control_rx.mark_unchanged();
            self.sender.gate.mark_unchanged();
            if !*self.sender.gate.borrow() {
                self.update(|s| {
                    s.state = EndpointState::Standby;
                    s.next_retry_ms = None;
                });
                tokio::select! {
                    _ = self.sender.shutdown.cancelled() => return,
                    _ = gate_changed(&mut self.sender.gate) => {}
                    _ = self.sender.control_rx.changed() => {}
                }
                continue;
            }
            if self.control.is_paused() {
                self.update(|s| {
                    s.state = EndpointState::Paused;
                    s.next_retry_ms = None;
                });
                tokio::select! {
                    _ = self.sender.shutdown.cancelled() => return,
                    _ = self.sender.control_rx.changed() => {}
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
            let cursor = match self.wal.cursor(self.name()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(endpoint = %self.name(), error = %e, "shipper: no cursor, worker stops");
                    return;
                }
            };
            appended.mark_unchanged();
            match self.ship_from(cursor, &mut appended).await {
                Err(Stop::Shutdown) => return,
                Err(Stop::Interrupted) | Ok(Pass::Again) => {}
                Ok(Pass::ReadFailed) => {
                    if let Err(Stop::Shutdown) = self.sender.sleep(Duration::from_secs(1)).await {
                        return;
                    }
                }
                Ok(Pass::Idle) => {
                    self.update(|s| s.state = EndpointState::Idle);
                    tokio::select! {
                        _ = self.sender.shutdown.cancelled() => return,
                        _ = appended.changed() => {}
                        _ = self.sender.control_rx.changed() => {}
                        // The limits may move cursors from elsewhere, so look again now
                        // and then.
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Ships the buffer from `cursor` on, with up to `max_in_flight` requests out. It
    /// settles the answers in sequence order: the cursor moves over a batch once that
    /// batch and everything before it is done.
    ///
    /// The pass ends in two cases. Either the buffer is read to its end and every send is
    /// settled. Or the cursor moved under us: then the in-flight sends are dropped, which
    /// aborts them, and what they had delivered is sent again (at least once).
    async fn ship_from(
        &mut self,
        cursor: u64,
        appended: &mut watch::Receiver<u64>,
    ) -> Result<Pass, Stop> {
        let mut w = Window::new(cursor);
        loop {
            if let Some(pass) = self.fill(&mut w).await {
                return Ok(pass);
            }
            let outcome = match self.await_head(&mut w, appended).await? {
                Head::Empty => return Ok(w.finished()),
                Head::Grown => continue,
                Head::Widen => {
                    if w.staged.is_none() {
                        if let Err(pass) = self.stage(&mut w).await {
                            return Ok(pass);
                        }
                    }
                    w.learn_series().await;
                    continue;
                }
                Head::Answered(outcome) => {
                    if let (Some(_), Some(sent)) = (&outcome, w.head_sent()) {
                        self.pace.answered(sent.elapsed());
                    }
                    outcome
                }
            };
            if !self.settle_head(&mut w, outcome).await? {
                return Ok(Pass::Again);
            }
        }
    }

    /// Reads and starts sends until the window is full or nothing is left to read.
    /// Returns `Some` when the pass must end: the buffer could not be read and nothing is
    /// out.
    /// With ordered lanes, a batch that shares a series with a batch of the window stays
    /// staged; the fill stops there, so batches still go out in sequence order.
    async fn fill(&mut self, w: &mut Window) -> Option<Pass> {
        while w.in_flight() < self.limit() {
            if w.staged.is_none() {
                // With ordered lanes, a batch beside others is taken only when a lane
                // opens (`Head::Widen`): it then holds every record that came meanwhile.
                if self.ordered() && w.in_flight() > 0 {
                    break;
                }
                match self.stage(w).await {
                    Err(pass) => return Some(pass),
                    Ok(false) => break,
                    Ok(true) => {}
                }
            }
            let Some(mut batch) = w.staged.take() else {
                break;
            };
            if !self.ordered() || w.admits(&batch) {
                let unit = self.start(batch);
                w.push(unit);
            } else {
                if batch.series != Series::Unknown && !batch.held_back {
                    batch.held_back = true;
                    METRICS
                        .shipper
                        .lane_waits
                        .with_label_values(&[self.name()])
                        .inc();
                }
                w.staged = Some(batch);
                break;
            }
        }
        None
    }

    /// Takes the next batch off what was read (reading first when a read is due) into
    /// `w.staged`. Damaged records on the way go into the window as they are. Returns
    /// `Ok(false)` when nothing is left to send, `Err` when the pass must end (the buffer
    /// could not be read and nothing is out).
    async fn stage(&mut self, w: &mut Window) -> Result<bool, Pass> {
        loop {
            if let Some(from) = w.wants_read() {
                match self.read_from(from).await {
                    Some(items) => w.read(items),
                    None => {
                        if let Some(pass) = w.read_failed() {
                            return Err(pass);
                        }
                    }
                }
            }
            // A batch that could take more while nothing is out and everything appended
            // is read: wait for more writes, then read them. Behind a backlog the batch
            // goes as it is, and the next read takes the backlog (records of a read share
            // its memory, so reads are not piled up). A failed read here leaves the
            // batch as it was; the next read is due anyway.
            let (records, closed) = self.extent(&w.read);
            if records > 0 && !closed && w.in_flight() == 0 && w.next_read() >= self.wal.next_seq()
            {
                if self.sender.sleep(LINGER).await.is_err() {
                    return Err(Pass::Again);
                }
                if let Some(items) = self.read_from(w.next_read()).await {
                    w.read(items);
                }
            }
            match self.next_batch(&mut w.read) {
                None => return Ok(false),
                Some(Err(damaged)) => w.push(damaged),
                Some(Ok(batch)) => {
                    w.staged = Some(batch);
                    return Ok(true);
                }
            }
        }
    }

    /// A read's worth of records from `from`; `None` (logged) when the read failed.
    async fn read_from(&self, from: u64) -> Option<Vec<ReadItem>> {
        match self.wal.read(from, READ_RECORDS, READ_BYTES).await {
            Ok(items) => Some(items),
            Err(e) => {
                tracing::error!(endpoint = %self.name(), error = %e, "shipper: reading the buffer failed");
                None
            }
        }
    }

    /// Whether ordered lanes are open: the storage was slow to answer each of the last
    /// requests, so the next batch may go beside the ones out.
    fn lanes_open(&self) -> bool {
        self.ordered() && self.limit() > 1 && self.pace.slow(LANES_AFTER)
    }

    /// Waits for the head's answer. New records end the wait ([`Head::Grown`]) while there
    /// is room in the window and the buffer was read to its end. So new records go out
    /// without waiting for the head. A failing storage then gets the whole window, not one
    /// request at a time.
    ///
    /// With ordered lanes open (the storage was slow to answer each of the last requests),
    /// the wait ends [`LANES_AFTER`] after the newest send too ([`Head::Widen`]): the next
    /// batch is then staged and its series learnt, to go beside the ones out.
    async fn await_head(
        &mut self,
        w: &mut Window,
        appended: &mut watch::Receiver<u64>,
    ) -> Result<Head, Stop> {
        let may_grow = w.may_grow(self.limit()) && (!self.ordered() || self.lanes_open());
        // A lane opens [`LANES_AFTER`] after the newest send, when there is a batch to
        // stage or series to learn.
        let widen_at = (self.lanes_open()
            && w.in_flight() < self.limit()
            && match &w.staged {
                None => !w.read.is_empty() || w.wants_read().is_some(),
                Some(_) => !w.unknown().is_empty(),
            })
        .then(|| w.newest_sent().map(|sent| sent + LANES_AFTER))
        .flatten();
        let send = match w.head_mut() {
            None => return Ok(Head::Empty),
            Some(Unit::Batch {
                send: Some(send), ..
            }) => send,
            // A damaged record, or records that go one by one: there is nothing to wait
            // for.
            Some(_) => return Ok(Head::Answered(None)),
        };
        let widen = async {
            match widen_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            o = send.outcome(&self.sender.name) => Ok(Head::Answered(Some(o?))),
            Ok(()) = appended.changed(), if may_grow => {
                w.grown();
                Ok(Head::Grown)
            }
            () = widen => Ok(Head::Widen),
        }
    }

    /// Settles the head of the window with its answer and moves the cursor past it.
    /// Returns `false` when the cursor moved under us; the pass then starts again from the
    /// cursor.
    async fn settle_head(&mut self, w: &mut Window, outcome: Option<Final>) -> Result<bool, Stop> {
        let Some(unit) = w.pop() else {
            return Ok(false);
        };
        let at = w.cursor();
        let (now, wanted) = match unit {
            Unit::Damaged(seq, e) => {
                tracing::error!(endpoint = %self.name(), seq, error = %e, "shipper: damaged record skipped; its samples are lost");
                METRICS.wal.damaged.inc();
                (self.move_cursor(at, seq + 1), seq + 1)
            }
            Unit::Batch { batch, .. } => {
                let end = batch.first + batch.records.len() as u64;
                let settled = self
                    .settle(batch.first, &batch.records, batch.version, at, outcome)
                    .await?;
                (settled, end)
            }
        };
        Ok(w.settled(now, wanted))
    }

    /// Takes the next batch off `read`: consecutive records up to the batch limit, or
    /// (`Err`) a damaged record.
    fn next_batch(&mut self, read: &mut VecDeque<ReadItem>) -> Option<Result<Batch, Unit>> {
        let (count, _) = self.extent(read);
        let (first, record) = match read.pop_front()? {
            ReadItem::Corrupt(seq, e) => return Some(Err(Unit::Damaged(seq, e))),
            ReadItem::Record(seq, record) => (seq, record),
        };
        let version = self.speaker.wire(&record);
        let mut records = Vec::with_capacity(count);
        records.push(record);
        for _ in 1..count {
            if let Some(ReadItem::Record(_, next)) = read.pop_front() {
                records.push(next);
            }
        }
        Some(Ok(Batch {
            first,
            records,
            version,
            series: Series::Unknown,
            held_back: false,
        }))
    }

    /// How many records at the front of `read` make the next batch (0 when the front is
    /// a damaged record), and whether that batch is closed: a record that may not join
    /// or the size limit ends it, so records read later could not join it either.
    fn extent(&self, read: &VecDeque<ReadItem>) -> (usize, bool) {
        let mut items = read.iter();
        let Some(ReadItem::Record(_, first)) = items.next() else {
            return (0, true);
        };
        // A 2.0 request goes alone: its references point into its own symbols table.
        let alone = self.speaker.wire(first) != Version::V1;
        let mut decoded = batch_len(first);
        let mut count = 1;
        for item in items {
            let ReadItem::Record(_, next) = item else {
                return (count, true);
            };
            let len = batch_len(next);
            if alone
                || self.speaker.wire(next) != Version::V1
                || decoded + len > self.max_batch_bytes
            {
                return (count, true);
            }
            decoded += len;
            count += 1;
        }
        (count, alone || decoded >= self.max_batch_bytes)
    }

    /// Starts the send of `batch`.
    fn start(&mut self, batch: Batch) -> Unit {
        let end = batch.first + batch.records.len() as u64;
        let send = self
            .payload(&batch.records, batch.version)
            .map(|p| self.sender.spawn(p, batch.version, Some(end)));
        Unit::Batch {
            batch,
            send,
            sent: Instant::now(),
        }
    }

    /// One request's body of `version` for `records`: their payloads (2.0 ones converted
    /// when `version` is 1.0) joined, or a lone payload as it is. `None` when they cannot
    /// be joined (over snappy's length limit) or converted.
    fn payload(&mut self, records: &[Record], version: Version) -> Option<Bytes> {
        let payloads = payloads_in(records, version, self.name()).ok()?;
        join(&payloads, &mut self.join_buf)
    }

    /// Moves the cursor from `from` to `to`. Returns `None` when the update failed, or
    /// when someone else moved the cursor meanwhile; their position wins.
    pub(super) fn move_cursor(&self, from: u64, to: u64) -> Option<u64> {
        match self.wal.advance_cursor(self.name(), from, to) {
            Ok(true) => Some(to),
            Ok(false) => None,
            Err(e) => {
                tracing::error!(endpoint = %self.name(), error = %e, "shipper: cursor update failed");
                None
            }
        }
    }
}

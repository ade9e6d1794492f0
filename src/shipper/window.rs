//! One pass of a worker over the buffer, as state. The state holds:
//! - what was read and not yet sent;
//! - the sends that are out (at most `max_in_flight`);
//! - the cursor. It moves only over the head of the window, in sequence order, whatever
//!   order the answers come in.
//!
//! The worker drives the window through named transitions:
//! - [`Window::read`] and [`Window::read_failed`] fill it;
//! - [`Window::settled`] moves the cursor past the head;
//! - [`Window::grown`] notes that the buffer got new records.
//!
//! A pass ends when the window is empty ([`Window::finished`]).
//!
//! The window also holds the series of its batches ([`Lanes`]) and the next batch when it
//! may not go out yet ([`Window::staged`]): it shares a series with a batch of the window.

use std::collections::VecDeque;
use std::time::Instant;

use super::lanes::{Keys, Lanes, Series};
use super::send::InFlight;
use crate::wal::record::CodecError;
use crate::wal::{ReadItem, Record};
use crate::wire::Version;

/// Consecutive records joined into one request, before it goes out.
pub(super) struct Batch {
    /// The sequence of the first record.
    pub(super) first: u64,
    pub(super) records: Vec<Record>,
    /// The version the request goes as.
    pub(super) version: Version,
    /// What is known of its series.
    pub(super) series: Series,
    /// Whether it was held back because it shares a series with a batch out (counted
    /// once).
    pub(super) held_back: bool,
}

/// The next thing to settle, in sequence order.
pub(super) enum Unit {
    /// A damaged record: skipped.
    Damaged(u64, CodecError),
    /// A batch sent as one request. `send` is `None` when its records cannot be joined;
    /// they then go one by one.
    Batch {
        batch: Batch,
        send: Option<InFlight>,
        /// When it went out.
        sent: Instant,
    },
}

/// How a pass over the buffer ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pass {
    /// Nothing to send.
    Idle,
    /// Something was settled, or the cursor moved under us. Look again at once.
    Again,
    /// The buffer could not be read.
    ReadFailed,
}

/// The state of one pass.
pub(super) struct Window {
    /// Read from the buffer, not yet sent.
    pub(super) read: VecDeque<ReadItem>,
    /// Sent or skipped, not yet settled. Oldest first.
    units: VecDeque<Unit>,
    /// The next batch, when it shares a series with a batch of the window.
    pub(super) staged: Option<Batch>,
    /// The series of the window's batches.
    lanes: Lanes,
    /// The next sequence to read.
    next_read: u64,
    /// Whether reading again may find more.
    more: bool,
    /// The cursor: every sequence below it is settled.
    at: u64,
    /// Whether this pass settled anything.
    settled_any: bool,
}

impl Window {
    /// An empty window at `cursor`.
    pub(super) fn new(cursor: u64) -> Self {
        Window {
            read: VecDeque::new(),
            units: VecDeque::new(),
            staged: None,
            lanes: Lanes::default(),
            next_read: cursor,
            more: true,
            at: cursor,
            settled_any: false,
        }
    }

    /// Requests out (damaged records do not count).
    pub(super) fn in_flight(&self) -> usize {
        self.units
            .iter()
            .filter(|u| matches!(u, Unit::Batch { .. }))
            .count()
    }

    /// Adds a unit behind the others; its series enter the lanes.
    pub(super) fn push(&mut self, unit: Unit) {
        if let Unit::Batch { batch, .. } = &unit {
            self.lanes.enter(&batch.series);
        }
        self.units.push_back(unit);
    }

    /// Takes the head off; its series leave the lanes.
    pub(super) fn pop(&mut self) -> Option<Unit> {
        let unit = self.units.pop_front()?;
        if let Unit::Batch { batch, .. } = &unit {
            self.lanes.leave(&batch.series);
        }
        Some(unit)
    }

    /// The head, to wait for its answer.
    pub(super) fn head_mut(&mut self) -> Option<&mut Unit> {
        self.units.front_mut()
    }

    /// Whether `batch` may go out now beside the window's batches, with its series in
    /// order: the window holds no batch, or none that shares a series with it.
    pub(super) fn admits(&self, batch: &Batch) -> bool {
        self.in_flight() == 0 || self.lanes.admits(&batch.series)
    }

    /// The batches whose series are not known yet: the window's, then the staged one.
    pub(super) fn unknown(&self) -> Vec<&Batch> {
        self.units
            .iter()
            .filter_map(|u| match u {
                Unit::Batch { batch, .. } => Some(batch),
                Unit::Damaged(..) => None,
            })
            .chain(self.staged.as_ref())
            .filter(|b| b.series == Series::Unknown)
            .collect()
    }

    /// Takes the series computed for the batch that starts at `first`, in the window or
    /// staged.
    fn learn(&mut self, first: u64, series: Series) {
        if let Some(b) = self.staged.as_mut().filter(|b| b.first == first) {
            b.series = series;
            return;
        }
        for unit in &mut self.units {
            if let Unit::Batch { batch, .. } = unit {
                if batch.first == first && batch.series == Series::Unknown {
                    self.lanes.leave(&batch.series);
                    self.lanes.enter(&series);
                    batch.series = series;
                    return;
                }
            }
        }
    }

    /// Computes the series of the batches that do not know them yet, off the async
    /// threads (it decompresses and walks every series).
    pub(super) async fn learn_series(&mut self) {
        let todo: Vec<(u64, Vec<Record>)> = self
            .unknown()
            .into_iter()
            .map(|b| (b.first, b.records.clone()))
            .collect();
        let learnt = tokio::task::spawn_blocking(move || {
            todo.into_iter()
                .map(|(first, records)| (first, Series::computed(Keys::of(&records))))
                .collect::<Vec<_>>()
        })
        .await;
        match learnt {
            Ok(learnt) => {
                for (first, series) in learnt {
                    self.learn(first, series);
                }
            }
            // Nothing learnt: the batches go one at a time, as before.
            Err(e) => {
                tracing::error!(error = %e, "shipper: computing series keys failed");
                let firsts: Vec<u64> = self.unknown().iter().map(|b| b.first).collect();
                for first in firsts {
                    self.learn(first, Series::Any);
                }
            }
        }
    }

    /// When the newest request of the window went out.
    pub(super) fn newest_sent(&self) -> Option<Instant> {
        self.units.iter().rev().find_map(|u| match u {
            Unit::Batch { sent, .. } => Some(*sent),
            Unit::Damaged(..) => None,
        })
    }

    /// When the head went out, if it is a request that is out.
    pub(super) fn head_sent(&self) -> Option<Instant> {
        match self.units.front() {
            Some(Unit::Batch {
                send: Some(_),
                sent,
                ..
            }) => Some(*sent),
            _ => None,
        }
    }

    /// Where the next read starts, when a read is due. A read is due when nothing read is
    /// waiting and the last read may not have reached the end of the buffer.
    pub(super) fn wants_read(&self) -> Option<u64> {
        (self.read.is_empty() && self.more).then_some(self.next_read)
    }

    /// The next sequence to read.
    pub(super) fn next_read(&self) -> u64 {
        self.next_read
    }

    /// Takes what a read returned. An empty read means the end of the buffer.
    pub(super) fn read(&mut self, items: Vec<ReadItem>) {
        self.more = !items.is_empty();
        if let Some(last) = items.last() {
            self.next_read = last.seq() + 1;
        }
        self.read.extend(items);
    }

    /// A read failed. The pass settles what is out, then ends. Returns `Some` when nothing
    /// is out, so the pass ends now.
    pub(super) fn read_failed(&mut self) -> Option<Pass> {
        self.more = false;
        self.units.is_empty().then_some(Pass::ReadFailed)
    }

    /// Whether new records may be sent while the worker waits for the head's answer. They
    /// may when there is room for another request, the buffer was read to its end and no
    /// batch is staged (new records go behind it).
    pub(super) fn may_grow(&self, max_in_flight: usize) -> bool {
        self.in_flight() < max_in_flight && !self.more && self.staged.is_none()
    }

    /// The buffer got new records: read again.
    pub(super) fn grown(&mut self) {
        self.more = true;
    }

    /// The cursor, before the head is settled.
    pub(super) fn cursor(&self) -> u64 {
        self.at
    }

    /// The head was settled and the cursor moved to `now`. `wanted` is where the cursor
    /// should be (the head's end). Returns `false` when someone else (an operator, the
    /// limits) moved the cursor; the pass must then start again from the cursor.
    pub(super) fn settled(&mut self, now: Option<u64>, wanted: u64) -> bool {
        match now {
            Some(now) if now == wanted => {
                self.at = now;
                self.settled_any = true;
                self.more = true;
                true
            }
            _ => false,
        }
    }

    /// How the pass ends once the window is empty.
    pub(super) fn finished(&self) -> Pass {
        if self.settled_any {
            Pass::Again
        } else {
            Pass::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shipper::lanes::tests::record;
    use crate::wal::record::tests::snappy_record;

    fn records(seqs: std::ops::Range<u64>) -> Vec<ReadItem> {
        seqs.map(|s| ReadItem::Record(s, snappy_record())).collect()
    }

    fn batch(first: u64) -> Unit {
        Unit::Batch {
            batch: Batch {
                first,
                records: vec![snappy_record()],
                version: Version::V1,
                series: Series::Unknown,
                held_back: false,
            },
            send: None,
            sent: Instant::now(),
        }
    }

    #[test]
    fn a_new_window_reads_from_the_cursor() {
        let w = Window::new(7);
        assert_eq!(w.wants_read(), Some(7));
        assert_eq!((w.cursor(), w.in_flight()), (7, 0));
        assert_eq!(w.finished(), Pass::Idle, "nothing settled yet");
    }

    #[test]
    fn a_read_moves_the_next_read_past_what_it_returned() {
        let mut w = Window::new(7);
        w.read(records(7..10));
        assert_eq!(w.wants_read(), None, "records wait to be sent");
        w.read.clear();
        assert_eq!(w.wants_read(), Some(10));
    }

    #[test]
    fn an_empty_read_is_the_end_of_the_buffer_until_it_grows() {
        let mut w = Window::new(7);
        w.read(Vec::new());
        assert_eq!(w.wants_read(), None);
        assert!(w.may_grow(1), "room, and the buffer is read to its end");
        w.grown();
        assert_eq!(w.wants_read(), Some(7));
        assert!(!w.may_grow(1));
    }

    #[test]
    fn a_failed_read_ends_the_pass_only_when_nothing_is_out() {
        let mut w = Window::new(0);
        assert_eq!(w.read_failed(), Some(Pass::ReadFailed));
        let mut w = Window::new(0);
        w.push(batch(0));
        assert_eq!(w.read_failed(), None, "the send out is settled first");
        assert_eq!(w.wants_read(), None);
    }

    #[test]
    fn damaged_records_do_not_count_against_the_window() {
        let mut w = Window::new(0);
        w.push(Unit::Damaged(0, CodecError::Truncated));
        w.push(batch(1));
        assert_eq!(w.in_flight(), 1);
        assert!(!w.may_grow(1));
        w.read(Vec::new());
        assert!(w.may_grow(2));
    }

    #[test]
    fn settling_the_head_moves_the_cursor_and_reads_again() {
        let mut w = Window::new(3);
        w.read(Vec::new());
        assert!(w.settled(Some(5), 5));
        assert_eq!(w.cursor(), 5);
        assert_eq!(
            w.wants_read(),
            Some(3),
            "the next read resumes where reading stopped"
        );
        assert_eq!(w.finished(), Pass::Again);
    }

    fn batch_of(first: u64, series: &[usize]) -> Batch {
        Batch {
            first,
            records: vec![record(series, first as i64)],
            version: Version::V1,
            series: Series::Unknown,
            held_back: false,
        }
    }

    fn sent(batch: Batch) -> Unit {
        Unit::Batch {
            batch,
            send: None,
            sent: Instant::now(),
        }
    }

    #[tokio::test]
    async fn a_batch_goes_beside_others_once_their_series_are_known_and_disjoint() {
        let mut w = Window::new(0);
        assert!(
            w.admits(&batch_of(0, &[1])),
            "an empty window admits anything"
        );
        w.push(sent(batch_of(0, &[1, 2])));
        w.staged = Some(batch_of(1, &[3]));
        let staged = w.staged.take().expect("staged");
        assert!(!w.admits(&staged), "series not known yet");
        w.staged = Some(staged);
        assert_eq!(w.unknown().len(), 2, "the head and the staged batch");
        w.learn_series().await;
        assert!(w.unknown().is_empty());
        let staged = w.staged.take().expect("staged");
        assert!(w.admits(&staged), "no series in common");
        w.push(sent(staged));
        let mut next = batch_of(2, &[2]);
        next.series = Series::computed(Keys::of(&next.records));
        assert!(!w.admits(&next), "s2 is out with the head");
        assert!(matches!(w.pop(), Some(Unit::Batch { .. })));
        assert!(w.admits(&next), "the head was settled");
    }

    #[test]
    fn a_cursor_moved_by_someone_else_ends_the_pass() {
        let mut w = Window::new(3);
        assert!(!w.settled(Some(9), 5), "an operator moved it");
        assert!(!w.settled(None, 5), "the update failed");
        assert_eq!(w.cursor(), 3);
    }
}

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

use std::collections::VecDeque;

use super::send::InFlight;
use crate::wal::record::CodecError;
use crate::wal::{ReadItem, Record};
use crate::wire::Version;

/// The next thing to settle, in sequence order.
pub(super) enum Unit {
    /// A damaged record: skipped.
    Damaged(u64, CodecError),
    /// Records `first, first + 1, ...`, joined and sent as one request of `version`.
    /// `send` is `None` when they cannot be joined; they then go one by one.
    Batch {
        first: u64,
        records: Vec<Record>,
        version: Version,
        send: Option<InFlight>,
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
    pub(super) units: VecDeque<Unit>,
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

    /// Where the next read starts, when a read is due. A read is due when nothing read is
    /// waiting and the last read may not have reached the end of the buffer.
    pub(super) fn wants_read(&self) -> Option<u64> {
        (self.read.is_empty() && self.more).then_some(self.next_read)
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
    /// may when there is room for another request and the buffer was read to its end.
    pub(super) fn may_grow(&self, max_in_flight: usize) -> bool {
        self.in_flight() < max_in_flight && !self.more
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
    use crate::wal::record::tests::snappy_record;

    fn records(seqs: std::ops::Range<u64>) -> Vec<ReadItem> {
        seqs.map(|s| ReadItem::Record(s, snappy_record())).collect()
    }

    fn batch(first: u64) -> Unit {
        Unit::Batch {
            first,
            records: vec![snappy_record()],
            version: Version::V1,
            send: None,
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
        w.units.push_back(batch(0));
        assert_eq!(w.read_failed(), None, "the send out is settled first");
        assert_eq!(w.wants_read(), None);
    }

    #[test]
    fn damaged_records_do_not_count_against_the_window() {
        let mut w = Window::new(0);
        w.units.push_back(Unit::Damaged(0, CodecError::Truncated));
        w.units.push_back(batch(1));
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

    #[test]
    fn a_cursor_moved_by_someone_else_ends_the_pass() {
        let mut w = Window::new(3);
        assert!(!w.settled(Some(9), 5), "an operator moved it");
        assert!(!w.settled(None, 5), "the update failed");
        assert_eq!(w.cursor(), 3);
    }
}

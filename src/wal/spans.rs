//! Where records live in sled: one tree per span of consecutive sequence numbers
//! ([`SHAPE`]). A span's tree gets an empty placeholder under each of its keys before any
//! record goes in, and it is dropped whole once every sequence in it is below the buffer's
//! floor.
//!
//! Why not one tree with one key per record: sled 0.34 keeps values inside its B-tree
//! leaves. Keys appended in order grow the rightmost leaf until it splits (at 17 keys), and
//! a split writes both halves whole; deleting records key by key rewrote the leaves that
//! still held the others. Each ~50 KB record went to sled's log 3-5 times (the relay wrote
//! 5.3 bytes for every payload byte at full load). Here:
//! - Placeholder leaves split while they are tiny. A record then replaces a placeholder in
//!   a leaf that will not split again, as one delta that sled appends to the leaf; the
//!   span's length is chosen so that no leaf collects enough deltas to be rewritten.
//! - A span's placeholders are written `ahead` spans before its records arrive. sled's
//!   segment cleaner moves the live pages out of half-empty log segments, rewriting each
//!   page whole; a placeholder leaf written just before its records would share a segment
//!   with records about to be dropped, and be moved along with every record it had gained
//!   by then. Written early, it is moved (if at all) while still tiny.
//! - Dropping a tree frees its pages without writing them again.
//!
//! # Invariants
//! - A placeholder is an empty value; an encoded record never is (it starts with a fixed
//!   header). Readers and recovery skip placeholders.
//! - The tree of a span is in `trees` before any record is inserted into it, so a reader
//!   that sees record `n` also finds the tree of every record below `n`.
//! - A tree is dropped only when all its sequences are below the floor the caller gives
//!   (records every endpoint took, or that the limits dropped). Readers hold `dropping`
//!   (shared) while they iterate; a drop holds it exclusively.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, RwLock};

use sled::IVec;

use super::log::{be, seq_of};

/// How many sequence numbers a tree holds and how many trees are prepared ahead.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    /// Sequence numbers per tree.
    pub(super) span: u64,
    /// Spans prepared (placeholders written) beyond the one being appended to.
    pub(super) ahead: u64,
}

/// The shape the WAL uses.
///
/// `span` = 35 = 17 + 2 x 9, from sled 0.34's leaf rules: a leaf splits when it is next
/// touched with more than 16 keys, into 9 and 8 (`len / 2 + 1`), and it is rewritten whole
/// once it has 10 versions (its base and 9 deltas). Placeholders inserted in order leave
/// leaves of 9 keys and a last one of 17, which the first record to reach it splits into
/// 9 and 8: every leaf starts as a fresh base with at most 9 keys, so the records replace
/// its placeholders as at most 9 deltas and it is never rewritten. With 32 the last leaf
/// had 14 keys and 7 versions already, and was rewritten twice with the records it held:
/// during a storage outage sled wrote 1.67x the payload to its log, against 1.01x with 35
/// (`wchar`, 15 s at 724 writes/s). Shipped records stay in sled's cache until their span
/// is dropped, so the span is kept short: at half benchmark load, spans of 128 cost ~8 MiB
/// more peak RSS than spans of 32.
///
/// `ahead` = 32 spans = 1120 writes (~55 MB at 2000 samples per write), more than the
/// shipping lag of a storage that keeps up, so placeholder leaves are still tiny when the
/// segment cleaner moves them.
pub(super) const PRODUCTION: Shape = Shape {
    span: 35,
    ahead: 32,
};
/// The shape in use: [`PRODUCTION`].
#[cfg(not(test))]
pub(super) const SHAPE: Shape = PRODUCTION;
/// Small in unit tests, so that they cross spans often.
#[cfg(test)]
pub(super) const SHAPE: Shape = Shape { span: 4, ahead: 2 };

const PREFIX: &str = "records-";

/// The single tree of earlier versions, migrated at start-up.
const LEGACY: &[u8] = b"records";

/// The record trees of one WAL database.
pub(super) struct Spans {
    db: sled::Db,
    shape: Shape,
    trees: Mutex<BTreeMap<u64, sled::Tree>>,
    /// Shared while a reader iterates trees; exclusive while trees are dropped.
    dropping: RwLock<()>,
}

fn tree_name(span: u64) -> String {
    format!("{PREFIX}{span:016x}")
}

fn span_of_name(name: &[u8]) -> Option<u64> {
    let hex = std::str::from_utf8(name).ok()?.strip_prefix(PREFIX)?;
    u64::from_str_radix(hex, 16).ok()
}

impl Spans {
    /// Finds the span trees of `db`.
    pub(super) fn open(db: &sled::Db, shape: Shape) -> sled::Result<Spans> {
        assert!(shape.span > 0, "a span holds at least one sequence");
        let mut trees = BTreeMap::new();
        for name in db.tree_names() {
            if let Some(span) = span_of_name(&name) {
                trees.insert(span, db.open_tree(&name)?);
            }
        }
        Ok(Spans {
            db: db.clone(),
            shape,
            trees: Mutex::new(trees),
            dropping: RwLock::new(()),
        })
    }

    fn span_of(&self, seq: u64) -> u64 {
        seq / self.shape.span
    }

    fn trees(&self) -> MutexGuard<'_, BTreeMap<u64, sled::Tree>> {
        self.trees.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tree of earlier versions, when it still holds records: move them with
    /// [`Spans::insert`], flush, then [`Spans::drop_legacy`].
    pub(super) fn legacy(&self) -> sled::Result<Option<sled::Tree>> {
        if !self.db.tree_names().iter().any(|n| n == LEGACY) {
            return Ok(None);
        }
        let tree = self.db.open_tree(LEGACY)?;
        Ok(Some(tree))
    }

    /// Drops the tree of earlier versions (after its records are moved and flushed).
    pub(super) fn drop_legacy(&self) -> sled::Result<()> {
        self.db.drop_tree(LEGACY)?;
        Ok(())
    }

    /// Stores the record `seq` (blocking). Called with increasing sequences.
    pub(super) fn insert(&self, seq: u64, encoded: &[u8]) -> sled::Result<()> {
        debug_assert!(!encoded.is_empty(), "an empty value is a placeholder");
        let tree = self.tree_for_insert(seq)?;
        tree.insert(be(seq), encoded)?;
        Ok(())
    }

    /// Makes sure the span of `seq` and the ones ahead of it are prepared.
    pub(super) fn prepare(&self, seq: u64) -> sled::Result<()> {
        self.tree_for_insert(seq).map(drop)
    }

    fn tree_for_insert(&self, seq: u64) -> sled::Result<sled::Tree> {
        let span = self.span_of(seq);
        let last = span.saturating_add(self.shape.ahead);
        let mut trees = self.trees();
        if !trees.contains_key(&last) {
            for s in span..=last {
                if trees.contains_key(&s) {
                    continue;
                }
                let tree = self.db.open_tree(tree_name(s))?;
                if tree.is_empty() {
                    let first = s * self.shape.span;
                    for key in first..first.saturating_add(self.shape.span) {
                        tree.insert(be(key), &[])?;
                    }
                }
                trees.insert(s, tree);
            }
        }
        Ok(trees[&span].clone())
    }

    /// Calls `f` with each record (placeholders skipped) from `from` up to `end`
    /// (exclusive), in sequence order, while it returns `true`.
    pub(super) fn scan(
        &self,
        from: u64,
        end: u64,
        mut f: impl FnMut(u64, IVec) -> bool,
    ) -> sled::Result<()> {
        if from >= end {
            return Ok(());
        }
        let _reading = self.dropping.read().unwrap_or_else(|e| e.into_inner());
        let trees: Vec<sled::Tree> = self
            .trees()
            .range(self.span_of(from)..=self.span_of(end - 1))
            .map(|(_, t)| t.clone())
            .collect();
        for tree in trees {
            for item in tree.range(be(from)..be(end)) {
                let (key, value) = item?;
                let Some(seq) = seq_of(&key) else { continue };
                if value.is_empty() {
                    continue;
                }
                if !f(seq, value) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The span trees in sequence order, placeholders and all (for recovery).
    pub(super) fn all(&self) -> Vec<sled::Tree> {
        self.trees().values().cloned().collect()
    }

    /// Drops every tree whose sequences are all below `floor`.
    pub(super) fn drop_below(&self, floor: u64) -> sled::Result<()> {
        let spans: Vec<u64> = self
            .trees()
            .range(..self.span_of(floor))
            .map(|(s, _)| *s)
            .collect();
        if spans.is_empty() {
            return Ok(());
        }
        let _dropping = self.dropping.write().unwrap_or_else(|e| e.into_inner());
        for span in spans {
            self.trees().remove(&span);
            self.db.drop_tree(tree_name(span))?;
        }
        Ok(())
    }

    /// The tree that holds `seq` (for tests that damage bytes on purpose).
    #[cfg(test)]
    pub(super) fn tree_of(&self, seq: u64) -> Option<sled::Tree> {
        self.trees().get(&self.span_of(seq)).cloned()
    }

    /// How many span trees exist (for tests).
    #[cfg(test)]
    pub(super) fn tree_count(&self) -> usize {
        self.trees().len()
    }
}

#[cfg(test)]
mod tests {
    use super::{span_of_name, tree_name, Shape, Spans, PRODUCTION, SHAPE};

    const SPAN: u64 = SHAPE.span;

    fn open(dir: &std::path::Path) -> (sled::Db, Spans) {
        let db = sled::Config::new().path(dir).open().expect("open");
        let spans = Spans::open(&db, SHAPE).expect("spans");
        (db, spans)
    }

    fn scan(spans: &Spans, from: u64, end: u64) -> Vec<u64> {
        let mut seen = Vec::new();
        spans
            .scan(from, end, |seq, v| {
                assert!(!v.is_empty());
                seen.push(seq);
                true
            })
            .expect("scan");
        seen
    }

    #[test]
    fn names_round_trip_and_sort_like_spans() {
        assert_eq!(span_of_name(tree_name(0).as_bytes()), Some(0));
        assert_eq!(span_of_name(tree_name(u64::MAX).as_bytes()), Some(u64::MAX));
        assert_eq!(span_of_name(b"records"), None);
        assert_eq!(span_of_name(b"cursors"), None);
        assert!(tree_name(9) < tree_name(10));
    }

    #[test]
    fn records_cross_spans_and_placeholders_stay_invisible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, spans) = open(dir.path());
        let n = 3 * SPAN + 1;
        for seq in 0..n {
            spans.insert(seq, &seq.to_le_bytes()).expect("insert");
        }
        // The span being appended to and `ahead` more are prepared.
        assert_eq!(spans.tree_count() as u64, (n - 1) / SPAN + 1 + SHAPE.ahead);
        assert_eq!(scan(&spans, 0, n), (0..n).collect::<Vec<_>>());
        // Past the newest record there are only placeholders.
        assert_eq!(scan(&spans, 0, n + 2 * SPAN), (0..n).collect::<Vec<_>>());
        assert_eq!(scan(&spans, SPAN + 1, SPAN + 3), vec![SPAN + 1, SPAN + 2]);
        assert!(scan(&spans, 5, 5).is_empty());
        // Stopping early.
        let mut first = Vec::new();
        spans
            .scan(0, n, |seq, _| {
                first.push(seq);
                first.len() < 3
            })
            .expect("scan");
        assert_eq!(first, vec![0, 1, 2]);
    }

    #[test]
    fn only_spans_wholly_below_the_floor_are_dropped_and_it_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 3 * SPAN;
        {
            let (db, spans) = open(dir.path());
            for seq in 0..n {
                spans.insert(seq, b"record").expect("insert");
            }
            // SPAN + 1 is inside the second span: only the first goes.
            spans.drop_below(SPAN + 1).expect("drop");
            assert_eq!(scan(&spans, 0, n), (SPAN..n).collect::<Vec<_>>());
            spans.drop_below(2 * SPAN).expect("drop");
            assert_eq!(scan(&spans, 0, n), (2 * SPAN..n).collect::<Vec<_>>());
            db.flush().expect("flush");
        }
        let (_db, spans) = open(dir.path());
        assert_eq!(scan(&spans, 0, n), (2 * SPAN..n).collect::<Vec<_>>());
        // Appending goes on where it stopped.
        spans.insert(n, b"next").expect("insert");
        assert_eq!(scan(&spans, 0, n + 1), (2 * SPAN..=n).collect::<Vec<_>>());
    }

    /// Bytes of sled's log file after appending `records` records of `size` bytes with
    /// `shape`, flushing after each (as a lone writer's group commit does).
    fn log_bytes(shape: Shape, records: u64, size: usize) -> u64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new()
            .path(dir.path())
            .segment_size(super::super::log::SEGMENT_SIZE)
            .open()
            .expect("open");
        let spans = Spans::open(&db, shape).expect("spans");
        let value = vec![0xa5u8; size];
        for seq in 0..records {
            spans.insert(seq, &value).expect("insert");
            db.flush().expect("flush");
        }
        drop(spans);
        drop(db);
        std::fs::metadata(dir.path().join("db"))
            .expect("log file")
            .len()
    }

    /// The production shape is what keeps sled from writing a record more than once
    /// (see [`SHAPE`]); this fails if a sled upgrade changes the leaf rules it relies on.
    /// Measured on disk, not timed: 420 records of 20 KB, the log file's size against the
    /// payload.
    #[test]
    fn the_production_shape_writes_each_record_once() {
        let production = PRODUCTION;
        let (records, size) = (420u64, 20_000usize);
        let payload = records * size as u64;
        let once = log_bytes(production, records, size);
        let rewritten = log_bytes(
            Shape {
                span: 32,
                ..production
            },
            records,
            size,
        );
        eprintln!("payload {payload}, log with spans of 35: {once}, of 32: {rewritten}");
        assert!(
            once < payload + payload / 10,
            "spans of 35: {once} bytes of log for {payload} of records"
        );
        assert!(
            rewritten > once + payload / 5,
            "spans of 32 rewrite their last leaf: {rewritten} against {once} bytes"
        );
    }
}

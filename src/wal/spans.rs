//! Where records live in sled: one tree per span of [`SPAN`] consecutive sequence numbers.
//! A span's tree gets an empty placeholder under each of its keys before any record goes
//! in, and it is dropped whole once every sequence in it is below the buffer's floor.
//!
//! Why not one tree with one key per record: sled 0.34 keeps values inside its B-tree
//! leaves. Keys appended in order grow the rightmost leaf until it splits (at 17 keys), and
//! a split writes both halves whole; deleting records key by key rewrote the leaves that
//! still held the others. Each ~50 KB record went to sled's log 3-5 times (the relay wrote
//! 5.3 bytes for every payload byte at full load). Here:
//! - Placeholder leaves split while they are tiny. A record then replaces a placeholder in
//!   a leaf that will not split again: sled appends the record to that leaf as one delta
//!   and rewrites the leaf only after ten of them, which a leaf of at most 16 keys mostly
//!   never reaches.
//! - A span's placeholders are written [`AHEAD`] spans before its records arrive. sled's
//!   segment cleaner moves the live pages out of half-empty log segments, rewriting each
//!   page whole; a placeholder leaf written just before its records would share a segment
//!   with records about to be dropped, and be moved along with every record it had gained
//!   by then. Written early, it is moved (if at all) while still tiny.
//! - Dropping a tree frees its pages without writing them again.
//!
//! Measured with 50 KB values, sled alone: 3.4x the payload written (key-order inserts,
//! deletes trailing by 16 keys) against 1.1x with spans.
//!
//! # Invariants
//! - A placeholder is an empty value; an encoded record never is (its header alone is 37
//!   bytes). Readers skip placeholders.
//! - The tree of a span is in `trees` before any record is inserted into it, so a reader
//!   that sees record `n` also finds the tree of every record below `n`.
//! - A tree is dropped only when all its sequences are below the floor the caller gives
//!   (records every endpoint took, or that the limits dropped). Readers hold `dropping`
//!   (shared) while they iterate; a drop holds it exclusively.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, RwLock};

use sled::IVec;

use super::log::{be, seq_of};

/// Sequence numbers per tree. Records a storage took stay in sled's cache until their span
/// is dropped: at half benchmark load 128 cost ~8 MiB more peak RSS than 32, for the same
/// CPU (sled wrote 1.2x the payload against 1.4x).
#[cfg(not(test))]
pub(super) const SPAN: u64 = 32;
/// Small in unit tests, so that they cross spans.
#[cfg(test)]
pub(super) const SPAN: u64 = 4;

/// Spans prepared (placeholders written) beyond the one being appended to: 1024 writes
/// (~50 MB at 2000 samples per write), more than the shipping lag of a storage that keeps
/// up, so placeholder leaves are tiny when the segment cleaner moves them.
#[cfg(not(test))]
const AHEAD: u64 = 32;
#[cfg(test)]
const AHEAD: u64 = 2;

const PREFIX: &str = "records-";

/// The single tree of earlier versions, migrated at start-up.
const LEGACY: &[u8] = b"records";

/// The record trees of one WAL database.
pub(super) struct Spans {
    db: sled::Db,
    trees: Mutex<BTreeMap<u64, sled::Tree>>,
    /// Shared while a reader iterates trees; exclusive while trees are dropped.
    dropping: RwLock<()>,
}

fn span_of(seq: u64) -> u64 {
    seq / SPAN
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
    pub(super) fn open(db: &sled::Db) -> sled::Result<Spans> {
        let mut trees = BTreeMap::new();
        for name in db.tree_names() {
            if let Some(span) = span_of_name(&name) {
                trees.insert(span, db.open_tree(&name)?);
            }
        }
        Ok(Spans {
            db: db.clone(),
            trees: Mutex::new(trees),
            dropping: RwLock::new(()),
        })
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

    /// Makes sure the spans from `seq`'s on (and [`AHEAD`] more) are prepared.
    pub(super) fn prepare(&self, seq: u64) -> sled::Result<()> {
        self.tree_for_insert(seq).map(drop)
    }

    fn tree_for_insert(&self, seq: u64) -> sled::Result<sled::Tree> {
        let span = span_of(seq);
        let mut trees = self.trees();
        if !trees.contains_key(&span.saturating_add(AHEAD)) {
            for s in span..=span.saturating_add(AHEAD) {
                if trees.contains_key(&s) {
                    continue;
                }
                let tree = self.db.open_tree(tree_name(s))?;
                if tree.is_empty() {
                    let first = s * SPAN;
                    for key in first..first.saturating_add(SPAN) {
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
            .range(span_of(from)..=span_of(end - 1))
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
            .range(..span_of(floor))
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
        self.trees().get(&span_of(seq)).cloned()
    }

    /// How many span trees exist (for tests).
    #[cfg(test)]
    pub(super) fn tree_count(&self) -> usize {
        self.trees().len()
    }
}

#[cfg(test)]
mod tests {
    use super::{span_of_name, tree_name, Spans, AHEAD, SPAN};

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("open");
        (dir, db)
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
        let (_dir, db) = db();
        let spans = Spans::open(&db).expect("spans");
        let n = 3 * SPAN + 1;
        for seq in 0..n {
            spans.insert(seq, &seq.to_le_bytes()).expect("insert");
        }
        // The span being appended to and AHEAD more are prepared.
        assert_eq!(spans.tree_count() as u64, span_of(n - 1) + 1 + AHEAD);
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

    fn span_of(seq: u64) -> u64 {
        seq / SPAN
    }

    #[test]
    fn only_spans_wholly_below_the_floor_are_dropped_and_it_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 3 * SPAN;
        {
            let db = sled::Config::new().path(dir.path()).open().expect("open");
            let spans = Spans::open(&db).expect("spans");
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
        let db = sled::Config::new().path(dir.path()).open().expect("reopen");
        let spans = Spans::open(&db).expect("spans");
        assert_eq!(scan(&spans, 0, n), (2 * SPAN..n).collect::<Vec<_>>());
        // Appending goes on where it stopped.
        spans.insert(n, b"next").expect("insert");
        assert_eq!(scan(&spans, 0, n + 1), (2 * SPAN..=n).collect::<Vec<_>>());
    }
}

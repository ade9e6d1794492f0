//! Moves into segments the records that earlier versions kept in the WAL's sled database.
//! This runs once, at start-up. It moves two kinds of trees:
//! - the single `records` tree of the first versions;
//! - the `records-<span>` trees (16 hex digits) of the versions before segments.
//!
//! # Invariant
//! A crash at any point loses no record. The records are appended to segments and synced
//! before any tree is dropped. After a crash in between, the next start moves only the
//! records above what the segments already hold. This works because the trees are read in
//! sequence order.

use super::index::seq_of;
use super::segments::Segments;
use super::WalError;
use crate::disk_sync::DiskSync;

/// The single tree of the first versions.
const LEGACY: &[u8] = b"records";
/// The per-span trees of the versions before segments.
const SPAN_PREFIX: &str = "records-";

/// The record trees of `db`, in sequence order. The single tree comes first, because the
/// span trees were filled from it.
fn record_trees(db: &sled::Db) -> Vec<sled::IVec> {
    // The single tree sorts first, because no span has a number below it.
    let mut trees: Vec<(Option<u64>, sled::IVec)> = db
        .tree_names()
        .into_iter()
        .filter_map(|name| {
            if name == LEGACY {
                return Some((None, name));
            }
            let hex = std::str::from_utf8(&name).ok()?.strip_prefix(SPAN_PREFIX)?;
            let span = u64::from_str_radix(hex, 16).ok()?;
            Some((Some(span), name))
        })
        .collect();
    trees.sort_unstable_by_key(|(span, _)| *span);
    trees.into_iter().map(|(_, name)| name).collect()
}

/// Moves every record from `floor` on out of the sled trees into `segments`. Then it makes
/// them durable and drops the trees. Returns how many records moved.
pub(super) fn from_sled(
    db: &sled::Db,
    sync: &DiskSync,
    segments: &Segments,
    floor: u64,
) -> Result<u64, WalError> {
    let trees = record_trees(db);
    if trees.is_empty() {
        return Ok(0);
    }
    let mut last = segments.last_seq();
    let mut moved = 0u64;
    for name in &trees {
        let tree = db.open_tree(name)?;
        for item in tree.range(floor.to_be_bytes()..) {
            let (key, value) = item?;
            let Some(seq) = seq_of(&key) else {
                tracing::error!(tree = %String::from_utf8_lossy(name), key = ?key, "wal: dropping a malformed key of an old records tree");
                continue;
            };
            // Empty values were placeholders. Lower sequences were moved before.
            if value.is_empty() || last.is_some_and(|l| seq <= l) {
                continue;
            }
            segments.append(seq, &value)?;
            last = Some(seq);
            moved += 1;
        }
    }
    segments.sync()?;
    for name in &trees {
        db.drop_tree(name)?;
    }
    sync.flush(db)?;
    tracing::info!(
        records = moved,
        trees = trees.len(),
        "wal: records moved from sled trees into segment files"
    );
    Ok(moved)
}

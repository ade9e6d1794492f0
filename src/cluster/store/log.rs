//! The raft log and vote, in sled. Two trees hold them:
//! - `raft_log`: key = big-endian `u64` index, value = the JSON of the [`Entry`];
//! - `raft_meta`: the vote, the committed log id, the last purged log id.

// openraft's storage traits return its `StorageError`, which is over 200 bytes. The
// helpers here return the same type, so `?` works without boxing and unboxing on every
// call.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cluster::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::disk_sync::DiskSync;

/// Keys deleted per sled batch when purging. One huge batch costs GiBs of RAM.
pub const PURGE_CHUNK: usize = 1_000;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The raft log store. A cheap clone, because sled handles are shared. openraft
/// serializes the writes through `&mut self`. Clones only read (replication tasks).
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    sync: Arc<DiskSync>,
    logs: sled::Tree,
    meta: sled::Tree,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

impl LogStore {
    /// Opens the log trees of the raft database.
    pub(crate) fn open(db: &sled::Db, sync: Arc<DiskSync>) -> Result<Self, sled::Error> {
        Ok(LogStore {
            sync,
            logs: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
            db: db.clone(),
        })
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        err: fn(AnyError) -> StorageIOError<u64>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.meta.get(key).map_err(|e| err(AnyError::new(&e)))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| err(AnyError::new(&e)).into())
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        err: fn(AnyError) -> StorageIOError<u64>,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| err(AnyError::new(&e)))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| err(AnyError::new(&e)))?;
        Ok(())
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        self.get_meta(LAST_PURGED, StorageIOError::read_logs)
    }

    fn decode(bytes: &[u8]) -> Result<Entry, StorageError> {
        serde_json::from_slice(bytes).map_err(|e| read_err(&e))
    }

    /// Syncs the whole raft database to disk, so it survives a power loss too (see
    /// [`crate::disk_sync`]).
    async fn flush(&self) -> Result<(), sled::Error> {
        self.sync.flush_async(&self.db).await.map(|_| ())
    }
}

/// `range` as an inclusive index interval. `None` when it is empty.
fn inclusive<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, u64)> {
    let lo = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (lo <= hi).then_some((lo, hi))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((lo, hi)) = inclusive(&range) else {
            return Ok(Vec::new());
        };
        self.logs
            .range(index_key(lo)..=index_key(hi))
            .map(|item| {
                let (_, value) = item.map_err(|e| read_err(&e))?;
                Self::decode(&value)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        let last_present = match self.logs.last().map_err(|e| read_err(&e))? {
            Some((_, value)) => Some(*Self::decode(&value)?.get_log_id()),
            None => None,
        };
        // Everything may have been purged. Then the last log id is the last purged one.
        let last_log_id = last_present.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote, StorageIOError::write_vote)?;
        // Raft safety: a vote must survive a crash before anyone learns about it.
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(VOTE, StorageIOError::read_vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // No flush. If a crash loses the committed id, the node learns it again from the
        // leader.
        self.put_meta(COMMITTED, &committed, StorageIOError::write)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<Option<LogId>>(COMMITTED, StorageIOError::read)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_log_entry(*entry.get_log_id(), &e))?;
            batch.insert(&index_key(entry.get_log_id().index), bytes);
        }
        self.logs.apply_batch(batch).map_err(|e| write_err(&e))?;
        // Durable before it is reported, because only then does openraft count this node
        // in the quorum.
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = write_err(&e);
                callback.log_io_completed(Err(std::io::Error::other(e)));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(since = %log_id, "raft log: truncating");
        let keys: Vec<_> = self
            .logs
            .range(index_key(log_id.index)..)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| write_err(&e))?;
        for chunk in keys.chunks(PURGE_CHUNK) {
            let mut batch = sled::Batch::default();
            for key in chunk {
                batch.remove(key.clone());
            }
            self.logs.apply_batch(batch).map_err(|e| write_err(&e))?;
        }
        // Conflicting entries must not come back after a crash and be appended to.
        self.flush().await.map_err(|e| write_err(&e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(upto = %log_id, "raft log: purging");
        // Record the purged point first. If a crash interrupts the deletion, the leftovers
        // are below the recorded point, and the next purge removes them.
        self.put_meta(LAST_PURGED, &log_id, StorageIOError::write_logs)?;
        let logs = self.logs.clone();
        let upto = index_key(log_id.index);
        tokio::task::spawn_blocking(move || -> Result<(), sled::Error> {
            loop {
                let keys: Vec<_> = logs
                    .range(..=upto)
                    .keys()
                    .take(PURGE_CHUNK)
                    .collect::<Result<_, _>>()?;
                if keys.is_empty() {
                    return Ok(());
                }
                let mut batch = sled::Batch::default();
                for key in keys {
                    batch.remove(key);
                }
                logs.apply_batch(batch)?;
            }
        })
        .await
        .map_err(|e| write_err(&e))?
        .map_err(|e| write_err(&e))?;
        self.flush().await.map_err(|e| write_err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_inclusive_intervals() {
        assert_eq!(inclusive(&(0..10)), Some((0, 9)));
        assert_eq!(inclusive(&(3..=3)), Some((3, 3)));
        assert_eq!(inclusive(&(5..5)), None);
        assert_eq!(inclusive(&(0..0)), None);
        assert_eq!(inclusive(&(7..)), Some((7, u64::MAX)));
        assert_eq!(inclusive(&(..)), Some((0, u64::MAX)));
        assert_eq!(
            inclusive(&(Bound::Excluded(u64::MAX), Bound::Unbounded)),
            None
        );
        assert_eq!(
            inclusive(&(Bound::Excluded(2), Bound::Included(3))),
            Some((3, 3))
        );
    }

    #[test]
    fn index_keys_sort_numerically() {
        assert!(index_key(255) < index_key(256));
        assert!(index_key(1) < index_key(u64::MAX));
    }
}

//! The write-ahead buffer: every write of a promoted source is stored here, durably, before
//! it is acknowledged, and stays until every storage endpoint has taken it.
//!
//! # Layout on disk
//! In `<data-dir>/wal`, never shared with other state:
//! - `segments/`: the records, appended to segment files of about 32 MiB, each named after
//!   its first sequence number (`segments/`); a record is a frame header (length,
//!   sequence, checksum) and a [`record::Record`] with a CRC-32 over all its bytes. A
//!   segment is deleted whole once every sequence in it has left the buffer, or kept as
//!   `spare` to take the next segment (overwriting is cheaper to sync than appending).
//! - a sled database with the trees `cursors` (key = endpoint name, value = big-endian
//!   `u64`, the next sequence that endpoint has not yet taken), `meta` (`next_seq`, the
//!   high-water mark of assigned sequence numbers, and `first_seq`, the floor: every
//!   sequence below it has left the buffer) and `quarantine` (batches an endpoint rejected
//!   permanently, with its answer). Records an earlier version kept in sled trees are moved
//!   into segments at the first start (`migrate.rs`).
//!
//! A record's payload is stored as the sender's snappy block, or — while a storage is down
//! (`compact.rs`) — as that block compressed again by zstd, 1.8 times smaller, expanded to
//! the same bytes when it is read; readers never see the difference.
//!
//! # Invariants
//! - Sequence numbers are assigned and inserted under one lock, so whoever sees record `n`
//!   sees every record below `n` that has not been removed: readers never skip a record.
//! - The next sequence is never derived from "last key + 1" alone (it would restart behind
//!   the cursors after a full drain): `next_seq` is persisted before any record is deleted,
//!   and recovery takes the larger of it and the last key + 1.
//! - A write is acknowledged only after the flush that covers it ([`Durability::Sync`]). A
//!   flush is `fdatasync` of the segments written since the last one (and of their
//!   directory when it has a new segment), so it holds across a power loss, not only a
//!   crash of the process. Concurrent appends share flushes (group commit): one flusher
//!   thread flushes whenever appends are waiting, and every append inserted before a flush
//!   started is covered by it.
//! - Cursor moves and the floor reach disk with sled's background flush (every 100 ms),
//!   at a clean shutdown, and before any segment is deleted (`gc.rs`); after a crash an
//!   endpoint may be sent again what it took in the last moments (at least once).
//! - A cursor only moves forward over records the endpoint took (or that were quarantined,
//!   dropped by the size/age limits, or skipped by an operator); records below the slowest
//!   cursor leave the buffer within milliseconds of the cursor move (the collector, `gc.rs`):
//!   the index, the byte count and the persisted floor under the lock, the storage after
//!   it (a segment is deleted whole, or kept as the spare, once the floor has passed it),
//!   so appends never wait for a deletion.
//! - Full buffer: `drop-oldest` removes the oldest records (counted, logged at ERROR, the
//!   cursors behind them moved up); `block` refuses the append, the ingest answers 503 and
//!   Prometheus keeps the data in its own WAL and retries.
//! - Recovery (after kill -9 or power loss) keeps every flushed record. A record whose
//!   checksum fails is logged at ERROR and removed on its own; the rest of the buffer
//!   stays. A write that a crash cut short was never acknowledged: recovery cuts it off.
//!
//! # Tasks
//! [`Wal::start`] starts the WAL's own background work, both stopped by one shutdown
//! token: the flusher of the group commit (`commit.rs`), which flushes one last time at
//! shutdown, and the collector (`gc.rs`). [`WalTasks::stopped`] waits for both.
//!
//! # Files
//! `log.rs` holds the [`Wal`] handle (open, insert, read, cursors); `index.rs` what the
//! handle keeps of each record in memory; `segments/` the record files; `commit.rs` the
//! group commit; `gc.rs` removal; `recover.rs` and `migrate.rs` the start-up;
//! `compact.rs`, `quarantine.rs`, `stats.rs` and `inspect.rs` one concern each.
//!
//! # Durability modes
//! - `sync` (default): 2xx only after the record is on disk;
//! - `batch`: 2xx at once, flush every `flush_interval`; a crash loses at most that window;
//! - `none`: 2xx at once, flush in the background (about every 500 ms) and at a clean
//!   shutdown. A crash of the process loses nothing written (the page cache keeps it); a
//!   power cut loses what was not flushed.

mod commit;
mod compact;
mod gc;
mod index;
mod inspect;
mod log;
mod migrate;
mod quarantine;
pub mod record;
mod recover;
mod segments;
mod stats;
mod tasks;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use commit::Writing;
pub use inspect::RecordSummary;
pub use log::{CursorMove, ReadItem, Wal};
pub use quarantine::Quarantined;
pub use record::{Record, RecordMeta};
pub use stats::{CursorStats, QueueStats};
pub use tasks::WalTasks;

/// The free space of a directory's file system, and what the buffer keeps free on it.
pub(crate) use segments::space::{disk_space, reserve};

/// What to do when an append would exceed the byte cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FullPolicy {
    /// Remove the oldest records to make room (counted and logged as data loss).
    DropOldest,
    /// Refuse the append: the sender gets 503 and retries.
    Block,
}

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Acknowledge after the flush that covers the record (group commit).
    Sync,
    /// Acknowledge at once; flush every `flush_interval`.
    Batch,
    /// Acknowledge at once; flush in the background (every 500 ms) and at shutdown.
    None,
}

/// Whether records are stored zstd-compressed ([`record::Record::encode_compact`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// While any storage is down (retrying or paused): then new records will wait in the
    /// buffer, so they are stored compact.
    Auto,
    /// Every record (less disk, more CPU on every write).
    Always,
    /// No record: the sender's snappy block as it is.
    Never,
}

/// Where a cursor starts for an endpoint the WAL has not seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartAt {
    /// Only records appended from now on.
    Newest,
    /// Everything still buffered.
    Oldest,
}

/// WAL settings.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory of the WAL's segments and its own sled database.
    pub dir: PathBuf,
    /// Cap on the bytes of buffered records.
    pub max_bytes: u64,
    /// Records received longer ago than this are removed.
    pub max_age: Duration,
    /// What a full buffer does.
    pub full_policy: FullPolicy,
    /// When an append is acknowledged.
    pub durability: Durability,
    /// Flush period in `batch` mode.
    pub flush_interval: Duration,
    /// When records are stored compressed.
    pub compression: Compression,
}

#[cfg(test)]
impl WalConfig {
    /// Settings for unit tests: a roomy cap, `block` when full, `sync`, `auto` compression.
    pub(crate) fn for_tests(dir: &std::path::Path) -> WalConfig {
        WalConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(3600),
            full_policy: FullPolicy::Block,
            durability: Durability::Sync,
            flush_interval: Duration::from_millis(100),
            compression: Compression::Auto,
        }
    }
}

/// WAL failures.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The byte cap is reached and the policy is `block`.
    #[error("buffer full ({bytes} of {limit} bytes)")]
    Full {
        /// Bytes buffered.
        bytes: u64,
        /// The cap.
        limit: u64,
    },
    /// sled failed.
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    /// The buffer's disk is (nearly) full: appends are refused until space is freed.
    #[error("disk nearly full ({0}), retry later")]
    DiskFull(String),
    /// A segment file could not be written, read or synced.
    #[error("disk error: {0}")]
    Disk(std::io::Error),
    /// The WAL is shutting down.
    #[error("buffer is closed")]
    Closed,
    /// An endpoint the WAL does not know.
    #[error("unknown endpoint {0:?}")]
    UnknownEndpoint(String),
    /// A replay asked for records that are no longer buffered.
    #[error("sequence {requested} is no longer buffered (oldest is {first})")]
    NotBuffered {
        /// The sequence asked for.
        requested: u64,
        /// The oldest buffered sequence.
        first: u64,
    },
}

impl WalError {
    /// Whether the sender should retry later (503) rather than see a server fault (500).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WalError::Full { .. } | WalError::DiskFull(_) | WalError::Closed
        )
    }
}

impl From<std::io::Error> for WalError {
    fn from(e: std::io::Error) -> WalError {
        if e.kind() == std::io::ErrorKind::StorageFull {
            // Our reserve check, or the disk itself (ENOSPC).
            WalError::DiskFull(e.to_string())
        } else {
            WalError::Disk(e)
        }
    }
}

#[cfg(test)]
mod model_tests;

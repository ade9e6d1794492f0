//! The write-ahead buffer. Every write of a promoted source is stored here durably before
//! the relay acknowledges it. The write stays until every storage endpoint has taken it.
//!
//! # Layout on disk
//! The WAL owns `<data-dir>/wal` and shares it with no other state. The directory holds:
//! - `segments/`: the records. They are appended to segment files of about 32 MiB. Each
//!   file is named after its first sequence number. A record is a frame header (length,
//!   sequence, checksum) followed by a [`record::Record`] with a CRC-32 over all its bytes.
//!   When every sequence in a segment has left the buffer, the segment is deleted whole, or
//!   kept as the `spare` for the next segment. Overwriting a file is cheaper to sync than
//!   appending to one.
//! - a sled database with three trees:
//!   - `cursors`: key = endpoint name, value = big-endian `u64`, the next sequence that
//!     endpoint has not taken yet;
//!   - `meta`: `next_seq`, the high-water mark of assigned sequence numbers, and
//!     `first_seq`, the floor (every sequence below it has left the buffer);
//!   - `quarantine`: batches that an endpoint rejected permanently, with its answer.
//!
//! An earlier version kept records in sled trees. The first start moves them into
//! segments (`migrate.rs`).
//!
//! A record's payload is normally the sender's snappy block. While a storage is down, the
//! payload is that block compressed again by zstd (`compact.rs`), which is smaller (numbers
//! in `bench/HISTORY.md`). A read expands it to the same bytes, so readers never see the
//! difference.
//!
//! # Invariants
//! - One lock covers both the assignment of a sequence number and the insert. So whoever
//!   sees record `n` also sees every record below `n` that has not been removed. Readers
//!   never skip a record.
//! - The next sequence never comes from "last key + 1" alone: after a full drain, that
//!   would restart behind the cursors. `next_seq` is persisted before any record is
//!   deleted. Recovery takes the larger of `next_seq` and the last key + 1.
//! - A write is acknowledged only after the flush that covers it ([`Durability::Sync`]).
//!   A flush is an `fdatasync` of the segments written since the last flush. When there is
//!   a new segment, the flush also syncs their directory. So a flushed write survives a
//!   power loss, not only a crash of the process.
//! - Concurrent appends share flushes (group commit). One flusher thread flushes whenever
//!   appends are waiting. A flush covers every append inserted before the flush started.
//! - Cursor moves and the floor reach disk in three ways: sled's background flush (every
//!   100 ms), a clean shutdown, and the flush before any segment is deleted (`gc.rs`).
//!   After a crash, an endpoint may receive again what it took in the last moments (at
//!   least once delivery).
//! - A cursor only moves forward. It passes records that the endpoint took, that were
//!   quarantined, that the size or age limits dropped, or that an operator skipped.
//! - Records below the slowest cursor leave the buffer within milliseconds of the cursor
//!   move. The collector (`gc.rs`) does this in two steps. Under the lock, it updates the
//!   index, the byte count and the persisted floor. After the lock, it frees the storage:
//!   once the floor has passed a segment, the segment is deleted whole or kept as the
//!   spare. So appends never wait for a deletion.
//! - Full buffer: `drop-oldest` removes the oldest records. It counts them, logs them at
//!   ERROR and moves the cursors behind them up. `block` refuses the append: the ingest
//!   answers 503, and Prometheus keeps the data in its own WAL and retries.
//! - Recovery after kill -9 or a power loss keeps every flushed record. If a record's
//!   checksum fails, recovery logs it at ERROR and removes only that record. The rest of
//!   the buffer stays. A crash may cut a write short. That write was never acknowledged,
//!   and recovery cuts it off.
//!
//! # Tasks
//! [`Wal::start`] starts the WAL's own background work. One shutdown token stops both
//! tasks:
//! - the flusher of the group commit (`commit.rs`), which flushes one last time at
//!   shutdown;
//! - the collector (`gc.rs`).
//!
//! [`WalTasks::stopped`] waits for both.
//!
//! # Files
//! - `log.rs`: the [`Wal`] handle (open, insert, read, cursors);
//! - `index.rs`: what the handle keeps in memory for each record;
//! - `segments/`: the record files;
//! - `commit.rs`: the group commit;
//! - `gc.rs`: removal;
//! - `recover.rs` and `migrate.rs`: the start-up;
//! - `compact.rs`, `quarantine.rs`, `stats.rs`, `inspect.rs`: one concern each.
//!
//! # Durability modes
//! - `sync` (default): 2xx only after the record is on disk.
//! - `batch`: 2xx at once; a flush every `flush_interval`. A crash loses at most that
//!   window.
//! - `none`: 2xx at once; a flush in the background (about every 500 ms) and at a clean
//!   shutdown. A crash of the process loses no written data, because the page cache keeps
//!   it. A power cut loses what was not flushed.

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
    /// While any storage is down (retrying or paused). New records will then wait in the
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
    /// A segment file is closed for appends once it holds this many bytes.
    pub segment_bytes: u64,
    /// When records are stored compressed.
    pub compression: Compression,
    /// Cap on the quarantine's bytes; they count against `max_bytes`.
    pub quarantine_max_bytes: u64,
    /// Batches quarantined longer ago than this are dropped.
    pub quarantine_max_age: Duration,
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
            segment_bytes: segments::SEGMENT_BYTES,
            compression: Compression::Auto,
            quarantine_max_bytes: 1 << 28,
            quarantine_max_age: Duration::from_secs(7 * 86_400),
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
    /// sled could not open the buffer's state database (cursors, floor, quarantine): its
    /// files are damaged. The records are in the segments and are kept; the operator moves
    /// the database aside and the next start sends every buffered record again.
    #[error("its state database in {dir} is damaged ({source}); the buffered records in {dir}/segments are kept: move {dir}/db and {dir}/conf aside and start again, and every storage receives the buffered records again")]
    StateDamaged {
        /// The WAL's directory.
        dir: String,
        /// What sled said.
        source: sled::Error,
    },
    /// The buffer's disk is full or nearly full. Appends are refused until space is freed.
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
#[cfg(test)]
mod power_cut_tests;

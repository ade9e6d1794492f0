//! Raft storage on sled. The log store ([`LogStore`]) and the state machine
//! ([`StateMachineStore`]) share one sled database in their own directory
//! (`<data-dir>/raft`), apart from the WAL and the election store.
//!
//! Trees:
//! - `raft_log`: entries by big-endian index;
//! - `raft_meta`: the vote, the committed log id, the last purged log id;
//! - `raft_sm`: the state machine as one JSON value, the current snapshot and the snapshot
//!   sequence.
//!
//! The invariants of this store are listed in the cluster's module doc ([`super`]).

mod log;
mod state_machine;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use crate::disk_sync::DiskSync;

pub use log::{LogStore, PURGE_CHUNK};
pub use state_machine::{AppliedControl, ControlReader, SnapshotBuilder, StateMachineStore};

/// Why the raft stores could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory or the sled database could not be opened. This also happens when
    /// another process, or a not yet released handle of this process, holds its lock.
    #[error("cannot open the raft database in {dir}: {source}")]
    Sled {
        /// The database directory.
        dir: String,
        /// What sled said.
        source: sled::Error,
    },
    /// sled found the raft database damaged. Its vote and log cannot be trusted, so the
    /// node must leave the cluster and join again with an empty one.
    #[error("the raft database in {dir} is damaged ({source}); this node must not rejoin with it: run `highlander cluster remove <this node's id>` on a member, delete {dir} and the raft-member file beside it, start this node with --join and add it again with `highlander cluster add`")]
    Damaged {
        /// The database directory.
        dir: String,
        /// What sled said.
        source: sled::Error,
    },
    /// The stored state machine or snapshot cannot be read.
    #[error("cannot load the raft state machine: {0}")]
    State(#[source] Box<crate::cluster::types::StorageError>),
}

impl From<crate::cluster::types::StorageError> for OpenError {
    fn from(e: crate::cluster::types::StorageError) -> Self {
        OpenError::State(Box::new(e))
    }
}

/// Opens or creates the raft database in `dir`. Returns its log store and state machine,
/// ready for `Raft::new`. Blocking: call it off the reactor.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    let sled_err = |source| OpenError::Sled {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| sled_err(e.into()))?;
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(8 << 20)
        .open()
        .map_err(|source| match source {
            sled::Error::Corruption { .. } => OpenError::Damaged {
                dir: dir.display().to_string(),
                source,
            },
            other => sled_err(other),
        })?;
    let sync = Arc::new(DiskSync::open(dir).map_err(|e| sled_err(e.into()))?);
    let log = LogStore::open(&db, sync.clone()).map_err(sled_err)?;
    let sm = StateMachineStore::open(&db, sync)?;
    Ok((log, sm))
}

//! The raft state machine: the [`ControlState`], the last applied log id and the last
//! membership. After every apply batch, they are persisted whole as one JSON value in tree
//! `raft_sm` (key `state`). The same tree holds the current snapshot (key `snapshot`).

// openraft's storage traits return its `StorageError`, which is over 200 bytes. The
// helpers here return the same type, so `?` works without boxing and unboxing on every
// call.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, SnapshotSignature};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::disk_sync::DiskSync;

use crate::cluster::types::{
    ControlState, Entry, LogId, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

const STATE: &[u8] = b"state";
const SNAPSHOT: &[u8] = b"snapshot";
const SNAPSHOT_SEQ: &[u8] = b"snapshot_seq";

/// The whole persisted state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StoredState {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    control: ControlState,
}

/// A snapshot as kept on disk: its meta and its data (the JSON of a [`ControlState`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.clone())),
        }
    }
}

/// The control state as of one applied log id. [`ControlReader`] hands it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedControl {
    /// The last log entry applied. `None`: nothing yet.
    pub last_applied: Option<LogId>,
    /// The control state after it.
    pub state: ControlState,
}

/// A cheap-clone read handle of the applied control state. It is updated after every apply
/// batch and snapshot install, once the new state is durable.
#[derive(Debug, Clone)]
pub struct ControlReader {
    rx: watch::Receiver<Arc<AppliedControl>>,
}

impl ControlReader {
    /// The applied control state now.
    pub fn current(&self) -> Arc<AppliedControl> {
        self.rx.borrow().clone()
    }

    /// A receiver that wakes on every change. Tasks that react to promotions use it.
    pub fn subscribe(&self) -> watch::Receiver<Arc<AppliedControl>> {
        self.rx.clone()
    }
}

/// State shared between the state machine and its snapshot builders.
struct Shared {
    db: sled::Db,
    sync: Arc<DiskSync>,
    tree: sled::Tree,
    /// The current snapshot. Only a newer snapshot replaces it, under this lock, together
    /// with its copy on disk. So a slow builder never overwrites a newer installed snapshot.
    current: Mutex<Option<StoredSnapshot>>,
}

impl Shared {
    fn lock_current(&self) -> MutexGuard<'_, Option<StoredSnapshot>> {
        // Holders only swap an Option, so the value stays valid even after a panic.
        self.current.lock()
    }

    /// Makes `snapshot` current, unless a newer snapshot already is. When `state` is given,
    /// it is persisted beside the snapshot. Returns whether the snapshot was stored. The
    /// caller flushes.
    fn store_snapshot(
        &self,
        snapshot: &StoredSnapshot,
        seq: Option<u64>,
        state: Option<&StoredState>,
        force: bool,
    ) -> Result<bool, StorageError> {
        let signature = Some(snapshot.meta.signature());
        let err = |e: AnyError| -> StorageError {
            StorageIOError::write_snapshot(signature.clone(), e).into()
        };
        let mut current = self.lock_current();
        let newer_exists = current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id > snapshot.meta.last_log_id);
        if newer_exists && !force {
            return Ok(false);
        }
        let mut batch = sled::Batch::default();
        batch.insert(
            SNAPSHOT,
            serde_json::to_vec(snapshot).map_err(|e| err(AnyError::new(&e)))?,
        );
        if let Some(seq) = seq {
            batch.insert(SNAPSHOT_SEQ, &seq.to_be_bytes());
        }
        if let Some(state) = state {
            batch.insert(
                STATE,
                serde_json::to_vec(state).map_err(|e| err(AnyError::new(&e)))?,
            );
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| err(AnyError::new(&e)))?;
        *current = Some(snapshot.clone());
        Ok(true)
    }
}

/// The raft state machine store. openraft owns it once the node runs. The app keeps a
/// [`ControlReader`] (from [`StateMachineStore::reader`]) to read the applied state.
pub struct StateMachineStore {
    shared: Arc<Shared>,
    state: StoredState,
    /// Snapshot ids are `<last applied>-<seq>`. The sequence survives restarts.
    snapshot_seq: u64,
    tx: watch::Sender<Arc<AppliedControl>>,
}

impl Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("last_applied", &self.state.last_applied)
            .finish_non_exhaustive()
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    bytes: Option<sled::IVec>,
) -> Result<Option<T>, StorageError> {
    bytes
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)).into())
}

impl StateMachineStore {
    /// Opens the state machine tree of the raft database and loads what it holds.
    pub(crate) fn open(db: &sled::Db, sync: Arc<DiskSync>) -> Result<Self, StorageError> {
        let read_err =
            |e: sled::Error| -> StorageError { StorageIOError::read_state_machine(&e).into() };
        let tree = db.open_tree("raft_sm").map_err(read_err)?;
        let mut state: StoredState =
            decode(tree.get(STATE).map_err(read_err)?)?.unwrap_or_default();
        let snapshot: Option<StoredSnapshot> = decode(tree.get(SNAPSHOT).map_err(read_err)?)?;
        let snapshot_seq = match tree.get(SNAPSHOT_SEQ).map_err(read_err)? {
            Some(b) => <[u8; 8]>::try_from(b.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or_default(),
            None => 0,
        };
        // The snapshot and the state are written together. But an install may have
        // reached the disk while a later apply did not. Never start behind the snapshot.
        if let Some(s) = snapshot
            .as_ref()
            .filter(|s| s.meta.last_log_id > state.last_applied)
        {
            state = state_from_snapshot(&s.meta, &s.data)?;
        }
        let (tx, _) = watch::channel(Arc::new(AppliedControl {
            last_applied: state.last_applied,
            state: state.control.clone(),
        }));
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                db: db.clone(),
                sync,
                tree,
                current: Mutex::new(snapshot),
            }),
            state,
            snapshot_seq,
            tx,
        })
    }

    /// A read handle of the applied control state.
    pub fn reader(&self) -> ControlReader {
        ControlReader {
            rx: self.tx.subscribe(),
        }
    }

    fn publish(&self) {
        self.tx.send_replace(Arc::new(AppliedControl {
            last_applied: self.state.last_applied,
            state: self.state.control.clone(),
        }));
    }

    async fn flush(&self, err: impl Fn(AnyError) -> StorageError) -> Result<(), StorageError> {
        self.shared
            .sync
            .flush_async(&self.shared.db)
            .await
            .map(|_| ())
            .map_err(|e| err(AnyError::new(&e)))
    }
}

fn state_from_snapshot(meta: &SnapshotMeta, data: &[u8]) -> Result<StoredState, StorageError> {
    let control: ControlState = serde_json::from_slice(data)
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
    Ok(StoredState {
        last_applied: meta.last_log_id,
        last_membership: meta.last_membership.clone(),
        control,
    })
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    state: StoredState,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let write_err = |e: AnyError| -> StorageError {
            StorageIOError::write_snapshot(None::<SnapshotSignature<u64>>, e).into()
        };
        let data =
            serde_json::to_vec(&self.state.control).map_err(|e| write_err(AnyError::new(&e)))?;
        let snapshot_id = match &self.state.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, self.seq),
            None => format!("--{}", self.seq),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: self.state.last_applied,
                last_membership: self.state.last_membership.clone(),
                snapshot_id,
            },
            data,
        };
        if self
            .shared
            .store_snapshot(&stored, Some(self.seq), None, false)?
        {
            self.shared
                .sync
                .flush_async(&self.shared.db)
                .await
                .map_err(|e| write_err(AnyError::new(&e)))?;
        }
        tracing::debug!(snapshot = %stored.meta, "raft: snapshot built");
        Ok(stored.to_snapshot())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.state.last_applied, self.state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut last = None;
        for entry in entries {
            last = Some(entry.log_id);
            self.state.last_applied = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => Response::Empty,
                EntryPayload::Normal(request) => self.state.control.apply(request),
                EntryPayload::Membership(m) => {
                    self.state.last_membership =
                        StoredMembership::new(Some(entry.log_id), m.clone());
                    Response::Empty
                }
            };
            responses.push(response);
        }
        let Some(last) = last else {
            return Ok(responses);
        };
        let err = |e: AnyError| -> StorageError { StorageIOError::apply(last, e).into() };
        let bytes = serde_json::to_vec(&self.state).map_err(|e| err(AnyError::new(&e)))?;
        self.shared
            .tree
            .insert(STATE, bytes)
            .map_err(|e| err(AnyError::new(&e)))?;
        // Small state, rare writes: make it durable, so a restart resumes exactly here.
        self.flush(err).await?;
        self.publish();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder {
            shared: self.shared.clone(),
            state: self.state.clone(),
            seq: self.snapshot_seq,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state = state_from_snapshot(meta, &data)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        // The leader's snapshot replaces whatever this node had: state and snapshot at
        // once.
        self.shared
            .store_snapshot(&stored, None, Some(&state), true)?;
        let signature = Some(meta.signature());
        self.flush(|e| StorageIOError::write_snapshot(signature.clone(), e).into())
            .await?;
        self.state = state;
        self.publish();
        tracing::info!(snapshot = %meta, "raft: snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self
            .shared
            .lock_current()
            .as_ref()
            .map(StoredSnapshot::to_snapshot))
    }
}

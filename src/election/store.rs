//! Durable election state of a standalone node: operator pins and the recent election
//! history of each group. They live in their own sled database (`<data-dir>/state`), apart
//! from the WAL. The store is written only on changes, which are rare.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::disk_sync::DiskSync;

use super::state::{Change, PinView};

/// Entries of history kept per group.
pub const HISTORY_PER_GROUP: usize = 100;

/// One election event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it happened (ms since the epoch).
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub change: Change,
}

/// The pins and histories on disk. A cheap clone.
#[derive(Clone)]
pub struct ElectionStore {
    db: sled::Db,
    sync: Arc<DiskSync>,
    pins: sled::Tree,
    history: sled::Tree,
}

fn history_prefix(group: &str) -> Vec<u8> {
    let mut k = group.as_bytes().to_vec();
    k.push(0);
    k
}

impl ElectionStore {
    /// Opens or creates the store.
    pub fn open(dir: &Path) -> Result<Self, sled::Error> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(8 << 20)
            .open()?;
        Ok(ElectionStore {
            sync: Arc::new(DiskSync::open(dir)?),
            pins: db.open_tree("pins")?,
            history: db.open_tree("history")?,
            db,
        })
    }

    /// Every pin, by group. Unreadable entries are logged and skipped.
    pub fn pins(&self) -> Vec<(String, PinView)> {
        self.pins
            .iter()
            .filter_map(|item| {
                let (k, v) = item.map_err(|e| tracing::error!(error = %e, "election: reading pins failed")).ok()?;
                let group = String::from_utf8_lossy(&k).into_owned();
                match serde_json::from_slice(&v) {
                    Ok(pin) => Some((group, pin)),
                    Err(e) => {
                        tracing::error!(group = %group, error = %e, "election: unreadable pin ignored");
                        None
                    }
                }
            })
            .collect()
    }

    /// Stores or removes a group's pin, durably.
    pub fn save_pin(&self, group: &str, pin: Option<&PinView>) -> Result<(), sled::Error> {
        match pin {
            Some(p) => {
                let v = serde_json::to_vec(p).expect("a pin always serializes");
                self.pins.insert(group.as_bytes(), v)?;
            }
            None => {
                self.pins.remove(group.as_bytes())?;
            }
        }
        self.sync.flush(&self.db)?;
        Ok(())
    }

    /// Appends an event to its group's history. The history keeps the last
    /// [`HISTORY_PER_GROUP`] events.
    pub fn record(&self, entry: &HistoryEntry) -> Result<(), sled::Error> {
        let prefix = history_prefix(entry.change.group());
        let mut key = prefix.clone();
        key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        let v = serde_json::to_vec(entry).expect("an entry always serializes");
        self.history.insert(key, v)?;
        let keys: Vec<sled::IVec> = self
            .history
            .scan_prefix(&prefix)
            .keys()
            .filter_map(Result::ok)
            .collect();
        for old in keys
            .iter()
            .take(keys.len().saturating_sub(HISTORY_PER_GROUP))
        {
            self.history.remove(old)?;
        }
        self.sync.flush(&self.db)?;
        Ok(())
    }

    /// A group's history, newest first.
    pub fn history(&self, group: &str) -> Vec<HistoryEntry> {
        let mut out: Vec<HistoryEntry> = self
            .history
            .scan_prefix(history_prefix(group))
            .values()
            .filter_map(Result::ok)
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .collect();
        out.reverse();
        out
    }
}

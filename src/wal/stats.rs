//! Buffer totals and per-endpoint lag, for the admin API and the CLI. They come from the
//! in-memory index only, with no disk reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Wal;

/// Buffer totals and per-endpoint positions, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStats {
    /// Records buffered.
    pub records: u64,
    /// Bytes buffered (encoded records).
    pub bytes: u64,
    /// The byte cap.
    pub max_bytes: u64,
    /// Oldest buffered sequence.
    pub first_seq: u64,
    /// Next sequence to be assigned.
    pub next_seq: u64,
    /// Seconds since the oldest buffered record was received.
    pub oldest_age_seconds: f64,
    /// Records removed by the size/age limits since start.
    pub dropped_records: u64,
    /// Per endpoint.
    pub endpoints: BTreeMap<String, CursorStats>,
}

/// One endpoint's position in the buffer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CursorStats {
    /// Next sequence it has not taken.
    pub cursor: u64,
    /// Records it has not taken.
    pub lag_records: u64,
    /// Bytes it has not taken.
    pub lag_bytes: u64,
    /// Data time between its oldest untaken sample and the newest buffered one.
    pub lag_seconds: f64,
    /// Records it lost to the size/age limits since start.
    pub dropped_records: u64,
}

impl Wal {
    /// Totals and per-endpoint lag.
    pub fn stats(&self) -> QueueStats {
        let log = self.lock();
        let now = self.inner.clock.now_ms();
        let live = log.index.iter().filter(|e| e.len > 0);
        let oldest = live.clone().next().map(|e| e.received_ms);
        let newest_ts = log
            .index
            .iter()
            .rev()
            .find(|e| e.has_samples())
            .map(|e| e.max_ts);
        let endpoints = log
            .cursors
            .iter()
            .map(|(name, &cursor)| {
                let skip = cursor.saturating_sub(log.first_seq) as usize;
                let pending = log.index.iter().skip(skip).filter(|e| e.len > 0);
                let lag_records = pending.clone().count() as u64;
                let lag_bytes = pending.clone().map(|e| u64::from(e.len)).sum();
                let oldest_ts = pending.filter(|e| e.has_samples()).map(|e| e.min_ts).min();
                let lag_seconds = match (oldest_ts, newest_ts) {
                    (Some(o), Some(n)) if n > o => (n - o) as f64 / 1000.0,
                    _ => 0.0,
                };
                let stats = CursorStats {
                    cursor,
                    lag_records,
                    lag_bytes,
                    lag_seconds,
                    dropped_records: log.dropped.get(name).copied().unwrap_or(0),
                };
                (name.clone(), stats)
            })
            .collect();
        QueueStats {
            records: live.count() as u64,
            bytes: log.bytes,
            max_bytes: self.inner.config.max_bytes,
            first_seq: log.first_seq,
            next_seq: log.next_seq,
            oldest_age_seconds: oldest.map_or(0.0, |o| now.saturating_sub(o) as f64 / 1000.0),
            dropped_records: log.dropped_total,
            endpoints,
        }
    }
}

//! Read-only views of buffered records for operators: peeks without payloads.

use serde::{Deserialize, Serialize};

use super::{ReadItem, Wal, WalError};

/// A buffered record without its payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordSummary {
    /// Sequence.
    pub seq: u64,
    /// HA group.
    pub group: String,
    /// Source.
    pub source: String,
    /// Receive time (ms since the epoch).
    pub received_ms: u64,
    /// Smallest sample timestamp (ms); 0 without samples.
    pub min_ts: i64,
    /// Largest sample timestamp (ms); 0 without samples.
    pub max_ts: i64,
    /// Series.
    pub series: u32,
    /// Float samples.
    pub samples: u32,
    /// Native histogram samples.
    pub histograms: u32,
    /// Exemplars.
    pub exemplars: u32,
    /// Payload bytes as shipped (snappy; a compressed record is counted after expansion).
    pub payload_bytes: usize,
    /// The Remote-Write version the record is stored in (`1.0` or `2.0`; empty when
    /// damaged).
    pub protocol: String,
    /// Set when the record is damaged (its checksum fails): why.
    pub damaged: Option<String>,
}

impl RecordSummary {
    /// Summarises one read item.
    pub fn of(item: &ReadItem) -> RecordSummary {
        match item {
            ReadItem::Record(seq, r) => RecordSummary {
                seq: *seq,
                group: r.group.clone(),
                source: r.source.clone(),
                received_ms: r.meta.received_ms,
                min_ts: r.meta.min_ts,
                max_ts: r.meta.max_ts,
                series: r.meta.series,
                samples: r.meta.samples,
                histograms: r.meta.histograms,
                exemplars: r.meta.exemplars,
                payload_bytes: r.payload.len(),
                protocol: r.protocol.as_str().to_owned(),
                damaged: None,
            },
            ReadItem::Corrupt(seq, e) => RecordSummary {
                seq: *seq,
                group: String::new(),
                source: String::new(),
                received_ms: 0,
                min_ts: 0,
                max_ts: 0,
                series: 0,
                samples: 0,
                histograms: 0,
                exemplars: 0,
                payload_bytes: 0,
                protocol: String::new(),
                damaged: Some(e.to_string()),
            },
        }
    }
}

impl Wal {
    /// Up to `limit` record summaries from `from` on (blocking).
    pub fn peek(&self, from: u64, limit: usize) -> Result<Vec<RecordSummary>, WalError> {
        Ok(self
            .read_blocking(from, limit, usize::MAX)?
            .iter()
            .map(RecordSummary::of)
            .collect())
    }

    /// One record (blocking).
    pub fn get(&self, seq: u64) -> Result<Option<ReadItem>, WalError> {
        Ok(self
            .read_blocking(seq, 1, usize::MAX)?
            .into_iter()
            .find(|i| i.seq() == seq))
    }
}

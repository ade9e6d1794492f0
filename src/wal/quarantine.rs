//! The quarantine: batches that an endpoint rejected permanently (a 4xx other than
//! 429/413). Each is kept with the storage's answer, so an operator can inspect, replay or
//! delete it.
//!
//! Key: endpoint name, a zero byte, the record's sequence (big-endian). Value: a u32 length,
//! a JSON header (status, answer, time), the encoded record.

use serde::{Deserialize, Serialize};

use super::index::{be, seq_of};
use super::record::Record;
use super::{Wal, WalError};

/// A quarantined batch, without its payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Quarantined {
    /// Endpoint that rejected it.
    pub endpoint: String,
    /// Its sequence in the WAL.
    pub seq: u64,
    /// HTTP status of the rejection.
    pub status: u16,
    /// The storage's answer (one line, shortened).
    pub answer: String,
    /// When it was quarantined (ms since the epoch).
    pub quarantined_ms: u64,
    /// HA group of the write.
    pub group: String,
    /// Source of the write.
    pub source: String,
    /// Series in the batch.
    pub series: u32,
    /// Samples (float + histogram) in the batch.
    pub samples: u32,
}

#[derive(Serialize, Deserialize)]
struct Header {
    status: u16,
    answer: String,
    quarantined_ms: u64,
}

fn key(endpoint: &str, seq: u64) -> Vec<u8> {
    let mut k = endpoint.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&be(seq));
    k
}

fn parse(key: &[u8], value: &[u8]) -> Option<(Quarantined, Record)> {
    // The sequence is the last 8 bytes, which may hold zeros. The separator is before them.
    let zero = key.len().checked_sub(9)?;
    if key[zero] != 0 {
        return None;
    }
    let endpoint = String::from_utf8_lossy(&key[..zero]).into_owned();
    let seq = seq_of(&key[zero + 1..])?;
    let hlen = u32::from_le_bytes(value.get(..4)?.try_into().ok()?) as usize;
    let header: Header = serde_json::from_slice(value.get(4..4 + hlen)?).ok()?;
    let record = Record::decode(value.get(4 + hlen..)?).ok()?;
    Some((
        Quarantined {
            endpoint,
            seq,
            status: header.status,
            answer: header.answer,
            quarantined_ms: header.quarantined_ms,
            group: record.group.clone(),
            source: record.source.clone(),
            series: record.meta.series,
            samples: record.meta.samples + record.meta.histograms,
        },
        record,
    ))
}

impl Wal {
    /// Stores a batch an endpoint rejected permanently, with its answer.
    pub fn quarantine(
        &self,
        endpoint: &str,
        seq: u64,
        record: &Record,
        status: u16,
        answer: &str,
    ) -> Result<(), WalError> {
        let header = serde_json::to_vec(&Header {
            status,
            answer: answer.to_owned(),
            quarantined_ms: self.inner.clock.now_ms(),
        })
        .expect("a header always serializes");
        let encoded = record.encode();
        let mut value = Vec::with_capacity(4 + header.len() + encoded.len());
        value.extend_from_slice(&(header.len() as u32).to_le_bytes());
        value.extend_from_slice(&header);
        value.extend_from_slice(&encoded);
        self.inner.quarantine.insert(key(endpoint, seq), value)?;
        Ok(())
    }

    /// Number of quarantined batches.
    pub fn quarantined(&self) -> usize {
        self.inner.quarantine.len()
    }

    /// Every quarantined batch (payload left out), by endpoint then sequence.
    pub fn quarantine_list(&self) -> Result<Vec<Quarantined>, WalError> {
        let mut out = Vec::new();
        for item in self.inner.quarantine.iter() {
            let (k, v) = item?;
            match parse(&k, &v) {
                Some((q, _)) => out.push(q),
                None => tracing::error!(key = ?k, "wal: unreadable quarantine entry skipped"),
            }
        }
        Ok(out)
    }

    /// One quarantined batch with its record.
    pub fn quarantine_get(
        &self,
        endpoint: &str,
        seq: u64,
    ) -> Result<Option<(Quarantined, Record)>, WalError> {
        let k = key(endpoint, seq);
        Ok(self.inner.quarantine.get(&k)?.and_then(|v| parse(&k, &v)))
    }

    /// Removes a quarantined batch; returns whether it existed.
    pub fn quarantine_remove(&self, endpoint: &str, seq: u64) -> Result<bool, WalError> {
        Ok(self.inner.quarantine.remove(key(endpoint, seq))?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_zero_bytes_in_the_sequence_parse() {
        for seq in [0u64, 1, 256, 1 << 40, u64::MAX] {
            let k = key("lts", seq);
            let zero = k.len() - 9;
            assert_eq!(&k[..zero], b"lts");
            assert_eq!(seq_of(&k[zero + 1..]), Some(seq));
        }
    }
}

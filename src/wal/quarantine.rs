//! The quarantine: batches that an endpoint rejected permanently (a 4xx other than
//! 401/403/429/413). Each is kept with the storage's answer, so an operator can inspect,
//! replay or delete it.
//!
//! Key: endpoint name, a zero byte, the record's sequence (big-endian). Value: a u32 length,
//! a JSON header (status, answer, time), the encoded record.
//!
//! Limits: at most `quarantine_max_bytes` (its bytes count against the buffer's cap, so the
//! data directory's budget holds both) and `quarantine_max_age`. Over either, the oldest
//! batches (lowest sequence first for the size, oldest quarantine time for the age) are
//! dropped, with an ERROR line and `highlander_wal_quarantine_dropped_total`. An index in
//! memory ([`Quarantine`]) keeps the count and the bytes, so `/metrics` and the admin API
//! read them in O(1) instead of scanning sled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::index::{be, seq_of};
use super::record::Record;
use super::{Wal, WalError};
use crate::metrics::METRICS;

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

/// The quarantine's sled tree and its index in memory.
pub(super) struct Quarantine {
    tree: sled::Tree,
    index: Mutex<BTreeMap<(u64, String), Entry>>,
    /// Bytes of every entry (keys and values), readable without the lock.
    bytes: AtomicU64,
}

/// One entry of the index.
#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    quarantined_ms: u64,
}

impl Quarantine {
    /// Opens the tree and builds the index (one scan, at start-up).
    pub(super) fn open(db: &sled::Db) -> Result<Quarantine, WalError> {
        let tree = db.open_tree("quarantine")?;
        let mut index = BTreeMap::new();
        let mut bytes = 0;
        for item in tree.iter() {
            let (k, v) = item?;
            let size = (k.len() + v.len()) as u64;
            let Some((endpoint, seq)) = split_key(&k) else {
                tracing::error!(key = ?k, "wal: unreadable quarantine key, left out of the count");
                continue;
            };
            let quarantined_ms = header_of(&v).map_or(0, |h| h.quarantined_ms);
            index.insert(
                (seq, endpoint),
                Entry {
                    bytes: size,
                    quarantined_ms,
                },
            );
            bytes += size;
        }
        Ok(Quarantine {
            tree,
            index: Mutex::new(index),
            bytes: AtomicU64::new(bytes),
        })
    }

    /// Bytes held, keys and values.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Removes one entry from the tree and the index.
    fn remove(
        &self,
        index: &mut BTreeMap<(u64, String), Entry>,
        seq: u64,
        endpoint: &str,
    ) -> Result<bool, WalError> {
        let existed = self.tree.remove(key(endpoint, seq))?.is_some();
        if let Some(e) = index.remove(&(seq, endpoint.to_owned())) {
            self.bytes.fetch_sub(e.bytes, Ordering::Relaxed);
        }
        Ok(existed)
    }
}

fn key(endpoint: &str, seq: u64) -> Vec<u8> {
    let mut k = endpoint.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&be(seq));
    k
}

/// The endpoint and the sequence of a key.
fn split_key(key: &[u8]) -> Option<(String, u64)> {
    // The sequence is the last 8 bytes, which may hold zeros. The separator is before them.
    let zero = key.len().checked_sub(9)?;
    if key[zero] != 0 {
        return None;
    }
    let endpoint = String::from_utf8_lossy(&key[..zero]).into_owned();
    Some((endpoint, seq_of(&key[zero + 1..])?))
}

/// The header of a value, and where the record starts.
fn header_and_rest(value: &[u8]) -> Option<(Header, &[u8])> {
    let hlen = u32::from_le_bytes(value.get(..4)?.try_into().ok()?) as usize;
    let header: Header = serde_json::from_slice(value.get(4..4 + hlen)?).ok()?;
    Some((header, value.get(4 + hlen..)?))
}

fn header_of(value: &[u8]) -> Option<Header> {
    header_and_rest(value).map(|(h, _)| h)
}

fn parse(key: &[u8], value: &[u8]) -> Option<(Quarantined, Record)> {
    let (endpoint, seq) = split_key(key)?;
    let (header, rest) = header_and_rest(value)?;
    let record = Record::decode(rest).ok()?;
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
    /// Stores a batch an endpoint rejected permanently, with its answer; then drops the
    /// oldest batches while the quarantine is over its byte cap.
    pub fn quarantine(
        &self,
        endpoint: &str,
        seq: u64,
        record: &Record,
        status: u16,
        answer: &str,
    ) -> Result<(), WalError> {
        let quarantined_ms = self.inner.clock.now_ms();
        let header = serde_json::to_vec(&Header {
            status,
            answer: answer.to_owned(),
            quarantined_ms,
        })
        .expect("a header always serializes");
        let encoded = record.encode();
        let mut value = Vec::with_capacity(4 + header.len() + encoded.len());
        value.extend_from_slice(&(header.len() as u32).to_le_bytes());
        value.extend_from_slice(&header);
        value.extend_from_slice(&encoded);
        let k = key(endpoint, seq);
        let q = &self.inner.quarantine;
        let mut index = q.index.lock();
        let key_len = k.len() as u64;
        let size = key_len + value.len() as u64;
        if let Some(old) = q.tree.insert(k, value)? {
            // The same batch again (an operator's replay was refused again).
            q.bytes
                .fetch_sub(key_len + old.len() as u64, Ordering::Relaxed);
        }
        index.insert(
            (seq, endpoint.to_owned()),
            Entry {
                bytes: size,
                quarantined_ms,
            },
        );
        q.bytes.fetch_add(size, Ordering::Relaxed);
        let cap = self.inner.config.quarantine_max_bytes;
        let mut dropped = 0u64;
        while q.bytes() > cap {
            let Some((seq, endpoint)) = index.keys().next().cloned() else {
                break;
            };
            q.remove(&mut index, seq, &endpoint)?;
            dropped += 1;
        }
        drop(index);
        self.count_quarantine_drops(dropped, "size");
        Ok(())
    }

    /// Drops the batches quarantined longer ago than the age limit.
    pub fn collect_quarantine(&self) -> Result<(), WalError> {
        let max_age_ms = self.inner.config.quarantine_max_age.as_millis() as u64;
        let cutoff = self.inner.clock.now_ms().saturating_sub(max_age_ms);
        let q = &self.inner.quarantine;
        let mut index = q.index.lock();
        let old: Vec<(u64, String)> = index
            .iter()
            .filter(|(_, e)| e.quarantined_ms < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        for (seq, endpoint) in &old {
            q.remove(&mut index, *seq, endpoint)?;
        }
        drop(index);
        self.count_quarantine_drops(old.len() as u64, "age");
        Ok(())
    }

    /// Counts and logs batches the quarantine's limits dropped.
    fn count_quarantine_drops(&self, dropped: u64, reason: &'static str) {
        if dropped == 0 {
            return;
        }
        METRICS
            .wal
            .quarantine_dropped
            .with_label_values(&[reason])
            .inc_by(dropped);
        tracing::error!(
            dropped,
            reason,
            max_bytes = self.inner.config.quarantine_max_bytes,
            max_age = ?self.inner.config.quarantine_max_age,
            "wal: quarantine limit reached, the oldest rejected batches are dropped (their samples are lost)"
        );
    }

    /// Number of quarantined batches.
    pub fn quarantined(&self) -> usize {
        self.inner.quarantine.index.lock().len()
    }

    /// Bytes the quarantine holds (they count against the buffer's cap).
    pub fn quarantined_bytes(&self) -> u64 {
        self.inner.quarantine.bytes()
    }

    /// Every quarantined batch (payload left out), by endpoint then sequence.
    pub fn quarantine_list(&self) -> Result<Vec<Quarantined>, WalError> {
        let mut out = Vec::new();
        for item in self.inner.quarantine.tree.iter() {
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
        Ok(self
            .inner
            .quarantine
            .tree
            .get(&k)?
            .and_then(|v| parse(&k, &v)))
    }

    /// Removes a quarantined batch; returns whether it existed.
    pub fn quarantine_remove(&self, endpoint: &str, seq: u64) -> Result<bool, WalError> {
        let q = &self.inner.quarantine;
        let mut index = q.index.lock();
        q.remove(&mut index, seq, endpoint)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::wal::record::tests::snappy_record;
    use crate::wal::{FullPolicy, WalConfig};

    /// The bytes one quarantined `snappy_record` takes.
    fn entry_bytes(wal: &Wal) -> u64 {
        let before = wal.quarantined_bytes();
        wal.quarantine("probe", 0, &snappy_record(), 400, "probe")
            .expect("quarantine");
        let size = wal.quarantined_bytes() - before;
        assert!(wal.quarantine_remove("probe", 0).expect("remove"));
        assert_eq!(wal.quarantined_bytes(), before);
        size
    }

    fn open(dir: &std::path::Path, cap_entries: f64, clock: Arc<ManualClock>) -> Wal {
        let probe = Wal::open(WalConfig::for_tests(&dir.join("probe"))).expect("open");
        let size = entry_bytes(&probe);
        drop(probe);
        Wal::open_with_clock(
            WalConfig {
                quarantine_max_bytes: (size as f64 * cap_entries) as u64,
                quarantine_max_age: Duration::from_secs(3600),
                ..WalConfig::for_tests(dir)
            },
            clock,
        )
        .expect("open")
    }

    fn seqs(wal: &Wal) -> Vec<u64> {
        let mut s: Vec<u64> = wal
            .quarantine_list()
            .expect("list")
            .iter()
            .map(|q| q.seq)
            .collect();
        s.sort_unstable();
        s
    }

    #[test]
    fn over_its_cap_the_quarantine_drops_its_oldest_batches_and_counts_in_o1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::at(1_000));
        let wal = open(dir.path(), 3.5, clock.clone());
        let record = snappy_record();
        for seq in 1..=10 {
            wal.quarantine(
                if seq % 2 == 0 { "a" } else { "b" },
                seq,
                &record,
                400,
                "bad",
            )
            .expect("quarantine");
        }
        assert_eq!(seqs(&wal), [8, 9, 10], "the three newest stay");
        assert_eq!(wal.quarantined(), 3);
        assert!(wal.quarantined_bytes() <= wal.config().quarantine_max_bytes);
        let bytes = wal.quarantined_bytes();
        // A restart rebuilds the counters from sled.
        drop(wal);
        let wal = open(dir.path(), 3.5, clock);
        assert_eq!((wal.quarantined(), wal.quarantined_bytes()), (3, bytes));
        assert_eq!(seqs(&wal), [8, 9, 10]);
    }

    #[test]
    fn batches_older_than_the_age_limit_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::at(1_000));
        let wal = open(dir.path(), 100.0, clock.clone());
        let record = snappy_record();
        wal.quarantine("a", 1, &record, 400, "bad")
            .expect("quarantine");
        clock.set(1_000 + 1_800_000);
        wal.quarantine("a", 2, &record, 400, "bad")
            .expect("quarantine");
        clock.set(1_000 + 3_600_000 + 1);
        wal.collect_quarantine().expect("collect");
        assert_eq!(seqs(&wal), [2], "only the batch older than an hour goes");
        assert_eq!(wal.quarantined(), 1);
    }

    #[test]
    fn the_quarantine_counts_against_the_buffers_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = snappy_record();
        let encoded = record.encode().len() as u64;
        let wal = Wal::open(WalConfig {
            max_bytes: encoded * 4,
            quarantine_max_bytes: encoded * 2,
            full_policy: FullPolicy::Block,
            ..WalConfig::for_tests(dir.path())
        })
        .expect("open");
        // Empty quarantine: four records fit.
        for _ in 0..3 {
            wal.insert_all(std::slice::from_ref(&record)).expect("fits");
        }
        // One quarantined batch takes the room of the fourth.
        wal.quarantine("a", 1, &record, 400, "bad")
            .expect("quarantine");
        assert!(matches!(
            wal.insert_all(std::slice::from_ref(&record)),
            Err(WalError::Full { .. })
        ));
        assert!(wal.quarantine_remove("a", 1).expect("remove"));
        wal.insert_all(std::slice::from_ref(&record))
            .expect("room again");
    }

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

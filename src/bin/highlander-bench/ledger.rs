//! The sink's memory of every sample it received, to count duplicates and to answer
//! "did you get these?" after a crash test.
//!
//! Per series (keyed by its hash) a sorted log of timestamps ([`SeriesLog`]). Samples
//! mostly arrive in order, so the common case is a compare with the last timestamp and a
//! push; an older timestamp is a binary search (duplicate, or an out-of-order newcomer
//! inserted in place). That is 8 bytes per sample and cache-friendly, where a global hash
//! set of (series, timestamp) pairs would cost twice the memory and a cache miss per sample.
//!
//! The log grows in fixed chunks, never by doubling one vector: the generator sends every
//! series at the same pace, so doubling vectors would all double at the same moment,
//! copying hundreds of MB while the sink stops answering — a stall of the sink that the
//! relay under test would be measured for. Chunks make the cost per sample constant.
//!
//! The map is split into shards, each behind its own mutex, and a request takes each
//! shard's lock once for all of its samples in that shard.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Shards of the series map; a power of two.
pub const SHARDS: usize = 64;

/// Keys are xxh3 hashes already: hashing them again would only cost time.
#[derive(Default)]
pub struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type SeriesMap = HashMap<u64, SeriesLog, BuildHasherDefault<PreHashed>>;

/// Timestamps per chunk of a [`SeriesLog`] (512 bytes).
const CHUNK: usize = 64;

/// One series' timestamps, sorted ascending, without repeats, in chunks of [`CHUNK`].
#[derive(Default)]
pub struct SeriesLog {
    // Boxed on purpose: growing the vector then moves 8-byte pointers, not the samples.
    #[allow(clippy::vec_box)]
    chunks: Vec<Box<[i64; CHUNK]>>,
    len: usize,
}

impl SeriesLog {
    fn get(&self, i: usize) -> i64 {
        self.chunks[i / CHUNK][i % CHUNK]
    }

    fn last(&self) -> Option<i64> {
        self.len.checked_sub(1).map(|i| self.get(i))
    }

    fn push(&mut self, ts: i64) {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push(Box::new([0; CHUNK]));
        }
        self.chunks[self.len / CHUNK][self.len % CHUNK] = ts;
        self.len += 1;
    }

    /// As `slice::binary_search` on the whole log.
    fn search(&self, ts: i64) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).cmp(&ts) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Inserts `ts` at index `at`, moving the later ones up by one (rare: out-of-order).
    fn insert(&mut self, at: usize, ts: i64) {
        let Some(last) = self.last() else {
            return self.push(ts);
        };
        self.push(last);
        let mut carry = ts;
        for c in at / CHUNK..self.chunks.len() {
            let chunk = &mut self.chunks[c];
            let from = if c == at / CHUNK { at % CHUNK } else { 0 };
            let out = chunk[CHUNK - 1];
            chunk.copy_within(from..CHUNK - 1, from + 1);
            chunk[from] = carry;
            carry = out;
        }
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Samples seen for the first time.
    pub new: u64,
    /// Samples seen before.
    pub duplicates: u64,
}

/// All samples received so far.
pub struct Ledger {
    shards: Box<[Mutex<SeriesMap>]>,
    /// Stop remembering timestamps past this many (memory bound); counting goes on.
    max_samples: u64,
    stored: AtomicU64,
    saturated: AtomicBool,
}

/// Which shard a series lives in.
pub fn shard_of(series_hash: u64) -> usize {
    (series_hash >> 58) as usize & (SHARDS - 1)
}

impl Ledger {
    /// An empty ledger remembering at most `max_samples` timestamps.
    pub fn new(max_samples: u64) -> Self {
        Ledger {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(SeriesMap::default()))
                .collect(),
            max_samples,
            stored: AtomicU64::new(0),
            saturated: AtomicBool::new(false),
        }
    }

    /// Records `(series hash, timestamp)` samples that all belong to `shard`.
    pub fn record(&self, shard: usize, samples: &[(u64, i64)]) -> Outcome {
        let mut outcome = Outcome::default();
        if samples.is_empty() {
            return outcome;
        }
        let remember = self.stored.load(Ordering::Relaxed) < self.max_samples;
        if !remember {
            self.saturated.store(true, Ordering::Relaxed);
        }
        let mut map = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        for &(series, ts) in samples {
            let log = map.entry(series).or_default();
            let fresh = match log.last() {
                None => {
                    if remember {
                        log.push(ts);
                    }
                    true
                }
                Some(last) if ts > last => {
                    if remember {
                        log.push(ts);
                    }
                    true
                }
                Some(last) if ts == last => false,
                Some(_) => match log.search(ts) {
                    Ok(_) => false,
                    Err(at) => {
                        if remember {
                            log.insert(at, ts);
                        }
                        true
                    }
                },
            };
            if fresh {
                outcome.new += 1;
            } else {
                outcome.duplicates += 1;
            }
        }
        if remember {
            self.stored.fetch_add(outcome.new, Ordering::Relaxed);
        }
        outcome
    }

    /// How many of `samples` were never received.
    pub fn missing(&self, samples: &[(u64, i64)]) -> u64 {
        let mut missing = 0;
        for &(series, ts) in samples {
            let map = self.shards[shard_of(series)]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let found = map.get(&series).is_some_and(|log| log.search(ts).is_ok());
            if !found {
                missing += 1;
            }
        }
        missing
    }

    /// Distinct series seen.
    pub fn series(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len() as u64)
            .sum()
    }

    /// Whether the memory bound was hit (duplicate counts are then lower bounds).
    pub fn saturated(&self) -> bool {
        self.saturated.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_in_and_out_of_order() {
        let ledger = Ledger::new(1_000);
        let s = 7u64;
        let shard = shard_of(s);
        assert_eq!(ledger.record(shard, &[(s, 10), (s, 20)]).new, 2);
        let o = ledger.record(shard, &[(s, 20), (s, 15), (s, 10), (s, 15), (s, 30)]);
        assert_eq!(
            o,
            Outcome {
                new: 2,
                duplicates: 3
            }
        );
        assert_eq!(ledger.missing(&[(s, 15), (s, 16), (8, 10)]), 2);
        assert_eq!(ledger.series(), 1);
    }

    #[test]
    fn chunked_log_stays_sorted_across_chunks() {
        let mut log = SeriesLog::default();
        let mut model: Vec<i64> = Vec::new();
        // In-order pushes over several chunks, then out-of-order inserts everywhere,
        // including at the front, at chunk edges and at the end.
        for ts in (0..(3 * CHUNK as i64 + 5)).map(|i| i * 10) {
            log.push(ts);
            model.push(ts);
        }
        let late = [5, 635, 645, 1275, 1285, -7, 3 * CHUNK as i64 * 10 + 33, 1];
        for ts in late {
            let at = log.search(ts).unwrap_err();
            assert_eq!(Err(at), model.binary_search(&ts));
            log.insert(at, ts);
            model.insert(at, ts);
        }
        assert_eq!(log.len, model.len());
        for (i, &ts) in model.iter().enumerate() {
            assert_eq!(log.get(i), ts, "index {i}");
            assert_eq!(log.search(ts), Ok(i));
        }
        assert_eq!(log.search(4), Err(3));
    }

    #[test]
    fn stops_remembering_at_the_bound() {
        let ledger = Ledger::new(2);
        let shard = shard_of(1);
        ledger.record(shard, &[(1, 1), (1, 2), (1, 3)]);
        ledger.record(shard, &[(1, 4)]);
        assert!(ledger.saturated());
    }
}

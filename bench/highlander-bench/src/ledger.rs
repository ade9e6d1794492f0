//! The sink's memory of every sample it received, to count duplicates and to answer
//! "did you get these?" after a crash test.
//!
//! Each series (keyed by its hash) has a sorted log of timestamps ([`SeriesLog`]). Samples
//! mostly arrive in order. So the common case is a compare with the last timestamp and a
//! push. An older timestamp costs a binary search: it is a duplicate, or an out-of-order
//! newcomer that is inserted in place. The log costs 8 bytes per sample and is
//! cache-friendly. A global hash set of (series, timestamp) pairs would cost twice the
//! memory and a cache miss per sample.
//!
//! The log grows in fixed chunks, never by doubling one vector. Why: the generator sends
//! every series at the same pace, so doubling vectors would all double at the same moment.
//! They would copy hundreds of MB while the sink stops answering. The relay under test
//! would then be measured for that stall of the sink. Chunks make the cost per sample
//! constant.
//!
//! The series live in a flat open-addressing table ([`SeriesTable`]). Its slots hold the
//! last timestamp beside the key, so the in-order check reads one slot and no chunk. With
//! 100k series, the table is far larger than the caches, and every sample's slot is a
//! cache miss. So a batch prefetches the slots of the samples a few places ahead, and the
//! misses overlap instead of queueing. This matters because the sink shares the machine
//! with the relay under test (profile in `bench/HISTORY.md`).
//!
//! The table is split into shards, each behind its own mutex. A request takes each shard's
//! lock once for all of its samples in that shard.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Shards of the series map; a power of two.
pub const SHARDS: usize = 64;

/// Timestamps per chunk of a [`SeriesLog`] (512 bytes).
const CHUNK: usize = 64;

/// One series' timestamps, sorted ascending, without repeats, in chunks of [`CHUNK`].
#[derive(Default)]
pub struct SeriesLog {
    // Boxed on purpose: a growing vector then moves 8-byte pointers, not the samples.
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

    /// Inserts `ts` at index `at` and moves the later ones up by one. This is rare: only
    /// for out-of-order samples.
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

/// One series in the table: its key (the series hash; 0 marks a free slot), the last
/// timestamp of its log (valid while the log is not empty) and the log. One cache line,
/// so one prefetch brings all of it.
#[derive(Default)]
#[repr(C, align(64))]
struct Slot {
    key: u64,
    last: i64,
    log: SeriesLog,
}

/// Series by hash: open addressing, linear probing, at most half full.
pub struct SeriesTable {
    slots: Vec<Slot>,
    used: usize,
}

/// How many samples ahead a batch prefetches.
const AHEAD: usize = 8;

impl SeriesTable {
    fn new() -> Self {
        SeriesTable {
            slots: (0..64).map(|_| Slot::default()).collect(),
            used: 0,
        }
    }

    /// Keys are xxh3 hashes already. 0 is the free marker, so the hash 0 becomes 1.
    fn key(series_hash: u64) -> u64 {
        series_hash.max(1)
    }

    fn home(&self, key: u64) -> usize {
        key as usize & (self.slots.len() - 1)
    }

    /// Asks the CPU to start loading the slot `series_hash` would be found in first.
    #[inline]
    fn prefetch(&self, series_hash: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let slot: *const Slot = &self.slots[self.home(Self::key(series_hash))];
            // SAFETY: a prefetch is only a hint. It never faults and reads nothing.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(slot.cast())
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = series_hash;
    }

    fn find(&self, series_hash: u64) -> Option<&Slot> {
        let key = Self::key(series_hash);
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        loop {
            let slot = &self.slots[at];
            if slot.key == key {
                return Some(slot);
            }
            if slot.key == 0 {
                return None;
            }
            at = (at + 1) & mask;
        }
    }

    /// The slot of `series_hash`, taken now if the series is new.
    fn entry(&mut self, series_hash: u64) -> &mut Slot {
        if 2 * (self.used + 1) > self.slots.len() {
            self.grow();
        }
        let key = Self::key(series_hash);
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        while self.slots[at].key != key && self.slots[at].key != 0 {
            at = (at + 1) & mask;
        }
        let slot = &mut self.slots[at];
        if slot.key == 0 {
            slot.key = key;
            self.used += 1;
        }
        slot
    }

    /// Doubles the table. This is rare. The slots move; the logs' chunks stay where they
    /// are.
    fn grow(&mut self) {
        let len = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, (0..len).map(|_| Slot::default()).collect());
        let mask = len - 1;
        for slot in old.into_iter().filter(|s| s.key != 0) {
            let mut at = slot.key as usize & mask;
            while self.slots[at].key != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = slot;
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
    shards: Box<[Mutex<SeriesTable>]>,
    /// Stop remembering timestamps past this many (a memory bound). Counting goes on.
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
                .map(|_| Mutex::new(SeriesTable::new()))
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
        let mut table = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        for &(series, _) in samples.iter().take(AHEAD) {
            table.prefetch(series);
        }
        for (i, &(series, ts)) in samples.iter().enumerate() {
            if let Some(&(ahead, _)) = samples.get(i + AHEAD) {
                table.prefetch(ahead);
            }
            let slot = table.entry(series);
            let fresh = if slot.log.len == 0 || ts > slot.last {
                if remember {
                    slot.log.push(ts);
                    slot.last = ts;
                }
                true
            } else if ts == slot.last {
                false
            } else {
                match slot.log.search(ts) {
                    Ok(_) => false,
                    Err(at) => {
                        if remember {
                            slot.log.insert(at, ts);
                        }
                        true
                    }
                }
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

    /// Whether `(series, ts)` was received.
    fn contains(&self, series: u64, ts: i64) -> bool {
        let table = self.shards[shard_of(series)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        table
            .find(series)
            .is_some_and(|slot| slot.log.search(ts).is_ok())
    }

    /// How many of `samples` were never received.
    pub fn missing(&self, samples: &[(u64, i64)]) -> u64 {
        samples
            .iter()
            .filter(|&&(series, ts)| !self.contains(series, ts))
            .count() as u64
    }

    /// Which of `samples` were received: bit `i % 8` of byte `i / 8` is set when sample
    /// `i` was.
    pub fn received_bits(&self, samples: &[(u64, i64)]) -> Vec<u8> {
        let mut bits = vec![0u8; samples.len().div_ceil(8)];
        for (i, &(series, ts)) in samples.iter().enumerate() {
            if self.contains(series, ts) {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        bits
    }

    /// Distinct series seen.
    pub fn series(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).used as u64)
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
        let probe: Vec<(u64, i64)> = (8..=31).map(|ts| (s, ts)).collect();
        // Received: 10, 15, 20 and 30 (indices 2, 7, 12 and 22).
        assert_eq!(
            ledger.received_bits(&probe),
            [0b1000_0100, 0b0001_0000, 0b0100_0000]
        );
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
    fn table_grows_and_probes_past_collisions() {
        let ledger = Ledger::new(1_000_000);
        let shard = 3;
        // Same low bits (one home slot for all), the free marker 0, and enough series to
        // double the table several times.
        let mut series: Vec<u64> = (1..40u64).map(|i| i << 40).collect();
        series.push(0);
        series.extend((1..3000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        for (n, &s) in series.iter().enumerate() {
            let o = ledger.record(shard, &[(s, 10), (s, n as i64 + 11)]);
            assert_eq!(o.new, 2, "series {n}");
        }
        for &s in &series {
            let o = ledger.record(shard, &[(s, 10)]);
            assert_eq!(o.duplicates, 1);
        }
        assert_eq!(ledger.series(), series.len() as u64);
        let probe: Vec<(u64, i64)> = series.iter().map(|&s| (s, 10)).collect();
        // `missing` looks series up by their own shard, so only this shard's series are
        // here.
        let ours: Vec<(u64, i64)> = probe
            .into_iter()
            .filter(|&(s, _)| shard_of(s) == shard)
            .collect();
        assert_eq!(ledger.missing(&ours), 0);
        assert_eq!(ledger.missing(&[(u64::MAX - 5, 10)]), 1);
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

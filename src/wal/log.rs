//! The [`Wal`] handle: open, append, read, cursors. Other files own the rest: the records
//! ([`super::segments`]), recovery ([`super::recover`]), removal ([`super::gc`]) and
//! totals ([`super::stats`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;
use tokio::sync::{watch, Notify};

use super::commit::{Flushable, Flusher, Writing};
use super::index::{be, seq_of, Entry};
use super::record::{CodecError, Record};
use super::recover::{recover, Recovered};
use super::segments::Segments;
use super::{Durability, FullPolicy, StartAt, WalConfig, WalError};
use crate::clock::{Clock, SystemClock};
use crate::disk_sync::DiskSync;
use crate::metrics::METRICS;
use crate::wire::Version;

/// Everything that changes together, under one lock.
pub(super) struct Log {
    /// Sequence of `index[0]`.
    pub(super) first_seq: u64,
    /// The next sequence to assign.
    pub(super) next_seq: u64,
    pub(super) index: VecDeque<Entry>,
    pub(super) bytes: u64,
    pub(super) cursors: BTreeMap<String, u64>,
    /// Records each endpoint lost to the limits (since start).
    pub(super) dropped: BTreeMap<String, u64>,
    pub(super) dropped_total: u64,
    /// Rate-limits the ERROR line about dropped records.
    pub(super) last_drop_log: Option<Instant>,
    pub(super) unlogged_drops: u64,
}

/// sled's segment size for the WAL's database. sled refuses to open a database with
/// another segment size than it was created with, and existing data directories were
/// created with this one.
pub(super) const SEGMENT_SIZE: usize = 4 << 20;

/// sled's cache for the WAL's database: cursors, metadata and quarantined batches.
const SLED_CACHE: u64 = 16 << 20;

/// How often sled writes cursor moves and the floor to its log in the background. A
/// killed process loses at most this much of them, and the shipper sends those records
/// again. Each flush wakes sled's IO threads, so it does not run at every group commit.
const SLED_FLUSH_MS: u64 = 100;

/// The directory of the segment files, inside the WAL's directory.
const SEGMENTS_DIR: &str = "segments";

pub(super) struct Inner {
    pub(super) config: WalConfig,
    db: sled::Db,
    /// The syncs sled's flush leaves out.
    sync: DiskSync,
    /// The records.
    pub(super) segments: Segments,
    pub(super) cursors: sled::Tree,
    pub(super) meta: sled::Tree,
    pub(super) quarantine: super::quarantine::Quarantine,
    log: Mutex<Log>,
    /// `next_seq` after the latest append: wakes the shippers.
    appended: watch::Sender<u64>,
    /// The group commit.
    pub(super) flusher: Arc<Flusher>,
    /// Recovery found buffered records but no cursor: new cursors start at the oldest
    /// record, whatever the configured start.
    state_lost: bool,
    /// Whether new records are stored compact.
    pub(super) compact: super::compact::Compact,
    /// A cursor moved: records may be ready to delete.
    pub(super) cursor_moved: Notify,
    pub(super) clock: Arc<dyn Clock>,
}

/// The write-ahead buffer. A cheap clone.
#[derive(Clone)]
pub struct Wal {
    pub(super) inner: Arc<Inner>,
}

/// One item read from the log.
#[derive(Debug)]
pub enum ReadItem {
    /// A good record.
    Record(u64, Record),
    /// A record whose bytes are damaged: skip it.
    Corrupt(u64, CodecError),
}

impl ReadItem {
    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            ReadItem::Record(s, _) | ReadItem::Corrupt(s, _) => *s,
        }
    }
}

/// An operator's cursor move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CursorMove {
    /// Where the cursor was.
    pub from: u64,
    /// Where it is now.
    pub to: u64,
    /// Buffered records between the two (skipped, or to be sent again).
    pub records: u64,
}

impl Wal {
    /// Opens or creates the WAL and recovers its state. It removes each damaged record
    /// and logs an ERROR line for it. Blocking: call it before serving, or from a blocking
    /// thread.
    pub fn open(config: WalConfig) -> Result<Wal, WalError> {
        Self::open_with_clock(config, Arc::new(SystemClock))
    }

    /// [`Wal::open`] with an injected clock (for age limits in tests).
    pub fn open_with_clock(config: WalConfig, clock: Arc<dyn Clock>) -> Result<Wal, WalError> {
        std::fs::create_dir_all(&config.dir)?;
        let db = sled::Config::new()
            .path(&config.dir)
            .cache_capacity(SLED_CACHE)
            .flush_every_ms(Some(SLED_FLUSH_MS))
            .segment_size(SEGMENT_SIZE)
            .open()
            .map_err(|source| match source {
                sled::Error::Corruption { .. } => WalError::StateDamaged {
                    dir: config.dir.display().to_string(),
                    source,
                },
                other => WalError::Storage(other),
            })?;
        let sync = DiskSync::open(&config.dir)?;
        let cursors = db.open_tree("cursors")?;
        let meta = db.open_tree("meta")?;
        let quarantine = super::quarantine::Quarantine::open(&db)?;
        let Recovered {
            segments,
            index,
            first_seq,
            next_seq,
            bytes,
            damaged,
        } = recover(
            &config.dir.join(SEGMENTS_DIR),
            config.segment_bytes,
            &meta,
            &sync,
            &db,
        )?;
        let mut cursor_map = BTreeMap::new();
        for item in cursors.iter() {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k).into_owned();
            cursor_map.insert(name, seq_of(&v).unwrap_or(first_seq).min(next_seq));
        }
        // Every configured endpoint's cursor is on disk before the first write is taken
        // (`register_endpoints`). So buffered records without any cursor mean that sled's
        // database lost its contents (damaged or deleted files): the endpoints' positions
        // are unknown, and starting them at the newest record would skip every buffered
        // write. They start at the oldest instead: what a storage already took is sent
        // again, nothing is lost.
        let state_lost = cursor_map.is_empty() && index.iter().any(|e| e.len > 0);
        if state_lost {
            tracing::error!(
                dir = %config.dir.display(),
                records = index.len(),
                "wal: the buffer's state database has no cursor although records are buffered (its files were damaged or deleted); every storage starts at the oldest buffered record and receives again what it already took; the quarantine is lost"
            );
        }
        tracing::info!(
            dir = %config.dir.display(),
            records = index.len(),
            bytes,
            damaged,
            first_seq,
            next_seq,
            "wal: recovered"
        );
        let (appended, _) = watch::channel(next_seq);
        let compact = super::compact::Compact::new(config.compression);
        Ok(Wal {
            inner: Arc::new(Inner {
                config,
                db,
                sync,
                segments,
                cursors,
                meta,
                quarantine,
                log: Mutex::new(Log {
                    first_seq,
                    next_seq,
                    index,
                    bytes,
                    cursors: cursor_map,
                    dropped: BTreeMap::new(),
                    dropped_total: 0,
                    last_drop_log: None,
                    unlogged_drops: 0,
                }),
                appended,
                flusher: Arc::new(Flusher::new(next_seq)),
                state_lost,
                compact,
                cursor_moved: Notify::new(),
                clock,
            }),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Log> {
        // Every critical section leaves the log consistent before it can fail.
        self.inner.log.lock()
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &WalConfig {
        &self.inner.config
    }

    /// Appends a record and returns its sequence once it is as durable as the mode asks.
    pub async fn append(&self, record: &Record) -> Result<u64, WalError> {
        let seq = self.insert_all(std::slice::from_ref(record))?;
        self.wait_durable(seq).await?;
        Ok(seq)
    }

    /// Inserts records in order on the caller's thread (blocking) and returns the last
    /// sequence. It does not wait for their flush: call [`Wal::wait_durable`] before
    /// acknowledging.
    ///
    /// An insert is a `pwritev` into the page cache and is cheap. A hand-off to another
    /// thread and back costs more (`bench/HISTORY.md`). The ingest calls this under its
    /// group's lock.
    pub fn insert_all(&self, records: &[Record]) -> Result<u64, WalError> {
        let compact = self.compacting();
        let mut last = None;
        for r in records {
            let bytes = if compact {
                METRICS.wal.compact_records.inc();
                r.encode_compact()
            } else {
                r.encode()
            };
            last = Some(self.insert(&bytes, r.meta)?);
        }
        last.ok_or(WalError::Closed)
    }

    /// Inserts one encoded record (blocking). Enforces the byte cap first.
    pub(super) fn insert(&self, encoded: &[u8], meta: super::RecordMeta) -> Result<u64, WalError> {
        let started = Instant::now();
        // The quarantine's bytes count against the cap: the data directory holds both.
        let limit = self
            .inner
            .config
            .max_bytes
            .saturating_sub(self.inner.quarantine.bytes());
        let len = encoded.len() as u64;
        let mut log = self.lock();
        let mut evicted = None;
        if log.bytes + len > limit {
            match self.inner.config.full_policy {
                FullPolicy::Block => {
                    return Err(WalError::Full {
                        bytes: log.bytes,
                        limit,
                    })
                }
                FullPolicy::DropOldest => {
                    let mut upto = log.first_seq;
                    let mut freed = 0u64;
                    for e in &log.index {
                        if log.bytes - freed + len <= limit {
                            break;
                        }
                        freed += u64::from(e.len);
                        upto += 1;
                    }
                    if log.bytes - freed + len > limit {
                        // Even an empty buffer cannot hold it.
                        return Err(WalError::Full {
                            bytes: log.bytes,
                            limit,
                        });
                    }
                    evicted = self.evict(&mut log, upto, "size")?;
                }
            }
        }
        let seq = log.next_seq;
        self.inner.segments.append(seq, encoded)?;
        log.next_seq += 1;
        if log.index.is_empty() {
            log.first_seq = seq;
        }
        log.index.push_back(Entry::new(encoded.len(), &meta));
        log.bytes += len;
        let next = log.next_seq;
        drop(log);
        self.inner.appended.send_replace(next);
        self.delete_segments(evicted)?;
        METRICS
            .wal
            .append_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(seq)
    }

    /// Waits until `seq` is as durable as the mode asks (at once unless `sync`).
    pub async fn wait_durable(&self, seq: u64) -> Result<(), WalError> {
        if self.inner.config.durability != Durability::Sync {
            return Ok(());
        }
        self.inner.flusher.wait_durable(seq).await
    }

    /// Counts a write that is on its way to an insert, until the guard drops. The group
    /// commit waits for it (see `wal/commit.rs`).
    pub fn writing(&self) -> Writing {
        self.inner.flusher.writing()
    }

    /// Reads up to `max_records` records and about `max_bytes`, starting at `from`
    /// (blocking).
    pub fn read_blocking(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<ReadItem>, WalError> {
        // Records below the floor may still be on disk because their segment is not
        // deleted yet. They have left the buffer all the same.
        let (first, end) = {
            let log = self.lock();
            (log.first_seq, log.next_seq)
        };
        let read = self
            .inner
            .segments
            .read(from.max(first), end, max_records, max_bytes)?;
        Ok(read
            .into_iter()
            .map(|(seq, value)| match Record::decode_shared(value) {
                Ok(r) => ReadItem::Record(seq, r),
                Err(e) => ReadItem::Corrupt(seq, e),
            })
            .collect())
    }

    /// [`Wal::read_blocking`] off the async reactor.
    pub async fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<ReadItem>, WalError> {
        let wal = self.clone();
        tokio::task::spawn_blocking(move || wal.read_blocking(from, max_records, max_bytes))
            .await
            .map_err(|_| WalError::Closed)?
    }

    /// The oldest buffered sequence (the next one when the buffer is empty).
    pub fn first_seq(&self) -> u64 {
        self.lock().first_seq
    }

    /// The next sequence to be assigned (everything below it was appended).
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// A receiver that changes whenever records are appended (value = next sequence).
    pub fn subscribe_appended(&self) -> watch::Receiver<u64> {
        self.inner.appended.subscribe()
    }

    /// Makes the cursors match the configured endpoints. A new endpoint's cursor starts at
    /// `start`. The cursor of an endpoint that is no longer configured is dropped, with a
    /// log line. The change is flushed before this returns: a new cursor lost in a crash
    /// would be created again at the next start, at the newest record, and skip every
    /// write acknowledged in between.
    pub fn register_endpoints(&self, names: &[String], start: StartAt) -> Result<(), WalError> {
        let mut log = self.lock();
        let mut changed = false;
        let removed: Vec<String> = log
            .cursors
            .keys()
            .filter(|k| !names.contains(k))
            .cloned()
            .collect();
        for name in removed {
            let at = log.cursors.remove(&name);
            self.inner.cursors.remove(name.as_bytes())?;
            self.inner.meta.remove(protocol_key(&name))?;
            changed = true;
            tracing::info!(endpoint = %name, cursor = ?at, "wal: endpoint no longer configured, its cursor is dropped");
        }
        for name in names {
            if log.cursors.contains_key(name) {
                continue;
            }
            let at = match start {
                _ if self.inner.state_lost => log.first_seq,
                StartAt::Newest => log.next_seq,
                StartAt::Oldest => log.first_seq,
            };
            log.cursors.insert(name.clone(), at);
            self.inner.cursors.insert(name.as_bytes(), &be(at))?;
            changed = true;
            tracing::info!(endpoint = %name, cursor = at, start = ?start, "wal: new endpoint, cursor created");
        }
        drop(log);
        if changed {
            self.flush_sled()?;
        }
        Ok(())
    }

    /// The Remote-Write version an endpoint configured `auto` settled on, if it did.
    pub fn endpoint_protocol(&self, endpoint: &str) -> Result<Option<Version>, WalError> {
        let stored = self.inner.meta.get(protocol_key(endpoint))?;
        Ok(match stored.as_deref() {
            Some(b"1.0") => Some(Version::V1),
            Some(b"2.0") => Some(Version::V2),
            _ => None,
        })
    }

    /// Stores the version an endpoint configured `auto` settled on. It is flushed at once:
    /// it is rare, and a fallback lost in a crash would probe 2.0 again.
    pub fn set_endpoint_protocol(&self, endpoint: &str, version: Version) -> Result<(), WalError> {
        self.inner
            .meta
            .insert(protocol_key(endpoint), version.as_str().as_bytes())?;
        self.flush_sled()
    }

    /// The endpoint's cursor: the next sequence it has not taken.
    pub fn cursor(&self, endpoint: &str) -> Result<u64, WalError> {
        self.lock()
            .cursors
            .get(endpoint)
            .copied()
            .ok_or_else(|| WalError::UnknownEndpoint(endpoint.to_owned()))
    }

    /// Moves the endpoint's cursor from `from` to `to`, but only if it is still at `from`.
    /// An operator or the limits may have moved it meanwhile, and their move wins. Returns
    /// whether it moved. The move is durable with the next flush.
    pub fn advance_cursor(&self, endpoint: &str, from: u64, to: u64) -> Result<bool, WalError> {
        let mut log = self.lock();
        let next = log.next_seq;
        let cursor = log
            .cursors
            .get_mut(endpoint)
            .ok_or_else(|| WalError::UnknownEndpoint(endpoint.to_owned()))?;
        if *cursor != from {
            return Ok(false);
        }
        *cursor = to.min(next);
        self.inner
            .cursors
            .insert(endpoint.as_bytes(), &be(*cursor))?;
        self.inner.cursor_moved.notify_one();
        Ok(true)
    }

    /// An operator's cursor move. Forward (skip) goes at most to the newest record. Back
    /// (replay) goes at most to the oldest buffered record. Returns the move with the
    /// records it passes.
    pub fn move_cursor(&self, endpoint: &str, to: u64) -> Result<CursorMove, WalError> {
        let mut log = self.lock();
        let (first, next) = (log.first_seq, log.next_seq);
        let from = *log
            .cursors
            .get(endpoint)
            .ok_or_else(|| WalError::UnknownEndpoint(endpoint.to_owned()))?;
        if to < first {
            return Err(WalError::NotBuffered {
                requested: to,
                first,
            });
        }
        let to = to.min(next);
        let (lo, hi) = (from.min(to), from.max(to));
        let records = log
            .index
            .iter()
            .skip(lo.saturating_sub(first) as usize)
            .take((hi - lo) as usize)
            .filter(|e| e.len > 0)
            .count() as u64;
        log.cursors.insert(endpoint.to_owned(), to);
        self.inner.cursors.insert(endpoint.as_bytes(), &be(to))?;
        self.inner.cursor_moved.notify_one();
        Ok(CursorMove { from, to, records })
    }

    /// The first buffered sequence that holds a sample at or after `data_ts` (ms). Every
    /// record before it has only older samples. Returns the next sequence when there is
    /// none.
    pub fn seq_at_data_ts(&self, data_ts: i64) -> u64 {
        let log = self.lock();
        log.index
            .iter()
            .position(|e| e.has_samples() && e.max_ts >= data_ts)
            .map_or(log.next_seq, |p| log.first_seq + p as u64)
    }

    /// The first buffered sequence received at or after `received_ms`. Returns the next
    /// sequence when there is none.
    pub fn seq_at(&self, received_ms: u64) -> u64 {
        let log = self.lock();
        let pos = log
            .index
            .iter()
            .position(|e| e.len > 0 && e.received_ms >= received_ms)
            .map_or(log.next_seq, |p| log.first_seq + p as u64);
        pos
    }

    /// Flushes everything to disk now, cursors and metadata included, and marks it durable
    /// (blocking).
    pub fn flush_blocking(&self) -> Result<(), WalError> {
        let target = self.next_seq();
        self.flush_all()?;
        self.inner.flusher.mark_durable(target);
        Ok(())
    }

    /// Flushes sled (cursors, metadata, quarantine) and syncs what sled's flush leaves out
    /// (blocking). See [`crate::disk_sync`].
    pub(super) fn flush_sled(&self) -> Result<(), WalError> {
        self.inner.sync.flush(&self.inner.db)?;
        Ok(())
    }
}

/// The group commit flushes the WAL through these.
impl Flushable for Wal {
    fn next_seq(&self) -> u64 {
        Wal::next_seq(self)
    }

    /// The segments' `fdatasync`. Cursors and metadata reach disk in other ways: sled's
    /// own background flush ([`SLED_FLUSH_MS`]), a clean shutdown
    /// ([`Wal::flush_blocking`]), and the flush before any segment is deleted.
    fn sync(&self) -> Result<(), WalError> {
        Ok(self.inner.segments.sync()?)
    }

    fn flush_all(&self) -> Result<(), WalError> {
        self.sync()?;
        self.flush_sled()
    }
}

#[cfg(test)]
impl Wal {
    /// Flips a byte of record `seq` on disk, behind the WAL's back (for tests).
    pub(crate) fn damage_for_tests(&self, seq: u64, offset: u64) {
        self.inner
            .segments
            .damage(seq, offset)
            .expect("damage a stored record");
    }
}

#[cfg(test)]
impl Inner {
    /// The WAL's sled database.
    pub(crate) fn db_for_tests(&self) -> &sled::Db {
        &self.db
    }
}

/// The `meta` key of an endpoint's settled protocol.
fn protocol_key(endpoint: &str) -> Vec<u8> {
    format!("protocol/{endpoint}").into_bytes()
}

#[cfg(test)]
mod tests {
    use crate::wal::record::tests::snappy_record;
    use crate::wal::{Durability, StartAt, Wal, WalConfig};

    fn open(dir: &std::path::Path) -> Wal {
        Wal::open(WalConfig {
            durability: Durability::None,
            ..WalConfig::for_tests(dir)
        })
        .expect("open wal")
    }

    /// Three buffered records for endpoint `vm`, its cursor at 0, then the WAL closed.
    fn three_buffered(dir: &std::path::Path) {
        let wal = open(dir);
        wal.register_endpoints(&["vm".to_owned()], StartAt::Newest)
            .expect("register");
        for _ in 0..3 {
            wal.insert_all(std::slice::from_ref(&snappy_record()))
                .expect("insert");
        }
        wal.flush_blocking().expect("flush");
    }

    #[test]
    fn records_without_any_cursor_start_every_endpoint_at_the_oldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        three_buffered(dir.path());
        // sled's files gone: the segments stay.
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "segments") {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("remove");
            } else {
                std::fs::remove_file(&path).expect("remove");
            }
        }
        let wal = open(dir.path());
        wal.register_endpoints(&["vm".to_owned()], StartAt::Newest)
            .expect("register");
        assert_eq!(wal.cursor("vm").expect("cursor"), 0, "every record again");
        assert_eq!(wal.read_blocking(0, 10, usize::MAX).expect("read").len(), 3);
    }

    #[test]
    fn a_new_endpoint_beside_a_kept_cursor_starts_where_configured() {
        let dir = tempfile::tempdir().expect("tempdir");
        three_buffered(dir.path());
        let wal = open(dir.path());
        wal.register_endpoints(&["vm".to_owned(), "new".to_owned()], StartAt::Newest)
            .expect("register");
        assert_eq!(wal.cursor("vm").expect("cursor"), 0);
        assert_eq!(wal.cursor("new").expect("cursor"), 3, "at the newest");
    }
}

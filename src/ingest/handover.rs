//! Gapless, overlap-free handover between the sources of a group.
//!
//! Every write of every source (promoted or standby) is held for a short while in a ring
//! per (group, source), bounded in bytes and in data time (`handover/ring.rs`). While a
//! group has more than one source, the rings are files in `<data-dir>/handover`: they cost
//! disk and page cache, not memory, and they survive a restart. The ingest asks the
//! election for a write's role under its group's lock ([`Handover::lock`]), so roles
//! follow the order of the group's writes: an old source's write that arrives after a
//! switch is held as a standby's, never forwarded after the new source's backfill. When
//! the source forwarded for a group changes (expiry, bigger weight, pin, operator
//! failover), the first write of the new source triggers a handover, under that lock:
//!
//! 1. *Where did the old source end?* Its ring holds what it forwarded last; per series,
//!    the last timestamp and the scrape step are learned from it (`handover/cut.rs`),
//!    newest writes first, until they reach a few steps back. Series are matched without
//!    the labels that tell the two sources apart (e.g. a `replica` external label that
//!    reaches the storage). A series the old source did not forward in what was read (or
//!    all of them, when its ring is empty) is cut at the group's newest forwarded sample
//!    plus half the usual step.
//! 2. *Backfill.* The new source's held writes are appended to the WAL in order, in chunks
//!    of a few MiB read from its ring, each trimmed to the samples strictly newer than the
//!    old source's end of that series plus half its step: the storage sees neither a hole
//!    nor a doubled sample at the switch. Only writes that straddle the cut are decoded.
//! 3. *Live trim.* The new source's next live writes are trimmed the same way, until one
//!    is a whole window past the handover point: a write sent before the switch on another
//!    of the sender's connections may still arrive after a later one.
//!
//! A source alone in its group (no other source wrote within the window) holds only a
//! small tail of its forwarded writes, in memory: it would otherwise write every request
//! twice, and the tail is enough for a second source that takes over at once (a bigger
//! weight at start-up) to find the old source's ends at low rates.
//!
//! A hole can still appear when the new source itself missed the data (it was down, or its
//! ring had already dropped it: older than the window or over the byte cap), and for a
//! lone source's tail after a restart (it is in memory).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::lock_api::ArcMutexGuard;
use parking_lot::{Mutex, RawMutex};

use super::decode::{compress, decompress, meta_of};
use super::error::IngestError;
use super::trim::trim;
use crate::election::Change;
use crate::metrics::METRICS;
use crate::wal::{Record, RecordMeta};
use crate::wire::{self, Version, Wanted};

mod cut;
mod ring;

use cut::{Cut, Sides};
use ring::{Bounds, Entry, Ring, RingName};

/// Ring limits.
#[derive(Debug, Clone)]
pub struct HandoverConfig {
    /// Data time held per source (behind its newest sample).
    pub window: Duration,
    /// Bytes held per source (compressed payloads), on disk.
    pub max_bytes_per_source: u64,
    /// Largest decoded payload (the ingest limit).
    pub max_decoded_bytes: u64,
    /// Where the rings' files go.
    pub dir: PathBuf,
}

/// A source alone in its group keeps this share of the byte cap (see the module doc)...
const ALONE_SHARE: u64 = 64;
/// ...and at most this many bytes: its tail is in memory.
const ALONE_MAX_BYTES: u64 = 1 << 20;

/// Rings untouched for this long are dropped.
const FORGET_MS: u64 = 10 * 60 * 1000;

/// Bytes of held writes read and appended per step of a backfill: the WAL's lock and the
/// heap see a backfill a chunk at a time.
const BACKFILL_CHUNK_BYTES: u64 = 4 << 20;

/// The newest backfilled writes whose series ends also move the cut (a sender may send
/// the last of them again, e.g. after a timeout); older ones are not read twice.
const ADVANCE_WRITES: usize = 16;

/// One held write.
#[derive(Debug, Clone)]
pub struct Held {
    /// Compressed payload, as it would be stored.
    pub payload: bytes::Bytes,
    /// Its counts and times.
    pub meta: RecordMeta,
    /// The Remote-Write version of the payload.
    pub protocol: Version,
}

impl Held {
    /// The write as a decoded 1.0 `WriteRequest`, what the cut and the trim read: a 2.0
    /// write is converted (its replica label was stripped at ingest already).
    pub(crate) fn decoded_v1(&self, limit: u64) -> Result<Vec<u8>, IngestError> {
        let raw = decompress(&self.payload, limit)?;
        match self.protocol {
            Version::V1 => Ok(raw),
            Version::V2 => Ok(wire::convert_v2(&raw, Wanted::default(), None, limit)?.1),
        }
    }

    fn has_samples(&self) -> bool {
        self.meta.samples + self.meta.histograms > 0
    }

    fn samples(&self) -> u64 {
        u64::from(self.meta.samples + self.meta.histograms)
    }

    /// A write of `req` received at `received_ms` (tests: times are data times).
    #[cfg(test)]
    pub(crate) fn of_request(req: &crate::proto::WriteRequest, received_ms: u64) -> Held {
        use prost::Message;
        let raw = req.encode_to_vec();
        let s = wire::scan(&raw, Wanted::default()).expect("a valid request");
        Held {
            payload: compress(&raw).expect("snappy"),
            meta: RecordMeta {
                received_ms,
                ..meta_of(&s)
            },
            protocol: Version::V1,
        }
    }
}

/// Per-group forwarding state and rings.
#[derive(Default)]
struct GroupState {
    forwarded: Option<String>,
    /// Ends of the old source's series while the new source's writes still reach back.
    cut: Option<Cut>,
    /// Newest forwarded sample of the group.
    last_ts: Option<i64>,
    /// The rings of the group's sources.
    rings: HashMap<String, Ring>,
}

/// The rings and the per-group handover state. A cheap clone.
#[derive(Clone)]
pub struct Handover {
    config: Arc<HandoverConfig>,
    /// Free space for the rings' files.
    room: Arc<Mutex<ring::Room>>,
    groups: Arc<Mutex<HashMap<String, Arc<Mutex<GroupState>>>>>,
}

/// The value under `key`, inserted empty if missing; the key is only copied then (a lookup
/// per write must not allocate).
fn slot<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

impl Handover {
    /// The rings in `config.dir` as a previous run left them: each group forwards, as
    /// before the restart, the source whose forwarded write is newest. Rings untouched for
    /// longer than they are kept (`now_ms`) are deleted.
    pub fn open(config: HandoverConfig, now_ms: u64) -> io::Result<Handover> {
        let mut groups: HashMap<String, GroupState> = HashMap::new();
        for ring in ring::recover_all(&config.dir)? {
            if now_ms.saturating_sub(ring.last_received_ms) >= FORGET_MS {
                ring.remove();
                continue;
            }
            let state = groups.entry(ring.name.group.clone()).or_default();
            state.rings.insert(ring.name.source.clone(), ring);
        }
        for (group, state) in &mut groups {
            state.restore();
            tracing::info!(group = %group, sources = state.rings.len(), forwarded = ?state.forwarded, "handover: held writes found from the previous run");
        }
        Ok(Handover {
            config: Arc::new(config),
            room: Arc::default(),
            groups: Arc::new(Mutex::new(
                groups
                    .into_iter()
                    .map(|(g, s)| (g, Arc::new(Mutex::new(s))))
                    .collect(),
            )),
        })
    }

    /// Takes the group's lock. Under it the caller asks the election for the write's role,
    /// plans a promoted write, appends the plan to the WAL and records it
    /// ([`Plan::record`]): a handover's backfill lands before any later write of the
    /// group, and a forwarded write is in its ring before the next handover looks.
    ///
    /// The lock is a blocking one, held for the plan and the append (an insert into the
    /// page cache, ~0.1 ms), not for the flush. A handover holds it while it reads, trims
    /// and appends the held writes (see `highlander_handover_duration_seconds`); a write of
    /// the group that comes meanwhile blocks its HTTP worker thread for that long, other
    /// groups' writes on that thread included. Handovers are rare; each is logged with its
    /// duration.
    pub fn lock<'h>(&'h self, group: &'h str) -> GroupGuard<'h> {
        let slot = {
            let mut groups = self.groups.lock();
            slot(&mut groups, group).clone()
        };
        // A panic in a holder (none is expected) leaves the state as far as it got; the
        // lock does not poison.
        GroupGuard {
            handover: self,
            group,
            state: slot.lock_arc(),
        }
    }

    /// Trims one write by the cut.
    fn apply(&self, cut: &Cut, held: Held) -> Result<Applied, IngestError> {
        if held.has_samples() && held.meta.min_ts > cut.max {
            let kept = held.samples();
            return Ok(Applied {
                write: Some(held),
                decoded: None,
                kept,
                trimmed: 0,
            });
        }
        if held.has_samples() && held.meta.max_ts <= cut.min {
            return Ok(Applied {
                write: None,
                decoded: None,
                kept: 0,
                trimmed: held.samples(),
            });
        }
        let raw = held.decoded_v1(self.config.max_decoded_bytes)?;
        let t = trim(&raw, &cut.key, |h| cut.threshold(h))?;
        let write = if t.trimmed == 0 {
            Some(held)
        } else if t.kept == 0 {
            None
        } else {
            let mut meta = meta_of(&wire::scan(&t.raw, Wanted::default())?);
            meta.received_ms = held.meta.received_ms;
            // A trimmed 2.0 write is stored in its 1.0 form.
            Some(Held {
                payload: compress(&t.raw)?,
                meta,
                protocol: Version::V1,
            })
        };
        Ok(Applied {
            write,
            decoded: Some(t.raw),
            kept: t.kept,
            trimmed: t.trimmed,
        })
    }

    /// Where the rings of `group` go, per source.
    fn ring(&self, group: &str, source: &str) -> Ring {
        let name = RingName {
            group: group.to_owned(),
            source: source.to_owned(),
        };
        let dir = ring::ring_dir(&self.config.dir, &name);
        Ring::new(name, dir)
    }
}

impl GroupState {
    /// After a restart: the forwarded source and the group's newest forwarded sample, from
    /// the rings.
    fn restore(&mut self) {
        let newest = |r: &Ring| {
            r.entries()
                .rev()
                .find(|e| e.forwarded)
                .map(|e| e.meta.received_ms)
        };
        self.forwarded = self
            .rings
            .iter()
            .filter_map(|(s, r)| newest(r).map(|t| (t, s)))
            .max()
            .map(|(_, s)| s.clone());
        self.last_ts = self
            .rings
            .values()
            .flat_map(|r| r.entries().filter(|e| e.forwarded && e.meta.samples > 0))
            .map(|e| e.meta.max_ts)
            .max();
    }
}

/// One write trimmed by the cut.
struct Applied {
    /// What is left of it, if anything.
    write: Option<Held>,
    /// `write` decoded, when the trim had to decode it.
    decoded: Option<Vec<u8>>,
    /// Samples and histograms kept.
    kept: u64,
    /// Samples and histograms dropped.
    trimmed: u64,
}

/// A group's forwarding state, locked (see [`Handover::lock`]).
pub struct GroupGuard<'h> {
    handover: &'h Handover,
    group: &'h str,
    state: ArcMutexGuard<RawMutex, GroupState>,
}

impl<'h> GroupGuard<'h> {
    /// Holds a write that is not forwarded: a standby's.
    pub fn hold_standby(&mut self, source: &str, write: &Held) {
        self.hold(source, write, false);
    }

    /// Holds a write of `source` in its ring; `forwarded` says whether it went to the WAL.
    fn hold(&mut self, source: &str, write: &Held, forwarded: bool) {
        let config = &self.handover.config;
        let window_ms = config.window.as_millis() as i64;
        let now = write.meta.received_ms;
        let rings = &mut self.state.rings;
        if now.is_multiple_of(64) {
            let stale: Vec<String> = rings
                .iter()
                .filter(|(_, r)| now.saturating_sub(r.last_received_ms) >= FORGET_MS)
                .map(|(s, _)| s.clone())
                .collect();
            for s in stale {
                if let Some(r) = rings.remove(&s) {
                    r.remove();
                }
            }
        }
        let alone = !rings.iter().any(|(other, r)| {
            other != source && (now.saturating_sub(r.last_received_ms) as i64) < window_ms
        });
        if !rings.contains_key(source) {
            let ring = self.handover.ring(self.group, source);
            rings.insert(source.to_owned(), ring);
        }
        let ring = rings.get_mut(source).expect("inserted above");
        let bounds = Bounds {
            max_bytes: if alone {
                (config.max_bytes_per_source / ALONE_SHARE).min(ALONE_MAX_BYTES)
            } else {
                config.max_bytes_per_source
            },
            window_ms,
            on_disk: !alone,
        };
        ring.push(write, forwarded, bounds, &mut self.handover.room.lock());
    }

    /// Plans the appends for a promoted write of `source`: a handover when the group's
    /// forwarded source changes, then the live write, trimmed while it reaches back behind
    /// the handover point. [`Plan::next_records`] hands them out in order.
    pub fn plan<'g>(
        &'g mut self,
        source: &'g str,
        live: Held,
    ) -> Result<Plan<'g, 'h>, IngestError> {
        let started = Instant::now();
        let handover = if self.state.forwarded.as_deref() == Some(source) {
            None
        } else {
            self.hand_over(source, &live)?
        };
        Ok(Plan {
            guard: self,
            source,
            handover,
            started,
            live: Some(live),
            forwarded: None,
        })
    }

    /// The handover to `source`: the cut from the old source, and `source`'s held writes
    /// to backfill. `live` only helps to learn the cut; it is planned afterwards.
    fn hand_over(&mut self, source: &str, live: &Held) -> Result<Option<Backfill>, IngestError> {
        let Some(old) = self.state.forwarded.replace(source.to_owned()) else {
            return Ok(None);
        };
        let config = &self.handover.config;
        // Only what the old source forwarded counts: after a takeover it keeps writing,
        // as a standby, data that never reached the storage.
        let (old_name, old_writes) = match self.state.rings.get(&old) {
            Some(r) => (
                r.name.clone(),
                r.entries().rev().filter(|e| e.forwarded).cloned().collect(),
            ),
            None => (
                RingName {
                    group: self.group.to_owned(),
                    source: old.clone(),
                },
                Vec::new(),
            ),
        };
        let (new_name, new_writes): (RingName, VecDeque<Entry>) = match self.state.rings.get(source)
        {
            Some(r) => (r.name.clone(), r.entries().cloned().collect()),
            None => (
                RingName {
                    group: self.group.to_owned(),
                    source: source.to_owned(),
                },
                VecDeque::new(),
            ),
        };
        let new_newest: Vec<Held> = new_writes
            .iter()
            .rev()
            .take(cut::LABEL_SAMPLE_WRITES)
            .filter_map(|e| e.read(&new_name))
            .chain([live.clone()])
            .collect();
        let cut = Cut::learn(&Sides {
            old: &old_writes,
            old_name: &old_name,
            new: &new_newest,
            last_ts: self.state.last_ts,
            max_decoded_bytes: config.max_decoded_bytes,
        })?;
        let read_old = cut.as_ref().map_or(0, |c| c.old_writes_read);
        self.state.cut = cut;
        let pending = if self.state.cut.is_some() {
            new_writes
        } else {
            VecDeque::new()
        };
        Ok(Some(Backfill {
            from: old,
            name: new_name,
            total: pending.len(),
            pending,
            backfilled: 0,
            trimmed: 0,
            writes: 0,
            old_writes_read: read_old,
            old_last_ts: self.state.last_ts,
            first_ts: None,
            done: false,
        }))
    }
}

/// A handover in progress: the new source's held writes still to append.
struct Backfill {
    /// The old source.
    from: String,
    /// The new source's ring.
    name: RingName,
    /// Its held writes not yet appended, oldest first.
    pending: VecDeque<Entry>,
    /// How many there were.
    total: usize,
    /// Samples appended, and dropped as overlap.
    backfilled: u64,
    trimmed: u64,
    /// Writes appended.
    writes: usize,
    /// Writes of the old source read to learn the cut.
    old_writes_read: usize,
    /// The newest sample the group forwarded before the handover.
    old_last_ts: Option<i64>,
    /// The oldest sample of the new source's first appended write.
    first_ts: Option<i64>,
    /// Whether it was logged.
    done: bool,
}

/// The appends for one promoted write, in order: a handover's backfill, then the live
/// write. Ask for them with [`Plan::next_records`] until it says `None`, append each
/// batch, then [`Plan::record`] the outcome.
pub struct Plan<'g, 'h> {
    guard: &'g mut GroupGuard<'h>,
    source: &'g str,
    handover: Option<Backfill>,
    started: Instant,
    /// The live write, until it is planned.
    live: Option<Held>,
    /// The live write as forwarded (trimmed), once planned.
    forwarded: Option<Held>,
}

impl Plan<'_, '_> {
    /// The next records to append, at most about 4 MiB of held writes at
    /// a time; `None` once everything is handed out.
    pub fn next_records(&mut self) -> Result<Option<Vec<Record>>, IngestError> {
        let mut out: Vec<Held> = Vec::new();
        if let Some(b) = self.handover.as_mut().filter(|b| !b.done) {
            let state = &mut self.guard.state;
            let cut = state.cut.as_mut();
            let mut bytes = 0u64;
            if let Some(cut) = cut {
                while bytes < BACKFILL_CHUNK_BYTES {
                    let Some(entry) = b.pending.pop_front() else {
                        break;
                    };
                    let advance = b.pending.len() < ADVANCE_WRITES;
                    if let Some(kept) = backfill_one(self.guard.handover, cut, b, &entry, advance)?
                    {
                        bytes += kept.payload.len() as u64;
                        out.push(kept);
                    }
                }
            }
            if b.pending.is_empty() {
                b.done = true;
                self.log_handover();
            }
        }
        if out.is_empty() {
            if let Some(live) = self.live.take() {
                self.forwarded = self.plan_live(live)?;
                out.extend(self.forwarded.clone());
            }
        }
        for h in out.iter().filter(|h| h.has_samples()) {
            let last = &mut self.guard.state.last_ts;
            *last = Some(last.map_or(h.meta.max_ts, |l| l.max(h.meta.max_ts)));
        }
        if out.is_empty() {
            return Ok(None);
        }
        let group = self.guard.group;
        Ok(Some(
            out.into_iter()
                .map(|h| Record {
                    group: group.to_owned(),
                    source: self.source.to_owned(),
                    meta: h.meta,
                    payload: h.payload,
                    protocol: h.protocol,
                })
                .collect(),
        ))
    }

    /// The live write trimmed by the cut, if one is in force.
    fn plan_live(&mut self, live: Held) -> Result<Option<Held>, IngestError> {
        let window_ms = self.guard.handover.config.window.as_millis() as i64;
        let state = &mut self.guard.state;
        Ok(match state.cut.as_ref() {
            Some(cut) if live.has_samples() && live.meta.min_ts > cut.max => {
                // Writes of the new source sent before this one may still be on their way
                // (Prometheus sends shards in parallel): the cut stays for a window.
                if live.meta.min_ts > cut.max.saturating_add(window_ms) {
                    state.cut = None;
                }
                Some(live)
            }
            Some(cut) => {
                let applied = self.guard.handover.apply(cut, live)?;
                METRICS.handover.trimmed.inc_by(applied.trimmed);
                applied.write
            }
            None => Some(live),
        })
    }

    /// Writes the handover's log line and metrics.
    fn log_handover(&self) {
        let Some(b) = &self.handover else {
            return;
        };
        let took = self.started.elapsed();
        METRICS.handover.total.inc();
        METRICS.handover.backfilled.inc_by(b.backfilled);
        METRICS.handover.trimmed.inc_by(b.trimmed);
        METRICS.handover.duration.observe(took.as_secs_f64());
        let told_apart: Vec<String> = self
            .guard
            .state
            .cut
            .as_ref()
            .map(|c| {
                c.key
                    .skipped()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let (group, source, old) = (self.guard.group, self.source, &b.from);
        let (backfilled, trimmed) = (b.backfilled, b.trimmed);
        tracing::info!(
            group = %group,
            from = %old,
            to = %source,
            backfilled_samples = backfilled,
            backfilled_writes = b.writes,
            held_writes = b.total,
            trimmed_samples = trimmed,
            old_writes_read = b.old_writes_read,
            told_apart_by = ?told_apart,
            took_ms = took.as_secs_f64() * 1000.0,
            "handover : '{source}' takes over from '{old}' (backfilled {backfilled} samples, trimmed {trimmed})"
        );
    }

    /// Records the outcome once the records were appended (`stored`) or not: the ring
    /// keeps what was forwarded (the trimmed live write) apart from what was not. Returns
    /// the handover this write made, for the group's history.
    pub fn record(self, received: &Held, stored: bool) -> Option<Change> {
        if let Some(b) = self.handover.as_ref().filter(|b| !b.done) {
            tracing::warn!(group = %self.guard.group, from = %b.from, to = %self.source, left = b.pending.len(), "handover: the backfill stopped part way (the append failed); the rest of the held writes is not forwarded");
        }
        let summary = self.handover.as_ref().filter(|_| stored).map(|b| {
            let live_ts = self
                .forwarded
                .as_ref()
                .filter(|h| h.has_samples())
                .map(|h| h.meta.min_ts);
            // Nothing of the new source forwarded yet although it sent samples: the cut
            // trimmed them all, so its data reaches back over the old source's end.
            let overlapped = b.trimmed > 0 || received.has_samples();
            let gap_ms = match (b.old_last_ts, b.first_ts.or(live_ts)) {
                (Some(old), Some(new)) => Some(new.saturating_sub(old).max(0) as u64),
                (Some(_), None) if overlapped => Some(0),
                _ => None,
            };
            Change::Handover {
                group: self.guard.group.to_owned(),
                source: self.source.to_owned(),
                from: b.from.clone(),
                backfilled: b.backfilled,
                trimmed: b.trimmed,
                gap_ms,
                took_ms: self.started.elapsed().as_millis() as u64,
            }
        });
        let (source, forwarded) = (self.source, self.forwarded.filter(|_| stored));
        match forwarded {
            Some(live) => self.guard.hold(source, &live, true),
            None => self.guard.hold(source, received, false),
        }
        summary
    }
}

/// Reads one held write of the new source and trims it by the cut; the newest ones also
/// move the cut.
fn backfill_one(
    handover: &Handover,
    cut: &mut Cut,
    b: &mut Backfill,
    entry: &Entry,
    advance: bool,
) -> Result<Option<Held>, IngestError> {
    let skip_whole = entry.meta.samples + entry.meta.histograms > 0 && entry.meta.max_ts <= cut.min;
    if skip_whole {
        b.trimmed += u64::from(entry.meta.samples + entry.meta.histograms);
        return Ok(None);
    }
    let Some(held) = entry.read(&b.name) else {
        return Ok(None);
    };
    let applied = handover.apply(cut, held)?;
    b.backfilled += applied.kept;
    b.trimmed += applied.trimmed;
    let Some(kept) = applied.write else {
        return Ok(None);
    };
    if advance || applied.decoded.is_some() {
        let decoded = match applied.decoded {
            Some(raw) => raw,
            None => kept.decoded_v1(handover.config.max_decoded_bytes)?,
        };
        cut.advance(&decoded)?;
    }
    b.writes += 1;
    if kept.has_samples() {
        b.first_ts.get_or_insert(kept.meta.min_ts);
    }
    Ok(Some(kept))
}

#[cfg(test)]
mod tests;

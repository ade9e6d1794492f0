//! Gapless, overlap-free handover between the sources of a group.
//!
//! Every write of every source (promoted or standby) is held for a short while in a ring
//! per (group, source), bounded in bytes and in data time. The ingest asks the election
//! for a write's role under its group's lock ([`Handover::lock`]), so roles follow the
//! order of the group's writes: an old source's write that arrives after a switch is held
//! as a standby's, never forwarded after the new source's backfill. When the source
//! forwarded for a group
//! changes (expiry, bigger weight, pin, operator failover), the first write of the new
//! source triggers a handover, under that lock:
//!
//! 1. *Where did the old source end?* Its ring holds what it forwarded last; per series,
//!    the last timestamp and the scrape step are learned from it (`handover/cut.rs`). Series are
//!    matched without the labels that tell the two sources apart (e.g. a `replica`
//!    external label that reaches the storage). A series the old source did not forward
//!    in the ring (or all of them, after a restart) is cut at the group's newest
//!    forwarded sample plus half the usual step.
//! 2. *Backfill.* The new source's held writes are appended to the WAL in order, each
//!    trimmed to the samples strictly newer than the old source's end of that series plus
//!    half its step: the storage sees neither a hole nor a doubled sample at the switch.
//! 3. *Live trim.* The new source's next live writes are trimmed the same way, until one
//!    is a whole window past the handover point: a write sent before the switch on another
//!    of the sender's connections may still arrive after a later one.
//!
//! A source alone in its group (no other source wrote within the window) holds only a
//! small tail of its forwarded writes (1/64 of the byte cap): at full rate a ring
//! costs its whole byte cap, and the tail is enough for a second source that takes over
//! at once (a bigger weight at start-up) to find the old source's ends at low rates.
//!
//! A hole can still appear when the new source itself missed the data (it was down, or its
//! ring had already dropped it: older than the window or over the byte cap), and after a
//! restart of highlander (rings are in memory).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::lock_api::ArcMutexGuard;
use parking_lot::{Mutex, RawMutex};

use super::decode::{compress, decompress, meta_of};
use super::error::IngestError;
use super::trim::trim;
use super::wire::{self, Wanted};
use crate::metrics::METRICS;
use crate::wal::{Record, RecordMeta};

mod cut;

use cut::{Cut, Sides};

/// Ring limits.
#[derive(Debug, Clone, Copy)]
pub struct HandoverConfig {
    /// Data time held per source (behind its newest sample).
    pub window: Duration,
    /// Bytes held per source (compressed payloads).
    pub max_bytes_per_source: u64,
    /// Largest decoded payload (the ingest limit).
    pub max_decoded_bytes: u64,
}

/// A source alone in its group keeps this share of the byte cap (see the module doc).
const ALONE_SHARE: u64 = 64;

/// One held write.
#[derive(Debug, Clone)]
pub struct Held {
    /// Compressed payload, as it would be stored.
    pub payload: Bytes,
    /// Its counts and times.
    pub meta: RecordMeta,
}

impl Held {
    fn has_samples(&self) -> bool {
        self.meta.samples + self.meta.histograms > 0
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
        }
    }
}

#[derive(Default)]
struct Ring {
    /// Writes, each with whether it was forwarded (promoted) or dropped (standby).
    held: VecDeque<(Held, bool)>,
    bytes: u64,
    last_received_ms: u64,
}

impl Ring {
    /// Drops the oldest writes until the ring is within `max_bytes` and `window_ms` of
    /// data time behind `newest`; the newest write stays whatever its size.
    fn bound(&mut self, newest: &Held, max_bytes: u64, window_ms: i64) {
        while let Some((front, _)) = self.held.front() {
            // Age in data time where both have samples, else in receive time.
            let over_bytes = self.bytes > max_bytes && self.held.len() > 1;
            let too_old = if newest.has_samples() && front.has_samples() {
                front.meta.max_ts < newest.meta.max_ts.saturating_sub(window_ms)
            } else {
                (front.meta.received_ms as i64)
                    < (newest.meta.received_ms as i64).saturating_sub(window_ms)
            };
            if !over_bytes && !too_old {
                break;
            }
            let (gone, _) = self.held.pop_front().expect("front exists");
            self.bytes -= gone.payload.len() as u64;
        }
    }
}

/// Per-group forwarding state.
#[derive(Default)]
struct GroupState {
    forwarded: Option<String>,
    /// Ends of the old source's series while the new source's writes still reach back.
    cut: Option<Cut>,
    /// Newest forwarded sample of the group.
    last_ts: Option<i64>,
}

/// What to append for one promoted write, in order.
pub struct Plan {
    /// The new source's held writes, trimmed (empty unless this write is a handover).
    pub backfill: Vec<Held>,
    /// The live write, trimmed; `None` when nothing of it is newer than the handover point.
    pub live: Option<Held>,
}

impl Plan {
    /// The WAL records of the plan, in order.
    pub fn records(&self, group: &str, source: &str) -> Vec<Record> {
        self.backfill
            .iter()
            .chain(self.live.iter())
            .map(|h| Record {
                group: group.to_owned(),
                source: source.to_owned(),
                meta: h.meta,
                payload: h.payload.clone(),
            })
            .collect()
    }
}

/// The rings and the per-group handover state. A cheap clone.
#[derive(Clone)]
pub struct Handover {
    config: HandoverConfig,
    /// Per group, per source.
    rings: Arc<Mutex<HashMap<String, HashMap<String, Ring>>>>,
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

/// Rings untouched for this long are dropped.
const FORGET_MS: u64 = 10 * 60 * 1000;

impl Handover {
    /// Empty rings.
    pub fn new(config: HandoverConfig) -> Self {
        Handover {
            config,
            rings: Arc::default(),
            groups: Arc::default(),
        }
    }

    /// Takes the group's lock. Under it the caller asks the election for the write's role,
    /// plans a promoted write, appends the plan to the WAL and records it
    /// ([`GroupGuard::record`]): a handover's backfill lands before any later write of the
    /// group, and a forwarded write is in its ring before the next handover looks.
    ///
    /// The lock is a blocking one, held for the plan and the append (an insert into the
    /// page cache, ~0.1 ms), not for the flush. A handover holds it while it trims the
    /// held writes (see `highlander_handover_duration_seconds`); a write of the group that
    /// comes meanwhile blocks its HTTP worker thread for that long, other groups' writes
    /// on that thread included. Handovers are rare; each is logged with its duration.
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

    /// Holds a write of `source` in its ring; `forwarded` says whether it went to the WAL.
    fn hold(&self, group: &str, source: &str, write: &Held, forwarded: bool) {
        let window_ms = self.config.window.as_millis() as i64;
        let mut rings = self.rings.lock();
        let now = write.meta.received_ms;
        if now % 64 == 0 {
            rings.retain(|_, sources| {
                sources.retain(|_, r| now.saturating_sub(r.last_received_ms) < FORGET_MS);
                !sources.is_empty()
            });
        }
        let sources = slot(&mut rings, group);
        let alone = !sources.iter().any(|(other, r)| {
            other != source && (now.saturating_sub(r.last_received_ms) as i64) < window_ms
        });
        let ring = slot(sources, source);
        ring.last_received_ms = now;
        let max_bytes = if alone {
            self.config.max_bytes_per_source / ALONE_SHARE
        } else {
            self.config.max_bytes_per_source
        };
        ring.bytes += write.payload.len() as u64;
        ring.held.push_back((write.clone(), forwarded));
        ring.bound(write, max_bytes, window_ms);
    }

    /// The source's held writes, all of them or only those it forwarded.
    fn held(&self, group: &str, source: &str, only_forwarded: bool) -> Vec<Held> {
        let rings = self.rings.lock();
        rings
            .get(group)
            .and_then(|sources| sources.get(source))
            .map(|r| {
                r.held
                    .iter()
                    .filter(|(_, fwd)| *fwd || !only_forwarded)
                    .map(|(h, _)| h.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Trims one write by the cut.
    fn apply(&self, cut: &Cut, held: Held) -> Result<Applied, IngestError> {
        if held.has_samples() && held.meta.min_ts > cut.max {
            let kept = u64::from(held.meta.samples + held.meta.histograms);
            return Ok(Applied {
                write: Some(held),
                decoded: None,
                kept,
                trimmed: 0,
            });
        }
        let raw = decompress(&held.payload, self.config.max_decoded_bytes)?;
        let t = trim(&raw, &cut.key, |h| cut.threshold(h))?;
        let write = if t.trimmed == 0 {
            Some(held)
        } else if t.kept == 0 {
            None
        } else {
            let mut meta = meta_of(&wire::scan(&t.raw, Wanted::default())?);
            meta.received_ms = held.meta.received_ms;
            Some(Held {
                payload: compress(&t.raw)?,
                meta,
            })
        };
        Ok(Applied {
            write,
            decoded: Some(t.raw),
            kept: t.kept,
            trimmed: t.trimmed,
        })
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

impl GroupGuard<'_> {
    /// Holds a write that is not forwarded: a standby's.
    pub fn hold_standby(&self, source: &str, write: &Held) {
        self.handover.hold(self.group, source, write, false);
    }

    /// Plans the appends for a promoted write of `source`: a handover when the group's
    /// forwarded source changes, then the live write, trimmed while it reaches back behind
    /// the handover point.
    pub fn plan(&mut self, source: &str, live: Held) -> Result<Plan, IngestError> {
        let backfill = if self.state.forwarded.as_deref() == Some(source) {
            Vec::new()
        } else {
            self.hand_over(source, &live)?
        };
        let window_ms = self.handover.config.window.as_millis() as i64;
        let live = match self.state.cut.as_ref() {
            Some(cut) if live.has_samples() && live.meta.min_ts > cut.max => {
                // Writes of the new source sent before this one may still be on their way
                // (Prometheus sends shards in parallel): the cut stays for a window.
                if live.meta.min_ts > cut.max.saturating_add(window_ms) {
                    self.state.cut = None;
                }
                Some(live)
            }
            Some(cut) => {
                let applied = self.handover.apply(cut, live)?;
                METRICS.handover.trimmed.inc_by(applied.trimmed);
                applied.write
            }
            None => Some(live),
        };
        for h in backfill.iter().chain(live.iter()) {
            if h.has_samples() {
                let last = self
                    .state
                    .last_ts
                    .map_or(h.meta.max_ts, |l| l.max(h.meta.max_ts));
                self.state.last_ts = Some(last);
            }
        }
        Ok(Plan { backfill, live })
    }

    /// Records a promoted write after its plan was appended (`stored`): the ring keeps
    /// what was forwarded (the trimmed live write) apart from what was not.
    pub fn record(&self, source: &str, received: &Held, plan: &Plan, stored: bool) {
        match plan.live.as_ref().filter(|_| stored) {
            Some(live) => self.handover.hold(self.group, source, live, true),
            None => self.handover.hold(self.group, source, received, false),
        }
    }

    /// The handover to `source`: the cut from the old source, and `source`'s held writes
    /// trimmed by it. `live` only helps to learn the cut; it is planned by the caller.
    fn hand_over(&mut self, source: &str, live: &Held) -> Result<Vec<Held>, IngestError> {
        let started = Instant::now();
        let Some(old) = self.state.forwarded.replace(source.to_owned()) else {
            return Ok(Vec::new());
        };
        let h = self.handover;
        // Only what the old source forwarded counts: after a takeover it keeps writing,
        // as a standby, data that never reached the storage.
        let old_writes = h.held(self.group, &old, true);
        let new_writes = h.held(self.group, source, false);
        let new_side: Vec<&Held> = new_writes.iter().chain([live]).collect();
        let mut cut = Cut::learn(&Sides {
            old: &old_writes,
            new: &new_side,
            last_ts: self.state.last_ts,
            max_decoded_bytes: h.config.max_decoded_bytes,
        })?;
        let (mut backfill, mut backfilled, mut trimmed) = (Vec::new(), 0u64, 0u64);
        if let Some(cut) = &mut cut {
            for held in new_writes {
                let applied = h.apply(cut, held)?;
                backfilled += applied.kept;
                trimmed += applied.trimmed;
                if let Some(kept) = applied.write {
                    let decoded = match applied.decoded {
                        Some(raw) => raw,
                        None => decompress(&kept.payload, h.config.max_decoded_bytes)?,
                    };
                    cut.advance(&decoded)?;
                    backfill.push(kept);
                }
            }
        }
        let told_apart: Vec<String> = cut
            .as_ref()
            .map(|c| {
                c.key
                    .skipped()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        self.state.cut = cut;
        let took = started.elapsed();
        METRICS.handover.total.inc();
        METRICS.handover.backfilled.inc_by(backfilled);
        METRICS.handover.trimmed.inc_by(trimmed);
        METRICS.handover.duration.observe(took.as_secs_f64());
        let group = self.group;
        tracing::info!(
            group = %group,
            from = %old,
            to = %source,
            backfilled_samples = backfilled,
            backfilled_writes = backfill.len(),
            trimmed_samples = trimmed,
            told_apart_by = ?told_apart,
            took_ms = took.as_secs_f64() * 1000.0,
            "handover : '{source}' takes over from '{old}' (backfilled {backfilled} samples, trimmed {trimmed})"
        );
        Ok(backfill)
    }
}

#[cfg(test)]
mod tests;

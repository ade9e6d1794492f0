//! Gapless, overlap-free handover between the sources of a group.
//!
//! Every write of every source (promoted or standby) is held for a short while in a ring
//! per (group, source), bounded in bytes and in data time. When the source forwarded for a
//! group changes (expiry, bigger weight, pin, operator failover), the first write of the
//! new source triggers a handover, under the group's lock:
//!
//! 1. *Where did the old source end?* Its ring holds what it forwarded last; per series,
//!    the last timestamp and the scrape step are learned from it
//!    ([`super::trim::learn_ends`]). Without it (nothing held, e.g. after a restart), the
//!    group's newest forwarded timestamp serves for every series.
//! 2. *Backfill.* The new source's held writes are appended to the WAL in order, each
//!    trimmed to the samples strictly newer than the old source's end of that series plus
//!    half its step: the storage sees neither a hole nor a doubled sample at the switch.
//! 3. *Live trim.* The new source's next live writes are trimmed the same way until one is
//!    entirely past the handover point.
//!
//! A source alone in its group (no other source wrote within the window) holds nothing:
//! there is nobody to hand over to, and at full rate a ring costs its whole byte cap. When
//! a second source appears both start holding; a handover within the first window after
//! that may find the old source's ring short, and series it does not cover fall back to
//! the group's newest forwarded timestamp (as after a restart).
//!
//! A hole can still appear when the new source itself missed the data (it was down, or its
//! ring had already dropped it: older than the window or over the byte cap), and after a
//! restart of highlander (rings are in memory).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::decode::{compress, decompress, meta_of};
use super::error::IngestError;
use super::trim::{learn_ends, trim};
use super::wire::{self, Wanted};
use crate::metrics::METRICS;
use crate::wal::RecordMeta;

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
}

#[derive(Default)]
struct Ring {
    /// Writes, each with whether it was forwarded (promoted) or dropped (standby).
    held: VecDeque<(Held, bool)>,
    bytes: u64,
    last_received_ms: u64,
}

/// Per-group forwarding state.
#[derive(Default)]
pub struct GroupState {
    forwarded: Option<String>,
    /// Ends of the old source's series while the new source's writes still reach back.
    cut: Option<Cut>,
    /// Newest forwarded sample of the group.
    last_ts: Option<i64>,
}

struct Cut {
    /// Per series: forward only samples strictly newer than this.
    thresholds: HashMap<u64, i64>,
    /// Applies to series the old source did not send (e.g. nothing was held).
    fallback: Option<i64>,
    /// The largest threshold: a write entirely past it needs no trimming.
    max: i64,
}

impl Cut {
    fn threshold(&self, series: u64) -> Option<i64> {
        self.thresholds.get(&series).copied().or(self.fallback)
    }

    /// After forwarding `raw`, nothing at or before its samples may follow, per series
    /// (guards against a sender re-sending what was backfilled).
    fn advance(&mut self, raw: &[u8]) -> Result<(), IngestError> {
        let mut ends = HashMap::new();
        learn_ends(raw, &mut ends)?;
        for (series, end) in ends {
            let t = self.thresholds.entry(series).or_insert(end.last);
            *t = (*t).max(end.last);
            self.max = self.max.max(*t);
        }
        Ok(())
    }
}

/// What to append for one promoted write, in order, while holding the group's lock.
pub struct Plan {
    /// The new source's held writes, trimmed (empty unless this write is a handover).
    pub backfill: Vec<Held>,
    /// The live write, trimmed; `None` when nothing of it is newer than the handover point.
    pub live: Option<Held>,
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

    /// Holds a write of any source (call after planning, so the live write is not part of
    /// its own backfill); `forwarded` says whether it went to the WAL.
    pub fn hold(&self, group: &str, source: &str, write: &Held, forwarded: bool) {
        let window_ms = self.config.window.as_millis() as i64;
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
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
        if alone {
            ring.held.clear();
            ring.bytes = 0;
            return;
        }
        ring.bytes += write.payload.len() as u64;
        ring.held.push_back((write.clone(), forwarded));
        let newest = write.meta.max_ts;
        while let Some((front, _)) = ring.held.front() {
            // Keep the newest write whatever its size; age in data time where both have
            // samples, else in receive time.
            let over_bytes = ring.bytes > self.config.max_bytes_per_source && ring.held.len() > 1;
            let too_old = if write.has_samples() && front.has_samples() {
                front.meta.max_ts < newest.saturating_sub(window_ms)
            } else {
                (front.meta.received_ms as i64) < (now as i64).saturating_sub(window_ms)
            };
            if !over_bytes && !too_old {
                break;
            }
            let (gone, _) = ring.held.pop_front().expect("front exists");
            ring.bytes -= gone.payload.len() as u64;
        }
    }

    /// The source's held writes, all of them or only those it forwarded.
    fn held(&self, group: &str, source: &str, only_forwarded: bool) -> Vec<Held> {
        let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
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

    fn group(&self, group: &str) -> Arc<Mutex<GroupState>> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        slot(&mut groups, group).clone()
    }

    /// Plans the appends for a promoted write of `source` (a handover when the group's
    /// forwarded source changes, then the live write, trimmed while it reaches back behind
    /// the handover point) and runs `append` on the plan, all under the group's lock: a
    /// handover's backfill lands before any later write of the group, and a forwarded
    /// write is in its ring before the next handover looks.
    ///
    /// The lock is a blocking one, held for the plan and the append: an insert into the
    /// page cache, ~0.1 ms. An async lock made the next writer's task its owner from the
    /// release until that task's thread polled it again, often after a whole decode: at
    /// full load writes waited 0.3–0.8 ms for it, and A/B pairs gave 3–8 % more samples/s
    /// without it. The price: a handover holds it while it trims the held writes (see
    /// `highlander_handover_duration_seconds`), and a write of the group that comes
    /// meanwhile blocks its HTTP worker thread for that long, other groups' writes on that
    /// thread included. Handovers are rare; each is logged with its duration.
    pub fn forward<R>(
        &self,
        group: &str,
        source: &str,
        live: Held,
        append: impl FnOnce(&Plan) -> R,
    ) -> Result<R, IngestError> {
        let slot = self.group(group);
        // A panic in here (none is expected) leaves the state as far as it got, as with
        // the async lock before, which did not poison: the lock stays usable.
        let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        let mut backfill = Vec::new();
        if guard.forwarded.as_deref() != Some(source) {
            let started = Instant::now();
            let old = guard.forwarded.replace(source.to_owned());
            if let Some(old) = old {
                let cut = self.cut(group, &old, guard.last_ts)?;
                let (mut backfilled, mut trimmed) = (0u64, 0u64);
                let mut cut = cut;
                if let Some(cut) = &mut cut {
                    for held in self.held(group, source, false) {
                        let (kept, k, t) = self.apply(cut, held)?;
                        backfilled += k;
                        trimmed += t;
                        if let Some(kept) = kept {
                            cut.advance(&decompress(
                                &kept.payload,
                                self.config.max_decoded_bytes,
                            )?)?;
                            backfill.push(kept);
                        }
                    }
                }
                guard.cut = cut;
                let took = started.elapsed();
                METRICS.handovers.inc();
                METRICS.handover_backfilled.inc_by(backfilled);
                METRICS.handover_trimmed.inc_by(trimmed);
                METRICS.handover_duration.observe(took.as_secs_f64());
                tracing::info!(
                    group = %group,
                    from = %old,
                    to = %source,
                    backfilled_samples = backfilled,
                    backfilled_writes = backfill.len(),
                    trimmed_samples = trimmed,
                    took_ms = took.as_secs_f64() * 1000.0,
                    "handover : '{source}' takes over from '{old}' (backfilled {backfilled} samples, trimmed {trimmed})"
                );
            }
        }
        let live = match guard.cut.as_ref() {
            Some(cut) if live.has_samples() && live.meta.min_ts > cut.max => {
                guard.cut = None;
                Some(live)
            }
            Some(cut) => {
                let (kept, _, t) = self.apply(cut, live)?;
                METRICS.handover_trimmed.inc_by(t);
                kept
            }
            None => Some(live),
        };
        for h in backfill.iter().chain(live.iter()) {
            if h.has_samples() {
                guard.last_ts = Some(
                    guard
                        .last_ts
                        .map_or(h.meta.max_ts, |l| l.max(h.meta.max_ts)),
                );
            }
        }
        Ok(append(&Plan { backfill, live }))
    }

    /// Where the old source's series ended.
    fn cut(
        &self,
        group: &str,
        old: &str,
        last_ts: Option<i64>,
    ) -> Result<Option<Cut>, IngestError> {
        let mut ends = HashMap::new();
        // Only what the old source forwarded counts: after a takeover it keeps writing,
        // as a standby, data that never reached the storage.
        for held in self.held(group, old, true) {
            let raw = decompress(&held.payload, self.config.max_decoded_bytes)?;
            learn_ends(&raw, &mut ends)?;
        }
        if ends.is_empty() && last_ts.is_none() {
            return Ok(None);
        }
        let fallback = if ends.is_empty() { last_ts } else { None };
        let thresholds: HashMap<u64, i64> =
            ends.into_iter().map(|(k, e)| (k, e.threshold())).collect();
        let max = thresholds
            .values()
            .copied()
            .chain(fallback)
            .max()
            .unwrap_or(i64::MIN);
        Ok(Some(Cut {
            thresholds,
            fallback,
            max,
        }))
    }

    /// Trims one write by the cut; returns it (if anything is left), kept and trimmed counts.
    fn apply(&self, cut: &Cut, held: Held) -> Result<(Option<Held>, u64, u64), IngestError> {
        if held.has_samples() && held.meta.min_ts > cut.max {
            let n = u64::from(held.meta.samples + held.meta.histograms);
            return Ok((Some(held), n, 0));
        }
        let raw = decompress(&held.payload, self.config.max_decoded_bytes)?;
        let t = trim(&raw, |h| cut.threshold(h))?;
        if t.trimmed == 0 {
            return Ok((Some(held), t.kept, 0));
        }
        if t.kept == 0 {
            return Ok((None, 0, t.trimmed));
        }
        let mut meta = meta_of(&wire::scan(&t.raw, Wanted::default())?);
        meta.received_ms = held.meta.received_ms;
        Ok((
            Some(Held {
                payload: compress(&t.raw)?,
                meta,
            }),
            t.kept,
            t.trimmed,
        ))
    }
}

#[cfg(test)]
mod tests;

//! `highlander-bench pair`: what a failover between two sources of one HA group left at
//! the sink: lost samples, the hole at the switch and the overlap.
//!
//! Two generators sent the same series to the relay, source `a` (promoted first) and
//! source `b` (standby until `a` goes silent). Their acknowledgement logs name every
//! acknowledged request with its status: 204 = forwarded, 202 = held as a standby's. Both
//! take their timestamps from the wall clock, so a sample is (series, timestamp) and the
//! two sources' samples of a series differ. Rebuilding the workload gives the series of
//! every request; the sink's `POST /check?bits` says which samples it received.
//!
//! Per series, `a`'s end is its newest 204 timestamp. Then:
//!
//! - **lost**: `a`'s 204 samples that never arrived, and `b`'s 204 samples newer than
//!   `a`'s end that never arrived (a 204 sample of `b` at or behind `a`'s end may be
//!   trimmed on purpose: `a` covered that time).
//! - **hole**: `b`'s 202 samples newer than `a`'s end that never arrived (the handover
//!   backfills them from `b`'s ring, unless the ring no longer held them), and the
//!   largest span from `a`'s end to such a sample. The relay cuts `b` at `a`'s end plus
//!   half a step (a sample that close to `a`'s last one is redundant), so those within
//!   half a step of `a`'s end are also counted apart.
//! - **overlap**: `b`'s samples that arrived although they are at or behind `a`'s newest
//!   delivered sample of that series.
//!
//! A timestamp that both sources sent for the same request (both took it in the same
//! millisecond) is one sample at the sink and cannot be told apart: such samples are
//! counted as `ambiguous` and left out of `b`'s figures.

use std::collections::HashSet;
use std::path::Path;

use serde_json::json;

use crate::load::{read_ack_log, Ack};
use crate::workload::{self, Pool};

/// Records per `/check` request (16 bytes each).
const CHUNK: usize = 1 << 20;

/// Which source a check is about.
#[derive(Clone, Copy)]
enum Side {
    A,
    B,
}

/// One sample to look up: its series (global index) and the request it came with.
#[derive(Clone, Copy)]
struct Probe {
    series: u32,
    ack: u32,
}

/// Batches samples into `/check?bits` requests and hands back each one with its answer.
struct Checker {
    client: reqwest::Client,
    url: url::Url,
    body: Vec<u8>,
    probes: Vec<Probe>,
}

impl Checker {
    fn push(&mut self, hash: u64, ts: i64, probe: Probe) {
        self.body.extend_from_slice(&hash.to_le_bytes());
        self.body.extend_from_slice(&ts.to_le_bytes());
        self.probes.push(probe);
    }

    fn full(&self) -> bool {
        self.probes.len() >= CHUNK
    }

    /// Asks the sink about the batched samples; `seen` gets each with whether it arrived.
    async fn flush(&mut self, mut seen: impl FnMut(Probe, bool)) -> Result<(), String> {
        if self.probes.is_empty() {
            return Ok(());
        }
        let bits = self
            .client
            .post(self.url.clone())
            .body(std::mem::take(&mut self.body))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{}: {e}", self.url))?
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        if bits.len() != self.probes.len().div_ceil(8) {
            return Err(format!(
                "{}: {} bytes for {} samples",
                self.url,
                bits.len(),
                self.probes.len()
            ));
        }
        for (i, probe) in self.probes.drain(..).enumerate() {
            seen(probe, bits[i / 8] & (1 << (i % 8)) != 0);
        }
        Ok(())
    }
}

/// Per-series figures of source `a`.
struct Ends {
    /// Newest 204 timestamp (`i64::MIN`: none).
    acked: Vec<i64>,
    /// The 204 timestamp before it (`i64::MIN`: none), for the step.
    before: Vec<i64>,
    /// Newest delivered timestamp among its 204 samples (`i64::MIN`: none).
    delivered: Vec<i64>,
}

impl Ends {
    /// Half the series' step (0 when unknown): `b` is cut at `acked + half_step`.
    fn half_step(&self, s: usize) -> i64 {
        if self.before[s] == i64::MIN {
            0
        } else {
            (self.acked[s] - self.before[s]) / 2
        }
    }
}

/// What `run` counts, see the module doc.
#[derive(Default)]
struct Tally {
    a_samples: [u64; 2],
    b_samples: [u64; 2],
    a_lost: u64,
    b_lost: u64,
    b_forwarded_behind_a: u64,
    b_standby_delivered: u64,
    hole: u64,
    hole_ms: i64,
    hole_within_half_step: u64,
    hole_past_half_step_ms: i64,
    overlap: u64,
    ambiguous: u64,
}

impl Tally {
    /// Counts one sample of `side` of series `s` (sent with `ack`) that did or did not
    /// arrive.
    fn count(&mut self, side: Side, s: usize, ack: Ack, arrived: bool, ends: &mut Ends) {
        let forwarded = ack.status == Some(204);
        match side {
            Side::A if forwarded && arrived => {
                ends.delivered[s] = ends.delivered[s].max(ack.ts);
            }
            Side::A if forwarded => self.a_lost += 1,
            Side::A => {}
            Side::B => {
                let end = ends.acked[s];
                if arrived && ack.ts <= ends.delivered[s] {
                    self.overlap += 1;
                }
                if arrived {
                    if !forwarded {
                        self.b_standby_delivered += 1;
                    }
                } else if forwarded && ack.ts > end {
                    self.b_lost += 1;
                } else if forwarded {
                    self.b_forwarded_behind_a += 1;
                } else if ack.ts > end {
                    self.hole += 1;
                    // A series `a` never forwarded has no end to measure the span from.
                    if end != i64::MIN {
                        let span = ack.ts - end;
                        self.hole_ms = self.hole_ms.max(span);
                        if span <= ends.half_step(s) {
                            self.hole_within_half_step += 1;
                        } else {
                            self.hole_past_half_step_ms = self.hole_past_half_step_ms.max(span);
                        }
                    }
                }
            }
        }
    }
}

/// Status 204 counts as forwarded, any other 2xx as held.
fn slot(status: u16) -> usize {
    usize::from(status != 204)
}

/// Checks the two acknowledgement logs against the sink at `sink_url` (its base URL).
pub async fn run(
    a_log: &Path,
    b_log: &Path,
    sink_url: &url::Url,
) -> Result<serde_json::Value, String> {
    highlander::shipper::client::install_crypto_provider();
    let (shape, a_acks) = read_ack_log(a_log)?;
    let (b_shape, b_acks) = read_ack_log(b_log)?;
    if shape != b_shape {
        return Err(format!(
            "the two logs describe different workloads: {shape:?} and {b_shape:?}"
        ));
    }
    for (path, acks) in [(a_log, &a_acks), (b_log, &b_acks)] {
        if acks.iter().any(|a| a.status.is_none()) {
            return Err(format!(
                "{}: no status column (written by an older load)",
                path.display()
            ));
        }
    }
    let pool =
        tokio::task::spawn_blocking(move || workload::build(shape, false, workload::Protocol::V1))
            .await
            .map_err(|e| e.to_string())??;
    // Global index of every pool entry's first series.
    let mut first = Vec::with_capacity(pool.templates.len());
    let mut series = 0usize;
    for t in &pool.templates {
        first.push(series as u32);
        series += t.series_hashes.len();
    }
    for ack in a_acks.iter().chain(&b_acks) {
        if ack.index as usize >= pool.templates.len() {
            return Err(format!(
                "an ack log names pool entry {}, the pool has {}",
                ack.index,
                pool.templates.len()
            ));
        }
    }
    let mut checker = Checker {
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?,
        url: sink_url
            .join("/check?bits")
            .map_err(|e| format!("bad sink URL: {e}"))?,
        body: Vec::with_capacity(CHUNK * 16),
        probes: Vec::with_capacity(CHUNK),
    };

    // a's ends, from its 204s in time order.
    let mut ends = Ends {
        acked: vec![i64::MIN; series],
        before: vec![i64::MIN; series],
        delivered: vec![i64::MIN; series],
    };
    let mut by_time: Vec<&Ack> = a_acks.iter().filter(|a| a.status == Some(204)).collect();
    by_time.sort_by_key(|a| a.ts);
    for ack in by_time {
        let from = first[ack.index as usize] as usize;
        for s in from..from + pool.templates[ack.index as usize].series_hashes.len() {
            ends.before[s] = ends.acked[s];
            ends.acked[s] = ack.ts;
        }
    }

    let mut tally = Tally::default();
    check_side(
        Side::A,
        &a_acks,
        &pool,
        &first,
        &mut checker,
        &mut ends,
        &mut tally,
    )
    .await?;
    // A request both sources sent with the same timestamp is one set of samples at the
    // sink: whose they are cannot be told.
    let a_sent: HashSet<(u32, i64)> = a_acks.iter().map(|a| (a.index, a.ts)).collect();
    let b_clear: Vec<Ack> = b_acks
        .iter()
        .filter(|b| {
            let shared = a_sent.contains(&(b.index, b.ts));
            if shared {
                tally.ambiguous += pool.templates[b.index as usize].samples;
            }
            !shared
        })
        .copied()
        .collect();
    check_side(
        Side::B,
        &b_clear,
        &pool,
        &first,
        &mut checker,
        &mut ends,
        &mut tally,
    )
    .await?;
    for ack in &b_acks {
        tally.b_samples[slot(ack.status.unwrap_or(0))] +=
            pool.templates[ack.index as usize].samples;
    }

    let seconds = |ms: i64| ms.max(0) as f64 / 1000.0;
    Ok(json!({
        "series": series,
        "a_forwarded_samples": tally.a_samples[0],
        "a_held_samples": tally.a_samples[1],
        "b_forwarded_samples": tally.b_samples[0],
        "b_held_samples": tally.b_samples[1],
        "lost_samples": tally.a_lost + tally.b_lost,
        "a_lost_samples": tally.a_lost,
        "b_lost_samples": tally.b_lost,
        "b_forwarded_behind_a_samples": tally.b_forwarded_behind_a,
        "b_held_delivered_samples": tally.b_standby_delivered,
        "hole_samples": tally.hole,
        "hole_s": seconds(tally.hole_ms),
        "hole_within_half_step_samples": tally.hole_within_half_step,
        "hole_past_half_step_samples": tally.hole - tally.hole_within_half_step,
        "hole_past_half_step_s": seconds(tally.hole_past_half_step_ms),
        "overlap_samples": tally.overlap,
        "ambiguous_samples": tally.ambiguous,
    }))
}

/// Looks up every sample of `acks` (one source's) at the sink and counts it (see the
/// module doc). Source `a` goes first: it sets `ends.delivered`, which `b` is judged by.
async fn check_side(
    side: Side,
    acks: &[Ack],
    pool: &Pool,
    first: &[u32],
    checker: &mut Checker,
    ends: &mut Ends,
    tally: &mut Tally,
) -> Result<(), String> {
    if let Side::A = side {
        for ack in acks {
            tally.a_samples[slot(ack.status.unwrap_or(0))] +=
                pool.templates[ack.index as usize].samples;
        }
    }
    let mut seen = |probe: Probe, arrived: bool| {
        tally.count(
            side,
            probe.series as usize,
            acks[probe.ack as usize],
            arrived,
            ends,
        );
    };
    for (n, ack) in acks.iter().enumerate() {
        let template = &pool.templates[ack.index as usize];
        let from = first[ack.index as usize];
        for (k, &hash) in template.series_hashes.iter().enumerate() {
            let probe = Probe {
                series: from + k as u32,
                ack: n as u32,
            };
            checker.push(hash, ack.ts, probe);
        }
        if checker.full() {
            checker.flush(&mut seen).await?;
        }
    }
    checker.flush(&mut seen).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(ts: i64, status: u16) -> Ack {
        Ack {
            index: 0,
            ts,
            status: Some(status),
        }
    }

    /// One series; `a` forwarded 1000 and 1100 (step 100), of which 1100 arrived.
    fn ends() -> Ends {
        Ends {
            acked: vec![1100],
            before: vec![1000],
            delivered: vec![i64::MIN],
        }
    }

    #[test]
    fn counts_a_lost_and_learns_its_delivered_end() {
        let (mut ends, mut t) = (ends(), Tally::default());
        t.count(Side::A, 0, ack(1000, 204), false, &mut ends);
        t.count(Side::A, 0, ack(1100, 204), true, &mut ends);
        t.count(Side::A, 0, ack(1200, 202), false, &mut ends);
        assert_eq!(t.a_lost, 1);
        assert_eq!(ends.delivered[0], 1100);
    }

    #[test]
    fn counts_the_hole_overlap_and_b_lost() {
        let (mut ends, mut t) = (ends(), Tally::default());
        ends.delivered[0] = 1100;
        // Held by b and never delivered: behind a's end (no hole), within half a step
        // (the cut's margin), then a real hole up to 1400.
        t.count(Side::B, 0, ack(1090, 202), false, &mut ends);
        t.count(Side::B, 0, ack(1140, 202), false, &mut ends);
        t.count(Side::B, 0, ack(1240, 202), false, &mut ends);
        t.count(Side::B, 0, ack(1400, 202), false, &mut ends);
        // Backfilled: one behind a's delivered end (an overlap), one after it.
        t.count(Side::B, 0, ack(1100, 202), true, &mut ends);
        t.count(Side::B, 0, ack(1440, 202), true, &mut ends);
        // Forwarded: one trimmed behind a's end, one lost, one delivered.
        t.count(Side::B, 0, ack(1050, 204), false, &mut ends);
        t.count(Side::B, 0, ack(1500, 204), false, &mut ends);
        t.count(Side::B, 0, ack(1600, 204), true, &mut ends);
        assert_eq!(t.hole, 3);
        assert_eq!(t.hole_ms, 300);
        assert_eq!(t.hole_within_half_step, 1);
        assert_eq!(t.hole_past_half_step_ms, 300);
        assert_eq!(t.overlap, 1);
        assert_eq!(t.b_standby_delivered, 2);
        assert_eq!(t.b_forwarded_behind_a, 1);
        assert_eq!(t.b_lost, 1);
    }
}

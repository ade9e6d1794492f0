//! Rates and lag over the last minutes, for the status page's sparklines and
//! `GET /api/v1/trends`: per source, samples received per second; per endpoint, samples
//! sent per second and its lag in data time.
//!
//! # Invariants
//! - Bounded: each series keeps [`FINE_POINTS`] points of [`FINE_STEP_MS`] (15 minutes)
//!   and [`COARSE_POINTS`] points of one minute (one hour). A series not seen for 15
//!   minutes is dropped, so the number of series follows the election's sources and the
//!   configured endpoints.
//! - A rate is a counter's difference over the time between two samples. A counter that
//!   went down (the election forgot a source and saw it again) counts from zero.
//! - A minute's lag point is the largest lag sampled in that minute: a short peak stays
//!   visible.
//! - The samples come from the same views as the admin API (`queue_view`, the groups),
//!   read every [`FINE_STEP_MS`] by [`run`]; the rings are in memory only.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::api::{EndpointTrend, SourceTrend, TrendPoint, Trends as TrendsView};
use crate::clock::Clock;

use super::Admin;

/// Time between two samples.
pub const FINE_STEP_MS: u64 = 10_000;
/// Points of the fine ring: 15 minutes.
pub const FINE_POINTS: usize = 90;
/// Time covered by one point of the coarse ring.
pub const COARSE_STEP_MS: u64 = 60_000;
/// Points of the coarse ring: one hour.
pub const COARSE_POINTS: usize = 60;
/// A series not sampled for this long is dropped.
const FORGET_MS: u64 = FINE_STEP_MS * FINE_POINTS as u64;

/// The newest `cap` points of one series.
#[derive(Debug)]
struct Ring {
    points: VecDeque<TrendPoint>,
    cap: usize,
}

impl Ring {
    fn new(cap: usize) -> Self {
        Ring {
            points: VecDeque::with_capacity(cap),
            cap,
        }
    }

    fn push(&mut self, at_ms: u64, value: f64) {
        if self.points.len() == self.cap {
            self.points.pop_front();
        }
        self.points.push_back(TrendPoint { at_ms, value });
    }

    fn to_vec(&self) -> Vec<TrendPoint> {
        self.points.iter().copied().collect()
    }
}

/// The rate per second of a growing counter.
#[derive(Debug)]
struct Rate {
    /// The previous sample: time and total.
    last: Option<(u64, u64)>,
    /// The sample the current minute started with.
    minute: Option<(u64, u64)>,
    fine: Ring,
    coarse: Ring,
}

/// Per second, the growth from `(t0, v0)` to `(t1, v1)`; a counter that went down counts
/// from zero.
fn per_second((t0, v0): (u64, u64), (t1, v1): (u64, u64)) -> f64 {
    let grown = if v1 >= v0 { v1 - v0 } else { v1 };
    grown as f64 * 1000.0 / (t1 - t0) as f64
}

impl Rate {
    fn new() -> Self {
        Rate {
            last: None,
            minute: None,
            fine: Ring::new(FINE_POINTS),
            coarse: Ring::new(COARSE_POINTS),
        }
    }

    fn sample(&mut self, now_ms: u64, total: u64) {
        let now = (now_ms, total);
        if let Some(last) = self.last.filter(|(t, _)| *t < now_ms) {
            self.fine.push(now_ms, per_second(last, now));
        }
        self.last = Some(now);
        match self.minute {
            Some(start) if now_ms >= start.0 + COARSE_STEP_MS => {
                self.coarse.push(now_ms, per_second(start, now));
                self.minute = Some(now);
            }
            Some(_) => {}
            None => self.minute = Some(now),
        }
    }
}

/// A gauge: its value at each sample; a minute's point is the minute's largest.
#[derive(Debug)]
struct Level {
    /// When the current minute started, and its largest value so far.
    minute: Option<(u64, f64)>,
    fine: Ring,
    coarse: Ring,
}

impl Level {
    fn new() -> Self {
        Level {
            minute: None,
            fine: Ring::new(FINE_POINTS),
            coarse: Ring::new(COARSE_POINTS),
        }
    }

    fn sample(&mut self, now_ms: u64, value: f64) {
        self.fine.push(now_ms, value);
        match self.minute {
            Some((start, max)) if now_ms >= start + COARSE_STEP_MS => {
                self.coarse.push(now_ms, max.max(value));
                self.minute = Some((now_ms, value));
            }
            Some((start, max)) => self.minute = Some((start, max.max(value))),
            None => self.minute = Some((now_ms, value)),
        }
    }
}

#[derive(Debug)]
struct SourceSeries {
    received: Rate,
    seen_ms: u64,
}

#[derive(Debug)]
struct EndpointSeries {
    sent: Rate,
    lag: Level,
    seen_ms: u64,
}

/// One sample of every series.
#[derive(Debug, Default)]
pub struct Sample {
    /// Per (group, source): samples received so far (forwarded and dropped).
    pub sources: Vec<(String, String, u64)>,
    /// Per endpoint: samples sent so far, and its lag in data time (seconds).
    pub endpoints: Vec<(String, u64, f64)>,
}

/// The rings of every series.
#[derive(Debug, Default)]
pub struct Trends {
    sources: BTreeMap<(String, String), SourceSeries>,
    endpoints: BTreeMap<String, EndpointSeries>,
}

impl Trends {
    /// Adds one sample taken at `now_ms`, and drops the series not seen for 15 minutes.
    pub fn sample(&mut self, now_ms: u64, sample: Sample) {
        for (group, source, total) in sample.sources {
            let s = self
                .sources
                .entry((group, source))
                .or_insert_with(|| SourceSeries {
                    received: Rate::new(),
                    seen_ms: now_ms,
                });
            s.received.sample(now_ms, total);
            s.seen_ms = now_ms;
        }
        for (name, sent, lag) in sample.endpoints {
            let e = self
                .endpoints
                .entry(name)
                .or_insert_with(|| EndpointSeries {
                    sent: Rate::new(),
                    lag: Level::new(),
                    seen_ms: now_ms,
                });
            e.sent.sample(now_ms, sent);
            e.lag.sample(now_ms, lag);
            e.seen_ms = now_ms;
        }
        let fresh = |seen: u64| now_ms.saturating_sub(seen) < FORGET_MS;
        self.sources.retain(|_, s| fresh(s.seen_ms));
        self.endpoints.retain(|_, e| fresh(e.seen_ms));
    }

    /// The rings as the API shows them: the fine ones, or the minute ones (`coarse`).
    pub fn view(&self, coarse: bool) -> TrendsView {
        let ring = |fine: &Ring, minute: &Ring| if coarse { minute } else { fine }.to_vec();
        TrendsView {
            step_seconds: if coarse { COARSE_STEP_MS } else { FINE_STEP_MS } / 1000,
            sources: self
                .sources
                .iter()
                .map(|((group, source), s)| SourceTrend {
                    group: group.clone(),
                    source: source.clone(),
                    received: ring(&s.received.fine, &s.received.coarse),
                })
                .collect(),
            endpoints: self
                .endpoints
                .iter()
                .map(|(name, e)| EndpointTrend {
                    endpoint: name.clone(),
                    sent: ring(&e.sent.fine, &e.sent.coarse),
                    lag_seconds: ring(&e.lag.fine, &e.lag.coarse),
                })
                .collect(),
        }
    }
}

/// Reads the counters the admin API shows.
fn read(admin: &Admin) -> Sample {
    let sources = admin
        .promotions
        .groups()
        .into_iter()
        .flat_map(|(group, view)| {
            view.sources.into_iter().map(move |(source, s)| {
                (
                    group.clone(),
                    source,
                    s.samples_accepted + s.samples_dropped,
                )
            })
        })
        .collect();
    let endpoints = super::views::queue_view(admin)
        .endpoints
        .into_iter()
        .map(|e| (e.worker.name, e.worker.sent_samples, e.position.lag_seconds))
        .collect();
    Sample { sources, endpoints }
}

/// Samples every [`FINE_STEP_MS`] until `shutdown`.
pub async fn run(
    admin: Admin,
    trends: Arc<Mutex<Trends>>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(Duration::from_millis(FINE_STEP_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let reader = admin.clone();
        let Ok(sample) = tokio::task::spawn_blocking(move || read(&reader)).await else {
            continue;
        };
        trends.lock().sample(clock.now_ms(), sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sources: &[(&str, u64)], endpoints: &[(&str, u64, f64)]) -> Sample {
        Sample {
            sources: sources
                .iter()
                .map(|(s, n)| ("g".to_owned(), (*s).to_owned(), *n))
                .collect(),
            endpoints: endpoints
                .iter()
                .map(|(e, n, lag)| ((*e).to_owned(), *n, *lag))
                .collect(),
        }
    }

    fn values(points: &[TrendPoint]) -> Vec<f64> {
        points.iter().map(|p| p.value).collect()
    }

    #[test]
    fn rates_are_the_counters_growth_per_second() {
        let mut t = Trends::default();
        let t0 = 1_700_000_000_000;
        t.sample(t0, sample(&[("a", 0)], &[("vm", 0, 0.0)]));
        t.sample(
            t0 + 10_000,
            sample(&[("a", 50_000)], &[("vm", 20_000, 1.5)]),
        );
        // A sample late by 5 s: the rate is over the 15 s that passed.
        t.sample(
            t0 + 25_000,
            sample(&[("a", 80_000)], &[("vm", 20_000, 30.0)]),
        );
        let v = t.view(false);
        assert_eq!(v.step_seconds, 10);
        assert_eq!(values(&v.sources[0].received), vec![5_000.0, 2_000.0]);
        assert_eq!(values(&v.endpoints[0].sent), vec![2_000.0, 0.0]);
        assert_eq!(values(&v.endpoints[0].lag_seconds), vec![0.0, 1.5, 30.0]);
        assert_eq!(v.sources[0].received[1].at_ms, t0 + 25_000);
    }

    #[test]
    fn a_counter_that_went_down_counts_from_zero() {
        let mut t = Trends::default();
        t.sample(0, sample(&[("a", 90_000)], &[]));
        t.sample(10_000, sample(&[("a", 1_000)], &[]));
        assert_eq!(values(&t.view(false).sources[0].received), vec![100.0]);
    }

    #[test]
    fn the_rings_are_bounded_and_the_minute_ring_averages_rates_and_keeps_lag_peaks() {
        let mut t = Trends::default();
        // Two hours at 10 s, 1000 samples/s, a lag of 1 s with one peak of 60 s per minute.
        for i in 0..=720u64 {
            let lag = if i % 6 == 3 { 60.0 } else { 1.0 };
            t.sample(
                i * 10_000,
                sample(&[("a", i * 10_000)], &[("vm", i * 10_000, lag)]),
            );
        }
        let fine = t.view(false);
        assert_eq!(fine.sources[0].received.len(), FINE_POINTS);
        assert!(values(&fine.sources[0].received)
            .iter()
            .all(|r| *r == 1_000.0));
        let coarse = t.view(true);
        assert_eq!(coarse.step_seconds, 60);
        assert_eq!(coarse.sources[0].received.len(), COARSE_POINTS);
        assert!(values(&coarse.sources[0].received)
            .iter()
            .all(|r| *r == 1_000.0));
        assert!(values(&coarse.endpoints[0].lag_seconds)
            .iter()
            .all(|l| *l == 60.0));
        assert_eq!(
            coarse.endpoints[0].lag_seconds.last().map(|p| p.at_ms),
            Some(7_200_000)
        );
    }

    #[test]
    fn series_not_seen_for_15_minutes_are_dropped() {
        let mut t = Trends::default();
        t.sample(0, sample(&[("a", 1), ("b", 1)], &[("vm", 0, 0.0)]));
        for i in 1..=90u64 {
            t.sample(i * 10_000, sample(&[("a", i)], &[("vm", 0, 0.0)]));
        }
        let v = t.view(false);
        let sources: Vec<&str> = v.sources.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(sources, vec!["a"]);
    }
}

//! The series VictoriaMetrics holds around an event (a leader change, a replica switch),
//! as the end-to-end cluster tests check it: distinct samples, identical re-sent
//! duplicates, conflicts, holes, a counter that must never decrease.

use super::e2e::{gaps, rel};

/// VM's samples in a window, duplicates (identical timestamps) folded.
pub struct Window {
    /// Distinct samples, by timestamp.
    pub samples: Vec<(i64, f64)>,
    /// Samples VM holds more than once.
    pub duplicates: usize,
    /// Timestamps held with different values (must not happen).
    pub conflicts: Vec<String>,
}

impl Window {
    /// The samples of `raw` (sorted by timestamp) in `[from, to]`.
    pub fn of(raw: &[(i64, f64)], from: i64, to: i64) -> Window {
        let mut w = Window {
            samples: Vec::new(),
            duplicates: 0,
            conflicts: Vec::new(),
        };
        for &(t, v) in raw.iter().filter(|(t, _)| (from..=to).contains(t)) {
            match w.samples.last() {
                Some(&(lt, lv)) if lt == t => {
                    w.duplicates += 1;
                    if lv != v {
                        w.conflicts.push(format!("{t}: {lv} and {v}"));
                    }
                }
                _ => w.samples.push((t, v)),
            }
        }
        w
    }

    /// The distinct timestamps.
    pub fn ts(&self) -> Vec<i64> {
        self.samples.iter().map(|s| s.0).collect()
    }

    /// The largest interval between consecutive samples (earlier, later, ms).
    pub fn largest_gap(&self) -> (i64, i64, i64) {
        gaps(&self.ts())
            .into_iter()
            .max_by_key(|g| g.2)
            .unwrap_or((0, 0, 0))
    }

    /// The smallest interval between consecutive distinct samples (earlier, later, ms).
    pub fn smallest_gap(&self) -> (i64, i64, i64) {
        gaps(&self.ts())
            .into_iter()
            .min_by_key(|g| g.2)
            .unwrap_or((0, 0, i64::MAX))
    }

    /// Where the counter decreases, relative to `origin`.
    pub fn decreasing(&self, origin: i64) -> Vec<String> {
        self.samples
            .windows(2)
            .filter(|w| w[1].1 < w[0].1)
            .map(|w| {
                format!(
                    "{} ({}) -> {} ({})",
                    rel(&[w[0].0], origin),
                    w[0].1,
                    rel(&[w[1].0], origin),
                    w[1].1
                )
            })
            .collect()
    }

    /// Every interval longer than `limit`, relative to `origin`.
    pub fn holes(&self, limit: i64, origin: i64) -> Vec<String> {
        gaps(&self.ts())
            .into_iter()
            .filter(|g| g.2 > limit)
            .map(|(a, b, g)| format!("{g} ms from {} to {}", rel(&[a], origin), rel(&[b], origin)))
            .collect()
    }
}

/// Timestamps of `ts` within `margin` ms of `[from, to]`, relative to `origin`.
pub fn near(ts: &[i64], from: i64, to: i64, margin: i64, origin: i64) -> String {
    let v: Vec<i64> = ts
        .iter()
        .copied()
        .filter(|t| (from - margin..=to + margin).contains(t))
        .collect();
    rel(&v, origin)
}

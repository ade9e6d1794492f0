//! Per-series sample trimming for gapless, overlap-free handovers (see
//! [`super::handover`]): learning where each series of the old source ended, and rewriting
//! a request without the samples at or before that point.
//!
//! Works on the wire bytes (like [`crate::wire`]): everything that is not a sample,
//! histogram or exemplar of a trimmed series is copied as it was.

use crate::wire::{label_parts, write_varint, Field, Fields, Value, WireError, LEN};
pub use crate::wire::{SeriesKey, SeriesMap};

/// Where one series of the old source ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesEnd {
    /// Its last forwarded timestamp (ms).
    pub last: i64,
    /// The gap between its last two samples (ms), 0 if unknown: its scrape interval.
    pub step: i64,
}

impl SeriesEnd {
    /// The new source's samples must be newer than this: at least half a scrape interval
    /// after the old source's last one, so that no two samples crowd each other.
    pub fn threshold(&self) -> i64 {
        self.last.saturating_add(self.step / 2)
    }

    /// Takes one more sample time of the series, in any order: the step stays the gap
    /// between the newest time and the newest one before it.
    fn see(&mut self, ts: i64) {
        if ts > self.last {
            self.step = ts - self.last;
            self.last = ts;
        } else if ts < self.last && (self.step == 0 || ts > self.last - self.step) {
            self.step = self.last - ts;
        }
    }
}

/// The labels that every series seen so far carries with the same value: a sender's
/// external labels, and any label its targets happen to share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConstantLabels {
    /// `None` until a series was seen.
    labels: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl ConstantLabels {
    /// Narrows the set by every series of a decoded `WriteRequest`.
    pub fn learn(&mut self, buf: &[u8]) -> Result<(), WireError> {
        let mut fields = Fields::new(buf);
        while let Some(f) = fields.next_field()? {
            let (1, Value::Len(series)) = (f.number, f.value) else {
                continue;
            };
            if self.labels.as_ref().is_some_and(Vec::is_empty) {
                // Nothing is constant any more: later series cannot change that.
                return Ok(());
            }
            let mut labels = Vec::new();
            let mut sf = Fields::new(series);
            while let Some(l) = sf.next_field()? {
                if let (1, Value::Len(label)) = (l.number, l.value) {
                    labels.push(label_parts(label)?);
                }
            }
            match &mut self.labels {
                None => {
                    self.labels = Some(
                        labels
                            .into_iter()
                            .map(|(n, v)| (n.to_vec(), v.to_vec()))
                            .collect(),
                    )
                }
                Some(known) => {
                    known.retain(|(n, v)| labels.contains(&(n.as_slice(), v.as_slice())))
                }
            }
        }
        Ok(())
    }

    /// The names of the labels constant in both sets, with different values: what tells
    /// the two senders apart (e.g. `replica`).
    pub fn telling_apart(&self, other: &ConstantLabels) -> Vec<Vec<u8>> {
        let (Some(mine), Some(theirs)) = (&self.labels, &other.labels) else {
            return Vec::new();
        };
        mine.iter()
            .filter(|(n, v)| theirs.iter().any(|(on, ov)| on == n && ov != v))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// The timestamp of a sample (field 2 of `Sample`) or histogram (field 15).
fn timestamp_of(msg: &[u8], ts_field: u64) -> Result<i64, WireError> {
    let mut ts = 0i64;
    let mut fields = Fields::new(msg);
    while let Some(f) = fields.next_field()? {
        if let (n, Value::Varint(v)) = (f.number, f.value) {
            if n == ts_field {
                ts = v as i64;
            }
        }
    }
    Ok(ts)
}

/// The timestamp of one field of a `TimeSeries`, if it is timestamped (sample, exemplar,
/// histogram).
fn field_ts(f: &Field<'_>) -> Result<Option<i64>, WireError> {
    let Value::Len(b) = f.value else {
        return Ok(None);
    };
    Ok(match f.number {
        2 => Some(timestamp_of(b, 2)?),
        3 => Some(timestamp_of(b, 3)?),
        4 => Some(timestamp_of(b, 15)?),
        _ => None,
    })
}

/// Records, for every series of a decoded `WriteRequest`, where it ends. The requests may
/// come in any order: newest first lets a handover stop early.
pub fn learn_ends(
    buf: &[u8],
    key: &SeriesKey,
    ends: &mut SeriesMap<SeriesEnd>,
) -> Result<(), WireError> {
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        let (1, Value::Len(series)) = (f.number, f.value) else {
            continue;
        };
        let hash = key.of(series)?;
        let mut sf = Fields::new(series);
        while let Some(sample) = sf.next_field()? {
            if sample.number != 2 && sample.number != 4 {
                continue;
            }
            let Some(ts) = field_ts(&sample)? else {
                continue;
            };
            ends.entry(hash)
                .and_modify(|end| end.see(ts))
                .or_insert(SeriesEnd { last: ts, step: 0 });
        }
    }
    Ok(())
}

/// What a trim kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// The rewritten request (series left without samples are dropped).
    pub raw: Vec<u8>,
    /// Samples and histograms kept.
    pub kept: u64,
    /// Samples and histograms dropped.
    pub trimmed: u64,
}

/// Rewrites a decoded `WriteRequest` keeping, per series, only samples, histograms and
/// exemplars strictly newer than `threshold(key)`.
pub fn trim(
    buf: &[u8],
    key: &SeriesKey,
    threshold: impl Fn(u64) -> i64,
) -> Result<Trimmed, WireError> {
    let mut out = Trimmed {
        raw: Vec::with_capacity(buf.len()),
        ..Trimmed::default()
    };
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        let (1, Value::Len(series)) = (f.number, f.value) else {
            out.raw.extend_from_slice(&buf[f.start..f.end]);
            continue;
        };
        let limit = threshold(key.of(series)?);
        let mut kept_series = Vec::with_capacity(series.len());
        let mut kept_samples = 0u64;
        let mut sf = Fields::new(series);
        while let Some(part) = sf.next_field()? {
            match field_ts(&part)? {
                Some(ts) if ts <= limit => {
                    if part.number != 3 {
                        out.trimmed += 1;
                    }
                }
                Some(_) => {
                    if part.number != 3 {
                        kept_samples += 1;
                    }
                    kept_series.extend_from_slice(&series[part.start..part.end]);
                }
                None => kept_series.extend_from_slice(&series[part.start..part.end]),
            }
        }
        if kept_samples > 0 {
            out.kept += kept_samples;
            write_varint(&mut out.raw, (1 << 3) | u64::from(LEN));
            write_varint(&mut out.raw, kept_series.len() as u64);
            out.raw.extend_from_slice(&kept_series);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{TimeSeries, WriteRequest};
    use prost::Message;

    fn req(series: Vec<TimeSeries>) -> Vec<u8> {
        WriteRequest {
            timeseries: series,
            metadata: vec![],
        }
        .encode_to_vec()
    }

    fn hash_of(name: &str) -> u64 {
        let raw = TimeSeries::named(name, &[]).encode_to_vec();
        SeriesKey::default().of(&raw).expect("valid")
    }

    #[test]
    fn learns_the_last_timestamp_and_the_step_per_series() {
        let mut ends = SeriesMap::default();
        learn_ends(
            &req(vec![
                TimeSeries::named("a", &[1_000, 2_000]),
                TimeSeries::named("b", &[1_500]),
            ]),
            &SeriesKey::default(),
            &mut ends,
        )
        .expect("valid");
        learn_ends(
            &req(vec![TimeSeries::named("a", &[3_000])]),
            &SeriesKey::default(),
            &mut ends,
        )
        .expect("valid");
        assert_eq!(
            ends[&hash_of("a")],
            SeriesEnd {
                last: 3_000,
                step: 1_000
            }
        );
        assert_eq!(
            ends[&hash_of("b")],
            SeriesEnd {
                last: 1_500,
                step: 0
            }
        );
        assert_eq!(ends[&hash_of("a")].threshold(), 3_500);
    }

    #[test]
    fn the_order_of_the_requests_does_not_change_the_ends() {
        let writes: Vec<Vec<u8>> = [1_000, 2_000, 2_500, 4_000]
            .iter()
            .map(|t| req(vec![TimeSeries::named("a", &[*t])]))
            .collect();
        let learn = |order: &mut dyn Iterator<Item = &Vec<u8>>| {
            let mut ends = SeriesMap::default();
            for w in order {
                learn_ends(w, &SeriesKey::default(), &mut ends).expect("valid");
            }
            ends[&hash_of("a")]
        };
        let want = SeriesEnd {
            last: 4_000,
            step: 1_500,
        };
        assert_eq!(learn(&mut writes.iter()), want);
        assert_eq!(learn(&mut writes.iter().rev()), want);
        assert_eq!(
            learn(&mut [&writes[2], &writes[0], &writes[3], &writes[1]].into_iter()),
            want
        );
    }

    #[test]
    fn trims_per_series_and_drops_emptied_series() {
        let raw = req(vec![
            TimeSeries::named("a", &[1_000, 2_000, 3_000]),
            TimeSeries::named("b", &[1_000]),
            TimeSeries::named("c", &[5]),
        ]);
        let (a, b) = (hash_of("a"), hash_of("b"));
        let t = trim(&raw, &SeriesKey::default(), |h| {
            if h == a {
                2_000
            } else if h == b {
                1_000
            } else {
                i64::MIN
            }
        })
        .expect("valid");
        assert_eq!((t.kept, t.trimmed), (2, 3));
        let got = WriteRequest::decode(t.raw.as_slice()).expect("valid");
        assert_eq!(
            got.timeseries,
            vec![
                TimeSeries::named("a", &[3_000]),
                TimeSeries::named("c", &[5])
            ]
        );
    }

    #[test]
    fn nothing_to_trim_keeps_the_bytes() {
        let raw = req(vec![TimeSeries::named("a", &[1_000, 2_000])]);
        let t = trim(&raw, &SeriesKey::default(), |_| 0).expect("valid");
        assert_eq!(t.raw, raw);
        assert_eq!((t.kept, t.trimmed), (2, 0));
    }

    fn labelled(name: &str, replica: &str, ts: &[i64]) -> TimeSeries {
        let mut t = TimeSeries::named(name, ts);
        t.labels.push(crate::proto::Label {
            name: "replica".into(),
            value: replica.into(),
        });
        t
    }

    #[test]
    fn a_key_without_the_replica_label_matches_the_other_replicas_series() {
        let a = labelled("up", "a", &[1]).encode_to_vec();
        let b = labelled("up", "b", &[1]).encode_to_vec();
        let other = labelled("down", "b", &[1]).encode_to_vec();
        let full = SeriesKey::default();
        assert_ne!(full.of(&a).expect("valid"), full.of(&b).expect("valid"));
        let key = SeriesKey::skipping([b"replica".to_vec()]);
        assert_eq!(key.of(&a).expect("valid"), key.of(&b).expect("valid"));
        assert_ne!(key.of(&a).expect("valid"), key.of(&other).expect("valid"));
        // Without the label to skip, the key is the full one.
        let plain = TimeSeries::named("up", &[1]).encode_to_vec();
        assert_eq!(
            key.of(&plain).expect("valid"),
            full.of(&plain).expect("valid")
        );
    }

    #[test]
    fn the_labels_that_tell_two_senders_apart_are_their_constant_labels_that_differ() {
        let mut a = ConstantLabels::default();
        let mut b = ConstantLabels::default();
        assert!(a.telling_apart(&b).is_empty(), "nothing seen yet");
        a.learn(&req(vec![
            labelled("up", "a", &[1]),
            labelled("x", "a", &[1]),
        ]))
        .expect("valid");
        a.learn(&req(vec![labelled("y", "a", &[2])]))
            .expect("valid");
        b.learn(&req(vec![labelled("up", "b", &[1])]))
            .expect("valid");
        // `__name__` differs between a's series: not constant on a's side.
        assert_eq!(a.telling_apart(&b), vec![b"replica".to_vec()]);
        // Two senders that share every constant label are not told apart by any.
        let mut same = ConstantLabels::default();
        same.learn(&req(vec![labelled("z", "a", &[1])]))
            .expect("valid");
        assert!(a.telling_apart(&same).is_empty());
    }
}

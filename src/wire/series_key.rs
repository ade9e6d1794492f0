//! Series keys: a series recognised by a hash of its labels, without re-encoding it. The
//! handover matches the series of two sources by [`SeriesKey`] (some labels left out);
//! the shipper tells by [`series_hash`] which batches share no series.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use super::{Fields, Value, WireError};

/// How a series is recognised across the sources of a group: a hash of its labels, in
/// order, without the labels that tell the sources apart.
///
/// Replicas of an HA group carry their own external label (`replica="a"`, `replica="b"`)
/// unless highlander strips it (`--replica-label`). Their series are then never equal as
/// sent, but they are the same series without that label: the key leaves it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesKey {
    /// Names of the labels left out (few: a source's external labels).
    skip: Vec<Vec<u8>>,
}

impl SeriesKey {
    /// A key that leaves out the labels named in `skip`.
    pub fn skipping(skip: impl IntoIterator<Item = Vec<u8>>) -> Self {
        SeriesKey {
            skip: skip.into_iter().collect(),
        }
    }

    /// The names this key leaves out.
    pub fn skipped(&self) -> impl Iterator<Item = &[u8]> {
        self.skip.iter().map(Vec::as_slice)
    }

    /// The key of one encoded `TimeSeries`: its labels' bytes hashed in order (xxh3,
    /// about 4× faster than the standard hasher here), the skipped ones left out.
    pub fn of(&self, series: &[u8]) -> Result<u64, WireError> {
        let mut h = 0u64;
        let mut fields = Fields::new(series);
        while let Some(f) = fields.next_field()? {
            let (1, Value::Len(label)) = (f.number, f.value) else {
                continue;
            };
            if !self.skip.is_empty() {
                let (name, _) = label_parts(label)?;
                if self.skip.iter().any(|s| s.as_slice() == name) {
                    continue;
                }
            }
            h = (h ^ xxh3_64(label)).wrapping_mul(MIX).rotate_left(29);
        }
        Ok(h)
    }
}

/// Appends the hash of every series of a decoded 1.0 `WriteRequest` to `hashes` (see
/// [`series_hash`]).
pub fn series_hashes(buf: &[u8], hashes: &mut Vec<u64>) -> Result<(), WireError> {
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        if let (1, Value::Len(series)) = (f.number, f.value) {
            hashes.push(series_hash(series)?);
        }
    }
    Ok(())
}

/// The hash of one encoded `TimeSeries` as it is sent: xxh3 of its label fields, as
/// encoded, in order. Every sender writes the labels first and together, so it is one
/// call over those bytes; labels spread between other fields are streamed into the same
/// hash, with the same result. A third of the cost of [`SeriesKey::of`], which hashes
/// each label on its own to leave some out.
pub fn series_hash(series: &[u8]) -> Result<u64, WireError> {
    let mut fields = Fields::new(series);
    // The current run of adjacent label fields, and the runs before it.
    let mut run: Option<(usize, usize)> = None;
    let mut before: Option<Xxh3> = None;
    while let Some(f) = fields.next_field()? {
        if !matches!((f.number, &f.value), (1, Value::Len(_))) {
            continue;
        }
        run = match run {
            Some((start, end)) if end == f.start => Some((start, f.end)),
            Some((start, end)) => {
                before
                    .get_or_insert_with(Xxh3::new)
                    .update(&series[start..end]);
                Some((f.start, f.end))
            }
            None => Some((f.start, f.end)),
        };
    }
    let last = run.map_or(&[][..], |(start, end)| &series[start..end]);
    Ok(match before {
        None => xxh3_64(last),
        Some(mut h) => {
            h.update(last);
            h.digest()
        }
    })
}

/// An odd constant with well-spread bits: it folds the label hashes in order.
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// A map keyed by series keys. The keys are hashes already: the map uses them as they are.
pub type SeriesMap<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;

/// The hasher of [`SeriesMap`]: the key is the hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(MIX);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The name and value of an encoded `Label`.
pub(crate) fn label_parts(label: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    let mut lf = Fields::new(label);
    while let Some(l) = lf.next_field()? {
        match (l.number, l.value) {
            (1, Value::Len(b)) => name = b,
            (2, Value::Len(b)) => value = b,
            _ => {}
        }
    }
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Label, Sample, TimeSeries};
    use prost::Message;

    fn series(labels: &[(&str, &str)], ts: i64) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            samples: vec![Sample {
                value: 1.0,
                timestamp: ts,
            }],
            ..TimeSeries::default()
        }
    }

    #[test]
    fn the_hash_is_of_the_labels_only_and_of_all_of_them() {
        let a = series(&[("__name__", "up"), ("job", "node")], 1).encode_to_vec();
        let later = series(&[("__name__", "up"), ("job", "node")], 2).encode_to_vec();
        let other = series(&[("__name__", "up"), ("job", "vm")], 1).encode_to_vec();
        let h = series_hash(&a).expect("valid");
        assert_eq!(
            h,
            series_hash(&later).expect("valid"),
            "samples do not count"
        );
        assert_ne!(h, series_hash(&other).expect("valid"));
    }

    #[test]
    fn labels_spread_between_other_fields_hash_as_labels_together() {
        let together = series(&[("__name__", "up"), ("job", "node")], 1).encode_to_vec();
        // The same fields, a sample between the two labels.
        let first = Label {
            name: "__name__".into(),
            value: "up".into(),
        }
        .encode_to_vec();
        let second = Label {
            name: "job".into(),
            value: "node".into(),
        }
        .encode_to_vec();
        let sample = Sample {
            value: 1.0,
            timestamp: 1,
        }
        .encode_to_vec();
        let mut spread = Vec::new();
        for (key, body) in [(0x0a, &first), (0x12, &sample), (0x0a, &second)] {
            spread.push(key);
            spread.push(body.len() as u8);
            spread.extend_from_slice(body);
        }
        assert_eq!(
            series_hash(&spread).expect("valid"),
            series_hash(&together).expect("valid")
        );
    }
}

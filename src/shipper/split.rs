//! Halving a batch the storage refused as too large (HTTP 413).

use bytes::Bytes;
use prost::Message;

use crate::proto::WriteRequest;

/// Splits a snappy-compressed `WriteRequest` into two halves. Together they hold the same
/// series and samples in the same order. It splits by series when there are several, and
/// otherwise by the one series' samples. `None` when the request cannot be split further
/// (one sample, or undecodable).
pub fn halve(payload: &[u8]) -> Option<(Bytes, Bytes)> {
    let raw = snap::raw::Decoder::new().decompress_vec(payload).ok()?;
    let req = WriteRequest::decode(raw.as_slice()).ok()?;
    let (first, second) = if req.timeseries.len() >= 2 {
        let mut first = req;
        let tail = first.timeseries.split_off(first.timeseries.len() / 2);
        let second = WriteRequest {
            timeseries: tail,
            metadata: Vec::new(),
        };
        (first, second)
    } else {
        let mut series = req.timeseries.into_iter().next()?;
        let mut tail = series.clone();
        if series.samples.len() >= 2 {
            tail.samples = series.samples.split_off(series.samples.len() / 2);
            tail.histograms.clear();
            tail.exemplars.clear();
        } else if series.histograms.len() >= 2 {
            tail.histograms = series.histograms.split_off(series.histograms.len() / 2);
            tail.samples.clear();
            tail.exemplars.clear();
        } else {
            return None;
        }
        let first = WriteRequest {
            timeseries: vec![series],
            metadata: req.metadata,
        };
        let second = WriteRequest {
            timeseries: vec![tail],
            metadata: Vec::new(),
        };
        (first, second)
    };
    let encode = |r: WriteRequest| {
        snap::raw::Encoder::new()
            .compress_vec(&r.encode_to_vec())
            .ok()
            .map(Bytes::from)
    };
    Some((encode(first)?, encode(second)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Label, Sample, TimeSeries};

    fn series(name: &str, n: i64) -> TimeSeries {
        TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            samples: (0..n)
                .map(|t| Sample {
                    value: t as f64,
                    timestamp: t,
                })
                .collect(),
            ..TimeSeries::default()
        }
    }

    fn compress(r: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&r.encode_to_vec())
            .expect("compress")
    }

    fn decompress(b: &[u8]) -> WriteRequest {
        let raw = snap::raw::Decoder::new().decompress_vec(b).expect("snappy");
        WriteRequest::decode(raw.as_slice()).expect("proto")
    }

    #[test]
    fn splits_by_series_keeping_order() {
        let req = WriteRequest {
            timeseries: vec![series("a", 2), series("b", 2), series("c", 2)],
            metadata: vec![],
        };
        let (x, y) = halve(&compress(&req)).expect("splittable");
        let (x, y) = (decompress(&x), decompress(&y));
        let mut all = x.timeseries.clone();
        all.extend(y.timeseries.clone());
        assert_eq!(all, req.timeseries);
        assert!(!x.timeseries.is_empty() && !y.timeseries.is_empty());
    }

    #[test]
    fn splits_one_series_by_samples() {
        let req = WriteRequest {
            timeseries: vec![series("a", 5)],
            metadata: vec![],
        };
        let (x, y) = halve(&compress(&req)).expect("splittable");
        let (x, y) = (decompress(&x), decompress(&y));
        let mut samples = x.timeseries[0].samples.clone();
        samples.extend(y.timeseries[0].samples.clone());
        assert_eq!(samples, req.timeseries[0].samples);
        assert_eq!(x.timeseries[0].labels, y.timeseries[0].labels);
    }

    #[test]
    fn one_sample_cannot_be_split() {
        let req = WriteRequest {
            timeseries: vec![series("a", 1)],
            metadata: vec![],
        };
        assert!(halve(&compress(&req)).is_none());
        assert!(halve(b"not snappy").is_none());
    }
}

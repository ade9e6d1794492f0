//! Remote-Write 2.0 bodies for the black-box tests, built as a Prometheus 3 replica builds
//! them: one symbols table per request, the empty string first.

use std::collections::HashMap;

use highlander::proto::v2::{Request, Sample, TimeSeries};
use highlander::proto::WriteRequest;
use prost::Message;

/// The `Content-Type` of a 2.0 request.
pub const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// The 2.0 form of a 1.0 request (labels, float samples; the rest is left out).
pub fn from_v1(req: &WriteRequest) -> Request {
    let mut symbols = vec![String::new()];
    let mut index: HashMap<String, u32> = HashMap::from([(String::new(), 0)]);
    let mut sym = |s: &str| {
        *index.entry(s.to_owned()).or_insert_with(|| {
            symbols.push(s.to_owned());
            symbols.len() as u32 - 1
        })
    };
    let timeseries = req
        .timeseries
        .iter()
        .map(|t| TimeSeries {
            labels_refs: t
                .labels
                .iter()
                .flat_map(|l| [sym(&l.name), sym(&l.value)])
                .collect(),
            samples: t
                .samples
                .iter()
                .map(|s| Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                    start_timestamp: 0,
                })
                .collect(),
            ..TimeSeries::default()
        })
        .collect();
    Request {
        symbols,
        timeseries,
    }
}

/// The snappy-compressed body of a 2.0 request.
pub fn body(req: &Request) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("compress")
}

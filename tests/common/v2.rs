//! Remote-Write 2.0 bodies for the black-box tests, built as a Prometheus 3 replica builds
//! them: one symbols table per request, the empty string first.

use highlander::proto::v2::Request;
use highlander::proto::WriteRequest;
use prost::Message;

/// The `Content-Type` of a 2.0 request.
pub const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// The 2.0 form of a 1.0 request (labels, float samples; the rest is left out).
pub fn from_v1(req: &WriteRequest) -> Request {
    Request::from_v1(req)
}

/// The snappy-compressed body of a 2.0 request.
pub fn body(req: &Request) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("compress")
}

/// The 1.0 form of a decoded 2.0 request, resolved with prost (labels, float samples,
/// histograms, exemplars): what a 2.0 storage holds. `None` when it does not decode.
pub fn to_v1(raw: &[u8]) -> Option<WriteRequest> {
    use highlander::proto::{Exemplar, Histogram, Label, Sample, TimeSeries};
    let req = Request::decode(raw).ok()?;
    let sym = |r: u32| req.symbols.get(r as usize).cloned().unwrap_or_default();
    let labels = |refs: &[u32]| -> Vec<Label> {
        refs.chunks_exact(2)
            .map(|p| Label {
                name: sym(p[0]),
                value: sym(p[1]),
            })
            .collect()
    };
    let timeseries = req
        .timeseries
        .iter()
        .map(|t| TimeSeries {
            labels: labels(&t.labels_refs),
            samples: t
                .samples
                .iter()
                .map(|s| Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
            // 1.0 and 2.0 number the histogram's fields alike.
            histograms: t
                .histograms
                .iter()
                .filter_map(|h| Histogram::decode(h.encode_to_vec().as_slice()).ok())
                .collect(),
            exemplars: t
                .exemplars
                .iter()
                .map(|e| Exemplar {
                    labels: labels(&e.labels_refs),
                    value: e.value,
                    timestamp: e.timestamp,
                })
                .collect(),
        })
        .collect();
    Some(WriteRequest {
        timeseries,
        metadata: Vec::new(),
    })
}

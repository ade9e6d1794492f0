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

// Shared by the ingest targets: the whole decode of a request body, twice. Once with the
// input as the decoded protobuf (compressed here, so the wire scan sees it), once with the
// input as the snappy block itself. Replica and group labels are configured, so the label
// stripping and the 2.0 conversion run too.

use bytes::Bytes;
use highlander::ingest::decode::decode;
use highlander::ingest::protocol::Version;
use highlander::wire::Wanted;
use highlander::ingest::Limits;

const LIMITS: Limits = Limits {
    max_body_bytes: 1 << 20,
    max_decoded_bytes: 4 << 20,
};

pub fn both_ways(data: &[u8], version: Version) {
    let wanted = Wanted {
        replica: Some("__replica__"),
        group: Some("cluster"),
    };
    if let Ok(compressed) = snap::raw::Encoder::new().compress_vec(data) {
        let _ = decode(Bytes::from(compressed), LIMITS, wanted, version);
    }
    let _ = decode(Bytes::copy_from_slice(data), LIMITS, wanted, version);
}

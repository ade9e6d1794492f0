//! Joining consecutive records into one request without decompressing them.
//!
//! Two facts make this a byte copy:
//! - protobuf: the concatenation of two encoded `WriteRequest`s is the encoding of one
//!   `WriteRequest` whose repeated fields (series, metadata) are the first's followed by the
//!   second's, so per series the storage still sees the samples in record order;
//! - snappy (block format): a block is `varint(decoded length)` followed by elements whose
//!   back-references never reach before the block's own start, so the elements of several
//!   blocks, one after the other behind one preamble with the summed length, decode to the
//!   concatenation of their outputs.
//!
//! Fewer, larger requests cost the storage and the relay less per sample, and the worker
//! still has one request in flight, so order is kept exactly.

use bytes::Bytes;
use prost::encoding::{decode_varint, encode_varint};

/// Largest decoded length a snappy block may announce.
const SNAPPY_MAX_DECODED: u64 = u32::MAX as u64;

/// The decoded length a snappy block announces (`None`: not a snappy block).
pub fn decoded_len(block: &[u8]) -> Option<u64> {
    decode_varint(&mut &block[..]).ok()
}

/// One snappy block that decodes to the concatenation of what `blocks` decode to. `None`
/// when a block has no valid preamble or the sum is over snappy's limit.
pub fn join(blocks: &[Bytes]) -> Option<Bytes> {
    if let [only] = blocks {
        return Some(only.clone());
    }
    let mut total = 0u64;
    let mut bodies = Vec::with_capacity(blocks.len());
    for block in blocks {
        // The preamble is a varint, as in protobuf.
        let mut body = &block[..];
        total += decode_varint(&mut body).ok()?;
        bodies.push(body);
    }
    if total > SNAPPY_MAX_DECODED {
        return None;
    }
    let mut out = Vec::with_capacity(10 + bodies.iter().map(|b| b.len()).sum::<usize>());
    encode_varint(total, &mut out);
    for body in bodies {
        out.extend_from_slice(body);
    }
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{MetricMetadata, TimeSeries, WriteRequest};
    use prost::Message;

    fn request(name: &str, ts: &[i64], with_metadata: bool) -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries::named(name, ts)],
            metadata: if with_metadata {
                vec![MetricMetadata {
                    metric_family_name: name.into(),
                    help: "help".into(),
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
        }
    }

    fn compress(r: &WriteRequest) -> Bytes {
        Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(&r.encode_to_vec())
                .expect("compress"),
        )
    }

    #[test]
    fn joined_blocks_decode_to_the_merged_request() {
        let a = request("up", &[1, 2, 3], true);
        let b = request("up", &[4, 5], false);
        // Repetitive enough that snappy uses back-references inside each block.
        let c = request(&"x".repeat(300), &(0..200).collect::<Vec<_>>(), true);
        let joined = join(&[compress(&a), compress(&b), compress(&c)]).expect("joins");
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&joined)
            .expect("valid snappy");
        let merged = WriteRequest::decode(raw.as_slice()).expect("valid protobuf");
        let mut want = a.clone();
        want.timeseries.extend(b.timeseries.clone());
        want.timeseries.extend(c.timeseries.clone());
        want.metadata.extend(c.metadata.clone());
        assert_eq!(merged, want);
        assert_eq!(
            decoded_len(&joined),
            Some(raw.len() as u64),
            "the preamble announces the sum"
        );
    }

    #[test]
    fn one_block_is_passed_through_and_garbage_is_refused() {
        let a = compress(&request("up", &[1], false));
        assert_eq!(join(std::slice::from_ref(&a)), Some(a.clone()));
        assert_eq!(join(&[a, Bytes::from_static(&[0xff; 6])]), None);
        assert_eq!(decoded_len(&[]), None);
    }
}

//! Joining consecutive records into one request without decompressing them.
//!
//! Two facts make this a byte copy:
//! - protobuf: two encoded `WriteRequest`s, concatenated, are the encoding of one
//!   `WriteRequest`. Its repeated fields (series, metadata) are the first's followed by
//!   the second's. So the storage still sees each series' samples in record order.
//! - snappy (block format): a block is `varint(decoded length)` followed by elements. The
//!   elements' back-references never reach before the block's own start. So we can put
//!   the elements of several blocks one after the other, behind one preamble with the
//!   summed length. That block decodes to the concatenation of their outputs.
//!
//! Fewer, larger requests cost the storage and the relay less per sample. With one
//! request in flight (the default), order is kept exactly.

use bytes::{Bytes, BytesMut};
use prost::encoding::{decode_varint, encode_varint};

/// Largest decoded length a snappy block may announce.
const SNAPPY_MAX_DECODED: u64 = u32::MAX as u64;

/// The decoded length a snappy block announces. `None`: not a snappy block.
pub fn decoded_len(block: &[u8]) -> Option<u64> {
    decode_varint(&mut &block[..]).ok()
}

/// Builds in `buf` one snappy block that decodes to the concatenation of what `blocks`
/// decode to. `None` when a block has no valid preamble, or when the sum is over snappy's
/// limit.
///
/// The worker keeps `buf` between batches. Once the previous joined body is dropped (its
/// request is done), `reserve` takes the same allocation back. So a lagging worker does
/// not map, fault in and unmap a fresh buffer of up to `max_batch_bytes` per request.
/// Those fresh buffers were most of the shipper's page faults.
pub fn join(blocks: &[Bytes], buf: &mut BytesMut) -> Option<Bytes> {
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
    buf.clear();
    buf.reserve(10 + bodies.iter().map(|b| b.len()).sum::<usize>());
    encode_varint(total, buf);
    for body in bodies {
        buf.extend_from_slice(body);
    }
    Some(buf.split().freeze())
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
        // Repetitive enough for snappy to use back-references inside each block.
        let c = request(&"x".repeat(300), &(0..200).collect::<Vec<_>>(), true);
        let joined = join(
            &[compress(&a), compress(&b), compress(&c)],
            &mut BytesMut::new(),
        )
        .expect("joins");
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
    fn the_buffer_is_reused_once_the_last_body_is_gone() {
        let blocks = [
            compress(&request("up", &[1, 2], false)),
            compress(&request("up", &[3], false)),
        ];
        let mut buf = BytesMut::new();
        let first = join(&blocks, &mut buf).expect("joins");
        let at = first.as_ptr();
        drop(first);
        let second = join(&blocks, &mut buf).expect("joins");
        assert_eq!(second.as_ptr(), at, "same allocation");
        // While a body is still in flight, the next one gets its own memory.
        let third = join(&blocks, &mut buf).expect("joins");
        assert_ne!(third.as_ptr(), second.as_ptr());
        assert_eq!(third, second);
    }

    #[test]
    fn one_block_is_passed_through_and_garbage_is_refused() {
        let a = compress(&request("up", &[1], false));
        let mut buf = BytesMut::new();
        assert_eq!(join(std::slice::from_ref(&a), &mut buf), Some(a.clone()));
        assert_eq!(join(&[a, Bytes::from_static(&[0xff; 6])], &mut buf), None);
        assert_eq!(decoded_len(&[]), None);
    }
}

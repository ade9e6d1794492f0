//! The one-byte fast paths of the wire scan agree with the general field loop.

use super::*;
use proptest::prelude::*;

fn generic_sample(buf: &[u8]) -> Result<i64, WireError> {
    let mut ts = 0i64;
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        if f.number == 2 {
            ts = expect_varint("Sample", &f)? as i64;
        }
    }
    Ok(ts)
}

fn encoded_label(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a];
    write_varint(&mut out, name.len() as u64);
    out.extend_from_slice(name);
    out.push(0x12);
    write_varint(&mut out, value.len() as u64);
    out.extend_from_slice(value);
    out
}

#[test]
fn fast_paths_take_the_usual_encodings() {
    let label = encoded_label(b"job", b"node");
    assert_eq!(label_fast(&label), Some((&b"job"[..], &b"node"[..])));
    let mut sample = vec![0x09];
    sample.extend_from_slice(&1.5f64.to_le_bytes());
    sample.push(0x10);
    write_varint(&mut sample, 1_700_000_000_000);
    assert_eq!(sample_fast(&sample), Some(1_700_000_000_000));
    // Negative timestamps are ten-byte varints: still the fast path.
    let mut negative = sample[..10].to_vec();
    write_varint(&mut negative, -5i64 as u64);
    assert_eq!(sample_fast(&negative), Some(-5));
}

proptest! {
    /// The word-at-a-time ASCII run agrees with a byte loop, wherever the first high byte is.
    #[test]
    fn ascii_prefix_agrees_with_a_byte_loop(
        len in 0usize..100,
        high in proptest::option::of((0usize..100, 0x80u8..=0xff)),
    ) {
        let mut buf = vec![b'a'; len];
        if let Some((at, byte)) = high {
            if let Some(b) = buf.get_mut(at) {
                *b = byte;
            }
        }
        let want = buf.iter().position(|b| *b >= 0x80).unwrap_or(buf.len());
        prop_assert_eq!(ascii_prefix(&buf), want);
    }

    /// Whenever a fast path answers, the general field loop gives the same answer.
    #[test]
    fn fast_label_agrees_with_the_field_loop(
        name in proptest::collection::vec(any::<u8>(), 0..200),
        value in proptest::collection::vec(any::<u8>(), 0..200),
        cut in 0usize..420,
        flip in proptest::option::of((0usize..420, any::<u8>())),
    ) {
        let mut buf = encoded_label(&name, &value);
        buf.truncate(cut.min(buf.len()));
        if let Some((at, byte)) = flip {
            if let Some(b) = buf.get_mut(at) {
                *b = byte;
            }
        }
        if let Some(fast) = label_fast(&buf) {
            prop_assert_eq!(label_fields(&buf).ok(), Some(fast));
        }
    }

    #[test]
    fn fast_series_field_agrees_with_the_field_loop(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        pos in 0usize..8,
    ) {
        if let Some((series, end)) = series_field(&bytes, pos) {
            let mut fields = Fields { buf: &bytes, pos };
            let f = fields.next_field().ok().flatten();
            let same = matches!(f, Some(Field { number: 1, value: Value::Len(b), .. }) if b == series);
            prop_assert!(same, "the field loop reads another field");
            prop_assert_eq!(fields.pos, end);
        }
    }

    #[test]
    fn fast_sample_agrees_with_the_field_loop(
        value in any::<f64>(),
        ts in any::<i64>(),
        cut in 0usize..24,
        flip in proptest::option::of((0usize..24, any::<u8>())),
    ) {
        let mut buf = vec![0x09];
        buf.extend_from_slice(&value.to_le_bytes());
        buf.push(0x10);
        write_varint(&mut buf, ts as u64);
        if cut < buf.len() {
            buf.truncate(cut);
        }
        if let Some((at, byte)) = flip {
            if let Some(b) = buf.get_mut(at) {
                *b = byte;
            }
        }
        if let Some(fast) = sample_fast(&buf) {
            prop_assert_eq!(generic_sample(&buf).ok(), Some(fast));
        }
    }
}

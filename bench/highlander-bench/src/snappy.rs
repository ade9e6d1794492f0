//! A snappy *block* encoder whose output can be patched in place.
//!
//! The load generator pre-encodes its requests once. Yet every request it sends must carry
//! fresh timestamps: storages reject stale or repeated samples, and the sink counts
//! duplicates. Compressing 2000 samples anew for every request would make the generator
//! the bottleneck. A general-purpose compressor (the `snap` crate) freely turns repeated
//! timestamp bytes into back-references, so nobody can edit its output.
//!
//! This encoder takes a list of *protected* byte ranges of the input: the timestamp
//! varints. A protected byte is always emitted inside a literal. It is never the source or
//! the destination of a copy. So after compression, each protected range sits verbatim at a
//! known offset of the output. Overwriting it there with bytes of the same length yields a
//! valid stream of the patched input.
//!
//! Everything else is matched as snappy does (4-byte hash table, 64 KiB window). This keeps
//! the compression ratio close to `snap`'s on label-heavy Remote-Write bodies. The `snap`
//! crate decodes the result, and tests check that.

/// Compressed bytes plus, for every protected range (in input order), the offset of its
/// first byte in `bytes`.
#[derive(Debug, Clone)]
pub struct Patchable {
    /// A complete snappy block (length preamble included).
    pub bytes: Vec<u8>,
    /// Where each protected range landed in `bytes`.
    pub slots: Vec<u32>,
}

const HASH_BITS: u32 = 14;
const MAX_OFFSET: usize = 65_535;

/// Compresses `input` into the snappy block format. `protected` lists `(start, len)`
/// ranges, sorted and not overlapping.
pub fn compress_protected(input: &[u8], protected: &[(usize, usize)]) -> Patchable {
    let mut mask = vec![false; input.len()];
    for &(start, len) in protected {
        mask[start..start + len].iter_mut().for_each(|m| *m = true);
    }
    let mut out = Vec::with_capacity(input.len() / 2 + 16);
    put_varint(&mut out, input.len() as u64);

    let mut slots = Vec::with_capacity(protected.len());
    let mut next_range = 0usize;
    let mut emit_literal = |out: &mut Vec<u8>, from: usize, to: usize| {
        if from == to {
            return;
        }
        put_literal_tag(out, to - from);
        let data_at = out.len();
        out.extend_from_slice(&input[from..to]);
        while let Some(&(start, _)) = protected.get(next_range) {
            if start >= to {
                break;
            }
            slots.push((data_at + start - from) as u32);
            next_range += 1;
        }
    };

    let mut table = vec![0u32; 1 << HASH_BITS]; // position + 1; 0 = empty
    let free4 = |at: usize| !mask[at..at + 4].iter().any(|&m| m);
    let mut literal_from = 0usize;
    let mut i = 0usize;
    while i + 4 <= input.len() {
        if mask[i] {
            i += 1;
            continue;
        }
        let word = load4(input, i);
        let slot = (word.wrapping_mul(0x1e35_a7bd) >> (32 - HASH_BITS)) as usize;
        let candidate = table[slot] as usize;
        table[slot] = (i + 1) as u32;
        let usable = candidate != 0 && {
            let c = candidate - 1;
            i - c <= MAX_OFFSET && load4(input, c) == word && free4(c) && free4(i)
        };
        if !usable {
            i += 1;
            continue;
        }
        let from = candidate - 1;
        let mut len = 4;
        while i + len < input.len()
            && !mask[i + len]
            && !mask[from + len]
            && input[from + len] == input[i + len]
        {
            len += 1;
        }
        emit_literal(&mut out, literal_from, i);
        put_copy(&mut out, i - from, len);
        i += len;
        literal_from = i;
    }
    emit_literal(&mut out, literal_from, input.len());
    Patchable { bytes: out, slots }
}

fn load4(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Appends a protobuf/snappy varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_literal_tag(out: &mut Vec<u8>, len: usize) {
    let n = len - 1;
    if n < 60 {
        out.push((n as u8) << 2);
    } else {
        let bytes = (n as u32).to_le_bytes();
        let width = match n {
            0..=0xff => 1,
            0x100..=0xffff => 2,
            0x1_0000..=0xff_ffff => 3,
            _ => 4,
        };
        out.push(((59 + width) as u8) << 2);
        out.extend_from_slice(&bytes[..width]);
    }
}

/// Emits copies with a 2-byte offset, at most 64 bytes each.
fn put_copy(out: &mut Vec<u8>, offset: usize, mut len: usize) {
    let offset = (offset as u16).to_le_bytes();
    while len > 0 {
        let chunk = len.min(64);
        out.push((((chunk - 1) as u8) << 2) | 2);
        out.extend_from_slice(&offset);
        len -= chunk;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decompress(b: &[u8]) -> Vec<u8> {
        snap::raw::Decoder::new()
            .decompress_vec(b)
            .expect("valid snappy")
    }

    #[test]
    fn round_trips_without_protection() {
        let input: Vec<u8> = b"node_cpu_seconds_total cpu=0 mode=idle; "
            .iter()
            .cycle()
            .take(100_000)
            .copied()
            .collect();
        let p = compress_protected(&input, &[]);
        assert_eq!(decompress(&p.bytes), input);
        assert!(
            p.bytes.len() < input.len() / 5,
            "repetitive input compresses"
        );
    }

    #[test]
    fn protected_ranges_can_be_patched() {
        // Identical records, so the encoder would like to copy the "timestamps" too.
        let mut input = Vec::new();
        let mut protected = Vec::new();
        for i in 0..2000u32 {
            input.extend_from_slice(b"labels:instance=host-1:9100,job=node;value=");
            input.extend_from_slice(&(i % 7).to_le_bytes());
            protected.push((input.len(), 6));
            input.extend_from_slice(b"TTTTTT");
        }
        let mut p = compress_protected(&input, &protected);
        assert_eq!(p.slots.len(), protected.len());
        assert_eq!(decompress(&p.bytes), input);
        for &slot in &p.slots {
            p.bytes[slot as usize..slot as usize + 6].copy_from_slice(b"123456");
        }
        let mut expected = input.clone();
        for &(start, len) in &protected {
            expected[start..start + len].copy_from_slice(b"123456");
        }
        assert_eq!(decompress(&p.bytes), expected);
    }

    #[test]
    fn long_literals_use_wide_tags() {
        let input: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let p = compress_protected(&input, &[(10, 6), (69_000, 6)]);
        assert_eq!(decompress(&p.bytes), input);
        assert_eq!(p.bytes[p.slots[1] as usize], input[69_000]);
    }
}

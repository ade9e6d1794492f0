//! The conversion of a scanned Remote-Write 2.0 request into a 1.0 `WriteRequest`.
//!
//! Each 2.0 series becomes one 1.0 series, in the same order:
//! - its labels are resolved through the symbols table (the replica label left out when
//!   asked);
//! - its samples and histograms keep their bytes (1.0 and 2.0 number these fields alike),
//!   without the rc.4 start timestamp and without fields 1.0 does not define;
//! - its exemplars get their labels resolved, value and timestamp kept;
//! - its metadata becomes one entry of the 1.0 `metadata` list per metric family (the
//!   first series of a family names it).
//!
//! 1.0 cannot carry start timestamps (rc.3 and rc.4) or fields unknown to both schemas: they
//! are dropped, and the scan counts them. The input must have passed [`scan_v2`]; the
//! conversion trusts its references.
//!
//! [`scan_v2`]: super::scan_v2

use std::collections::HashSet;

use super::v2::push_refs;
use super::{write_varint, Fields, WireError, LEN};

/// The 1.0 bytes of a scanned 2.0 request. `symbols` is the scan's table; `strip` names
/// the label to leave out.
pub fn to_v1(buf: &[u8], symbols: &[&str], strip: Option<&str>) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(buf.len().saturating_mul(3));
    let mut series = Vec::new();
    let mut refs = Vec::new();
    let mut families = Families::default();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        let Some(body) = len_field(&f, 5) else {
            continue;
        };
        let symbol = |r: u64| symbols.get(r as usize).copied().unwrap_or_default();
        let meta = read_refs_and_metadata(body, &mut refs)?;
        series.clear();
        for pair in refs.chunks_exact(2) {
            let (name, value) = (symbol(pair[0]), symbol(pair[1]));
            if Some(name) != strip {
                write_label(&mut series, 1, name, value);
            }
        }
        write_series_data(body, &symbol, &mut series)?;
        write_len(&mut out, 1, &series);
        if let Some(m) = meta.filter(|m| m.kind != 0 || m.help != 0 || m.unit != 0) {
            let name = refs
                .chunks_exact(2)
                .find(|p| symbol(p[0]) == "__name__")
                .map(|p| symbol(p[1]));
            if let Some(name) = name {
                families.add(name, m.kind, symbol(m.help), symbol(m.unit));
            }
        }
    }
    families.write(&mut out);
    Ok(out)
}

/// A series' metadata: its type and its help and unit references.
#[derive(Clone, Copy)]
struct Metadata {
    kind: u64,
    help: u64,
    unit: u64,
}

/// Reads a series' label references into `refs` and its metadata, if it has any.
fn read_refs_and_metadata(
    series: &[u8],
    refs: &mut Vec<u64>,
) -> Result<Option<Metadata>, WireError> {
    refs.clear();
    let mut meta = None;
    let mut fields = Fields::new(series);
    while let Some(f) = fields.next_field()? {
        match f.number {
            1 => push_refs(&f, refs)?,
            5 => {
                let Some(body) = len_field(&f, 5) else {
                    continue;
                };
                let mut m = Metadata {
                    kind: 0,
                    help: 0,
                    unit: 0,
                };
                let mut inner = Fields::new(body);
                while let Some(g) = inner.next_field()? {
                    let v = match g.value {
                        super::Value::Varint(v) => v,
                        _ => continue,
                    };
                    match g.number {
                        1 => m.kind = v,
                        3 => m.help = v,
                        4 => m.unit = v,
                        _ => {}
                    }
                }
                meta = Some(m);
            }
            _ => {}
        }
    }
    Ok(meta)
}

/// Writes a series' samples (1.0 field 2), exemplars (3) and histograms (4).
fn write_series_data<'s>(
    series: &[u8],
    symbol: &impl Fn(u64) -> &'s str,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let mut scratch = Vec::new();
    let mut refs = Vec::new();
    let mut fields = Fields::new(series);
    while let Some(f) = fields.next_field()? {
        match f.number {
            2 => {
                if let Some(sample) = len_field(&f, 2) {
                    copy_known(out, 2, sample, 2, &mut scratch)?;
                }
            }
            3 => {
                if let Some(histogram) = len_field(&f, 3) {
                    copy_known(out, 4, histogram, 16, &mut scratch)?;
                }
            }
            4 => {
                if let Some(exemplar) = len_field(&f, 4) {
                    write_exemplar(out, exemplar, symbol, &mut refs, &mut scratch)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes `message` as field `number`, keeping only its fields 1 to `last`: byte for byte
/// when it has no other field.
fn copy_known(
    out: &mut Vec<u8>,
    number: u64,
    message: &[u8],
    last: u64,
    scratch: &mut Vec<u8>,
) -> Result<(), WireError> {
    // The usual float sample: value and timestamp, nothing else.
    if number == 2 && super::sample_fast(message).is_some() {
        write_len(out, number, message);
        return Ok(());
    }
    let mut all_known = true;
    let mut fields = Fields::new(message);
    while let Some(f) = fields.next_field()? {
        all_known &= f.number <= last;
    }
    if all_known {
        write_len(out, number, message);
        return Ok(());
    }
    scratch.clear();
    let mut fields = Fields::new(message);
    while let Some(f) = fields.next_field()? {
        if f.number <= last {
            scratch.extend_from_slice(&message[f.start..f.end]);
        }
    }
    write_len(out, number, scratch);
    Ok(())
}

/// Writes an exemplar (1.0 field 3 of a series) with its labels resolved.
fn write_exemplar<'s>(
    out: &mut Vec<u8>,
    exemplar: &[u8],
    symbol: &impl Fn(u64) -> &'s str,
    refs: &mut Vec<u64>,
    scratch: &mut Vec<u8>,
) -> Result<(), WireError> {
    refs.clear();
    scratch.clear();
    let mut fields = Fields::new(exemplar);
    while let Some(f) = fields.next_field()? {
        if f.number == 1 {
            push_refs(&f, refs)?;
        }
    }
    for pair in refs.chunks_exact(2) {
        write_label(scratch, 1, symbol(pair[0]), symbol(pair[1]));
    }
    let mut fields = Fields::new(exemplar);
    while let Some(f) = fields.next_field()? {
        if f.number == 2 || f.number == 3 {
            scratch.extend_from_slice(&exemplar[f.start..f.end]);
        }
    }
    write_len(out, 3, scratch);
    Ok(())
}

/// The 1.0 metadata entries, one per metric family.
#[derive(Default)]
struct Families<'a> {
    seen: HashSet<&'a str>,
    out: Vec<u8>,
}

impl<'a> Families<'a> {
    /// Adds the metadata of the series named `name`, unless its family has one already.
    fn add(&mut self, name: &'a str, kind: u64, help: &str, unit: &str) {
        if kind == 0 && help.is_empty() && unit.is_empty() {
            return;
        }
        let family = family_name(name, kind);
        if !self.seen.insert(family) {
            return;
        }
        let mut entry = Vec::with_capacity(family.len() + help.len() + unit.len() + 8);
        if kind != 0 {
            write_varint(&mut entry, 1 << 3);
            write_varint(&mut entry, kind);
        }
        write_string(&mut entry, 2, family);
        write_string(&mut entry, 4, help);
        write_string(&mut entry, 5, unit);
        write_len(&mut self.out, 3, &entry);
    }

    /// Appends the entries to the request.
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.out);
    }
}

/// The family a series belongs to: the metric name without the suffix a histogram or a
/// summary adds to its classic series.
fn family_name(name: &str, kind: u64) -> &str {
    // 3: histogram, 4: gauge histogram, 5: summary.
    if matches!(kind, 3..=5) {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                return base;
            }
        }
    }
    name
}

/// The bytes of a length-delimited field numbered `number`.
fn len_field<'a>(f: &super::Field<'a>, number: u64) -> Option<&'a [u8]> {
    match f.value {
        super::Value::Len(b) if f.number == number => Some(b),
        _ => None,
    }
}

/// Writes a length-delimited field.
fn write_len(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    write_varint(out, (number << 3) | u64::from(LEN));
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Writes a string field; an empty string is left out, as proto3 does.
fn write_string(out: &mut Vec<u8>, number: u64, s: &str) {
    if !s.is_empty() {
        write_len(out, number, s.as_bytes());
    }
}

/// Writes a 1.0 `Label` as field `number`.
#[inline]
fn write_label(out: &mut Vec<u8>, number: u64, name: &str, value: &str) {
    // The usual label: every length fits one byte, and the value is not empty.
    let (n, v) = (name.len(), value.len());
    if number < 16 && n > 0 && v > 0 && n + v + 4 < 0x80 {
        out.reserve(n + v + 6);
        out.extend_from_slice(&[(number << 3) as u8 | LEN, (n + v + 4) as u8, 0x0a, n as u8]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&[0x12, v as u8]);
        out.extend_from_slice(value.as_bytes());
        return;
    }
    let len = string_len(name) + string_len(value);
    write_varint(out, (number << 3) | u64::from(LEN));
    write_varint(out, len as u64);
    write_string(out, 1, name);
    write_string(out, 2, value);
}

/// The encoded size of a string field with a one-byte key (0 when it is empty).
fn string_len(s: &str) -> usize {
    if s.is_empty() {
        return 0;
    }
    let len = s.len();
    let mut varint = 1;
    let mut v = len >> 7;
    while v > 0 {
        varint += 1;
        v >>= 7;
    }
    1 + varint + len
}

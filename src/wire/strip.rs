//! Rewriting a scanned 1.0 or 2.0 request without one label (the replica label), byte for byte
//! otherwise.

use super::{scan_label, write_len, write_varint, Fields, Value, WireError};

/// Rewrites a valid `WriteRequest` without the label `name` in any series, keeping every
/// other byte (unknown fields included) as it was. Exemplar labels are left alone.
pub fn strip_label(buf: &[u8], name: &str) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(buf.len());
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match (f.number, f.value) {
            (1, Value::Len(series)) => {
                let Some(rewritten) = series_without(series, name)? else {
                    out.extend_from_slice(&buf[f.start..f.end]);
                    continue;
                };
                write_len(&mut out, 1, &rewritten);
            }
            _ => out.extend_from_slice(&buf[f.start..f.end]),
        }
    }
    Ok(out)
}

/// The series without the label `name`, or `None` when it does not carry it.
fn series_without(buf: &[u8], name: &str) -> Result<Option<Vec<u8>>, WireError> {
    let mut cut = None;
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        if let (1, Value::Len(label)) = (f.number, f.value) {
            if scan_label(label, 0)?.0 == name {
                cut = Some(f.start..f.end);
                break;
            }
        }
    }
    Ok(cut.map(|range| {
        let mut out = Vec::with_capacity(buf.len() - range.len());
        out.extend_from_slice(&buf[..range.start]);
        out.extend_from_slice(&buf[range.end..]);
        out
    }))
}

/// Field numbers of a 2.0 `Request` and of its `TimeSeries`.
const V2_SYMBOLS: u64 = 4;
const V2_TIMESERIES: u64 = 5;
const V2_LABELS_REFS: u64 = 1;

/// Rewrites a valid 2.0 `Request` without the label `name` in any series. The symbols
/// table stays as it is (the name's symbol may still serve an exemplar or a value), and so
/// does every other byte of a series that does not carry the label. A series that carries
/// it gets its `labels_refs` again, packed and first, without the pair, followed by its
/// other fields as they were. Exemplar labels are left alone, as in 1.0.
pub fn strip_label_v2(buf: &[u8], name: &str) -> Result<Vec<u8>, WireError> {
    let mut names = Vec::new();
    let mut fields = Fields::new(buf);
    let mut index = 0u64;
    while let Some(f) = fields.next_field()? {
        if let (V2_SYMBOLS, Value::Len(symbol)) = (f.number, f.value) {
            if symbol == name.as_bytes() {
                names.push(index);
            }
            index += 1;
        }
    }
    let mut out = Vec::with_capacity(buf.len());
    let mut refs = Vec::new();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match (f.number, f.value) {
            (V2_TIMESERIES, Value::Len(series)) if !names.is_empty() => {
                match series_without_refs(series, &names, &mut refs)? {
                    Some(rewritten) => write_len(&mut out, V2_TIMESERIES, &rewritten),
                    None => out.extend_from_slice(&buf[f.start..f.end]),
                }
            }
            _ => out.extend_from_slice(&buf[f.start..f.end]),
        }
    }
    Ok(out)
}

/// The 2.0 series without the label pairs whose name is one of `names` (symbol indexes),
/// or `None` when it has none.
fn series_without_refs(
    buf: &[u8],
    names: &[u64],
    refs: &mut Vec<u64>,
) -> Result<Option<Vec<u8>>, WireError> {
    refs.clear();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        if f.number == V2_LABELS_REFS {
            super::push_refs(&f, refs)?;
        }
    }
    let pairs = refs.chunks_exact(2);
    if !pairs.clone().any(|pair| names.contains(&pair[0])) {
        return Ok(None);
    }
    let mut packed = Vec::with_capacity(refs.len() * 2);
    for pair in pairs.filter(|pair| !names.contains(&pair[0])) {
        write_varint(&mut packed, pair[0]);
        write_varint(&mut packed, pair[1]);
    }
    let mut out = Vec::with_capacity(buf.len());
    write_len(&mut out, V2_LABELS_REFS, &packed);
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        if f.number != V2_LABELS_REFS {
            out.extend_from_slice(&buf[f.start..f.end]);
        }
    }
    Ok(Some(out))
}

//! Rewriting a scanned request without one label (the replica label), byte for byte
//! otherwise.

use super::{scan_label, write_len, Fields, Value, WireError};

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

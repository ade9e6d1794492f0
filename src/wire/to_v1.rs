//! The conversion of a Remote-Write 2.0 request into a 1.0 `WriteRequest`, written while
//! the 2.0 scan reads it ([`convert_v2`]).
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
//! are dropped, and the scan counts them. The converter trusts the references the scan
//! hands it: the scan checks them first.
//!
//! [`convert_v2`]: super::convert_v2

use std::collections::HashSet;

use super::push_refs;
use super::{write_len, write_varint, Fields, WireError, LEN};

/// How many times larger than its decoded 2.0 form a typical request's 1.0 form is (about
/// 6.5, rounded up): the conversion's first allocation, and the shipper's estimate when it
/// joins converted records.
pub const V1_GROWTH: usize = 7;

/// A series' metadata, resolved: its type, help and unit.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Metadata<'a> {
    pub(super) kind: u64,
    pub(super) help: &'a str,
    pub(super) unit: &'a str,
}

impl Metadata<'_> {
    /// Whether it says anything.
    pub(super) fn said(&self) -> bool {
        self.kind != 0 || !self.help.is_empty() || !self.unit.is_empty()
    }
}

/// Writes the 1.0 form of a 2.0 request while the scan reads it, one series at a time: the
/// scan hands over each sample, histogram, exemplar and metadata of a series as it
/// validates them, then the series' label references.
pub(super) struct Converter<'a, 's> {
    /// The label to leave out.
    strip: Option<&'s str>,
    /// The 1.0 request so far.
    out: Vec<u8>,
    /// The current series' samples, exemplars and histograms, in 1.0 form.
    items: Vec<u8>,
    /// The current series' metadata.
    meta: Metadata<'a>,
    /// Scratch for a filtered message or an exemplar.
    scratch: Vec<u8>,
    /// Scratch for an exemplar's references.
    refs: Vec<u64>,
    families: Families<'a>,
    /// Most bytes the 1.0 form may take: a symbol referenced many times expands, so a small
    /// 2.0 body can stand for a huge 1.0 one.
    limit: usize,
}

impl<'a, 's> Converter<'a, 's> {
    /// A converter for a request of `len` decoded bytes whose 1.0 form may take at most
    /// `limit` bytes.
    pub(super) fn new(strip: Option<&'s str>, len: usize, limit: usize) -> Self {
        let guess = len.saturating_mul(V1_GROWTH).min(limit).min(16 << 20);
        Converter {
            strip,
            limit,
            out: Vec::with_capacity(guess),
            items: Vec::new(),
            meta: Metadata::default(),
            scratch: Vec::new(),
            refs: Vec::new(),
            families: Families::default(),
        }
    }

    /// A float sample of the current series.
    pub(super) fn sample(&mut self, sample: &[u8]) -> Result<(), WireError> {
        copy_known(&mut self.items, 2, sample, 2, &mut self.scratch)?;
        self.within(0)
    }

    /// A native histogram of the current series.
    pub(super) fn histogram(&mut self, histogram: &[u8]) -> Result<(), WireError> {
        copy_known(&mut self.items, 4, histogram, 16, &mut self.scratch)?;
        self.within(0)
    }

    /// An exemplar of the current series.
    pub(super) fn exemplar(&mut self, exemplar: &[u8], symbols: &[&str]) -> Result<(), WireError> {
        write_exemplar(
            &mut self.items,
            exemplar,
            symbols,
            &mut self.refs,
            &mut self.scratch,
        )?;
        self.within(0)
    }

    /// Refuses when the 1.0 form, with `more` bytes to come, would be over the limit.
    fn within(&self, more: usize) -> Result<(), WireError> {
        let total = self.out.len() + self.items.len() + self.families.out.len() + more;
        if total > self.limit {
            return Err(WireError::ConvertedTooLarge {
                limit: self.limit as u64,
            });
        }
        Ok(())
    }

    /// The metadata of the current series.
    pub(super) fn metadata(&mut self, meta: Metadata<'a>) {
        self.meta = meta;
    }

    /// Ends the current series: writes it with the labels of `refs` (checked by the scan).
    pub(super) fn end_series(
        &mut self,
        refs: &[u64],
        symbols: &[&'a str],
    ) -> Result<(), WireError> {
        let symbol = |r: u64| symbols.get(r as usize).copied().unwrap_or_default();
        let kept = |name: &str| Some(name) != self.strip;
        let labels_len: usize = refs
            .chunks_exact(2)
            .map(|p| (symbol(p[0]), symbol(p[1])))
            .filter(|(n, _)| kept(n))
            .map(|(n, v)| label_len(n, v))
            .sum();
        self.within(labels_len + 6)?;
        write_varint(&mut self.out, (1 << 3) | u64::from(LEN));
        write_varint(&mut self.out, (labels_len + self.items.len()) as u64);
        for pair in refs.chunks_exact(2) {
            let (name, value) = (symbol(pair[0]), symbol(pair[1]));
            if kept(name) {
                write_label(&mut self.out, 1, name, value);
            }
        }
        self.out.extend_from_slice(&self.items);
        self.items.clear();
        let meta = std::mem::take(&mut self.meta);
        if meta.said() {
            let name = refs
                .chunks_exact(2)
                .find(|p| symbol(p[0]) == "__name__")
                .map(|p| symbol(p[1]));
            if let Some(name) = name {
                self.families.add(name, meta);
            }
        }
        self.within(0)
    }

    /// The 1.0 request.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&self.families.out);
        self.out
    }
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
fn write_exemplar(
    out: &mut Vec<u8>,
    exemplar: &[u8],
    symbols: &[&str],
    refs: &mut Vec<u64>,
    scratch: &mut Vec<u8>,
) -> Result<(), WireError> {
    let symbol = |r: u64| symbols.get(r as usize).copied().unwrap_or_default();
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
    fn add(&mut self, name: &'a str, meta: Metadata<'_>) {
        let Metadata { kind, help, unit } = meta;
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

/// Writes a string field; an empty string is left out, as proto3 does.
fn write_string(out: &mut Vec<u8>, number: u64, s: &str) {
    if !s.is_empty() {
        write_len(out, number, s.as_bytes());
    }
}

/// The encoded size of a 1.0 `Label` field (key and length included).
fn label_len(name: &str, value: &str) -> usize {
    let body = string_len(name) + string_len(value);
    1 + varint_len(body) + body
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
    1 + varint_len(s.len()) + s.len()
}

/// The encoded size of `len` as a varint.
fn varint_len(len: usize) -> usize {
    let mut varint = 1;
    let mut v = len >> 7;
    while v > 0 {
        varint += 1;
        v >>= 7;
    }
    varint
}

//! The scan of a Remote-Write 2.0 `io.prometheus.write.v2.Request`: validation with the
//! spec's rules, counts and times, and the replica and group labels through the symbols
//! table.
//!
//! The rules, each a 400 with its own reason:
//! - every symbol is UTF-8, and `symbols[0]` is the empty string;
//! - `labels_refs` (of a series or an exemplar) has an even length, and every reference
//!   (labels, help, unit) points into the symbols table;
//! - a series has at least one label; its names are not empty, sorted, without duplicates;
//! - a series does not carry both samples and histograms;
//! - a series carries a sample, a histogram or an exemplar (Prometheus sends an
//!   exemplar in a series of its own, without the sample).
//!
//! The scan borrows the body: the symbols table is one `Vec` of `&str`, and nothing else is
//! allocated per series. Fields it does not know are skipped and counted in
//! [`SummaryV2::unknown_fields`]; the start timestamps of both layouts (rc.3: series field
//! 6; rc.4: sample field 3, histogram field 17) are counted in
//! [`SummaryV2::start_timestamps`]. The conversion to 1.0 ([`convert_v2`], written by
//! `to_v1` in the same pass) drops both.

use super::to_v1::{Converter, Metadata};
use super::{
    expect_len, expect_varint, read_varint, skim, Field, Fields, LabelRules, Summary, Value,
    Wanted, WireError,
};

/// What one scan of a 2.0 request learned.
#[derive(Debug, Clone, Default)]
pub struct SummaryV2<'a> {
    /// Counts, times and the replica and group labels, as for 1.0. `metadata` counts the
    /// series whose metadata says something (a type, a help or a unit).
    pub base: Summary<'a>,
    /// The symbols table.
    pub symbols: Vec<&'a str>,
    /// Start timestamps (set, non-zero) in series, samples and histograms.
    pub start_timestamps: u32,
    /// Fields of series, samples, histograms, exemplars and metadata that the 2.0 schema
    /// does not define.
    pub unknown_fields: u32,
}

/// Field numbers of `Request`.
const SYMBOLS: u64 = 4;
const TIMESERIES: u64 = 5;

/// Scans a decoded 2.0 `Request`.
pub fn scan_v2<'a>(buf: &'a [u8], wanted: Wanted<'_>) -> Result<SummaryV2<'a>, WireError> {
    scan(buf, wanted, None)
}

/// Scans a decoded 2.0 `Request` and writes its 1.0 form (see `to_v1`), without the label
/// `strip`, in the same pass. The 1.0 form may take at most `limit` bytes
/// ([`WireError::ConvertedTooLarge`] otherwise).
pub fn convert_v2<'a>(
    buf: &'a [u8],
    wanted: Wanted<'_>,
    strip: Option<&str>,
    limit: u64,
) -> Result<(SummaryV2<'a>, Vec<u8>), WireError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut conv = Converter::new(strip, buf.len(), limit);
    let summary = scan(buf, wanted, Some(&mut conv))?;
    Ok((summary, conv.finish()))
}

fn scan<'a>(
    buf: &'a [u8],
    wanted: Wanted<'_>,
    mut conv: Option<&mut Converter<'a, '_>>,
) -> Result<SummaryV2<'a>, WireError> {
    let mut out = SummaryV2 {
        symbols: symbols(buf)?,
        ..SummaryV2::default()
    };
    let mut refs = Vec::new();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match f.number {
            TIMESERIES => {
                let series = expect_len("Request", &f)?;
                let index = out.base.series as usize;
                scan_series(
                    series,
                    index,
                    wanted,
                    &mut refs,
                    &mut out,
                    conv.as_deref_mut(),
                )?;
                out.base.series += 1;
            }
            // The 1.0 fields: a 1.0 body sent with the 2.0 Content-Type.
            1..=3 => return Err(WireError::V1Body),
            _ => {}
        }
    }
    Ok(out)
}

/// The symbols table, checked: UTF-8, and the empty string first.
fn symbols(buf: &[u8]) -> Result<Vec<&str>, WireError> {
    let mut symbols = Vec::new();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        if f.number == SYMBOLS {
            let bytes = expect_len("Request", &f)?;
            let index = symbols.len();
            let s = std::str::from_utf8(bytes).map_err(|_| WireError::SymbolUtf8 { index })?;
            if index == 0 && !s.is_empty() {
                return Err(WireError::FirstSymbol(s.chars().take(64).collect()));
            }
            symbols.push(s);
        }
    }
    Ok(symbols)
}

/// Resolves one reference.
fn symbol<'a>(
    symbols: &[&'a str],
    r: u64,
    series: usize,
    what: &'static str,
) -> Result<&'a str, WireError> {
    usize::try_from(r)
        .ok()
        .and_then(|i| symbols.get(i).copied())
        .ok_or(WireError::SymbolRef {
            series,
            what,
            r,
            symbols: symbols.len(),
        })
}

/// Appends the references of a `labels_refs` field (packed, or one unpacked value).
pub(super) fn push_refs(f: &Field<'_>, refs: &mut Vec<u64>) -> Result<(), WireError> {
    match f.value {
        Value::Len(packed) => {
            let mut pos = 0;
            while pos < packed.len() {
                refs.push(read_varint(packed, &mut pos)?);
            }
        }
        _ => refs.push(expect_varint("TimeSeries", f)?),
    }
    Ok(())
}

/// What one series carries, for the per-series rules.
#[derive(Default)]
struct Carried {
    samples: u32,
    histograms: u32,
    exemplars: u32,
}

/// Scans one series; with a converter, hands it what the series carries as it goes.
fn scan_series<'a>(
    buf: &'a [u8],
    index: usize,
    wanted: Wanted<'_>,
    refs: &mut Vec<u64>,
    out: &mut SummaryV2<'a>,
    mut conv: Option<&mut Converter<'a, '_>>,
) -> Result<(), WireError> {
    refs.clear();
    let mut carried = Carried::default();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match f.number {
            1 => push_refs(&f, refs)?,
            2 => {
                let sample = expect_len("TimeSeries", &f)?;
                let ts = scan_sample(sample, out)?;
                carried.samples += 1;
                out.base.see_ts(ts);
                if let Some(c) = conv.as_deref_mut() {
                    c.sample(sample)?;
                }
            }
            3 => {
                let histogram = expect_len("TimeSeries", &f)?;
                let ts = scan_histogram(histogram, out)?;
                carried.histograms += 1;
                out.base.see_ts(ts);
                if let Some(c) = conv.as_deref_mut() {
                    c.histogram(histogram)?;
                }
            }
            4 => {
                let exemplar = expect_len("TimeSeries", &f)?;
                scan_exemplar(exemplar, index, &out.symbols)?;
                carried.exemplars += 1;
                if let Some(c) = conv.as_deref_mut() {
                    c.exemplar(exemplar, &out.symbols)?;
                }
            }
            5 => {
                let meta = scan_metadata(expect_len("TimeSeries", &f)?, index, out)?;
                if meta.said() {
                    out.base.metadata += 1;
                }
                if let Some(c) = conv.as_deref_mut() {
                    c.metadata(meta);
                }
            }
            6 => {
                if expect_varint("TimeSeries", &f)? != 0 {
                    out.start_timestamps += 1;
                }
            }
            _ => out.unknown_fields += 1,
        }
    }
    labels(refs, index, wanted, out)?;
    if carried.samples > 0 && carried.histograms > 0 {
        return Err(WireError::SamplesAndHistograms { series: index });
    }
    if carried.samples + carried.histograms + carried.exemplars == 0 {
        return Err(WireError::NothingCarried { series: index });
    }
    out.base.samples += carried.samples;
    out.base.histograms += carried.histograms;
    out.base.exemplars += carried.exemplars;
    if let Some(c) = conv {
        c.end_series(refs, &out.symbols)?;
    }
    Ok(())
}

/// Checks a series' labels and picks up the replica and group values.
fn labels<'a>(
    refs: &[u64],
    index: usize,
    wanted: Wanted<'_>,
    out: &mut SummaryV2<'a>,
) -> Result<(), WireError> {
    if !refs.len().is_multiple_of(2) {
        return Err(WireError::OddRefs {
            series: index,
            len: refs.len(),
        });
    }
    let mut rules = LabelRules { index, prev: None };
    for pair in refs.chunks_exact(2) {
        let name = symbol(&out.symbols, pair[0], index, "label name")?;
        let value = symbol(&out.symbols, pair[1], index, "label value")?;
        rules.see(name, value, wanted, &mut out.base)?;
    }
    if rules.prev.is_none() {
        return Err(WireError::EmptyLabelSet { series: index });
    }
    Ok(())
}

/// Scans a `Sample`; returns its timestamp.
fn scan_sample(buf: &[u8], out: &mut SummaryV2<'_>) -> Result<i64, WireError> {
    let mut ts = 0;
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match f.number {
            1 => {}
            2 => ts = expect_varint("Sample", &f)? as i64,
            3 => {
                if expect_varint("Sample", &f)? != 0 {
                    out.start_timestamps += 1;
                }
            }
            _ => out.unknown_fields += 1,
        }
    }
    Ok(ts)
}

/// Scans a `Histogram`; returns its timestamp.
fn scan_histogram(buf: &[u8], out: &mut SummaryV2<'_>) -> Result<i64, WireError> {
    let mut ts = 0;
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match f.number {
            15 => ts = expect_varint("Histogram", &f)? as i64,
            17 => {
                if expect_varint("Histogram", &f)? != 0 {
                    out.start_timestamps += 1;
                }
            }
            8 | 11 => skim(expect_len("Histogram", &f)?)?,
            1..=16 => {}
            _ => out.unknown_fields += 1,
        }
    }
    Ok(ts)
}

/// Scans an `Exemplar`: its label references must be pairs inside the symbols table.
fn scan_exemplar(buf: &[u8], index: usize, symbols: &[&str]) -> Result<(), WireError> {
    let mut refs = Vec::new();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match f.number {
            1 => push_refs(&f, &mut refs)?,
            3 => {
                expect_varint("Exemplar", &f)?;
            }
            _ => {}
        }
    }
    if refs.len() % 2 != 0 {
        return Err(WireError::OddRefs {
            series: index,
            len: refs.len(),
        });
    }
    for &r in &refs {
        symbol(symbols, r, index, "exemplar label")?;
    }
    Ok(())
}

/// Scans a `Metadata`, its help and unit resolved.
fn scan_metadata<'a>(
    buf: &[u8],
    index: usize,
    out: &mut SummaryV2<'a>,
) -> Result<Metadata<'a>, WireError> {
    let mut meta = Metadata::default();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match f.number {
            1 => meta.kind = expect_varint("Metadata", &f)?,
            3 => meta.help = symbol(&out.symbols, expect_varint("Metadata", &f)?, index, "help")?,
            4 => meta.unit = symbol(&out.symbols, expect_varint("Metadata", &f)?, index, "unit")?,
            _ => out.unknown_fields += 1,
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests;

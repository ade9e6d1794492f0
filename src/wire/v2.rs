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
    expect_len, expect_varint, push_refs, sample_fast, skim, Fields, LabelRules, Summary, Wanted,
    WireError,
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
    /// Most bytes the 1.0 form of the request can take: the body, plus every resolved
    /// reference with the most its field keys and lengths take. A symbol referenced many
    /// times expands in 1.0, so the ingest holds this bound to its decoded-size limit
    /// without converting.
    pub v1_bound: u64,
}

/// Most bytes 1.0 adds to a label (or a metadata entry) beside its strings: three field
/// keys and three lengths.
const RESOLVED_OVERHEAD: u64 = 18;

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
        v1_bound: buf.len() as u64,
        ..SummaryV2::default()
    };
    let mut refs = Vec::new();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field_inline()? {
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
    while let Some(f) = fields.next_field_inline()? {
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

/// What one series carries, for the per-series rules.
#[derive(Default)]
struct Carried {
    samples: u32,
    histograms: u32,
    exemplars: u32,
    /// Whether its metadata says something (1.0 then names the family once more).
    metadata: bool,
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
    while let Some(f) = fields.next_field_inline()? {
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
                out.v1_bound += scan_exemplar(exemplar, index, &out.symbols)?;
                carried.exemplars += 1;
                if let Some(c) = conv.as_deref_mut() {
                    c.exemplar(exemplar, &out.symbols)?;
                }
            }
            5 => {
                let meta = scan_metadata(expect_len("TimeSeries", &f)?, index, out)?;
                if meta.said() {
                    out.base.metadata += 1;
                    carried.metadata = true;
                    out.v1_bound += (meta.help.len() + meta.unit.len()) as u64 + RESOLVED_OVERHEAD;
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
    // The family name of a metadata entry is a label value: the labels' bound covers it
    // once more.
    let labels_bound = labels(refs, index, wanted, out)?;
    out.v1_bound += labels_bound * (1 + u64::from(carried.metadata)) + RESOLVED_OVERHEAD;
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

/// Checks a series' labels and picks up the replica and group values. Returns the most
/// bytes the labels take in 1.0.
fn labels<'a>(
    refs: &[u64],
    index: usize,
    wanted: Wanted<'_>,
    out: &mut SummaryV2<'a>,
) -> Result<u64, WireError> {
    if !refs.len().is_multiple_of(2) {
        return Err(WireError::OddRefs {
            series: index,
            len: refs.len(),
        });
    }
    let mut rules = LabelRules {
        index,
        ..LabelRules::default()
    };
    let mut bound = 0;
    for pair in refs.chunks_exact(2) {
        let name = symbol(&out.symbols, pair[0], index, "label name")?;
        let value = symbol(&out.symbols, pair[1], index, "label value")?;
        rules.see(name, value, wanted, &mut out.base)?;
        bound += (name.len() + value.len()) as u64 + RESOLVED_OVERHEAD;
    }
    if rules.prev.is_none() {
        return Err(WireError::EmptyLabelSet { series: index });
    }
    out.base.see_pair(&rules, wanted);
    Ok(bound)
}

/// Scans a `Sample`; returns its timestamp.
fn scan_sample(buf: &[u8], out: &mut SummaryV2<'_>) -> Result<i64, WireError> {
    // A value and a timestamp, nothing else: 2.0 numbers them as 1.0 does, and most
    // samples are written so.
    if let Some(ts) = sample_fast(buf) {
        return Ok(ts);
    }
    let mut ts = 0;
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field_inline()? {
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
    while let Some(f) = fields.next_field_inline()? {
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
/// Returns the most bytes its labels take in 1.0.
fn scan_exemplar(buf: &[u8], index: usize, symbols: &[&str]) -> Result<u64, WireError> {
    let mut refs = Vec::new();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field_inline()? {
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
    let mut bound = RESOLVED_OVERHEAD;
    for &r in &refs {
        bound += symbol(symbols, r, index, "exemplar label")?.len() as u64 + RESOLVED_OVERHEAD;
    }
    Ok(bound)
}

/// Scans a `Metadata`, its help and unit resolved.
fn scan_metadata<'a>(
    buf: &[u8],
    index: usize,
    out: &mut SummaryV2<'a>,
) -> Result<Metadata<'a>, WireError> {
    let mut meta = Metadata::default();
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field_inline()? {
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

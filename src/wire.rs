//! A borrowing, allocation-free scan of the Remote-Write 1.0 protobuf wire format; the 2.0
//! scan (`v2`) and its conversion to 1.0 (`to_v1`) beside it.
//!
//! It validates a decoded `WriteRequest` as the spec asks: well-formed protobuf, UTF-8
//! strings, labels sorted by name in every series, no duplicate or empty names. It reads
//! what the relay needs (counts, min/max timestamps, the replica and group label values)
//! and builds no owned structs. It skips unknown fields instead of rejecting them, so
//! newer senders pass through untouched. A golden-bytes test keeps it in agreement with
//! the prost types of [`crate::proto`]. The field reader is in `fields`, the error types in
//! `error`, the version names in `version`. The rewrites
//! without the replica label (1.0 and 2.0) are in `strip`, the series keys (a hash of a
//! series' labels) in `series_key`.

use std::fmt;

mod error;
mod fields;
mod series_key;
mod split;
mod strip;
mod to_v1;
mod v2;
mod version;

pub use error::WireError;
pub(crate) use fields::{
    expect_len, expect_varint, push_refs, skim, write_len, write_varint, Field, Fields, Value, LEN,
};
pub(crate) use series_key::label_parts;
pub use series_key::{series_hash, series_hashes, SeriesKey, SeriesMap};
pub use split::{split_v1, Part};
pub use strip::{strip_label, strip_label_v2};
pub use to_v1::V1_GROWTH;
pub use v2::{convert_v2, scan_v2, SummaryV2};
pub use version::{Version, MEDIA_TYPE, PROTO_V1, PROTO_V2, WRITTEN_HEADERS};

/// Which label values the scan should pick up (first series that carries them wins: all
/// series of one Prometheus request share its external labels).
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    /// Name of the label that identifies the replica (e.g. `__replica__`).
    pub replica: Option<&'a str>,
    /// Name of the label that identifies the HA group (e.g. `cluster`).
    pub group: Option<&'a str>,
}

/// What one scan learned about a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary<'a> {
    /// Number of series.
    pub series: u32,
    /// Number of float samples.
    pub samples: u32,
    /// Number of native histogram samples.
    pub histograms: u32,
    /// Number of exemplars.
    pub exemplars: u32,
    /// Number of metadata entries.
    pub metadata: u32,
    /// Smallest sample/histogram timestamp (ms), if there is any sample.
    pub min_ts: Option<i64>,
    /// Largest sample/histogram timestamp (ms), if there is any sample.
    pub max_ts: Option<i64>,
    /// Value of the replica label, from the first series that has it.
    pub replica: Option<&'a str>,
    /// Whether any series carries the replica label (then it must be stripped).
    pub replica_seen: bool,
    /// Value of the group label, from the first series that has it.
    pub group: Option<&'a str>,
    /// The (replica, group) label values of the first series, once one was scanned.
    pub first_pair: Option<(Option<&'a str>, Option<&'a str>)>,
    /// Whether some series carry other replica or group label values than the first one
    /// (or lack a label the first one has): an agent in front batched several sources.
    pub mixed: bool,
    /// Series without the replica label, when one is configured.
    pub unlabelled: u32,
}

impl<'a> Summary<'a> {
    /// Notes the labels of a whole series: whether it belongs to the first series' pair.
    /// Nothing to note when no label is configured (the default).
    #[inline]
    fn see_pair(&mut self, rules: &LabelRules<'a>, wanted: Wanted<'_>) {
        if wanted.replica.is_none() && wanted.group.is_none() {
            return;
        }
        let pair = (rules.replica, rules.group);
        match self.first_pair {
            None => self.first_pair = Some(pair),
            Some(first) => self.mixed |= first != pair,
        }
        if wanted.replica.is_some() && rules.replica.is_none() {
            self.unlabelled += 1;
        }
    }

    fn see_ts(&mut self, ts: i64) {
        self.min_ts = Some(self.min_ts.map_or(ts, |m| m.min(ts)));
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
    }
}

/// Scans a decoded `WriteRequest`.
pub fn scan<'a>(buf: &'a [u8], wanted: Wanted<'_>) -> Result<Summary<'a>, WireError> {
    let mut summary = Summary::default();
    let mut fields = Fields::new(buf);
    loop {
        // A series in its usual encoding: key 0x0a and a length of one or two bytes.
        if let Some((series, end)) = series_field(buf, fields.pos) {
            scan_series(series, summary.series as usize, wanted, &mut summary)?;
            summary.series += 1;
            fields.pos = end;
            continue;
        }
        let Some(f) = fields.next_field()? else { break };
        match f.number {
            1 => {
                let ts = expect_len("WriteRequest", &f)?;
                scan_series(ts, summary.series as usize, wanted, &mut summary)?;
                summary.series += 1;
            }
            3 => {
                skim(expect_len("WriteRequest", &f)?)?;
                summary.metadata += 1;
            }
            _ => {}
        }
    }
    Ok(summary)
}

/// The labels seen so far in one series, for the order and duplicate checks, and its
/// replica and group label values.
#[derive(Default)]
struct LabelRules<'a> {
    index: usize,
    prev: Option<&'a str>,
    replica: Option<&'a str>,
    group: Option<&'a str>,
}

impl<'a> LabelRules<'a> {
    #[inline(always)]
    fn see(
        &mut self,
        name: &'a str,
        value: &'a str,
        wanted: Wanted<'_>,
        summary: &mut Summary<'a>,
    ) -> Result<(), WireError> {
        if name.is_empty() {
            return Err(WireError::EmptyLabelName { series: self.index });
        }
        if let Some(p) = self.prev {
            if name_order(p, name) != std::cmp::Ordering::Less {
                return Err(self.out_of_order(p, name));
            }
        }
        self.prev = Some(name);
        if wanted.replica == Some(name) {
            summary.replica_seen = true;
            summary.replica.get_or_insert(value);
            self.replica = Some(value);
        }
        if wanted.group == Some(name) {
            summary.group.get_or_insert(value);
            self.group = Some(value);
        }
        Ok(())
    }

    /// The error for `name` coming after `prev` (equal or smaller).
    #[cold]
    fn out_of_order(&self, prev: &str, name: &str) -> WireError {
        if prev == name {
            WireError::Duplicate {
                series: self.index,
                name: name.to_owned(),
            }
        } else {
            WireError::Unsorted {
                series: self.index,
                prev: prev.to_owned(),
                name: name.to_owned(),
            }
        }
    }
}

/// Sample timestamps of one series, folded without `Option`s in the loop.
struct Times {
    count: u32,
    min: i64,
    max: i64,
}

impl Times {
    #[inline]
    fn see(&mut self, ts: i64) {
        self.count += 1;
        self.min = self.min.min(ts);
        self.max = self.max.max(ts);
    }
}

/// Scans one `TimeSeries`. Labels and float samples in their usual encoding (one-byte
/// lengths, fields in schema order) take an inline path. Anything else goes through the
/// general field loop, one field at a time, with the same checks. The series usually
/// starts with a run of ASCII bytes that holds every label, framing included. Labels
/// inside that run need no UTF-8 check of their own. (The field loop and the per-label
/// checks took a quarter of ingest CPU in the profile.)
fn scan_series<'a>(
    buf: &'a [u8],
    index: usize,
    wanted: Wanted<'_>,
    summary: &mut Summary<'a>,
) -> Result<(), WireError> {
    let ascii = ascii_prefix(buf);
    let mut rules = LabelRules {
        index,
        ..LabelRules::default()
    };
    let mut floats = Times {
        count: 0,
        min: i64::MAX,
        max: i64::MIN,
    };
    let mut pos = 0;
    while pos < buf.len() {
        if let Some((label, end)) = short_field(buf, pos, 0x0a) {
            if let Some((name, value)) = label_fast(label) {
                let (name, value) = if end <= ascii {
                    // SAFETY: ASCII bytes are valid UTF-8.
                    unsafe {
                        (
                            std::str::from_utf8_unchecked(name),
                            std::str::from_utf8_unchecked(value),
                        )
                    }
                } else {
                    (utf8(name, index)?, utf8(value, index)?)
                };
                rules.see(name, value, wanted, summary)?;
                pos = end;
                continue;
            }
        }
        if let Some((sample, end)) = short_field(buf, pos, 0x12) {
            if let Some(ts) = sample_fast(sample) {
                floats.see(ts);
                pos = end;
                continue;
            }
        }
        let mut fields = Fields { buf, pos };
        let Some(f) = fields.next_field()? else { break };
        pos = fields.pos;
        match f.number {
            1 => {
                let (name, value) = scan_label(expect_len("TimeSeries", &f)?, index)?;
                rules.see(name, value, wanted, summary)?;
            }
            2 => {
                let sample = expect_len("TimeSeries", &f)?;
                let ts = match sample_fast(sample) {
                    Some(ts) => ts,
                    None => scan_timestamped(sample, "Sample", 2)?,
                };
                floats.see(ts);
            }
            3 => {
                scan_exemplar(expect_len("TimeSeries", &f)?, index)?;
                summary.exemplars += 1;
            }
            4 => {
                let ts = scan_timestamped(expect_len("TimeSeries", &f)?, "Histogram", 15)?;
                summary.histograms += 1;
                summary.see_ts(ts);
            }
            _ => {}
        }
    }
    if rules.prev.is_none() {
        return Err(WireError::EmptyLabelSet { series: index });
    }
    summary.see_pair(&rules, wanted);
    if floats.count > 0 {
        summary.samples += floats.count;
        summary.see_ts(floats.min);
        summary.see_ts(floats.max);
    }
    Ok(())
}

/// The bytes of a length-delimited field at `pos` with key byte `key` and a one-byte
/// length, and where it ends; `None` for anything else (longer length, other key, past
/// the end), which the general field loop then reads.
#[inline]
fn short_field(buf: &[u8], pos: usize, key: u8) -> Option<(&[u8], usize)> {
    if *buf.get(pos)? != key {
        return None;
    }
    let len = *buf.get(pos + 1)?;
    if len >= 0x80 {
        return None;
    }
    let end = pos + 2 + len as usize;
    Some((buf.get(pos + 2..end)?, end))
}

/// A `WriteRequest.timeseries` field at `pos` whose length takes one or two bytes (series
/// under 16 KiB), and where it ends; `None` for anything else.
#[inline]
fn series_field(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    if *buf.get(pos)? != 0x0a {
        return None;
    }
    let b0 = *buf.get(pos + 1)?;
    let (len, at) = if b0 < 0x80 {
        (b0 as usize, pos + 2)
    } else {
        let b1 = *buf.get(pos + 2)?;
        if b1 >= 0x80 {
            return None;
        }
        ((b0 & 0x7f) as usize | (b1 as usize) << 7, pos + 3)
    };
    let end = at + len;
    Some((buf.get(at..end)?, end))
}

/// Length of the leading run of ASCII bytes: 32 bytes per step while all are ASCII, then
/// eight at a time to find the first that is not.
#[inline]
fn ascii_prefix(buf: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    let mut done = 0;
    while done + 32 <= buf.len() {
        if (word(done) | word(done + 8) | word(done + 16) | word(done + 24)) & HIGH != 0 {
            break;
        }
        done += 32;
    }
    while done + 8 <= buf.len() {
        let high = word(done) & HIGH;
        if high != 0 {
            return done + (high.trailing_zeros() / 8) as usize;
        }
        done += 8;
    }
    done + buf[done..]
        .iter()
        .position(|b| !b.is_ascii())
        .unwrap_or(buf.len() - done)
}

/// Label names in byte order. Names of one series almost always differ in their first
/// byte (`__name__`, `cpu`, `instance`, `job`, ...): decide there without a `memcmp` call.
#[inline]
fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

fn scan_label(buf: &[u8], series: usize) -> Result<(&str, &str), WireError> {
    let (name, value) = match label_fast(buf) {
        Some(nv) => nv,
        None => label_fields(buf)?,
    };
    Ok((utf8(name, series)?, utf8(value, series)?))
}

/// The common encoding of a label, `0x0a len name 0x12 len value` with one-byte lengths
/// and nothing else; `None` sends anything else through the general field loop.
#[inline]
fn label_fast(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&k1, rest) = buf.split_first()?;
    let (&n, rest) = rest.split_first()?;
    if k1 != 0x0a || n >= 0x80 || rest.len() < n as usize + 2 {
        return None;
    }
    let (name, rest) = rest.split_at(n as usize);
    let (&k2, rest) = rest.split_first()?;
    let (&v, value) = rest.split_first()?;
    (k2 == 0x12 && v < 0x80 && value.len() == v as usize).then_some((name, value))
}

fn label_fields(buf: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let mut name: &[u8] = &[];
    let mut value: &[u8] = &[];
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match f.number {
            1 => name = expect_len("Label", &f)?,
            2 => value = expect_len("Label", &f)?,
            _ => {}
        }
    }
    Ok((name, value))
}

/// Label text as `&str`. Almost every label is ASCII: a word-at-a-time check, with the
/// full UTF-8 validation only for the rest (the profile showed it at 10 % of ingest CPU).
fn utf8(bytes: &[u8], series: usize) -> Result<&str, WireError> {
    if bytes.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|_| WireError::Utf8 { series })
}

/// Scans a message whose timestamp is the varint field `ts_field`; returns the timestamp.
fn scan_timestamped(buf: &[u8], message: &'static str, ts_field: u64) -> Result<i64, WireError> {
    let mut ts = 0i64;
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        if f.number == ts_field {
            // int64 is encoded as the two's complement varint.
            ts = expect_varint(message, &f)? as i64;
        }
    }
    Ok(ts)
}

/// The common encoding of a float sample, `0x09 <8 bytes> 0x10 <varint>` and nothing
/// else; `None` sends anything else through the general field loop.
///
/// The varint fills the rest of the sample, so its length is known before it is read:
/// every byte but the last must carry the continuation bit. A millisecond timestamp takes
/// six bytes, which the byte-at-a-time [`read_varint`] only handles on its slow path.
#[inline]
fn sample_fast(buf: &[u8]) -> Option<i64> {
    if buf.len() < 11 || buf.len() > 20 || buf[0] != 0x09 || buf[9] != 0x10 {
        return None;
    }
    let (&last, more) = buf[10..].split_last()?;
    let mut continued = 0x80;
    let mut ts = 0u64;
    for (i, &b) in more.iter().enumerate() {
        continued &= b;
        ts |= u64::from(b & 0x7f) << (7 * i);
    }
    if continued == 0 || last >= 0x80 {
        return None;
    }
    ts |= u64::from(last) << (7 * more.len());
    Some(ts as i64)
}

fn scan_exemplar(buf: &[u8], series: usize) -> Result<(), WireError> {
    let mut fields = Fields::new(buf);
    while let Some(f) = fields.next_field()? {
        match f.number {
            1 => {
                scan_label(expect_len("Exemplar", &f)?, series)?;
            }
            3 => {
                expect_varint("Exemplar", &f)?;
            }
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} series, {} samples, {} histograms, {} exemplars",
            self.series, self.samples, self.histograms, self.exemplars
        )
    }
}

#[cfg(test)]
mod fast_path_tests;

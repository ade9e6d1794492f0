//! Plain-text rendering for the terminal: aligned tables, key/value blocks, and the human
//! forms of bytes, durations and ages. No colours, so the output pipes into grep and less.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table with a header row. Each column is as wide as its widest cell. Columns are two
/// spaces apart.
#[derive(Debug)]
pub struct Table {
    header: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles and alignments.
    pub fn new(header: &[(&'static str, Align)]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row. Missing cells are blank. Extra cells are ignored.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines of text, each ending in a newline, without trailing spaces.
    pub fn render(&self) -> String {
        let cell = |row: &Vec<String>, i: usize| row.get(i).map_or("", String::as_str).to_owned();
        let mut widths: Vec<usize> = self.header.iter().map(|(h, _)| width(h)).collect();
        for row in &self.rows {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(width(&cell(row, i)));
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|(h, _)| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, ((_, align), w)) in self.header.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let text = cell(row, i);
                let pad = " ".repeat(w - width(&text));
                match align {
                    Align::Left => {
                        line.push_str(&text);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(&text);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Display width, counted in chars. Names are mostly ASCII, so this is good enough for a
/// terminal.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// `key  value` lines with the values aligned.
pub fn pairs(items: &[(&str, String)]) -> String {
    let w = items.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in items {
        let _ = writeln!(out, "{k:<w$}  {v}");
    }
    out
}

/// `12.3 MiB`; bytes below 1 KiB as `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A duration in seconds, short: `850ms`, `4.2s`, `42s`, `3m12s`, `2h05m`, `3d04h`.
pub fn secs(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "-".to_owned();
    }
    if s == s.trunc() {
        return whole(s as u64);
    }
    if s < 1.0 {
        return format!("{}ms", (s * 1000.0).round() as u64);
    }
    if s < 10.0 {
        return format!("{s:.1}s");
    }
    whole(s.round() as u64)
}

/// Whole seconds, short: `42s`, `3m12s`, `2h05m`, `3d04h`, `5m`, `1d`.
fn whole(t: u64) -> String {
    let (major, unit, minor, minor_unit) = match t {
        0..=59 => return format!("{t}s"),
        60..=3599 => (t / 60, "m", t % 60, "s"),
        3600..=86_399 => (t / 3600, "h", t % 3600 / 60, "m"),
        _ => (t / 86_400, "d", t % 86_400 / 3600, "h"),
    };
    if minor == 0 {
        format!("{major}{unit}")
    } else {
        format!("{major}{unit}{minor:02}{minor_unit}")
    }
}

/// A duration in milliseconds, short (see [`secs`]).
pub fn millis(ms: u64) -> String {
    secs(ms as f64 / 1000.0)
}

/// How long ago `then_ms` was, seen at `now_ms`: `3s ago`, or `in 5s` for a future time.
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    if then_ms == 0 {
        return "-".to_owned();
    }
    if then_ms > now_ms {
        let d = then_ms - now_ms;
        return if d < 1000 {
            format!("in {d}ms")
        } else {
            format!("in {}", whole(d.div_ceil(1000)))
        };
    }
    let d = now_ms - then_ms;
    if d < 1000 {
        "just now".to_owned()
    } else {
        format!("{} ago", whole(d / 1000))
    }
}

/// `2026-11-21T22:38:46Z` (UTC, to the second).
pub fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// An age with the absolute time after it: `3m12s ago (2026-11-21T22:38:46Z)`.
pub fn ago_at(then_ms: u64, now_ms: u64) -> String {
    if then_ms == 0 {
        return "-".to_owned();
    }
    format!("{} ({})", ago(then_ms, now_ms), timestamp(then_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_and_trims_trailing_spaces() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(vec!["a".into(), "1".into(), String::new()]);
        t.row(vec!["long-name".into(), "1234".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "NAME          N  NOTE\n\
             a             1\n\
             long-name  1234  x\n"
        );
    }

    #[test]
    fn formats_bytes_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(12_897_485), "12.3 MiB");
        assert_eq!(bytes(2 << 30), "2.0 GiB");
    }

    #[test]
    fn formats_durations_short() {
        assert_eq!(secs(0.776), "776ms");
        assert_eq!(secs(4.25), "4.2s");
        assert_eq!(secs(42.0), "42s");
        assert_eq!(secs(192.0), "3m12s");
        assert_eq!(secs(7500.0), "2h05m");
        assert_eq!(secs(86_400.0 * 3.0 + 3600.0 * 4.0), "3d04h");
        assert_eq!(secs(-1.0), "-");
        assert_eq!(secs(0.0), "0s");
        assert_eq!(secs(1.0), "1s");
        assert_eq!(secs(300.0), "5m");
        assert_eq!(secs(86_400.0), "1d");
    }

    #[test]
    fn formats_ages_past_and_future() {
        let now = 1_800_000_000_000;
        assert_eq!(ago(now - 3_000, now), "3s ago");
        assert_eq!(ago(now - 200, now), "just now");
        assert_eq!(ago(now + 5_000, now), "in 5s");
        assert_eq!(ago(now - 192_000, now), "3m12s ago");
        assert_eq!(ago(0, now), "-");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn aligns_pairs() {
        assert_eq!(
            pairs(&[("a", "1".into()), ("long", "2".into())]),
            "a     1\nlong  2\n"
        );
    }
}

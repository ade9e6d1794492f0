//! 2.0 scan and conversion tests: every rule good and bad, both start-timestamp layouts,
//! the conversion field by field, and a property test against prost.

use std::collections::HashMap;

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::proto::{self as v1, v2};
use crate::wire::write_varint;

/// A symbols table as a sender builds it: the empty string first, each string once.
struct Table {
    symbols: Vec<String>,
    index: HashMap<String, u32>,
}

impl Table {
    fn new() -> Table {
        Table {
            symbols: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }

    fn sym(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.symbols.len() as u32;
        self.symbols.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }

    fn refs(&mut self, labels: &[(&str, &str)]) -> Vec<u32> {
        labels
            .iter()
            .flat_map(|(n, v)| [self.sym(n), self.sym(v)])
            .collect()
    }

    fn request(self, timeseries: Vec<v2::TimeSeries>) -> v2::Request {
        v2::Request {
            symbols: self.symbols,
            timeseries,
        }
    }
}

fn sample(ts: i64, start: i64) -> v2::Sample {
    v2::Sample {
        value: ts as f64 / 2.0,
        timestamp: ts,
        start_timestamp: start,
    }
}

/// A native histogram with custom buckets (NHCB, schema -53).
fn nhcb(ts: i64, start: i64) -> v2::Histogram {
    v2::Histogram {
        count: Some(v2::histogram::Count::CountInt(7)),
        sum: 12.5,
        schema: -53,
        positive_spans: vec![v2::BucketSpan {
            offset: 0,
            length: 3,
        }],
        positive_deltas: vec![2, 1, -1],
        timestamp: ts,
        custom_values: vec![0.1, 0.5, 1.0],
        start_timestamp: start,
        ..v2::Histogram::default()
    }
}

fn label(n: &str, v: &str) -> v1::Label {
    v1::Label {
        name: n.into(),
        value: v.into(),
    }
}

fn wanted() -> Wanted<'static> {
    Wanted {
        replica: Some("__replica__"),
        group: Some("cluster"),
    }
}

/// Everything a Prometheus 3 replica sends: a counter with metadata and an rc.4 start
/// timestamp, an NHCB histogram, an exemplar in a series of its own, and a series with the
/// rc.3 created timestamp.
fn full_request() -> v2::Request {
    let mut t = Table::new();
    let counter = &[
        ("__name__", "http_requests_total"),
        ("__replica__", "r1"),
        ("cluster", "eu"),
        ("job", "api"),
    ];
    let latency = &[
        ("__name__", "latency_seconds"),
        ("__replica__", "r1"),
        ("cluster", "eu"),
    ];
    let counter_refs = t.refs(counter);
    let latency_refs = t.refs(latency);
    let help = t.sym("Requests served.");
    let trace = t.refs(&[("trace_id", "abc")]);
    let up = t.refs(&[("__name__", "up"), ("__replica__", "r1"), ("cluster", "eu")]);
    let series = vec![
        v2::TimeSeries {
            labels_refs: counter_refs.clone(),
            samples: vec![sample(1_000, 500), sample(2_000, 500)],
            metadata: Some(v2::Metadata {
                r#type: v2::metadata::MetricType::Counter as i32,
                help_ref: help,
                unit_ref: 0,
            }),
            ..v2::TimeSeries::default()
        },
        v2::TimeSeries {
            labels_refs: latency_refs,
            histograms: vec![nhcb(1_500, 400)],
            metadata: Some(v2::Metadata {
                r#type: v2::metadata::MetricType::Histogram as i32,
                help_ref: 0,
                unit_ref: 0,
            }),
            ..v2::TimeSeries::default()
        },
        v2::TimeSeries {
            labels_refs: counter_refs,
            exemplars: vec![v2::Exemplar {
                labels_refs: trace,
                value: 1.0,
                timestamp: 1_800,
            }],
            ..v2::TimeSeries::default()
        },
        v2::TimeSeries {
            labels_refs: up,
            samples: vec![sample(3_000, 0)],
            created_timestamp: 100,
            ..v2::TimeSeries::default()
        },
    ];
    t.request(series)
}

/// What `full_request` is in 1.0, without the replica label.
fn full_request_v1() -> v1::WriteRequest {
    let counter = vec![
        label("__name__", "http_requests_total"),
        label("cluster", "eu"),
        label("job", "api"),
    ];
    let v1_sample = |ts: i64| v1::Sample {
        value: ts as f64 / 2.0,
        timestamp: ts,
    };
    v1::WriteRequest {
        timeseries: vec![
            v1::TimeSeries {
                labels: counter.clone(),
                samples: vec![v1_sample(1_000), v1_sample(2_000)],
                ..v1::TimeSeries::default()
            },
            v1::TimeSeries {
                labels: vec![label("__name__", "latency_seconds"), label("cluster", "eu")],
                histograms: vec![v1::Histogram {
                    count: Some(v1::histogram::Count::CountInt(7)),
                    sum: 12.5,
                    schema: -53,
                    positive_spans: vec![v1::BucketSpan {
                        offset: 0,
                        length: 3,
                    }],
                    positive_deltas: vec![2, 1, -1],
                    timestamp: 1_500,
                    custom_values: vec![0.1, 0.5, 1.0],
                    ..v1::Histogram::default()
                }],
                ..v1::TimeSeries::default()
            },
            v1::TimeSeries {
                labels: counter,
                exemplars: vec![v1::Exemplar {
                    labels: vec![label("trace_id", "abc")],
                    value: 1.0,
                    timestamp: 1_800,
                }],
                ..v1::TimeSeries::default()
            },
            v1::TimeSeries {
                labels: vec![label("__name__", "up"), label("cluster", "eu")],
                samples: vec![v1_sample(3_000)],
                ..v1::TimeSeries::default()
            },
        ],
        metadata: vec![
            v1::MetricMetadata {
                r#type: v1::metric_metadata::MetricType::Counter as i32,
                metric_family_name: "http_requests_total".into(),
                help: "Requests served.".into(),
                unit: String::new(),
            },
            v1::MetricMetadata {
                r#type: v1::metric_metadata::MetricType::Histogram as i32,
                metric_family_name: "latency_seconds".into(),
                help: String::new(),
                unit: String::new(),
            },
        ],
    }
}

#[test]
fn a_full_request_scans_with_its_counts_times_and_labels() {
    let raw = full_request().encode_to_vec();
    let s = scan_v2(&raw, wanted()).expect("valid");
    assert_eq!(s.base.series, 4);
    assert_eq!(s.base.samples, 3);
    assert_eq!(s.base.histograms, 1);
    assert_eq!(s.base.exemplars, 1);
    assert_eq!(s.base.metadata, 2);
    assert_eq!((s.base.min_ts, s.base.max_ts), (Some(1_000), Some(3_000)));
    assert_eq!(s.base.replica, Some("r1"));
    assert!(s.base.replica_seen);
    assert_eq!(s.base.group, Some("eu"));
    // Two rc.4 samples, one rc.4 histogram, one rc.3 series.
    assert_eq!(s.start_timestamps, 4);
    assert_eq!(s.unknown_fields, 0);
}

#[test]
fn the_conversion_to_1_0_keeps_every_field_1_0_has() {
    let raw = full_request().encode_to_vec();
    let converted = convert_v2(&raw, wanted(), Some("__replica__"), u64::MAX)
        .map(|c| c.1)
        .expect("converts");
    let got = v1::WriteRequest::decode(converted.as_slice()).expect("1.0 protobuf");
    assert_eq!(got, full_request_v1());
    // Nothing 1.0 does not define is left in the bytes (prost drops unknown fields, so a
    // re-encode would be shorter).
    assert_eq!(got.encode_to_vec().len(), converted.len());
    // The 1.0 scan accepts the result, with the same counts.
    let again = crate::wire::scan(&converted, Wanted::default()).expect("valid 1.0");
    assert_eq!(
        (again.samples, again.histograms, again.exemplars),
        (3, 1, 1)
    );
}

#[test]
fn without_stripping_the_replica_label_stays() {
    let raw = full_request().encode_to_vec();
    let s = scan_v2(&raw, Wanted::default()).expect("valid");
    assert_eq!(s.base.replica, None);
    let converted = convert_v2(&raw, Wanted::default(), None, u64::MAX)
        .map(|c| c.1)
        .expect("converts");
    let got = v1::WriteRequest::decode(converted.as_slice()).expect("1.0 protobuf");
    assert!(got.timeseries[0]
        .labels
        .contains(&label("__replica__", "r1")));
}

#[test]
fn stripping_rewrites_labels_refs_and_keeps_the_meaning() {
    let raw = full_request().encode_to_vec();
    let stripped = crate::wire::strip_label_v2(&raw, "__replica__").expect("strips");
    // Still a valid 2.0 request, whose 1.0 form is the one converted with the strip.
    let s = scan_v2(&stripped, wanted()).expect("valid");
    assert!(!s.base.replica_seen);
    assert_eq!(s.start_timestamps, 4, "start timestamps are kept in 2.0");
    let via_strip = convert_v2(&stripped, Wanted::default(), None, u64::MAX)
        .expect("converts")
        .1;
    let direct = convert_v2(&raw, wanted(), Some("__replica__"), u64::MAX)
        .expect("converts")
        .1;
    assert_eq!(
        v1::WriteRequest::decode(via_strip.as_slice()).expect("1.0"),
        v1::WriteRequest::decode(direct.as_slice()).expect("1.0"),
    );
    // The symbols table is unchanged, and so is a request without the label.
    let before = v2::Request::decode(raw.as_slice()).expect("prost");
    let after = v2::Request::decode(stripped.as_slice()).expect("prost");
    assert_eq!(before.symbols, after.symbols);
    let untouched = crate::wire::strip_label_v2(&raw, "absent").expect("strips");
    assert_eq!(untouched, raw, "byte for byte");
}

#[test]
fn the_1_0_bound_is_never_below_the_1_0_form() {
    for raw in [
        full_request().encode_to_vec(),
        with_unknown_field(full_request().encode_to_vec()),
    ] {
        let s = scan_v2(&raw, Wanted::default()).expect("valid");
        let (_, v1) = convert_v2(&raw, Wanted::default(), None, u64::MAX).expect("converts");
        assert!(
            s.v1_bound >= v1.len() as u64,
            "{} < {}",
            s.v1_bound,
            v1.len()
        );
    }
}

/// Appends an unknown field (number 20, varint 1) to the message `bytes`.
fn with_unknown_field(mut bytes: Vec<u8>) -> Vec<u8> {
    write_varint(&mut bytes, 20 << 3);
    write_varint(&mut bytes, 1);
    bytes
}

#[test]
fn unknown_fields_are_counted_and_left_out_of_the_conversion() {
    let mut t = Table::new();
    let refs = t.refs(&[("__name__", "m")]);
    let sample = with_unknown_field(sample(1_000, 0).encode_to_vec());
    // labels_refs, packed: every reference fits one byte.
    let mut series = vec![0x0a, refs.len() as u8];
    series.extend(refs.iter().map(|&r| r as u8));
    series.push(0x12);
    series.push(sample.len() as u8);
    series.extend_from_slice(&sample);
    let series = with_unknown_field(series);
    let mut raw = t.request(vec![]).encode_to_vec();
    raw.push(0x2a);
    raw.push(series.len() as u8);
    raw.extend_from_slice(&series);
    let s = scan_v2(&raw, Wanted::default()).expect("unknown fields are fine");
    assert_eq!(s.unknown_fields, 2);
    let converted = convert_v2(&raw, Wanted::default(), None, u64::MAX)
        .map(|c| c.1)
        .expect("converts");
    let got = v1::WriteRequest::decode(converted.as_slice()).expect("1.0");
    assert_eq!(got.encode_to_vec().len(), converted.len());
    assert_eq!(got.timeseries[0].samples[0].timestamp, 1_000);
}

/// A request with one series of `labels` carrying one sample, built by `edit`.
fn one_series(
    labels: &[(&str, &str)],
    edit: impl FnOnce(&mut Table, &mut v2::TimeSeries),
) -> Vec<u8> {
    let mut t = Table::new();
    let mut series = v2::TimeSeries {
        labels_refs: t.refs(labels),
        samples: vec![sample(1_000, 0)],
        ..v2::TimeSeries::default()
    };
    edit(&mut t, &mut series);
    t.request(vec![series]).encode_to_vec()
}

#[test]
fn every_rule_refuses_with_its_own_reason() {
    let name = [("__name__", "m")];
    let bad_utf8 = {
        let mut raw = v2::Request {
            symbols: vec![String::new(), "ok".into()],
            timeseries: vec![],
        }
        .encode_to_vec();
        let at = raw.len() - 2;
        raw[at] = 0xff;
        raw
    };
    let v1_body = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries::named("m", &[1_000])],
        metadata: vec![],
    }
    .encode_to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("symbol not UTF-8", bad_utf8, "utf8"),
        (
            "first symbol not empty",
            v2::Request {
                symbols: vec!["x".into()],
                timeseries: vec![],
            }
            .encode_to_vec(),
            "first_symbol",
        ),
        (
            "odd refs",
            one_series(&name, |_, s| s.labels_refs.push(1)),
            "odd_refs",
        ),
        (
            "label ref out of range",
            one_series(&name, |_, s| s.labels_refs[1] = 99),
            "symbol_ref",
        ),
        (
            "help ref out of range",
            one_series(&name, |_, s| {
                s.metadata = Some(v2::Metadata {
                    r#type: 1,
                    help_ref: 99,
                    unit_ref: 0,
                })
            }),
            "symbol_ref",
        ),
        (
            "exemplar ref out of range",
            one_series(&name, |_, s| {
                s.exemplars.push(v2::Exemplar {
                    labels_refs: vec![1, 99],
                    value: 1.0,
                    timestamp: 1,
                })
            }),
            "symbol_ref",
        ),
        (
            "exemplar odd refs",
            one_series(&name, |_, s| {
                s.exemplars.push(v2::Exemplar {
                    labels_refs: vec![1],
                    value: 1.0,
                    timestamp: 1,
                })
            }),
            "odd_refs",
        ),
        ("no labels", one_series(&[], |_, _| {}), "empty_labels"),
        (
            "empty label name",
            one_series(&name, |_, s| {
                s.labels_refs.splice(0..0, [0, 1]);
            }),
            "empty_label_name",
        ),
        (
            "unsorted",
            one_series(&[("job", "a"), ("__name__", "m")], |_, _| {}),
            "unsorted_labels",
        ),
        (
            "duplicate",
            one_series(&[("__name__", "m"), ("__name__", "n")], |_, _| {}),
            "duplicate_label",
        ),
        (
            "samples and histograms",
            one_series(&name, |_, s| s.histograms.push(nhcb(1_000, 0))),
            "samples_and_histograms",
        ),
        (
            "nothing carried",
            one_series(&name, |_, s| s.samples.clear()),
            "empty_series",
        ),
        ("1.0 body", v1_body, "v1_body"),
        ("bad protobuf", vec![0x2a, 0x05, 0x01], "protobuf"),
    ];
    for (what, raw, want) in cases {
        let e = scan_v2(&raw, Wanted::default()).expect_err(what);
        assert_eq!(e.as_label(), want, "{what}: {e}");
        assert_eq!(e.to_string().lines().count(), 1, "{what}: one line");
    }
}

#[test]
fn an_exemplar_alone_in_its_series_is_accepted() {
    let raw = one_series(&[("__name__", "m")], |t, s| {
        s.samples.clear();
        let trace = t.refs(&[("trace_id", "x")]);
        s.exemplars.push(v2::Exemplar {
            labels_refs: trace,
            value: 2.0,
            timestamp: 1_000,
        });
    });
    let s = scan_v2(&raw, Wanted::default()).expect("Prometheus sends these");
    assert_eq!((s.base.samples, s.base.exemplars), (0, 1));
    assert_eq!(s.base.min_ts, None);
}

#[test]
fn a_symbol_referenced_many_times_cannot_expand_past_the_limit() {
    // 2 000 series that all carry the same 1 000-byte label: a 2.0 body of about 60 KB,
    // a 1.0 form of about 2 MB.
    let mut t = Table::new();
    let big = "x".repeat(1_000);
    let series: Vec<v2::TimeSeries> = (0..2_000)
        .map(|i| v2::TimeSeries {
            labels_refs: t.refs(&[("__name__", "m"), ("pad", &big), ("z", &format!("{i}"))]),
            samples: vec![sample(1_000, 0)],
            ..v2::TimeSeries::default()
        })
        .collect();
    let raw = t.request(series).encode_to_vec();
    assert!(raw.len() < 100_000, "{}", raw.len());
    let e = convert_v2(&raw, Wanted::default(), None, 1 << 20).expect_err("over 1 MiB");
    assert_eq!(e.as_label(), "decoded_too_large", "{e}");
    let (_, v1) = convert_v2(&raw, Wanted::default(), None, 4 << 20).expect("under 4 MiB");
    assert!(v1.len() > 2_000_000, "{}", v1.len());
}

#[test]
fn an_empty_request_is_valid() {
    let s = scan_v2(&[], Wanted::default()).expect("empty");
    assert_eq!(s.base.series, 0);
    assert_eq!(
        convert_v2(&[], Wanted::default(), None, u64::MAX)
            .map(|c| c.1)
            .expect("converts"),
        Vec::<u8>::new()
    );
}

/// One random series: sorted, unique label names; timestamps; histograms or floats.
type ArbSeries = (Vec<(String, String)>, Vec<i64>, bool);

/// Random 2.0 requests.
fn arb_request() -> impl Strategy<Value = Vec<ArbSeries>> {
    let series = (
        proptest::collection::btree_map("[a-z_]{1,8}", "[ -~]{0,8}", 1..6),
        proptest::collection::vec(any::<i64>(), 1..6),
        any::<bool>(),
    )
        .prop_map(|(l, ts, h)| (l.into_iter().collect(), ts, h));
    proptest::collection::vec(series, 0..10)
}

proptest! {
    #[test]
    fn scan_and_conversion_agree_with_prost(all in arb_request()) {
        let mut t = Table::new();
        let mut series = Vec::new();
        let mut want = Vec::new();
        for (l, ts, h) in &all {
            let pairs: Vec<(&str, &str)> = l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let mut s = v2::TimeSeries { labels_refs: t.refs(&pairs), ..v2::TimeSeries::default() };
            let mut w = v1::TimeSeries {
                labels: l.iter().map(|(n, v)| label(n, v)).collect(),
                ..v1::TimeSeries::default()
            };
            for &ts in ts {
                if *h {
                    s.histograms.push(v2::Histogram { timestamp: ts, schema: 3, ..v2::Histogram::default() });
                    w.histograms.push(v1::Histogram { timestamp: ts, schema: 3, ..v1::Histogram::default() });
                } else {
                    s.samples.push(sample(ts, 0));
                    w.samples.push(v1::Sample { value: ts as f64 / 2.0, timestamp: ts });
                }
            }
            series.push(s);
            want.push(w);
        }
        let req = t.request(series);
        let raw = req.encode_to_vec();
        let s = scan_v2(&raw, Wanted::default()).expect("valid");
        let decoded = v2::Request::decode(raw.as_slice()).expect("prost");
        prop_assert_eq!(s.base.series as usize, decoded.timeseries.len());
        let samples: usize = decoded.timeseries.iter().map(|t| t.samples.len()).sum();
        let histograms: usize = decoded.timeseries.iter().map(|t| t.histograms.len()).sum();
        prop_assert_eq!(s.base.samples as usize, samples);
        prop_assert_eq!(s.base.histograms as usize, histograms);
        let all_ts = all.iter().flat_map(|s| &s.1);
        prop_assert_eq!(s.base.min_ts, all_ts.clone().min().copied());
        prop_assert_eq!(s.base.max_ts, all_ts.max().copied());
        let converted = convert_v2(&raw, Wanted::default(), None, u64::MAX).map(|c| c.1).expect("converts");
        prop_assert!(s.v1_bound >= converted.len() as u64, "the bound holds");
        let got = v1::WriteRequest::decode(converted.as_slice()).expect("1.0");
        prop_assert_eq!(got, v1::WriteRequest { timeseries: want, metadata: vec![] });
    }
}

//! Decode tests: golden bytes from the prost types, every kind of bad input, the strip.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::proto::{
    histogram, metric_metadata, BucketSpan, Exemplar, Histogram, Label, MetricMetadata, Sample,
    TimeSeries, WriteRequest,
};
use crate::wire::{scan, strip_label, write_varint, WireError};

const LIMITS: Limits = Limits {
    max_body_bytes: 1 << 20,
    max_decoded_bytes: 4 << 20,
};

fn label(n: &str, v: &str) -> Label {
    Label {
        name: n.into(),
        value: v.into(),
    }
}

fn series(labels: &[(&str, &str)], ts: &[i64]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: ts
            .iter()
            .map(|&t| Sample {
                value: t as f64 * 1.5,
                timestamp: t,
            })
            .collect(),
        ..TimeSeries::default()
    }
}

/// A request with every kind of content Remote-Write 1.0 carries.
fn full_request() -> WriteRequest {
    let mut s1 = series(
        &[
            ("__name__", "http_requests_total"),
            ("__replica__", "r1"),
            ("cluster", "eu"),
            ("job", "api"),
        ],
        &[1_000, 2_000, 3_000],
    );
    s1.exemplars.push(Exemplar {
        labels: vec![label("trace_id", "abc")],
        value: 1.0,
        timestamp: 2_500,
    });
    let mut s2 = series(
        &[
            ("__name__", "latency"),
            ("__replica__", "r1"),
            ("cluster", "eu"),
        ],
        &[],
    );
    s2.histograms.push(Histogram {
        count: Some(histogram::Count::CountInt(10)),
        sum: 12.5,
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: Some(histogram::ZeroCount::ZeroCountInt(1)),
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![4, -1],
        reset_hint: histogram::ResetHint::No as i32,
        timestamp: 500,
        ..Histogram::default()
    });
    WriteRequest {
        timeseries: vec![s1, s2],
        metadata: vec![MetricMetadata {
            r#type: metric_metadata::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: String::new(),
        }],
    }
}

fn compress(raw: &[u8]) -> Bytes {
    Bytes::from(
        snap::raw::Encoder::new()
            .compress_vec(raw)
            .expect("compress"),
    )
}

fn wanted() -> Wanted<'static> {
    Wanted {
        replica: Some("__replica__"),
        group: Some("cluster"),
    }
}

#[test]
fn scan_agrees_with_prost_on_golden_bytes() {
    let raw = full_request().encode_to_vec();
    let s = scan(&raw, wanted()).expect("valid");
    assert_eq!(s.series, 2);
    assert_eq!(s.samples, 3);
    assert_eq!(s.histograms, 1);
    assert_eq!(s.exemplars, 1);
    assert_eq!(s.metadata, 1);
    assert_eq!((s.min_ts, s.max_ts), (Some(500), Some(3_000)));
    assert_eq!(s.replica, Some("r1"));
    assert!(s.replica_seen);
    assert_eq!(s.group, Some("eu"));
}

#[test]
fn body_is_kept_byte_for_byte_when_nothing_is_stripped() {
    let body = compress(&full_request().encode_to_vec());
    let d = decode(body.clone(), LIMITS, Wanted::default(), Version::V1).expect("valid");
    assert_eq!(d.payload, body);
    assert_eq!(d.meta.samples, 3);
}

#[test]
fn replica_label_is_stripped_and_everything_else_kept() {
    let req = full_request();
    let body = compress(&req.encode_to_vec());
    let d = decode(body, LIMITS, wanted(), Version::V1).expect("valid");
    assert_eq!(d.replica.as_deref(), Some("r1"));
    assert_eq!(d.group.as_deref(), Some("eu"));
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&d.payload)
        .expect("snappy");
    let got = WriteRequest::decode(raw.as_slice()).expect("proto");
    let mut want = req;
    for s in &mut want.timeseries {
        s.labels.retain(|l| l.name != "__replica__");
    }
    assert_eq!(got, want);
}

#[test]
fn unknown_fields_pass_through_the_strip() {
    let mut raw = full_request().encode_to_vec();
    // An unknown top-level field 15 (varint 7): a newer sender's extension.
    write_varint(&mut raw, 15 << 3); // field 15, wire type 0 (varint)
    write_varint(&mut raw, 7);
    let stripped = strip_label(&raw, "__replica__").expect("valid");
    assert!(stripped.ends_with(&[15 << 3, 7]));
    scan(&stripped, wanted()).expect("still valid");
}

#[test]
fn snappy_bomb_is_refused_before_allocating() {
    // A varint announcing 1 GiB of output, then garbage.
    let mut bomb = Vec::new();
    write_varint(&mut bomb, 1 << 30);
    bomb.extend_from_slice(&[0; 16]);
    let e = decode(Bytes::from(bomb), LIMITS, wanted(), Version::V1).expect_err("bomb");
    assert!(matches!(e, IngestError::DecodedTooLarge { .. }), "{e}");
    assert_eq!(e.status_code(), 413);
}

#[test]
fn oversized_body_is_413() {
    let limits = Limits {
        max_body_bytes: 10,
        max_decoded_bytes: 100,
    };
    let e = decode(
        compress(&full_request().encode_to_vec()),
        limits,
        wanted(),
        Version::V1,
    )
    .expect_err("big");
    assert_eq!(e.status_code(), 413);
}

#[test]
fn bad_snappy_is_400() {
    let e = decode(
        Bytes::from_static(b"\xff\xff\xff\xff\xff\xff"),
        LIMITS,
        wanted(),
        Version::V1,
    )
    .expect_err("bad");
    assert!(matches!(e, IngestError::Snappy(_)), "{e}");
    assert_eq!(e.status_code(), 400);
}

fn refuse(raw: Vec<u8>) -> IngestError {
    decode(compress(&raw), LIMITS, wanted(), Version::V1).expect_err("must be refused")
}

#[test]
fn every_kind_of_bad_protobuf_is_400_with_a_reason() {
    let good = full_request().encode_to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() - 3].to_vec(), "protobuf"),
        (
            "bad varint",
            vec![
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            "protobuf",
        ),
        ("group wire type", vec![0x0b], "protobuf"),
        ("field zero", vec![0x02, 0x00], "protobuf"),
        ("timeseries as varint", vec![0x08, 0x01], "protobuf"),
        ("text", b"hello world, not a protobuf".to_vec(), "protobuf"),
    ];
    for (name, raw, label) in cases {
        let e = refuse(raw);
        assert_eq!(e.status_code(), 400, "{name}");
        assert_eq!(e.as_label(), label, "{name}: {e}");
        assert!(!e.to_string().contains('\n'), "{name}: one line");
    }
}

#[test]
fn label_rules_of_the_spec() {
    let req = |labels: &[(&str, &str)]| {
        WriteRequest {
            timeseries: vec![series(labels, &[1])],
            metadata: vec![],
        }
        .encode_to_vec()
    };
    let e = refuse(req(&[("job", "a"), ("__name__", "x")]));
    assert!(
        matches!(e, IngestError::Wire(WireError::Unsorted { .. })),
        "{e}"
    );
    let e = refuse(req(&[("__name__", "x"), ("__name__", "y")]));
    assert!(
        matches!(e, IngestError::Wire(WireError::Duplicate { .. })),
        "{e}"
    );
    let e = refuse(req(&[("", "x")]));
    assert!(
        matches!(e, IngestError::Wire(WireError::EmptyLabelName { .. })),
        "{e}"
    );
    let e = refuse(req(&[]));
    assert!(
        matches!(e, IngestError::Wire(WireError::EmptyLabelSet { .. })),
        "{e}"
    );
    // Invalid UTF-8 in a label value: hand-built bytes (prost would refuse to encode it).
    let mut label = vec![0x0a, 0x01, b'a', 0x12, 0x02, 0xc3, 0x28];
    let mut ts = vec![0x0a, label.len() as u8];
    ts.append(&mut label);
    let mut raw = vec![0x0a, ts.len() as u8];
    raw.append(&mut ts);
    let e = refuse(raw);
    assert!(
        matches!(e, IngestError::Wire(WireError::Utf8 { .. })),
        "{e}"
    );
}

#[test]
fn a_small_body_after_a_large_one_sees_only_its_own_bytes() {
    // The thread's scratch buffer keeps the large body's bytes past the small one's end.
    let large = WriteRequest {
        timeseries: (0..200)
            .map(|i| series(&[("__name__", "up"), ("i", &i.to_string())], &[i]))
            .collect(),
        metadata: vec![],
    };
    let small = WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], &[7])],
        metadata: vec![],
    };
    let d = decode(
        compress(&large.encode_to_vec()),
        LIMITS,
        wanted(),
        Version::V1,
    )
    .expect("valid");
    assert_eq!(d.meta.series, 200);
    let d = decode(
        compress(&small.encode_to_vec()),
        LIMITS,
        wanted(),
        Version::V1,
    )
    .expect("valid");
    assert_eq!((d.meta.series, d.meta.samples, d.meta.max_ts), (1, 1, 7));
    // A small block that announces more than it holds is refused, whatever the buffer had.
    let mut short = compress(&small.encode_to_vec()).to_vec();
    short[0] += 1;
    assert!(decode(Bytes::from(short), LIMITS, wanted(), Version::V1).is_err());
}

#[test]
fn empty_request_is_valid() {
    let d = decode(compress(&[]), LIMITS, wanted(), Version::V1).expect("empty is fine");
    assert_eq!(d.meta.series, 0);
}

fn arb_series() -> impl Strategy<Value = TimeSeries> {
    (
        proptest::collection::btree_map("[a-z_]{1,8}", "[ -~]{0,8}", 1..6),
        proptest::collection::vec(any::<i64>(), 0..8),
    )
        .prop_map(|(labels, ts)| TimeSeries {
            labels: labels
                .into_iter()
                .map(|(name, value)| Label { name, value })
                .collect(),
            samples: ts
                .into_iter()
                .map(|t| Sample {
                    value: 1.0,
                    timestamp: t,
                })
                .collect(),
            ..TimeSeries::default()
        })
}

proptest! {
    #[test]
    fn scan_agrees_with_prost_on_random_requests(ts in proptest::collection::vec(arb_series(), 0..12)) {
        let req = WriteRequest { timeseries: ts, metadata: vec![] };
        let raw = req.encode_to_vec();
        let s = scan(&raw, Wanted::default()).expect("valid by construction");
        let all: Vec<i64> = req.timeseries.iter().flat_map(|t| t.samples.iter().map(|s| s.timestamp)).collect();
        prop_assert_eq!(s.series as usize, req.timeseries.len());
        prop_assert_eq!(s.samples as usize, all.len());
        prop_assert_eq!(s.min_ts, all.iter().copied().min());
        prop_assert_eq!(s.max_ts, all.iter().copied().max());
    }

    /// Labels in any order, empty or non-ASCII: the scan finds the same first rule broken
    /// (or none) as a plain reading of the prost-decoded request.
    #[test]
    fn scan_applies_the_label_rules_like_prost(
        series in proptest::collection::vec(
            (
                proptest::collection::vec(("[a-cé_]{0,3}", "\\PC{0,4}"), 0..5),
                proptest::collection::vec(any::<i64>(), 0..3),
            ),
            0..6,
        ),
    ) {
        let req = WriteRequest {
            timeseries: series
                .iter()
                .map(|(labels, ts)| TimeSeries {
                    labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
                    samples: ts.iter().map(|&t| Sample { value: 0.5, timestamp: t }).collect(),
                    ..TimeSeries::default()
                })
                .collect(),
            metadata: vec![],
        };
        let expected = series.iter().find_map(|(labels, _)| {
            if labels.is_empty() {
                return Some("empty_labels");
            }
            let mut prev: Option<&str> = None;
            for (name, _) in labels {
                if name.is_empty() {
                    return Some("empty_label_name");
                }
                match prev.map(|p| p.cmp(name.as_str())) {
                    Some(std::cmp::Ordering::Equal) => return Some("duplicate_label"),
                    Some(std::cmp::Ordering::Greater) => return Some("unsorted_labels"),
                    _ => prev = Some(name),
                }
            }
            None
        });
        let raw = req.encode_to_vec();
        let got = scan(&raw, Wanted::default());
        prop_assert_eq!(got.as_ref().err().map(WireError::as_label), expected, "{:?}", got);
    }

    /// A damaged request the scan still accepts reads the same as prost reads it (when
    /// prost accepts it too): the inline paths take no shortcut the field loop would not.
    #[test]
    fn damaged_requests_read_like_prost(
        ts in proptest::collection::vec(arb_series(), 1..6),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut raw = WriteRequest { timeseries: ts, metadata: vec![] }.encode_to_vec();
        let i = at.index(raw.len());
        raw[i] = byte;
        if let (Ok(s), Ok(req)) = (scan(&raw, Wanted::default()), WriteRequest::decode(&raw[..])) {
            let all: Vec<i64> = req.timeseries.iter().flat_map(|t| t.samples.iter().map(|s| s.timestamp)).collect();
            prop_assert_eq!(s.series as usize, req.timeseries.len());
            prop_assert_eq!(s.samples as usize, all.len());
            prop_assert_eq!(s.min_ts, all.iter().copied().min());
            prop_assert_eq!(s.max_ts, all.iter().copied().max());
        }
    }

    #[test]
    fn scan_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = scan(&bytes, wanted());
        let _ = strip_label(&bytes, "__replica__");
    }
}

#[test]
fn a_2_0_body_whose_1_0_form_is_too_large_is_a_413() {
    let big = "y".repeat(1_000);
    let v1 = WriteRequest {
        timeseries: (0..2_000)
            .map(|i| {
                series(
                    &[("__name__", "m"), ("pad", &big), ("z", &i.to_string())],
                    &[1_000],
                )
            })
            .collect(),
        metadata: vec![],
    };
    let body = compress(&crate::proto::v2::Request::from_v1(&v1).encode_to_vec());
    let limits = Limits {
        max_body_bytes: 1 << 20,
        max_decoded_bytes: 1 << 20,
    };
    let e = decode(body, limits, wanted(), Version::V2).expect_err("over the limit");
    assert_eq!(e.status_code().as_u16(), 413, "{e}");
    assert_eq!(e.as_label(), "decoded_too_large");
}

#[test]
fn a_2_0_body_is_stored_as_received_and_stripped_in_2_0() {
    let limits = Limits {
        max_body_bytes: 1 << 20,
        max_decoded_bytes: 1 << 20,
    };
    let plain = WriteRequest {
        timeseries: vec![series(&[("__name__", "up"), ("job", "x")], &[1_000, 2_000])],
        metadata: vec![],
    };
    let body = compress(&crate::proto::v2::Request::from_v1(&plain).encode_to_vec());
    let d = decode(body.clone(), limits, wanted(), Version::V2).expect("valid");
    assert_eq!(d.protocol, Version::V2);
    assert_eq!(d.payload, body, "nothing to strip: the body as received");
    assert_eq!(
        (d.meta.samples, d.meta.min_ts, d.meta.max_ts),
        (2, 1_000, 2_000)
    );
    assert_eq!(d.written.samples, 2);

    let replica = WriteRequest {
        timeseries: vec![series(
            &[("__name__", "up"), ("__replica__", "r1"), ("job", "x")],
            &[1_000],
        )],
        metadata: vec![],
    };
    let body = compress(&crate::proto::v2::Request::from_v1(&replica).encode_to_vec());
    let d = decode(body, limits, wanted(), Version::V2).expect("valid");
    assert_eq!(
        (d.protocol, d.replica.as_deref()),
        (Version::V2, Some("r1"))
    );
    let raw = decompress(&d.payload, 1 << 20).expect("snappy");
    let stored = crate::proto::v2::Request::decode(raw.as_slice()).expect("2.0");
    let names: Vec<&str> = stored.timeseries[0]
        .labels_refs
        .chunks_exact(2)
        .map(|p| stored.symbols[p[0] as usize].as_str())
        .collect();
    assert_eq!(
        names,
        ["__name__", "job"],
        "stored in 2.0, without the replica"
    );
}

//! Which Remote-Write version an endpoint gets, and the conversion of 2.0 records for an
//! endpoint that takes 1.0.
//!
//! The WAL keeps each record in the version it arrived in. Per endpoint:
//! - a 1.0 record goes as 1.0 (every 2.0 receiver takes 1.0 too), joined with its
//!   neighbours as before;
//! - a 2.0 record goes as 2.0, alone (two 2.0 requests cannot be joined: the second's
//!   references point into its own symbols table), when the endpoint speaks 2.0;
//! - a 2.0 record is converted to 1.0 (`to_v1`) when the endpoint speaks 1.0. What 1.0
//!   cannot carry (start timestamps, fields 2.0 does not define) is dropped, counted per
//!   endpoint and logged once per endpoint.
//!
//! An endpoint configured `auto` (`Speaker`) starts with 2.0 and falls back to 1.0 for
//! good when the storage shows that it does not read 2.0: a 415, a 2xx without the
//! `X-Prometheus-Remote-Write-*-Written` headers (VictoriaMetrics answers a 2.0 body so,
//! and writes nothing), or, before any 2.0 request was confirmed, any other refusal. The
//! fallback is kept in the WAL, so a restart does not probe again. The records of a
//! refused 2.0 request are sent again as 1.0; they are never counted as delivered.

use std::collections::HashSet;
use std::sync::LazyLock;

use bytes::Bytes;
use parking_lot::Mutex;

use super::send::Final;
use crate::metrics::METRICS;
use crate::wal::Record;
use crate::wire::{self, Version, Wanted, WireError};

/// Most bytes the 1.0 form of a stored 2.0 record may take. The ingest held that form to
/// its decoded-size limit already; this is snappy's own limit.
const CONVERTED_MAX: u64 = u32::MAX as u64;

/// The protocol an endpoint is configured with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EgressProtocol {
    /// Everything as 1.0; 2.0 records converted.
    V1,
    /// 2.0 records as 2.0, 1.0 records as 1.0.
    V2,
    /// 2.0 until the storage shows it takes only 1.0, then 1.0 for good.
    #[default]
    Auto,
}

impl EgressProtocol {
    /// Parses `1.0`, `2.0` or `auto`.
    pub fn parse(s: &str) -> Result<EgressProtocol, String> {
        match s.trim() {
            "1.0" | "1" => Ok(EgressProtocol::V1),
            "2.0" | "2" => Ok(EgressProtocol::V2),
            "auto" => Ok(EgressProtocol::Auto),
            other => Err(format!(
                "protocol {other:?} is not one of \"1.0\", \"2.0\", \"auto\""
            )),
        }
    }

    /// `1.0`, `2.0` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            EgressProtocol::V1 => "1.0",
            EgressProtocol::V2 => "2.0",
            EgressProtocol::Auto => "auto",
        }
    }
}

/// The protocol state of one endpoint.
#[derive(Debug)]
pub(super) struct Speaker {
    configured: EgressProtocol,
    /// What 2.0 records go as.
    speaks: Version,
    /// `auto`: a 2.0 request was answered with the Written headers.
    confirmed: bool,
}

impl Speaker {
    /// The state of an endpoint configured `configured`; `settled` is the fallback an
    /// `auto` endpoint stored earlier.
    pub(super) fn new(configured: EgressProtocol, settled: Option<Version>) -> Speaker {
        let speaks = match (configured, settled) {
            (EgressProtocol::V1, _) => Version::V1,
            (EgressProtocol::V2, _) => Version::V2,
            (EgressProtocol::Auto, Some(v)) => v,
            (EgressProtocol::Auto, None) => Version::V2,
        };
        Speaker {
            configured,
            speaks,
            confirmed: false,
        }
    }

    /// What 2.0 records go as now.
    pub(super) fn speaks(&self) -> Version {
        self.speaks
    }

    /// The version `record` goes as.
    pub(super) fn wire(&self, record: &Record) -> Version {
        match record.protocol {
            Version::V1 => Version::V1,
            Version::V2 => self.speaks,
        }
    }

    /// Learns from the answer to a 2.0 request. Returns `true` when `auto` falls back to
    /// 1.0 now: the request's records go again as 1.0.
    pub(super) fn answered(&mut self, outcome: &Final) -> bool {
        if self.configured != EgressProtocol::Auto || self.speaks == Version::V1 {
            return false;
        }
        let fall_back = match outcome {
            Final::Delivered => {
                self.confirmed = true;
                false
            }
            Final::NotV2 { .. } => true,
            // Until a 2.0 request was confirmed, any refusal may mean "not 2.0".
            Final::Reject { .. } => !self.confirmed,
            Final::TooLarge => false,
        };
        if fall_back {
            self.speaks = Version::V1;
        }
        fall_back
    }
}

/// The payload of `record` in `version`: as stored, or converted to 1.0.
pub(super) fn payload_in(
    record: &Record,
    version: Version,
    endpoint: &str,
) -> Result<Bytes, WireError> {
    match (record.protocol, version) {
        (Version::V2, Version::V1) => to_v1(record, endpoint),
        _ => Ok(record.payload.clone()),
    }
}

/// The payloads of `records` in `version`. When several records need the conversion, they
/// are converted on one thread per core at once: the conversion, not the storage, bounds
/// how fast a 1.0 storage takes 2.0 writes, and a worker sends one request at a time.
pub(super) fn payloads_in(
    records: &[Record],
    version: Version,
    endpoint: &str,
) -> Result<Vec<Bytes>, WireError> {
    let one = |r: &Record| payload_in(r, version, endpoint);
    let converting = match version {
        Version::V1 => records.iter().filter(|r| r.protocol == Version::V2).count(),
        Version::V2 => 0,
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(converting);
    if threads <= 1 {
        return records.iter().map(one).collect();
    }
    let mut parts = records.chunks(records.len().div_ceil(threads));
    let here = parts.next().unwrap_or_default();
    std::thread::scope(|s| {
        let others: Vec<_> = parts
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut out = here.iter().map(one).collect::<Result<Vec<_>, _>>()?;
        for other in others {
            let part = other
                .join()
                .map_err(|_| WireError::Malformed("the conversion thread failed"))??;
            out.extend(part);
        }
        Ok(out)
    })
}

/// The 1.0 form of a stored 2.0 record, snappy-compressed. Counts the conversion and what
/// it dropped for `endpoint`.
pub(super) fn to_v1(record: &Record, endpoint: &str) -> Result<Bytes, WireError> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&record.payload)
        .map_err(|_| WireError::Malformed("stored payload is not snappy"))?;
    let (summary, v1) = wire::convert_v2(&raw, Wanted::default(), None, CONVERTED_MAX)?;
    let m = &METRICS.shipper;
    m.converted.with_label_values(&[endpoint]).inc();
    let dropped = [
        ("start_timestamp", summary.start_timestamps),
        ("unknown_field", summary.unknown_fields),
    ];
    for (what, n) in dropped.into_iter().filter(|(_, n)| *n > 0) {
        m.conversion_dropped
            .with_label_values(&[endpoint, what])
            .inc_by(u64::from(n));
        log_once(endpoint, what);
    }
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&v1)
        .map_err(|_| WireError::Malformed("snappy encode failed"))?;
    Ok(Bytes::from(compressed))
}

/// Says once per endpoint and kind that the conversion drops something.
fn log_once(endpoint: &str, what: &'static str) {
    static LOGGED: LazyLock<Mutex<HashSet<(String, &'static str)>>> = LazyLock::new(Mutex::default);
    if LOGGED.lock().insert((endpoint.to_owned(), what)) {
        tracing::warn!(
            endpoint, what,
            "shipper: a Remote-Write 2.0 write carries what 1.0 cannot hold; the endpoint takes 1.0, so it is dropped (counted in highlander_shipper_conversion_dropped_total; logged once per endpoint)"
        );
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{Label, Sample, TimeSeries, WriteRequest};
    use crate::wal::RecordMeta;

    /// A stored 2.0 record of one series `up{i=…}` with one sample.
    fn v2_record(i: usize) -> Record {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "i".into(),
                        value: i.to_string(),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: i as i64,
                }],
                ..TimeSeries::default()
            }],
            metadata: vec![],
        };
        let raw = crate::proto::v2::Request::from_v1(&req).encode_to_vec();
        Record {
            group: "g".into(),
            source: "a".into(),
            meta: RecordMeta::default(),
            payload: snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy")
                .into(),
            protocol: Version::V2,
        }
    }

    #[test]
    fn records_converted_at_once_come_back_in_order() {
        let records: Vec<Record> = (0..9).map(v2_record).collect();
        let together = payloads_in(&records, Version::V1, "test").expect("converts");
        let one_by_one: Vec<Bytes> = records
            .iter()
            .map(|r| payload_in(r, Version::V1, "test").expect("converts"))
            .collect();
        assert_eq!(together, one_by_one);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&together[4])
            .expect("snappy");
        let req = WriteRequest::decode(raw.as_slice()).expect("1.0");
        assert_eq!(req.timeseries[0].samples[0].timestamp, 4);
        // 2.0 to a 2.0 endpoint: as stored.
        let kept = payloads_in(&records, Version::V2, "test").expect("as is");
        assert_eq!(kept[0], records[0].payload);
    }

    fn reject() -> Final {
        Final::Reject {
            status: 400,
            answer: "bad".into(),
        }
    }

    fn not_v2() -> Final {
        Final::NotV2 {
            status: 415,
            reason: "1.0 only".into(),
        }
    }

    #[test]
    fn auto_falls_back_on_a_sign_and_stays() {
        let mut s = Speaker::new(EgressProtocol::Auto, None);
        assert_eq!(s.speaks(), Version::V2);
        assert!(!s.answered(&Final::Delivered));
        // Confirmed: an ordinary refusal or a 413 later says nothing about 2.0.
        assert!(!s.answered(&reject()));
        assert!(!s.answered(&Final::TooLarge));
        assert_eq!(s.speaks(), Version::V2);
        assert!(s.answered(&not_v2()));
        assert_eq!(s.speaks(), Version::V1);
        assert!(!s.answered(&not_v2()), "once");
    }

    #[test]
    fn an_unconfirmed_auto_falls_back_on_any_refusal() {
        let mut s = Speaker::new(EgressProtocol::Auto, None);
        assert!(s.answered(&reject()));
        assert_eq!(s.speaks(), Version::V1);
    }

    #[test]
    fn fixed_protocols_never_change_and_a_stored_fallback_holds() {
        for configured in [EgressProtocol::V1, EgressProtocol::V2] {
            let mut s = Speaker::new(configured, Some(Version::V1));
            let before = s.speaks();
            assert!(!s.answered(&not_v2()));
            assert_eq!(s.speaks(), before);
        }
        assert_eq!(
            Speaker::new(EgressProtocol::Auto, Some(Version::V1)).speaks(),
            Version::V1
        );
        for (text, want) in [
            ("1.0", EgressProtocol::V1),
            ("2.0", EgressProtocol::V2),
            ("auto", EgressProtocol::Auto),
        ] {
            assert_eq!(EgressProtocol::parse(text), Ok(want));
            assert_eq!(want.as_str(), text);
        }
        assert!(EgressProtocol::parse("3.0").is_err());
    }
}

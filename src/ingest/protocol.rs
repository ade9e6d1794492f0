//! Which Remote-Write version a request speaks, and what a 2.0 sender must be told.
//!
//! The version comes from the `Content-Type` header:
//! - `application/x-protobuf`, alone or with `proto=prometheus.WriteRequest`: 1.0;
//! - `application/x-protobuf;proto=io.prometheus.write.v2.Request`: 2.0.
//!
//! The parse is tolerant, as HTTP allows: the media type and parameter names in any case,
//! spaces around `;` and `=`, a quoted value. A missing `Content-Type` counts as 1.0 (the
//! original proxy's clients send none). Any other media type or `proto=` is refused with
//! 415, and the reason names what is accepted.
//!
//! Every answer to a 2.0 request carries the `X-Prometheus-Remote-Write-*-Written`
//! headers ([`Written`]): Prometheus treats a 2xx without them, or with all of them zero,
//! as a failure and drops the batch. Answers to 1.0 requests carry none (Prometheus reads
//! them on 1.0 too, and would log a standby's zeros as failures).

use actix_web::http::header::{HeaderMap, CONTENT_TYPE};
use actix_web::HttpResponseBuilder;

use super::error::IngestError;

use crate::wire::WRITTEN_HEADERS;
pub use crate::wire::{Version, MEDIA_TYPE, PROTO_V1, PROTO_V2};

impl Version {
    /// The version a request's headers announce.
    pub fn of(headers: &HeaderMap) -> Result<Version, IngestError> {
        match headers.get(CONTENT_TYPE) {
            None => Ok(Version::V1),
            Some(v) => {
                let text = v
                    .to_str()
                    .map_err(|_| IngestError::ContentType("<not ASCII>".to_owned()))?;
                parse_content_type(text)
            }
        }
    }
}

/// The version named by a `Content-Type` value.
pub fn parse_content_type(value: &str) -> Result<Version, IngestError> {
    let refuse = || IngestError::ContentType(value.to_owned());
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(MEDIA_TYPE) {
        return Err(refuse());
    }
    let mut version = Version::V1;
    for param in parts {
        let Some((name, val)) = param.split_once('=') else {
            if param.trim().is_empty() {
                continue;
            }
            return Err(refuse());
        };
        if !name.trim().eq_ignore_ascii_case("proto") {
            continue;
        }
        let val = val.trim();
        let val = val
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(val);
        version = match val {
            PROTO_V1 => Version::V1,
            PROTO_V2 => Version::V2,
            _ => return Err(refuse()),
        };
    }
    Ok(version)
}

/// What a 2.0 answer says was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Float samples.
    pub samples: u64,
    /// Native histogram samples.
    pub histograms: u64,
    /// Exemplars.
    pub exemplars: u64,
}

impl Written {
    /// Adds the three headers to an answer.
    pub fn insert(&self, resp: &mut HttpResponseBuilder) {
        let counts = [self.samples, self.histograms, self.exemplars];
        for (name, n) in WRITTEN_HEADERS.into_iter().zip(counts) {
            resp.insert_header((name, n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_parse_tolerantly() {
        let v1 = Version::V1;
        let v2 = Version::V2;
        for (value, want) in [
            ("application/x-protobuf", v1),
            ("Application/X-Protobuf", v1),
            ("application/x-protobuf;proto=prometheus.WriteRequest", v1),
            (
                "application/x-protobuf ; proto = prometheus.WriteRequest",
                v1,
            ),
            (
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                v2,
            ),
            (
                "application/x-protobuf; proto=\"io.prometheus.write.v2.Request\"",
                v2,
            ),
            (
                "application/x-protobuf;PROTO=io.prometheus.write.v2.Request",
                v2,
            ),
            ("application/x-protobuf; charset=utf-8", v1),
            ("application/x-protobuf;", v1),
        ] {
            let got = parse_content_type(value).map_err(|e| e.to_string());
            assert_eq!(got, Ok(want), "{value}");
        }
        for value in [
            "application/json",
            "text/plain",
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
            "application/x-protobuf;proto=prometheus.writerequest",
            "application/x-protobuf;garbage",
            "",
        ] {
            let e = parse_content_type(value).expect_err(value);
            assert_eq!(e.status_code().as_u16(), 415, "{value}");
            let text = e.to_string();
            assert!(
                text.contains(PROTO_V1) && text.contains(PROTO_V2),
                "the reason names what is accepted: {text}"
            );
        }
    }
}

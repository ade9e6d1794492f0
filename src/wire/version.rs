//! The Remote-Write versions and the strings that name them on the wire: the media type,
//! the `proto=` of each version, and the headers a request of each version carries.

/// The media type of both Remote-Write versions.
pub const MEDIA_TYPE: &str = "application/x-protobuf";
/// The `proto=` of Remote-Write 1.0.
pub const PROTO_V1: &str = "prometheus.WriteRequest";
/// The `proto=` of Remote-Write 2.0.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";
/// The headers of every answer to a 2.0 request, in this order: samples, histograms and
/// exemplars written. A 2xx without them comes from a receiver that did not read 2.0.
pub const WRITTEN_HEADERS: [&str; 3] = [
    "X-Prometheus-Remote-Write-Samples-Written",
    "X-Prometheus-Remote-Write-Histograms-Written",
    "X-Prometheus-Remote-Write-Exemplars-Written",
];

/// A Remote-Write protocol version: the ingest reads it from the `Content-Type`, the WAL
/// keeps it with each record, and the shipper sends each record in the version its storage
/// takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Version {
    /// `prometheus.WriteRequest`.
    #[default]
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

impl Version {
    /// The version as metrics, logs and the admin API name it: `1.0` or `2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "1.0",
            Version::V2 => "2.0",
        }
    }

    /// The `Content-Type` a request of this version carries, exactly as the spec writes it.
    pub fn content_type(self) -> &'static str {
        match self {
            Version::V1 => "application/x-protobuf",
            Version::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// The `X-Prometheus-Remote-Write-Version` a request of this version carries.
    pub fn version_header(self) -> &'static str {
        match self {
            Version::V1 => "0.1.0",
            Version::V2 => "2.0.0",
        }
    }
}

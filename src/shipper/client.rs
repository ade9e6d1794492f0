//! One storage endpoint's HTTP client: the Remote-Write request headers in one place,
//! authentication, timeouts and TLS.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT,
};

use super::protocol::EgressProtocol;
use super::retry::{classify_error, classify_status, Verdict};
use crate::wire::{Version, WRITTEN_HEADERS};

/// Installs the process-wide TLS crypto provider (ring) once. Every HTTP client needs it.
/// We use ring because the aws-lc default would add minutes to every clean build.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already. That one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Credentials for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    None,
    /// HTTP basic auth.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

/// Everything needed to talk to one storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Name in logs, cursors and the admin API.
    pub name: String,
    /// The write URL.
    pub url: url::Url,
    /// Extra headers (e.g. `X-Scope-OrgID`).
    pub headers: Vec<(String, String)>,
    /// Credentials.
    pub auth: Auth,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Extra CA certificates (PEM) trusted besides the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any certificate (testing only).
    pub tls_insecure_skip_verify: bool,
    /// Decoded bytes of consecutive records joined into one request. A single record
    /// larger than this still goes out alone. Set it to 0 to send one record per request.
    pub max_batch_bytes: u64,
    /// Requests out at once with no regard to order. With more than 1, a series'
    /// samples may arrive out of order; use that only for storages that accept it.
    pub max_in_flight: usize,
    /// With `max_in_flight` 1: requests out at once that share no series, so the storage
    /// sees each series' samples in timestamp order.
    pub ordered_in_flight: usize,
    /// The Remote-Write version 2.0 records go as.
    pub protocol: EgressProtocol,
}

impl EndpointConfig {
    /// The URL without credentials, for logs and the admin API.
    pub fn display_url(&self) -> String {
        let mut u = self.url.clone();
        // Setting these cannot fail for http(s) URLs, and validation lets only those
        // through.
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.to_string()
    }
}

/// Errors building a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file could not be read or parsed.
    #[error("endpoint {endpoint}: TLS CA file {path}: {reason}")]
    Ca {
        /// Endpoint.
        endpoint: String,
        /// File.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A header name or value is not valid HTTP.
    #[error("endpoint {endpoint}: invalid header {name:?}")]
    Header {
        /// Endpoint.
        endpoint: String,
        /// Header name.
        name: String,
    },
    /// reqwest refused the settings.
    #[error("endpoint {endpoint}: {reason}")]
    Build {
        /// Endpoint.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
}

/// A ready client for one endpoint. A cheap clone.
#[derive(Clone, Debug)]
pub struct EndpointClient {
    http: reqwest::Client,
    url: url::Url,
    auth: Auth,
}

impl EndpointClient {
    /// Builds the client with its default headers.
    pub fn new(cfg: &EndpointConfig) -> Result<Self, ClientError> {
        install_crypto_provider();
        let header_err = |name: &str| ClientError::Header {
            endpoint: cfg.name.clone(),
            name: name.to_owned(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("highlander/", env!("CARGO_PKG_VERSION"))),
        );
        for (name, value) in &cfg.headers {
            let n = HeaderName::try_from(name.as_str()).map_err(|_| header_err(name))?;
            let v = HeaderValue::try_from(value.as_str()).map_err(|_| header_err(name))?;
            headers.insert(n, v);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_danger_accept_invalid_certs(cfg.tls_insecure_skip_verify);
        if let Some(path) = &cfg.tls_ca_file {
            let certs = read_ca_bundle(path).map_err(|reason| ClientError::Ca {
                endpoint: cfg.name.clone(),
                path: path.display().to_string(),
                reason,
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| ClientError::Build {
            endpoint: cfg.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(EndpointClient {
            http,
            url: cfg.url.clone(),
            auth: cfg.auth.clone(),
        })
    }

    /// Sends one snappy-compressed request of `version` and classifies the outcome.
    pub async fn send(&self, payload: Bytes, version: Version) -> Verdict {
        let sent = Arc::new(AtomicBool::new(false));
        let request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, version.content_type())
            .header(
                "X-Prometheus-Remote-Write-Version",
                version.version_header(),
            )
            .body(reqwest::Body::wrap(Payload::new(payload, sent.clone())));
        let request = match &self.auth {
            Auth::None => request,
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        let resp = match request.send().await {
            Ok(r) => r,
            Err(e) => return classify_error(&e),
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() && !sent.load(Ordering::Acquire) {
            // A storage that has not read the whole request cannot have stored it (a
            // storage or proxy that answers first and reads later would lose it). An
            // early refusal is a refusal, so this only looks at 2xx.
            return Verdict::Retry {
                status: None,
                reason: format!(
                    "HTTP {status} before the whole request was sent: the storage cannot have read it; sending it again"
                ),
                after: None,
            };
        }
        if version == Version::V2 {
            if let Some(not_v2) = not_read_as_v2(status, resp.headers()) {
                return not_v2;
            }
        }
        if resp.status().is_success() {
            return Verdict::Delivered;
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await.unwrap_or_default();
        classify_status(status, retry_after.as_deref(), &body)
    }
}

/// The body of one request: the payload in slices of this size. So the body is taken by
/// the connection a slice at a time, as the socket drains, and the last slice is taken only
/// once the rest has been written out (up to the HTTP client's and the kernel's buffers).
const BODY_SLICE: usize = 64 << 10;

/// A request body that records when its last byte was handed to the connection. An answer
/// that comes before then answers a request the storage cannot have read whole. Slicing
/// [`Bytes`] copies nothing.
struct Payload {
    rest: Bytes,
    sent: Arc<AtomicBool>,
}

impl Payload {
    fn new(payload: Bytes, sent: Arc<AtomicBool>) -> Payload {
        sent.store(payload.is_empty(), Ordering::Release);
        Payload {
            rest: payload,
            sent,
        }
    }
}

impl http_body::Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(BODY_SLICE);
        let slice = self.rest.split_to(n);
        if self.rest.is_empty() {
            self.sent.store(true, Ordering::Release);
        }
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        // Exact, so the request carries a Content-Length, as with a plain byte body.
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// Whether the answer to a 2.0 request shows that the storage did not read 2.0.
fn not_read_as_v2(status: u16, headers: &HeaderMap) -> Option<Verdict> {
    let reason = match status {
        415 => "HTTP 415: the storage does not take Remote-Write 2.0",
        200..=299 if !WRITTEN_HEADERS.iter().any(|h| headers.contains_key(*h)) => {
            "HTTP 2xx without X-Prometheus-Remote-Write-Samples-Written: the storage did not read the request as Remote-Write 2.0"
        }
        _ => return None,
    };
    Some(Verdict::NotV2 {
        status,
        reason: reason.to_owned(),
    })
}

/// The CA certificates of a PEM bundle: egress roots here, peer roots in the cluster. A
/// file without any certificate is an error; it does not mean "trust nothing".
pub fn read_ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

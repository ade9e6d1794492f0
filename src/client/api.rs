//! Calls to the admin API: one shared HTTP client, the bearer token, JSON in and out.
//! Errors say what the operator should do next.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::api::ErrorBody;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command line or the token file is unusable (nothing was sent).
    #[error("{0}")]
    Usage(String),
    /// No connection to the admin listener (refused, DNS, TLS, timeout).
    #[error(
        "cannot reach the admin API at {url}: {reason} (is the node running, and is \
         --admin / HIGHLANDER_ADMIN right?)"
    )]
    Unreachable {
        /// Where we tried.
        url: String,
        /// The innermost cause.
        reason: String,
    },
    /// The node answered with an error, `{error, detail}` when it is JSON.
    #[error("{}", server_message(*status, code, detail))]
    Server {
        /// HTTP status.
        status: u16,
        /// The `error` code, e.g. `unknown_group`.
        code: Option<String>,
        /// The `detail`, or the body as text.
        detail: String,
    },
    /// The node answered 2xx with something that is not JSON.
    #[error("the admin API at {url} answered with something that is not JSON: {reason}")]
    BadAnswer {
        /// The URL called.
        url: String,
        /// Why it did not parse.
        reason: String,
    },
    /// The node answered 2xx with JSON that does not read as the answer this client
    /// expects: a value of another type, or a state it does not know. Most likely the node
    /// runs another version.
    #[error(
        "the admin API answered with JSON this client cannot read: {0} (--json prints it \
         as is)"
    )]
    Unreadable(String),
}

impl ClientError {
    /// The process exit code: 2 for a local usage problem, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            _ => 1,
        }
    }
}

fn server_message(status: u16, code: &Option<String>, detail: &str) -> String {
    let mut msg = match code {
        Some(c) => format!("{status} {c}: {detail}"),
        None => {
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error");
            if detail.is_empty() {
                format!("{status} {reason}")
            } else {
                format!("{status} {reason}: {detail}")
            }
        }
    };
    if status == 401 {
        msg.push_str(" (give the token with --token-file, --token or HIGHLANDER_ADMIN_TOKEN)");
    }
    msg
}

/// The admin API of one node.
pub struct Api {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    /// A client for the admin listener at `base`: `http://host:port`, optionally with a
    /// path prefix. `host:port` alone means http.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Api, ClientError> {
        let with_scheme = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        let base = Url::parse(&with_scheme)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "--admin {base:?} is not an http(s) URL like http://127.0.0.1:9092"
                ))
            })?;
        crate::shipper::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("highlander-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Api { base, token, http })
    }

    /// The URL of `segments` under the base (each segment percent-encoded).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// GET, JSON answer.
    pub async fn get(&self, url: Url) -> Result<Value, ClientError> {
        self.call(Method::GET, url, None).await
    }

    /// POST with an optional JSON body, JSON answer.
    pub async fn post(&self, url: Url, body: Option<Value>) -> Result<Value, ClientError> {
        self.call(Method::POST, url, body).await
    }

    /// DELETE, JSON answer.
    pub async fn delete(&self, url: Url) -> Result<Value, ClientError> {
        self.call(Method::DELETE, url, None).await
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let shown = url.to_string();
        let mut req = self.http.request(method, url);
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::Usage("the admin token has characters a header cannot carry".into())
            })?;
            req = req.header(AUTHORIZATION, value);
        }
        if let Some(body) = body {
            let bytes = serde_json::to_vec(&body).map_err(|e| ClientError::Usage(e.to_string()))?;
            req = req
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(bytes);
        }
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            url: shown.clone(),
            reason: root_cause(&e),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unreachable)?;
        if !status.is_success() {
            let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_default();
            return Err(ClientError::Server {
                status: status.as_u16(),
                code: Some(body.error).filter(|c| !c.is_empty()),
                detail: Some(body.detail)
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| text.trim().to_owned()),
            });
        }
        serde_json::from_str::<Value>(&text).map_err(|e| ClientError::BadAnswer {
            url: shown,
            reason: e.to_string(),
        })
    }
}

/// The innermost cause of an HTTP error, e.g. `Connection refused (os error 111)`. It says
/// more than reqwest's "error sending request for url".
fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time (--timeout)".to_owned();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_urls_with_encoded_segments_and_prefixes() {
        let api = Api::new("127.0.0.1:9092", None, Duration::from_secs(1)).expect("api");
        assert_eq!(
            api.url(&["api", "v1", "groups", "a b/c"]).as_str(),
            "http://127.0.0.1:9092/api/v1/groups/a%20b%2Fc"
        );
        let api = Api::new("https://ops.example/hl/", None, Duration::from_secs(1)).expect("api");
        assert_eq!(
            api.url(&["api", "v1", "status"]).as_str(),
            "https://ops.example/hl/api/v1/status"
        );
        assert!(Api::new("ftp://x", None, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn server_errors_read_like_the_api() {
        let e = ClientError::Server {
            status: 404,
            code: Some("unknown_group".into()),
            detail: "no group named \"x\" has been seen".into(),
        };
        assert_eq!(
            e.to_string(),
            "404 unknown_group: no group named \"x\" has been seen"
        );
        let e = ClientError::Server {
            status: 405,
            code: None,
            detail: String::new(),
        };
        assert_eq!(e.to_string(), "405 Method Not Allowed");
    }
}

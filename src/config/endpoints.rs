//! The parts of the configuration that are lists: storage endpoints (flags and
//! `[[endpoint]]` sections) and cluster members.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::file::{ClusterSection, EndpointSection, FileConfig};
use super::units::{parse_duration, parse_size};
use super::{
    parse_addr, ClusterSettings, Problems, ServeArgs, DEFAULT_CLUSTER_LISTEN,
    DEFAULT_CLUSTER_OVERLAP, DEFAULT_ENDPOINT_TIMEOUT, DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_ORDERED_IN_FLIGHT, DEFAULT_REMOTE_WRITE,
};
use crate::cluster::ClusterTls;
use crate::shipper::{Auth, EgressProtocol, EndpointConfig};

/// Parses a storage URL. A URL without a path gets `/api/v1/write`.
pub fn parse_endpoint_url(s: &str) -> Result<url::Url, String> {
    let mut url = url::Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{s:?}: only http and https are supported"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/api/v1/write");
    }
    Ok(url)
}

fn default_name(url: &url::Url) -> String {
    match url.port_or_known_default() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or("storage")),
        None => url.host_str().unwrap_or("storage").to_owned(),
    }
}

pub(super) fn endpoints(
    p: &mut Problems,
    args: &ServeArgs,
    file: &FileConfig,
) -> Vec<EndpointConfig> {
    let in_flight = InFlight {
        max: in_flight_setting(
            p,
            "max-in-flight",
            args.max_in_flight.as_deref(),
            file.shipper.max_in_flight,
            1,
        ),
        ordered: in_flight_setting(
            p,
            "ordered-in-flight",
            args.ordered_in_flight.as_deref(),
            file.shipper.ordered_in_flight,
            DEFAULT_ORDERED_IN_FLIGHT,
        ),
    };
    let timeout_default = parse_duration(DEFAULT_ENDPOINT_TIMEOUT).expect("valid default");
    let flag_protocol = match &args.remote_write_protocol {
        Some(s) => p
            .take("remote-write-protocol", EgressProtocol::parse(s))
            .unwrap_or_default(),
        None => EgressProtocol::default(),
    };
    let mut out: Vec<EndpointConfig> = Vec::new();
    let from_flags: Vec<String> = if args.remote_write.is_empty() && file.endpoints.is_empty() {
        vec![DEFAULT_REMOTE_WRITE.to_owned()]
    } else {
        args.remote_write.clone()
    };
    for spec in &from_flags {
        let (name, url) = match spec.split_once('=') {
            Some((n, u)) if !n.contains('/') && !n.contains(':') => (Some(n.trim().to_owned()), u),
            _ => (None, spec.as_str()),
        };
        let Some(url) = p.take("remote-write", parse_endpoint_url(url)) else {
            continue;
        };
        out.push(EndpointConfig {
            name: name.unwrap_or_else(|| default_name(&url)),
            url,
            headers: Vec::new(),
            auth: Auth::None,
            timeout: timeout_default,
            tls_ca_file: None,
            tls_insecure_skip_verify: false,
            max_batch_bytes: default_batch(),
            max_in_flight: in_flight.max,
            ordered_in_flight: in_flight.ordered,
            protocol: flag_protocol,
        });
    }
    for (i, e) in file.endpoints.iter().enumerate() {
        if let Some(ep) = endpoint_from_file(p, i, e, timeout_default, in_flight) {
            out.push(ep);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in &out {
        p.check(!e.name.is_empty(), "endpoint names must not be empty");
        p.check(
            seen.insert(e.name.clone()),
            format!(
                "endpoint name {:?} is used twice; name them with name=URL or [[endpoint]] name",
                e.name
            ),
        );
    }
    out
}

fn endpoint_from_file(
    p: &mut Problems,
    i: usize,
    e: &EndpointSection,
    timeout_default: Duration,
    in_flight: InFlight,
) -> Option<EndpointConfig> {
    let what = format!("endpoint[{i}]");
    let Some(url) = e.url.as_deref() else {
        p.check(false, format!("{what}: url is required"));
        return None;
    };
    let url = p.take(&what, parse_endpoint_url(url))?;
    let read_secret = |p: &mut Problems, path: &Path| {
        p.take(
            &what,
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|err| format!("{}: {err}", path.display())),
        )
    };
    let auth = match (&e.basic_auth, &e.bearer_token, &e.bearer_token_file) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            p.check(
                false,
                format!("{what}: choose one of basic_auth, bearer_token, bearer_token_file"),
            );
            Auth::None
        }
        (Some(b), None, None) => {
            let password = match (&b.password, &b.password_file) {
                (Some(pw), None) => pw.clone(),
                (None, Some(f)) => read_secret(p, f).unwrap_or_default(),
                _ => {
                    p.check(
                        false,
                        format!("{what}: basic_auth needs exactly one of password, password_file"),
                    );
                    String::new()
                }
            };
            Auth::Basic {
                username: b.username.clone(),
                password,
            }
        }
        (None, Some(t), None) => Auth::Bearer(t.clone()),
        (None, None, Some(f)) => Auth::Bearer(read_secret(p, f).unwrap_or_default()),
        (None, None, None) => Auth::None,
    };
    let timeout = match &e.timeout {
        Some(t) => p.take(&format!("{what}.timeout"), parse_duration(t))?,
        None => timeout_default,
    };
    for (name, value) in &e.headers {
        p.check(
            reqwest::header::HeaderName::try_from(name.as_str()).is_ok()
                && reqwest::header::HeaderValue::try_from(value.as_str()).is_ok(),
            format!("{what}: header {name:?} is not a valid HTTP header"),
        );
    }
    if let Some(ca) = &e.tls_ca_file {
        p.check(
            ca.is_file(),
            format!("{what}: tls_ca_file {} does not exist", ca.display()),
        );
    }
    let max_batch_bytes = match &e.max_batch_bytes {
        Some(b) => p.take(&format!("{what}.max_batch_bytes"), parse_size(b))?,
        None => default_batch(),
    };
    let protocol = match &e.protocol {
        Some(s) => p.take(&format!("{what}.protocol"), EgressProtocol::parse(s))?,
        None => EgressProtocol::default(),
    };
    let max_in_flight = e.max_in_flight.unwrap_or(in_flight.max);
    check_in_flight(p, &format!("{what}.max_in_flight"), max_in_flight);
    let ordered_in_flight = e.ordered_in_flight.unwrap_or(in_flight.ordered);
    check_in_flight(p, &format!("{what}.ordered_in_flight"), ordered_in_flight);
    Some(EndpointConfig {
        name: e.name.clone().unwrap_or_else(|| default_name(&url)),
        url,
        headers: e
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        auth,
        timeout,
        tls_ca_file: e.tls_ca_file.clone(),
        tls_insecure_skip_verify: e.tls_insecure_skip_verify,
        max_batch_bytes,
        max_in_flight,
        ordered_in_flight,
        protocol,
    })
}

/// A number flag, read as text so that a bad value is listed with every other problem
/// (clap would stop at it alone).
fn number_flag<T: std::str::FromStr>(
    p: &mut Problems,
    name: &str,
    value: Option<&str>,
    what: &str,
) -> Option<T> {
    let s = value?;
    p.take(
        name,
        s.trim()
            .parse::<T>()
            .map_err(|_| format!("{s:?} is not {what}")),
    )
}

/// Most requests out at once to one storage.
const MAX_IN_FLIGHT: usize = 64;

/// The requests out at once that every endpoint gets unless it sets its own.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// With no regard to order (`max_in_flight`).
    max: usize,
    /// Sharing no series (`ordered_in_flight`).
    ordered: usize,
}

/// A requests-out-at-once setting for every endpoint: the flag `name`, else the
/// `[shipper]` key, else `default`; checked to be in range.
fn in_flight_setting(
    p: &mut Problems,
    name: &str,
    flag: Option<&str>,
    file: Option<usize>,
    default: usize,
) -> usize {
    let n = number_flag(p, name, flag, "a number of requests")
        .or(file)
        .unwrap_or(default);
    check_in_flight(p, name, n);
    n
}

fn check_in_flight(p: &mut Problems, what: &str, n: usize) {
    p.check(
        (1..=MAX_IN_FLIGHT).contains(&n),
        format!("{what}: {n} is not in 1..={MAX_IN_FLIGHT}"),
    );
}

fn default_batch() -> u64 {
    parse_size(DEFAULT_MAX_BATCH_BYTES).expect("valid default")
}

/// Parses the cluster settings. `None` (standalone) when there are no members.
pub(super) fn cluster(
    p: &mut Problems,
    args: &ServeArgs,
    file: &FileConfig,
) -> Option<ClusterSettings> {
    let section = file.cluster.clone().unwrap_or_default();
    // Checked before a standalone node returns: a bad value is a problem either way.
    let flag_id = number_flag(
        p,
        "node-id",
        args.node_id.as_deref(),
        "a node id (a whole number)",
    );
    let peers: Option<BTreeMap<u64, String>> = match (&args.peers, &section.peers) {
        (Some(flag), _) => {
            let mut out = BTreeMap::new();
            for part in flag.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match part
                    .split_once('=')
                    .map(|(id, addr)| (id.trim().parse::<u64>(), addr.trim()))
                {
                    Some((Ok(id), addr)) if !addr.is_empty() => {
                        out.insert(id, addr.to_owned());
                    }
                    _ => p.check(false, format!("peers: {part:?} is not id=host:port")),
                }
            }
            Some(out)
        }
        (None, Some(map)) => {
            let mut out = BTreeMap::new();
            for (id, addr) in map {
                match id.parse::<u64>() {
                    Ok(id) => {
                        out.insert(id, addr.clone());
                    }
                    Err(_) => p.check(false, format!("cluster.peers: {id:?} is not a node id")),
                }
            }
            Some(out)
        }
        (None, None) => None,
    };
    let peers = peers?;
    let node_id = flag_id.or(section.node_id);
    let listen = p.take(
        "cluster-listen",
        parse_addr(
            args.cluster_listen
                .as_deref()
                .or(section.listen.as_deref())
                .unwrap_or(DEFAULT_CLUSTER_LISTEN),
        ),
    );
    let secret = match (
        &args.cluster_secret,
        args.cluster_secret_file
            .as_ref()
            .or(section.secret_file.as_ref()),
    ) {
        (Some(s), _) => Some(s.trim().to_owned()),
        (None, Some(path)) => p.take(
            "cluster-secret-file",
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("{}: {e}", path.display())),
        ),
        (None, None) => None,
    };
    let overlap = p.take(
        "cluster-overlap",
        parse_duration(
            args.cluster_overlap
                .as_deref()
                .or(section.overlap.as_deref())
                .unwrap_or(DEFAULT_CLUSTER_OVERLAP),
        ),
    );
    p.check(node_id.is_some(), "node-id: required with peers");
    if let Some(id) = node_id {
        p.check(
            peers.contains_key(&id),
            format!("node-id {id} is not one of the peers"),
        );
    }
    p.check(
        secret.as_deref().is_some_and(|s| !s.is_empty()),
        "cluster secret: required with peers (--cluster-secret-file or HIGHLANDER_CLUSTER_SECRET)",
    );
    let tls = cluster_tls(p, args, &section);
    Some(ClusterSettings {
        node_id: node_id?,
        listen: listen?,
        peers,
        secret: secret?,
        overlap: overlap?,
        join: args.join,
        tls,
    })
}

/// The cluster's TLS files, checked. They are read and parsed here, so a bad file is a
/// configuration error. `None`: plain HTTP.
fn cluster_tls(p: &mut Problems, args: &ServeArgs, section: &ClusterSection) -> Option<ClusterTls> {
    let cert = args
        .cluster_tls_cert
        .clone()
        .or_else(|| section.tls_cert.clone());
    let key = args
        .cluster_tls_key
        .clone()
        .or_else(|| section.tls_key.clone());
    let ca = args
        .cluster_tls_ca
        .clone()
        .or_else(|| section.tls_ca.clone());
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => ClusterTls { cert, key, ca },
        (None, None) => {
            p.check(
                ca.is_none(),
                "cluster-tls-ca needs cluster-tls-cert and cluster-tls-key (a cluster runs TLS on every node or on none)",
            );
            return None;
        }
        _ => {
            p.check(
                false,
                "cluster-tls-cert and cluster-tls-key go together: set both or neither",
            );
            return None;
        }
    };
    let problems = tls.problems();
    for problem in &problems {
        p.check(false, format!("cluster TLS: {problem}"));
    }
    problems.is_empty().then_some(tls)
}

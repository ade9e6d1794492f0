//! Who wrote a request: HA group, source (replica) and weight.
//!
//! Source: `highlander_source` → the configured replica label's value → the peer IP (never
//! IP:port: Prometheus opens many connections). Group: `highlander_group` → the configured
//! group label's value → `default`. Weight: `highlander_weight`, a u64, default 0.
//!
//! A request whose series carry several (replica, group) label pairs is split, and each
//! part's own label values come first: the query parameters then only fill in what the
//! part's labels do not name (see `server::accept_parts`).

use std::net::IpAddr;

use super::error::IngestError;

/// The group used when a request names none.
pub const DEFAULT_GROUP: &str = "default";

/// The `highlander_*` query parameters of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// `highlander_weight`.
    pub weight: u64,
    /// `highlander_source`.
    pub source: Option<String>,
    /// `highlander_group`.
    pub group: Option<String>,
}

impl Params {
    /// Parses a query string; other parameters are ignored.
    pub fn parse(query: &str) -> Result<Params, IngestError> {
        let mut params = Params::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "highlander_weight" => {
                    params.weight = value.parse().map_err(|_| IngestError::Param {
                        name: "highlander_weight",
                        reason: format!("{value:?} is not an unsigned 64-bit integer"),
                    })?
                }
                "highlander_source" => {
                    params.source = Some(non_empty("highlander_source", &value)?)
                }
                "highlander_group" => params.group = Some(non_empty("highlander_group", &value)?),
                _ => {}
            }
        }
        Ok(params)
    }
}

fn non_empty(name: &'static str, value: &str) -> Result<String, IngestError> {
    if value.is_empty() {
        return Err(IngestError::Param {
            name,
            reason: "must not be empty".into(),
        });
    }
    Ok(value.to_owned())
}

/// Resolves the source identity.
pub fn source(params: &Params, replica_label: Option<&str>, peer: Option<IpAddr>) -> String {
    params
        .source
        .clone()
        .or_else(|| replica_label.map(str::to_owned))
        .or_else(|| peer.map(|ip| ip.to_string()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Resolves the group name.
pub fn group(params: &Params, group_label: Option<&str>) -> String {
    params
        .group
        .clone()
        .or_else(|| group_label.map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_GROUP.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_parameters_and_ignores_others() {
        let p = Params::parse("highlander_weight=10&highlander_source=a&highlander_group=eu&x=1")
            .expect("valid");
        assert_eq!(
            p,
            Params {
                weight: 10,
                source: Some("a".into()),
                group: Some("eu".into())
            }
        );
        assert_eq!(Params::parse("").expect("empty"), Params::default());
    }

    #[test]
    fn invalid_weight_is_refused() {
        for q in [
            "highlander_weight=-1",
            "highlander_weight=x",
            "highlander_weight=",
            "highlander_weight=99999999999999999999",
        ] {
            let e = Params::parse(q).expect_err(q);
            assert_eq!(e.status_code(), 400, "{q}");
        }
    }

    #[test]
    fn empty_source_or_group_is_refused() {
        assert!(Params::parse("highlander_source=").is_err());
        assert!(Params::parse("highlander_group=").is_err());
    }

    #[test]
    fn source_falls_back_to_replica_label_then_peer_ip() {
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let named = Params {
            source: Some("a".into()),
            ..Params::default()
        };
        assert_eq!(source(&named, Some("r1"), Some(ip)), "a");
        assert_eq!(source(&Params::default(), Some("r1"), Some(ip)), "r1");
        assert_eq!(source(&Params::default(), None, Some(ip)), "10.1.2.3");
    }

    #[test]
    fn group_falls_back_to_label_then_default() {
        let named = Params {
            group: Some("eu".into()),
            ..Params::default()
        };
        assert_eq!(group(&named, Some("us")), "eu");
        assert_eq!(group(&Params::default(), Some("us")), "us");
        assert_eq!(group(&Params::default(), None), "default");
    }
}

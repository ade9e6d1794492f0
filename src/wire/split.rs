//! Splitting a 1.0 request by the replica and group label values of its series. An agent
//! in front of highlander (vmagent, Grafana Alloy, an OpenTelemetry collector) may batch
//! several HA sources into one request; each (replica, group) pair is then judged on its
//! own. The series bytes are copied whole, so every series keeps its samples in order,
//! and series keep their request order within a part. Metadata entries go with every
//! part (they describe metric families, not sources).

use super::{expect_len, scan_label, Fields, Wanted, WireError};

/// The series of one (replica, group) pair, as a 1.0 request of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The replica label's value; `None` for series without it.
    pub replica: Option<&'a str>,
    /// The group label's value; `None` for series without it.
    pub group: Option<&'a str>,
    /// A 1.0 `WriteRequest`: the pair's series, then every metadata entry.
    pub raw: Vec<u8>,
    /// Its series.
    pub series: u32,
}

/// The replica and group label values of one series.
fn pair<'a>(
    series: &'a [u8],
    index: usize,
    wanted: Wanted<'_>,
) -> Result<(Option<&'a str>, Option<&'a str>), WireError> {
    let (mut replica, mut group) = (None, None);
    let mut fields = Fields::new(series);
    while let Some(f) = fields.next_field()? {
        if f.number == 1 {
            let (name, value) = scan_label(expect_len("TimeSeries", &f)?, index)?;
            if wanted.replica == Some(name) {
                replica = Some(value);
            }
            if wanted.group == Some(name) {
                group = Some(value);
            }
        }
    }
    Ok((replica, group))
}

/// Splits a scanned 1.0 request into one part per (replica, group) pair, in the order
/// the pairs first appear.
pub fn split_v1<'a>(buf: &'a [u8], wanted: Wanted<'_>) -> Result<Vec<Part<'a>>, WireError> {
    let mut parts: Vec<Part<'a>> = Vec::new();
    let mut metadata: Vec<&[u8]> = Vec::new();
    let mut fields = Fields::new(buf);
    let mut index = 0;
    while let Some(f) = fields.next_field()? {
        let whole = &buf[f.start..f.end];
        match f.number {
            1 => {
                let (replica, group) = pair(expect_len("WriteRequest", &f)?, index, wanted)?;
                index += 1;
                let at = match parts
                    .iter()
                    .position(|p| p.replica == replica && p.group == group)
                {
                    Some(at) => at,
                    None => {
                        parts.push(Part {
                            replica,
                            group,
                            raw: Vec::new(),
                            series: 0,
                        });
                        parts.len() - 1
                    }
                };
                parts[at].raw.extend_from_slice(whole);
                parts[at].series += 1;
            }
            3 => metadata.push(whole),
            _ => {}
        }
    }
    for part in &mut parts {
        for m in &metadata {
            part.raw.extend_from_slice(m);
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;
    use crate::proto::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};

    const WANTED: Wanted<'static> = Wanted {
        replica: Some("__replica__"),
        group: Some("cluster"),
    };

    fn series(name: &str, cluster: Option<&str>, replica: Option<&str>, t: i64) -> TimeSeries {
        let mut labels = vec![Label {
            name: "__name__".into(),
            value: name.into(),
        }];
        if let Some(r) = replica {
            labels.push(Label {
                name: "__replica__".into(),
                value: r.into(),
            });
        }
        if let Some(c) = cluster {
            labels.push(Label {
                name: "cluster".into(),
                value: c.into(),
            });
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        TimeSeries {
            labels,
            samples: (0..3)
                .map(|k| Sample {
                    value: k as f64,
                    timestamp: t + k * 1000,
                })
                .collect(),
            ..TimeSeries::default()
        }
    }

    fn key(ts: &TimeSeries) -> (Option<String>, Option<String>) {
        let find = |n: &str| {
            ts.labels
                .iter()
                .find(|l| l.name == n)
                .map(|l| l.value.clone())
        };
        (find("__replica__"), find("cluster"))
    }

    #[test]
    fn two_groups_of_two_replicas_make_four_parts_with_the_metadata_in_each() {
        let req = WriteRequest {
            timeseries: vec![
                series("up", Some("eu"), Some("a"), 1),
                series("up", Some("eu"), Some("b"), 2),
                series("up", Some("us"), Some("a"), 3),
                series("cpu", Some("eu"), Some("a"), 4),
                series("up", Some("us"), Some("b"), 5),
                series("up", None, None, 6),
            ],
            metadata: vec![MetricMetadata {
                metric_family_name: "up".into(),
                help: "Up.".into(),
                ..MetricMetadata::default()
            }],
        };
        let buf = req.encode_to_vec();
        let parts = split_v1(&buf, WANTED).expect("splits");
        let seen: Vec<_> = parts
            .iter()
            .map(|p| (p.replica, p.group, p.series))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some("a"), Some("eu"), 2),
                (Some("b"), Some("eu"), 1),
                (Some("a"), Some("us"), 1),
                (Some("b"), Some("us"), 1),
                (None, None, 1),
            ]
        );
        let first = WriteRequest::decode(parts[0].raw.as_slice()).expect("a 1.0 request");
        assert_eq!(
            first.timeseries,
            vec![req.timeseries[0].clone(), req.timeseries[3].clone()]
        );
        assert!(parts.iter().all(|p| WriteRequest::decode(p.raw.as_slice())
            .expect("decodes")
            .metadata
            == req.metadata));
    }

    #[test]
    fn the_scan_tells_a_mixed_request_in_both_versions() {
        use crate::proto::v2;
        let one = |series: Vec<TimeSeries>| WriteRequest {
            timeseries: series,
            metadata: vec![],
        };
        let cases = [
            (
                vec![
                    series("a", Some("eu"), Some("a"), 1),
                    series("b", Some("eu"), Some("a"), 2),
                ],
                false,
                0,
            ),
            (
                vec![
                    series("a", Some("eu"), Some("a"), 1),
                    series("b", Some("eu"), Some("b"), 2),
                ],
                true,
                0,
            ),
            (
                vec![
                    series("a", Some("eu"), Some("a"), 1),
                    series("b", Some("us"), Some("a"), 2),
                ],
                true,
                0,
            ),
            (
                vec![
                    series("a", Some("eu"), Some("a"), 1),
                    series("b", Some("eu"), None, 2),
                ],
                true,
                1,
            ),
            (
                vec![series("a", None, None, 1), series("b", None, None, 2)],
                false,
                2,
            ),
        ];
        for (list, mixed, unlabelled) in cases {
            let req = one(list);
            let v1 = req.encode_to_vec();
            let s = super::super::scan(&v1, WANTED).expect("1.0 scans");
            assert_eq!((s.mixed, s.unlabelled), (mixed, unlabelled), "1.0: {req:?}");
            let v2 = v2::Request::from_v1(&req).encode_to_vec();
            let s = super::super::scan_v2(&v2, WANTED).expect("2.0 scans");
            assert_eq!(
                (s.base.mixed, s.base.unlabelled),
                (mixed, unlabelled),
                "2.0: {req:?}"
            );
            // Without the labels configured nothing is ever mixed.
            let s = super::super::scan(&v1, Wanted::default()).expect("scans");
            assert_eq!((s.mixed, s.unlabelled), (false, 0));
        }
    }

    proptest! {
        /// Every series lands in exactly one part, the part of its own labels, in the
        /// request's order; nothing else is added.
        #[test]
        fn every_series_lands_in_exactly_one_part_in_order(
            keys in proptest::collection::vec((0u8..3, 0u8..3), 1..40),
        ) {
            let name = |k: u8| (k > 0).then(|| format!("v{k}"));
            let req = WriteRequest {
                timeseries: keys
                    .iter()
                    .enumerate()
                    .map(|(i, (r, g))| {
                        series(&format!("s{i}"), name(*g).as_deref(), name(*r).as_deref(), i as i64)
                    })
                    .collect(),
                metadata: vec![],
            };
            let buf = req.encode_to_vec();
            let parts = split_v1(&buf, WANTED).expect("splits");
            let mut total = 0;
            for p in &parts {
                let got = WriteRequest::decode(p.raw.as_slice()).expect("decodes");
                let want: Vec<TimeSeries> = req
                    .timeseries
                    .iter()
                    .filter(|ts| key(ts) == (p.replica.map(str::to_owned), p.group.map(str::to_owned)))
                    .cloned()
                    .collect();
                prop_assert_eq!(&got.timeseries, &want);
                prop_assert_eq!(p.series as usize, want.len());
                total += want.len();
            }
            prop_assert_eq!(total, req.timeseries.len());
            let distinct: std::collections::BTreeSet<_> = req.timeseries.iter().map(key).collect();
            prop_assert_eq!(parts.len(), distinct.len());
        }
    }
}

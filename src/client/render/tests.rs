//! Rendering tests: the human output of each command from sample JSON.

use super::queue::series_name;
use super::*;
use serde_json::json;

const NOW: u64 = 1_800_000_000_000;

#[test]
fn renders_groups_one_line_each() {
    let v = json!({"groups": [{
        "name": "default",
        "promoted": {"source": "a", "weight": 10, "since_ms": NOW - 300_000},
        "pin": null,
        "sources": {
            "a": {"weight": 10, "last_seen_ms": NOW - 1_000},
            "b": {"weight": 5, "last_seen_ms": NOW - 2_000}
        }
    }]});
    let out = groups(&v, NOW);
    assert!(out.starts_with("GROUP    PROMOTED  WEIGHT  SINCE"), "{out}");
    assert!(
        out.contains("default  a             10  5m ago  -    a (10, 1s ago), b (5, 2s ago)"),
        "{out}"
    );
}

#[test]
fn renders_an_endpoint_error_with_its_retry() {
    let v = json!({"records": 2, "bytes": 205, "max_bytes": 1024, "endpoints": [{
        "name": "lts", "state": "failing", "lag_records": 2, "lag_bytes": 205,
        "lag_seconds": 0.5, "sent_records": 0, "failed_requests": 5,
        "last_error": "HTTP 503", "last_error_ms": NOW - 3_000, "next_retry_ms": NOW + 2_000,
        "in_flight": 2, "max_in_flight": 4
    }]});
    let out = queue(&v, NOW);
    assert!(out.contains("205 B of 1.0 KiB (20.0%)"), "{out}");
    assert!(out.contains("lts       failing  2/4"), "{out}");
    assert!(out.contains("HTTP 503 (3s ago), retry in 2s"), "{out}");
}

#[test]
fn renders_series_like_promql() {
    assert_eq!(
        series_name(&json!({"__name__": "up", "job": "x", "instance": "a:1"})),
        "up{instance=\"a:1\", job=\"x\"}"
    );
}

#[test]
fn tolerates_missing_fields() {
    for f in [
        status, groups, queue, endpoints, records, record, quarantine,
    ] {
        let _ = f(&json!({}), NOW);
    }
    assert_eq!(text(&json!(null)), "-");
}

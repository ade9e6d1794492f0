//! Rendering tests: the human output of each command from sample JSON, read into the
//! [`crate::api`] types as the client reads a node's answer.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::queue::series_name;
use super::*;

const NOW: u64 = 1_800_000_000_000;

/// Reads sample JSON as the client reads an answer.
fn read<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("the sample reads as its answer type")
}

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
    let out = groups(&read(v), NOW);
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
    let out = queue(&read(v), NOW);
    assert!(out.contains("205 B of 1.0 KiB (20.0%)"), "{out}");
    assert!(out.contains("lts       failing  2/4"), "{out}");
    assert!(out.contains("HTTP 503 (3s ago), retry in 2s"), "{out}");
}

#[test]
fn renders_series_like_promql() {
    assert_eq!(
        series_name(&read(
            json!({"__name__": "up", "job": "x", "instance": "a:1"})
        )),
        "up{instance=\"a:1\", job=\"x\"}"
    );
}

#[test]
fn tolerates_missing_fields() {
    let _ = status(&read(json!({})), NOW);
    let _ = groups(&read(json!({})), NOW);
    let _ = group(&read(json!({})), NOW);
    let _ = queue(&read(json!({})), NOW);
    let _ = endpoints(&read(json!({})), NOW);
    let _ = records(&read(json!({})), NOW);
    let _ = record(&read(json!({})), NOW);
    let _ = quarantine(&read(json!({})), NOW);
    let _ = cluster(&read(json!({})));
    let _ = transferred(&read(json!({})));
    assert_eq!(count(None), "-");
}

#[test]
fn reads_an_answer_with_unknown_and_missing_fields() {
    // A node of another version: it adds `draining_since_ms`, `zone` and `priority`, and
    // leaves out `ready`, the durability, the uptime, and an endpoint's state and lag
    // (which read as a new worker's: idle, nothing out).
    let v = json!({
        "node": {"instance_id": "n1", "version": "9.9.9", "zone": "eu-1"},
        "role": "standalone",
        "listeners": {"ingest": "0.0.0.0:9091", "admin": "127.0.0.1:9092"},
        "draining_since_ms": NOW,
    });
    let out = status(&read(v), NOW);
    assert!(out.contains("instance    n1\n"), "{out}");
    assert!(out.contains("ready       -\n"), "{out}");
    assert!(out.contains("uptime      -\n"), "{out}");
    assert!(out.contains("durability  -\n"), "{out}");
    assert!(out.contains("endpoints   -\n"), "{out}");

    let v = json!({"records": 0, "endpoints": [{"name": "lts", "priority": 3}]});
    let out = queue(&read(v), NOW);
    assert!(out.contains("oldest       -\n"), "{out}");
    assert!(out.contains("lts       idle   0/0"), "{out}");
}

#[test]
fn renders_the_switches_with_their_handovers() {
    let v = json!({"group": "default", "switches": [
        {"at_ms": NOW - 20_000, "from": "a", "to": "b", "weight": 5, "reason": "expiry",
         "silent_ms": 5_000, "handover": {"at_ms": NOW - 19_000, "backfilled": 4_000,
         "trimmed": 120, "gap_ms": 1_000, "took_ms": 3}},
        {"at_ms": NOW - 60_000, "from": null, "to": "a", "weight": 10, "reason": "first_source"}
    ]});
    let out = history(&read(v), NOW);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("WHEN"), "{out}");
    assert!(lines[0].contains("FROM  TO  REASON"), "{out}");
    assert!(
        lines[1].contains("a     b   expiry (5s silent)")
            && lines[1].contains("4000")
            && lines[1].contains("120")
            && lines[1].contains("1s"),
        "{out}"
    );
    assert!(lines[2].contains("-     a   first source"), "{out}");
    let none = history(&read(json!({"group": "g"})), NOW);
    assert_eq!(none, "no switch recorded\n");
}

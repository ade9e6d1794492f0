//! The buffer and the storages: queue totals, endpoints, buffered records, the quarantine
//! and the answers of the shipping commands (`pause`, `resume`, `skip`, `replay`).

use serde_json::Value;

use super::{array, count, num, text};
use crate::client::table::{ago, ago_at, bytes, pairs, secs, timestamp, Align, Table};

/// An endpoint's last error and next retry, in one phrase.
fn last_error(e: &Value, now: u64) -> String {
    let Some(err) = e["last_error"].as_str() else {
        return "-".to_owned();
    };
    let mut s = format!("{err} ({})", ago(num(&e["last_error_ms"]), now));
    if let Some(next) = e["next_retry_ms"].as_u64() {
        s.push_str(&format!(", retry {}", ago(next, now)));
    }
    s
}

/// `GET /api/v1/queue`: buffer totals and a line per endpoint.
pub fn queue(v: &Value, now: u64) -> String {
    let max = num(&v["max_bytes"]);
    let used = num(&v["bytes"]);
    let pct = if max > 0 {
        format!(" ({:.1}%)", used as f64 * 100.0 / max as f64)
    } else {
        String::new()
    };
    let records = num(&v["records"]);
    let oldest = if records == 0 {
        "-".to_owned()
    } else {
        v["oldest_age_seconds"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), secs)
    };
    let mut out = pairs(&[
        ("records", count(&v["records"])),
        ("bytes", format!("{} of {}{pct}", bytes(used), bytes(max))),
        ("oldest", oldest),
        (
            "sequences",
            format!(
                "first {}, next {}",
                count(&v["first_seq"]),
                count(&v["next_seq"])
            ),
        ),
        (
            "dropped",
            format!("{} records (limits)", count(&v["dropped_records"])),
        ),
        (
            "quarantined",
            format!("{} batches", count(&v["quarantined"])),
        ),
    ]);
    let mut t = Table::new(&[
        ("ENDPOINT", Align::Left),
        ("STATE", Align::Left),
        ("OUT", Align::Right),
        ("LAG RECORDS", Align::Right),
        ("LAG BYTES", Align::Right),
        ("LAG", Align::Right),
        ("SENT", Align::Right),
        ("FAILED", Align::Right),
        ("LAST ERROR", Align::Left),
    ]);
    for e in array(&v["endpoints"]) {
        t.row(vec![
            text(&e["name"]),
            text(&e["state"]),
            format!("{}/{}", count(&e["in_flight"]), count(&e["max_in_flight"])),
            count(&e["lag_records"]),
            bytes(num(&e["lag_bytes"])),
            e["lag_seconds"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), secs),
            count(&e["sent_records"]),
            count(&e["failed_requests"]),
            last_error(e, now),
        ]);
    }
    if !t.is_empty() {
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

/// `GET /api/v1/endpoints`: each storage's position, counters and last error.
pub fn endpoints(v: &Value, now: u64) -> String {
    let list = array(&v["endpoints"]);
    if list.is_empty() {
        return "no endpoints configured\n".to_owned();
    }
    let mut t = Table::new(&[
        ("ENDPOINT", Align::Left),
        ("STATE", Align::Left),
        ("CURSOR", Align::Right),
        ("LAG RECORDS", Align::Right),
        ("SENT RECORDS", Align::Right),
        ("SENT SAMPLES", Align::Right),
        ("SENT BYTES", Align::Right),
        ("FAILED", Align::Right),
        ("RETRIES", Align::Right),
        ("QUARANTINED", Align::Right),
        ("DROPPED", Align::Right),
        ("URL", Align::Left),
    ]);
    let mut errors = String::new();
    for e in list {
        t.row(vec![
            text(&e["name"]),
            text(&e["state"]),
            count(&e["cursor"]),
            count(&e["lag_records"]),
            count(&e["sent_records"]),
            count(&e["sent_samples"]),
            bytes(num(&e["sent_bytes"])),
            count(&e["failed_requests"]),
            count(&e["retries"]),
            count(&e["quarantined"]),
            count(&e["dropped_records"]),
            text(&e["url"]),
        ]);
        if !e["last_error"].is_null() {
            errors.push_str(&format!(
                "{}: last error {}\n",
                text(&e["name"]),
                last_error(e, now)
            ));
        }
    }
    let mut out = t.render();
    if !errors.is_empty() {
        out.push('\n');
        out.push_str(&errors);
    }
    out
}

/// Sample time range of a record as ages.
fn data_time(r: &Value, now: u64) -> String {
    let (min, max) = (r["min_ts"].as_u64(), r["max_ts"].as_u64());
    match (min, max) {
        (Some(a), Some(b)) if a > 0 && a == b => ago(a, now),
        (Some(a), Some(b)) if a > 0 => format!("{} .. {}", ago(a, now), ago(b, now)),
        _ => "-".to_owned(),
    }
}

fn samples(r: &Value) -> String {
    let h = num(&r["histograms"]);
    if h > 0 {
        format!("{} +{h} hist", count(&r["samples"]))
    } else {
        count(&r["samples"])
    }
}

/// `GET /api/v1/queue/records`.
pub fn records(v: &Value, now: u64) -> String {
    let list = array(&v["records"]);
    if list.is_empty() {
        return "no records buffered from there\n".to_owned();
    }
    let mut t = Table::new(&[
        ("SEQ", Align::Right),
        ("GROUP", Align::Left),
        ("SOURCE", Align::Left),
        ("RECEIVED", Align::Left),
        ("SERIES", Align::Right),
        ("SAMPLES", Align::Right),
        ("SAMPLE TIMES", Align::Left),
        ("BYTES", Align::Right),
        ("DAMAGED", Align::Left),
    ]);
    for r in list {
        t.row(vec![
            count(&r["seq"]),
            text(&r["group"]),
            text(&r["source"]),
            ago(num(&r["received_ms"]), now),
            count(&r["series"]),
            samples(r),
            data_time(r, now),
            bytes(num(&r["payload_bytes"])),
            r["damaged"].as_str().unwrap_or("").to_owned(),
        ]);
    }
    t.render()
}

/// `{__name__="up", job="x"}` as `up{job="x"}`.
pub(super) fn series_name(labels: &Value) -> String {
    let Some(map) = labels.as_object() else {
        return "-".to_owned();
    };
    let name = map.get("__name__").and_then(Value::as_str).unwrap_or("");
    let rest: Vec<String> = map
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// `GET /api/v1/queue/records/{seq}`.
pub fn record(r: &Value, now: u64) -> String {
    let times = match (r["min_ts"].as_u64(), r["max_ts"].as_u64()) {
        (Some(a), Some(b)) if a > 0 => format!("{} .. {}", timestamp(a), timestamp(b)),
        _ => "-".to_owned(),
    };
    let mut items = vec![
        ("seq", count(&r["seq"])),
        ("group", text(&r["group"])),
        ("source", text(&r["source"])),
        ("received", ago_at(num(&r["received_ms"]), now)),
        (
            "content",
            format!(
                "{} series, {} samples, {} histograms, {} exemplars",
                count(&r["series"]),
                count(&r["samples"]),
                count(&r["histograms"]),
                count(&r["exemplars"])
            ),
        ),
        ("sample times", times),
        ("payload", bytes(num(&r["payload_bytes"]))),
    ];
    if let Some(d) = r["damaged"].as_str() {
        items.push(("damaged", d.to_owned()));
    }
    let mut out = pairs(&items);
    let preview = array(&r["preview"]);
    if !preview.is_empty() {
        let mut t = Table::new(&[
            ("SERIES", Align::Left),
            ("SAMPLES", Align::Right),
            ("HISTOGRAMS", Align::Right),
            ("EXEMPLARS", Align::Right),
        ]);
        for s in preview {
            t.row(vec![
                series_name(&s["labels"]),
                count(&s["samples"]),
                count(&s["histograms"]),
                count(&s["exemplars"]),
            ]);
        }
        out.push_str("\nfirst series\n");
        out.push_str(&t.render());
    }
    out
}

/// `GET /api/v1/quarantine`.
pub fn quarantine(v: &Value, now: u64) -> String {
    let list = array(&v["quarantine"]);
    if list.is_empty() {
        return "the quarantine is empty\n".to_owned();
    }
    let mut t = Table::new(&[
        ("SEQ", Align::Right),
        ("ENDPOINT", Align::Left),
        ("STATUS", Align::Right),
        ("WHEN", Align::Left),
        ("GROUP", Align::Left),
        ("SOURCE", Align::Left),
        ("SERIES", Align::Right),
        ("SAMPLES", Align::Right),
        ("STORAGE'S ANSWER", Align::Left),
    ]);
    for q in list {
        t.row(vec![
            count(&q["seq"]),
            text(&q["endpoint"]),
            count(&q["status"]),
            ago(num(&q["quarantined_ms"]), now),
            text(&q["group"]),
            text(&q["source"]),
            count(&q["series"]),
            count(&q["samples"]),
            text(&q["answer"]),
        ]);
    }
    t.render()
}

/// The answer of `pause` / `resume`.
pub fn paused(v: &Value) -> String {
    let name = text(&v["endpoint"]);
    match (v["paused"].as_bool(), v["was_paused"].as_bool()) {
        (Some(true), Some(true)) => format!("{name} was already paused\n"),
        (Some(true), _) => format!("{name} paused: its records stay buffered\n"),
        (Some(false), Some(false)) => format!("{name} was not paused\n"),
        _ => format!("{name} resumed\n"),
    }
}

/// The answer of `skip`.
pub fn skipped(v: &Value) -> String {
    format!(
        "{}: skipped {} records (cursor {} -> {}); they will not be sent to it\n",
        text(&v["endpoint"]),
        count(&v["skipped_records"]),
        count(&v["from"]),
        count(&v["to"]),
    )
}

/// The answer of `replay`.
pub fn replayed(v: &Value) -> String {
    format!(
        "{}: sending {} records again (cursor {} -> {})\n",
        text(&v["endpoint"]),
        count(&v["replayed_records"]),
        count(&v["from"]),
        count(&v["to"]),
    )
}

/// The answer of `quarantine replay|delete`.
pub fn quarantine_changed(v: &Value, key: &str, what: &str) -> String {
    let names: Vec<String> = array(&v[key]).iter().map(text).collect();
    format!(
        "batch {} {what} for {}\n",
        count(&v["seq"]),
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    )
}

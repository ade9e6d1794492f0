//! The human form of each admin API answer. Every function takes the server's JSON as is
//! (missing fields show as `-`, so a newer or older node still renders) and the current
//! time, and returns the text to print.

use serde_json::Value;

use super::table::{ago, ago_at, bytes, millis, pairs, secs, timestamp, Align, Table};

/// A string field, `-` when absent or null.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A number field as u64, 0 when absent.
fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A number field as text, `-` when absent.
fn count(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// `GET /api/v1/status`.
pub fn status(v: &Value, _now: u64) -> String {
    let node = &v["node"];
    let uptime = node["uptime_seconds"]
        .as_f64()
        .map_or_else(|| "-".to_owned(), secs);
    let started = node["started_ms"]
        .as_u64()
        .map_or_else(String::new, |ms| format!(" (since {})", timestamp(ms)));
    let buffer = &v["buffer"];
    let endpoints: Vec<String> = array(&v["endpoints"]).iter().map(text).collect();
    let c = &v["cluster"];
    let cluster = if c.is_object() {
        let leader = c["leader"]
            .as_u64()
            .map_or_else(|| "none known".to_owned(), |l| l.to_string());
        format!(
            "node {}, leader {leader}, term {}, {} members",
            count(&c["node_id"]),
            count(&c["term"]),
            array(&c["members"]).len()
        )
    } else {
        "-".to_owned()
    };
    pairs(&[
        ("instance", text(&node["instance_id"])),
        ("version", text(&node["version"])),
        ("role", text(&v["role"])),
        ("cluster", cluster),
        (
            "ready",
            match v["ready"].as_bool() {
                Some(true) => "yes".to_owned(),
                Some(false) => "no (starting or stopping: writes get 503)".to_owned(),
                None => "-".to_owned(),
            },
        ),
        ("uptime", format!("{uptime}{started}")),
        ("ingest", text(&v["listeners"]["ingest"])),
        ("admin", text(&v["listeners"]["admin"])),
        ("data dir", text(&v["data_dir"])),
        ("durability", text(&v["durability"])),
        (
            "buffer",
            format!(
                "max {}, max age {}, when full {}",
                bytes(num(&buffer["max_bytes"])),
                secs(num(&buffer["max_age_seconds"]) as f64),
                text(&buffer["full_policy"]),
            ),
        ),
        (
            "health",
            format!(
                "tick {}, expiry {}",
                millis(num(&v["health"]["tick_ms"])),
                millis(num(&v["health"]["expiry_ms"]))
            ),
        ),
        (
            "endpoints",
            if endpoints.is_empty() {
                "-".to_owned()
            } else {
                endpoints.join(", ")
            },
        ),
    ])
}

/// A pin as one phrase: `b (pin, until 2026-…Z, in 59m)`.
fn pin(p: &Value, now: u64) -> String {
    if p.is_null() {
        return "-".to_owned();
    }
    let until = match p["until_ms"].as_u64() {
        Some(ms) => format!("until {}, {}", timestamp(ms), ago(ms, now)),
        None => "until unpinned".to_owned(),
    };
    format!("{} ({}, {until})", text(&p["source"]), text(&p["kind"]))
}

/// `GET /api/v1/groups`: one line per group.
pub fn groups(v: &Value, now: u64) -> String {
    let list = array(&v["groups"]);
    if list.is_empty() {
        return "no group has written yet\n".to_owned();
    }
    let mut t = Table::new(&[
        ("GROUP", Align::Left),
        ("PROMOTED", Align::Left),
        ("WEIGHT", Align::Right),
        ("SINCE", Align::Left),
        ("PIN", Align::Left),
        ("SOURCES (weight, last seen)", Align::Left),
    ]);
    for g in list {
        let p = &g["promoted"];
        let sources: Vec<String> = g["sources"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, s)| {
                        format!(
                            "{name} ({}, {})",
                            count(&s["weight"]),
                            ago(num(&s["last_seen_ms"]), now)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (promoted, weight, since) = if p.is_null() {
            ("none".to_owned(), "-".to_owned(), "-".to_owned())
        } else {
            (
                text(&p["source"]),
                count(&p["weight"]),
                ago(num(&p["since_ms"]), now),
            )
        };
        t.row(vec![
            text(&g["name"]),
            promoted,
            weight,
            since,
            pin(&g["pin"], now),
            sources.join(", "),
        ]);
    }
    t.render()
}

/// One history entry's cause, in words.
fn change(h: &Value) -> String {
    let r = &h["reason"];
    match (h["change"].as_str(), r["kind"].as_str()) {
        (Some("promoted"), Some("no_promoted_source")) => "no promoted source".to_owned(),
        (Some("promoted"), Some("bigger_weight")) => format!(
            "bigger weight than {} ({})",
            text(&r["previous"]),
            count(&r["previous_weight"])
        ),
        (Some("promoted"), Some("pinned")) => match r["previous"].as_str() {
            Some(p) => format!("pinned by an operator (was {p})"),
            None => "pinned by an operator".to_owned(),
        },
        (Some("promoted"), Some("failover")) => {
            format!("operator failover away from {}", text(&r["previous"]))
        }
        (Some("demoted"), _) => format!("no data for {}", millis(num(&h["silent_ms"]))),
        (Some("pin_expired"), _) => "the pin expired".to_owned(),
        (_, Some(kind)) => kind.replace('_', " "),
        _ => "-".to_owned(),
    }
}

/// `GET /api/v1/groups/{group}`: the group, its sources, its history.
pub fn group(g: &Value, now: u64) -> String {
    let p = &g["promoted"];
    let promoted = if p.is_null() {
        "none (the next source that writes is promoted)".to_owned()
    } else {
        format!(
            "{} (weight {}) since {}",
            text(&p["source"]),
            count(&p["weight"]),
            ago_at(num(&p["since_ms"]), now)
        )
    };
    let mut out = pairs(&[
        ("group", text(&g["name"])),
        ("promoted", promoted),
        ("pin", pin(&g["pin"], now)),
    ]);
    let mut t = Table::new(&[
        ("SOURCE", Align::Left),
        ("WEIGHT", Align::Right),
        ("FIRST SEEN", Align::Left),
        ("LAST SEEN", Align::Left),
        ("REQUESTS OK", Align::Right),
        ("REQUESTS DROPPED", Align::Right),
        ("SAMPLES OK", Align::Right),
        ("SAMPLES DROPPED", Align::Right),
    ]);
    if let Some(sources) = g["sources"].as_object() {
        for (name, s) in sources {
            let marker = if p["source"].as_str() == Some(name) {
                " *"
            } else {
                ""
            };
            t.row(vec![
                format!("{name}{marker}"),
                count(&s["weight"]),
                ago(num(&s["first_seen_ms"]), now),
                ago(num(&s["last_seen_ms"]), now),
                count(&s["requests_accepted"]),
                count(&s["requests_dropped"]),
                count(&s["samples_accepted"]),
                count(&s["samples_dropped"]),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&t.render());
    let history = array(&g["history"]);
    if !history.is_empty() {
        let mut h = Table::new(&[
            ("WHEN", Align::Left),
            ("CHANGE", Align::Left),
            ("SOURCE", Align::Left),
            ("WEIGHT", Align::Right),
            ("WHY", Align::Left),
        ]);
        for e in history {
            h.row(vec![
                ago_at(num(&e["at_ms"]), now),
                text(&e["change"]).replace('_', " "),
                text(&e["source"]),
                e["weight"]
                    .as_u64()
                    .map_or_else(String::new, |w| w.to_string()),
                change(e),
            ]);
        }
        out.push_str("\nhistory (newest first)\n");
        out.push_str(&h.render());
    }
    out
}

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
fn series_name(labels: &Value) -> String {
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

/// The answer of `pin` and `failover` (the group after the change).
pub fn group_changed(what: &str, group: &str, g: &Value, now: u64) -> String {
    let p = &g["promoted"];
    let promoted = if p.is_null() {
        "no source promoted".to_owned()
    } else {
        format!(
            "promoted {} (weight {})",
            text(&p["source"]),
            count(&p["weight"])
        )
    };
    format!("{group}: {what}; {promoted}; pin {}\n", pin(&g["pin"], now))
}

/// The answer of `unpin`.
pub fn unpinned(group: &str, v: &Value) -> String {
    let removed = &v["removed"];
    format!(
        "{group}: removed the {} of {}; weights count again\n",
        text(&removed["kind"]),
        text(&removed["source"])
    )
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

/// `cluster`: status (when present) and members.
/// A leadership transfer's answer: what moved, then the cluster as [`cluster`] shows it.
pub fn transferred(v: &Value) -> String {
    let t = &v["transferred"];
    let from = t["from"]
        .as_u64()
        .map_or_else(|| "none known".to_owned(), |l| l.to_string());
    format!(
        "leadership moved from node {from} to node {} in {} ms\n\n{}",
        count(&t["to"]),
        count(&t["took_ms"]),
        cluster(v)
    )
}

pub fn cluster(v: &Value) -> String {
    let mut out = String::new();
    let s = &v["status"];
    if s.is_object() {
        let leader = s["leader"]
            .as_u64()
            .map_or_else(|| "none known".to_owned(), |l| l.to_string());
        out.push_str(&pairs(&[
            ("node", count(&s["node_id"])),
            ("role", text(&s["role"])),
            ("leader", leader),
            ("term", count(&s["term"])),
            ("last log index", count(&s["last_log_index"])),
            ("last applied", count(&s["last_applied"])),
        ]));
        out.push('\n');
    }
    let lag: std::collections::BTreeMap<u64, u64> = array(&s["replication"])
        .iter()
        .filter_map(|r| Some((r["id"].as_u64()?, r["lag"].as_u64()?)))
        .collect();
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("ADDRESS", Align::Left),
        ("VOTER", Align::Left),
        ("LAG", Align::Right),
    ]);
    for m in array(&v["members"]) {
        let id = m["id"].as_u64().unwrap_or(0);
        t.row(vec![
            id.to_string(),
            text(&m["addr"]),
            if m["voter"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "learner"
            }
            .to_owned(),
            lag.get(&id)
                .map_or_else(|| "-".to_owned(), |l| l.to_string()),
        ]);
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests;

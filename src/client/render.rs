//! The human form of each admin API answer. Every function takes the server's JSON as is
//! (missing fields show as `-`, so a newer or older node still renders) and the current
//! time, and returns the text to print.

use serde_json::Value;

use super::table::{bytes, millis, pairs, secs, timestamp, Align, Table};

mod groups;
mod queue;

pub use groups::{group, group_changed, groups, unpinned};
pub use queue::{
    endpoints, paused, quarantine, quarantine_changed, queue, record, records, replayed, skipped,
};

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
                "max {}, max age {}, when full {}, compression {}{}",
                bytes(num(&buffer["max_bytes"])),
                secs(num(&buffer["max_age_seconds"]) as f64),
                text(&buffer["full_policy"]),
                text(&buffer["compression"]),
                if buffer["compressing"] == true {
                    " (compressing now)"
                } else {
                    ""
                },
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

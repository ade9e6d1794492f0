//! Groups: the list, one group with its sources and history, and the answers of the
//! election commands (`pin`, `unpin`, `failover`).

use serde_json::Value;

use super::{array, count, num, text};
use crate::client::table::{ago, ago_at, millis, pairs, timestamp, Align, Table};

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

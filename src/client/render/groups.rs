//! Groups: the list, one group with its sources and history, and the answers of the
//! election commands (`pin`, `unpin`, `failover`).

use super::name;
use crate::api::{self, Change, GroupView, HistoryEntry, PinView, Reason};
use crate::client::table::{ago, ago_at, millis, pairs, timestamp, Align, Table};

/// A pin as one phrase: `b (pin, until 2026-…Z, in 59m)`.
fn pin(p: Option<&PinView>, now: u64) -> String {
    let Some(p) = p else {
        return "-".to_owned();
    };
    let until = match p.until_ms {
        Some(ms) => format!("until {}, {}", timestamp(ms), ago(ms, now)),
        None => "until unpinned".to_owned(),
    };
    format!("{} ({}, {until})", p.source, name(Some(&p.kind)))
}

/// `GET /api/v1/groups`: one line per group.
pub fn groups(v: &api::Groups, now: u64) -> String {
    if v.groups.is_empty() {
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
    for g in &v.groups {
        let sources: Vec<String> = g
            .view
            .sources
            .iter()
            .map(|(name, s)| format!("{name} ({}, {})", s.weight, ago(s.last_seen_ms, now)))
            .collect();
        let (promoted, weight, since) = match &g.view.promoted {
            None => ("none".to_owned(), "-".to_owned(), "-".to_owned()),
            Some(p) => (p.source.clone(), p.weight.to_string(), ago(p.since_ms, now)),
        };
        t.row(vec![
            g.name.clone(),
            promoted,
            weight,
            since,
            pin(g.view.pin.as_ref(), now),
            sources.join(", "),
        ]);
    }
    t.render()
}

/// Why a source was promoted, in words.
fn why_promoted(reason: &Reason) -> String {
    match reason {
        Reason::NoPromotedSource => "no promoted source".to_owned(),
        Reason::BiggerWeight {
            previous,
            previous_weight,
        } => format!("bigger weight than {previous} ({previous_weight})"),
        Reason::Pinned { previous: Some(p) } => format!("pinned by an operator (was {p})"),
        Reason::Pinned { previous: None } => "pinned by an operator".to_owned(),
        Reason::Failover { previous } => format!("operator failover away from {previous}"),
    }
}

/// One history entry as the cells of its row: when, change, source, weight, why.
fn history_row(h: &HistoryEntry, now: u64) -> Vec<String> {
    let (change, source, weight, why) = match &h.change {
        Change::Promoted {
            source,
            weight,
            reason,
            ..
        } => (
            "promoted",
            source.clone(),
            Some(*weight),
            why_promoted(reason),
        ),
        Change::Demoted {
            source, silent_ms, ..
        } => (
            "demoted",
            source.clone(),
            None,
            format!("no data for {}", millis(*silent_ms)),
        ),
        Change::PinExpired { source, .. } => (
            "pin expired",
            source.clone(),
            None,
            "the pin expired".to_owned(),
        ),
        Change::Handover {
            source,
            from,
            backfilled,
            trimmed,
            ..
        } => (
            "handover",
            source.clone(),
            None,
            format!("from {from}: backfilled {backfilled} samples, trimmed {trimmed}"),
        ),
        Change::LeaderChanged { from, to, .. } => (
            "leader changed",
            "-".to_owned(),
            None,
            format!("node {to} leads (was node {from})"),
        ),
    };
    vec![
        ago_at(h.at_ms, now),
        change.to_owned(),
        source,
        weight.map_or_else(String::new, |w| w.to_string()),
        why,
    ]
}

/// `GET /api/v1/groups/{group}`: the group, its sources, its history.
pub fn group(g: &api::Group, now: u64) -> String {
    let promoted = match &g.view.promoted {
        None => "none (the next source that writes is promoted)".to_owned(),
        Some(p) => format!(
            "{} (weight {}) since {}",
            p.source,
            p.weight,
            ago_at(p.since_ms, now)
        ),
    };
    let mut out = pairs(&[
        ("group", g.name.clone()),
        ("promoted", promoted),
        ("pin", pin(g.view.pin.as_ref(), now)),
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
        ("PROTOCOL", Align::Left),
    ]);
    let promoted_source = g.view.promoted.as_ref().map(|p| p.source.as_str());
    for (name, s) in &g.view.sources {
        let marker = if promoted_source == Some(name) {
            " *"
        } else {
            ""
        };
        t.row(vec![
            format!("{name}{marker}"),
            s.weight.to_string(),
            ago(s.first_seen_ms, now),
            ago(s.last_seen_ms, now),
            s.requests_accepted.to_string(),
            s.requests_dropped.to_string(),
            s.samples_accepted.to_string(),
            s.samples_dropped.to_string(),
            if s.protocol.is_empty() {
                "-".to_owned()
            } else {
                s.protocol.clone()
            },
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    if !g.history.is_empty() {
        let mut h = Table::new(&[
            ("WHEN", Align::Left),
            ("CHANGE", Align::Left),
            ("SOURCE", Align::Left),
            ("WEIGHT", Align::Right),
            ("WHY", Align::Left),
        ]);
        for e in &g.history {
            h.row(history_row(e, now));
        }
        out.push_str("\nhistory (newest first)\n");
        out.push_str(&h.render());
    }
    out
}

/// `groups --history` of every group: the answers of each group's history call.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Histories {
    /// One per group.
    pub histories: Vec<api::GroupHistory>,
}

/// Every group's switches, one table per group.
pub fn histories(h: &Histories, now: u64) -> String {
    if h.histories.is_empty() {
        return "no group has written yet\n".to_owned();
    }
    let parts: Vec<String> = h
        .histories
        .iter()
        .map(|g| format!("group {}\n{}", g.group, history(g, now)))
        .collect();
    parts.join("\n")
}

/// `GET /api/v1/groups/{group}/history`: the switches, newest first.
pub fn history(h: &api::GroupHistory, now: u64) -> String {
    if h.switches.is_empty() {
        return "no switch recorded\n".to_owned();
    }
    let mut t = Table::new(&[
        ("WHEN", Align::Left),
        ("FROM", Align::Left),
        ("TO", Align::Left),
        ("REASON", Align::Left),
        ("BACKFILLED", Align::Right),
        ("TRIMMED", Align::Right),
        ("GAP", Align::Right),
        ("TOOK", Align::Right),
    ]);
    for s in &h.switches {
        let reason = match s.silent_ms {
            Some(silent) => format!("{} ({} silent)", s.reason.words(), millis(silent)),
            None => s.reason.words().to_owned(),
        };
        let (backfilled, trimmed, gap, took) = match &s.handover {
            Some(h) => (
                h.backfilled.to_string(),
                h.trimmed.to_string(),
                h.gap_ms.map_or_else(|| "-".to_owned(), millis),
                millis(h.took_ms),
            ),
            None => Default::default(),
        };
        t.row(vec![
            ago_at(s.at_ms, now),
            s.from.clone().unwrap_or_else(|| "-".to_owned()),
            s.to.clone(),
            reason,
            backfilled,
            trimmed,
            gap,
            took,
        ]);
    }
    t.render()
}

/// The answer of `pin` and `failover` (the group after the change).
pub fn group_changed(what: &str, group: &str, g: &GroupView, now: u64) -> String {
    let promoted = match &g.promoted {
        None => "no source promoted".to_owned(),
        Some(p) => format!("promoted {} (weight {})", p.source, p.weight),
    };
    format!(
        "{group}: {what}; {promoted}; pin {}\n",
        pin(g.pin.as_ref(), now)
    )
}

/// The answer of `unpin`.
pub fn unpinned(group: &str, v: &api::Unpinned) -> String {
    let (kind, source) = match &v.removed {
        Some(p) => (name(Some(&p.kind)), p.source.clone()),
        None => ("-".to_owned(), "-".to_owned()),
    };
    format!("{group}: removed the {kind} of {source}; weights count again\n")
}

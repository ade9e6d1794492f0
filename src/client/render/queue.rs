//! The buffer and the storages: queue totals, endpoints, buffered records, the quarantine
//! and the answers of the shipping commands (`pause`, `resume`, `skip`, `replay`).

use std::collections::BTreeMap;

use super::{list, name};
use crate::api::{self, EndpointStatus, RecordSummary};
use crate::client::table::{ago, ago_at, bytes, pairs, secs, timestamp, Align, Table};

/// An endpoint's last error and next retry, in one phrase.
fn last_error(e: &EndpointStatus, now: u64) -> String {
    let Some(err) = &e.last_error else {
        return "-".to_owned();
    };
    let mut s = format!("{err} ({})", ago(e.last_error_ms.unwrap_or(0), now));
    if let Some(next) = e.next_retry_ms {
        s.push_str(&format!(", retry {}", ago(next, now)));
    }
    s
}

/// `GET /api/v1/queue`: buffer totals and a line per endpoint.
pub fn queue(v: &api::Queue, now: u64) -> String {
    let pct = if v.max_bytes > 0 {
        format!(" ({:.1}%)", v.bytes as f64 * 100.0 / v.max_bytes as f64)
    } else {
        String::new()
    };
    let oldest = if v.records == 0 {
        "-".to_owned()
    } else {
        secs(v.oldest_age_seconds)
    };
    let mut out = pairs(&[
        ("records", v.records.to_string()),
        (
            "bytes",
            format!("{} of {}{pct}", bytes(v.bytes), bytes(v.max_bytes)),
        ),
        ("oldest", oldest),
        (
            "sequences",
            format!("first {}, next {}", v.first_seq, v.next_seq),
        ),
        ("dropped", format!("{} records (limits)", v.dropped_records)),
        ("quarantined", format!("{} batches", v.quarantined)),
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
    for e in &v.endpoints {
        let (w, p) = (&e.worker, &e.position);
        t.row(vec![
            w.name.clone(),
            name(Some(&w.state)),
            format!("{}/{}", w.in_flight, w.max_in_flight),
            p.lag_records.to_string(),
            bytes(p.lag_bytes),
            secs(p.lag_seconds),
            w.sent_records.to_string(),
            w.failed_requests.to_string(),
            last_error(w, now),
        ]);
    }
    if !t.is_empty() {
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

/// `GET /api/v1/endpoints`: each storage's position, counters and last error.
pub fn endpoints(v: &api::Endpoints, now: u64) -> String {
    if v.endpoints.is_empty() {
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
        ("PROTOCOL", Align::Left),
        ("URL", Align::Left),
    ]);
    let mut errors = String::new();
    for e in &v.endpoints {
        let (w, p) = (&e.worker, &e.position);
        t.row(vec![
            w.name.clone(),
            name(Some(&w.state)),
            p.cursor.to_string(),
            p.lag_records.to_string(),
            w.sent_records.to_string(),
            w.sent_samples.to_string(),
            bytes(w.sent_bytes),
            w.failed_requests.to_string(),
            w.retries.to_string(),
            w.quarantined.to_string(),
            p.dropped_records.to_string(),
            protocol(w),
            w.url.clone(),
        ]);
        if w.last_error.is_some() {
            errors.push_str(&format!("{}: last error {}\n", w.name, last_error(w, now)));
        }
    }
    let mut out = t.render();
    if !errors.is_empty() {
        out.push('\n');
        out.push_str(&errors);
    }
    out
}

/// The endpoint's protocol: `1.0`, `2.0`, or `auto` with what it settled on.
fn protocol(w: &EndpointStatus) -> String {
    match (w.protocol.as_str(), w.protocol_in_use.as_str()) {
        ("auto", used) => format!("auto ({used})"),
        (configured, _) => configured.to_owned(),
    }
}

/// A record's smallest and largest sample time, when it has samples (ms, never negative).
fn sample_times(r: &RecordSummary) -> Option<(u64, u64)> {
    let min = u64::try_from(r.min_ts).ok().filter(|&t| t > 0)?;
    Some((min, u64::try_from(r.max_ts).ok()?))
}

/// Sample time range of a record as ages.
fn data_time(r: &RecordSummary, now: u64) -> String {
    match sample_times(r) {
        Some((a, b)) if a == b => ago(a, now),
        Some((a, b)) => format!("{} .. {}", ago(a, now), ago(b, now)),
        None => "-".to_owned(),
    }
}

fn samples(r: &RecordSummary) -> String {
    if r.histograms > 0 {
        format!("{} +{} hist", r.samples, r.histograms)
    } else {
        r.samples.to_string()
    }
}

/// `GET /api/v1/queue/records`.
pub fn records(v: &api::Records, now: u64) -> String {
    if v.records.is_empty() {
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
    for r in &v.records {
        t.row(vec![
            r.seq.to_string(),
            r.group.clone(),
            r.source.clone(),
            ago(r.received_ms, now),
            r.series.to_string(),
            samples(r),
            data_time(r, now),
            bytes(r.payload_bytes as u64),
            r.damaged.clone().unwrap_or_default(),
        ]);
    }
    t.render()
}

/// `{__name__="up", job="x"}` as `up{job="x"}`.
pub(super) fn series_name(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").map_or("", String::as_str);
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// `GET /api/v1/queue/records/{seq}`.
pub fn record(v: &api::Record, now: u64) -> String {
    let r = &v.summary;
    let times = sample_times(r).map_or_else(
        || "-".to_owned(),
        |(a, b)| format!("{} .. {}", timestamp(a), timestamp(b)),
    );
    let mut items = vec![
        ("seq", r.seq.to_string()),
        ("group", r.group.clone()),
        ("source", r.source.clone()),
        ("received", ago_at(r.received_ms, now)),
        (
            "content",
            format!(
                "{} series, {} samples, {} histograms, {} exemplars",
                r.series, r.samples, r.histograms, r.exemplars
            ),
        ),
        ("sample times", times),
        ("payload", bytes(r.payload_bytes as u64)),
        ("protocol", r.protocol.clone()),
    ];
    if let Some(d) = &r.damaged {
        items.push(("damaged", d.clone()));
    }
    let mut out = pairs(&items);
    let preview = v.preview.as_deref().unwrap_or_default();
    if !preview.is_empty() {
        let mut t = Table::new(&[
            ("SERIES", Align::Left),
            ("SAMPLES", Align::Right),
            ("HISTOGRAMS", Align::Right),
            ("EXEMPLARS", Align::Right),
        ]);
        for s in preview {
            t.row(vec![
                series_name(&s.labels),
                s.samples.to_string(),
                s.histograms.to_string(),
                s.exemplars.to_string(),
            ]);
        }
        out.push_str("\nfirst series\n");
        out.push_str(&t.render());
    }
    out
}

/// `GET /api/v1/quarantine`.
pub fn quarantine(v: &api::Quarantine, now: u64) -> String {
    if v.quarantine.is_empty() {
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
    for q in &v.quarantine {
        t.row(vec![
            q.seq.to_string(),
            q.endpoint.clone(),
            q.status.to_string(),
            ago(q.quarantined_ms, now),
            q.group.clone(),
            q.source.clone(),
            q.series.to_string(),
            q.samples.to_string(),
            q.answer.clone(),
        ]);
    }
    t.render()
}

/// The answer of `pause` / `resume`.
pub fn paused(v: &api::Paused) -> String {
    let name = &v.endpoint;
    match (v.paused, v.was_paused) {
        (true, true) => format!("{name} was already paused\n"),
        (true, false) => format!("{name} paused: its records stay buffered\n"),
        (false, false) => format!("{name} was not paused\n"),
        (false, true) => format!("{name} resumed\n"),
    }
}

/// The answer of `skip`.
pub fn skipped(v: &api::Skipped) -> String {
    let m = &v.moved;
    format!(
        "{}: skipped {} records (cursor {} -> {}); they will not be sent to it\n",
        m.endpoint, v.skipped_records, m.from, m.to,
    )
}

/// The answer of `replay`.
pub fn replayed(v: &api::Replayed) -> String {
    let m = &v.moved;
    format!(
        "{}: sending {} records again (cursor {} -> {})\n",
        m.endpoint, v.replayed_records, m.from, m.to,
    )
}

/// The answer of `quarantine replay`.
pub fn quarantine_queued(v: &api::QuarantineQueued) -> String {
    batch_changed(v.seq, &v.queued_for, "queued for replay")
}

/// The answer of `quarantine delete`.
pub fn quarantine_deleted(v: &api::QuarantineDeleted) -> String {
    batch_changed(v.seq, &v.deleted_for, "deleted")
}

/// A quarantined batch and the endpoints an action touched.
fn batch_changed(seq: u64, endpoints: &[String], what: &str) -> String {
    format!("batch {seq} {what} for {}\n", list(endpoints))
}

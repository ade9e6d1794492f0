//! `highlander-bench report`: medians and ratios over the runs of `bench/compare.sh`.
//!
//! Each run directory (`<phase>-r<round>-<mode>/`) holds four files:
//! - `load.json`: the generator's report;
//! - `sink_end.json`: the sink's stats when the load stopped;
//! - `sink_final.json`: the sink's stats after the relay drained;
//! - `measure.json`: relay CPU seconds, peak RSS and drain time, written by the script.
//!
//! Missing or broken runs are listed and left out of the medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Arguments of `report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// Directory holding one sub-directory per run.
    #[arg(long)]
    runs: PathBuf,
    /// JSON output.
    #[arg(long, required_unless_present = "get")]
    json: Option<PathBuf>,
    /// Markdown output.
    #[arg(long, required_unless_present = "get")]
    markdown: Option<PathBuf>,
    /// The command line that produced the runs (quoted in the outputs).
    #[arg(long, default_value = "")]
    command: String,
    /// Only print the value at this JSON pointer of the report (e.g.
    /// `/summary/max/vmagent/delivered_samples_per_s`) and write nothing.
    #[arg(long)]
    get: Option<String>,
}

const MODES: [&str; 8] = [
    "direct",
    "highlander",
    "highlander-inflight",
    "highlander-serial",
    "highlander-v2",
    "highlander-v2-pass",
    "vmagent",
    "vmagent-bookworm",
];

/// The pairs of modes whose ratios are reported, as (mode, against): highlander's default (one request in flight
/// per storage, series in order) and with several requests in flight (as vmagent sends)
/// against vmagent and the direct path; the default against one request at a time
/// (`highlander-serial`, no ordered lanes); the generator sending Remote-Write 2.0 to
/// highlander (converted for a 1.0 sink, or passed through to a 2.0 sink) against the same
/// with 1.0; and against the older vmagent of Debian bookworm when it ran. A ratio is
/// reported when both modes ran.
const PAIRS: [(&str, &str); 8] = [
    ("highlander", "vmagent"),
    ("highlander", "vmagent-bookworm"),
    ("highlander", "highlander-serial"),
    ("highlander", "direct"),
    ("highlander-inflight", "vmagent"),
    ("highlander-inflight", "direct"),
    ("highlander-v2", "highlander"),
    ("highlander-v2-pass", "highlander"),
];

/// Per-run metrics, in table order. Each has a key, a label, a unit-ish note, and whether
/// lower is better.
const METRICS: [(&str, &str); 12] = [
    (
        "delivered_samples_per_s",
        "delivered samples/s (sink, first to last delivery)",
    ),
    ("ingest_samples_per_s", "acknowledged samples/s (generator)"),
    ("ingest_requests_per_s", "acknowledged requests/s"),
    ("p50_ms", "ingest latency p50 (ms)"),
    ("p99_ms", "ingest latency p99 (ms)"),
    ("relay_cpu_s_per_million", "relay CPU s per million samples"),
    ("relay_peak_rss_mb", "relay peak RSS (MiB)"),
    ("delivered_fraction", "delivered / acknowledged"),
    ("duplicate_samples", "duplicate samples at sink"),
    ("failed_requests", "failed requests (non-2xx + errors)"),
    ("drain_s", "drain time after load (s)"),
    ("sink_cpu_s_per_million", "sink CPU s per million samples"),
];

const RATIOS: [&str; 6] = [
    "delivered_samples_per_s",
    "ingest_samples_per_s",
    "p99_ms",
    "relay_cpu_s_per_million",
    "relay_peak_rss_mb",
    "delivered_fraction",
];

fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

/// The metrics of one run directory.
fn run_metrics(dir: &Path) -> Result<(String, String, u64, Value), String> {
    let measure = read(&dir.join("measure.json"))?;
    let load = read(&dir.join("load.json"))?;
    let sink_end = read(&dir.join("sink_end.json"))?;
    let sink_final = read(&dir.join("sink_final.json"))?;
    let mode = measure["mode"].as_str().unwrap_or("?").to_string();
    let phase = measure["phase"].as_str().unwrap_or("?").to_string();
    let round = measure["round"].as_u64().unwrap_or(0);
    let duration = num(&load, &["duration_s"]).unwrap_or(f64::NAN);
    let acked = num(&load, &["acked_samples"]).unwrap_or(0.0);
    let delivered = num(&sink_final, &["unique_samples"]).unwrap_or(0.0);
    let millions = delivered / 1e6;
    let per_million = |cpu: Option<f64>| cpu.filter(|_| millions > 0.0).map(|c| c / millions);
    let relay = mode != "direct";
    let m = json!({
        "mode": mode,
        "phase": phase,
        "round": round,
        "delivered_samples_per_s": delivered_rate(&sink_final, delivered, duration),
        "delivered_in_window_per_s": num(&sink_end, &["unique_samples"]).map(|s| s / duration),
        "ingest_samples_per_s": num(&load, &["samples_per_s"]),
        "ingest_requests_per_s": num(&load, &["requests_per_s"]),
        "p50_ms": num(&load, &["latency_ms", "p50"]),
        "p99_ms": num(&load, &["latency_ms", "p99"]),
        "relay_cpu_s_per_million": if relay { per_million(num(&measure, &["relay_cpu_s"])) } else { None },
        "relay_peak_rss_mb": if relay { num(&measure, &["relay_hwm_kb"]).map(|k| k / 1024.0) } else { None },
        "delivered_fraction": (acked > 0.0).then(|| delivered / acked),
        "duplicate_samples": num(&sink_final, &["duplicate_samples"]),
        "failed_requests": num(&load, &["failed_requests"]),
        "drain_s": num(&measure, &["drain_s"]),
        "sink_cpu_s_per_million": per_million(num(&measure, &["sink_cpu_s"])),
        "acked_samples": acked,
        "delivered_samples": delivered,
        "rate_limit": num(&load, &["rate_limit"]),
        "ledger_saturated": sink_final["ledger_saturated"].clone(),
    });
    Ok((phase, mode, round, m))
}

/// Samples per second at the sink, from its first to its last delivery: the rate the whole
/// path sustained, backlog shipping after the load included. Falls back to the load's
/// duration when the span is too short to mean anything.
fn delivered_rate(sink: &Value, delivered: f64, duration: f64) -> Option<f64> {
    let first = num(sink, &["first_request_unix_ms"])?;
    let last = num(sink, &["last_request_unix_ms"])?;
    let span = (last - first) / 1000.0;
    let span = if span >= 1.0 { span } else { duration };
    (span > 0.0).then(|| delivered / span)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": kernel.trim(),
    })
}

/// What `compare.sh` wrote to `versions.txt` in the runs directory: one line per relay,
/// its mode first, then what it is (`vmagent v1.145.0 (/path)`).
fn versions(runs: &Path) -> Value {
    let text = std::fs::read_to_string(runs.join("versions.txt")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(mode, what)| (mode.to_string(), json!(what.trim())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Builds the JSON and Markdown reports.
pub fn run(args: &ReportArgs) -> Result<(), String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&args.runs)
        .map_err(|e| format!("{}: {e}", args.runs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut runs = Vec::new();
    let mut broken = Vec::new();
    // phase -> mode -> metric -> values
    let mut by: BTreeMap<String, BTreeMap<String, BTreeMap<&str, Vec<f64>>>> = BTreeMap::new();
    let mut params = Value::Null;
    for dir in &dirs {
        match run_metrics(dir) {
            Ok((phase, mode, _, m)) => {
                if params.is_null() {
                    if let Ok(load) = read(&dir.join("load.json")) {
                        params = json!({
                            "series": load["series"],
                            "samples_per_request": load["samples_per_request"],
                            "concurrency": load["concurrency"],
                            "duration_s": load["duration_s"].as_f64().map(f64::round),
                        });
                    }
                }
                let slot = by.entry(phase).or_default().entry(mode).or_default();
                for (key, _) in METRICS {
                    if let Some(v) = m[key].as_f64() {
                        slot.entry(key).or_default().push(v);
                    }
                }
                runs.push(m);
            }
            Err(e) => broken.push(json!({ "run": dir.display().to_string(), "error": e })),
        }
    }

    let mut summary = serde_json::Map::new();
    let mut ratios = serde_json::Map::new();
    for (phase, modes) in &by {
        let medians: BTreeMap<&str, BTreeMap<&str, Option<f64>>> = modes
            .iter()
            .map(|(mode, metrics)| {
                let mode = MODES
                    .iter()
                    .find(|m| *m == mode)
                    .copied()
                    .unwrap_or("other");
                let values = metrics
                    .iter()
                    .map(|(k, v)| (*k, median(v.clone())))
                    .collect();
                (mode, values)
            })
            .collect();
        let ratio = |relay: &str, other: &str| -> Value {
            RATIOS
                .iter()
                .map(|k| {
                    let h = medians.get(relay).and_then(|m| m.get(k)).copied().flatten();
                    let o = medians.get(other).and_then(|m| m.get(k)).copied().flatten();
                    let r = match (h, o) {
                        (Some(h), Some(o)) if o != 0.0 => Some(h / o),
                        _ => None,
                    };
                    (k.to_string(), json!(r))
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut phase_ratios = serde_json::Map::new();
        let both_ran = |(r, o): &&(&str, &str)| medians.contains_key(r) && medians.contains_key(o);
        for (relay, other) in PAIRS.iter().filter(both_ran) {
            phase_ratios.insert(format!("{relay}/{other}"), ratio(relay, other));
        }
        ratios.insert(phase.clone(), phase_ratios.into());
        summary.insert(phase.clone(), json!(medians));
    }
    let vmagent_max = summary
        .get("max")
        .and_then(|m| m.get("vmagent"))
        .and_then(|m| m.get("delivered_samples_per_s"))
        .cloned()
        .unwrap_or(Value::Null);
    let report = json!({
        "command": args.command,
        "versions": versions(&args.runs),
        "vmagent_max_delivered_samples_per_s": vmagent_max,
        "machine": machine(),
        "params": params,
        "summary": summary,
        "ratios": ratios,
        "runs": runs,
        "broken_runs": broken,
    });
    if let Some(pointer) = &args.get {
        match report.pointer(pointer) {
            Some(Value::String(s)) => println!("{s}"),
            Some(v) if !v.is_null() => println!("{v}"),
            _ => return Err(format!("nothing at {pointer} in the report")),
        }
        return Ok(());
    }
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    let md = markdown(&report);
    for (path, content) in [(&args.json, &text), (&args.markdown, &md)] {
        if let Some(path) = path {
            std::fs::write(path, content).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    print!("{md}");
    Ok(())
}

fn fmt(v: &Value) -> String {
    match v.as_f64() {
        None => "–".into(),
        Some(x) if x.abs() >= 100_000.0 => format!("{:.2} M", x / 1e6),
        Some(x) if x.abs() >= 100.0 || x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn markdown(report: &Value) -> String {
    let mut md = String::new();
    let m = &report["machine"];
    let p = &report["params"];
    let _ = writeln!(md, "# highlander vs vmagent: latest benchmark\n");
    if let Some(cmd) = report["command"].as_str().filter(|c| !c.is_empty()) {
        let _ = writeln!(md, "Command: `{cmd}`\n");
    }
    if let Some(versions) = report["versions"].as_object().filter(|v| !v.is_empty()) {
        let list: Vec<String> = versions
            .iter()
            .map(|(mode, what)| format!("{mode}: {}", what.as_str().unwrap_or("?")))
            .collect();
        let _ = writeln!(md, "Relays: {}.\n", list.join("; "));
    }
    let _ = writeln!(
        md,
        "Machine: {} cores, {}, Linux {}. Load: {} series, {} samples/request, {} connections, {} s per run. Medians over the rounds; generator, relay and sink share the machine.\n",
        m["cores"], m["cpu"].as_str().unwrap_or("?"), m["kernel"].as_str().unwrap_or("?"),
        p["series"], p["samples_per_request"], p["concurrency"], p["duration_s"],
    );
    let titles = [
        ("max", "Maximum throughput (unlimited rate)"),
        (
            "latency",
            "Fixed rate (50% of vmagent's max, or --latency-rate): latency",
        ),
    ];
    let summary = report["summary"].as_object().cloned().unwrap_or_default();
    // Known phases in their natural order, then anything else.
    let mut phases: Vec<(&String, &Value)> = summary.iter().collect();
    phases.sort_by_key(|(p, _)| {
        titles
            .iter()
            .position(|(t, _)| t == p)
            .unwrap_or(usize::MAX)
    });
    for (phase, data) in phases {
        let title = titles
            .iter()
            .find(|(p, _)| p == phase)
            .map_or(phase.as_str(), |(_, t)| t);
        let _ = writeln!(md, "## {title}\n");
        // The modes that ran, in their usual order, then a ratio column per relay.
        let modes: Vec<&str> = MODES
            .iter()
            .copied()
            .filter(|m| data.get(*m).is_some())
            .collect();
        let ratio_cols: Vec<String> = PAIRS
            .iter()
            .filter(|(r, o)| modes.contains(r) && modes.contains(o))
            .map(|(r, other)| format!("{r}/{other}"))
            .collect();
        let header: Vec<&str> = modes
            .iter()
            .copied()
            .chain(ratio_cols.iter().map(String::as_str))
            .collect();
        let _ = writeln!(
            md,
            "| metric | {} |\n|---|{}",
            header.join(" | "),
            "---:|".repeat(header.len())
        );
        let ratios = &report["ratios"][phase];
        for (key, label) in METRICS {
            let cells: Vec<String> = modes
                .iter()
                .map(|m| fmt(&data[*m][key]))
                .chain(ratio_cols.iter().map(|c| {
                    if RATIOS.contains(&key) {
                        fmt(&ratios[c.as_str()][key])
                    } else {
                        String::new()
                    }
                }))
                .collect();
            let _ = writeln!(md, "| {label} | {} |", cells.join(" | "));
        }
        let _ = writeln!(md);
    }
    if let Some(b) = report["broken_runs"].as_array().filter(|b| !b.is_empty()) {
        let _ = writeln!(md, "Broken runs (left out): {}\n", b.len());
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
    }

    #[test]
    fn markdown_has_a_column_per_mode_that_ran_and_ratios_per_relay() {
        let mode = |rate: f64| json!({"delivered_samples_per_s": rate, "p99_ms": 2.0});
        let report = json!({
            "summary": {"max": {
                "direct": mode(8e6), "highlander": mode(3e6),
                "highlander-inflight": mode(4e6), "vmagent": mode(2e6)
            }},
            "ratios": {"max": {
                "highlander/vmagent": {"delivered_samples_per_s": 1.5},
                "highlander/direct": {"delivered_samples_per_s": 0.375},
                "highlander-inflight/vmagent": {"delivered_samples_per_s": 2.0},
                "highlander-inflight/direct": {"delivered_samples_per_s": 0.5}
            }},
        });
        let md = markdown(&report);
        assert!(
            md.contains("| metric | direct | highlander | highlander-inflight | vmagent | highlander/vmagent | highlander/direct | highlander-inflight/vmagent | highlander-inflight/direct |"),
            "{md}"
        );
        assert!(
            md.contains("| delivered samples/s (sink, first to last delivery) | 8.00 M | 3.00 M | 4.00 M | 2.00 M | 1.50 | 0.375 | 2 | 0.500 |"),
            "{md}"
        );
        // A run without the in-flight mode keeps the three-mode table.
        let mut three = report.clone();
        three["summary"]["max"]
            .as_object_mut()
            .expect("modes")
            .remove("highlander-inflight");
        let md = markdown(&three);
        assert!(
            md.contains("| metric | direct | highlander | vmagent | highlander/vmagent | highlander/direct |\n|---|---:|---:|---:|---:|---:|"),
            "{md}"
        );
    }
}

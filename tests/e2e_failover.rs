//! Gapless, overlap-free failover end to end, with the real servers: two Prometheus
//! replicas scrape the same in-test counter every second and remote_write through
//! highlander into a real VictoriaMetrics. Every scenario runs in two configurations:
//!
//! - **the default** (no `--replica-label`): the replicas are named by `highlander_source`
//!   and each keeps its own `replica` external label, so VictoriaMetrics holds one series
//!   per replica — what a dashboard that ignores the replica label (`sum without
//!   (replica)`) sees is their samples merged by time; run on Debian sid's Prometheus 3.5
//!   and VictoriaMetrics 1.145;
//! - **`--replica-label __replica__`**: highlander strips the label, VictoriaMetrics holds
//!   ONE merged series; run on bookworm's Prometheus 2.42 and VictoriaMetrics 1.79.
//!
//! Replica `a` (weight 10) is promoted, `b` (weight 5) writes as a standby for a few
//! seconds, then the promoted source changes:
//!
//! 1. `a` is killed with SIGKILL: `b` is promoted at the expiry;
//! 2. `b` is given a bigger weight (20) while `a` keeps writing: its config is rewritten and
//!    reloaded (SIGHUP), so it never stops scraping and its held writes stay continuous;
//! 3. an operator fails the group over with the admin API (behind `--admin-token`);
//! 4. start-up: both replicas start at once, `a` with weight 5, `b` with 10; whichever
//!    writes first is promoted, and `b` takes over on its first write if it was not first;
//! 5. a bigger weight joins: `a` (weight 5) runs alone, promoted; `b` (10) starts and takes
//!    over on its first write, with nothing of its own held before.
//!
//! For each, the raw samples VictoriaMetrics exports in a window around the switch, merged
//! by time, must have no interval longer than 1.5 scrape intervals (plus scrape jitter), no
//! two samples closer than half a scrape interval, a counter that never decreases, `a`'s
//! samples then `b`'s without interleaving, and every sample `b` scraped after the switch
//! point (read from `b`'s own TSDB). highlander must log one `handover : 'b' takes over
//! from 'a'` line and count it in `highlander_handover_total` (at start-up: one, or none
//! when `b` wrote first).
//!
//! The scenarios run one at a time (each starts its own servers), so that several pairs of
//! Prometheus do not compete for a small machine's CPUs and blur the scrape timing.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use common::e2e::*;
use common::*;

/// Largest interval allowed between consecutive samples around a switch: 1.5 scrape
/// intervals, plus 100 ms of scrape jitter. The guarantee is "no gap longer than the new
/// source's own gap plus half a step" (its samples are kept from half the old source's step
/// after the old source's last one), i.e. 1500 ms with perfectly regular 1 s scrapes; on a
/// loaded machine a scrape can start (and be timestamped) some tens of ms after its slot.
/// A missed scrape or a lost write would show as a hole of 2000 ms or more.
const MAX_GAP: Duration = Duration::from_millis(1_600);
/// Two samples closer than this are an overlap (the replicas scrape 1 s apart each, at
/// different phases): the new source's samples are kept only from half the old source's
/// step after its last one.
const MIN_SPACING: Duration = Duration::from_millis(500);
/// The window checked: from this long before the switch is triggered ...
const BEFORE: Duration = Duration::from_secs(6);
/// ... to this long after highlander shows the new source promoted.
const AFTER: Duration = Duration::from_secs(5);
/// Writes of the standby dropped (and held) before the switch: several seconds of data.
const STANDBY_WRITES: u64 = 4;
/// The admin token of the manual-failover scenario.
const TOKEN: &str = "e2e-failover-token";

/// One scenario at a time (see the module comment).
static SERIAL: Mutex<()> = Mutex::new(());

/// How the promoted source changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switch {
    /// SIGKILL of the promoted replica.
    Kill,
    /// The standby reloads with a bigger weight while the promoted one keeps writing.
    Weight,
    /// `POST /api/v1/groups/default/failover`.
    Admin,
    /// Both replicas start at once; `b` has the bigger weight.
    Startup,
    /// `b`, with the bigger weight, starts while `a` runs alone.
    Join,
}

impl Switch {
    /// The election's log line for b's promotion.
    fn election_line(self) -> &'static str {
        match self {
            Switch::Kill => "new source : 'b' (no current promoted source) (5)",
            Switch::Weight => "new source : 'b' (bigger Highlander Weight) (10 -> 20)",
            Switch::Admin => "new source : 'b' (failover by operator from 'a') (5)",
            Switch::Startup | Switch::Join => {
                "new source : 'b' (bigger Highlander Weight) (5 -> 10)"
            }
        }
    }
}

/// The default configuration: no `--replica-label`, each replica's `replica` label kept,
/// on the modern servers.
const DEFAULT: (Servers, Labels, Protocol) = (Servers::Sid, Labels::Kept, Protocol::V1);
/// `--replica-label __replica__`, on bookworm's servers.
const STRIPPED: (Servers, Labels, Protocol) = (Servers::Bookworm, Labels::Stripped, Protocol::V1);
/// The replicas send Remote-Write 2.0 (Prometheus 3.5), in the default configuration.
const DEFAULT_V2: (Servers, Labels, Protocol) = (Servers::Sid, Labels::Kept, Protocol::V2);
/// Remote-Write 2.0 with `--replica-label __replica__`: the label is stripped from 2.0
/// writes.
const STRIPPED_V2: (Servers, Labels, Protocol) = (Servers::Sid, Labels::Stripped, Protocol::V2);

#[test]
fn kill_9_of_the_promoted_replica_leaves_no_hole_and_no_overlap() {
    run(DEFAULT, Switch::Kill);
}

#[test]
fn bigger_weight_takeover_leaves_no_hole_and_no_overlap() {
    run(DEFAULT, Switch::Weight);
}

#[test]
fn admin_failover_leaves_no_hole_and_no_overlap() {
    run(DEFAULT, Switch::Admin);
}

#[test]
fn start_up_of_both_replicas_at_once_doubles_nothing() {
    run(DEFAULT, Switch::Startup);
}

#[test]
fn a_bigger_weight_joining_a_lone_replica_doubles_nothing() {
    run(DEFAULT, Switch::Join);
}

#[test]
fn with_remote_write_2_0_kill_9_leaves_no_hole_and_no_overlap() {
    run(DEFAULT_V2, Switch::Kill);
}

#[test]
fn with_remote_write_2_0_and_the_replica_label_stripped_bigger_weight_leaves_no_hole() {
    run(STRIPPED_V2, Switch::Weight);
}

#[test]
fn with_the_replica_label_stripped_kill_9_leaves_no_hole_and_no_overlap() {
    run(STRIPPED, Switch::Kill);
}

#[test]
fn with_the_replica_label_stripped_bigger_weight_leaves_no_hole_and_no_overlap() {
    run(STRIPPED, Switch::Weight);
}

#[test]
fn with_the_replica_label_stripped_admin_failover_leaves_no_hole_and_no_overlap() {
    run(STRIPPED, Switch::Admin);
}

#[test]
fn with_the_replica_label_stripped_start_up_doubles_nothing() {
    run(STRIPPED, Switch::Startup);
}

#[test]
fn with_the_replica_label_stripped_a_bigger_weight_joining_doubles_nothing() {
    run(STRIPPED, Switch::Join);
}

/// Both replicas write to one vmagent, which forwards them in one stream with no query
/// parameters: highlander splits its requests by the replica label (per-series HA
/// deduplication). Debian sid's Prometheus, VictoriaMetrics and vmagent.
#[test]
fn through_a_vmagent_kill_9_leaves_no_hole_and_no_overlap() {
    run_through(
        (Servers::Sid, Labels::Stripped, Protocol::V1),
        Switch::Kill,
        true,
    );
}

/// Runs one scenario on its own runtime, after the previous one finished. A panic unwinds
/// through the runtime: the scenario's processes are killed (and their logs printed).
fn run(config: (Servers, Labels, Protocol), switch: Switch) {
    run_through(config, switch, false);
}

/// [`run`], the replicas writing through a vmagent when `agent` is set.
fn run_through(
    (servers, labels, protocol): (Servers, Labels, Protocol),
    switch: Switch,
    agent: bool,
) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(scenario(servers, labels, protocol, switch, agent));
}

/// Who scraped a sample, from the replicas' own TSDBs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    A,
    B,
    /// Both scraped at the same millisecond: no telling.
    Both,
}

async fn scenario(
    servers: Servers,
    labels: Labels,
    protocol: Protocol,
    switch: Switch,
    agent: bool,
) {
    let started = std::time::Instant::now();
    let extra: &[&str] = match switch {
        Switch::Admin => &["--admin-token", TOKEN],
        _ => &[],
    };
    let mut e = E2e::start_with(servers, labels, extra).await;
    e.protocol = protocol;
    if agent {
        e.start_agent().await;
    }
    let via = if agent { ", via vmagent" } else { "" };
    let name = format!("{switch:?} ({servers:?}, {labels:?}, {protocol:?}{via})");
    let s = match switch {
        Switch::Startup => start_up(&mut e).await,
        Switch::Join => join(&mut e).await,
        _ => switch_over(&mut e, switch).await,
    };
    eprintln!(
        "{name}: b promoted {:.1}s after the switch",
        (s.promoted_at - s.switch_at) as f64 / 1000.0,
    );

    // The handover happens at b's first write once promoted; the admin API can show the
    // promotion a moment before the log lines are written. At start-up there is none
    // when nothing of a was forwarded before b took over (b wrote first, or a's first
    // write was still on its way).
    // Through the agent no query parameter gives a weight: every source has weight 0.
    let election_line = match agent {
        true => switch.election_line().replace("(5)", "(0)"),
        false => switch.election_line().to_owned(),
    };
    if switch != Switch::Startup {
        let handover = wait_until(
            "the election and handover log lines",
            Duration::from_secs(10),
            || async {
                let log = e.node.log();
                let line = log
                    .lines()
                    .find(|l| l.contains("handover : 'b' takes over from 'a'"))?
                    .to_owned();
                let lost = switch != Switch::Kill || log.contains("lost source : 'a'");
                (lost && log.contains(&election_line)).then_some(line)
            },
        )
        .await;
        eprintln!("{name}: {handover}");
        check_history(&e, &name, switch).await;
    }

    // Samples become visible in VM's export about a second after they are written, not
    // necessarily in order: the window ends 2 s before the newest sample read.
    let to = s.promoted_at + ms(AFTER);
    let samples = e.wait_vm_reaches(to + 2_000, Duration::from_secs(20)).await;
    // At start-up and when b joins a lone a, the window opens at the first stored sample.
    let from = s.from.unwrap_or_else(|| samples.first().map_or(0, |x| x.0));
    let handovers: Vec<String> = e
        .node
        .log()
        .lines()
        .filter(|l| l.contains("handover : "))
        .map(str::to_owned)
        .collect();
    eprintln!("{name}: {handovers:#?}");
    let expected = match switch {
        Switch::Startup => 0..=1,
        _ => 1..=1,
    };
    assert!(
        expected.contains(&handovers.len())
            && handovers
                .iter()
                .all(|l| l.contains("handover : 'b' takes over from 'a'")),
        "{name}: {expected:?} handover(s) from a to b expected: {handovers:#?}"
    );
    assert_eq!(
        e.metric("highlander_handover_total").await,
        handovers.len() as f64,
        "{name}: highlander_handover_total"
    );
    if switch == Switch::Kill {
        // b was promoted only at the expiry: what it scraped since a's death was held and
        // must have been backfilled.
        assert!(
            e.metric("highlander_handover_backfilled_samples_total")
                .await
                > 0.0,
            "{name}: nothing backfilled"
        );
    }

    // a's own samples: what it scraped up to `a_known` (its death, or the window's end).
    let (from_a, a_known) = match s.a_snapshot {
        Some(a) => (a, s.switch_at),
        None => (e.replica_samples("a", from, to).await, to),
    };
    check_switch(
        &e,
        &name,
        switch != Switch::Startup,
        &samples,
        (from, to),
        s.switch_at,
        (&from_a, a_known),
    )
    .await;

    let (_, series) = e.vm_samples().await.expect("VM answers");
    match labels {
        Labels::Stripped => {
            assert_eq!(
                series.len(),
                1,
                "{name}: one merged series expected: {series:?}"
            );
            let labels = series.iter().next().expect("one series");
            assert!(
                !labels.contains("__replica__"),
                "{name}: replica label reached storage: {labels}"
            );
        }
        Labels::Kept => {
            // One series per replica that was forwarded, each with its own label.
            assert!(
                (1..=2).contains(&series.len())
                    && series.iter().all(|l| l.contains(r#""replica":""#)),
                "{name}: one series per replica expected: {series:?}"
            );
        }
    }
    check_protocol(&e, &name, protocol, switch).await;
    if agent {
        // The agent batched both replicas into shared requests, which were split.
        let split = e.metric("highlander_ingest_split_requests_total").await;
        let parts = e.metric("highlander_ingest_split_parts_total").await;
        eprintln!("{name}: {split} requests split into {parts} parts");
        assert!(
            split > 0.0,
            "{name}: the agent's requests mixed both replicas"
        );
    }
    eprintln!(
        "{name}: scenario done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    e.target_handle.stop(false).await;
}

/// The switch as `GET /api/v1/groups/default/history` and `highlander groups --history`
/// show it: from a to b, the reason, and the handover's figures.
async fn check_history(e: &E2e, name: &str, switch: Switch) {
    let reason = match switch {
        Switch::Kill => "expiry",
        Switch::Weight | Switch::Join | Switch::Startup => "bigger_weight",
        Switch::Admin => "operator",
    };
    let history = wait_until(
        "the switch in the history",
        Duration::from_secs(10),
        || async {
            let h = e.node.admin_json("/api/v1/groups/default/history").await;
            h["switches"][0]["handover"].is_object().then_some(h)
        },
    )
    .await;
    let s = &history["switches"][0];
    assert_eq!(
        (s["from"].as_str(), s["to"].as_str(), s["reason"].as_str()),
        (Some("a"), Some("b"), Some(reason)),
        "{name}: the newest switch: {history}"
    );
    let handover = &s["handover"];
    if switch == Switch::Kill {
        assert!(
            handover["backfilled"].as_u64() > Some(0),
            "{name}: {history}"
        );
        assert!(s["silent_ms"].as_u64() >= Some(3_000), "{name}: {history}");
    }
    // The gap in data time is about one scrape interval (1 s): no hole.
    assert!(
        handover["gap_ms"].as_u64().is_some_and(|g| g <= 1_600),
        "{name}: the gap at the switch: {history}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(["groups", "--history", "--admin"])
        .arg(format!("http://{}", e.node.admin))
        .output()
        .expect("run the CLI");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{name}: groups --history: {out:?}");
    let row = text
        .lines()
        .find(|l| l.contains(" a ") && l.contains(" b "))
        .unwrap_or_else(|| panic!("{name}: no a -> b row in groups --history:\n{text}"));
    let words = reason.replace('_', " ");
    assert!(row.contains(&words), "{name}: {row}");
    eprintln!("{name}: groups --history:\n{text}");
}

/// When and how the promoted source changed.
struct Switched {
    /// Start of the window checked; `None`: the first stored sample.
    from: Option<i64>,
    /// When the switch was triggered.
    switch_at: i64,
    /// When the admin API showed `b` promoted.
    promoted_at: i64,
    /// a's own samples, read just before it was killed.
    a_snapshot: Option<Vec<i64>>,
}

/// `a` promoted, `b` a standby for a few writes, then the switch.
async fn switch_over(e: &mut E2e, switch: Switch) -> Switched {
    // a first, so that it is promoted as the first writer; then b, a standby.
    e.start_replica("a", 10).await;
    e.wait_promoted("a", Duration::from_secs(20)).await;
    e.start_replica("b", 5).await;
    e.wait_dropped("b", STANDBY_WRITES, Duration::from_secs(30))
        .await;
    assert_eq!(
        e.metric("highlander_handover_total").await,
        0.0,
        "no handover before the switch"
    );

    // The switch. a's own samples are read just before it is killed (its API dies with it).
    let from = now_ms() - ms(BEFORE);
    let a_snapshot = match switch {
        Switch::Kill => Some(e.replica_samples("a", from, now_ms()).await),
        _ => None,
    };
    if switch == Switch::Kill && e.protocol == Protocol::V2 {
        e.assert_no_failed_sends("a").await;
    }
    let switch_at = now_ms();
    match switch {
        Switch::Kill => e.replica_mut("a").proc.kill9(),
        Switch::Weight => e.reweight("b", 20).await,
        Switch::Admin => admin_failover(e).await,
        Switch::Startup | Switch::Join => unreachable!("no switch of their own"),
    }
    e.wait_promoted("b", HEALTH_EXPIRY + Duration::from_secs(12))
        .await;
    Switched {
        from: Some(from),
        switch_at,
        promoted_at: now_ms(),
        a_snapshot,
    }
}

/// `a` (weight 5) runs alone and is promoted; then `b` (weight 10) starts.
async fn join(e: &mut E2e) -> Switched {
    e.start_replica("a", 5).await;
    e.wait_promoted("a", Duration::from_secs(20)).await;
    // a forwards a few scrapes alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let switch_at = now_ms();
    e.start_replica("b", 10).await;
    e.wait_promoted("b", Duration::from_secs(30)).await;
    // a's data may start less than BEFORE ahead of the switch: the window opens at the
    // first stored sample.
    Switched {
        from: None,
        switch_at,
        promoted_at: now_ms(),
        a_snapshot: None,
    }
}

/// Both replicas start at once: `a` (weight 5) and `b` (weight 10).
async fn start_up(e: &mut E2e) -> Switched {
    let switch_at = now_ms();
    e.spawn_replica("a", 5);
    e.spawn_replica("b", 10);
    e.wait_replica_ready("a").await;
    e.wait_replica_ready("b").await;
    e.wait_promoted("b", Duration::from_secs(30)).await;
    Switched {
        from: None,
        switch_at,
        promoted_at: now_ms(),
        a_snapshot: None,
    }
}

/// The manual failover, behind the admin token: refused without it, done with it.
async fn admin_failover(e: &E2e) {
    let url = format!("http://{}/api/v1/groups/default/failover", e.node.admin);
    let post = || {
        e.client
            .post(&url)
            .header("Content-Type", "application/json")
            .body("{}")
    };
    let r = post().send().await.expect("admin reachable");
    assert_eq!(r.status().as_u16(), 401, "failover without the token");
    let r = post()
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin reachable");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "failover: {text}");
    let view: serde_json::Value = serde_json::from_str(&text).expect("failover JSON");
    assert_eq!(view["promoted"]["source"], "b", "failover: {view}");
}

/// Every write came in `protocol`, and no live replica counted a failed send: with 2.0 the
/// standby's deduplicated writes must be answered as written.
async fn check_protocol(e: &E2e, name: &str, protocol: Protocol, switch: Switch) {
    let (sent, other) = match protocol {
        Protocol::V1 => ("1.0", "2.0"),
        Protocol::V2 => ("2.0", "1.0"),
    };
    let count = |p: &str| format!("highlander_ingest_protocol_requests_total{{protocol=\"{p}\"}}");
    assert!(
        e.metric(&count(sent)).await > 0.0,
        "{name}: no {sent} write"
    );
    assert_eq!(e.metric(&count(other)).await, 0.0, "{name}: {other} writes");
    if protocol == Protocol::V1 {
        return;
    }
    for r in &e.replicas {
        // A killed `a` was checked just before its death.
        if !(switch == Switch::Kill && r.name == "a") {
            e.assert_no_failed_sends(&r.name).await;
        }
    }
}

/// The checks of one switch on VictoriaMetrics' raw samples in `[from, to]`.
async fn check_switch(
    e: &E2e,
    name: &str,
    a_required: bool,
    samples: &[(i64, f64)],
    (from, to): (i64, i64),
    switch_at: i64,
    (from_a, a_known): (&[i64], i64),
) {
    let window: Vec<(i64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| (from..=to).contains(t))
        .collect();
    let ts: Vec<i64> = window.iter().map(|s| s.0).collect();
    let from_b = e.replica_samples("b", from, to).await;
    let b_set: BTreeSet<i64> = from_b.iter().copied().collect();
    let a_set: BTreeSet<i64> = from_a.iter().copied().collect();
    let r = |ts: &[i64]| rel(ts, switch_at);
    // Everything the failure messages need: the samples, each replica's, highlander's lines.
    let context = || {
        let log = e.node.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("source : ") || l.contains("handover") || l.contains("admin:"))
            .collect();
        format!(
            "\n(times in s relative to the switch)\nVM: {}\nb:  {}\na:  {}\nhighlander:\n{}",
            r(&ts),
            r(&from_b),
            r(from_a),
            lines.join("\n")
        )
    };

    let expected = ((to - from) / ms(SCRAPE_INTERVAL)) as usize;
    assert!(
        ts.len() + 2 >= expected,
        "{name}: {} samples in {} ms, expected about {expected}{}",
        ts.len(),
        to - from,
        context()
    );

    // Who scraped each sample. a's TSDB is known up to `a_known`: a later sample that b
    // did not scrape is a's (scraped between the snapshot and the kill).
    let origins: Vec<Origin> = ts
        .iter()
        .map(|t| {
            let in_b = b_set.contains(t);
            let in_a = a_set.contains(t) || (*t > a_known && !in_b);
            match (in_a, in_b) {
                (true, false) => Origin::A,
                (false, true) => Origin::B,
                (true, true) => Origin::Both,
                (false, false) => panic!(
                    "{name}: VM holds a sample at {} neither replica scraped{}",
                    r(&[*t]),
                    context()
                ),
            }
        })
        .collect();
    // a's samples, then b's: no interleaving.
    let first_b = origins
        .iter()
        .position(|o| *o == Origin::B)
        .unwrap_or_else(|| panic!("{name}: no sample of b in VM{}", context()));
    let last_a = origins.iter().rposition(|o| *o == Origin::A);
    assert!(
        last_a.is_some_and(|i| i < first_b) || (last_a.is_none() && !a_required),
        "{name}: a's and b's samples interleave (or none of a's){}",
        context()
    );
    let b_start = ts[first_b];
    // Every sample b scraped after its first stored one is stored: nothing of the held or
    // live writes was lost.
    let missing: Vec<i64> = from_b
        .iter()
        .copied()
        .filter(|t| *t > b_start && !ts.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: samples of b after the switch missing in VM: {}{}",
        r(&missing),
        context()
    );
    // Up to its last stored sample, VM holds exactly what a scraped.
    if let Some(last_a) = last_a {
        let a_before: Vec<i64> = from_a
            .iter()
            .copied()
            .filter(|t| *t <= ts[last_a])
            .collect();
        assert_eq!(
            ts[..=last_a],
            a_before,
            "{name}: VM should hold exactly a's samples before the switch{}",
            context()
        );
    }
    // At start-up b may have written first: then the "switch" is its first sample.
    let a_end = last_a.map_or(b_start, |i| ts[i]);

    // The bounds.
    let all = gaps(&ts);
    let largest = all.iter().copied().max_by_key(|g| g.2).expect("gaps");
    let smallest = all.iter().copied().min_by_key(|g| g.2).expect("gaps");
    // The switch pair is guaranteed more than half the old source's measured step apart; a
    // scrape late by a few ms can make that step (and so the bound) a little under 1 s.
    let a_step = last_a
        .and_then(|i| Some(ts[i] - ts[i.checked_sub(1)?]))
        .unwrap_or(ms(SCRAPE_INTERVAL));
    let switch_floor = ms(MIN_SPACING).min(a_step / 2 + 1);
    eprintln!(
        "{name}: {} samples in the window; a's last at {}, b's first at {} ({} ms later); \
         largest interval {} ms (at {}), smallest {} ms (at {})",
        ts.len(),
        r(&[a_end]),
        r(&[b_start]),
        b_start - a_end,
        largest.2,
        r(&[largest.0]),
        smallest.2,
        r(&[smallest.0]),
    );
    let near = |v: &[i64]| {
        let v: Vec<i64> = v
            .iter()
            .copied()
            .filter(|t| (a_end - 3_000..=b_start + 3_000).contains(t))
            .collect();
        r(&v)
    };
    eprintln!(
        "{name}: around the switch (s after it)\n  VM: {}\n  a:  {}\n  b:  {}",
        near(&ts),
        near(from_a),
        near(&from_b)
    );
    assert!(
        largest.2 <= ms(MAX_GAP),
        "{name}: hole of {} ms from {} to {}{}",
        largest.2,
        r(&[largest.0]),
        r(&[largest.1]),
        context()
    );
    for (t0, t1, gap) in all {
        let floor = if (t0, t1) == (a_end, b_start) {
            switch_floor
        } else {
            ms(MIN_SPACING)
        };
        assert!(
            gap >= floor,
            "{name}: overlap: samples {gap} ms apart at {} and {} (< {floor} ms){}",
            r(&[t0]),
            r(&[t1]),
            context()
        );
    }
    let decreasing: Vec<String> = window
        .windows(2)
        .filter(|w| w[1].1 < w[0].1)
        .map(|w| {
            format!(
                "{} ({}) -> {} ({})",
                r(&[w[0].0]),
                w[0].1,
                r(&[w[1].0]),
                w[1].1
            )
        })
        .collect();
    assert!(
        decreasing.is_empty(),
        "{name}: the counter decreases: {decreasing:?}{}",
        context()
    );
}

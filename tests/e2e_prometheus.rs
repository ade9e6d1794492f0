//! End to end with the real servers: two Prometheus replicas scrape one in-test target and
//! remote_write through highlander into a real VictoriaMetrics single node. No mocks.
//!
//! What is checked, against the storage's raw samples and each replica's own TSDB:
//! - only the promoted replica reaches the storage (one sample per scrape, never both);
//! - killing the promoted replica fails over to the standby within the expiry, with neither
//!   a hole nor an overlap in the series (the switch itself, and the other ways to switch,
//!   are checked in detail by `e2e_failover.rs`);
//! - a storage outage loses nothing: highlander buffers, and after the storage is back the
//!   series has no hole across the outage. The node runs with `--max-in-flight 4`, so
//!   during the outage four sends retry at once and, once VictoriaMetrics is back, arrive
//!   in any order (VictoriaMetrics takes out-of-order samples); `e2e_failover.rs` and
//!   `e2e_cluster.rs` run the default, one request at a time. The writes that wait are
//!   stored zstd-compressed (`--buffer-compression auto`) and must arrive exactly as the
//!   replica scraped them.
//!
//! The binaries come from the Debian packages `prometheus` and `victoria-metrics`; when one
//! is missing the test fails and says so (it never skips silently). The harness is in
//! `common/e2e.rs`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::e2e::*;
use common::*;

/// Window over which "one replica only" is measured.
const STEADY_WINDOW: Duration = Duration::from_secs(10);
/// Largest hole allowed in the series at a failover: one and a half scrape intervals, plus
/// 100 ms for scrape jitter on a loaded machine. At the switch the standby's held samples
/// are backfilled from half a scrape step after the dead replica's last sample on, so the
/// storage sees at most one standby step plus half a step between two samples.
const MAX_FAILOVER_GAP: Duration = Duration::from_millis(1_600);
/// How long the storage stays down: long enough for several of highlander's retries.
const OUTAGE: Duration = Duration::from_secs(30);
/// Largest hole allowed across the outage: one scrape interval plus slack for one late
/// scrape. A lost write (one batch = one scrape here) would show as a 2 s hole only, so the
/// outage check also compares sample by sample with the replica's own TSDB.
const MAX_OUTAGE_GAP: Duration = Duration::from_millis(2_500);
/// Two samples closer than this come from two replicas (scrapes are 1 s apart).
const MIN_SPACING: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_pair_through_highlander_into_victoria_metrics() {
    let mut e = E2e::start(&["--max-in-flight", "4"]).await;
    let test_start = e.started_ms;
    let client = e.client.clone();

    // 1. The replicas: "a" first, so it is promoted as the first writer (deterministic), then
    // "b" with a smaller weight, which stays standby.
    e.start_replica("a", 10).await;
    e.wait_promoted("a", Duration::from_secs(20)).await;
    e.start_replica("b", 5).await;

    // 2a. Series arrive, merged into one: __replica__ was stripped before storage.
    wait_until(
        "b's writes to be dropped",
        Duration::from_secs(20),
        || async {
            let g = e.group().await;
            (g["sources"]["b"]["requests_dropped"].as_u64() > Some(0)).then_some(())
        },
    )
    .await;
    let (_, series) = wait_until(
        "series in VictoriaMetrics",
        Duration::from_secs(30),
        || async { e.vm_samples().await.filter(|(s, _)| !s.is_empty()) },
    )
    .await;
    assert_eq!(series.len(), 1, "one merged series expected: {series:?}");
    let labels = series.iter().next().expect("one series");
    assert!(
        !labels.contains("__replica__"),
        "replica label reached storage: {labels}"
    );
    assert!(
        labels.contains("\"job\":\"e2e\""),
        "scrape labels kept: {labels}"
    );
    assert!(e
        .node
        .log()
        .contains("new source : 'a' (no current promoted source) (10)"));

    // 2b. Steady state: exactly replica a's samples, one per scrape.
    let window_start = now_ms();
    tokio::time::sleep(STEADY_WINDOW).await;
    let window_end = now_ms();
    let samples = e.wait_vm_reaches(window_end, Duration::from_secs(15)).await;
    let got = in_window(&samples, window_start, window_end);
    let from_a = e.replica_samples("a", window_start, window_end).await;
    let from_b = e.replica_samples("b", window_start, window_end).await;
    let close: Vec<_> = gaps(&got)
        .into_iter()
        .filter(|g| g.2 < ms(MIN_SPACING))
        .collect();
    assert!(
        close.is_empty(),
        "two replicas forwarded: samples closer than {MIN_SPACING:?}: {close:?}\nVM: {}",
        rel(&got, test_start)
    );
    let max_count = (STEADY_WINDOW.as_secs_f64() / SCRAPE_INTERVAL.as_secs_f64() * 1.3) as usize;
    assert!(
        got.len() <= max_count && got.len() >= 5,
        "{} samples in {STEADY_WINDOW:?}, expected about one per scrape: {}",
        got.len(),
        rel(&got, test_start)
    );
    assert_eq!(
        got,
        from_a,
        "VM should hold exactly replica a's samples\nVM: {}\na:  {}\nb:  {}",
        rel(&got, test_start),
        rel(&from_a, test_start),
        rel(&from_b, test_start)
    );
    let g = e.group().await;
    assert_eq!(g["promoted"]["source"], "a", "{g}");
    assert!(
        g["sources"]["b"]["requests_dropped"]
            .as_u64()
            .expect("dropped")
            > 0,
        "{g}"
    );
    assert_eq!(g["sources"]["a"]["requests_dropped"], 0, "{g}");

    // 2c. Failover: the promoted replica dies; b takes over within the expiry, and its held
    // samples fill the time since a's last one (no hole, no overlap).
    let killed_at = now_ms();
    e.replica_mut("a").proc.kill9();
    let g = e
        .wait_promoted("b", HEALTH_EXPIRY + Duration::from_secs(12))
        .await;
    let promoted_at = now_ms();
    eprintln!(
        "failover: b promoted {:.1}s after a was killed: {g}",
        (promoted_at - killed_at) as f64 / 1000.0
    );
    // The admin API can show the promotion a moment before its log line is written.
    wait_until("the failover log lines", Duration::from_secs(5), || async {
        let log = e.node.log();
        (log.contains("lost source : 'a'")
            && log.contains("new source : 'b' (no current promoted source) (5)")
            && log.contains("handover : 'b' takes over from 'a'"))
        .then_some(())
    })
    .await;
    let samples = e
        .wait_vm_reaches(promoted_at + 3_000, Duration::from_secs(20))
        .await;
    let around = in_window(&samples, killed_at - 5_000, now_ms());
    let worst = gaps(&around).into_iter().max_by_key(|g| g.2).expect("gaps");
    eprintln!(
        "failover: largest gap {} ms ({:.3}s .. {:.3}s after start)",
        worst.2,
        (worst.0 - test_start) as f64 / 1000.0,
        (worst.1 - test_start) as f64 / 1000.0
    );
    assert!(
        worst.2 <= ms(MAX_FAILOVER_GAP),
        "failover gap {} ms > {MAX_FAILOVER_GAP:?}: {}",
        worst.2,
        rel(&around, test_start)
    );
    let close: Vec<_> = gaps(&around)
        .into_iter()
        .filter(|g| g.2 < ms(MIN_SPACING))
        .collect();
    assert!(close.is_empty(), "overlap at the failover: {close:?}");
    // After the kill, everything stored is b's; everything b scraped from one interval after
    // the kill on (a's last sample was before the kill; b's are kept from half a step after
    // it) is stored, although b was promoted only at the expiry.
    let last = around.last().copied().expect("samples");
    let from_b = e.replica_samples("b", killed_at, last).await;
    let after_kill: Vec<i64> = around.iter().copied().filter(|t| *t > killed_at).collect();
    let b_set: BTreeSet<i64> = from_b.iter().copied().collect();
    let vm_set: BTreeSet<i64> = around.iter().copied().collect();
    assert!(
        after_kill.iter().all(|t| b_set.contains(t)),
        "VM holds samples b never scraped after the kill\nVM: {}\nb:  {}",
        rel(&after_kill, test_start),
        rel(&from_b, test_start)
    );
    let missing: Vec<i64> = from_b
        .iter()
        .copied()
        .filter(|t| *t > killed_at + ms(SCRAPE_INTERVAL) && !vm_set.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "b's samples after the kill missing in VM: {}",
        rel(&missing, test_start)
    );

    // 2d. Storage outage: VM stops gracefully (keeping what it acknowledged), stays down,
    // comes back on the same port and data dir; highlander's buffer fills the hole.
    let stopped_at = now_ms();
    let status = e.vm.terminate(Duration::from_secs(30)).await;
    eprintln!("victoria-metrics stopped with {status}");
    wait_until(
        "highlander to buffer during the outage",
        Duration::from_secs(10),
        || async {
            let q = e.node.admin_json("/api/v1/queue").await;
            let lag = q["endpoints"][0]["lag_records"].as_u64().unwrap_or(0);
            (lag > 0).then_some(())
        },
    )
    .await;
    // Writes keep arriving once a second: the window fills with retrying sends.
    wait_until("4 requests in flight during the outage", OUTAGE, || async {
        let q = e.node.admin_json("/api/v1/queue").await;
        (q["endpoints"][0]["in_flight"] == 4).then_some(())
    })
    .await;
    tokio::time::sleep(
        OUTAGE.saturating_sub(Duration::from_millis((now_ms() - stopped_at).max(0) as u64)),
    )
    .await;
    let q = e.node.admin_json("/api/v1/queue").await;
    eprintln!("queue during the outage: {q}");
    // What waits for the storage is stored zstd-compressed, and expands to what was sent.
    assert_eq!(e.metric("highlander_wal_compacting").await, 1.0, "{q}");
    assert!(e.metric("highlander_wal_compact_records_total").await > 0.0);
    let restarted_at = now_ms();
    e.vm.start();
    let health = format!("{}/health", e.vm_url);
    e.vm.wait_http_ok(&client, &health, Duration::from_secs(30))
        .await;
    // highlander's retry backoff is capped at 5 s (full jitter): 60 s is ample.
    e.node.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(e.metric("highlander_wal_compacting").await, 0.0);
    let drained_at = now_ms();
    eprintln!(
        "outage: drained {:.1}s after VM came back",
        (drained_at - restarted_at) as f64 / 1000.0
    );
    let (from, to) = (stopped_at - 3_000, restarted_at + 3_000);
    // Read VM only once it holds samples past the window's end: the last second of the
    // window may still be in flight (Prometheus sends in 1 s batches) when the queue drains.
    let samples = e
        .wait_vm_reaches(drained_at.max(to + 2_000), Duration::from_secs(20))
        .await;
    let across = in_window(&samples, from, to);
    let worst = gaps(&across).into_iter().max_by_key(|g| g.2).expect("gaps");
    assert!(
        worst.2 <= ms(MAX_OUTAGE_GAP),
        "hole of {} ms across the outage ({:.3}s .. {:.3}s after start)\nVM: {}",
        worst.2,
        (worst.0 - test_start) as f64 / 1000.0,
        (worst.1 - test_start) as f64 / 1000.0,
        rel(&across, test_start)
    );
    let from_b = e.replica_samples("b", from, to).await;
    assert_eq!(
        across,
        from_b,
        "VM should hold exactly what b scraped across the outage\nVM: {}\nb:  {}",
        rel(&across, test_start),
        rel(&from_b, test_start)
    );
    let (_, series) = e.vm_samples().await.expect("VM answers");
    assert_eq!(series.len(), 1, "still one merged series: {series:?}");
    eprintln!(
        "e2e done in {:.1}s",
        (now_ms() - test_start) as f64 / 1000.0
    );
    e.target_handle.stop(false).await;
}

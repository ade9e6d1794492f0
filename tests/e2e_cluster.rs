//! The cluster end to end with the real servers (issue 4): three highlander processes on
//! loopback form a raft cluster in front of a real VictoriaMetrics; two real Prometheus
//! replicas (`a` weight 10, `b` weight 5, `__replica__` external label) scrape the same
//! in-test counter every second and each remote_write to EVERY node (three entries).
//!
//! 1. Steady state: VM holds one merged series (no `__replica__`) at one sample per scrape
//!    (not both replicas'), every node shows `a` promoted, only the raft leader ships (the
//!    followers' endpoints are `standby`).
//! 2. SIGKILL of the raft leader: a new leader within seconds, the same committed promoted
//!    source (same `since`), shipping resumes; in VM's settled series across the change no
//!    hole longer than [`LEADER_CHANGE_MAX_GAP`], a counter that never decreases (re-sent
//!    duplicates are allowed — at least once — and must be identical), and every sample `a`
//!    scraped in the window arrives.
//! 3. With two nodes left, SIGKILL of the promoted Prometheus `a`: `b` is promoted on both
//!    survivors within the expiry plus a few seconds, and the gapless handover holds in
//!    cluster mode too: no hole longer than [`SWITCH_MAX_GAP`], every sample `b` scraped
//!    after its first stored one arrives.
//! 4. The killed node restarts from its data dir and rejoins as a follower (and applies the
//!    promotion of `b` committed while it was down); it never ships, even though its
//!    persisted vote may make it believe for a moment that it still leads.
//! 5. A third replica `c` (weight 1) joins as a standby; the raft leader and the promoted
//!    Prometheus `b` are SIGKILLed within milliseconds of each other: a new leader within
//!    seconds, `c` promoted exactly once (the same committed promotion and one log line on
//!    both survivors, one switch's worth of epochs), and the handover still gapless: no
//!    hole longer than [`LEADER_AND_SWITCH_MAX_GAP`], no decreasing counter, every sample
//!    `c` scraped after its first stored one arrives.
//!
//! The binaries come from the Debian packages `prometheus` and `victoria-metrics`; when one
//! is missing the test fails and says so (it never skips). Every process is SIGKILLed when
//! the scenario drops, and on a panic every log is printed first.

mod common;

use std::time::{Duration, Instant};

use common::cluster_e2e::*;
use common::e2e::*;
use common::series::{near, Window};
use common::*;

/// A new leader must be seen within this long of the SIGKILL of the old one.
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(10);
/// Largest hole allowed in the settled series across a leader change.
const LEADER_CHANGE_MAX_GAP: Duration = Duration::from_millis(2_500);
/// Largest hole allowed across the replica switch: 1.5 scrape intervals plus 100 ms of
/// scrape jitter, the single-node handover bound (see `e2e_failover.rs`).
const SWITCH_MAX_GAP: Duration = Duration::from_millis(1_600);
/// Largest hole allowed when the raft leader and the promoted replica `b` die together.
/// The leader change does not widen the seam: every node buffers the promoted replica's
/// writes and runs the handover itself when it applies the new promotion, so the new
/// leader's buffer holds `b` up to its last write and `c`'s held writes from there on. `c`
/// is promoted one expiry after the new leader took over (a new leader counts the committed
/// promoted source as seen when it takes over): election (≤ [`NEW_LEADER_WITHIN`], 2–4 s
/// here) + expiry (3 s) + a tick, checked against [`PROMOTION_SLACK`]. That is within
/// [`HANDOVER_WINDOW`] (20 s) of `b`'s last sample, so `c`'s ring still holds its samples
/// from there on and the single-switch bound applies.
const LEADER_AND_SWITCH_MAX_GAP: Duration = SWITCH_MAX_GAP;
/// The steady-state window measured.
const STEADY_WINDOW: Duration = Duration::from_secs(8);
/// Bound on "b is promoted after a died": the expiry plus a few seconds.
const PROMOTION_SLACK: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_three_with_prometheus_pair_and_victoria_metrics() {
    let started = Instant::now();
    let mut s = Scenario::start().await;
    let all = s.live();
    eprintln!("cluster formed in {:.1}s", started.elapsed().as_secs_f64());

    // ---- 1. Steady state ------------------------------------------------------------
    // a first, so that it is promoted as the first writer (its first writes get 503 until
    // the leader commits the promotion; Prometheus retries), then b, a standby.
    s.start_prometheus("a", 10).await;
    let promoted_a = s.wait_promoted(&all, "a", Duration::from_secs(30)).await;
    eprintln!(
        "a promoted on every node at {:.1}s",
        started.elapsed().as_secs_f64()
    );
    s.start_prometheus("b", 5).await;
    wait_until(
        "b's writes dropped as standby on every node",
        Duration::from_secs(30),
        || async {
            for i in &all {
                let g = s.group(*i).await?;
                if g["sources"]["b"]["requests_dropped"].as_u64() < Some(3) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    eprintln!(
        "b standby on every node at {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let steady_from = now_ms();
    let steady_to = steady_from + ms(STEADY_WINDOW);
    s.wait_vm_reaches(steady_to + 2_000, Duration::from_secs(30))
        .await;
    let (raw, series) = s.vm().await;
    assert_eq!(series.len(), 1, "one merged series expected: {series:?}");
    let labels = series.iter().next().expect("one series");
    assert!(
        !labels.contains("__replica__"),
        "replica label reached storage: {labels}"
    );
    let steady = Window::of(&raw, steady_from, steady_to);
    let expected = (ms(STEADY_WINDOW) / ms(SCRAPE_INTERVAL)) as usize;
    let smallest = steady.smallest_gap();
    eprintln!(
        "steady state: {} samples in {} s ({} duplicates), intervals {} ms .. {} ms",
        steady.samples.len(),
        STEADY_WINDOW.as_secs(),
        steady.duplicates,
        smallest.2,
        steady.largest_gap().2
    );
    assert!(
        (expected - 2..=expected + 1).contains(&steady.samples.len())
            && smallest.2 >= ms(MIN_SPACING),
        "steady state: one sample per scrape expected ({expected} in {STEADY_WINDOW:?}, none \
         closer than {MIN_SPACING:?}), VM holds (s): {}",
        rel(&steady.ts(), steady_from)
    );
    let leader = s.leader(&all, Duration::from_secs(10)).await;
    for i in &all {
        let g = s.group(*i).await.expect("groups");
        assert_eq!(
            g["promoted"]["source"],
            "a",
            "node {}: a promoted: {g}",
            i + 1
        );
    }
    s.check_only_leader_ships(leader).await;
    eprintln!(
        "steady state checked at {:.1}s: leader node {}",
        started.elapsed().as_secs_f64(),
        leader + 1
    );

    // ---- 2. SIGKILL of the raft leader ----------------------------------------------
    let since_before = promoted_a[0]["promoted"]["since_ms"].clone();
    let leader_marks = s.marks();
    let kill_at = now_ms();
    s.nodes[leader].kill9();
    s.up[leader] = false;
    let survivors = s.live();
    let new_leader = s.leader(&survivors, NEW_LEADER_WITHIN).await;
    let leader_at = now_ms();
    eprintln!(
        "leader change: node {} killed, node {} leads {} ms later",
        leader + 1,
        new_leader + 1,
        leader_at - kill_at
    );
    let groups = s
        .wait_promoted(&survivors, "a", Duration::from_secs(5))
        .await;
    for g in &groups {
        assert_eq!(
            g["promoted"]["since_ms"], since_before,
            "the committed promotion of a must be kept, not redone: {g}"
        );
    }
    // Shipping resumes from the new leader; its gate opens once its leadership is
    // confirmed.
    wait_until(
        "the new leader to ship",
        Duration::from_secs(10),
        || async { (s.endpoint_state(new_leader).await != "standby").then_some(()) },
    )
    .await;
    s.check_only_leader_ships(new_leader).await;
    let leader_from = kill_at - ms(BEFORE);
    let leader_to = leader_at + ms(AFTER);
    s.wait_vm_reaches(leader_to + 2_000, Duration::from_secs(30))
        .await;
    // Every sample a scraped in the window arrives (at least once).
    let a_scraped = s.scraped("a", leader_from, leader_to).await;
    let (raw, missing) = s.wait_vm_holds(&a_scraped, Duration::from_secs(15)).await;
    let w = Window::of(&raw, leader_from, leader_to);
    let lg = w.largest_gap();
    let leader_context = || {
        format!(
            "\n(times in s relative to the SIGKILL of the leader; new leader seen at {})\
             \nVM: {}\na:  {}\nhighlander:\n{}",
            rel(&[leader_at], kill_at),
            rel(&w.ts(), kill_at),
            rel(&a_scraped, kill_at),
            s.lines_since(&survivors, &leader_marks, 40)
        )
    };
    eprintln!(
        "leader change: {} samples in the window ({} duplicates re-sent), largest interval \
         {} ms (from {} to {} s after the kill), smallest {} ms",
        w.samples.len(),
        w.duplicates,
        lg.2,
        rel(&[lg.0], kill_at),
        rel(&[lg.1], kill_at),
        w.smallest_gap().2
    );
    eprintln!(
        "leader change: VM around the kill (s): {}",
        near(&w.ts(), kill_at, leader_at, 3_000, kill_at)
    );
    assert!(
        missing.is_empty(),
        "leader change: samples a scraped are missing in VM: {}{}",
        rel(&missing, kill_at),
        leader_context()
    );
    assert!(
        w.conflicts.is_empty(),
        "leader change: duplicates with different values: {:?}{}",
        w.conflicts,
        leader_context()
    );
    let holes = w.holes(ms(LEADER_CHANGE_MAX_GAP), kill_at);
    assert!(
        holes.is_empty(),
        "leader change: holes longer than {LEADER_CHANGE_MAX_GAP:?}: {holes:?}{}",
        leader_context()
    );
    let decreasing = w.decreasing(kill_at);
    assert!(
        decreasing.is_empty(),
        "leader change: the counter decreases: {decreasing:?}{}",
        leader_context()
    );
    assert!(
        w.smallest_gap().2 >= ms(MIN_SPACING),
        "leader change: distinct samples closer than {MIN_SPACING:?} (both replicas \
         shipped){}",
        leader_context()
    );
    eprintln!(
        "leader change checked at {:.1}s; highlander since the kill:\n{}",
        started.elapsed().as_secs_f64(),
        s.lines_since(&survivors, &leader_marks, 30)
    );

    // ---- 3. SIGKILL of the promoted Prometheus, two nodes left ------------------------
    let a_own = s
        .scraped("a", now_ms() - ms(BEFORE) - 5_000, now_ms())
        .await;
    let epoch_before_switch = s.epoch(survivors[0]).await;
    let switch_marks = s.marks();
    let switch_at = now_ms();
    let a_proc = &mut s.proms.iter_mut().find(|p| p.name == "a").expect("a").proc;
    a_proc.kill9();
    s.wait_promoted(&survivors, "b", HEALTH_EXPIRY + PROMOTION_SLACK)
        .await;
    let promoted_at = now_ms();
    eprintln!(
        "replica switch: b promoted on both survivors {} ms after a's SIGKILL",
        promoted_at - switch_at
    );
    let switch_leader = s.leader(&survivors, Duration::from_secs(10)).await;
    let handover = wait_until(
        "the handover log line on the leader",
        Duration::from_secs(10),
        || async {
            s.key_lines(switch_leader)
                .into_iter()
                .find(|l| l.contains("handover : 'b' takes over from 'a'"))
        },
    )
    .await;
    eprintln!(
        "replica switch (leader node {}): {handover}",
        switch_leader + 1
    );
    s.check_switch(Switch {
        what: "replica switch",
        old_own: &a_own,
        new: "b",
        at: switch_at,
        promoted_at,
        nodes: &survivors,
        marks: &switch_marks,
        max_gap: SWITCH_MAX_GAP,
        unseen_last_batch: None,
    })
    .await;
    // One promotion (and the demotion it implies) per switch: phase 5 expects the same.
    let epoch_step = s.epoch(survivors[0]).await - epoch_before_switch;
    eprintln!(
        "replica switch checked at {:.1}s (epoch +{epoch_step}); highlander since a's kill:\n{}",
        started.elapsed().as_secs_f64(),
        s.lines_since(&survivors, &switch_marks, 30)
    );

    // ---- 4. The killed node rejoins as a follower -------------------------------------
    let restart_marks = s.marks();
    s.nodes[leader].restart().await;
    s.up[leader] = true;
    wait_until(
        "the killed node to rejoin as follower",
        Duration::from_secs(30),
        || async { (s.role(leader).await == "follower").then_some(()) },
    )
    .await;
    s.wait_promoted(&[leader], "b", Duration::from_secs(15))
        .await;
    // Its committed vote from before the SIGKILL may make it believe, for a moment, that it
    // still leads; without a fresh quorum acknowledgement it must never ship.
    let since_restart = s.lines_since(&[leader], &restart_marks, usize::MAX);
    assert!(
        !since_restart.contains("this node leads and ships"),
        "the restarted node shipped although another node leads:\n{since_restart}"
    );
    let current = s.leader(&s.live(), Duration::from_secs(10)).await;
    s.check_only_leader_ships(current).await;
    eprintln!(
        "node {} rejoined as follower at {:.1}s; its log since the restart:\n{}",
        leader + 1,
        started.elapsed().as_secs_f64(),
        s.lines_since(&[leader], &restart_marks, 30)
    );

    // ---- 5. SIGKILL of the raft leader and the promoted Prometheus at once ------------
    leader_and_replica_die_together(&mut s, current, epoch_step).await;
    eprintln!("scenario done in {:.1}s", started.elapsed().as_secs_f64());
    s.target_handle.stop(false).await;
}

/// Phase 5: a third replica `c` (weight 1) joins as a standby; then the raft leader and the
/// promoted replica `b` are SIGKILLed within a few milliseconds of each other. The two
/// surviving nodes must elect a leader, promote `c` exactly once (one committed change of
/// the same size as the switch of phase 3, one `new source` line per node, the same
/// promotion on both), and VM's series must go from `b` to `c` without a hole longer than
/// [`LEADER_AND_SWITCH_MAX_GAP`], without a decreasing counter, and with every sample `c`
/// scraped after its first stored one.
async fn leader_and_replica_die_together(s: &mut Scenario, leader: usize, epoch_step: u64) {
    let live = s.live();
    s.start_prometheus("c", 1).await;
    wait_until(
        "c's writes dropped as standby on every node",
        Duration::from_secs(30),
        || async {
            for i in &live {
                let g = s.group(*i).await?;
                if g["promoted"]["source"] != "b"
                    || g["sources"]["c"]["requests_dropped"].as_u64() < Some(3)
                {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let survivors: Vec<usize> = live.iter().copied().filter(|i| *i != leader).collect();
    let epoch_before = s.epoch(leader).await;
    let b_own = s
        .scraped("b", now_ms() - ms(BEFORE) - 5_000, now_ms())
        .await;
    let marks = s.marks();
    // Both SIGKILLs first, back to back; the processes are reaped afterwards.
    let b_index = s.proms.iter().position(|p| p.name == "b").expect("b");
    let kill_at = now_ms();
    let t = Instant::now();
    // SAFETY: kill(2) on our own, not yet reaped child's pid has no memory-safety concerns.
    let rc = unsafe { libc::kill(s.nodes[leader].pid() as i32, libc::SIGKILL) };
    assert_eq!(rc, 0, "SIGKILL of the leader");
    s.proms[b_index].proc.signal(libc::SIGKILL);
    let apart = t.elapsed();
    s.nodes[leader].kill9();
    s.proms[b_index].proc.kill9();
    s.up[leader] = false;
    assert!(
        apart < Duration::from_millis(20),
        "the two SIGKILLs were {apart:?} apart"
    );
    let new_leader = s.leader(&survivors, NEW_LEADER_WITHIN).await;
    let leader_at = now_ms();
    s.wait_promoted(
        &survivors,
        "c",
        NEW_LEADER_WITHIN + HEALTH_EXPIRY + PROMOTION_SLACK,
    )
    .await;
    let promoted_at = now_ms();
    // One expiry after the new leader took over, at the latest (plus slack), and early
    // enough for c's ring to reach back to b's last sample.
    let promotion_bound = (leader_at - kill_at) + ms(HEALTH_EXPIRY + PROMOTION_SLACK);
    assert!(
        promoted_at - kill_at <= promotion_bound
            && promoted_at - kill_at < ms(HANDOVER_WINDOW - SCRAPE_INTERVAL),
        "c promoted {} ms after the kills, the new leader {} ms after them",
        promoted_at - kill_at,
        leader_at - kill_at
    );
    eprintln!(
        "leader (node {}) and b SIGKILLed {} µs apart: node {} leads {} ms later, c promoted on \
         both survivors {} ms after the kills",
        leader + 1,
        apart.as_micros(),
        new_leader + 1,
        leader_at - kill_at,
        promoted_at - kill_at
    );
    s.check_switch(Switch {
        what: "leader and replica kill",
        old_own: &b_own,
        new: "c",
        at: kill_at,
        promoted_at,
        nodes: &survivors,
        marks: &marks,
        max_gap: LEADER_AND_SWITCH_MAX_GAP,
        // Prometheus sends at least every second (batch_send_deadline) and scrapes every
        // second: b's last batch holds at most one sample the new leader may never get.
        unseen_last_batch: Some(Duration::from_secs(1)),
    })
    .await;
    // Promoted exactly once, checked once the window above is settled (≥ AFTER later): the
    // same promotion on both survivors, one committed change, one log line each.
    let groups = s
        .wait_promoted(&survivors, "c", Duration::from_secs(5))
        .await;
    assert_eq!(
        groups[0]["promoted"], groups[1]["promoted"],
        "both survivors show the same promotion of c"
    );
    let controls = [
        s.control_group(survivors[0]).await,
        s.control_group(survivors[1]).await,
    ];
    assert_eq!(
        controls[0], controls[1],
        "both survivors hold the same committed state"
    );
    let epoch_after = s.epoch(survivors[0]).await;
    let context = s.lines_since(&survivors, &marks, 40);
    assert_eq!(
        epoch_after - epoch_before,
        epoch_step,
        "one switch's worth of committed changes ({epoch_step}), not more: {}\n{context}",
        controls[0]
    );
    for i in &survivors {
        let lines = s.key_lines(*i);
        let new: Vec<&String> = lines[marks[*i].min(lines.len())..]
            .iter()
            .filter(|l| l.contains("source : "))
            .collect();
        let promoted: Vec<&&String> = new.iter().filter(|l| l.contains("new source : ")).collect();
        assert!(
            promoted.len() == 1 && promoted[0].contains("new source : 'c'"),
            "node {}: c promoted exactly once, nothing else:\n{context}",
            i + 1
        );
        assert!(
            new.iter()
                .filter(|l| l.contains("lost source : 'b'"))
                .count()
                == 1,
            "node {}: b demoted exactly once:\n{context}",
            i + 1
        );
    }
    // Each survivor's history reads the switch as decided by the new leader.
    for i in &survivors {
        let h = s.nodes[*i]
            .admin_json("/api/v1/groups/default/history")
            .await;
        let first = &h["switches"][0];
        assert_eq!(
            (
                first["from"].as_str(),
                first["to"].as_str(),
                first["reason"].as_str()
            ),
            (Some("b"), Some("c"), Some("leader_change")),
            "node {}: the switch in the history: {h}",
            i + 1
        );
    }
    s.check_only_leader_ships(s.leader(&survivors, Duration::from_secs(10)).await)
        .await;
    eprintln!(
        "leader and replica kill checked: c promoted once (epoch {epoch_before} -> \
         {epoch_after}); highlander since the kills:\n{}",
        s.lines_since(&survivors, &marks, 30)
    );
}

//! A deterministic simulation of the cluster election under message loss, delay,
//! duplication and reordering, leader changes and node restarts.
//!
//! # What is real
//! - the leader's round ([`promotions::decide`]): the committed state merged with the
//!   nodes' views, [`ElectionState::decide`], and the commands it commits;
//! - the operator overrides: [`ElectionState::pin`] and `failover` on a node's merged
//!   view, then [`promotions::override_requests`];
//! - each node's own view ([`promotions::LocalView`]) and the role of a write
//!   ([`promotions::role`]);
//! - the follower reports, as the leader keeps them ([`Reports`]);
//! - [`ControlState::apply`], which every node runs over the committed log in order.
//!
//! # What is modelled
//! - raft: one committed log, and a leader that changes, with gaps. A node's in-flight
//!   commits still land after it lost leadership, as a forwarded write does.
//! - HTTP: reports are lost, duplicated, delayed out of order, and sent to the leader that
//!   a node believes in.
//! - time: one simulated clock in steps of [`STEP_MS`].
//!
//! # A run
//! Each run has two phases.
//! 1. A chaos phase of 40 s simulated time. Reports are lost, duplicated, and delayed up to
//!    7 s. Leaders change and nodes crash. Sources start, stop, restart with another
//!    weight, or reach other nodes. Operators pin, unpin and fail over. Commits fail.
//! 2. A calm phase of 60 s. There is no loss, delays are short, and nothing restarts.
//!    Sources keep doing what they do. The leader steps down twice.
//!
//! # Checks
//! Checked on every committed entry and after every step:
//! - Every node's state is the state of the log prefix it applied. The promoted source
//!   carries its group's epoch. Epochs move by exactly one per change of the promoted
//!   source.
//! - A promotion goes only to a source that some node received a write from within the
//!   expiry. A bigger-weight promotion goes only to a strictly bigger weight.
//! - A committed promotion's reason describes the state it replaced. So no stale decision
//!   lands on a newer one, and there is no double promotion. Under a pin, only the pinned
//!   source takes over from another.
//! - A leader demotes a source only if neither its own view nor a report it still keeps
//!   shows the source writing within the expiry. A late report must not hide a newer one.
//! - Calm phase: within [`SETTLE_MS`] of the last disturbance, every node has the expected
//!   source promoted. That is the live pinned source, else one of the live sources of the
//!   biggest weight, else none. Once settled, the source stays promoted across leader
//!   changes (no re-election storm).
//! - At the end, every node applied the whole log.
//!
//! # Seeds
//! A failure panics with its seed and the run's trace.
//! `HIGHLANDER_SIM_SEED=<seed> cargo test --lib cluster::sim_tests -- --nocapture` replays
//! one seed and prints its whole trace. `HIGHLANDER_SIM_SEEDS=<n>` runs more seeds. The
//! default, [`DEFAULT_SEEDS`], takes a few seconds in a debug build.

use std::time::{Duration, Instant};

mod invariants;
mod raft;
mod rng;
mod trace;
mod world;

use rng::Rng;
use trace::Trace;
use world::Sim;

const EXPIRY_MS: u64 = 5_000;
const TICK_MS: u64 = 1_000;
const STEP_MS: u64 = 250;
/// As in the cluster: sources silent for 20 expiries are forgotten, and reports are kept
/// for 2 expiries.
const FORGET_MS: u64 = EXPIRY_MS * 20;
const REPORT_MAX_AGE: Duration = Duration::from_millis(2 * EXPIRY_MS);
const CHAOS_MS: u64 = 40_000;
const CALM_MS: u64 = 60_000;
/// In the calm phase, the nodes agree on the expected source this long after the last
/// disturbance. A disturbance is the phase's start, a leader change or an operator pin.
const SETTLE_MS: u64 = 2 * EXPIRY_MS + 3 * TICK_MS;
const NODES: usize = 3;
const DEFAULT_SEEDS: u64 = 2_000;

/// Runs one seed. Returns the number of committed entries.
fn run_seed(seed: u64, trace: Trace) -> usize {
    let mut sim = Sim::new(seed, trace);
    sim.run();
    sim.log.len()
}

#[test]
fn promotions_hold_under_loss_reordering_and_leader_changes() {
    if let Some(seed) = std::env::var("HIGHLANDER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_seed(seed, Trace::Print);
        return;
    }
    let seeds = std::env::var("HIGHLANDER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    let started = Instant::now();
    let mut entries = 0;
    for seed in 0..seeds {
        match std::panic::catch_unwind(|| run_seed(seed, Trace::Off)) {
            Ok(n) => entries += n,
            // The same run again, deterministic, this time with its trace in the panic.
            Err(_) => {
                run_seed(seed, Trace::Keep);
                panic!("seed {seed} failed untraced but passed traced: the simulation is not deterministic");
            }
        }
    }
    println!(
        "{seeds} seeds of {} steps, {entries} committed entries, in {:?}",
        (CHAOS_MS + CALM_MS) / STEP_MS,
        started.elapsed()
    );
}

#[test]
fn the_random_source_is_stable_across_versions() {
    let mut rng = Rng(0);
    assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
}

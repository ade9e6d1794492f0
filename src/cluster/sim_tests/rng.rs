//! The seeded random source, and the fault profiles of the two phases.

/// SplitMix64: tiny, and stable across dependency upgrades, so a seed replays forever.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// How hostile the world is: probabilities per step, except `loss` and `duplicate` (per
/// report) and `commit`, `commit_fail` (per in-flight command and step).
#[derive(Debug, Clone, Copy)]
pub(super) struct Faults {
    /// A report is lost.
    pub(super) loss: f64,
    /// A report is delivered twice.
    pub(super) duplicate: f64,
    /// Reports are delivered after up to this long (so out of order).
    pub(super) max_delay_ms: u64,
    /// The leader steps down (a new one is elected after a short gap).
    pub(super) leader_change: f64,
    /// A node learns who leads now.
    pub(super) learn_leader: f64,
    /// A node crashes. It forgets its view and the reports it holds, and keeps its raft
    /// state.
    pub(super) crash: f64,
    /// A source starts or stops writing.
    pub(super) toggle: f64,
    /// A source's set of reachable nodes changes.
    pub(super) reroute: f64,
    /// A source restarts with another weight.
    pub(super) reweight: f64,
    /// An operator pins, unpins or fails over.
    pub(super) operator: f64,
    /// An in-flight command is committed.
    pub(super) commit: f64,
    /// An in-flight command fails, committed or not. The rest of its batch is dropped.
    pub(super) commit_fail: f64,
    /// Followers apply the log late.
    pub(super) apply_lag: bool,
}

pub(super) const CHAOS: Faults = Faults {
    loss: 0.3,
    duplicate: 0.1,
    max_delay_ms: 7_000,
    leader_change: 0.03,
    learn_leader: 0.4,
    crash: 0.005,
    toggle: 0.02,
    reroute: 0.01,
    reweight: 0.005,
    operator: 0.01,
    commit: 0.6,
    commit_fail: 0.1,
    apply_lag: true,
};

pub(super) const CALM: Faults = Faults {
    loss: 0.0,
    duplicate: 0.0,
    max_delay_ms: 200,
    leader_change: 0.0,
    learn_leader: 0.9,
    crash: 0.0,
    toggle: 0.0,
    reroute: 0.0,
    reweight: 0.0,
    operator: 0.0,
    commit: 0.9,
    commit_fail: 0.0,
    apply_lag: false,
};

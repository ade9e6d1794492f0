//! Election: which source (Prometheus replica) of each HA group is forwarded.
//!
//! Seed semantics, kept exactly (DESIGN.md §4):
//! - a group with no promoted source promotes the first source that writes;
//! - a source with a strictly bigger `highlander_weight` than the promoted one takes over;
//! - every health tick the promoted source is checked, and one silent for the health expiry
//!   is demoted (the next source that writes is then promoted).
//!
//! Invariants: at most one promoted source per group at any time; a decision depends only on
//! the state and the injected clock ([`state::ElectionState`] is pure and unit-tested for
//! every rule); the seed's log lines (`new source : ...`, `lost source : ...`) are written
//! here and nowhere else.
//!
//! The rest of the relay talks to the election through the [`Promotions`] trait: standalone
//! nodes use [`Elector`], which decides locally; the cluster provides an implementation
//! that decides on the raft leader and applies committed promotions.

pub mod state;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use state::ElectionState;
pub use state::{Change, GroupView, Observation, Reason, Role};

/// Milliseconds since the Unix epoch, from an injectable source.
pub trait Clock: Send + Sync + 'static {
    /// Now, in ms since the epoch.
    fn now_ms(&self) -> u64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The authority that decides which source of a group is forwarded.
pub trait Promotions: Send + Sync + 'static {
    /// The role of one write; may promote its source.
    fn observe(&self, obs: Observation<'_>) -> Role;
    /// The periodic health check.
    fn tick(&self);
    /// Every group as it stands.
    fn groups(&self) -> BTreeMap<String, GroupView>;
}

/// The standalone election: decides locally, logs every change. A cheap clone.
#[derive(Clone)]
pub struct Elector {
    state: Arc<Mutex<ElectionState>>,
    clock: Arc<dyn Clock>,
    expiry: Duration,
}

impl Elector {
    /// An elector demoting sources silent for `expiry`.
    pub fn new(expiry: Duration, clock: Arc<dyn Clock>) -> Self {
        Elector {
            state: Arc::new(Mutex::new(ElectionState::new(expiry.as_millis() as u64))),
            clock,
            expiry,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ElectionState> {
        // The state stays consistent even if a holder panicked: every method leaves it valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, change: &Change) {
        match change {
            Change::Promoted {
                group,
                source,
                weight,
                reason: Reason::NoPromotedSource,
            } => tracing::info!(
                group = %group,
                "new source : '{source}' (no current promoted source) ({weight})"
            ),
            Change::Promoted {
                group,
                source,
                weight,
                reason:
                    Reason::BiggerWeight {
                        previous,
                        previous_weight,
                    },
            } => tracing::info!(
                group = %group,
                previous = %previous,
                "new source : '{source}' (bigger Highlander Weight) ({previous_weight} -> {weight})"
            ),
            Change::Demoted {
                group,
                source,
                silent_ms,
            } => tracing::info!(
                group = %group,
                silent_ms,
                "lost source : '{source}' (no data for {})",
                humantime::format_duration(self.expiry)
            ),
        }
    }

    /// Runs the health check every `tick` until `shutdown`.
    pub async fn run_health_checks(self, tick: Duration, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => self.tick(),
            }
        }
    }
}

impl Promotions for Elector {
    fn observe(&self, obs: Observation<'_>) -> Role {
        let now = self.clock.now_ms();
        let (role, change) = self.lock().observe(obs, now);
        if let Some(change) = change {
            self.log(&change);
        }
        role
    }

    fn tick(&self) {
        let now = self.clock.now_ms();
        let changes = self.lock().tick(now);
        for change in &changes {
            self.log(change);
        }
    }

    fn groups(&self) -> BTreeMap<String, GroupView> {
        self.lock().groups().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct FakeClock(AtomicU64);
    impl Clock for FakeClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn elector_uses_the_injected_clock_for_expiry() {
        let clock = Arc::new(FakeClock(AtomicU64::new(1_000)));
        let e = Elector::new(Duration::from_secs(5), clock.clone());
        let w = |source| Observation {
            group: "default",
            source,
            weight: 0,
            samples: 1,
        };
        assert_eq!(e.observe(w("a")), Role::Promoted);
        clock.0.store(5_999, Ordering::SeqCst);
        e.tick();
        assert_eq!(e.observe(w("b")), Role::Standby);
        clock.0.store(6_000, Ordering::SeqCst);
        e.tick();
        assert!(e.groups()["default"].promoted.is_none());
        assert_eq!(e.observe(w("b")), Role::Promoted);
    }
}

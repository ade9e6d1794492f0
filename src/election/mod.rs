//! Election: which source (Prometheus replica) of each HA group is forwarded.
//!
//! # Rules
//! The seed's semantics stay exactly as they were (DESIGN.md §4):
//! - A group with no promoted source promotes the first source that writes.
//! - A source with a strictly bigger `highlander_weight` than the promoted one takes over.
//! - Every health tick checks the promoted source. If it was silent for the health expiry,
//!   it is demoted, and the next source that writes is promoted.
//!
//! # Invariants
//! - A group has at most one promoted source at any time.
//! - A decision depends only on the state and the injected clock.
//!   [`state::ElectionState`] is pure, and unit tests cover every rule.
//! - The seed's log lines (`new source : ...`, `lost source : ...`) are written here and
//!   nowhere else.
//!
//! # Operator overrides
//! - A *pin* prefers one source over any weight. It lasts until it is removed or its
//!   `until` passes. A silent pinned source is still demoted after the expiry, and it
//!   takes over again when it writes.
//! - A *failover* demotes the promoted source now. It promotes the best other live source
//!   (highest weight, then most recent write) and pins it. So the old source does not take
//!   over again by weight.
//!
//! Pins and the recent history of every group are kept durably ([`store`]); the history
//! also holds the handovers the ingest reports, and [`mod@switches`] reads it as a list of
//! switches.
//!
//! # Who decides
//! The rest of the relay talks to the election through the [`Promotions`] trait.
//! Standalone nodes use [`Elector`], which decides locally. The cluster provides its own
//! implementation: the raft leader decides, and every node applies committed promotions.

pub mod state;
pub mod store;
pub mod switches;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use state::ElectionState;
pub use state::{Change, ElectionError, GroupView, Observation, PinKind, PinView, Reason, Role};
pub use store::{ElectionStore, HistoryEntry};
pub use switches::{switches, HandoverStats, Switch, SwitchReason};

/// Writes the seed's log line for an election change.
pub fn log_change(change: &Change, expiry: Duration) {
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
        Change::Promoted {
            group,
            source,
            weight,
            reason: Reason::Pinned { previous },
        } => tracing::info!(
            group = %group,
            previous = ?previous,
            "new source : '{source}' (pinned by operator) ({weight})"
        ),
        Change::Promoted {
            group,
            source,
            weight,
            reason: Reason::Failover { previous },
        } => tracing::info!(
            group = %group,
            previous = %previous,
            "new source : '{source}' (failover by operator from '{previous}') ({weight})"
        ),
        Change::PinExpired { group, source } => {
            tracing::info!(group = %group, source = %source, "election: pin expired")
        }
        // The handover and the cluster write their own lines when they happen.
        Change::Handover { .. } | Change::LeaderChanged { .. } => {}
        Change::Demoted {
            group,
            source,
            silent_ms,
        } => tracing::info!(
            group = %group,
            silent_ms,
            "lost source : '{source}' (no data for {})",
            humantime::format_duration(expiry)
        ),
    }
}

/// The authority that decides which source of a group is forwarded.
pub trait Promotions: Send + Sync + 'static {
    /// The role of one write. It may promote the write's source.
    fn observe(&self, obs: Observation<'_>) -> Role;
    /// Every group as it stands.
    fn groups(&self) -> BTreeMap<String, GroupView>;
    /// Pins `source` in `group` until unpinned or `until_ms`.
    fn pin<'a>(
        &'a self,
        group: &'a str,
        source: &'a str,
        until_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<GroupView, ElectionError>>;
    /// Removes the group's pin.
    fn unpin<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<PinView, ElectionError>>;
    /// Demotes the promoted source now and promotes (and pins) the next candidate.
    fn failover<'a>(
        &'a self,
        group: &'a str,
        until_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<GroupView, ElectionError>>;
    /// The group's recent election events, newest first.
    fn history(&self, group: &str) -> Vec<HistoryEntry>;
    /// Records an event the election did not decide (a handover) in its group's history.
    fn record(&self, change: Change);
}

/// Records `change` at `now_ms` in `store`, if there is one; a failure is logged.
pub(crate) fn record_in(store: Option<&ElectionStore>, change: Change, now_ms: u64) {
    let Some(store) = store else {
        return;
    };
    if let Err(e) = store.record(&HistoryEntry {
        at_ms: now_ms,
        change,
    }) {
        tracing::error!(error = %e, "election: could not record history");
    }
}

/// The standalone election. It decides locally and logs every change. A cheap clone.
#[derive(Clone)]
pub struct Elector {
    state: Arc<Mutex<ElectionState>>,
    clock: Arc<dyn Clock>,
    expiry: Duration,
    store: Option<ElectionStore>,
}

impl Elector {
    /// An elector that demotes sources silent for `expiry` and keeps nothing on disk.
    pub fn new(expiry: Duration, clock: Arc<dyn Clock>) -> Self {
        Elector {
            state: Arc::new(Mutex::new(ElectionState::new(expiry.as_millis() as u64))),
            clock,
            expiry,
            store: None,
        }
    }

    /// An elector that keeps pins and history in `store`. It restores the pins that
    /// `store` holds.
    pub fn with_store(expiry: Duration, clock: Arc<dyn Clock>, store: ElectionStore) -> Self {
        let mut e = Self::new(expiry, clock);
        {
            let mut state = e.lock();
            for (group, pin) in store.pins() {
                tracing::info!(group = %group, source = %pin.source, "election: pin restored");
                state.restore_pin(&group, pin);
            }
        }
        e.store = Some(store);
        e
    }

    /// Logs a change and records it in the durable history.
    fn publish(&self, change: Change, now_ms: u64) {
        log_change(&change, self.expiry);
        crate::metrics::METRICS
            .election
            .changes
            .with_label_values(&[change.reason_label()])
            .inc();
        if let Some(store) = &self.store {
            if let Change::PinExpired { group, .. } = &change {
                if let Err(e) = store.save_pin(group, None) {
                    tracing::error!(error = %e, "election: could not remove the expired pin on disk");
                }
            }
        }
        record_in(self.store.as_ref(), change, now_ms);
    }

    fn save_pin(&self, group: &str, pin: Option<&PinView>) -> Result<(), ElectionError> {
        if let Some(store) = &self.store {
            store.save_pin(group, pin).map_err(|e| {
                tracing::error!(group = %group, error = %e, "election: could not store the pin");
                ElectionError::Storage(e.to_string())
            })?;
        }
        Ok(())
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, ElectionState> {
        self.state.lock()
    }

    /// The periodic health check: demotes promoted sources silent for the expiry.
    pub fn tick(&self) {
        let now = self.clock.now_ms();
        let changes = self.lock().tick(now);
        for change in changes {
            self.publish(change, now);
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
            self.publish(change, now);
        }
        role
    }

    fn groups(&self) -> BTreeMap<String, GroupView> {
        self.lock().groups().clone()
    }

    fn pin<'a>(
        &'a self,
        group: &'a str,
        source: &'a str,
        until_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<GroupView, ElectionError>> {
        Box::pin(std::future::ready(self.pin_now(group, source, until_ms)))
    }

    fn unpin<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<PinView, ElectionError>> {
        Box::pin(std::future::ready(self.unpin_now(group)))
    }

    fn failover<'a>(
        &'a self,
        group: &'a str,
        until_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<GroupView, ElectionError>> {
        Box::pin(std::future::ready(self.failover_now(group, until_ms)))
    }

    fn history(&self, group: &str) -> Vec<HistoryEntry> {
        self.store
            .as_ref()
            .map(|s| s.history(group))
            .unwrap_or_default()
    }

    fn record(&self, change: Change) {
        record_in(self.store.as_ref(), change, self.clock.now_ms());
    }
}

impl Elector {
    fn pin_now(
        &self,
        group: &str,
        source: &str,
        until_ms: Option<u64>,
    ) -> Result<GroupView, ElectionError> {
        let now = self.clock.now_ms();
        let (change, view) = {
            let mut state = self.lock();
            let change = state.pin(group, source, until_ms, now)?;
            (change, state.groups()[group].clone())
        };
        self.save_pin(group, view.pin.as_ref())?;
        if let Some(change) = change {
            self.publish(change, now);
        }
        Ok(view)
    }

    fn unpin_now(&self, group: &str) -> Result<PinView, ElectionError> {
        let pin = self.lock().unpin(group)?;
        self.save_pin(group, None)?;
        Ok(pin)
    }

    fn failover_now(&self, group: &str, until_ms: Option<u64>) -> Result<GroupView, ElectionError> {
        let now = self.clock.now_ms();
        let (change, view) = {
            let mut state = self.lock();
            let change = state.failover(group, until_ms, now)?;
            (change, state.groups()[group].clone())
        };
        self.save_pin(group, view.pin.as_ref())?;
        self.publish(change, now);
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn elector_uses_the_injected_clock_for_expiry() {
        let clock = Arc::new(ManualClock::at(1_000));
        let e = Elector::new(Duration::from_secs(5), clock.clone());
        let w = |source| Observation {
            protocol: Default::default(),
            group: "default",
            source,
            weight: 0,
            samples: 1,
            data_ts: None,
        };
        assert_eq!(e.observe(w("a")), Role::Promoted);
        clock.set(5_999);
        e.tick();
        assert_eq!(e.observe(w("b")), Role::Standby);
        clock.set(6_000);
        e.tick();
        // b wrote within the expiry, so the tick that demoted a promoted b.
        assert_eq!(
            e.groups()["default"]
                .promoted
                .as_ref()
                .map(|p| p.source.as_str()),
            Some("b")
        );
        assert_eq!(e.observe(w("b")), Role::Promoted);
    }
}

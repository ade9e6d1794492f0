//! The election in cluster mode: the raft leader decides, every node applies what is
//! committed.
//!
//! - Every node records the sources it sees (the ingest path) and answers each write from
//!   the *committed* promoted source of its group: promoted → stored and forwarded,
//!   another source promoted → standby, nobody promoted yet → 503 (Prometheus retries; the
//!   leader is nudged to decide at once).
//! - Followers report what they see to the leader every health tick.
//! - The leader, every tick (and when nudged), rebuilds the election from the committed
//!   state plus the union of its own view and the fresh reports, applies the rules
//!   ([`ElectionState::decide`]: expiry, best live standby, bigger weight, pins) and
//!   commits each change. The decision is stateless across ticks, so a new leader keeps the
//!   committed promoted source: no re-election storm, no double promotion.
//! - Every node watches the committed state and writes the seed's log lines and its own
//!   election history from it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::reports::{Report, Seen};
use super::types::{ControlState, Request};
use super::Cluster;
use crate::election::state::{ElectionState, PromotedView, SourceView};
use crate::election::{
    Change, Clock, ElectionError, ElectionStore, GroupView, HistoryEntry, Observation, PinView,
    Promotions, Reason, Role,
};

/// Sources not seen for this many expiry windows are forgotten by this node.
const FORGET_EXPIRIES: u32 = 20;

/// The cluster's [`Promotions`]. A cheap clone.
#[derive(Clone)]
pub struct ClusterPromotions {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    seen: Mutex<BTreeMap<(String, String), SourceView>>,
    clock: Arc<dyn Clock>,
    expiry: Duration,
    decide_now: Notify,
    store: Option<ElectionStore>,
}

fn write_error(e: impl std::fmt::Display) -> ElectionError {
    ElectionError::Storage(format!("cluster: {e}"))
}

impl ClusterPromotions {
    /// The election of `cluster`, demoting sources silent for `expiry`; history in `store`.
    pub fn new(
        cluster: Cluster,
        expiry: Duration,
        clock: Arc<dyn Clock>,
        store: Option<ElectionStore>,
    ) -> Self {
        ClusterPromotions {
            inner: Arc::new(Inner {
                cluster,
                seen: Mutex::new(BTreeMap::new()),
                clock,
                expiry,
                decide_now: Notify::new(),
                store,
            }),
        }
    }

    fn expiry_ms(&self) -> u64 {
        self.inner.expiry.as_millis() as u64
    }

    /// This node's view of the sources, pruned of long-silent ones.
    fn local_seen(&self) -> Vec<Seen> {
        let now = self.inner.clock.now_ms();
        let forget = self.expiry_ms() * u64::from(FORGET_EXPIRIES);
        let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, v| now.saturating_sub(v.last_seen_ms) < forget);
        seen.iter()
            .map(|((group, source), view)| Seen {
                group: group.clone(),
                source: source.clone(),
                view: view.clone(),
            })
            .collect()
    }

    /// The election as the leader sees it now: committed decisions plus every node's view.
    fn merged(&self, committed: &ControlState) -> ElectionState {
        let mut state = ElectionState::new(self.expiry_ms());
        for (group, gc) in &committed.groups {
            let promoted = gc.promoted.as_ref().map(|p| PromotedView {
                source: p.source.clone(),
                weight: p.weight,
                since_ms: p.since_ms,
            });
            state.restore(group, promoted, gc.pin.clone());
        }
        let reports = self.inner.cluster.reports().fresh(self.inner.expiry * 2);
        for s in self.local_seen().iter().chain(reports.iter()) {
            state.see(&s.group, &s.source, &s.view);
        }
        state
    }

    /// Commits election changes in order; stops at the first failure (the next tick
    /// decides again from what was committed).
    async fn commit(&self, changes: Vec<Change>) -> Result<(), ElectionError> {
        let now = self.inner.clock.now_ms();
        for change in changes {
            let request = match change {
                Change::Promoted {
                    group,
                    source,
                    weight,
                    reason,
                } => Request::Promote {
                    group,
                    source,
                    weight,
                    reason,
                    at_ms: now,
                },
                Change::Demoted { group, source, .. } => Request::Demote {
                    group,
                    source,
                    at_ms: now,
                },
                Change::PinExpired { group, .. } => Request::SetPin { group, pin: None },
            };
            self.inner
                .cluster
                .write(request)
                .await
                .map_err(write_error)?;
        }
        Ok(())
    }

    /// Leader: decide and commit. Follower: report to the leader.
    async fn round(&self, leading: &mut bool) {
        if self.inner.cluster.leader_lease().is_none() {
            *leading = false;
            let report = Report {
                node: self.inner.cluster.node_id(),
                seen: self.local_seen(),
            };
            if let Err(e) = self.inner.cluster.send_report(&report).await {
                tracing::debug!(error = %e, "cluster: report to the leader failed");
            }
            return;
        }
        if !*leading {
            // A new leader may not have applied everything committed before it took over.
            if let Err(e) = self.inner.cluster.ensure_linearizable().await {
                tracing::debug!(error = %e, "cluster: not confirmed as leader yet");
                return;
            }
            *leading = true;
        }
        let committed = self.inner.cluster.control().current();
        let changes = self
            .merged(&committed.state)
            .decide(self.inner.clock.now_ms());
        if let Err(e) = self.commit(changes).await {
            tracing::warn!(error = %e, "cluster: election change not committed; deciding again next tick");
        }
    }

    /// Runs the decisions (leader) and reports (followers) every `tick`, and logs committed
    /// changes on this node, until `shutdown`.
    pub async fn run(self, tick: Duration, shutdown: CancellationToken) {
        tokio::spawn(self.clone().watch_committed(shutdown.clone()));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
                _ = self.inner.decide_now.notified() => {}
            }
            self.round(&mut leading).await;
        }
    }

    /// Writes the seed's log lines and this node's history from committed changes.
    async fn watch_committed(self, shutdown: CancellationToken) {
        let mut rx = self.inner.cluster.control().subscribe();
        let mut previous = rx.borrow_and_update().clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = rx.changed() => if r.is_err() { return },
            }
            let current = rx.borrow_and_update().clone();
            let now = self.inner.clock.now_ms();
            for (group, gc) in &current.state.groups {
                let before = previous.state.groups.get(group);
                let old = before.and_then(|g| g.promoted.as_ref());
                let new = gc.promoted.as_ref();
                if old.map(|p| (&p.source, p.epoch)) == new.map(|p| (&p.source, p.epoch)) {
                    continue;
                }
                let mut changes = Vec::new();
                if let Some(o) = old.filter(|o| new.is_none_or(|n| n.source != o.source)) {
                    let operator = matches!(
                        new.map(|n| &n.reason),
                        Some(
                            Reason::Pinned { .. }
                                | Reason::Failover { .. }
                                | Reason::BiggerWeight { .. }
                        )
                    );
                    if !operator {
                        changes.push(Change::Demoted {
                            group: group.clone(),
                            source: o.source.clone(),
                            silent_ms: self.expiry_ms(),
                        });
                    }
                }
                if let Some(n) = new.filter(|n| old.is_none_or(|o| o.source != n.source)) {
                    changes.push(Change::Promoted {
                        group: group.clone(),
                        source: n.source.clone(),
                        weight: n.weight,
                        reason: n.reason.clone(),
                    });
                }
                for change in changes {
                    self.publish(change, now);
                }
            }
            previous = current;
        }
    }

    fn publish(&self, change: Change, now_ms: u64) {
        crate::election::log_change(&change, self.inner.expiry);
        crate::metrics::METRICS
            .election_changes
            .with_label_values(&[change.reason_label()])
            .inc();
        if let Some(store) = &self.inner.store {
            if let Err(e) = store.record(&HistoryEntry {
                at_ms: now_ms,
                change,
            }) {
                tracing::error!(error = %e, "election: could not record history");
            }
        }
    }

    /// Commits an operator override decided on `state`: the group's pin first, then the
    /// promotion it caused (if any); returns the group as committed.
    async fn commit_override(
        &self,
        group: &str,
        state: &ElectionState,
        changes: Vec<Change>,
    ) -> Result<GroupView, ElectionError> {
        let pin = state.groups()[group].pin.clone();
        self.inner
            .cluster
            .write(Request::SetPin {
                group: group.to_owned(),
                pin,
            })
            .await
            .map_err(write_error)?;
        self.commit(changes).await?;
        self.view(group)
            .ok_or_else(|| ElectionError::UnknownGroup(group.to_owned()))
    }

    fn view(&self, group: &str) -> Option<GroupView> {
        self.groups().remove(group)
    }
}

impl Promotions for ClusterPromotions {
    fn observe(&self, obs: Observation<'_>) -> Role {
        let now = self.inner.clock.now_ms();
        let role = match self
            .inner
            .cluster
            .control()
            .current()
            .state
            .promoted(obs.group)
        {
            Some(p) if p.source == obs.source => Role::Promoted,
            Some(_) => Role::Standby,
            None => {
                self.inner.decide_now.notify_one();
                Role::Undecided
            }
        };
        let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.entry((obs.group.to_owned(), obs.source.to_owned()))
            .or_insert_with(|| SourceView {
                first_seen_ms: now,
                ..SourceView::default()
            })
            .record(&obs, role, now);
        role
    }

    fn tick(&self) {}

    fn groups(&self) -> BTreeMap<String, GroupView> {
        let committed = self.inner.cluster.control().current();
        let mut out: BTreeMap<String, GroupView> = BTreeMap::new();
        for (group, gc) in &committed.state.groups {
            let g = out.entry(group.clone()).or_default();
            g.promoted = gc.promoted.as_ref().map(|p| PromotedView {
                source: p.source.clone(),
                weight: p.weight,
                since_ms: p.since_ms,
            });
            g.pin = gc.pin.clone();
        }
        for s in self.local_seen() {
            out.entry(s.group)
                .or_default()
                .sources
                .insert(s.source, s.view);
        }
        out.retain(|_, g| g.promoted.is_some() || g.pin.is_some() || !g.sources.is_empty());
        out
    }

    fn pin<'a>(
        &'a self,
        group: &'a str,
        source: &'a str,
        until_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<GroupView, ElectionError>> {
        Box::pin(async move {
            let committed = self.inner.cluster.control().current();
            let mut state = self.merged(&committed.state);
            let now = self.inner.clock.now_ms();
            let change = state.pin(group, source, until_ms, now)?;
            self.commit_override(group, &state, change.into_iter().collect())
                .await
        })
    }

    fn unpin<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<PinView, ElectionError>> {
        Box::pin(async move {
            let committed = self.inner.cluster.control().current();
            let Some(gc) = committed.state.groups.get(group) else {
                return Err(ElectionError::UnknownGroup(group.to_owned()));
            };
            let pin = gc
                .pin
                .clone()
                .ok_or_else(|| ElectionError::NotPinned(group.to_owned()))?;
            self.inner
                .cluster
                .write(Request::SetPin {
                    group: group.to_owned(),
                    pin: None,
                })
                .await
                .map_err(write_error)?;
            Ok(pin)
        })
    }

    fn failover<'a>(
        &'a self,
        group: &'a str,
        until_ms: Option<u64>,
    ) -> BoxFuture<'a, Result<GroupView, ElectionError>> {
        Box::pin(async move {
            let committed = self.inner.cluster.control().current();
            let mut state = self.merged(&committed.state);
            let change = state.failover(group, until_ms, self.inner.clock.now_ms())?;
            self.commit_override(group, &state, vec![change]).await
        })
    }

    fn history(&self, group: &str) -> Vec<HistoryEntry> {
        self.inner
            .store
            .as_ref()
            .map(|s| s.history(group))
            .unwrap_or_default()
    }
}

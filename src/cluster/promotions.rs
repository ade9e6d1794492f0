//! The election in cluster mode: the raft leader decides, and every node applies what is
//! committed.
//!
//! - Every node records the sources it sees (the ingest path). It answers each write from
//!   the *committed* promoted source of its group:
//!   - the write's source is promoted: the write is stored and forwarded;
//!   - another source is promoted: the write is a standby;
//!   - nobody is promoted yet: 503. Prometheus retries, and the leader is nudged to decide
//!     at once.
//! - Followers report what they see to the leader every health tick.
//! - The leader acts every tick, and when it is nudged. It rebuilds the election from the
//!   committed state plus the union of its own view and the fresh reports. It applies the
//!   rules ([`ElectionState::decide`]: expiry, best live standby, bigger weight, pins) and
//!   commits each change. The decision keeps no state across ticks. So a new leader keeps
//!   the committed promoted source: no re-election storm, no double promotion.
//! - A new leader has not heard from the followers yet. So for its first expiry, it counts
//!   every committed promoted source as seen when it took over. It also makes no
//!   bigger-weight takeover from a source it has no news of (`merge`, `decide`). Otherwise
//!   a source that writes only to other nodes would be failed over, and then promoted back
//!   at the next report.
//! - Every command carries the state of its group that it was decided on ([`Expect`]). If
//!   the group moved on before the command landed, the command changes nothing. A round's
//!   commands land after anything committed meanwhile, and must not undo it. Examples: an
//!   operator's pin, or the last round of a leader that lost its lease and forwarded that
//!   round to its successor.
//! - Every node watches the committed state. From it, the node writes the seed's log lines
//!   and its own election history.
//!
//! The decision itself is pure (`decide`, `requests`, `override_requests`). The
//! deterministic simulation in `sim_tests.rs` drives it with [`ControlState::apply`] under
//! message loss, reordering and leader changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::reports::{Report, Seen};
use super::types::{ControlState, Expect, Request};
use super::Cluster;
use crate::clock::Clock;
use crate::election::state::{ElectionState, PromotedView, SourceView};
use crate::election::{
    Change, ElectionError, ElectionStore, GroupView, HistoryEntry, Observation, PinView,
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
    seen: Mutex<LocalView>,
    clock: Arc<dyn Clock>,
    expiry: Duration,
    decide_now: Notify,
    store: Option<ElectionStore>,
}

fn write_error(e: impl std::fmt::Display) -> ElectionError {
    ElectionError::Storage(format!("cluster: {e}"))
}

impl ClusterPromotions {
    /// The election of `cluster`. It demotes sources silent for `expiry` and keeps history
    /// in `store`.
    pub fn new(
        cluster: Cluster,
        expiry: Duration,
        clock: Arc<dyn Clock>,
        store: Option<ElectionStore>,
    ) -> Self {
        ClusterPromotions {
            inner: Arc::new(Inner {
                cluster,
                seen: Mutex::new(LocalView::default()),
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

    /// This node's view of the sources, without the long-silent ones.
    fn local_seen(&self) -> Vec<Seen> {
        let now = self.inner.clock.now_ms();
        let mut seen = self.inner.seen.lock();
        seen.seen(now, self.expiry_ms() * u64::from(FORGET_EXPIRIES))
    }

    /// The election as the leader sees it now: committed decisions plus every node's view.
    fn merged(&self, committed: &ControlState) -> ElectionState {
        let reports = self.inner.cluster.reports().fresh(self.inner.expiry * 2);
        let local = self.local_seen();
        merge(
            self.expiry_ms(),
            committed,
            local.iter().chain(reports.iter()),
            None,
        )
    }

    /// Commits the commands in order. It stops at the first failure; the next tick decides
    /// again from what was committed. A command whose group has left the state it was
    /// decided on is committed, but changes nothing ([`Expect`]).
    async fn commit(&self, requests: Vec<Request>) -> Result<(), ElectionError> {
        for request in requests {
            self.inner
                .cluster
                .write(request)
                .await
                .map_err(write_error)?;
        }
        Ok(())
    }

    /// Leader: decide and commit. Follower: report to the leader. `leading` is the term
    /// this node leads in and when it took over (ms). It is `None` while the node follows.
    async fn round(&self, leading: &mut Option<(u64, u64)>) {
        if self.inner.cluster.leader_lease().is_none() {
            *leading = None;
            let report = Report {
                node: self.inner.cluster.node_id(),
                seen: self.local_seen(),
            };
            if let Err(e) = self.inner.cluster.send_report(&report).await {
                tracing::debug!(error = %e, "cluster: report to the leader failed");
            }
            return;
        }
        let term = self.inner.cluster.term();
        let took_over_ms = match *leading {
            Some((t, since)) if t == term => since,
            _ => {
                // A new leader may not have applied everything committed before it took over.
                if let Err(e) = self.inner.cluster.ensure_linearizable().await {
                    tracing::debug!(error = %e, "cluster: not confirmed as leader yet");
                    return;
                }
                let now = self.inner.clock.now_ms();
                *leading = Some((term, now));
                now
            }
        };
        let committed = self.inner.cluster.control().current();
        let now = self.inner.clock.now_ms();
        let reports = self.inner.cluster.reports().fresh(self.inner.expiry * 2);
        let local = self.local_seen();
        let requests = decide(
            self.expiry_ms(),
            &committed.state,
            local.iter().chain(reports.iter()),
            took_over_ms,
            now,
        );
        if let Err(e) = self.commit(requests).await {
            tracing::warn!(error = %e, "cluster: election change not committed; deciding again next tick");
        }
    }

    /// Until `shutdown`: runs the decisions (leader) or the reports (followers) every
    /// `tick`, and logs committed changes on this node.
    pub async fn run(self, tick: Duration, shutdown: CancellationToken) {
        tokio::spawn(self.clone().watch_committed(shutdown.clone()));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading = None;
        let mut leader = self.inner.cluster.leader();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
                _ = self.inner.decide_now.notified() => {}
            }
            self.note_leader(&mut leader);
            self.round(&mut leading).await;
        }
    }

    /// Records a change of leader (from one known leader to another) in the history of
    /// every committed group, so that the switches it leads to read as such.
    fn note_leader(&self, last: &mut Option<u64>) {
        let Some(now) = self.inner.cluster.leader() else {
            return;
        };
        match *last {
            Some(from) if from != now => {
                let at = self.inner.clock.now_ms();
                let committed = self.inner.cluster.control().current();
                for group in committed.state.groups.keys() {
                    crate::election::record_in(
                        self.inner.store.as_ref(),
                        Change::LeaderChanged {
                            group: group.clone(),
                            from,
                            to: now,
                        },
                        at,
                    );
                }
            }
            _ => {}
        }
        *last = Some(now);
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
            .election
            .changes
            .with_label_values(&[change.reason_label()])
            .inc();
        crate::election::record_in(self.inner.store.as_ref(), change, now_ms);
    }

    /// Commits an operator override decided on `state`, which was built on `committed`.
    /// The group's pin goes first, then the promotion it caused, if any. Returns the group
    /// as committed.
    async fn commit_override(
        &self,
        group: &str,
        committed: &ControlState,
        state: &ElectionState,
        changes: Vec<Change>,
    ) -> Result<GroupView, ElectionError> {
        let now = self.inner.clock.now_ms();
        self.commit(override_requests(group, committed, state, changes, now))
            .await?;
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
        let role = role(&self.inner.cluster.control().current().state, &obs);
        if role == Role::Undecided {
            self.inner.decide_now.notify_one();
        }
        let mut seen = self.inner.seen.lock();
        seen.record(&obs, role, now);
        role
    }

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
            self.commit_override(
                group,
                &committed.state,
                &state,
                change.into_iter().collect(),
            )
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
                    expect: None,
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
            self.commit_override(group, &committed.state, &state, vec![change])
                .await
        })
    }

    fn history(&self, group: &str) -> Vec<HistoryEntry> {
        self.inner
            .store
            .as_ref()
            .map(|s| s.history(group))
            .unwrap_or_default()
    }

    fn record(&self, change: Change) {
        crate::election::record_in(self.inner.store.as_ref(), change, self.inner.clock.now_ms());
    }
}

/// The role of a write on a node whose applied state is `committed`. Only the committed
/// promoted source is forwarded. If nobody is promoted yet, the sender must retry.
pub(crate) fn role(committed: &ControlState, obs: &Observation<'_>) -> Role {
    match committed.promoted(obs.group) {
        Some(p) if p.source == obs.source => Role::Promoted,
        Some(_) => Role::Standby,
        None => Role::Undecided,
    }
}

/// The sources one node has seen writing. A follower reports them to the leader. A leader
/// adds them to the followers' reports.
#[derive(Debug, Default)]
pub(crate) struct LocalView(BTreeMap<(String, String), SourceView>);

impl LocalView {
    /// Records one write received at `now_ms` and the role it got.
    pub(crate) fn record(&mut self, obs: &Observation<'_>, role: Role, now_ms: u64) {
        self.0
            .entry((obs.group.to_owned(), obs.source.to_owned()))
            .or_insert_with(|| SourceView {
                first_seen_ms: now_ms,
                ..SourceView::default()
            })
            .record(obs, role, now_ms);
    }

    /// Every source seen within `forget_ms`. Older ones are forgotten.
    pub(crate) fn seen(&mut self, now_ms: u64, forget_ms: u64) -> Vec<Seen> {
        self.0
            .retain(|_, v| now_ms.saturating_sub(v.last_seen_ms) < forget_ms);
        self.0
            .iter()
            .map(|((group, source), view)| Seen {
                group: group.clone(),
                source: source.clone(),
                view: view.clone(),
            })
            .collect()
    }
}

/// The election as a node sees it: the committed decisions (promoted sources, pins) plus
/// the union of what the nodes saw (`seen`: its own view and the reports it holds).
///
/// A promoted source is compared by the weight of its latest write, as in the standalone
/// election. It is not compared by the weight it was promoted with. So a replica restarted
/// with a lower weight loses to a bigger standby. Only a write seen since its promotion
/// counts, because a node's older view of it may predate the weight it was promoted with.
///
/// A leader that took over at `took_over_ms` counts every committed promoted source as seen
/// at that time. Why: until the followers have reported for a whole expiry, the leader's
/// view cannot tell a silent source from two others. One writes only to other nodes. The
/// other has not reached this node since it restarted. Reports kept from an earlier term
/// do not help. A demotion on that view would fail over a source that is writing, and the
/// next report would promote it back.
///
/// The price: when the promoted source and the leader fail together, the source is demoted
/// one expiry after the new leader took over, not one expiry after its last write.
pub(crate) fn merge<'a>(
    expiry_ms: u64,
    committed: &ControlState,
    seen: impl IntoIterator<Item = &'a Seen>,
    took_over_ms: Option<u64>,
) -> ElectionState {
    let mut state = ElectionState::new(expiry_ms);
    for s in seen {
        state.see(&s.group, &s.source, &s.view);
    }
    for (group, gc) in &committed.groups {
        let promoted = gc.promoted.as_ref().map(|p| {
            let weight = state
                .groups()
                .get(group)
                .and_then(|g| g.sources.get(&p.source))
                .filter(|v| v.last_seen_ms >= p.since_ms)
                .map_or(p.weight, |v| v.weight);
            if let Some(at) = took_over_ms {
                let view = SourceView {
                    weight,
                    first_seen_ms: at,
                    last_seen_ms: at,
                    ..SourceView::default()
                };
                state.see(group, &p.source, &view);
            }
            PromotedView {
                source: p.source.clone(),
                weight,
                since_ms: p.since_ms,
            }
        });
        state.restore(group, promoted, gc.pin.clone());
    }
    state
}

/// One leader round at `now_ms`, for a leader that took over at `took_over_ms`. It rebuilds
/// the election from the committed state and what the nodes saw ([`merge`]). It applies
/// every rule ([`ElectionState::decide`]). Returns the commands to commit, in order.
///
/// For its first expiry, a new leader also holds back a bigger-weight takeover from a
/// promoted source that it has heard nothing of since it took over. The weight it would
/// compare with may be older than the source's latest write to other nodes.
pub(crate) fn decide<'a>(
    expiry_ms: u64,
    committed: &ControlState,
    seen: impl IntoIterator<Item = &'a Seen>,
    took_over_ms: u64,
    now_ms: u64,
) -> Vec<Request> {
    let seen: Vec<&Seen> = seen.into_iter().collect();
    let settling = now_ms < took_over_ms.saturating_add(expiry_ms);
    let heard_since_takeover = |group: &str, source: &str| {
        seen.iter()
            .any(|s| s.group == group && s.source == source && s.view.last_seen_ms >= took_over_ms)
    };
    let changes = merge(
        expiry_ms,
        committed,
        seen.iter().copied(),
        Some(took_over_ms),
    )
    .decide(now_ms)
    .into_iter()
    .filter(|change| match change {
        Change::Promoted {
            group,
            reason: Reason::BiggerWeight { previous, .. },
            ..
        } => !settling || heard_since_takeover(group, previous),
        _ => true,
    })
    .collect();
    requests(changes, committed, now_ms)
}

/// The raft commands that commit `changes`, decided at `now_ms` on `committed`, in order.
/// Each command expects its group as the commands before it leave the group ([`Expect`]).
/// So the batch lands whole only if nothing else changed the group in between.
pub(crate) fn requests(
    changes: Vec<Change>,
    committed: &ControlState,
    now_ms: u64,
) -> Vec<Request> {
    let mut scratch = committed.clone();
    changes
        .into_iter()
        .filter_map(|change| {
            let expect = Some(Expect::of(&scratch, change.group()));
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
                    at_ms: now_ms,
                    expect,
                },
                Change::Demoted { group, source, .. } => Request::Demote {
                    group,
                    source,
                    at_ms: now_ms,
                    expect,
                },
                Change::PinExpired { group, .. } => Request::SetPin {
                    group,
                    pin: None,
                    expect,
                },
                // Only the history holds these; the election never decides one.
                Change::Handover { .. } | Change::LeaderChanged { .. } => return None,
            };
            scratch.apply(&request);
            Some(request)
        })
        .collect()
}

/// The raft commands that commit an operator override decided on `state`, which was built
/// on `committed`. The group's pin comes first and is unconditional (the operator's word).
/// Then comes the promotion it caused, if any. That promotion expects the group as the pin
/// leaves it.
pub(crate) fn override_requests(
    group: &str,
    committed: &ControlState,
    state: &ElectionState,
    changes: Vec<Change>,
    now_ms: u64,
) -> Vec<Request> {
    let pin = Request::SetPin {
        group: group.to_owned(),
        pin: state.groups().get(group).and_then(|g| g.pin.clone()),
        expect: None,
    };
    let mut scratch = committed.clone();
    scratch.apply(&pin);
    let mut out = vec![pin];
    out.extend(requests(changes, &scratch, now_ms));
    out
}

#[cfg(test)]
mod tests;

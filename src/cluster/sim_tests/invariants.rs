//! The invariants. They are checked on every decision, on every committed entry and after
//! every step. The calm phase's convergence is checked at the end of a run.

use std::collections::BTreeSet;

use super::trace::note;
use super::world::{Sim, Source};
use super::{EXPIRY_MS, NODES, REPORT_MAX_AGE, SETTLE_MS};
use crate::cluster::reports::Seen;
use crate::cluster::types::{ControlState, Request, Response};
use crate::election::Reason;

fn promoted(state: &ControlState, group: &str) -> Option<String> {
    state.promoted(group).map(|p| p.source.clone())
}

impl Sim {
    /// The sources of `group` that the nodes could agree on in the calm phase. They follow
    /// from what the sources do and from the committed pin. Empty: nobody is to be
    /// promoted.
    fn expected(&self, group: &str) -> BTreeSet<String> {
        let writing: Vec<&Source> = self
            .sources
            .iter()
            .filter(|s| s.group == group && s.writing && s.reaches.contains(&true))
            .collect();
        let now = self.now;
        let pin = self
            .states
            .last()
            .and_then(|s| s.groups.get(group))
            .and_then(|g| g.pin.as_ref())
            .filter(|p| p.until_ms.is_none_or(|u| u > now));
        match pin {
            Some(p) if writing.iter().any(|s| s.name == p.source) => {
                BTreeSet::from([p.source.clone()])
            }
            // Under a pin whose source is silent, weights do not count.
            Some(_) => writing.iter().map(|s| s.name.clone()).collect(),
            None => {
                let best = writing.iter().map(|s| s.weight).max().unwrap_or(0);
                writing
                    .iter()
                    .filter(|s| s.weight == best)
                    .map(|s| s.name.clone())
                    .collect()
            }
        }
    }

    /// When a node decides, it promotes only a source that some node saw writing within
    /// the expiry. When the reason is a bigger weight, the weight is strictly bigger.
    pub(super) fn check_decided(&self, requests: &[Request]) {
        for r in requests {
            let Request::Promote {
                group,
                source,
                weight,
                reason,
                at_ms,
                ..
            } = r
            else {
                continue;
            };
            let last = self.last_write.get(&(group.clone(), source.clone()));
            if last.is_none_or(|l| at_ms.saturating_sub(*l) >= EXPIRY_MS) {
                self.fail(&format!(
                    "promoted {group}/{source}, whose latest write anywhere was at {last:?}"
                ));
            }
            if let Reason::BiggerWeight {
                previous_weight, ..
            } = reason
            {
                if weight <= previous_weight {
                    self.fail(&format!(
                        "{group}/{source} w{weight} took over from w{previous_weight} as bigger"
                    ));
                }
            }
        }
    }

    /// When the leader decides, it demotes a source only if neither its own view nor any
    /// report it still keeps shows the source writing within the expiry. A report
    /// delivered late must not hide a newer one.
    pub(super) fn check_demotions(&self, leader: usize, seen: &[Seen], requests: &[Request]) {
        let now = self.now;
        let max_age = REPORT_MAX_AGE.as_millis() as u64;
        for r in requests {
            let Request::Demote { group, source, .. } = r else {
                continue;
            };
            let key = (group.clone(), source.clone());
            let own = seen
                .iter()
                .filter(|s| s.group == *group && s.source == *source)
                .map(|s| s.view.last_seen_ms)
                .max();
            let heard = self.nodes[leader]
                .heard
                .get(&key)
                .filter(|(_, arrived)| now - arrived <= max_age)
                .map(|(last, _)| *last);
            let latest = own.max(heard).unwrap_or(0);
            if now - latest < EXPIRY_MS {
                self.fail(&format!(
                    "n{leader} demoted {group}/{source} although it heard of a write at \
                     {latest} (own view {own:?}, reports {heard:?})"
                ));
            }
        }
    }

    /// On every committed entry:
    /// - epochs move by one per change of the promoted source;
    /// - a promotion's reason describes the state it replaced. A stale decision must not
    ///   replace a newer one, so there is no double promotion;
    /// - a pin is honoured;
    /// - in the calm phase, a settled source that keeps writing stays promoted.
    pub(super) fn check_entry(
        &self,
        before: &ControlState,
        after: &ControlState,
        request: &Request,
        response: &Response,
    ) {
        for group in self.groups() {
            let (e0, e1) = (before.epoch(&group), after.epoch(&group));
            let (p0, p1) = (promoted(before, &group), promoted(after, &group));
            if e1 < e0 || e1 > e0 + 1 {
                self.fail(&format!("{group}: epoch {e0} -> {e1}"));
            }
            if (e1 == e0 + 1) != (p0 != p1) {
                self.fail(&format!(
                    "{group}: epoch {e0} -> {e1} but promoted {p0:?} -> {p1:?}"
                ));
            }
            if let Some(p) = after.promoted(&group) {
                if p.epoch != e1 {
                    self.fail(&format!(
                        "{group}: promoted at epoch {} in epoch {e1}",
                        p.epoch
                    ));
                }
            }
            if p0 != p1 {
                if let Some(settled) = self.settled.get(&group) {
                    if p0.as_ref() == Some(settled) {
                        self.fail(&format!(
                            "{group}: settled source {settled} lost its promotion while it kept \
                             writing (re-election)"
                        ));
                    }
                }
            }
        }
        let changed = matches!(response, Response::Group { changed: true, .. });
        if let (
            Request::Promote {
                group,
                source,
                reason,
                at_ms,
                ..
            },
            true,
        ) = (request, changed)
        {
            let previous = promoted(before, group);
            let consistent = match reason {
                Reason::NoPromotedSource | Reason::Pinned { previous: None } => previous.is_none(),
                Reason::BiggerWeight { previous: p, .. } | Reason::Failover { previous: p } => {
                    previous.as_ref() == Some(p)
                }
                Reason::Pinned { previous: Some(p) } => previous.as_ref() == Some(p),
            };
            if !consistent {
                self.fail(&format!(
                    "{group}: {source} promoted for {reason:?} over {previous:?} (a stale decision)"
                ));
            }
            let pin = before
                .groups
                .get(group)
                .and_then(|g| g.pin.as_ref())
                .filter(|p| p.until_ms.is_none_or(|u| u > *at_ms));
            if let Some(pin) = pin {
                if pin.source != *source && previous.is_some() {
                    self.fail(&format!(
                        "{group}: {source} took over from {previous:?} against the pin on {}",
                        pin.source
                    ));
                }
            }
        }
    }

    /// After every step, every node's state is the state of the log prefix it applied. In
    /// the calm phase, once settled, every node has an expected source promoted.
    pub(super) fn check(&mut self) {
        for (i, n) in self.nodes.iter().enumerate() {
            if n.state != self.states[n.applied] {
                self.fail(&format!(
                    "n{i} state differs from the log's after {} entries",
                    n.applied
                ));
            }
        }
        let Some(_) = self.calm_from else { return };
        if self.now < self.disturbed_ms + SETTLE_MS {
            return;
        }
        for group in self.groups() {
            let expected = self.expected(&group);
            for (i, n) in self.nodes.iter().enumerate() {
                let p = promoted(&n.state, &group);
                let ok = match &p {
                    None => expected.is_empty(),
                    Some(p) => expected.contains(p),
                };
                if !ok {
                    self.fail(&format!(
                        "{group}: n{i} has {p:?} promoted, expected one of {expected:?} \
                         (settled for {} ms)",
                        self.now - self.disturbed_ms
                    ));
                }
            }
            if let Some(p) = promoted(self.states.last().expect("state"), &group) {
                if !self.settled.contains_key(&group) {
                    note!(self, "{group} settled on {p}");
                    self.settled.insert(group.clone(), p);
                }
            }
        }
    }

    pub(super) fn check_converged(&mut self) {
        let behind: Vec<usize> = (0..NODES)
            .filter(|&i| self.nodes[i].applied < self.log.len())
            .collect();
        if !behind.is_empty() {
            self.fail(&format!("nodes {behind:?} did not apply the whole log"));
        }
        for group in self.groups() {
            if !self.settled.contains_key(&group) && !self.expected(&group).is_empty() {
                self.fail(&format!("{group} never settled"));
            }
        }
    }
}

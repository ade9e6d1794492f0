//! The simulated world: nodes, sources and their writes, operators, reports on the wire,
//! the nodes' rounds, and the step driver. The driver moves it all one [`STEP_MS`] at a
//! time. Raft is modelled in `raft.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::raft::Pending;
use super::rng::{Faults, Rng, CALM, CHAOS};
use super::trace::{note, show, Trace};
use super::{CALM_MS, CHAOS_MS, EXPIRY_MS, FORGET_MS, NODES, REPORT_MAX_AGE, STEP_MS, TICK_MS};
use crate::cluster::promotions::{self, LocalView};
use crate::cluster::reports::{Report, Reports, Seen};
use crate::cluster::types::{ControlState, Request};
use crate::election::state::ElectionState;
use crate::election::{ElectionError, Observation};

/// One Prometheus replica.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) group: String,
    pub(super) name: String,
    pub(super) weight: u64,
    pub(super) writing: bool,
    /// Which nodes its writes reach.
    pub(super) reaches: Vec<bool>,
}

pub(super) struct Node {
    pub(super) up: bool,
    /// Log entries applied.
    pub(super) applied: usize,
    pub(super) state: ControlState,
    local: LocalView,
    reports: Reports,
    /// Its ticks fire when `now % TICK_MS == phase_ms`.
    phase_ms: u64,
    /// As the round keeps it: the term it leads in and when it took over. A round as
    /// follower resets it.
    leading: Option<(u64, u64)>,
    /// The leader it sends reports to.
    pub(super) knows_leader: Option<usize>,
    /// Ground truth of what reached it: per source, the newest write that any report it
    /// received carried, and when that report arrived.
    pub(super) heard: BTreeMap<(String, String), (u64, u64)>,
}

/// A report on the wire.
struct Message {
    sent_ms: u64,
    at_ms: u64,
    seq: u64,
    to: usize,
    report: Report,
}

pub(super) struct Sim {
    pub(super) seed: u64,
    pub(super) rng: Rng,
    pub(super) faults: Faults,
    pub(super) now: u64,
    base: Instant,
    pub(super) nodes: Vec<Node>,
    pub(super) sources: Vec<Source>,
    pub(super) leader: Option<usize>,
    pub(super) term: u64,
    pub(super) leaderless_until: u64,
    pub(super) pending: Vec<Pending>,
    wire: Vec<Message>,
    wire_seq: u64,
    /// The committed log and the state after each prefix (`states[i]`: after `i` entries).
    pub(super) log: Vec<Request>,
    pub(super) states: Vec<ControlState>,
    /// Ground truth: the latest write any node received from each (group, source).
    pub(super) last_write: BTreeMap<(String, String), u64>,
    /// Calm phase: when it started, the last disturbance, and the source each group
    /// settled on. That source must stay promoted while it keeps writing.
    pub(super) calm_from: Option<u64>,
    pub(super) disturbed_ms: u64,
    pub(super) settled: BTreeMap<String, String>,
    /// How the run is traced: not at all (fast), kept for the failure message, or also
    /// printed while the run goes.
    pub(super) tracing: bool,
    pub(super) verbose: bool,
    pub(super) trace: Vec<String>,
}

impl Sim {
    pub(super) fn new(seed: u64, trace: Trace) -> Sim {
        let mut rng = Rng(seed);
        let nodes = (0..NODES)
            .map(|_| Node {
                up: true,
                applied: 0,
                state: ControlState::default(),
                local: LocalView::default(),
                reports: Reports::default(),
                phase_ms: rng.below(TICK_MS / STEP_MS) * STEP_MS,
                leading: None,
                knows_leader: None,
                heard: BTreeMap::new(),
            })
            .collect();
        let mut sources = Vec::new();
        for g in 0..1 + rng.below(2) {
            for s in 0..2 + rng.below(3) {
                sources.push(Source {
                    group: format!("g{g}"),
                    name: format!("s{s}"),
                    weight: 1 + rng.below(3),
                    writing: rng.chance(0.8),
                    reaches: (0..NODES).map(|_| rng.chance(0.8)).collect(),
                });
            }
        }
        let mut sim = Sim {
            seed,
            rng,
            faults: CHAOS,
            now: 1_000_000,
            base: Instant::now(),
            nodes,
            sources,
            leader: None,
            term: 0,
            leaderless_until: 0,
            pending: Vec::new(),
            wire: Vec::new(),
            wire_seq: 0,
            log: Vec::new(),
            states: vec![ControlState::default()],
            last_write: BTreeMap::new(),
            calm_from: None,
            disturbed_ms: 0,
            settled: BTreeMap::new(),
            tracing: trace != Trace::Off,
            verbose: trace == Trace::Print,
            trace: Vec::new(),
        };
        for i in 0..sim.sources.len() {
            let s = &sim.sources[i];
            note!(
                sim,
                "source {}/{} w{} writing {} reaches {:?}",
                s.group,
                s.name,
                s.weight,
                s.writing,
                s.reaches
            );
        }
        sim
    }

    /// The chaos phase, then the calm phase, which the leader leaves twice (at fixed times,
    /// so every run checks that a new leader keeps the settled source).
    pub(super) fn run(&mut self) {
        let chaos_end = self.now + CHAOS_MS;
        while self.now < chaos_end {
            self.step();
        }
        self.calm();
        let calm_from = self.now;
        while self.now < calm_from + CALM_MS {
            if self.now == calm_from + 20_000 || self.now == calm_from + 32_000 {
                if let Some(leader) = self.leader {
                    self.step_down(leader);
                }
            }
            self.step();
        }
        self.check_converged();
    }

    fn step(&mut self) {
        self.now += STEP_MS;
        self.leadership();
        self.crashes();
        self.sources_change();
        if self.rng.chance(self.faults.operator) {
            let pin = self.rng.chance(0.5);
            self.operator(pin);
        }
        self.writes();
        self.deliver();
        self.commit();
        self.apply();
        self.rounds();
        self.check();
    }

    pub(super) fn up_nodes(&self) -> Vec<usize> {
        (0..NODES).filter(|&i| self.nodes[i].up).collect()
    }

    fn crashes(&mut self) {
        for i in 0..NODES {
            if self.nodes[i].up {
                let others_down = self.nodes.iter().any(|n| !n.up);
                if !others_down && self.rng.chance(self.faults.crash) {
                    self.crash(i);
                }
            } else if self.rng.chance(0.2) {
                self.restart(i);
            }
        }
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.pending.retain(|p| p.from != i);
        note!(self, "n{i} crashes");
        if self.leader == Some(i) {
            self.step_down(i);
        }
    }

    /// A restarted node keeps its raft state (the applied control state) and nothing else.
    fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.up = true;
        n.local = LocalView::default();
        n.reports = Reports::default();
        n.leading = None;
        n.knows_leader = None;
        n.heard.clear();
        note!(self, "n{i} restarts");
    }

    fn sources_change(&mut self) {
        for s in 0..self.sources.len() {
            if self.rng.chance(self.faults.toggle) {
                let src = &mut self.sources[s];
                src.writing = !src.writing;
                note!(self, "{}/{} writing {}", src.group, src.name, src.writing);
            }
            if self.rng.chance(self.faults.reweight) {
                let weight = 1 + self.rng.below(3);
                let src = &mut self.sources[s];
                src.weight = weight;
                note!(
                    self,
                    "{}/{} restarts with weight {weight}",
                    src.group,
                    src.name
                );
            }
            if self.rng.chance(self.faults.reroute) {
                let reaches: Vec<bool> = (0..NODES).map(|_| self.rng.chance(0.7)).collect();
                let src = &mut self.sources[s];
                src.reaches = reaches;
                note!(self, "{}/{} reaches {:?}", src.group, src.name, src.reaches);
            }
        }
    }

    pub(super) fn groups(&self) -> BTreeSet<String> {
        self.sources.iter().map(|s| s.group.clone()).collect()
    }

    /// An operator call on a random node, as the admin API runs it there. With `pin`, a
    /// pin; otherwise an unpin or a failover.
    fn operator(&mut self, pin: bool) {
        let up = self.up_nodes();
        let at = up[self.rng.below(up.len() as u64) as usize];
        let s = self.rng.below(self.sources.len() as u64) as usize;
        let (group, source) = (self.sources[s].group.clone(), self.sources[s].name.clone());
        let committed = self.nodes[at].state.clone();
        let mut election = self.view_of(at);
        let now = self.now;
        let (what, requests) = if pin {
            // A pin with an end ends within the chaos phase, because in the calm phase
            // nothing may change by itself.
            let until = self
                .rng
                .chance(0.5)
                .then(|| now + 1_000 + self.rng.below(20_000))
                .filter(|u| self.calm_from.is_none() && *u < self.chaos_end());
            let r = election.pin(&group, &source, until, now).map(|c| {
                let changes = c.into_iter().collect();
                promotions::override_requests(&group, &committed, &election, changes, now)
            });
            (format!("pin {group}/{source} until {until:?}"), r)
        } else if self.rng.chance(0.5) {
            let r = match committed.groups.get(&group).and_then(|g| g.pin.as_ref()) {
                Some(_) => Ok(vec![Request::SetPin {
                    group: group.clone(),
                    pin: None,
                    expect: None,
                }]),
                None => Err(ElectionError::NotPinned(group.clone())),
            };
            (format!("unpin {group}"), r)
        } else {
            let r = election.failover(&group, None, now).map(|c| {
                promotions::override_requests(&group, &committed, &election, vec![c], now)
            });
            (format!("failover {group}"), r)
        };
        match requests {
            Ok(requests) => {
                note!(
                    self,
                    "n{at} operator {what}: {:?}",
                    requests.iter().map(show).collect::<Vec<_>>()
                );
                self.check_decided(&requests);
                self.pending.push(Pending {
                    from: at,
                    requests: requests.into(),
                    round: false,
                });
            }
            Err(e) => note!(self, "n{at} operator {what}: refused: {e}"),
        }
    }

    fn chaos_end(&self) -> u64 {
        1_000_000 + CHAOS_MS
    }

    /// What node `i` knows: its own view and the reports it holds.
    fn seen_by(&mut self, i: usize) -> Vec<Seen> {
        let now = self.now;
        let at = self.base + Duration::from_millis(now);
        let n = &mut self.nodes[i];
        let mut seen = n.local.seen(now, FORGET_MS);
        seen.extend(n.reports.fresh_at(REPORT_MAX_AGE, at));
        seen
    }

    fn view_of(&mut self, i: usize) -> ElectionState {
        let seen = self.seen_by(i);
        promotions::merge(EXPIRY_MS, &self.nodes[i].state, seen.iter(), None)
    }

    fn writes(&mut self) {
        for s in &self.sources {
            if !s.writing {
                continue;
            }
            for (i, n) in self.nodes.iter_mut().enumerate() {
                if !n.up || !s.reaches[i] || !self.rng.chance(0.8) {
                    continue;
                }
                let obs = Observation {
                    protocol: Default::default(),
                    group: &s.group,
                    source: &s.name,
                    weight: s.weight,
                    samples: 1,
                    data_ts: Some(self.now as i64 - 100),
                };
                let role = promotions::role(&n.state, &obs);
                n.local.record(&obs, role, self.now);
                self.last_write
                    .insert((s.group.clone(), s.name.clone()), self.now);
            }
        }
    }

    fn send(&mut self, from: usize, report: Report) {
        let Some(to) = self.nodes[from].knows_leader.filter(|l| *l != from) else {
            return;
        };
        if self.rng.chance(self.faults.loss) {
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at_ms = self.now + self.rng.below(self.faults.max_delay_ms + 1);
            self.wire_seq += 1;
            self.wire.push(Message {
                sent_ms: self.now,
                at_ms,
                seq: self.wire_seq,
                to,
                report: report.clone(),
            });
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let (mut due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|m| m.at_ms <= now);
        self.wire = rest;
        due.sort_by_key(|m| (m.at_ms, m.seq));
        for m in due {
            note!(
                self,
                "n{} gets n{}'s report of {}: {:?}",
                m.to,
                m.report.node,
                m.sent_ms - 1_000_000,
                m.report
                    .seen
                    .iter()
                    .map(|s| format!("{}/{}@{}", s.group, s.source, s.view.last_seen_ms))
                    .collect::<Vec<_>>()
            );
            let n = &mut self.nodes[m.to];
            if n.up {
                for s in &m.report.seen {
                    let key = (s.group.clone(), s.source.clone());
                    let last = s.view.last_seen_ms;
                    if n.heard.get(&key).is_none_or(|(l, _)| *l < last) {
                        n.heard.insert(key, (last, now));
                    }
                }
                n.reports
                    .insert_at(m.report, self.base + Duration::from_millis(now));
            }
        }
    }

    /// Every node's tick. The leader decides and commits, one round at a time. A follower
    /// reports to the leader it knows.
    fn rounds(&mut self) {
        for i in 0..NODES {
            let n = &self.nodes[i];
            if !n.up || self.now % TICK_MS != n.phase_ms {
                continue;
            }
            if self.pending.iter().any(|p| p.from == i && p.round) {
                continue;
            }
            if self.leader == Some(i) {
                let took_over_ms = match self.nodes[i].leading {
                    Some((term, since)) if term == self.term => since,
                    _ => {
                        // ensure_linearizable: catch up with the log first.
                        let behind = self.log.len() - self.nodes[i].applied;
                        self.apply_on(i, behind);
                        self.nodes[i].leading = Some((self.term, self.now));
                        self.now
                    }
                };
                let seen = self.seen_by(i);
                let requests = promotions::decide(
                    EXPIRY_MS,
                    &self.nodes[i].state,
                    seen.iter(),
                    took_over_ms,
                    self.now,
                );
                if requests.is_empty() {
                    continue;
                }
                note!(
                    self,
                    "n{i} decides {:?}",
                    requests.iter().map(show).collect::<Vec<_>>()
                );
                self.check_decided(&requests);
                self.check_demotions(i, &seen, &requests);
                self.pending.push(Pending {
                    from: i,
                    requests: requests.into(),
                    round: true,
                });
            } else {
                self.nodes[i].leading = None;
                let seen = self.nodes[i].local.seen(self.now, FORGET_MS);
                let report = Report {
                    node: i as u64,
                    seen,
                };
                self.send(i, report);
            }
        }
    }

    fn calm(&mut self) {
        self.faults = CALM;
        self.calm_from = Some(self.now);
        self.disturbed_ms = self.now;
        note!(self, "calm from now on");
        for i in 0..NODES {
            if !self.nodes[i].up {
                self.restart(i);
            }
        }
        for s in 0..self.sources.len() {
            if self.sources[s].writing && !self.sources[s].reaches.contains(&true) {
                let i = self.rng.below(NODES as u64) as usize;
                self.sources[s].reaches[i] = true;
                let src = &self.sources[s];
                note!(self, "{}/{} reaches {:?}", src.group, src.name, src.reaches);
            }
        }
        if self.rng.chance(0.3) {
            self.operator(true);
        }
    }
}

//! Raft as modelled: one committed log, and a leader that changes, with gaps between
//! leaders. A node's in-flight commands still land after it lost the lead, as a forwarded
//! write does.

use std::collections::VecDeque;

use super::trace::{note, show};
use super::world::Sim;
use super::{NODES, STEP_MS};
use crate::cluster::types::Request;

/// Commands one node is committing, one after the other (a round, or an operator call).
pub(super) struct Pending {
    pub(super) from: usize,
    pub(super) requests: VecDeque<Request>,
    pub(super) round: bool,
}

impl Sim {
    pub(super) fn leadership(&mut self) {
        match self.leader {
            None if self.now >= self.leaderless_until => {
                let up = self.up_nodes();
                let new = up[self.rng.below(up.len() as u64) as usize];
                self.leader = Some(new);
                self.term += 1;
                self.nodes[new].knows_leader = Some(new);
                self.disturbed_ms = self.now;
                note!(self, "n{new} becomes leader");
            }
            Some(old) if self.rng.chance(self.faults.leader_change) => {
                self.step_down(old);
            }
            _ => {}
        }
        for i in 0..NODES {
            if self.nodes[i].knows_leader != self.leader
                && self.rng.chance(self.faults.learn_leader)
            {
                self.nodes[i].knows_leader = self.leader;
            }
        }
    }

    pub(super) fn step_down(&mut self, old: usize) {
        self.leader = None;
        self.leaderless_until = self.now + STEP_MS * (1 + self.rng.below(4));
        note!(self, "n{old} loses the lead");
    }

    /// In-flight commands land in the log one at a time per caller, in a random interleaving
    /// of callers, whoever leads now (a follower forwards to the leader).
    pub(super) fn commit(&mut self) {
        if self.leader.is_none() || self.pending.is_empty() {
            return;
        }
        let start = self.rng.below(self.pending.len() as u64) as usize;
        self.pending.rotate_left(start);
        let mut k = 0;
        while k < self.pending.len() {
            if !self.rng.chance(self.faults.commit) {
                k += 1;
                continue;
            }
            let from = self.pending[k].from;
            let request = self.pending[k].requests.pop_front().expect("non-empty");
            if self.rng.chance(self.faults.commit_fail) {
                let landed = self.rng.chance(0.5);
                note!(
                    self,
                    "n{from} write fails (committed: {landed}), batch dropped: {}",
                    show(&request)
                );
                if landed {
                    self.append(request, from);
                }
                self.pending[k].requests.clear();
            } else {
                self.append(request, from);
            }
            if self.pending[k].requests.is_empty() {
                self.pending.remove(k);
            } else {
                k += 1;
            }
        }
    }

    fn append(&mut self, request: Request, from: usize) {
        let before = self.states.last().expect("initial state").clone();
        let mut after = before.clone();
        let response = after.apply(&request);
        note!(
            self,
            "commit #{} from n{from}: {} -> {response:?}",
            self.log.len() + 1,
            show(&request)
        );
        self.check_entry(&before, &after, &request, &response);
        self.log.push(request);
        self.states.push(after);
    }

    pub(super) fn apply(&mut self) {
        for i in 0..NODES {
            if !self.nodes[i].up {
                continue;
            }
            let behind = self.log.len() - self.nodes[i].applied;
            let count = if self.leader == Some(i) || !self.faults.apply_lag {
                behind
            } else {
                self.rng.below(behind as u64 + 1) as usize
            };
            self.apply_on(i, count);
        }
    }

    pub(super) fn apply_on(&mut self, i: usize, count: usize) {
        let n = &mut self.nodes[i];
        for request in &self.log[n.applied..n.applied + count] {
            n.state.apply(request);
        }
        n.applied += count;
    }
}

//! How a run is traced: the [`note!`] macro, the trace kept for a failure, the failure
//! report, and how commands read in the trace.

use std::fmt::Write as _;

use super::world::Sim;
use crate::cluster::types::{Expect, Request};

/// Adds a line to the run's trace. The line is formatted only when the run keeps a trace.
macro_rules! note {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.tracing {
            let line = format!($($arg)*);
            $sim.push_trace(line);
        }
    };
}
pub(super) use note;

/// Whether a run keeps a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trace {
    /// None: the fast way to run many seeds.
    Off,
    /// Kept, shown when an invariant fails.
    Keep,
    /// Kept and printed as it goes.
    Print,
}

pub(super) fn show(r: &Request) -> String {
    match r {
        Request::Promote {
            group,
            source,
            weight,
            reason,
            at_ms,
            expect,
        } => format!(
            "promote {group}/{source} w{weight} {reason:?} at {at_ms} {}",
            show_expect(expect)
        ),
        Request::Demote {
            group,
            source,
            at_ms,
            expect,
        } => format!("demote {group}/{source} at {at_ms} {}", show_expect(expect)),
        Request::SetPin { group, pin, expect } => format!(
            "pin {group} {:?} {}",
            pin.as_ref().map(|p| (&p.source, p.kind, p.until_ms)),
            show_expect(expect)
        ),
        Request::Watermark { .. } => "watermark".into(),
    }
}

fn show_expect(expect: &Option<Expect>) -> String {
    match expect {
        None => "(unconditional)".into(),
        Some(e) => format!(
            "(if epoch {} promoted {:?} pin {:?})",
            e.epoch,
            e.promoted,
            e.pin.as_ref().map(|p| &p.source)
        ),
    }
}

impl Sim {
    pub(super) fn push_trace(&mut self, line: String) {
        let line = format!("t={:>6} {line}", self.now - 1_000_000);
        if self.verbose {
            println!("{line}");
        }
        self.trace.push(line);
    }

    pub(super) fn fail(&self, what: &str) -> ! {
        if !self.tracing {
            panic!("simulation seed {} failed: {what}", self.seed);
        }
        let mut out = String::new();
        let from = self.trace.len().saturating_sub(400);
        for line in &self.trace[from..] {
            let _ = writeln!(out, "  {line}");
        }
        panic!(
            "simulation seed {} failed at t={}: {what}\n\
             replay: HIGHLANDER_SIM_SEED={} cargo test --lib cluster::sim_tests -- --nocapture\n\
             trace (last {} lines):\n{out}",
            self.seed,
            self.now - 1_000_000,
            self.seed,
            self.trace.len() - from
        );
    }
}

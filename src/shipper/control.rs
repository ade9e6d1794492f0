//! Operator controls of one endpoint worker: pause/resume and quarantine replays. Every
//! change bumps a watch channel. The channel wakes the worker, also in the middle of a
//! retry.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

/// Shared between the worker and the admin handlers.
pub struct EndpointControl {
    paused: AtomicBool,
    replays: Mutex<VecDeque<u64>>,
    changed: watch::Sender<u64>,
}

impl EndpointControl {
    /// A running (not paused) endpoint.
    pub fn new() -> Self {
        EndpointControl {
            paused: AtomicBool::new(false),
            replays: Mutex::new(VecDeque::new()),
            changed: watch::channel(0).0,
        }
    }

    /// A receiver that changes on every control change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes the worker to look at the controls and its cursor again.
    pub fn poke(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Whether sending is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Pauses or resumes. Returns the previous value.
    pub fn set_paused(&self, paused: bool) -> bool {
        let was = self.paused.swap(paused, Ordering::AcqRel);
        self.poke();
        was
    }

    /// Queues a quarantined batch for replay.
    pub fn replay(&self, seq: u64) {
        let mut q = self.replays.lock();
        if !q.contains(&seq) {
            q.push_back(seq);
        }
        drop(q);
        self.poke();
    }

    pub(super) fn next_replay(&self) -> Option<u64> {
        self.replays.lock().pop_front()
    }

    pub(super) fn requeue_replay(&self, seq: u64) {
        self.replays.lock().push_front(seq);
    }
}

impl Default for EndpointControl {
    fn default() -> Self {
        Self::new()
    }
}

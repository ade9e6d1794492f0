//! The WAL's own background work: the group commit's flusher ([`super::commit`]) and the
//! collector ([`super::gc`]). The WAL starts and stops both.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::gc::run_collector;
use super::log::Wal;

/// The running tasks of a WAL.
#[must_use = "await `stopped` after the shutdown: it holds the final flush"]
pub struct WalTasks {
    flusher: JoinHandle<()>,
    collector: JoinHandle<()>,
}

impl Wal {
    /// Starts the flusher and the collector. Both run until `shutdown`. Then the flusher
    /// flushes one last time. In `sync` mode, the appends of a WAL that was not started
    /// wait for their flush forever.
    pub fn start(&self, shutdown: &CancellationToken) -> WalTasks {
        let config = self.config();
        let flusher = self.inner.flusher.start(
            Arc::new(self.clone()),
            config.durability,
            config.flush_interval,
            shutdown.clone(),
        );
        let collector = tokio::spawn(run_collector(self.clone(), shutdown.clone()));
        WalTasks { flusher, collector }
    }
}

impl WalTasks {
    /// Waits for both tasks to end after the shutdown, the final flush included. Returns
    /// `false` when `deadline` came first.
    pub async fn stopped(self, deadline: tokio::time::Instant) -> bool {
        let both = async {
            let (flusher, collector) = tokio::join!(self.flusher, self.collector);
            for (task, result) in [("flusher", flusher), ("collector", collector)] {
                if let Err(e) = result {
                    tracing::error!(task, error = %e, "wal: a task ended abnormally");
                }
            }
        };
        tokio::time::timeout_at(deadline, both).await.is_ok()
    }
}

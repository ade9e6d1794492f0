//! Shipper: delivers buffered records to every storage endpoint.
//!
//! One worker per endpoint, each with its own durable cursor in the WAL, so a slow or dead
//! storage never slows the others. Within an endpoint, records go out one at a time in
//! sequence order: per series, samples reach the storage in timestamp order.
//!
//! Outcomes (see [`retry`]): 2xx moves the cursor; 5xx, 429 and network errors are retried
//! with capped exponential backoff and full jitter, honouring `Retry-After`, forever; 413
//! splits the batch in halves; any other 4xx is permanent: the batch is quarantined in the
//! WAL (kept, inspectable), counted, logged, and the cursor moves on.

pub mod client;
pub mod retry;
mod split;
pub mod status;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use client::{Auth, ClientError, EndpointConfig};
pub use status::{EndpointState, EndpointStatus};

use crate::wal::Wal;

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    /// First wait after a failure.
    pub initial: Duration,
    /// Longest wait between attempts.
    pub max: Duration,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// The endpoint workers. A cheap clone.
#[derive(Clone)]
pub struct Shipper {
    statuses: Arc<Vec<Arc<Mutex<EndpointStatus>>>>,
}

impl Shipper {
    /// Builds every client, then spawns one worker per endpoint on the current runtime.
    pub fn start(
        endpoints: &[EndpointConfig],
        retry: RetryConfig,
        wal: &Wal,
        shutdown: &CancellationToken,
    ) -> Result<(Shipper, Vec<JoinHandle<()>>), ClientError> {
        let clients = endpoints
            .iter()
            .map(client::EndpointClient::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut statuses = Vec::new();
        let mut tasks = Vec::new();
        for (cfg, client) in endpoints.iter().zip(clients) {
            let status = Arc::new(Mutex::new(EndpointStatus::new(
                cfg.name.clone(),
                cfg.display_url(),
            )));
            statuses.push(status.clone());
            let worker = worker::Worker {
                name: cfg.name.clone(),
                client,
                wal: wal.clone(),
                status,
                backoff: retry::Backoff::new(retry.initial, retry.max, retry.max_retry_after),
                shutdown: shutdown.clone(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        Ok((
            Shipper {
                statuses: Arc::new(statuses),
            },
            tasks,
        ))
    }

    /// Every endpoint's status, in configuration order.
    pub fn statuses(&self) -> Vec<EndpointStatus> {
        self.statuses
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }
}

//! Who ships, and from where, in cluster mode.
//!
//! Every node buffers the promoted source's writes. Only the leader ships, and only while
//! its lease is fresh: a majority acknowledged it within the lease. So two nodes never
//! ship at once for longer than a lease.
//!
//! About once a second, the leader commits each endpoint's shipped watermark: the newest
//! sample time delivered. Followers move their cursors up to the first record that holds a
//! sample at or after `watermark − overlap`. Their buffer is then collected. A node that
//! becomes leader also puts each cursor there before it ships.
//!
//! The overlap covers records that arrive out of data-time order (several Prometheus
//! shards, retries). A follower that trims may drop a record that reached it more than
//! `overlap` later, in data time, than newer records the leader already shipped. The price
//! of the overlap is at-least-once delivery: after a leader change, up to `overlap` of data
//! is sent again. The samples are identical, and storages keep one.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::types::Request;
use super::Cluster;
use crate::clock::{Clock, SystemClock};
use crate::shipper::Shipper;
use crate::wal::Wal;

/// How often leadership is checked.
const CHECK: Duration = Duration::from_millis(100);
/// How often watermarks are committed (leader) or applied (followers).
const WATERMARK_EVERY: Duration = Duration::from_secs(1);

/// Opens and closes the shipping `gate` with leadership. Commits or applies watermarks.
pub async fn run(
    cluster: Cluster,
    wal: Wal,
    shipper: Shipper,
    overlap: Duration,
    gate: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let overlap_ms = overlap.as_millis() as i64;
    let mut interval = tokio::time::interval(CHECK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_watermark = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                gate.send_replace(false);
                return;
            }
            _ = interval.tick() => {}
        }
        let leading = cluster.leader_lease().is_some();
        let open = *gate.borrow();
        if leading && !open {
            if let Err(e) = cluster.ensure_linearizable().await {
                tracing::debug!(error = %e, "cluster: leadership not confirmed yet");
                continue;
            }
            resume(&cluster, &wal, &shipper, overlap_ms);
            gate.send_replace(true);
            tracing::info!(
                node = cluster.node_id(),
                term = cluster.term(),
                "cluster: this node leads and ships"
            );
        } else if !leading && open {
            gate.send_replace(false);
            tracing::info!(node = cluster.node_id(), leader = ?cluster.leader(), "cluster: this node no longer leads; shipping stopped");
        }
        if last_watermark.elapsed() < WATERMARK_EVERY {
            continue;
        }
        last_watermark = tokio::time::Instant::now();
        if leading && *gate.borrow() {
            // Bounded by the lease. Without a quorum, the commit waits for the write
            // timeout (5 s), but the gate must close when the lease ends, not later.
            let lease = cluster.leader_lease().unwrap_or_default();
            let _ = tokio::time::timeout(lease, commit_watermarks(&cluster, &shipper)).await;
        } else if !leading {
            trim(&cluster, &wal, &shipper, overlap_ms);
        }
    }
}

/// New leader: every endpoint starts at the committed watermark minus the overlap.
fn resume(cluster: &Cluster, wal: &Wal, shipper: &Shipper, overlap_ms: i64) {
    let control = cluster.control().current();
    for name in shipper.names() {
        let Some(w) = control.state.watermark(&name) else {
            continue;
        };
        let seq = wal.seq_at_data_ts(w.saturating_sub(overlap_ms));
        match shipper.reposition(&name, seq) {
            Ok(m) => {
                tracing::info!(endpoint = %name, watermark = w, from = m.from, to = m.to, "cluster: endpoint resumes from the committed watermark minus the overlap")
            }
            Err(e) => {
                tracing::error!(endpoint = %name, error = %e, "cluster: cannot resume endpoint")
            }
        }
    }
}

/// Leader: commits each endpoint's shipped watermark when it moved.
async fn commit_watermarks(cluster: &Cluster, shipper: &Shipper) {
    let control = cluster.control().current();
    for status in shipper.statuses() {
        let Some(ts) = status.shipped_data_ts else {
            continue;
        };
        if control
            .state
            .watermark(&status.name)
            .is_some_and(|w| w >= ts)
        {
            continue;
        }
        let request = Request::Watermark {
            endpoint: status.name.clone(),
            data_ts: ts,
            at_ms: SystemClock.now_ms(),
        };
        if let Err(e) = cluster.write(request).await {
            tracing::debug!(endpoint = %status.name, error = %e, "cluster: watermark not committed");
        }
    }
}

/// Follower: drops what the leader shipped. The cursor moves forward to
/// `watermark − overlap`.
fn trim(cluster: &Cluster, wal: &Wal, shipper: &Shipper, overlap_ms: i64) {
    let control = cluster.control().current();
    for name in shipper.names() {
        let Some(w) = control.state.watermark(&name) else {
            continue;
        };
        let seq = wal.seq_at_data_ts(w.saturating_sub(overlap_ms));
        if wal.cursor(&name).is_ok_and(|c| c < seq) {
            if let Err(e) = shipper.reposition(&name, seq) {
                tracing::error!(endpoint = %name, error = %e, "cluster: cannot trim below the watermark");
            }
        }
    }
}

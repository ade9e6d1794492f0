//! What leaves the buffer. Two kinds of records leave it:
//! - records that every endpoint took (below the slowest cursor);
//! - records that the size and age limits drop as data loss. The drop moves lagging
//!   cursors up.
//!
//! A removal has two steps ([`Wal::forget_below`], then [`Wal::delete_segments`]):
//! 1. Under the log lock, the WAL writes the high-water mark and the new floor to sled.
//!    Then it removes the records from the index and the byte count.
//! 2. Without the lock, the WAL frees the disk space. Once the floor has passed all of a
//!    segment file, it deletes the file whole or keeps it as the spare for the next
//!    segment (see `segments/`).
//!
//! So up to a segment of forgotten records stays on disk for a while. Readers and recovery
//! never see them, because recovery starts at the persisted floor.
//!
//! # Invariant
//! A segment is deleted only after a sled flush has made the floor and the high-water mark
//! durable. So a start after a crash never finds the records gone while the high-water
//! mark is behind them. Otherwise the WAL would hand out their sequences again, below the
//! cursors.
//!
//! The collector ([`run_collector`]) runs soon after a cursor moves, not on a slow timer.
//! So the floor follows the shippers closely, and a finished segment is deleted at once.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::index::{be, FIRST_SEQ, NEXT_SEQ};
use super::log::Log;
use super::{Wal, WalError};
use crate::metrics::METRICS;

/// The age limit is checked this often even when no cursor moves.
const AGE_CHECK: Duration = Duration::from_secs(1);

/// The shortest time between two passes. A busy shipper's many small cursor moves then
/// share one deletion.
const MIN_GAP: Duration = Duration::from_millis(5);

/// Until `shutdown`: deletes what every endpoint took, soon after a cursor moves, and
/// enforces the age limits of the buffer and of the quarantine.
pub async fn run_collector(wal: Wal, shutdown: CancellationToken) {
    let mut age_check = tokio::time::interval(AGE_CHECK);
    age_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let tick = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = age_check.tick() => true,
            _ = wal.inner.cursor_moved.notified() => false,
        };
        let w = wal.clone();
        let collect = move || {
            w.collect_garbage()?;
            // The quarantine's age limit: once per tick, not at every cursor move.
            if tick {
                w.collect_quarantine()?;
            }
            Ok::<_, WalError>(())
        };
        match tokio::task::spawn_blocking(collect).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "wal: garbage collection failed"),
            Err(e) => tracing::error!(error = %e, "wal: garbage collection task failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(MIN_GAP) => {}
        }
    }
}

impl Wal {
    /// Deletes records every endpoint took, and enforces the age limit (blocking).
    pub fn collect_garbage(&self) -> Result<(), WalError> {
        let mut log = self.lock();
        let mut taken = None;
        if !log.cursors.is_empty() {
            let slowest = log.cursors.values().copied().min().unwrap_or(log.first_seq);
            taken = self.forget_below(&mut log, slowest)?;
        }
        let max_age_ms = self.inner.config.max_age.as_millis() as u64;
        let cutoff = self.inner.clock.now_ms().saturating_sub(max_age_ms);
        let old = log
            .index
            .iter()
            .take_while(|e| e.received_ms < cutoff)
            .count() as u64;
        let mut aged = None;
        if old > 0 {
            let upto = log.first_seq + old;
            aged = self.evict(&mut log, upto, "age")?;
        }
        drop(log);
        // When the age limit's floor moved, it is above the cursors' floor.
        self.delete_segments(aged.or(taken))
    }

    /// Removes every record below `upto` as data loss (limits) and moves the cursors that
    /// are behind it. Returns the new floor. The caller still deletes its segments with
    /// [`Wal::delete_segments`] (see [`Wal::forget_below`]).
    pub(super) fn evict(
        &self,
        log: &mut Log,
        upto: u64,
        why: &'static str,
    ) -> Result<Option<u64>, WalError> {
        if upto <= log.first_seq {
            return Ok(None);
        }
        let records = upto - log.first_seq;
        let mut lost_by_endpoints = 0u64;
        let Log {
            cursors, dropped, ..
        } = &mut *log;
        for (name, cursor) in cursors.iter_mut() {
            if *cursor < upto {
                let lost = upto - *cursor;
                lost_by_endpoints += lost;
                *dropped.entry(name.clone()).or_default() += lost;
                *cursor = upto;
                self.inner.cursors.insert(name.as_bytes(), &be(upto))?;
            }
        }
        log.dropped_total += records;
        METRICS
            .wal
            .dropped
            .with_label_values(&[why])
            .inc_by(records);
        let forgotten = self.forget_below(log, upto)?;
        log.unlogged_drops += records;
        let now = Instant::now();
        if log
            .last_drop_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::error!(
                reason = why,
                records = log.unlogged_drops,
                total_dropped = log.dropped_total,
                lost_by_endpoints,
                "wal: buffer limit reached, oldest records dropped before every endpoint took them"
            );
            log.last_drop_log = Some(now);
            log.unlogged_drops = 0;
        }
        Ok(forgotten)
    }

    /// Persists the high-water mark and the floor, then drops records below `upto` from
    /// the index and the byte count. Returns the new floor when it moved.
    ///
    /// The caller releases the log lock, then deletes the segments below the floor with
    /// [`Wal::delete_segments`]. So appends never wait for a deletion. If a deletion fails,
    /// its segment stays below the floor, and the next collection or start deletes it.
    fn forget_below(&self, log: &mut Log, upto: u64) -> Result<Option<u64>, WalError> {
        let upto = upto.min(log.next_seq);
        let from = log.first_seq;
        if upto <= from {
            return Ok(None);
        }
        self.inner.meta.insert(NEXT_SEQ, &be(log.next_seq))?;
        self.inner.meta.insert(FIRST_SEQ, &be(upto))?;
        for _ in from..upto {
            if let Some(e) = log.index.pop_front() {
                log.bytes -= u64::from(e.len);
            }
        }
        log.first_seq = upto;
        Ok(Some(upto))
    }

    /// When a floor moved: makes the floor durable, then deletes the segments that are
    /// wholly below `floor`. Nothing else touches sequences below `first_seq`, so this runs
    /// without the log lock.
    pub(super) fn delete_segments(&self, floor: Option<u64>) -> Result<(), WalError> {
        let Some(floor) = floor else {
            return Ok(());
        };
        if !self.inner.segments.any_below(floor) {
            return Ok(());
        }
        self.flush_sled()?;
        self.inner.segments.delete_below(floor)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::run_collector;
    use crate::wal::model_tests::{open, record, ENDPOINTS};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cursor_move_wakes_the_collector_which_deletes_what_every_endpoint_took() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), u64::MAX);
        for i in 0..3 {
            wal.append(&record(i, 10)).await.expect("append");
        }
        assert!(wal.advance_cursor(ENDPOINTS[0], 0, 3).expect("advance"));
        // The move left a wake-up behind, even with no collector waiting yet.
        tokio::time::timeout(Duration::from_secs(5), wal.inner.cursor_moved.notified())
            .await
            .expect("a cursor move wakes the collector");

        let shutdown = CancellationToken::new();
        let collector = tokio::spawn(run_collector(wal.clone(), shutdown.clone()));
        // One endpoint still needs the records, so they stay.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(wal.stats().records, 3);
        assert!(wal.advance_cursor(ENDPOINTS[1], 0, 2).expect("advance"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while wal.first_seq() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the taken records were not deleted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(wal.stats().records, 1);
        assert_eq!(wal.first_seq(), 2);
        shutdown.cancel();
        collector.await.expect("collector stops");
    }
}

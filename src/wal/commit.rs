//! Group commit: one task flushes sled for every append waiting on it.
//!
//! An append inserts its record, asks for a flush and waits until the durable watermark
//! passes its sequence. The flusher takes the next sequence *before* it flushes, so every
//! record inserted by then is covered; appends that arrive during a flush are covered by the
//! next one, which they share. In `batch` mode the flusher runs on a timer instead, and
//! appends do not wait.
//!
//! Before it flushes, the flusher gathers its group, for [`LINGER`] at most: it waits for
//! the writes already on their way to an insert ([`Writing`]: the ingest counts a request
//! from its start to its insert) and for as many appends as the last flush served. One
//! flush (one `fdatasync`, one sled IO buffer handed to its writer threads) for all of
//! them costs far less than one each, and a write that is being decoded now would
//! otherwise wait for this flush and then the whole next one. A lone writer (nothing on
//! its way, the last group was one append) is flushed at once, so light load pays no
//! latency for it; a client that sends its body slowly delays the others by [`LINGER`] at
//! most. A group smaller than the load's (a straggler) does not shrink the next ones: the
//! writes that arrive during a flush make the next group.
//!
//! Measured at full benchmark load (8 connections, `--max-in-flight 2`, A/B pairs of
//! 15 s): a fixed 1 ms linger once the last group had two or more appends had taken relay
//! CPU per sample down by 8-15 % and peak RSS by a third against no linger. Flushing as
//! soon as the last group's count is in (and nothing is on its way) gave 12-25 % more
//! samples/s than the fixed linger in three pairs, at 6.0-6.2 appends a group instead of
//! 6.7-7.0 and no more CPU per sample, and kept the half-load p50 at ~1 ms. Expecting the
//! largest of the last four groups instead held half load at ~1.7 ms (it waited out the
//! linger for paced writers) and gained less; waiting only for the writes on their way
//! halved the groups (a client's next request is often still on the wire).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::log::{durable_sender, flush_to_disk, flush_wanted};
use super::{Durability, Wal};

/// The longest the flusher waits for writes on their way before it flushes.
pub const LINGER: Duration = Duration::from_millis(1);

/// A write on its way to an insert: while one is alive, the flusher holds the next flush
/// back (up to [`LINGER`]) so that the write shares it. Drop it once the record is
/// inserted (or the write is refused or dropped), before waiting for durability.
#[must_use = "the flusher waits only while the guard is alive"]
pub struct Writing {
    wal: Wal,
}

impl Wal {
    /// Counts a write that is on its way to an insert until the guard drops.
    pub fn writing(&self) -> Writing {
        self.inner.writers.fetch_add(1, Ordering::SeqCst);
        Writing { wal: self.clone() }
    }

    fn writers(&self) -> usize {
        self.inner.writers.load(Ordering::SeqCst)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if self.wal.inner.writers.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last one: a flusher that waits for it may go.
            flush_wanted(&self.wal).notify_one();
        }
    }
}

/// Appends inserted and not yet flushed.
fn waiting(wal: &Wal) -> u64 {
    wal.next_seq().saturating_sub(*durable_sender(wal).borrow())
}

/// Waits until no write is on its way to an insert and `expected` appends wait, or
/// [`LINGER`] has passed; `false` when `shutdown` came first.
async fn gather(wal: &Wal, shutdown: &CancellationToken, expected: u64) -> bool {
    let deadline = tokio::time::Instant::now() + LINGER;
    while wal.writers() > 0 || waiting(wal) < expected {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep_until(deadline) => break,
            _ = flush_wanted(wal).notified() => {}
        }
    }
    true
}

/// Runs until `shutdown`, then flushes one last time.
pub async fn run_flusher(wal: Wal, shutdown: CancellationToken) {
    let durability = wal.config().durability;
    let mut interval = tokio::time::interval(wal.config().flush_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Appends the last flush served: the next group is expected as large.
    let mut last_group = 0u64;
    loop {
        match durability {
            Durability::Sync => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = flush_wanted(&wal).notified() => {}
                }
                if !gather(&wal, &shutdown, last_group).await {
                    break;
                }
            }
            Durability::Batch => tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            },
            Durability::None => {
                shutdown.cancelled().await;
                break;
            }
        }
        let target = wal.next_seq();
        let already = *durable_sender(&wal).borrow();
        if already >= target {
            continue;
        }
        let w = wal.clone();
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || flush_to_disk(&w)).await {
            Ok(Ok(_)) => {
                let m = &crate::metrics::METRICS;
                m.wal_flush_duration
                    .observe(started.elapsed().as_secs_f64());
                m.wal_group_commit_records
                    .observe((target - already) as f64);
                last_group = target - already;
                durable_sender(&wal).send_if_modified(|d| {
                    let moved = target > *d;
                    *d = (*d).max(target);
                    moved
                });
                tracing::trace!(target, took = ?started.elapsed(), "wal: flushed");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "wal: flush failed, writes stay unacknowledged; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                flush_wanted(&wal).notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, "wal: flush task failed; retrying");
                flush_wanted(&wal).notify_one();
            }
        }
    }
    if let Err(e) = tokio::task::spawn_blocking(move || wal.flush_blocking()).await {
        tracing::error!(error = %e, "wal: final flush failed");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::{gather, LINGER};
    use crate::wal::{Wal, WalConfig};

    fn open(dir: &std::path::Path) -> Wal {
        Wal::open(WalConfig::for_tests(dir)).expect("open wal")
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_on_its_way_means_no_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let started = Instant::now();
        assert!(gather(&wal, &CancellationToken::new(), 0).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_flush_waits_for_a_write_on_its_way_until_it_is_inserted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let writing = wal.writing();
        let started = Instant::now();
        let w = wal.clone();
        let gathered = tokio::spawn(async move { gather(&w, &CancellationToken::new(), 0).await });
        // The clock stands still while a task can run (tokio's timers tick in whole ms).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!gathered.is_finished(), "the write is still on its way");
        drop(writing);
        assert!(gathered.await.expect("gather task"));
        assert!(
            started.elapsed() < LINGER,
            "went when the write was in, not at the linger"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_never_arrives_holds_the_flush_back_for_the_linger_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let _slow = wal.writing();
        let started = Instant::now();
        assert!(gather(&wal, &CancellationToken::new(), 8).await);
        assert_eq!(started.elapsed(), LINGER);
    }

    #[tokio::test(start_paused = true)]
    async fn the_flush_waits_for_as_many_appends_as_the_last_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let record = crate::wal::record::tests::snappy_record();
        let started = Instant::now();
        let w = wal.clone();
        let gathered = tokio::spawn(async move { gather(&w, &CancellationToken::new(), 2).await });
        wal.insert_all(std::slice::from_ref(&record))
            .await
            .expect("first");
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!gathered.is_finished(), "one of the two expected appends");
        wal.insert_all(std::slice::from_ref(&record))
            .await
            .expect("second");
        // The insert does not wake the flusher; the append's wait for durability does.
        super::flush_wanted(&wal).notify_one();
        assert!(gathered.await.expect("gather task"));
        assert!(started.elapsed() < LINGER, "went when the group was in");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let _slow = wal.writing();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(!gather(&wal, &shutdown, 0).await);
    }
}

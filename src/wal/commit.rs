//! Group commit: one thread flushes the segments for every append waiting on it.
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
//! flush (one `fdatasync`) for all of them costs far less than one each, and a write that
//! is being decoded now would otherwise wait for this flush and then the whole next one.
//! A lone writer (nothing on its way, the last group was one append) is flushed at once,
//! so light load pays no latency for it; a client that sends its body slowly delays the
//! others by [`LINGER`] at most. A group smaller than the load's (a straggler) does not
//! shrink the next ones: the writes that arrive during a flush make the next group.
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
//!
//! The flusher loop owns a blocking-pool thread for its whole life instead of being a
//! task: as a task it handed each flush to that pool and was woken back, two thread
//! wake-ups per flush on top of sled's own (the records were in sled then). Gathering and
//! flushing on one thread gave 13 % more samples/s at 15 % less relay CPU per sample in
//! A/B pairs at full load (noisy machine; the benchmark is the judge). Appends and writes
//! wake it through [`FlushSignal`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::log::{durable_sender, flush_to_disk, flush_wanted};
use super::{Durability, Wal};

/// The longest the flusher waits for writes on their way before it flushes.
pub const LINGER: Duration = Duration::from_millis(1);

/// How often records are synced in `none` mode (nobody waits for it; it bounds what a
/// power cut can take, as sled's background flush did when the records were in sled).
const NONE_INTERVAL: Duration = Duration::from_millis(500);

/// Wakes the flusher thread. A notification is never lost: the flusher notes the count
/// before it looks at the WAL and sleeps only while no notification came since.
#[derive(Default)]
pub(crate) struct FlushSignal {
    notified: Mutex<u64>,
    cv: Condvar,
}

impl FlushSignal {
    /// Wakes the flusher (or makes its next wait return at once).
    pub(crate) fn notify(&self) {
        *self.lock() += 1;
        self.cv.notify_one();
    }

    /// Notifications so far; pass it to [`FlushSignal::wait`].
    fn seen(&self) -> u64 {
        *self.lock()
    }

    /// Sleeps until a notification after `seen`, or until `deadline` if there is one.
    fn wait(&self, seen: u64, deadline: Option<Instant>) {
        let mut notified = self.lock();
        while *notified == seen {
            notified = match deadline {
                None => self.cv.wait(notified).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    self.cv
                        .wait_timeout(notified, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        // A counter cannot be left half-updated: a poisoned lock is still good.
        self.notified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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
            flush_wanted(&self.wal).notify();
        }
    }
}

/// Appends inserted and not yet flushed.
fn waiting(wal: &Wal) -> u64 {
    wal.next_seq().saturating_sub(*durable_sender(wal).borrow())
}

/// Waits until no write is on its way to an insert and `expected` appends wait, or
/// `linger` has passed; `false` when `stop` came first.
fn gather(wal: &Wal, stop: &AtomicBool, expected: u64, linger: Duration) -> bool {
    let signal = flush_wanted(wal);
    let deadline = Instant::now() + linger;
    loop {
        let seen = signal.seen();
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        if wal.writers() == 0 && waiting(wal) >= expected {
            return true;
        }
        if Instant::now() >= deadline {
            return true;
        }
        signal.wait(seen, Some(deadline));
    }
}

/// Runs the flusher loop on a blocking-pool thread until `shutdown`, then flushes one last
/// time.
pub async fn run_flusher(wal: Wal, shutdown: CancellationToken) {
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (wal, stop) = (wal.clone(), stop.clone());
        tokio::task::spawn_blocking(move || flush_until_stopped(&wal, &stop))
    };
    shutdown.cancelled().await;
    stop.store(true, Ordering::SeqCst);
    flush_wanted(&wal).notify();
    if let Err(e) = flusher.await {
        tracing::error!(error = %e, "wal: the flusher ended without its final flush");
    }
}

/// The flusher's loop (blocking): flushes as the durability mode asks until `stop`, then
/// flushes one last time.
fn flush_until_stopped(wal: &Wal, stop: &AtomicBool) {
    let durability = wal.config().durability;
    let interval = match durability {
        Durability::None => NONE_INTERVAL,
        _ => wal.config().flush_interval,
    };
    let signal = flush_wanted(wal);
    let mut next_tick = Instant::now() + interval;
    // Appends the last flush served: the next group is expected as large.
    let mut last_group = 0u64;
    // Notifications already answered: a flush covers every append inserted before it
    // takes its target, and each append notifies after its insert.
    let mut seen = 0;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match durability {
            Durability::Sync => {
                signal.wait(seen, None);
                seen = signal.seen();
                if stop.load(Ordering::SeqCst) || !gather(wal, stop, last_group, LINGER) {
                    break;
                }
            }
            Durability::Batch | Durability::None => {
                if Instant::now() < next_tick {
                    signal.wait(signal.seen(), Some(next_tick));
                    continue;
                }
                next_tick = Instant::now() + interval;
            }
        }
        if let Some(group) = flush_once(wal) {
            last_group = group;
        }
    }
    if let Err(e) = wal.flush_blocking() {
        tracing::error!(error = %e, "wal: final flush failed");
    }
}

/// Flushes what was inserted so far and moves the durable watermark; the number of
/// appends it covered, `None` when there were none or the flush failed.
fn flush_once(wal: &Wal) -> Option<u64> {
    let target = wal.next_seq();
    let already = *durable_sender(wal).borrow();
    if already >= target {
        return None;
    }
    let started = Instant::now();
    match flush_to_disk(wal) {
        Ok(_) => {
            let m = &crate::metrics::METRICS;
            m.wal_flush_duration
                .observe(started.elapsed().as_secs_f64());
            m.wal_group_commit_records
                .observe((target - already) as f64);
            durable_sender(wal).send_if_modified(|d| {
                let moved = target > *d;
                *d = (*d).max(target);
                moved
            });
            tracing::trace!(target, took = ?started.elapsed(), "wal: flushed");
            Some(target - already)
        }
        Err(e) => {
            tracing::error!(error = %e, "wal: flush failed, writes stay unacknowledged; retrying");
            std::thread::sleep(Duration::from_millis(100));
            flush_wanted(wal).notify();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::{durable_sender, flush_wanted, gather};
    use crate::wal::{Durability, Wal, WalConfig};

    /// Long enough that a gather that returns did not wait it out.
    const HOUR: Duration = Duration::from_secs(3600);
    /// Bound on every wait for an answer that must come.
    const BOUND: Duration = Duration::from_secs(30);
    /// How long a gather that must still wait is watched for (a wrong early return shows
    /// as a failure most of the time; a right one never fails).
    const WATCH: Duration = Duration::from_millis(50);

    fn open(dir: &std::path::Path) -> Wal {
        Wal::open(WalConfig::for_tests(dir)).expect("open wal")
    }

    /// Runs `gather` on a thread of its own; its answer arrives on the channel.
    fn gather_on_thread(
        wal: &Wal,
        stop: bool,
        expected: u64,
        linger: Duration,
    ) -> mpsc::Receiver<bool> {
        let (tx, rx) = mpsc::channel();
        let wal = wal.clone();
        std::thread::spawn(move || {
            let _ = tx.send(gather(&wal, &AtomicBool::new(stop), expected, linger));
        });
        rx
    }

    #[test]
    fn nothing_on_its_way_means_no_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let gathered = gather_on_thread(&wal, false, 0, HOUR);
        assert_eq!(gathered.recv_timeout(BOUND), Ok(true));
    }

    #[test]
    fn the_flush_waits_for_a_write_on_its_way_until_it_is_inserted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let writing = wal.writing();
        let gathered = gather_on_thread(&wal, false, 0, HOUR);
        assert_eq!(
            gathered.recv_timeout(WATCH),
            Err(mpsc::RecvTimeoutError::Timeout),
            "the write is still on its way"
        );
        drop(writing);
        assert_eq!(gathered.recv_timeout(BOUND), Ok(true));
    }

    #[test]
    fn a_write_that_never_arrives_holds_the_flush_back_for_the_linger_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let _slow = wal.writing();
        let gathered = gather_on_thread(&wal, false, 8, Duration::from_millis(20));
        assert_eq!(gathered.recv_timeout(BOUND), Ok(true));
    }

    #[test]
    fn the_flush_waits_for_as_many_appends_as_the_last_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let record = crate::wal::record::tests::snappy_record();
        let gathered = gather_on_thread(&wal, false, 2, HOUR);
        wal.insert_all(std::slice::from_ref(&record))
            .expect("first");
        flush_wanted(&wal).notify();
        assert_eq!(
            gathered.recv_timeout(WATCH),
            Err(mpsc::RecvTimeoutError::Timeout),
            "one of the two expected appends"
        );
        wal.insert_all(std::slice::from_ref(&record))
            .expect("second");
        // The insert does not wake the flusher; the append's wait for durability does.
        flush_wanted(&wal).notify();
        assert_eq!(gathered.recv_timeout(BOUND), Ok(true));
    }

    #[test]
    fn shutdown_ends_the_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let _slow = wal.writing();
        let gathered = gather_on_thread(&wal, true, 0, HOUR);
        assert_eq!(gathered.recv_timeout(BOUND), Ok(false));
    }

    /// The flusher thread makes appends durable in every mode, and stops on shutdown.
    #[tokio::test]
    async fn the_flusher_thread_serves_appends_and_stops() {
        for durability in [Durability::Sync, Durability::Batch, Durability::None] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut config = WalConfig::for_tests(dir.path());
            config.durability = durability;
            config.flush_interval = Duration::from_millis(5);
            let wal = Wal::open(config).expect("open wal");
            let shutdown = CancellationToken::new();
            let flusher = tokio::spawn(super::run_flusher(wal.clone(), shutdown.clone()));
            let record = crate::wal::record::tests::snappy_record();
            for _ in 0..3 {
                let seq = wal
                    .insert_all(std::slice::from_ref(&record))
                    .expect("insert");
                tokio::time::timeout(BOUND, wal.wait_durable(seq))
                    .await
                    .expect("durable in time")
                    .expect("durable");
                if durability == Durability::Batch {
                    // Acknowledged at once; the timer's flush still comes.
                    let mut durable = durable_sender(&wal).subscribe();
                    tokio::time::timeout(BOUND, durable.wait_for(|d| *d > seq))
                        .await
                        .expect("flushed by the timer in time")
                        .expect("durable watch");
                }
            }
            shutdown.cancel();
            tokio::time::timeout(BOUND, flusher)
                .await
                .expect("the flusher stops")
                .expect("flusher task");
        }
    }
}

//! Group commit: one thread flushes the segments for every append that waits on it.
//!
//! An append inserts its record, asks for a flush, and waits until the durable watermark
//! passes its sequence. The flusher reads the next sequence *before* it flushes. So the
//! flush covers every record inserted by then. Appends that arrive during a flush share
//! the next flush. In `batch` mode the flusher runs on a timer instead, and appends do not
//! wait.
//!
//! Before it flushes, the flusher gathers its group for at most [`LINGER`]. It waits for
//! two things:
//! - the writes already on their way to an insert ([`Writing`]). The ingest counts a
//!   request from its start to its insert.
//! - as many appends as the last flush served.
//!
//! One flush (one `fdatasync`) for all of them costs far less than one flush each. Without
//! the wait, a write that is being decoded now would wait for this flush and then for the
//! whole next one.
//!
//! A lone writer is flushed at once: nothing is on its way, and the last group was one
//! append. So light load pays no latency for the gathering. A client that sends its body
//! slowly delays the others by at most [`LINGER`]. A straggler (a group smaller than the
//! load's) does not shrink the next groups: the writes that arrive during a flush make the
//! next group.
//!
//! The flusher loop owns a blocking-pool thread for its whole life; it is not a task.
//! Gathering and flushing on one thread saves two thread wake-ups per flush.
//! `bench/HISTORY.md` has the measurements behind these choices.
//!
//! [`Flusher`] owns this state: the durable watermark, the wake-up signal and the writes on
//! their way. It sees the WAL only through [`Flushable`], so this module does not depend on
//! the WAL handle.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Durability, WalError};

/// The longest the flusher waits for writes on their way before it flushes.
pub const LINGER: Duration = Duration::from_millis(1);

/// How often records are synced in `none` mode. Nobody waits for this sync. It bounds what
/// a power cut can take.
const NONE_INTERVAL: Duration = Duration::from_millis(500);

/// What the flusher flushes: the WAL, seen through the three calls it needs.
pub(super) trait Flushable: Send + Sync + 'static {
    /// The next sequence to assign: every record below it is inserted.
    fn next_seq(&self) -> u64;
    /// Makes every record inserted so far durable (the segments' `fdatasync`).
    fn sync(&self) -> Result<(), WalError>;
    /// The last flush at shutdown: the records and the small state beside them.
    fn flush_all(&self) -> Result<(), WalError>;
}

/// Wakes the flusher thread. A notification is never lost. The flusher notes the count
/// before it looks at the WAL, and it sleeps only while no notification came since then.
#[derive(Default)]
struct FlushSignal {
    notified: Mutex<u64>,
    cv: Condvar,
}

impl FlushSignal {
    /// Wakes the flusher (or makes its next wait return at once).
    fn notify(&self) {
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
            match deadline {
                None => self.cv.wait(&mut notified),
                Some(d) => {
                    if self.cv.wait_until(&mut notified, d).timed_out() {
                        return;
                    }
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.notified.lock()
    }
}

/// The group commit's state. The appends share it to wait; the flusher thread shares it to
/// flush.
pub(super) struct Flusher {
    /// Every sequence below this is on disk.
    durable: watch::Sender<u64>,
    /// Wakes the flusher. Three events notify it: an append waits, the last write on its
    /// way is inserted, or shutdown.
    signal: FlushSignal,
    /// Writes on their way to an insert ([`Writing`]).
    writers: AtomicUsize,
}

impl Flusher {
    /// A flusher whose records below `next_seq` are already on disk, because recovery
    /// found them there.
    pub(super) fn new(next_seq: u64) -> Flusher {
        Flusher {
            durable: watch::channel(next_seq).0,
            signal: FlushSignal::default(),
            writers: AtomicUsize::new(0),
        }
    }

    /// Waits until `seq` is on disk; asks for a flush.
    pub(super) async fn wait_durable(&self, seq: u64) -> Result<(), WalError> {
        let mut rx = self.durable.subscribe();
        self.signal.notify();
        rx.wait_for(|d| *d > seq)
            .await
            .map_err(|_| WalError::Closed)?;
        Ok(())
    }

    /// Records that every sequence below `target` is on disk.
    pub(super) fn mark_durable(&self, target: u64) {
        self.durable.send_if_modified(|d| {
            let moved = target > *d;
            *d = (*d).max(target);
            moved
        });
    }

    /// The durable watermark.
    fn durable(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Counts a write that is on its way to an insert until the guard drops.
    pub(super) fn writing(self: &Arc<Self>) -> Writing {
        self.writers.fetch_add(1, Ordering::SeqCst);
        Writing {
            flusher: self.clone(),
        }
    }

    fn writers(&self) -> usize {
        self.writers.load(Ordering::SeqCst)
    }

    /// Starts the flusher loop on a blocking-pool thread. The loop runs until `shutdown`,
    /// then flushes one last time and ends.
    pub(super) fn start(
        self: &Arc<Self>,
        wal: Arc<dyn Flushable>,
        durability: Durability,
        flush_interval: Duration,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let flusher = self.clone();
        tokio::spawn(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (flusher, stop) = (flusher.clone(), stop.clone());
                tokio::task::spawn_blocking(move || {
                    flusher.flush_until_stopped(&*wal, durability, flush_interval, &stop)
                })
            };
            shutdown.cancelled().await;
            stop.store(true, Ordering::SeqCst);
            flusher.signal.notify();
            if let Err(e) = thread.await {
                tracing::error!(error = %e, "wal: the flusher ended without its final flush");
            }
        })
    }

    /// Appends inserted and not yet flushed.
    fn waiting(&self, wal: &dyn Flushable) -> u64 {
        wal.next_seq().saturating_sub(self.durable())
    }

    /// Waits until no write is on its way to an insert and `expected` appends wait, or
    /// until `linger` has passed. Returns `false` when `stop` came first.
    fn gather(
        &self,
        wal: &dyn Flushable,
        stop: &AtomicBool,
        expected: u64,
        linger: Duration,
    ) -> bool {
        let deadline = Instant::now() + linger;
        loop {
            let seen = self.signal.seen();
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            if self.writers() == 0 && self.waiting(wal) >= expected {
                return true;
            }
            if Instant::now() >= deadline {
                return true;
            }
            self.signal.wait(seen, Some(deadline));
        }
    }

    /// The flusher's loop (blocking). It flushes as the durability mode asks until `stop`,
    /// then flushes one last time.
    fn flush_until_stopped(
        &self,
        wal: &dyn Flushable,
        durability: Durability,
        flush_interval: Duration,
        stop: &AtomicBool,
    ) {
        let interval = match durability {
            Durability::None => NONE_INTERVAL,
            _ => flush_interval,
        };
        let mut next_tick = Instant::now() + interval;
        // Appends the last flush served. The next group is expected to be as large.
        let mut last_group = 0u64;
        // Notifications already answered. A flush covers every append inserted before it
        // reads its target, and each append notifies after its insert.
        let mut seen = 0;
        loop {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            match durability {
                Durability::Sync => {
                    self.signal.wait(seen, None);
                    seen = self.signal.seen();
                    if stop.load(Ordering::SeqCst) || !self.gather(wal, stop, last_group, LINGER) {
                        break;
                    }
                }
                Durability::Batch | Durability::None => {
                    if Instant::now() < next_tick {
                        self.signal.wait(self.signal.seen(), Some(next_tick));
                        continue;
                    }
                    next_tick = Instant::now() + interval;
                }
            }
            if let Some(group) = self.flush_once(wal) {
                last_group = group;
            }
        }
        let target = wal.next_seq();
        match wal.flush_all() {
            Ok(()) => self.mark_durable(target),
            Err(e) => tracing::error!(error = %e, "wal: final flush failed"),
        }
    }

    /// Flushes what was inserted so far and moves the durable watermark. Returns the number
    /// of appends the flush covered, or `None` when there were none or the flush failed.
    fn flush_once(&self, wal: &dyn Flushable) -> Option<u64> {
        let target = wal.next_seq();
        let already = self.durable();
        if already >= target {
            return None;
        }
        let started = Instant::now();
        match wal.sync() {
            Ok(()) => {
                let m = &crate::metrics::METRICS;
                m.wal
                    .flush_duration
                    .observe(started.elapsed().as_secs_f64());
                m.wal
                    .group_commit_records
                    .observe((target - already) as f64);
                self.mark_durable(target);
                tracing::trace!(target, took = ?started.elapsed(), "wal: flushed");
                Some(target - already)
            }
            Err(e) => {
                tracing::error!(error = %e, "wal: flush failed, writes stay unacknowledged; retrying");
                std::thread::sleep(Duration::from_millis(100));
                self.signal.notify();
                None
            }
        }
    }
}

/// A write on its way to an insert. While one is alive, the flusher holds the next flush
/// back for at most the linger (1 ms), so that the write shares it. Drop the guard once the
/// record is inserted, refused or dropped, and before waiting for durability.
#[must_use = "the flusher waits only while the guard is alive"]
pub struct Writing {
    flusher: Arc<Flusher>,
}

impl Drop for Writing {
    fn drop(&mut self) {
        if self.flusher.writers.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last one: a flusher that waits for it may go.
            self.flusher.signal.notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use crate::wal::{Durability, Wal, WalConfig};

    /// Long enough that a gather that returns did not wait it out.
    const HOUR: Duration = Duration::from_secs(3600);
    /// Bound on every wait for an answer that must come.
    const BOUND: Duration = Duration::from_secs(30);
    /// How long the test watches a gather that must still wait. A wrong early return fails
    /// the test most of the time; a correct gather never fails it.
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
            let flusher = wal.inner.flusher.clone();
            let _ = tx.send(flusher.gather(&wal, &AtomicBool::new(stop), expected, linger));
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
        wal.inner.flusher.signal.notify();
        assert_eq!(
            gathered.recv_timeout(WATCH),
            Err(mpsc::RecvTimeoutError::Timeout),
            "one of the two expected appends"
        );
        wal.insert_all(std::slice::from_ref(&record))
            .expect("second");
        // The insert does not wake the flusher; the append's wait for durability does.
        wal.inner.flusher.signal.notify();
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
            let tasks = wal.start(&shutdown);
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
                    let mut durable = wal.inner.flusher.durable.subscribe();
                    tokio::time::timeout(BOUND, durable.wait_for(|d| *d > seq))
                        .await
                        .expect("flushed by the timer in time")
                        .expect("durable watch");
                }
            }
            shutdown.cancel();
            assert!(
                tasks.stopped(tokio::time::Instant::now() + BOUND).await,
                "the flusher stops"
            );
        }
    }
}

//! The process allocator: the system allocator, plus a few recycled sled IO buffers, and
//! a cap on glibc's malloc arenas ([`limit_arenas`]).
//!
//! sled 0.34 gives every log segment a fresh IO buffer of the segment's size (4 MiB for the
//! WAL), aligned to 8 KiB, and frees it once the segment is written. The system allocator
//! serves blocks that large with `mmap` and frees them with `munmap`, so at full ingest
//! rate the kernel maps, zero-fills and unmaps tens of such buffers per second: about a
//! tenth of the relay's CPU went to those page faults. [`RecyclingAllocator`] keeps up to
//! [`SPARE`] freed buffers of that shape and hands them back out for the next segment,
//! already resident. Everything else goes to the system allocator untouched.
//!
//! # Invariants
//! - A spare block was allocated by the system allocator with exactly the layout it is
//!   handed out for again (same size, same alignment), so freeing it later through the
//!   system allocator is sound whichever path frees it.
//! - At most [`SPARE`] blocks are kept: the memory held beyond the system allocator's is
//!   bounded by `SPARE × segment size` (16 MiB for the WAL).
//! - The allocator never allocates itself (its lock is a plain spin on an atomic flag).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::hint;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// malloc arenas the relay runs with, unless `MALLOC_ARENA_MAX` says otherwise.
pub const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`ARENAS`]; call before any thread starts.
///
/// glibc gives each thread that meets a locked arena a new one, up to 8 per core; the relay
/// has a dozen threads (HTTP workers, runtime, blocking pool, sled's IO threads) that free
/// each other's buffers, and every arena keeps its own free memory: two arenas cut peak
/// RSS by a fifth at no CPU cost (see `bench/HISTORY.md`). An operator's
/// `MALLOC_ARENA_MAX` wins.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only changes a malloc tunable; it has no memory-safety preconditions.
    // A refusal (it returns 0) leaves glibc's default, which is only more memory.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// How often [`run_trimmer`] hands free heap memory back to the kernel.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Gives free heap memory back to the kernel every [`TRIM_EVERY`] until `shutdown`.
///
/// A storage that stalls for a second lets accepted writes pile up in sled's cache; once it
/// drains, glibc keeps the freed memory in its arenas (only the very top of a heap is given
/// back on its own), so each stall raised resident memory for good, in steps.
/// `malloc_trim` returns the free pages of every arena; it walks the free lists, well
/// under a millisecond here.
pub async fn run_trimmer(shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => trim(),
        }
    }
}

/// Returns free heap pages to the kernel (glibc only; elsewhere nothing to do).
fn trim() {
    // SAFETY: malloc_trim only releases free memory; no preconditions.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How many freed IO buffers are kept for reuse.
pub const SPARE: usize = 4;

/// sled aligns its IO buffers to this.
const IO_ALIGN: usize = 8192;

/// Blocks smaller than this are left to the system allocator (its own caches serve them).
const MIN_RECYCLED: usize = 1 << 20;

/// A freed block kept for reuse: its address and size (0 = empty slot).
#[derive(Clone, Copy)]
struct Spare {
    ptr: *mut u8,
    size: usize,
}

const EMPTY: Spare = Spare {
    ptr: ptr::null_mut(),
    size: 0,
};

/// The global allocator of the `highlander` binary.
pub struct RecyclingAllocator {
    locked: AtomicBool,
    spares: UnsafeCell<[Spare; SPARE]>,
}

// SAFETY: `spares` is only touched while `locked` is held (see `with_spares`).
unsafe impl Sync for RecyclingAllocator {}

impl RecyclingAllocator {
    /// No spare blocks yet.
    pub const fn new() -> Self {
        RecyclingAllocator {
            locked: AtomicBool::new(false),
            spares: UnsafeCell::new([EMPTY; SPARE]),
        }
    }

    fn recycles(layout: Layout) -> bool {
        layout.align() == IO_ALIGN && layout.size() >= MIN_RECYCLED
    }

    /// Runs `f` on the spare slots under the spin lock. The critical sections are a few
    /// compares, so spinning is cheaper than parking (and parking could allocate).
    fn with_spares<R>(&self, f: impl FnOnce(&mut [Spare; SPARE]) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            hint::spin_loop();
        }
        // SAFETY: the flag gives this thread exclusive access until it is released below.
        let result = f(unsafe { &mut *self.spares.get() });
        self.locked.store(false, Ordering::Release);
        result
    }

    /// A spare block of exactly `size` bytes, if one is kept.
    fn take(&self, size: usize) -> Option<*mut u8> {
        self.with_spares(|spares| {
            let slot = spares.iter_mut().find(|s| s.size == size)?;
            let ptr = slot.ptr;
            *slot = EMPTY;
            Some(ptr)
        })
    }

    /// Keeps a freed block if a slot is free; says whether it did.
    fn keep(&self, ptr: *mut u8, size: usize) -> bool {
        self.with_spares(|spares| match spares.iter_mut().find(|s| s.size == 0) {
            Some(slot) => {
                *slot = Spare { ptr, size };
                true
            }
            None => false,
        })
    }
}

impl Default for RecyclingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block comes from `System` with the layout it is later freed or reused with
// (see the module invariants); all other calls are forwarded to `System` as they are.
unsafe impl GlobalAlloc for RecyclingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::recycles(layout) {
            if let Some(ptr) = self.take(layout.size()) {
                return ptr;
            }
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::recycles(layout) && self.keep(ptr, layout.size()) {
            return;
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A block that grows or shrinks keeps its alignment; recycled shapes are only ever
        // created by `alloc`, so resizing one is a fresh allocation plus a copy.
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !Self::recycles(layout) && !Self::recycles(new_layout) {
            return System.realloc(ptr, layout, new_size);
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trimmer_runs_until_shutdown() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(run_trimmer(shutdown.clone()));
        // The first trim runs at once.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "still trimming");
        shutdown.cancel();
        tokio::time::timeout(TRIM_EVERY, task)
            .await
            .expect("stops at shutdown")
            .expect("no panic");
    }

    #[test]
    fn an_io_buffer_is_reused_and_other_blocks_are_not_kept() {
        let a = RecyclingAllocator::new();
        let io = Layout::from_size_align(4 << 20, IO_ALIGN).unwrap();
        let small = Layout::from_size_align(4096, IO_ALIGN).unwrap();
        unsafe {
            let first = a.alloc(io);
            assert!(!first.is_null());
            first.write_bytes(7, io.size());
            a.dealloc(first, io);
            // The same shape comes back resident, with its old contents.
            let again = a.alloc(io);
            assert_eq!(again, first);
            assert_eq!(*again.add(io.size() - 1), 7);
            // A different size is not served from the spare of another size.
            let other = Layout::from_size_align(2 << 20, IO_ALIGN).unwrap();
            a.dealloc(again, io);
            let b = a.alloc(other);
            assert_ne!(b, first);
            a.dealloc(b, other);
            // Small blocks go straight back to the system.
            let s = a.alloc(small);
            a.dealloc(s, small);
            a.with_spares(|spares| {
                assert_eq!(spares.iter().filter(|s| s.size == io.size()).count(), 1);
                assert_eq!(spares.iter().filter(|s| s.size == 4096).count(), 0);
            });
        }
    }

    #[test]
    fn at_most_spare_blocks_are_kept() {
        let a = RecyclingAllocator::new();
        let io = Layout::from_size_align(1 << 20, IO_ALIGN).unwrap();
        unsafe {
            let blocks: Vec<*mut u8> = (0..SPARE + 3).map(|_| a.alloc(io)).collect();
            assert!(blocks.iter().all(|b| !b.is_null()));
            for b in &blocks {
                a.dealloc(*b, io);
            }
            a.with_spares(|spares| assert!(spares.iter().all(|s| s.size == io.size())));
            // Drain the spares back to the system so the test leaks nothing.
            for _ in 0..SPARE {
                let b = a.alloc(io);
                System.dealloc(b, io);
            }
        }
    }

    #[test]
    fn resizing_a_recycled_shape_keeps_the_contents() {
        let a = RecyclingAllocator::new();
        let io = Layout::from_size_align(1 << 20, IO_ALIGN).unwrap();
        unsafe {
            let p = a.alloc(io);
            p.write_bytes(3, io.size());
            let q = a.realloc(p, io, 2 << 20);
            assert!(!q.is_null());
            assert_eq!(*q.add(io.size() - 1), 3);
            let grown = Layout::from_size_align(2 << 20, IO_ALIGN).unwrap();
            a.dealloc(q, grown);
            // Both shapes were kept; hand them back to the system with their own layouts.
            for layout in [io, grown] {
                let b = a.take(layout.size()).expect("kept");
                System.dealloc(b, layout);
            }
        }
    }
}

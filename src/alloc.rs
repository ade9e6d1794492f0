//! How the process uses glibc's allocator. It caps the malloc arenas ([`limit_arenas`]).
//! A periodic trim gives freed heap memory back to the kernel ([`run_trimmer`]).

/// malloc arenas the relay runs with, unless `MALLOC_ARENA_MAX` says otherwise.
pub const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`ARENAS`]. Call it before any thread starts.
///
/// glibc gives each thread that meets a locked arena a new arena, up to 8 per core. The
/// relay has a dozen threads (HTTP workers, runtime, blocking pool, sled's IO threads).
/// They free each other's buffers, and every arena keeps its own free memory. Two arenas
/// cut peak RSS at no CPU cost (`bench/HISTORY.md`). An operator's `MALLOC_ARENA_MAX`
/// wins.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only changes a malloc tunable. It has no memory-safety
    // preconditions. A refusal (it returns 0) leaves glibc's default, which only costs
    // more memory.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// How often [`run_trimmer`] hands free heap memory back to the kernel.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Gives free heap memory back to the kernel every [`TRIM_EVERY`] until `shutdown`.
///
/// Several buffers are freed into glibc's arenas: the shipper's reads (up to 16 MiB at a
/// time), its joined requests, and the ingest's decode buffers. On their own, the arenas
/// give back only the very top of a heap. Without the trim, resident memory stays higher
/// after a load (`bench/HISTORY.md`). `malloc_trim` returns the free pages of every arena.
/// It walks the free lists, which is cheap (`bench/HISTORY.md`).
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

/// Returns free heap pages to the kernel. Only glibc needs this; elsewhere it does
/// nothing.
fn trim() {
    // SAFETY: malloc_trim only releases free memory. It has no preconditions.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
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
}

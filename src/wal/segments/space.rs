//! Disk space for the segments. Appends stop while a reserve is still free. A shipped
//! segment gives its blocks back a step at a time.
//!
//! # Invariants
//! - An append is refused ([`io::ErrorKind::StorageFull`]) when it would leave less than
//!   [`reserve`] free. So sled (cursors, metadata) can always write. A sled that fails
//!   stays failed until a restart, and then the storages could not take the buffer away.
//! - The free space is read again at least every [`ROOM_READ_EVERY`], and once half of
//!   the space above the reserve is used. It is not read at every append.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// The free space is read at least this often while appends come.
const ROOM_READ_EVERY: Duration = Duration::from_millis(100);

/// How often the ERROR about a full disk is repeated while appends are refused.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

/// What appends may still write before the free space is read again.
#[derive(Default)]
pub(super) struct Room {
    /// Bytes that may be appended before the free space is read again.
    left: u64,
    /// When the free space was read last. `None`: read it at the next append.
    read: Option<Instant>,
    /// When an append was last refused (rate-limits the ERROR line).
    last_full_log: Option<Instant>,
}

impl Room {
    /// Takes `len` bytes for an append to the segments in `dir`. Otherwise it refuses the
    /// append with [`io::ErrorKind::StorageFull`], or with the error of reading the free
    /// space; the caller may free space and try again, and then logs the refusal with
    /// [`Room::refused`].
    pub(super) fn take(&mut self, dir: &Path, len: u64) -> io::Result<()> {
        let now = Instant::now();
        let fresh = self
            .read
            .is_some_and(|t| now.duration_since(t) < ROOM_READ_EVERY);
        if fresh && len <= self.left {
            self.left -= len;
            return Ok(());
        }
        let refused = match disk_space(dir) {
            Ok((free, total)) => {
                let keep = reserve(total);
                if free >= keep.saturating_add(len) {
                    self.left = (free - keep - len) / 2;
                    self.read = Some(now);
                    return Ok(());
                }
                io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "{free} bytes free on the buffer's disk, {keep} are kept for its state"
                    ),
                )
            }
            Err(e) => e,
        };
        self.read = None;
        Err(refused)
    }

    /// Logs a refused append: an ERROR line every [`FULL_LOG_EVERY`] while it refuses.
    pub(super) fn refused(&mut self, dir: &Path, refused: &io::Error) {
        let now = Instant::now();
        if self
            .last_full_log
            .is_none_or(|t| now.duration_since(t) >= FULL_LOG_EVERY)
        {
            if refused.kind() == io::ErrorKind::StorageFull {
                tracing::error!(dir = %dir.display(), error = %refused, "wal: the disk is (nearly) full: writes are refused with 503 until the storages take what is buffered or space is freed");
            } else {
                tracing::error!(dir = %dir.display(), error = %refused, "wal: could not read the free space of the buffer's disk: writes are refused until it can be read");
            }
            self.last_full_log = Some(now);
        }
    }
}

/// Bytes a deleted segment gives back per step, and the pause after each step.
pub(super) const SHRINK_STEP: u64 = 1 << 20;
const SHRINK_PAUSE: Duration = Duration::from_millis(1);

/// Truncates a file of `len` bytes to nothing, [`SHRINK_STEP`] at a time (blocking).
///
/// Freeing a whole segment at once (its last close after the unlink) holds up the open
/// segment's `fdatasync` on the same file system while it runs. Every write that waits for
/// that group commit stalls, once per segment shipped. Small steps with a pause between
/// them keep that stall short (numbers in `bench/HISTORY.md`).
pub(super) fn shrink_away(file: &File, mut len: u64) -> io::Result<()> {
    while len > 0 {
        len = len.saturating_sub(SHRINK_STEP);
        file.set_len(len)?;
        std::thread::sleep(SHRINK_PAUSE);
    }
    Ok(())
}

/// Space the appends leave free on a file system of `total` bytes: 1 %, at least 16 MiB
/// and at most 256 MiB. sled (cursors, metadata) must still be able to write. Otherwise it
/// fails for good until a restart, and the storages could not take the buffer away.
pub(crate) fn reserve(total: u64) -> u64 {
    (total / 100).clamp(16 << 20, 256 << 20)
}

/// Bytes available to us and the size of the file system that holds `dir`.
pub(crate) fn disk_space(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a NUL byte in the buffer's path"))?;
    // SAFETY: `statvfs` only writes the struct it is given. It reads the NUL-terminated
    // path, which lives for the whole call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((
        (st.f_bavail as u64).saturating_mul(frsize),
        (st.f_blocks as u64).saturating_mul(frsize),
    ))
}

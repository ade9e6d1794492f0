//! A shipped segment's file. It is kept, not deleted, and takes the next segment's records.
//!
//! Why: after an overwrite of blocks that a file already has, `fdatasync` writes only the
//! data. After an append, it also commits the file's new size and blocks to the file
//! system's journal, which costs more (numbers in `bench/HISTORY.md`). A
//! reused file is also not freed, so no freeing holds up the group commit beside it
//! ([`super::space::shrink_away`]).
//!
//! # Invariants
//! - There is at most one spare, `<segments>/spare`. Its name is not a sequence, so a
//!   restart never reads it as records.
//! - A file becomes the spare only when nobody else holds it (no reader, no pending sync).
//!   So once new records overwrite its old records, nobody reads the old ones again.
//! - A reused segment is named after its new first sequence, like any other segment.
//!   Everything in it from its earlier use is below that name, because sequences only
//!   grow. So a restart tells the old contents from the new ([`super::frame::scan`]).
//! - The record goes down before its frame header. So a killed process never leaves a
//!   good header over old bytes. A power cut may, because unsynced pages reach the disk in
//!   any order.
//! - Renames are not synced on their own. After a crash the file has its old name or the
//!   new one, and both are read correctly:
//!   - a segment wholly below the floor is deleted or kept as the spare;
//!   - the reused segment is synced with the directory before any record in it is
//!     acknowledged.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The spare's file name in the segment directory.
pub(super) const NAME: &str = "spare";

/// The kept file.
pub(super) struct Spare {
    file: File,
    path: PathBuf,
}

/// Renames the file at `path` to be the spare of `dir`, and returns its new place. It
/// replaces a spare that a failed reuse left.
pub(super) fn rename(dir: &Path, path: &Path) -> io::Result<PathBuf> {
    let spare = dir.join(NAME);
    std::fs::rename(path, &spare)?;
    Ok(spare)
}

impl Spare {
    /// The spare, `file` at `path`.
    pub(super) fn new(file: File, path: PathBuf) -> Spare {
        Spare { file, path }
    }

    /// The spare found in `dir` at start-up, if any.
    pub(super) fn find(dir: &Path) -> io::Result<Option<Spare>> {
        let path = dir.join(NAME);
        match File::options().read(true).write(true).open(&path) {
            Ok(file) => Ok(Some(Spare { file, path })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the spare's file; returns the bytes it held.
    pub(super) fn delete(self) -> io::Result<u64> {
        let len = self.file.metadata()?.len();
        std::fs::remove_file(&self.path)?;
        Ok(len)
    }

    /// Renames the spare to `path` (which must not exist) and hands back its file.
    pub(super) fn reuse(self, path: &Path) -> io::Result<File> {
        rename_noreplace(&self.path, path)?;
        Ok(self.file)
    }
}

/// `rename(from, to)` that fails when `to` exists, as creating a segment would.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("a NUL byte in a segment path"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both paths are NUL-terminated and live for the whole call. The kernel only
    // reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

//! The two calls that make segments durable: `fdatasync` of a segment file and `fsync` of
//! the segment directory. They are here, in one place, so that unit tests can stand a
//! power-cut model behind them (`power_cut.rs`): the model learns from each call
//! what a power cut would keep. In the build they are the plain system calls and nothing
//! else.

use std::fs::File;
use std::io;
use std::path::Path;

/// `fdatasync` of a segment file: its written bytes (and its size) survive a power cut.
pub(super) fn sync_data(file: &File) -> io::Result<()> {
    #[cfg(test)]
    super::power_cut::data_synced(file);
    file.sync_data()
}

/// `fsync` of a directory: the names created, renamed or deleted in it survive a power
/// cut.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    super::power_cut::dir_synced(dir);
    File::open(dir)?.sync_all()
}

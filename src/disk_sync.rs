//! Makes a sled 0.34 flush durable against power loss, not only against a process crash.
//!
//! sled writes its log with `pwrite`, then calls `sync_file_range(WAIT_BEFORE | WRITE |
//! WAIT_AFTER)`. That call waits for the writeback of the data pages. But it persists no
//! metadata (the size of a grown file, new extents), and it sends no cache flush to the
//! drive.
//!
//! sled puts a message that is too big for a quarter of a segment into a file of its own in
//! `blobs/`. A WAL leaf of about 16 records is that big. sled never fsyncs these files.
//!
//! A killed process loses nothing either way, because the page cache outlives it. A power
//! cut or a kernel crash could lose data. So [`DiskSync::flush`] follows sled's flush with
//! `fdatasync` of the log file and `fsync` of every blob file written since. When `blobs/`
//! has new entries, it also syncs `blobs/` itself.
//!
//! # Invariant
//! When [`DiskSync::flush`] returns, every blob that the flushed log points to is on disk,
//! whole. Why this holds:
//! - A blob file is named after the log position of the message that points to it.
//! - The blob file is written before that message's reservation completes.
//! - sled's flush waits for every reservation up to its flush point.
//!
//! So the files listed *after* sled's flush include every blob the flushed log needs, each
//! complete. A file that appears only in that second listing may belong to a later message
//! that is still being written. It is fsynced as well, but counted as done only when a
//! later flush lists it *before* that flush starts.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// One sled database's extra syncs. Flushes through it are serialised.
pub struct DiskSync {
    log_file: File,
    blobs: PathBuf,
    /// Blob files known to be on disk whole.
    done: Mutex<HashSet<OsString>>,
}

impl DiskSync {
    /// For the sled database in `dir`. Open it with sled first, because sled creates the
    /// files.
    pub fn open(dir: &Path) -> io::Result<DiskSync> {
        let log_file = File::open(dir.join("db"))?;
        Ok(DiskSync {
            log_file,
            blobs: dir.join("blobs"),
            done: Mutex::new(HashSet::new()),
        })
    }

    /// sled's flush, then the syncs that sled leaves out. Returns what sled's flush
    /// returned: the bytes it wrote.
    pub fn flush(&self, db: &sled::Db) -> sled::Result<usize> {
        let mut done = self.done.lock();
        let before = self.list()?;
        let flushed = db.flush()?;
        let after = self.list()?;
        self.sync_new(&mut done, &before, &after)?;
        self.log_file.sync_data()?;
        Ok(flushed)
    }

    /// [`DiskSync::flush`] on a blocking thread.
    pub async fn flush_async(self: &Arc<Self>, db: &sled::Db) -> sled::Result<usize> {
        let (sync, db) = (self.clone(), db.clone());
        tokio::task::spawn_blocking(move || sync.flush(&db))
            .await
            .map_err(|e| sled::Error::Io(io::Error::other(e.to_string())))?
    }

    /// Blob files synced and counted as done so far (for tests).
    #[cfg(test)]
    fn done_count(&self) -> usize {
        self.done.lock().len()
    }

    fn sync_new(
        &self,
        done: &mut HashSet<OsString>,
        before: &HashSet<OsString>,
        after: &HashSet<OsString>,
    ) -> io::Result<()> {
        // Removed blobs are forgotten. sled never reuses a name, because log positions only
        // grow.
        done.retain(|name| after.contains(name));
        let mut synced_any = false;
        let new: Vec<&OsString> = after.iter().filter(|n| !done.contains(*n)).collect();
        for name in new {
            match File::open(self.blobs.join(name)) {
                Ok(f) => f.sync_all()?,
                // Removed since the listing, so there is nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            synced_any = true;
            if before.contains(name) {
                done.insert(name.clone());
            }
        }
        if synced_any {
            File::open(&self.blobs)?.sync_all()?;
        }
        Ok(())
    }

    fn list(&self) -> io::Result<HashSet<OsString>> {
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(e),
        };
        entries.map(|e| e.map(|e| e.file_name())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path) -> (sled::Db, DiskSync) {
        let db = sled::Config::new().path(dir).open().expect("sled opens");
        let sync = DiskSync::open(dir).expect("log file exists");
        (db, sync)
    }

    #[test]
    fn big_values_go_to_blob_files_and_are_synced_once_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, sync) = db(dir.path());
        // Bigger than a quarter of sled's default 512 KiB segment: a blob file.
        db.insert(b"big", vec![7u8; 200 << 10]).expect("insert");
        sync.flush(&db).expect("flush");
        let blobs = std::fs::read_dir(dir.path().join("blobs"))
            .expect("blobs dir")
            .count();
        assert!(blobs >= 1, "sled wrote no blob file for a 200 KiB value");
        // Present before this flush started, so it is whole. It counts as done from now
        // on.
        sync.flush(&db).expect("flush");
        assert_eq!(sync.done_count(), blobs);
        // Removed blobs are forgotten.
        db.remove(b"big").expect("remove");
        for _ in 0..3 {
            sync.flush(&db).expect("flush");
        }
        let left = std::fs::read_dir(dir.path().join("blobs"))
            .expect("blobs dir")
            .count();
        assert!(sync.done_count() <= left);
    }

    #[test]
    fn small_values_need_no_blob_and_flush_still_syncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, sync) = db(dir.path());
        db.insert(b"k", b"v".to_vec()).expect("insert");
        sync.flush(&db).expect("flush");
        assert_eq!(sync.done_count(), 0);
        drop(db);
        let db = sled::open(dir.path()).expect("reopens");
        assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_file_listed_only_after_the_flush_is_synced_but_not_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, sync) = db(dir.path());
        std::fs::create_dir_all(dir.path().join("blobs")).expect("blobs dir");
        std::fs::write(dir.path().join("blobs/42"), b"partial").expect("write");
        let mut done = HashSet::new();
        let after = sync.list().expect("list");
        sync.sync_new(&mut done, &HashSet::new(), &after)
            .expect("sync");
        assert!(
            done.is_empty(),
            "a file that may still grow was counted as done"
        );
        sync.sync_new(&mut done, &after, &after).expect("sync");
        assert_eq!(done.len(), 1);
        std::fs::remove_file(dir.path().join("blobs/42")).expect("remove");
        let after = sync.list().expect("list");
        sync.sync_new(&mut done, &after, &after).expect("sync");
        assert!(done.is_empty());
    }
}

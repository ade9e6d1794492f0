//! A power-cut model of a segment directory, for unit tests.
//!
//! A power cut keeps what was synced and, of what was not, whatever the kernel happened to
//! write back: any subset of the unsynced pages, in any order. The model learns what was
//! synced from the calls of [`super::file`]: at each `fdatasync` it copies the file's
//! bytes as the durable content of its inode, and at each directory `fsync` it lists the
//! directory as its durable names. [`cut`] then writes the directory as a power cut could
//! leave it: the durable names, each with its durable content, overlaid page by page
//! (seeded) with the unsynced bytes of the file that holds that inode now. Nothing else
//! is modelled: sled's files are not (its flushes have tests of their own,
//! `crate::disk_sync`), and the copies are taken before the system call, so a write that
//! races with a sync counts as unsynced (the model errs on the side of loss).
//!
//! Only [`arm`]ed directories are modelled; the hooks cost the other unit tests a
//! `readlink` and a lookup.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The kernel's page: the unit that reaches the disk, or does not.
const PAGE: usize = 4096;

/// A file, whatever its name: its inode and its birth time (a deleted file's inode number
/// is soon another file's).
type Id = (u64, u128);

fn id(meta: &std::fs::Metadata) -> Id {
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    (meta.ino(), born)
}

#[derive(Default)]
struct Durable {
    /// Name → file, as of the last directory sync.
    names: BTreeMap<OsString, Id>,
    /// File → bytes, as of its last data sync.
    content: HashMap<Id, Vec<u8>>,
}

static ARMED: Mutex<BTreeMap<PathBuf, Durable>> = Mutex::new(BTreeMap::new());

fn armed() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, Durable>> {
    ARMED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Name → file of every file in `dir`.
fn listing(dir: &Path) -> BTreeMap<OsString, Id> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| Some((e.file_name(), id(&e.metadata().ok()?))))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts modelling `dir`: everything in it now counts as durable.
pub(in crate::wal) fn arm(dir: &Path) {
    let names = listing(dir);
    let content = names
        .iter()
        .map(|(n, &file)| (file, std::fs::read(dir.join(n)).unwrap_or_default()))
        .collect();
    armed().insert(dir.to_path_buf(), Durable { names, content });
}

/// Stops modelling `dir`.
pub(in crate::wal) fn disarm(dir: &Path) {
    armed().remove(dir);
}

/// The directory `file` is in, through the process's descriptor table.
fn dir_of(file: &File) -> Option<PathBuf> {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    path.parent().map(Path::to_path_buf)
}

/// An `fdatasync` of `file` is about to run.
pub(super) fn data_synced(file: &File) {
    let Some(dir) = dir_of(file) else { return };
    let mut armed = armed();
    let Some(durable) = armed.get_mut(&dir) else {
        return;
    };
    let Ok(meta) = file.metadata() else { return };
    let mut bytes = vec![0u8; meta.len() as usize];
    if file.read_exact_at(&mut bytes, 0).is_ok() {
        durable.content.insert(id(&meta), bytes);
    }
}

/// An `fsync` of `dir` is about to run.
pub(super) fn dir_synced(dir: &Path) {
    if let Some(durable) = armed().get_mut(dir) {
        durable.names = listing(dir);
    }
}

/// What a power cut kept.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(in crate::wal) struct Cut {
    /// Files in the image.
    pub(in crate::wal) files: usize,
    /// Unsynced pages (bytes the disk may not have).
    pub(in crate::wal) unsynced_pages: usize,
    /// Of those, the pages the kernel had written back.
    pub(in crate::wal) kept_pages: usize,
}

/// The page of `v` that starts at `a` (shorter at its end, empty past it).
fn page(v: &[u8], a: usize) -> &[u8] {
    &v[a.min(v.len())..(a + PAGE).min(v.len())]
}

/// Writes into `into` (an empty directory) what a power cut now would leave of `dir`.
/// `keep` decides for each unsynced page whether it reached the disk.
pub(in crate::wal) fn cut(dir: &Path, into: &Path, mut keep: impl FnMut() -> bool) -> Cut {
    let armed = armed();
    let durable = armed.get(dir).expect("the directory is armed");
    let now: HashMap<Id, OsString> = listing(dir).into_iter().map(|(n, f)| (f, n)).collect();
    let mut report = Cut::default();
    for (name, file) in &durable.names {
        let old = durable.content.get(file).cloned().unwrap_or_default();
        // The file's bytes now, under whatever name it has now; deleted means unchanged.
        let new = now
            .get(file)
            .and_then(|n| std::fs::read(dir.join(n)).ok())
            .unwrap_or_else(|| old.clone());
        let mut out = old.clone();
        let pages = old.len().max(new.len()).div_ceil(PAGE);
        for p in 0..pages {
            let a = p * PAGE;
            let (was, is) = (page(&old, a), page(&new, a));
            if was == is {
                continue;
            }
            report.unsynced_pages += 1;
            if !keep() {
                continue;
            }
            report.kept_pages += 1;
            if is.is_empty() {
                // The file is shorter now, and that reached the disk.
                out.truncate(a.min(out.len()));
                continue;
            }
            if out.len() < a + is.len() {
                out.resize(a + is.len(), 0);
            }
            out[a..a + is.len()].copy_from_slice(is);
            if a + is.len() == new.len() && new.len() < out.len() {
                out.truncate(new.len());
            }
        }
        std::fs::write(into.join(name), &out).expect("write the image");
        report.files += 1;
    }
    report
}

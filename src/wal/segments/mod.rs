//! Where records live: append-only segment files in `<wal-dir>/segments`.
//!
//! Each file is named after the first sequence it holds (16 hex digits). The appends write
//! the files, and the group commit's `fdatasync` makes them durable. Reads go through the
//! page cache. A shipped segment is deleted whole, or kept to take the next segment
//! ([`spare`]).
//!
//! Why the records are not in sled: every group-commit flush sealed a sled IO buffer and
//! woke all of sled's IO threads. sled also kept buffered records in its own cache (see
//! `bench/HISTORY.md`). Here a record costs one `pwritev` into the page cache under the
//! log lock, plus its share of one `fdatasync`. sled keeps only cursors, metadata and the
//! quarantine.
//!
//! # Invariants
//! - Records are appended in sequence order. A segment holds a run of increasing
//!   sequences. Each segment's sequences are above those of the segments before it.
//! - A record enters the index ([`Segments::read`] can find it) only once its bytes are
//!   written whole. A failed write leaves the segment's end where it was, so the next
//!   write overwrites the partial bytes.
//! - When [`Segments::sync`] returns, every record appended before the call is on disk.
//!   So are the directory entries of the segments that hold them.
//! - The segment being appended to is never deleted. Another segment is deleted only once
//!   every sequence in it is below the floor the caller gives. Readers keep the file open,
//!   so a deletion never pulls bytes from under a read. A file that someone holds is never
//!   reused.
//! - Start-up cuts off a write that a crash cut short (it was never acknowledged). It
//!   reports damaged records and framing. After start-up, appends go to a fresh segment.

mod file;
mod frame;
#[cfg(test)]
pub(super) mod power_cut;
pub(crate) mod space;
mod spare;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};

use super::record::{CodecError, RecordMeta};
use frame::{Header, HEADER, LIVE, REMOVED};
use space::{shrink_away, Room};
use spare::Spare;

/// The segment size of unit tests: small, so that they cross segments often. The size is
/// [`super::WalConfig::segment_bytes`] (32 MiB by default). Each segment costs one file
/// creation (or a rename of the spare) and one directory sync. A drained buffer keeps the
/// open segment and the spare on disk.
#[cfg(test)]
pub(super) const SEGMENT_BYTES: u64 = 1000;

/// Most bytes read from a file in one call.
const READ_CHUNK: usize = 8 << 20;

/// Where one record is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    /// Offset of its frame header.
    at: u64,
    /// Record length. 0 for a sequence the segment does not hold (damaged or skipped).
    len: u32,
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    /// Location of sequence `first + i` (the key in [`State::segments`]).
    locs: Vec<Loc>,
    /// Where the next frame goes.
    end: u64,
    /// The file had an earlier use ([`spare`]), so the bytes after `end` may be old ones.
    reused: bool,
}

impl Segment {
    /// Records where `seq` is, in a segment whose first sequence is `first`. Sequences
    /// skipped on the way (removed or never stored) become holes.
    fn place(&mut self, first: u64, seq: u64, loc: Loc) {
        while first + (self.locs.len() as u64) < seq {
            self.locs.push(HOLE);
        }
        self.locs.push(loc);
    }
}

/// A sequence the segment does not hold.
const HOLE: Loc = Loc { at: 0, len: 0 };

#[derive(Default)]
struct State {
    /// By first sequence.
    segments: BTreeMap<u64, Segment>,
    /// Files written since the last sync.
    unsynced: Vec<Arc<File>>,
    /// A segment was created since the last sync.
    dir_unsynced: bool,
    /// The last segment takes no more appends (it was there at start-up).
    sealed: bool,
    /// Free space left above the reserve, as last read.
    room: Room,
    /// A shipped segment's file, kept for the next segment.
    spare: Option<Spare>,
}

impl State {
    /// Takes room for an append of `len` bytes ([`Room`]). When the disk is nearly full,
    /// the spare's blocks are given back first: a buffer that drained after filling the
    /// disk would otherwise keep its shipped segment as the spare, and refuse every write
    /// although nothing is left to ship.
    fn take_room(&mut self, dir: &Path, len: u64) -> io::Result<()> {
        let mut taken = self.room.take(dir, len);
        if matches!(&taken, Err(e) if e.kind() == io::ErrorKind::StorageFull) {
            if let Some(spare) = self.spare.take() {
                match spare.delete() {
                    Ok(freed) => {
                        tracing::warn!(dir = %dir.display(), freed, "wal: the disk is nearly full; the spare segment file is deleted to give its space back");
                        taken = self.room.take(dir, len);
                    }
                    Err(e) => {
                        tracing::error!(dir = %dir.display(), error = %e, "wal: could not delete the spare segment file");
                    }
                }
            }
        }
        if let Err(e) = &taken {
            self.room.refused(dir, e);
        }
        taken
    }

    /// Keeps `file` as the spare if there is none; otherwise hands it back to be deleted.
    /// `file` is at `path`, out of the index, and nobody else holds it.
    fn keep(&mut self, dir: &Path, file: File, path: &Path) -> Option<File> {
        if self.spare.is_some() {
            return Some(file);
        }
        match spare::rename(dir, path) {
            Ok(at) => {
                self.spare = Some(Spare::new(file, at));
                None
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "wal: could not keep a shipped segment for reuse; deleting it");
                Some(file)
            }
        }
    }

    /// Keeps `file` (at `path`) as the spare, or deletes it at once. Used at start-up,
    /// when nothing waits on a group commit yet.
    fn retire(&mut self, dir: &Path, file: File, path: &Path) -> io::Result<()> {
        if self.keep(dir, file, path).is_some() {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Opens the segment that starts at `seq`. It is the spare under its new name if there
    /// is one, else a new file. The segment that this closes loses the bytes its file held
    /// past its records.
    fn open_fresh(&mut self, dir: &Path, seq: u64) -> io::Result<()> {
        if let Some((_, last)) = self.segments.last_key_value() {
            if last.reused {
                if let Err(e) = last.file.set_len(last.end) {
                    // A restart cuts the old bytes off instead.
                    tracing::warn!(file = %last.path.display(), error = %e, "wal: could not cut the old bytes off a reused segment");
                }
            }
        }
        let path = dir.join(name(seq));
        let spare = self.spare.take().and_then(|s| match s.reuse(&path) {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "wal: could not reuse the spare segment file; creating a new one");
                None
            }
        });
        let (file, reused) = match spare {
            Some(file) => (file, true),
            None => {
                let file = File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                (file, false)
            }
        };
        self.segments.insert(
            seq,
            Segment {
                file: Arc::new(file),
                path,
                locs: Vec::new(),
                end: 0,
                reused,
            },
        );
        self.dir_unsynced = true;
        self.sealed = false;
        Ok(())
    }
}

/// The segment files of one WAL.
pub(super) struct Segments {
    dir: PathBuf,
    /// A segment is closed for appends once it holds this many bytes.
    segment_bytes: u64,
    state: Mutex<State>,
    /// Serialises syncs. So a sync that returns also covers the files that an earlier,
    /// still running sync took over.
    syncing: Mutex<()>,
}

/// One record found at start-up.
#[derive(Debug)]
pub(super) struct Recovered {
    pub(super) seq: u64,
    pub(super) len: u32,
    /// Its metadata, or why it is not a record. A bad record is marked removed on disk.
    pub(super) meta: Result<RecordMeta, CodecError>,
}

/// What start-up found besides the records.
#[derive(Debug, Default)]
pub(super) struct Damage {
    /// Stretches of damaged framing skipped: (segment, from, to) byte offsets.
    pub(super) skipped: Vec<(PathBuf, u64, u64)>,
    /// Writes cut short at the end of a segment: (segment, bytes cut off).
    pub(super) cut: Vec<(PathBuf, u64)>,
    /// Reused segments whose end held the records of their earlier use, and perhaps a
    /// write cut short: (segment, bytes cut off).
    pub(super) stale: Vec<(PathBuf, u64)>,
}

fn name(first: u64) -> String {
    format!("{first:016x}")
}

fn first_of(name: &std::ffi::OsStr) -> Option<u64> {
    let name = name.to_str()?;
    if name.len() != 16 {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

impl Segments {
    /// Opens the segments in `dir`, and creates `dir` if it is missing. It deletes the
    /// segments wholly below `floor` and returns the records from `floor` on, in order. It
    /// marks damaged records removed on disk (the caller reports them) and cuts off writes
    /// that a crash cut short. New segments are closed at `segment_bytes`.
    pub(super) fn open(
        dir: &Path,
        floor: u64,
        segment_bytes: u64,
    ) -> io::Result<(Segments, Vec<Recovered>, Damage)> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            // The new directory's own entry, before any record in it is acknowledged.
            if let Some(parent) = dir.parent() {
                file::sync_dir(parent)?;
            }
        }
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            match first_of(&entry.file_name()) {
                Some(first) => firsts.push(first),
                None if entry.file_name() == spare::NAME => {}
                None => {
                    tracing::warn!(file = %entry.path().display(), "wal: not a segment file, left alone")
                }
            }
        }
        firsts.sort_unstable();
        let mut state = State {
            spare: Spare::find(dir)?,
            ..State::default()
        };
        let mut found = Vec::new();
        let mut damage = Damage::default();
        let mut last = None;
        for (i, &first) in firsts.iter().enumerate() {
            let path = dir.join(name(first));
            let file = File::options().read(true).write(true).open(&path)?;
            if firsts.get(i + 1).is_some_and(|&next| next <= floor) {
                // Every sequence in it is below the floor, so it has left the buffer.
                state.retire(dir, file, &path)?;
                continue;
            }
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut &file, &mut bytes)?;
            // Its name is its first sequence, so anything below it is from an earlier use.
            let scan = frame::scan(&bytes, last.max(first.checked_sub(1)));
            damage
                .skipped
                .extend(scan.skipped.iter().map(|&(a, b)| (path.clone(), a, b)));
            if scan.end < bytes.len() as u64 {
                file.set_len(scan.end)?;
                let cut = (path.clone(), bytes.len() as u64 - scan.end);
                if scan.stale {
                    damage.stale.push(cut);
                } else {
                    damage.cut.push(cut);
                }
            }
            let mut segment = Segment {
                file: Arc::new(file),
                path,
                locs: Vec::new(),
                end: scan.end,
                reused: false,
            };
            let mut first = None;
            for f in scan.frames {
                let base = *first.get_or_insert(f.seq);
                last = Some(f.seq);
                let Some(meta) = f.meta else {
                    segment.place(base, f.seq, HOLE);
                    continue;
                };
                if meta.is_err() {
                    let removed = Header {
                        len: f.len,
                        seq: f.seq,
                        state: REMOVED,
                    };
                    segment.file.write_all_at(&removed.encode(), f.at)?;
                }
                let len = if meta.is_ok() { f.len } else { 0 };
                segment.place(base, f.seq, Loc { at: f.at, len });
                if f.seq >= floor {
                    found.push(Recovered {
                        seq: f.seq,
                        len: f.len,
                        meta,
                    });
                }
            }
            // An empty segment needs no entry, because the next append opens a fresh one.
            if let Some(first) = first {
                state.segments.insert(first, segment);
            } else {
                match Arc::try_unwrap(segment.file) {
                    Ok(file) => state.retire(dir, file, &segment.path)?,
                    Err(_) => std::fs::remove_file(&segment.path)?,
                }
            }
        }
        let segments = Segments {
            dir: dir.to_path_buf(),
            segment_bytes,
            state: Mutex::new(state),
            syncing: Mutex::new(()),
        };
        // Appends go to a fresh segment, never after bytes a crash may have left.
        segments.lock().sealed = true;
        Ok((segments, found, damage))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The last sequence stored, if any. A segment whose first write failed holds none.
    pub(super) fn last_seq(&self) -> Option<u64> {
        let state = self.lock();
        let mut stored = state
            .segments
            .iter()
            .rev()
            .filter(|(_, s)| !s.locs.is_empty());
        stored
            .next()
            .map(|(first, s)| first + s.locs.len() as u64 - 1)
    }

    /// Appends record `seq` (blocking). Sequences must increase. The append fails with
    /// [`io::ErrorKind::StorageFull`] when it would leave less than the reserve free
    /// ([`Room`]), or when the disk is full.
    pub(super) fn append(&self, seq: u64, record: &[u8]) -> io::Result<()> {
        let len = u32::try_from(record.len())
            .map_err(|_| io::Error::other("record larger than 4 GiB"))?;
        let mut state = self.lock();
        state.take_room(&self.dir, record.len() as u64)?;
        let fresh = match state.segments.last_key_value() {
            None => true,
            Some((&first, s)) => {
                if seq < first + s.locs.len() as u64 {
                    return Err(io::Error::other(format!(
                        "append of sequence {seq} behind the stored ones"
                    )));
                }
                state.sealed || s.end >= self.segment_bytes
            }
        };
        if fresh {
            state.open_fresh(&self.dir, seq)?;
        }
        let State {
            segments, unsynced, ..
        } = &mut *state;
        let mut last = segments.last_entry().expect("a segment");
        let first = *last.key();
        let segment = last.get_mut();
        let header = Header {
            len,
            seq,
            state: LIVE,
        }
        .encode();
        if segment.reused {
            // The record goes down before its header. So a write cut short over old bytes
            // leaves no good header. The old headers are below the segment's name.
            write_all_at(&segment.file, segment.end + HEADER as u64, &[record])?;
            write_all_at(&segment.file, segment.end, &[&header])?;
        } else {
            write_all_at(&segment.file, segment.end, &[&header, record])?;
        }
        let at = segment.end;
        segment.place(first, seq, Loc { at, len });
        segment.end += (HEADER + record.len()) as u64;
        if !unsynced.iter().any(|f| Arc::ptr_eq(f, &segment.file)) {
            unsynced.push(segment.file.clone());
        }
        Ok(())
    }

    /// Reads the records from `from` up to `end` (exclusive), in order. It stops at
    /// `max_records` or once `max_bytes` are reached, and reads at least one record. It
    /// leaves out sequences that the segments do not hold.
    pub(super) fn read(
        &self,
        from: u64,
        end: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<(u64, Bytes)>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut seq = from;
        while seq < end && out.len() < max_records && bytes < max_bytes {
            // One contiguous run of one segment. It is located under the lock and read
            // without it.
            let (file, run, next) = {
                let state = self.lock();
                let holding = state
                    .segments
                    .range(..=seq)
                    .next_back()
                    .filter(|(&first, s)| seq < first + s.locs.len() as u64);
                let Some((&first, segment)) =
                    holding.or_else(|| state.segments.range(seq + 1..end).next())
                else {
                    break;
                };
                let stop = end.min(first + segment.locs.len() as u64);
                let mut s = seq.max(first);
                let (mut run, mut run_bytes) = (Vec::new(), 0usize);
                while s < stop
                    && out.len() + run.len() < max_records
                    && bytes + run_bytes < max_bytes
                    && run_bytes < READ_CHUNK
                {
                    let loc = segment.locs[(s - first) as usize];
                    if loc.len > 0 {
                        run.push((s, loc));
                        run_bytes += loc.len as usize;
                    }
                    s += 1;
                }
                (segment.file.clone(), run, s)
            };
            seq = next.max(seq + 1);
            let (Some(&(_, a)), Some(&(_, b))) = (run.first(), run.last()) else {
                continue;
            };
            let start = a.at;
            let stop = b.at + HEADER as u64 + u64::from(b.len);
            let chunk = Bytes::from(read_at(&file, start, (stop - start) as usize)?);
            for (s, loc) in run {
                let at = (loc.at - start) as usize + HEADER;
                out.push((s, chunk.slice(at..at + loc.len as usize)));
                bytes += loc.len as usize;
            }
        }
        Ok(out)
    }

    /// Makes every record appended so far durable (blocking). It runs `fdatasync` on each
    /// segment written since the last sync, and on the directory when it has new segments.
    pub(super) fn sync(&self) -> io::Result<()> {
        let _one_at_a_time = self.syncing.lock();
        let (files, dir) = {
            let mut state = self.lock();
            let dir = std::mem::take(&mut state.dir_unsynced);
            (std::mem::take(&mut state.unsynced), dir)
        };
        let result = (|| {
            for f in &files {
                file::sync_data(f)?;
            }
            if dir {
                file::sync_dir(&self.dir)?;
            }
            Ok(())
        })();
        if result.is_err() {
            // The next sync tries again.
            let mut state = self.lock();
            state.dir_unsynced |= dir;
            for f in files {
                if !state.unsynced.iter().any(|g| Arc::ptr_eq(g, &f)) {
                    state.unsynced.push(f);
                }
            }
        }
        result
    }

    /// Whether some segment other than the open one holds only sequences below `floor`.
    pub(super) fn any_below(&self, floor: u64) -> bool {
        !wholly_below(&self.lock(), floor).is_empty()
    }

    /// Deletes the segments whose sequences are all below `floor`, except the open one, or
    /// keeps one of them as the spare. Returns how many went. The caller makes the floor
    /// durable first.
    pub(super) fn delete_below(&self, floor: u64) -> io::Result<usize> {
        let doomed: Vec<Segment> = {
            let mut state = self.lock();
            let firsts = wholly_below(&state, floor);
            firsts
                .iter()
                .filter_map(|f| state.segments.remove(f))
                .collect()
        };
        let count = doomed.len();
        for s in doomed {
            let Ok(file) = Arc::try_unwrap(s.file) else {
                // A reader or a sync still holds it. Its last close frees it, all at once.
                std::fs::remove_file(&s.path)?;
                continue;
            };
            let Some(file) = self.lock().keep(&self.dir, file, &s.path) else {
                continue;
            };
            // Its blocks are freed a step at a time. A reused file may be longer than its
            // records.
            let len = file.metadata().map_or(s.end, |m| m.len());
            if let Err(e) = shrink_away(&file, len) {
                // Only the pacing is lost. The unlink below still frees the rest.
                tracing::warn!(file = %s.path.display(), error = %e, "wal: could not shrink a shipped segment before deleting it");
            }
            std::fs::remove_file(&s.path)?;
        }
        Ok(count)
    }
}

/// The segments whose sequences are all below `floor`, except the open one.
fn wholly_below(state: &State, floor: u64) -> Vec<u64> {
    let firsts: Vec<u64> = state.segments.keys().copied().collect();
    firsts
        .windows(2)
        .filter(|w| w[1] <= floor)
        .map(|w| w[0])
        .collect()
}

/// `pwritev` of `parts` at `offset`, until all of it is written.
fn write_all_at(file: &File, mut offset: u64, parts: &[&[u8]]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let off = libc::off_t::try_from(offset).map_err(|_| io::Error::other("offset overflow"))?;
    // SAFETY: every iovec points into a slice borrowed for the whole call. The kernel only
    // reads from them.
    let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as i32, off) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut done = n as usize;
    if done == total {
        return Ok(());
    }
    // A short write is rare (signals, a nearly full disk). Then the rest goes one part at
    // a time.
    offset += done as u64;
    for p in parts {
        if done >= p.len() {
            done -= p.len();
            continue;
        }
        file.write_all_at(&p[done..], offset)?;
        offset += (p.len() - done) as u64;
        done = 0;
    }
    Ok(())
}

/// `len` bytes of `file` from `offset`.
fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

#[cfg(test)]
mod tests;

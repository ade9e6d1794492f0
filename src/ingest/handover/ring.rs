//! One source's recent writes: the ring a handover reads.
//!
//! A ring holds the writes of one (group, source), oldest first, bounded in bytes and in
//! data time. A write is held in one of two places:
//! - *on disk* while another source of the group writes too (the HA case): each ring has
//!   its own directory `<data-dir>/handover/<key>/` with a `ring.json` that names the group
//!   and the source, and append-only files `<id>.held` of frames. The files are never
//!   synced: nothing in them is promised durably. A handover reads them back through the
//!   page cache, so the rings cost disk and page cache, not heap. They survive a restart of
//!   highlander ([`Ring::recover`]).
//! - *in memory* while the source is alone in its group: a lone promoted source at full
//!   rate would otherwise write every request twice, and its ring only needs a small tail
//!   (see the handover's module doc).
//!
//! Frame layout (little endian):
//! ```text
//! len u32 | flags u8 | received_ms u64 | min_ts i64 | max_ts i64 |
//! series u32 | samples u32 | histograms u32 | exemplars u32 | crc32 u32 | payload (len)
//! ```
//! `flags` bit 0 says whether the write was forwarded, bit 1 that it is a Remote-Write 2.0
//! request. The CRC-32 covers the header bytes
//! before it and the payload. Start-up reads only the headers and cuts a file at the
//! first frame that goes past its end (a crash cut it short); a handover checks the CRC
//! when it reads a frame and skips a damaged one with a warning.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Held;
use crate::metrics::METRICS;
use crate::wal::{disk_space, reserve, RecordMeta};
use crate::wire::Version;

/// Bytes of a frame header.
const HEADER: usize = 4 + 1 + RecordMeta::BYTES + 4;
/// The frame's flag for a forwarded write.
const FORWARDED: u8 = 1;
/// The frame's flag for a 2.0 request.
const V2: u8 = 2;
/// The file that names a ring's group and source.
const NAME_FILE: &str = "ring.json";
/// The extension of the held files.
const EXTENSION: &str = "held";

/// A ring's file is closed for appends past this many bytes, or past a sixteenth of the
/// ring's byte cap if that is less: the oldest writes leave the disk a file at a time.
const FILE_MAX_BYTES: u64 = 8 << 20;

/// Where one held write is.
#[derive(Clone)]
enum Place {
    /// Its payload, in memory.
    Memory(Bytes),
    /// A frame of a file.
    Disk {
        file: Arc<File>,
        /// The file's id.
        id: u64,
        /// Offset of the frame header.
        at: u64,
    },
}

/// One held write: its counts and times, whether it was forwarded, and where it is.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) meta: RecordMeta,
    pub(super) forwarded: bool,
    pub(super) protocol: Version,
    /// Payload bytes (what the byte cap counts).
    pub(super) len: u64,
    place: Place,
}

impl Entry {
    /// The write, read back. `None` (with a warning) when its frame is damaged.
    pub(super) fn read(&self, ring: &RingName) -> Option<Held> {
        match &self.place {
            Place::Memory(payload) => Some(Held {
                payload: payload.clone(),
                meta: self.meta,
                protocol: self.protocol,
            }),
            Place::Disk { file, at, .. } => match read_frame(file, *at, self.len) {
                Ok(payload) => Some(Held {
                    payload,
                    meta: self.meta,
                    protocol: self.protocol,
                }),
                Err(e) => {
                    tracing::warn!(group = %ring.group, source = %ring.source, error = %e, "handover: a held write is damaged and skipped");
                    None
                }
            },
        }
    }

    fn has_samples(&self) -> bool {
        self.meta.samples + self.meta.histograms > 0
    }
}

/// The group and source a ring belongs to (its `ring.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RingName {
    pub(super) group: String,
    pub(super) source: String,
}

/// A file of a ring.
struct RingFile {
    id: u64,
    file: Arc<File>,
    path: PathBuf,
    /// Where the next frame goes.
    end: u64,
    /// Entries still held in it.
    entries: usize,
}

/// The held writes of one source of a group.
pub(super) struct Ring {
    pub(super) name: RingName,
    dir: PathBuf,
    /// Its files, oldest first; appends go to the last.
    files: VecDeque<RingFile>,
    /// Held writes, oldest first.
    entries: VecDeque<Entry>,
    /// Payload bytes of `entries`.
    pub(super) bytes: u64,
    /// When its source last wrote (ms since the epoch).
    pub(super) last_received_ms: u64,
}

/// The limits a write is held under.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// Most payload bytes held.
    pub(super) max_bytes: u64,
    /// Data time held behind the newest write.
    pub(super) window_ms: i64,
    /// Whether the write goes to disk (another source writes too) or stays in memory.
    pub(super) on_disk: bool,
}

impl Ring {
    /// An empty ring, whose files (if any) go to `dir`.
    pub(super) fn new(name: RingName, dir: PathBuf) -> Ring {
        Ring {
            name,
            dir,
            files: VecDeque::new(),
            entries: VecDeque::new(),
            bytes: 0,
            last_received_ms: 0,
        }
    }

    /// The held writes, oldest first.
    pub(super) fn entries(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.entries.iter()
    }

    /// Holds a write, then drops the oldest ones until the ring is within its bounds (the
    /// newest write stays whatever its size). A write that should go to disk and cannot
    /// (no room, or an error) is not held: a handover then has a hole there, never the
    /// process a heap of held writes. `room` says whether the disk has room for it.
    pub(super) fn push(&mut self, write: &Held, forwarded: bool, bounds: Bounds, room: &mut Room) {
        let len = write.payload.len() as u64;
        let place = if bounds.on_disk {
            let appended = room
                .take(&self.dir, len)
                .and_then(|()| self.append(write, forwarded, bounds.max_bytes));
            match appended {
                Ok(place) => place,
                Err(e) => {
                    room.refused(&self.name, &e);
                    return;
                }
            }
        } else {
            Place::Memory(write.payload.clone())
        };
        self.last_received_ms = self.last_received_ms.max(write.meta.received_ms);
        self.bytes += len;
        place_gauge(&place).add(len as i64);
        self.entries.push_back(Entry {
            meta: write.meta,
            forwarded,
            protocol: write.protocol,
            len,
            place,
        });
        self.bound(bounds);
    }

    /// Drops the oldest writes until the ring is within `bounds`.
    fn bound(&mut self, bounds: Bounds) {
        let Some(newest) = self.entries.back().cloned() else {
            return;
        };
        while let Some(front) = self.entries.front() {
            // Age in data time where both have samples, else in receive time.
            let over_bytes = self.bytes > bounds.max_bytes && self.entries.len() > 1;
            let too_old = if newest.has_samples() && front.has_samples() {
                front.meta.max_ts < newest.meta.max_ts.saturating_sub(bounds.window_ms)
            } else {
                (front.meta.received_ms as i64)
                    < (newest.meta.received_ms as i64).saturating_sub(bounds.window_ms)
            };
            if !over_bytes && !too_old {
                break;
            }
            let gone = self.entries.pop_front().expect("front exists");
            self.bytes -= gone.len;
            place_gauge(&gone.place).sub(gone.len as i64);
            if let Place::Disk { id, .. } = gone.place {
                if let Some(f) = self.files.iter_mut().find(|f| f.id == id) {
                    f.entries -= 1;
                }
            }
        }
        self.delete_empty_files();
    }

    /// Deletes the files no held write is in, except the one appends go to.
    fn delete_empty_files(&mut self) {
        while self.files.len() > 1 && self.files.front().is_some_and(|f| f.entries == 0) {
            let f = self.files.pop_front().expect("front exists");
            if let Err(e) = fs::remove_file(&f.path) {
                tracing::warn!(path = %f.path.display(), error = %e, "handover: could not delete a held file");
            }
        }
    }

    /// Appends a frame to the open file (a new one when it is full).
    fn append(&mut self, write: &Held, forwarded: bool, max_bytes: u64) -> io::Result<Place> {
        let file_max = (max_bytes / 16).clamp(1 << 16, FILE_MAX_BYTES);
        if self.files.back().is_none_or(|f| f.end >= file_max) {
            self.open_file()?;
        }
        let f = self.files.back_mut().expect("a file is open");
        let frame = encode_frame(write, forwarded);
        f.file.write_all_at(&frame, f.end)?;
        let place = Place::Disk {
            file: Arc::clone(&f.file),
            id: f.id,
            at: f.end,
        };
        f.end += frame.len() as u64;
        f.entries += 1;
        Ok(place)
    }

    /// Starts a new file (and the ring's directory and name file, the first time).
    fn open_file(&mut self) -> io::Result<()> {
        if self.files.is_empty() {
            fs::create_dir_all(&self.dir)?;
            let name = serde_json::to_vec(&self.name).map_err(io::Error::other)?;
            fs::write(self.dir.join(NAME_FILE), name)?;
        }
        let id = self.files.back().map_or(0, |f| f.id + 1);
        let path = self.dir.join(format!("{id:016x}.{EXTENSION}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        self.files.push_back(RingFile {
            id,
            file: Arc::new(file),
            path,
            end: 0,
            entries: 0,
        });
        Ok(())
    }

    /// Deletes the ring's files and directory.
    pub(super) fn remove(self) {
        for e in &self.entries {
            place_gauge(&e.place).sub(e.len as i64);
        }
        if self.files.is_empty() {
            return;
        }
        drop(self.files);
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "handover: could not delete a ring");
        }
    }

    /// A ring found on disk at start-up: its entries from the frame headers. A file is cut
    /// at the first frame that goes past its end.
    pub(super) fn recover(dir: &Path) -> io::Result<Ring> {
        let name: RingName = serde_json::from_slice(&fs::read(dir.join(NAME_FILE))?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(&format!(".{EXTENSION}"))?;
                u64::from_str_radix(id, 16).ok()
            })
            .collect();
        ids.sort_unstable();
        let mut ring = Ring::new(name, dir.to_owned());
        for id in ids {
            ring.recover_file(id)?;
        }
        Ok(ring)
    }

    fn recover_file(&mut self, id: u64) -> io::Result<()> {
        let path = self.dir.join(format!("{id:016x}.{EXTENSION}"));
        let file = Arc::new(OpenOptions::new().read(true).write(true).open(&path)?);
        let size = file.metadata()?.len();
        let mut at = 0u64;
        let mut entries = 0usize;
        let mut header = [0u8; HEADER];
        while at + HEADER as u64 <= size {
            file.read_exact_at(&mut header, at)?;
            let (len, flags, meta) = decode_header(&header);
            if at + HEADER as u64 + len > size {
                break;
            }
            self.last_received_ms = self.last_received_ms.max(meta.received_ms);
            self.bytes += len;
            METRICS.handover.held_disk_bytes.add(len as i64);
            self.entries.push_back(Entry {
                meta,
                forwarded: flags & FORWARDED != 0,
                protocol: if flags & V2 != 0 {
                    Version::V2
                } else {
                    Version::V1
                },
                len,
                place: Place::Disk {
                    file: Arc::clone(&file),
                    id,
                    at,
                },
            });
            entries += 1;
            at += HEADER as u64 + len;
        }
        if at < size {
            file.set_len(at)?;
        }
        self.files.push_back(RingFile {
            id,
            file,
            path,
            end: at,
            entries,
        });
        Ok(())
    }
}

/// Free space for held writes, read at most every [`ROOM_READ_EVERY`]: they stop while
/// less than twice the buffer's reserve is free, so that on a filling disk the held
/// writes (promised to nobody) stop before the buffer's appends do.
#[derive(Default)]
pub(super) struct Room {
    /// Bytes that may be written before the free space is read again.
    left: u64,
    /// When it was read last.
    read: Option<Instant>,
    /// When a refusal was last logged.
    logged: Option<Instant>,
}

/// How often the free space is read while writes are held.
const ROOM_READ_EVERY: Duration = Duration::from_millis(100);
/// How often a refusal is logged.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

impl Room {
    /// Takes `len` bytes on the file system of `dir` (its parent while it does not exist).
    fn take(&mut self, dir: &Path, len: u64) -> io::Result<()> {
        let now = Instant::now();
        if self
            .read
            .is_some_and(|t| now.duration_since(t) < ROOM_READ_EVERY)
            && len <= self.left
        {
            self.left -= len;
            return Ok(());
        }
        let at = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
        let (free, total) = disk_space(at)?;
        let keep = reserve(total).saturating_mul(2);
        if free < keep.saturating_add(len) {
            self.read = None;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("{free} bytes free, held writes leave {keep}"),
            ));
        }
        self.left = (free - keep - len) / 2;
        self.read = Some(now);
        Ok(())
    }

    /// Counts a write that was not held, and logs it at most every [`REFUSED_LOG_EVERY`].
    fn refused(&mut self, ring: &RingName, e: &io::Error) {
        METRICS.handover.held_errors.inc();
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= REFUSED_LOG_EVERY)
        {
            self.logged = Some(now);
            tracing::warn!(group = %ring.group, source = %ring.source, error = %e, "handover: writes cannot be held on disk and are not held: a handover of this group may leave a hole");
        }
    }
}

/// The gauge of the bytes held in `place`'s kind of place.
fn place_gauge(place: &Place) -> &'static prometheus::IntGauge {
    match place {
        Place::Memory(_) => &METRICS.handover.held_memory_bytes,
        Place::Disk { .. } => &METRICS.handover.held_disk_bytes,
    }
}

/// The frame of one write.
fn encode_frame(write: &Held, forwarded: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + write.payload.len());
    out.extend_from_slice(&(write.payload.len() as u32).to_le_bytes());
    let v2 = match write.protocol {
        Version::V1 => 0,
        Version::V2 => V2,
    };
    out.push(if forwarded { FORWARDED | v2 } else { v2 });
    out.extend_from_slice(&write.meta.to_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(&write.payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&write.payload);
    out
}

/// A frame header's payload length, flags and meta (the CRC is checked with the payload,
/// in [`read_frame`]).
fn decode_header(h: &[u8; HEADER]) -> (u64, u8, RecordMeta) {
    let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
    let meta = RecordMeta::from_bytes(
        h[5..5 + RecordMeta::BYTES]
            .try_into()
            .expect("in the header"),
    );
    (u64::from(len), h[4], meta)
}

/// The payload of the frame at `at`, its CRC checked.
fn read_frame(file: &File, at: u64, len: u64) -> io::Result<Bytes> {
    let mut buf = vec![0u8; HEADER + len as usize];
    file.read_exact_at(&mut buf, at)?;
    let stored = u32::from_le_bytes(buf[HEADER - 4..HEADER].try_into().expect("4 bytes"));
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[..HEADER - 4]);
    crc.update(&buf[HEADER..]);
    if crc.finalize() != stored {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    Ok(Bytes::from(buf).slice(HEADER..))
}

/// The rings found under `dir` at start-up; a ring that cannot be read is deleted with a
/// warning (it only costs a gap at the next handover).
pub(super) fn recover_all(dir: &Path) -> io::Result<Vec<Ring>> {
    let mut rings = Vec::new();
    let listing = match fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(rings),
        Err(e) => return Err(e),
    };
    for entry in listing {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        match Ring::recover(&path) {
            Ok(ring) => rings.push(ring),
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "handover: a held ring cannot be read and is deleted");
                let _ = fs::remove_dir_all(&path);
            }
        }
    }
    Ok(rings)
}

/// The directory of the ring of (`group`, `source`) under `root`: a hash of both names,
/// so that any label value makes a valid file name.
pub(super) fn ring_dir(root: &Path, name: &RingName) -> PathBuf {
    let mut key = Vec::with_capacity(name.group.len() + name.source.len() + 1);
    key.extend_from_slice(name.group.as_bytes());
    key.push(0);
    key.extend_from_slice(name.source.as_bytes());
    let hash = xxhash_rust::xxh3::xxh3_128(&key);
    root.join(format!("{hash:032x}"))
}

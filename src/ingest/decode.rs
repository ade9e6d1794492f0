//! Turning a request body into a validated write: snappy block decode under a size limit,
//! the wire scan, and the label stripping. A write is stored in the version it arrived in:
//! a 2.0 body keeps its symbols table, and its replica label is stripped by rewriting the
//! series' `labels_refs`. Its 1.0 form (what a 1.0 storage gets) is held to the decoded
//! size limit too, without converting it here. Pure: no I/O, no clock.

use bytes::Bytes;

use super::error::IngestError;
use super::protocol::{Version, Written};
use crate::wal::RecordMeta;
use crate::wire::{self, Summary, Wanted, WireError};

/// Body size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest compressed body accepted.
    pub max_body_bytes: u64,
    /// Largest decoded (uncompressed) body accepted.
    pub max_decoded_bytes: u64,
}

/// A validated write, ready for the election and the WAL.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The payload to store and ship: the received body when nothing changed, else the
    /// re-compressed body without the replica label.
    pub payload: Bytes,
    /// The Remote-Write version of the payload (the request's).
    pub protocol: Version,
    /// Counts and times (receive time left 0 for the caller).
    pub meta: RecordMeta,
    /// Value of the replica label, if configured and present.
    pub replica: Option<String>,
    /// Value of the group label, if configured and present.
    pub group: Option<String>,
    /// What a 2.0 sender is told was written when the write is accepted.
    pub written: Written,
    /// When the series carry several (replica, group) pairs: one part per pair, in the
    /// order they first appear. Empty for the usual request of one source.
    pub parts: Vec<DecodedPart>,
    /// Series without the configured replica label.
    pub unlabelled: u32,
}

/// The series of one (replica, group) pair of a mixed request, stored as 1.0 (the
/// replica label stripped, when configured).
#[derive(Debug, Clone)]
pub struct DecodedPart {
    /// The snappy-compressed 1.0 request of the part.
    pub payload: Bytes,
    /// Its counts and times (receive time left 0 for the caller).
    pub meta: RecordMeta,
    /// The replica label's value; `None`: series without it (not HA).
    pub replica: Option<String>,
    /// The group label's value, if present.
    pub group: Option<String>,
}

/// The parts of a mixed request, from its 1.0 form.
fn split(raw_v1: &[u8], wanted: Wanted<'_>) -> Result<Vec<DecodedPart>, IngestError> {
    wire::split_v1(raw_v1, wanted)?
        .into_iter()
        .map(|part| {
            let stripped = match (wanted.replica, part.replica) {
                (Some(label), Some(_)) => wire::strip_label(&part.raw, label)?,
                _ => part.raw,
            };
            let summary = wire::scan(&stripped, Wanted::default())?;
            Ok(DecodedPart {
                payload: compress(&stripped)?,
                meta: meta_of(&summary),
                replica: part.replica.map(str::to_owned),
                group: part.group.map(str::to_owned),
            })
        })
        .collect()
}

/// Decompresses a snappy block, refusing before allocation when the announced size is over
/// the limit (a few bytes can announce gigabytes).
pub fn decompress(body: &[u8], limit: u64) -> Result<Vec<u8>, IngestError> {
    checked_len(body, limit)?;
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| IngestError::Snappy(e.to_string()))
}

/// The decoded length a snappy block announces, if within `limit`.
fn checked_len(body: &[u8], limit: u64) -> Result<usize, IngestError> {
    let len = snap::raw::decompress_len(body).map_err(|e| IngestError::Snappy(e.to_string()))?;
    if len as u64 > limit {
        return Err(IngestError::DecodedTooLarge {
            len: len as u64,
            limit,
        });
    }
    Ok(len)
}

/// Validates a compressed body of `version` and prepares what is stored (in `version`).
pub fn decode(
    body: Bytes,
    limits: Limits,
    wanted: Wanted<'_>,
    version: Version,
) -> Result<Decoded, IngestError> {
    if body.len() as u64 > limits.max_body_bytes {
        return Err(IngestError::BodyTooLarge {
            len: body.len() as u64,
            limit: limits.max_body_bytes,
        });
    }
    with_decompressed(&body, limits.max_decoded_bytes, |raw| match version {
        Version::V1 => validate(raw, body.clone(), wanted),
        Version::V2 => validate_v2(raw, body.clone(), wanted, limits.max_decoded_bytes),
    })
}

/// Largest scratch buffer a thread keeps between requests.
const SCRATCH_KEPT: usize = 8 << 20;

thread_local! {
    /// Decompression buffer reused by every request this thread handles: a fresh
    /// allocation per request (hundreds of KiB, zeroed pages) showed in the profile.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the decompressed `body`, in this thread's scratch buffer.
fn with_decompressed<T>(
    body: &[u8],
    limit: u64,
    f: impl FnOnce(&[u8]) -> Result<T, IngestError>,
) -> Result<T, IngestError> {
    let len = checked_len(body, limit)?;
    SCRATCH.with(|cell| {
        // A re-entrant call (none today) gets its own buffer rather than a panic.
        let mut own = Vec::new();
        let mut guard = cell.try_borrow_mut().ok();
        let buf = guard.as_deref_mut().unwrap_or(&mut own);
        // Grown (and zeroed) only when a larger body comes: the decoder overwrites what it
        // returns, so the bytes left from the last request need no fresh zeroing.
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let result = snap::raw::Decoder::new()
            .decompress(body, &mut buf[..len])
            .map_err(|e| IngestError::Snappy(e.to_string()))
            .and_then(|n| f(&buf[..n]));
        if buf.capacity() > SCRATCH_KEPT {
            *buf = Vec::new();
        }
        result
    })
}

fn validate(raw: &[u8], body: Bytes, wanted: Wanted<'_>) -> Result<Decoded, IngestError> {
    let summary = wire::scan(raw, wanted)?;
    // A mixed request is stored as its parts; otherwise as received, or stripped.
    let parts = if summary.mixed {
        split(raw, wanted)?
    } else {
        Vec::new()
    };
    let payload = match (summary.replica_seen, wanted.replica, parts.is_empty()) {
        (true, Some(label), true) => compress(&wire::strip_label(raw, label)?)?,
        _ => body,
    };
    Ok(Decoded {
        payload,
        protocol: Version::V1,
        meta: meta_of(&summary),
        replica: summary.replica.map(str::to_owned),
        group: summary.group.map(str::to_owned),
        written: Written::default(),
        parts,
        unlabelled: summary.unlabelled,
    })
}

/// Validates a 2.0 body whose 1.0 form may take at most `limit` bytes.
fn validate_v2(
    raw: &[u8],
    body: Bytes,
    wanted: Wanted<'_>,
    limit: u64,
) -> Result<Decoded, IngestError> {
    let scanned = wire::scan_v2(raw, wanted)?;
    if scanned.v1_bound > limit {
        return Err(WireError::ConvertedTooLarge { limit }.into());
    }
    let summary = &scanned.base;
    // A mixed 2.0 request is split in its 1.0 form: each part has its own series, and
    // two parts could not share the symbols table without re-encoding it anyway.
    let parts = if summary.mixed {
        let (_, v1) = wire::convert_v2(raw, wanted, None, limit)?;
        split(&v1, wanted)?
    } else {
        Vec::new()
    };
    let payload = match (summary.replica_seen, wanted.replica, parts.is_empty()) {
        (true, Some(label), true) => compress(&wire::strip_label_v2(raw, label)?)?,
        _ => body,
    };
    Ok(Decoded {
        payload,
        protocol: Version::V2,
        meta: meta_of(summary),
        replica: summary.replica.map(str::to_owned),
        group: summary.group.map(str::to_owned),
        written: Written {
            samples: u64::from(summary.samples),
            histograms: u64::from(summary.histograms),
            exemplars: u64::from(summary.exemplars),
        },
        parts,
        unlabelled: summary.unlabelled,
    })
}

/// Snappy block compression of a decoded body.
pub fn compress(raw: &[u8]) -> Result<Bytes, IngestError> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .map(Bytes::from)
        .map_err(|e| IngestError::Internal(format!("snappy encode: {e}")))
}

/// The record metadata of a scanned body (receive time left 0 for the caller).
pub fn meta_of(s: &Summary<'_>) -> RecordMeta {
    RecordMeta {
        received_ms: 0,
        min_ts: s.min_ts.unwrap_or(0),
        max_ts: s.max_ts.unwrap_or(0),
        series: s.series,
        samples: s.samples,
        histograms: s.histograms,
        exemplars: s.exemplars,
    }
}

#[cfg(test)]
mod tests;

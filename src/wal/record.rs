//! The record codec: one accepted write, with a checksum over everything it stores.
//!
//! Layout (little endian):
//! ```text
//! crc32 u32 | version u8 | received_ms u64 | min_ts i64 | max_ts i64 |
//! series u32 | samples u32 | histograms u32 | exemplars u32 |
//! group_len u16 | group | source_len u16 | source | payload (to the end)
//! ```
//! The CRC-32 covers every byte after itself. The version says two things:
//! - the Remote-Write version of the request (versions 1 and 2: a 1.0 `WriteRequest`;
//!   versions 3 and 4: a 2.0 `io.prometheus.write.v2.Request`, stored as it arrived);
//! - how the payload is stored: the snappy block, exactly as received or rewritten
//!   (versions 1 and 3), or, for writes that are going to wait in the buffer
//!   ([`Record::encode_compact`]), that snappy block compressed again as one zstd frame
//!   (versions 2 and 4). A read expands it back to the same bytes.
//!
//! Either way, the payload of a decoded [`Record`] is the snappy block to ship, and its
//! [`Record::protocol`] says which version it is.

use bytes::Bytes;

use crate::wire::Version;

/// Payload: a 1.0 snappy block, as shipped.
const VERSION: u8 = 1;
/// Payload: a 1.0 snappy block as one zstd frame.
const VERSION_ZSTD: u8 = 2;
/// What the version byte adds for a 2.0 request.
const V2_OFFSET: u8 = 2;
/// zstd level of compact records. zstd compresses the snappy block, so a read needs no
/// new snappy compression for the storage. Level 1 gives nearly the size of level 3 for
/// less CPU (`bench/HISTORY.md`).
const ZSTD_LEVEL: i32 = 1;
/// The most bytes a stored zstd frame may expand to. The ingest's body limit is far below
/// it. A frame that claims more is treated as damaged.
const MAX_EXPANDED: u64 = 1 << 30;
const FIXED: usize = 4 + 1 + RecordMeta::BYTES;

/// Why stored bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Fewer bytes than the fixed header, or than a length says.
    #[error("record truncated")]
    Truncated,
    /// The checksum does not match: the bytes were damaged.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// Stored CRC.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// A record format this build does not know.
    #[error("unknown record version {0}")]
    Version(u8),
    /// Group or source is not UTF-8.
    #[error("group or source is not UTF-8")]
    Utf8,
    /// The checksum matches but the compressed payload does not expand.
    #[error("compressed payload does not expand: {0}")]
    Payload(String),
}

/// What a record says about its samples, besides the payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordMeta {
    /// When the write was received (ms since the epoch).
    pub received_ms: u64,
    /// Smallest sample timestamp (ms); 0 when the write has no sample.
    pub min_ts: i64,
    /// Largest sample timestamp (ms); 0 when the write has no sample.
    pub max_ts: i64,
    /// Series in the write.
    pub series: u32,
    /// Float samples in the write.
    pub samples: u32,
    /// Native histogram samples in the write.
    pub histograms: u32,
    /// Exemplars in the write.
    pub exemplars: u32,
}

/// One accepted write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// HA group it was accepted for.
    pub group: String,
    /// Source (replica) it came from.
    pub source: String,
    /// Counts and times.
    pub meta: RecordMeta,
    /// The snappy-compressed request, as shipped (also when it was stored compact).
    pub payload: Bytes,
    /// The Remote-Write version of the payload.
    pub protocol: Version,
}

/// The stored version byte of a payload of `protocol`, stored as snappy (`VERSION`) or
/// zstd (`VERSION_ZSTD`).
fn version_byte(protocol: Version, stored: u8) -> u8 {
    match protocol {
        Version::V1 => stored,
        Version::V2 => stored + V2_OFFSET,
    }
}

/// The Remote-Write version and the storage (`VERSION` or `VERSION_ZSTD`) of a version
/// byte.
fn parse_version(byte: u8) -> Result<(Version, u8), CodecError> {
    match byte {
        VERSION | VERSION_ZSTD => Ok((Version::V1, byte)),
        3 | 4 => Ok((Version::V2, byte - V2_OFFSET)),
        other => Err(CodecError::Version(other)),
    }
}

impl Record {
    /// Encodes the record with its checksum, the payload as it is.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(version_byte(self.protocol, VERSION), &self.payload)
    }

    /// Encodes the record with its payload compressed again as a zstd frame (sizes and
    /// costs in `bench/HISTORY.md`). Falls back to [`Record::encode`] when zstd does not
    /// make the payload smaller.
    pub fn encode_compact(&self) -> Vec<u8> {
        match compress(&self.payload) {
            Ok(frame) if frame.len() < self.payload.len() => {
                self.encode_with(version_byte(self.protocol, VERSION_ZSTD), &frame)
            }
            _ => self.encode(),
        }
    }

    fn encode_with(&self, version: u8, payload: &[u8]) -> Vec<u8> {
        let group = truncate(&self.group);
        let source = truncate(&self.source);
        let mut out = Vec::with_capacity(FIXED + 4 + group.len() + source.len() + payload.len());
        out.extend_from_slice(&[0; 4]);
        out.push(version);
        out.extend_from_slice(&self.meta.to_bytes());
        for s in [group, source] {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(payload);
        let crc = crc32fast::hash(&out[4..]);
        out[..4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and verifies stored bytes (the payload is copied out).
    pub fn decode(bytes: &[u8]) -> Result<Record, CodecError> {
        Self::decode_shared(Bytes::copy_from_slice(bytes))
    }

    /// [`Record::decode`] without copying the payload. The payload stays in `stored` (for
    /// example, the bytes read from a segment), and the record keeps `stored` alive. The
    /// shipper reads every record this way, because a 50 KB copy per record showed in its
    /// page faults.
    pub fn decode_shared<T>(stored: T) -> Result<Record, CodecError>
    where
        T: AsRef<[u8]> + Send + 'static,
    {
        let (group, source, meta, at) = Self::decode_header(stored.as_ref())?;
        let (protocol, storage) = parse_version(stored.as_ref()[4])?;
        let payload = if storage == VERSION_ZSTD {
            expand(&stored.as_ref()[at..])?
        } else {
            Bytes::from_owner(stored).slice(at..)
        };
        Ok(Record {
            group,
            source,
            meta,
            payload,
            protocol,
        })
    }

    /// Group, source, metadata and where the payload starts.
    fn decode_header(bytes: &[u8]) -> Result<(String, String, RecordMeta, usize), CodecError> {
        let meta = Self::decode_meta(bytes)?;
        let mut r = Reader {
            buf: bytes,
            pos: FIXED,
        };
        let group = r.string()?;
        let source = r.string()?;
        Ok((group, source, meta, r.pos))
    }

    /// Verifies the checksum and reads only the fixed header.
    pub fn decode_meta(bytes: &[u8]) -> Result<RecordMeta, CodecError> {
        if bytes.len() < FIXED {
            return Err(CodecError::Truncated);
        }
        let stored = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&bytes[4..]);
        if stored != computed {
            return Err(CodecError::Checksum { stored, computed });
        }
        parse_version(bytes[4])?;
        let meta: &[u8; RecordMeta::BYTES] = bytes[5..FIXED].try_into().expect("checked above");
        Ok(RecordMeta::from_bytes(meta))
    }
}

impl RecordMeta {
    /// Bytes of [`RecordMeta::to_bytes`].
    pub const BYTES: usize = 8 * 3 + 4 * 4;

    /// The fields in order, little endian: `received_ms`, `min_ts`, `max_ts`, `series`,
    /// `samples`, `histograms`, `exemplars`.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        out[..8].copy_from_slice(&self.received_ms.to_le_bytes());
        out[8..16].copy_from_slice(&self.min_ts.to_le_bytes());
        out[16..24].copy_from_slice(&self.max_ts.to_le_bytes());
        let counts = [self.series, self.samples, self.histograms, self.exemplars];
        for (i, n) in counts.iter().enumerate() {
            out[24 + 4 * i..28 + 4 * i].copy_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// The meta of [`RecordMeta::to_bytes`].
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> RecordMeta {
        let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().expect("8 bytes"));
        let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().expect("4 bytes"));
        RecordMeta {
            received_ms: u64_at(0),
            min_ts: u64_at(8) as i64,
            max_ts: u64_at(16) as i64,
            series: u32_at(24),
            samples: u32_at(28),
            histograms: u32_at(32),
            exemplars: u32_at(36),
        }
    }
}

/// The snappy block stored as a zstd frame.
fn expand(frame: &[u8]) -> Result<Bytes, CodecError> {
    let bad = |e: String| CodecError::Payload(e);
    let len = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(len)) if len <= MAX_EXPANDED => len as usize,
        Ok(Some(len)) => return Err(bad(format!("frame claims {len} bytes"))),
        Ok(None) => return Err(bad("frame without a content size".into())),
        Err(_) => return Err(bad("not a zstd frame".into())),
    };
    let block = ZSTD.with(|z| {
        let mut z = z.borrow_mut();
        let d = match &mut z.decompressor {
            Some(d) => d,
            slot => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(frame, len)
    });
    Ok(Bytes::from(block.map_err(|e| bad(e.to_string()))?))
}

/// zstd contexts, kept per thread. They serve every write while a storage is down and
/// every later read of such a write. zstd allocates and sets up a few hundred KiB for each
/// context, so a context per record showed in the profile of a catch-up (numbers in
/// `bench/HISTORY.md`).
#[derive(Default)]
struct Contexts {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

thread_local! {
    static ZSTD: std::cell::RefCell<Contexts> = std::cell::RefCell::new(Contexts::default());
}

/// `payload` as one zstd frame at [`ZSTD_LEVEL`], with its content size in the header.
fn compress(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    ZSTD.with(|z| {
        let mut z = z.borrow_mut();
        let c = match &mut z.compressor {
            Some(c) => c,
            slot => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        c.compress(payload)
    })
}

/// Group and source names longer than a u16 length are cut (at a char boundary).
fn truncate(s: &str) -> &str {
    if s.len() <= u16::MAX as usize {
        return s;
    }
    let mut end = u16::MAX as usize;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn string(&mut self) -> Result<String, CodecError> {
        let len = self
            .buf
            .get(self.pos..self.pos + 2)
            .ok_or(CodecError::Truncated)?;
        let len = u16::from_le_bytes(len.try_into().expect("2 bytes")) as usize;
        self.pos += 2;
        let s = self
            .buf
            .get(self.pos..self.pos + len)
            .ok_or(CodecError::Truncated)?;
        self.pos += len;
        String::from_utf8(s.to_vec()).map_err(|_| CodecError::Utf8)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Record {
        Record {
            group: "eu-1".into(),
            source: "prom-a".into(),
            meta: RecordMeta {
                received_ms: 1_700_000_000_000,
                min_ts: -5,
                max_ts: 1_700_000_000_123,
                series: 3,
                samples: 7,
                histograms: 1,
                exemplars: 2,
            },
            payload: Bytes::from_static(b"\x00\x01snappy"),
            protocol: Version::V1,
        }
    }

    #[test]
    fn round_trips() {
        let r = sample();
        assert_eq!(Record::decode(&r.encode()), Ok(r.clone()));
        assert_eq!(Record::decode_shared(r.encode()), Ok(r.clone()));
        assert_eq!(Record::decode_meta(&r.encode()), Ok(r.meta));
    }

    #[test]
    fn a_shared_decode_keeps_the_stored_bytes() {
        let stored = Bytes::from(sample().encode());
        let r = Record::decode_shared(stored.clone()).expect("valid");
        let payload_at = stored.len() - r.payload.len();
        assert_eq!(r.payload.as_ptr(), stored[payload_at..].as_ptr(), "no copy");
        let mut bad = stored.to_vec();
        bad[payload_at] ^= 1;
        assert!(matches!(
            Record::decode_shared(bad),
            Err(CodecError::Checksum { .. })
        ));
    }

    #[test]
    fn a_2_0_record_keeps_its_version_plain_and_compact() {
        for r in [sample(), snappy_record()] {
            let r = Record {
                protocol: Version::V2,
                ..r
            };
            for bytes in [r.encode(), r.encode_compact()] {
                assert!(bytes[4] > VERSION_ZSTD, "a 2.0 version byte");
                assert_eq!(Record::decode(&bytes), Ok(r.clone()));
                assert_eq!(Record::decode_meta(&bytes), Ok(r.meta));
            }
        }
        let mut unknown = sample().encode();
        unknown[4] = 5;
        let crc = crc32fast::hash(&unknown[4..]);
        unknown[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Record::decode(&unknown), Err(CodecError::Version(5)));
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(Record::decode(&b).is_err(), "flip at byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncation_is_detected() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(Record::decode(&bytes[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn empty_payload_and_names() {
        let r = Record {
            group: String::new(),
            source: String::new(),
            meta: RecordMeta::default(),
            payload: Bytes::new(),
            protocol: Version::V1,
        };
        assert_eq!(Record::decode(&r.encode()), Ok(r));
    }

    /// A snappy block of a `WriteRequest`-like body that repeats itself, as real bodies
    /// do. snappy leaves much of that repetition for zstd to find.
    pub(crate) fn snappy_record() -> Record {
        let mut raw = Vec::new();
        for i in 0..400u32 {
            raw.extend_from_slice(b"\x0a\x08__name__\x12\x16node_cpu_seconds_total");
            raw.extend_from_slice(
                format!("instance=host-{}:9100;cpu={}", i % 37, i % 8).as_bytes(),
            );
        }
        Record {
            payload: Bytes::from(
                snap::raw::Encoder::new()
                    .compress_vec(&raw)
                    .expect("snappy"),
            ),
            ..sample()
        }
    }

    #[test]
    fn a_compact_record_reads_back_as_the_same_snappy_block() {
        let r = snappy_record();
        let compact = r.encode_compact();
        assert_eq!(compact[4], VERSION_ZSTD);
        assert!(compact.len() < r.encode().len(), "zstd made it smaller");
        for back in [
            Record::decode(&compact).expect("valid"),
            Record::decode_shared(compact.clone()).expect("valid"),
        ] {
            assert_eq!(back, r, "the same snappy block, byte for byte");
        }
        assert_eq!(Record::decode_meta(&compact), Ok(r.meta));
    }

    #[test]
    fn a_payload_zstd_cannot_shrink_is_stored_as_it_is() {
        let r = sample();
        assert_eq!(r.encode_compact(), r.encode());
    }

    #[test]
    fn a_damaged_compact_record_is_detected() {
        let compact = snappy_record().encode_compact();
        let mut b = compact.clone();
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(
            Record::decode(&b),
            Err(CodecError::Checksum { .. })
        ));
        // A good checksum over a payload that is no zstd frame (a bug, not bit rot).
        let r = sample();
        let bogus = r.encode_with(VERSION_ZSTD, b"not a frame");
        assert!(matches!(
            Record::decode(&bogus),
            Err(CodecError::Payload(_))
        ));
        assert!(matches!(
            Record::decode_shared(bogus),
            Err(CodecError::Payload(_))
        ));
    }
}

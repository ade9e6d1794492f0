//! Ingest: the `remote_write` receiver.
//!
//! `POST /api/v1/write` (and `POST /` for clients of the original proxy) takes a snappy
//! block-compressed Remote-Write 1.0 `WriteRequest` or 2.0 `Request`; the `Content-Type`
//! says which (`protocol`). The path of one request:
//! header checks → body read under the size limit → snappy decode under the decoded-size
//! limit → wire scan (validation, counts, timestamps, replica/group labels; a 2.0 body is
//! converted to 1.0 here) → identity
//! (group, source, weight) → election → under the group's lock: the final role, the
//! handover plan and the WAL insert (`handover.rs`) → for the promoted source, the wait
//! for the flush.
//!
//! Invariants:
//! - A 2xx for a promoted write is sent only after the WAL says the record is durable.
//! - Bad input is a 4xx with a one-line reason and a log line; nothing here panics on input.
//! - The stored payload is the received body byte for byte unless the replica label must be
//!   stripped or the body is 2.0; then it is re-encoded once, here. What is stored is
//!   always 1.0.
//! - Every answer to a 2.0 request carries the Written headers (`protocol::Written`).

pub mod decode;
pub mod error;
pub mod handover;
pub mod identity;
pub mod protocol;
mod server;
pub mod trim;

pub use decode::Limits;
pub use error::IngestError;
pub use server::{routes, Ingest};

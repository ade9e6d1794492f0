//! highlander: a highly available, store-and-forward relay for Prometheus `remote_write`.
//!
//! Data flow: [`ingest`] → [`election`] → [`wal`] → [`shipper`]. [`admin`] reads them all.
//! [`app`] is the only place that builds and wires the parts. [`api`] holds the admin
//! API's answers: [`admin`] sends them, and [`client`] reads them.

pub mod admin;
pub mod alloc;
pub mod api;
pub mod app;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod disk_sync;
pub mod election;
pub mod ingest;
pub mod metrics;
pub mod proto;
pub mod shipper;
pub mod wal;
pub mod wire;

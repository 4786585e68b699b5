//! Berth, a container image registry. See ARCHITECTURE.md for the map.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod events;
pub mod http;
pub mod journal;
pub mod meta;
pub mod metrics;
pub mod migrate;
pub mod policy;
pub mod registry;
pub mod scanning;
pub mod server;
pub mod storage;
pub mod workers;

/// The OCI vocabulary (digests, names, references, manifests, ranges): the
/// `berth-oci` crate, which does no I/O.
pub use berth_oci as oci;

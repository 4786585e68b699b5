//! The OCI protocol vocabulary: digests, names, references, manifests and
//! byte ranges. Pure parsing and validation, no I/O: everything a client sends
//! passes through here before it reaches storage.

pub mod digest;
pub mod manifest;
pub mod name;
pub mod range;
pub mod resumable;

pub use digest::{Algorithm, Digest, Hasher};
pub use manifest::{Descriptor, Manifest, Platform};
pub use name::{Reference, RepositoryName, Tag};
pub use resumable::ResumableSha256;

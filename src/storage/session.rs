//! What an upload session is to its callers, whichever placement keeps it:
//! its id, what a client may learn of it, and why a request on it failed.
//! Both kinds of sessions (on local disk, in the object store) speak these
//! types, so neither depends on the other.

use std::fmt;
use std::io;
use std::str::FromStr;

use crate::oci::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    pub(super) fn random() -> UploadId {
        UploadId(uuid::Uuid::new_v4())
    }
}

impl FromStr for UploadId {
    type Err = UploadError;
    fn from_str(s: &str) -> Result<Self, UploadError> {
        uuid::Uuid::try_parse(s)
            .map(UploadId)
            .map_err(|_| UploadError::Unknown)
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload session not found")]
    Unknown,
    #[error("chunk does not start where the upload ends ({size} bytes received)")]
    OutOfOrder { size: u64 },
    #[error("received {received} bytes but the request declared {declared}")]
    LengthMismatch { received: u64, declared: u64 },
    #[error("upload content does not match digest {expected} (it is {actual})")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("client stopped sending: {0}")]
    Body(String),
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
    /// The object store did not take the verified blob.
    #[error("object store: {0}")]
    Store(String),
}

/// What a client may learn about its session.
#[derive(Debug, Clone, Copy)]
pub struct UploadStatus {
    pub size: u64,
}

/// Checks a blob received whole against its digest.
pub(super) fn verify_whole(expected: &Digest, bytes: &[u8]) -> Result<(), UploadError> {
    let actual = Digest::of(expected.algorithm(), bytes);
    if actual != *expected {
        return Err(UploadError::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

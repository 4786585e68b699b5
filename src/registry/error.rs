//! The registry's failures, one variant per distinct answer a client gets.

use crate::meta::MetaError;
use crate::oci::Digest;
use crate::storage::{StorageError, UploadError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("{0}")]
    NameInvalid(String),
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    #[error("{0}")]
    ManifestInvalid(String),
    /// No manifest to serve, with the reason (e.g. none in a media type the
    /// client accepts, or a reference that cannot name one).
    #[error("{0}")]
    NoSuchManifest(String),
    /// A tag that breaks the grammar: unknown for reads, invalid for pushes.
    #[error("{0}")]
    TagInvalid(String),
    #[error("manifest is at least {size} bytes, more than the {limit} allowed")]
    ManifestTooLarge { size: u64, limit: usize },
    #[error("manifest references content not in this repository: {}", list(.0))]
    ManifestBlobUnknown(Vec<Digest>),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    #[error("{0}")]
    UploadInvalid(String),
    /// A chunk that does not continue the upload; `size` is what was received.
    #[error("chunk out of order: the upload has {size} bytes")]
    UploadOutOfOrder { size: u64 },
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    RangeNotSatisfiable(String, u64),
    #[error("{0}")]
    Referenced(String),
    /// A project rule forbids it (naming convention, immutable tag).
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    QueryInvalid(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The blob store (an object store) did not answer: worth a retry.
    #[error("blob storage is unavailable: {0}")]
    StorageUnavailable(String),
    /// The metadata database could not be reached: worth a retry.
    #[error("metadata database is unavailable: {0}")]
    MetadataUnavailable(String),
    /// Background work ended at a safe point because the process is stopping.
    #[error("stopped at shutdown")]
    Stopped,
}

fn list(digests: &[Digest]) -> String {
    digests
        .iter()
        .map(Digest::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Refused(m) => RegistryError::Denied(m),
            e if e.is_unavailable() => RegistryError::MetadataUnavailable(e.to_string()),
            e => RegistryError::Internal(e.to_string()),
        }
    }
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        match e {
            // Metadata said the blob exists: its bytes missing is an internal fault.
            StorageError::NotFound => {
                RegistryError::Internal("blob listed in metadata is missing from storage".into())
            }
            StorageError::ObjectStore(e) => RegistryError::StorageUnavailable(e.to_string()),
            e => RegistryError::Internal(e.to_string()),
        }
    }
}

impl From<UploadError> for RegistryError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Unknown => RegistryError::UploadUnknown,
            UploadError::OutOfOrder { size } => RegistryError::UploadOutOfOrder { size },
            e @ UploadError::LengthMismatch { .. } => RegistryError::SizeInvalid(e.to_string()),
            e @ UploadError::DigestMismatch { .. } => RegistryError::DigestInvalid(e.to_string()),
            e @ UploadError::Body(_) => RegistryError::UploadInvalid(e.to_string()),
            UploadError::Io(e) => RegistryError::Internal(e.to_string()),
            UploadError::Store(e) => RegistryError::StorageUnavailable(e),
        }
    }
}

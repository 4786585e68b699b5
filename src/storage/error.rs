//! Why a storage operation failed, in either placement.

use std::io;

use crate::oci::Digest;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob not found in storage")]
    NotFound,
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
}

/// Why a blob copied in from elsewhere was not stored.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The bytes are not the blob's (`actual` is None when there were more
    /// than `expected_size` and reading stopped there).
    #[error("{}", mismatch(actual.as_ref(), *actual_size, *expected_size))]
    Mismatch {
        actual: Option<Digest>,
        actual_size: u64,
        expected_size: u64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn mismatch(actual: Option<&Digest>, actual_size: u64, expected_size: u64) -> String {
    match actual {
        Some(actual) => format!(
            "its bytes hash to {actual} ({actual_size} bytes; the row says {expected_size} bytes)"
        ),
        None => format!("it has more than the {expected_size} bytes its row says"),
    }
}

//! What both placements do through `object_store`: ranged reads of a blob
//! (a local file read ahead on a thread of its own, a remote object's body
//! streamed), and objects written in one PUT or a bounded multipart upload,
//! visible only once complete.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};
use tokio::io::AsyncWriteExt;

use super::error::{CopyError, StorageError};
use super::stream::{read_ahead, ByteStream};
use crate::oci::range::ByteRange;
use crate::oci::Digest;

/// Part size of multipart uploads to an object store (S3's least is 5 MiB).
const PUT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once: a blob's copy holds at most this many parts, plus
/// the one filling, in memory.
const PUT_PARTS_IN_FLIGHT: usize = 2;

/// Opens the object `key` for reading, whole or a range of it.
pub(super) async fn read(
    objects: &Arc<dyn ObjectStore>,
    key: &ObjectPath,
    range: Option<ByteRange>,
) -> Result<ByteStream, StorageError> {
    let options = GetOptions {
        range: range.map(|r| GetRange::Bounded(r.start..r.end + 1)),
        ..Default::default()
    };
    let result = match objects.get_opts(key, options).await {
        Err(object_store::Error::NotFound { .. }) => return Err(StorageError::NotFound),
        r => r?,
    };
    Ok(match result.payload {
        // object_store reads local files in 8 KiB blocking steps; one
        // thread reading ahead in large chunks lets a pull run at
        // page-cache speed while the socket drains the previous chunk.
        GetResultPayload::File(file, _) => read_ahead(
            file,
            result.range.start,
            result.range.end - result.range.start,
        ),
        GetResultPayload::Stream(s) => s.map_err(io::Error::other).boxed(),
    })
}

/// Stores a blob read from elsewhere (another store, during a migration)
/// as the object `key`, hashing it on the way: the object is completed only
/// if the bytes are `size` bytes hashing to `digest`; otherwise the upload is
/// aborted and nothing is stored. `copied` is told the length of each chunk
/// as it passes.
pub(super) async fn put_verified_stream(
    objects: &Arc<dyn ObjectStore>,
    key: ObjectPath,
    digest: &Digest,
    size: u64,
    mut bytes: ByteStream,
    copied: impl Fn(usize),
) -> Result<(), CopyError> {
    let mut writer = ObjectWriter::new(objects, key);
    let mut hasher = digest.algorithm().hasher();
    let mut received = 0u64;
    let written: Result<(), CopyError> = 'copy: {
        while let Some(chunk) = bytes.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => break 'copy Err(StorageError::Io(e).into()),
            };
            received += chunk.len() as u64;
            if received > size {
                break 'copy Err(CopyError::Mismatch {
                    actual: None,
                    actual_size: received,
                    expected_size: size,
                });
            }
            hasher.update(&chunk);
            copied(chunk.len());
            if let Err(e) = writer.put(chunk).await {
                break 'copy Err(StorageError::from(e).into());
            }
        }
        let actual = hasher.finish();
        if received != size || actual != *digest {
            break 'copy Err(CopyError::Mismatch {
                actual: Some(actual),
                actual_size: received,
                expected_size: size,
            });
        }
        Ok(())
    };
    match written {
        Ok(()) => Ok(writer.complete().await.map_err(StorageError::Io)?),
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

/// An object being written: one PUT when small, else a multipart upload of
/// `PUT_PART_SIZE` parts, `PUT_PARTS_IN_FLIGHT` at a time, so never held
/// whole in memory. Nothing is visible in the store until `complete`.
pub(super) struct ObjectWriter(BufWriter);

impl ObjectWriter {
    pub(super) fn new(objects: &Arc<dyn ObjectStore>, key: ObjectPath) -> ObjectWriter {
        ObjectWriter(
            BufWriter::with_capacity(objects.clone(), key, PUT_PART_SIZE)
                .with_max_concurrency(PUT_PARTS_IN_FLIGHT),
        )
    }

    pub(super) async fn put(&mut self, bytes: Bytes) -> Result<(), object_store::Error> {
        self.0.put(bytes).await
    }

    pub(super) async fn complete(mut self) -> io::Result<()> {
        self.0.shutdown().await
    }

    /// Drops what was written; a multipart upload is aborted (if that fails
    /// its parts stay in the bucket until a lifecycle rule removes them).
    pub(super) async fn abort(mut self) {
        if let Err(e) = self.0.abort().await {
            tracing::warn!(error = %e, "could not abort a multipart upload");
        }
    }
}

//! Blob storage: verified, content-addressed blob bytes and the staging area
//! of uploads in progress. Knows nothing of repositories or metadata.
//!
//! Layout under the blob root:
//!
//! ```text
//! blobs/<algorithm>/<first two hex>/<hex>   verified content, immutable once there
//! uploads/<uuid>/data                       bytes received so far for one upload
//! uploads/<uuid>/repository                 the repository the upload belongs to
//! uploads/tmp-<uuid>                         a small blob being written whole
//! ```
//!
//! A blob file appears only by an atomic rename of a fully written and
//! digest-verified file, and is durable (fsync, or a shared syncfs for small
//! blobs) before the call that stored it returns, so a reader never sees a
//! partial blob and metadata never names one that a crash could lose.

mod sync;
mod uploads;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};

use crate::oci::range::ByteRange;
use crate::oci::Digest;

pub use uploads::{UploadError, UploadId, UploadStatus};

/// Blob bytes in flight, to or from a client.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Read size for blob GETs: large enough that per-chunk overhead vanishes.
const READ_CHUNK: usize = 1024 * 1024;
/// Chunks read ahead of the socket.
const READ_AHEAD: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob not found in storage")]
    NotFound,
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
}

pub struct BlobStore {
    root: PathBuf,
    objects: Arc<dyn ObjectStore>,
    uploads: uploads::Uploads,
}

impl BlobStore {
    /// Opens (creating if needed) a blob store on local disk.
    pub fn open_local(root: PathBuf) -> Result<BlobStore, StorageError> {
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        let objects = Arc::new(LocalFileSystem::new_with_prefix(&root)?);
        let sync = Arc::new(sync::SyncGroup::new(&root)?);
        Ok(BlobStore {
            uploads: uploads::Uploads::new(root.join("uploads"), sync),
            root,
            objects,
        })
    }

    fn object_path(digest: &Digest) -> ObjectPath {
        let hex = digest.hex();
        ObjectPath::from(format!(
            "blobs/{}/{}/{hex}",
            digest.algorithm().name(),
            &hex[..2]
        ))
    }

    fn file_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    /// Opens a blob for reading, whole or a range of it.
    pub async fn read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.start..r.end + 1)),
            ..Default::default()
        };
        let result = match self
            .objects
            .get_opts(&Self::object_path(digest), options)
            .await
        {
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

    pub fn uploads(&self) -> &uploads::Uploads {
        &self.uploads
    }

    /// Verifies a finished upload against `expected` and moves it into place.
    /// Returns the blob's size. On a digest mismatch the upload is discarded.
    pub async fn commit_upload(
        &self,
        id: UploadId,
        repository: &str,
        expected: &Digest,
    ) -> Result<u64, UploadError> {
        let target = self.file_path(expected);
        self.uploads.commit(id, repository, expected, target).await
    }

    /// Completes an upload that received nothing before with its whole
    /// content, sent in the final request.
    pub async fn commit_upload_bytes(
        &self,
        id: UploadId,
        repository: &str,
        expected: &Digest,
        bytes: Bytes,
    ) -> Result<u64, UploadError> {
        let target = self.file_path(expected);
        self.uploads
            .commit_bytes(id, repository, expected, bytes, target)
            .await
    }

    /// Stores a small blob received whole (single-request push), after
    /// checking its digest.
    pub async fn put_verified(&self, expected: &Digest, bytes: Bytes) -> Result<u64, UploadError> {
        let target = self.file_path(expected);
        self.uploads.store_bytes(expected, bytes, target).await
    }
}

/// Streams `len` bytes of `file` from `start`, read by a blocking thread that
/// stays up to READ_AHEAD chunks ahead. Dropping the stream stops the thread.
fn read_ahead(mut file: std::fs::File, start: u64, len: u64) -> ByteStream {
    use std::io::{Read, Seek};
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(io::SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut file = file.take(len);
        loop {
            let mut buf = bytes::BytesMut::zeroed(READ_CHUNK);
            let n = match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            buf.truncate(n);
            if tx.blocking_send(Ok(buf.freeze())).is_err() {
                return; // the client went away
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

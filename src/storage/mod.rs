//! Blob storage: verified, content-addressed blob bytes and the staging area
//! of uploads in progress. Knows nothing of repositories or metadata.
//!
//! Layout under the blob root:
//!
//! ```text
//! blobs/<algorithm>/<first two hex>/<hex>.<nonce>   verified content, immutable once there
//! uploads/<uuid>/data                       bytes received so far for one upload
//! uploads/<uuid>/repository                 the repository the upload belongs to
//! uploads/tmp-<uuid>                         a small blob being written whole
//! ```
//!
//! Every write of a blob goes to a file of its own, named by a fresh nonce
//! (`new_nonce`), so deleting one write's file can never remove another's:
//! that is what lets garbage collection delete bytes while pushes of the same
//! digest go on (see ARCHITECTURE.md). A nonce of `""` names the file without
//! suffix (blobs stored before nonces existed).
//!
//! A blob file appears only by an atomic rename of a fully written and
//! digest-verified file, and is durable (fsync, or a shared syncfs for small
//! blobs) before the call that stored it returns, so a reader never sees a
//! partial blob and metadata never names one that a crash could lose.

mod sync;
mod uploads;

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

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

    fn file_name(digest: &Digest, nonce: &str) -> String {
        if nonce.is_empty() {
            digest.hex().to_string()
        } else {
            format!("{}.{nonce}", digest.hex())
        }
    }

    fn object_path(digest: &Digest, nonce: &str) -> ObjectPath {
        let hex = digest.hex();
        ObjectPath::from(format!(
            "blobs/{}/{}/{}",
            digest.algorithm().name(),
            &hex[..2],
            Self::file_name(digest, nonce)
        ))
    }

    fn file_path(&self, digest: &Digest, nonce: &str) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(Self::file_name(digest, nonce))
    }

    /// Opens a blob for reading, whole or a range of it.
    pub async fn read(
        &self,
        digest: &Digest,
        nonce: &str,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.start..r.end + 1)),
            ..Default::default()
        };
        let result = match self
            .objects
            .get_opts(&Self::object_path(digest, nonce), options)
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

    /// Verifies a finished upload against `expected` and moves it into place
    /// as the file of `nonce`. Returns the blob's size. On a digest mismatch
    /// the upload is discarded.
    pub async fn commit_upload(
        &self,
        id: UploadId,
        repository: &str,
        expected: &Digest,
        nonce: &str,
    ) -> Result<u64, UploadError> {
        let target = self.file_path(expected, nonce);
        self.uploads.commit(id, repository, expected, target).await
    }

    /// Completes an upload that received nothing before with its whole
    /// content, sent in the final request.
    pub async fn commit_upload_bytes(
        &self,
        id: UploadId,
        repository: &str,
        expected: &Digest,
        nonce: &str,
        bytes: Bytes,
    ) -> Result<u64, UploadError> {
        let target = self.file_path(expected, nonce);
        self.uploads
            .commit_bytes(id, repository, expected, bytes, target)
            .await
    }

    /// Stores a small blob received whole (single-request push) as the file
    /// of `nonce`, after checking its digest.
    pub async fn put_verified(
        &self,
        expected: &Digest,
        nonce: &str,
        bytes: Bytes,
    ) -> Result<u64, UploadError> {
        let target = self.file_path(expected, nonce);
        self.uploads.store_bytes(expected, bytes, target).await
    }

    /// Deletes the file of one write of a blob. Returns its size, or None if
    /// it was not there.
    pub async fn remove_blob_file(
        &self,
        digest: &Digest,
        nonce: &str,
    ) -> Result<Option<u64>, StorageError> {
        let path = self.file_path(digest, nonce);
        Ok(blocking(move || {
            let size = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(Some(size)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?)
    }

    /// The directories blob files live in (`blobs/<alg>/<xx>`), for a sweep
    /// one directory at a time.
    pub async fn blob_dirs(&self) -> Result<Vec<PathBuf>, StorageError> {
        let blobs = self.root.join("blobs");
        Ok(blocking(move || {
            let mut dirs = Vec::new();
            for alg in std::fs::read_dir(&blobs)? {
                let alg = alg?;
                if !alg.file_type()?.is_dir() {
                    continue;
                }
                for sub in std::fs::read_dir(alg.path())? {
                    let sub = sub?;
                    if sub.file_type()?.is_dir() {
                        dirs.push(sub.path());
                    }
                }
            }
            dirs.sort();
            Ok(dirs)
        })
        .await?)
    }

    /// The blob files in one directory from `blob_dirs` last modified before
    /// `before`. Names that are not blob files are left alone.
    pub async fn blob_files(
        &self,
        dir: PathBuf,
        before: SystemTime,
    ) -> Result<Vec<BlobFile>, StorageError> {
        Ok(blocking(move || {
            let Some(alg) = dir
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                return Ok(Vec::new());
            };
            let mut files = Vec::new();
            let entries = match std::fs::read_dir(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(files),
                r => r?,
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let (hex, nonce) = name.split_once('.').unwrap_or((name, ""));
                let Ok(digest) = format!("{alg}:{hex}").parse::<Digest>() else {
                    continue;
                };
                let meta = match entry.metadata() {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    m => m?,
                };
                if !meta.is_file() || meta.modified()? >= before {
                    continue;
                }
                files.push(BlobFile {
                    digest,
                    nonce: nonce.to_string(),
                    size: meta.len(),
                });
            }
            Ok(files)
        })
        .await?)
    }

    /// Removes staging files of small blobs (`uploads/tmp-*`) last modified
    /// before `before`: leftovers of a crash mid-write. Returns how many and
    /// their bytes.
    pub async fn remove_stale_staging(
        &self,
        before: SystemTime,
    ) -> Result<(u64, u64), StorageError> {
        Ok(self.uploads.remove_stale_staging(before).await?)
    }

    /// Repositories with an upload session in progress (in memory or on disk).
    pub async fn repositories_uploading(&self) -> Result<HashSet<String>, StorageError> {
        Ok(self.uploads.repositories().await?)
    }
}

/// A blob file found by a sweep.
#[derive(Debug, Clone)]
pub struct BlobFile {
    pub digest: Digest,
    pub nonce: String,
    pub size: u64,
}

/// A fresh name for one write of a blob's bytes.
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
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

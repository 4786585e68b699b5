//! Local placement: blob files and upload sessions under a directory on the
//! replica's disk (`layout` draws it).
//!
//! A blob file appears only by an atomic rename of a fully written and
//! digest-verified file, and is durable before the call that stored it
//! returns: a large upload's file and directory are fsynced, a small blob
//! received whole waits for a `syncfs` shared with concurrent writers
//! (`SyncGroup`). So a reader never sees a partial blob, and metadata never
//! names one that a crash could lose.

mod sessions;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;

use crate::oci::range::ByteRange;
use crate::oci::Digest;
use crate::storage::disk::{self, blocking};
use crate::storage::error::{CopyError, StorageError};
use crate::storage::layout::{self, BlobFile};
use crate::storage::objects;
use crate::storage::session::{UploadError, UploadId};
use crate::storage::stream::{self, ByteStream};
use crate::storage::sync::SyncGroup;
use sessions::LocalSessions;

pub(in crate::storage) struct LocalPlacement {
    /// The store's directory.
    root: PathBuf,
    /// `root` through object_store, which reads blobs and writes those
    /// copied in.
    objects: Arc<dyn ObjectStore>,
    /// Makes small blobs received whole durable, many with one `syncfs`.
    sync: Arc<SyncGroup>,
    pub(in crate::storage) sessions: LocalSessions,
}

impl LocalPlacement {
    /// Opens (creating if needed) the store in `root`.
    pub(in crate::storage) fn open(root: PathBuf) -> Result<LocalPlacement, StorageError> {
        fs::create_dir_all(layout::blobs_dir(&root))?;
        fs::create_dir_all(layout::uploads_dir(&root))?;
        let objects = Arc::new(LocalFileSystem::new_with_prefix(&root)?);
        let sync = Arc::new(SyncGroup::new(&root)?);
        Ok(LocalPlacement {
            sessions: LocalSessions::new(root.clone(), sync.clone()),
            root,
            objects,
            sync,
        })
    }

    fn blob_path(&self, digest: &Digest, nonce: &str) -> PathBuf {
        layout::blob_path(&self.root, digest, nonce)
    }

    pub(in crate::storage) async fn read(
        &self,
        digest: &Digest,
        nonce: &str,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        objects::read(&self.objects, &layout::blob_key(digest, nonce), range).await
    }

    pub(in crate::storage) async fn commit_upload(
        &self,
        id: UploadId,
        repository: &str,
        expected: &Digest,
        nonce: &str,
    ) -> Result<u64, UploadError> {
        let target = self.blob_path(expected, nonce);
        self.sessions.commit(id, repository, expected, target).await
    }

    /// The body is appended like any chunk, then the session committed.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::storage) async fn commit_upload_stream(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: ByteStream,
        expected: &Digest,
        nonce: &str,
    ) -> Result<u64, UploadError> {
        self.sessions
            .append(id, repository, start, declared_len, body)
            .await?;
        self.commit_upload(id, repository, expected, nonce).await
    }

    /// A whole blob (nothing received before, no other start) is written
    /// from memory without a session file; anything else takes the chunk
    /// path, which checks `start`.
    pub(in crate::storage) async fn commit_upload_bytes(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        expected: &Digest,
        nonce: &str,
        bytes: Bytes,
    ) -> Result<u64, UploadError> {
        if start.is_some_and(|s| s != 0) || self.sessions.status(id, repository).await?.size != 0 {
            let len = bytes.len() as u64;
            return self
                .commit_upload_stream(
                    id,
                    repository,
                    start,
                    Some(len),
                    stream::once(bytes),
                    expected,
                    nonce,
                )
                .await;
        }
        let target = self.blob_path(expected, nonce);
        self.sessions
            .commit_bytes(id, repository, expected, bytes, target)
            .await
    }

    pub(in crate::storage) async fn put_verified(
        &self,
        expected: &Digest,
        nonce: &str,
        bytes: Bytes,
    ) -> Result<u64, UploadError> {
        let target = self.blob_path(expected, nonce);
        sessions::store_whole(&self.root, &self.sync, expected, bytes, target).await
    }

    pub(in crate::storage) async fn put_verified_stream(
        &self,
        digest: &Digest,
        nonce: &str,
        size: u64,
        bytes: ByteStream,
        copied: impl Fn(usize),
    ) -> Result<(), CopyError> {
        let key = layout::blob_key(digest, nonce);
        objects::put_verified_stream(&self.objects, key, digest, size, bytes, copied).await
    }

    pub(in crate::storage) fn blob_location(&self, digest: &Digest, nonce: &str) -> String {
        self.blob_path(digest, nonce).display().to_string()
    }

    pub(in crate::storage) async fn remove_blob_file(
        &self,
        digest: &Digest,
        nonce: &str,
    ) -> Result<Option<u64>, StorageError> {
        let path = self.blob_path(digest, nonce);
        Ok(blocking(move || {
            let size = match fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            match fs::remove_file(&path) {
                Ok(()) => Ok(Some(size)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?)
    }

    pub(in crate::storage) async fn blob_dirs(&self) -> Result<Vec<String>, StorageError> {
        let blobs = layout::blobs_dir(&self.root);
        Ok(blocking(move || {
            let mut dirs = Vec::new();
            for alg in fs::read_dir(blobs)? {
                let alg = alg?;
                let Some(alg_name) = alg.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if !alg.file_type()?.is_dir() {
                    continue;
                }
                for sub in fs::read_dir(alg.path())? {
                    let sub = sub?;
                    if let (true, Some(sub_name)) =
                        (sub.file_type()?.is_dir(), sub.file_name().to_str())
                    {
                        dirs.push(layout::blob_dir(&alg_name, sub_name));
                    }
                }
            }
            dirs.sort();
            Ok(dirs)
        })
        .await?)
    }

    pub(in crate::storage) async fn blob_files(
        &self,
        dir: String,
        before: SystemTime,
    ) -> Result<Vec<BlobFile>, StorageError> {
        let Some(alg) = layout::blob_dir_algorithm(&dir).map(str::to_string) else {
            return Ok(Vec::new());
        };
        let dir = layout::blob_dir_path(&self.root, &dir);
        Ok(blocking(move || {
            let mut files = Vec::new();
            let entries = match fs::read_dir(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(files),
                r => r?,
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let meta = match entry.metadata() {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    m => m?,
                };
                if !meta.is_file() || meta.modified()? >= before {
                    continue;
                }
                files.extend(BlobFile::listed(&alg, name, meta.len()));
            }
            Ok(files)
        })
        .await?)
    }

    pub(in crate::storage) async fn remove_stale_staging(
        &self,
        before: SystemTime,
    ) -> Result<(u64, u64), StorageError> {
        Ok(disk::remove_stale_staging(&self.root, before).await?)
    }

    pub(in crate::storage) async fn repositories_uploading(
        &self,
    ) -> Result<HashSet<String>, StorageError> {
        self.sessions.repositories().await
    }

    pub(in crate::storage) async fn expire_uploads(&self, ttl: Duration) -> io::Result<usize> {
        self.sessions.expire(ttl).await
    }
}

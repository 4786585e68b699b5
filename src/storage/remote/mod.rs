//! Remote placement: blobs and upload sessions are objects in S3, GCS or
//! Azure (`layout` draws them), so that replicas sharing the bucket serve
//! the same blobs and one upload together; the store makes objects durable.
//! Nothing of a blob or an upload is on the replica's disk: its `uploads/`
//! directory only has what older versions left there swept.
//!
//! No unverified object ever appears under `blobs/`: an object is written in
//! one PUT or a multipart upload that is completed only once its bytes are
//! checked (`sessions.rs`), or made by a server-side copy of bytes checked
//! before.

mod backends;
mod sessions;

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::ObjectStore;

use crate::config::{AzureConfig, GcsConfig, S3Config};
use crate::oci::range::ByteRange;
use crate::oci::Digest;
use crate::storage::disk;
use crate::storage::error::{CopyError, StorageError};
use crate::storage::layout::{self, BlobFile};
use crate::storage::objects;
use crate::storage::session::{UploadError, UploadId};
use crate::storage::stream::ByteStream;
use sessions::RemoteSessions;

pub(in crate::storage) struct RemotePlacement {
    /// The bucket or container, below the backend's prefix.
    objects: Arc<dyn ObjectStore>,
    /// Signs GET URLs of blob objects, when pulls are redirected to them.
    presigner: Option<Presigner>,
    pub(in crate::storage) sessions: RemoteSessions,
    /// The local directory where older versions kept upload sessions and
    /// staging files: only swept.
    root: PathBuf,
}

struct Presigner {
    s3: Arc<AmazonS3>,
    /// `storage.s3.prefix`, which the signed key must include (the signer
    /// does not go through the store that adds it).
    prefix: String,
    ttl: Duration,
}

impl RemotePlacement {
    /// Blobs and upload sessions in an S3-compatible bucket.
    pub(in crate::storage) fn s3(
        root: PathBuf,
        config: &S3Config,
    ) -> Result<RemotePlacement, StorageError> {
        let s3 = Arc::new(backends::s3(config)?);
        let presigner = config.presigned_redirects.then(|| Presigner {
            s3: s3.clone(),
            prefix: config.prefix.clone(),
            ttl: Duration::from_secs(config.presigned_ttl_secs),
        });
        Self::open(root, s3, &config.prefix, presigner)
    }

    /// Blobs and upload sessions in a Google Cloud Storage bucket.
    pub(in crate::storage) fn gcs(
        root: PathBuf,
        config: &GcsConfig,
    ) -> Result<RemotePlacement, StorageError> {
        let gcs = Arc::new(backends::gcs(config)?);
        Self::open(root, gcs, &config.prefix, None)
    }

    /// Blobs and upload sessions in an Azure Blob Storage container.
    pub(in crate::storage) fn azure(
        root: PathBuf,
        config: &AzureConfig,
    ) -> Result<RemotePlacement, StorageError> {
        let azure = Arc::new(backends::azure(config)?);
        Self::open(root, azure, &config.prefix, None)
    }

    /// Everything after the backend's client is built, the same for every
    /// object store: the prefix, and the sessions in the store.
    fn open(
        root: PathBuf,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        presigner: Option<Presigner>,
    ) -> Result<RemotePlacement, StorageError> {
        let objects: Arc<dyn ObjectStore> = if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        std::fs::create_dir_all(layout::uploads_dir(&root))?;
        Ok(RemotePlacement {
            sessions: RemoteSessions::new(objects.clone()),
            objects,
            presigner,
            root,
        })
    }

    pub(in crate::storage) async fn presigned_url(
        &self,
        digest: &Digest,
        nonce: &str,
    ) -> Result<Option<String>, StorageError> {
        let Some(p) = &self.presigner else {
            return Ok(None);
        };
        let key = layout::with_prefix(&p.prefix, &layout::blob_key(digest, nonce));
        let url = p.s3.signed_url(http::Method::GET, &key, p.ttl).await?;
        Ok(Some(url.to_string()))
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
        let target = layout::blob_key(expected, nonce);
        self.sessions.commit(id, repository, expected, target).await
    }

    /// An upload that received nothing before streams the body straight
    /// into the blob's object.
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
        let target = layout::blob_key(expected, nonce);
        self.sessions
            .commit_stream(id, repository, start, declared_len, body, expected, target)
            .await
    }

    /// One read of the session object decides whether the bytes are the
    /// whole blob (one PUT) or a last chunk, not two.
    pub(in crate::storage) async fn commit_upload_bytes(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        expected: &Digest,
        nonce: &str,
        bytes: Bytes,
    ) -> Result<u64, UploadError> {
        let target = layout::blob_key(expected, nonce);
        self.sessions
            .commit_bytes(id, repository, start, expected, bytes, target)
            .await
    }

    pub(in crate::storage) async fn put_verified(
        &self,
        expected: &Digest,
        nonce: &str,
        bytes: Bytes,
    ) -> Result<u64, UploadError> {
        let target = layout::blob_key(expected, nonce);
        sessions::put_whole(&self.objects, expected, bytes, target).await
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
        layout::blob_key(digest, nonce).to_string()
    }

    pub(in crate::storage) async fn remove_blob_file(
        &self,
        digest: &Digest,
        nonce: &str,
    ) -> Result<Option<u64>, StorageError> {
        let key = layout::blob_key(digest, nonce);
        let size = match self.objects.head(&key).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match self.objects.delete(&key).await {
            Ok(()) => Ok(Some(size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(in crate::storage) async fn blob_dirs(&self) -> Result<Vec<String>, StorageError> {
        let mut dirs = Vec::new();
        let algorithms = self
            .objects
            .list_with_delimiter(Some(&layout::blobs_prefix()))
            .await?;
        for alg in algorithms.common_prefixes {
            let subs = self.objects.list_with_delimiter(Some(&alg)).await?;
            dirs.extend(subs.common_prefixes.iter().map(|p| p.to_string()));
        }
        dirs.sort();
        Ok(dirs)
    }

    pub(in crate::storage) async fn blob_files(
        &self,
        dir: String,
        before: SystemTime,
    ) -> Result<Vec<BlobFile>, StorageError> {
        let Some(alg) = layout::blob_dir_algorithm(&dir) else {
            return Ok(Vec::new());
        };
        let before = chrono::DateTime::<chrono::Utc>::from(before);
        let objects: Vec<_> = self
            .objects
            .list(Some(&layout::blob_dir_prefix(&dir)))
            .try_collect()
            .await?;
        Ok(objects
            .into_iter()
            .filter(|o| o.last_modified < before)
            .filter_map(|o| BlobFile::listed(alg, o.location.filename()?, o.size))
            .collect())
    }

    /// Staging files older versions left on the local disk.
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

    /// Sessions in the store, then what older versions left on the local
    /// disk (none of it in use: no session of this version is there).
    pub(in crate::storage) async fn expire_uploads(&self, ttl: Duration) -> io::Result<usize> {
        let mut removed = self
            .sessions
            .expire(ttl)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        for name in disk::stale_upload_entries(&self.root, ttl).await? {
            disk::remove_upload_entry(&self.root, &name).await;
            removed += 1;
        }
        Ok(removed)
    }
}

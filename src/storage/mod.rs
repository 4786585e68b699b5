//! Blob storage: verified, content-addressed blob bytes and the upload
//! sessions that produce them. Knows nothing of repositories or metadata.
//!
//! Where blobs and sessions are is the store's `Placement`, chosen when it
//! opens: files on the replica's disk (`local`), or objects in S3, GCS or
//! Azure (`remote`), where upload sessions are objects too, so that replicas
//! sharing the bucket serve one upload together. `BlobStore` hands each call
//! to its placement with one `match`; each placement's code is in its own
//! module, and `layout` draws where everything is in both.
//!
//! Every write of a blob goes to a file (or object) of its own, named by a
//! fresh nonce (`new_nonce`), so deleting one write's file can never remove
//! another's: that is what lets garbage collection delete bytes while
//! pushes of the same digest go on (see ARCHITECTURE.md). A nonce of `""`
//! names the file without suffix (blobs stored before nonces existed).
//!
//! A blob appears only once its bytes are verified against its digest, and
//! is durable before the call that stored it returns, so a reader never
//! sees a partial blob and metadata never names one that a crash could
//! lose.
//!
//! Modules depend on each other one way only: `session`, `error`, `stream`
//! and `sync` on nothing here; `layout` on `session`; `disk` and `objects`
//! on those; each placement on all of them, never on the other; this module
//! on everything.

mod disk;
mod error;
mod layout;
mod local;
mod objects;
mod remote;
mod session;
mod stream;
mod sync;

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::config::{AzureConfig, GcsConfig, S3Config, StorageBackend, StorageConfig};
use crate::oci::range::ByteRange;
use crate::oci::Digest;
use local::LocalPlacement;
use remote::RemotePlacement;

pub use error::{CopyError, StorageError};
pub use layout::{new_nonce, BlobFile};
pub use session::{UploadError, UploadId, UploadStatus};
pub use stream::ByteStream;

pub struct BlobStore {
    placement: Placement,
}

/// Where a store keeps blobs and upload sessions.
enum Placement {
    /// Files under a directory of the replica's disk.
    Local(LocalPlacement),
    /// Objects of a bucket or container that replicas may share.
    Remote(RemotePlacement),
}

impl BlobStore {
    /// Opens (creating if needed) a blob store on local disk.
    pub fn open_local(root: PathBuf) -> Result<BlobStore, StorageError> {
        Ok(Self::local(LocalPlacement::open(root)?))
    }

    /// Opens a blob store in the object store `config.backend` names (S3,
    /// GCS or Azure; not `local`): blobs and upload sessions are objects
    /// there, and `staging` (local) only has leftovers of older versions
    /// swept.
    pub fn open_object_store(
        staging: PathBuf,
        config: &StorageConfig,
    ) -> Result<BlobStore, StorageError> {
        match config.backend {
            StorageBackend::S3 => Self::open_s3(staging, &config.s3),
            StorageBackend::Gcs => Self::open_gcs(staging, &config.gcs),
            StorageBackend::Azure => Self::open_azure(staging, &config.azure),
            StorageBackend::Local => Err(StorageError::Io(io::Error::other(
                "storage.backend = \"local\" is not an object store",
            ))),
        }
    }

    /// Opens a blob store whose blobs and upload sessions live in an
    /// S3-compatible bucket.
    pub fn open_s3(staging: PathBuf, config: &S3Config) -> Result<BlobStore, StorageError> {
        Ok(Self::remote(RemotePlacement::s3(staging, config)?))
    }

    /// Opens a blob store whose blobs and upload sessions live in a Google
    /// Cloud Storage bucket.
    pub fn open_gcs(staging: PathBuf, config: &GcsConfig) -> Result<BlobStore, StorageError> {
        Ok(Self::remote(RemotePlacement::gcs(staging, config)?))
    }

    /// Opens a blob store whose blobs and upload sessions live in an Azure
    /// Blob Storage container.
    pub fn open_azure(staging: PathBuf, config: &AzureConfig) -> Result<BlobStore, StorageError> {
        Ok(Self::remote(RemotePlacement::azure(staging, config)?))
    }

    fn local(placement: LocalPlacement) -> BlobStore {
        BlobStore {
            placement: Placement::Local(placement),
        }
    }

    fn remote(placement: RemotePlacement) -> BlobStore {
        BlobStore {
            placement: Placement::Remote(placement),
        }
    }

    /// A presigned URL to GET the blob's object from, if pulls are
    /// redirected to the object store.
    pub async fn presigned_url(
        &self,
        digest: &Digest,
        nonce: &str,
    ) -> Result<Option<String>, StorageError> {
        match &self.placement {
            Placement::Local(_) => Ok(None),
            Placement::Remote(r) => r.presigned_url(digest, nonce).await,
        }
    }

    /// Opens a blob for reading, whole or a range of it.
    pub async fn read(
        &self,
        digest: &Digest,
        nonce: &str,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        match &self.placement {
            Placement::Local(l) => l.read(digest, nonce, range).await,
            Placement::Remote(r) => r.read(digest, nonce, range).await,
        }
    }

    /// The upload sessions.
    pub fn uploads(&self) -> Uploads<'_> {
        Uploads(&self.placement)
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
        match &self.placement {
            Placement::Local(l) => l.commit_upload(id, repository, expected, nonce).await,
            Placement::Remote(r) => r.commit_upload(id, repository, expected, nonce).await,
        }
    }

    /// Completes an upload with the body of its final request (a last
    /// chunk, starting at `start` if given, of `declared_len` bytes if
    /// given), then as `commit_upload`. In remote placement an upload that
    /// received nothing before streams the body straight into the blob's
    /// object.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_upload_stream(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: ByteStream,
        expected: &Digest,
        nonce: &str,
    ) -> Result<u64, UploadError> {
        match &self.placement {
            Placement::Local(l) => {
                l.commit_upload_stream(id, repository, start, declared_len, body, expected, nonce)
                    .await
            }
            Placement::Remote(r) => {
                r.commit_upload_stream(id, repository, start, declared_len, body, expected, nonce)
                    .await
            }
        }
    }

    /// Completes an upload with the small body of its final request, read
    /// whole: the blob, or (when chunks came before) its last chunk, starting
    /// at `start` if given.
    pub async fn commit_upload_bytes(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        expected: &Digest,
        nonce: &str,
        bytes: Bytes,
    ) -> Result<u64, UploadError> {
        match &self.placement {
            Placement::Local(l) => {
                l.commit_upload_bytes(id, repository, start, expected, nonce, bytes)
                    .await
            }
            Placement::Remote(r) => {
                r.commit_upload_bytes(id, repository, start, expected, nonce, bytes)
                    .await
            }
        }
    }

    /// Stores a small blob received whole (single-request push) as the file
    /// of `nonce`, after checking its digest.
    pub async fn put_verified(
        &self,
        expected: &Digest,
        nonce: &str,
        bytes: Bytes,
    ) -> Result<u64, UploadError> {
        match &self.placement {
            Placement::Local(l) => l.put_verified(expected, nonce, bytes).await,
            Placement::Remote(r) => r.put_verified(expected, nonce, bytes).await,
        }
    }

    /// Stores a blob read from elsewhere (another store, during a migration)
    /// under the key of `nonce`, hashing it on the way: the object is
    /// completed only if the bytes are `size` bytes hashing to `digest`;
    /// otherwise the upload is aborted and nothing is stored. Streamed (one
    /// PUT when small, multipart when large), never whole in memory.
    /// `copied` is told the length of each chunk as it passes.
    pub async fn put_verified_stream(
        &self,
        digest: &Digest,
        nonce: &str,
        size: u64,
        bytes: ByteStream,
        copied: impl Fn(usize),
    ) -> Result<(), CopyError> {
        match &self.placement {
            Placement::Local(l) => {
                l.put_verified_stream(digest, nonce, size, bytes, copied)
                    .await
            }
            Placement::Remote(r) => {
                r.put_verified_stream(digest, nonce, size, bytes, copied)
                    .await
            }
        }
    }

    /// Where the bytes of one write of a blob are, for messages: the file's
    /// path (local placement) or the object's key.
    pub fn blob_location(&self, digest: &Digest, nonce: &str) -> String {
        match &self.placement {
            Placement::Local(l) => l.blob_location(digest, nonce),
            Placement::Remote(r) => r.blob_location(digest, nonce),
        }
    }

    /// Every blob file or object in the store, with its size (a listing,
    /// directory by directory).
    pub async fn all_blob_files(&self) -> Result<Vec<BlobFile>, StorageError> {
        // Modified before a moment far ahead: everything.
        let until = SystemTime::now() + Duration::from_secs(100 * 365 * 86_400);
        let mut files = Vec::new();
        for dir in self.blob_dirs().await? {
            files.extend(self.blob_files(dir, until).await?);
        }
        Ok(files)
    }

    /// Deletes the file of one write of a blob. Returns its size, or None if
    /// it was not there.
    pub async fn remove_blob_file(
        &self,
        digest: &Digest,
        nonce: &str,
    ) -> Result<Option<u64>, StorageError> {
        match &self.placement {
            Placement::Local(l) => l.remove_blob_file(digest, nonce).await,
            Placement::Remote(r) => r.remove_blob_file(digest, nonce).await,
        }
    }

    /// The directories blob files live in (`blobs/<alg>/<xx>`, as key
    /// prefixes), for a sweep one directory at a time.
    pub async fn blob_dirs(&self) -> Result<Vec<String>, StorageError> {
        match &self.placement {
            Placement::Local(l) => l.blob_dirs().await,
            Placement::Remote(r) => r.blob_dirs().await,
        }
    }

    /// The blob files under one prefix from `blob_dirs` last modified before
    /// `before`. Names that are not blob files are left alone.
    pub async fn blob_files(
        &self,
        dir: String,
        before: SystemTime,
    ) -> Result<Vec<BlobFile>, StorageError> {
        match &self.placement {
            Placement::Local(l) => l.blob_files(dir, before).await,
            Placement::Remote(r) => r.blob_files(dir, before).await,
        }
    }

    /// Removes local staging files of small blobs (`uploads/tmp-*`) last
    /// modified before `before`: leftovers of a crash mid-write. Returns how
    /// many and their bytes.
    pub async fn remove_stale_staging(
        &self,
        before: SystemTime,
    ) -> Result<(u64, u64), StorageError> {
        match &self.placement {
            Placement::Local(l) => l.remove_stale_staging(before).await,
            Placement::Remote(r) => r.remove_stale_staging(before).await,
        }
    }

    /// Repositories with an upload session in progress (on local disk: in
    /// memory or on disk; remote placement: in the store, whichever replica
    /// serves it).
    pub async fn repositories_uploading(&self) -> Result<HashSet<String>, StorageError> {
        match &self.placement {
            Placement::Local(l) => l.repositories_uploading().await,
            Placement::Remote(r) => r.repositories_uploading().await,
        }
    }
}

/// The upload sessions of a store, wherever its placement keeps them. A
/// copy of a reference: its calls take it by value, so that their futures
/// borrow the store, not this handle.
#[derive(Clone, Copy)]
pub struct Uploads<'a>(&'a Placement);

impl Uploads<'_> {
    /// Starts a session for `repository` (on local disk: in memory until
    /// data arrives; remote placement: its object exists before the client
    /// learns the id, so any replica can serve the next request).
    pub async fn start(self, repository: &str) -> Result<UploadId, UploadError> {
        match self.0 {
            Placement::Local(l) => l.sessions.start(repository).await,
            Placement::Remote(r) => r.sessions.start(repository).await,
        }
    }

    pub async fn status(self, id: UploadId, repository: &str) -> Result<UploadStatus, UploadError> {
        match self.0 {
            Placement::Local(l) => l.sessions.status(id, repository).await,
            Placement::Remote(r) => r.sessions.status(id, repository).await,
        }
    }

    /// Appends a request body. `start` is the chunk's declared offset (from
    /// `Content-Range`) and `declared_len` its `Content-Length`; both are
    /// checked. A body that fails midway leaves the session as it was before.
    pub async fn append(
        self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus, UploadError> {
        match self.0 {
            Placement::Local(l) => {
                l.sessions
                    .append(id, repository, start, declared_len, body)
                    .await
            }
            Placement::Remote(r) => {
                r.sessions
                    .append(id, repository, start, declared_len, body)
                    .await
            }
        }
    }

    /// Removes a session and its data.
    pub async fn cancel(self, id: UploadId, repository: &str) -> Result<(), UploadError> {
        match self.0 {
            Placement::Local(l) => l.sessions.cancel(id, repository).await,
            Placement::Remote(r) => r.sessions.cancel(id, repository).await,
        }
    }

    /// Whether the session has received no bytes yet.
    pub async fn is_empty(self, id: UploadId, repository: &str) -> Result<bool, UploadError> {
        Ok(self.status(id, repository).await?.size == 0)
    }

    /// Deletes sessions untouched for longer than `ttl`; returns how many.
    pub async fn expire(self, ttl: Duration) -> io::Result<usize> {
        match self.0 {
            Placement::Local(l) => l.expire_uploads(ttl).await,
            Placement::Remote(r) => r.expire_uploads(ttl).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Accepts one connection on a loopback port, answers 404 and returns
    /// the request's head (request line and headers, lowercased).
    async fn one_request() -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed mid-request");
                head.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            String::from_utf8_lossy(&head).to_lowercase()
        });
        (url, task)
    }

    /// With an endpoint and no service account, requests go to the
    /// endpoint, path-style, carrying no token.
    #[tokio::test]
    async fn gcs_endpoint_without_credentials_reaches_the_emulator() {
        let (url, request) = one_request().await;
        let config = GcsConfig {
            bucket: "images".into(),
            prefix: "p".into(),
            endpoint: Some(format!("{url}/")),
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!("berth-gcs-unit-{}", new_nonce()));
        let store = BlobStore::open_gcs(dir.clone(), &config).unwrap();
        let digest = Digest::of(crate::oci::Algorithm::Sha256, b"x");
        assert!(matches!(
            store.remove_blob_file(&digest, "n").await,
            Ok(None)
        ));
        let head = request.await.unwrap();
        let hex = digest.hex();
        // object_store escapes the key's slashes (GCS takes both forms).
        let line = head.lines().next().unwrap();
        let line = percent_encoding::percent_decode_str(line).decode_utf8_lossy();
        assert_eq!(
            line,
            format!("head /images/p/blobs/sha256/{}/{hex}.n http/1.1", &hex[..2]),
            "{head}"
        );
        assert!(!head.contains("authorization:"), "{head}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The emulator switch with an endpoint: path-style URLs with the
    /// development account, signed with its shared key.
    #[tokio::test]
    async fn azure_emulator_endpoint_is_path_style_and_signed() {
        let (url, request) = one_request().await;
        let config = AzureConfig {
            container: "c".into(),
            endpoint: Some(url),
            use_emulator: true,
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!("berth-azure-unit-{}", new_nonce()));
        let store = BlobStore::open_azure(dir.clone(), &config).unwrap();
        let digest = Digest::of(crate::oci::Algorithm::Sha256, b"x");
        assert!(matches!(
            store.remove_blob_file(&digest, "").await,
            Ok(None)
        ));
        let head = request.await.unwrap();
        let hex = digest.hex();
        assert!(
            head.starts_with(&format!(
                "head /devstoreaccount1/c/blobs/sha256/{}/{hex} http/1.1\r\n",
                &hex[..2]
            )),
            "{head}"
        );
        assert!(
            head.contains("authorization: sharedkey devstoreaccount1:"),
            "{head}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

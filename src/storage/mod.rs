//! Blob storage: verified, content-addressed blob bytes and the staging area
//! of uploads in progress. Knows nothing of repositories or metadata.
//!
//! `layout.rs` draws where everything is. With blobs in an object store
//! (remote placement) the same `blobs/` keys are objects, and upload
//! sessions are objects too (see `shared.rs`), so that replicas sharing the
//! bucket serve one upload together; nothing of an upload is on the
//! replica's disk.
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

mod layout;
mod session;
mod shared;
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
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};

use crate::config::{AzureConfig, GcsConfig, S3Config, StorageBackend, StorageConfig};
use crate::oci::range::ByteRange;
use crate::oci::Digest;

pub use layout::{new_nonce, BlobFile};
pub use session::{UploadError, UploadId, UploadStatus};

/// Blob bytes in flight, to or from a client.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Read size for blob GETs: large enough that per-chunk overhead vanishes.
const READ_CHUNK: usize = 1024 * 1024;
/// Longest a request to the object store is retried before the error
/// reaches the client.
const STORE_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Part size of multipart uploads to an object store (S3's least is 5 MiB).
const PUT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once: a blob's copy holds at most this many parts, plus
/// the one filling, in memory.
const PUT_PARTS_IN_FLIGHT: usize = 2;
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

pub struct BlobStore {
    /// Local directory: blob files and the uploads in progress (local
    /// placement); leftovers of older versions only (remote placement).
    root: PathBuf,
    /// The blobs, read and listed through `object_store` in both placements.
    objects: Arc<dyn ObjectStore>,
    /// Whether blobs and upload sessions are objects of a remote store
    /// rather than files under `root`.
    remote: bool,
    /// Signs GET URLs of blob objects, when pulls are redirected to them.
    presigner: Option<Presigner>,
    uploads: uploads::Uploads,
}

struct Presigner {
    s3: Arc<AmazonS3>,
    /// `storage.s3.prefix`, which the signed key must include.
    prefix: String,
    ttl: std::time::Duration,
}

impl BlobStore {
    /// Opens (creating if needed) a blob store on local disk.
    pub fn open_local(root: PathBuf) -> Result<BlobStore, StorageError> {
        std::fs::create_dir_all(layout::blobs_dir(&root))?;
        let objects = Arc::new(LocalFileSystem::new_with_prefix(&root)?);
        Self::open(root, objects, false)
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
        let mut builder = AmazonS3Builder::new()
            .with_retry(store_retry())
            .with_bucket_name(&config.bucket)
            .with_virtual_hosted_style_request(!config.path_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(&secret.0);
        }
        let s3 = Arc::new(builder.build()?);
        let mut store = Self::open_remote(staging, s3.clone(), &config.prefix)?;
        store.presigner = config.presigned_redirects.then(|| Presigner {
            s3,
            prefix: config.prefix.clone(),
            ttl: std::time::Duration::from_secs(config.presigned_ttl_secs),
        });
        Ok(store)
    }

    /// Opens a blob store whose blobs and upload sessions live in a Google
    /// Cloud Storage bucket.
    pub fn open_gcs(staging: PathBuf, config: &GcsConfig) -> Result<BlobStore, StorageError> {
        let gcs = gcs_builder(config)?.build()?;
        Self::open_remote(staging, Arc::new(gcs), &config.prefix)
    }

    /// Opens a blob store whose blobs and upload sessions live in an Azure
    /// Blob Storage container.
    pub fn open_azure(staging: PathBuf, config: &AzureConfig) -> Result<BlobStore, StorageError> {
        let azure = azure_builder(config).build()?;
        Self::open_remote(staging, Arc::new(azure), &config.prefix)
    }

    /// Remote placement on `store`, under `prefix`: everything after the
    /// backend's client is built is the same for every object store.
    fn open_remote(
        staging: PathBuf,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
    ) -> Result<BlobStore, StorageError> {
        let objects: Arc<dyn ObjectStore> = if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Self::open(staging, objects, true)
    }

    /// A presigned URL to GET the blob's object from, if pulls are
    /// redirected to the object store.
    pub async fn presigned_url(
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

    fn open(
        root: PathBuf,
        objects: Arc<dyn ObjectStore>,
        remote: bool,
    ) -> Result<BlobStore, StorageError> {
        std::fs::create_dir_all(layout::uploads_dir(&root))?;
        // Remote placement: the object store makes blobs durable, and
        // holds the upload sessions.
        let (sync, shared) = if remote {
            (None, Some(shared::SharedSessions::new(objects.clone())))
        } else {
            (Some(Arc::new(sync::SyncGroup::new(&root)?)), None)
        };
        Ok(BlobStore {
            uploads: uploads::Uploads::new(root.clone(), sync, shared),
            root,
            objects,
            remote,
            presigner: None,
        })
    }

    fn file_path(&self, digest: &Digest, nonce: &str) -> PathBuf {
        layout::blob_path(&self.root, digest, nonce)
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
            .get_opts(&layout::blob_key(digest, nonce), options)
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
        if let Some(shared) = self.uploads.shared() {
            let target = layout::blob_key(expected, nonce);
            return shared.commit(id, repository, expected, target).await;
        }
        let target = self.file_path(expected, nonce);
        self.uploads.commit(id, repository, expected, target).await
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
        if let Some(shared) = self.uploads.shared() {
            let target = layout::blob_key(expected, nonce);
            return shared
                .commit_stream(id, repository, start, declared_len, body, expected, target)
                .await;
        }
        self.uploads
            .append(id, repository, start, declared_len, body)
            .await?;
        self.commit_upload(id, repository, expected, nonce).await
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
        if let Some(shared) = self.uploads.shared() {
            // One read of the session object decides, not two.
            let target = layout::blob_key(expected, nonce);
            return shared
                .commit_bytes(id, repository, start, expected, bytes, target)
                .await;
        }
        // Anything but a whole blob takes the chunk path, which checks `start`.
        if start.is_some_and(|s| s != 0) || !self.uploads.is_empty(id, repository).await? {
            let len = bytes.len() as u64;
            let body = futures_util::stream::once(async move { Ok(bytes) }).boxed();
            return self
                .commit_upload_stream(id, repository, start, Some(len), body, expected, nonce)
                .await;
        }
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
        if self.remote {
            let target = layout::blob_key(expected, nonce);
            return shared::put_whole(&self.objects, expected, bytes, target).await;
        }
        let target = self.file_path(expected, nonce);
        self.uploads.store_bytes(expected, bytes, target).await
    }

    /// Stores a blob read from elsewhere (another store, during a migration)
    /// under the key of `nonce`, hashing it on the way: the object is
    /// completed only if the bytes are `size` bytes hashing to `digest`;
    /// otherwise the upload is aborted and nothing is stored. Streamed like
    /// `put_file` (one PUT when small, multipart when large), never whole in
    /// memory. `copied` is told the length of each chunk as it passes.
    pub async fn put_verified_stream(
        &self,
        digest: &Digest,
        nonce: &str,
        size: u64,
        mut bytes: ByteStream,
        copied: impl Fn(usize),
    ) -> Result<(), CopyError> {
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            self.objects.clone(),
            layout::blob_key(digest, nonce),
            PUT_PART_SIZE,
        )
        .with_max_concurrency(PUT_PARTS_IN_FLIGHT);
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
            Ok(()) => {
                use tokio::io::AsyncWriteExt;
                writer.shutdown().await.map_err(StorageError::Io)?;
                Ok(())
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// Where the bytes of one write of a blob are, for messages: the file's
    /// path (local placement) or the object's key.
    pub fn blob_location(&self, digest: &Digest, nonce: &str) -> String {
        if self.remote {
            layout::blob_key(digest, nonce).to_string()
        } else {
            self.file_path(digest, nonce).display().to_string()
        }
    }

    /// Every blob file or object in the store, with its size (a listing,
    /// directory by directory).
    pub async fn all_blob_files(&self) -> Result<Vec<BlobFile>, StorageError> {
        // Modified before a moment far ahead: everything.
        let until = SystemTime::now() + std::time::Duration::from_secs(100 * 365 * 86_400);
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
        if self.remote {
            let key = layout::blob_key(digest, nonce);
            let size = match self.objects.head(&key).await {
                Ok(meta) => meta.size,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            return match self.objects.delete(&key).await {
                Ok(()) => Ok(Some(size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
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

    /// The directories blob files live in (`blobs/<alg>/<xx>`, as key
    /// prefixes), for a sweep one directory at a time.
    pub async fn blob_dirs(&self) -> Result<Vec<String>, StorageError> {
        if self.remote {
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
            return Ok(dirs);
        }
        let root = self.root.clone();
        Ok(blocking(move || {
            let mut dirs = Vec::new();
            for alg in std::fs::read_dir(layout::blobs_dir(&root))? {
                let alg = alg?;
                let Some(alg_name) = alg.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if !alg.file_type()?.is_dir() {
                    continue;
                }
                for sub in std::fs::read_dir(alg.path())? {
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

    /// The blob files under one prefix from `blob_dirs` last modified before
    /// `before`. Names that are not blob files are left alone.
    pub async fn blob_files(
        &self,
        dir: String,
        before: SystemTime,
    ) -> Result<Vec<BlobFile>, StorageError> {
        let Some(alg) = layout::blob_dir_algorithm(&dir).map(str::to_string) else {
            return Ok(Vec::new());
        };
        if self.remote {
            let before = chrono::DateTime::<chrono::Utc>::from(before);
            let objects: Vec<_> = self
                .objects
                .list(Some(&layout::blob_dir_prefix(&dir)))
                .try_collect()
                .await?;
            return Ok(objects
                .into_iter()
                .filter(|o| o.last_modified < before)
                .filter_map(|o| BlobFile::listed(&alg, o.location.filename()?, o.size))
                .collect());
        }
        let dir = layout::blob_dir_path(&self.root, &dir);
        Ok(blocking(move || {
            let mut files = Vec::new();
            let entries = match std::fs::read_dir(&dir) {
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

    /// Removes local staging files of small blobs (`uploads/tmp-*`) last
    /// modified before `before`: leftovers of a crash mid-write. Returns how
    /// many and their bytes.
    pub async fn remove_stale_staging(
        &self,
        before: SystemTime,
    ) -> Result<(u64, u64), StorageError> {
        Ok(self.uploads.remove_stale_staging(before).await?)
    }

    /// Repositories with an upload session in progress (on local disk: in
    /// memory or on disk; remote placement: in the store, whichever replica
    /// serves it).
    pub async fn repositories_uploading(&self) -> Result<HashSet<String>, StorageError> {
        self.uploads.repositories().await
    }
}

/// Requests to an object store ride out a brief hiccup of the store, but
/// answer a client within seconds, not object_store's default three minutes.
fn store_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: STORE_RETRY_TIMEOUT,
        ..Default::default()
    }
}

/// The account key of Azurite, the Azure storage emulator: the well-known
/// development key, public (Microsoft documents it).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The client of `[storage.gcs]`, not yet built.
///
/// object_store takes a GCS base URL other than Google's only from the
/// service account JSON (`gcs_base_url`), so with an `endpoint` it goes
/// there: added to the configured key, or, without one, in a key that turns
/// authentication off (`disable_oauth`), as emulators want.
fn gcs_builder(config: &GcsConfig) -> Result<GoogleCloudStorageBuilder, StorageError> {
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_retry(store_retry())
        .with_bucket_name(&config.bucket);
    let Some(endpoint) = &config.endpoint else {
        if let Some(path) = &config.service_account_path {
            builder = builder.with_service_account_path(path.to_string_lossy());
        }
        if let Some(key) = &config.service_account_key {
            builder = builder.with_service_account_key(&key.0);
        }
        return Ok(builder);
    };
    let bad_key = |e: serde_json::Error| {
        StorageError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("storage.gcs service account key: {e}"),
        ))
    };
    let key =
        match (&config.service_account_key, &config.service_account_path) {
            (Some(key), _) => Some(key.0.clone()),
            (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
            })?),
            (None, None) => None,
        };
    let mut key: serde_json::Map<String, serde_json::Value> = match key {
        Some(key) => serde_json::from_str(&key).map_err(bad_key)?,
        None => serde_json::json!({
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        })
        .as_object()
        .cloned()
        .expect("an object"),
    };
    key.insert(
        "gcs_base_url".into(),
        endpoint.trim_end_matches('/').to_string().into(),
    );
    Ok(builder
        .with_service_account_key(serde_json::Value::Object(key).to_string())
        .with_client_options(
            object_store::ClientOptions::new().with_allow_http(endpoint.starts_with("http://")),
        ))
}

/// The client of `[storage.azure]`, not yet built.
///
/// With `use_emulator` the URLs are path-style, as Azurite wants them
/// (`<endpoint>/<account>/<container>/<key>`); the endpoint is given to
/// object_store as the account's URL rather than through its own emulator
/// switch, which reads the emulator's address from the environment only.
fn azure_builder(config: &AzureConfig) -> MicrosoftAzureBuilder {
    let mut builder = MicrosoftAzureBuilder::new()
        .with_retry(store_retry())
        .with_container_name(&config.container);
    if config.use_emulator {
        let account = if config.account.is_empty() {
            AZURITE_ACCOUNT
        } else {
            config.account.as_str()
        };
        let endpoint = config
            .endpoint
            .as_deref()
            .unwrap_or("http://127.0.0.1:10000")
            .trim_end_matches('/');
        let key = config
            .access_key
            .as_ref()
            .map_or(AZURITE_KEY, |k| k.0.as_str());
        return builder
            .with_account(account)
            .with_endpoint(format!("{endpoint}/{account}"))
            .with_allow_http(endpoint.starts_with("http://"))
            .with_access_key(key);
    }
    builder = builder.with_account(&config.account);
    if let Some(endpoint) = &config.endpoint {
        builder = builder
            .with_endpoint(endpoint.clone())
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(key) = &config.access_key {
        builder = builder.with_access_key(&key.0);
    }
    builder
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use object_store::gcp::GoogleConfigKey;
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

    /// A configured key keeps its fields and gains the endpoint as
    /// `gcs_base_url`; without an endpoint it is passed as it is.
    #[test]
    fn gcs_key_gets_the_endpoint() {
        let key = r#"{"private_key":"k","private_key_id":"i","client_email":"e@x"}"#;
        let config = GcsConfig {
            bucket: "b".into(),
            service_account_key: Some(Secret(key.into())),
            endpoint: Some("http://127.0.0.1:4443".into()),
            ..Default::default()
        };
        let builder = gcs_builder(&config).unwrap();
        let got: serde_json::Value = serde_json::from_str(
            &builder
                .get_config_value(&GoogleConfigKey::ServiceAccountKey)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(got["gcs_base_url"], "http://127.0.0.1:4443");
        assert_eq!(got["private_key"], "k");
        assert_eq!(got["client_email"], "e@x");
        assert!(got.get("disable_oauth").is_none());
        assert_eq!(
            builder
                .get_config_value(&GoogleConfigKey::Bucket)
                .as_deref(),
            Some("b")
        );

        let config = GcsConfig {
            endpoint: None,
            ..config
        };
        let builder = gcs_builder(&config).unwrap();
        assert_eq!(
            builder
                .get_config_value(&GoogleConfigKey::ServiceAccountKey)
                .as_deref(),
            Some(key)
        );

        let config = GcsConfig {
            service_account_key: Some(Secret("not json".into())),
            endpoint: Some("http://127.0.0.1:4443".into()),
            ..config
        };
        assert!(gcs_builder(&config).is_err());
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

//! The registry service: the operations of the distribution API, expressed in
//! terms of validated names and digests. It combines metadata (`meta`) and
//! blob bytes (`storage`) in the order that keeps the invariants:
//! bytes are stored and verified before metadata names them, and metadata
//! changes are single transactions.

pub mod admission;
mod cache;
mod check;
mod error;
mod gc;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

/// Value types of the storage layer that the HTTP layer passes through.
pub use crate::storage::{ByteStream, UploadId};
pub use check::{ConsistencyReport, ProjectCheck};
pub use error::RegistryError;
pub use gc::{GcProgress, GcReport, GcSettings, GcWorker};

use crate::events::{Actor, Event, Kind};
use crate::journal::{Fact, Journal};
use crate::meta::{
    now_millis, ArtifactSummary, BlobLinked, Guard, MetaError, MetaStore, PutManifestRefusal,
    RemoveRefusal, RepositorySummary, StoredManifest, TagRecord, Visibility,
};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::range::{self, ByteRange};
use crate::oci::{Algorithm, Descriptor, Digest, Manifest, Reference, RepositoryName};
use crate::storage::BlobStore;
pub use admission::{Admission, AdmitAll};
use admission::{Operation, Request, Verdict};

pub type Result<T> = std::result::Result<T, RegistryError>;

/// Blobs up to this size that arrive in one request are received in memory
/// and written whole.
const SMALL_BLOB: u64 = 1024 * 1024;

/// The offset a chunk declares in `Content-Range`, and its length: the
/// `Content-Length`, which must agree with the range, or else the range's.
fn chunk_start(
    content_range: Option<&str>,
    content_length: Option<u64>,
) -> Result<(Option<u64>, Option<u64>)> {
    let Some(header) = content_range else {
        return Ok((None, content_length));
    };
    let r = range::parse_content_range(header)
        .map_err(|e| RegistryError::UploadInvalid(format!("Content-Range: {e}")))?;
    if let Some(len) = content_length.filter(|&l| l != r.len()) {
        return Err(RegistryError::SizeInvalid(format!(
            "Content-Range covers {} bytes but Content-Length is {len}",
            r.len()
        )));
    }
    Ok((Some(r.start), Some(r.len())))
}

/// Reads a body of exactly `len` bytes (at most SMALL_BLOB) into memory.
async fn read_body(mut body: ByteStream, len: u64) -> Result<Bytes> {
    use futures_util::StreamExt;
    let mut buf = bytes::BytesMut::with_capacity(len as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| RegistryError::UploadInvalid(format!("client stopped sending: {e}")))?;
        if buf.len() + chunk.len() > len as usize {
            return Err(RegistryError::SizeInvalid(format!(
                "body is longer than its Content-Length {len}"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.len() as u64 != len {
        return Err(RegistryError::SizeInvalid(format!(
            "received {} bytes but the request declared {len}",
            buf.len()
        )));
    }
    Ok(buf.freeze())
}

pub struct Registry {
    meta: Arc<MetaStore>,
    blobs: BlobStore,
    /// Where pulls are recorded.
    journal: Arc<Journal>,
    /// Decides every upload, push, delete and manifest read.
    admission: Arc<dyn Admission>,
    manifests: cache::ManifestCache,
    gc: gc::GcState,
}

/// A blob being served.
pub struct BlobRead {
    pub size: u64,
    /// Present when a range was asked for.
    pub range: Option<ByteRange>,
    /// None for HEAD requests and redirects.
    pub body: Option<ByteStream>,
    /// Where to GET the bytes instead (a presigned object-store URL).
    pub redirect: Option<String>,
}

/// A stored manifest and what the push response reports.
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

impl Registry {
    /// Another replica moved a tag or removed a manifest of `repo`.
    pub fn repository_changed(&self, repo: &str) {
        match repo.parse::<RepositoryName>() {
            Ok(repo) => self.manifests.repository_changed(&repo),
            Err(_) => self.manifests.clear(),
        }
    }

    /// Changes may have been missed: forget every cached resolution.
    pub fn forget_cached(&self) {
        self.manifests.clear();
    }

    /// A registry over `meta` and `blobs` that records pulls in `journal`,
    /// asks `admission` about every change and manifest read, and whose
    /// garbage collection applies `gc`'s delays.
    pub fn new(
        meta: Arc<MetaStore>,
        blobs: BlobStore,
        journal: Arc<Journal>,
        admission: Arc<dyn Admission>,
        gc: GcSettings,
    ) -> Arc<Registry> {
        Arc::new(Registry {
            meta,
            blobs,
            journal,
            admission,
            manifests: cache::ManifestCache::default(),
            gc: gc::GcState::new(gc),
        })
    }

    /// Asks the admission point; a refusal is `Denied` with its message.
    async fn admit(
        &self,
        actor: &Actor,
        repository: &RepositoryName,
        operation: Operation<'_>,
    ) -> Result<Guard> {
        let request = Request {
            actor,
            repository,
            operation,
            content: self,
        };
        match self.admission.admit(&request).await? {
            Verdict::Allow(guard) => Ok(guard),
            Verdict::Audited(guard, violations) => {
                for v in violations {
                    // Recorded (counted per minute) in the audit log; a
                    // line per request would flood the log.
                    tracing::debug!(actor = %actor.name, repository = %repository, operation = ?request.operation, rule = %v.rule, message = %v.message, "allowed by a rule in audit mode");
                    self.violation(actor, repository, &request.operation, &v, false);
                }
                Ok(guard)
            }
            Verdict::Deny(refusal) => {
                tracing::info!(actor = %actor.name, repository = %repository, operation = ?request.operation, rule = %refusal.rule, message = %refusal.message, "refused by a rule");
                self.violation(actor, repository, &request.operation, &refusal, true);
                Err(RegistryError::Denied(refusal.message))
            }
        }
    }

    /// Records that a rule was broken (`refused`: and the request refused).
    fn violation(
        &self,
        actor: &Actor,
        repository: &RepositoryName,
        operation: &Operation<'_>,
        refusal: &admission::Refusal,
        refused: bool,
    ) {
        let mut event = Event::new(Kind::PolicyViolated, actor, now_millis())
            .in_repository(repository.as_str())
            .with_detail(format!(
                "{}: {}",
                if refused { "refused" } else { "audit" },
                refusal.message
            ));
        event.resource = Some(refusal.rule.clone());
        match operation {
            Operation::Push {
                reference, digest, ..
            } => {
                event.reference = Some(reference.to_string());
                event.digest = Some(digest.to_string());
            }
            Operation::Pull {
                reference,
                manifest,
                ..
            } => {
                event.reference = Some(reference.to_string());
                event.digest = Some(manifest.digest.to_string());
            }
            _ => {}
        }
        if refused {
            event = event.failed();
        }
        self.journal.event(event);
    }

    /// Removes upload sessions untouched for `ttl`; returns how many.
    pub async fn expire_uploads(&self, ttl: std::time::Duration) -> Result<usize> {
        self.blobs
            .uploads()
            .expire(ttl)
            .await
            .map_err(|e| RegistryError::Internal(e.to_string()))
    }

    /// Whether the metadata database answers.
    pub async fn ready(&self) -> Result<()> {
        Ok(self.meta.ping().await?)
    }

    /// Bytes of stored blobs and manifests.
    pub async fn storage_bytes(&self) -> Result<u64> {
        Ok(self.meta.storage_bytes().await?)
    }

    async fn require_repository(&self, repo: &RepositoryName) -> Result<()> {
        if self.meta.repository_exists(repo).await? {
            Ok(())
        } else {
            Err(RegistryError::NameUnknown)
        }
    }

    // ---- blobs -------------------------------------------------------------

    /// Opens a blob (or a `Range` of it) for a GET, or just sizes it for a HEAD.
    pub async fn read_blob(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
        range_header: Option<&str>,
        with_body: bool,
    ) -> Result<BlobRead> {
        let (size, nonce) = self
            .meta
            .blob_file(repo, blob)
            .await?
            .ok_or(RegistryError::BlobUnknown)?;
        if with_body {
            // The store answers the client's Range itself.
            if let Some(url) = self.blobs.presigned_url(blob, &nonce).await? {
                self.record_blob_pull(repo, blob);
                return Ok(BlobRead {
                    size,
                    range: None,
                    body: None,
                    redirect: Some(url),
                });
            }
        }
        let range = match range_header {
            Some(h) => range::parse_range(h, size)
                .map_err(|e| RegistryError::RangeNotSatisfiable(e.to_string(), size))?,
            None => None,
        };
        let body = if with_body {
            self.record_blob_pull(repo, blob);
            Some(self.blobs.read(blob, &nonce, range).await?)
        } else {
            None
        };
        Ok(BlobRead {
            size,
            range,
            body,
            redirect: None,
        })
    }

    /// A blob's size and bytes, read for Berth itself (the scanner): no
    /// pull is recorded and no redirect offered.
    pub async fn blob_content(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
    ) -> Result<(u64, ByteStream)> {
        let (size, nonce) = self
            .meta
            .blob_file(repo, blob)
            .await?
            .ok_or(RegistryError::BlobUnknown)?;
        Ok((size, self.blobs.read(blob, &nonce, None).await?))
    }

    /// A blob's bytes, read for Berth itself, if it is at most `max` bytes.
    pub async fn small_blob(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
        max: u64,
    ) -> Result<Option<Vec<u8>>> {
        let (size, mut stream) = match self.blob_content(repo, blob).await {
            Ok(found) => found,
            Err(RegistryError::BlobUnknown) => return Ok(None),
            Err(e) => return Err(e),
        };
        if size > max {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(size as usize);
        while let Some(chunk) = futures_util::TryStreamExt::try_next(&mut stream)
            .await
            .map_err(|e| RegistryError::StorageUnavailable(e.to_string()))?
        {
            if (bytes.len() + chunk.len()) as u64 > max {
                return Ok(None);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes))
    }

    fn record_blob_pull(&self, repo: &RepositoryName, blob: &Digest) {
        self.journal.record(&Fact::Blob {
            at: now_millis(),
            repository: repo.to_string(),
            digest: blob.to_string(),
        });
    }

    /// Links a blob that `from` holds into `repo` without upload; false if
    /// `from` does not hold it.
    pub async fn mount_blob(
        &self,
        actor: &Actor,
        repo: &RepositoryName,
        blob: &Digest,
        from: &RepositoryName,
    ) -> Result<bool> {
        self.admit(actor, repo, Operation::Upload).await?;
        Ok(self.meta.mount_blob(repo, from, blob).await?.is_some())
    }

    /// Some repositories that hold a blob: sources for a mount without `from`.
    pub async fn blob_holders(&self, blob: &Digest) -> Result<Vec<RepositoryName>> {
        Ok(self.meta.repositories_with_blob(blob, 100).await?)
    }

    pub async fn start_upload(&self, actor: &Actor, repo: &RepositoryName) -> Result<UploadId> {
        self.admit(actor, repo, Operation::Upload).await?;
        Ok(self.blobs.uploads().start(repo.as_str()).await?)
    }

    /// Receives a whole blob in the POST that opens the upload (`?digest=`).
    pub async fn push_blob(
        &self,
        actor: &Actor,
        repo: &RepositoryName,
        blob: &Digest,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<()> {
        self.admit(actor, repo, Operation::Upload).await?;
        match content_length {
            Some(len) if len <= SMALL_BLOB => {
                let bytes = read_body(body, len).await?;
                if self.link_if_stored(repo, blob, &bytes, None).await? {
                    return Ok(());
                }
                let writing = self.gc.writes.begin(blob);
                let size = self.blobs.put_verified(blob, &writing.nonce, bytes).await?;
                self.link_written(repo, blob, size, writing).await
            }
            _ => {
                let id = self.blobs.uploads().start(repo.as_str()).await?;
                let result = self
                    .finish_upload(repo, id, blob, None, content_length, body)
                    .await;
                if result.is_err() {
                    self.cancel_upload(repo, id).await.ok();
                }
                result
            }
        }
    }

    pub async fn upload_status(&self, repo: &RepositoryName, id: UploadId) -> Result<u64> {
        Ok(self.blobs.uploads().status(id, repo.as_str()).await?.size)
    }

    /// Appends a chunk. `content_range` is the raw header, if sent.
    pub async fn upload_chunk(
        &self,
        repo: &RepositoryName,
        id: UploadId,
        content_range: Option<&str>,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let (start, content_length) = chunk_start(content_range, content_length)?;
        let status = self
            .blobs
            .uploads()
            .append(id, repo.as_str(), start, content_length, body)
            .await?;
        Ok(status.size)
    }

    /// Completes an upload (with an optional last chunk) and verifies it.
    pub async fn finish_upload(
        &self,
        repo: &RepositoryName,
        id: UploadId,
        blob: &Digest,
        content_range: Option<&str>,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<()> {
        let (start, content_length) = chunk_start(content_range, content_length)?;
        let uploads = self.blobs.uploads();
        let writing = self.gc.writes.begin(blob);
        let nonce = writing.nonce.as_str();
        let size = match content_length {
            Some(0) => {
                self.blobs
                    .commit_upload(id, repo.as_str(), blob, nonce)
                    .await?
            }
            // A small final request, read whole: the whole blob (then no
            // session file at all), or a last chunk.
            Some(len) if len <= SMALL_BLOB => {
                let bytes = read_body(body, len).await?;
                if self.link_if_stored(repo, blob, &bytes, Some(id)).await? {
                    writing.settled(); // no file was written
                    uploads.cancel(id, repo.as_str()).await?;
                    return Ok(());
                }
                self.blobs
                    .commit_upload_bytes(id, repo.as_str(), start, blob, nonce, bytes)
                    .await?
            }
            _ => {
                self.blobs
                    .commit_upload_stream(
                        id,
                        repo.as_str(),
                        start,
                        content_length,
                        body,
                        blob,
                        nonce,
                    )
                    .await?
            }
        };
        self.link_written(repo, blob, size, writing).await
    }

    /// A small blob received whole whose bytes are stored already: once the
    /// received bytes are checked against the digest (and `upload`, if any,
    /// has received nothing before them), linking it is enough (no file
    /// written, no sync). False when it must be written.
    async fn link_if_stored(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
        bytes: &Bytes,
        upload: Option<UploadId>,
    ) -> Result<bool> {
        if !self.meta.blob_stored(blob).await? || Digest::of(blob.algorithm(), bytes) != *blob {
            return Ok(false); // a mismatch is reported by the normal path
        }
        if let Some(id) = upload {
            if !self.blobs.uploads().is_empty(id, repo.as_str()).await? {
                return Ok(false);
            }
        }
        Ok(self.meta.link_stored_blob(repo, blob).await?.is_some())
    }

    /// Records a blob just written under `writing`'s nonce and links it into
    /// `repo`. If the blob was already stored (live) its row keeps its file
    /// and this write's file is deleted.
    async fn link_written(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
        size: u64,
        writing: gc::Writing<'_>,
    ) -> Result<()> {
        // On an error the file stays, a suspect the next GC pass checks
        // (the transaction may have committed before the error).
        match self.meta.add_blob(repo, blob, size, &writing.nonce).await? {
            BlobLinked::Stored => writing.settled(),
            BlobLinked::Duplicate => {
                match self.blobs.remove_blob_file(blob, &writing.nonce).await {
                    Ok(_) => writing.settled(),
                    Err(e) => {
                        tracing::warn!(blob = %blob, error = %e, "could not delete a duplicate blob file")
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn cancel_upload(&self, repo: &RepositoryName, id: UploadId) -> Result<()> {
        Ok(self.blobs.uploads().cancel(id, repo.as_str()).await?)
    }

    /// Removes a blob from a repository. Its bytes stay until garbage
    /// collection finds nothing referencing them.
    pub async fn delete_blob(
        &self,
        actor: &Actor,
        repo: &RepositoryName,
        blob: &Digest,
    ) -> Result<()> {
        self.admit(actor, repo, Operation::DeleteBlob(blob)).await?;
        match self.meta.delete_blob(repo, blob, actor).await? {
            Ok(()) => Ok(()),
            Err(RemoveRefusal::NotFound) => Err(RegistryError::BlobUnknown),
            Err(RemoveRefusal::ReferencedBy(m)) => Err(RegistryError::Referenced(format!(
                "blob {blob} is used by manifest {} in this repository; delete that first",
                m[0]
            ))),
            Err(RemoveRefusal::Protected(tag, rule)) => Err(RegistryError::Denied(format!(
                "tag {tag:?} is protected: {rule}"
            ))),
        }
    }

    // ---- manifests ---------------------------------------------------------

    /// The manifest `reference` names, without asking the admission
    /// point: for Berth's own reads and for management views of an
    /// artifact (its signatures) that do not hand it out.
    pub async fn lookup_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Arc<StoredManifest>> {
        Ok(match self.manifests.get(repo, reference) {
            Some(m) => m,
            None => {
                let ticket = self.manifests.ticket();
                let found = match reference {
                    Reference::Tag(tag) => self.meta.manifest_by_tag(repo, tag).await?,
                    Reference::Digest(d) => self.meta.manifest_by_digest(repo, d).await?,
                };
                let Some(manifest) = found else {
                    self.require_repository(repo).await?;
                    return Err(RegistryError::ManifestUnknown);
                };
                let manifest = Arc::new(manifest);
                self.manifests
                    .insert(ticket, repo, reference, manifest.clone());
                manifest
            }
        })
    }

    /// A manifest by tag or digest, if the admission point lets `actor`
    /// read it. `body` is false for HEAD requests (only the digest, size and
    /// media type are told); a GET is recorded (the journal has it before
    /// this returns).
    pub async fn manifest(
        &self,
        actor: &Actor,
        repo: &RepositoryName,
        reference: &Reference,
        body: bool,
    ) -> Result<Arc<StoredManifest>> {
        let manifest = self.lookup_manifest(repo, reference).await?;
        let pull = Operation::Pull {
            reference,
            manifest: &manifest,
            body,
        };
        self.admit(actor, repo, pull).await?;
        if body {
            self.journal.record(&Fact::Pull {
                at: now_millis(),
                actor: actor.clone(),
                repository: repo.to_string(),
                digest: manifest.digest.to_string(),
                reference: reference.to_string(),
            });
        }
        Ok(manifest)
    }

    /// Stores a manifest pushed to `reference`, if the admission point
    /// allows it.
    pub async fn put_manifest(
        &self,
        actor: &Actor,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<PushedManifest> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestTooLarge {
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let (digest, tag) = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), bytes);
                if actual != *expected {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest digest is {actual}, not {expected}"
                    )));
                }
                (actual, None)
            }
            Reference::Tag(tag) => (Digest::of(Algorithm::Sha256, bytes), Some(tag)),
        };
        let content = std::str::from_utf8(bytes)
            .map_err(|_| RegistryError::ManifestInvalid("manifest is not UTF-8 JSON".into()))?;
        let manifest = Manifest::parse(bytes, content_type)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        let push = Operation::Push {
            reference,
            digest: &digest,
            manifest: &manifest,
        };
        let guard = self.admit(actor, repo, push).await?;
        let stored = match self
            .meta
            .put_manifest(repo, &digest, &manifest, content, tag, guard, actor)
            .await
        {
            Err(MetaError::Refused(why)) => {
                // Rolled back with the push: the refusal is a fact of its own.
                let mut event = Event::new(Kind::QuotaExceeded, actor, now_millis())
                    .in_repository(repo.as_str())
                    .with_detail(why.clone())
                    .failed();
                event.digest = Some(digest.to_string());
                event.reference = Some(reference.to_string());
                self.journal.event(event);
                return Err(RegistryError::Denied(why));
            }
            stored => stored?,
        };
        match stored {
            Ok(()) => {}
            Err(PutManifestRefusal::Missing(missing)) => {
                return Err(RegistryError::ManifestBlobUnknown(missing))
            }
            Err(PutManifestRefusal::Immutable(rule)) => {
                return Err(RegistryError::Denied(format!(
                    "tag {:?} points to another manifest and cannot be overwritten: {rule}",
                    tag.map_or("", |t| t.as_str())
                )))
            }
        }
        if let Some(tag) = tag {
            self.manifests
                .tag_changed(repo, &Reference::Tag(tag.clone()));
        }
        if manifest.subject.is_some() {
            self.manifests.referrer_added(repo);
        }
        Ok(PushedManifest {
            digest,
            subject: manifest.subject,
        })
    }

    /// Deletes a tag (the manifest stays) or a manifest by digest (with its
    /// tags), if the admission point allows it and no rule protects a tag
    /// it would remove.
    pub async fn delete_manifest(
        &self,
        actor: &Actor,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        let operation = match reference {
            Reference::Tag(tag) => Operation::DeleteTag(tag),
            Reference::Digest(d) => Operation::DeleteManifest(d),
        };
        let guard = self.admit(actor, repo, operation).await?;
        let protected = |tag: String, rule: String| {
            RegistryError::Denied(format!("tag {tag:?} cannot be deleted: {rule}"))
        };
        match reference {
            Reference::Tag(tag) => match self.meta.delete_tag(repo, tag, guard, actor).await? {
                Err(RemoveRefusal::Protected(tag, rule)) => Err(protected(tag, rule)),
                Err(_) => Err(RegistryError::ManifestUnknown),
                Ok(Some(_)) => {
                    self.manifests.tag_changed(repo, reference);
                    Ok(())
                }
                Ok(None) => {
                    self.require_repository(repo).await?;
                    Err(RegistryError::ManifestUnknown)
                }
            },
            Reference::Digest(d) => match self.meta.delete_manifest(repo, d, guard, actor).await? {
                Ok(_tags) => {
                    self.manifests.clear();
                    Ok(())
                }
                Err(RemoveRefusal::NotFound) => {
                    self.require_repository(repo).await?;
                    Err(RegistryError::ManifestUnknown)
                }
                Err(RemoveRefusal::Protected(tag, rule)) => Err(protected(tag, rule)),
                Err(RemoveRefusal::ReferencedBy(parents)) => Err(RegistryError::Referenced(format!(
                    "manifest {d} is a child of index {} in this repository; delete the index first",
                    parents[0]
                ))),
            },
        }
    }

    /// The signature manifests of `subject` in `repo` (cached).
    pub async fn signature_manifests(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Arc<Vec<Digest>>> {
        if let Some(set) = self.manifests.signatures(repo, subject) {
            return Ok(set);
        }
        let ticket = self.manifests.ticket();
        let set = Arc::new(self.meta.signature_manifests(repo, subject).await?);
        self.manifests
            .insert_signatures(ticket, repo, subject, set.clone());
        Ok(set)
    }

    // ---- discovery ---------------------------------------------------------

    /// Tags in lexical order after `last`, at most `limit`.
    pub async fn tags(
        &self,
        repo: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>> {
        let page = |all: &[String]| {
            let start = last.map_or(0, |l| all.partition_point(|t| t.as_str() <= l));
            let end = all.len().min(start.saturating_add(limit as usize));
            all[start..end].to_vec()
        };
        let all = match self.manifests.tag_list(repo) {
            Some(all) => all,
            None => {
                let ticket = self.manifests.ticket();
                let all = self
                    .meta
                    .tags(repo, None, cache::MAX_CACHED_TAGS as u32 + 1)
                    .await?;
                if all.is_empty() {
                    self.require_repository(repo).await?;
                }
                // Too many to keep: remembered as such, and paged in the database.
                let all = (all.len() <= cache::MAX_CACHED_TAGS).then(|| Arc::new(all));
                self.manifests.insert_tag_list(ticket, repo, all.clone());
                all
            }
        };
        match all {
            Some(all) => Ok(page(&all)),
            None => Ok(self.meta.tags(repo, last, limit).await?),
        }
    }

    /// Names of the repositories `visibility` lets the caller see.
    pub async fn catalog(
        &self,
        visibility: Visibility<'_>,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>> {
        Ok(self.meta.repositories(visibility, last, limit).await?)
    }

    // ---- inventory (management API) ------------------------------------------

    pub async fn repository_summaries(
        &self,
        project: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RepositorySummary>> {
        Ok(self
            .meta
            .repository_summaries(project, after, limit)
            .await?)
    }

    pub async fn artifacts(
        &self,
        repo: &RepositoryName,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<ArtifactSummary>> {
        Ok(self.meta.artifacts(repo, after, limit).await?)
    }

    pub async fn tag_records(
        &self,
        repo: &RepositoryName,
        after: &str,
        limit: u32,
    ) -> Result<Vec<TagRecord>> {
        Ok(self.meta.tag_records(repo, after, limit).await?)
    }

    /// One page of the manifests in `repo` whose subject is `subject`
    /// (optionally of one artifact type), in digest order after `after`: as
    /// many as fit in an index of at most the manifest size limit. The second
    /// value says whether more follow.
    pub async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&str>,
    ) -> Result<(Vec<Descriptor>, bool)> {
        // Descriptors run to a few hundred bytes; a page cannot hold more than this.
        const MAX_PER_PAGE: u32 = 50_000;
        let mut found = self
            .meta
            .referrers(repo, subject, artifact_type, after, MAX_PER_PAGE + 1)
            .await?;
        let mut budget = MAX_MANIFEST_SIZE - 200; // the index's own fields
        let fits = found
            .iter()
            .take(MAX_PER_PAGE as usize)
            .take_while(|d| {
                let len = serde_json::to_vec(d).map_or(usize::MAX, |v| v.len() + 1);
                budget = budget.saturating_sub(len);
                budget > 0
            })
            .count();
        let more = found.len() > fits;
        found.truncate(fits);
        Ok((found, more))
    }
}

/// An error while reading content for admission: the answer cannot be
/// given, which is an outage whatever the cause.
fn outage(e: RegistryError) -> MetaError {
    MetaError::Unavailable(e.to_string())
}

impl admission::Content for Registry {
    fn signatures<'a>(
        &'a self,
        repo: &'a RepositoryName,
        subject: &'a Digest,
    ) -> BoxFuture<'a, std::result::Result<Arc<Vec<Digest>>, MetaError>> {
        Box::pin(async move {
            self.signature_manifests(repo, subject)
                .await
                .map_err(outage)
        })
    }

    fn manifest<'a>(
        &'a self,
        repo: &'a RepositoryName,
        digest: &'a Digest,
    ) -> BoxFuture<'a, std::result::Result<Option<Arc<StoredManifest>>, MetaError>> {
        Box::pin(async move {
            match self
                .lookup_manifest(repo, &Reference::Digest(digest.clone()))
                .await
            {
                Ok(m) => Ok(Some(m)),
                Err(RegistryError::ManifestUnknown | RegistryError::NameUnknown) => Ok(None),
                Err(e) => Err(outage(e)),
            }
        })
    }

    fn small_blob<'a>(
        &'a self,
        repo: &'a RepositoryName,
        digest: &'a Digest,
        max: u64,
    ) -> BoxFuture<'a, std::result::Result<Option<Vec<u8>>, MetaError>> {
        Box::pin(async move { self.small_blob(repo, digest, max).await.map_err(outage) })
    }

    fn parents<'a>(
        &'a self,
        repo: &'a RepositoryName,
        child: &'a Digest,
    ) -> BoxFuture<'a, std::result::Result<Vec<Digest>, MetaError>> {
        Box::pin(async move { self.meta.parents_of(repo, child).await })
    }
}

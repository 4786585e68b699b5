//! Upload sessions kept in the object store (remote placement), so that any
//! replica sharing the bucket can serve any request of an upload: POST on
//! one, PATCHes on others, PUT on yet another. A session is a session
//! object, naming its parts in order, and one immutable object per part
//! (`layout` draws them).
//!
//! A PATCH reads the session object, streams its body into a new part
//! object while hashing from the saved SHA-256 state (`ResumableSha256`), and
//! only once the part is complete writes the session object again, naming
//! the part and holding the new state. So the session object and its hash
//! state always describe parts that exist, whatever fails. Two PATCHes of a
//! misbehaving client racing at the same offset on two replicas both write a
//! part; the session names one of them (and the state of that one), the
//! other is an orphan that expiry removes with the directory.
//!
//! The final PUT compares the digest of the saved state with the expected
//! one before any bytes move. Then the blob's object is made: a server-side
//! copy of a single part, or the parts streamed in order into a new object,
//! hashed again on the way and completed only if that hash matches. A blob
//! received whole in the PUT goes straight to its object, completed only
//! once its digest is checked. A multipart upload that is aborted leaves no
//! object, so no unverified object ever appears under `blobs/`.
//!
//! Requests of one session that reach the same process are serialized by a
//! lock, as on local disk; across replicas the object store is the only
//! shared state.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::oci::{Algorithm, Digest, ResumableSha256};
use crate::storage::error::StorageError;
use crate::storage::layout;
use crate::storage::objects::ObjectWriter;
use crate::storage::session::{verify_whole, UploadError, UploadId, UploadStatus};
use crate::storage::stream::{self, ByteStream};

/// Largest object S3 copies in one request (CopyObject); a single part
/// larger than this is streamed instead.
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// The session object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    repository: String,
    /// Bytes received: the sum of the parts' sizes.
    size: u64,
    /// `ResumableSha256::to_bytes` of the parts' bytes, in hex.
    sha256: String,
    /// In order.
    parts: Vec<Part>,
    /// Unix milliseconds.
    created: i64,
    updated: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    /// Object name in the session's directory (`layout::part_name`).
    name: String,
    size: u64,
}

impl Session {
    fn hash(&self) -> Result<ResumableSha256, UploadError> {
        let hash = hex::decode(&self.sha256)
            .ok()
            .and_then(|b| ResumableSha256::from_bytes(&b).ok())
            .filter(|h| h.len() == self.size)
            .ok_or_else(|| invalid("session object has a damaged hash state"))?;
        Ok(hash)
    }
}

type Lock = Arc<tokio::sync::Mutex<()>>;

pub(in crate::storage) struct RemoteSessions {
    objects: Arc<dyn ObjectStore>,
    /// This process's lock of each session it is serving.
    locks: Mutex<HashMap<UploadId, Lock>>,
    /// The repository of each session seen (it never changes), so that
    /// listing the repositories with uploads reads each session object once.
    repositories: Mutex<HashMap<UploadId, String>>,
}

/// A session's lock, held; dropped, it leaves the table when unused.
struct Held<'a> {
    owner: &'a RemoteSessions,
    id: UploadId,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = lock(&self.owner.locks);
        if locks
            .get(&self.id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn store(e: impl std::fmt::Display) -> UploadError {
    UploadError::Store(e.to_string())
}

fn invalid(message: &str) -> UploadError {
    UploadError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        message,
    ))
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RemoteSessions {
    pub(in crate::storage) fn new(objects: Arc<dyn ObjectStore>) -> RemoteSessions {
        RemoteSessions {
            objects,
            locks: Mutex::new(HashMap::new()),
            repositories: Mutex::new(HashMap::new()),
        }
    }

    async fn hold(&self, id: UploadId) -> Held<'_> {
        let l = lock(&self.locks).entry(id).or_default().clone();
        Held {
            owner: self,
            id,
            guard: Some(l.lock_owned().await),
        }
    }

    fn try_hold(&self, id: UploadId) -> Option<Held<'_>> {
        let l = lock(&self.locks).entry(id).or_default().clone();
        let guard = l.try_lock_owned().ok();
        // Built even when busy, so that dropping it tidies the table.
        let held = Held {
            owner: self,
            id,
            guard,
        };
        held.guard.is_some().then_some(held)
    }

    /// Reads a session; fails unless it exists and belongs to `repository`.
    async fn load(&self, id: UploadId, repository: &str) -> Result<Session, UploadError> {
        let session = self.read(id).await?.ok_or(UploadError::Unknown)?;
        if session.repository != repository {
            return Err(UploadError::Unknown);
        }
        Ok(session)
    }

    async fn read(&self, id: UploadId) -> Result<Option<Session>, UploadError> {
        let bytes = match self.objects.get(&layout::session_object(id)).await {
            Ok(r) => r.bytes().await.map_err(store)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store(e)),
        };
        let session: Session =
            serde_json::from_slice(&bytes).map_err(|_| invalid("session object is not valid"))?;
        Ok(Some(session))
    }

    async fn save(&self, id: UploadId, session: &Session) -> Result<(), UploadError> {
        let json = serde_json::to_vec(session).expect("a session serializes");
        self.objects
            .put(&layout::session_object(id), json.into())
            .await
            .map_err(store)?;
        Ok(())
    }

    /// Starts a session for `repository`: its object exists before the
    /// client learns the id, so any replica can serve the next request.
    pub(in crate::storage) async fn start(
        &self,
        repository: &str,
    ) -> Result<UploadId, UploadError> {
        let id = UploadId::random();
        let now = now_millis();
        let session = Session {
            repository: repository.to_string(),
            size: 0,
            sha256: hex::encode(ResumableSha256::new().to_bytes()),
            parts: Vec::new(),
            created: now,
            updated: now,
        };
        self.save(id, &session).await?;
        lock(&self.repositories).insert(id, session.repository);
        Ok(id)
    }

    pub(in crate::storage) async fn status(
        &self,
        id: UploadId,
        repository: &str,
    ) -> Result<UploadStatus, UploadError> {
        let _held = self.hold(id).await;
        let session = self.load(id, repository).await?;
        Ok(UploadStatus { size: session.size })
    }

    pub(in crate::storage) async fn append(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus, UploadError> {
        let _held = self.hold(id).await;
        let session = self.load(id, repository).await?;
        let session = self
            .add_part(id, session, start, declared_len, body)
            .await?;
        Ok(UploadStatus { size: session.size })
    }

    /// Streams `body` into a new part and records it in the session object.
    /// On any failure the session object is as it was (a part already
    /// complete is then an orphan, removed with the session).
    async fn add_part(
        &self,
        id: UploadId,
        mut session: Session,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<Session, UploadError> {
        if start.is_some_and(|s| s != session.size) {
            return Err(UploadError::OutOfOrder { size: session.size });
        }
        let mut hash = session.hash()?;
        let name = layout::part_name(session.size, &layout::new_nonce());
        let mut out = ObjectWriter::new(&self.objects, layout::part_object(id, &name));
        let received = match receive(body, declared_len, |b| hash.update(b), &mut out).await {
            Ok(n) => n,
            Err(e) => {
                out.abort().await;
                return Err(e);
            }
        };
        if received == 0 {
            out.abort().await;
            return Ok(session);
        }
        out.complete().await.map_err(store)?;
        session.size += received;
        session.sha256 = hex::encode(hash.to_bytes());
        session.parts.push(Part {
            name,
            size: received,
        });
        session.updated = now_millis();
        self.save(id, &session).await?;
        Ok(session)
    }

    pub(in crate::storage) async fn cancel(
        &self,
        id: UploadId,
        repository: &str,
    ) -> Result<(), UploadError> {
        let _held = self.hold(id).await;
        let session = self.load(id, repository).await?;
        self.end(id, &session).await
    }

    /// Verifies the session's bytes against `expected` and makes them the
    /// object `target`. Returns the blob's size. On a mismatch the session
    /// ends.
    pub(in crate::storage) async fn commit(
        &self,
        id: UploadId,
        repository: &str,
        expected: &Digest,
        target: ObjectPath,
    ) -> Result<u64, UploadError> {
        let _held = self.hold(id).await;
        let session = self.load(id, repository).await?;
        self.finish(id, session, expected, target).await
    }

    /// Completes a session with the final request's body (a last chunk, or
    /// the whole blob when nothing was sent before), then as `commit`.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::storage) async fn commit_stream(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: ByteStream,
        expected: &Digest,
        target: ObjectPath,
    ) -> Result<u64, UploadError> {
        let _held = self.hold(id).await;
        let session = self.load(id, repository).await?;
        if start.is_some_and(|s| s != session.size) {
            return Err(UploadError::OutOfOrder { size: session.size });
        }
        if !session.parts.is_empty() {
            let session = self.add_part(id, session, None, declared_len, body).await?;
            return self.finish(id, session, expected, target).await;
        }
        // Nothing staged: the body goes straight into the blob's object,
        // which is completed only if its digest is the expected one.
        let mut hasher = expected.algorithm().hasher();
        let mut out = ObjectWriter::new(&self.objects, target);
        let received = match receive(body, declared_len, |b| hasher.update(b), &mut out).await {
            Ok(n) => n,
            Err(e) => {
                out.abort().await;
                return Err(e);
            }
        };
        let actual = hasher.finish();
        if actual != *expected {
            out.abort().await;
            self.end(id, &session).await?;
            return Err(UploadError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        out.complete().await.map_err(store)?;
        self.end_committed(id, &session).await;
        Ok(received)
    }

    /// Completes a session with `bytes`, the final request's body: its last
    /// chunk (starting at `start` if given) when parts came before, else the
    /// whole content, which goes to the blob's object in one PUT. The
    /// session ends whatever the outcome of that PUT.
    pub(in crate::storage) async fn commit_bytes(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        expected: &Digest,
        bytes: Bytes,
        target: ObjectPath,
    ) -> Result<u64, UploadError> {
        let _held = self.hold(id).await;
        let session = self.load(id, repository).await?;
        if start.is_some_and(|s| s != session.size) {
            return Err(UploadError::OutOfOrder { size: session.size });
        }
        if !session.parts.is_empty() {
            let len = bytes.len() as u64;
            let session = self
                .add_part(id, session, None, Some(len), stream::once(bytes))
                .await?;
            return self.finish(id, session, expected, target).await;
        }
        let result = put_whole(&self.objects, expected, bytes, target).await;
        if result.is_ok() {
            self.end_committed(id, &session).await;
        } else {
            self.end(id, &session).await?;
        }
        result
    }

    async fn finish(
        &self,
        id: UploadId,
        session: Session,
        expected: &Digest,
        target: ObjectPath,
    ) -> Result<u64, UploadError> {
        let hash = session.hash()?;
        // SHA-256, what sessions hash: checked before any bytes move.
        // SHA-512: checked while the parts are streamed (below).
        if expected.algorithm() == Algorithm::Sha256 {
            let actual = hash.finish();
            if actual != *expected {
                self.end(id, &session).await?;
                return Err(UploadError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        match session.parts.as_slice() {
            [part] if expected.algorithm() == Algorithm::Sha256 && part.size <= MAX_COPY => {
                // The part's bytes are those the state hashed: the session
                // object names only complete, immutable parts.
                match self
                    .objects
                    .copy(&layout::part_object(id, &part.name), &target)
                    .await
                {
                    Ok(()) => {}
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(self.lost_part(id, &part.name).await)
                    }
                    Err(e) => return Err(store(e)),
                }
            }
            parts => {
                if let Err(e) = self.concatenate(id, parts, expected, target).await {
                    if matches!(e, UploadError::DigestMismatch { .. }) {
                        self.end(id, &session).await?;
                    }
                    return Err(e);
                }
            }
        }
        self.end_committed(id, &session).await;
        Ok(session.size)
    }

    /// Streams the parts in order into the object `target`, hashing them,
    /// and completes it only if they hash to `expected`.
    async fn concatenate(
        &self,
        id: UploadId,
        parts: &[Part],
        expected: &Digest,
        target: ObjectPath,
    ) -> Result<(), UploadError> {
        let mut hasher = expected.algorithm().hasher();
        let mut out = ObjectWriter::new(&self.objects, target);
        for part in parts {
            let copied = async {
                let r = match self.objects.get(&layout::part_object(id, &part.name)).await {
                    Ok(r) => r,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(self.lost_part(id, &part.name).await)
                    }
                    Err(e) => return Err(store(e)),
                };
                let mut bytes = r.into_stream();
                while let Some(chunk) = bytes.next().await {
                    let chunk = chunk.map_err(store)?;
                    hasher.update(&chunk);
                    out.put(chunk).await.map_err(store)?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = copied {
                out.abort().await;
                return Err(e);
            }
        }
        let actual = hasher.finish();
        if actual != *expected {
            out.abort().await;
            return Err(UploadError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        out.complete().await.map_err(store)
    }

    /// A part the session names is gone: the session was removed under
    /// this request (cancelled, committed or expired elsewhere).
    async fn lost_part(&self, id: UploadId, name: &str) -> UploadError {
        match self.read(id).await {
            Ok(None) => UploadError::Unknown,
            Ok(Some(_)) => invalid(&format!("part {name} of upload {id} is missing")),
            Err(e) => e,
        }
    }

    /// Ends a session: removes its object first, so no replica finds a
    /// session naming removed parts, then the parts it names. Orphans of
    /// raced PATCHes, which no session names, are left to expiry: listing
    /// the directory here would cost every push a request.
    async fn end(&self, id: UploadId, session: &Session) -> Result<(), UploadError> {
        self.delete(layout::session_object(id)).await?;
        lock(&self.repositories).remove(&id);
        self.delete_all(
            session
                .parts
                .iter()
                .map(|p| layout::part_object(id, &p.name))
                .collect(),
        )
        .await
    }

    /// `end` once the blob exists: a failure only leaves objects that
    /// expiry removes, so the commit still succeeds.
    async fn end_committed(&self, id: UploadId, session: &Session) {
        if let Err(e) = self.end(id, session).await {
            tracing::warn!(upload = %id, error = %e, "could not remove a committed upload's objects");
        }
    }

    async fn delete(&self, location: ObjectPath) -> Result<(), UploadError> {
        match self.objects.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store(e)),
        }
    }

    /// Deletes `locations` together: in batches where the store has them
    /// (S3's DeleteObjects), else several at a time, not one after another
    /// (a session of a 1 GiB chunked push has 64 parts).
    async fn delete_all(&self, locations: Vec<ObjectPath>) -> Result<(), UploadError> {
        let locations = futures_util::stream::iter(locations.into_iter().map(Ok)).boxed();
        let mut deleted = self.objects.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store(e)),
            }
        }
        Ok(())
    }

    /// Removes every object of a session's directory, the session object
    /// first (as `end`).
    async fn discard(&self, id: UploadId) -> Result<(), UploadError> {
        self.delete(layout::session_object(id)).await?;
        lock(&self.repositories).remove(&id);
        let rest: Vec<ObjectPath> = self
            .objects
            .list(Some(&layout::session_objects(id)))
            .map_ok(|o| o.location)
            .try_collect()
            .await
            .map_err(store)?;
        self.delete_all(rest).await
    }

    /// Repositories with a session in the store, whichever replica serves it.
    pub(in crate::storage) async fn repositories(&self) -> Result<HashSet<String>, StorageError> {
        let listing = self
            .objects
            .list_with_delimiter(Some(&layout::uploads_prefix()))
            .await?;
        let ids: HashSet<UploadId> = listing
            .common_prefixes
            .iter()
            .filter_map(layout::upload_of)
            .collect();
        lock(&self.repositories).retain(|id, _| ids.contains(id));
        let mut found = HashSet::new();
        for id in ids {
            let known = lock(&self.repositories).get(&id).cloned();
            let repository = match known {
                Some(r) => r,
                None => match self.read(id).await {
                    Ok(Some(session)) => {
                        lock(&self.repositories).insert(id, session.repository.clone());
                        session.repository
                    }
                    // Leftover parts of a session that ended.
                    Ok(None) => continue,
                    Err(e) => return Err(std::io::Error::other(e.to_string()).into()),
                },
            };
            found.insert(repository);
        }
        Ok(found)
    }

    /// Removes sessions whose objects were all last written more than `ttl`
    /// ago (and leftovers of sessions that ended without their parts being
    /// removed); returns how many.
    pub(in crate::storage) async fn expire(&self, ttl: Duration) -> Result<usize, UploadError> {
        let objects: Vec<object_store::ObjectMeta> = self
            .objects
            .list(Some(&layout::uploads_prefix()))
            .try_collect()
            .await
            .map_err(store)?;
        let mut newest: HashMap<UploadId, chrono::DateTime<chrono::Utc>> = HashMap::new();
        for o in objects {
            let Some(id) = layout::upload_of(&o.location) else {
                continue;
            };
            let at = newest.entry(id).or_insert(o.last_modified);
            *at = (*at).max(o.last_modified);
        }
        let cutoff = chrono::Utc::now() - ttl;
        let mut removed = 0;
        for (id, at) in newest {
            if at >= cutoff {
                continue;
            }
            // A session in use here is not stale.
            let Some(_held) = self.try_hold(id) else {
                continue;
            };
            self.discard(id).await?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Verifies a blob received whole and stores it as the object `target` in
/// one PUT. Returns its size.
pub(super) async fn put_whole(
    objects: &Arc<dyn ObjectStore>,
    expected: &Digest,
    bytes: Bytes,
    target: ObjectPath,
) -> Result<u64, UploadError> {
    verify_whole(expected, &bytes)?;
    let size = bytes.len() as u64;
    objects.put(&target, bytes.into()).await.map_err(store)?;
    Ok(size)
}

/// Reads `body` into `out`, passing every chunk to `hash` first. Returns
/// the bytes received; fails if the client stops sending, sends a length
/// other than `declared_len`, or the store fails. The caller completes or
/// aborts `out`.
async fn receive(
    mut body: ByteStream,
    declared_len: Option<u64>,
    mut hash: impl FnMut(&[u8]),
    out: &mut ObjectWriter,
) -> Result<u64, UploadError> {
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
        received += chunk.len() as u64;
        if let Some(declared) = declared_len.filter(|&d| received > d) {
            return Err(UploadError::LengthMismatch { received, declared });
        }
        hash(&chunk);
        out.put(chunk).await.map_err(store)?;
    }
    match declared_len {
        Some(declared) if declared != received => {
            Err(UploadError::LengthMismatch { received, declared })
        }
        _ => Ok(received),
    }
}

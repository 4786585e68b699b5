//! Upload sessions on local disk (local placement): bytes received so far,
//! hashed as they arrive, and how a verified blob file appears.
//!
//! A session starts in memory only; its directory (`layout::session_dir`,
//! holding `data` and `repository`) is created with the first bytes, so a
//! monolithic push (POST, then PUT with the body) touches the disk once. The
//! running SHA-256 state is kept in memory; after a restart (or in another
//! process) it is rebuilt by re-reading `data`, so a session with data
//! survives both (one without data does not; its client starts over). Every
//! operation on a session holds the session's lock, so appends are
//! serialized.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::oci::{Algorithm, Digest, Hasher};
use crate::storage::disk::{self, blocking};
use crate::storage::error::StorageError;
use crate::storage::layout;
use crate::storage::session::{verify_whole, UploadError, UploadId, UploadStatus};
use crate::storage::stream::ByteStream;
use crate::storage::sync::SyncGroup;

struct Session {
    repository: String,
    size: u64,
    /// SHA-256 of `data[..size]`, or None when it must be rebuilt from disk.
    hasher: Option<Hasher>,
    /// Whether the session's directory exists.
    on_disk: bool,
    touched: Instant,
}

/// A session's lock; `None` inside means "not loaded yet" (or removed).
type SessionLock = Arc<tokio::sync::Mutex<Option<Session>>>;
type SessionGuard = tokio::sync::OwnedMutexGuard<Option<Session>>;

pub(in crate::storage) struct LocalSessions {
    /// The store's root, which the sessions' directories are under.
    root: PathBuf,
    sessions: Mutex<HashMap<UploadId, SessionLock>>,
    /// Makes small blobs received whole durable.
    sync: Arc<SyncGroup>,
}

const WRITE_BUFFER: usize = 1024 * 1024;
/// Bytes written before the kernel is asked to start writing them to disk, so
/// that the fsync at commit finds little left to do.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

/// Starts (without waiting for) writeback of a file range.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a valid, open descriptor; no memory is passed.
    // A failure only means the fsync at commit does all the work.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

impl LocalSessions {
    pub(in crate::storage) fn new(root: PathBuf, sync: Arc<SyncGroup>) -> LocalSessions {
        LocalSessions {
            root,
            sessions: Mutex::new(HashMap::new()),
            sync,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, SessionLock>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session for `repository`, in memory until data arrives.
    pub(in crate::storage) async fn start(
        &self,
        repository: &str,
    ) -> Result<UploadId, UploadError> {
        let id = UploadId::random();
        let session = Session {
            repository: repository.to_string(),
            size: 0,
            hasher: Some(Algorithm::Sha256.hasher()),
            on_disk: false,
            touched: Instant::now(),
        };
        self.table()
            .insert(id, Arc::new(tokio::sync::Mutex::new(Some(session))));
        Ok(id)
    }

    /// Locks a session, loading it from disk if this process has not seen it.
    /// Fails unless it exists and belongs to `repository`.
    async fn open(&self, id: UploadId, repository: &str) -> Result<SessionGuard, UploadError> {
        let lock = self.table().entry(id).or_default().clone();
        let mut guard = lock.lock_owned().await;
        if guard.is_none() {
            let dir = layout::session_dir(&self.root, id);
            let loaded = blocking(move || {
                let repository = fs::read_to_string(layout::session_repository(&dir))?;
                let size = fs::metadata(layout::session_data(&dir))?.len();
                Ok((repository, size))
            })
            .await;
            match loaded {
                Ok((repository, size)) => {
                    *guard = Some(Session {
                        repository,
                        size,
                        hasher: None,
                        on_disk: true,
                        touched: Instant::now(),
                    })
                }
                Err(e) => {
                    self.forget(id, &guard);
                    return Err(if e.kind() == io::ErrorKind::NotFound {
                        UploadError::Unknown
                    } else {
                        e.into()
                    });
                }
            }
        }
        if guard.as_ref().is_some_and(|s| s.repository != repository) {
            return Err(UploadError::Unknown);
        }
        Ok(guard)
    }

    /// Drops the table entry of a session that is gone.
    fn forget(&self, id: UploadId, guard: &SessionGuard) {
        if guard.is_none() {
            self.table().remove(&id);
        }
    }

    pub(in crate::storage) async fn status(
        &self,
        id: UploadId,
        repository: &str,
    ) -> Result<UploadStatus, UploadError> {
        let guard = self.open(id, repository).await?;
        let session = guard.as_ref().expect("open returns a loaded session");
        Ok(UploadStatus { size: session.size })
    }

    /// Appends a request body. `start` is the chunk's declared offset (from
    /// `Content-Range`) and `declared_len` its `Content-Length`; both are
    /// checked. A body that fails midway leaves the session as it was before.
    pub(in crate::storage) async fn append(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus, UploadError> {
        let mut guard = self.open(id, repository).await?;
        let session = guard.as_mut().expect("open returns a loaded session");
        session.touched = Instant::now();
        if start.is_some_and(|s| s != session.size) {
            return Err(UploadError::OutOfOrder { size: session.size });
        }
        let dir = layout::session_dir(&self.root, id);
        let data = layout::session_data(&dir);
        if !session.on_disk {
            let (data, repository) = (data.clone(), session.repository.clone());
            blocking(move || {
                fs::create_dir(&dir)?;
                File::create(&data)?;
                fs::write(layout::session_repository(&dir), repository)
            })
            .await?;
            session.on_disk = true;
        }
        let hasher = match session.hasher.take() {
            Some(h) => h,
            None => rehash(data.clone(), Algorithm::Sha256, session.size).await?,
        };
        // On failure write_body restored the file; the hash state is rebuilt on next use.
        let (written, hasher) = write_body(&data, session.size, hasher, declared_len, body).await?;
        session.size += written;
        session.hasher = Some(hasher);
        Ok(UploadStatus { size: session.size })
    }

    /// Removes a session and its data.
    pub(in crate::storage) async fn cancel(
        &self,
        id: UploadId,
        repository: &str,
    ) -> Result<(), UploadError> {
        let mut guard = self.open(id, repository).await?;
        Ok(self.remove(id, &mut guard).await?)
    }

    async fn remove(&self, id: UploadId, guard: &mut SessionGuard) -> io::Result<()> {
        let on_disk = guard.take().is_some_and(|s| s.on_disk);
        self.forget(id, guard);
        if !on_disk {
            return Ok(());
        }
        let dir = layout::session_dir(&self.root, id);
        match blocking(move || fs::remove_dir_all(dir)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Verifies the session's bytes against `expected`, then moves them to
    /// `target` (a fresh name) durably.
    pub(in crate::storage) async fn commit(
        &self,
        id: UploadId,
        repository: &str,
        expected: &Digest,
        target: PathBuf,
    ) -> Result<u64, UploadError> {
        let mut guard = self.open(id, repository).await?;
        let session = guard.as_mut().expect("open returns a loaded session");
        let size = session.size;
        if !session.on_disk {
            // Nothing was sent: the blob is the empty one.
            drop(guard);
            return self
                .commit_bytes(id, repository, expected, Bytes::new(), target)
                .await
                .map(|_| 0);
        }
        let data = layout::session_data(&layout::session_dir(&self.root, id));
        let actual = match session.hasher.clone() {
            Some(h) if h.algorithm() == expected.algorithm() => h.finish(),
            _ => rehash(data.clone(), expected.algorithm(), size)
                .await?
                .finish(),
        };
        if actual != *expected {
            self.remove(id, &mut guard).await?;
            return Err(UploadError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        blocking(move || move_into_place(&data, &target)).await?;
        self.remove(id, &mut guard).await?;
        Ok(size)
    }

    /// Completes a session that has received nothing with `bytes`, its whole
    /// content, received in the final request.
    pub(in crate::storage) async fn commit_bytes(
        &self,
        id: UploadId,
        repository: &str,
        expected: &Digest,
        bytes: Bytes,
        target: PathBuf,
    ) -> Result<u64, UploadError> {
        let mut guard = self.open(id, repository).await?;
        let size = guard.as_ref().expect("open returns a loaded session").size;
        if size != 0 {
            return Err(UploadError::OutOfOrder { size });
        }
        let result = store_whole(&self.root, &self.sync, expected, bytes, target).await;
        self.remove(id, &mut guard).await?;
        result
    }

    /// Repositories of the sessions in progress: those in memory that are
    /// not busy (a busy one is mid-request, and if it holds data it is on
    /// disk) and those on disk, whether or not this process has seen them.
    pub(in crate::storage) async fn repositories(&self) -> Result<HashSet<String>, StorageError> {
        let locks: Vec<SessionLock> = self.table().values().cloned().collect();
        let mut repositories = HashSet::new();
        for lock in locks {
            if let Ok(guard) = lock.try_lock() {
                if let Some(session) = guard.as_ref() {
                    repositories.insert(session.repository.clone());
                }
            }
        }
        let dir = layout::uploads_dir(&self.root);
        let on_disk = blocking(move || {
            let mut found = Vec::new();
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_name().to_str().is_some_and(layout::is_staging) {
                    continue;
                }
                match fs::read_to_string(layout::session_repository(&entry.path())) {
                    Ok(repository) => found.push(repository),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) if e.kind() == io::ErrorKind::NotADirectory => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(found)
        })
        .await?;
        repositories.extend(on_disk);
        Ok(repositories)
    }

    /// Deletes sessions untouched for longer than `ttl` (and stale staging
    /// files); returns how many.
    pub(in crate::storage) async fn expire(&self, ttl: Duration) -> io::Result<usize> {
        let mut removed = 0;
        // Sessions that never received data exist only in memory.
        let in_memory: Vec<(UploadId, SessionLock)> = self
            .table()
            .iter()
            .map(|(id, l)| (*id, l.clone()))
            .collect();
        for (id, lock) in in_memory {
            let Ok(mut guard) = lock.try_lock_owned() else {
                continue;
            };
            if guard
                .as_ref()
                .is_some_and(|s| !s.on_disk && s.touched.elapsed() > ttl)
            {
                self.remove(id, &mut guard).await?;
                removed += 1;
            }
        }
        for name in disk::stale_upload_entries(&self.root, ttl).await? {
            if let Some(id) = layout::session_of_entry(&name) {
                let lock = self.table().entry(id).or_default().clone();
                // A session in use is not stale.
                let Ok(mut guard) = lock.try_lock_owned() else {
                    continue;
                };
                if guard.as_ref().is_some_and(|s| s.touched.elapsed() <= ttl) {
                    continue;
                }
                *guard = None;
                self.table().remove(&id);
            }
            disk::remove_upload_entry(&self.root, &name).await;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Writes a blob received whole: verify, write a staging file, rename it
/// into place as `target`, then wait for a filesystem sync shared with
/// concurrent writers (one journal commit for many small blobs, instead of
/// three fsyncs each).
pub(super) async fn store_whole(
    root: &Path,
    sync: &SyncGroup,
    expected: &Digest,
    bytes: Bytes,
    target: PathBuf,
) -> Result<u64, UploadError> {
    verify_whole(expected, &bytes)?;
    let size = bytes.len() as u64;
    let staging = layout::staging_file(root);
    blocking(move || write_then_rename(&staging, &bytes, &target)).await?;
    sync.sync().await?;
    Ok(size)
}

/// Hash state of the first `len` bytes of a file.
async fn rehash(path: PathBuf, algorithm: Algorithm, len: u64) -> io::Result<Hasher> {
    blocking(move || {
        let mut hasher = algorithm.hasher();
        let mut file = File::open(path)?.take(len);
        let mut buf = vec![0; WRITE_BUFFER];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher);
            }
            hasher.update(&buf[..n]);
        }
    })
    .await
}
/// Streams `body` onto the end of `path` (currently `len` bytes long), hashing
/// on this task while a blocking thread writes. On any failure the file is cut
/// back to `len`.
async fn write_body(
    path: &Path,
    len: u64,
    mut hasher: Hasher,
    declared_len: Option<u64>,
    mut body: ByteStream,
) -> Result<(u64, Hasher), UploadError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let target = path.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new().append(true).open(&target)?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, &file);
        let mut unsynced = 0;
        let mut offset = len;
        while let Some(chunk) = rx.blocking_recv() {
            out.write_all(&chunk)?;
            unsynced += chunk.len() as u64;
            if unsynced >= WRITEBACK_STEP {
                out.flush()?;
                start_writeback(&file, offset, unsynced);
                offset += unsynced;
                unsynced = 0;
            }
        }
        out.flush()
    });
    let mut received = 0u64;
    let mut failure = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                received += chunk.len() as u64;
                if declared_len.is_some_and(|d| received > d) {
                    break;
                }
                hasher.update(&chunk);
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Err(e) => {
                failure = Some(UploadError::Body(e.to_string()));
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.map_err(io::Error::other)?;
    let failure = match (failure, written) {
        (Some(f), _) => Some(f),
        (None, Err(e)) => Some(UploadError::Io(e)),
        (None, Ok(())) => declared_len
            .filter(|&d| d != received)
            .map(|declared| UploadError::LengthMismatch { received, declared }),
    };
    match failure {
        None => Ok((received, hasher)),
        Some(f) => {
            let path = path.to_path_buf();
            blocking(move || OpenOptions::new().write(true).open(path)?.set_len(len)).await?;
            Err(f)
        }
    }
}

/// Makes `source` the content of `target` (a fresh name) by a rename that
/// survives a crash: fsync, rename, fsync the directory. The file's
/// modification time becomes now, so a sweep for orphan or stale files
/// (which spares recent ones) sees it as new however long ago the upload's
/// last chunk arrived.
fn move_into_place(source: &Path, target: &Path) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(source)?;
    file.set_modified(SystemTime::now())?;
    file.sync_all()?;
    drop(file);
    let parent = target.parent().expect("blob paths have a parent");
    fs::create_dir_all(parent)?;
    fs::rename(source, target)?;
    File::open(parent)?.sync_all()?;
    Ok(())
}

/// Writes `bytes` to a staging file and renames it to `target` (a fresh
/// name), without syncing (the caller syncs the filesystem).
fn write_then_rename(staging: &Path, bytes: &[u8], target: &Path) -> io::Result<()> {
    let result = fs::write(staging, bytes).and_then(|()| {
        fs::create_dir_all(target.parent().expect("blob paths have a parent"))?;
        fs::rename(staging, target)
    });
    if result.is_err() {
        let _ = fs::remove_file(staging);
    }
    result
}

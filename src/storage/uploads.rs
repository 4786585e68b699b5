//! Upload sessions: bytes received so far, hashed as they arrive.
//!
//! Each session is a directory `uploads/<uuid>/` holding `data` and
//! `repository`. The running SHA-256 state is kept in memory; after a restart
//! (or in another process) it is rebuilt by re-reading `data`, so a session
//! survives both. Appends to one session are serialized by a per-session lock.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::oci::{Algorithm, Digest, Hasher};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl FromStr for UploadId {
    type Err = UploadError;
    fn from_str(s: &str) -> Result<Self, UploadError> {
        uuid::Uuid::try_parse(s)
            .map(UploadId)
            .map_err(|_| UploadError::Unknown)
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload session not found")]
    Unknown,
    #[error("chunk does not start where the upload ends ({size} bytes received)")]
    OutOfOrder { size: u64 },
    #[error("received {received} bytes but the request declared {declared}")]
    LengthMismatch { received: u64, declared: u64 },
    #[error("upload content does not match digest {expected} (it is {actual})")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("client stopped sending: {0}")]
    Body(String),
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
}

/// What a client may learn about its session.
#[derive(Debug, Clone, Copy)]
pub struct UploadStatus {
    pub size: u64,
}

struct Session {
    size: u64,
    /// SHA-256 of `data[..size]`, or None when it must be rebuilt from disk.
    hasher: Option<Hasher>,
}

type SessionLock = Arc<tokio::sync::Mutex<Option<Session>>>;

pub struct Uploads {
    dir: PathBuf,
    sessions: Mutex<HashMap<UploadId, SessionLock>>,
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

impl Uploads {
    pub(super) fn new(dir: PathBuf) -> Uploads {
        Uploads {
            dir,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn session_dir(&self, id: UploadId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    pub(super) fn staging_file(&self) -> PathBuf {
        self.dir.join(format!("tmp-{}", uuid::Uuid::new_v4()))
    }

    /// Starts a session for `repository`.
    pub async fn start(&self, repository: &str) -> io::Result<UploadId> {
        let id = UploadId(uuid::Uuid::new_v4());
        let dir = self.session_dir(id);
        let repository = repository.to_string();
        blocking(move || {
            fs::create_dir(&dir)?;
            File::create(dir.join("data"))?;
            fs::write(dir.join("repository"), repository)
        })
        .await?;
        let session = Session {
            size: 0,
            hasher: Some(Algorithm::Sha256.hasher()),
        };
        self.lock_table()
            .insert(id, Arc::new(tokio::sync::Mutex::new(Some(session))));
        Ok(id)
    }

    fn lock_table(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, SessionLock>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's lock, loading the session from disk if this process has
    /// not seen it. Fails unless the session belongs to `repository`.
    async fn session(&self, id: UploadId, repository: &str) -> Result<SessionLock, UploadError> {
        let dir = self.session_dir(id);
        let owner = blocking(move || fs::read_to_string(dir.join("repository"))).await;
        match owner {
            Ok(owner) if owner == repository => {}
            Ok(_) => return Err(UploadError::Unknown),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(UploadError::Unknown),
            Err(e) => return Err(e.into()),
        }
        Ok(self.lock_table().entry(id).or_default().clone())
    }

    /// Loads size (and lazily the hash state) of a session not in memory.
    async fn loaded<'a>(
        &self,
        id: UploadId,
        guard: &'a mut Option<Session>,
    ) -> Result<&'a mut Session, UploadError> {
        if guard.is_none() {
            let data = self.session_dir(id).join("data");
            let size = match blocking(move || fs::metadata(data)).await {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(UploadError::Unknown),
                Err(e) => return Err(e.into()),
            };
            *guard = Some(Session { size, hasher: None });
        }
        Ok(guard.as_mut().expect("just loaded"))
    }

    pub async fn status(
        &self,
        id: UploadId,
        repository: &str,
    ) -> Result<UploadStatus, UploadError> {
        let lock = self.session(id, repository).await?;
        let mut guard = lock.lock().await;
        let session = self.loaded(id, &mut guard).await?;
        Ok(UploadStatus { size: session.size })
    }

    /// Appends a request body. `start` is the chunk's declared offset (from
    /// `Content-Range`) and `declared_len` its `Content-Length`; both are
    /// checked. A body that fails midway leaves the session as it was before.
    pub async fn append<S, E>(
        &self,
        id: UploadId,
        repository: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: S,
    ) -> Result<UploadStatus, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let lock = self.session(id, repository).await?;
        let mut guard = lock.lock().await;
        let session = self.loaded(id, &mut guard).await?;
        if start.is_some_and(|s| s != session.size) {
            return Err(UploadError::OutOfOrder { size: session.size });
        }
        let data = self.session_dir(id).join("data");
        let hasher = match session.hasher.take() {
            Some(h) => h,
            None => rehash(data.clone(), Algorithm::Sha256, session.size).await?,
        };
        let before = session.size;
        match write_body(&data, before, hasher, declared_len, body).await {
            Ok((written, hasher)) => {
                session.size += written;
                session.hasher = Some(hasher);
                Ok(UploadStatus { size: session.size })
            }
            // write_body restored the file; the hash state is rebuilt on next use.
            Err(e) => Err(e),
        }
    }

    /// Removes a session and its data.
    pub async fn cancel(&self, id: UploadId, repository: &str) -> Result<(), UploadError> {
        let lock = self.session(id, repository).await?;
        let mut guard = lock.lock().await;
        self.remove(id, &mut guard).await?;
        Ok(())
    }

    async fn remove(&self, id: UploadId, guard: &mut Option<Session>) -> io::Result<()> {
        *guard = None;
        self.lock_table().remove(&id);
        let dir = self.session_dir(id);
        match blocking(move || fs::remove_dir_all(dir)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Verifies the session's bytes against `expected`, then moves them to
    /// `target` durably (or drops them if `target` exists: same digest, same bytes).
    pub(super) async fn commit(
        &self,
        id: UploadId,
        repository: &str,
        expected: &Digest,
        target: PathBuf,
    ) -> Result<u64, UploadError> {
        let lock = self.session(id, repository).await?;
        let mut guard = lock.lock().await;
        let session = self.loaded(id, &mut guard).await?;
        let size = session.size;
        let data = self.session_dir(id).join("data");
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
        blocking(move || move_durably(&data, &target)).await?;
        self.remove(id, &mut guard).await?;
        Ok(size)
    }

    /// Deletes sessions untouched for longer than `ttl`; returns how many.
    pub async fn expire(&self, ttl: Duration) -> io::Result<usize> {
        let dir = self.dir.clone();
        let stale = blocking(move || {
            let now = SystemTime::now();
            let mut stale = Vec::new();
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let modified = entry.metadata()?.modified()?;
                if now.duration_since(modified).unwrap_or_default() <= ttl {
                    continue;
                }
                // Session data is touched by every append; staging files by their writer.
                let data_modified =
                    fs::metadata(entry.path().join("data")).and_then(|m| m.modified());
                if data_modified.is_ok_and(|m| now.duration_since(m).unwrap_or_default() <= ttl) {
                    continue;
                }
                stale.push(entry.file_name());
            }
            Ok::<_, io::Error>(stale)
        })
        .await?;
        let mut removed = 0;
        for name in stale {
            let name = name.to_string_lossy().into_owned();
            match name.parse::<UploadId>() {
                Ok(id) => {
                    let lock = self.lock_table().entry(id).or_default().clone();
                    // A session in use is not stale.
                    let Ok(mut guard) = lock.try_lock() else {
                        continue;
                    };
                    self.remove(id, &mut guard).await?;
                }
                Err(_) => {
                    let path = self.dir.join(&name);
                    blocking(move || fs::remove_file(path)).await.ok();
                }
            }
            removed += 1;
        }
        Ok(removed)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
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
async fn write_body<S, E>(
    path: &Path,
    len: u64,
    mut hasher: Hasher,
    declared_len: Option<u64>,
    mut body: S,
) -> Result<(u64, Hasher), UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: fmt::Display,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
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

/// Makes `source` the durable content of `target`: fsync, rename, fsync the
/// directory. If `target` already exists it holds the same verified bytes.
fn move_durably(source: &Path, target: &Path) -> io::Result<()> {
    if target.exists() {
        return fs::remove_file(source);
    }
    File::open(source)?.sync_all()?;
    let parent = target.parent().expect("blob paths have a parent");
    fs::create_dir_all(parent)?;
    fs::rename(source, target)?;
    File::open(parent)?.sync_all()
}

/// Writes `bytes` to a staging file and moves it durably to `target`.
pub(super) fn write_durably(staging: &Path, bytes: &[u8], target: &Path) -> io::Result<()> {
    if target.exists() {
        return Ok(());
    }
    fs::write(staging, bytes)?;
    move_durably(staging, target).inspect_err(|_| {
        let _ = fs::remove_file(staging);
    })
}

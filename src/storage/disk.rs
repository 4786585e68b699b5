//! The local disk, in both placements: work on a blocking thread, and the
//! sweeps of the uploads directory. In local placement that directory holds
//! the sessions and staging files; in remote placement only what older
//! versions left there, removed by the same sweeps.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::layout;

/// Runs file system calls on a blocking thread, off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// Removes staging files under `root` last modified before `before`; returns
/// how many and their bytes. A staging file lives for one write and rename,
/// so an old one is a crash's leftover.
pub(super) async fn remove_stale_staging(
    root: &Path,
    before: SystemTime,
) -> io::Result<(u64, u64)> {
    let dir = layout::uploads_dir(root);
    blocking(move || {
        let (mut count, mut bytes) = (0, 0);
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if !entry.file_name().to_str().is_some_and(layout::is_staging) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() && meta.modified()? < before {
                match fs::remove_file(entry.path()) {
                    Ok(()) => {
                        count += 1;
                        bytes += meta.len();
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((count, bytes))
    })
    .await
}

/// The entries of the uploads directory under `root` untouched for longer
/// than `ttl`: session directories by their `data` (touched by every
/// append), anything else (staging files, strays) by itself.
pub(super) async fn stale_upload_entries(root: &Path, ttl: Duration) -> io::Result<Vec<String>> {
    let dir = layout::uploads_dir(root);
    let stale = blocking(move || {
        let now = SystemTime::now();
        let old = |m: io::Result<SystemTime>| {
            m.is_ok_and(|m| now.duration_since(m).unwrap_or_default() > ttl)
        };
        let mut stale = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let data = layout::session_data(&entry.path());
            let modified = if data.exists() {
                fs::metadata(data)
            } else {
                entry.metadata()
            };
            if old(modified.and_then(|m| m.modified())) {
                stale.push(entry.file_name());
            }
        }
        Ok(stale)
    })
    .await?;
    Ok(stale
        .into_iter()
        .map(|name| name.to_string_lossy().into_owned())
        .collect())
}

/// Removes an entry of the uploads directory under `root`: a session's
/// directory, or a file. Best effort: what cannot be removed now is found
/// stale again by the next sweep.
pub(super) async fn remove_upload_entry(root: &Path, name: &str) {
    let _ = match layout::session_of_entry(name) {
        Some(id) => {
            let dir = layout::session_dir(root, id);
            blocking(move || fs::remove_dir_all(dir)).await
        }
        None => {
            let path = layout::upload_entry(root, name);
            blocking(move || fs::remove_file(path)).await
        }
    };
}

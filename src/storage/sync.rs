//! Group sync: many writers of small files share one `syncfs(2)` of the
//! blob filesystem instead of fsyncing each file and directory.
//!
//! A waiter takes a ticket after its writes; a sync started after that ticket
//! was taken covers those writes. The leader records the highest ticket issued
//! before it starts the sync and marks all of them done when it returns, so
//! waiters that queued behind it return at once.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct SyncGroup {
    root: Arc<File>,
    issued: AtomicU64,
    done: AtomicU64,
    leader: tokio::sync::Mutex<()>,
}

impl SyncGroup {
    pub fn new(root: &Path) -> io::Result<SyncGroup> {
        Ok(SyncGroup {
            root: Arc::new(File::open(root)?),
            issued: AtomicU64::new(0),
            done: AtomicU64::new(0),
            leader: tokio::sync::Mutex::new(()),
        })
    }

    /// Returns once everything this task wrote before calling is durable.
    pub async fn sync(&self) -> io::Result<()> {
        let ticket = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
        let _leader = self.leader.lock().await;
        if self.done.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let covered = self.issued.load(Ordering::Acquire);
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            // SAFETY: plain syscall on a descriptor kept open by `root`.
            if unsafe { libc::syncfs(root.as_raw_fd()) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
        .await
        .map_err(io::Error::other)??;
        self.done.fetch_max(covered, Ordering::AcqRel);
        Ok(())
    }
}

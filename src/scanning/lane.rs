//! The scanner's CPU work (decompressing and walking layers, parsing SBOMs,
//! matching, writing SBOMs, loading a database) runs on threads of its own
//! at the lowest CPU priority, so that a busy machine serves pushes and
//! pulls first and scans take the time left over. One thread per call:
//! scans run a few at a time (`scan.workers`), and each call is long next
//! to the cost of starting a thread.

/// Runs `f` on a low-priority thread and waits for its result; `what`
/// names the work in the error when the thread could not start or panicked.
pub async fn run<T, F>(what: &str, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-scan".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(f());
        })
        .map_err(|e| format!("{what}: no thread: {e}"))?;
    rx.await.map_err(|_| format!("{what}: the thread panicked"))
}

/// Sets the calling thread's nice value to 19 (on Linux a thread's nice
/// value is its own, not the process's). A thread may always lower its
/// own priority; it could not raise it back, which is why the work runs
/// on a thread of its own rather than on tokio's blocking pool.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority reads no memory; `who` 0 is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn work_runs_at_nice_19_and_returns_its_value() {
        let nice = super::run("test", || {
            // SAFETY: as above; errno is not read (19 is not -1).
            #[cfg(target_os = "linux")]
            return unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            #[cfg(not(target_os = "linux"))]
            19
        })
        .await
        .unwrap();
        assert_eq!(nice, 19);
        let panicked = super::run("boom", || -> u8 { panic!("on purpose") }).await;
        assert_eq!(panicked.unwrap_err(), "boom: the thread panicked");
    }
}

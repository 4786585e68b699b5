//! Online garbage collection: one pass walks the queue of candidates the
//! writes left (`meta::gc`), removes what is garbage from the graph, then
//! deletes the bytes of blobs doomed for longer than the grace period, and
//! finally files no row names (crash leftovers). See ARCHITECTURE.md,
//! "Garbage collection", for the protocol and why it is safe while pushes
//! of the same digests go on.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::{Registry, RegistryError, Result};
use crate::events::{Actor, Event, Kind};
use crate::meta::{now_millis, DoomedBlob, GcCounts, GcRunRecord, LeasedJob, QueuePhase};
use crate::oci::Digest;
use crate::workers::Stop;

/// Candidates (or blobs) handled per transaction: small enough that a batch
/// holds the writer for milliseconds, so pushes keep flowing during a pass.
const BATCH: u32 = 256;

/// How long things must stay unused before a pass takes them.
#[derive(Debug, Clone, Copy)]
pub struct GcSettings {
    /// A blob link no manifest uses, and a doomed blob's bytes, are kept this
    /// long after their last use (push, mount, pull, or a manifest that used
    /// them); orphan files younger than this are never touched.
    pub grace: Duration,
    /// An untagged, unreferenced manifest is kept this long after it was
    /// untagged, pushed or pulled.
    pub untagged_delay: Duration,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            grace: Duration::from_secs(3600),
            untagged_delay: Duration::from_secs(24 * 3600),
        }
    }
}

/// A pass as recorded (see `Registry::gc_runs`).
pub type GcReport = GcRunRecord;

/// Where the running pass is, for a progress bar.
#[derive(Debug, Clone, Serialize)]
pub struct GcProgress {
    pub id: String,
    pub dry_run: bool,
    /// manifests, contents, links, blobs, orphans
    pub phase: &'static str,
    /// Items of this phase handled so far, out of `total` (known at the
    /// phase's start; a phase may find more as it goes).
    pub done: u64,
    pub total: u64,
    /// What the pass has removed so far.
    pub counts: GcCounts,
}

/// Blob files being written by this process, and files of writes that did
/// not end cleanly (possible orphans, checked by the next pass).
#[derive(Default)]
pub(super) struct Writes {
    in_flight: Mutex<HashSet<String>>,
    suspects: Mutex<Vec<(Digest, String)>>,
}

/// One write of a blob's bytes, under a fresh nonce, from before its file
/// exists until its metadata transaction has answered. While it lives, no
/// orphan sweep of this process touches its file.
pub(super) struct Writing<'a> {
    writes: &'a Writes,
    digest: Digest,
    pub nonce: String,
    settled: bool,
}

impl Writes {
    pub(super) fn begin(&self, digest: &Digest) -> Writing<'_> {
        let nonce = crate::storage::new_nonce();
        lock(&self.in_flight).insert(nonce.clone());
        Writing {
            writes: self,
            digest: digest.clone(),
            nonce,
            settled: false,
        }
    }

    fn in_flight(&self, nonce: &str) -> bool {
        lock(&self.in_flight).contains(nonce)
    }
}

impl Writing<'_> {
    /// The file is named by the blob's row, or was deleted.
    pub(super) fn settled(mut self) {
        self.settled = true;
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let suspect = (self.digest.clone(), self.nonce.clone());
            lock(&self.writes.suspects).push(suspect);
        }
        lock(&self.writes.in_flight).remove(&self.nonce);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A process's garbage-collection state.
pub(super) struct GcState {
    pub(super) settings: GcSettings,
    pub(super) writes: Writes,
    /// Held for the whole of a pass: one at a time per process.
    running: tokio::sync::Mutex<()>,
    progress: Mutex<Option<GcProgress>>,
    started: Instant,
    /// Whether the full sweep for orphan files has run in this process.
    swept: AtomicBool,
    /// Passes asked for through the API, for the GC worker: (id, dry run).
    requests: Mutex<VecDeque<(String, bool)>>,
    requested: tokio::sync::Notify,
}

impl GcState {
    pub(super) fn new(settings: GcSettings) -> GcState {
        GcState {
            settings,
            writes: Writes::default(),
            running: tokio::sync::Mutex::new(()),
            progress: Mutex::new(None),
            started: Instant::now(),
            swept: AtomicBool::new(false),
            requests: Mutex::new(VecDeque::new()),
            requested: tokio::sync::Notify::new(),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One pass's bookkeeping.
struct Pass<'a> {
    registry: &'a Registry,
    id: String,
    dry_run: bool,
    counts: GcCounts,
    /// Set at shutdown: the pass ends after its current batch.
    stop: &'a Stop,
}

impl Pass<'_> {
    fn phase(&self, phase: &'static str, total: u64) {
        *lock(&self.registry.gc.progress) = Some(GcProgress {
            id: self.id.clone(),
            dry_run: self.dry_run,
            phase,
            done: 0,
            total,
            counts: self.counts,
        });
    }

    /// Adds a batch's counts; records progress and a heartbeat. Between
    /// batches is where a pass stops at shutdown (the next pass finishes
    /// its work).
    async fn advance(&mut self, done: u64, counts: &GcCounts) -> Result<()> {
        self.counts.add(counts);
        if let Some(p) = lock(&self.registry.gc.progress).as_mut() {
            p.done += done;
            p.total = p.total.max(p.done);
            p.counts = self.counts;
        }
        self.registry
            .meta
            .gc_run_update(&self.id, self.counts, "running", None, None)
            .await?;
        if self.stop.is_set() {
            return Err(RegistryError::Stopped);
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<()> {
        let settings = self.registry.gc.settings;
        let (grace, untagged) = (ms(settings.grace), ms(settings.untagged_delay));
        self.queue_phase(QueuePhase::Manifests, untagged).await?;
        self.queue_phase(QueuePhase::Contents, 0).await?;
        self.queue_phase(QueuePhase::Links, grace).await?;
        self.blobs(grace).await?;
        self.orphans(settings.grace).await
    }

    /// Walks the candidates of one kind that have waited `delay` ms.
    async fn queue_phase(&mut self, phase: QueuePhase, delay: i64) -> Result<()> {
        let meta = &self.registry.meta;
        let name = match phase {
            QueuePhase::Manifests => "manifests",
            QueuePhase::Contents => "contents",
            QueuePhase::Links => "links",
        };
        let phase_cutoff = now_millis().saturating_sub(delay);
        self.phase(name, meta.gc_due(phase, phase_cutoff).await?);
        let mut after = None;
        loop {
            let batch = if self.dry_run {
                let busy = self.registry.blobs.repositories_uploading().await?;
                meta.gc_dry_batch(phase, phase_cutoff, &busy, after, BATCH)
                    .await?
            } else {
                // Every candidate a batch of manifests or contents looks at
                // leaves the due range (removed, kept, or queued for later),
                // so those restart from the front and also take what earlier
                // batches queued (a removed index's children, with no delay).
                // Links in repositories with uploads in progress stay, so
                // those are walked with a cursor.
                let (cutoff, from) = match phase {
                    QueuePhase::Links => (phase_cutoff, after),
                    _ => (now_millis().saturating_sub(delay), None),
                };
                let busy = match phase {
                    QueuePhase::Links => self.registry.blobs.repositories_uploading().await?,
                    _ => HashSet::new(),
                };
                meta.gc_batch(phase, cutoff, Arc::new(busy), from, BATCH)
                    .await?
            };
            if batch.examined == 0 {
                return Ok(());
            }
            if batch.counts.manifests_removed > 0 && !self.dry_run {
                self.registry.manifests.clear();
            }
            self.advance(batch.examined, &batch.counts).await?;
            after = batch.next;
        }
    }

    /// Deletes the bytes of blobs doomed for longer than the grace period.
    async fn blobs(&mut self, grace: i64) -> Result<()> {
        let meta = &self.registry.meta;
        let cutoff = now_millis().saturating_sub(grace);
        let (count, bytes) = meta.gc_deletable_blobs(cutoff).await?;
        self.phase("blobs", count);
        if self.dry_run {
            let counts = GcCounts {
                blobs_removed: count,
                blob_bytes: bytes,
                ..GcCounts::default()
            };
            return self.advance(count, &counts).await;
        }
        // First what a stopped pass left between unlinking and deleting rows.
        let left = meta.gc_deleting_blobs().await?;
        for chunk in left.chunks(BATCH as usize) {
            self.delete_bytes(chunk.to_vec()).await?;
        }
        loop {
            let doomed = meta.gc_begin_blob_deletes(cutoff, BATCH).await?;
            if doomed.is_empty() {
                return Ok(());
            }
            self.delete_bytes(doomed).await?;
        }
    }

    /// Steps 2 and 3 of the protocol for blobs that are `deleting`.
    async fn delete_bytes(&mut self, blobs: Vec<DoomedBlob>) -> Result<()> {
        use futures_util::StreamExt;
        let storage = &self.registry.blobs;
        // A few unlinks at a time: each is a hop to a blocking thread.
        let unlinked: Vec<DoomedBlob> = futures_util::stream::iter(blobs)
            .map(|b| async move {
                let digest: Digest = match b.digest.parse() {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(blob = %b.digest, error = %e, "stored digest does not parse");
                        return None;
                    }
                };
                match storage.remove_blob_file(&digest, &b.nonce).await {
                    Ok(_) => Some(b),
                    // Stays `deleting`; the next pass tries again.
                    Err(e) => {
                        tracing::warn!(blob = %digest, error = %e, "could not delete a blob file");
                        None
                    }
                }
            })
            .buffer_unordered(8)
            .filter_map(|b| async move { b })
            .collect()
            .await;
        let n = unlinked.len() as u64;
        let (removed, bytes) = self.registry.meta.gc_finish_blob_deletes(unlinked).await?;
        let counts = GcCounts {
            blobs_removed: removed,
            blob_bytes: bytes,
            ..GcCounts::default()
        };
        self.advance(n, &counts).await
    }

    /// Deletes blob files no row names: those of writes of this process that
    /// did not end cleanly, and, once per process (when everything written
    /// before it started is older than the grace period), every such file in
    /// the store, plus stale staging files.
    async fn orphans(&mut self, grace: Duration) -> Result<()> {
        let gc = &self.registry.gc;
        let storage = &self.registry.blobs;
        // A dry run only looks: the suspects stay for a real pass.
        let suspects = if self.dry_run {
            lock(&gc.writes.suspects).clone()
        } else {
            std::mem::take(&mut *lock(&gc.writes.suspects))
        };
        let sweep = gc.started.elapsed() >= grace && !gc.swept.load(Ordering::Acquire);
        let dirs = if sweep {
            storage.blob_dirs().await?
        } else {
            Vec::new()
        };
        self.phase("orphans", dirs.len() as u64 + 1);
        let kept = self
            .remove_orphans(
                suspects
                    .into_iter()
                    .map(|(digest, nonce)| crate::storage::BlobFile {
                        digest,
                        nonce,
                        size: 0,
                    })
                    .collect(),
            )
            .await?;
        if !self.dry_run {
            lock(&gc.writes.suspects).extend(kept);
        }
        self.advance(1, &GcCounts::default()).await?;
        if !sweep {
            return Ok(());
        }
        let before = SystemTime::now() - grace;
        let (files, bytes) = if self.dry_run {
            (0, 0)
        } else {
            storage.remove_stale_staging(before).await?
        };
        self.advance(
            0,
            &GcCounts {
                orphan_files: files,
                orphan_bytes: bytes,
                ..GcCounts::default()
            },
        )
        .await?;
        for dir in dirs {
            let files = storage.blob_files(dir, before).await?;
            self.remove_orphans(files).await?;
            self.advance(1, &GcCounts::default()).await?;
        }
        if !self.dry_run {
            gc.swept.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Deletes those of `files` that no blob row names and no write of this
    /// process is producing. Returns those it could not check.
    async fn remove_orphans(
        &mut self,
        files: Vec<crate::storage::BlobFile>,
    ) -> Result<Vec<(Digest, String)>> {
        // In-flight first, rows second: a write not in flight now has
        // answered, so a row naming its file is committed and seen below.
        let files: Vec<_> = files
            .into_iter()
            .filter(|f| !self.registry.gc.writes.in_flight(&f.nonce))
            .collect();
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let digests: Vec<String> = files.iter().map(|f| f.digest.to_string()).collect();
        let named = self.registry.meta.blob_nonces(&digests).await?;
        let mut counts = GcCounts::default();
        let mut kept = Vec::new();
        for f in files {
            if named.get(f.digest.as_str()) == Some(&f.nonce) {
                continue;
            }
            if self.dry_run {
                counts.orphan_files += 1;
                counts.orphan_bytes += f.size;
                continue;
            }
            match self
                .registry
                .blobs
                .remove_blob_file(&f.digest, &f.nonce)
                .await
            {
                Ok(Some(size)) => {
                    counts.orphan_files += 1;
                    counts.orphan_bytes += size;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(blob = %f.digest, error = %e, "could not delete an orphan file");
                    kept.push((f.digest, f.nonce));
                }
            }
        }
        self.advance(0, &counts).await?;
        Ok(kept)
    }
}

impl Registry {
    /// Runs one garbage-collection pass (after the running one, if any) and
    /// returns what it removed. A dry run changes nothing and counts what a
    /// pass would remove at its first step (removals cascade: a manifest
    /// removed now makes its blobs' links candidates for a later pass).
    pub async fn collect_garbage(&self, dry_run: bool) -> Result<GcReport> {
        self.collect_garbage_as(uuid::Uuid::new_v4().to_string(), dry_run, &Stop::never())
            .await
    }

    /// `collect_garbage`, recording the pass under `id` (so that whoever
    /// asked for it can follow it through `gc_progress` and `gc_runs`),
    /// ending early (`Stopped`) once `stop` is set.
    pub async fn collect_garbage_as(
        &self,
        id: String,
        dry_run: bool,
        stop: &Stop,
    ) -> Result<GcReport> {
        let _running = self.gc.running.lock().await;
        // Another replica's pass: wait for it to end (or its replica to die).
        let _lease = loop {
            match self.meta.try_lease(LeasedJob::GarbageCollection).await? {
                Some(lease) => break lease,
                None => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        self.gc_pass(id, dry_run, stop).await
    }

    /// Like `collect_garbage`, unless a pass is running: then None at once.
    pub async fn try_collect_garbage(
        &self,
        dry_run: bool,
        stop: &Stop,
    ) -> Result<Option<GcReport>> {
        let Ok(_running) = self.gc.running.try_lock() else {
            return Ok(None);
        };
        // One pass at a time across replicas too.
        let Some(_lease) = self.meta.try_lease(LeasedJob::GarbageCollection).await? else {
            return Ok(None);
        };
        self.gc_pass(uuid::Uuid::new_v4().to_string(), dry_run, stop)
            .await
            .map(Some)
    }

    /// Asks the GC worker for a pass; returns the id it will be recorded
    /// under (see `gc_runs`).
    pub fn request_gc(&self, dry_run: bool) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        lock(&self.gc.requests).push_back((id.clone(), dry_run));
        self.gc.requested.notify_one();
        id
    }

    /// The running pass's phase and progress, if one is running.
    pub fn gc_progress(&self) -> Option<GcProgress> {
        lock(&self.gc.progress).clone()
    }

    /// The most recent passes, newest first (interrupted ones included).
    pub async fn gc_runs(&self, limit: u32) -> Result<Vec<GcReport>> {
        Ok(self.meta.gc_runs(limit).await?)
    }

    /// The delays garbage collection applies.
    pub fn gc_settings(&self) -> GcSettings {
        self.gc.settings
    }

    async fn gc_pass(&self, id: String, dry_run: bool, stop: &Stop) -> Result<GcReport> {
        self.meta.gc_run_started(&id, dry_run).await?;
        let started = Instant::now();
        let mut pass = Pass {
            registry: self,
            id: id.clone(),
            dry_run,
            counts: GcCounts::default(),
            stop,
        };
        let result = pass.run().await;
        *lock(&self.gc.progress) = None;
        let counts = pass.counts;
        let (status, error) = match &result {
            Ok(()) => ("finished", None),
            Err(RegistryError::Stopped) => ("interrupted", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        let mut finished = Event::new(Kind::GcFinished, &Actor::system("gc"), now_millis())
            .about(None, &format!("gc/{id}"))
            .with_detail(format!(
                "{status}{}: {} manifests, {} blobs ({} bytes), {} orphan files removed",
                if dry_run { " (dry run)" } else { "" },
                counts.manifests_removed,
                counts.blobs_removed,
                counts.blob_bytes,
                counts.orphan_files
            ));
        if status == "failed" {
            finished = finished.failed();
        }
        self.meta
            .gc_run_update(&id, counts, status, error, Some(finished))
            .await?;
        result?;
        tracing::info!(
            id = %id,
            dry_run,
            ms = started.elapsed().as_millis() as u64,
            manifests = counts.manifests_removed,
            links = counts.links_removed,
            blobs = counts.blobs_removed,
            blob_bytes = counts.blob_bytes,
            orphans = counts.orphan_files,
            "garbage collection pass finished"
        );
        let runs = self.meta.gc_runs(20).await?;
        runs.into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| RegistryError::Internal("the pass's record is missing".into()))
    }
}

/// The worker that runs garbage collection: the passes asked for through
/// the API, and (when enabled) one every interval after the previous one
/// ended. Each pass holds the GC lease, so one runs at a time across
/// replicas; at shutdown a pass ends after its current batch.
pub struct GcWorker {
    registry: Arc<Registry>,
    /// None: no background passes, only requested ones.
    interval: Option<Duration>,
    next: tokio::time::Instant,
    last: Option<String>,
}

impl GcWorker {
    pub fn new(registry: Arc<Registry>, interval: Option<Duration>) -> GcWorker {
        let next = tokio::time::Instant::now() + interval.unwrap_or_default();
        GcWorker {
            registry,
            interval,
            next,
            last: None,
        }
    }

    fn report(&mut self, report: &GcReport) {
        self.last = Some(format!(
            "pass {} {}: {} manifests, {} blobs removed",
            report.id, report.status, report.counts.manifests_removed, report.counts.blobs_removed
        ));
    }
}

impl crate::workers::Worker for GcWorker {
    fn name(&self) -> &'static str {
        "gc"
    }

    async fn work(&mut self, stop: &Stop) -> std::result::Result<crate::workers::State, String> {
        use crate::workers::State;
        let requested = lock(&self.registry.gc.requests).pop_front();
        let result = match requested {
            Some((id, dry_run)) => self
                .registry
                .collect_garbage_as(id, dry_run, stop)
                .await
                .map(Some),
            None if self.interval.is_some() && tokio::time::Instant::now() >= self.next => {
                let pass = self.registry.try_collect_garbage(false, stop).await;
                self.next = tokio::time::Instant::now() + self.interval.unwrap_or_default();
                pass
            }
            None => return Ok(State::Idle),
        };
        match result {
            Ok(Some(report)) => self.report(&report),
            Ok(None) | Err(RegistryError::Stopped) => {}
            Err(e) => return Err(e.to_string()),
        }
        let more = !lock(&self.registry.gc.requests).is_empty();
        Ok(if more { State::Busy } else { State::Idle })
    }

    async fn wait_for_work(&mut self) {
        match self.interval {
            Some(_) => tokio::select! {
                _ = self.registry.gc.requested.notified() => {}
                _ = tokio::time::sleep_until(self.next) => {}
            },
            None => self.registry.gc.requested.notified().await,
        }
    }

    fn progress(&self) -> crate::workers::Progress {
        crate::workers::Progress {
            queue: Some(lock(&self.registry.gc.requests).len() as u64),
            detail: self.last.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MetaStore;
    use crate::oci::{Reference, RepositoryName};
    use crate::storage::{BlobStore, ByteStream};
    use bytes::Bytes;
    use futures_util::{StreamExt, TryStreamExt};

    struct Fixture {
        registry: Arc<Registry>,
        dir: std::path::PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A registry on a fresh directory whose GC waits for nothing.
    async fn fixture() -> Fixture {
        let dir = std::env::temp_dir().join(format!("berth-rgc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let meta = MetaStore::open_sqlite(&dir.join("berth.db")).await.unwrap();
        let blobs = BlobStore::open_local(dir.join("storage")).unwrap();
        let settings = GcSettings {
            grace: Duration::ZERO,
            untagged_delay: Duration::ZERO,
        };
        Fixture {
            registry: Registry::new(
                Arc::new(meta),
                blobs,
                Arc::new(crate::journal::Journal::open(&dir.join("journal")).unwrap()),
                Arc::new(crate::registry::AdmitAll),
                settings,
            ),
            dir,
        }
    }

    fn test_actor() -> Actor {
        Actor::system("test")
    }

    fn body(bytes: &[u8]) -> ByteStream {
        let bytes = Bytes::copy_from_slice(bytes);
        futures_util::stream::once(async move { Ok(bytes) }).boxed()
    }

    async fn push(r: &Registry, repo: &RepositoryName, bytes: &[u8]) -> Digest {
        let d = Digest::sha256_of(bytes);
        r.push_blob(
            &test_actor(),
            repo,
            &d,
            Some(bytes.len() as u64),
            body(bytes),
        )
        .await
        .unwrap();
        d
    }

    async fn pull(r: &Registry, repo: &RepositoryName, d: &Digest) -> Vec<u8> {
        let read = r.read_blob(repo, d, None, true).await.unwrap();
        let chunks: Vec<Bytes> = read.body.unwrap().try_collect().await.unwrap();
        chunks.concat()
    }

    /// Every file under blobs/, as names.
    fn blob_files(dir: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.join("storage/blobs")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    found.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    #[tokio::test]
    async fn gc_deleting_bytes_while_a_push_revives_the_blob_spares_the_new_file() {
        let f = fixture().await;
        let (r, repo) = (&f.registry, "a/b".parse::<RepositoryName>().unwrap());
        let d = push(r, &repo, b"contested bytes").await;
        r.delete_blob(&test_actor(), &repo, &d).await.unwrap();
        settle().await;
        // GC step 1: the doomed row becomes deleting.
        let deleting = r
            .meta
            .gc_begin_blob_deletes(now_millis(), 10)
            .await
            .unwrap();
        assert_eq!(deleting.len(), 1);
        // A push of the same digest lands now, with its own file.
        push(r, &repo, b"contested bytes").await;
        assert_eq!(blob_files(&f.dir).len(), 2);
        // GC steps 2 and 3, as a pass would run them.
        let mut pass = Pass {
            registry: r,
            id: "t".into(),
            dry_run: false,
            counts: GcCounts::default(),
            stop: &Stop::never(),
        };
        pass.delete_bytes(deleting).await.unwrap();
        assert_eq!(pass.counts.blobs_removed, 0, "the row was revived");
        assert_eq!(blob_files(&f.dir).len(), 1, "only the old file went");
        assert_eq!(pull(r, &repo, &d).await, b"contested bytes");
    }

    #[tokio::test]
    async fn the_file_of_a_write_that_did_not_end_cleanly_is_removed_by_the_next_pass() {
        let f = fixture().await;
        let r = &f.registry;
        // The once-per-process sweep of the whole store runs in this pass.
        r.collect_garbage(false).await.unwrap();
        // A write whose metadata transaction failed: its file, no row.
        let d = Digest::sha256_of(b"lost");
        let writing = r.gc.writes.begin(&d);
        r.blobs
            .put_verified(&d, &writing.nonce, Bytes::from_static(b"lost"))
            .await
            .unwrap();
        // While the write is in flight no pass touches its file.
        let report = r.collect_garbage(false).await.unwrap();
        assert_eq!(report.counts.orphan_files, 0);
        assert_eq!(blob_files(&f.dir).len(), 1);
        drop(writing);
        let dry = r.collect_garbage(true).await.unwrap();
        assert_eq!(dry.counts.orphan_files, 1);
        assert_eq!(blob_files(&f.dir).len(), 1, "a dry run deletes nothing");
        let report = r.collect_garbage(false).await.unwrap();
        let c = report.counts;
        assert_eq!((c.orphan_files, c.orphan_bytes), (1, 4));
        assert!(blob_files(&f.dir).is_empty());
    }

    #[tokio::test]
    async fn a_second_push_of_a_live_blob_leaves_one_file() {
        let f = fixture().await;
        let (r, repo) = (&f.registry, "a/b".parse::<RepositoryName>().unwrap());
        let d = push(r, &repo, b"same").await;
        push(r, &repo, b"same").await;
        push(r, &"c/d".parse().unwrap(), b"same").await;
        assert_eq!(blob_files(&f.dir).len(), 1);
        assert_eq!(pull(r, &repo, &d).await, b"same");
    }

    #[tokio::test]
    async fn a_pass_removes_everything_unreferenced_and_orphan_files() {
        let f = fixture().await;
        let (r, repo) = (&f.registry, "a/b".parse::<RepositoryName>().unwrap());
        let config = push(r, &repo, b"{}").await;
        let layer = push(r, &repo, b"layer").await;
        let kept_layer = push(r, &repo, b"kept layer").await;
        let _loose = push(r, &repo, b"never used").await;
        let manifest = |layer: &Digest, n: usize| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{n}}}]}}"#
            )
        };
        let tag = |t: &str| Reference::Tag(t.parse().unwrap());
        r.put_manifest(
            &test_actor(),
            &repo,
            &tag("old"),
            None,
            manifest(&layer, 5).as_bytes(),
        )
        .await
        .unwrap();
        r.put_manifest(
            &test_actor(),
            &repo,
            &tag("new"),
            None,
            manifest(&kept_layer, 10).as_bytes(),
        )
        .await
        .unwrap();
        r.delete_manifest(&test_actor(), &repo, &tag("old"))
            .await
            .unwrap();
        // Leftovers of a crash: a blob file no row names, a staging file.
        let orphan = f.dir.join("storage/blobs/sha256/00");
        std::fs::create_dir_all(&orphan).unwrap();
        std::fs::write(orphan.join(format!("{}.dead", "0".repeat(64))), b"crash").unwrap();
        std::fs::write(f.dir.join("storage/uploads/tmp-x"), b"half").unwrap();
        settle().await;

        let dry = r.collect_garbage(true).await.unwrap();
        assert!(dry.dry_run && dry.status == "finished");
        assert_eq!(dry.counts.manifests_removed, 1);
        assert_eq!(
            dry.counts.links_removed, 1,
            "the loose blob; the rest waits for the manifest"
        );
        assert_eq!(
            dry.counts.orphan_files, 1,
            "a dry run counts blob files only"
        );
        assert_eq!(blob_files(&f.dir).len(), 5, "a dry run deletes nothing");

        // With no delays one pass follows the whole cascade.
        let report = r.collect_garbage(false).await.unwrap();
        assert_eq!(report.status, "finished");
        assert_eq!(report.counts.manifests_removed, 1);
        assert_eq!(report.counts.contents_removed, 1);
        assert_eq!(
            report.counts.links_removed, 2,
            "the old manifest's layer, and the loose blob"
        );
        assert_eq!(report.counts.blobs_removed, 2);
        assert_eq!(report.counts.blob_bytes, 5 + 10);
        assert_eq!(report.counts.orphan_files, 2);
        let mut left = blob_files(&f.dir);
        left.iter_mut().for_each(|n| n.truncate(64));
        let mut expected = vec![config.hex().to_string(), kept_layer.hex().to_string()];
        expected.sort();
        assert_eq!(left, expected);
        assert!(!f.dir.join("storage/uploads/tmp-x").exists());
        assert_eq!(pull(r, &repo, &kept_layer).await, b"kept layer");
        assert!(r.read_blob(&repo, &layer, None, false).await.is_err());
        assert!(r.gc_progress().is_none());
        let runs = r.gc_runs(10).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].id, report.id);
        // Nothing left to do.
        let again = r.collect_garbage(false).await.unwrap();
        assert_eq!(again.counts, GcCounts::default());
    }
}

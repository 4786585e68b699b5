//! `berth migrate`: copies an embedded installation (the SQLite database and
//! the blob files of a data directory) to the database and blob store a
//! configuration describes — typically PostgreSQL and S3, for replicas — and
//! verifies the copy.
//!
//! Blobs first: each blob row's file is streamed into the target store under
//! the same key while hashed, and completed there only if it matches the
//! row's digest and size. Objects already in the target with the right size
//! are skipped, so a migration that stopped continues where it was. The bulk
//! is copied outside any snapshot of the source (a running server's WAL
//! need not grow meanwhile); then one read snapshot is taken, the blobs it
//! adds are copied, and every table is copied from that snapshot into the
//! target database in one transaction (`meta::transfer`). Nothing is written
//! to the target database unless every blob of the snapshot is in the target
//! store and verified.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use crate::config::{Config, StorageBackend};
use crate::meta::{BlobRow, MetaStore, Snapshot};
use crate::storage::{BlobStore, CopyError, StorageError};

/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// The help of `berth migrate`, with the procedure for a running installation.
pub const LONG_ABOUT: &str = "\
Copy an embedded installation (the SQLite database and blob files of a data \
directory) to the database and blob store of a target configuration, read as \
`berth serve` reads it (--config, then BERTH_* variables): typically \
PostgreSQL ([database] url) and S3 ([storage] backend = \"s3\"). Then verify \
the copy.

Every blob copied is hashed on the way and stored only if it matches its \
digest and size; a mismatch stops the migration naming the blob, with \
nothing written to the target database. Objects already in the target with \
the right size are skipped, so an interrupted migration continues where it \
stopped. The metadata is copied from one read snapshot of the source, every \
table in one transaction, once every blob of that snapshot is in the target \
store; the target database must hold no registry data (--replace deletes it \
first, in the same transaction). Then row counts are compared table by \
table, every manifest is hashed, and every blob row's object is looked for \
in the target store with its size.

Migrating a running installation with little downtime:
  1. While the old server serves, copy the bulk of the blobs:
       berth migrate --from DATA_DIR --config target.toml --blobs-only
  2. Stop the old server (or put the load balancer in maintenance).
  3. Copy what was pushed since, and the metadata, verified:
       berth migrate --from DATA_DIR --config target.toml
     (after a first run that copied metadata too, add --replace)
  4. Start the replicas on the target configuration.
Upload sessions in progress on the old server are not carried over: clients \
restart them.";

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Data directory of the embedded installation to copy (its berth.db
    /// and storage/); it may still be serving.
    #[arg(long, value_name = "DATA_DIR")]
    pub from: PathBuf,
    /// Configuration file (TOML) of the target; BERTH_* variables apply
    /// on top, as for `berth serve`.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Delete the registry data the target database holds (in the same
    /// transaction as the copy) instead of refusing.
    #[arg(long)]
    pub replace: bool,
    /// Copy only the blobs (step 1 for a running installation).
    #[arg(long)]
    pub blobs_only: bool,
    /// Blobs copied at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

/// What a migration did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub ok: bool,
    /// The blob rows of the source (of the snapshot the metadata came from).
    pub blobs: BlobSummary,
    /// Rows copied per table; none with --blobs-only, or when the target
    /// database is the source's.
    pub tables: Option<BTreeMap<String, u64>>,
    pub verified: Option<Verification>,
    pub seconds: f64,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BlobSummary {
    pub rows: u64,
    pub bytes: u64,
    /// Copied by this run (hashed and verified on the way).
    pub copied: u64,
    pub copied_bytes: u64,
    /// Already in the target with the right size.
    pub skipped: u64,
    /// Rows garbage collection is deleting whose file is gone already (the
    /// row is copied; the target's GC finishes the deletion).
    pub deleted_by_gc: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Tables whose row count equals the source's.
    pub tables: u64,
    pub rows: u64,
    /// Manifests whose content hashes to their digest.
    pub manifests: u64,
    /// Blob rows whose object is in the target store with the row's size.
    pub blob_objects: u64,
    /// Everything that did not match (empty when ok).
    pub problems: Vec<String>,
}

/// Runs `berth migrate`; prints progress on stderr and the summary on
/// stdout (JSON with `json`).
pub fn run(args: MigrateArgs, json: bool) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth migrate: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(migrate(&args, &config)) {
        Ok(summary) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).unwrap_or_default()
                );
            } else {
                print_summary(&summary);
            }
            if summary.ok {
                ExitCode::SUCCESS
            } else {
                eprintln!("berth migrate: the verification failed (see above)");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("berth migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the target is, relative to the source.
struct Target {
    /// The target database is the source's file: only blobs are copied.
    same_database: bool,
    /// The target store is the source's directory: every blob is there.
    same_storage: bool,
}

fn canonical(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

/// The file of a `sqlite:` URL.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let rest = rest.split('?').next().unwrap_or(rest);
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()?;
    Some(PathBuf::from(decoded.as_ref()))
}

fn compare(from: &Path, config: &Config) -> Target {
    let source_db = canonical(&from.join("berth.db"));
    let target_db = match &config.database.url {
        Some(url) => sqlite_path(&url.0),
        None => Some(config.data_dir.join("berth.db")),
    };
    let same_database = source_db.is_some() && target_db.and_then(|p| canonical(&p)) == source_db;
    let same_storage = config.storage.backend == StorageBackend::Local
        && canonical(&config.data_dir.join("storage")) == canonical(&from.join("storage"));
    Target {
        same_database,
        same_storage,
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A directory removed on drop (the S3 store's staging area, unused here).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn migrate(args: &MigrateArgs, config: &Config) -> Result<Summary, String> {
    let started = Instant::now();
    let from = &args.from;
    let source_db = from.join("berth.db");
    if !source_db.is_file() || !from.join("storage/blobs").is_dir() {
        return Err(format!(
            "{} is not the data directory of an embedded installation (no berth.db and storage/blobs)",
            from.display()
        ));
    }
    let target = compare(from, config);
    if target.same_database && target.same_storage {
        return Err(
            "the target is the source itself: describe the target with [database] url and/or \
             [storage] backend = \"s3\" (--config, BERTH_* variables)"
                .into(),
        );
    }
    let mut summary = Summary::default();
    let metadata = !args.blobs_only && !target.same_database;
    if target.same_database && !args.blobs_only {
        summary.notes.push(
            "the target database is the source's: only blobs are copied, the metadata stays where it is"
                .into(),
        );
    }
    if target.same_storage {
        summary
            .notes
            .push("the target blob store is the source's: no blob is copied".into());
    }

    let source_blobs = BlobStore::open_local(from.join("storage"))
        .map_err(|e| format!("opening the source's blobs: {e}"))?;
    let _scratch;
    let target_blobs = match config.storage.backend {
        StorageBackend::Local => BlobStore::open_local(config.data_dir.join("storage")),
        backend @ (StorageBackend::S3 | StorageBackend::Gcs | StorageBackend::Azure) => {
            let storage = &config.storage;
            let (what, unset) = match backend {
                StorageBackend::Azure => ("container", storage.azure.container.is_empty()),
                StorageBackend::Gcs => ("bucket", storage.gcs.bucket.is_empty()),
                _ => ("bucket", storage.s3.bucket.is_empty()),
            };
            if unset {
                return Err(format!(
                    "the target's [{}] {what} is not set",
                    backend.section()
                ));
            }
            // Staging of uploads, which a migration does not use.
            let scratch = std::env::temp_dir()
                .join(format!("berth-migrate-{}", uuid::Uuid::new_v4().simple()));
            _scratch = Scratch(scratch.clone());
            BlobStore::open_object_store(scratch, storage)
        }
    }
    .map_err(|e| format!("opening the target's blob store: {e}"))?;

    let target_meta = if metadata {
        let meta = match &config.database.url {
            Some(url) => MetaStore::open(&url.0, 2, 1).await,
            None => {
                std::fs::create_dir_all(&config.data_dir)
                    .map_err(|e| format!("creating {}: {e}", config.data_dir.display()))?;
                MetaStore::open_sqlite(&config.data_dir.join("berth.db")).await
            }
        }
        .map_err(|e| format!("opening the target database: {e}"))?;
        // Refused now rather than after the blobs (checked again in the
        // transaction that copies).
        if !args.replace {
            let held: Vec<String> = meta
                .table_counts()
                .await
                .map_err(|e| format!("reading the target database: {e}"))?
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| format!("{t}: {n}"))
                .collect();
            if !held.is_empty() {
                return Err(format!(
                    "the target database already holds registry data ({}); give --replace to \
                     delete it and copy the source's in its place",
                    held.join(", ")
                ));
            }
        }
        Some(meta)
    } else {
        None
    };

    eprintln!("listing the blobs in the target store");
    let mut present = object_sizes(&target_blobs).await?;
    let copier = Copier {
        source: &source_blobs,
        target: &target_blobs,
        jobs: args.jobs.into(),
    };
    let mut copied = HashSet::new();
    let mut gone = HashSet::new();

    // The bulk, outside the snapshot the metadata comes from.
    let mut snapshot = Snapshot::open(&source_db)
        .await
        .map_err(|e| format!("reading {}: {e}", source_db.display()))?;
    let mut rows = snapshot
        .blobs()
        .await
        .map_err(|e| format!("reading the source's blob rows: {e}"))?;
    if metadata {
        snapshot.close().await;
        copier
            .copy(&rows, &mut present, &mut copied, &mut gone, false)
            .await?;
        // The snapshot the metadata comes from: the blobs it adds, then every table.
        snapshot = Snapshot::open(&source_db)
            .await
            .map_err(|e| format!("reading {}: {e}", source_db.display()))?;
        rows = snapshot
            .blobs()
            .await
            .map_err(|e| format!("reading the source's blob rows: {e}"))?;
    }
    copier
        .copy(&rows, &mut present, &mut copied, &mut gone, metadata)
        .await?;
    if config.storage.backend == StorageBackend::Local && !target.same_storage {
        sync_filesystem(&config.data_dir.join("storage"))
            .map_err(|e| format!("syncing the target's blob files: {e}"))?;
    }
    summary.blobs = blob_summary(&rows, &copied, &gone);

    let Some(meta) = target_meta else {
        snapshot.close().await;
        summary.ok = true;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    };
    eprintln!("copying the metadata");
    let last = Mutex::new(Instant::now());
    let progress = |table: &str, rows: u64| {
        let mut last = last.lock().unwrap();
        if last.elapsed() >= PROGRESS_EVERY {
            eprintln!("  {table}: {rows} rows");
            *last = Instant::now();
        }
    };
    let imported = meta
        .import_snapshot(&mut snapshot, args.replace, &progress)
        .await;
    let source_counts = match imported {
        Ok(_) => snapshot.counts().await,
        Err(e) => {
            snapshot.close().await;
            return Err(format!("copying the metadata: {e}"));
        }
    };
    snapshot.close().await;
    let source_counts = source_counts.map_err(|e| format!("counting the source's rows: {e}"))?;
    summary.tables = Some(source_counts.clone());

    eprintln!("verifying the target");
    let verified = verify(&meta, &target_blobs, &source_counts).await?;
    summary.ok = verified.problems.is_empty();
    summary.verified = Some(verified);
    meta.close().await;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn blob_summary(
    rows: &[BlobRow],
    copied: &HashSet<(String, String)>,
    gone: &HashSet<(String, String)>,
) -> BlobSummary {
    let mut s = BlobSummary::default();
    for row in rows {
        s.rows += 1;
        s.bytes += row.size;
        let key = (row.digest.to_string(), row.nonce.clone());
        if copied.contains(&key) {
            s.copied += 1;
            s.copied_bytes += row.size;
        } else if gone.contains(&key) {
            s.deleted_by_gc += 1;
        } else {
            s.skipped += 1;
        }
    }
    s
}

/// After the copy: the target's row counts against the snapshot's, its
/// manifests against their digests, its blob rows against its store.
async fn verify(
    meta: &MetaStore,
    blobs: &BlobStore,
    source_counts: &BTreeMap<String, u64>,
) -> Result<Verification, String> {
    let mut v = Verification::default();
    let counts = meta
        .table_counts()
        .await
        .map_err(|e| format!("counting the target's rows: {e}"))?;
    for (table, n) in source_counts {
        match counts.get(table) {
            Some(m) if m == n => {
                v.tables += 1;
                v.rows += n;
            }
            other => v.problems.push(format!(
                "table {table}: {n} rows in the source, {} in the target",
                other.map_or("none".into(), u64::to_string)
            )),
        }
    }
    let (checked, bad) = meta
        .corrupt_manifests(20)
        .await
        .map_err(|e| format!("reading the target's manifests: {e}"))?;
    v.manifests = checked - bad.len() as u64;
    for digest in bad {
        v.problems.push(format!(
            "manifest {digest}: its content does not hash to its digest"
        ));
    }
    let objects = object_sizes(blobs).await?;
    let rows = meta
        .live_blobs()
        .await
        .map_err(|e| format!("reading the target's blob rows: {e}"))?;
    let mut missing = 0;
    for (digest, nonce, size) in rows {
        let location = blobs.blob_location(&digest.parse().map_err(|e| format!("{e}"))?, &nonce);
        match objects.get(&(digest.clone(), nonce)) {
            Some(&s) if s == size as u64 => v.blob_objects += 1,
            found => {
                missing += 1;
                if missing <= 20 {
                    v.problems.push(match found {
                        None => format!("blob {digest}: no object {location} in the target store"),
                        Some(s) => {
                            format!("blob {digest}: object {location} has {s} bytes, not {size}")
                        }
                    });
                }
            }
        }
    }
    if missing > 20 {
        v.problems.push(format!(
            "… {} more blobs missing or of the wrong size",
            missing - 20
        ));
    }
    Ok(v)
}

/// Makes the files written under `dir` durable (local target: object_store
/// does not fsync).
fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let root = std::fs::File::open(dir)?;
    if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

struct Copier<'a> {
    source: &'a BlobStore,
    target: &'a BlobStore,
    jobs: usize,
}

enum Copied {
    Done,
    /// The source has no file for the row.
    NoFile,
}

impl Copier<'_> {
    /// Copies every row's blob the target does not hold with its size.
    /// `last`: this is the snapshot the metadata comes from, so a live row
    /// without a file is an error (before: one deleted since the listing,
    /// by the old server's garbage collection, is passed over).
    async fn copy(
        &self,
        rows: &[BlobRow],
        present: &mut HashMap<(String, String), u64>,
        copied: &mut HashSet<(String, String)>,
        gone: &mut HashSet<(String, String)>,
        last: bool,
    ) -> Result<(), String> {
        let todo: Vec<&BlobRow> = rows
            .iter()
            .filter(|r| present.get(&(r.digest.to_string(), r.nonce.clone())) != Some(&r.size))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let total_bytes: u64 = todo.iter().map(|r| r.size).sum();
        eprintln!(
            "copying {} blobs ({}) of {}",
            todo.len(),
            human(total_bytes),
            rows.len()
        );
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let failed = AtomicBool::new(false);
        let started = Instant::now();
        let reporter = {
            let (bytes, done, count) = (bytes.clone(), done.clone(), todo.len());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROGRESS_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let b = bytes.load(Ordering::Relaxed);
                    let rate = b as f64 / started.elapsed().as_secs_f64().max(0.001);
                    eprintln!(
                        "  {}/{count} blobs, {} of {} ({}/s)",
                        done.load(Ordering::Relaxed),
                        human(b),
                        human(total_bytes),
                        human(rate as u64)
                    );
                }
            })
        };
        let results: Vec<(&BlobRow, Result<Copied, String>)> = futures_util::stream::iter(todo)
            .map(|row| {
                let (bytes, done, failed) = (&bytes, &done, &failed);
                async move {
                    if failed.load(Ordering::Relaxed) {
                        return (row, Err(String::new()));
                    }
                    let result = self.copy_one(row, bytes).await;
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    (row, result)
                }
            })
            .buffer_unordered(self.jobs)
            .collect()
            .await;
        reporter.abort();
        let mut first_error = None;
        for (row, result) in results {
            let key = (row.digest.to_string(), row.nonce.clone());
            match result {
                Ok(Copied::Done) => {
                    present.insert(key.clone(), row.size);
                    copied.insert(key);
                }
                Ok(Copied::NoFile) if row.deleting => {
                    gone.insert(key);
                }
                Ok(Copied::NoFile) if !last => {
                    eprintln!(
                        "  blob {}: its file is gone (deleted by the old server's garbage collection?); passed over",
                        row.digest
                    );
                }
                Ok(Copied::NoFile) => {
                    first_error.get_or_insert(format!(
                        "blob {}: the source has a row but no file ({}). Nothing was written to \
                         the target database. Stop the old server before the last run; \
                         `berth check` against it lists every blob without a file",
                        row.digest,
                        self.source.blob_location(&row.digest, &row.nonce)
                    ));
                }
                Err(e) if e.is_empty() => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        eprintln!("  copied in {:.1} s", started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn copy_one(&self, row: &BlobRow, bytes: &AtomicU64) -> Result<Copied, String> {
        let stream = match self.source.read(&row.digest, &row.nonce, None).await {
            Ok(stream) => stream,
            Err(StorageError::NotFound) => return Ok(Copied::NoFile),
            Err(e) => {
                return Err(format!(
                    "reading blob {} ({}): {e}",
                    row.digest,
                    self.source.blob_location(&row.digest, &row.nonce)
                ))
            }
        };
        let counted = |n: usize| {
            bytes.fetch_add(n as u64, Ordering::Relaxed);
        };
        match self
            .target
            .put_verified_stream(&row.digest, &row.nonce, row.size, stream, counted)
            .await
        {
            Ok(()) => Ok(Copied::Done),
            Err(e @ CopyError::Mismatch { .. }) => Err(format!(
                "blob {} is corrupt in the source ({}): {e}. Nothing was written to the target \
                 database; restore the file, or delete what uses the blob from the old server",
                row.digest,
                self.source.blob_location(&row.digest, &row.nonce)
            )),
            Err(CopyError::Storage(e)) => Err(format!(
                "copying blob {} to the target store: {e}",
                row.digest
            )),
        }
    }
}

fn print_summary(s: &Summary) {
    println!("berth migrate: done in {:.1} s", s.seconds);
    for note in &s.notes {
        println!("  note: {note}");
    }
    let b = &s.blobs;
    let rate = b.copied_bytes as f64 / s.seconds.max(0.001);
    print!(
        "  blobs     {} rows, {}: {} copied ({}, {}/s overall), {} already in the target",
        b.rows,
        human(b.bytes),
        b.copied,
        human(b.copied_bytes),
        human(rate as u64),
        b.skipped
    );
    if b.deleted_by_gc > 0 {
        print!(
            ", {} already deleted by garbage collection",
            b.deleted_by_gc
        );
    }
    println!();
    if let Some(tables) = &s.tables {
        let rows: u64 = tables.values().sum();
        println!(
            "  metadata  {} tables, {rows} rows, copied in one transaction:",
            tables.len()
        );
        let line: Vec<String> = tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!("            {}", line.join(", "));
    }
    if let Some(v) = &s.verified {
        println!(
            "  verified  row counts of {} tables ({} rows) equal the source's; {} manifests hash to \
             their digests; {} blob objects present with their sizes",
            v.tables, v.rows, v.manifests, v.blob_objects
        );
        for p in &v.problems {
            println!("  PROBLEM   {p}");
        }
    }
}

/// The size of every blob object in `store`, by (digest, nonce).
async fn object_sizes(store: &BlobStore) -> Result<HashMap<(String, String), u64>, String> {
    Ok(store
        .all_blob_files()
        .await
        .map_err(|e| format!("listing the target's blobs: {e}"))?
        .into_iter()
        .map(|f| ((f.digest.to_string(), f.nonce), f.size))
        .collect())
}

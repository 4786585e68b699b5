//! Vulnerability scanning, wired from the pure core (`berth-scan`) to the
//! registry: the scan queue (`meta::scans`) and the workers that drain it,
//! layers read from the blob store and walked on a low-priority thread
//! (`lane`; each layer's inventory cached by digest), the image's packages matched
//! against the vulnerability database in use, the report stored with a
//! `scan.completed` event, and SBOMs pushed as referrers of the image.
//!
//! A scan is of one manifest digest (content). An image manifest's layers
//! are walked in order; an index is scanned per child (each child is a scan
//! of its own) and reports the children's results by platform. Anything
//! else (signatures, SBOMs, charts) is `unsupported`. When the database in
//! use changes, stored inventories are matched again (`Rematch`), and no
//! layer is read again.
//!
//! `harbor` serves the same scan to a Harbor, of images in its registry.

pub mod harbor;
mod lane;
mod workers;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_scan::inventory::{Finding, Package, Severity};
use berth_scan::layers::{self, LayerInventory, Limits};
use berth_scan::packages::{OsRelease, Problem};
use berth_scan::vulndb::Index;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::events::{Actor, Event, Kind};
use crate::meta::{now_millis, MetaError, MetaStore, ScanOutcome, ScanRecord, VulndbRecord};
use crate::oci::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::oci::{Digest, Manifest, RepositoryName};
use crate::registry::{Registry, RegistryError};

pub use workers::{OnPush, Rematch, ScanWorker};

/// Who scans, as events and pushes name it.
pub fn scanner_actor() -> Actor {
    Actor::system("scanner")
}

/// How long a claim on a scan lasts without a heartbeat: a replica that
/// dies mid-scan leaves its scans to the others for this long.
const CLAIM_MS: i64 = 30_000;
/// A running scan's claim is renewed this often...
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// ...and its progress written at most this often (a scan shorter than
/// this writes none).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Scans that fail for a passing reason (an outage) are retried this often.
const MAX_ATTEMPTS: i64 = 5;

/// Counts of findings by severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub none: u64,
    pub unknown: u64,
    /// Findings with a fixed version.
    pub fixable: u64,
    pub total: u64,
}

impl Summary {
    fn of(findings: &[Finding]) -> Summary {
        let mut s = Summary::default();
        for f in findings {
            s.add(f.severity, f.fixed_version.is_some());
        }
        s
    }

    fn add(&mut self, severity: Severity, fixable: bool) {
        match severity {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::None => self.none += 1,
            Severity::Unknown => self.unknown += 1,
        }
        self.fixable += u64::from(fixable);
        self.total += 1;
    }

    fn merge(&mut self, other: &Summary) {
        self.critical += other.critical;
        self.high += other.high;
        self.medium += other.medium;
        self.low += other.low;
        self.none += other.none;
        self.unknown += other.unknown;
        self.fixable += other.fixable;
        self.total += other.total;
    }
}

/// One platform of an index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Child {
    pub digest: String,
    /// `os/architecture[/variant]`, from the index.
    pub platform: Option<String>,
    pub status: String,
    pub summary: Summary,
}

/// What a scan found, as stored (`scans.report`) and shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub os: Option<OsRelease>,
    pub packages: Vec<Package>,
    pub findings: Vec<Finding>,
    pub summary: Summary,
    /// Files that could not be read, advisories that could not be decided.
    pub problems: Vec<Problem>,
    pub composition: Option<berth_scan::composition::Composition>,
    /// An index: its children's results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Child>,
    /// The SBOMs pushed as referrers (media type → manifest digest), or why not.
    #[serde(default)]
    pub sboms: BTreeMap<String, String>,
    /// Set when the packages came from an SBOM a client attached to the
    /// image (its layers listed none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom_input: Option<SbomInput>,
}

/// The client's SBOM a scan read its packages from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SbomInput {
    /// The SBOM artifact's manifest digest.
    pub digest: String,
    /// `SPDX-2.3`, `CycloneDX 1.5`.
    pub format: String,
    /// Its entries that name no package Berth can place.
    pub skipped: u64,
}

/// A running scan's progress (layers read of all), which its heartbeat
/// writes.
#[derive(Default)]
struct Beat {
    done: AtomicI64,
    total: AtomicI64,
}

impl Beat {
    fn set(&self, done: i64, total: i64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(done, Ordering::Relaxed);
    }

    fn get(&self) -> (i64, i64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

/// The vulnerability database a replica has loaded.
struct Loaded {
    id: String,
    index: Arc<Index>,
}

/// Why a scan did not finish.
#[derive(Debug)]
enum Failure {
    /// Worth trying again later (the store or database was unavailable).
    Passing(String),
    /// The content is at fault: the scan ends failed with the reason.
    Content(String),
    /// This replica is stopping.
    Stopped,
}

impl From<MetaError> for Failure {
    fn from(e: MetaError) -> Self {
        Failure::Passing(e.to_string())
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::StorageUnavailable(m) | RegistryError::MetadataUnavailable(m) => {
                Failure::Passing(m)
            }
            e => Failure::Content(e.to_string()),
        }
    }
}

pub struct Scanner {
    meta: Arc<MetaStore>,
    registry: Arc<Registry>,
    /// This replica's name in claims.
    worker: String,
    limits: Limits,
    database: tokio::sync::Mutex<Option<Loaded>>,
    /// Wakes the scan workers when scans are queued here.
    queued: tokio::sync::Notify,
    /// Wakes the rematch worker when a database is imported here.
    imported: tokio::sync::Notify,
}

/// Whether a manifest is an image the scanner reads (and its layers).
fn image_layers(manifest: &Manifest) -> Option<&[crate::oci::Descriptor]> {
    let config = manifest.blobs.first()?;
    let image_config = matches!(
        config.media_type.as_str(),
        "application/vnd.oci.image.config.v1+json"
            | "application/vnd.docker.container.image.v1+json"
    );
    // An artifact (a signature, an SBOM) names a type of its own.
    let artifact = manifest
        .artifact_type
        .as_deref()
        .is_some_and(|t| t != config.media_type);
    (image_config
        && !artifact
        && [OCI_MANIFEST, DOCKER_MANIFEST].contains(&manifest.media_type.as_str()))
    .then(|| &manifest.blobs[1..])
}

fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

/// The platform of each child of an index, by digest.
fn platforms(content: &str) -> BTreeMap<String, String> {
    let raw: serde_json::Value = serde_json::from_str(content).unwrap_or_default();
    let mut found = BTreeMap::new();
    for m in raw["manifests"].as_array().into_iter().flatten() {
        let p = &m["platform"];
        if let (Some(d), Some(os), Some(arch)) = (
            m["digest"].as_str(),
            p["os"].as_str(),
            p["architecture"].as_str(),
        ) {
            let mut platform = format!("{os}/{arch}");
            if let Some(v) = p["variant"].as_str() {
                platform.push('/');
                platform.push_str(v);
            }
            found.insert(d.to_string(), platform);
        }
    }
    found
}

impl Scanner {
    pub fn new(
        meta: Arc<MetaStore>,
        registry: Arc<Registry>,
        worker: String,
        limits: Limits,
    ) -> Scanner {
        Scanner {
            meta,
            registry,
            worker,
            limits,
            database: tokio::sync::Mutex::new(None),
            queued: tokio::sync::Notify::new(),
            imported: tokio::sync::Notify::new(),
        }
    }

    /// Queues scans of `manifests` in `repository` (again, for those done,
    /// with `again`) and wakes this replica's workers.
    pub async fn request(
        &self,
        repository: &RepositoryName,
        manifests: Vec<String>,
        again: bool,
    ) -> Result<u64, MetaError> {
        let n = self
            .meta
            .queue_scans(repository.as_str(), manifests, again)
            .await?;
        self.queued.notify_waiters();
        Ok(n)
    }

    pub async fn scan_record(&self, manifest: &Digest) -> Result<Option<ScanRecord>, MetaError> {
        self.meta.scan(manifest.as_str()).await
    }

    /// The database in use (the newest imported), loaded here if it is
    /// not yet; None if none was imported.
    async fn database(&self) -> Result<Option<(String, Arc<Index>)>, Failure> {
        let Some(newest) = self.meta.vulndbs(1).await?.into_iter().next() else {
            return Ok(None);
        };
        let mut loaded = self.database.lock().await;
        if let Some(l) = loaded.as_ref().filter(|l| l.id == newest.id) {
            return Ok(Some((l.id.clone(), l.index.clone())));
        }
        let index = Arc::new(self.load(&newest).await?);
        *loaded = Some(Loaded {
            id: newest.id.clone(),
            index: index.clone(),
        });
        tracing::info!(id = %newest.id, records = newest.records, "vulnerability database loaded");
        Ok(Some((newest.id, index)))
    }

    /// Reads a database's records from its artifact and indexes them.
    async fn load(&self, db: &VulndbRecord) -> Result<Index, Failure> {
        let repo: RepositoryName = VULNDB_REPOSITORY.parse().expect("a valid name");
        let digest: Digest = db
            .id
            .parse()
            .map_err(|e| Failure::Content(format!("database id: {e}")))?;
        let (_, stream) = self.registry.blob_content(&repo, &digest).await?;
        let bytes: Vec<u8> = stream
            .map_ok(|b| b.to_vec())
            .try_concat()
            .await
            .map_err(|e| Failure::Passing(e.to_string()))?;
        lane::run("loading the database", move || index_zip(&bytes))
            .await
            .map_err(Failure::Content)?
            .map_err(Failure::Content)
    }

    /// Renews the claim on a running scan and writes its progress, until
    /// the claim is found lost (another worker has the scan): then the
    /// scan is stopped with the reason.
    async fn heartbeat(&self, job: &ScanRecord, beat: &Beat) -> Failure {
        let (mut written, mut renewed) = ((0, 0), Instant::now());
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = beat.get();
            if now == written && renewed.elapsed() < RENEW_EVERY {
                continue;
            }
            let until = now_millis() + CLAIM_MS;
            let (done, total) = now;
            match self
                .meta
                .scan_progress(&job.manifest, &self.worker, until, done, total)
                .await
            {
                Ok(true) => (written, renewed) = (now, Instant::now()),
                Ok(false) => {
                    return Failure::Passing("the claim was lost to another worker".into())
                }
                Err(e) => {
                    tracing::warn!(manifest = %job.manifest, error = %e, "scan claim not renewed")
                }
            }
        }
    }

    /// Runs one claimed scan to its end and records the outcome.
    async fn run(&self, job: ScanRecord, stop: &crate::workers::Stop) -> Result<(), MetaError> {
        let started = Instant::now();
        tracing::info!(manifest = %job.manifest, attempts = job.attempts, "scan started");
        let beat = Beat::default();
        let result = tokio::select! {
            result = self.scan(&job, stop, &beat) => result,
            lost = self.heartbeat(&job, &beat) => Err(lost),
        };
        let (status, error, vulndb, report) = match result {
            Ok((status, vulndb, report)) => (status, None, vulndb, Some(report)),
            Err(Failure::Stopped) => {
                // Handed back: the next start (or another replica) takes it.
                return self.meta.requeue_scan(&job.manifest, &self.worker, 0).await;
            }
            Err(Failure::Passing(why)) if job.attempts < MAX_ATTEMPTS => {
                tracing::warn!(manifest = %job.manifest, error = %why, "scan postponed");
                let later = now_millis() + 5_000 * job.attempts;
                return self
                    .meta
                    .requeue_scan(&job.manifest, &self.worker, later)
                    .await;
            }
            Err(Failure::Passing(why) | Failure::Content(why)) => ("failed", Some(why), None, None),
        };
        if let Some(Report { children, .. }) = &report {
            if children
                .iter()
                .any(|c| c.status == "queued" || c.status == "running")
            {
                // An index whose children are still being scanned.
                return self
                    .meta
                    .requeue_scan(&job.manifest, &self.worker, now_millis() + 1_000)
                    .await;
            }
        }
        let kind = if status == "failed" {
            Kind::ScanFailed
        } else {
            Kind::ScanCompleted
        };
        let mut event = Event::new(kind, &scanner_actor(), now_millis())
            .in_repository(&job.repository)
            .with_detail(match (&report, &error) {
                (Some(r), _) => format!(
                    "{status}: {} packages, {} findings ({} critical, {} high)",
                    r.packages.len(),
                    r.summary.total,
                    r.summary.critical,
                    r.summary.high
                ),
                (None, Some(e)) => e.clone(),
                (None, None) => status.to_string(),
            });
        event.digest = Some(job.manifest.clone());
        if status == "failed" {
            event = event.failed();
        }
        let summary = report
            .as_ref()
            .map(|r| serde_json::to_string(&r.summary).expect("summaries serialize"));
        let report = report.map(|r| serde_json::to_string(&r).expect("reports serialize"));
        let outcome = ScanOutcome {
            status,
            error: error.clone(),
            vulndb,
            summary,
            report,
            event,
        };
        if self
            .meta
            .finish_scan(&job.manifest, &self.worker, outcome)
            .await?
        {
            tracing::info!(manifest = %job.manifest, status, error = ?error, ms = started.elapsed().as_millis() as u64, "scan ended");
        }
        Ok(())
    }

    /// Scans one manifest: (status, database used, report).
    async fn scan(
        &self,
        job: &ScanRecord,
        stop: &crate::workers::Stop,
        beat: &Beat,
    ) -> Result<(&'static str, Option<String>, Report), Failure> {
        let (media_type, content) = self
            .meta
            .manifest_content(&job.manifest)
            .await?
            .ok_or_else(|| Failure::Content("the manifest is no longer stored".into()))?;
        let manifest = Manifest::parse(content.as_bytes(), Some(&media_type))
            .map_err(|e| Failure::Content(e.to_string()))?;
        if [OCI_INDEX, DOCKER_MANIFEST_LIST].contains(&manifest.media_type.as_str()) {
            return self.scan_index(job, &manifest, &content).await;
        }
        let Some(descriptors) = image_layers(&manifest) else {
            return Ok(("unsupported", None, Report::default()));
        };
        let repo: RepositoryName = job
            .repository
            .parse()
            .map_err(|e| Failure::Content(format!("repository: {e}")))?;
        let mut layers = Vec::with_capacity(descriptors.len());
        let mut problems = Vec::new();
        let total = descriptors.len() as i64;
        for (done, layer) in descriptors.iter().enumerate() {
            if stop.is_set() {
                return Err(Failure::Stopped);
            }
            beat.set(done as i64, total);
            if !is_layer(&layer.media_type) {
                continue;
            }
            if layer.urls.is_some() {
                problems.push(Problem {
                    path: String::new(),
                    layer: Some(layer.digest.to_string()),
                    reason: "a foreign layer (stored elsewhere) is not read".into(),
                });
                continue;
            }
            layers.push(self.layer(&repo, &layer.digest).await?);
        }
        let (database, mut report) = self.analyse(layers, problems).await?;
        if report.packages.is_empty() {
            self.client_sbom(&repo, &job.manifest, &mut report).await?;
        }
        // An inventory read from the client's SBOM is not written back as
        // Berth's (the client's is the referrer to find), and no package is
        // nothing to describe (an SBOM may yet be attached).
        if report.sbom_input.is_none() && !report.packages.is_empty() {
            self.push_sboms(&repo, job, &manifest, &mut report).await;
        }
        Ok(("finished", database, report))
    }

    /// An image whose layers list no package (distroless, scratch, a static
    /// binary): the packages of the newest SBOM a client attached to it as
    /// a referrer that reads, matched like any. An SBOM that cannot be read
    /// is a problem of the report, not a failed scan.
    async fn client_sbom(
        &self,
        repo: &RepositoryName,
        manifest: &str,
        report: &mut Report,
    ) -> Result<(), Failure> {
        let subject: Digest = manifest
            .parse()
            .map_err(|e| Failure::Content(format!("manifest digest: {e}")))?;
        let (referrers, _) = self.registry.referrers(repo, &subject, None, None).await?;
        let created = |d: &crate::oci::Descriptor| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.created").cloned())
                .unwrap_or_default()
        };
        let mut sboms: Vec<_> = referrers
            .into_iter()
            .filter(|d| is_client_sbom(d.artifact_type.as_deref(), d.annotations.as_ref()))
            .collect();
        sboms.sort_by_key(|d| std::cmp::Reverse((created(d), d.digest.to_string())));
        let mut read = None;
        for sbom in sboms {
            match self.read_sbom(repo, &sbom.digest).await? {
                Ok(input) => {
                    read = Some((sbom, input));
                    break;
                }
                Err(reason) => {
                    tracing::warn!(%manifest, sbom = %sbom.digest, %reason, "client SBOM not read");
                    report.problems.push(Problem {
                        path: String::new(),
                        layer: None,
                        reason: format!("the SBOM {} was not read: {reason}", sbom.digest),
                    });
                }
            }
        }
        let Some((chosen, input)) = read else {
            return Ok(());
        };
        let evidence = format!("sbom {}", chosen.digest);
        report.packages = input.packages;
        for p in &mut report.packages {
            if p.path.is_empty() {
                p.path.clone_from(&evidence);
            }
        }
        report.os = report.os.take().or(input.os);
        if input.skipped > 0 {
            report.problems.push(Problem {
                path: String::new(),
                layer: None,
                reason: format!(
                    "{} entries of the SBOM {} name no package (no package URL or version)",
                    input.skipped, chosen.digest
                ),
            });
        }
        report.sbom_input = Some(SbomInput {
            digest: chosen.digest.to_string(),
            format: input.format,
            skipped: input.skipped as u64,
        });
        if let Some((_, index)) = self.database().await? {
            rematch(&index, report);
        }
        Ok(())
    }

    /// An SBOM artifact's document, parsed: `Err` says why it is not one.
    async fn read_sbom(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Result<berth_scan::sbom::input::Input, String>, Failure> {
        use berth_scan::sbom::input::{parse, MAX_BYTES};
        let Some((media_type, content)) = self.meta.manifest_content(digest.as_str()).await? else {
            return Ok(Err("its manifest is no longer stored".into()));
        };
        let manifest = match Manifest::parse(content.as_bytes(), Some(&media_type)) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let layers = manifest.blobs.get(1..).unwrap_or_default();
        let document = layers
            .iter()
            .find(|l| is_sbom_type(&l.media_type))
            .or(match layers {
                [only] => Some(only),
                _ => None,
            });
        let Some(document) = document else {
            return Ok(Err("it has no SPDX or CycloneDX JSON layer".into()));
        };
        if document.size > MAX_BYTES as u64 {
            return Ok(Err(format!(
                "its document is {} bytes, over the {MAX_BYTES} read",
                document.size
            )));
        }
        let (_, stream) = self.registry.blob_content(repo, &document.digest).await?;
        let mut bytes = Vec::with_capacity(document.size as usize);
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| Failure::Passing(e.to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_BYTES {
                return Ok(Err(format!(
                    "its document is over the {MAX_BYTES} bytes read"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        lane::run("reading the SBOM", move || {
            parse(&bytes).map_err(|e| e.to_string())
        })
        .await
        .map_err(Failure::Content)
    }

    /// The inventory of one layer: from the cache, or read and walked.
    async fn layer(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<LayerInventory, Failure> {
        if let Some(cached) = self.cached_layer(digest).await? {
            return Ok(cached);
        }
        let (_, stream) = self.registry.blob_content(repo, digest).await?;
        let reader = tokio_util::io::StreamReader::new(stream);
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let (name, limits) = (digest.to_string(), self.limits.clone());
        let walked = lane::run(&format!("walking layer {digest}"), move || {
            layers::walk_layer(bridge, &name, &limits)
        })
        .await
        .map_err(Failure::Content)?
        .map_err(|e| Failure::Content(format!("layer {digest}: {e}")))?;
        self.cache_layer(digest, &walked).await?;
        Ok(walked)
    }

    /// A layer's inventory from the cache (by digest), if it is there.
    async fn cached_layer(&self, digest: &Digest) -> Result<Option<LayerInventory>, Failure> {
        let format = i64::from(layers::FORMAT);
        let cached = self.meta.layer_inventory(digest.as_str(), format).await?;
        Ok(cached.and_then(|c| serde_json::from_str(&c).ok()))
    }

    /// Caches the inventory of the layer `digest` (whose bytes were checked
    /// to be that digest's).
    async fn cache_layer(&self, digest: &Digest, walked: &LayerInventory) -> Result<(), Failure> {
        let format = i64::from(layers::FORMAT);
        let json = serde_json::to_string(walked).expect("inventories serialize");
        self.meta
            .store_layer_inventory(digest.as_str(), format, json)
            .await?;
        Ok(())
    }

    /// An image's packages, composition and findings from its layers.
    async fn analyse(
        &self,
        layers: Vec<LayerInventory>,
        mut problems: Vec<Problem>,
    ) -> Result<(Option<String>, Report), Failure> {
        let database = self.database().await?;
        let index = database.as_ref().map(|(_, index)| index.clone());
        let report = lane::run("matching", move || {
            let image = layers::merge(&layers);
            let inventory = berth_scan::packages::inventory(&image);
            let composition = berth_scan::composition::compose(&image);
            problems.extend(inventory.problems);
            let mut report = Report {
                os: inventory.os,
                packages: inventory.packages,
                problems,
                composition: Some(composition),
                ..Report::default()
            };
            if let Some(index) = &index {
                rematch(index, &mut report);
            }
            report
        })
        .await
        .map_err(Failure::Content)?;
        Ok((database.map(|(id, _)| id), report))
    }

    /// An index: each child is a scan of its own (queued if it is not);
    /// the index reports them by platform once they have all ended.
    async fn scan_index(
        &self,
        job: &ScanRecord,
        manifest: &Manifest,
        content: &str,
    ) -> Result<(&'static str, Option<String>, Report), Failure> {
        let platforms = platforms(content);
        let children: Vec<String> = manifest
            .manifests
            .iter()
            .map(|m| m.digest.to_string())
            .collect();
        self.meta
            .queue_scans(&job.repository, children.clone(), false)
            .await?;
        self.queued.notify_waiters();
        let mut report = Report::default();
        let mut database = None;
        for digest in children {
            let scan = self.meta.scan(&digest).await?;
            let (status, summary) = match &scan {
                Some(s) => (
                    s.status.clone(),
                    s.report
                        .as_deref()
                        .and_then(|r| serde_json::from_str::<Report>(r).ok())
                        .map(|r| r.summary)
                        .unwrap_or_default(),
                ),
                None => ("queued".to_string(), Summary::default()),
            };
            if let Some(s) = &scan {
                database = database.or(s.vulndb.clone());
            }
            report.summary.merge(&summary);
            report.children.push(Child {
                platform: platforms.get(&digest).cloned(),
                digest,
                status,
                summary,
            });
        }
        Ok(("finished", database, report))
    }

    /// Pushes SPDX and CycloneDX documents of an image's packages as its
    /// referrers in `repo`, noting in the report what was pushed (or why
    /// not: a project over its quota refuses them like any push).
    async fn push_sboms(
        &self,
        repo: &RepositoryName,
        job: &ScanRecord,
        manifest: &Manifest,
        report: &mut Report,
    ) {
        let info = berth_scan::sbom::ImageInfo {
            repository: repo.to_string(),
            digest: job.manifest.clone(),
            created: sbom_time(job.requested_at),
        };
        let packages = report.packages.clone();
        let documents = lane::run("writing the SBOMs", move || {
            [
                (SPDX, berth_scan::sbom::spdx(&info, &packages)),
                (CYCLONEDX, berth_scan::sbom::cyclonedx(&info, &packages)),
            ]
            .map(|(kind, doc)| (kind, doc.map_err(|e| e.to_string())))
        })
        .await
        .unwrap_or_else(|why| [SPDX, CYCLONEDX].map(|kind| (kind, Err(why.clone()))));
        for (artifact_type, document) in documents {
            let pushed = match document {
                Ok(doc) => {
                    self.push_referrer(repo, job, manifest, artifact_type, doc)
                        .await
                }
                Err(why) => Err(why),
            };
            let entry = match pushed {
                Ok(digest) => digest,
                Err(why) => {
                    tracing::warn!(manifest = %job.manifest, artifact_type, error = %why, "SBOM not stored");
                    format!("not stored: {why}")
                }
            };
            report.sboms.insert(artifact_type.to_string(), entry);
        }
    }

    async fn push_referrer(
        &self,
        repo: &RepositoryName,
        job: &ScanRecord,
        manifest: &Manifest,
        artifact_type: &str,
        document: String,
    ) -> Result<String, String> {
        let actor = scanner_actor();
        let body = bytes::Bytes::from(document);
        let layer = Digest::sha256_of(&body);
        let empty = bytes::Bytes::from_static(b"{}");
        let config = Digest::sha256_of(&empty);
        for (digest, bytes) in [(&config, empty), (&layer, body.clone())] {
            let len = bytes.len() as u64;
            let stream = futures_util::stream::once(async move { Ok(bytes) });
            self.registry
                .push_blob(&actor, repo, digest, Some(len), Box::pin(stream))
                .await
                .map_err(|e| e.to_string())?;
        }
        let subject_size = self
            .meta
            .manifest_content(&job.manifest)
            .await
            .ok()
            .flatten()
            .map_or(0, |(_, c)| c.len());
        let referrer = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": body.len(),
                        "annotations": {"org.opencontainers.image.title": sbom_file(artifact_type)}}],
            "subject": {"mediaType": manifest.media_type, "digest": job.manifest, "size": subject_size},
            "annotations": {GENERATED_BY: "berth", "org.opencontainers.image.created": sbom_time(job.requested_at)},
        });
        let bytes = serde_json::to_vec(&referrer).expect("json");
        let digest = Digest::sha256_of(&bytes);
        self.registry
            .put_manifest(
                &actor,
                repo,
                &crate::oci::Reference::Digest(digest.clone()),
                Some(OCI_MANIFEST),
                &bytes,
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(digest.to_string())
    }
}

/// The repository holding the imported vulnerability databases.
pub const VULNDB_REPOSITORY: &str = "berth-system/vulndb";
/// Artifact types of the SBOMs the scanner stores.
pub const SPDX: &str = "application/spdx+json";
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// Annotation marking the referrers Berth made itself.
pub const GENERATED_BY: &str = "dev.berth.generated-by";

/// The SBOM media types a scan reads (JSON only: SPDX tag-value and
/// CycloneDX XML are not read).
fn is_sbom_type(media_type: &str) -> bool {
    [SPDX, CYCLONEDX].contains(&media_type)
}

/// Whether a referrer is an SBOM a client attached (not one of Berth's).
pub fn is_client_sbom(
    artifact_type: Option<&str>,
    annotations: Option<&BTreeMap<String, String>>,
) -> bool {
    artifact_type.is_some_and(is_sbom_type)
        && annotations
            .and_then(|a| a.get(GENERATED_BY))
            .map(String::as_str)
            != Some("berth")
}

fn sbom_file(artifact_type: &str) -> &'static str {
    if artifact_type == SPDX {
        "sbom.spdx.json"
    } else {
        "sbom.cdx.json"
    }
}

/// A time as SPDX writes it.
fn sbom_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Matches a report's packages again: its findings, problems of
/// undecided advisories, and summary.
fn rematch(index: &Index, report: &mut Report) {
    let matches = berth_scan::matcher::match_packages(index, &report.packages);
    report.problems.retain(|p| !p.reason.starts_with(UNDECIDED));
    report
        .problems
        .extend(matches.undecided.into_iter().map(|u| Problem {
            path: String::new(),
            layer: None,
            reason: format!("{UNDECIDED} {} for {}: {}", u.id, u.package, u.reason),
        }));
    report.summary = Summary::of(&matches.findings);
    report.findings = matches.findings;
}

const UNDECIDED: &str = "advisory not decided:";

/// Indexes the OSV records of a zip (osv.dev's bulk format).
pub fn index_zip(bytes: &[u8]) -> Result<Index, String> {
    let zip = berth_scan::vulndb::read_zip(std::io::Cursor::new(bytes), &Default::default())
        .map_err(|e| e.to_string())?;
    Index::build(zip.records).map_err(|e| e.to_string())
}

/// Why an import was refused.
#[derive(Debug)]
pub enum ImportError {
    /// The data is not a usable database (the message says where).
    Invalid(String),
    /// It could not be stored.
    Failed(String),
}

/// Largest database accepted, as uploaded.
const MAX_IMPORT_BYTES: u64 = 4 << 30;

impl Scanner {
    pub async fn databases(&self, limit: u32) -> Result<Vec<VulndbRecord>, MetaError> {
        self.meta.vulndbs(limit).await
    }

    /// Scans waiting, and running.
    pub async fn queue(&self) -> Result<(u64, u64), MetaError> {
        self.meta.scan_queue().await
    }

    /// For each of `layers`, how many other artifacts of `project` have it.
    pub async fn layer_sharing(
        &self,
        project: &str,
        manifest: &str,
        layers: &[String],
    ) -> Result<BTreeMap<String, u64>, MetaError> {
        self.meta.layer_sharing(project, manifest, layers).await
    }

    /// Imports a vulnerability database from a zip of OSV records: read to
    /// a temporary file, every record checked and indexed, then stored as
    /// an artifact of `berth-system/vulndb` and recorded, which makes it
    /// the one in use. Nothing is stored unless all of it reads.
    pub async fn import(
        &self,
        actor: &Actor,
        mut body: crate::registry::ByteStream,
    ) -> Result<VulndbRecord, ImportError> {
        use futures_util::StreamExt;
        use std::io::Write;
        let failed = |e: &dyn std::fmt::Display| ImportError::Failed(e.to_string());
        let mut file = tempfile_in_tmp().map_err(|e| failed(&e))?;
        let mut hasher = crate::oci::Algorithm::Sha256.hasher();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ImportError::Invalid(format!("upload: {e}")))?;
            size += chunk.len() as u64;
            if size > MAX_IMPORT_BYTES {
                return Err(ImportError::Invalid(format!(
                    "the database is over {MAX_IMPORT_BYTES} bytes"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(|e| failed(&e))?;
        }
        let digest = hasher.finish();
        let path = file.path.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let reader = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            let zip = berth_scan::vulndb::read_zip(reader, &Default::default())
                .map_err(|e| e.to_string())?;
            let index = Index::build(zip.records).map_err(|e| e.to_string())?;
            let newest = index
                .stats()
                .newest_modified
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis());
            Ok::<_, String>((index, newest))
        })
        .await
        .map_err(|e| failed(&e))?;
        let (index, newest) = checked.map_err(ImportError::Invalid)?;
        let stats = index.stats().clone();
        if stats.records == 0 {
            return Err(ImportError::Invalid("the zip holds no OSV record".into()));
        }
        let repo: RepositoryName = VULNDB_REPOSITORY.parse().expect("a valid name");
        let stream = tokio_util::io::ReaderStream::new(
            tokio::fs::File::open(&file.path)
                .await
                .map_err(|e| failed(&e))?,
        );
        self.registry
            .push_blob(actor, &repo, &digest, Some(size), Box::pin(stream))
            .await
            .map_err(|e| failed(&e))?;
        let now = now_millis();
        let tag = format!(
            "osv-{}",
            chrono::DateTime::from_timestamp_millis(now)
                .unwrap_or_default()
                .format("%Y%m%d%H%M%S%3f")
        );
        let empty = bytes::Bytes::from_static(b"{}");
        let config = Digest::sha256_of(&empty);
        let len = empty.len() as u64;
        self.registry
            .push_blob(
                actor,
                &repo,
                &config,
                Some(len),
                Box::pin(futures_util::stream::once(async move { Ok(empty) })),
            )
            .await
            .map_err(|e| failed(&e))?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": VULNDB_ARTIFACT,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/zip", "digest": digest, "size": size,
                        "annotations": {"org.opencontainers.image.title": "osv.zip"}}],
            "annotations": {
                "org.opencontainers.image.created": sbom_time(now),
                "dev.berth.vulndb.records": stats.records.to_string(),
            },
        });
        let bytes = serde_json::to_vec(&manifest).expect("json");
        let manifest_digest = self
            .registry
            .put_manifest(
                actor,
                &repo,
                &crate::oci::Reference::Tag(tag.parse().expect("a valid tag")),
                Some(OCI_MANIFEST),
                &bytes,
            )
            .await
            .map_err(|e| failed(&e))?
            .digest;
        let record = VulndbRecord {
            id: digest.to_string(),
            manifest: manifest_digest.to_string(),
            tag: tag.clone(),
            imported_at: now,
            imported_by: actor.name.clone(),
            built_at: newest,
            records: stats.records as i64,
            withdrawn: stats.withdrawn as i64,
            ecosystems: serde_json::to_string(&stats.per_ecosystem).expect("json"),
        };
        let mut event = Event::new(Kind::VulndbImported, actor, now)
            .in_repository(VULNDB_REPOSITORY)
            .with_detail(format!("{} records", stats.records));
        event.digest = Some(digest.to_string());
        event.reference = Some(tag);
        self.meta
            .add_vulndb(record.clone(), event)
            .await
            .map_err(|e| failed(&e))?;
        // Loaded here at once; other replicas load it at their next scan.
        *self.database.lock().await = Some(Loaded {
            id: record.id.clone(),
            index: Arc::new(index),
        });
        self.imported.notify_waiters();
        tracing::info!(id = %record.id, records = record.records, "vulnerability database imported");
        Ok(record)
    }
}

/// The artifact type of a stored vulnerability database.
pub const VULNDB_ARTIFACT: &str = "application/vnd.berth.vulndb.osv.v1+zip";

/// A temporary file, deleted when dropped.
struct TempFile {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl std::io::Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn tempfile_in_tmp() -> std::io::Result<TempFile> {
    let path = std::env::temp_dir().join(format!("berth-vulndb-{}.zip", uuid::Uuid::new_v4()));
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)?;
    Ok(TempFile { file, path })
}

/// The SBOM of a finished scan, as the scanner stores it.
pub fn sbom(
    repo: &RepositoryName,
    scan: &ScanRecord,
    report: &Report,
    media_type: &str,
) -> Result<String, String> {
    let info = berth_scan::sbom::ImageInfo {
        repository: repo.to_string(),
        digest: scan.manifest.clone(),
        created: sbom_time(scan.requested_at),
    };
    let made = if media_type == SPDX {
        berth_scan::sbom::spdx(&info, &report.packages)
    } else {
        berth_scan::sbom::cyclonedx(&info, &report.packages)
    };
    made.map_err(|e| e.to_string())
}

//! The scanner's workers: `ScanWorker`s drain the queue (a few per
//! replica, each claiming one scan at a time), `OnPush` queues the scans
//! of what is pushed (a consumer of the outbox, in one replica), and
//! `Rematch` matches stored inventories against a newly imported database
//! (in one replica).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{rematch, Report, Scanner};
use crate::events::Kind;
use crate::meta::{now_millis, MetaStore};
use crate::oci::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::workers::{Progress, State, Stop, Worker};

/// How often an idle worker looks at the queue when nothing woke it
/// (scans queued by another replica).
const POLL: Duration = Duration::from_secs(1);

/// Drains the scan queue, one scan at a time.
pub struct ScanWorker {
    scanner: Arc<Scanner>,
    name: &'static str,
    done: u64,
    queue: Option<u64>,
}

impl ScanWorker {
    /// The `n`th scan worker of this replica.
    pub fn new(scanner: Arc<Scanner>, n: usize) -> ScanWorker {
        // Worker names are 'static: a handful exist.
        let name: &'static str = Box::leak(format!("scanner-{n}").into_boxed_str());
        ScanWorker {
            scanner,
            name,
            done: 0,
            queue: None,
        }
    }

    /// Scans this replica was running when it died go back to the queue
    /// at once (another replica would take them when their claims expire).
    pub async fn release_abandoned(scanner: &Scanner) -> Result<u64, crate::meta::MetaError> {
        scanner.meta.release_scans_of(&scanner.worker).await
    }
}

impl Worker for ScanWorker {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn work(&mut self, stop: &Stop) -> Result<State, String> {
        let until = now_millis() + super::CLAIM_MS;
        let claimed = self
            .scanner
            .meta
            .claim_scan(&self.scanner.worker, until)
            .await
            .map_err(|e| e.to_string())?;
        let Some(job) = claimed else {
            self.queue = self.scanner.meta.scan_queue().await.ok().map(|(q, _)| q);
            return Ok(State::Idle);
        };
        self.scanner
            .run(job, stop)
            .await
            .map_err(|e| e.to_string())?;
        self.done += 1;
        Ok(State::Busy)
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            _ = self.scanner.queued.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            queue: self.queue,
            detail: Some(format!("{} scans run", self.done)),
        }
    }
}

/// The outbox consumer that queues a scan of each image pushed into a
/// project that scans on push, with the cursor moved in the same
/// transaction (so each push is queued exactly once).
pub struct OnPush {
    scanner: Arc<Scanner>,
    wake: Arc<tokio::sync::Notify>,
}

/// The outbox consumer's name.
pub const ON_PUSH: &str = "scan-on-push";

impl OnPush {
    pub fn new(scanner: Arc<Scanner>, wake: Arc<tokio::sync::Notify>) -> OnPush {
        OnPush { scanner, wake }
    }
}

fn scannable(media_type: Option<&str>) -> bool {
    media_type.is_some_and(|m| {
        [
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
        ]
        .contains(&m)
    })
}

/// The image a client's SBOM was attached to, if `digest` is one: its
/// scan is run again (it reads the SBOM when the layers list no package),
/// and the SBOM itself is not scanned.
async fn sbom_subject(meta: &MetaStore, digest: &str) -> Result<Option<String>, String> {
    let Some((media_type, content)) = meta
        .manifest_content(digest)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let Ok(m) = crate::oci::Manifest::parse(content.as_bytes(), Some(&media_type)) else {
        return Ok(None);
    };
    let sbom = super::is_client_sbom(m.artifact_type.as_deref(), m.annotations.as_ref());
    Ok(m.subject.filter(|_| sbom).map(|d| d.to_string()))
}

impl Worker for OnPush {
    fn name(&self) -> &'static str {
        ON_PUSH
    }

    async fn work(&mut self, _stop: &Stop) -> Result<State, String> {
        let meta: &MetaStore = &self.scanner.meta;
        let from = meta.cursor(ON_PUSH).await.map_err(|e| e.to_string())?;
        let events = meta
            .events_after(from, 1000)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = events.last() else {
            return Ok(State::Idle);
        };
        let to = last.cursor;
        let mut on: BTreeMap<String, bool> = BTreeMap::new();
        let mut wanted = Vec::new();
        let mut again = Vec::new();
        for e in &events {
            let e = &e.event;
            // The scanner's own pushes (SBOMs) are not images.
            if e.kind != Kind::ArtifactPushed || e.actor.kind == "system" {
                continue;
            }
            let (Some(repo), Some(digest), Some(project)) = (&e.repository, &e.digest, &e.project)
            else {
                continue;
            };
            if e.media_type.as_deref() == Some(OCI_MANIFEST) {
                if let Some(subject) = sbom_subject(meta, digest).await? {
                    again.push(subject);
                    continue;
                }
            }
            if !scannable(e.media_type.as_deref()) {
                continue;
            }
            if !on.contains_key(project) {
                let scans = meta
                    .scans_on_push(project)
                    .await
                    .map_err(|e| e.to_string())?;
                on.insert(project.clone(), scans);
            }
            if on[project] {
                wanted.push((repo.clone(), digest.clone()));
            }
        }
        meta.queue_scans_consumed(ON_PUSH, from, to, wanted, again)
            .await
            .map_err(|e| e.to_string())?;
        self.scanner.queued.notify_waiters();
        Ok(if events.len() == 1000 {
            State::Busy
        } else {
            State::Idle
        })
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Matches the stored inventories of finished scans against the database
/// in use whenever it changes; no layer is read again.
pub struct Rematch {
    scanner: Arc<Scanner>,
    matched: u64,
    /// The database being matched against, and the last manifest done.
    position: (String, String),
}

impl Rematch {
    pub fn new(scanner: Arc<Scanner>) -> Rematch {
        Rematch {
            scanner,
            matched: 0,
            position: Default::default(),
        }
    }

    /// Matches one batch; whether a full one (more may wait).
    pub async fn batch(&mut self) -> Result<bool, String> {
        const BATCH: u32 = 200;
        let Some((id, index)) = self
            .scanner
            .database()
            .await
            .map_err(|e| format!("{e:?}"))?
        else {
            return Ok(false);
        };
        if self.position.0 != id {
            self.position = (id.clone(), String::new());
        }
        let meta = &self.scanner.meta;
        let scans = meta
            .scans_to_rematch(&id, &self.position.1, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(last) = scans.last() {
            self.position.1 = last.manifest.clone();
        }
        let (index, reports) = (index.clone(), scans.clone());
        let updated = super::lane::run("matching again", move || {
            reports
                .into_iter()
                .filter_map(|s| {
                    let mut report: Report = serde_json::from_str(s.report.as_deref()?).ok()?;
                    if report.children.is_empty() {
                        rematch(&index, &mut report);
                    }
                    Some((s.manifest, report))
                })
                .collect::<Vec<_>>()
        })
        .await?;
        // An index sums its children's reports, once they are all matched
        // against this database (until then it waits for a later pass).
        let mut ready = Vec::with_capacity(updated.len());
        'reports: for (manifest, mut report) in updated {
            if !report.children.is_empty() {
                report.summary = Default::default();
                for child in &mut report.children {
                    let scan = meta.scan(&child.digest).await.map_err(|e| e.to_string())?;
                    if scan.as_ref().is_some_and(|s| {
                        s.status == "finished" && s.vulndb.as_deref() != Some(id.as_str())
                    }) {
                        continue 'reports;
                    }
                    child.summary = scan
                        .and_then(|s| serde_json::from_str(s.summary.as_deref()?).ok())
                        .unwrap_or_default();
                    report.summary.merge(&child.summary);
                }
            }
            ready.push((manifest, report));
        }
        let updated: Vec<(String, String, String)> = ready
            .into_iter()
            .map(|(manifest, report)| {
                let summary = serde_json::to_string(&report.summary).expect("json");
                (
                    manifest,
                    serde_json::to_string(&report).expect("json"),
                    summary,
                )
            })
            .collect();
        self.matched += updated.len() as u64;
        meta.rematched(&id, updated)
            .await
            .map_err(|e| e.to_string())?;
        if scans.len() < BATCH as usize {
            // The next database starts from the beginning again.
            self.position.1.clear();
            return Ok(false);
        }
        Ok(true)
    }
}

impl Worker for Rematch {
    fn name(&self) -> &'static str {
        "rematch"
    }

    async fn work(&mut self, _stop: &Stop) -> Result<State, String> {
        Ok(if self.batch().await? {
            State::Busy
        } else {
            State::Idle
        })
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            _ = self.scanner.imported.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            queue: None,
            detail: Some(format!("{} reports matched again", self.matched)),
        }
    }
}

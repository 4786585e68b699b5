//! Scanning's records: the queue and results (`scans`), the per-layer
//! inventory cache, and the vulnerability databases imported. A scan is
//! claimed by one worker at a time (on PostgreSQL possibly of another
//! replica: the claim is a row update in a SERIALIZABLE transaction, so two
//! workers cannot both win it), and holds its claim by refreshing
//! `claimed_until`; a claim that expires (its replica died) is taken again.

use sqlx::Row;

use super::{now_millis, MetaError, MetaStore};
use crate::events::Event;

/// A scan as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRecord {
    pub manifest: String,
    pub repository: String,
    /// queued, running, finished, failed or unsupported.
    pub status: String,
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub attempts: i64,
    pub progress_done: i64,
    pub progress_total: i64,
    pub error: Option<String>,
    pub vulndb: Option<String>,
    /// JSON: counts by severity.
    pub summary: Option<String>,
    /// JSON (see `scanning::Report`).
    pub report: Option<String>,
}

/// A vulnerability database as imported.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VulndbRecord {
    pub id: String,
    pub manifest: String,
    pub tag: String,
    pub imported_at: i64,
    pub imported_by: String,
    pub built_at: Option<i64>,
    pub records: i64,
    pub withdrawn: i64,
    /// JSON object: records per ecosystem.
    pub ecosystems: String,
}

const SCAN_COLUMNS: &str = "manifest, repository, status, requested_at, started_at, finished_at, attempts, progress_done, progress_total, error, vulndb, summary, report";

fn scan_of(r: &sqlx::any::AnyRow) -> Result<ScanRecord, MetaError> {
    Ok(ScanRecord {
        manifest: r.try_get("manifest")?,
        repository: r.try_get("repository")?,
        status: r.try_get("status")?,
        requested_at: r.try_get("requested_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        attempts: r.try_get("attempts")?,
        progress_done: r.try_get("progress_done")?,
        progress_total: r.try_get("progress_total")?,
        error: r.try_get("error")?,
        vulndb: r.try_get("vulndb")?,
        summary: r.try_get("summary")?,
        report: r.try_get("report")?,
    })
}

/// How a scan ended, as a worker records it.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// finished, failed or unsupported.
    pub status: &'static str,
    pub error: Option<String>,
    pub vulndb: Option<String>,
    pub summary: Option<String>,
    pub report: Option<String>,
    /// The event announcing it, written with it.
    pub event: Event,
}

impl MetaStore {
    /// Queues scans of `manifests` held by `repository`; with `again`,
    /// scans already done are queued again too. Returns how many were queued.
    pub async fn queue_scans(
        &self,
        repository: &str,
        manifests: Vec<String>,
        again: bool,
    ) -> Result<u64, MetaError> {
        let repository = repository.to_string();
        self.committer
            .write(move |conn| {
                let (repository, manifests) = (repository.clone(), manifests.clone());
                Box::pin(async move {
                    let now = now_millis();
                    let mut queued = 0;
                    for manifest in &manifests {
                        let sql = if again {
                            "INSERT INTO scans (manifest, repository, status, requested_at, not_before)
                             VALUES ($1, $2, 'queued', $3, $3)
                             ON CONFLICT (manifest) DO UPDATE SET status = 'queued', requested_at = $3,
                               not_before = $3, attempts = 0, error = NULL, claimed_by = NULL, claimed_until = NULL,
                               repository = excluded.repository
                             WHERE scans.status <> 'running'"
                        } else {
                            "INSERT INTO scans (manifest, repository, status, requested_at, not_before)
                             VALUES ($1, $2, 'queued', $3, $3) ON CONFLICT (manifest) DO NOTHING"
                        };
                        queued += sqlx::query(sql)
                            .bind(manifest)
                            .bind(&repository)
                            .bind(now)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                    }
                    Ok(queued)
                })
            })
            .await
    }

    /// Claims the oldest queued scan that is due, or a running one whose
    /// claim expired, for `worker` until `until` (Unix ms).
    pub async fn claim_scan(
        &self,
        worker: &str,
        until: i64,
    ) -> Result<Option<ScanRecord>, MetaError> {
        let worker = worker.to_string();
        self.committer
            .write(move |conn| {
                let worker = worker.clone();
                Box::pin(async move {
                    let now = now_millis();
                    let sql = format!(
                        "UPDATE scans SET status = 'running', claimed_by = $1, claimed_until = $2,
                           started_at = COALESCE(started_at, $3), attempts = attempts + 1
                         WHERE manifest = (
                           SELECT manifest FROM scans
                           WHERE (status = 'queued' AND not_before <= $3)
                              OR (status = 'running' AND claimed_until < $3)
                           ORDER BY not_before LIMIT 1)
                         RETURNING {SCAN_COLUMNS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(&worker)
                        .bind(until)
                        .bind(now)
                        .fetch_optional(&mut *conn)
                        .await?;
                    row.as_ref().map(scan_of).transpose()
                })
            })
            .await
    }

    /// Keeps `worker`'s claim of a scan until `until` and records its
    /// progress; false if the claim was lost (it expired and was taken).
    pub async fn scan_progress(
        &self,
        manifest: &str,
        worker: &str,
        until: i64,
        done: i64,
        total: i64,
    ) -> Result<bool, MetaError> {
        let (manifest, worker) = (manifest.to_string(), worker.to_string());
        self.committer
            .write(move |conn| {
                let (manifest, worker) = (manifest.clone(), worker.clone());
                Box::pin(async move {
                    let n = sqlx::query(
                        "UPDATE scans SET claimed_until = $3, progress_done = $4, progress_total = $5
                         WHERE manifest = $1 AND status = 'running' AND claimed_by = $2",
                    )
                    .bind(&manifest)
                    .bind(&worker)
                    .bind(until)
                    .bind(done)
                    .bind(total)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }

    /// Puts a claimed scan back in the queue, due at `not_before` (an index
    /// waiting for its children, a retry after an outage).
    pub async fn requeue_scan(
        &self,
        manifest: &str,
        worker: &str,
        not_before: i64,
    ) -> Result<(), MetaError> {
        let (manifest, worker) = (manifest.to_string(), worker.to_string());
        self.committer
            .write(move |conn| {
                let (manifest, worker) = (manifest.clone(), worker.clone());
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE scans SET status = 'queued', not_before = $3, claimed_by = NULL, claimed_until = NULL
                         WHERE manifest = $1 AND claimed_by = $2",
                    )
                    .bind(&manifest)
                    .bind(&worker)
                    .bind(not_before)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Records how a claimed scan ended, with its event; false if the claim
    /// was lost meanwhile (another worker's result stands).
    pub async fn finish_scan(
        &self,
        manifest: &str,
        worker: &str,
        outcome: ScanOutcome,
    ) -> Result<bool, MetaError> {
        let (manifest, worker) = (manifest.to_string(), worker.to_string());
        self.committer
            .write(move |conn| {
                let (manifest, worker, outcome) = (manifest.clone(), worker.clone(), outcome.clone());
                Box::pin(async move {
                    let n = sqlx::query(
                        "UPDATE scans SET status = $3, finished_at = $4, error = $5, vulndb = $6, report = $7,
                           summary = $8, claimed_by = NULL, claimed_until = NULL, progress_done = progress_total
                         WHERE manifest = $1 AND status = 'running' AND claimed_by = $2",
                    )
                    .bind(&manifest)
                    .bind(&worker)
                    .bind(outcome.status)
                    .bind(now_millis())
                    .bind(&outcome.error)
                    .bind(&outcome.vulndb)
                    .bind(&outcome.report)
                    .bind(&outcome.summary)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if n == 1 {
                        super::outbox::append(conn, &[outcome.event]).await?;
                    }
                    Ok(n == 1)
                })
            })
            .await
    }

    /// Scans `worker` (a replica's id) was running when its process died:
    /// queued again now rather than when their claims expire.
    pub async fn release_scans_of(&self, worker: &str) -> Result<u64, MetaError> {
        let worker = worker.to_string();
        self.committer
            .write(move |conn| {
                let worker = worker.clone();
                Box::pin(async move {
                    Ok(sqlx::query(
                        "UPDATE scans SET status = 'queued', claimed_by = NULL, claimed_until = NULL
                         WHERE status = 'running' AND claimed_by = $1",
                    )
                    .bind(&worker)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected())
                })
            })
            .await
    }

    pub async fn scan(&self, manifest: &str) -> Result<Option<ScanRecord>, MetaError> {
        let row = sqlx::query(&format!(
            "SELECT {SCAN_COLUMNS} FROM scans WHERE manifest = $1"
        ))
        .bind(manifest)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(scan_of).transpose()
    }

    /// Scans waiting, and running, for the metrics and the worker's status.
    pub async fn scan_queue(&self) -> Result<(u64, u64), MetaError> {
        let (queued, running): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM scans WHERE status = 'queued'),
                    (SELECT COUNT(*) FROM scans WHERE status = 'running')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok((queued as u64, running as u64))
    }

    /// Finished scans matched against another database than `vulndb`, at
    /// most `limit`, in manifest order after `after`.
    pub async fn scans_to_rematch(
        &self,
        vulndb: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ScanRecord>, MetaError> {
        let rows = sqlx::query(&format!(
            "SELECT {SCAN_COLUMNS} FROM scans
             WHERE status = 'finished' AND report IS NOT NULL AND (vulndb IS NULL OR vulndb <> $1) AND manifest > $2
             ORDER BY manifest LIMIT $3"
        ))
        .bind(vulndb)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(scan_of).collect()
    }

    /// Stores reports matched again against `vulndb`, unless a scan
    /// finished meanwhile (its report is newer).
    pub async fn rematched(
        &self,
        vulndb: &str,
        reports: Vec<(String, String, String)>,
    ) -> Result<(), MetaError> {
        let vulndb = vulndb.to_string();
        let reports = std::sync::Arc::new(reports);
        self.committer
            .write(move |conn| {
                let (vulndb, reports) = (vulndb.clone(), reports.clone());
                Box::pin(async move {
                    for (manifest, report, summary) in reports.iter() {
                        sqlx::query(
                            "UPDATE scans SET report = $2, vulndb = $3, summary = $4
                             WHERE manifest = $1 AND status = 'finished' AND (vulndb IS NULL OR vulndb <> $3)",
                        )
                        .bind(manifest)
                        .bind(report)
                        .bind(&vulndb)
                        .bind(summary)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    // ---- the layer cache ----------------------------------------------------

    pub async fn layer_inventory(
        &self,
        digest: &str,
        format: i64,
    ) -> Result<Option<String>, MetaError> {
        Ok(sqlx::query_scalar(
            "SELECT inventory FROM layer_inventories WHERE digest = $1 AND format = $2",
        )
        .bind(digest)
        .bind(format)
        .fetch_optional(&self.reader)
        .await?)
    }

    pub async fn store_layer_inventory(
        &self,
        digest: &str,
        format: i64,
        inventory: String,
    ) -> Result<(), MetaError> {
        let digest = digest.to_string();
        let inventory = std::sync::Arc::new(inventory);
        self.committer
            .write(move |conn| {
                let (digest, inventory) = (digest.clone(), inventory.clone());
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO layer_inventories (digest, format, inventory, created_at)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(&digest)
                    .bind(format)
                    .bind(inventory.as_str())
                    .bind(now_millis())
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    // ---- vulnerability databases --------------------------------------------

    /// Records an imported database; from then on it is the one in use.
    pub async fn add_vulndb(&self, record: VulndbRecord, event: Event) -> Result<(), MetaError> {
        self.committer
            .write(move |conn| {
                let (r, event) = (record.clone(), event.clone());
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO vulndb_versions (id, manifest, tag, imported_at, imported_by, built_at, records, withdrawn, ecosystems)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (id) DO UPDATE SET imported_at = excluded.imported_at, imported_by = excluded.imported_by",
                    )
                    .bind(&r.id)
                    .bind(&r.manifest)
                    .bind(&r.tag)
                    .bind(r.imported_at)
                    .bind(&r.imported_by)
                    .bind(r.built_at)
                    .bind(r.records)
                    .bind(r.withdrawn)
                    .bind(&r.ecosystems)
                    .execute(&mut *conn)
                    .await?;
                    super::outbox::append(conn, &[event]).await?;
                    Ok(())
                })
            })
            .await
    }

    /// The databases imported, newest (the one in use) first.
    pub async fn vulndbs(&self, limit: u32) -> Result<Vec<VulndbRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT id, manifest, tag, imported_at, imported_by, built_at, records, withdrawn, ecosystems
             FROM vulndb_versions ORDER BY imported_at DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Whether a project scans what is pushed into it (true for a
    /// repository whose project has no row: only administrators push there).
    pub async fn scans_on_push(&self, project: &str) -> Result<bool, MetaError> {
        let on: Option<super::db::Flag> = sqlx::query_scalar(
            "SELECT CAST(scan_on_push AS INTEGER) FROM projects WHERE name = $1",
        )
        .bind(project)
        .fetch_optional(&self.reader)
        .await?;
        Ok(on.is_none_or(bool::from))
    }

    /// The stored bytes of a manifest, by digest (any repository).
    pub async fn manifest_content(
        &self,
        digest: &str,
    ) -> Result<Option<(String, String)>, MetaError> {
        Ok(
            sqlx::query_as("SELECT media_type, content FROM manifests WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.reader)
                .await?,
        )
    }
}

impl MetaStore {
    /// Queues scans of `wanted` (repository, manifest) and queues again
    /// the scans of `again` (manifests already scanned, or being queued: an
    /// SBOM was attached to them; one running is left to finish) for the
    /// outbox consumer `consumer`, and moves its cursor from `from` to `to`,
    /// in one transaction: each push is acted on exactly once.
    pub async fn queue_scans_consumed(
        &self,
        consumer: &str,
        from: super::EventCursor,
        to: super::EventCursor,
        wanted: Vec<(String, String)>,
        again: Vec<String>,
    ) -> Result<(), MetaError> {
        let consumer = consumer.to_string();
        self.committer
            .write(move |conn| {
                let (consumer, wanted, again) = (consumer.clone(), wanted.clone(), again.clone());
                Box::pin(async move {
                    let now = now_millis();
                    for (repository, manifest) in &wanted {
                        sqlx::query(
                            "INSERT INTO scans (manifest, repository, status, requested_at, not_before)
                             VALUES ($1, $2, 'queued', $3, $3) ON CONFLICT (manifest) DO NOTHING",
                        )
                        .bind(manifest)
                        .bind(repository)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    }
                    for manifest in &again {
                        sqlx::query(
                            "UPDATE scans SET status = 'queued', requested_at = $2, not_before = $2,
                               attempts = 0, error = NULL, claimed_by = NULL, claimed_until = NULL
                             WHERE manifest = $1 AND status <> 'running'",
                        )
                        .bind(manifest)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    }
                    super::outbox::advance(conn, &consumer, from, to, now).await
                })
            })
            .await
    }
}

impl MetaStore {
    /// For each of `layers`, how many artifacts of `project` other than
    /// `manifest` reference it (layers with none are left out).
    pub async fn layer_sharing(
        &self,
        project: &str,
        manifest: &str,
        layers: &[String],
    ) -> Result<std::collections::BTreeMap<String, u64>, MetaError> {
        let mut shared = std::collections::BTreeMap::new();
        for layer in layers {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(DISTINCT rm.digest) FROM manifest_blobs mb
                 JOIN repository_manifests rm ON rm.digest = mb.manifest
                 JOIN repositories r ON r.name = rm.repository
                 WHERE mb.blob = $1 AND r.project = $2 AND mb.manifest <> $3",
            )
            .bind(layer)
            .bind(project)
            .bind(manifest)
            .fetch_one(&self.reader)
            .await?;
            if n > 0 {
                shared.insert(layer.clone(), n as u64);
            }
        }
        Ok(shared)
    }
}

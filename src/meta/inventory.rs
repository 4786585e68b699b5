//! Listings for the management API: repositories of a project with their
//! counts, artifacts with sizes, tags and pull statistics.

use sqlx::Row;

use super::{digest, MetaError, MetaStore};
use crate::oci::{Digest, RepositoryName};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepositorySummary {
    pub name: String,
    pub created_at: i64,
    pub artifact_count: i64,
    pub tag_count: i64,
    pub pull_count: i64,
    pub last_pushed_at: Option<i64>,
    pub last_pulled_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ArtifactSummary {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    /// The manifest and every blob it references, each counted once.
    pub size: u64,
    pub tags: Vec<String>,
    pub pushed_at: i64,
    pub last_pulled_at: Option<i64>,
    pub pull_count: i64,
    /// Its scan's status and summary (JSON), if it was scanned.
    pub scan_status: Option<String>,
    pub scan_summary: Option<String>,
}

/// A tag, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagRecord {
    pub name: String,
    pub digest: String,
    pub updated_at: i64,
}

impl MetaStore {
    /// Repositories of a project in name order after `after`.
    pub async fn repository_summaries(
        &self,
        project: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RepositorySummary>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT r.name, r.created_at,
               (SELECT COUNT(*) FROM repository_manifests rm WHERE rm.repository = r.name) AS artifact_count,
               (SELECT COUNT(*) FROM tags t WHERE t.repository = r.name) AS tag_count,
               (SELECT CAST(COALESCE(SUM(rm.pull_count), 0) AS BIGINT) FROM repository_manifests rm WHERE rm.repository = r.name) AS pull_count,
               (SELECT MAX(rm.pushed_at) FROM repository_manifests rm WHERE rm.repository = r.name) AS last_pushed_at,
               (SELECT MAX(rm.last_pulled_at) FROM repository_manifests rm WHERE rm.repository = r.name) AS last_pulled_at
             FROM repositories r WHERE r.project = $1 AND r.name > $2 ORDER BY r.name LIMIT $3",
        )
        .bind(project)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Artifacts (manifests) of a repository, newest push first; `after` is
    /// the (pushed_at, digest) of the last one of the previous page.
    pub async fn artifacts(
        &self,
        repo: &RepositoryName,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<ArtifactSummary>, MetaError> {
        let (after_at, after_digest) = after.unwrap_or((i64::MAX, ""));
        let rows = sqlx::query(
            "SELECT rm.digest, m.media_type, m.artifact_type, m.subject, rm.pushed_at, rm.last_pulled_at, rm.pull_count,
               m.size + (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b
                         WHERE b.digest IN (SELECT mb.blob FROM manifest_blobs mb WHERE mb.manifest = m.digest)),
               s.status, s.summary
             FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest
             LEFT JOIN scans s ON s.manifest = rm.digest
             WHERE rm.repository = $1 AND (rm.pushed_at < $2 OR (rm.pushed_at = $2 AND rm.digest < $3))
             ORDER BY rm.pushed_at DESC, rm.digest DESC LIMIT $4",
        )
        .bind(repo.as_str())
        .bind(after_at)
        .bind(if after.is_some() { after_digest } else { "~" })
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let mut artifacts = Vec::with_capacity(rows.len());
        for r in rows {
            let d: String = r.get(0);
            let tags = sqlx::query_scalar(
                "SELECT name FROM tags WHERE repository = $1 AND digest = $2 ORDER BY name",
            )
            .bind(repo.as_str())
            .bind(&d)
            .fetch_all(&self.reader)
            .await?;
            artifacts.push(ArtifactSummary {
                digest: digest(d)?,
                media_type: r.get(1),
                artifact_type: r.get(2),
                subject: r.get(3),
                pushed_at: r.get(4),
                last_pulled_at: r.get(5),
                pull_count: r.get(6),
                size: r.get::<i64, _>(7) as u64,
                scan_status: r.get(8),
                scan_summary: r.get(9),
                tags,
            });
        }
        Ok(artifacts)
    }

    /// Tags of a repository with what they point to, in name order after `after`.
    pub async fn tag_records(
        &self,
        repo: &RepositoryName,
        after: &str,
        limit: u32,
    ) -> Result<Vec<TagRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT name, digest, updated_at FROM tags WHERE repository = $1 AND name > $2
             ORDER BY name LIMIT $3",
        )
        .bind(repo.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }
}

//! Project quotas and usage. Usage is computed from the graph, never
//! stored: bytes of the distinct manifests of the project's repositories and
//! of the distinct blobs those manifests reference (a layer shared by two
//! repositories counts once), and the number of manifests in its
//! repositories. The push that would exceed a limit is rolled back in its
//! own transaction (`writes::put_manifest`).

use sqlx::SqliteConnection;

use super::{MetaError, MetaStore, Quota};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: i64,
    pub artifacts: i64,
}

/// `$1` is a repository filter: the project's repositories, or one.
const USAGE: &str = "
    SELECT
      (SELECT COUNT(*) FROM repository_manifests rm WHERE rm.repository IN (REPOS)),
      (SELECT COALESCE(SUM(m.size), 0) FROM manifests m
         WHERE m.digest IN (SELECT rm.digest FROM repository_manifests rm WHERE rm.repository IN (REPOS))),
      (SELECT COALESCE(SUM(b.size), 0) FROM blobs b
         WHERE b.digest IN (SELECT mb.blob FROM manifest_blobs mb JOIN repository_manifests rm ON rm.digest = mb.manifest
                            WHERE rm.repository IN (REPOS)))";

fn usage_sql(one_repository: bool) -> String {
    let repos = if one_repository {
        "$1"
    } else {
        "SELECT name FROM repositories WHERE project = $1"
    };
    USAGE.replace("REPOS", repos)
}

fn usage_of(row: (i64, i64, i64)) -> Usage {
    Usage {
        artifacts: row.0,
        bytes: row.1 + row.2,
    }
}

/// A project's usage, inside a transaction.
pub(super) async fn project_usage_in(
    conn: &mut SqliteConnection,
    project: &str,
) -> Result<Usage, MetaError> {
    let row: (i64, i64, i64) = sqlx::query_as(&usage_sql(false))
        .bind(project)
        .fetch_one(&mut *conn)
        .await?;
    Ok(usage_of(row))
}

/// The bytes that `manifest`, just stored in `repository`, adds to its
/// project's usage: itself and the blobs it references, except what another
/// manifest row of the project already counts. Indexed lookups only.
pub(super) async fn added_bytes(
    conn: &mut SqliteConnection,
    repository: &str,
    project: &str,
    manifest: &str,
) -> Result<i64, MetaError> {
    // "Counted already" = reached through a row of the project other than
    // the new (repository, manifest) one.
    Ok(sqlx::query_scalar(
        "SELECT
           (SELECT CASE WHEN EXISTS (SELECT 1 FROM repository_manifests rm JOIN repositories r ON r.name = rm.repository
                                     WHERE rm.digest = $3 AND r.project = $2 AND rm.repository <> $1)
                   THEN 0 ELSE (SELECT size FROM manifests WHERE digest = $3) END)
         + (SELECT COALESCE(SUM(b.size), 0) FROM blobs b
            WHERE b.digest IN (SELECT blob FROM manifest_blobs WHERE manifest = $3)
              AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb
                              JOIN repository_manifests rm ON rm.digest = mb.manifest
                              JOIN repositories r ON r.name = rm.repository
                              WHERE mb.blob = b.digest AND r.project = $2
                                AND NOT (rm.digest = $3 AND rm.repository = $1)))",
    )
    .bind(repository)
    .bind(project)
    .bind(manifest)
    .fetch_one(&mut *conn)
    .await?)
}

/// Refuses (rolling the transaction back) a change that took the project
/// over a limit; a change that does not add to the usage always passes, so
/// lowering a limit under the usage blocks only growth.
pub(super) fn check_quota(
    project: &str,
    quota: Quota,
    before: Usage,
    after: Usage,
) -> Result<(), MetaError> {
    let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
    if let Some(limit) = quota.bytes {
        if after.bytes > limit && after.bytes > before.bytes {
            return Err(MetaError::Refused(format!(
                "quota of project {project:?} exceeded: this push would bring its storage to {} bytes ({:.1} MiB), over its limit of {limit} bytes ({:.1} MiB); it uses {} bytes now",
                after.bytes, mib(after.bytes), mib(limit), before.bytes
            )));
        }
    }
    if let Some(limit) = quota.artifacts {
        if after.artifacts > limit && after.artifacts > before.artifacts {
            return Err(MetaError::Refused(format!(
                "quota of project {project:?} exceeded: it holds {} artifacts, its limit is {limit}",
                before.artifacts
            )));
        }
    }
    Ok(())
}

impl MetaStore {
    pub async fn project_usage(&self, project: &str) -> Result<Usage, MetaError> {
        let row: (i64, i64, i64) = sqlx::query_as(&usage_sql(false))
            .bind(project)
            .fetch_one(&self.reader)
            .await?;
        Ok(usage_of(row))
    }

    pub async fn repository_usage(&self, repository: &str) -> Result<Usage, MetaError> {
        let row: (i64, i64, i64) = sqlx::query_as(&usage_sql(true))
            .bind(repository)
            .fetch_one(&self.reader)
            .await?;
        Ok(usage_of(row))
    }

    /// Names of the project's repositories.
    pub async fn project_repositories(&self, project: &str) -> Result<Vec<String>, MetaError> {
        Ok(
            sqlx::query_scalar("SELECT name FROM repositories WHERE project = $1 ORDER BY name")
                .bind(project)
                .fetch_all(&self.reader)
                .await?,
        )
    }

    pub async fn project_quota(&self, project: &str) -> Result<Quota, MetaError> {
        let row: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT quota_bytes, quota_artifacts FROM projects WHERE name = $1")
                .bind(project)
                .fetch_optional(&self.reader)
                .await?;
        let (bytes, artifacts) = row.unwrap_or_default();
        Ok(Quota { bytes, artifacts })
    }

    /// Sets a project's limits; false if there is no such project.
    pub async fn set_project_quota(&self, project: &str, quota: Quota) -> Result<bool, MetaError> {
        let project = project.to_string();
        self.committer
            .write(move |conn| {
                let project = project.clone();
                Box::pin(async move {
                    let n = sqlx::query("UPDATE projects SET quota_bytes = $1, quota_artifacts = $2 WHERE name = $3")
                        .bind(quota.bytes)
                        .bind(quota.artifacts)
                        .bind(&project)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }
}

impl MetaStore {
    /// Every blob row whose bytes should be on disk: (digest, nonce, size).
    pub async fn live_blobs(&self) -> Result<Vec<(String, String, i64)>, MetaError> {
        Ok(
            sqlx::query_as("SELECT digest, nonce, size FROM blobs WHERE deleting_at IS NULL")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    /// Projects that hold repositories.
    pub async fn projects_in_use(&self) -> Result<Vec<String>, MetaError> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT project FROM repositories ORDER BY project")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    /// The manifest documents in a project's repositories, each once:
    /// (digest, media type, content).
    pub async fn project_manifest_documents(
        &self,
        project: &str,
    ) -> Result<Vec<(String, String, String)>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT m.digest, m.media_type, m.content FROM manifests m
             WHERE m.digest IN (SELECT rm.digest FROM repository_manifests rm
                                JOIN repositories r ON r.name = rm.repository WHERE r.project = $1)",
        )
        .bind(project)
        .fetch_all(&self.reader)
        .await?)
    }
}

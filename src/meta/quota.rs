//! Project quotas and usage. A project's usage is kept in counters
//! (`project_usage`, `project_content`): bytes of the distinct manifests of
//! its repositories and of the distinct blobs those manifests reference (a
//! layer shared by two repositories counts once), and the number of
//! manifests in its repositories. They change only with the
//! `repository_manifests` rows, in the same transaction (`count_added`,
//! `count_removed`), and `berth check` recounts them from the documents. The
//! push that would exceed a limit is rolled back in its own transaction
//! (`writes::put_manifest`).

use super::db::Conn;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{MetaError, MetaStore, Quota};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: i64,
    pub artifacts: i64,
}

/// What one (repository, manifest) row reaches: the manifest (`manifest`, a
/// placeholder) and the blobs it references, as (digest, size). A manifest
/// never references itself, so the two parts are disjoint.
fn reached(manifest: &str) -> String {
    format!(
        "SELECT digest, size FROM manifests WHERE digest = {manifest}
         UNION ALL
         SELECT b.digest, b.size FROM manifest_blobs mb JOIN blobs b ON b.digest = mb.blob WHERE mb.manifest = {manifest}"
    )
}

/// Statements that count a row (a repository of `project`, `manifest`)
/// just added, once its edges are stored: each digest it reaches gains a
/// reference, and those the project did not reach before add their size.
/// Arguments are placeholders of the caller's script. Indexed lookups only.
pub(super) fn count_added(project: &str, manifest: &str) -> [String; 2] {
    let reached = reached(manifest);
    [
        format!(
            "INSERT INTO project_usage (project, bytes, artifacts)
               SELECT {project}, CAST(COALESCE(SUM(r.size), 0) AS BIGINT), 1 FROM ({reached}) r
               WHERE NOT EXISTS (SELECT 1 FROM project_content pc WHERE pc.project = {project} AND pc.digest = r.digest)
               ON CONFLICT (project) DO UPDATE SET bytes = project_usage.bytes + excluded.bytes,
                                                   artifacts = project_usage.artifacts + 1"
        ),
        format!(
            "INSERT INTO project_content (project, digest, size, refs)
               SELECT {project}, r.digest, r.size, 1 FROM ({reached}) r WHERE true
               ON CONFLICT (project, digest) DO UPDATE SET refs = project_content.refs + 1"
        ),
    ]
}

/// A statement reading `project`'s usage (a placeholder): no row while the
/// project has never held an artifact.
pub(super) fn select_usage(project: &str) -> String {
    format!("SELECT bytes, artifacts FROM project_usage WHERE project = {project}")
}

/// The usage before and after a change, from the rows of `select_usage`
/// run before and after it.
pub(super) fn before_and_after(rows: Vec<AnyRow>) -> Result<(Usage, Usage), MetaError> {
    let usage = |row: &AnyRow| -> Result<Usage, MetaError> {
        Ok(Usage {
            bytes: row.try_get(0)?,
            artifacts: row.try_get(1)?,
        })
    };
    match rows.as_slice() {
        [after] => Ok((Usage::default(), usage(after)?)),
        [before, after] => Ok((usage(before)?, usage(after)?)),
        _ => Err(MetaError::Corrupt(format!(
            "{} usage rows read around a push",
            rows.len()
        ))),
    }
}

/// Counts the removal of the row (`repository`, `manifest`), run before the
/// row is deleted: nothing if there is no such row.
pub(super) async fn count_removed(
    conn: &mut Conn,
    repository: &str,
    manifest: &str,
) -> Result<(), MetaError> {
    let reached = reached("$2");
    super::db::execute_all(conn, &format!(
        "UPDATE project_content SET refs = refs - 1
           WHERE project = (SELECT project FROM repositories WHERE name = $1)
             AND digest IN (SELECT digest FROM ({reached}) r)
             AND EXISTS (SELECT 1 FROM repository_manifests WHERE repository = $1 AND digest = $2);
         UPDATE project_usage
           SET artifacts = artifacts - 1,
               bytes = bytes - (SELECT CAST(COALESCE(SUM(pc.size), 0) AS BIGINT) FROM project_content pc
                                WHERE pc.project = project_usage.project AND pc.refs = 0
                                  AND pc.digest IN (SELECT digest FROM ({reached}) r))
           WHERE project = (SELECT project FROM repositories WHERE name = $1)
             AND EXISTS (SELECT 1 FROM repository_manifests WHERE repository = $1 AND digest = $2);
         DELETE FROM project_content
           WHERE project = (SELECT project FROM repositories WHERE name = $1)
             AND refs = 0 AND digest IN (SELECT digest FROM ({reached}) r)"
    ), |q| q.bind(repository).bind(manifest)).await?;
    Ok(())
}

/// A project's usage, inside a transaction.
pub(super) async fn project_usage_in(conn: &mut Conn, project: &str) -> Result<Usage, MetaError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT bytes, artifacts FROM project_usage WHERE project = $1")
            .bind(project)
            .fetch_optional(&mut *conn)
            .await?;
    let (bytes, artifacts) = row.unwrap_or_default();
    Ok(Usage { bytes, artifacts })
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

/// The share of a limit at which a push that crosses it is announced
/// (`quota.warning`).
const WARNING_PERCENT: i64 = 80;

/// A warning when this change took the project's usage across
/// `WARNING_PERCENT` of a limit (None otherwise: each crossing is
/// announced once, not every push above it).
pub(super) fn warning(project: &str, quota: Quota, before: Usage, after: Usage) -> Option<String> {
    let crossed = |limit: Option<i64>, before: i64, after: i64| {
        limit.filter(|&l| before * 100 < l * WARNING_PERCENT && after * 100 >= l * WARNING_PERCENT)
    };
    if let Some(limit) = crossed(quota.bytes, before.bytes, after.bytes) {
        return Some(format!(
            "project {project:?} uses {} of its {limit} bytes ({}%)",
            after.bytes,
            after.bytes * 100 / limit.max(1)
        ));
    }
    crossed(quota.artifacts, before.artifacts, after.artifacts).map(|limit| {
        format!(
            "project {project:?} holds {} of its {limit} artifacts",
            after.artifacts
        )
    })
}

impl MetaStore {
    pub async fn project_usage(&self, project: &str) -> Result<Usage, MetaError> {
        let mut conn = self.reader.acquire().await?;
        project_usage_in(&mut conn, project).await
    }

    /// What one repository's artifacts hold, counted from the graph (what
    /// the repository holds alone; shared content counts in each).
    pub async fn repository_usage(&self, repository: &str) -> Result<Usage, MetaError> {
        let (artifacts, manifest_bytes, blob_bytes): (i64, i64, i64) = sqlx::query_as(
            "SELECT
               (SELECT COUNT(*) FROM repository_manifests WHERE repository = $1),
               (SELECT CAST(COALESCE(SUM(m.size), 0) AS BIGINT) FROM manifests m
                  WHERE m.digest IN (SELECT digest FROM repository_manifests WHERE repository = $1)),
               (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b
                  WHERE b.digest IN (SELECT mb.blob FROM manifest_blobs mb JOIN repository_manifests rm ON rm.digest = mb.manifest
                                     WHERE rm.repository = $1))",
        )
        .bind(repository)
        .fetch_one(&self.reader)
        .await?;
        Ok(Usage {
            artifacts,
            bytes: manifest_bytes + blob_bytes,
        })
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

    /// The artifacts of a project: its (repository, manifest) rows.
    pub async fn project_artifact_rows(&self, project: &str) -> Result<i64, MetaError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM repository_manifests rm JOIN repositories r ON r.name = rm.repository WHERE r.project = $1",
        )
        .bind(project)
        .fetch_one(&self.reader)
        .await?)
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;

    /// An installation from before the counters (migrations up to 0006)
    /// gets them filled from its graph by migration 0007: shared content
    /// once per project, a digest reached by two artifacts once.
    #[tokio::test]
    async fn the_migration_fills_the_counters_from_the_graph() {
        let dir = std::env::temp_dir().join(format!("berth-quota-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("berth.db");
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        let mut before = sqlx::migrate::Migrator {
            migrations: Cow::Owned(
                super::super::MIGRATIONS
                    .migrations
                    .iter()
                    .filter(|m| m.version <= 6)
                    .cloned()
                    .collect(),
            ),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        before.set_ignore_missing(true);
        before.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO repositories VALUES ('a/x', 'a', 0), ('a/y', 'a', 0), ('b/z', 'b', 0);
             INSERT INTO blobs (digest, size, created_at, nonce) VALUES ('sha256:l1', 100, 0, 'n'), ('sha256:l2', 20, 0, 'n');
             INSERT INTO manifests (digest, media_type, size, content, created_at)
               VALUES ('sha256:m1', 't', 3, 'abc', 0), ('sha256:m2', 't', 5, 'abcde', 0);
             INSERT INTO manifest_blobs VALUES ('sha256:m1', 'sha256:l1', 't'), ('sha256:m2', 'sha256:l1', 't'), ('sha256:m2', 'sha256:l2', 't');
             INSERT INTO repository_manifests (repository, digest, pushed_at)
               VALUES ('a/x', 'sha256:m1', 0), ('a/y', 'sha256:m1', 0), ('a/y', 'sha256:m2', 0), ('b/z', 'sha256:m1', 0);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let meta = MetaStore::open_sqlite(&path).await.unwrap();
        let a = meta.project_usage("a").await.unwrap();
        assert_eq!(
            a,
            Usage {
                bytes: 3 + 5 + 100 + 20,
                artifacts: 3
            }
        );
        let b = meta.project_usage("b").await.unwrap();
        assert_eq!(
            b,
            Usage {
                bytes: 3 + 100,
                artifacts: 1
            }
        );
        let refs: i64 = sqlx::query_scalar(
            "SELECT refs FROM project_content WHERE project = 'a' AND digest = 'sha256:l1'",
        )
        .fetch_one(&meta.reader)
        .await
        .unwrap();
        assert_eq!(refs, 3, "reached through three artifacts of project a");

        // Removing artifacts lowers the counters, shared content last.
        for (repo, digest, expected) in [
            (
                "a/x",
                "sha256:m1",
                Usage {
                    bytes: 128,
                    artifacts: 2,
                },
            ),
            (
                "a/y",
                "sha256:m1",
                Usage {
                    bytes: 125,
                    artifacts: 1,
                },
            ),
            (
                "a/y",
                "sha256:m1",
                Usage {
                    bytes: 125,
                    artifacts: 1,
                },
            ),
            ("a/y", "sha256:m2", Usage::default()),
        ] {
            let (r, d) = (repo.to_string(), digest.to_string());
            meta.committer
                .write(move |conn| {
                    let (repo, digest) = (r.clone(), d.clone());
                    Box::pin(async move {
                        super::super::writes::remove_repository_manifest(conn, &repo, &digest, 0)
                            .await
                    })
                })
                .await
                .unwrap();
            assert_eq!(
                meta.project_usage("a").await.unwrap(),
                expected,
                "{repo}@{digest} removed"
            );
        }
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM project_content WHERE project = 'a'")
                .fetch_one(&meta.reader)
                .await
                .unwrap();
        assert_eq!(left, 0);
        assert_eq!(
            meta.project_usage("b").await.unwrap(),
            b,
            "another project is apart"
        );
        meta.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

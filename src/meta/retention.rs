//! Retention policies and runs as stored, and the facts a run evaluates.

use super::{now_millis, MetaError, MetaStore};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetentionPolicyRecord {
    pub id: String,
    pub project: String,
    pub rules: String,
    pub schedule: Option<String>,
    pub next_run_at: Option<i64>,
    pub created_at: i64,
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetentionRunRecord {
    pub id: String,
    pub policy: String,
    pub project: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    #[sqlx(try_from = "super::db::Flag")]
    pub dry_run: bool,
    pub status: String,
    pub removed: String,
    pub protected: String,
    pub error: Option<String>,
}

/// One tag of a project: (repository, tag, digest, pushed_at, last pull of its manifest).
pub type TagRow = (String, String, String, i64, Option<i64>);

const POLICY_COLUMNS: &str = "id, project, rules, schedule, next_run_at, created_at, created_by";
const RUN_COLUMNS: &str =
    "id, policy, project, started_at, finished_at, CAST(dry_run AS INTEGER) AS dry_run, status, removed, protected, error";

impl MetaStore {
    pub async fn retention_policies(
        &self,
        project: &str,
    ) -> Result<Vec<RetentionPolicyRecord>, MetaError> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM retention_policies WHERE project = $1 ORDER BY id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(project)
            .fetch_all(&self.reader)
            .await?)
    }

    pub async fn retention_policy(
        &self,
        id: &str,
    ) -> Result<Option<RetentionPolicyRecord>, MetaError> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM retention_policies WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Scheduled policies whose next run is due.
    pub async fn due_retention_policies(
        &self,
        now: i64,
    ) -> Result<Vec<RetentionPolicyRecord>, MetaError> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM retention_policies WHERE next_run_at <= $1 ORDER BY next_run_at"
        );
        Ok(sqlx::query_as(&sql)
            .bind(now)
            .fetch_all(&self.reader)
            .await?)
    }

    /// Adds a policy; false if its project does not exist.
    pub async fn add_retention_policy(&self, p: RetentionPolicyRecord) -> Result<bool, MetaError> {
        self.committer
            .write(move |conn| {
                let p = p.clone();
                Box::pin(async move {
                    let n = sqlx::query(
                        "INSERT INTO retention_policies (id, project, rules, schedule, next_run_at, created_at, created_by)
                         SELECT $1, name, $3, $4, $5, $6, $7 FROM projects WHERE name = $2",
                    )
                    .bind(&p.id)
                    .bind(&p.project)
                    .bind(&p.rules)
                    .bind(&p.schedule)
                    .bind(p.next_run_at)
                    .bind(now_millis())
                    .bind(&p.created_by)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }

    pub async fn delete_retention_policy(
        &self,
        project: &str,
        id: &str,
    ) -> Result<bool, MetaError> {
        let (project, id) = (project.to_string(), id.to_string());
        self.committer
            .write(move |conn| {
                let (project, id) = (project.clone(), id.clone());
                Box::pin(async move {
                    let n = sqlx::query(
                        "DELETE FROM retention_policies WHERE project = $1 AND id = $2",
                    )
                    .bind(&project)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }

    pub async fn set_next_retention_run(
        &self,
        id: &str,
        next: Option<i64>,
    ) -> Result<(), MetaError> {
        let id = id.to_string();
        self.committer
            .write(move |conn| {
                let id = id.clone();
                Box::pin(async move {
                    sqlx::query("UPDATE retention_policies SET next_run_at = $1 WHERE id = $2")
                        .bind(next)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Every tag of the project's repositories, with what retention judges by.
    pub async fn project_tags(&self, project: &str) -> Result<Vec<TagRow>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT t.repository, t.name, t.digest, t.updated_at, rm.last_pulled_at
             FROM tags t JOIN repositories r ON r.name = t.repository
             JOIN repository_manifests rm ON rm.repository = t.repository AND rm.digest = t.digest
             WHERE r.project = $1 ORDER BY t.repository, t.name",
        )
        .bind(project)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Manifests of the project's repositories that are not referrers (no
    /// subject) and not children of an index there: (repository, digest),
    /// the artifacts retention may remove once untagged.
    pub async fn project_standalone_manifests(
        &self,
        project: &str,
    ) -> Result<Vec<(String, String)>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT rm.repository, rm.digest FROM repository_manifests rm
             JOIN repositories r ON r.name = rm.repository
             WHERE r.project = $1 AND rm.subject IS NULL
               AND NOT EXISTS (SELECT 1 FROM manifest_children mc
                               JOIN repository_manifests p ON p.repository = rm.repository AND p.digest = mc.manifest
                               WHERE mc.child = rm.digest)
             ORDER BY rm.repository, rm.digest",
        )
        .bind(project)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Writes a run's record (inserted when it starts, replaced when it ends).
    /// Records a run's state; `finished`, the event announcing its end, is
    /// written in the same transaction.
    pub async fn record_retention_run(
        &self,
        run: RetentionRunRecord,
        finished: Option<crate::events::Event>,
    ) -> Result<(), MetaError> {
        self.committer
            .write(move |conn| {
                let (r, finished) = (run.clone(), finished.clone());
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO retention_runs (id, policy, project, started_at, finished_at, dry_run, status, removed, protected, error)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at, status = excluded.status,
                           removed = excluded.removed, protected = excluded.protected, error = excluded.error",
                    )
                    .bind(&r.id)
                    .bind(&r.policy)
                    .bind(&r.project)
                    .bind(r.started_at)
                    .bind(r.finished_at)
                    .bind(r.dry_run)
                    .bind(&r.status)
                    .bind(&r.removed)
                    .bind(&r.protected)
                    .bind(&r.error)
                    .execute(&mut *conn)
                    .await?;
                    if let Some(event) = finished {
                        super::outbox::append(conn, &[event]).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    pub async fn retention_runs(
        &self,
        policy: &str,
        limit: u32,
    ) -> Result<Vec<RetentionRunRecord>, MetaError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM retention_runs WHERE policy = $1 ORDER BY id DESC LIMIT $2"
        );
        Ok(sqlx::query_as(&sql)
            .bind(policy)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?)
    }

    /// Marks runs left running by a process that died as interrupted;
    /// returns the policies of the real (not dry) ones, to run again.
    pub async fn interrupt_retention_runs(&self) -> Result<Vec<String>, MetaError> {
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    Ok(sqlx::query_scalar::<_, Option<String>>(
                        "UPDATE retention_runs SET status = 'interrupted', finished_at = $1
                         WHERE status = 'running' RETURNING CASE WHEN dry_run THEN NULL ELSE policy END",
                    )
                    .bind(now_millis())
                    .fetch_all(&mut *conn)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect())
                })
            })
            .await
    }
}

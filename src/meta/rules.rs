//! Project rules (naming conventions, tag immutability) as stored; `policy`
//! compiles and applies them.

use super::{now_millis, MetaError, MetaStore, Refusal};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleRecord {
    pub id: String,
    pub project: String,
    pub kind: String,
    pub repositories: String,
    pub tags: String,
    pub created_at: i64,
    pub created_by: Option<String>,
}

impl MetaStore {
    pub async fn project_rules(&self, project: &str) -> Result<Vec<RuleRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT id, project, kind, repositories, tags, created_at, created_by
             FROM project_rules WHERE project = $1 ORDER BY created_at, id",
        )
        .bind(project)
        .fetch_all(&self.reader)
        .await?)
    }

    pub async fn add_project_rule(
        &self,
        rule: RuleRecord,
    ) -> Result<Result<(), Refusal>, MetaError> {
        self.committer
            .write(move |conn| {
                let rule = rule.clone();
                Box::pin(async move {
                    let project: Option<String> = sqlx::query_scalar("SELECT name FROM projects WHERE name = $1")
                        .bind(&rule.project)
                        .fetch_optional(&mut *conn)
                        .await?;
                    if project.is_none() {
                        return Ok(Err(Refusal::NotFound("project")));
                    }
                    sqlx::query(
                        "INSERT INTO project_rules (id, project, kind, repositories, tags, created_at, created_by)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&rule.id)
                    .bind(&rule.project)
                    .bind(&rule.kind)
                    .bind(&rule.repositories)
                    .bind(&rule.tags)
                    .bind(now_millis())
                    .bind(&rule.created_by)
                    .execute(&mut *conn)
                    .await?;
                    Ok(Ok(()))
                })
            })
            .await
    }

    pub async fn remove_project_rule(&self, project: &str, id: &str) -> Result<bool, MetaError> {
        let (project, id) = (project.to_string(), id.to_string());
        self.committer
            .write(move |conn| {
                let (project, id) = (project.clone(), id.clone());
                Box::pin(async move {
                    let n = sqlx::query("DELETE FROM project_rules WHERE project = $1 AND id = $2")
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
}

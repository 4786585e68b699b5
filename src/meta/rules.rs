//! Project rules (naming conventions, tag immutability, forbidden tags,
//! required signatures, content rules) and system-wide rules as stored;
//! `policy` compiles and applies them. A record of a system-wide rule has
//! an empty `project`.

use super::{now_millis, MetaError, MetaStore, Refusal};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleRecord {
    pub id: String,
    /// Empty: a system-wide rule.
    pub project: String,
    pub kind: String,
    pub repositories: String,
    pub tags: String,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub name: Option<String>,
    /// `enforce` or `audit`.
    pub mode: String,
    /// The trust configuration a `require-signature` rule names.
    pub trust: Option<String>,
    /// JSON: the settings of vulnerability, size-budget and
    /// require-annotations rules (`policy::gates::Params`).
    pub params: Option<String>,
}

impl MetaStore {
    pub async fn project_rules(&self, project: &str) -> Result<Vec<RuleRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT id, project, kind, repositories, tags, created_at, created_by, name, mode, trust, params
             FROM project_rules WHERE project = $1 ORDER BY created_at, id",
        )
        .bind(project)
        .fetch_all(&self.reader)
        .await?)
    }

    pub async fn system_rules(&self) -> Result<Vec<RuleRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT id, '' AS project, kind, repositories, tags, created_at, created_by, name, mode,
                    CAST(NULL AS TEXT) AS trust, params
             FROM system_rules ORDER BY created_at, id",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    /// Adds a system-wide rule (the record's project is ignored).
    pub async fn add_system_rule(
        &self,
        rule: RuleRecord,
    ) -> Result<Result<(), Refusal>, MetaError> {
        self.committer
            .write(move |conn| {
                let rule = rule.clone();
                Box::pin(async move {
                    // The id is new: only the name can conflict.
                    let n = sqlx::query(
                        "INSERT INTO system_rules (id, kind, repositories, tags, created_at, created_by, name, mode, params)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                    )
                    .bind(&rule.id)
                    .bind(&rule.kind)
                    .bind(&rule.repositories)
                    .bind(&rule.tags)
                    .bind(now_millis())
                    .bind(&rule.created_by)
                    .bind(&rule.name)
                    .bind(&rule.mode)
                    .bind(&rule.params)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(if n == 1 {
                        Ok(())
                    } else {
                        Err(Refusal::AlreadyExists)
                    })
                })
            })
            .await
    }

    /// Removes a system-wide rule by id, else by name.
    pub async fn remove_system_rule(&self, id: &str) -> Result<bool, MetaError> {
        let id = id.to_string();
        self.committer
            .write(move |conn| {
                let id = id.clone();
                Box::pin(async move {
                    let n = sqlx::query(
                        "DELETE FROM system_rules WHERE id = COALESCE(
                           (SELECT id FROM system_rules WHERE id = $1),
                           (SELECT id FROM system_rules WHERE name = $1))",
                    )
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
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
                    if let Some(trust) = &rule.trust {
                        let found: Option<i64> = sqlx::query_scalar(
                            "SELECT 1 FROM trust_configs WHERE project = $1 AND name = $2",
                        )
                        .bind(&rule.project)
                        .bind(trust)
                        .fetch_optional(&mut *conn)
                        .await?;
                        if found.is_none() {
                            return Ok(Err(Refusal::NotFound("trust configuration")));
                        }
                    }
                    // The id is new: only the name (unique per project) can conflict.
                    let n = sqlx::query(
                        "INSERT INTO project_rules (id, project, kind, repositories, tags, created_at, created_by, name, mode, trust, params)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
                    )
                    .bind(&rule.id)
                    .bind(&rule.project)
                    .bind(&rule.kind)
                    .bind(&rule.repositories)
                    .bind(&rule.tags)
                    .bind(now_millis())
                    .bind(&rule.created_by)
                    .bind(&rule.name)
                    .bind(&rule.mode)
                    .bind(&rule.trust)
                    .bind(&rule.params)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(if n == 1 {
                        Ok(())
                    } else {
                        Err(Refusal::AlreadyExists)
                    })
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
                    let n = sqlx::query(
                        // By id, else by name: never two rules, whatever they are called.
                        "DELETE FROM project_rules WHERE project = $1 AND id = COALESCE(
                           (SELECT id FROM project_rules WHERE project = $1 AND id = $2),
                           (SELECT id FROM project_rules WHERE project = $1 AND name = $2))",
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
}

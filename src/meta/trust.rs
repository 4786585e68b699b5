//! Trust configurations as stored (`trust_configs`); `policy` compiles
//! them with `berth_trust` and `trust.rs` verifies signatures under them.
//! Signature artifacts are found here too: they are ordinary manifests.

use sqlx::Row;

use super::{digest, now_millis, MetaError, MetaStore};
use crate::oci::{Digest, RepositoryName};

/// cosign's signature referrers, and Notation's.
const SIGNATURE_ARTIFACT_TYPES: [&str; 2] = [
    berth_trust::artifact::COSIGN_SIG_ARTIFACT_TYPE,
    berth_trust::notation::SIGNATURE_ARTIFACT_TYPE,
];

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrustRecord {
    pub project: String,
    pub name: String,
    /// JSON, `berth_trust::TrustPolicy`.
    pub policy: String,
    pub fingerprint: String,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub updated_at: i64,
}

/// Why a trust configuration was not changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRefusal {
    ProjectNotFound,
    NotFound,
    AlreadyExists,
    /// Rules (by name, else id) that name it.
    InUse(Vec<String>),
}

impl MetaStore {
    pub async fn trust_configs(&self, project: &str) -> Result<Vec<TrustRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT project, name, policy, fingerprint, created_at, created_by, updated_at
             FROM trust_configs WHERE project = $1 ORDER BY name",
        )
        .bind(project)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Adds a trust configuration, or with `replace` replaces one that
    /// exists (a key rotated): rules that name it apply the new one.
    pub async fn put_trust_config(
        &self,
        record: TrustRecord,
        replace: bool,
    ) -> Result<Result<(), TrustRefusal>, MetaError> {
        self.committer
            .write(move |conn| {
                let r = record.clone();
                Box::pin(async move {
                    let project: Option<String> =
                        sqlx::query_scalar("SELECT name FROM projects WHERE name = $1")
                            .bind(&r.project)
                            .fetch_optional(&mut *conn)
                            .await?;
                    if project.is_none() {
                        return Ok(Err(TrustRefusal::ProjectNotFound));
                    }
                    let now = now_millis();
                    let changed = if replace {
                        sqlx::query(
                            "UPDATE trust_configs SET policy = $3, fingerprint = $4, updated_at = $5
                             WHERE project = $1 AND name = $2",
                        )
                        .bind(&r.project)
                        .bind(&r.name)
                        .bind(&r.policy)
                        .bind(&r.fingerprint)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected()
                    } else {
                        sqlx::query(
                            "INSERT INTO trust_configs (project, name, policy, fingerprint, created_at, created_by, updated_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $5) ON CONFLICT DO NOTHING",
                        )
                        .bind(&r.project)
                        .bind(&r.name)
                        .bind(&r.policy)
                        .bind(&r.fingerprint)
                        .bind(now)
                        .bind(&r.created_by)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected()
                    };
                    Ok(match (changed, replace) {
                        (1, _) => Ok(()),
                        (_, true) => Err(TrustRefusal::NotFound),
                        (_, false) => Err(TrustRefusal::AlreadyExists),
                    })
                })
            })
            .await
    }

    /// Removes a trust configuration no rule names.
    pub async fn remove_trust_config(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Result<(), TrustRefusal>, MetaError> {
        let (project, name) = (project.to_string(), name.to_string());
        self.committer
            .write(move |conn| {
                let (project, name) = (project.clone(), name.clone());
                Box::pin(async move {
                    let users: Vec<String> = sqlx::query_scalar(
                        "SELECT COALESCE(name, id) FROM project_rules WHERE project = $1 AND trust = $2
                         ORDER BY created_at",
                    )
                    .bind(&project)
                    .bind(&name)
                    .fetch_all(&mut *conn)
                    .await?;
                    if !users.is_empty() {
                        return Ok(Err(TrustRefusal::InUse(users)));
                    }
                    let n = sqlx::query("DELETE FROM trust_configs WHERE project = $1 AND name = $2")
                        .bind(&project)
                        .bind(&name)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    Ok(if n == 1 {
                        Ok(())
                    } else {
                        Err(TrustRefusal::NotFound)
                    })
                })
            })
            .await
    }

    /// The signature manifests of `subject` in `repo`: what cosign's tag
    /// `sha256-<hex>.sig` names, and the referrers whose artifact type is
    /// cosign's or Notation's signature, in digest order.
    pub async fn signature_manifests(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Digest>, MetaError> {
        let tag = format!("{}-{}.sig", subject.algorithm().name(), subject.hex());
        let rows = sqlx::query(
            "SELECT digest FROM tags WHERE repository = $1 AND name = $2
             UNION
             SELECT rm.digest FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest
             WHERE rm.repository = $1 AND rm.subject = $3 AND m.artifact_type IN ($4, $5)
             ORDER BY 1",
        )
        .bind(repo.as_str())
        .bind(&tag)
        .bind(subject.as_str())
        .bind(SIGNATURE_ARTIFACT_TYPES[0])
        .bind(SIGNATURE_ARTIFACT_TYPES[1])
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(|r| digest(r.get(0))).collect()
    }

    /// The indexes in `repo` that list `child`.
    pub async fn parents_of(
        &self,
        repo: &RepositoryName,
        child: &Digest,
    ) -> Result<Vec<Digest>, MetaError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT mc.manifest FROM manifest_children mc JOIN repository_manifests rm
               ON rm.digest = mc.manifest AND rm.repository = $1
             WHERE mc.child = $2 ORDER BY 1",
        )
        .bind(repo.as_str())
        .bind(child.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(digest).collect()
    }

    /// The manifests (with their repositories) that reference `blob`,
    /// earliest pushed first, at most `limit`: the candidates for the
    /// base of an image whose first layer it is.
    pub async fn manifests_with_blob(
        &self,
        blob: &Digest,
        limit: i64,
    ) -> Result<Vec<(String, Digest)>, MetaError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT rm.repository, rm.digest FROM manifest_blobs mb JOIN repository_manifests rm
               ON rm.digest = mb.manifest
             WHERE mb.blob = $1 ORDER BY rm.pushed_at, rm.repository LIMIT $2",
        )
        .bind(blob.as_str())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(|(r, d)| Ok((r, digest(d)?))).collect()
    }
}

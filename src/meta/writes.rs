//! Every change to the metadata, each one job for the committer. The checks a
//! change depends on run in the same transaction as the change.

use sqlx::SqliteConnection;

use super::{digest, now_millis, MetaError, MetaStore, PutManifestRefusal, RemoveRefusal};
use crate::oci::{Digest, Manifest, RepositoryName, Tag};

type Conn = SqliteConnection;

async fn ensure_repository(
    conn: &mut Conn,
    repo: &RepositoryName,
    now: i64,
) -> Result<(), MetaError> {
    sqlx::query("INSERT INTO repositories (name, project, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(repo.as_str())
        .bind(repo.project())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn link_blob(
    conn: &mut Conn,
    repo: &RepositoryName,
    blob: &Digest,
    now: i64,
) -> Result<(), MetaError> {
    sqlx::query("INSERT INTO repository_blobs (repository, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(repo.as_str())
        .bind(blob.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn has_blob(
    conn: &mut Conn,
    repo: &RepositoryName,
    blob: &Digest,
) -> Result<Option<i64>, MetaError> {
    Ok(sqlx::query_scalar(
        "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
         WHERE rb.repository = $1 AND rb.digest = $2",
    )
    .bind(repo.as_str())
    .bind(blob.as_str())
    .fetch_optional(&mut *conn)
    .await?)
}

async fn has_manifest(
    conn: &mut Conn,
    repo: &RepositoryName,
    manifest: &Digest,
) -> Result<bool, MetaError> {
    let row =
        sqlx::query("SELECT 1 FROM repository_manifests WHERE repository = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(manifest.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.is_some())
}

/// Those of `wanted` that `table` (repository_blobs or repository_manifests)
/// does not list for the repository, in one query.
async fn absent(
    conn: &mut Conn,
    table: &str,
    repo: &RepositoryName,
    wanted: &[&Digest],
) -> Result<Vec<Digest>, MetaError> {
    let mut wanted: Vec<&Digest> = wanted.to_vec();
    wanted.sort();
    wanted.dedup();
    let mut missing = Vec::new();
    // Bounded statements: SQLite allows 32,766 parameters, PostgreSQL 65,535.
    for chunk in wanted.chunks(1000) {
        let placeholders: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT digest FROM {table} WHERE repository = $1 AND digest IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(repo.as_str());
        for d in chunk {
            query = query.bind(d.as_str());
        }
        let present: std::collections::HashSet<String> =
            query.fetch_all(&mut *conn).await?.into_iter().collect();
        missing.extend(
            chunk
                .iter()
                .filter(|d| !present.contains(d.as_str()))
                .map(|d| (*d).clone()),
        );
    }
    Ok(missing)
}

/// Inserts graph edges from `manifest`, one multi-row statement per 500 edges.
/// `columns` names the table and its columns, the first being the manifest.
async fn insert_edges<const N: usize>(
    conn: &mut Conn,
    columns: &str,
    manifest: &Digest,
    edges: &[[&str; N]],
) -> Result<(), MetaError> {
    for chunk in edges.chunks(500) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let cols: Vec<String> = (0..N).map(|c| format!("${}", 2 + r * N + c)).collect();
                format!("($1, {})", cols.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO {columns} VALUES {} ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(manifest.as_str());
        for edge in chunk {
            for value in edge {
                query = query.bind(*value);
            }
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

fn digests(rows: Vec<String>) -> Result<Vec<Digest>, MetaError> {
    rows.into_iter().map(digest).collect()
}

impl MetaStore {
    /// Records a verified, durably stored blob and links it into `repo`.
    pub async fn add_blob(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
        size: u64,
    ) -> Result<(), MetaError> {
        let (repo, blob) = (repo.clone(), blob.clone());
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    let now = now_millis();
                    ensure_repository(conn, &repo, now).await?;
                    sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                        .bind(blob.as_str())
                        .bind(size as i64)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    link_blob(conn, &repo, &blob, now).await
                })
            })
            .await
    }

    /// Links a blob held by `from` into `repo`. Returns its size, or None if
    /// `from` does not hold it.
    pub async fn mount_blob(
        &self,
        repo: &RepositoryName,
        from: &RepositoryName,
        blob: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let (repo, from, blob) = (repo.clone(), from.clone(), blob.clone());
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    let Some(size) = has_blob(conn, &from, &blob).await? else {
                        return Ok(None);
                    };
                    let now = now_millis();
                    ensure_repository(conn, &repo, now).await?;
                    link_blob(conn, &repo, &blob, now).await?;
                    Ok(Some(size as u64))
                })
            })
            .await
    }

    /// Stores a manifest in a repository (and tags it), provided every blob and
    /// child manifest it references is already in that repository.
    pub async fn put_manifest(
        &self,
        repo: &RepositoryName,
        manifest_digest: &Digest,
        manifest: &Manifest,
        content: &str,
        tag: Option<&Tag>,
    ) -> Result<Result<(), PutManifestRefusal>, MetaError> {
        let (repo, manifest_digest, manifest) =
            (repo.clone(), manifest_digest.clone(), manifest.clone());
        let (content, tag) = (content.to_string(), tag.cloned());
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    let blobs: Vec<&Digest> = manifest.blobs.iter().map(|b| &b.digest).collect();
                    let children: Vec<&Digest> = manifest.manifests.iter().map(|m| &m.digest).collect();
                    let mut missing = absent(conn, "repository_blobs", &repo, &blobs).await?;
                    missing.extend(absent(conn, "repository_manifests", &repo, &children).await?);
                    if !missing.is_empty() {
                        return Ok(Err(PutManifestRefusal::Missing(missing)));
                    }
                    let now = now_millis();
                    // Anything referenced is in the repository, which therefore exists.
                    if blobs.is_empty() && children.is_empty() {
                        ensure_repository(conn, &repo, now).await?;
                    }
                    let annotations = manifest
                        .annotations
                        .as_ref()
                        .map(|a| serde_json::to_string(a).expect("string map serializes"));
                    let subject = manifest.subject.as_ref().map(Digest::as_str);
                    let inserted = sqlx::query(
                        "INSERT INTO manifests (digest, media_type, artifact_type, subject, annotations, size, content, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    )
                    .bind(manifest_digest.as_str())
                    .bind(&manifest.media_type)
                    .bind(&manifest.artifact_type)
                    .bind(subject)
                    .bind(annotations)
                    .bind(content.len() as i64)
                    .bind(&content)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    // The graph edges depend only on the content: written once.
                    if inserted == 1 {
                        let blob_edges: Vec<[&str; 2]> =
                            manifest.blobs.iter().map(|b| [b.digest.as_str(), b.media_type.as_str()]).collect();
                        insert_edges(conn, "manifest_blobs (manifest, blob, media_type)", &manifest_digest, &blob_edges).await?;
                        let child_edges: Vec<[&str; 1]> = children.iter().map(|d| [d.as_str()]).collect();
                        insert_edges(conn, "manifest_children (manifest, child)", &manifest_digest, &child_edges).await?;
                    }
                    sqlx::query(
                        "INSERT INTO repository_manifests (repository, digest, subject, pushed_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (repository, digest) DO UPDATE SET pushed_at = excluded.pushed_at",
                    )
                    .bind(repo.as_str())
                    .bind(manifest_digest.as_str())
                    .bind(subject)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    if let Some(tag) = &tag {
                        sqlx::query(
                            "INSERT INTO tags (repository, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (repository, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                        )
                        .bind(repo.as_str())
                        .bind(tag.as_str())
                        .bind(manifest_digest.as_str())
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(Ok(()))
                })
            })
            .await
    }

    /// Removes a tag; the manifest stays. Returns the digest it pointed to.
    pub async fn delete_tag(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<Digest>, MetaError> {
        let (repo, tag) = (repo.clone(), tag.clone());
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    let removed: Option<String> = sqlx::query_scalar(
                        "DELETE FROM tags WHERE repository = $1 AND name = $2 RETURNING digest",
                    )
                    .bind(repo.as_str())
                    .bind(tag.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                    removed.map(digest).transpose()
                })
            })
            .await
    }

    /// Removes a manifest, and the tags naming it, from a repository, unless an
    /// index in the repository still lists it as a child. Returns the tags removed.
    pub async fn delete_manifest(
        &self,
        repo: &RepositoryName,
        manifest: &Digest,
    ) -> Result<Result<Vec<String>, RemoveRefusal>, MetaError> {
        let (repo, manifest) = (repo.clone(), manifest.clone());
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    if !has_manifest(conn, &repo, &manifest).await? {
                        return Ok(Err(RemoveRefusal::NotFound));
                    }
                    let parents: Vec<String> = sqlx::query_scalar(
                        "SELECT mc.manifest FROM manifest_children mc JOIN repository_manifests rm
                           ON rm.digest = mc.manifest AND rm.repository = $1
                         WHERE mc.child = $2",
                    )
                    .bind(repo.as_str())
                    .bind(manifest.as_str())
                    .fetch_all(&mut *conn)
                    .await?;
                    if !parents.is_empty() {
                        return Ok(Err(RemoveRefusal::ReferencedBy(digests(parents)?)));
                    }
                    let tags: Vec<String> = sqlx::query_scalar(
                        "DELETE FROM tags WHERE repository = $1 AND digest = $2 RETURNING name",
                    )
                    .bind(repo.as_str())
                    .bind(manifest.as_str())
                    .fetch_all(&mut *conn)
                    .await?;
                    sqlx::query(
                        "DELETE FROM repository_manifests WHERE repository = $1 AND digest = $2",
                    )
                    .bind(repo.as_str())
                    .bind(manifest.as_str())
                    .execute(&mut *conn)
                    .await?;
                    Ok(Ok(tags))
                })
            })
            .await
    }

    /// Unlinks a blob from a repository, unless a manifest there references it.
    pub async fn delete_blob(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
    ) -> Result<Result<(), RemoveRefusal>, MetaError> {
        let (repo, blob) = (repo.clone(), blob.clone());
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    let users: Vec<String> = sqlx::query_scalar(
                        "SELECT mb.manifest FROM manifest_blobs mb JOIN repository_manifests rm
                           ON rm.digest = mb.manifest AND rm.repository = $1
                         WHERE mb.blob = $2",
                    )
                    .bind(repo.as_str())
                    .bind(blob.as_str())
                    .fetch_all(&mut *conn)
                    .await?;
                    if !users.is_empty() {
                        return Ok(Err(RemoveRefusal::ReferencedBy(digests(users)?)));
                    }
                    let removed = sqlx::query(
                        "DELETE FROM repository_blobs WHERE repository = $1 AND digest = $2",
                    )
                    .bind(repo.as_str())
                    .bind(blob.as_str())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(if removed == 1 {
                        Ok(())
                    } else {
                        Err(RemoveRefusal::NotFound)
                    })
                })
            })
            .await
    }

    /// Adds pull counts gathered since the last flush (see `registry::pulls`).
    pub async fn record_pulls(
        &self,
        manifests: Vec<(String, String, u64)>,
        blobs: Vec<(String, String, u64)>,
        at: i64,
    ) -> Result<(), MetaError> {
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    for (table, rows) in [("repository_manifests", manifests), ("repository_blobs", blobs)] {
                        let sql = format!(
                            "UPDATE {table} SET pull_count = pull_count + $1, last_pulled_at = $2 WHERE repository = $3 AND digest = $4"
                        );
                        for (repo, digest, count) in rows {
                            sqlx::query(&sql)
                                .bind(count as i64)
                                .bind(at)
                                .bind(repo)
                                .bind(digest)
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                    Ok(())
                })
            })
            .await
    }
}

//! Metadata: repositories, blobs, manifests, tags and the reference graph
//! between them, in a relational database (embedded SQLite now; the SQL is the
//! subset PostgreSQL shares). Every invariant of the graph is enforced here,
//! inside the transaction that changes it, so no caller can break it.
//!
//! SQLite runs in WAL mode with one writer connection (writes are serialized,
//! so a transaction's checks and changes cannot interleave with another's) and
//! a pool of readers that never block it.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::oci::{Descriptor, Digest, Manifest, RepositoryName, Tag};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

/// A manifest as served: its bytes and media type.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: String,
}

/// Why a manifest cannot be stored in a repository.
#[derive(Debug)]
pub enum PutManifestRefusal {
    /// Blobs or child manifests it references are not in the repository.
    Missing(Vec<Digest>),
}

/// Why something cannot be removed from a repository.
#[derive(Debug)]
pub enum RemoveRefusal {
    NotFound,
    /// Other manifests in the repository still reference it.
    ReferencedBy(Vec<Digest>),
}

pub struct MetaStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

fn digest(s: String) -> Result<Digest, MetaError> {
    Digest::from_str(&s).map_err(|e| MetaError::Corrupt(format!("stored digest {s:?}: {e}")))
}

impl MetaStore {
    /// Opens (creating and migrating) the embedded database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<MetaStore, MetaError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(MetaStore { reader, writer })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Cheap round trip for readiness checks.
    pub async fn ping(&self) -> Result<(), MetaError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    // ---- reads -------------------------------------------------------------

    pub async fn repository_exists(&self, repo: &RepositoryName) -> Result<bool, MetaError> {
        let row = sqlx::query("SELECT 1 FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.is_some())
    }

    /// Size of a blob if the repository may serve it.
    pub async fn blob_size(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
             WHERE rb.repository = $1 AND rb.digest = $2",
        )
        .bind(repo.as_str())
        .bind(blob.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    /// Some repository that holds the blob, for mounting it without `from`.
    pub async fn repository_with_blob(
        &self,
        blob: &Digest,
    ) -> Result<Option<RepositoryName>, MetaError> {
        let name: Option<String> =
            sqlx::query_scalar("SELECT repository FROM repository_blobs WHERE digest = $1 LIMIT 1")
                .bind(blob.as_str())
                .fetch_optional(&self.reader)
                .await?;
        name.map(|n| RepositoryName::from_str(&n).map_err(|e| MetaError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn manifest_by_digest(
        &self,
        repo: &RepositoryName,
        manifest: &Digest,
    ) -> Result<Option<StoredManifest>, MetaError> {
        let row = sqlx::query(
            "SELECT m.media_type, m.content FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest
             WHERE rm.repository = $1 AND rm.digest = $2",
        )
        .bind(repo.as_str())
        .bind(manifest.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| StoredManifest {
            digest: manifest.clone(),
            media_type: r.get(0),
            content: r.get(1),
        }))
    }

    pub async fn manifest_by_tag(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<StoredManifest>, MetaError> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content FROM tags t JOIN manifests m ON m.digest = t.digest
             WHERE t.repository = $1 AND t.name = $2",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok(StoredManifest {
                digest: digest(r.get(0))?,
                media_type: r.get(1),
                content: r.get(2),
            })
        })
        .transpose()
    }

    /// Tags in lexical (byte) order after `last`, at most `limit`.
    pub async fn tags(
        &self,
        repo: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetaError> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(repo.as_str())
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Repository names in lexical order after `last`, at most `limit`.
    pub async fn repositories(
        &self,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetaError> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Manifests in the repository whose subject is `subject`.
    pub async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, MetaError> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
             FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest
             WHERE rm.repository = $1 AND rm.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3)
             ORDER BY rm.pushed_at, m.digest",
        )
        .bind(repo.as_str())
        .bind(subject.as_str())
        .bind(artifact_type)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|r| {
                let annotations: Option<String> = r.get(4);
                Ok(Descriptor {
                    digest: digest(r.get(0))?,
                    media_type: r.get(1),
                    size: r.get::<i64, _>(2) as u64,
                    artifact_type: r.get(3),
                    urls: None,
                    annotations: annotations
                        .map(|a| serde_json::from_str(&a))
                        .transpose()
                        .map_err(|e| MetaError::Corrupt(format!("annotations: {e}")))?,
                })
            })
            .collect()
    }

    /// Total bytes of stored blobs and manifests.
    pub async fn storage_bytes(&self) -> Result<u64, MetaError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs) + (SELECT COALESCE(SUM(size), 0) FROM manifests)",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(total as u64)
    }

    // ---- writes ------------------------------------------------------------

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, MetaError> {
        Ok(self.writer.begin().await?)
    }

    async fn ensure_repository(
        tx: &mut Transaction<'static, Sqlite>,
        repo: &RepositoryName,
        now: i64,
    ) -> Result<(), MetaError> {
        sqlx::query("INSERT INTO repositories (name, project, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(repo.as_str())
            .bind(repo.project())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Records a verified, durably stored blob and links it into `repo`.
    pub async fn add_blob(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
        size: u64,
    ) -> Result<(), MetaError> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        Self::ensure_repository(&mut tx, repo, now).await?;
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(blob.as_str())
            .bind(size as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        Self::link_blob(&mut tx, repo, blob, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_blob(
        tx: &mut Transaction<'static, Sqlite>,
        repo: &RepositoryName,
        blob: &Digest,
        now: i64,
    ) -> Result<(), MetaError> {
        sqlx::query(
            "INSERT INTO repository_blobs (repository, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(repo.as_str())
        .bind(blob.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Links a blob held by `from` into `repo`. Returns its size, or None if
    /// `from` does not hold it.
    pub async fn mount_blob(
        &self,
        repo: &RepositoryName,
        from: &RepositoryName,
        blob: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
             WHERE rb.repository = $1 AND rb.digest = $2",
        )
        .bind(from.as_str())
        .bind(blob.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(size) = size else { return Ok(None) };
        Self::ensure_repository(&mut tx, repo, now).await?;
        Self::link_blob(&mut tx, repo, blob, now).await?;
        tx.commit().await?;
        Ok(Some(size as u64))
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
        let now = now_millis();
        let mut tx = self.begin().await?;
        let mut missing = Vec::new();
        for blob in &manifest.blobs {
            let linked =
                sqlx::query("SELECT 1 FROM repository_blobs WHERE repository = $1 AND digest = $2")
                    .bind(repo.as_str())
                    .bind(blob.digest.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if linked.is_none() {
                missing.push(blob.digest.clone());
            }
        }
        for child in &manifest.manifests {
            let present = sqlx::query(
                "SELECT 1 FROM repository_manifests WHERE repository = $1 AND digest = $2",
            )
            .bind(repo.as_str())
            .bind(child.digest.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if present.is_none() {
                missing.push(child.digest.clone());
            }
        }
        if !missing.is_empty() {
            missing.dedup();
            return Ok(Err(PutManifestRefusal::Missing(missing)));
        }
        Self::ensure_repository(&mut tx, repo, now).await?;
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
        .bind(content)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The graph edges depend only on the content: write them once.
        if inserted == 1 {
            for blob in &manifest.blobs {
                sqlx::query("INSERT INTO manifest_blobs (manifest, blob, media_type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(manifest_digest.as_str())
                    .bind(blob.digest.as_str())
                    .bind(&blob.media_type)
                    .execute(&mut *tx)
                    .await?;
            }
            for child in &manifest.manifests {
                sqlx::query("INSERT INTO manifest_children (manifest, child) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(manifest_digest.as_str())
                    .bind(child.digest.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "INSERT INTO repository_manifests (repository, digest, subject, pushed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repository, digest) DO UPDATE SET pushed_at = excluded.pushed_at",
        )
        .bind(repo.as_str())
        .bind(manifest_digest.as_str())
        .bind(subject)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(tag) = tag {
            sqlx::query(
                "INSERT INTO tags (repository, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repository, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .bind(manifest_digest.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Removes a tag; the manifest stays. Returns the digest it pointed to.
    pub async fn delete_tag(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<Digest>, MetaError> {
        let removed: Option<String> = sqlx::query_scalar(
            "DELETE FROM tags WHERE repository = $1 AND name = $2 RETURNING digest",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.writer)
        .await?;
        removed.map(digest).transpose()
    }

    /// Removes a manifest, and the tags naming it, from a repository, unless an
    /// index in the repository still lists it as a child.
    /// Returns the tags that were removed.
    pub async fn delete_manifest(
        &self,
        repo: &RepositoryName,
        manifest: &Digest,
    ) -> Result<Result<Vec<String>, RemoveRefusal>, MetaError> {
        let mut tx = self.begin().await?;
        let present =
            sqlx::query("SELECT 1 FROM repository_manifests WHERE repository = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(manifest.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if present.is_none() {
            return Ok(Err(RemoveRefusal::NotFound));
        }
        let parents: Vec<String> = sqlx::query_scalar(
            "SELECT mc.manifest FROM manifest_children mc JOIN repository_manifests rm
               ON rm.digest = mc.manifest AND rm.repository = $1
             WHERE mc.child = $2",
        )
        .bind(repo.as_str())
        .bind(manifest.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if !parents.is_empty() {
            return Ok(Err(RemoveRefusal::ReferencedBy(
                parents.into_iter().map(digest).collect::<Result<_, _>>()?,
            )));
        }
        let tags: Vec<String> = sqlx::query_scalar(
            "DELETE FROM tags WHERE repository = $1 AND digest = $2 RETURNING name",
        )
        .bind(repo.as_str())
        .bind(manifest.as_str())
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM repository_manifests WHERE repository = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(manifest.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(tags))
    }

    /// Unlinks a blob from a repository, unless a manifest there references it.
    pub async fn delete_blob(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
    ) -> Result<Result<(), RemoveRefusal>, MetaError> {
        let mut tx = self.begin().await?;
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT mb.manifest FROM manifest_blobs mb JOIN repository_manifests rm
               ON rm.digest = mb.manifest AND rm.repository = $1
             WHERE mb.blob = $2",
        )
        .bind(repo.as_str())
        .bind(blob.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            return Ok(Err(RemoveRefusal::ReferencedBy(
                users.into_iter().map(digest).collect::<Result<_, _>>()?,
            )));
        }
        let removed =
            sqlx::query("DELETE FROM repository_blobs WHERE repository = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(blob.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(if removed == 1 {
            Ok(())
        } else {
            Err(RemoveRefusal::NotFound)
        })
    }

    /// Adds pull counts gathered since the last flush (see `registry::pulls`).
    pub async fn record_pulls(
        &self,
        manifests: &[(String, String, u64)],
        blobs: &[(String, String, u64)],
        at: i64,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin().await?;
        for (table, rows) in [
            ("repository_manifests", manifests),
            ("repository_blobs", blobs),
        ] {
            let sql = format!(
                "UPDATE {table} SET pull_count = pull_count + $1, last_pulled_at = $2 WHERE repository = $3 AND digest = $4"
            );
            for (repo, digest, count) in rows {
                sqlx::query(&sql)
                    .bind(*count as i64)
                    .bind(at)
                    .bind(repo)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

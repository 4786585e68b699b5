//! Metadata: repositories, blobs, manifests, tags and the reference graph
//! between them, in a relational database: the embedded SQLite file, or
//! PostgreSQL shared by several replicas. The SQL is the dialect both share
//! (`db.rs` holds the few differences). Every invariant of the graph is
//! enforced here, inside the transaction that changes it, so no caller can
//! break it.
//!
//! Reads run on a pool of connections (SQLite in WAL mode: readers never
//! block writes). Writes are jobs for the committer (`committer.rs`), which
//! runs a replica's concurrent writes in one transaction on its one writer
//! connection. On SQLite that makes writes serial, so a write's checks and
//! changes cannot interleave with another's; on PostgreSQL the transactions
//! of several replicas are SERIALIZABLE, which gives the same guarantee (a
//! conflicting transaction fails and the committer runs it again).

mod accounts;
mod audit;
mod changes;
mod committer;
mod db;
mod gc;
mod inventory;
mod leases;
mod login_failures;
mod outbox;
mod quota;
mod retention;
mod rules;
mod scans;
mod transfer;
mod trust;
mod writes;

pub use accounts::{
    MemberRecord, ProjectRecord, Refusal, RobotRecord, SigningKeyRecord, UserRecord, Visibility,
};
pub use audit::{AuditFilter, AuditRecord};
pub use changes::Change;
pub use committer::WriteCounters;
pub use gc::{Cursor, DoomedBlob, GcBatch, GcCounts, GcRunRecord, QueuePhase};
pub use inventory::{ArtifactSummary, RepositorySummary, TagRecord};
pub use leases::{Lease, LeasedJob};
pub use login_failures::{LoginFailures, NextFailure};
pub use outbox::{EventCursor, JournalBatch, PullCount, StoredEvent};
pub use quota::Usage;
pub use retention::{RetentionPolicyRecord, RetentionRunRecord, TagRow};
pub use rules::RuleRecord;
pub use scans::{ScanOutcome, ScanRecord, VulndbRecord};
pub use transfer::{BlobRow, Snapshot, Table};
pub use trust::{TrustRecord, TrustRefusal};

use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;

use crate::oci::{Descriptor, Digest, RepositoryName, Tag};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("commit failed: {0}")]
    Commit(String),
    /// The write was dropped unrun: the store is closing or its transaction failed (logged).
    #[error("the metadata write was not carried out")]
    NotApplied,
    /// A check made after the change refused it (a quota): the change was rolled back.
    #[error("{0}")]
    Refused(String),
    /// The database could not be reached: nothing was done, a retry may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl MetaError {
    /// The database could not be reached (rather than refused or failed a
    /// statement): callers answer "unavailable, retry", not "internal error".
    pub fn is_unavailable(&self) -> bool {
        match self {
            MetaError::Unavailable(_) => true,
            MetaError::Db(e) => db::is_unreachable(e),
            _ => false,
        }
    }
}

/// A manifest as served: its bytes and media type.
#[derive(Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: bytes::Bytes,
}

/// Without the bytes: it is logged with the operations that read it.
impl std::fmt::Debug for StoredManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredManifest")
            .field("digest", &self.digest)
            .field("media_type", &self.media_type)
            .field("bytes", &self.content.len())
            .finish()
    }
}

/// What linking a newly written blob did with the caller's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobLinked {
    /// The blob's row names the caller's file: keep it.
    Stored,
    /// The row kept the file it had: the caller's is surplus, to delete.
    Duplicate,
}

/// Why a manifest cannot be stored in a repository.
#[derive(Debug)]
pub enum PutManifestRefusal {
    /// Blobs or child manifests it references are not in the repository.
    Missing(Vec<Digest>),
    /// The tag points to another manifest and a rule makes it immutable.
    Immutable(String),
}

/// What a project's rules say about changes to one of its repositories
/// (see `policy`); consulted inside the transaction that makes the change.
pub trait RepositoryRules: Send + Sync {
    /// The rule that protects `tag` from being moved or deleted, described
    /// for the refusal.
    fn protecting(&self, tag: &str) -> Option<String>;
    /// The project's quota, if it has one.
    fn quota(&self) -> Option<Quota> {
        None
    }
}

/// Limits on what a project stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    /// Bytes of the distinct manifests and blobs its manifests reference.
    pub bytes: Option<i64>,
    /// Manifests in its repositories.
    pub artifacts: Option<i64>,
}

/// A repository's rules, if any apply to it.
pub type Guard = Option<std::sync::Arc<dyn RepositoryRules>>;

/// Why something cannot be removed from a repository.
#[derive(Debug)]
pub enum RemoveRefusal {
    NotFound,
    /// Other manifests in the repository still reference it.
    ReferencedBy(Vec<Digest>),
    /// A tag it would remove is immutable: the tag and the rule.
    Protected(String, String),
}

pub struct MetaStore {
    /// The database's URL (with its credentials: never logged).
    url: String,
    backend: db::Backend,
    reader: db::Pool,
    writer: db::Pool,
    committer: committer::Committer,
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
        MetaStore::open(&db::sqlite_url(path), 4, 1).await
    }

    /// Opens and migrates the database at `url` (`sqlite://PATH` or
    /// `postgres://…`), reading on up to `readers` connections and writing
    /// on `writers` (SQLite: always one). Replicas may open one PostgreSQL
    /// database at the same moment: the migrator holds an advisory lock
    /// while it migrates.
    pub async fn open(url: &str, readers: u32, writers: u32) -> Result<MetaStore, MetaError> {
        let backend = db::Backend::of_url(url);
        let writers = if backend == db::Backend::Sqlite {
            1
        } else {
            writers.max(1)
        };
        let writer = db::connect_writer(url, writers).await?;
        MIGRATIONS.run(&writer).await?;
        let reader = db::connect_readers(url, readers).await?;
        let committer = committer::Committer::start(writer.clone(), writers as usize);
        let store = MetaStore {
            url: url.to_string(),
            backend,
            reader,
            writer,
            committer,
        };
        store.install_postgres_objects().await?;
        Ok(store)
    }

    /// The writers' counters, for `/metrics`.
    pub fn write_counters(&self) -> &WriteCounters {
        self.committer.counters()
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

    /// Size of a blob and the nonce of its file, if the repository may serve it.
    pub async fn blob_file(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
    ) -> Result<Option<(u64, String)>, MetaError> {
        let row = sqlx::query(
            "SELECT b.size, b.nonce FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
             WHERE rb.repository = $1 AND rb.digest = $2",
        )
        .bind(repo.as_str())
        .bind(blob.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| (r.get::<i64, _>(0) as u64, r.get(1))))
    }

    /// Whether a blob's bytes are stored and not being deleted (a hint:
    /// `link_stored_blob` decides).
    pub async fn blob_stored(&self, blob: &Digest) -> Result<bool, MetaError> {
        let row = sqlx::query("SELECT 1 FROM blobs WHERE digest = $1 AND deleting_at IS NULL")
            .bind(blob.as_str())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.is_some())
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
            content: r.get::<String, _>(1).into(),
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
                content: r.get::<String, _>(2).into(),
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

    /// Names of the repositories the caller may see, in lexical order after
    /// `last`, at most `limit`.
    pub async fn repositories(
        &self,
        visibility: Visibility<'_>,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetaError> {
        let sql = format!(
            "SELECT name FROM repositories WHERE name > $1 AND {} ORDER BY name LIMIT $5",
            accounts::visible("project", 2)
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(last.unwrap_or(""))
            .bind(visibility.all)
            .bind(visibility.user)
            .bind(visibility.robot)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?)
    }

    /// Repositories that hold a blob, for mounting it without `from`.
    pub async fn repositories_with_blob(
        &self,
        blob: &Digest,
        limit: u32,
    ) -> Result<Vec<RepositoryName>, MetaError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT repository FROM repository_blobs WHERE digest = $1 LIMIT $2",
        )
        .bind(blob.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        names
            .iter()
            .map(|n| RepositoryName::from_str(n).map_err(|e| MetaError::Corrupt(e.to_string())))
            .collect()
    }

    /// Manifests in the repository whose subject is `subject`.
    /// In digest order, after `after`, at most `limit`.
    pub async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Descriptor>, MetaError> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
             FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest
             WHERE rm.repository = $1 AND rm.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3)
               AND rm.digest > $4
             ORDER BY rm.digest LIMIT $5",
        )
        .bind(repo.as_str())
        .bind(subject.as_str())
        .bind(artifact_type)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
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
                    platform: None,
                })
            })
            .collect()
    }

    /// Total bytes of stored blobs and manifests.
    pub async fn storage_bytes(&self) -> Result<u64, MetaError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs) + (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM manifests)",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(total as u64)
    }
}

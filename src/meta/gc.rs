//! Garbage collection, the metadata half: deciding what is garbage and
//! removing it from the graph, each decision checked in the transaction that
//! acts on it. Byte deletion is a protocol with the caller, who owns the
//! files (see ARCHITECTURE.md, "Garbage collection"):
//!
//! 1. `gc_begin_blob_deletes` moves doomed rows, still unlinked, to
//!    `deleting` and returns their (digest, nonce);
//! 2. the caller unlinks the file of that nonce;
//! 3. `gc_finish_blob_deletes` deletes each row that is still `deleting`
//!    with that nonce. A push that revived the row in between gave it a new
//!    nonce (its own file), so the row stays, naming that file.
//!
//! Every pass looks only at queued candidates (`gc_candidates`) whose delay
//! has passed, so its cost follows the garbage and the recent writes, not
//! the size of the store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::db::Conn;
use serde::Serialize;
use sqlx::Row;

use super::writes::{doom_if_unlinked, remove_repository_manifest};
use super::{now_millis, MetaError, MetaStore};

/// A running pass whose heartbeat is older than this belongs to a process
/// that died: it reads as interrupted.
pub const HEARTBEAT_STALE_MS: i64 = 30_000;

/// Records of passes are kept this long (a pass every 10 minutes makes
/// about 13,000 rows in that time).
pub const RUNS_KEPT_MS: i64 = 90 * 24 * 3600 * 1000;

/// What a pass removed (or, dry, would remove first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GcCounts {
    /// Manifests removed from a repository (untagged and unreferenced).
    pub manifests_removed: u64,
    /// Manifest documents deleted (in no repository any more).
    pub contents_removed: u64,
    pub manifest_bytes: u64,
    /// Blob links removed from a repository (no manifest there uses them).
    pub links_removed: u64,
    /// Blobs left without any link, marked for deletion after the grace period.
    pub blobs_doomed: u64,
    /// Blobs whose bytes were deleted.
    pub blobs_removed: u64,
    pub blob_bytes: u64,
    /// Files without a blob row naming them (crash leftovers, staging files).
    pub orphan_files: u64,
    pub orphan_bytes: u64,
}

impl GcCounts {
    pub fn add(&mut self, o: &GcCounts) {
        self.manifests_removed += o.manifests_removed;
        self.contents_removed += o.contents_removed;
        self.manifest_bytes += o.manifest_bytes;
        self.links_removed += o.links_removed;
        self.blobs_doomed += o.blobs_doomed;
        self.blobs_removed += o.blobs_removed;
        self.blob_bytes += o.blob_bytes;
        self.orphan_files += o.orphan_files;
        self.orphan_bytes += o.orphan_bytes;
    }
}

/// Position in the candidate queue: (queued_at, repository, digest).
pub type Cursor = (i64, String, String);

/// One batch of candidates looked at.
#[derive(Debug, Default)]
pub struct GcBatch {
    pub counts: GcCounts,
    /// Candidates looked at; 0 means the phase is done.
    pub examined: u64,
    /// Where the next batch starts.
    pub next: Option<Cursor>,
}

/// A blob whose bytes are being deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoomedBlob {
    pub digest: String,
    pub nonce: String,
    pub size: u64,
}

/// A recorded pass.
#[derive(Debug, Clone, Serialize)]
pub struct GcRunRecord {
    pub id: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub dry_run: bool,
    /// running, finished, failed or interrupted.
    pub status: String,
    pub error: Option<String>,
    #[serde(flatten)]
    pub counts: GcCounts,
}

/// The verdict on a candidate.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Garbage: remove it.
    Remove,
    /// Gone already, or needed (whatever would end that need queues it again).
    Keep,
    /// Used too recently: look again once it is old enough.
    Later(i64),
}

async fn candidates(
    conn: &mut Conn,
    kind: &str,
    cutoff: i64,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<Vec<Cursor>, MetaError> {
    let (q, r, d) = after
        .cloned()
        .unwrap_or((i64::MIN, String::new(), String::new()));
    let rows = sqlx::query(
        "SELECT queued_at, repository, digest FROM gc_candidates
         WHERE kind = $1 AND queued_at <= $2 AND (queued_at, repository, digest) > ($3, $4, $5)
         ORDER BY queued_at, repository, digest LIMIT $6",
    )
    .bind(kind)
    .bind(cutoff)
    .bind(q)
    .bind(r)
    .bind(d)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

async fn count_candidates(conn: &mut Conn, kind: &str, cutoff: i64) -> Result<u64, MetaError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM gc_candidates WHERE kind = $1 AND queued_at <= $2",
    )
    .bind(kind)
    .bind(cutoff)
    .fetch_one(&mut *conn)
    .await?;
    Ok(n as u64)
}

async fn exists(conn: &mut Conn, sql: &str, args: &[&str]) -> Result<bool, MetaError> {
    let mut query = sqlx::query(sql);
    for a in args {
        query = query.bind(*a);
    }
    Ok(query.fetch_optional(&mut *conn).await?.is_some())
}

/// Is manifest `digest` in `repo` garbage? Untagged, no index in the
/// repository lists it, not a referrer of a manifest the repository holds,
/// and neither pushed nor pulled since `cutoff`.
async fn judge_manifest(
    conn: &mut Conn,
    repo: &str,
    digest: &str,
    cutoff: i64,
) -> Result<Verdict, MetaError> {
    let Some(row) = sqlx::query(
        "SELECT pushed_at, last_pulled_at, subject FROM repository_manifests WHERE repository = $1 AND digest = $2",
    )
    .bind(repo)
    .bind(digest)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(Verdict::Keep);
    };
    let used = row
        .get::<i64, _>(0)
        .max(row.get::<Option<i64>, _>(1).unwrap_or(0));
    let subject: Option<String> = row.get(2);
    if exists(
        conn,
        "SELECT 1 FROM tags WHERE repository = $1 AND digest = $2 LIMIT 1",
        &[repo, digest],
    )
    .await?
        || exists(
            conn,
            "SELECT 1 FROM manifest_children mc
             WHERE mc.child = $2 AND EXISTS (
               SELECT 1 FROM repository_manifests rm WHERE rm.repository = $1 AND rm.digest = mc.manifest)
             LIMIT 1",
            &[repo, digest],
        )
        .await?
    {
        return Ok(Verdict::Keep);
    }
    if let Some(subject) = subject {
        if exists(
            conn,
            "SELECT 1 FROM repository_manifests WHERE repository = $1 AND digest = $2",
            &[repo, &subject],
        )
        .await?
        {
            return Ok(Verdict::Keep);
        }
    }
    Ok(if used > cutoff {
        Verdict::Later(used)
    } else {
        Verdict::Remove
    })
}

/// Is the link of blob `digest` into `repo` garbage? No manifest in the
/// repository references it and it was not pulled since `cutoff` (the
/// candidate's own age, its last push or mount, is checked by the caller).
async fn judge_link(
    conn: &mut Conn,
    repo: &str,
    digest: &str,
    cutoff: i64,
) -> Result<Verdict, MetaError> {
    let Some(pulled) = sqlx::query_scalar::<_, Option<i64>>(
        "SELECT last_pulled_at FROM repository_blobs WHERE repository = $1 AND digest = $2",
    )
    .bind(repo)
    .bind(digest)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(Verdict::Keep);
    };
    if exists(
        conn,
        "SELECT 1 FROM manifest_blobs mb
         WHERE mb.blob = $2 AND EXISTS (
           SELECT 1 FROM repository_manifests rm WHERE rm.repository = $1 AND rm.digest = mb.manifest)
         LIMIT 1",
        &[repo, digest],
    )
    .await?
    {
        return Ok(Verdict::Keep);
    }
    Ok(match pulled {
        Some(p) if p > cutoff => Verdict::Later(p),
        _ => Verdict::Remove,
    })
}

/// Is manifest document `digest` garbage (in no repository)? Returns its
/// size if so. One that an index document still lists waits for that
/// index, whose deletion queues it again.
async fn judge_content(conn: &mut Conn, digest: &str) -> Result<Option<u64>, MetaError> {
    if exists(
        conn,
        "SELECT 1 FROM repository_manifests WHERE digest = $1 LIMIT 1",
        &[digest],
    )
    .await?
        || exists(
            conn,
            "SELECT 1 FROM manifest_children WHERE child = $1 LIMIT 1",
            &[digest],
        )
        .await?
    {
        return Ok(None);
    }
    let size: Option<i64> = sqlx::query_scalar("SELECT size FROM manifests WHERE digest = $1")
        .bind(digest)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(size.map(|s| s as u64))
}

async fn drop_candidate(conn: &mut Conn, kind: &str, c: &Cursor) -> Result<(), MetaError> {
    sqlx::query("DELETE FROM gc_candidates WHERE kind = $1 AND repository = $2 AND digest = $3")
        .bind(kind)
        .bind(&c.1)
        .bind(&c.2)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn requeue(conn: &mut Conn, kind: &str, c: &Cursor, at: i64) -> Result<(), MetaError> {
    sqlx::query(
        "UPDATE gc_candidates SET queued_at = $4 WHERE kind = $1 AND repository = $2 AND digest = $3",
    )
    .bind(kind)
    .bind(&c.1)
    .bind(&c.2)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn manifests_batch(
    conn: &mut Conn,
    cutoff: i64,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<GcBatch, MetaError> {
    let mut batch = GcBatch::default();
    let now = now_millis();
    for c in candidates(conn, "manifest", cutoff, after, limit).await? {
        batch.examined += 1;
        match judge_manifest(conn, &c.1, &c.2, cutoff).await? {
            Verdict::Keep => drop_candidate(conn, "manifest", &c).await?,
            Verdict::Later(at) => requeue(conn, "manifest", &c, at).await?,
            Verdict::Remove => {
                drop_candidate(conn, "manifest", &c).await?;
                remove_repository_manifest(conn, &c.1, &c.2, now).await?;
                batch.counts.manifests_removed += 1;
            }
        }
        batch.next = Some(c);
    }
    Ok(batch)
}

async fn contents_batch(
    conn: &mut Conn,
    cutoff: i64,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<GcBatch, MetaError> {
    let mut batch = GcBatch::default();
    let now = now_millis();
    for c in candidates(conn, "content", cutoff, after, limit).await? {
        batch.examined += 1;
        drop_candidate(conn, "content", &c).await?;
        if let Some(size) = judge_content(conn, &c.2).await? {
            // Its children may now be in no repository and listed by no index.
            super::db::execute_all(conn, "INSERT INTO gc_candidates (kind, repository, digest, queued_at)
                   SELECT 'content', '', child, $2 FROM manifest_children WHERE manifest = $1
                   ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at;
                 DELETE FROM manifest_children WHERE manifest = $1;
                 DELETE FROM manifest_blobs WHERE manifest = $1;
                 DELETE FROM manifests WHERE digest = $1", |q| q.bind(&c.2).bind(now)).await?;
            batch.counts.contents_removed += 1;
            batch.counts.manifest_bytes += size;
        }
        batch.next = Some(c);
    }
    Ok(batch)
}

async fn links_batch(
    conn: &mut Conn,
    cutoff: i64,
    busy: &HashSet<String>,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<GcBatch, MetaError> {
    let mut batch = GcBatch::default();
    let now = now_millis();
    for c in candidates(conn, "link", cutoff, after, limit).await? {
        batch.examined += 1;
        // An upload in progress there may be for a manifest that needs it:
        // the candidate stays queued for a later pass.
        if !busy.contains(&c.1) {
            match judge_link(conn, &c.1, &c.2, cutoff).await? {
                Verdict::Keep => drop_candidate(conn, "link", &c).await?,
                Verdict::Later(at) => requeue(conn, "link", &c, at).await?,
                Verdict::Remove => {
                    drop_candidate(conn, "link", &c).await?;
                    sqlx::query(
                        "DELETE FROM repository_blobs WHERE repository = $1 AND digest = $2",
                    )
                    .bind(&c.1)
                    .bind(&c.2)
                    .execute(&mut *conn)
                    .await?;
                    batch.counts.links_removed += 1;
                    if doom_if_unlinked(conn, &c.2, now).await? {
                        batch.counts.blobs_doomed += 1;
                    }
                }
            }
        }
        batch.next = Some(c);
    }
    Ok(batch)
}

/// The phases a pass walks through the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePhase {
    Manifests,
    Contents,
    Links,
}

impl QueuePhase {
    fn kind(self) -> &'static str {
        match self {
            QueuePhase::Manifests => "manifest",
            QueuePhase::Contents => "content",
            QueuePhase::Links => "link",
        }
    }
}

impl MetaStore {
    /// Candidates of a phase due at `cutoff` (for progress reports).
    pub async fn gc_due(&self, phase: QueuePhase, cutoff: i64) -> Result<u64, MetaError> {
        let mut conn = self.reader.acquire().await?;
        count_candidates(&mut conn, phase.kind(), cutoff).await
    }

    /// Looks at up to `limit` candidates of `phase` queued at or before
    /// `cutoff`, after `after`, and removes those that are garbage, in one
    /// transaction. Manifests and links used (pushed, pulled) after `cutoff`
    /// are kept and looked at again later; links in the `busy` repositories
    /// (uploads in progress) stay queued.
    pub async fn gc_batch(
        &self,
        phase: QueuePhase,
        cutoff: i64,
        busy: Arc<HashSet<String>>,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<GcBatch, MetaError> {
        self.committer
            .write(move |conn| {
                // The job may run again (see the committer): it owns copies.
                let (busy, after) = (busy.clone(), after.clone());
                Box::pin(async move {
                    match phase {
                        QueuePhase::Manifests => {
                            manifests_batch(conn, cutoff, after.as_ref(), limit).await
                        }
                        QueuePhase::Contents => {
                            contents_batch(conn, cutoff, after.as_ref(), limit).await
                        }
                        QueuePhase::Links => {
                            links_batch(conn, cutoff, &busy, after.as_ref(), limit).await
                        }
                    }
                })
            })
            .await
    }

    /// What `gc_batch` would remove, without changing anything: a read of
    /// the same checks. Removals cascade (a removed manifest queues its
    /// blobs' links), so a real pass may remove more.
    pub async fn gc_dry_batch(
        &self,
        phase: QueuePhase,
        cutoff: i64,
        busy: &HashSet<String>,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<GcBatch, MetaError> {
        let mut conn = self.reader.acquire().await?;
        let mut batch = GcBatch::default();
        for c in candidates(&mut conn, phase.kind(), cutoff, after.as_ref(), limit).await? {
            batch.examined += 1;
            match phase {
                QueuePhase::Manifests => {
                    if judge_manifest(&mut conn, &c.1, &c.2, cutoff).await? == Verdict::Remove {
                        batch.counts.manifests_removed += 1;
                    }
                }
                QueuePhase::Contents => {
                    if let Some(size) = judge_content(&mut conn, &c.2).await? {
                        batch.counts.contents_removed += 1;
                        batch.counts.manifest_bytes += size;
                    }
                }
                QueuePhase::Links => {
                    if !busy.contains(&c.1)
                        && judge_link(&mut conn, &c.1, &c.2, cutoff).await? == Verdict::Remove
                    {
                        batch.counts.links_removed += 1;
                    }
                }
            }
            batch.next = Some(c);
        }
        Ok(batch)
    }

    /// Step 1 of deleting bytes: moves up to `limit` blobs doomed at or
    /// before `cutoff`, and still unlinked and unreferenced, to `deleting`.
    /// Returns them; the caller then unlinks the file of each one's nonce.
    pub async fn gc_begin_blob_deletes(
        &self,
        cutoff: i64,
        limit: u32,
    ) -> Result<Vec<DoomedBlob>, MetaError> {
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    let rows = sqlx::query(
                        "UPDATE blobs SET deleting_at = $2 WHERE digest IN (
                           SELECT b.digest FROM blobs b
                           WHERE b.doomed_at IS NOT NULL AND b.doomed_at <= $1 AND b.deleting_at IS NULL
                             AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
                             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob = b.digest)
                           ORDER BY b.doomed_at LIMIT $3)
                         RETURNING digest, nonce, size",
                    )
                    .bind(cutoff)
                    .bind(now_millis())
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await?;
                    Ok(rows
                        .into_iter()
                        .map(|r| DoomedBlob {
                            digest: r.get(0),
                            nonce: r.get(1),
                            size: r.get::<i64, _>(2) as u64,
                        })
                        .collect())
                })
            })
            .await
    }

    /// Blobs left in `deleting` by passes that stopped between steps 1 and
    /// 3: at most one batch per stopped pass.
    pub async fn gc_deleting_blobs(&self) -> Result<Vec<DoomedBlob>, MetaError> {
        let rows =
            sqlx::query("SELECT digest, nonce, size FROM blobs WHERE deleting_at IS NOT NULL")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| DoomedBlob {
                digest: r.get(0),
                nonce: r.get(1),
                size: r.get::<i64, _>(2) as u64,
            })
            .collect())
    }

    /// Step 3: deletes each row still `deleting` with the nonce whose file
    /// was unlinked. Returns how many rows went, and their bytes.
    pub async fn gc_finish_blob_deletes(
        &self,
        blobs: Vec<DoomedBlob>,
    ) -> Result<(u64, u64), MetaError> {
        let blobs = Arc::new(blobs);
        self.committer
            .write(move |conn| {
                let blobs = blobs.clone();
                Box::pin(async move {
                    let (mut removed, mut bytes) = (0, 0);
                    for b in blobs.iter() {
                        let gone = sqlx::query(
                            "DELETE FROM blobs WHERE digest = $1 AND nonce = $2 AND deleting_at IS NOT NULL",
                        )
                        .bind(&b.digest)
                        .bind(&b.nonce)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                        if gone == 1 {
                            removed += 1;
                            bytes += b.size;
                        }
                    }
                    Ok((removed, bytes))
                })
            })
            .await
    }

    /// Blobs doomed at or before `cutoff` whose bytes a pass would delete
    /// (for dry runs): count and bytes.
    pub async fn gc_deletable_blobs(&self, cutoff: i64) -> Result<(u64, u64), MetaError> {
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs b
             WHERE b.doomed_at IS NOT NULL AND (b.deleting_at IS NOT NULL OR b.doomed_at <= $1)
               AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
               AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob = b.digest)",
        )
        .bind(cutoff)
        .fetch_one(&self.reader)
        .await?;
        Ok((row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64))
    }

    /// The nonce each of `digests` that has a row names (for the orphan sweep).
    pub async fn blob_nonces(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, String>, MetaError> {
        let mut found = HashMap::new();
        for chunk in digests.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT digest, nonce FROM blobs WHERE digest IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for d in chunk {
                query = query.bind(d);
            }
            for row in query.fetch_all(&self.reader).await? {
                found.insert(row.get(0), row.get(1));
            }
        }
        Ok(found)
    }

    // ---- run records ---------------------------------------------------------

    /// Records the start of a pass; marks passes of dead processes
    /// interrupted and forgets those older than `RUNS_KEPT_MS`.
    pub async fn gc_run_started(&self, id: &str, dry_run: bool) -> Result<(), MetaError> {
        let id = id.to_string();
        self.committer
            .write(move |conn| {
                let id = id.clone();
                Box::pin(async move {
                    let now = now_millis();
                    super::db::execute_all(
                        conn,
                        "UPDATE gc_runs SET status = 'interrupted', finished_at = heartbeat_at
                           WHERE status = 'running' AND heartbeat_at < $2;
                         DELETE FROM gc_runs WHERE started_at < $5;
                         INSERT INTO gc_runs (id, started_at, heartbeat_at, dry_run, status)
                           VALUES ($1, $3, $3, $4, 'running')",
                        |q| {
                            q.bind(&id)
                                .bind(now - HEARTBEAT_STALE_MS)
                                .bind(now)
                                .bind(dry_run)
                                .bind(now - RUNS_KEPT_MS)
                        },
                    )
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Records a pass's progress (a heartbeat), or its end when `status` is
    /// not `running`.
    pub async fn gc_run_update(
        &self,
        id: &str,
        counts: GcCounts,
        status: &'static str,
        error: Option<String>,
        announce: Option<crate::events::Event>,
    ) -> Result<(), MetaError> {
        let id = id.to_string();
        self.committer
            .write(move |conn| {
                let (id, error, announce) = (id.clone(), error.clone(), announce.clone());
                Box::pin(async move {
                    let now = now_millis();
                    let finished = (status != "running").then_some(now);
                    sqlx::query(
                        "UPDATE gc_runs SET heartbeat_at = $2, finished_at = $3, status = $4, error = $5,
                           manifests_removed = $6, contents_removed = $7, manifest_bytes = $8,
                           links_removed = $9, blobs_doomed = $10, blobs_removed = $11, blob_bytes = $12,
                           orphan_files = $13, orphan_bytes = $14
                         WHERE id = $1",
                    )
                    .bind(&id)
                    .bind(now)
                    .bind(finished)
                    .bind(status)
                    .bind(error)
                    .bind(counts.manifests_removed as i64)
                    .bind(counts.contents_removed as i64)
                    .bind(counts.manifest_bytes as i64)
                    .bind(counts.links_removed as i64)
                    .bind(counts.blobs_doomed as i64)
                    .bind(counts.blobs_removed as i64)
                    .bind(counts.blob_bytes as i64)
                    .bind(counts.orphan_files as i64)
                    .bind(counts.orphan_bytes as i64)
                    .execute(&mut *conn)
                    .await?;
                    if let Some(event) = announce {
                        super::outbox::append(conn, &[event]).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// The most recent passes, newest first.
    pub async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRunRecord>, MetaError> {
        let stale = now_millis() - HEARTBEAT_STALE_MS;
        let rows = sqlx::query(
            "SELECT id, started_at, finished_at, CAST(dry_run AS INTEGER),
               CASE WHEN status = 'running' AND heartbeat_at < $2 THEN 'interrupted' ELSE status END,
               error, manifests_removed, contents_removed, manifest_bytes, links_removed,
               blobs_doomed, blobs_removed, blob_bytes, orphan_files, orphan_bytes
             FROM gc_runs ORDER BY started_at DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .bind(stale)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let n = |i: usize| r.get::<i64, _>(i) as u64;
                GcRunRecord {
                    id: r.get(0),
                    started_at: r.get(1),
                    finished_at: r.get(2),
                    dry_run: r.get::<super::db::Flag, _>(3).into(),
                    status: r.get(4),
                    error: r.get(5),
                    counts: GcCounts {
                        manifests_removed: n(6),
                        contents_removed: n(7),
                        manifest_bytes: n(8),
                        links_removed: n(9),
                        blobs_doomed: n(10),
                        blobs_removed: n(11),
                        blob_bytes: n(12),
                        orphan_files: n(13),
                        orphan_bytes: n(14),
                    },
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Actor;
    use crate::meta::{BlobLinked, PutManifestRefusal};
    use crate::oci::{Descriptor, Digest, Manifest, RepositoryName, Tag};

    struct Store {
        meta: MetaStore,
        dir: std::path::PathBuf,
    }

    impl Drop for Store {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("berth-gc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let meta = MetaStore::open_sqlite(&dir.join("berth.db")).await.unwrap();
        Store { meta, dir }
    }

    fn repo(name: &str) -> RepositoryName {
        name.parse().unwrap()
    }

    fn blob(n: u32) -> Digest {
        Digest::sha256_of(format!("blob {n}").as_bytes())
    }

    /// A cutoff later than everything done so far.
    async fn now_passed() -> i64 {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let now = now_millis();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        now
    }

    fn descriptor(d: &Digest) -> Descriptor {
        Descriptor {
            media_type: crate::oci::manifest::OCI_MANIFEST.into(),
            digest: d.clone(),
            size: 1,
            artifact_type: None,
            urls: None,
            annotations: None,
            platform: None,
        }
    }

    fn image(blobs: &[&Digest], subject: Option<&Digest>) -> Manifest {
        Manifest {
            media_type: crate::oci::manifest::OCI_MANIFEST.into(),
            artifact_type: None,
            blobs: blobs.iter().map(|d| descriptor(d)).collect(),
            manifests: Vec::new(),
            subject: subject.cloned(),
            annotations: None,
        }
    }

    async fn put(
        meta: &MetaStore,
        r: &RepositoryName,
        name: &str,
        m: &Manifest,
        tag: Option<&str>,
    ) -> Digest {
        let d = Digest::sha256_of(name.as_bytes());
        let tag: Option<Tag> = tag.map(|t| t.parse().unwrap());
        let stored = meta
            .put_manifest(r, &d, m, name, tag.as_ref(), None, &Actor::system("test"))
            .await
            .unwrap();
        assert!(!matches!(stored, Err(PutManifestRefusal::Missing(_))));
        d
    }

    async fn batch(meta: &MetaStore, phase: QueuePhase, cutoff: i64) -> GcCounts {
        let mut total = GcCounts::default();
        loop {
            let b = meta
                .gc_batch(phase, cutoff, Arc::default(), None, 100)
                .await
                .unwrap();
            if b.examined == 0 {
                return total;
            }
            total.add(&b.counts);
        }
    }

    /// Everything but the byte deletion, all delays passed at `cutoff`.
    async fn graph_pass(meta: &MetaStore, cutoff: i64) -> GcCounts {
        let mut c = batch(meta, QueuePhase::Manifests, cutoff).await;
        c.add(&batch(meta, QueuePhase::Contents, now_millis()).await);
        c.add(&batch(meta, QueuePhase::Links, cutoff).await);
        c
    }

    async fn nonce_of(meta: &MetaStore, d: &Digest) -> Option<(String, Option<i64>, Option<i64>)> {
        sqlx::query("SELECT nonce, doomed_at, deleting_at FROM blobs WHERE digest = $1")
            .bind(d.as_str())
            .fetch_optional(&meta.reader)
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
    }

    #[tokio::test]
    async fn an_untagged_manifest_goes_then_its_links_then_its_blobs() {
        let s = store().await;
        let (meta, r) = (&s.meta, repo("a/b"));
        for i in 0..3 {
            meta.add_blob(&r, &blob(i), 10, &format!("n{i}"))
                .await
                .unwrap();
        }
        let kept = put(
            meta,
            &r,
            "kept",
            &image(&[&blob(0), &blob(1)], None),
            Some("v1"),
        )
        .await;
        let gone = put(
            meta,
            &r,
            "gone",
            &image(&[&blob(1), &blob(2)], None),
            Some("v2"),
        )
        .await;
        // Nothing is garbage yet: all tagged, all links used.
        assert_eq!(
            graph_pass(meta, now_passed().await).await,
            GcCounts::default()
        );
        assert!(meta
            .delete_tag(&r, &"v2".parse().unwrap(), None, &Actor::system("test"))
            .await
            .unwrap()
            .unwrap()
            .is_some());
        // Too recent for a cutoff before the untag.
        let early = now_millis() - 60_000;
        assert_eq!(graph_pass(meta, early).await.manifests_removed, 0);
        let c = graph_pass(meta, now_passed().await).await;
        assert_eq!((c.manifests_removed, c.contents_removed), (1, 1));
        // Its links were queued when it went: due after their own delay.
        assert_eq!(c.links_removed, 0);
        let c = graph_pass(meta, now_passed().await).await;
        assert_eq!(
            (c.links_removed, c.blobs_doomed),
            (1, 1),
            "blob 2 only: blob 1 is used by v1"
        );
        assert!(meta.manifest_by_digest(&r, &gone).await.unwrap().is_none());
        assert!(meta.manifest_by_digest(&r, &kept).await.unwrap().is_some());
        let doomed = meta
            .gc_begin_blob_deletes(now_passed().await, 10)
            .await
            .unwrap();
        assert_eq!(
            doomed,
            vec![DoomedBlob {
                digest: blob(2).to_string(),
                nonce: "n2".into(),
                size: 10
            }]
        );
        assert_eq!(meta.gc_finish_blob_deletes(doomed).await.unwrap(), (1, 10));
        assert!(nonce_of(meta, &blob(2)).await.is_none());
        assert!(nonce_of(meta, &blob(1)).await.is_some());
        // The queue is empty again.
        assert_eq!(meta.gc_due(QueuePhase::Links, i64::MAX).await.unwrap(), 0);
        assert_eq!(
            meta.gc_due(QueuePhase::Manifests, i64::MAX).await.unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn a_push_after_the_doom_keeps_the_old_file_and_cancels_the_doom() {
        let s = store().await;
        let (meta, r) = (&s.meta, repo("a/b"));
        assert_eq!(
            meta.add_blob(&r, &blob(0), 5, "old").await.unwrap(),
            BlobLinked::Stored
        );
        meta.delete_blob(&r, &blob(0), &Actor::system("test"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            nonce_of(meta, &blob(0)).await.unwrap().1.is_some(),
            "doomed"
        );
        // A push between GC's mark (doom) and its delete step.
        assert_eq!(
            meta.add_blob(&r, &blob(0), 5, "new").await.unwrap(),
            BlobLinked::Duplicate
        );
        assert_eq!(
            nonce_of(meta, &blob(0)).await,
            Some(("old".into(), None, None))
        );
        assert!(meta
            .gc_begin_blob_deletes(now_passed().await, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            meta.blob_file(&r, &blob(0)).await.unwrap(),
            Some((5, "old".into()))
        );
    }

    #[tokio::test]
    async fn a_push_while_gc_deletes_the_bytes_gets_its_own_file_which_gc_spares() {
        let s = store().await;
        let (meta, r) = (&s.meta, repo("a/b"));
        meta.add_blob(&r, &blob(0), 5, "old").await.unwrap();
        meta.delete_blob(&r, &blob(0), &Actor::system("test"))
            .await
            .unwrap()
            .unwrap();
        let deleting = meta
            .gc_begin_blob_deletes(now_passed().await, 10)
            .await
            .unwrap();
        assert_eq!(deleting.len(), 1);
        // Readers and mounts no longer see it.
        assert!(meta.blob_file(&r, &blob(0)).await.unwrap().is_none());
        assert_eq!(
            meta.mount_blob(&repo("c"), &r, &blob(0)).await.unwrap(),
            None
        );
        // The push revives it with its own file: GC's unlink of "old" cannot touch it.
        assert_eq!(
            meta.add_blob(&r, &blob(0), 5, "new").await.unwrap(),
            BlobLinked::Stored
        );
        assert_eq!(
            nonce_of(meta, &blob(0)).await,
            Some(("new".into(), None, None))
        );
        // GC's delete step after the revive leaves the row.
        assert_eq!(meta.gc_finish_blob_deletes(deleting).await.unwrap(), (0, 0));
        assert_eq!(
            meta.blob_file(&r, &blob(0)).await.unwrap(),
            Some((5, "new".into()))
        );
        assert!(meta.gc_deleting_blobs().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_pass_stopped_between_unlink_and_delete_is_finished_by_the_next() {
        let s = store().await;
        let (meta, r) = (&s.meta, repo("a/b"));
        meta.add_blob(&r, &blob(0), 5, "n").await.unwrap();
        meta.delete_blob(&r, &blob(0), &Actor::system("test"))
            .await
            .unwrap()
            .unwrap();
        let deleting = meta
            .gc_begin_blob_deletes(now_passed().await, 10)
            .await
            .unwrap();
        // ...killed here. The next pass finds the row still deleting.
        let left = meta.gc_deleting_blobs().await.unwrap();
        assert_eq!(left, deleting);
        assert!(meta
            .gc_begin_blob_deletes(now_passed().await, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(meta.gc_finish_blob_deletes(left).await.unwrap(), (1, 5));
        assert!(nonce_of(meta, &blob(0)).await.is_none());
    }

    #[tokio::test]
    async fn a_repush_restarts_the_grace_period_of_a_link() {
        let s = store().await;
        let (meta, r) = (&s.meta, repo("a/b"));
        meta.add_blob(&r, &blob(0), 5, "one").await.unwrap();
        let cutoff = now_passed().await;
        // Pushed again after the cutoff a pass computed: the pass must spare it.
        assert_eq!(
            meta.add_blob(&r, &blob(0), 5, "two").await.unwrap(),
            BlobLinked::Duplicate
        );
        assert_eq!(
            batch(meta, QueuePhase::Links, cutoff).await.links_removed,
            0
        );
        assert!(meta.blob_file(&r, &blob(0)).await.unwrap().is_some());
        // Busy repositories (uploads in progress) keep their links queued.
        let later = now_passed().await;
        let busy: Arc<HashSet<String>> = Arc::new(["a/b".to_string()].into());
        let b = meta
            .gc_batch(QueuePhase::Links, later, busy, None, 10)
            .await
            .unwrap();
        assert_eq!((b.examined, b.counts.links_removed), (1, 0));
        assert_eq!(meta.gc_due(QueuePhase::Links, later).await.unwrap(), 1);
        assert_eq!(batch(meta, QueuePhase::Links, later).await.links_removed, 1);
    }

    #[tokio::test]
    async fn children_and_referrers_of_kept_manifests_stay() {
        let s = store().await;
        let (meta, r) = (&s.meta, repo("a/b"));
        meta.add_blob(&r, &blob(0), 5, "n").await.unwrap();
        let child = put(meta, &r, "child", &image(&[&blob(0)], None), None).await;
        let mut index = image(&[], None);
        index.media_type = crate::oci::manifest::OCI_INDEX.into();
        index.manifests = vec![descriptor(&child)];
        let index_digest = put(meta, &r, "index", &index, Some("latest")).await;
        let signature = put(
            meta,
            &r,
            "sig",
            &image(&[&blob(0)], Some(&index_digest)),
            None,
        )
        .await;
        let orphan_sig = put(meta, &r, "sig2", &image(&[&blob(0)], Some(&blob(9))), None).await;
        let c = graph_pass(meta, now_passed().await).await;
        assert_eq!(
            c.manifests_removed, 1,
            "only the referrer of an absent subject"
        );
        assert!(meta
            .manifest_by_digest(&r, &orphan_sig)
            .await
            .unwrap()
            .is_none());
        // Untagging the index takes it; its child and referrer follow one delay later.
        meta.delete_tag(&r, &"latest".parse().unwrap(), None, &Actor::system("test"))
            .await
            .unwrap()
            .unwrap();
        let c = graph_pass(meta, now_passed().await).await;
        assert_eq!(c.manifests_removed, 1);
        let c = graph_pass(meta, now_passed().await).await;
        assert_eq!((c.manifests_removed, c.contents_removed), (2, 2));
        for d in [&child, &index_digest, &signature] {
            assert!(meta.manifest_by_digest(&r, d).await.unwrap().is_none());
        }
        let c = graph_pass(meta, now_passed().await).await;
        assert_eq!((c.links_removed, c.blobs_doomed), (1, 1));
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM manifests")
            .fetch_one(&meta.reader)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn runs_are_recorded_and_dead_ones_read_as_interrupted() {
        let s = store().await;
        let meta = &s.meta;
        meta.gc_run_started("ancient", false).await.unwrap();
        sqlx::query("UPDATE gc_runs SET started_at = started_at - $1")
            .bind(RUNS_KEPT_MS + 1)
            .execute(&meta.writer)
            .await
            .unwrap();
        meta.gc_run_started("dead", false).await.unwrap();
        sqlx::query("UPDATE gc_runs SET heartbeat_at = heartbeat_at - 60000 WHERE id = 'dead'")
            .execute(&meta.writer)
            .await
            .unwrap();
        meta.gc_run_started("live", true).await.unwrap();
        let counts = GcCounts {
            blobs_removed: 3,
            blob_bytes: 30,
            ..GcCounts::default()
        };
        meta.gc_run_update("live", counts, "finished", None, None)
            .await
            .unwrap();
        let runs = meta.gc_runs(10).await.unwrap();
        let status: HashMap<_, _> = runs
            .iter()
            .map(|r| (r.id.as_str(), r.status.as_str()))
            .collect();
        assert_eq!(status["dead"], "interrupted");
        assert_eq!(status["live"], "finished");
        assert!(!status.contains_key("ancient"), "old records are forgotten");
        let live = runs.iter().find(|r| r.id == "live").unwrap();
        assert!(live.dry_run && live.finished_at.is_some());
        assert_eq!(live.counts, counts);
    }
}

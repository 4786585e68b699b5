//! Every change to the metadata, each one job for the committer. The checks a
//! change depends on run in the same transaction as the change.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    digest, now_millis, BlobLinked, Guard, MetaError, MetaStore, PutManifestRefusal, RemoveRefusal,
};
use crate::events::{Actor, Event, Kind};
use crate::oci::{Digest, Manifest, RepositoryName, Tag};

use super::db::{fetch_all_with, Arg, Args, Conn};

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

/// Links a blob whose row is live into `repo`: clears a doom mark (the
/// blob is needed again) and queues the link for garbage collection (it is
/// garbage if no manifest uses it within the grace period).
async fn link_blob(
    conn: &mut Conn,
    repo: &RepositoryName,
    blob: &Digest,
    now: i64,
) -> Result<(), MetaError> {
    super::db::execute_all(conn, "INSERT INTO repository_blobs (repository, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING;
         UPDATE blobs SET doomed_at = NULL WHERE digest = $2 AND doomed_at IS NOT NULL;
         INSERT INTO gc_candidates (kind, repository, digest, queued_at) VALUES ('link', $1, $2, $3)
           ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at", |q| q.bind(repo.as_str()).bind(blob.as_str()).bind(now)).await?;
    Ok(())
}

/// Removes manifest `digest` from `repo` (its tags must be gone) and queues
/// what may have become garbage with it: the links of its blobs, its
/// children and referrers in the repository, and its content. Its
/// project's usage counters drop in the same transaction.
pub(super) async fn remove_repository_manifest(
    conn: &mut Conn,
    repo: &str,
    digest: &str,
    now: i64,
) -> Result<(), MetaError> {
    super::quota::count_removed(conn, repo, digest).await?;
    super::db::execute_all(conn, "INSERT INTO gc_candidates (kind, repository, digest, queued_at)
           SELECT 'link', $1, mb.blob, $3 FROM manifest_blobs mb
           WHERE mb.manifest = $2 AND EXISTS (
             SELECT 1 FROM repository_blobs rb WHERE rb.repository = $1 AND rb.digest = mb.blob)
           ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at;
         INSERT INTO gc_candidates (kind, repository, digest, queued_at)
           SELECT 'manifest', $1, mc.child, $3 FROM manifest_children mc
           WHERE mc.manifest = $2 AND EXISTS (
             SELECT 1 FROM repository_manifests rm WHERE rm.repository = $1 AND rm.digest = mc.child)
           ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at;
         INSERT INTO gc_candidates (kind, repository, digest, queued_at)
           SELECT 'manifest', repository, digest, $3 FROM repository_manifests
           WHERE repository = $1 AND subject = $2
           ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at;
         INSERT INTO gc_candidates (kind, repository, digest, queued_at) VALUES ('content', '', $2, $3)
           ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at;
         DELETE FROM repository_manifests WHERE repository = $1 AND digest = $2", |q| q.bind(repo).bind(digest).bind(now)).await?;
    Ok(())
}

async fn has_blob(
    conn: &mut Conn,
    repo: &RepositoryName,
    blob: &Digest,
) -> Result<Option<i64>, MetaError> {
    Ok(sqlx::query_scalar(
        "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
         WHERE rb.repository = $1 AND rb.digest = $2 AND b.deleting_at IS NULL",
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
/// What `repo` lacks of a manifest's references (`blobs` linked, `children`
/// present), and whether the manifest itself is present already: one round
/// trip for manifests of up to 1,000 references.
async fn lookup_references(
    conn: &mut Conn,
    repo: &RepositoryName,
    blobs: &[&Digest],
    children: &[&Digest],
    manifest: &Digest,
) -> Result<(Vec<Digest>, bool), MetaError> {
    const BLOB: i64 = 0;
    const MANIFEST: i64 = 1;
    let mut wanted: Vec<(i64, &Digest)> = blobs.iter().map(|d| (BLOB, *d)).collect();
    wanted.extend(children.iter().map(|d| (MANIFEST, *d)));
    wanted.push((MANIFEST, manifest));
    wanted.sort();
    wanted.dedup();
    let mut present = std::collections::HashSet::new();
    // Bounded statements: SQLite allows 32,766 parameters, PostgreSQL 65,535.
    for chunk in wanted.chunks(1000) {
        let mut args = 1;
        let mut part = |kind: i64, table: &str| {
            let n = chunk.iter().filter(|(k, _)| *k == kind).count();
            (n > 0).then(|| {
                let placeholders: Vec<String> =
                    (args + 1..=args + n).map(|i| format!("${i}")).collect();
                args += n;
                format!(
                    "SELECT {kind}, digest FROM {table} WHERE repository = $1 AND digest IN ({})",
                    placeholders.join(", ")
                )
            })
        };
        let parts: Vec<String> = [
            part(BLOB, "repository_blobs"),
            part(MANIFEST, "repository_manifests"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let sql = parts.join(" UNION ALL ");
        let mut query = sqlx::query_as::<_, (i64, String)>(&sql).bind(repo.as_str());
        for (_, d) in chunk {
            query = query.bind(d.as_str());
        }
        present.extend(query.fetch_all(&mut *conn).await?);
    }
    let is_present = |kind: i64, d: &Digest| present.contains(&(kind, d.to_string()));
    let mut missing: Vec<Digest> = Vec::new();
    for (kind, d) in wanted {
        if !is_present(kind, d) && d != manifest {
            missing.push(d.clone());
        }
    }
    Ok((missing, is_present(MANIFEST, manifest)))
}

/// Statements run in one round trip. sqlx's SQLite driver executes every
/// statement of a query string and binds `$n` in each from one shared
/// argument list, so a multi-statement change costs one hop to the database
/// thread instead of one per statement (the hop, ~50 µs, is what a manifest
/// push is made of). On PostgreSQL the statements run one by one, each with
/// the whole argument list (`db::fetch_all_with`). Statements whose `$n`
/// would pass SQLite's parameter limit go in a script of their own.
struct Script<'a> {
    statements: Vec<String>,
    args: Args<'a>,
    /// Statements with arguments of their own, run after the script.
    separate: Vec<(String, Args<'a>)>,
    /// Statements that read the edges: last.
    after_edges: Vec<String>,
}

/// SQLite's default SQLITE_MAX_VARIABLE_NUMBER is 32,766.
const MAX_PARAMS: usize = 30_000;
/// Rows per multi-row insert.
const EDGES_PER_INSERT: usize = 500;

impl<'a> Script<'a> {
    fn new() -> Self {
        Script {
            statements: Vec::new(),
            args: Args::default(),
            separate: Vec::new(),
            after_edges: Vec::new(),
        }
    }

    /// Adds an argument; returns its placeholder.
    fn arg(&mut self, value: impl Into<Arg<'a>>) -> String {
        format!("${}", self.args.push(value))
    }

    fn push(&mut self, statement: String) {
        self.statements.push(statement);
    }

    /// A statement that must see every edge the script inserts.
    fn after_edges(&mut self, statement: String) {
        self.after_edges.push(statement);
    }

    /// Adds multi-row inserts of graph edges from `manifest`. `columns` names
    /// the table and its columns, the first being the manifest's. Edges that
    /// would take the script past SQLite's parameter limit (a manifest with
    /// thousands of layers) become statements of their own.
    fn edges<const N: usize>(&mut self, columns: &str, manifest: &'a str, edges: &[[&'a str; N]]) {
        for chunk in edges.chunks(EDGES_PER_INSERT) {
            let sql = |arg: &mut dyn FnMut(&'a str) -> String| {
                let first = arg(manifest);
                let rows: Vec<String> = chunk
                    .iter()
                    .map(|edge| {
                        let cols: Vec<String> = edge.iter().map(|v| arg(v)).collect();
                        format!("({first}, {})", cols.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO {columns} VALUES {} ON CONFLICT DO NOTHING",
                    rows.join(", ")
                )
            };
            if self.args.len() + 1 + chunk.len() * N <= MAX_PARAMS {
                let statement = sql(&mut |v| self.arg(v));
                self.push(statement);
            } else {
                let mut args = Args::default();
                let statement = sql(&mut |v| format!("${}", args.push(v)));
                self.separate.push((statement, args));
            }
        }
    }

    /// Runs the script; the rows its statements return, in order.
    async fn execute(mut self, conn: &mut Conn) -> Result<Vec<AnyRow>, MetaError> {
        if self.separate.is_empty() {
            self.statements.append(&mut self.after_edges);
        }
        let after = (!self.after_edges.is_empty())
            .then(|| (self.after_edges.join(";\n"), self.args.clone()));
        let sql = self.statements.join(";\n");
        let mut rows = fetch_all_with(conn, &sql, &self.args).await?;
        for (sql, args) in self.separate {
            fetch_all_with(conn, &sql, &args).await?;
        }
        if let Some((sql, args)) = after {
            rows.extend(fetch_all_with(conn, &sql, &args).await?);
        }
        Ok(rows)
    }
}

/// Marks a blob doomed if no repository links it any more; returns whether
/// it did. Every transaction that removes a link calls this, so a blob row
/// without links is always doomed (or deleting).
pub(super) async fn doom_if_unlinked(
    conn: &mut Conn,
    blob: &str,
    now: i64,
) -> Result<bool, MetaError> {
    let doomed = sqlx::query(
        "UPDATE blobs SET doomed_at = $2
         WHERE digest = $1 AND doomed_at IS NULL AND deleting_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = $1)",
    )
    .bind(blob)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(doomed == 1)
}

fn digests(rows: Vec<String>) -> Result<Vec<Digest>, MetaError> {
    rows.into_iter().map(digest).collect()
}

impl MetaStore {
    /// Records a verified, durably stored blob, written as the file of
    /// `nonce`, and links it into `repo`. If the blob's row is live (linked,
    /// or doomed but not yet being deleted) it keeps its file and the caller's
    /// file is surplus (`BlobLinked::Duplicate`); otherwise the row becomes
    /// live naming the caller's file (`BlobLinked::Stored`), which replaces
    /// the file of a row GC is deleting. Either way a doom mark is cleared.
    pub async fn add_blob(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
        size: u64,
        nonce: &str,
    ) -> Result<BlobLinked, MetaError> {
        let (repo, blob, nonce) = (repo.clone(), blob.clone(), nonce.to_string());
        self.committer
            .write(move |conn| {
                // The job may run again (see the committer): it owns copies.
                let (repo, blob, nonce) = (repo.clone(), blob.clone(), nonce.clone());
                Box::pin(async move {
                    // One round trip: repository, blob, link, GC candidate, and the nonce kept.
                    let now = now_millis();
                    let kept = super::db::fetch_all(conn, "INSERT INTO repositories (name, project, created_at) VALUES ($1, $2, $5) ON CONFLICT DO NOTHING;
                         INSERT INTO blobs (digest, size, created_at, nonce) VALUES ($3, $4, $5, $6)
                           ON CONFLICT (digest) DO UPDATE SET
                             nonce = CASE WHEN blobs.deleting_at IS NULL THEN blobs.nonce ELSE excluded.nonce END,
                             doomed_at = NULL, deleting_at = NULL;
                         INSERT INTO repository_blobs (repository, digest, created_at) VALUES ($1, $3, $5) ON CONFLICT DO NOTHING;
                         INSERT INTO gc_candidates (kind, repository, digest, queued_at) VALUES ('link', $1, $3, $5)
                           ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at;
                         SELECT nonce FROM blobs WHERE digest = $3", |q| q.bind(repo.as_str()).bind(repo.project()).bind(blob.as_str()).bind(size as i64).bind(now).bind(nonce.as_str())).await?;
                    let kept: Vec<String> = kept.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
                    match kept.as_slice() {
                        [kept] if *kept == nonce => Ok(BlobLinked::Stored),
                        [_] => Ok(BlobLinked::Duplicate),
                        _ => Err(MetaError::Corrupt(format!("blob {blob} has no row after its insert"))),
                    }
                })
            })
            .await
    }

    /// Links a blob whose bytes are stored and not being deleted into
    /// `repo` (the caller verified it received those bytes). Returns its
    /// size, or None if it is not stored so (then the caller writes a file).
    pub async fn link_stored_blob(
        &self,
        repo: &RepositoryName,
        blob: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let (repo, blob) = (repo.clone(), blob.clone());
        self.committer
            .write(move |conn| {
                // The job may run again (see the committer): it owns copies.
                let (repo, blob) = (repo.clone(), blob.clone());
                Box::pin(async move {
                    let size: Option<i64> = sqlx::query_scalar(
                        "SELECT size FROM blobs WHERE digest = $1 AND deleting_at IS NULL",
                    )
                    .bind(blob.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                    let Some(size) = size else { return Ok(None) };
                    let now = now_millis();
                    ensure_repository(conn, &repo, now).await?;
                    link_blob(conn, &repo, &blob, now).await?;
                    Ok(Some(size as u64))
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
                // The job may run again (see the committer): it owns copies.
                let (repo, from, blob) = (repo.clone(), from.clone(), blob.clone());
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
    /// child manifest it references is already in that repository; the
    /// push is an `artifact.pushed` event by `actor` in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_manifest(
        &self,
        repo: &RepositoryName,
        manifest_digest: &Digest,
        manifest: &Manifest,
        content: &str,
        tag: Option<&Tag>,
        guard: Guard,
        actor: &Actor,
    ) -> Result<Result<(), PutManifestRefusal>, MetaError> {
        let mut pushed = Event::new(Kind::ArtifactPushed, actor, 0).in_repository(repo.as_str());
        pushed.digest = Some(manifest_digest.to_string());
        pushed.reference = Some(tag.map_or_else(|| manifest_digest.to_string(), Tag::to_string));
        pushed.media_type = Some(manifest.media_type.clone());
        let referenced: u64 = manifest
            .blobs
            .iter()
            .chain(&manifest.manifests)
            .map(|d| d.size)
            .sum();
        pushed.size = Some((content.len() as u64 + referenced) as i64);
        let (repo, manifest_digest) = (repo.clone(), manifest_digest.clone());
        let manifest = std::sync::Arc::new(manifest.clone());
        let (content, tag): (std::sync::Arc<str>, _) = (content.into(), tag.cloned());
        self.committer
            .write(move |conn| {
                // The job may run again (see the committer): it owns copies.
                let (repo, manifest_digest, manifest, content, tag) = (repo.clone(), manifest_digest.clone(), manifest.clone(), content.clone(), tag.clone());
                let guard = guard.clone();
                let mut pushed = pushed.clone();
                Box::pin(async move {
                    // An immutable tag may be pushed again, but not moved.
                    if let (Some(tag), Some(guard)) = (&tag, &guard) {
                        if let Some(rule) = guard.protecting(tag.as_str()) {
                            let current: Option<String> = sqlx::query_scalar(
                                "SELECT digest FROM tags WHERE repository = $1 AND name = $2",
                            )
                            .bind(repo.as_str())
                            .bind(tag.as_str())
                            .fetch_optional(&mut *conn)
                            .await?;
                            if current.is_some_and(|d| d != manifest_digest.as_str()) {
                                return Ok(Err(PutManifestRefusal::Immutable(rule)));
                            }
                        }
                    }
                    let blobs: Vec<&Digest> = manifest.blobs.iter().map(|b| &b.digest).collect();
                    let children: Vec<&Digest> = manifest.manifests.iter().map(|m| &m.digest).collect();
                    let (missing, present) =
                        lookup_references(conn, &repo, &blobs, &children, &manifest_digest).await?;
                    if !missing.is_empty() {
                        return Ok(Err(PutManifestRefusal::Missing(missing)));
                    }
                    // Usage counters change only when the push adds an artifact to
                    // the repository (re-pushes and tag moves add nothing), and
                    // only then is a quota checked: one over the limit fails the
                    // job, which rolls it back.
                    let adds_artifact = !present;
                    let quota = guard.as_ref().and_then(|g| g.quota()).filter(|_| adds_artifact);
                    let annotations = manifest
                        .annotations
                        .as_ref()
                        .map(|a| serde_json::to_string(a).expect("string map serializes"));
                    let blob_edges: Vec<[&str; 2]> =
                        manifest.blobs.iter().map(|b| [b.digest.as_str(), b.media_type.as_str()]).collect();
                    let child_edges: Vec<[&str; 1]> = children.iter().map(|d| [d.as_str()]).collect();
                    // One round trip for the whole change (see `Script`); the
                    // graph edges are idempotent, so re-pushing rewrites nothing.
                    let mut script = Script::new();
                    pushed.at = now_millis();
                    let pushed = [pushed];
                    let digest = script.arg(manifest_digest.as_str());
                    let subject = script.arg(manifest.subject.as_ref().map(Digest::as_str));
                    let now = script.arg(pushed[0].at);
                    let repository = script.arg(repo.as_str());
                    // Anything referenced is in the repository, which therefore exists.
                    if blobs.is_empty() && children.is_empty() {
                        let project = script.arg(repo.project());
                        script.push(format!(
                            "INSERT INTO repositories (name, project, created_at) VALUES ({repository}, {project}, {now}) ON CONFLICT DO NOTHING"
                        ));
                    }
                    let values = [
                        script.arg(manifest.media_type.as_str()),
                        script.arg(manifest.artifact_type.as_deref()),
                        script.arg(annotations),
                        script.arg(content.len() as i64),
                        script.arg(&*content),
                    ];
                    let [media_type, artifact_type, annotations, size, content] = values;
                    script.push(format!(
                        "INSERT INTO manifests (digest, media_type, artifact_type, subject, annotations, size, content, created_at)
                         VALUES ({digest}, {media_type}, {artifact_type}, {subject}, {annotations}, {size}, {content}, {now}) ON CONFLICT DO NOTHING"
                    ));
                    script.edges("manifest_blobs (manifest, blob, media_type)", manifest_digest.as_str(), &blob_edges);
                    script.edges("manifest_children (manifest, child)", manifest_digest.as_str(), &child_edges);
                    script.push(format!(
                        "INSERT INTO repository_manifests (repository, digest, subject, pushed_at) VALUES ({repository}, {digest}, {subject}, {now})
                         ON CONFLICT (repository, digest) DO UPDATE SET pushed_at = excluded.pushed_at"
                    ));
                    // Queued for garbage collection: the manifest if pushed
                    // untagged, else the one its tag leaves.
                    let tag_arg = tag.as_ref().map(|t| script.arg(t.as_str()));
                    // The event reads what the tag named before it moves.
                    let previous = tag_arg.as_ref().map(|tag| {
                        format!("(SELECT digest FROM tags WHERE repository = {repository} AND name = {tag})")
                    });
                    let event = super::outbox::insert_sql(&pushed, previous.as_deref(), &mut |a| script.arg(a));
                    script.push(event);
                    match &tag_arg {
                        None => script.push(format!(
                            "INSERT INTO gc_candidates (kind, repository, digest, queued_at) VALUES ('manifest', {repository}, {digest}, {now})
                             ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at"
                        )),
                        Some(tag) => script.push(format!(
                            "INSERT INTO gc_candidates (kind, repository, digest, queued_at)
                             SELECT 'manifest', repository, digest, {now} FROM tags WHERE repository = {repository} AND name = {tag} AND digest <> {digest}
                             ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at"
                        )),
                    }
                    if let Some(tag) = tag_arg {
                        script.push(format!(
                            "INSERT INTO tags (repository, name, digest, updated_at) VALUES ({repository}, {tag}, {digest}, {now})
                             ON CONFLICT (repository, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at"
                        ));
                    }
                    if adds_artifact {
                        let project = script.arg(repo.project());
                        // With a quota, the usage is read before and after the
                        // counting, in the same round trip.
                        let read_usage = quota.map(|_| super::quota::select_usage(&project));
                        if let Some(read) = &read_usage {
                            script.push(read.clone());
                        }
                        for statement in super::quota::count_added(&project, &digest) {
                            script.after_edges(statement);
                        }
                        if let Some(read) = read_usage {
                            script.after_edges(read);
                        }
                    }
                    let usage = script.execute(conn).await?;
                    if let Some(quota) = quota {
                        let (before, after) = super::quota::before_and_after(usage)?;
                        super::quota::check_quota(repo.project(), quota, before, after)?;
                        if let Some(warning) = super::quota::warning(repo.project(), quota, before, after) {
                            let mut event = Event::new(Kind::QuotaWarning, &pushed[0].actor, pushed[0].at)
                                .in_repository(repo.as_str())
                                .with_detail(warning);
                            event.resource = Some(repo.project().to_string());
                            super::outbox::append(conn, &[event]).await?;
                        }
                    }
                    Ok(Ok(()))
                })
            })
            .await
    }

    /// Removes a tag, unless it is immutable; the manifest stays. Returns
    /// the digest it pointed to (None: no such tag).
    pub async fn delete_tag(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        guard: Guard,
        actor: &Actor,
    ) -> Result<Result<Option<Digest>, RemoveRefusal>, MetaError> {
        let (repo, tag, actor) = (repo.clone(), tag.clone(), actor.clone());
        self.committer
            .write(move |conn| {
                // The job may run again (see the committer): it owns copies.
                let (repo, tag, guard, actor) = (repo.clone(), tag.clone(), guard.clone(), actor.clone());
                Box::pin(async move {
                    if let Some(rule) = guard.and_then(|g| g.protecting(tag.as_str())) {
                        return Ok(Err(RemoveRefusal::Protected(tag.to_string(), rule)));
                    }
                    let removed: Option<String> = sqlx::query_scalar(
                        "DELETE FROM tags WHERE repository = $1 AND name = $2 RETURNING digest",
                    )
                    .bind(repo.as_str())
                    .bind(tag.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(untagged) = &removed {
                        let now = now_millis();
                        sqlx::query(
                            "INSERT INTO gc_candidates (kind, repository, digest, queued_at) VALUES ('manifest', $1, $2, $3)
                             ON CONFLICT (kind, repository, digest) DO UPDATE SET queued_at = excluded.queued_at",
                        )
                        .bind(repo.as_str())
                        .bind(untagged)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                        let mut event = Event::new(Kind::TagDeleted, &actor, now).in_repository(repo.as_str());
                        event.digest = Some(untagged.clone());
                        event.reference = Some(tag.to_string());
                        super::outbox::append(conn, &[event]).await?;
                    }
                    removed.map(digest).transpose().map(Ok)
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
        guard: Guard,
        actor: &Actor,
    ) -> Result<Result<Vec<String>, RemoveRefusal>, MetaError> {
        let (repo, manifest, actor) = (repo.clone(), manifest.clone(), actor.clone());
        self.committer
            .write(move |conn| {
                // The job may run again (see the committer): it owns copies.
                let (repo, manifest, guard, actor) =
                    (repo.clone(), manifest.clone(), guard.clone(), actor.clone());
                Box::pin(async move {
                    if !has_manifest(conn, &repo, &manifest).await? {
                        return Ok(Err(RemoveRefusal::NotFound));
                    }
                    if let Some(guard) = guard {
                        let tags: Vec<String> = sqlx::query_scalar(
                            "SELECT name FROM tags WHERE repository = $1 AND digest = $2",
                        )
                        .bind(repo.as_str())
                        .bind(manifest.as_str())
                        .fetch_all(&mut *conn)
                        .await?;
                        if let Some((tag, rule)) = tags
                            .into_iter()
                            .find_map(|t| guard.protecting(&t).map(|r| (t, r)))
                        {
                            return Ok(Err(RemoveRefusal::Protected(tag, rule)));
                        }
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
                    let now = now_millis();
                    remove_repository_manifest(conn, repo.as_str(), manifest.as_str(), now).await?;
                    let mut event =
                        Event::new(Kind::ArtifactDeleted, &actor, now).in_repository(repo.as_str());
                    event.digest = Some(manifest.to_string());
                    if !tags.is_empty() {
                        event.detail = Some(format!("tags: {}", tags.join(", ")));
                    }
                    super::outbox::append(conn, &[event]).await?;
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
        actor: &Actor,
    ) -> Result<Result<(), RemoveRefusal>, MetaError> {
        let (repo, blob, actor) = (repo.clone(), blob.clone(), actor.clone());
        self.committer
            .write(move |conn| {
                // The job may run again (see the committer): it owns copies.
                let (repo, blob, actor) = (repo.clone(), blob.clone(), actor.clone());
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
                    if removed == 1 {
                        let now = now_millis();
                        doom_if_unlinked(conn, blob.as_str(), now).await?;
                        let mut event =
                            Event::new(Kind::BlobDeleted, &actor, now).in_repository(repo.as_str());
                        event.digest = Some(blob.to_string());
                        super::outbox::append(conn, &[event]).await?;
                    }
                    Ok(if removed == 1 {
                        Ok(())
                    } else {
                        Err(RemoveRefusal::NotFound)
                    })
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Algorithm, Descriptor};

    /// A manifest with more layers than one statement may have parameters
    /// is stored whole: the script splits its edges.
    #[tokio::test]
    async fn manifests_with_thousands_of_layers() {
        let dir = std::env::temp_dir().join(format!("berth-meta-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let meta = MetaStore::open_sqlite(&dir.join("berth.db")).await.unwrap();
        let repo: RepositoryName = "big/layers".parse().unwrap();
        let actor = Actor::system("test");
        let layers: Vec<Descriptor> = (0..16_000u32)
            .map(|i| Descriptor {
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                digest: Digest::of(Algorithm::Sha256, &i.to_le_bytes()),
                size: 4,
                artifact_type: None,
                urls: None,
                annotations: None,
                platform: None,
            })
            .collect();
        let adds = layers
            .iter()
            .map(|l| meta.add_blob(&repo, &l.digest, 4, "n"));
        for added in futures_util::future::join_all(adds).await {
            added.unwrap();
        }
        let manifest = Manifest {
            media_type: crate::oci::manifest::OCI_MANIFEST.into(),
            artifact_type: None,
            blobs: layers,
            manifests: Vec::new(),
            subject: None,
            annotations: None,
        };
        let digest = Digest::sha256_of(b"the manifest");
        let tag: Tag = "v1".parse().unwrap();
        meta.put_manifest(&repo, &digest, &manifest, "{}", Some(&tag), None, &actor)
            .await
            .unwrap()
            .unwrap();
        let edges: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM manifest_blobs WHERE manifest = $1")
                .bind(digest.as_str())
                .fetch_one(&meta.reader)
                .await
                .unwrap();
        assert_eq!(edges, 16_000);
        let stored = meta.manifest_by_tag(&repo, &tag).await.unwrap().unwrap();
        assert_eq!(stored.digest, digest);
        // The usage counters saw every edge, stored after the main script.
        let usage = meta.project_usage("big").await.unwrap();
        assert_eq!(
            usage,
            super::super::Usage {
                bytes: 2 + 16_000 * 4,
                artifacts: 1
            }
        );
        // A quota is checked on the counters read around that path too.
        struct Limit(super::super::Quota);
        impl super::super::RepositoryRules for Limit {
            fn protecting(&self, _: &str) -> Option<String> {
                None
            }
            fn quota(&self) -> Option<super::super::Quota> {
                Some(self.0)
            }
        }
        let limit = |bytes| -> Guard {
            Some(std::sync::Arc::new(Limit(super::super::Quota {
                bytes: Some(bytes),
                artifacts: None,
            })))
        };
        let other = Digest::sha256_of(b"another manifest");
        let refused = meta
            .put_manifest(
                &repo,
                &other,
                &manifest,
                "{ }",
                None,
                limit(usage.bytes + 2),
                &actor,
            )
            .await;
        assert!(
            matches!(&refused, Err(MetaError::Refused(m)) if m.contains("exceeded")),
            "{refused:?}"
        );
        meta.put_manifest(
            &repo,
            &other,
            &manifest,
            "{ }",
            None,
            limit(usage.bytes + 3),
            &actor,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            meta.project_usage("big").await.unwrap().bytes,
            usage.bytes + 3
        );
        meta.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

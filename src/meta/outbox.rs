//! The outbox: domain events (`crate::events`), each written in the same
//! transaction as the change it describes, so that no committed change goes
//! unannounced and no event announces a change that did not commit. Facts
//! without a transaction of their own (pulls, logins, management requests)
//! arrive through the journal's flush (`record_journal`), which records how
//! far it has read each journal file in the same transaction.
//!
//! Consumers (the audit log; webhooks later) read the outbox in batches
//! after a cursor of their own and advance it in the transaction of what
//! they do with the batch. The order they read in is the commit order:
//! - SQLite has one writer, so `seq` (the rowid, the greatest plus one)
//!   grows with commits. The newest row is never deleted, so a `seq` is
//!   never used twice.
//! - On PostgreSQL several writers commit side by side and `seq` (a
//!   sequence) is taken before commit, so a smaller `seq` can commit later.
//!   Each row also holds `tx`, the id of the transaction that wrote it
//!   (`pg_current_xact_id()`, a column default installed at start), and a
//!   consumer reads only rows whose transaction is older than every
//!   transaction still running (`pg_snapshot_xmin`): that set only ever
//!   grows at its end, in (`tx`, `seq`) order, so a cursor never passes a
//!   row that commits later.
//!
//! Rows are pruned once every consumer has passed them and they are older
//! than the retention period.

use sqlx::Row;

use super::db::{fetch_all_once, fetch_all_with, Arg, Args, Backend, Conn};
use super::{MetaError, MetaStore};
use crate::events::{Actor, Event, Kind, Outcome};

/// PostgreSQL's part of the outbox, installed at every start: `seq` as a
/// BIGINT from a sequence and `tx` from the writing transaction (the
/// migration, shared with SQLite, declares `seq INTEGER PRIMARY KEY`,
/// SQLite's rowid). Each step runs only when needed: ALTER TABLE takes a
/// lock that would stall other replicas' writes.
pub(super) const POSTGRES_OBJECTS: &str = r#"
DO $body$
BEGIN
    IF (SELECT data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'events' AND column_name = 'seq') <> 'bigint' THEN
        ALTER TABLE events ALTER COLUMN seq TYPE BIGINT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'events_seq' AND relkind = 'S') THEN
        CREATE SEQUENCE events_seq OWNED BY events.seq;
        ALTER TABLE events ALTER COLUMN seq SET DEFAULT nextval('events_seq');
        ALTER TABLE events ALTER COLUMN tx SET DEFAULT pg_current_xact_id()::text::bigint;
    END IF;
END
$body$;
CREATE INDEX IF NOT EXISTS events_order ON events (tx, seq);
"#;

/// After rows were copied in with their `seq` (`berth migrate`), new rows
/// number after them (PostgreSQL).
pub(super) const AFTER_IMPORT: &str =
    "SELECT setval('events_seq', (SELECT COALESCE(MAX(seq), 0) FROM events) + 1, false)";

/// The columns an event is stored in, after `seq` and `tx`.
const COLUMNS: &str = "at, kind, outcome, actor, actor_kind, address, project, repository, digest, reference, previous, media_type, size, count, resource, detail";

/// A consumer's position: the last event it has handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventCursor {
    pub tx: i64,
    pub seq: i64,
}

/// An event read from the outbox.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub cursor: EventCursor,
    pub event: Event,
}

/// The statement inserting `events`, its values placeholders made by `arg`
/// (so the statement can join a caller's script). `previous` overrides the
/// first event's `previous` column with an SQL expression (the digest a tag
/// named, read in the same statement).
pub(super) fn insert_sql<'a>(
    events: &'a [Event],
    previous: Option<&str>,
    arg: &mut dyn FnMut(Arg<'a>) -> String,
) -> String {
    let rows: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let previous = match previous.filter(|_| i == 0) {
                Some(sql) => sql.to_string(),
                None => arg(e.previous.as_deref().into()),
            };
            let values = [
                arg(e.at.into()),
                arg(Arg::Text(Some(e.kind.name()))),
                arg(e.outcome.as_str().into()),
                arg(e.actor.name.as_str().into()),
                arg(e.actor.kind.as_str().into()),
                arg(e.actor.address.as_str().into()),
                arg(e.project.as_deref().into()),
                arg(e.repository.as_deref().into()),
                arg(e.digest.as_deref().into()),
                arg(e.reference.as_deref().into()),
                previous,
                arg(e.media_type.as_deref().into()),
                arg(e.size.into()),
                arg(e.count.into()),
                arg(e.resource.as_deref().into()),
                arg(e.detail.as_deref().into()),
            ];
            format!("({})", values.join(", "))
        })
        .collect();
    format!("INSERT INTO events ({COLUMNS}) VALUES {}", rows.join(", "))
}

/// Appends `events` to the outbox inside the caller's transaction.
pub(super) async fn append(conn: &mut Conn, events: &[Event]) -> Result<(), MetaError> {
    // 16 parameters a row: far below either database's limit.
    for chunk in events.chunks(1000) {
        let mut args = Args::default();
        let sql = insert_sql(chunk, None, &mut |a| format!("${}", args.push(a)));
        if chunk.len() == 1 {
            fetch_all_with(conn, &sql, &args).await?;
        } else {
            fetch_all_once(conn, &sql, &args).await?;
        }
    }
    Ok(())
}

fn event_of(row: &sqlx::any::AnyRow) -> Result<StoredEvent, MetaError> {
    let kind: String = row.try_get("kind")?;
    let kind = Kind::parse(&kind)
        .ok_or_else(|| MetaError::Corrupt(format!("event of unknown kind {kind:?}")))?;
    Ok(StoredEvent {
        cursor: EventCursor {
            tx: row.try_get("tx")?,
            seq: row.try_get("seq")?,
        },
        event: Event {
            at: row.try_get("at")?,
            kind,
            outcome: Outcome::parse(&row.try_get::<String, _>("outcome")?),
            actor: Actor {
                name: row.try_get("actor")?,
                kind: row.try_get("actor_kind")?,
                address: row.try_get("address")?,
            },
            project: row.try_get("project")?,
            repository: row.try_get("repository")?,
            digest: row.try_get("digest")?,
            reference: row.try_get("reference")?,
            previous: row.try_get("previous")?,
            media_type: row.try_get("media_type")?,
            size: row.try_get("size")?,
            count: row.try_get("count")?,
            resource: row.try_get("resource")?,
            detail: row.try_get("detail")?,
        },
    })
}

/// Rows after the cursor (`$1`, `$2`) of finished transactions only (see
/// the module's comment), as a condition an index serves: SQLite's rows all
/// have `tx` 0 and are read by rowid; PostgreSQL's by `events_order`.
fn unread(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "tx = $1 AND seq > $2",
        Backend::Postgres => {
            "(tx, seq) > ($1, $2) AND tx < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        }
    }
}

/// Rows up to the cursor (`$2`, `$3`), as `unread` reads them.
fn read_up_to(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "tx = $2 AND seq <= $3",
        Backend::Postgres => "(tx, seq) <= ($2, $3)",
    }
}

impl MetaStore {
    /// Up to `limit` events after `after`, in commit order.
    pub async fn events_after(
        &self,
        after: EventCursor,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, MetaError> {
        let sql = format!(
            "SELECT seq, tx, {COLUMNS} FROM events WHERE {} ORDER BY tx, seq LIMIT $3",
            unread(self.backend)
        );
        let rows = sqlx::query(&sql)
            .bind(after.tx)
            .bind(after.seq)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(event_of).collect()
    }

    /// How many committed events wait after `after`.
    pub async fn events_waiting(&self, after: EventCursor) -> Result<u64, MetaError> {
        let sql = format!("SELECT COUNT(*) FROM events WHERE {}", unread(self.backend));
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(after.tx)
            .bind(after.seq)
            .fetch_one(&self.reader)
            .await?;
        Ok(n as u64)
    }

    /// Where `consumer` stands; a consumer seen for the first time starts
    /// at the beginning of what is kept.
    pub async fn cursor(&self, consumer: &str) -> Result<EventCursor, MetaError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT tx, seq FROM event_cursors WHERE consumer = $1")
                .bind(consumer)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map_or_else(EventCursor::default, |(tx, seq)| EventCursor { tx, seq }))
    }

    /// Deletes events older than `before` (Unix ms) that every consumer has
    /// passed, a batch at a time; returns how many.
    pub async fn prune_events(&self, before: i64) -> Result<u64, MetaError> {
        const BATCH: i64 = 10_000;
        let mut removed = 0;
        let passed_by_all = read_up_to(self.backend);
        loop {
            let n = self
                .committer
                .write(move |conn| {
                    Box::pin(async move {
                        // No consumer row: nothing has been consumed yet.
                        let passed: Option<(i64, i64)> = sqlx::query_as(
                            "SELECT tx, seq FROM event_cursors ORDER BY tx, seq LIMIT 1",
                        )
                        .fetch_optional(&mut *conn)
                        .await?;
                        let Some((tx, seq)) = passed else {
                            return Ok(0);
                        };
                        // The newest row stays: SQLite would give its rowid again.
                        let sql = format!(
                            "DELETE FROM events WHERE seq IN (
                               SELECT seq FROM events
                               WHERE at < $1 AND {passed_by_all}
                                 AND seq < (SELECT MAX(seq) FROM events)
                               LIMIT $4)"
                        );
                        Ok(sqlx::query(&sql)
                            .bind(before)
                            .bind(tx)
                            .bind(seq)
                            .bind(BATCH)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected())
                    })
                })
                .await?;
            removed += n;
            if n < BATCH as u64 {
                return Ok(removed);
            }
        }
    }
}

/// Moves `consumer`'s cursor from `from` to `to` in the caller's
/// transaction; refused (an error, which rolls the transaction back) when
/// the cursor is no longer at `from`: another replica consumed meanwhile.
pub(super) async fn advance(
    conn: &mut Conn,
    consumer: &str,
    from: EventCursor,
    to: EventCursor,
    now: i64,
) -> Result<(), MetaError> {
    let moved = if from == EventCursor::default() {
        sqlx::query(
            "INSERT INTO event_cursors (consumer, tx, seq, updated_at) VALUES ($1, $4, $5, $6)
             ON CONFLICT (consumer) DO UPDATE SET tx = excluded.tx, seq = excluded.seq, updated_at = excluded.updated_at
             WHERE event_cursors.tx = $2 AND event_cursors.seq = $3",
        )
    } else {
        sqlx::query(
            "UPDATE event_cursors SET tx = $4, seq = $5, updated_at = $6
             WHERE consumer = $1 AND tx = $2 AND seq = $3",
        )
    }
    .bind(consumer)
    .bind(from.tx)
    .bind(from.seq)
    .bind(to.tx)
    .bind(to.seq)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if moved == 1 {
        Ok(())
    } else {
        Err(MetaError::Refused(format!(
            "the cursor of {consumer} moved under it (another replica consumed the same events)"
        )))
    }
}

/// Pulls of one artifact (or blob) in one repository, for the statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullCount {
    pub repository: String,
    pub digest: String,
    pub count: i64,
    /// Unix ms of the last of them.
    pub last_at: i64,
}

/// What one flush of a journal file records, in one transaction.
#[derive(Debug, Clone)]
pub struct JournalBatch {
    /// The file's key, and how far it has been read.
    pub file: String,
    pub position: u64,
    /// Keys of files deleted since their last batch: their records go.
    pub forget: Vec<String>,
    pub events: Vec<Event>,
    pub manifests: Vec<PullCount>,
    pub blobs: Vec<PullCount>,
}

impl MetaStore {
    /// How far the journal file `file` has been recorded (0: not at all).
    pub async fn journal_position(&self, file: &str) -> Result<u64, MetaError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM journal_files WHERE file = $1")
                .bind(file)
                .fetch_optional(&self.reader)
                .await?;
        Ok(position.unwrap_or(0) as u64)
    }

    /// Forgets the records of files named `prefix…` other than `keep` (files
    /// a previous process deleted after flushing them).
    pub async fn forget_journal_files(
        &self,
        prefix: &str,
        keep: Vec<String>,
    ) -> Result<(), MetaError> {
        let prefix = prefix.to_string();
        self.committer
            .write(move |conn| {
                let (prefix, keep) = (prefix.clone(), keep.clone());
                Box::pin(async move {
                    let files: Vec<String> = sqlx::query_scalar(
                        "SELECT file FROM journal_files WHERE substr(file, 1, length($1)) = $1",
                    )
                    .bind(&prefix)
                    .fetch_all(&mut *conn)
                    .await?;
                    for file in files.iter().filter(|f| !keep.contains(f)) {
                        sqlx::query("DELETE FROM journal_files WHERE file = $1")
                            .bind(file)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Records a flush of a journal file: its events into the outbox, the
    /// pull statistics, and the position read, together.
    pub async fn record_journal(&self, batch: JournalBatch) -> Result<(), MetaError> {
        let batch = std::sync::Arc::new(batch);
        self.committer
            .write(move |conn| {
                // The job may run again (see the committer): it shares the batch.
                let batch = batch.clone();
                Box::pin(async move {
                    let now = super::now_millis();
                    sqlx::query(
                        "INSERT INTO journal_files (file, position, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (file) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
                    )
                    .bind(&batch.file)
                    .bind(batch.position as i64)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    for file in &batch.forget {
                        sqlx::query("DELETE FROM journal_files WHERE file = $1")
                            .bind(file)
                            .execute(&mut *conn)
                            .await?;
                    }
                    append(conn, &batch.events).await?;
                    for (table, rows) in [
                        ("repository_manifests", &batch.manifests),
                        ("repository_blobs", &batch.blobs),
                    ] {
                        let sql = format!(
                            "UPDATE {table} SET pull_count = pull_count + $1,
                               last_pulled_at = CASE WHEN last_pulled_at IS NULL OR last_pulled_at < $2 THEN $2 ELSE last_pulled_at END
                             WHERE repository = $3 AND digest = $4"
                        );
                        for p in rows {
                            sqlx::query(&sql)
                                .bind(p.count)
                                .bind(p.last_at)
                                .bind(&p.repository)
                                .bind(&p.digest)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> Event {
        Event::new(Kind::Login, &Actor::system("test"), n).about(None, &format!("e{n}"))
    }

    async fn write(meta: &MetaStore, events: Vec<Event>) {
        meta.committer
            .write(move |conn| {
                let events = events.clone();
                Box::pin(async move { append(conn, &events).await })
            })
            .await
            .unwrap();
    }

    async fn consume(
        meta: &MetaStore,
        from: EventCursor,
        to: EventCursor,
    ) -> Result<(), MetaError> {
        meta.committer
            .write(move |conn| Box::pin(async move { advance(conn, "c", from, to, 0).await }))
            .await
    }

    #[tokio::test]
    async fn consumers_read_in_order_move_once_and_pruning_spares_the_unread() {
        let dir = std::env::temp_dir().join(format!("berth-outbox-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let meta = MetaStore::open_sqlite(&dir.join("berth.db")).await.unwrap();
        write(&meta, (1..=5).map(event).collect()).await;
        write(&meta, vec![event(6)]).await;
        let start = meta.cursor("c").await.unwrap();
        let first = meta.events_after(start, 4).await.unwrap();
        let at: Vec<i64> = first.iter().map(|e| e.event.at).collect();
        assert_eq!(at, [1, 2, 3, 4], "commit order, a batch at a time");
        assert_eq!(first[2].event.resource.as_deref(), Some("e3"));
        let read = first[3].cursor;
        consume(&meta, start, read).await.unwrap();
        // A second consumer moving from the same place is refused.
        assert!(matches!(
            consume(&meta, start, read).await,
            Err(MetaError::Refused(_))
        ));
        assert_eq!(meta.cursor("c").await.unwrap(), read);
        assert_eq!(meta.events_waiting(read).await.unwrap(), 2);
        let rest = meta.events_after(read, 10).await.unwrap();
        assert_eq!(rest.iter().map(|e| e.event.at).collect::<Vec<_>>(), [5, 6]);
        // Old enough and read: pruned; unread ones stay.
        assert_eq!(meta.prune_events(100).await.unwrap(), 4);
        assert_eq!(meta.events_after(start, 10).await.unwrap().len(), 2);
        // Read, but the newest row stays, so its seq is never given again.
        consume(&meta, read, rest[1].cursor).await.unwrap();
        assert_eq!(meta.prune_events(100).await.unwrap(), 1);
        write(&meta, vec![event(7)]).await;
        let next = meta.events_after(rest[1].cursor, 10).await.unwrap();
        assert_eq!(next.len(), 1);
        assert!(next[0].cursor > rest[1].cursor);
        meta.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! The audit log: appended in batches, read newest first with filters.

use super::db::{fetch_all_with, Args};
use super::outbox::EventCursor;
use super::{MetaError, MetaStore};

/// One audit entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRecord {
    /// Ordered by time (shaped like a UUIDv7).
    pub id: String,
    /// Unix milliseconds (pulls: the minute they were counted in).
    pub at: i64,
    pub actor: String,
    /// user, robot, anonymous or system.
    pub actor_kind: String,
    pub address: String,
    /// pull, push, delete, login, or a management operation (project.create, ...).
    pub action: String,
    pub project: Option<String>,
    pub resource: String,
    /// success or failure.
    pub outcome: String,
    pub detail: Option<String>,
    /// How many times (pulls of one minute share an entry).
    pub count: i64,
}

/// Conditions on audit entries; None matches anything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub project: Option<String>,
    /// Entries whose resource starts with this.
    pub resource_prefix: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only entries older than this id (the cursor of the previous page).
    pub before_id: Option<String>,
}

impl MetaStore {
    /// Writes audit entries made of the events up to `to` and moves
    /// `consumer`'s cursor there from `from`, in one transaction. An entry
    /// that exists (pulls of the same minute) adds its count.
    pub async fn append_audit(
        &self,
        records: Vec<AuditRecord>,
        consumer: &str,
        from: EventCursor,
        to: EventCursor,
    ) -> Result<(), MetaError> {
        // Statements of two lengths only, ROWS rows and one, so that both
        // stay prepared in the connection's statement cache: an insert of
        // every batch's own length was parsed afresh each time, and under a
        // push load parsing (and binding) 1,000-row inserts took a seventh
        // of the SQLite writer's time.
        const ROWS: usize = 32;
        let records = std::sync::Arc::new(records);
        let consumer = consumer.to_string();
        self.committer
            .write(move |conn| {
                let (records, consumer) = (records.clone(), consumer.clone());
                Box::pin(async move {
                    let mut rest = records.as_slice();
                    while !rest.is_empty() {
                        let n = if rest.len() >= ROWS { ROWS } else { 1 };
                        let (chunk, tail) = rest.split_at(n);
                        rest = tail;
                        let mut args = Args::default();
                        let rows: Vec<String> = chunk
                            .iter()
                            .map(|r| {
                                let values = [
                                    args.push(r.id.as_str()),
                                    args.push(r.at),
                                    args.push(r.actor.as_str()),
                                    args.push(r.actor_kind.as_str()),
                                    args.push(r.address.as_str()),
                                    args.push(r.action.as_str()),
                                    args.push(r.project.as_deref()),
                                    args.push(r.resource.as_str()),
                                    args.push(r.outcome.as_str()),
                                    args.push(r.detail.as_deref()),
                                    args.push(r.count),
                                ];
                                let values: Vec<String> = values.iter().map(|n| format!("${n}")).collect();
                                format!("({})", values.join(", "))
                            })
                            .collect();
                        let sql = format!(
                            "INSERT INTO audit_log (id, at, actor, actor_kind, address, action, project, resource, outcome, detail, count)
                             VALUES {} ON CONFLICT (id) DO UPDATE SET count = audit_log.count + excluded.count",
                            rows.join(", ")
                        );
                        fetch_all_with(conn, &sql, &args).await?;
                    }
                    super::outbox::advance(conn, &consumer, from, to, super::now_millis()).await
                })
            })
            .await
    }

    /// Entries matching `filter`, newest first, at most `limit`.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT id, at, actor, actor_kind, address, action, project, resource, outcome, detail, count
             FROM audit_log
             WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2)
               AND ($3 IS NULL OR project = $3) AND ($4 IS NULL OR substr(resource, 1, length($4)) = $4)
               AND ($5 IS NULL OR outcome = $5) AND ($6 IS NULL OR at >= $6)
               AND ($7 IS NULL OR at < $7) AND ($8 IS NULL OR id < $8)
             ORDER BY id DESC LIMIT $9",
        )
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(&filter.project)
        .bind(&filter.resource_prefix)
        .bind(&filter.outcome)
        .bind(filter.since)
        .bind(filter.until)
        .bind(&filter.before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Deletes entries older than `before` (Unix ms); returns how many.
    pub async fn prune_audit(&self, before: i64) -> Result<u64, MetaError> {
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    Ok(sqlx::query("DELETE FROM audit_log WHERE at < $1")
                        .bind(before)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected())
                })
            })
            .await
    }
}

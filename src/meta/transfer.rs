//! Copying an installation's metadata out of its embedded database into
//! another database (`berth migrate`): a read snapshot of the source file,
//! and the import of every table into the target in one transaction, in
//! foreign-key order, checked before it commits.
//!
//! The tables and their columns are read from the source's schema, not
//! listed here, so a table a later migration adds is copied without a change
//! to this file (the source and the target must be at the same migration,
//! which `Snapshot::open` and the target's schema comparison enforce).
//! Columns are copied by their declared type: `BIGINT`/`INTEGER`, `TEXT`,
//! and `BOOLEAN` (read as an integer, see `db.rs`, written as a boolean).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;

use futures_util::TryStreamExt;
use sqlx::{Connection, Row};

use super::db::{self, Backend, Conn};
use super::{MetaError, MetaStore, MIGRATIONS};
use crate::oci::Digest;

/// Most parameters one statement may bind: PostgreSQL's limit is 65,535,
/// SQLite's (since 3.32) 32,766.
fn max_params(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => 65_535,
        Backend::Sqlite => 32_766,
    }
}

/// Text buffered for one multi-row INSERT, at most (roughly): bounds the
/// memory a batch of large manifests takes.
const BATCH_TEXT_BYTES: usize = 8 << 20;

/// sqlx's own bookkeeping, not the registry's data.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bool,
}

impl Kind {
    fn of_declared(table: &str, column: &str, declared: &str) -> Result<Kind, MetaError> {
        let t = declared.to_ascii_uppercase();
        if t.contains("BOOL") {
            Ok(Kind::Bool)
        } else if t.contains("INT") {
            Ok(Kind::Int)
        } else if t.contains("TEXT") || t.contains("CHAR") || t.contains("CLOB") {
            Ok(Kind::Text)
        } else {
            Err(MetaError::Corrupt(format!(
                "{table}.{column}: column type {declared:?} cannot be copied"
            )))
        }
    }
}

/// A table of the source: its columns and their types, in schema order.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    columns: Vec<(String, Kind)>,
}

/// A blob row, as copying its bytes needs it.
#[derive(Debug, Clone)]
pub struct BlobRow {
    pub digest: Digest,
    pub nonce: String,
    pub size: u64,
    /// Garbage collection is deleting it: its file may already be gone.
    pub deleting: bool,
}

/// One read transaction on an embedded database: every read through it
/// sees the database as it was at the first, however the file changes
/// meanwhile (WAL mode: a running server's writes go on, unseen).
pub struct Snapshot {
    conn: Conn,
    /// In foreign-key order: a table comes after every table it references.
    tables: Vec<Table>,
}

impl Snapshot {
    /// Opens the database file read-only and starts the snapshot. Refuses a
    /// database whose schema is not at this build's latest migration.
    pub async fn open(path: &Path) -> Result<Snapshot, MetaError> {
        sqlx::any::install_default_drivers();
        let mut conn = Conn::connect(&format!("{}?mode=ro", db::sqlite_url(path))).await?;
        sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut conn)
            .await?;
        sqlx::query("BEGIN").execute(&mut conn).await?;
        // The first read fixes the snapshot.
        let applied: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT MAX(version) FROM {MIGRATIONS_TABLE} WHERE success"
        ))
        .fetch_one(&mut conn)
        .await
        .map_err(|e| {
            MetaError::Refused(format!("{} is not a Berth database ({e})", path.display()))
        })?;
        let latest = MIGRATIONS.iter().map(|m| m.version).max();
        if applied != latest {
            return Err(MetaError::Refused(format!(
                "{} is at schema version {}, this berth at {}: run this version of \
                 berth (berth serve) on it once, so it migrates, and try again",
                path.display(),
                applied.unwrap_or(0),
                latest.unwrap_or(0)
            )));
        }
        let tables = sqlite_tables(&mut conn).await?;
        Ok(Snapshot { conn, tables })
    }

    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// Every blob row, in digest order.
    pub async fn blobs(&mut self) -> Result<Vec<BlobRow>, MetaError> {
        let rows =
            sqlx::query("SELECT digest, nonce, size, deleting_at FROM blobs ORDER BY digest")
                .fetch_all(&mut self.conn)
                .await?;
        rows.into_iter()
            .map(|r| {
                let text: String = r.get(0);
                Ok(BlobRow {
                    digest: Digest::from_str(&text)
                        .map_err(|e| MetaError::Corrupt(format!("blob {text:?}: {e}")))?,
                    nonce: r.get(1),
                    size: r.get::<i64, _>(2) as u64,
                    deleting: r.get::<Option<i64>, _>(3).is_some(),
                })
            })
            .collect()
    }

    /// Rows per table.
    pub async fn counts(&mut self) -> Result<BTreeMap<String, u64>, MetaError> {
        let names: Vec<String> = self.tables.iter().map(|t| t.name.clone()).collect();
        count_rows(&mut self.conn, &names).await
    }

    /// Ends the snapshot.
    pub async fn close(mut self) {
        let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
    }
}

/// The embedded database's tables (but sqlx's), in foreign-key order.
async fn sqlite_tables(conn: &mut Conn) -> Result<Vec<Table>, MetaError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> $1 ORDER BY rowid",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut *conn)
    .await?;
    let mut tables = Vec::new();
    let mut references = HashMap::new();
    for name in names {
        let columns: Vec<(String, String)> =
            sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                .bind(&name)
                .fetch_all(&mut *conn)
                .await?;
        let columns = columns
            .into_iter()
            .map(|(c, t)| Ok((c.clone(), Kind::of_declared(&name, &c, &t)?)))
            .collect::<Result<Vec<_>, MetaError>>()?;
        let referenced: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(&name)
                .fetch_all(&mut *conn)
                .await?;
        references.insert(name.clone(), referenced);
        tables.push(Table { name, columns });
    }
    foreign_key_order(tables, &references)
}

/// Orders tables so each comes after those it references (schema order
/// otherwise).
fn foreign_key_order(
    mut pending: Vec<Table>,
    references: &HashMap<String, Vec<String>>,
) -> Result<Vec<Table>, MetaError> {
    let mut ordered: Vec<Table> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let names: BTreeSet<&str> = pending.iter().map(|t| t.name.as_str()).collect();
        let ready = pending.iter().position(|t| {
            references.get(&t.name).is_none_or(|refs| {
                refs.iter()
                    .all(|r| r == &t.name || !names.contains(r.as_str()))
            })
        });
        let Some(i) = ready else {
            return Err(MetaError::Corrupt(format!(
                "foreign keys form a cycle among {names:?}"
            )));
        };
        ordered.push(pending.remove(i));
    }
    Ok(ordered)
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

async fn count_rows(
    conn: &mut Conn,
    tables: &[String],
) -> Result<BTreeMap<String, u64>, MetaError> {
    let mut counts = BTreeMap::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", quoted(t)))
            .fetch_one(&mut *conn)
            .await?;
        counts.insert(t.clone(), n as u64);
    }
    Ok(counts)
}

/// The tables of a database (but sqlx's) and their column names.
async fn columns_of(conn: &mut Conn) -> Result<BTreeMap<String, BTreeSet<String>>, MetaError> {
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    match Backend::of(conn) {
        Backend::Sqlite => {
            for t in sqlite_tables(conn).await? {
                tables.insert(t.name, t.columns.into_iter().map(|(c, _)| c).collect());
            }
        }
        Backend::Postgres => {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT CAST(c.table_name AS TEXT), CAST(c.column_name AS TEXT)
                 FROM information_schema.columns c
                 JOIN information_schema.tables t
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                 WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
                   AND c.table_name <> $1",
            )
            .bind(MIGRATIONS_TABLE)
            .fetch_all(&mut *conn)
            .await?;
            for (t, c) in rows {
                tables.entry(t).or_default().insert(c);
            }
        }
    }
    Ok(tables)
}

/// A value on its way from the source to the target, typed as its column
/// (PostgreSQL wants a NULL of the column's type).
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

impl MetaStore {
    /// Rows per table of this database (sqlx's table excepted).
    pub async fn table_counts(&self) -> Result<BTreeMap<String, u64>, MetaError> {
        let mut conn = self.reader.acquire().await?;
        let tables: Vec<String> = columns_of(&mut conn).await?.into_keys().collect();
        count_rows(&mut conn, &tables).await
    }

    /// Copies every table of `source` into this database in one
    /// transaction, in foreign-key order, in multi-row INSERTs. The
    /// database must hold no rows, unless `replace`: then it is emptied
    /// first, in the same transaction. Before committing, checks that every
    /// table holds as many rows as the source's and that every manifest's
    /// content hashes to its digest; any failure rolls everything back.
    /// `progress` is told each table's rows as they are copied. Returns the
    /// rows copied per table.
    pub async fn import_snapshot(
        &self,
        source: &mut Snapshot,
        replace: bool,
        progress: &(dyn Fn(&str, u64) + Sync),
    ) -> Result<BTreeMap<String, u64>, MetaError> {
        let mut conn = self.writer.acquire().await?;
        let backend = Backend::of(&conn);
        // Same tables and columns: both at the same migration.
        let target = columns_of(&mut conn).await?;
        let wanted: BTreeMap<String, BTreeSet<String>> = source
            .tables
            .iter()
            .map(|t| {
                let columns = t.columns.iter().map(|(c, _)| c.clone()).collect();
                (t.name.clone(), columns)
            })
            .collect();
        if target != wanted {
            return Err(MetaError::Refused(format!(
                "the target database's tables differ from the source's (source: {:?}; target: {:?})",
                wanted.keys().collect::<Vec<_>>(),
                target.keys().collect::<Vec<_>>()
            )));
        }
        sqlx::query(backend.begin()).execute(&mut *conn).await?;
        match import(&mut conn, backend, source, replace, progress).await {
            Ok(copied) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok(copied)
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }

    /// Manifests whose content does not hash to their digest, or whose size
    /// is not their content's (at most `limit` named); and how many were
    /// checked.
    pub async fn corrupt_manifests(&self, limit: usize) -> Result<(u64, Vec<String>), MetaError> {
        let mut conn = self.reader.acquire().await?;
        check_manifests(&mut conn, limit).await
    }
}

async fn import(
    conn: &mut Conn,
    backend: Backend,
    source: &mut Snapshot,
    replace: bool,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> Result<BTreeMap<String, u64>, MetaError> {
    let names: Vec<String> = source.tables.iter().map(|t| t.name.clone()).collect();
    if backend == Backend::Postgres {
        // Nothing else reads or writes the tables until the copy is whole;
        // a replica serving the database makes the copy fail, not wait.
        sqlx::query("SET LOCAL lock_timeout = '10s'")
            .execute(&mut *conn)
            .await?;
        let list: Vec<String> = names.iter().map(|n| quoted(n)).collect();
        sqlx::query(&format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            list.join(", ")
        ))
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            MetaError::Refused(format!(
                "the target database is in use (is a Berth server running on it? stop it                  during the migration): {e}"
            ))
        })?;
    }
    let held: Vec<String> = count_rows(conn, &names)
        .await?
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("{t}: {n}"))
        .collect();
    if !held.is_empty() {
        if !replace {
            return Err(MetaError::Refused(format!(
                "the target database already holds registry data ({}); give --replace \
                 to delete it and copy the source's in its place",
                held.join(", ")
            )));
        }
        for t in names.iter().rev() {
            sqlx::query(&format!("DELETE FROM {}", quoted(t)))
                .execute(&mut *conn)
                .await?;
        }
    }
    let mut copied = BTreeMap::new();
    for table in &source.tables {
        let n = copy_table(&mut source.conn, conn, backend, table, progress).await?;
        copied.insert(table.name.clone(), n);
    }
    if backend == Backend::Postgres {
        // The outbox's rows came with their numbers: new ones follow them.
        sqlx::query(super::outbox::AFTER_IMPORT)
            .execute(&mut *conn)
            .await?;
    }
    // The checks, on what is about to be committed.
    let expected = source.counts().await?;
    let actual = count_rows(conn, &names).await?;
    let differing: Vec<String> = expected
        .iter()
        .filter(|(t, n)| actual.get(*t) != Some(n) || copied.get(*t) != Some(n))
        .map(|(t, n)| format!("{t}: source {n}, target {:?}", actual.get(t)))
        .collect();
    if !differing.is_empty() {
        return Err(MetaError::Corrupt(format!(
            "row counts differ after the copy: {}",
            differing.join(", ")
        )));
    }
    let (_, bad) = check_manifests(conn, 10).await?;
    if !bad.is_empty() {
        return Err(MetaError::Corrupt(format!(
            "manifests whose content does not match their digest: {}",
            bad.join(", ")
        )));
    }
    Ok(copied)
}

async fn copy_table(
    source: &mut Conn,
    target: &mut Conn,
    backend: Backend,
    table: &Table,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> Result<u64, MetaError> {
    let select: Vec<String> = table
        .columns
        .iter()
        .map(|(c, kind)| match kind {
            Kind::Bool => format!("CAST({} AS INTEGER)", quoted(c)),
            _ => quoted(c),
        })
        .collect();
    let select = format!("SELECT {} FROM {}", select.join(", "), quoted(&table.name));
    let width = table.columns.len();
    let max_rows = (max_params(backend) / width).max(1);
    let mut batch: Vec<Value> = Vec::new();
    let mut text_bytes = 0;
    let mut total = 0u64;
    let mut rows = sqlx::query(&select).fetch(&mut *source);
    while let Some(row) = rows.try_next().await? {
        for (i, (_, kind)) in table.columns.iter().enumerate() {
            batch.push(match kind {
                Kind::Int => Value::Int(row.try_get(i)?),
                Kind::Bool => Value::Bool(row.try_get::<Option<i64>, _>(i)?.map(|v| v != 0)),
                Kind::Text => {
                    let v: Option<String> = row.try_get(i)?;
                    text_bytes += v.as_ref().map_or(0, String::len);
                    Value::Text(v)
                }
            });
        }
        if batch.len() / width >= max_rows || text_bytes >= BATCH_TEXT_BYTES {
            total += insert(target, table, std::mem::take(&mut batch)).await?;
            text_bytes = 0;
            progress(&table.name, total);
        }
    }
    drop(rows);
    if !batch.is_empty() {
        total += insert(target, table, batch).await?;
    }
    progress(&table.name, total);
    Ok(total)
}

/// One multi-row INSERT of `values` (whole rows); returns the rows.
async fn insert(target: &mut Conn, table: &Table, values: Vec<Value>) -> Result<u64, MetaError> {
    let width = table.columns.len();
    let rows = values.len() / width;
    let columns: Vec<String> = table.columns.iter().map(|(c, _)| quoted(c)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quoted(&table.name),
        columns.join(", ")
    );
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push(')');
    }
    let mut query = sqlx::query(&sql);
    for v in values {
        query = match v {
            Value::Int(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Bool(v) => query.bind(v),
        };
    }
    let inserted = query.execute(&mut *target).await?.rows_affected();
    if inserted != rows as u64 {
        return Err(MetaError::Corrupt(format!(
            "{}: {rows} rows sent, {inserted} inserted",
            table.name
        )));
    }
    Ok(inserted)
}

async fn check_manifests(conn: &mut Conn, limit: usize) -> Result<(u64, Vec<String>), MetaError> {
    let mut rows = sqlx::query("SELECT digest, size, content FROM manifests").fetch(&mut *conn);
    let mut checked = 0;
    let mut bad = Vec::new();
    while let Some(row) = rows.try_next().await? {
        checked += 1;
        let text: String = row.try_get(0)?;
        let size: i64 = row.try_get(1)?;
        let content: String = row.try_get(2)?;
        let ok = match Digest::from_str(&text) {
            Ok(d) => {
                Digest::of(d.algorithm(), content.as_bytes()) == d && size == content.len() as i64
            }
            Err(_) => false,
        };
        if !ok && bad.len() < limit {
            bad.push(text);
        }
    }
    Ok((checked, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole SQLite database copied into another: every table, booleans
    /// and NULLs intact, batches split by the parameter limit; a second
    /// import is refused, and replaces with `replace`.
    #[tokio::test]
    async fn sqlite_to_sqlite() {
        let dir = std::env::temp_dir().join(format!("berth-transfer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let source_path = dir.join("source.db");
        let source = MetaStore::open_sqlite(&source_path).await.unwrap();
        let mut w = source.writer.acquire().await.unwrap();
        sqlx::query(
            "INSERT INTO projects (name, public, created_at) VALUES ('p', TRUE, 1), ('q', FALSE, 2)",
        )
        .execute(&mut *w)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO repositories (name, project, created_at) VALUES ('p/app', 'p', 3)",
        )
        .execute(&mut *w)
        .await
        .unwrap();
        // More blob rows than one statement may bind (6 columns each).
        sqlx::query("BEGIN").execute(&mut *w).await.unwrap();
        for i in 0..6000u32 {
            sqlx::query(
                "INSERT INTO blobs (digest, size, created_at, nonce) VALUES ($1, $2, 4, '')",
            )
            .bind(Digest::sha256_of(&i.to_le_bytes()).to_string())
            .bind(i as i64)
            .execute(&mut *w)
            .await
            .unwrap();
        }
        sqlx::query("COMMIT").execute(&mut *w).await.unwrap();
        let content = r#"{"schemaVersion":2}"#;
        let digest = Digest::sha256_of(content.as_bytes()).to_string();
        sqlx::query(
            "INSERT INTO manifests (digest, media_type, size, content, created_at) VALUES ($1, 'm', $2, $3, 5)",
        )
        .bind(&digest)
        .bind(content.len() as i64)
        .bind(content)
        .execute(&mut *w)
        .await
        .unwrap();
        drop(w);

        let target = MetaStore::open_sqlite(&dir.join("target.db"))
            .await
            .unwrap();
        let mut snapshot = Snapshot::open(&source_path).await.unwrap();
        let copied = target
            .import_snapshot(&mut snapshot, false, &|_, _| {})
            .await
            .unwrap();
        assert_eq!(copied["blobs"], 6000);
        assert_eq!(copied["projects"], 2);
        assert_eq!(
            target.table_counts().await.unwrap(),
            snapshot.counts().await.unwrap()
        );
        let public: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, CAST(public AS INTEGER) FROM projects ORDER BY name")
                .fetch_all(&target.reader)
                .await
                .unwrap();
        assert_eq!(public, vec![("p".into(), 1), ("q".into(), 0)]);
        assert_eq!(target.corrupt_manifests(10).await.unwrap(), (1, vec![]));

        let refused = target
            .import_snapshot(&mut snapshot, false, &|_, _| {})
            .await;
        assert!(
            matches!(&refused, Err(MetaError::Refused(m)) if m.contains("projects: 2")),
            "{refused:?}"
        );
        let again = target
            .import_snapshot(&mut snapshot, true, &|_, _| {})
            .await
            .unwrap();
        assert_eq!(again, copied);
        snapshot.close().await;
        source.close().await;
        target.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

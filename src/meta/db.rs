//! The two databases behind one interface: the embedded SQLite file and
//! PostgreSQL, through sqlx's `Any` driver. The SQL everywhere in `meta` is
//! the dialect both share; the few differences live here:
//! - a statement list runs as one query on SQLite (one hop to its thread)
//!   and statement by statement on PostgreSQL (whose extended protocol takes
//!   one statement per query), every statement binding the same arguments;
//! - write transactions: `BEGIN IMMEDIATE` on SQLite (one writer), and
//!   SERIALIZABLE on PostgreSQL, where writes of several replicas interleave
//!   and a conflict makes the committer run the transaction again;
//! - booleans are read as integers (`CAST(x AS INTEGER)`), since the `Any`
//!   driver does not map SQLite's BOOLEAN columns.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Executor};

use super::MetaError;

pub(crate) type Conn = AnyConnection;
pub(crate) type Pool = AnyPool;
pub(crate) type Bound<'q> = Query<'q, Any, AnyArguments<'q>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(conn: &Conn) -> Backend {
        if conn.backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    pub fn of_url(url: &str) -> Backend {
        if is_sqlite(url) {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// Opens a write transaction.
    pub fn begin(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        }
    }
}

/// The write gate (PostgreSQL): (take, release) statements of a session
/// advisory lock that every write transaction holds shared, and one that
/// runs again after a conflict holds alone. The key is fixed and
/// "BRTH"-prefixed, like the leases'.
pub const GATE_SHARED: (&str, &str) = (
    "SELECT pg_advisory_lock_shared(4778974822807896165)",
    "SELECT pg_advisory_unlock_shared(4778974822807896165)",
);
pub const GATE_ALONE: (&str, &str) = (
    "SELECT pg_advisory_lock(4778974822807896165)",
    "SELECT pg_advisory_unlock(4778974822807896165)",
);

/// Whether `e` says the database could not be reached or went away (a
/// restart, a failover, the network), rather than refused a statement: a
/// retry later may succeed.
pub fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P0x: the server is shutting
        // down or starting up.
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Whether an error is a write conflict that running the transaction again
/// resolves: PostgreSQL's serialization failure or deadlock.
pub fn is_conflict(e: &MetaError) -> bool {
    match e {
        MetaError::Db(sqlx::Error::Database(e)) => {
            matches!(e.code().as_deref(), Some("40001") | Some("40P01"))
        }
        _ => false,
    }
}

fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(';').map(str::trim).filter(|s| !s.is_empty())
}

/// Runs `sql`, one or more statements separated by `;` (none containing a
/// `;` of its own), with the arguments `bind` adds to each; returns the
/// rows they changed.
pub async fn execute_all<'q, F>(conn: &mut Conn, sql: &'q str, bind: F) -> Result<u64, MetaError>
where
    F: Fn(Bound<'q>) -> Bound<'q>,
{
    Ok(match Backend::of(conn) {
        Backend::Sqlite => bind(sqlx::query(sql))
            .execute(&mut *conn)
            .await?
            .rows_affected(),
        Backend::Postgres => {
            let mut changed = 0;
            for statement in statements(sql) {
                changed += bind(sqlx::query(statement))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            }
            changed
        }
    })
}

/// Like `execute_all`; returns the rows the statements return, in order.
pub async fn fetch_all<'q, F>(
    conn: &mut Conn,
    sql: &'q str,
    bind: F,
) -> Result<Vec<AnyRow>, MetaError>
where
    F: Fn(Bound<'q>) -> Bound<'q>,
{
    Ok(match Backend::of(conn) {
        Backend::Sqlite => bind(sqlx::query(sql)).fetch_all(&mut *conn).await?,
        Backend::Postgres => {
            let mut rows = Vec::new();
            for statement in statements(sql) {
                rows.extend(bind(sqlx::query(statement)).fetch_all(&mut *conn).await?);
            }
            rows
        }
    })
}

/// An argument list that can be bound to several statements in turn.
#[derive(Debug, Clone, Default)]
pub struct Args<'a>(Vec<Arg<'a>>);

#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Text(Option<Cow<'a, str>>),
    Int(i64),
    MaybeInt(Option<i64>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v.map(Cow::Borrowed))
    }
}

impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v.map(Cow::Owned))
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::MaybeInt(v)
    }
}

impl<'a> Args<'a> {
    /// Adds an argument; returns how many there are.
    pub fn push(&mut self, value: impl Into<Arg<'a>>) -> usize {
        self.0.push(value.into());
        self.0.len()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Binds the first `n` arguments.
    fn bind<'q>(&'q self, mut query: Bound<'q>, n: usize) -> Bound<'q> {
        for arg in &self.0[..n.min(self.0.len())] {
            query = match arg {
                Arg::Text(v) => query.bind(v.as_deref()),
                Arg::Int(v) => query.bind(*v),
                Arg::MaybeInt(v) => query.bind(*v),
            };
        }
        query
    }
}

/// The highest `$n` in a statement.
fn placeholders(statement: &str) -> usize {
    statement
        .split('$')
        .skip(1)
        .filter_map(|s| {
            let digits = s.bytes().take_while(u8::is_ascii_digit).count();
            s[..digits].parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Like `fetch_all`, with an argument list. On PostgreSQL each statement
/// gets the arguments up to the highest it names: a prepared statement is
/// cached by its text, and must be bound with as many arguments each time.
pub async fn fetch_all_with(
    conn: &mut Conn,
    sql: &str,
    args: &Args<'_>,
) -> Result<Vec<AnyRow>, MetaError> {
    run_with(conn, sql, args, true).await
}

/// Like `fetch_all_with`, for a statement whose text is seldom the same
/// twice (a multi-row insert of a varying number of rows): it is not kept
/// in the connection's statement cache, where it would push out the
/// statements every push runs and make each of them be parsed again.
pub async fn fetch_all_once(
    conn: &mut Conn,
    sql: &str,
    args: &Args<'_>,
) -> Result<Vec<AnyRow>, MetaError> {
    run_with(conn, sql, args, false).await
}

async fn run_with(
    conn: &mut Conn,
    sql: &str,
    args: &Args<'_>,
    persistent: bool,
) -> Result<Vec<AnyRow>, MetaError> {
    Ok(match Backend::of(conn) {
        Backend::Sqlite => {
            args.bind(sqlx::query(sql).persistent(persistent), args.len())
                .fetch_all(&mut *conn)
                .await?
        }
        Backend::Postgres => {
            let mut rows = Vec::new();
            for statement in statements(sql) {
                let query = sqlx::query(statement).persistent(persistent);
                let query = args.bind(query, placeholders(statement));
                rows.extend(query.fetch_all(&mut *conn).await?);
            }
            rows
        }
    })
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// The connections the committer writes on (one for SQLite), for a
/// database URL: `sqlite://PATH` (created if missing) or `postgres://…`.
pub async fn connect_writer(url: &str, writers: u32) -> Result<Pool, MetaError> {
    // WAL: readers never block the writer; FULL: a commit survives power loss.
    const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                           PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000";
    connect(url, writers, "rwc", PRAGMAS).await
}

/// Connections for reads (read-only on SQLite).
pub async fn connect_readers(url: &str, readers: u32) -> Result<Pool, MetaError> {
    connect(url, readers, "ro", "PRAGMA busy_timeout = 10000").await
}

/// A pool of up to `max` connections; on SQLite opened in `mode` and set up
/// with `pragmas` (per connection: SQLite settings are not persistent).
async fn connect(
    url: &str,
    max: u32,
    mode: &str,
    pragmas: &'static str,
) -> Result<Pool, MetaError> {
    sqlx::any::install_default_drivers();
    let options = AnyPoolOptions::new().max_connections(max.max(1));
    Ok(if is_sqlite(url) {
        options
            .after_connect(move |conn, _| {
                Box::pin(async move { conn.execute(pragmas).await.map(|_| ()) })
            })
            .connect(&format!("{url}?mode={mode}"))
            .await?
    } else {
        options
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?
    })
}

/// The URL of the embedded database file at `path`.
pub fn sqlite_url(path: &std::path::Path) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const SPECIAL: &AsciiSet = &CONTROLS.add(b'?').add(b'#').add(b'%').add(b' ');
    format!(
        "sqlite://{}",
        utf8_percent_encode(&path.to_string_lossy(), SPECIAL)
    )
}

/// A boolean column as read: selected as `CAST(col AS INTEGER)` (the `Any`
/// driver refuses SQLite's BOOLEAN columns), decoded from the integer.
pub struct Flag(bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

impl sqlx::Type<Any> for Flag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for Flag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Flag(<i64 as sqlx::Decode<Any>>::decode(value)? != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_databases_are_told_apart_from_failed_statements() {
        assert!(is_unreachable(&sqlx::Error::PoolTimedOut));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unreachable(&sqlx::Error::Io(refused)));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound));
        assert!(MetaError::Unavailable("down".into()).is_unavailable());
        assert!(!MetaError::Commit("constraint".into()).is_unavailable());
    }
}

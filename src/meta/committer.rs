//! Group commit. Every write is a job run on the single writer connection;
//! jobs that arrive while a commit is in progress are run together in the next
//! transaction, each inside its own savepoint, and share one fsync. A job that
//! fails is rolled back to its savepoint without disturbing the others, and
//! every job learns its result only after the commit is durable.

use std::panic::AssertUnwindSafe;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::sqlite::SqlitePool;
use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::MetaError;

/// Most jobs in one transaction: bounds the latency a batch adds.
const MAX_BATCH: usize = 256;

type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Deliver)> + Send>;

pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    pub(super) fn start(pool: SqlitePool) -> Committer {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool, rx));
        Committer { jobs }
    }

    /// Runs `f` in a transaction shared with concurrent writes; returns its
    /// result once committed. An `Err` from `f` undoes only `f`'s changes.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, MetaError>>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = f(conn).await;
                let keep = result.is_ok();
                let deliver: Deliver = Box::new(move |commit| {
                    let _ = tx.send(match (result, commit) {
                        (Ok(value), Ok(())) => Ok(value),
                        (Err(e), _) => Err(e),
                        (Ok(_), Err(e)) => Err(MetaError::Commit(e)),
                    });
                });
                (keep, deliver)
            })
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| MetaError::NotApplied)?;
        rx.await.map_err(|_| MetaError::NotApplied)?
    }
}

async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match pool.acquire().await {
            Ok(mut conn) => commit_batch(&mut conn, batch.drain(..)).await,
            Err(e) => {
                tracing::error!(error = %e, "metadata writer connection unavailable");
                batch.clear(); // dropping a job tells its caller it was not applied
            }
        }
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(&mut *conn).await.map(|_| ())
}

async fn commit_batch(conn: &mut SqliteConnection, jobs: impl Iterator<Item = Job>) {
    let mut deliveries = Vec::new();
    let mut outcome = exec(conn, "BEGIN IMMEDIATE").await;
    for job in jobs {
        // Once the transaction has failed, later jobs are not run at all.
        if outcome.is_err() {
            continue;
        }
        if let Err(e) = exec(conn, "SAVEPOINT job").await {
            outcome = Err(e);
            continue;
        }
        // A panicking job (a bug) must not take the committer, and with it
        // every later write, down: its caller sees the write as not applied.
        let (keep, deliver) = match AssertUnwindSafe(job(conn)).catch_unwind().await {
            Ok(done) => done,
            Err(_) => {
                tracing::error!("a metadata write panicked; it is rolled back");
                let _ = exec(conn, "ROLLBACK TO job").await;
                let _ = exec(conn, "RELEASE job").await;
                continue;
            }
        };
        if !keep {
            if let Err(e) = exec(conn, "ROLLBACK TO job").await {
                outcome = Err(e);
            }
        }
        if let Err(e) = exec(conn, "RELEASE job").await {
            outcome = Err(e);
        }
        deliveries.push(deliver);
    }
    let result = match outcome {
        Ok(()) => exec(conn, "COMMIT").await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "metadata commit failed; the batch is rolled back");
        let _ = exec(conn, "ROLLBACK").await;
    }
    for deliver in deliveries {
        deliver(result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    async fn store() -> (SqlitePool, Committer) {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let committer = Committer::start(pool.clone());
        (pool, committer)
    }

    fn insert(
        v: i64,
    ) -> impl for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<(), MetaError>> + Send
    {
        move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (v) VALUES ($1)")
                    .bind(v)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        }
    }

    async fn values(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_failing_write_is_undone_without_touching_its_batch() {
        let (pool, committer) = store().await;
        // Submitted together: usually run in one transaction, and correct either way.
        let (a, b, c) = tokio::join!(
            committer.write(insert(1)),
            committer.write(|conn| Box::pin(async move {
                insert(2)(conn).await?;
                insert(1)(conn).await // duplicate key: this job fails after a change
            })),
            committer.write(insert(3)),
        );
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(MetaError::Db(_))));
        assert_eq!(
            values(&pool).await,
            vec![1, 3],
            "the failed job's first insert is undone too"
        );
    }

    #[tokio::test]
    async fn a_panicking_write_does_not_stop_later_writes() {
        let (pool, committer) = store().await;
        let panicking = committer
            .write(|conn| -> BoxFuture<'_, Result<(), MetaError>> {
                Box::pin(async move {
                    insert(7)(conn).await?;
                    panic!("a bug in a write");
                })
            })
            .await;
        assert!(matches!(panicking, Err(MetaError::NotApplied)));
        committer.write(insert(8)).await.unwrap();
        assert_eq!(values(&pool).await, vec![8]);
    }
}

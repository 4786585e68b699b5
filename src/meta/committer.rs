//! Group commit. Every write is a job run on the single writer connection;
//! jobs that arrive while a commit is in progress are run together in the next
//! transaction, each inside its own savepoint, and share one fsync. A job that
//! fails is rolled back to its savepoint without disturbing the others, and
//! every job learns its result only after the commit is durable.

use futures_util::future::BoxFuture;
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
        let (keep, deliver) = job(conn).await;
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

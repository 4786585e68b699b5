//! Group commit. Every write is a job run by a writer worker on its
//! connection (one on SQLite; several on PostgreSQL); jobs that arrive while
//! a commit is in progress run together in the next transaction and share
//! one fsync. A job that fails must not disturb the
//! others: the transaction is rolled back, the failed job gets its error, and
//! the others run again in a fresh transaction (jobs are re-runnable, and
//! failures are rare: refusals are results, not errors). Every job learns its
//! result only after the commit is durable.
//!
//! On PostgreSQL the transaction is SERIALIZABLE: when it conflicts with
//! another (this replica's other workers' or another replica's, at a
//! statement or at COMMIT), the whole batch runs again on fresh data, alone
//! behind the write gate, which is why jobs must be re-runnable in any case.
//!
//! Rolling back on failure rather than wrapping each job in a savepoint saves
//! two round trips to the database thread per write, which is most of what a
//! small write costs.

use std::panic::AssertUnwindSafe;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

use super::db::{self, Backend, Conn, Pool};
use super::MetaError;

/// Most jobs in one transaction: bounds the latency a batch adds.
const MAX_BATCH: usize = 256;
/// Times a batch runs again after a write conflict with another replica
/// (PostgreSQL) before its jobs fail.
const MAX_CONFLICT_RETRIES: u32 = 20;

/// A write waiting for its transaction.
trait Job: Send {
    /// Runs the write's statements, keeping its result for `finish`.
    fn run<'a>(&'a mut self, conn: &'a mut Conn) -> BoxFuture<'a, Result<(), MetaError>>;
    /// Tells the caller how it ended: the kept result once committed, or the error.
    fn finish(self: Box<Self>, outcome: Result<(), MetaError>);
}

struct Write<T, F> {
    f: F,
    result: Option<T>,
    reply: oneshot::Sender<Result<T, MetaError>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send + 'static,
    F: for<'c> Fn(&'c mut Conn) -> BoxFuture<'c, Result<T, MetaError>> + Send + 'static,
{
    fn run<'a>(&'a mut self, conn: &'a mut Conn) -> BoxFuture<'a, Result<(), MetaError>> {
        Box::pin(async move {
            self.result = Some((self.f)(conn).await?);
            Ok(())
        })
    }

    fn finish(self: Box<Self>, outcome: Result<(), MetaError>) {
        let result = self.result;
        let _ = self
            .reply
            .send(outcome.and_then(|()| result.ok_or(MetaError::NotApplied)));
    }
}

pub(super) struct Committer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    counters: WriteCounters,
}

/// What the writers did, for `/metrics`: writes per transaction show how
/// well commits are grouped, conflicts how much replicas contend.
#[derive(Clone, Default)]
pub struct WriteCounters {
    /// Transactions committed.
    pub transactions: Counter,
    /// Writes committed, in those transactions.
    pub writes: Counter,
    /// Batches run again after a write conflict (PostgreSQL).
    pub conflicts: Counter,
}

impl Committer {
    /// Starts `writers` workers, each committing batches on a connection of
    /// `pool`: one on SQLite (a single writer); several on PostgreSQL,
    /// whose SERIALIZABLE transactions may run side by side.
    pub(super) fn start(pool: Pool, writers: usize) -> Committer {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let counters = WriteCounters::default();
        for _ in 0..writers.max(1) {
            tokio::spawn(run(pool.clone(), rx.clone(), counters.clone()));
        }
        Committer { jobs, counters }
    }

    pub(super) fn counters(&self) -> &WriteCounters {
        &self.counters
    }

    /// Runs `f` in a transaction shared with concurrent writes; returns its
    /// result once committed. An `Err` from `f` undoes `f`'s changes and only
    /// those. `f` may run more than once (when another write of its batch
    /// fails), so it must only read and write the database.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut Conn) -> BoxFuture<'c, Result<T, MetaError>> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Write {
            f,
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| MetaError::NotApplied)?;
        rx.await.map_err(|_| MetaError::NotApplied)?
    }
}

async fn run(
    pool: Pool,
    rx: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Box<dyn Job>>>>,
    counters: WriteCounters,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // A worker takes the jobs waiting (while another commits) as one batch.
    while rx.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match pool.acquire().await {
            Ok(mut conn) => commit_batch(&mut conn, std::mem::take(&mut batch), &counters).await,
            Err(e) => fail_all(std::mem::take(&mut batch), MetaError::from(e)),
        }
    }
}

async fn exec(conn: &mut Conn, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(&mut *conn).await.map(|_| ())
}

/// How one transaction of a batch ended.
enum Attempt {
    /// Committed: the jobs left have their results.
    Committed,
    /// A job failed on its own (its error): it is answered, the others run again.
    JobFailed(usize, MetaError),
    /// A write conflict: the whole batch runs again.
    Conflict(MetaError),
    /// The database failed: every job fails.
    Failed(MetaError),
}

async fn commit_batch(conn: &mut Conn, mut jobs: Vec<Box<dyn Job>>, counters: &WriteCounters) {
    let backend = Backend::of(conn);
    let mut conflicts = 0;
    while !jobs.is_empty() {
        // On PostgreSQL every transaction holds the write gate shared; one
        // that runs again after a conflict holds it alone, so it cannot meet
        // the same contention twice (on a project's usage counters, say) and
        // retries cannot starve. Taken before BEGIN: the snapshot must not
        // predate the wait.
        let gate = match (backend, conflicts) {
            (Backend::Sqlite, _) => None,
            (Backend::Postgres, 0) => Some(db::GATE_SHARED),
            (Backend::Postgres, _) => Some(db::GATE_ALONE),
        };
        if let Some((lock, _)) = gate {
            if let Err(e) = exec(conn, lock).await {
                return fail_all(jobs, e.into());
            }
        }
        let attempt = attempt(conn, backend, &mut jobs).await;
        if let Some((_, unlock)) = gate {
            if let Err(e) = exec(conn, unlock).await {
                tracing::error!(error = %e, "releasing the write gate failed; closing the connection");
                let _ = exec(conn, "SELECT pg_terminate_backend(pg_backend_pid())").await;
            }
        }
        match attempt {
            Attempt::Committed => {
                counters.transactions.inc();
                counters.writes.inc_by(jobs.len() as u64);
                return jobs.into_iter().for_each(|job| job.finish(Ok(())));
            }
            Attempt::JobFailed(i, e) => jobs.remove(i).finish(Err(e)),
            Attempt::Failed(e) => return fail_all(jobs, e),
            Attempt::Conflict(e) if conflicts == MAX_CONFLICT_RETRIES => return fail_all(jobs, e),
            Attempt::Conflict(e) => {
                conflicts += 1;
                counters.conflicts.inc();
                tracing::debug!(attempt = conflicts, jobs = jobs.len(), error = %e, "write conflict; running the batch again");
                let pause = 1 + rand_core::RngCore::next_u32(&mut rand_core::OsRng) % 8;
                tokio::time::sleep(std::time::Duration::from_millis(pause.into())).await;
            }
        }
    }
}

/// Runs the jobs in one transaction.
async fn attempt(conn: &mut Conn, backend: Backend, jobs: &mut [Box<dyn Job>]) -> Attempt {
    if let Err(e) = exec(conn, backend.begin()).await {
        return Attempt::Failed(e.into());
    }
    let mut failed = None;
    for (i, job) in jobs.iter_mut().enumerate() {
        // A panicking job (a bug) must not take the committer, and with
        // it every later write, down.
        match AssertUnwindSafe(job.run(conn)).catch_unwind().await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => failed = Some((i, e)),
            Err(_) => {
                tracing::error!("a metadata write panicked; it is rolled back");
                failed = Some((i, MetaError::NotApplied));
            }
        }
        break;
    }
    let Some((i, e)) = failed else {
        // A failed COMMIT has ended the transaction already.
        return match exec(conn, "COMMIT").await.map_err(MetaError::from) {
            Ok(()) => Attempt::Committed,
            Err(e) if db::is_conflict(&e) => Attempt::Conflict(e),
            Err(e) => Attempt::Failed(e),
        };
    };
    if let Err(e) = exec(conn, "ROLLBACK").await {
        return Attempt::Failed(e.into());
    }
    if db::is_conflict(&e) {
        Attempt::Conflict(e)
    } else {
        Attempt::JobFailed(i, e)
    }
}

/// Fails every job with `error` (each gets its own copy: "unavailable"
/// stays distinguishable from other failures).
fn fail_all(jobs: Vec<Box<dyn Job>>, error: MetaError) {
    tracing::error!(error = %error, "metadata commit failed; the batch is rolled back");
    let unavailable = error.is_unavailable();
    let message = error.to_string();
    for job in jobs {
        job.finish(Err(if unavailable {
            MetaError::Unavailable(message.clone())
        } else {
            MetaError::Commit(message.clone())
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (Pool, Committer) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let committer = Committer::start(pool.clone(), 1);
        (pool, committer)
    }

    fn insert(
        v: i64,
    ) -> impl for<'c> Fn(&'c mut Conn) -> BoxFuture<'c, Result<(), MetaError>> + Send + 'static
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

    async fn values(pool: &Pool) -> Vec<i64> {
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

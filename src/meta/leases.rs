//! Leases for background jobs that must run in one replica at a time (GC,
//! scheduled retention, pruning, the audit log's consumer). On PostgreSQL a lease is a
//! session-level advisory lock held on a connection of its own: it ends when
//! the lease is dropped, or when the holder dies and PostgreSQL closes its
//! connection, so the job resumes in another replica at its next attempt.
//! The embedded database has one process, which always holds every lease.

use sqlx::Connection;

use super::db::{Backend, Conn};
use super::{MetaError, MetaStore};

/// The jobs that take leases; each has its own lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeasedJob {
    GarbageCollection,
    Retention,
    /// Pruning the audit log, the outbox and old failed logins.
    Pruning,
    /// The audit log's consumption of the outbox.
    AuditLog,
    /// Queueing scans of what is pushed (an outbox consumer).
    ScanOnPush,
    /// Matching stored inventories against a new vulnerability database.
    Rematch,
}

impl LeasedJob {
    /// The advisory-lock key: fixed, and distinct from other applications'
    /// keys in a shared database by its high bits ("BRTH").
    fn key(self) -> i64 {
        const BASE: i64 = 0x4252_5448 << 32;
        BASE + match self {
            LeasedJob::GarbageCollection => 1,
            LeasedJob::Retention => 2,
            LeasedJob::Pruning => 3,
            LeasedJob::AuditLog => 4,
            LeasedJob::ScanOnPush => 5,
            LeasedJob::Rematch => 6,
        }
    }
}

/// A held lease; dropping it lets another replica take the job.
pub struct Lease {
    /// PostgreSQL: the connection holding the lock. Closed on drop, which
    /// releases the lock even when the job's task was aborted.
    holder: Option<Conn>,
}

impl MetaStore {
    /// Takes the lease of `job` if no replica holds it.
    pub async fn try_lease(&self, job: LeasedJob) -> Result<Option<Lease>, MetaError> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(Lease { holder: None }));
        }
        // A connection of its own, outside the pool: a pooled one would
        // keep the lock after being returned.
        let mut holder = Conn::connect(&self.url).await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(job.key())
            .fetch_one(&mut holder)
            .await?;
        Ok(taken.then_some(Lease {
            holder: Some(holder),
        }))
    }
}

impl Lease {
    /// Whether the lease still holds: on PostgreSQL, whether its connection
    /// (and with it the lock) survived. A lost lease must be taken again.
    pub async fn holds(&mut self) -> bool {
        match &mut self.holder {
            None => true,
            Some(conn) => conn.ping().await.is_ok(),
        }
    }
}

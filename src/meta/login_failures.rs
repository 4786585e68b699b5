//! The `login_failures` table: failed logins per account and per client
//! address, shared by every replica. What they mean (when to block, for how
//! long) is `auth::throttle`'s decision.

use super::{MetaError, MetaStore};

/// The failures recorded under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct LoginFailures {
    pub failures: i64,
    /// Unix milliseconds.
    pub blocked_until: i64,
    /// Unix milliseconds of the last failure.
    pub last_at: i64,
}

/// The record that follows one more failure under `key` at `now` (the
/// previous record, if any, given).
pub type NextFailure = fn(key: &str, previous: Option<LoginFailures>, now: i64) -> LoginFailures;

/// One key's record.
const SELECT: &str = "SELECT failures, blocked_until, last_at FROM login_failures WHERE key = $1";

impl MetaStore {
    /// The records of those of `keys` that have one.
    pub async fn login_failures(
        &self,
        keys: &[String],
    ) -> Result<Vec<(String, LoginFailures)>, MetaError> {
        let mut found = Vec::new();
        for key in keys {
            let record: Option<LoginFailures> = sqlx::query_as(SELECT)
                .bind(key)
                .fetch_optional(&self.reader)
                .await?;
            found.extend(record.map(|r| (key.clone(), r)));
        }
        Ok(found)
    }

    /// Records one more failure under each of `keys`, as `next` says, in
    /// one transaction (so concurrent failures on several replicas all
    /// count).
    pub async fn add_login_failure(
        &self,
        keys: Vec<String>,
        now: i64,
        next: NextFailure,
    ) -> Result<(), MetaError> {
        self.committer
            .write(move |conn| {
                let keys = keys.clone();
                Box::pin(async move {
                    for key in &keys {
                        let previous: Option<LoginFailures> = sqlx::query_as(SELECT)
                            .bind(key)
                            .fetch_optional(&mut *conn)
                            .await?;
                        let record = next(key, previous, now);
                        sqlx::query(
                            "INSERT INTO login_failures (key, failures, blocked_until, last_at) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET \
                             failures = excluded.failures, blocked_until = excluded.blocked_until, \
                             last_at = excluded.last_at",
                        )
                        .bind(key)
                        .bind(record.failures)
                        .bind(record.blocked_until)
                        .bind(record.last_at)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Forgets the failures under `key`.
    pub async fn clear_login_failures(&self, key: String) -> Result<(), MetaError> {
        self.committer
            .write(move |conn| {
                let key = key.clone();
                Box::pin(async move {
                    sqlx::query("DELETE FROM login_failures WHERE key = $1")
                        .bind(&key)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Removes records whose last failure is before `before`; returns how many.
    pub async fn prune_login_failures(&self, before: i64) -> Result<u64, MetaError> {
        self.committer
            .write(move |conn| {
                Box::pin(async move {
                    Ok(sqlx::query("DELETE FROM login_failures WHERE last_at < $1")
                        .bind(before)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected())
                })
            })
            .await
    }
}

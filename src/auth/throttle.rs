//! Throttling of failed logins, per account and per client address: after a
//! few failures in a row, further attempts are refused without checking the
//! password for a time that doubles with every failure (up to 15 minutes).
//! The failures are kept in the database (`meta::login_failures`), so every
//! replica throttles on all of them and a restart forgets nothing.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::meta::{now_millis, LoginFailures, MetaError, MetaStore};

/// Failures allowed before an account is throttled.
const ACCOUNT_FAILURES: i64 = 5;
/// Failures allowed from one address (it may serve many people).
const ADDRESS_FAILURES: i64 = 20;
const LONGEST_WAIT_MS: i64 = 15 * 60 * 1000;
/// A key without failures for this long starts again from zero (and its
/// record is pruned).
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

/// What is known of a login attempt before its password is checked.
pub struct Before {
    /// How long the caller must wait before trying again, if throttled.
    pub wait: Option<Duration>,
    /// The account has failures on record, to clear if this one succeeds.
    pub account_failed: bool,
}

pub struct Throttle {
    meta: Arc<MetaStore>,
}

fn account_key(account: &str) -> String {
    // Names come from clients: a long one is stored by its hash.
    if account.len() <= 128 {
        format!("account:{account}")
    } else {
        format!("account-sha256:{}", hex::encode(Sha256::digest(account)))
    }
}

fn keys(account: &str, address: &str) -> Vec<String> {
    vec![account_key(account), format!("address:{address}")]
}

/// One more failure under `key`, after `previous`.
fn next(key: &str, previous: Option<LoginFailures>, now: i64) -> LoginFailures {
    let allowed = if key.starts_with("address:") {
        ADDRESS_FAILURES
    } else {
        ACCOUNT_FAILURES
    };
    let forget = FORGET_AFTER.as_millis() as i64;
    let failures = match previous {
        Some(p) if now - p.last_at <= forget => p.failures + 1,
        _ => 1,
    };
    let blocked_until = if failures >= allowed {
        let wait = 1000i64 << (failures - allowed).min(10);
        now + wait.min(LONGEST_WAIT_MS)
    } else {
        now
    };
    LoginFailures {
        failures,
        blocked_until,
        last_at: now,
    }
}

impl Throttle {
    pub fn new(meta: Arc<MetaStore>) -> Throttle {
        Throttle { meta }
    }

    pub async fn check(&self, account: &str, address: &str) -> Result<Before, MetaError> {
        let now = now_millis();
        let account_key = account_key(account);
        let records = self.meta.login_failures(&keys(account, address)).await?;
        let wait = records
            .iter()
            .map(|(_, r)| r.blocked_until - now)
            .filter(|&ms| ms > 0)
            .max()
            .map(|ms| Duration::from_millis(ms as u64));
        Ok(Before {
            wait,
            account_failed: records.iter().any(|(k, _)| *k == account_key),
        })
    }

    pub async fn failed(&self, account: &str, address: &str) -> Result<(), MetaError> {
        self.meta
            .add_login_failure(keys(account, address), now_millis(), next)
            .await
    }

    /// A successful login clears the account's failures (not the address's).
    pub async fn succeeded(&self, account: &str) -> Result<(), MetaError> {
        self.meta.clear_login_failures(account_key(account)).await
    }

    /// Removes records of keys without failures for `FORGET_AFTER`.
    pub async fn prune(&self) -> Result<u64, MetaError> {
        let before = now_millis() - FORGET_AFTER.as_millis() as i64;
        self.meta.prune_login_failures(before).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn throttle() -> Throttle {
        let dir = std::env::temp_dir().join(format!("berth-throttle-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Throttle::new(Arc::new(
            MetaStore::open_sqlite(&dir.join("berth.db")).await.unwrap(),
        ))
    }

    #[tokio::test]
    async fn blocks_after_repeated_failures() {
        let t = throttle().await;
        for _ in 0..ACCOUNT_FAILURES - 1 {
            t.failed("alice", "10.0.0.1").await.unwrap();
            assert!(t.check("alice", "10.0.0.1").await.unwrap().wait.is_none());
        }
        t.failed("alice", "10.0.0.1").await.unwrap();
        let before = t.check("alice", "10.0.0.2").await.unwrap();
        assert!(before.wait.is_some(), "per account");
        assert!(before.account_failed);
        assert!(t.check("bob", "10.0.0.1").await.unwrap().wait.is_none());
        t.succeeded("alice").await.unwrap();
        let before = t.check("alice", "10.0.0.1").await.unwrap();
        assert!(before.wait.is_none() && !before.account_failed);
        for i in 0..ADDRESS_FAILURES {
            t.failed(&format!("user{i}"), "10.0.0.9").await.unwrap();
        }
        assert!(
            t.check("carol", "10.0.0.9").await.unwrap().wait.is_some(),
            "per address"
        );
        let long = "x".repeat(10_000);
        t.failed(&long, "10.0.0.3").await.unwrap();
        assert!(t.check(&long, "10.0.0.4").await.unwrap().account_failed);
        // Nothing is older than an hour yet.
        assert_eq!(t.prune().await.unwrap(), 0);
    }

    #[test]
    fn waits_double_up_to_a_limit_and_old_failures_are_forgotten() {
        let key = "account:alice";
        let mut r = None;
        for _ in 0..ACCOUNT_FAILURES {
            r = Some(next(key, r, 1_000_000));
        }
        let r5 = r.unwrap();
        assert_eq!(r5.blocked_until - 1_000_000, 1000);
        let r6 = next(key, Some(r5), 1_000_000);
        assert_eq!(r6.blocked_until - 1_000_000, 2000);
        let mut r = r6;
        for _ in 0..40 {
            r = next(key, Some(r), 1_000_000);
        }
        assert_eq!(r.blocked_until - 1_000_000, LONGEST_WAIT_MS);
        let later = 1_000_000 + FORGET_AFTER.as_millis() as i64 + 1;
        assert_eq!(next(key, Some(r), later).failures, 1);
        // An address allows more.
        assert_eq!(
            next("address:10.0.0.1", Some(r5), 1_000_000).blocked_until,
            1_000_000
        );
    }
}

//! Throttling of failed logins, per account and per client address: after a
//! few failures in a row, further attempts are refused without checking the
//! password for a time that doubles with every failure (up to 15 minutes).
//! State is per process: with several replicas each throttles on its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before an account is throttled.
const ACCOUNT_FAILURES: u32 = 5;
/// Failures allowed from one address (it may serve many people).
const ADDRESS_FAILURES: u32 = 20;
const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);
/// A key untouched this long starts again from zero.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

#[derive(Default)]
pub struct Throttle {
    entries: Mutex<HashMap<String, Entry>>,
}

fn keys(account: &str, address: &str) -> [(String, u32); 2] {
    [
        (format!("account:{account}"), ACCOUNT_FAILURES),
        (format!("address:{address}"), ADDRESS_FAILURES),
    ]
}

impl Throttle {
    /// How long the caller must wait before trying again, if throttled.
    pub fn check(&self, account: &str, address: &str) -> Option<Duration> {
        let now = Instant::now();
        let entries = self.entries.lock().expect("throttle lock");
        keys(account, address)
            .iter()
            .filter_map(|(k, _)| entries.get(k))
            .filter(|e| e.blocked_until > now)
            .map(|e| e.blocked_until - now)
            .max()
    }

    pub fn failed(&self, account: &str, address: &str) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("throttle lock");
        if entries.len() > 100_000 {
            entries.retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
        }
        for (key, allowed) in keys(account, address) {
            let e = entries.entry(key).or_insert(Entry {
                failures: 0,
                blocked_until: now,
                last: now,
            });
            if now.duration_since(e.last) > FORGET_AFTER {
                e.failures = 0;
            }
            e.failures += 1;
            e.last = now;
            if e.failures >= allowed {
                let wait = Duration::from_secs(1 << (e.failures - allowed).min(10));
                e.blocked_until = now + wait.min(LONGEST_WAIT);
            }
        }
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn succeeded(&self, account: &str) {
        self.entries
            .lock()
            .expect("throttle lock")
            .remove(&format!("account:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_repeated_failures() {
        let t = Throttle::default();
        for _ in 0..ACCOUNT_FAILURES - 1 {
            t.failed("alice", "10.0.0.1");
            assert!(t.check("alice", "10.0.0.1").is_none());
        }
        t.failed("alice", "10.0.0.1");
        assert!(t.check("alice", "10.0.0.2").is_some(), "per account");
        assert!(t.check("bob", "10.0.0.1").is_none());
        t.succeeded("alice");
        assert!(t.check("alice", "10.0.0.1").is_none());
        for i in 0..ADDRESS_FAILURES {
            t.failed(&format!("user{i}"), "10.0.0.9");
        }
        assert!(t.check("carol", "10.0.0.9").is_some(), "per address");
    }
}

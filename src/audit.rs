//! The audit log service: who did what, when, from where. Events are
//! buffered and written in one transaction per second (and at shutdown), so
//! recording a pull costs no database round trip on the request's path. A
//! process killed with SIGKILL loses at most the last second of events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::meta::{now_millis, AuditFilter, AuditRecord, MetaError, MetaStore};

/// Events kept in memory at most between flushes (while the database is
/// unavailable); beyond this new events are dropped and counted in the log,
/// rather than the server's memory growing without bound.
const MAX_PENDING: usize = 100_000;

pub struct AuditLog {
    meta: Arc<MetaStore>,
    pending: Mutex<Vec<AuditRecord>>,
    /// Events dropped since the last flush that wrote.
    dropped: std::sync::atomic::AtomicU64,
    retention: Duration,
}

/// Who acted, as the audit log names them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    /// `user`, `robot` or `anonymous`.
    pub kind: &'static str,
    pub address: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Success,
    Failure,
}

impl AuditLog {
    pub fn new(meta: Arc<MetaStore>, retention: Duration) -> AuditLog {
        AuditLog {
            meta,
            pending: Mutex::new(Vec::new()),
            dropped: Default::default(),
            retention,
        }
    }

    pub fn record(
        &self,
        actor: &Actor,
        action: &str,
        project: Option<&str>,
        resource: &str,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        let record = AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            at: now_millis(),
            actor: actor.name.clone(),
            actor_kind: actor.kind.to_string(),
            address: actor.address.clone(),
            action: action.to_string(),
            project: project.map(str::to_string),
            resource: resource.to_string(),
            outcome: match outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            }
            .to_string(),
            detail,
        };
        let mut pending = self.pending.lock().expect("audit lock");
        if pending.len() >= MAX_PENDING {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        pending.push(record);
    }

    /// Writes the buffered events.
    pub async fn flush(&self) -> Result<(), MetaError> {
        let dropped = self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            tracing::error!(dropped, "audit log backlog was full: events were dropped");
        }
        let batch = std::mem::take(&mut *self.pending.lock().expect("audit lock"));
        if batch.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(batch);
        if let Err(e) = self.meta.append_audit(batch.clone()).await {
            // Put them back in front of newer events for the next attempt.
            let batch = Arc::try_unwrap(batch).unwrap_or_else(|b| (*b).clone());
            let mut pending = self.pending.lock().expect("audit lock");
            let newer = std::mem::replace(&mut *pending, batch);
            pending.extend(newer);
            return Err(e);
        }
        Ok(())
    }

    pub async fn query(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, MetaError> {
        self.meta.audit(filter, limit).await
    }

    /// Deletes entries older than the retention period.
    pub async fn prune(&self) -> Result<u64, MetaError> {
        let before = now_millis() - self.retention.as_millis() as i64;
        self.meta.prune_audit(before).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flush_query_and_prune() {
        let dir = std::env::temp_dir().join(format!("berth-audit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let meta = Arc::new(MetaStore::open_sqlite(&dir.join("berth.db")).await.unwrap());
        let log = AuditLog::new(meta.clone(), Duration::from_secs(86_400));
        let actor = Actor {
            name: "alice".into(),
            kind: "user",
            address: "10.0.0.1".into(),
        };
        for i in 0..2500 {
            let project = if i % 2 == 0 { "a" } else { "b" };
            log.record(
                &actor,
                "pull",
                Some(project),
                &format!("{project}/app:{i}"),
                Outcome::Success,
                None,
            );
        }
        log.flush().await.unwrap();
        let all = log.query(&AuditFilter::default(), 5000).await.unwrap();
        assert_eq!(
            all.len(),
            2500,
            "every event written, across several statements"
        );
        assert_eq!(all[0].resource, "b/app:2499", "newest first");
        let only_a = AuditFilter {
            project: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(log.query(&only_a, 5000).await.unwrap().len(), 1250);
        // An old entry goes, recent ones stay.
        let mut old = all[0].clone();
        old.id = uuid::Uuid::now_v7().to_string();
        old.at = now_millis() - 2 * 86_400_000;
        meta.append_audit(Arc::new(vec![old])).await.unwrap();
        assert_eq!(log.prune().await.unwrap(), 1);
        assert_eq!(
            log.query(&AuditFilter::default(), 5000)
                .await
                .unwrap()
                .len(),
            2500
        );
        meta.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

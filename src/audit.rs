//! The audit log: who did what, when, from where. It is the outbox's first
//! consumer: a worker reads events in batches after its cursor and writes
//! them as audit entries in the transaction that moves the cursor, so each
//! event becomes exactly one entry (pulls: one entry per actor, address,
//! artifact and minute, whose count grows as their events arrive).
//! Entries are pruned after the retention period.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;

use crate::events::{Event, Kind};
use crate::meta::{now_millis, AuditFilter, AuditRecord, MetaError, MetaStore};
use crate::workers::{Progress, State, Stop, Worker};

/// The audit log's cursor in the outbox.
pub const CONSUMER: &str = "audit-log";
/// Events read per transaction.
const BATCH: u32 = 2000;
/// How often the outbox is looked at when nothing woke the worker.
const POLL: Duration = Duration::from_millis(200);

pub struct AuditLog {
    meta: Arc<MetaStore>,
    retention: Duration,
}

impl AuditLog {
    pub fn new(meta: Arc<MetaStore>, retention: Duration) -> AuditLog {
        AuditLog { meta, retention }
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

/// An id shaped like a UUIDv7 (so ids order by time, as the API pages by
/// them) whose other bits come from `key`: the same key and time always
/// make the same id.
fn entry_id(at: i64, key: &[u8]) -> String {
    let hash = Sha256::digest(key);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&(at.max(0) as u64).to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&hash[..10]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// `repo:tag` or `repo@digest`, as the client named it.
fn artifact(repository: &str, reference: &str) -> String {
    let separator = if reference.contains(':') { '@' } else { ':' };
    format!("{repository}{separator}{reference}")
}

/// The audit entry an event makes; `position` identifies the event.
fn entry(event: &Event, position: (i64, i64)) -> AuditRecord {
    let repository = event.repository.as_deref().unwrap_or("");
    let digest = event.digest.as_deref().unwrap_or("");
    let named = event.reference.as_deref().unwrap_or(digest);
    let (action, resource, detail) = match &event.kind {
        Kind::ArtifactPushed => ("push", artifact(repository, named), event.digest.clone()),
        Kind::ArtifactPulled => ("pull", artifact(repository, named), event.digest.clone()),
        Kind::ArtifactDeleted | Kind::BlobDeleted => {
            ("delete", artifact(repository, digest), event.detail.clone())
        }
        Kind::TagDeleted => ("delete", artifact(repository, named), event.digest.clone()),
        Kind::ScanCompleted | Kind::ScanFailed => (
            if event.kind == Kind::ScanCompleted {
                "scan.completed"
            } else {
                "scan.failed"
            },
            artifact(repository, digest),
            event.detail.clone(),
        ),
        Kind::PolicyViolated => (
            "policy.violated",
            if named.is_empty() {
                repository.to_string()
            } else {
                artifact(repository, named)
            },
            Some(format!(
                "rule {}: {}",
                event.resource.as_deref().unwrap_or("?"),
                event.detail.as_deref().unwrap_or("")
            )),
        ),
        other => {
            let action = match other {
                Kind::ProjectCreated => "project.create",
                Kind::ProjectDeleted => "project.delete",
                Kind::RobotCreated => "robot.create",
                Kind::RobotDeleted => "robot.delete",
                Kind::QuotaWarning => "quota.warning",
                Kind::QuotaExceeded => "quota.exceeded",
                Kind::RetentionFinished => "retention.run",
                Kind::GcFinished => "gc.run",
                Kind::VulndbImported => "vulndb.import",
                Kind::Login => "login",
                Kind::Request(operation) => operation.as_str(),
                _ => unreachable!("artifact events are matched above"),
            };
            let resource = event.resource.clone().unwrap_or_default();
            (action, resource, event.detail.clone())
        }
    };
    let id = if event.kind == Kind::ArtifactPulled {
        // One entry per actor, address, artifact and minute (`at` is the minute).
        let key = [
            event.actor.name.as_str(),
            event.actor.kind.as_str(),
            event.actor.address.as_str(),
            resource.as_str(),
            digest,
        ]
        .join("\n");
        entry_id(event.at, key.as_bytes())
    } else {
        entry_id(
            event.at,
            format!("{}/{}", position.0, position.1).as_bytes(),
        )
    };
    AuditRecord {
        id,
        at: event.at,
        actor: event.actor.name.clone(),
        actor_kind: event.actor.kind.clone(),
        address: event.actor.address.clone(),
        action: action.to_string(),
        project: event.project.clone(),
        resource,
        outcome: event.outcome.as_str().to_string(),
        detail,
        count: event.count,
    }
}

/// Entries for a batch of events; pulls of one entry are added up.
fn entries(events: &[crate::meta::StoredEvent]) -> Vec<AuditRecord> {
    let mut by_id: BTreeMap<String, AuditRecord> = BTreeMap::new();
    for e in events {
        let record = entry(&e.event, (e.cursor.tx, e.cursor.seq));
        match by_id.get_mut(&record.id) {
            Some(existing) => existing.count += record.count,
            None => {
                by_id.insert(record.id.clone(), record);
            }
        }
    }
    by_id.into_values().collect()
}

/// The worker that turns outbox events into audit entries.
pub struct Consumer {
    meta: Arc<MetaStore>,
    /// Woken when events may have been written (the journal's flush).
    wake: Arc<Notify>,
    waiting: Option<u64>,
}

impl Consumer {
    pub fn new(meta: Arc<MetaStore>, wake: Arc<Notify>) -> Consumer {
        Consumer {
            meta,
            wake,
            waiting: None,
        }
    }

    /// Consumes one batch; true if a full one (more may wait).
    pub async fn consume(&mut self) -> Result<bool, MetaError> {
        let from = self.meta.cursor(CONSUMER).await?;
        let events = self.meta.events_after(from, BATCH).await?;
        let Some(last) = events.last() else {
            self.waiting = Some(self.meta.events_waiting(from).await?);
            return Ok(false);
        };
        let to = last.cursor;
        self.meta
            .append_audit(entries(&events), CONSUMER, from, to)
            .await?;
        self.waiting = None;
        Ok(events.len() == BATCH as usize)
    }
}

impl Worker for Consumer {
    fn name(&self) -> &'static str {
        CONSUMER
    }

    async fn work(&mut self, _stop: &Stop) -> Result<State, String> {
        match self.consume().await {
            Ok(true) => Ok(State::Busy),
            Ok(false) => Ok(State::Idle),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            queue: self.waiting,
            detail: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Actor;

    #[test]
    fn pulls_of_one_minute_share_an_entry_and_other_events_do_not() {
        let actor = Actor {
            name: "alice".into(),
            kind: "user".into(),
            address: "10.0.0.1".into(),
        };
        let pull = |at| {
            let mut e = Event::new(Kind::ArtifactPulled, &actor, at).in_repository("team/app");
            e.digest = Some("sha256:ab".into());
            e.reference = Some("v1".into());
            e.count = 10;
            e
        };
        let a = entry(&pull(60_000), (0, 1));
        let b = entry(&pull(60_000), (0, 2));
        assert_eq!(a.id, b.id, "same actor, artifact and minute");
        assert_ne!(a.id, entry(&pull(120_000), (0, 3)).id);
        assert_eq!(
            (a.action.as_str(), a.resource.as_str()),
            ("pull", "team/app:v1")
        );
        let login = Event::new(Kind::Login, &actor, 60_000).about(None, "alice");
        assert_ne!(entry(&login, (0, 4)).id, entry(&login, (0, 5)).id);
        // Ids order by time.
        assert!(entry_id(1_000, b"zz") < entry_id(2_000, b"aa"));
        let pushed = {
            let mut e = Event::new(Kind::ArtifactPushed, &actor, 1).in_repository("team/app");
            e.digest = Some("sha256:ab".into());
            e.reference = Some("sha256:ab".into());
            entry(&e, (0, 6))
        };
        assert_eq!(pushed.resource, "team/app@sha256:ab");
    }
}

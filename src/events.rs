//! The vocabulary of domain events: what happened, who did it, to what.
//! Pure data (no I/O), like `oci`: `meta` writes events into the outbox in
//! the transaction of the change they describe, the journal
//! (`journal.rs`) keeps the facts that have no transaction (pulls, logins,
//! management requests) until they reach the outbox, and consumers (the
//! audit log first) read them from there. See ARCHITECTURE.md, "Events".

use serde::{Deserialize, Serialize};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    /// `user`, `robot`, `anonymous`, or `system` (Berth's own jobs).
    pub kind: String,
    /// The client's address (empty for Berth's own jobs).
    pub address: String,
}

impl Actor {
    /// One of Berth's own jobs (retention, garbage collection).
    pub fn system(job: &str) -> Actor {
        Actor {
            name: job.to_string(),
            kind: "system".into(),
            address: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Outcome {
        if s == "failure" {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

/// What kind of thing happened. The names are stable: consumers (webhook
/// targets later) select events by them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A manifest was pushed (`reference`: the tag, if pushed by tag;
    /// `previous`: what that tag named before, if anything).
    ArtifactPushed,
    /// Manifest GETs, counted per actor, address, artifact and minute.
    ArtifactPulled,
    /// A manifest was removed from a repository, with its tags (`detail`).
    ArtifactDeleted,
    TagDeleted,
    /// A blob was unlinked from a repository.
    BlobDeleted,
    ProjectCreated,
    ProjectDeleted,
    RobotCreated,
    RobotDeleted,
    /// A push took a project's usage past the warning share of its quota.
    QuotaWarning,
    /// A push was refused because it would exceed a quota.
    QuotaExceeded,
    RetentionFinished,
    GcFinished,
    /// A scan ended with a report (`detail`: its counts).
    ScanCompleted,
    /// A scan could not be completed (`detail`: why).
    ScanFailed,
    /// A vulnerability database was imported and is now in use.
    VulndbImported,
    /// A request broke a rule (`resource`: the rule's name; `detail`:
    /// `refused: …`, or `audit: …` when a rule in audit mode allowed it).
    PolicyViolated,
    Login,
    /// A management API request (the operation's name from the access table).
    Request(String),
}

const REQUEST_PREFIX: &str = "api.";

impl Kind {
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        let name = match self {
            Kind::ArtifactPushed => "artifact.pushed",
            Kind::ArtifactPulled => "artifact.pulled",
            Kind::ArtifactDeleted => "artifact.deleted",
            Kind::TagDeleted => "tag.deleted",
            Kind::BlobDeleted => "blob.deleted",
            Kind::ProjectCreated => "project.created",
            Kind::ProjectDeleted => "project.deleted",
            Kind::RobotCreated => "robot.created",
            Kind::RobotDeleted => "robot.deleted",
            Kind::QuotaWarning => "quota.warning",
            Kind::QuotaExceeded => "quota.exceeded",
            Kind::RetentionFinished => "retention.finished",
            Kind::GcFinished => "gc.finished",
            Kind::ScanCompleted => "scan.completed",
            Kind::ScanFailed => "scan.failed",
            Kind::VulndbImported => "vulndb.imported",
            Kind::PolicyViolated => "policy.violated",
            Kind::Login => "login",
            Kind::Request(operation) => return format!("{REQUEST_PREFIX}{operation}").into(),
        };
        name.into()
    }

    /// The kind a stored name stands for (None: a name this version does
    /// not know, written by a newer one).
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "artifact.pushed" => Kind::ArtifactPushed,
            "artifact.pulled" => Kind::ArtifactPulled,
            "artifact.deleted" => Kind::ArtifactDeleted,
            "tag.deleted" => Kind::TagDeleted,
            "blob.deleted" => Kind::BlobDeleted,
            "project.created" => Kind::ProjectCreated,
            "project.deleted" => Kind::ProjectDeleted,
            "robot.created" => Kind::RobotCreated,
            "robot.deleted" => Kind::RobotDeleted,
            "quota.warning" => Kind::QuotaWarning,
            "quota.exceeded" => Kind::QuotaExceeded,
            "retention.finished" => Kind::RetentionFinished,
            "gc.finished" => Kind::GcFinished,
            "scan.completed" => Kind::ScanCompleted,
            "scan.failed" => Kind::ScanFailed,
            "vulndb.imported" => Kind::VulndbImported,
            "policy.violated" => Kind::PolicyViolated,
            "login" => Kind::Login,
            other => Kind::Request(other.strip_prefix(REQUEST_PREFIX)?.to_string()),
        })
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let name = String::deserialize(d)?;
        Kind::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event kind {name:?}")))
    }
}

/// One event. Which fields are set depends on the kind; unset ones are None.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unix milliseconds.
    pub at: i64,
    pub kind: Kind,
    pub outcome: Outcome,
    pub actor: Actor,
    pub project: Option<String>,
    pub repository: Option<String>,
    pub digest: Option<String>,
    /// The tag or digest the client named (pushes and pulls), or the tag.
    pub reference: Option<String>,
    /// The digest a pushed tag named before (None: the tag is new).
    pub previous: Option<String>,
    pub media_type: Option<String>,
    /// Bytes: of the manifest and the blobs it references.
    pub size: Option<i64>,
    /// How many times it happened (pulls are counted, not listed).
    pub count: i64,
    /// What the event is about when it is not an artifact: the project,
    /// the robot, the user logging in, the API route.
    pub resource: Option<String>,
    pub detail: Option<String>,
}

impl Event {
    /// A successful event of `kind` by `actor` now, with nothing else set.
    pub fn new(kind: Kind, actor: &Actor, at: i64) -> Event {
        Event {
            at,
            kind,
            outcome: Outcome::Success,
            actor: actor.clone(),
            project: None,
            repository: None,
            digest: None,
            reference: None,
            previous: None,
            media_type: None,
            size: None,
            count: 1,
            resource: None,
            detail: None,
        }
    }

    /// The same event about `repository` (and its project).
    pub fn in_repository(mut self, repository: &str) -> Event {
        let project = repository.split('/').next().unwrap_or(repository);
        self.project = Some(project.to_string());
        self.repository = Some(repository.to_string());
        self
    }

    pub fn about(mut self, project: Option<&str>, resource: &str) -> Event {
        self.project = project.map(str::to_string);
        self.resource = Some(resource.to_string());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = Some(detail.into());
        self
    }

    pub fn failed(mut self) -> Event {
        self.outcome = Outcome::Failure;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in [
            Kind::ArtifactPushed,
            Kind::ArtifactPulled,
            Kind::TagDeleted,
            Kind::GcFinished,
            Kind::Login,
            Kind::Request("member.set".into()),
        ] {
            assert_eq!(Kind::parse(&kind.name()), Some(kind));
        }
        assert_eq!(Kind::parse("no.such"), None);
        let event = Event::new(
            Kind::Request("project.update".into()),
            &Actor::system("x"),
            5,
        )
        .about(Some("team"), "/api/v1/projects/team");
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains("\"kind\":\"api.project.update\""), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }
}

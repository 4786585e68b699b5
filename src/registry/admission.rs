//! The admission point: the one place the registry asks whether an
//! operation on an artifact may happen. The registry consults it inside its
//! own operations (blob uploads and mounts, manifest pushes, deletes,
//! manifest reads by tag or digest), so no handler, API route, retention
//! run or future job can reach an operation without it. The policy layer
//! (`crate::policy`) provides it; the registry only defines what it is
//! asked and what it may answer.
//!
//! An answer is a verdict made before the change (a naming rule, later
//! signatures and vulnerabilities), plus the rules the metadata transaction
//! checks while it makes the change (`meta::RepositoryRules`: immutable
//! tags and the quota), since only that transaction can check them without
//! a race.

use futures_util::future::BoxFuture;

use crate::events::Actor;
use crate::meta::{Guard, MetaError};
use crate::oci::{Digest, Manifest, Reference, RepositoryName, Tag};

/// What is about to happen in the repository.
#[derive(Debug)]
pub enum Operation<'a> {
    /// Blob bytes into the repository: an upload opened, a blob pushed
    /// whole, or a mount.
    Upload,
    /// A manifest stored under `reference` (a tag, or its digest).
    Push {
        reference: &'a Reference,
        digest: &'a Digest,
        manifest: &'a Manifest,
    },
    DeleteTag(&'a Tag),
    DeleteManifest(&'a Digest),
    DeleteBlob(&'a Digest),
    /// A manifest read (GET or HEAD) by `reference`, which names `digest`.
    Pull {
        reference: &'a Reference,
        digest: &'a Digest,
    },
}

/// Who asks for what, where.
#[derive(Debug)]
pub struct Request<'a> {
    pub actor: &'a Actor,
    pub repository: &'a RepositoryName,
    pub operation: Operation<'a>,
}

/// A refusal: the rule that refuses and why, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule's id.
    pub rule: String,
    pub message: String,
}

/// The answer to a request.
pub enum Verdict {
    /// Allowed, subject to the rules the transaction that makes the change
    /// checks (None: none).
    Allow(Guard),
    Deny(Refusal),
}

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Allow(guard) => write!(f, "Allow(rules: {})", guard.is_some()),
            Verdict::Deny(refusal) => write!(f, "Deny({refusal:?})"),
        }
    }
}

/// Decides on requests. An `Err` is an outage (the rules could not be
/// read), never a refusal.
pub trait Admission: Send + Sync + 'static {
    fn admit<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, Result<Verdict, MetaError>>;
}

/// Admits everything with no rules: a registry without policies (tools
/// and tests that build a registry directly).
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admit<'a>(&'a self, _: &'a Request<'a>) -> BoxFuture<'a, Result<Verdict, MetaError>> {
        Box::pin(async { Ok(Verdict::Allow(None)) })
    }
}

//! The admission point: the one place the registry asks whether an
//! operation on an artifact may happen. The registry consults it inside its
//! own operations (blob uploads and mounts, manifest pushes, deletes,
//! manifest reads by tag or digest), so no handler, API route, retention
//! run or future job can reach an operation without it. The policy layer
//! (`crate::policy`) provides it; the registry only defines what it is
//! asked and what it may answer.
//!
//! An answer is a verdict made before the change (naming and forbidden tags
//! on a push, signatures on a pull), plus the rules the metadata transaction
//! checks while it makes the change (`meta::RepositoryRules`: immutable
//! tags and the quota), since only that transaction can check them without
//! a race.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::events::Actor;
use crate::meta::{Guard, MetaError, StoredManifest};
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
    /// A manifest read by `reference`, which names `manifest`: a GET
    /// (`body`), or a HEAD, which tells only its digest, size and media type.
    Pull {
        reference: &'a Reference,
        manifest: &'a StoredManifest,
        body: bool,
    },
}

/// Who asks for what, where, and what of the repository's content the
/// answer may read.
pub struct Request<'a> {
    pub actor: &'a Actor,
    pub repository: &'a RepositoryName,
    pub operation: Operation<'a>,
    pub content: &'a dyn Content,
}

/// The repository content an answer may depend on (the signatures of what
/// is pulled), read through the registry's caches. An `Err` is an outage.
pub trait Content: Send + Sync {
    /// The signature manifests of `subject` (cosign's `.sig` tag, and
    /// signature referrers), in digest order.
    fn signatures<'a>(
        &'a self,
        repo: &'a RepositoryName,
        subject: &'a Digest,
    ) -> BoxFuture<'a, Result<Arc<Vec<Digest>>, MetaError>>;
    /// A manifest of the repository by digest.
    fn manifest<'a>(
        &'a self,
        repo: &'a RepositoryName,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<Arc<StoredManifest>>, MetaError>>;
    /// A blob of the repository, if it is at most `max` bytes.
    fn small_blob<'a>(
        &'a self,
        repo: &'a RepositoryName,
        digest: &'a Digest,
        max: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, MetaError>>;
    /// The indexes of the repository that list `child`.
    fn parents<'a>(
        &'a self,
        repo: &'a RepositoryName,
        child: &'a Digest,
    ) -> BoxFuture<'a, Result<Vec<Digest>, MetaError>>;
}

/// A refusal: the rule that refuses and why, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule's name (its id if it has none).
    pub rule: String,
    pub message: String,
}

/// The answer to a request.
pub enum Verdict {
    /// Allowed, subject to the rules the transaction that makes the change
    /// checks (None: none).
    Allow(Guard),
    /// Allowed, though rules in audit mode would refuse it: the registry
    /// records each violation.
    Audited(Guard, Vec<Refusal>),
    Deny(Refusal),
}

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Allow(guard) => write!(f, "Allow(rules: {})", guard.is_some()),
            Verdict::Audited(guard, violations) => {
                write!(f, "Audited(rules: {}, {violations:?})", guard.is_some())
            }
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

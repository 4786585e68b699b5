//! In-memory caches in front of the metadata database for manifest pulls,
//! the hottest path of a registry.
//!
//! - Manifest documents by digest. Content-addressed, so an entry can never be
//!   stale; only its size is bounded.
//! - Resolutions `(repository, tag or digest) -> digest`. These change when a
//!   tag moves or a manifest is deleted. Writers invalidate after their
//!   transaction commits and bump a generation counter; a reader inserts what
//!   it read only if no generation passed while it read, so a slow reader can
//!   never put back a value that a writer has already replaced.
//!
//! - Each repository's sorted tag list, so listings and their pages need no
//!   query. Invalidated like resolutions whenever a tag of the repository moves.
//! - The signature manifests of each manifest pulled from a repository with
//!   a signature rule, so that a checked pull costs no query. Invalidated
//!   with the repository's tags (cosign's `.sig` tag) and when a referrer is
//!   pushed into it.
//!
//! This process's writers invalidate after they commit; with several
//! replicas, the others' commits arrive as `meta::Change`s
//! (`repository_changed`, `clear`), which invalidate the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::meta::StoredManifest;
use crate::oci::{Digest, Reference, RepositoryName};

/// Bytes of manifest documents kept.
const CONTENT_BYTES: u64 = 32 * 1024 * 1024;
/// Resolutions kept before the table is cleared and refilled.
const MAX_RESOLUTIONS: usize = 200_000;
/// Repositories with more tags than this are listed straight from the database.
pub const MAX_CACHED_TAGS: usize = 100_000;
/// Tag lists kept before the table is cleared and refilled.
const MAX_TAG_LISTS: usize = 10_000;
/// Signature sets kept before the table is cleared and refilled.
const MAX_SIGNATURE_SETS: usize = 200_000;

type SignatureSets = HashMap<RepositoryName, HashMap<Digest, Arc<Vec<Digest>>>>;

#[derive(Clone)]
struct ByLength;

impl Weighter<Digest, Arc<StoredManifest>> for ByLength {
    fn weight(&self, _: &Digest, m: &Arc<StoredManifest>) -> u64 {
        m.content.len() as u64 + 64
    }
}

pub struct ManifestCache {
    content: Cache<Digest, Arc<StoredManifest>, ByLength>,
    /// Per repository, so that one repository's entries go at once.
    resolved: RwLock<Resolutions>,
    /// `None` marks a repository with too many tags to keep: list it from the database.
    tag_lists: RwLock<HashMap<RepositoryName, Option<Arc<Vec<String>>>>>,
    /// Per repository: a manifest's signature manifests.
    signatures: RwLock<(SignatureSets, usize)>,
    generation: AtomicU64,
}

#[derive(Default)]
struct Resolutions {
    by_repository: HashMap<RepositoryName, HashMap<String, Digest>>,
    len: usize,
}

impl Resolutions {
    fn clear(&mut self) {
        self.by_repository.clear();
        self.len = 0;
    }

    fn remove_repository(&mut self, repo: &RepositoryName) {
        if let Some(entries) = self.by_repository.remove(repo) {
            self.len -= entries.len();
        }
    }
}

/// Proof of the generation a lookup started in.
pub struct Ticket(u64);

impl Default for ManifestCache {
    fn default() -> Self {
        ManifestCache {
            content: Cache::with_weighter(100_000, CONTENT_BYTES, ByLength),
            resolved: RwLock::new(Resolutions::default()),
            tag_lists: RwLock::new(HashMap::new()),
            signatures: RwLock::new((HashMap::new(), 0)),
            generation: AtomicU64::new(0),
        }
    }
}

impl ManifestCache {
    /// A cached manifest for the reference, if both steps are cached.
    pub fn get(&self, repo: &RepositoryName, reference: &Reference) -> Option<Arc<StoredManifest>> {
        let resolved = self.resolved.read().unwrap_or_else(|e| e.into_inner());
        let digest = resolved
            .by_repository
            .get(repo)?
            .get(reference.to_string().as_str())?;
        self.content.get(digest)
    }

    /// Call before reading the database.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// Stores what was read, unless a write intervened since `ticket`.
    pub fn insert(
        &self,
        ticket: Ticket,
        repo: &RepositoryName,
        reference: &Reference,
        manifest: Arc<StoredManifest>,
    ) {
        let mut resolved = self.resolved.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if resolved.len >= MAX_RESOLUTIONS {
            resolved.clear();
        }
        let entries = resolved.by_repository.entry(repo.clone()).or_default();
        if entries
            .insert(reference.to_string(), manifest.digest.clone())
            .is_none()
        {
            resolved.len += 1;
        }
        self.content.insert(manifest.digest.clone(), manifest);
    }

    /// The repository's sorted tags, if cached.
    /// `Some(None)`: known to have more than MAX_CACHED_TAGS tags.
    pub fn tag_list(&self, repo: &RepositoryName) -> Option<Option<Arc<Vec<String>>>> {
        let lists = self.tag_lists.read().unwrap_or_else(|e| e.into_inner());
        lists.get(repo).cloned()
    }

    /// Stores a repository's full tag list, unless a write intervened since `ticket`.
    pub fn insert_tag_list(
        &self,
        ticket: Ticket,
        repo: &RepositoryName,
        tags: Option<Arc<Vec<String>>>,
    ) {
        let mut lists = self.tag_lists.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if lists.len() >= MAX_TAG_LISTS {
            lists.clear();
        }
        lists.insert(repo.clone(), tags);
    }

    /// The signature manifests of `subject` in `repo`, if cached.
    pub fn signatures(&self, repo: &RepositoryName, subject: &Digest) -> Option<Arc<Vec<Digest>>> {
        let sets = self.signatures.read().unwrap_or_else(|e| e.into_inner());
        sets.0.get(repo)?.get(subject).cloned()
    }

    /// Stores a signature set, unless a write intervened since `ticket`.
    pub fn insert_signatures(
        &self,
        ticket: Ticket,
        repo: &RepositoryName,
        subject: &Digest,
        set: Arc<Vec<Digest>>,
    ) {
        let mut sets = self.signatures.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if sets.1 >= MAX_SIGNATURE_SETS {
            *sets = (HashMap::new(), 0);
        }
        if sets
            .0
            .entry(repo.clone())
            .or_default()
            .insert(subject.clone(), set)
            .is_none()
        {
            sets.1 += 1;
        }
    }

    fn forget_signatures(&self, repo: Option<&RepositoryName>) {
        let mut sets = self.signatures.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        match repo {
            Some(repo) => {
                if let Some(gone) = sets.0.remove(repo) {
                    sets.1 -= gone.len();
                }
            }
            None => *sets = (HashMap::new(), 0),
        }
    }

    /// After a manifest with a subject (a referrer) was pushed into `repo`.
    pub fn referrer_added(&self, repo: &RepositoryName) {
        self.forget_signatures(Some(repo));
    }

    /// After a tag of `repo` was created, moved or removed.
    pub fn tag_changed(&self, repo: &RepositoryName, reference: &Reference) {
        self.forget_signatures(Some(repo));
        let mut resolved = self.resolved.write().unwrap_or_else(|e| e.into_inner());
        let mut lists = self.tag_lists.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = resolved.by_repository.get_mut(repo) {
            if entries.remove(reference.to_string().as_str()).is_some() {
                resolved.len -= 1;
            }
        }
        lists.remove(repo);
    }

    /// After another replica changed a tag or removed a manifest of `repo`.
    pub fn repository_changed(&self, repo: &RepositoryName) {
        self.forget_signatures(Some(repo));
        let mut resolved = self.resolved.write().unwrap_or_else(|e| e.into_inner());
        let mut lists = self.tag_lists.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        resolved.remove_repository(repo);
        lists.remove(repo);
    }

    /// After manifests were removed, or when changes may have been missed:
    /// forget every resolution and tag list (deletes are rare).
    pub fn clear(&self) {
        self.forget_signatures(None);
        let mut resolved = self.resolved.write().unwrap_or_else(|e| e.into_inner());
        let mut lists = self.tag_lists.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        resolved.clear();
        lists.clear();
    }
}

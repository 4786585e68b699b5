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
//!
//! Only this process's writes invalidate: with several replicas, invalidations
//! must also arrive from the others (see ARCHITECTURE.md).

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

#[derive(Clone)]
struct ByLength;

impl Weighter<Digest, Arc<StoredManifest>> for ByLength {
    fn weight(&self, _: &Digest, m: &Arc<StoredManifest>) -> u64 {
        m.content.len() as u64 + 64
    }
}

pub struct ManifestCache {
    content: Cache<Digest, Arc<StoredManifest>, ByLength>,
    resolved: RwLock<HashMap<(RepositoryName, String), Digest>>,
    /// `None` marks a repository with too many tags to keep: list it from the database.
    tag_lists: RwLock<HashMap<RepositoryName, Option<Arc<Vec<String>>>>>,
    generation: AtomicU64,
}

/// Proof of the generation a lookup started in.
pub struct Ticket(u64);

impl Default for ManifestCache {
    fn default() -> Self {
        ManifestCache {
            content: Cache::with_weighter(100_000, CONTENT_BYTES, ByLength),
            resolved: RwLock::new(HashMap::new()),
            tag_lists: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }
}

fn key(repo: &RepositoryName, reference: &Reference) -> (RepositoryName, String) {
    (repo.clone(), reference.to_string())
}

impl ManifestCache {
    /// A cached manifest for the reference, if both steps are cached.
    pub fn get(&self, repo: &RepositoryName, reference: &Reference) -> Option<Arc<StoredManifest>> {
        let resolved = self.resolved.read().unwrap_or_else(|e| e.into_inner());
        let digest = resolved.get(&key(repo, reference))?;
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
        if resolved.len() >= MAX_RESOLUTIONS {
            resolved.clear();
        }
        resolved.insert(key(repo, reference), manifest.digest.clone());
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

    /// After a tag of `repo` was created, moved or removed.
    pub fn tag_changed(&self, repo: &RepositoryName, reference: &Reference) {
        let mut resolved = self.resolved.write().unwrap_or_else(|e| e.into_inner());
        let mut lists = self.tag_lists.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        resolved.remove(&key(repo, reference));
        lists.remove(repo);
    }

    /// After manifests were removed: forget every resolution and tag list
    /// (deletes are rare).
    pub fn manifests_removed(&self) {
        let mut resolved = self.resolved.write().unwrap_or_else(|e| e.into_inner());
        let mut lists = self.tag_lists.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        resolved.clear();
        lists.clear();
    }
}

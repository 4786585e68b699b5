//! Pull statistics, counted in memory and written in batches: recording every
//! pull as its own write would make each GET cost a database transaction.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::meta::{now_millis, MetaStore};
use crate::oci::{Digest, RepositoryName};

use super::RegistryError;

type Counts = HashMap<(String, String), u64>;

#[derive(Default)]
pub struct PullCounter {
    manifests: Mutex<Counts>,
    blobs: Mutex<Counts>,
}

fn bump(counts: &Mutex<Counts>, repo: &RepositoryName, digest: &Digest) {
    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
    *counts
        .entry((repo.as_str().to_string(), digest.as_str().to_string()))
        .or_default() += 1;
}

fn drain(counts: &Mutex<Counts>) -> Vec<(String, String, u64)> {
    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
    counts.drain().map(|((r, d), n)| (r, d, n)).collect()
}

impl PullCounter {
    pub fn manifest(&self, repo: &RepositoryName, digest: &Digest) {
        bump(&self.manifests, repo, digest);
    }

    pub fn blob(&self, repo: &RepositoryName, digest: &Digest) {
        bump(&self.blobs, repo, digest);
    }

    pub async fn flush(&self, meta: &MetaStore) -> Result<(), RegistryError> {
        let manifests = drain(&self.manifests);
        let blobs = drain(&self.blobs);
        if manifests.is_empty() && blobs.is_empty() {
            return Ok(());
        }
        Ok(meta.record_pulls(manifests, blobs, now_millis()).await?)
    }
}

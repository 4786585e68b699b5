//! require-signature: whether a pulled artifact carries a signature valid
//! under a trust configuration. The signatures are the repository's own
//! manifests (cosign's `sha256-<hex>.sig` tag, and cosign and Notation
//! referrers), read through `admission::Content`; `berth_trust` verifies
//! each one.
//!
//! Verdicts are cached per (repository, manifest, trust fingerprint) with
//! the signature set they were made from: the registry replaces that set
//! (a new `Arc`) whenever a tag of the repository moves or a referrer is
//! pushed into it, here or on another replica, so a signature pushed after
//! the image is seen by the next pull. A rotated key changes the
//! fingerprint. Verdicts expire after an hour regardless, since Notation's
//! depend on certificate validity at the time of the check.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_trust::{Descriptor, Trust};
use serde::Deserialize;

use crate::meta::{MetaError, StoredManifest};
use crate::oci::{Digest, RepositoryName};
use crate::registry::admission::Content;

/// A signature's blobs (a simple-signing payload, an envelope) above this
/// are not read: the signature is invalid for want of them.
const MAX_SIGNATURE_BLOB: u64 = 1 << 20;
/// Signature manifests looked at per artifact.
const MAX_SIGNATURES: usize = 64;
const VERDICT_TTL: Duration = Duration::from_secs(3600);
const MAX_VERDICTS: usize = 100_000;

/// Layer media types of signatures, attestations and SBOMs.
const METADATA_LAYERS: [&str; 7] = [
    "application/vnd.dev.cosign.simplesigning.v1+json",
    "application/vnd.dsse.envelope.v1+json",
    "application/vnd.in-toto+json",
    berth_trust::notation::SIGNATURE_ARTIFACT_TYPE,
    berth_trust::notation::JWS_MEDIA_TYPE,
    berth_trust::notation::COSE_MEDIA_TYPE,
    "application/spdx+json",
];
const METADATA_LAYER_PREFIXES: [&str; 2] = [
    berth_trust::artifact::SIGSTORE_BUNDLE_PREFIX,
    "application/vnd.cyclonedx",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    #[serde(default)]
    layers: Vec<Layer>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer {
    #[serde(default)]
    media_type: String,
    digest: String,
}

pub(super) fn is_metadata_layer(media_type: &str) -> bool {
    METADATA_LAYERS.contains(&media_type)
        || METADATA_LAYER_PREFIXES
            .iter()
            .any(|p| media_type.starts_with(p))
}

/// Whether a manifest is a signature, an attestation or an SBOM, which a
/// require-signature rule leaves readable: an image manifest with layers,
/// each of them of such a media type. Nothing can run it, so neither its
/// tag nor its `subject` (both the pusher's choice) is needed to tell.
pub(super) fn is_metadata(manifest: &[u8]) -> bool {
    match serde_json::from_slice::<Shape>(manifest) {
        Ok(s) => {
            s.manifests.is_none()
                && !s.layers.is_empty()
                && s.layers.iter().all(|l| is_metadata_layer(&l.media_type))
        }
        Err(_) => false,
    }
}

/// What made the artifact pass.
#[derive(Debug, Clone)]
pub enum Found {
    /// It is a signature, an attestation or an SBOM ([`is_metadata`]),
    /// which stays readable so that signers and verifiers keep working.
    Metadata,
    /// This signature manifest is valid, and who made it.
    Valid(Digest, berth_trust::Valid),
    /// A Notation trust policy says not to verify this repository.
    Skipped,
    /// An index listing the artifact passed.
    Parent(Digest),
}

/// The verdict on one artifact under one trust configuration, cached, so
/// that a checked pull costs lookups only.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub found: Option<Found>,
    /// Each signature manifest that is not valid, and why.
    pub failures: Vec<(Digest, String)>,
}

impl Checked {
    /// Why nothing passed, for a refusal.
    pub fn why_not(&self) -> String {
        match self.failures.as_slice() {
            [] => "found none".into(),
            [(d, why), rest @ ..] => format!(
                "found {} signature(s), none valid ({d}: {why}{})",
                rest.len() + 1,
                if rest.is_empty() { "" } else { "; …" }
            ),
        }
    }
}

struct Entry {
    at: Instant,
    signatures: Arc<Vec<Digest>>,
    checked: Arc<Checked>,
}

type Key = (RepositoryName, Digest, String);

pub struct Verifier {
    verdicts: quick_cache::sync::Cache<Key, Arc<Entry>>,
}

impl Default for Verifier {
    fn default() -> Verifier {
        Verifier {
            verdicts: quick_cache::sync::Cache::new(MAX_VERDICTS),
        }
    }
}

impl Verifier {
    /// The verdict on `subject` in `repo` under `trust`, from the cache
    /// while the repository's signatures have not changed.
    pub async fn check(
        &self,
        content: &dyn Content,
        repo: &RepositoryName,
        subject: &StoredManifest,
        trust: &Trust,
    ) -> Result<Arc<Checked>, MetaError> {
        let signatures = content.signatures(repo, &subject.digest).await?;
        let key = (
            repo.clone(),
            subject.digest.clone(),
            trust.fingerprint().to_string(),
        );
        if let Some(e) = self.verdicts.get(&key) {
            if Arc::ptr_eq(&e.signatures, &signatures) && e.at.elapsed() < VERDICT_TTL {
                return Ok(e.checked.clone());
            }
        }
        let mut checked = if is_metadata(&subject.content) {
            Checked {
                found: Some(Found::Metadata),
                failures: Vec::new(),
            }
        } else {
            verify(content, repo, subject, &signatures, trust).await?
        };
        if checked.found.is_none() {
            // A child of an index passes when the index does.
            for parent in content.parents(repo, &subject.digest).await? {
                let Some(index) = content.manifest(repo, &parent).await? else {
                    continue;
                };
                let theirs = content.signatures(repo, &parent).await?;
                if verify(content, repo, &index, &theirs, trust)
                    .await?
                    .found
                    .is_some()
                {
                    checked.found = Some(Found::Parent(parent));
                    break;
                }
            }
        }
        let checked = Arc::new(checked);
        self.verdicts.insert(
            key,
            Arc::new(Entry {
                at: Instant::now(),
                signatures,
                checked: checked.clone(),
            }),
        );
        Ok(checked)
    }
}

/// Verifies each signature manifest until one is valid.
async fn verify(
    content: &dyn Content,
    repo: &RepositoryName,
    subject: &StoredManifest,
    signatures: &[Digest],
    trust: &Trust,
) -> Result<Checked, MetaError> {
    let descriptor = Descriptor {
        media_type: subject.media_type.clone(),
        digest: subject.digest.to_string(),
        size: subject.content.len() as u64,
    };
    let now = crate::meta::now_millis() / 1000;
    let mut checked = Checked::default();
    for digest in signatures.iter().take(MAX_SIGNATURES) {
        let Some(manifest) = content.manifest(repo, digest).await? else {
            continue;
        };
        let mut blobs = HashMap::new();
        if let Ok(shape) = serde_json::from_slice::<Shape>(&manifest.content) {
            for layer in shape.layers {
                let Ok(d) = layer.digest.parse::<Digest>() else {
                    continue;
                };
                if let Some(bytes) = content.small_blob(repo, &d, MAX_SIGNATURE_BLOB).await? {
                    blobs.insert(layer.digest, bytes);
                }
            }
        }
        let verdict = berth_trust::verify_manifest(
            &manifest.content,
            |d| blobs.get(d).cloned(),
            &descriptor,
            repo.as_str(),
            trust,
            now,
        );
        match verdict {
            berth_trust::Verdict::Valid(valid) => {
                checked.found = Some(Found::Valid(digest.clone(), valid));
                break;
            }
            berth_trust::Verdict::Skipped => {
                checked.found = Some(Found::Skipped);
                break;
            }
            berth_trust::Verdict::Invalid { reason, .. } => {
                checked.failures.push((digest.clone(), reason.to_string()))
            }
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_told_by_layer_media_types() {
        let sig = br#"{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:00","size":1}]}"#;
        assert!(is_metadata(sig));
        let image = br#"{"schemaVersion":2,"subject":{"digest":"sha256:00"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:00","size":1},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:01","size":1}]}"#;
        assert!(
            !is_metadata(image),
            "a runnable layer makes it an image, whatever its subject"
        );
        assert!(!is_metadata(br#"{"schemaVersion":2,"manifests":[]}"#));
        assert!(!is_metadata(br#"{"schemaVersion":2,"layers":[]}"#));
        assert!(!is_metadata(b"not json"));
    }
}

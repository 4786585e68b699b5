//! Signature manifests as a registry stores them, turned into the
//! signatures to verify: cosign's `.sig` tag scheme and its OCI 1.1 referrer
//! form, and Notation's referrer manifest. Every layer blob used is checked
//! against its descriptor (SHA-256 and size).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cosign::{
    CosignSignature, ANNOTATION_BUNDLE, ANNOTATION_CERTIFICATE, ANNOTATION_CHAIN,
    ANNOTATION_SIGNATURE, SIMPLE_SIGNING_MEDIA_TYPE,
};
use crate::keys::sha256_digest;
use crate::notation::{self, Envelope};
use crate::Reason;

/// `artifactType` of a cosign signature pushed as an OCI 1.1 referrer.
pub const COSIGN_SIG_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Prefix of the sigstore bundle media types (`...bundle.v0.3+json`, ...).
pub const SIGSTORE_BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";

/// An OCI content descriptor (the fields verification looks at).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Layer>,
    subject: Option<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The signatures of one signature manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureArtifact {
    /// cosign: one signature per simple-signing layer.
    Cosign {
        /// The manifest's `subject` (referrer form); `None` for a `.sig` tag.
        subject: Option<Descriptor>,
        signatures: Vec<CosignSignature>,
    },
    /// Notation: one envelope.
    Notation {
        subject: Option<Descriptor>,
        envelope: Box<Envelope>,
    },
}

impl SignatureArtifact {
    /// Parses a signature manifest; `blob` gives a layer's bytes by digest
    /// (`None` if unavailable). Recognised:
    ///
    /// * Notation: `artifactType` (or, without one, config `mediaType`)
    ///   `application/vnd.cncf.notary.signature`, one `application/jose+json`
    ///   or `application/cose` layer;
    /// * sigstore bundles (`application/vnd.dev.sigstore.bundle.*`): refused
    ///   as [`Reason::UnsupportedFormat`];
    /// * cosign: any manifest with `application/vnd.dev.cosign.simplesigning.v1+json`
    ///   layers (the `.sig` tag, or a referrer with `artifactType`
    ///   `application/vnd.dev.cosign.artifact.sig.v1+json`); other layers are
    ///   ignored, and a simple-signing layer without a signature annotation
    ///   is refused.
    pub fn from_manifest(
        manifest: &[u8],
        blob: impl Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<SignatureArtifact, Reason> {
        let m: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| Reason::MalformedManifest(e.to_string()))?;
        let artifact_type = m
            .artifact_type
            .clone()
            .or_else(|| m.config.as_ref().map(|c| c.media_type.clone()))
            .unwrap_or_default();
        let fetch = |l: &Layer| -> Result<Vec<u8>, Reason> {
            let bytes = blob(&l.digest).ok_or_else(|| Reason::BlobMissing(l.digest.clone()))?;
            if sha256_digest(&bytes) != l.digest || bytes.len() as u64 != l.size {
                return Err(Reason::BlobMismatch(l.digest.clone()));
            }
            Ok(bytes)
        };
        if artifact_type == notation::SIGNATURE_ARTIFACT_TYPE {
            let [layer] = m.layers.as_slice() else {
                return Err(Reason::MalformedManifest(
                    "a Notation signature has exactly one layer".into(),
                ));
            };
            let envelope = Envelope::parse(&layer.media_type, &fetch(layer)?)?;
            return Ok(SignatureArtifact::Notation {
                subject: m.subject,
                envelope: Box::new(envelope),
            });
        }
        if artifact_type.starts_with(SIGSTORE_BUNDLE_PREFIX)
            || m.layers
                .iter()
                .any(|l| l.media_type.starts_with(SIGSTORE_BUNDLE_PREFIX))
        {
            return Err(Reason::UnsupportedFormat(format!(
                "sigstore bundle ({artifact_type})"
            )));
        }
        let mut signatures = Vec::new();
        for l in m
            .layers
            .iter()
            .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        {
            let sig = l.annotations.get(ANNOTATION_SIGNATURE).ok_or_else(|| {
                Reason::Malformed(format!("layer {} has no signature annotation", l.digest))
            })?;
            let get = |k: &str| l.annotations.get(k).cloned();
            signatures.push(CosignSignature::from_annotations(
                fetch(l)?,
                sig,
                get(ANNOTATION_CERTIFICATE),
                get(ANNOTATION_CHAIN),
                get(ANNOTATION_BUNDLE),
            )?);
        }
        if signatures.is_empty() {
            return Err(Reason::NotASignature(format!(
                "artifact type {artifact_type:?}, no signature layers"
            )));
        }
        Ok(SignatureArtifact::Cosign {
            subject: m.subject,
            signatures,
        })
    }

    /// The manifest's `subject`, if it is an OCI 1.1 referrer.
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            SignatureArtifact::Cosign { subject, .. }
            | SignatureArtifact::Notation { subject, .. } => subject.as_ref(),
        }
    }
}

//! Manifest parsing: the registry stores manifest bytes verbatim and extracts
//! only what it must know, namely what the manifest references (blobs, child
//! manifests, its subject) and what the referrers API reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Withdrawn before OCI 1.1 final, still produced by some ORAS versions.
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";

/// Manifests larger than this are refused (the spec's suggested limit).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// The manifest media types this registry accepts.
pub const MANIFEST_MEDIA_TYPES: [&str; 5] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_ARTIFACT_MANIFEST,
];

/// A content descriptor as it appears in manifests and in the referrers list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// In an index: what the child runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// What an image runs on, as an index descriptor or an image config names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    /// `os/architecture[/variant]`, as `--platform` flags write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What the registry knows about a manifest once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    /// For the referrers API: `artifactType`, or an image manifest's config media type.
    pub artifact_type: Option<String>,
    /// Blobs this manifest needs stored in the same repository (config and layers).
    pub blobs: Vec<Descriptor>,
    /// Child manifests (of an index) needed in the same repository.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to; it need not exist yet.
    pub subject: Option<Digest>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("manifest media type cannot be determined: no mediaType field and no Content-Type")]
    UnknownMediaType,
    #[error("{media_type} manifest lacks its {field:?} field")]
    MissingField {
        media_type: &'static str,
        field: &'static str,
    },
}

impl Manifest {
    /// Parses a manifest pushed with the given `Content-Type` (if any).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        // Parameters such as "; charset=utf-8" are not part of the type.
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());
        let media_type = match (raw.media_type.as_deref(), header) {
            (Some(body), Some(header)) if body != header => {
                return Err(ManifestError::MediaTypeMismatch {
                    body: body.to_string(),
                    header: header.to_string(),
                })
            }
            (Some(t), _) => t,
            // An OCI manifest may omit mediaType; the Content-Type names it, or the shape does.
            (None, Some(h)) if MANIFEST_MEDIA_TYPES.contains(&h) => h,
            (None, _) if raw.manifests.is_some() => OCI_INDEX,
            (None, _) if raw.config.is_some() => OCI_MANIFEST,
            (None, Some(h)) => return Err(ManifestError::UnsupportedMediaType(h.to_string())),
            (None, None) => return Err(ManifestError::UnknownMediaType),
        };
        let media_type: &'static str = MANIFEST_MEDIA_TYPES
            .into_iter()
            .find(|t| *t == media_type)
            .ok_or_else(|| ManifestError::UnsupportedMediaType(media_type.to_string()))?;

        // The draft artifact manifest had no schemaVersion; everything else has 2.
        if raw.schema_version != Some(2) && media_type != OCI_ARTIFACT_MANIFEST {
            return Err(ManifestError::SchemaVersion);
        }
        // An empty artifactType is a missing one.
        let artifact_type = raw.artifact_type.filter(|t| !t.is_empty());
        let missing = |field| ManifestError::MissingField { media_type, field };
        let (blobs, manifests, artifact_type) = match media_type {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = raw.config.ok_or(missing("config"))?;
                let layers = raw.layers.ok_or(missing("layers"))?;
                let artifact_type = artifact_type.or_else(|| Some(config.media_type.clone()));
                let mut blobs = vec![config];
                // Foreign / non-distributable layers live at their URLs, not here.
                blobs.extend(
                    layers
                        .into_iter()
                        .filter(|l| l.urls.as_ref().is_none_or(|u| u.is_empty())),
                );
                (blobs, Vec::new(), artifact_type)
            }
            OCI_ARTIFACT_MANIFEST => (raw.blobs.unwrap_or_default(), Vec::new(), artifact_type),
            _ => {
                // Entries that are not manifests (BuildKit's registry cache
                // lists layers and its cache config) are blobs.
                let (manifests, blobs) = raw
                    .manifests
                    .ok_or(missing("manifests"))?
                    .into_iter()
                    .partition(|d| MANIFEST_MEDIA_TYPES.contains(&d.media_type.as_str()));
                (blobs, manifests, artifact_type)
            }
        };
        Ok(Manifest {
            media_type: media_type.to_string(),
            artifact_type,
            blobs,
            manifests,
            subject: raw.subject.map(|s| s.digest),
            annotations: raw.annotations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":3}},
                      {{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{D2}","size":3,"urls":["https://x"]}}],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":9}},
            "annotations":{{"a":"b"}}}}"#
        )
    }

    #[test]
    fn image_manifest_references() {
        let m = Manifest::parse(image(Some(OCI_MANIFEST)).as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(m.blobs.len(), 2, "foreign layer skipped");
        assert_eq!(m.blobs[0].digest.as_str(), D1);
        assert_eq!(m.subject.unwrap().as_str(), D2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(m.annotations.unwrap()["a"], "b");
    }

    #[test]
    fn media_type_from_header_or_shape() {
        let m = Manifest::parse(image(None).as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        let m = Manifest::parse(image(None).as_bytes(), None).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5}}]}}"#
        );
        let m = Manifest::parse(
            index.as_bytes(),
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
        assert_eq!(m.manifests[0].digest.as_str(), D1);
    }

    #[test]
    fn refuses_bad_manifests() {
        let mismatch = Manifest::parse(image(Some(OCI_MANIFEST)).as_bytes(), Some(DOCKER_MANIFEST));
        assert!(matches!(
            mismatch,
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            Manifest::parse(b"{", None),
            Err(ManifestError::Json(_))
        ));
        assert_eq!(
            Manifest::parse(br#"{"schemaVersion":1,"config":{}}"#, None)
                .map_err(|e| matches!(e, ManifestError::Json(_))),
            Err(true)
        );
        assert_eq!(
            Manifest::parse(
                format!(r#"{{"schemaVersion":1,"mediaType":"{OCI_INDEX}","manifests":[]}}"#)
                    .as_bytes(),
                None
            ),
            Err(ManifestError::SchemaVersion)
        );
        let bad_digest = image(Some(OCI_MANIFEST)).replace(D1, "sha256:zz");
        assert!(matches!(
            Manifest::parse(bad_digest.as_bytes(), None),
            Err(ManifestError::Json(_))
        ));
        let negative = image(Some(OCI_MANIFEST)).replace(r#""size":2"#, r#""size":-2"#);
        assert!(matches!(
            Manifest::parse(negative.as_bytes(), None),
            Err(ManifestError::Json(_))
        ));
        let no_layers = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{D1}","size":1}}}}"#
        );
        assert!(matches!(
            Manifest::parse(no_layers.as_bytes(), None),
            Err(ManifestError::MissingField { .. })
        ));
        let odd = r#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
        assert!(matches!(
            Manifest::parse(odd.as_bytes(), None),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), ct in proptest::option::of("\\PC{0,60}")) {
            let _ = Manifest::parse(&bytes, ct.as_deref());
        }

        #[test]
        fn mutated_manifests_never_panic(pos in 0usize..600, byte in any::<u8>()) {
            let mut m = image(Some(OCI_MANIFEST)).into_bytes();
            let i = pos % m.len();
            m[i] = byte;
            let _ = Manifest::parse(&m, None);
        }
    }
}

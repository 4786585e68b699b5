//! The rules that judge an artifact's content: the vulnerability gate
//! (checked on pull, from the scanner's results), the size budget and the
//! required annotations (checked on push, from the manifest and its
//! config). Signatures, attestations and SBOMs are exempt from all three:
//! they are not images, and refusing them would stop signers and scanners.
//!
//! Scan results are read per manifest digest and kept for a few seconds
//! (`SCAN_TTL`): a scan that finishes, here or on another replica, decides
//! pulls within that time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_scan::inventory::Severity;
use serde::{Deserialize, Serialize};

use crate::meta::{MetaError, MetaStore, StoredManifest};
use crate::oci::manifest::{DOCKER_MANIFEST_LIST, OCI_ARTIFACT_MANIFEST, OCI_INDEX};
use crate::oci::{Digest, Manifest, Platform, RepositoryName};
use crate::registry::admission::Content;

use super::signatures::{is_metadata, is_metadata_layer};
use super::PolicyError;

const SCAN_TTL: Duration = Duration::from_secs(5);
const MAX_SCANS: usize = 100_000;
/// Image configs above this are not read for labels.
const MAX_CONFIG: u64 = 1 << 20;
/// Findings a refusal quotes.
const QUOTED: usize = 3;

/// Whether the vulnerability gate lets through an image without a finished scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unscanned {
    Block,
    Allow,
}

/// A finding the vulnerability gate lets through, until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// An advisory id or one of its aliases (a CVE).
    pub id: String,
    /// The day (UTC, `YYYY-MM-DD`) from which the exception no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The settings of the content rules, stored with the rule as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// vulnerability: findings at or above this severity refuse the pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// vulnerability: what an image without a finished scan gets (block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscanned: Option<Unscanned>,
    /// vulnerability: findings let through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Exception>,
    /// size-budget: the most compressed bytes (config and layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// size-budget: the most layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_layers: Option<u64>,
    /// require-annotations: keys each image must carry, as a manifest
    /// annotation or a config label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<String>,
    /// forbid-tags: pulls by a forbidden tag are refused too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_pull: bool,
    /// platforms: the platforms an image may be for (globs over
    /// `os/architecture[/variant]`; `linux/arm64` also covers its variants).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// platforms: the artifact types (or image config media types) a
    /// manifest may have (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact_types: Vec<String>,
    /// trusted-base: the repositories an image may be built on (globs over
    /// names in this registry, such as `library/debian` or `base/**`, or
    /// as the `org.opencontainers.image.base.name` annotation gives them,
    /// such as `docker.io/library/debian`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<String>,
}

/// When an exception stops applying, in milliseconds since the epoch.
pub fn expiry(expires: &str) -> Result<i64, PolicyError> {
    chrono::NaiveDate::parse_from_str(expires, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            PolicyError::Invalid(format!(
                "the exception's expiry {expires:?} is not a date (YYYY-MM-DD)"
            ))
        })
}

impl Params {
    pub fn is_empty(&self) -> bool {
        *self == Params::default()
    }

    /// Refuses settings that make no sense, at configuration time.
    pub fn check(&self) -> Result<(), PolicyError> {
        if matches!(self.severity, Some(Severity::Unknown | Severity::None)) {
            return Err(PolicyError::Invalid(
                "severity must be low, medium, high or critical".into(),
            ));
        }
        for e in &self.allow {
            if e.id.is_empty() || e.id.len() > 128 || e.id.contains(char::is_whitespace) {
                return Err(PolicyError::Invalid(format!(
                    "the exception id {:?} is not an advisory id",
                    e.id
                )));
            }
            if let Some(x) = &e.expires {
                expiry(x)?;
            }
        }
        for key in &self.annotations {
            if key.is_empty() || key.len() > 256 || key.contains(|c: char| c.is_control()) {
                return Err(PolicyError::Invalid(format!(
                    "the annotation key {key:?} is empty, too long or has control characters"
                )));
            }
        }
        for (what, patterns) in [
            ("platform", &self.platforms),
            ("artifact type", &self.artifact_types),
            ("base", &self.bases),
        ] {
            for p in patterns {
                pattern(p, what)?;
            }
        }
        if self.max_bytes == Some(0) || self.max_layers == Some(0) {
            return Err(PolicyError::Invalid(
                "a size budget of 0 refuses everything".into(),
            ));
        }
        Ok(())
    }
}

/// A pattern of a platforms or trusted-base rule: a glob in which `*`
/// crosses `/` for platforms and types, and stays within one path
/// component for repositories (`**` crosses them).
pub fn pattern(p: &str, what: &str) -> Result<globset::GlobMatcher, PolicyError> {
    globset::GlobBuilder::new(p)
        .literal_separator(what == "base")
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| PolicyError::Invalid(format!("the {what} {p:?} is not a valid pattern: {e}")))
}

/// Patterns checked when the rule was made, compiled for one judgement.
pub fn matchers(patterns: &[String], what: &str) -> Vec<globset::GlobMatcher> {
    patterns
        .iter()
        .filter_map(|p| pattern(p, what).ok())
        .collect()
}

/// Whether an image (not an index, a signature, an attestation or an SBOM)
/// is what `manifest` describes.
pub fn is_image(manifest: &Manifest) -> bool {
    image_size(manifest).is_some()
}

/// What counts against a size budget: bytes and layers of an image
/// manifest (None: an index, whose children were judged when pushed, or
/// a signature, attestation or SBOM).
fn image_size(manifest: &Manifest) -> Option<(u64, usize)> {
    if !manifest.manifests.is_empty()
        || [OCI_INDEX, DOCKER_MANIFEST_LIST].contains(&manifest.media_type.as_str())
    {
        return None;
    }
    let layers = if manifest.media_type == OCI_ARTIFACT_MANIFEST {
        &manifest.blobs[..]
    } else {
        manifest.blobs.get(1..).unwrap_or_default()
    };
    if !layers.is_empty() && layers.iter().all(|l| is_metadata_layer(&l.media_type)) {
        return None;
    }
    let bytes = manifest.blobs.iter().map(|b| b.size).sum();
    Some((bytes, layers.len()))
}

/// Why a size budget refuses a push, if it does.
pub fn over_budget(params: &Params, manifest: &Manifest) -> Option<String> {
    let (bytes, layers) = image_size(manifest)?;
    if let Some(max) = params.max_bytes.filter(|&m| bytes > m) {
        return Some(format!(
            "the image is {bytes} bytes compressed, over the budget of {max}"
        ));
    }
    if let Some(max) = params.max_layers.filter(|&m| layers as u64 > m) {
        return Some(format!(
            "the image has {layers} layers, over the budget of {max}"
        ));
    }
    None
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    config: Option<ConfigInner>,
}

#[derive(Deserialize)]
struct ConfigInner {
    #[serde(default, rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

/// The required keys an image pushed into `repo` lacks, in neither its
/// manifest's annotations nor its config's labels (empty: an index or a
/// signature, attestation or SBOM, or nothing missing).
pub async fn missing_annotations(
    content: &dyn Content,
    repo: &RepositoryName,
    params: &Params,
    manifest: &Manifest,
) -> Result<Vec<String>, MetaError> {
    if image_size(manifest).is_none() {
        return Ok(Vec::new());
    }
    let has = |k: &String| {
        manifest
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(k))
    };
    let mut missing: Vec<String> = params
        .annotations
        .iter()
        .filter(|k| !has(k))
        .cloned()
        .collect();
    let config = (manifest.media_type != OCI_ARTIFACT_MANIFEST)
        .then(|| manifest.blobs.first())
        .flatten();
    if let (false, Some(config)) = (missing.is_empty(), config) {
        let labels = content
            .small_blob(repo, &config.digest, MAX_CONFIG)
            .await?
            .and_then(|b| serde_json::from_slice::<Config>(&b).ok())
            .and_then(|c| c.config?.labels)
            .unwrap_or_default();
        missing.retain(|k| !labels.contains_key(k));
    }
    Ok(missing)
}

/// Config media types of container images (whose config names the
/// image's platform).
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Whether `manifest` is a container image: an image (see [`is_image`])
/// with an image config, not a Helm chart or another artifact.
pub fn is_container_image(manifest: &Manifest) -> bool {
    is_image(manifest)
        && manifest.media_type != OCI_ARTIFACT_MANIFEST
        && manifest
            .blobs
            .first()
            .is_some_and(|c| IMAGE_CONFIGS.contains(&c.media_type.as_str()))
}

/// Why a platforms rule refuses a push of `manifest` into `repo`, if it
/// does: an artifact type not allowed, an image config (or an index
/// child) for a platform not allowed. Signatures, attestations and SBOMs
/// are exempt; buildx's attestation children (`unknown/unknown`) too.
pub async fn unallowed_platform(
    content: &dyn Content,
    repo: &RepositoryName,
    params: &Params,
    manifest: &Manifest,
) -> Result<Option<String>, MetaError> {
    let index = !manifest.manifests.is_empty()
        || [OCI_INDEX, DOCKER_MANIFEST_LIST].contains(&manifest.media_type.as_str());
    if !index && !is_image(manifest) {
        return Ok(None);
    }
    // An image's type is its config's media type, as OCI 1.1 has it.
    let config_type = (!index && manifest.media_type != OCI_ARTIFACT_MANIFEST)
        .then(|| manifest.blobs.first().map(|c| &c.media_type))
        .flatten();
    if let Some(t) = manifest.artifact_type.as_ref().or(config_type) {
        let types = matchers(&params.artifact_types, "artifact type");
        if !types.is_empty() && !types.iter().any(|g| g.is_match(t)) {
            return Ok(Some(format!(
                "its artifact type {t} is not among {}",
                params.artifact_types.join(", ")
            )));
        }
    }
    let platforms = matchers(&params.platforms, "platform");
    if platforms.is_empty() {
        return Ok(None);
    }
    let allowed = |p: &Platform| {
        let bare = format!("{}/{}", p.os, p.architecture);
        platforms
            .iter()
            .any(|g| g.is_match(p.to_string()) || g.is_match(&bare))
    };
    let refusal = |what: String, p: &Platform| {
        format!(
            "{what} is for {p}, not among {}",
            params.platforms.join(", ")
        )
    };
    if index {
        for child in &manifest.manifests {
            let Some(p) = &child.platform else { continue };
            if (p.os.as_str(), p.architecture.as_str()) != ("unknown", "unknown") && !allowed(p) {
                return Ok(Some(refusal(format!("its child {}", child.digest), p)));
            }
        }
        return Ok(None);
    }
    let Some(config) = manifest
        .blobs
        .first()
        .filter(|_| is_container_image(manifest))
    else {
        return Ok(None);
    };
    let platform = content
        .small_blob(repo, &config.digest, MAX_CONFIG)
        .await?
        .and_then(|b| serde_json::from_slice::<Platform>(&b).ok())
        .filter(|p| !p.os.is_empty() && !p.architecture.is_empty());
    Ok(match platform {
        None => Some("its config names no platform (os and architecture)".into()),
        Some(p) => (!allowed(&p)).then(|| refusal("the image".into(), &p)),
    })
}

/// One finding, as the gate needs it.
#[derive(Debug, Clone, Deserialize)]
struct Hit {
    id: String,
    #[serde(default)]
    aliases: Vec<String>,
    severity: Severity,
    package: String,
}

#[derive(Deserialize)]
struct ReportFindings {
    #[serde(default)]
    findings: Vec<Hit>,
}

/// What the scanner says about one manifest.
#[derive(Debug)]
enum Facts {
    /// A signature, attestation or SBOM.
    Exempt,
    /// No finished scan: its status (none, queued, running, failed, unsupported).
    Unscanned(String),
    /// Findings of at least low severity.
    Scanned(Vec<Hit>),
}

/// The scanner's results, read through a short-lived cache.
pub struct ScanGate {
    facts: quick_cache::sync::Cache<Digest, Arc<(Instant, Facts)>>,
}

impl Default for ScanGate {
    fn default() -> ScanGate {
        ScanGate {
            facts: quick_cache::sync::Cache::new(MAX_SCANS),
        }
    }
}

fn scan_facts(status: &str, report: Option<&str>) -> Facts {
    if status != "finished" {
        return Facts::Unscanned(status.to_string());
    }
    let Some(report) = report.and_then(|r| serde_json::from_str::<ReportFindings>(r).ok()) else {
        return Facts::Unscanned("finished without a readable report".into());
    };
    Facts::Scanned(
        report
            .findings
            .into_iter()
            .filter(|h| h.severity >= Severity::Low)
            .collect(),
    )
}

impl ScanGate {
    async fn facts(
        &self,
        meta: &MetaStore,
        digest: &Digest,
        content: Option<&[u8]>,
    ) -> Result<Arc<(Instant, Facts)>, MetaError> {
        if let Some(f) = self.facts.get(digest).filter(|f| f.0.elapsed() < SCAN_TTL) {
            return Ok(f);
        }
        let facts = if content.is_some_and(is_metadata) {
            Facts::Exempt
        } else {
            match meta.scan(digest.as_str()).await? {
                None => Facts::Unscanned("none".into()),
                Some(s) => scan_facts(&s.status, s.report.as_deref()),
            }
        };
        let f = Arc::new((Instant::now(), facts));
        self.facts.insert(digest.clone(), f.clone());
        Ok(f)
    }

    /// Why the vulnerability gate refuses a pull of `manifest`, if it does.
    /// An index is judged by its children's scans.
    pub async fn refuses(
        &self,
        meta: &MetaStore,
        params: &Params,
        manifest: &StoredManifest,
        now_millis: i64,
    ) -> Result<Option<String>, MetaError> {
        let mut judged = Vec::new();
        if [OCI_INDEX, DOCKER_MANIFEST_LIST].contains(&manifest.media_type.as_str()) {
            let children = Manifest::parse(&manifest.content, Some(&manifest.media_type))
                .map(|m| m.manifests)
                .unwrap_or_default();
            for c in children {
                judged.push((
                    Some(c.digest.clone()),
                    self.facts(meta, &c.digest, None).await?,
                ));
            }
        } else {
            judged.push((
                None,
                self.facts(meta, &manifest.digest, Some(&manifest.content))
                    .await?,
            ));
        }
        let threshold = params.severity.unwrap_or(Severity::Critical);
        let live: Vec<&str> = params
            .allow
            .iter()
            .filter(|e| {
                e.expires
                    .as_deref()
                    .is_none_or(|x| expiry(x).is_ok_and(|t| now_millis < t))
            })
            .map(|e| e.id.as_str())
            .collect();
        let allowed = |h: &Hit| {
            live.iter()
                .any(|id| h.id == *id || h.aliases.iter().any(|a| a == id))
        };
        let mut blocking: Vec<&Hit> = Vec::new();
        for (child, facts) in &judged {
            match &facts.1 {
                Facts::Exempt => {}
                Facts::Unscanned(status) => {
                    if params.unscanned != Some(Unscanned::Allow) {
                        let what = child
                            .as_ref()
                            .map_or("the image".to_string(), |d| format!("its child {d}"));
                        return Ok(Some(format!(
                            "{what} has no finished scan (scan status: {status})"
                        )));
                    }
                }
                Facts::Scanned(hits) => blocking.extend(
                    hits.iter()
                        .filter(|h| h.severity >= threshold && !allowed(h)),
                ),
            }
        }
        if blocking.is_empty() {
            return Ok(None);
        }
        blocking.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        blocking.dedup_by(|a, b| a.id == b.id && a.package == b.package);
        let quoted: Vec<String> = blocking
            .iter()
            .take(QUOTED)
            .map(|h| format!("{} ({} in {})", h.id, h.severity, h.package))
            .collect();
        Ok(Some(format!(
            "{} finding(s) at or above {}: {}{}",
            blocking.len(),
            threshold,
            quoted.join(", "),
            if blocking.len() > QUOTED { ", …" } else { "" }
        )))
    }
}

//! Harbor's pluggable scanner adapter API (v1.0/v1.1, Harbor's
//! `src/pkg/scan/rest/v1`): the messages, and Berth's findings as Harbor's
//! vulnerability report. Pure: the server (`src/scanning/harbor.rs`) does
//! the HTTP and the scanning.

use serde::{Deserialize, Serialize};

use crate::inventory::{Finding, Severity};

/// What the adapter reads: image manifests.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The report it writes (Harbor's "native" report).
pub const REPORT_MIME: &str =
    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0";
pub const METADATA_MIME: &str = "application/vnd.scanner.adapter.metadata+json; version=1.0";
pub const SCAN_RESPONSE_MIME: &str =
    "application/vnd.scanner.adapter.scan.response+json; version=1.0";
pub const ERROR_MIME: &str = "application/vnd.scanner.adapter.error+json; version=1.0";

/// `scanner` of the metadata and of reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scanner {
    pub name: String,
    pub vendor: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// `vulnerability` (spec v1.2; Harbor before 2.11 ignores it).
    #[serde(rename = "type")]
    pub kind: String,
    pub consumes_mime_types: Vec<String>,
    pub produces_mime_types: Vec<String>,
}

/// `GET /api/v1/metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub scanner: Scanner,
    pub capabilities: Vec<Capability>,
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Metadata {
    /// Berth's metadata; `database_updated_at` is when the database in use
    /// was built (RFC 3339), if one is.
    pub fn of(scanner: Scanner, database_updated_at: Option<String>) -> Metadata {
        let mut properties = std::collections::BTreeMap::from([(
            "harbor.scanner-adapter/scanner-type".to_string(),
            "os-package-vulnerability".to_string(),
        )]);
        if let Some(t) = database_updated_at {
            properties.insert(
                "harbor.scanner-adapter/vulnerability-database-updated-at".into(),
                t,
            );
        }
        Metadata {
            scanner,
            capabilities: vec![Capability {
                kind: "vulnerability".into(),
                consumes_mime_types: vec![OCI_MANIFEST.into(), DOCKER_MANIFEST.into()],
                produces_mime_types: vec![REPORT_MIME.into()],
            }],
            properties,
        }
    }
}

/// Where Harbor's registry is, and the `Authorization` value to pull with.
#[derive(Clone, Default, Deserialize)]
pub struct Registry {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub authorization: Option<String>,
}

/// Never shows the authorization.
impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.url)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The artifact to scan, as the request names it (echoed in the report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    #[serde(default)]
    pub repository: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    #[serde(default)]
    pub mime_type: String,
}

/// `POST /api/v1/scan`.
#[derive(Debug, Clone, Deserialize)]
pub struct ScanRequest {
    pub registry: Registry,
    pub artifact: Artifact,
}

impl ScanRequest {
    /// Reads a request, or says why it is not one (JSON of another shape,
    /// or without the registry's URL, the repository or the digest).
    pub fn parse(body: &[u8]) -> Result<ScanRequest, String> {
        let r: ScanRequest = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        for (field, value) in [
            ("registry.url", &r.registry.url),
            ("artifact.repository", &r.artifact.repository),
            ("artifact.digest", &r.artifact.digest),
        ] {
            if value.is_empty() {
                return Err(format!("{field} is required"));
            }
        }
        Ok(r)
    }

    /// Whether the artifact is of a type the adapter scans (Harbor sends
    /// the manifest's media type; an empty one is taken as an image).
    pub fn supported(&self) -> bool {
        let t = self
            .artifact
            .mime_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        t.is_empty() || t == OCI_MANIFEST || t == DOCKER_MANIFEST
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResponse {
    pub id: String,
}

/// The error body of every failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub message: String,
}

impl ErrorResponse {
    pub fn new(message: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            error: ErrorMessage {
                message: message.into(),
            },
        }
    }
}

/// Harbor's severities, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HarborSeverity {
    Unknown,
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl From<Severity> for HarborSeverity {
    /// Berth's `None` (a CVSS score of 0: no impact) is Harbor's
    /// `Negligible`; the rest have the same names.
    fn from(s: Severity) -> HarborSeverity {
        match s {
            Severity::Unknown => HarborSeverity::Unknown,
            Severity::None => HarborSeverity::Negligible,
            Severity::Low => HarborSeverity::Low,
            Severity::Medium => HarborSeverity::Medium,
            Severity::High => HarborSeverity::High,
            Severity::Critical => HarborSeverity::Critical,
        }
    }
}

/// One finding as Harbor shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    pub id: String,
    pub package: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_version: Option<String>,
    pub severity: HarborSeverity,
    #[serde(default)]
    pub description: String,
    pub links: Vec<String>,
    /// Aliases (the CVEs), the CVSS score the severity came from (v4 or
    /// v3, so not one of Harbor's `cvss3_score`/`cvss2_score`), the layer
    /// and file the package was found by.
    #[serde(default)]
    pub vendor_attributes: serde_json::Map<String, serde_json::Value>,
}

/// `GET /api/v1/scan/{id}/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// RFC 3339.
    pub generated_at: String,
    pub artifact: Artifact,
    pub scanner: Scanner,
    /// The highest of the vulnerabilities' (`Unknown` when there are none).
    pub severity: HarborSeverity,
    pub vulnerabilities: Vec<Vulnerability>,
}

/// Where an advisory is described: osv.dev has every OSV id.
fn links(f: &Finding) -> Vec<String> {
    let mut links = vec![format!("https://osv.dev/vulnerability/{}", f.id)];
    links.extend(
        f.aliases
            .iter()
            .filter(|a| a.starts_with("CVE-"))
            .map(|a| format!("https://nvd.nist.gov/vuln/detail/{a}")),
    );
    links
}

pub fn vulnerability(f: &Finding) -> Vulnerability {
    use serde_json::Value;
    let mut vendor = serde_json::Map::new();
    if !f.aliases.is_empty() {
        vendor.insert("aliases".into(), f.aliases.clone().into());
    }
    if let Some(score) = f.score {
        // Rounded as scores are written (one decimal), not as f32 widens.
        let score = (f64::from(score) * 10.0).round() / 10.0;
        vendor.insert("cvss_score".into(), score.into());
    }
    if let Some(layer) = &f.layer {
        vendor.insert("layer".into(), Value::String(layer.clone()));
    }
    vendor.insert("path".into(), Value::String(f.path.clone()));
    Vulnerability {
        id: f.id.clone(),
        package: f.package.clone(),
        version: f.installed_version.clone(),
        fix_version: f.fixed_version.clone(),
        severity: f.severity.into(),
        description: f.summary.clone().unwrap_or_default(),
        links: links(f),
        vendor_attributes: vendor,
    }
}

/// Berth's findings of `artifact` as Harbor's report.
pub fn report(
    scanner: Scanner,
    artifact: Artifact,
    generated_at: String,
    findings: &[Finding],
) -> Report {
    let vulnerabilities: Vec<Vulnerability> = findings.iter().map(vulnerability).collect();
    let severity = vulnerabilities
        .iter()
        .map(|v| v.severity)
        .max()
        .unwrap_or(HarborSeverity::Unknown);
    Report {
        generated_at,
        artifact,
        scanner,
        severity,
        vulnerabilities,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            aliases: vec!["CVE-2023-43804".into(), "GHSA-v845-jxx5-vc9f".into()],
            package: "urllib3".into(),
            installed_version: "1.24.1".into(),
            fixed_version: Some("1.26.17".into()),
            severity,
            score: Some(8.1),
            layer: Some("sha256:ab".into()),
            path: "usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/METADATA".into(),
            summary: Some("Cookie request header isn't stripped".into()),
        }
    }

    fn scanner() -> Scanner {
        Scanner {
            name: "Berth".into(),
            vendor: "Berth".into(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn severities_map_to_harbors_names() {
        for (berth, harbor) in [
            (Severity::Unknown, "Unknown"),
            (Severity::None, "Negligible"),
            (Severity::Low, "Low"),
            (Severity::Medium, "Medium"),
            (Severity::High, "High"),
            (Severity::Critical, "Critical"),
        ] {
            assert_eq!(json!(HarborSeverity::from(berth)), json!(harbor));
        }
    }

    #[test]
    fn a_report_has_harbors_shape_and_the_highest_severity() {
        let artifact = Artifact {
            repository: "library/app".into(),
            digest: "sha256:cd".into(),
            tag: "v1".into(),
            mime_type: OCI_MANIFEST.into(),
        };
        let mut unfixed = finding("PYSEC-2019-132", Severity::Unknown);
        unfixed.fixed_version = None;
        unfixed.score = None;
        unfixed.aliases.clear();
        unfixed.layer = None;
        unfixed.summary = None;
        let r = report(
            scanner(),
            artifact,
            "2026-01-02T03:04:05Z".into(),
            &[finding("PYSEC-2023-192", Severity::High), unfixed],
        );
        assert_eq!(r.severity, HarborSeverity::High);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["artifact"],
            json!({"repository": "library/app", "digest": "sha256:cd", "tag": "v1", "mime_type": OCI_MANIFEST})
        );
        assert_eq!(v["scanner"]["name"], "Berth");
        assert_eq!(v["severity"], "High");
        assert_eq!(
            v["vulnerabilities"][0],
            json!({
                "id": "PYSEC-2023-192",
                "package": "urllib3",
                "version": "1.24.1",
                "fix_version": "1.26.17",
                "severity": "High",
                "description": "Cookie request header isn't stripped",
                "links": [
                    "https://osv.dev/vulnerability/PYSEC-2023-192",
                    "https://nvd.nist.gov/vuln/detail/CVE-2023-43804"
                ],
                "vendor_attributes": {
                    "aliases": ["CVE-2023-43804", "GHSA-v845-jxx5-vc9f"],
                    "cvss_score": 8.1,
                    "layer": "sha256:ab",
                    "path": "usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/METADATA"
                }
            })
        );
        let second = &v["vulnerabilities"][1];
        assert!(second.get("fix_version").is_none(), "{second}");
        assert_eq!(second["severity"], "Unknown");
        assert_eq!(second["description"], "");
        assert_eq!(
            second["vendor_attributes"],
            json!({"path": second["vendor_attributes"]["path"]})
        );
    }

    #[test]
    fn no_findings_is_an_empty_list_of_unknown_severity() {
        let r = report(scanner(), Artifact::default(), "t".into(), &[]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["severity"], "Unknown");
        assert_eq!(v["vulnerabilities"], json!([]));
    }

    #[test]
    fn metadata_names_the_types_and_the_database_time() {
        let m = Metadata::of(scanner(), Some("2026-01-01T00:00:00Z".into()));
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v["capabilities"],
            json!([{"type": "vulnerability", "consumes_mime_types": [OCI_MANIFEST, DOCKER_MANIFEST], "produces_mime_types": [REPORT_MIME]}])
        );
        assert_eq!(
            v["properties"],
            json!({
                "harbor.scanner-adapter/scanner-type": "os-package-vulnerability",
                "harbor.scanner-adapter/vulnerability-database-updated-at": "2026-01-01T00:00:00Z"
            })
        );
        let none = serde_json::to_value(Metadata::of(scanner(), None)).unwrap();
        assert_eq!(none["properties"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn scan_requests_are_checked_and_their_authorization_never_shown() {
        let body = json!({
            "registry": {"url": "https://harbor.example", "authorization": "Basic c2VjcmV0"},
            "artifact": {"repository": "library/app", "digest": "sha256:cd", "tag": "v1",
                         "mime_type": DOCKER_MANIFEST, "size": 12},
            "enabled_capabilities": [{"type": "vulnerability"}]
        });
        let r = ScanRequest::parse(body.to_string().as_bytes()).unwrap();
        assert!(r.supported());
        assert_eq!(r.registry.authorization.as_deref(), Some("Basic c2VjcmV0"));
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("c2VjcmV0") && shown.contains("redacted"),
            "{shown}"
        );

        let mut chart = body.clone();
        chart["artifact"]["mime_type"] = json!("application/vnd.cncf.helm.config.v1+json");
        let chart = ScanRequest::parse(chart.to_string().as_bytes()).unwrap();
        assert!(!chart.supported());

        assert!(ScanRequest::parse(b"not json").is_err());
        assert!(ScanRequest::parse(b"{}").is_err());
        let mut no_digest = body;
        no_digest["artifact"]["digest"] = json!("");
        let e = ScanRequest::parse(no_digest.to_string().as_bytes()).unwrap_err();
        assert!(e.contains("artifact.digest"), "{e}");
    }
}

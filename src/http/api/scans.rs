//! Vulnerability scanning: a scan asked for, an artifact's findings, its
//! SBOMs and composition, and the vulnerability database in use (and its
//! import). Artifacts are named below their project
//! (`/projects/{project}/repositories/{repository}/artifacts/{reference}`,
//! `{repository}` percent-encoded when it has slashes; `{reference}` a tag
//! or a digest).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{artifact_digest, ApiFailure, ApiPath, ApiQuery, ApiResult, Who};
use crate::http::AppState;
use crate::oci::Digest;
use crate::scanning::{Report, Summary};

/// Counts of findings by severity.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SummaryView {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub none: u64,
    /// Advisories that give no usable severity (never guessed).
    pub unknown: u64,
    /// Findings with a fixed version to upgrade to.
    pub fixable: u64,
    pub total: u64,
}

impl From<Summary> for SummaryView {
    fn from(s: Summary) -> Self {
        SummaryView {
            critical: s.critical,
            high: s.high,
            medium: s.medium,
            low: s.low,
            none: s.none,
            unknown: s.unknown,
            fixable: s.fixable,
            total: s.total,
        }
    }
}

/// A scan's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScanView {
    pub digest: String,
    /// queued, running, finished, failed or unsupported (not an image).
    pub status: String,
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Layers read of the image's layers (while running).
    pub progress_done: i64,
    pub progress_total: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// The vulnerability database the findings come from (none imported: null).
    pub vulndb: Option<String>,
    pub summary: Option<SummaryView>,
}

impl From<crate::meta::ScanRecord> for ScanView {
    fn from(s: crate::meta::ScanRecord) -> Self {
        ScanView {
            digest: s.manifest,
            status: s.status,
            requested_at: s.requested_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            progress_done: s.progress_done,
            progress_total: s.progress_total,
            error: s.error,
            vulndb: s.vulndb,
            summary: s
                .summary
                .as_deref()
                .and_then(|s| serde_json::from_str::<Summary>(s).ok())
                .map(Into::into),
        }
    }
}

/// Scans the artifact now (again, if it was scanned): queued, and run by
/// the next free scanner. Follow it with GET …/scan.
#[utoipa::path(post, path = "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/scan", tag = "scanning",
    params(("project" = String, Path), ("repository" = String, Path, description = "within the project, percent-encoded"), ("reference" = String, Path, description = "a tag or a digest")),
    responses((status = 202, body = ScanView)))]
pub async fn request(
    State(state): State<Arc<AppState>>,
    ApiPath(path): ApiPath<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<ScanView>)> {
    let (repo, digest) = artifact_digest(&state, &path).await?;
    state
        .scanner
        .request(&repo, vec![digest.to_string()], true)
        .await?;
    let scan = state.scanner.scan_record(&digest).await?;
    let scan = scan.ok_or_else(|| ApiFailure::Internal("a queued scan vanished".into()))?;
    Ok((StatusCode::ACCEPTED, Json(scan.into())))
}

fn never_scanned(digest: &Digest) -> ApiFailure {
    ApiFailure::NotFound(format!(
        "{digest} has not been scanned; ask for a scan with POST …/scan"
    ))
}

/// The artifact's scan: its state and summary.
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/scan", tag = "scanning",
    params(("project" = String, Path), ("repository" = String, Path), ("reference" = String, Path)),
    responses((status = 200, body = ScanView), (status = 404)))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    ApiPath(path): ApiPath<(String, String, String)>,
) -> ApiResult<Json<ScanView>> {
    let (_, digest) = artifact_digest(&state, &path).await?;
    let scan = state.scanner.scan_record(&digest).await?;
    Ok(Json(scan.ok_or_else(|| never_scanned(&digest))?.into()))
}

/// Which findings to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindingFilter {
    /// Only findings at or above this severity: critical, high, medium, low,
    /// none or unknown.
    pub severity: Option<String>,
    /// Only findings of this installed package.
    pub package: Option<String>,
    /// Only findings with (true) or without (false) a fixed version.
    pub fixable: Option<bool>,
}

/// One advisory that applies to an installed package.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingView {
    /// The advisory (DSA-5650-1, PYSEC-2023-192, RUSTSEC-…, GO-…).
    pub id: String,
    /// Its other ids: the CVEs.
    pub aliases: Vec<String>,
    pub package: String,
    pub installed_version: String,
    /// The version that fixes it, if the advisory names one.
    pub fixed_version: Option<String>,
    pub severity: String,
    /// The CVSS base score the severity came from.
    pub score: Option<f32>,
    /// The layer that brought the package in.
    pub layer: Option<String>,
    /// The file the package was found in.
    pub path: String,
    pub summary: Option<String>,
}

/// One platform of an index.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChildView {
    pub digest: String,
    pub platform: Option<String>,
    pub status: String,
    pub summary: SummaryView,
}

/// What a scan found.
#[derive(Debug, Serialize, ToSchema)]
pub struct VulnerabilityReport {
    #[serde(flatten)]
    pub scan: ScanView,
    /// The OS, from /etc/os-release.
    pub os: Option<String>,
    /// Packages found (all of them; the findings are filtered).
    pub packages: u64,
    pub findings: Vec<FindingView>,
    /// An index: its platforms' results (their findings: query each digest).
    pub children: Vec<ChildView>,
    /// Files that could not be read, and advisories that could not be decided.
    pub problems: Vec<String>,
    /// Set when the packages came from an SBOM a client attached to the
    /// image, because its layers list none (distroless, scratch).
    pub sbom_input: Option<SbomInputView>,
}

/// The client's SBOM a scan read its packages from.
#[derive(Debug, Serialize, ToSchema)]
pub struct SbomInputView {
    /// The SBOM artifact (a referrer of the image).
    pub digest: String,
    /// `SPDX-2.3`, `CycloneDX 1.5`, …
    pub format: String,
    /// Entries that name no package (no package URL or version).
    pub skipped: u64,
}

fn severity_rank(s: &str) -> Option<u8> {
    ["unknown", "none", "low", "medium", "high", "critical"]
        .iter()
        .position(|x| *x == s)
        .map(|p| p as u8)
}

fn stored_report(scan: &crate::meta::ScanRecord) -> ApiResult<Report> {
    match scan.report.as_deref() {
        None => Ok(Report::default()),
        Some(r) => serde_json::from_str(r)
            .map_err(|e| ApiFailure::Internal(format!("stored report of {}: {e}", scan.manifest))),
    }
}

fn name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The artifact's findings (filtered), with the scan's state.
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/vulnerabilities", tag = "scanning",
    params(("project" = String, Path), ("repository" = String, Path), ("reference" = String, Path), FindingFilter),
    responses((status = 200, body = VulnerabilityReport), (status = 404)))]
pub async fn vulnerabilities(
    State(state): State<Arc<AppState>>,
    ApiPath(path): ApiPath<(String, String, String)>,
    ApiQuery(filter): ApiQuery<FindingFilter>,
) -> ApiResult<Json<VulnerabilityReport>> {
    let least = match filter.severity.as_deref() {
        None => 0,
        Some(s) => severity_rank(s).ok_or_else(|| {
            ApiFailure::Invalid(format!(
                "severity {s:?}: one of critical, high, medium, low, none, unknown"
            ))
        })?,
    };
    let (_, digest) = artifact_digest(&state, &path).await?;
    let scan = state
        .scanner
        .scan_record(&digest)
        .await?
        .ok_or_else(|| never_scanned(&digest))?;
    let report = stored_report(&scan)?;
    let findings = report
        .findings
        .into_iter()
        .filter(|f| severity_rank(&name(&f.severity)).unwrap_or(0) >= least)
        .filter(|f| filter.package.as_ref().is_none_or(|p| *p == f.package))
        .filter(|f| {
            filter
                .fixable
                .is_none_or(|x| x == f.fixed_version.is_some())
        })
        .map(|f| FindingView {
            severity: name(&f.severity),
            id: f.id,
            aliases: f.aliases,
            package: f.package,
            installed_version: f.installed_version,
            fixed_version: f.fixed_version,
            score: f.score,
            layer: f.layer,
            path: f.path,
            summary: f.summary,
        })
        .collect();
    Ok(Json(VulnerabilityReport {
        os: report.os.map(|o| {
            o.pretty_name
                .unwrap_or_else(|| format!("{} {}", o.id, o.version_id.unwrap_or_default()))
        }),
        packages: report.packages.len() as u64,
        findings,
        children: report
            .children
            .into_iter()
            .map(|c| ChildView {
                digest: c.digest,
                platform: c.platform,
                status: c.status,
                summary: c.summary.into(),
            })
            .collect(),
        problems: report
            .problems
            .into_iter()
            .map(|p| {
                if p.path.is_empty() {
                    p.reason
                } else {
                    format!("{}: {}", p.path, p.reason)
                }
            })
            .collect(),
        sbom_input: report.sbom_input.map(|i| SbomInputView {
            digest: i.digest,
            format: i.format,
            skipped: i.skipped,
        }),
        scan: scan.into(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SbomFormat {
    /// spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.5 JSON).
    pub format: String,
}

/// The artifact's SBOM, from its last scan (the same document the scanner
/// stores as a referrer of the image).
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/sbom", tag = "scanning",
    params(("project" = String, Path), ("repository" = String, Path), ("reference" = String, Path), SbomFormat),
    responses((status = 200, description = "the SBOM document", content_type = "application/json"), (status = 404)))]
pub async fn sbom(
    State(state): State<Arc<AppState>>,
    ApiPath(path): ApiPath<(String, String, String)>,
    ApiQuery(format): ApiQuery<SbomFormat>,
) -> ApiResult<Response> {
    let media_type = match format.format.as_str() {
        "spdx" => crate::scanning::SPDX,
        "cyclonedx" => crate::scanning::CYCLONEDX,
        other => {
            return Err(ApiFailure::Invalid(format!(
                "format {other:?}: spdx or cyclonedx"
            )))
        }
    };
    let (repo, digest) = artifact_digest(&state, &path).await?;
    let scan = state
        .scanner
        .scan_record(&digest)
        .await?
        .filter(|s| s.status == "finished")
        .ok_or_else(|| never_scanned(&digest))?;
    let document = crate::scanning::sbom(&repo, &scan, &stored_report(&scan)?, media_type)
        .map_err(ApiFailure::Internal)?;
    Ok(([(header::CONTENT_TYPE, media_type)], Body::from(document)).into_response())
}

/// One layer of an image.
#[derive(Debug, Serialize, ToSchema)]
pub struct LayerView {
    pub digest: String,
    /// gzip, zstd or none.
    pub compression: String,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub files: u64,
    /// Bytes of this layer's files that later layers overwrite or delete.
    pub wasted_bytes: u64,
    /// Other artifacts in the project with this layer (a shared base).
    pub shared_with: u64,
}

/// A file whose bytes a later layer made unreachable.
#[derive(Debug, Serialize, ToSchema)]
pub struct WasteView {
    pub path: String,
    pub size: u64,
    pub layer: String,
    /// The layer that replaced or deleted it.
    pub by: String,
    pub deleted: bool,
}

/// How an image is built: its layers, what it shares, what it wastes.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompositionView {
    pub digest: String,
    pub layers: Vec<LayerView>,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub wasted_bytes: u64,
    pub wasted_files: u64,
    /// The largest wasted files, biggest first.
    pub largest_waste: Vec<WasteView>,
}

/// The image's composition, from its last scan.
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/composition", tag = "scanning",
    params(("project" = String, Path), ("repository" = String, Path), ("reference" = String, Path)),
    responses((status = 200, body = CompositionView), (status = 404)))]
pub async fn composition(
    State(state): State<Arc<AppState>>,
    ApiPath(path): ApiPath<(String, String, String)>,
) -> ApiResult<Json<CompositionView>> {
    let (repo, digest) = artifact_digest(&state, &path).await?;
    let scan = state
        .scanner
        .scan_record(&digest)
        .await?
        .filter(|s| s.status == "finished")
        .ok_or_else(|| never_scanned(&digest))?;
    let c = stored_report(&scan)?.composition.ok_or_else(|| {
        ApiFailure::NotFound(format!("{digest} is not an image: it has no layers"))
    })?;
    let layers: Vec<String> = c.layers.iter().map(|l| l.digest.clone()).collect();
    let shared = state
        .scanner
        .layer_sharing(repo.project(), digest.as_str(), &layers)
        .await?;
    Ok(Json(CompositionView {
        digest: digest.to_string(),
        layers: c
            .layers
            .into_iter()
            .map(|l| LayerView {
                shared_with: shared.get(&l.digest).copied().unwrap_or(0),
                compression: name(&l.compression),
                digest: l.digest,
                compressed_bytes: l.compressed_bytes,
                uncompressed_bytes: l.uncompressed_bytes,
                files: l.files,
                wasted_bytes: l.wasted_bytes,
            })
            .collect(),
        compressed_bytes: c.compressed_bytes,
        uncompressed_bytes: c.uncompressed_bytes,
        wasted_bytes: c.wasted_bytes,
        wasted_files: c.wasted_files,
        largest_waste: c
            .largest_waste
            .into_iter()
            .map(|w| WasteView {
                path: w.path,
                size: w.size,
                layer: w.layer,
                by: w.by,
                deleted: w.deleted,
            })
            .collect(),
    }))
}

/// A vulnerability database.
#[derive(Debug, Serialize, ToSchema)]
pub struct VulndbView {
    /// The digest of its records (a zip of OSV JSON).
    pub id: String,
    /// `berth-system/vulndb:<tag>`, where it is stored as an OCI artifact.
    pub artifact: String,
    pub imported_at: i64,
    pub imported_by: String,
    /// The newest modification time among its records (Unix ms).
    pub built_at: Option<i64>,
    pub records: i64,
    pub withdrawn: i64,
    /// Records per ecosystem.
    pub ecosystems: std::collections::BTreeMap<String, i64>,
}

impl From<crate::meta::VulndbRecord> for VulndbView {
    fn from(r: crate::meta::VulndbRecord) -> Self {
        VulndbView {
            artifact: format!("{}:{}", crate::scanning::VULNDB_REPOSITORY, r.tag),
            ecosystems: serde_json::from_str(&r.ecosystems).unwrap_or_default(),
            id: r.id,
            imported_at: r.imported_at,
            imported_by: r.imported_by,
            built_at: r.built_at,
            records: r.records,
            withdrawn: r.withdrawn,
        }
    }
}

/// The database in use and the ones before it.
#[derive(Debug, Serialize, ToSchema)]
pub struct VulndbStatus {
    /// The newest imported: every replica uses it.
    pub active: Option<VulndbView>,
    pub previous: Vec<VulndbView>,
    /// Scans waiting, and running.
    pub queued: u64,
    pub running: u64,
}

#[utoipa::path(get, path = "/api/v1/system/vulndb", tag = "scanning",
    responses((status = 200, body = VulndbStatus)))]
pub async fn vulndb(State(state): State<Arc<AppState>>) -> ApiResult<Json<VulndbStatus>> {
    let mut all = state
        .scanner
        .databases(10)
        .await?
        .into_iter()
        .map(VulndbView::from);
    let (queued, running) = state.scanner.queue().await?;
    Ok(Json(VulndbStatus {
        active: all.next(),
        previous: all.collect(),
        queued,
        running,
    }))
}

/// Imports a vulnerability database: the body is a zip of OSV JSON
/// records (the layout osv.dev publishes). All of it is checked before
/// anything is stored; a malformed record refuses the import, naming it,
/// and the database in use stays.
#[utoipa::path(put, path = "/api/v1/system/vulndb", tag = "scanning",
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "a zip of OSV JSON records (sent as application/zip or application/octet-stream)"),
    responses((status = 201, body = VulndbView), (status = 400)))]
pub async fn import(
    State(state): State<Arc<AppState>>,
    who: Who,
    body: Body,
) -> ApiResult<(StatusCode, Json<VulndbView>)> {
    let record = state
        .scanner
        .import(&who.1, crate::http::body_stream(body))
        .await
        .map_err(|e| match e {
            crate::scanning::ImportError::Invalid(m) => ApiFailure::Invalid(m),
            crate::scanning::ImportError::Failed(m) => ApiFailure::Internal(m),
        })?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

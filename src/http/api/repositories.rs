//! Artifacts and tags of a repository. `{repository}` is the full name,
//! percent-encoded (`team%2Fapp`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiFailure, ApiPath, ApiQuery, ApiResult, Page, PageQuery, Who};
use crate::http::AppState;
use crate::meta::{ArtifactSummary, TagRecord};
use crate::oci::{Digest, Reference, RepositoryName, Tag};

#[derive(Debug, Serialize, ToSchema)]
pub struct Artifact {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// The digest of the manifest this one refers to (signatures, SBOMs).
    pub subject: Option<String>,
    /// The manifest and every blob it references.
    pub size: u64,
    pub tags: Vec<String>,
    pub pushed_at: i64,
    pub last_pulled_at: Option<i64>,
    pub pull_count: i64,
    /// Its vulnerability scan, if it was scanned: queued, running,
    /// finished, failed or unsupported (not an image).
    pub scan_status: Option<String>,
    /// The findings of a finished scan, by severity.
    pub vulnerabilities: Option<super::scans::SummaryView>,
}

impl From<ArtifactSummary> for Artifact {
    fn from(a: ArtifactSummary) -> Self {
        Artifact {
            digest: a.digest.to_string(),
            media_type: a.media_type,
            artifact_type: a.artifact_type,
            subject: a.subject,
            size: a.size,
            tags: a.tags,
            pushed_at: a.pushed_at,
            last_pulled_at: a.last_pulled_at,
            pull_count: a.pull_count,
            vulnerabilities: a
                .scan_summary
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            scan_status: a.scan_status,
        }
    }
}

/// A tag of a repository.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagEntry {
    pub name: String,
    /// The manifest it names.
    pub digest: String,
    /// Unix ms it was last pushed or moved.
    pub updated_at: i64,
}

impl From<TagRecord> for TagEntry {
    fn from(t: TagRecord) -> Self {
        TagEntry {
            name: t.name,
            digest: t.digest,
            updated_at: t.updated_at,
        }
    }
}

fn repository(name: &str) -> ApiResult<RepositoryName> {
    name.parse()
        .map_err(|e| ApiFailure::Invalid(format!("repository {name:?}: {e}")))
}

/// Artifacts (manifests) of the repository, most recently pushed first.
#[utoipa::path(get, path = "/api/v1/repositories/{repository}/artifacts", tag = "repositories",
    params(("repository" = String, Path, description = "full name, percent-encoded"), PageQuery),
    responses((status = 200, body = Page<Artifact>)))]
pub async fn artifacts(
    State(state): State<Arc<AppState>>,
    ApiPath(repo): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Artifact>>> {
    let repo = repository(&repo)?;
    let after = match page.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => {
            let parsed = c
                .split_once('_')
                .and_then(|(at, d)| Some((at.parse::<i64>().ok()?, d)));
            Some(parsed.ok_or_else(|| ApiFailure::Invalid("malformed cursor".into()))?)
        }
    };
    let limit = page.limit()?;
    let artifacts = state.registry.artifacts(&repo, after, limit + 1).await?;
    Ok(Json(Page::of(
        artifacts,
        limit,
        |a| format!("{}_{}", a.pushed_at, a.digest),
        Artifact::from,
    )))
}

/// Deletes an artifact and its tags (refused while an index in the repository lists it).
#[utoipa::path(delete, path = "/api/v1/repositories/{repository}/artifacts/{digest}", tag = "repositories",
    params(("repository" = String, Path), ("digest" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn delete_artifact(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath((repo, digest)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let repo = repository(&repo)?;
    let digest: Digest = digest
        .parse()
        .map_err(|e| ApiFailure::Invalid(format!("digest: {e}")))?;
    state
        .registry
        .delete_manifest(&who.1, &repo, &Reference::Digest(digest))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/repositories/{repository}/tags", tag = "repositories",
    params(("repository" = String, Path), PageQuery),
    responses((status = 200, body = Page<TagEntry>)))]
pub async fn tags(
    State(state): State<Arc<AppState>>,
    ApiPath(repo): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<TagEntry>>> {
    let repo = repository(&repo)?;
    let limit = page.limit()?;
    let tags = state
        .registry
        .tag_records(&repo, page.cursor(), limit + 1)
        .await?;
    Ok(Json(Page::of(
        tags,
        limit,
        |t| t.name.clone(),
        TagEntry::from,
    )))
}

/// Removes a tag; the artifact stays.
#[utoipa::path(delete, path = "/api/v1/repositories/{repository}/tags/{tag}", tag = "repositories",
    params(("repository" = String, Path), ("tag" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete_tag(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath((repo, tag)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let repo = repository(&repo)?;
    let tag: Tag = tag
        .parse()
        .map_err(|e| ApiFailure::Invalid(format!("tag: {e}")))?;
    state
        .registry
        .delete_manifest(&who.1, &repo, &Reference::Tag(tag))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

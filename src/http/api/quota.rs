//! Project quotas (set by administrators) and usage (exact, computed from
//! what the project's manifests reference).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiPath, ApiResult};
use crate::http::AppState;
use crate::meta::Quota;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaView {
    /// Bytes of the distinct manifests and blobs the project's manifests
    /// reference (a blob shared by two repositories counts once); absent: no limit.
    #[schema(minimum = 0)]
    pub bytes: Option<i64>,
    /// Manifests in the project's repositories; absent: no limit.
    #[schema(minimum = 0)]
    pub artifacts: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    pub bytes: i64,
    pub artifacts: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryUsage {
    pub name: String,
    pub bytes: i64,
    pub artifacts: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectUsageView {
    pub quota: QuotaView,
    pub usage: UsageView,
    /// Each repository counted on its own (their sum can exceed the
    /// project's usage: blobs they share count once for the project).
    pub repositories: Vec<RepositoryUsage>,
}

/// Sets the project's limits; a push that would go over one is refused with
/// DENIED, stating usage and limit.
#[utoipa::path(put, path = "/api/v1/projects/{project}/quota", tag = "quotas",
    params(("project" = String, Path)), request_body = QuotaView,
    responses((status = 200, body = QuotaView), (status = 404)))]
pub async fn set(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiJson(quota): ApiJson<QuotaView>,
) -> ApiResult<Json<QuotaView>> {
    let q = Quota {
        bytes: quota.bytes,
        artifacts: quota.artifacts,
    };
    state.policy.set_quota(&project, q).await?;
    Ok(Json(quota))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/usage", tag = "quotas",
    params(("project" = String, Path)), responses((status = 200, body = ProjectUsageView), (status = 404)))]
pub async fn usage(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Json<ProjectUsageView>> {
    state.auth.project(&project).await?;
    let u = state.policy.usage(&project).await?;
    Ok(Json(ProjectUsageView {
        quota: QuotaView {
            bytes: u.quota.bytes,
            artifacts: u.quota.artifacts,
        },
        usage: UsageView {
            bytes: u.usage.bytes,
            artifacts: u.usage.artifacts,
        },
        repositories: u
            .repositories
            .into_iter()
            .map(|(name, r)| RepositoryUsage {
                name,
                bytes: r.bytes,
                artifacts: r.artifacts,
            })
            .collect(),
    }))
}

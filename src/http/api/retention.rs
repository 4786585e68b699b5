//! Retention policies of a project, their runs (manual, dry or real) and
//! their records.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiPath, ApiResult, Who};
use crate::http::AppState;
use crate::policy::retention::{RetentionPolicy, RetentionRule, RetentionRun};

#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionPolicyView {
    pub id: String,
    /// In a repository some rule's pattern matches, a tag stays if some rule
    /// keeps it; the others are removed. Immutable tags always stay.
    pub rules: Vec<RetentionRule>,
    /// Also remove artifacts left without a tag in governed repositories
    /// (referrers follow their subject; an index's children stay with it).
    pub untagged: bool,
    /// Cron expression in UTC (5 fields, or 6 with seconds); absent: manual only.
    pub schedule: Option<String>,
    pub next_run_at: Option<i64>,
    pub created_at: i64,
    pub created_by: Option<String>,
}

impl From<RetentionPolicy> for RetentionPolicyView {
    fn from(p: RetentionPolicy) -> Self {
        RetentionPolicyView {
            id: p.id,
            rules: p.rules,
            untagged: p.untagged,
            schedule: p.schedule,
            next_run_at: p.next_run_at,
            created_at: p.created_at,
            created_by: p.created_by,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRetentionPolicy {
    pub rules: Vec<RetentionRule>,
    #[serde(default)]
    pub untagged: bool,
    pub schedule: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRunView {
    pub id: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub dry_run: bool,
    /// running, finished, failed or interrupted.
    pub status: String,
    /// `repository:tag` and untagged `repository@digest` removed (or, in a
    /// dry run, that would be).
    pub removed: Vec<String>,
    /// Tags the policy would remove but an immutability rule keeps.
    pub protected: Vec<String>,
    pub error: Option<String>,
}

impl From<RetentionRun> for RetentionRunView {
    fn from(r: RetentionRun) -> Self {
        RetentionRunView {
            id: r.id,
            started_at: r.started_at,
            finished_at: r.finished_at,
            dry_run: r.dry_run,
            status: r.status,
            removed: r.removed,
            protected: r.protected,
            error: r.error,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Only say what would be removed.
    #[serde(default)]
    pub dry_run: bool,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/retention-policies", tag = "retention",
    params(("project" = String, Path)), responses((status = 200, body = Vec<RetentionPolicyView>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Json<Vec<RetentionPolicyView>>> {
    state.auth.project(&project).await?;
    let policies = state.policy.retention_policies(&project).await?;
    Ok(Json(policies.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/retention-policies", tag = "retention",
    params(("project" = String, Path)), request_body = NewRetentionPolicy,
    responses((status = 201, body = RetentionPolicyView)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath(project): ApiPath<String>,
    ApiJson(new): ApiJson<NewRetentionPolicy>,
) -> ApiResult<(StatusCode, Json<RetentionPolicyView>)> {
    let by = who.name(&state).await?;
    let policy = state
        .policy
        .add_retention_policy(&project, new.rules, new.untagged, new.schedule, &by)
        .await?;
    Ok((StatusCode::CREATED, Json(policy.into())))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/retention-policies/{id}", tag = "retention",
    params(("project" = String, Path), ("id" = String, Path)), responses((status = 204)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath((project, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.policy.delete_retention_policy(&project, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs the policy now and returns the run's record.
#[utoipa::path(post, path = "/api/v1/projects/{project}/retention-policies/{id}/runs", tag = "retention",
    params(("project" = String, Path), ("id" = String, Path)), request_body = RunRequest,
    responses((status = 200, body = RetentionRunView)))]
pub async fn run(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath((project, id)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<RunRequest>,
) -> ApiResult<Json<RetentionRunView>> {
    // A run asked for in a request completes: shutdown waits for requests.
    let stop = crate::workers::Stop::never();
    let run = state
        .policy
        .run_retention(
            &state.registry,
            &project,
            &id,
            request.dry_run,
            &who.1,
            &stop,
        )
        .await?;
    Ok(Json(run.into()))
}

/// The policy's recent runs, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project}/retention-policies/{id}/runs", tag = "retention",
    params(("project" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Vec<RetentionRunView>)))]
pub async fn runs(
    State(state): State<Arc<AppState>>,
    ApiPath((project, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Vec<RetentionRunView>>> {
    let runs = state.policy.retention_runs(&project, &id, 50).await?;
    Ok(Json(runs.into_iter().map(Into::into).collect()))
}

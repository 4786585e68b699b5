//! The audit log, newest first, with filters.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{check_limit, ApiFailure, ApiPath, ApiQuery, ApiResult, Page};
use crate::http::AppState;
use crate::meta::{AuditFilter, AuditRecord};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries of one project (on a project's route, only that project).
    pub project: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Entries whose resource starts with this.
    pub resource: Option<String>,
    pub outcome: Option<String>,
    /// From this time on (Unix ms).
    pub since: Option<i64>,
    /// Before this time (Unix ms).
    pub until: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

async fn query(state: &AppState, q: AuditQuery) -> ApiResult<Json<Page<AuditRecord>>> {
    let limit = check_limit(q.limit)?;
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        project: q.project,
        resource_prefix: q.resource,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
        before_id: q.cursor.filter(|c| !c.is_empty()),
    };
    let entries = state.auth.audit().query(&filter, limit + 1).await?;
    Ok(Json(Page::of(entries, limit, |e| e.id.clone(), |e| e)))
}

/// The whole audit log (administrators).
#[utoipa::path(get, path = "/api/v1/audit-logs", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditRecord>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    query(&state, q).await
}

/// The audit log of one project.
#[utoipa::path(get, path = "/api/v1/projects/{project}/audit-logs", tag = "audit",
    params(("project" = String, Path), AuditQuery), responses((status = 200, body = Page<AuditRecord>)))]
pub async fn project_list(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiQuery(mut q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    if q.project.as_ref().is_some_and(|p| *p != project) {
        return Err(ApiFailure::Invalid(format!(
            "this route lists the entries of project {project:?} only"
        )));
    }
    q.project = Some(project);
    query(&state, q).await
}

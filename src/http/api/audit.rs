//! The audit log, newest first, with filters.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{check_limit, ApiFailure, ApiPath, ApiQuery, ApiResult, Page};
use crate::http::AppState;
use crate::meta::{AuditFilter, AuditRecord};

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Ordered by time: entries page by it.
    pub id: String,
    /// Unix milliseconds (pulls: the minute they were counted in).
    pub at: i64,
    pub actor: String,
    /// user, robot, anonymous, or system (Berth's own jobs).
    pub actor_kind: String,
    pub address: String,
    /// pull, push, delete, login, or a management operation (project.create, ...).
    pub action: String,
    pub project: Option<String>,
    pub resource: String,
    /// success or failure.
    pub outcome: String,
    pub detail: Option<String>,
    /// How many times: the pulls of one actor, address and artifact in one
    /// minute are one entry.
    pub count: i64,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            actor_kind: r.actor_kind,
            address: r.address,
            action: r.action,
            project: r.project,
            resource: r.resource,
            outcome: r.outcome,
            detail: r.detail,
            count: r.count,
        }
    }
}

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

async fn query(state: &AppState, q: AuditQuery) -> ApiResult<Json<Page<AuditEntry>>> {
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
    let entries = state.audit.query(&filter, limit + 1).await?;
    Ok(Json(Page::of(
        entries,
        limit,
        |e| e.id.clone(),
        AuditEntry::from,
    )))
}

/// The whole audit log (administrators).
#[utoipa::path(get, path = "/api/v1/audit-logs", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    query(&state, q).await
}

/// The audit log of one project.
#[utoipa::path(get, path = "/api/v1/projects/{project}/audit-logs", tag = "audit",
    params(("project" = String, Path), AuditQuery), responses((status = 200, body = Page<AuditEntry>)))]
pub async fn project_list(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiQuery(mut q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    if q.project.as_ref().is_some_and(|p| *p != project) {
        return Err(ApiFailure::Invalid(format!(
            "this route lists the entries of project {project:?} only"
        )));
    }
    q.project = Some(project);
    query(&state, q).await
}

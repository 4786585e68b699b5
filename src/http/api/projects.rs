//! Projects, their members and their repositories.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiFailure, ApiJson, ApiPath, ApiQuery, ApiResult, Page, PageQuery, Who};
use crate::http::AppState;
use crate::meta::{ProjectRecord, RepositorySummary};

#[derive(Debug, Serialize, ToSchema)]
pub struct Project {
    pub name: String,
    /// Anyone may pull from a public project, signed in or not.
    pub public: bool,
    pub created_at: i64,
    pub created_by: Option<String>,
    /// Whether images pushed here are scanned for vulnerabilities.
    pub scan_on_push: bool,
}

impl From<ProjectRecord> for Project {
    fn from(p: ProjectRecord) -> Self {
        Project {
            name: p.name,
            public: p.public,
            created_at: p.created_at,
            created_by: p.created_by,
            scan_on_push: p.scan_on_push,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Lower-case letters and digits separated by `.`, `_` or `-`; the first
    /// component of its repositories' names.
    pub name: String,
    /// Private (false) unless set.
    #[serde(default)]
    pub public: bool,
    /// Scan what is pushed (true unless set).
    #[serde(default)]
    pub scan_on_push: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    pub public: Option<bool>,
    pub scan_on_push: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub username: String,
    /// project_admin, maintainer, developer, guest or limited_guest.
    pub role: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRole {
    /// project_admin, maintainer, developer, guest or limited_guest.
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Repository {
    pub name: String,
    pub created_at: i64,
    pub artifact_count: i64,
    pub tag_count: i64,
    pub pull_count: i64,
    pub last_pushed_at: Option<i64>,
    pub last_pulled_at: Option<i64>,
}

impl From<RepositorySummary> for Repository {
    fn from(r: RepositorySummary) -> Self {
        Repository {
            name: r.name,
            created_at: r.created_at,
            artifact_count: r.artifact_count,
            tag_count: r.tag_count,
            pull_count: r.pull_count,
            last_pushed_at: r.last_pushed_at,
            last_pulled_at: r.last_pulled_at,
        }
    }
}

/// Projects the caller may see: public ones, and those they are a member of.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", params(PageQuery),
    security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = Page<Project>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Project>>> {
    let visibility = state.auth.visibility(&who.0).await?;
    let limit = page.limit()?;
    let projects = state
        .auth
        .projects(visibility.as_ref(), page.cursor(), limit + 1)
        .await?;
    Ok(Json(Page::of(
        projects,
        limit,
        |p| p.name.clone(),
        Project::from,
    )))
}

/// Creates a project; the caller becomes its project admin.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, body = Project), (status = 400), (status = 409)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiJson(new): ApiJson<NewProject>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    let owner = who.name(&state).await?;
    state
        .auth
        .create_project(&new.name, new.public, &owner, &who.1)
        .await?;
    if new.scan_on_push == Some(false) {
        state
            .auth
            .update_project(&new.name, None, Some(false))
            .await?;
    }
    let project = state.auth.project(&new.name).await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}", tag = "projects",
    params(("project" = String, Path)), responses((status = 200, body = Project), (status = 404)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Json<Project>> {
    Ok(Json(state.auth.project(&project).await?.into()))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project}", tag = "projects",
    params(("project" = String, Path)), request_body = ProjectUpdate,
    responses((status = 200, body = Project), (status = 404)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiJson(update): ApiJson<ProjectUpdate>,
) -> ApiResult<Json<Project>> {
    if update.public.is_none() && update.scan_on_push.is_none() {
        return Err(ApiFailure::Invalid(
            "give public, scan_on_push, or both".into(),
        ));
    }
    state
        .auth
        .update_project(&project, update.public, update.scan_on_push)
        .await?;
    Ok(Json(state.auth.project(&project).await?.into()))
}

/// Deletes an empty project with its members and robots.
#[utoipa::path(delete, path = "/api/v1/projects/{project}", tag = "projects",
    params(("project" = String, Path)),
    responses((status = 204), (status = 404), (status = 409, description = "the project still has repositories")))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.auth.delete_project(&project, &who.1).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/members", tag = "members",
    params(("project" = String, Path)), responses((status = 200, body = Vec<Member>)))]
pub async fn members(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Json<Vec<Member>>> {
    let members = state.auth.members(&project).await?;
    Ok(Json(
        members
            .into_iter()
            .map(|m| Member {
                username: m.username,
                role: m.role,
            })
            .collect(),
    ))
}

/// Gives a user a role in the project (replacing any role they had).
#[utoipa::path(put, path = "/api/v1/projects/{project}/members/{user}", tag = "members",
    params(("project" = String, Path), ("user" = String, Path)), request_body = MemberRole,
    responses((status = 200, body = Member), (status = 400), (status = 404)))]
pub async fn set_member(
    State(state): State<Arc<AppState>>,
    ApiPath((project, user)): ApiPath<(String, String)>,
    ApiJson(role): ApiJson<MemberRole>,
) -> ApiResult<Json<Member>> {
    state.auth.set_member(&project, &user, &role.role).await?;
    Ok(Json(Member {
        username: user,
        role: role.role,
    }))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/members/{user}", tag = "members",
    params(("project" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    ApiPath((project, user)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.auth.remove_member(&project, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Repositories of the project, by name.
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories", tag = "repositories",
    params(("project" = String, Path), PageQuery),
    responses((status = 200, body = Page<Repository>), (status = 404)))]
pub async fn repositories(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Repository>>> {
    state.auth.project(&project).await?;
    let limit = page.limit()?;
    let repos = state
        .registry
        .repository_summaries(&project, page.cursor(), limit + 1)
        .await
        .map_err(ApiFailure::from)?;
    Ok(Json(Page::of(
        repos,
        limit,
        |r| r.name.clone(),
        Repository::from,
    )))
}
